//! Malformed inputs give a typed error naming the problem, and leave no output behind.

use std::path::{Path, PathBuf};

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_converter::{ConvertError, events};
use tlite_model::ModelError;
use tlite_model::arch::Family;
use tlite_model::deploy::{DeployedModel, MODEL_FILE};

struct Case {
    /// The temporary folder (removed on drop).
    root: tempfile::TempDir,
}

impl Case {
    /// A fresh tiny Llama checkpoint at `root/ck`.
    fn new() -> Case {
        let root = tempfile::tempdir().unwrap();
        write_checkpoint(&SynthSpec::tiny(Family::Llama), &root.path().join("ck")).unwrap();
        Case { root }
    }
    fn ck(&self) -> PathBuf {
        self.root.path().join("ck")
    }
    fn out(&self) -> PathBuf {
        self.root.path().join("out")
    }
    /// Opens and converts; returns the error and checks that nothing was written.
    fn convert_err(&self) -> ConvertError {
        let r = Checkpoint::open_dir(&self.ck()).and_then(|ck| {
            convert(
                &ck,
                &self.out(),
                &ConvertOptions::default(),
                &mut events::ignore,
            )
        });
        let e = r.expect_err("malformed input must be rejected");
        assert!(!self.out().exists(), "output written despite: {e}");
        let leftovers: Vec<_> = std::fs::read_dir(self.root.path())
            .unwrap()
            .filter_map(|d| d.ok())
            .filter(|d| d.file_name().to_string_lossy().contains(".tlite-tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary output left behind");
        e
    }
    fn edit_config(&self, f: impl FnOnce(&mut serde_json::Value)) {
        let p = self.ck().join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, v.to_string()).unwrap();
    }
}

/// A safetensors file from a raw header and data.
fn write_raw(path: &Path, header: &str, data_len: usize) {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend((0..data_len).map(|i| (i * 7 + 1) as u8));
    std::fs::write(path, b).unwrap();
}

#[test]
fn truncated_safetensors() {
    let c = Case::new();
    let p = c.ck().join("model.safetensors");
    let len = std::fs::metadata(&p).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len - 100).unwrap();
    let e = c.convert_err();
    assert!(
        matches!(e, ConvertError::Model(ModelError::Safetensors { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}

#[test]
fn overlapping_offsets() {
    let c = Case::new();
    write_raw(
        &c.ck().join("model.safetensors"),
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
        24,
    );
    let e = c.convert_err();
    assert!(
        matches!(e, ConvertError::Model(ModelError::Safetensors { .. })),
        "{e}"
    );
}

#[test]
fn offsets_past_the_end() {
    let c = Case::new();
    write_raw(
        &c.ck().join("model.safetensors"),
        r#"{"a":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}}"#,
        128,
    );
    let e = c.convert_err();
    assert!(
        matches!(e, ConvertError::Model(ModelError::Safetensors { .. })),
        "{e}"
    );
}

#[test]
fn missing_shard() {
    let c = Case::new();
    std::fs::rename(
        c.ck().join("model.safetensors"),
        c.ck().join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    let idx = serde_json::json!({"metadata": {}, "weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors"}});
    std::fs::write(c.ck().join("model.safetensors.index.json"), idx.to_string()).unwrap();
    let e = c.convert_err();
    assert!(
        matches!(e, ConvertError::MissingShard { ref shard, .. } if shard == "model-00002-of-00002.safetensors"),
        "{e}"
    );
}

#[test]
fn wrong_dtype() {
    let c = Case::new();
    let mut spec = SynthSpec::tiny(Family::Llama);
    spec.layers = 1;
    spec.dtype = safetensors::Dtype::F32;
    let _ = std::fs::remove_dir_all(c.ck());
    write_checkpoint(&spec, &c.ck()).unwrap();
    // Rewrite one weight as I32 of the same shape.
    let p = c.ck().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let dt = if n.ends_with("q_proj.weight") {
                safetensors::Dtype::I32
            } else {
                v.dtype()
            };
            (n, dt, v.shape().to_vec(), v.data().to_vec())
        })
        .collect();
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, dt, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*dt, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &p).unwrap();
    let e = c.convert_err();
    assert!(
        matches!(e, ConvertError::Model(ModelError::DType { ref tensor, .. }) if tensor.ends_with("q_proj.weight")),
        "{e}"
    );
}

#[test]
fn wrong_shape() {
    let c = Case::new();
    c.edit_config(|v| v["intermediate_size"] = 96.into());
    let e = c.convert_err();
    assert!(matches!(e, ConvertError::Shape { .. }), "{e}");
    assert!(e.to_string().contains("[96, 64]"), "{e}");
}

