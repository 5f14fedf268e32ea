//! Hostile configurations, shard indexes and manifests: one validation of a model's
//! configuration, applied to config.json and to a deployable model's manifest alike, refuses
//! each with an error naming the problem — before anything is sized by it.

use std::path::Path;

use serde_json::{Value, json};
use tlite_converter::ConvertError;
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_model::ModelError;
use tlite_model::arch::Family;
use tlite_model::deploy::{DeployedModel, MANIFEST_KEY, MODEL_FILE};

fn tiny(dir: &Path, family: Family) {
    write_checkpoint(&SynthSpec::tiny(family), dir).unwrap();
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// Each edit of config.json and the words its error must contain.
/// (what, an edit of the JSON, words the error must contain)
type Case = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);

fn config_cases() -> Vec<Case> {
    vec![
        (
            "rotary factor 7",
            Box::new(|v| v["partial_rotary_factor"] = json!(7)),
            "partial_rotary_factor",
        ),
        (
            "rotary factor 0",
            Box::new(|v| v["partial_rotary_factor"] = json!(0.0)),
            "partial_rotary_factor",
        ),
        (
            "rotary factor -1",
            Box::new(|v| v["partial_rotary_factor"] = json!(-1.0)),
            "partial_rotary_factor",
        ),
        (
            "odd head_dim",
            Box::new(|v| v["head_dim"] = json!(15)),
            "even",
        ),
        (
            "head_dim 512",
            Box::new(|v| v["head_dim"] = json!(512)),
            "head_dim",
        ),
        (
            "2^62 layers",
            Box::new(|v| v["num_hidden_layers"] = json!(1u64 << 62)),
            "num_hidden_layers",
        ),
        (
            "1e8 layers",
            Box::new(|v| v["num_hidden_layers"] = json!(100_000_000)),
            "num_hidden_layers",
        ),
        (
            "4000 layers",
            Box::new(|v| v["num_hidden_layers"] = json!(4000)),
            "tensors",
        ),
        (
            "negative eps",
            Box::new(|v| v["rms_norm_eps"] = json!(-1e-6)),
            "rms_norm_eps",
        ),
        (
            "zero eps",
            Box::new(|v| v["rms_norm_eps"] = json!(0.0)),
            "rms_norm_eps",
        ),
        (
            "zero theta",
            Box::new(|v| v["rope_theta"] = json!(0.0)),
            "rope_theta",
        ),
        (
            "string theta",
            Box::new(|v| v["rope_theta"] = json!("big")),
            "rope_theta",
        ),
        (
            "vocab 2^40",
            Box::new(|v| v["vocab_size"] = json!(1u64 << 40)),
            "vocab_size",
        ),
        (
            "vocab×hidden past u32",
            Box::new(|v| {
                v["vocab_size"] = json!(1 << 24);
                v["hidden_size"] = json!(1 << 20);
            }),
            "elements",
        ),
        (
            "hidden 2^30",
            Box::new(|v| v["hidden_size"] = json!(1u64 << 30)),
            "hidden_size",
        ),
        (
            "heads not a multiple",
            Box::new(|v| v["num_key_value_heads"] = json!(3)),
            "multiple",
        ),
        (
            "negative layers",
            Box::new(|v| v["num_hidden_layers"] = json!(-2)),
            "num_hidden_layers",
        ),
        (
            "layer_types too short",
            Box::new(|v| v["layer_types"] = json!(["full_attention"])),
            "layer_types",
        ),
        (
            "layer_types nonsense",
            Box::new(|v| v["layer_types"] = json!(["x", "y"])),
            "layer_types",
        ),
        (
            "eos out of vocab",
            Box::new(|v| v["eos_token_id"] = json!([2, 1_000_000])),
            "outside the vocabulary",
        ),
        (
            "eos not an id",
            Box::new(|v| v["eos_token_id"] = json!("</s>")),
            "eos_token_id",
        ),
        (
            "bos past u32",
            Box::new(|v| v["bos_token_id"] = json!(1u64 << 40)),
            "bos_token_id",
        ),
        (
            "linear rope without factor",
            Box::new(|v| v["rope_scaling"] = json!({"rope_type": "linear"})),
            "factor",
        ),
        (
            "linear rope factor 0",
            Box::new(|v| v["rope_scaling"] = json!({"rope_type": "linear", "factor": 0.0})),
            "rope_scaling",
        ),
        (
            "sliding window 0",
            Box::new(|v| {
                v["sliding_window"] = json!(0);
            }),
            "sliding_window",
        ),
    ]
}

#[test]
fn hostile_config_json_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (what, edit, needle) in config_cases() {
        let ck = tmp.path().join("ck");
        tiny(&ck, Family::Llama);
        edit_json(&ck.join("config.json"), |v| edit(v));
        let e = Checkpoint::open_dir(&ck)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        let msg = e.to_string();
        assert!(
            matches!(e, ConvertError::Model(ModelError::Config { .. })),
            "{what}: {msg}"
        );
        assert!(
            msg.contains(needle),
            "{what}: `{msg}` does not name `{needle}`"
        );
        assert!(!msg.contains('\n'), "{what}: not one line: {msg}");
    }
}

