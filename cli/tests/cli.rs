//! The `tlite` binary end to end: synth → inspect → convert → inspect on a tiny model, errors
//! that name the problem, and `inspect` on the real SmolLM2 when it was fetched.

mod common;

use common::{tlite_text as tlite, tmp};

use std::process::Command;

#[test]
fn synth_convert_inspect_tiny() {
    let t = tempfile::tempdir().unwrap();
    let (ck, out) = (tmp(&t, "ck"), tmp(&t, "out"));
    let (ok, text) = tlite(&["synth", "tiny-gemma3", "-o", &ck]);
    assert!(ok, "{text}");
    let (ok, text) = tlite(&["inspect", &ck]);
    assert!(
        ok && text.contains("Gemma3") && text.contains("parameters"),
        "{text}"
    );
    let (ok, text) = tlite(&[
        "convert",
        &ck,
        "-o",
        &out,
        "-g",
        "32",
        "--keep",
        "embed_tokens=f16",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = tlite(&["inspect", &out]);
    assert!(
        ok && text.contains("checksums verified") && text.contains("f16"),
        "{text}"
    );
    let (ok, text) = tlite(&["convert", &ck, "-o", &out]);
    assert!(!ok && text.contains("--force"), "{text}");
    let (ok, text) = tlite(&[
        "quant-error",
        &format!("{ck}/model.safetensors"),
        "-g",
        "32",
        "--json",
    ]);
    assert!(ok && text.contains("m0e4-search"), "{text}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    // A repo id that is not cached, offline (no test reaches the real hub).
    let out = Command::new(env!("CARGO_BIN_EXE_tlite"))
        .args(["inspect", "no/such-model"])
        .env("HF_HOME", t.path())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && text.contains("HF_HUB_OFFLINE")
            && text.contains("no complete snapshot"),
        "{text}"
    );
    let (ok, text) = tlite(&["convert", "/nonexistent/folder", "-o", &tmp(&t, "x")]);
    assert!(!ok && text.contains("error: "), "{text}");
    let (ok, text) = tlite(&["synth", "tiny-bert", "-o", &tmp(&t, "y")]);
    assert!(!ok && text.contains("unknown preset"), "{text}");
    let (ok, text) = tlite(&["convert", "x", "-o", "y", "-g", "33"]);
    assert!(!ok, "{text}");
}

#[test]
fn inspect_smollm2_reports_its_parameters() {
    let name = "smollm2-135m-instruct";
    let dir = tlite_gguf::fixtures::cache_dir().join("hf").join(name);
    let Some(gguf) = tlite_gguf::fixtures::gguf_or_skip(name, "inspect smollm2") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let hf = tmp(&t, "smol-hf");
    let src = if dir.join(".imported").is_file() {
        dir.to_string_lossy().into_owned()
    } else {
        let (ok, text) = tlite(&["import-gguf", &gguf.to_string_lossy(), "-o", &hf]);
        assert!(ok, "{text}");
        hf.clone()
    };
    let (ok, text) = tlite(&["inspect", &src]);
    assert!(ok && text.contains("134515008 parameters"), "{text}");
    let out = tmp(&t, "smol-m0e4");
    let (ok, text) = tlite(&[
        "convert",
        &src,
        "-o",
        &out,
        "-g",
        "128",
        "--quantizer",
        "minmax",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = tlite(&["inspect", &out]);
    assert!(
        ok && text.contains("134515008 parameters") && text.contains("checksums verified"),
        "{text}"
    );
}

/// A few kilobytes of English-like text for the byte-level tokenizer of synthetic models.
fn corpus(path: &str) {
    let words = [
        "the",
        "model",
        "weights",
        "are",
        "quantized",
        "to",
        "four",
        "bits",
        "and",
        "a",
        "group",
        "shares",
        "one",
        "scale",
        "while",
        "perplexity",
        "measures",
        "cost",
    ];
    let mut s = String::new();
    let mut x = 7u64;
    for i in 0..6000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s += words[(x >> 33) as usize % words.len()];
        s += if i % 13 == 12 { ".\n" } else { " " };
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn sweep_resume_plot_and_calibrated_quant_error_tiny() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_string_lossy().into_owned();
    let (ck, text, json, svg) = (
        format!("{dir}/ck"),
        format!("{dir}/corpus.txt"),
        format!("{dir}/sweep.json"),
        format!("{dir}/plot.svg"),
    );
    corpus(&text);
    let (ok, out) = tlite(&["synth", "tiny-llama", "-o", &ck]);
    assert!(ok, "{out}");
    let sweep = |configs: &str, resume: bool| {
        let mut args = vec![
            "sweep",
            &ck,
            "--data",
            &text,
            "--ctx",
            "64",
            "--chunks",
            "2",
            "--calib-chunks",
            "2",
            "--configs",
            configs,
            "--json",
            &json,
        ];
        if resume {
            args.push("--resume");
        }
        tlite(&args)
    };
    let (ok, out) = sweep("m0e4-search@32,q4_0@32,m0e4-search+imp@32", false);
    assert!(ok && out.contains("| q4_0@32 | 4.500 |"), "{out}");
    let (ok, out) = sweep("q4_0@32,q4_0+f16emb@32", true);
    assert!(ok && out.contains("1 configurations to run"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 4);
    assert!(report["calibration"]["tokens"].as_u64().unwrap() == 128);
    let (ok, out) = tlite(&["sweep-plot", &json, "-o", &svg]);
    assert!(ok && out.contains("m0e4-search+imp@32"), "{out}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let (ok, out) = tlite(&["sweep", &format!("{ck}/model.safetensors"), "--data", &text]);
    assert!(!ok, "{out}");

    let calibrated = |extra: &[&str]| {
        let mut args = vec![
            "quant-error",
            &ck,
            "-g",
            "32",
            "--calibration",
            &text,
            "--ctx",
            "64",
            "--calib-chunks",
            "2",
            "--json",
        ];
        args.extend_from_slice(extra);
        tlite(&args)
    };
    let (ok, out) = calibrated(&[]);
    assert!(
        ok && out.contains("m0e4-search") && out.contains("q_proj"),
        "{out}"
    );
    // GPTQ columns, and every column's output error from the calibration's Gram matrices
    let (ok, out) = calibrated(&["--schemes", "m0e4-search,q4_0", "--gptq"]);
    assert!(
        ok && out.contains("\"q4_0+gptq\"") && out.contains("\"output_error\""),
        "{out}"
    );
    let (ok, out) = tlite(&["quant-error", &ck, "--gptq"]);
    assert!(!ok && out.contains("--calibration"), "{out}");
    let (ok, out) = tlite(&[
        "quant-error",
        &format!("{ck}/model.safetensors"),
        "--calibration",
        &text,
    ]);
    assert!(!ok && out.contains("checkpoint folder"), "{out}");
}

/// `tlite ARGS` fails with one error line that names `flag`, and no panic.
fn refused(args: &[&str], flag: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tlite"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run tlite");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    // clap adds "For more information, try '--help'." after a blank line; anyhow prints the
    // error alone.
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: ") || l.starts_with("Error: "))
        .unwrap_or_else(|| panic!("{args:?}: no error line: {stderr}"));
    assert!(
        error.contains(flag),
        "{args:?}: `{flag}` not named: {stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.contains(flag)).count(),
        1,
        "{args:?}: one error line: {stderr}"
    );
    error.to_owned()
}

#[test]
fn numeric_flags_out_of_range_are_refused_naming_the_flag() {
    // Refused while the arguments are parsed: no model is opened.
    for (args, flag, range) in [
        (&["bench", "m", "-r", "0"][..], "--reps", "at least 1"),
        (&["bench", "m", "-p", "0"], "--prompt", "at least 1"),
        (&["bench", "m", "--lead", "17"], "--lead", "at most 16"),
        (&["bench", "m", "-d", "99999999999"], "--depth", "at most"),
        (
            &["run", "m", "-p", "hi", "--lead", "99"],
            "--lead",
            "at most 16",
        ),
        (
            &["ppl", "m", "--data", "d", "--ctx", "0"],
            "--ctx",
            "at least 2",
        ),
        (
            &["ppl", "m", "--data", "d", "--ctx", "1"],
            "--ctx",
            "at least 2",
        ),
        (
            &["ppl", "m", "--data", "d", "--chunks", "0"],
            "--chunks",
            "at least 1",
        ),
        (
            &["run", "m", "-p", "hi", "--max-seq", "0"],
            "--max-seq",
            "at least 1",
        ),
        (
            &["run", "m", "-p", "hi", "--max-seq", "18446744073709551615"],
            "--max-seq",
            "at most",
        ),
        (
            &["run", "m", "-p", "hi", "--temperature", "-0.5"],
            "--temperature",
            "≥ 0",
        ),
        (
            &["run", "m", "-p", "hi", "--temperature", "NaN"],
            "--temperature",
            "finite",
        ),
        (
            &["run", "m", "-p", "hi", "--top-p", "0"],
            "--top-p",
            "(0, 1]",
        ),
        (
            &["run", "m", "-p", "hi", "-n", "0"],
            "--max-tokens",
            "at least 1",
        ),
        (
            &["convert", "x", "-o", "y", "-g", "0"],
            "--group-size",
            "multiple of 8",
        ),
        (
            &["convert", "x", "-o", "y", "--binding-limit", "5"],
            "--binding-limit",
            "between",
        ),
        (
            &["sweep", "x", "--data", "d", "--ctx", "2"],
            "--ctx",
            "at least 3",
        ),
        (
            &["quant-error", "x", "--calib-chunks", "0"],
            "--calib-chunks",
            "at least 1",
        ),
        (
            &["synth", "tiny-llama", "-o", "y", "--layers", "0"],
            "--layers",
            "between 1 and 1024",
        ),
        (
            &["priority-bench", "m", "--probe-interval-ms", "1e300"],
            "--probe-interval-ms",
            "at most 60000",
        ),
        (
            &["priority-bench", "m", "--idle-ms", "18446744073709551615"],
            "--idle-ms",
            "between",
        ),
    ] {
        let e = refused(args, flag);
        assert!(e.contains(range), "{args:?}: `{range}` missing: {e}");
    }
    // A window of 2 tokens scores no token unless every position is scored (--all): refused
    // by tlite-eval's check, before the model is opened.
    let e = refused(
        &["ppl", "no/such-model", "--data", "d", "--ctx", "2"],
        "--ctx",
    );
    assert!(e.contains("use --ctx 3 or more"), "{e}");
}

#[test]
fn contexts_beyond_the_models_positions_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_string_lossy().into_owned();
    let (ck, model, text) = (
        format!("{dir}/ck"),
        format!("{dir}/m"),
        format!("{dir}/corpus.txt"),
    );
    corpus(&text);
    assert!(tlite(&["synth", "tiny-llama", "-o", &ck]).0);
    let (ok, out) = tlite(&["convert", &ck, "-o", &model, "-g", "32"]);
    assert!(ok, "{out}");
    // tiny-llama has 256 positions; checked before a GPU is looked for.
    let e = refused(
        &["run", &model, "-p", "hi", "--max-seq", "10000000"],
        "--max-seq",
    );
    assert!(e.contains("the model's 256 positions"), "{e}");
    let e = refused(&["ppl", &ck, "--data", &text, "--ctx", "1000"], "--ctx");
    assert!(e.contains("the model's 256 positions"), "{e}");
}