#[test]
fn config_without_required_fields() {
    let c = Case::new();
    c.edit_config(|v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    let e = c.convert_err();
    assert!(
        matches!(e, ConvertError::Model(ModelError::Config { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("hidden_size"), "{e}");
    let c = Case::new();
    c.edit_config(|v| v["num_attention_heads"] = "four".into());
    assert!(c.convert_err().to_string().contains("num_attention_heads"));
    let c = Case::new();
    std::fs::write(c.ck().join("config.json"), "{ not json").unwrap();
    assert!(c.convert_err().to_string().contains("not valid JSON"));
}

#[test]
fn unknown_architecture() {
    let c = Case::new();
    c.edit_config(|v| v["model_type"] = "bert".into());
    let e = c.convert_err();
    assert!(
        matches!(
            e,
            ConvertError::Model(ModelError::UnknownArchitecture { .. })
        ),
        "{e}"
    );
    let s = e.to_string();
    assert!(
        s.contains("bert")
            && s.contains("llama")
            && s.contains("qwen2")
            && s.contains("gemma3_text"),
        "{s}"
    );
}

#[test]
fn corrupted_deployable_model() {
    let c = Case::new();
    let ck = Checkpoint::open_dir(&c.ck()).unwrap();
    convert(
        &ck,
        &c.out(),
        &ConvertOptions::default(),
        &mut events::ignore,
    )
    .unwrap();
    let p = c.out().join(MODEL_FILE);
    let good = std::fs::read(&p).unwrap();
    // A flipped bit in the tensor data: the checksum names the tensor.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 300] ^= 0x10;
    std::fs::write(&p, &bad).unwrap();
    let e = DeployedModel::open(&c.out())
        .err()
        .expect("corruption detected");
    assert!(matches!(e, ModelError::Checksum { .. }), "{e}");
    // A damaged manifest.
    let text = String::from_utf8_lossy(&good).into_owned();
    // The manifest is a JSON string inside the header, so its quotes are escaped.
    let key = "\\\"format_version\\\":";
    let pos = text.find(key).expect("manifest in header") + key.len();
    assert_eq!(good[pos], b'1');
    let mut bad = good.clone();
    bad[pos] = b'7';
    std::fs::write(&p, &bad).unwrap();
    let e = DeployedModel::open(&c.out()).err().unwrap();
    assert!(
        matches!(e, ModelError::Manifest { .. }) && e.to_string().contains("version 7"),
        "{e}"
    );
    // A manifest whose config disagrees with the tensors (one digit of intermediate_size).
    let key = "\\\"intermediate_size\\\":";
    let pos = text.find(key).expect("config in manifest") + key.len();
    let mut bad = good.clone();
    bad[pos] = if good[pos] == b'9' {
        b'8'
    } else {
        good[pos] + 1
    };
    std::fs::write(&p, &bad).unwrap();
    let e = DeployedModel::open(&c.out()).err().unwrap();
    assert!(
        matches!(e, ModelError::Manifest { .. }) && e.to_string().contains("the config implies"),
        "{e}"
    );
    // A truncated file.
    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    assert!(matches!(
        DeployedModel::open(&c.out()).err().unwrap(),
        ModelError::Safetensors { .. }
    ));
    // A plain safetensors file is not a deployable model.
    std::fs::copy(c.ck().join("model.safetensors"), &p).unwrap();
    let e = DeployedModel::open(&c.out()).err().unwrap();
    assert!(e.to_string().contains("tlite.manifest"), "{e}");
}

#[test]
fn existing_output_is_not_overwritten_without_force() {
    let c = Case::new();
    std::fs::create_dir_all(c.out()).unwrap();
    std::fs::write(c.out().join("keep.txt"), "mine").unwrap();
    let ck = Checkpoint::open_dir(&c.ck()).unwrap();
    let e = convert(
        &ck,
        &c.out(),
        &ConvertOptions::default(),
        &mut events::ignore,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("--force"), "{e}");
    assert!(c.out().join("keep.txt").exists());
    // --force replaces only a folder tlite wrote: this one holds the user's file.
    let opts = ConvertOptions {
        overwrite: true,
        ..Default::default()
    };
    let e = convert(&ck, &c.out(), &opts, &mut events::ignore)
        .err()
        .unwrap();
    assert!(e.to_string().contains("did not write"), "{e}");
    assert!(c.out().join("keep.txt").exists());
    std::fs::remove_file(c.out().join("keep.txt")).unwrap();
    // Empty now: converted into without --force; then replaced with it.
    convert(
        &ck,
        &c.out(),
        &ConvertOptions::default(),
        &mut events::ignore,
    )
    .unwrap();
    convert(&ck, &c.out(), &opts, &mut events::ignore).unwrap();
    DeployedModel::open(&c.out()).unwrap();
}
