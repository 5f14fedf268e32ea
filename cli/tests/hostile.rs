//! The hostile inputs of the robustness issue, end to end through the `tlite` binary: each
//! ends with exactly one `error:` line naming the problem, a non-zero exit, no panic, no file
//! deleted and nothing left behind. (The library tests cover each class in depth; this checks
//! what a user sees.)

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

fn tlite(cwd: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tlite"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run tlite");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must fail; checks the error line and returns it.
fn refused(cwd: &Path, args: &[&str], needle: &str) -> String {
    let (ok, err) = tlite(cwd, args);
    assert!(!ok, "tlite {args:?} succeeded: {err}");
    assert!(!err.contains("panicked"), "tlite {args:?} panicked: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "tlite {args:?}: not one error line: {err}");
    assert!(
        errors[0].contains(needle),
        "tlite {args:?}: `{}` does not name `{needle}`",
        errors[0]
    );
    errors[0].to_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// Names in `dir` other than `keep`.
fn extra_entries(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn hostile_checkpoints_are_refused_by_convert_and_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "rotary factor 7",
            json!({"partial_rotary_factor": 7}),
            "partial_rotary_factor",
        ),
        (
            "2^62 layers",
            json!({"num_hidden_layers": 1u64 << 62}),
            "num_hidden_layers",
        ),
        (
            "1e8 layers",
            json!({"num_hidden_layers": 100_000_000}),
            "num_hidden_layers",
        ),
        (
            "negative eps",
            json!({"rms_norm_eps": -1e-5}),
            "rms_norm_eps",
        ),
        ("odd head_dim", json!({"head_dim": 15}), "even"),
    ];
    for (what, edit, needle) in cases {
        let ck = root.join("ck");
        let (ok, err) = tlite(root, &["synth", "tiny-llama", "-o", s(&ck), "--force"]);
        assert!(ok, "{err}");
        edit_json(&ck.join("config.json"), |v| {
            for (k, x) in edit.as_object().unwrap() {
                v[k] = x.clone();
            }
        });
        let out = root.join("out");
        refused(root, &["convert", s(&ck), "-o", s(&out)], needle);
        refused(root, &["inspect", s(&ck)], needle);
        assert!(!out.exists(), "{what}: output written");
        assert_eq!(extra_entries(root, &["ck"]), Vec::<String>::new(), "{what}");
    }
    // An absolute shard path and a tensor in two shards.
    let ck = root.join("ck");
    tlite(root, &["synth", "tiny-llama", "-o", s(&ck), "--force"]);
    let outside = root.join("outside.safetensors");
    std::fs::rename(ck.join("model.safetensors"), &outside).unwrap();
    let idx = json!({"weight_map": {"model.embed_tokens.weight": s(&outside)}});
    std::fs::write(ck.join("model.safetensors.index.json"), idx.to_string()).unwrap();
    refused(root, &["inspect", s(&ck)], "relative");
    std::fs::copy(&outside, ck.join("a.safetensors")).unwrap();
    std::fs::copy(&outside, ck.join("b.safetensors")).unwrap();
    let idx = json!({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}});
    std::fs::write(ck.join("model.safetensors.index.json"), idx.to_string()).unwrap();
    refused(
        root,
        &["convert", s(&ck), "-o", s(&root.join("o2"))],
        "also stored in",
    );
}

#[test]
fn hostile_deployable_models_are_refused_by_run_and_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ck = root.join("ck");
    let out = root.join("out");
    assert!(tlite(root, &["synth", "tiny-gemma3", "-o", s(&ck)]).0);
    assert!(tlite(root, &["convert", s(&ck), "-o", s(&out), "-g", "32"]).0);
    let model = out.join("model.m0e4.safetensors");
    let good = std::fs::read(&model).unwrap();
    for (edit, needle) in [
        (json!({"sliding_layers": []}), "sliding-window pattern"),
        (json!({"head_dim": 15}), "even"),
        (
            json!({"partial_rotary_factor": 7.0}),
            "partial_rotary_factor",
        ),
    ] {
        // Rewrite the manifest's config inside the safetensors header.
        let (_, meta) = safetensors::SafeTensors::read_metadata(&good).unwrap();
        let st = safetensors::SafeTensors::deserialize(&good).unwrap();
        let mut man: Value =
            serde_json::from_str(&meta.metadata().as_ref().unwrap()["tlite.manifest"]).unwrap();
        for (k, x) in edit.as_object().unwrap() {
            man["config"][k] = x.clone();
        }
        let md = std::collections::HashMap::from([("tlite.manifest".to_owned(), man.to_string())]);
        safetensors::serialize_to_file(st.tensors(), Some(md), &model).unwrap();
        refused(root, &["inspect", s(&out)], needle);
        refused(root, &["run", s(&out), "-p", "hi", "-n", "2"], needle);
        refused(
            root,
            &["bench", s(&out), "-p", "4", "-n", "2", "-r", "1"],
            needle,
        );
    }
    std::fs::write(&model, &good).unwrap();
    refused(
        root,
        &["run", s(&out), "-p", "hi", "--max-seq", "10000000"],
        "--max-seq",
    );
    refused(
        root,
        &[
            "run",
            s(&out),
            "-p",
            "hi",
            "--max-seq",
            "18446744073709551615",
        ],
        "--max-seq",
    );
    refused(root, &["bench", s(&out), "-r", "0"], "0");
}

#[test]
fn nonsense_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ck = root.join("ck");
    assert!(tlite(root, &["synth", "tiny-llama", "-o", s(&ck)]).0);
    let text = root.join("t.txt");
    std::fs::write(
        &text,
        "the quick brown fox jumps over the lazy dog ".repeat(40),
    )
    .unwrap();
    for ctx in ["0", "1"] {
        refused(
            root,
            &["ppl", s(&ck), "--data", s(&text), "--ctx", ctx],
            "--ctx",
        );
    }
}
