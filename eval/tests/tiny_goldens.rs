//! The reference forward pass against logits computed outside this project, on the tiny
//! random-weight checkpoint of every supported family (`tlite synth tiny-<family>`):
//! transformers 5.17 (f32, eager attention) for llama, qwen2, gemma, gemma2 and gemma3, and an
//! independent plain-PyTorch ChatGLM2 forward for chatglm (transformers has none). The goldens
//! in `fixtures/goldens/tiny/` were made by `fixtures/tiny_goldens.py`.
//!
//! Per family: the checkpoint is regenerated and must be byte-identical (sha256) to the one
//! the goldens were computed from; the logits of the 40-token sequence (past the sliding window
//! of 8) at every position agree within [`MAX_ABS_LOGIT_DIFF`]; the same sequence run as a
//! prefill plus single-token steps through the KV cache agrees with the full pass within
//! [`KV_PATH_MAX_DIFF`]; and the 16-token greedy continuation decoded with the KV cache is
//! identical, or first differs where the goldens' top-2 margin is below [`GREEDY_TIE_MARGIN`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_eval::reference::{Logits, ReferenceModel, WeightSource};
use tlite_gguf::fixtures;
use tlite_model::arch::Family;

/// Largest |Δlogit| allowed against the goldens (stored as exact float32 values). Both sides
/// compute in f32 with different summation orders (candle vs. PyTorch matmuls, softmax,
/// RMSNorm, RoPE tables); the goldens record the f32 rounding noise of their own pass against
/// an f64 rerun as `f32_vs_f64_max_abs`, about 1e-5 on these models (|logit| up to ~30), so
/// two f32 implementations should agree within a few 1e-5. 1e-3 leaves a wide margin over
/// that and stays far below any real model difference: dropping the sliding window moves
/// Gemma 2/3 logits by 5 to 6, half-split instead of interleaved RoPE moves ChatGLM's by 12.
const MAX_ABS_LOGIT_DIFF: f32 = 1e-3;
/// Largest |Δlogit| between the full pass and prefill + single-token KV-cache steps: the same
/// code on the same machine, differing only in how matmuls are blocked.
const KV_PATH_MAX_DIFF: f32 = 1e-4;
/// A greedy token may differ only where the goldens' top-2 logit margin is below this.
const GREEDY_TIE_MARGIN: f64 = 0.05;
/// Tokens of the sequence run as one prefill step before the single-token steps.
const PREFILL: usize = 5;

fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row count");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "row length");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// sha256 of `data`, as hex.
fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn golden_path(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/goldens/tiny")
        .join(format!("{family}.json"))
}

fn check(family: &str) {
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_path(family)).unwrap()).unwrap();
    let meta = &golden["meta"];
    assert_eq!(meta["family"].as_str(), Some(family));

    // The same checkpoint the goldens were computed from, byte for byte.
    let spec = SynthSpec::tiny(Family::from_name(family).unwrap());
    assert_eq!(
        meta["synth_preset"].as_str().and_then(SynthSpec::preset),
        Some(spec.clone()),
        "{family}: golden's synth_preset"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ck");
    write_checkpoint(&spec, &dir).unwrap();
    for (file, key) in [
        ("model.safetensors", "model_safetensors_sha256"),
        ("config.json", "config_json_sha256"),
    ] {
        let got = sha256_hex(&std::fs::read(dir.join(file)).unwrap());
        assert_eq!(
            Some(got.as_str()),
            meta[key].as_str(),
            "{family}: the synth output changed ({file} sha256 differs from the golden's); \
             regenerate the goldens with fixtures/tiny_goldens.py"
        );
    }
    let ck = Checkpoint::open_dir(&dir).unwrap();
    let model = ReferenceModel::load(&WeightSource::Checkpoint(&ck)).unwrap();

    // Logits at every position of one full pass.
    let input = fixtures::golden_ids(&golden["input_ids"]);
    let want = rows(&golden["logits"]);
    let mut cache = model.new_cache(input.len()).unwrap();
    let full = model
        .forward(&input, 0, &mut cache, Logits::All)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let diff = max_abs_diff(&full, &want);

    // The same sequence as a prefill, then one token a step through the KV cache.
    let mut cache = model.new_cache(input.len()).unwrap();
    let mut stepped = model
        .forward(&input[..PREFILL], 0, &mut cache, Logits::All)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (p, &t) in input.iter().enumerate().skip(PREFILL) {
        let row = model.forward(&[t], p, &mut cache, Logits::All).unwrap();
        stepped.extend(row.to_vec2::<f32>().unwrap());
    }
    let kv_diff = max_abs_diff(&stepped, &full);
    let kv_golden_diff = max_abs_diff(&stepped, &want);
    let _ = writeln!(
        std::io::stderr(),
        "{family}: max |Δlogit| vs {} = {diff:.2e} (f32 noise there {:.2e}); \
         KV-cache steps vs full pass {kv_diff:.2e}, vs golden {kv_golden_diff:.2e}",
        meta["generator"].as_str().unwrap(),
        meta["f32_vs_f64_max_abs"].as_f64().unwrap(),
    );
    assert!(
        diff <= MAX_ABS_LOGIT_DIFF,
        "{family}: max |Δlogit| {diff} > {MAX_ABS_LOGIT_DIFF}"
    );
    assert!(
        kv_diff <= KV_PATH_MAX_DIFF,
        "{family}: KV-cache path differs from the full pass by {kv_diff}"
    );
    assert!(
        kv_golden_diff <= MAX_ABS_LOGIT_DIFF,
        "{family}: KV-cache path max |Δlogit| {kv_golden_diff} > {MAX_ABS_LOGIT_DIFF}"
    );

    // Greedy continuation, decoded with the KV cache.
    let g = &golden["greedy"];
    let prompt = fixtures::golden_ids(&g["prompt_ids"]);
    let want = fixtures::golden_ids(&g["ids"]);
    let margins: Vec<f64> = g["top2_margin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let mut cache = model.new_cache(prompt.len() + want.len()).unwrap();
    let mut last = model.forward(&prompt, 0, &mut cache, Logits::Last).unwrap();
    for step in 0..want.len() {
        let next = argmax(&last.to_vec2::<f32>().unwrap()[0]);
        if next != want[step] {
            assert!(
                margins[step] < GREEDY_TIE_MARGIN,
                "{family}: greedy differs at step {step}: {next} vs {} (top-2 margin {})",
                want[step],
                margins[step]
            );
            let _ = writeln!(
                std::io::stderr(),
                "{family}: greedy first differs at step {step}, a near tie (margin {})",
                margins[step]
            );
            return;
        }
        last = model
            .forward(&[next], prompt.len() + step, &mut cache, Logits::Last)
            .unwrap();
    }
    let _ = writeln!(
        std::io::stderr(),
        "{family}: greedy continuation identical ({} tokens)",
        want.len()
    );
}

#[test]
fn tiny_llama_matches_transformers() {
    check("llama");
}

#[test]
fn tiny_qwen2_matches_transformers() {
    check("qwen2");
}

#[test]
fn tiny_gemma_matches_transformers() {
    check("gemma");
}

#[test]
fn tiny_gemma2_matches_transformers() {
    check("gemma2");
}

#[test]
fn tiny_gemma3_matches_transformers() {
    check("gemma3");
}

#[test]
fn tiny_chatglm_matches_independent_pytorch() {
    check("chatglm");
}
