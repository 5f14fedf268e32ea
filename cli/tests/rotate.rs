//! `tlite rotate` and `tlite convert --rotate` end to end on tiny models: the rotated folder is
//! a checkpoint the other commands open, a rotated model converts and keeps its perplexity, and
//! families rotation cannot keep equivalent are refused with the reason.

mod common;

use common::{tlite_text as tlite, tmp};

use std::process::Command;

/// `tlite ppl --json`'s perplexity of `model` on `data` (windows of 64).
fn ppl(model: &str, data: &str) -> f64 {
    let out = Command::new(env!("CARGO_BIN_EXE_tlite"))
        .args(["ppl", model, "--data", data, "--ctx", "64", "--json"])
        .output()
        .expect("run tlite");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The record says where it was measured: the CPU reference, or a GPU and its precision.
    let device = v["device"].as_str().unwrap_or_default();
    assert!(
        device == "cpu (candle reference, f32)"
            || device.ends_with("(f32)")
            || device.contains("cooperative matrices"),
        "device: {device:?}"
    );
    v["ppl"].as_f64().unwrap()
}

#[test]
fn rotate_then_measure_and_convert() {
    let t = tempfile::tempdir().unwrap();
    let (ck, rot, out, data) = (
        tmp(&t, "ck"),
        tmp(&t, "rot"),
        tmp(&t, "out"),
        tmp(&t, "data.txt"),
    );
    std::fs::write(
        &data,
        "the quick brown fox jumps over the lazy dog. ".repeat(40),
    )
    .unwrap();
    let (ok, text) = tlite(&["synth", "tiny-qwen2", "-o", &ck]);
    assert!(ok, "{text}");
    let (ok, text) = tlite(&["rotate", &ck, "-o", &rot, "--seed", "3"]);
    assert!(ok && text.contains("Hadamard"), "{text}");
    let config = std::fs::read_to_string(format!("{rot}/config.json")).unwrap();
    assert!(
        config.contains("\"tie_word_embeddings\": false"),
        "{config}"
    );
    assert!(std::path::Path::new(&format!("{rot}/tokenizer.json")).is_file());
    let (pa, pb) = (ppl(&ck, &data), ppl(&rot, &data));
    assert!((pb / pa - 1.0).abs() < 1e-5, "PPL {pa} → rotated {pb}");
    // The output folder is refused a second time without --force.
    let (ok, text) = tlite(&["rotate", &ck, "-o", &rot]);
    assert!(!ok && text.contains("--force"), "{text}");

    let (ok, text) = tlite(&["convert", &ck, "-o", &out, "-g", "32", "--rotate"]);
    assert!(ok && text.contains("rotated (seed 0)"), "{text}");
    let (ok, text) = tlite(&["inspect", &out]);
    assert!(ok && text.contains("lm_head"), "{text}");
    let (ok, text) = tlite(&["convert", &ck, "-o", &out, "--rotate-seed", "1"]);
    assert!(!ok && text.contains("--rotate"), "{text}");
}

#[test]
fn sandwich_norms_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (ck, rot) = (tmp(&t, "ck"), tmp(&t, "rot"));
    let (ok, text) = tlite(&["synth", "tiny-gemma3", "-o", &ck]);
    assert!(ok, "{text}");
    let (ok, text) = tlite(&["rotate", &ck, "-o", &rot]);
    assert!(
        !ok && text.contains("cannot rotate") && text.contains("pre-norm families only"),
        "{text}"
    );
    let (ok, text) = tlite(&["convert", &ck, "-o", &rot, "--rotate"]);
    assert!(!ok && text.contains("cannot rotate"), "{text}");
    assert!(!std::path::Path::new(&rot).exists());
}
