//! Rotation of the residual stream (`tlite_converter::rotate`) leaves a model equivalent: the
//! CPU reference's logits of a rotated tiny model equal the original's at f32 rounding, on every
//! family it supports and through each kind of matrix (Sylvester Hadamard, Paley ⊗ Sylvester,
//! random orthogonal); families with sandwich norms are refused; `convert --rotate` quantizes
//! exactly the rotated checkpoint; and the rotated SmolLM2 keeps its perplexity (fixture).

use std::path::Path;

use tempfile::TempDir;
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::rotate::{RotateOptions, Rotated, rotate};
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_eval::load::Opened;
use tlite_eval::ppl::{self, PplOptions};
use tlite_eval::reference::{Logits, ReferenceModel, WeightSource};
use tlite_gguf::fixtures;
use tlite_model::arch::Family;

/// Deterministic token ids in `3..vocab`.
fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    let mut s = 0x2545_f491u64;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            3 + ((s >> 33) as usize % (vocab - 3)) as u32
        })
        .collect()
}

/// Logits of every position of `toks`.
fn logits(dir: &Path, toks: &[u32]) -> Vec<f32> {
    let ck = Checkpoint::open_dir(dir).unwrap();
    let m = ReferenceModel::load(&WeightSource::Checkpoint(&ck)).unwrap();
    let mut cache = m.new_cache(toks.len()).unwrap();
    m.forward(toks, 0, &mut cache, Logits::All)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// Largest |a − b| and largest |a|.
fn max_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    (d, a.iter().map(|x| x.abs()).fold(0f32, f32::max))
}

/// Rotated logits differ from the original's by at most this fraction of the largest logit
/// (f32 rounding of the rotated weights and of the forward pass; measured ≤ 1.3e-6).
const LOGIT_TOL: f32 = 1e-5;

#[test]
fn rotated_tiny_models_keep_their_logits() {
    // Hidden sizes pick each construction of Q: 64 = Sylvester, 48 = Paley(11) ⊗ H4,
    // 40 = Paley(19) ⊗ H2, 36 = none (random orthogonal).
    for (family, hidden, kind) in [
        (Family::Llama, 64, "Sylvester"),
        (Family::Qwen2, 48, "Paley q=11"),
        (Family::ChatGlm, 40, "Paley q=19"),
        (Family::Gemma, 36, "random orthogonal"),
        (Family::Llama, 36, "random orthogonal"),
    ] {
        let dir = TempDir::new().unwrap();
        let spec = SynthSpec {
            hidden,
            ..SynthSpec::tiny(family)
        };
        let src = dir.path().join("ck");
        write_checkpoint(&spec, &src).unwrap();
        let ck = Checkpoint::open_dir(&src).unwrap();
        let out = dir.path().join("rot");
        let report = rotate(&ck, &out, &RotateOptions { seed: 5 }, false, &mut |_| {}).unwrap();
        assert!(report.rotation.contains(kind), "{}", report.rotation);

        let rot = Checkpoint::open_dir(&out).unwrap();
        assert!(!rot.config.tie_word_embeddings);
        assert_eq!(rot.config_json["tlite_rotation"]["seed"], 5);
        // The weights did change: the embedding is rotated, the norms are folded away.
        let embed = ck.arch().model_spec(&ck.config).embed;
        let (e0, e1) = (
            ck.tensor_f32(&embed).unwrap(),
            rot.tensor_f32(&embed).unwrap(),
        );
        assert!(
            max_diff(&e0, &e1).0 > 0.1,
            "{family:?}: embedding unchanged"
        );
        let unit = if family == Family::Gemma { 0.0 } else { 1.0 };
        let norm = rot.arch().layer(&rot.config, 0).input_norm;
        assert!(rot.tensor_f32(&norm).unwrap().iter().all(|&v| v == unit));

        let toks = tokens(40, spec.vocab);
        let (a, b) = (logits(&src, &toks), logits(&out, &toks));
        let (d, top) = max_diff(&a, &b);
        eprintln!(
            "{family:?} hidden {hidden} ({kind}): max |Δlogit| {d:.3e} of max |logit| {top:.3} \
             ({:.2e} relative)",
            d / top
        );
        assert!(
            d <= LOGIT_TOL * top,
            "{family:?}: max |Δ| {d:e} > {LOGIT_TOL} × {top}"
        );
    }
}

