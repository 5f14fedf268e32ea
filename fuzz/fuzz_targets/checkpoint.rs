//! Checkpoint ingestion: config.json, model.safetensors (or an index and two shards) from one
//! input; every tensor the config requires is read, and a small model is converted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_fuzz::{scratch, split};

fuzz_target!(|data: &[u8]| {
    let parts = split(data, 4);
    let dir = scratch("checkpoint");
    let ck_dir = dir.join("ck");
    std::fs::create_dir_all(&ck_dir).unwrap();
    std::fs::write(ck_dir.join("config.json"), parts[0]).unwrap();
    if parts[2].is_empty() {
        std::fs::write(ck_dir.join("model.safetensors"), parts[1]).unwrap();
    } else {
        // Sharded: an index (part 1) naming shards a and b (parts 2 and 3).
        std::fs::write(ck_dir.join("model.safetensors.index.json"), parts[1]).unwrap();
        std::fs::write(ck_dir.join("a.safetensors"), parts[2]).unwrap();
        std::fs::write(ck_dir.join("b.safetensors"), parts[3]).unwrap();
    }
    if let Ok(ck) = Checkpoint::open_dir(&ck_dir)
        && let Ok(expected) = ck.expected_tensors()
    {
        let elements: usize = expected.iter().map(|t| t.numel()).sum();
        for t in &expected {
            let _ = ck.tensor_f32(&t.name);
        }
        if elements <= 1 << 16 {
            let opts = ConvertOptions {
                group: 32,
                overwrite: true,
                ..Default::default()
            };
            let _ = convert(&ck, &dir.join("out"), &opts, &mut |_| {});
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
