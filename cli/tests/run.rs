//! `tlite run` end to end on a tiny random model: streamed text on stdout, header and statistics
//! on stderr, `--json`, `--verbose`'s memory report, and the errors a user can hit (a Hugging
//! Face folder, a prompt longer than the context, `--chat` without a template).

mod common;

use common::{no_gpu, tlite, tmp};

use std::io::Write as _;

#[test]
fn run_generates_on_a_tiny_model() {
    let t = tempfile::tempdir().unwrap();
    let (ck, model) = (tmp(&t, "ck"), tmp(&t, "m"));
    assert!(tlite(&["synth", "tiny-llama", "-o", &ck]).ok);
    let r = tlite(&["run", &ck, "-p", "hi"]);
    assert!(!r.ok && r.stderr.contains("tlite convert"), "{}", r.stderr);
    let r = tlite(&["convert", &ck, "-o", &model, "-g", "32"]);
    assert!(r.ok, "{}", r.stderr);

    let prompt = "the cat is on the mat, then";
    // 8 tokens of `prompt` with a context of 64 and `extra` flags.
    let run = |extra: &[&str]| {
        let base = ["run", &model, "-p", prompt, "-n", "8", "--max-seq", "64"];
        tlite(&[&base[..], extra].concat())
    };
    let r = run(&["--verbose", "--kv-cache", "f32"]);
    if no_gpu(&r) {
        return;
    }
    assert!(r.ok, "{}", r.stderr);
    let _ = writeln!(std::io::stderr(), "{}", r.stderr);
    // The header precedes everything tlite prints (the Vulkan loader may write its own lines
    // first, e.g. about XDG_RUNTIME_DIR).
    let first_tlite_line = r
        .stderr
        .lines()
        .position(|l| l.starts_with("adapter: ") || l.starts_with("run: "));
    let header_line = r.stderr.lines().position(|l| l.starts_with("adapter: "));
    assert!(
        header_line.is_some() && header_line == first_tlite_line,
        "the header comes first: {}",
        r.stderr
    );
    for want in [
        "| greedy |",
        "KV cache",
        "one-buffer-per-tensor",
        "prefill",
        "decode",
        "tok/s",
    ] {
        assert!(r.stderr.contains(want), "`{want}` missing: {}", r.stderr);
    }
    // 2 layers × 2 × 2 kv heads × 64 positions × 16 head dim × 4 B.
    assert!(r.stderr.contains("KV cache 32.0 KiB"), "{}", r.stderr);
    assert!(!r.stderr.contains("| KV cache f16"), "{}", r.stderr);
    // By default, as with --kv-cache f16: half of it where the adapter has f16 (the header says
    // so), the f32 cache where it has not.
    let mut f16 = None;
    for extra in [&["--verbose"][..], &["--verbose", "--kv-cache", "f16"]] {
        let r = run(extra);
        assert!(r.ok, "{}", r.stderr);
        let half = r.stderr.contains("| KV cache f16");
        let want = match half {
            true => {
                "KV cache 16.0 KiB = 2 layers × 2 (K, V) × 2 kv heads × 64 positions × 16 head dim × 2 B"
            }
            false => "KV cache 32.0 KiB",
        };
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
        assert!(
            r.stderr.contains("f16 no") || half,
            "an adapter with f16 takes the f16 cache: {}",
            r.stderr
        );
        f16 = Some(half);
    }
    let bytes = if f16 == Some(true) { 2 } else { 4 };

    let r = run(&["--json"]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
    let tokens = v["tokens"].as_array().unwrap();
    assert!(tokens.len() <= 8);
    assert_eq!(v["stats"]["generated"].as_u64(), Some(tokens.len() as u64));
    assert_eq!(
        v["memory"]["kv_bytes"].as_u64(),
        Some(2 * 2 * 2 * 64 * 16 * bytes)
    );
    // The warm-up (repeated for --warmup-ms, default 200: at least once), once with 0, none
    // with --no-warmup; the tokens are the same.
    assert!(v["warmup_rounds"].as_u64().is_some_and(|n| n >= 1), "{v}");
    for (extra, rounds) in [(&["--warmup-ms", "0"][..], 1), (&["--no-warmup"][..], 0)] {
        let r = run(&[&["--json"][..], extra].concat());
        assert!(r.ok, "{}", r.stderr);
        let w: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(w["warmup_rounds"].as_u64(), Some(rounds), "{w}");
        assert_eq!(w["tokens"], v["tokens"], "{extra:?}");
    }
    // The same greedy run streams the same text.
    let streamed = run(&[]);
    assert_eq!(
        streamed.stdout,
        format!("{}\n", v["text"].as_str().unwrap())
    );

    let r = tlite(&[
        "run",
        &model,
        "-p",
        &"x".repeat(70),
        "--max-seq",
        "64",
        "-n",
        "4",
    ]);
    assert!(!r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains("the prompt is 70 tokens") && r.stderr.contains("context of 64"),
        "{}",
        r.stderr
    );
    let r = tlite(&["run", &model, "--chat", "-p", "hi", "--max-seq", "64"]);
    assert!(
        !r.ok && r.stderr.contains("no chat template"),
        "{}",
        r.stderr
    );
}

/// `tlite bench` on a tiny model: the pp line gives the prompt's time to its first token's
/// logits, and `--json` the same figure as `pp_ms`, consistent with `pp_tok_s`.
#[test]
fn bench_reports_the_time_to_the_first_token() {
    let t = tempfile::tempdir().unwrap();
    let (ck, model) = (tmp(&t, "ck"), tmp(&t, "m"));
    assert!(tlite(&["synth", "tiny-llama", "-o", &ck]).ok);
    let r = tlite(&["convert", &ck, "-o", &model, "-g", "32"]);
    assert!(r.ok, "{}", r.stderr);
    let args = ["bench", &model, "-p", "9", "-n", "4", "-r", "1"];
    let r = tlite(&args);
    if no_gpu(&r) {
        return;
    }
    assert!(r.ok, "{}", r.stderr);
    let pp = r.stdout.lines().find(|l| l.starts_with("pp9 "));
    assert!(
        pp.is_some_and(|l| l.contains("ms to the first token's logits")),
        "{}",
        r.stdout
    );
    let r = tlite(&[&args[..], &["--json"]].concat());
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let (tok_s, ms) = (
        v["pp_tok_s"].as_f64().unwrap(),
        v["pp_ms"].as_f64().unwrap(),
    );
    assert!(tok_s > 0.0 && ms > 0.0, "{v}");
    assert!((ms * tok_s / 1e3 - 9.0).abs() < 1e-6, "{v}");
    // The warm-up: one repetition with --warmup-ms 0; with 2 s, repetitions until 2 s have
    // passed (a tiny model's take milliseconds).
    for (ms, at_least) in [("0", 1), ("2000", 2)] {
        let r = tlite(&[&args[..], &["--json", "--warmup-ms", ms]].concat());
        assert!(r.ok, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        let n = v["warmup_reps"].as_u64().unwrap();
        assert!(n >= at_least && (ms != "0" || n == 1), "{v}");
    }
    // At depth: tg from position 9, after a fill in prefill steps of at most -p = 4 tokens
    // (4 + 4 + 1), both with the steps in flight and one at a time.
    for lead in ["4", "0"] {
        let deep = ["bench", &model, "-p", "4", "-d", "9", "-n", "3", "-r", "1"];
        let r = tlite(&[&deep[..], &["--lead", lead]].concat());
        assert!(r.ok, "{}", r.stderr);
        assert!(
            r.stdout.lines().any(|l| l.starts_with("tg3 @ d9 ")),
            "{}",
            r.stdout
        );
    }
    let r = tlite(&[
        "bench", &model, "-p", "4", "-d", "9", "-n", "3", "-r", "1", "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["tg_depth"].as_u64(), Some(9), "{v}");
    assert!(v["tg_tok_s"].as_f64().is_some_and(|t| t > 0.0), "{v}");
}
