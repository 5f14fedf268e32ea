//! `export_like`: a checkpoint written as a GGUF file shaped like a template reads back, through
//! the importer, as exactly the checkpoint's tensors — Q/K permutation, a rotated model's untied
//! LM head (`output.weight`, absent from a tied template) and the template's metadata included.

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::events;
use tlite_converter::rotate::{RotateOptions, rotate};
use tlite_gguf::export::export_like;
use tlite_gguf::reader::GgufFile;
use tlite_gguf::writer::Gguf;
use tlite_gguf::{ImportOptions, import_gguf};

#[test]
fn an_exported_rotated_checkpoint_imports_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let template = dir.join("tiny.gguf");
    // Tied: no `output.weight`.
    let mut g = Gguf::tiny_llama();
    g.remove_tensor("output.weight");
    std::fs::write(&template, g.bytes()).unwrap();
    let opts = ImportOptions::default();
    import_gguf(&template, &dir.join("ck"), &opts, &mut events::ignore).unwrap();
    let ck = Checkpoint::open_dir(&dir.join("ck")).unwrap();
    assert!(ck.config.tie_word_embeddings, "the template is tied");
    rotate(
        &ck,
        &dir.join("rot"),
        &RotateOptions { seed: 3 },
        false,
        &mut events::ignore,
    )
    .unwrap();
    let rot = Checkpoint::open_dir(&dir.join("rot")).unwrap();
    assert!(!rot.config.tie_word_embeddings);

    let out = dir.join("rot.gguf");
    export_like(&template, &rot, &out).unwrap();
    assert!(!dir.join("rot.gguf.partial").exists());
    let (a, b) = (
        GgufFile::open(&template).unwrap(),
        GgufFile::open(&out).unwrap(),
    );
    let mut keys: Vec<_> = a.metadata().keys().collect();
    keys.sort();
    let mut keys_out: Vec<_> = b.metadata().keys().collect();
    keys_out.sort();
    assert_eq!(keys, keys_out, "the metadata is the template's");
    for k in keys {
        assert_eq!(
            format!("{:?}", a.get(k)),
            format!("{:?}", b.get(k)),
            "metadata `{k}`"
        );
    }
    assert!(b.tensor_names().contains(&"output.weight"));

    import_gguf(&out, &dir.join("back"), &opts, &mut events::ignore).unwrap();
    let back = Checkpoint::open_dir(&dir.join("back")).unwrap();
    let expected = rot.expected_tensors().unwrap();
    assert_eq!(back.expected_tensors().unwrap().len(), expected.len());
    for t in &expected {
        let (x, y) = (
            rot.tensor_f32(&t.name).unwrap(),
            back.tensor_f32(&t.name).unwrap(),
        );
        assert!(
            x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{} differs after export and import",
            t.name
        );
    }
}

#[test]
fn a_template_of_another_shape_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let template = dir.join("tiny.gguf");
    std::fs::write(&template, Gguf::tiny_llama().bytes()).unwrap();
    let opts = ImportOptions::default();
    import_gguf(&template, &dir.join("ck"), &opts, &mut events::ignore).unwrap();
    let ck = Checkpoint::open_dir(&dir.join("ck")).unwrap();
    // A template with one more layer than the checkpoint.
    let mut g = Gguf::tiny_llama();
    g.set("llama.block_count", tlite_gguf::writer::V::U32(2));
    g.f32_tensor("blk.1.attn_norm.weight", vec![8]);
    let other = dir.join("other.gguf");
    std::fs::write(&other, g.bytes()).unwrap();
    let e = export_like(&other, &ck, &dir.join("x.gguf"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("blk.1.attn_norm") || e.contains("layers.1"),
        "{e}"
    );
    assert!(!dir.join("x.gguf").exists() && !dir.join("x.gguf.partial").exists());
}
