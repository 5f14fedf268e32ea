//! `tlite export` through the binary: a deployable model becomes a Hugging Face folder (index,
//! shards, config.json, tokenizer) that `tlite convert` takes back and the CPU reference runs
//! with the same greedy tokens; what is not a deployable model is refused.

mod common;

use common::{Out, tlite};

fn tokens(r: &Out) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

#[test]
fn export_converts_back_and_runs_the_same() {
    let t = tempfile::tempdir().unwrap();
    let p = |n: &str| t.path().join(n).to_string_lossy().into_owned();
    let (ck, m, hf, m2) = (p("ck"), p("m0e4"), p("hf"), p("m0e4-again"));
    assert!(tlite(&["synth", "tiny-qwen2", "-o", &ck]).ok);
    assert!(tlite(&["convert", &ck, "-o", &m, "-g", "32"]).ok);

    let r = tlite(&[
        "export",
        &m,
        "-o",
        &hf,
        "--dtype",
        "f32",
        "--shard-size",
        "128K",
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let shards = v["shards"].as_array().unwrap();
    assert!(shards.len() > 1, "{v}");
    for s in shards {
        assert!(t.path().join("hf").join(s.as_str().unwrap()).is_file());
    }
    for f in [
        "config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "generation_config.json",
    ] {
        assert!(t.path().join("hf").join(f).is_file(), "{f}");
    }

    // The export is a checkpoint: it converts, and runs on the CPU reference with the
    // deployable model's greedy tokens (the same weights in f32).
    let r = tlite(&["convert", &hf, "-o", &m2, "-g", "32"]);
    assert!(r.ok, "{}", r.stderr);
    let run = |model: &str| {
        tlite(&[
            "run",
            model,
            "--device",
            "cpu",
            "-p",
            "the cat is",
            "-n",
            "12",
            "--json",
        ])
    };
    let (a, b) = (run(&m), run(&hf));
    assert!(a.ok && b.ok, "{}{}", a.stderr, b.stderr);
    assert_eq!(tokens(&a), tokens(&b));

    // Existing output without --force, and inputs that are not deployable models.
    let r = tlite(&["export", &m, "-o", &hf]);
    assert!(!r.ok && r.stderr.contains("--force"), "{}", r.stderr);
    assert!(tlite(&["export", &m, "-o", &hf, "--force", "--dtype", "bf16"]).ok);
    let r = tlite(&["export", &ck, "-o", &p("x")]);
    assert!(
        !r.ok && r.stderr.contains("not a deployable model"),
        "{}",
        r.stderr
    );
    let r = tlite(&["export", &m, "-o", &p("x"), "--dtype", "int8"]);
    assert!(
        !r.ok && r.stderr.contains("bf16, f16 and f32"),
        "{}",
        r.stderr
    );
}
