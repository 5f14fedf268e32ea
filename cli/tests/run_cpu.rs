//! `tlite run --device cpu`: the CPU reference through the same tokenizer, sampler and
//! generation loop as the GPU. On tiny models (CI): the greedy ids equal the reference's own
//! greedy decoding, for a deployable model and an unquantized checkpoint. On SmolLM2 (a fixture
//! test): the greedy continuation of the goldens' prompt equals transformers' (identical, or
//! first differing at a near tie, as in eval/tests/goldens.rs).

mod common;

use common::{Out, tlite};

use std::io::Write as _;

use tlite_converter::checkpoint::Checkpoint;
use tlite_eval::ppl::argmax;
use tlite_eval::reference::{Logits, ReferenceModel, WeightSource, log_softmax_rows};
use tlite_gguf::fixtures;
use tlite_model::deploy::DeployedModel;

fn json(r: &Out) -> serde_json::Value {
    assert!(r.ok, "{}", r.stderr);
    serde_json::from_str(r.stdout.trim()).expect("one JSON object")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    fixtures::golden_ids(v)
}

/// Greedy decoding with the reference directly, stopping at any of `eos`.
fn reference_greedy(src: &WeightSource, prompt: &[u32], n: usize, eos: &[u32]) -> Vec<u32> {
    let r = ReferenceModel::load(src).unwrap();
    let mut cache = r.new_cache(prompt.len() + n).unwrap();
    let mut logits = r.forward(prompt, 0, &mut cache, Logits::Last).unwrap();
    let mut out = Vec::new();
    loop {
        let next = argmax(log_softmax_rows(&logits).unwrap().last().unwrap()) as u32;
        if eos.contains(&next) || out.len() == n {
            return out;
        }
        out.push(next);
        logits = r
            .forward(
                &[next],
                prompt.len() + out.len() - 1,
                &mut cache,
                Logits::Last,
            )
            .unwrap();
    }
}

#[test]
fn cpu_run_is_the_reference_greedy_decoding() {
    let t = tempfile::tempdir().unwrap();
    let p = |n: &str| t.path().join(n).to_string_lossy().into_owned();
    let (ck, m) = (p("ck"), p("m0e4"));
    assert!(tlite(&["synth", "tiny-gemma2", "-o", &ck]).ok);
    assert!(tlite(&["convert", &ck, "-o", &m, "-g", "32"]).ok);
    let prompt = "the cat is on the mat, then";
    let deployed = DeployedModel::open(t.path().join("m0e4").as_path()).unwrap();
    let checkpoint = Checkpoint::open_dir(&t.path().join("ck")).unwrap();
    for (model, src) in [
        (&m, WeightSource::Deployed(&deployed)),
        (&ck, WeightSource::Checkpoint(&checkpoint)),
    ] {
        let r = tlite(&[
            "run",
            model,
            "--device",
            "cpu",
            "-p",
            prompt,
            "-n",
            "10",
            "--max-seq",
            "64",
            "--json",
        ]);
        let v = json(&r);
        assert_eq!(v["device"], "cpu");
        let want = reference_greedy(&src, &ids(&v["prompt_ids"]), 10, &[2]);
        assert_eq!(ids(&v["tokens"]), want, "{model}");
        // Streaming prints the same text.
        let s = tlite(&[
            "run",
            model,
            "--device",
            "cpu",
            "-p",
            prompt,
            "-n",
            "10",
            "--max-seq",
            "64",
        ]);
        assert!(s.ok, "{}", s.stderr);
        assert_eq!(s.stdout, format!("{}\n", v["text"].as_str().unwrap()));
        assert!(
            s.stderr.starts_with("device: cpu") && s.stderr.contains("decode"),
            "{}",
            s.stderr
        );
    }
    // A prompt longer than the context is refused before any model work.
    let r = tlite(&[
        "run",
        &m,
        "--device",
        "cpu",
        "-p",
        prompt,
        "-n",
        "10",
        "--max-seq",
        "8",
    ]);
    assert!(!r.ok && r.stderr.contains("--max-seq"), "{}", r.stderr);
}

/// Named tolerance: where transformers' top-2 margin is below this, a different greedy token is
/// a near tie, not an error (as in eval/tests/goldens.rs).
const GREEDY_TIE_MARGIN: f64 = 0.05;

#[test]
fn cpu_run_of_smollm2_continues_as_the_goldens() {
    let name = "smollm2-135m-instruct";
    let Some(dir) =
        fixtures::imported_or_skip(name, "cpu_run_of_smollm2_continues_as_the_goldens").unwrap()
    else {
        return;
    };
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures::golden_path(name)).unwrap())
            .unwrap();
    let g = &golden["greedy"];
    let want = ids(&g["ids"]);
    let n = want.len().to_string();
    let r = tlite(&[
        "run",
        dir.to_str().unwrap(),
        "--device",
        "cpu",
        "-p",
        g["prompt_text"].as_str().unwrap(),
        "-n",
        &n,
        "--max-seq",
        "64",
        "--json",
    ]);
    let v = json(&r);
    assert_eq!(
        ids(&v["prompt_ids"]),
        ids(&g["prompt_ids"]),
        "the same prompt ids"
    );
    let got = ids(&v["tokens"]);
    let margins = g["top2_margin"].as_array().unwrap();
    match got.iter().zip(&want).position(|(a, b)| a != b) {
        None => assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}"),
        Some(step) => {
            let m = margins[step].as_f64().unwrap();
            assert!(
                m < GREEDY_TIE_MARGIN,
                "greedy differs at step {step}: {} vs {} (top-2 margin {m})",
                got[step],
                want[step]
            );
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "{name}: tlite run --device cpu: {} tokens as the goldens | {:.2} tok/s decode, {:.1} tok/s prefill",
        got.len(),
        v["stats"]["decode_tok_s"].as_f64().unwrap(),
        v["stats"]["prefill_tok_s"].as_f64().unwrap()
    );
}