#[test]
fn sandwich_norm_families_are_refused() {
    for family in [Family::Gemma2, Family::Gemma3] {
        let dir = TempDir::new().unwrap();
        write_checkpoint(&SynthSpec::tiny(family), &dir.path().join("ck")).unwrap();
        let ck = Checkpoint::open_dir(&dir.path().join("ck")).unwrap();
        let err = Rotated::new(&ck, &RotateOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{family:?} was rotated"))
            .to_string();
        assert!(
            err.contains("cannot rotate") && err.contains("post-attention"),
            "{family:?}: {err}"
        );
        let e = rotate(
            &ck,
            &dir.path().join("rot"),
            &RotateOptions::default(),
            false,
            &mut |_| {},
        );
        assert!(e.is_err());
        assert!(!dir.path().join("rot").exists(), "nothing is written");
        let opts = ConvertOptions {
            rotate: Some(RotateOptions::default()),
            ..Default::default()
        };
        assert!(convert(&ck, &dir.path().join("m"), &opts, &mut |_| {}).is_err());
    }
}

/// `convert --rotate` writes the same model as `rotate` followed by `convert`.
#[test]
fn convert_rotate_equals_rotate_then_convert() {
    for family in [Family::Llama, Family::Qwen2] {
        let dir = TempDir::new().unwrap();
        write_checkpoint(&SynthSpec::tiny(family), &dir.path().join("ck")).unwrap();
        let ck = Checkpoint::open_dir(&dir.path().join("ck")).unwrap();
        let r = RotateOptions { seed: 11 };
        let opts = ConvertOptions {
            group: 32,
            rotate: Some(r),
            ..Default::default()
        };
        convert(&ck, &dir.path().join("m1"), &opts, &mut |_| {}).unwrap();
        rotate(&ck, &dir.path().join("rot"), &r, false, &mut |_| {}).unwrap();
        let rot = Checkpoint::open_dir(&dir.path().join("rot")).unwrap();
        let plain = ConvertOptions {
            rotate: None,
            ..opts.clone()
        };
        convert(&rot, &dir.path().join("m2"), &plain, &mut |_| {}).unwrap();
        let file = tlite_model::deploy::MODEL_FILE;
        let a = std::fs::read(dir.path().join("m1").join(file)).unwrap();
        let b = std::fs::read(dir.path().join("m2").join(file)).unwrap();
        assert!(a == b, "{family:?}: the two models differ");
        // Without --rotate the model differs.
        convert(&ck, &dir.path().join("m3"), &plain, &mut |_| {}).unwrap();
        assert!(std::fs::read(dir.path().join("m3").join(file)).unwrap() != a);
    }
}

/// The rotated SmolLM2 has the original's perplexity within 1e-5 (relative), 2 windows of 512
/// of the Brown corpus.
#[test]
fn rotated_smollm2_keeps_its_perplexity() {
    const MODEL: &str = "smollm2-135m-instruct";
    let Some(src) =
        fixtures::imported_or_skip(MODEL, "rotated_smollm2_keeps_its_perplexity").unwrap()
    else {
        return;
    };
    let Some(corpus) = fixtures::corpus_or_skip(MODEL, "rotated_smollm2_keeps_its_perplexity")
    else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let ck = Checkpoint::open_dir(&src).unwrap();
    let report = rotate(
        &ck,
        &dir.path().join("rot"),
        &RotateOptions { seed: 1 },
        false,
        &mut |_| {},
    )
    .unwrap();
    eprintln!("rotation: {} in {:.1}s", report.rotation, report.seconds);
    let ppl_of = |path: &Path| {
        let o = Opened::open(path.to_str().unwrap()).unwrap();
        let toks = o.tokenize_file(&corpus, Some(3 * 512 * 8)).unwrap();
        let opts = PplOptions {
            ctx: 512,
            max_windows: Some(2),
            bos: o.window_bos().unwrap(),
            ..Default::default()
        };
        let m = o.load_reference().unwrap();
        ppl::perplexity(&m, &toks, &opts, &mut |_, _| {}).unwrap()
    };
    let (a, b) = (ppl_of(&src), ppl_of(&dir.path().join("rot")));
    let rel = (b.ppl / a.ppl - 1.0).abs();
    eprintln!(
        "SmolLM2 PPL {:.6} → rotated {:.6} ({rel:.2e} relative, {} tokens)",
        a.ppl, b.ppl, a.tokens_scored
    );
    assert_eq!(a.tokens_scored, 2 * 255);
    assert!(rel <= 1e-5, "rotation changed the perplexity by {rel:e}");
}
