//! GGUF import: the header, metadata, tokenizer and tensors of a GGUF file, imported into a
//! Hugging Face folder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlite_fuzz::scratch;
use tlite_gguf::{ImportOptions, import_gguf};

fuzz_target!(|data: &[u8]| {
    let dir = scratch("gguf");
    let src = dir.join("in.gguf");
    std::fs::write(&src, data).unwrap();
    let opts = ImportOptions {
        overwrite: true,
        ..Default::default()
    };
    let _ = import_gguf(&src, &dir.join("out"), &opts, &mut |_| {});
    let _ = std::fs::remove_dir_all(&dir);
});