#[test]
fn gemma3_sliding_pattern_must_fit_the_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    for (edit, needle) in [
        (
            json!({"sliding_window_pattern": 0}),
            "sliding_window_pattern",
        ),
        (json!({"sliding_window": 0}), "sliding_window"),
        (json!({"layer_types": []}), "layer_types"),
    ] {
        tiny(&ck, Family::Gemma3);
        edit_json(&ck.join("config.json"), |v| {
            v.as_object_mut().unwrap().remove("layer_types");
            for (k, x) in edit.as_object().unwrap() {
                v[k] = x.clone();
            }
        });
        let e = Checkpoint::open_dir(&ck)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(needle), "{edit}: {e}");
    }
}

fn shard_index(ck: &Path, map: Value) {
    std::fs::write(
        ck.join("model.safetensors.index.json"),
        json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
}

#[test]
fn shard_paths_stay_inside_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    tiny(&ck, Family::Llama);
    let elsewhere = tmp.path().join("elsewhere.safetensors");
    std::fs::rename(ck.join("model.safetensors"), &elsewhere).unwrap();
    let abs = elsewhere.to_str().unwrap().to_owned();
    for shard in [
        abs.as_str(),
        "../elsewhere.safetensors",
        "./model.safetensors",
        "sub/../../elsewhere.safetensors",
        "",
        "a\\b.safetensors",
    ] {
        shard_index(&ck, json!({"model.embed_tokens.weight": shard}));
        let e = Checkpoint::open_dir(&ck)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("relative") || e.contains("empty") || e.contains("backslash"),
            "{shard:?}: {e}"
        );
    }
}

#[test]
fn a_tensor_in_two_shards_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    tiny(&ck, Family::Llama);
    std::fs::copy(ck.join("model.safetensors"), ck.join("b.safetensors")).unwrap();
    std::fs::rename(ck.join("model.safetensors"), ck.join("a.safetensors")).unwrap();
    shard_index(
        &ck,
        json!({"model.embed_tokens.weight": "a.safetensors", "model.norm.weight": "b.safetensors"}),
    );
    let e = Checkpoint::open_dir(&ck)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("also stored in"), "{e}");
}

/// Rewrites the manifest of a deployable model's file.
fn edit_manifest(model: &Path, f: impl FnOnce(&mut Value)) {
    let bytes = std::fs::read(model).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut manifest: Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()[MANIFEST_KEY]).unwrap();
    f(&mut manifest);
    let md = std::collections::HashMap::from([(MANIFEST_KEY.to_owned(), manifest.to_string())]);
    safetensors::serialize_to_file(st.tensors(), Some(md), model).unwrap();
}

#[test]
fn hostile_manifest_config_is_refused_like_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    let out = tmp.path().join("out");
    tiny(&ck, Family::Gemma3);
    let opened = Checkpoint::open_dir(&ck).unwrap();
    let opts = ConvertOptions {
        group: 32,
        ..Default::default()
    };
    convert(&opened, &out, &opts, &mut |_| {}).unwrap();
    let model = out.join(MODEL_FILE);
    let good = std::fs::read(&model).unwrap();
    let cases: Vec<Case> = vec![
        (
            "empty sliding_layers",
            Box::new(|m| m["config"]["sliding_layers"] = json!([])),
            "sliding-window pattern",
        ),
        (
            "odd head_dim",
            Box::new(|m| m["config"]["head_dim"] = json!(15)),
            "even",
        ),
        (
            "rotary 7",
            Box::new(|m| m["config"]["partial_rotary_factor"] = json!(7.0)),
            "partial_rotary_factor",
        ),
        (
            "negative eps",
            Box::new(|m| m["config"]["rms_norm_eps"] = json!(-1.0)),
            "rms_norm_eps",
        ),
        (
            "2^40 layers",
            Box::new(|m| m["config"]["num_layers"] = json!(1u64 << 40)),
            "num_hidden_layers",
        ),
        (
            "1000 layers",
            Box::new(|m| {
                m["config"]["num_layers"] = json!(1000);
                m["config"]["sliding_layers"] = json!(vec![false; 1000]);
            }),
            "tensors",
        ),
        (
            "family disagrees",
            Box::new(|m| m["architecture"] = json!("llama")),
            "architecture",
        ),
        (
            "3-D tensor",
            Box::new(|m| m["tensors"][0]["shape"] = json!([1, 2, 3])),
            "vectors or matrices",
        ),
        (
            "shape overflow",
            Box::new(|m| m["tensors"][0]["shape"] = json!([u64::MAX, u64::MAX])),
            "tensor",
        ),
    ];
    for (what, edit, needle) in cases {
        std::fs::write(&model, &good).unwrap();
        edit_manifest(&model, |m| edit(m));
        let e = DeployedModel::open(&out)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        let msg = e.to_string();
        assert!(matches!(e, ModelError::Manifest { .. }), "{what}: {msg}");
        assert!(
            msg.contains(needle),
            "{what}: `{msg}` does not name `{needle}`"
        );
    }
}
