//! Fake quantization, calibration and sweeps on tiny synthetic checkpoints: M0E4 fake-quant
//! equals loading the converted deployable model bit for bit, calibration statistics cover
//! every input channel of every linear weight, and a sweep scores like `compare`; GPTQ: the
//! calibration's Gram matrices agree with its diagonal statistics and respect their memory
//! bound, GPTQ lowers the layers' output error against round-to-nearest, and `+gptq` sweep
//! configurations run and serialize.

use tempfile::TempDir;
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_eval::plot::delta_ppl_svg;
use tlite_eval::ppl::{self, PplOptions};
use tlite_eval::reference::{Calibration, Logits, ReferenceModel, WeightSource};
use tlite_eval::sweep::{SweepConfig, SweepInput, SweepReport, sweep};
use tlite_model::arch::{Family, Role};
use tlite_model::deploy::DeployedModel;
use tlite_quantizer::gptq::{self, GptqOptions};
use tlite_quantizer::{Method, SchemeKind, fake_quantize};

/// The tiny checkpoint of `family` in a fresh temporary folder (removed with it).
fn tiny(family: Family) -> (TempDir, Checkpoint) {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(&SynthSpec::tiny(family), &dir.path().join("ck")).unwrap();
    let ck = Checkpoint::open_dir(&dir.path().join("ck")).unwrap();
    (dir, ck)
}

/// The seed of [`tokens`].
const TOKEN_SEED: u64 = 0x2545_f491;

/// Deterministic pseudo-random token ids in `3..vocab` (printed with their seed).
fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    eprintln!("{n} token ids from seed {TOKEN_SEED:#x}");
    let mut s = TOKEN_SEED;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            3 + ((s >> 33) as usize % (vocab - 3)) as u32
        })
        .collect()
}

#[test]
fn m0e4_fake_quant_equals_the_deployable_model() {
    for (family, group, method) in [
        (Family::Llama, 32, Method::Search),
        (Family::Qwen2, 64, Method::MinMax),
        (Family::Gemma3, 64, Method::Search),
        (Family::ChatGlm, 32, Method::Search),
    ] {
        let (dir, ck) = tiny(family);
        let opts = ConvertOptions {
            group,
            method,
            ..Default::default()
        };
        convert(&ck, &dir.path().join("out"), &opts, &mut |_| {}).unwrap();
        let deployed = DeployedModel::open(&dir.path().join("out")).unwrap();
        let fake = WeightSource::FakeQuant {
            source: &ck,
            scheme: SchemeKind::M0E4(method),
            group,
            importance: None,
            f16_embeddings: false,
        };
        let dep = WeightSource::Deployed(&deployed);
        let mut quantized = 0;
        for t in ck.expected_tensors().unwrap() {
            let (a, b) = (
                fake.tensor_f32(&t.name).unwrap(),
                dep.tensor_f32(&t.name).unwrap(),
            );
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{family:?} {}",
                t.name
            );
            let orig = ck.tensor_f32(&t.name).unwrap();
            assert_eq!(t.role.quantizable(), a != orig, "{family:?} {}", t.name);
            quantized += usize::from(t.role.quantizable());
        }
        assert!(quantized > 0);
        // And the whole forward pass agrees exactly.
        let toks = tokens(24, ck.config.vocab_size);
        let run = |src: &WeightSource| {
            let m = ReferenceModel::load(src).unwrap();
            let mut c = m.new_cache(toks.len()).unwrap();
            m.forward(&toks, 0, &mut c, Logits::All)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        assert_eq!(run(&fake), run(&dep), "{family:?}");
        assert!(fake.describe().contains("m0e4"));
    }
}

#[test]
fn calibration_covers_every_linear_input_channel() {
    for family in [Family::Llama, Family::Gemma3, Family::ChatGlm] {
        let (_dir, ck) = tiny(family);
        let model = ReferenceModel::load(&WeightSource::Checkpoint(&ck)).unwrap();
        let toks = tokens(96, ck.config.vocab_size);
        let mut windows = 0;
        let stats = Calibration::collect(&model, &toks, 32, None, &mut |d, _| windows = d).unwrap();
        assert_eq!(windows, 3);
        assert_eq!(stats.positions(), 96);
        let imp = stats.importance(&ck.config);
        for t in ck.expected_tensors().unwrap() {
            let linear = t.role == tlite_model::arch::Role::Linear;
            let head = t.role.quantizable() && t.shape[0] == ck.config.vocab_size;
            match imp.get(&t.name) {
                Some(v) => {
                    assert_eq!(v.len(), t.shape[1], "{family:?} {}", t.name);
                    assert!(
                        v.iter().all(|&x| x.is_finite() && x > 0.0),
                        "{family:?} {}",
                        t.name
                    );
                }
                None => assert!(!linear, "{family:?}: no statistics for {}", t.name),
            }
            // A tied embedding gets the LM head's statistics; an untied one none.
            if head && t.role != tlite_model::arch::Role::LmHead {
                assert_eq!(
                    imp.contains_key(&t.name),
                    ck.config.tie_word_embeddings,
                    "{family:?} {}",
                    t.name
                );
            }
        }
        // Collecting does not change the logits.
        let mut c1 = model.new_cache(32).unwrap();
        let mut c2 = model.new_cache(32).unwrap();
        let mut s = Calibration::new();
        let a = model.forward(&toks[..32], 0, &mut c1, Logits::All).unwrap();
        let b = model
            .forward_collect(&toks[..32], 0, &mut c2, Logits::All, &mut s)
            .unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
    }
}

#[test]
fn importance_changes_the_searched_fit() {
    let (_dir, ck) = tiny(Family::Llama);
    let model = ReferenceModel::load(&WeightSource::Checkpoint(&ck)).unwrap();
    let toks = tokens(64, ck.config.vocab_size);
    let imp = Calibration::collect(&model, &toks, 32, None, &mut |_, _| {})
        .unwrap()
        .importance(&ck.config);
    let src = |importance| WeightSource::FakeQuant {
        source: &ck,
        scheme: SchemeKind::M0E4(Method::Search),
        group: 32,
        importance,
        f16_embeddings: false,
    };
    let name = "model.layers.0.mlp.down_proj.weight";
    let plain = src(None).tensor_f32(name).unwrap();
    let weighted = src(Some(&imp)).tensor_f32(name).unwrap();
    assert_ne!(plain, weighted);
    assert!(src(Some(&imp)).describe().contains("importance"));
}

/// The tiny Qwen2 checkpoint of the sweep tests, its evaluated tokens, disjoint calibration
/// tokens and windows (3 of 32).
fn sweep_setup() -> (TempDir, Checkpoint, Vec<u32>, Vec<u32>, PplOptions) {
    let (dir, ck) = tiny(Family::Qwen2);
    let toks = tokens(96, ck.config.vocab_size);
    let calib = tokens(200, ck.config.vocab_size)[100..].to_vec();
    let opts = PplOptions {
        ctx: 32,
        max_windows: Some(3),
        ..Default::default()
    };
    (dir, ck, toks, calib, opts)
}

#[test]
fn sweep_matches_compare_and_plots() {
    let (_dir, ck, toks, calib, opts) = sweep_setup();
    let configs: Vec<SweepConfig> = ["m0e4-search@32", "q4_0@32", "m0e4-search+imp@64"]
        .iter()
        .map(|s| SweepConfig::parse(s).unwrap())
        .collect();
    assert_eq!(configs[2].label(), "m0e4-search+imp@64");
    assert!(SweepConfig::parse("m0e4@64").is_err());
    assert!(SweepConfig::parse("q4_0@12").is_err());
    let input = SweepInput {
        checkpoint: &ck,
        model: "tiny-qwen2".into(),
        data: "random tokens".into(),
        tokens: &toks,
        opts: opts.clone(),
        calibration: Some((&calib, "random".into())),
        configs,
        gpu: None,
    };
    let mut rows = 0;
    let report = sweep(&input, &mut |e| {
        if let tlite_eval::sweep::SweepEvent::Row(r) = e {
            rows = r.rows.len();
        }
    })
    .unwrap();
    assert_eq!(rows, 3);
    assert!(report.rows.iter().all(|r| !r.f16_embeddings));
    assert_eq!(report.calibration.as_ref().unwrap().tokens, 96);
    // The same numbers as `compare` of the same fake-quantized model.
    let base = ReferenceModel::load(&WeightSource::Checkpoint(&ck)).unwrap();
    let quant = ReferenceModel::load(&WeightSource::FakeQuant {
        source: &ck,
        scheme: SchemeKind::M0E4(Method::Search),
        group: 32,
        importance: None,
        f16_embeddings: false,
    })
    .unwrap();
    let c = ppl::compare(&base, &quant, &toks, &opts, &mut |_, _| {}).unwrap();
    let r = &report.rows[0];
    assert_eq!(report.base_ppl, c.base.ppl);
    assert_eq!(r.ppl, c.quant.ppl);
    assert!((r.kld_mean - c.kld_mean).abs() <= 1e-5 * c.kld_mean.max(1e-3));
    assert_eq!(r.top1_agree_pct, c.top1_agree_pct);
    // Exact bits per weight: 64 columns, so nominal at g = 32 and 64.
    assert_eq!(r.bits_per_weight, 5.0);
    assert_eq!(report.rows[1].bits_per_weight, 4.5);
    let json = serde_json::to_string(&report).unwrap();
    let back: tlite_eval::sweep::SweepReport = serde_json::from_str(&json).unwrap();
    let svg = delta_ppl_svg(&[back.clone(), back], "test");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("m0e4-search+imp") && svg.contains("q4_0"));
    assert!(report.to_markdown().contains("| q4_0@32 | 4.500 |"));
}

#[test]
fn f16_embeddings_are_rounded_not_quantized() {
    let (_dir, ck) = tiny(Family::Llama);
    let src = WeightSource::FakeQuant {
        source: &ck,
        scheme: SchemeKind::Q4_0,
        group: 32,
        importance: None,
        f16_embeddings: true,
    };
    for name in ["model.embed_tokens.weight", "lm_head.weight"] {
        let orig = ck.tensor_f32(name).unwrap();
        let want: Vec<f32> = orig
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        assert_eq!(src.tensor_f32(name).unwrap(), want, "{name}");
    }
    let name = "model.layers.0.self_attn.q_proj.weight";
    assert_ne!(src.tensor_f32(name).unwrap(), ck.tensor_f32(name).unwrap());
    assert!(src.describe().contains("embeddings f16"));
    let c = SweepConfig::parse("q4_0+f16emb@32").unwrap();
    assert!(c.f16_embeddings && !c.importance);
    assert_eq!(c.label(), "q4_0+f16emb@32");
    let (bpw, all, n) = tlite_eval::sweep::bits_per_weight(&ck, &c);
    assert_eq!(bpw, 4.5);
    assert!(all > bpw && all < 16.0);
    assert!(n > 0);
}

fn calibrated(ck: &Checkpoint) -> Calibration {
    let model = ReferenceModel::load(&WeightSource::Checkpoint(ck)).unwrap();
    let toks = tokens(128, ck.config.vocab_size);
    let max = Calibration::DEFAULT_MAX_GRAM_BYTES;
    Calibration::collect_gram(&model, &toks, 32, None, max, &mut |_, _| {}).unwrap()
}

#[test]
fn gram_matrices_agree_with_the_diagonal_statistics() {
    let (_dir, ck) = tiny(Family::Llama);
    let stats = calibrated(&ck);
    let sites = Calibration::tensor_sites(&ck.config);
    let mut distinct: Vec<_> = sites.values().copied().collect();
    distinct.sort();
    distinct.dedup();
    let mut bytes = 0u64;
    for &site in &distinct {
        let (h, n) = stats.gram(site).expect("every site observed");
        bytes += 2 * (n * (n + 1)) as u64;
        let mean = stats.mean_sq(site).unwrap();
        assert_eq!(mean.len(), n, "{site:?}");
        let rows = stats.positions() as f64;
        for i in 0..n {
            let d = h[i * n + i] / rows;
            assert!(
                (d - f64::from(mean[i])).abs() <= 1e-4 * d.abs().max(1e-6),
                "{site:?} channel {i}: {d} vs {}",
                mean[i]
            );
            for j in 0..i {
                // symmetric, and a Gram matrix: |H_ij| ≤ √(H_ii H_jj)
                assert_eq!(h[i * n + j], h[j * n + i]);
                assert!(h[i * n + j].abs() <= 1.0001 * (h[i * n + i] * h[j * n + j]).sqrt());
            }
        }
    }
    assert_eq!(Calibration::gram_bytes(&ck.config), bytes);
    // refused before the pass when the bound is too small
    let model = ReferenceModel::load(&WeightSource::Checkpoint(&ck)).unwrap();
    let toks = tokens(64, ck.config.vocab_size);
    let err = Calibration::collect_gram(&model, &toks, 32, None, bytes - 1, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("Gram"), "{err}");
    // without Gram matrices there are none
    let plain = Calibration::collect(&model, &toks, 32, None, &mut |_, _| {}).unwrap();
    assert!(plain.gram(distinct[0]).is_none());
}

#[test]
fn gptq_lowers_the_output_error_of_the_linear_weights() {
    let (_dir, ck) = tiny(Family::Llama);
    let stats = calibrated(&ck);
    let sites = Calibration::tensor_sites(&ck.config);
    let imp = stats.importance(&ck.config);
    let scheme = SchemeKind::M0E4(Method::Search);
    let (mut e_gptq, mut e_rtn, mut tensors) = (0f64, 0f64, 0);
    for t in ck.arch().expected_tensors(&ck.config) {
        if t.role != Role::Linear {
            continue;
        }
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let (h, n) = stats.gram(sites[&t.name]).unwrap();
        assert_eq!(n, cols, "{}", t.name);
        let w = ck.tensor_f32(&t.name).unwrap();
        let q = gptq::gptq(&scheme, &w, rows, cols, 32, &h, &GptqOptions::default()).unwrap();
        let r = fake_quantize(&scheme, &w, rows, cols, 32, Some(&imp[&t.name])).unwrap();
        let (eg, sig) = gptq::output_error(&w, &q, rows, cols, &h).unwrap();
        let (er, _) = gptq::output_error(&w, &r, rows, cols, &h).unwrap();
        e_gptq += eg / sig;
        e_rtn += er / sig;
        tensors += 1;
    }
    eprintln!("{tensors} tensors: mean relative output error GPTQ {e_gptq:e}, RTN+imp {e_rtn:e}");
    assert!(tensors > 0);
    assert!(e_gptq < 0.9 * e_rtn, "GPTQ {e_gptq:e} vs RTN {e_rtn:e}");
}

#[test]
fn sweep_runs_gptq_configurations() {
    let (_dir, ck, toks, calib, opts) = sweep_setup();
    let labels = [
        "m0e4-search@32",
        "m0e4-search+gptq@32",
        "q4_0+gptq@32",
        "m0e4-search+imp+gptq+f16emb@64",
        // the field's formats, at their own blocks (which their labels show)
        "nvfp4-search+imp+gptq@16",
        "q4_k+gptq@256",
    ];
    let configs: Vec<SweepConfig> = labels
        .iter()
        .map(|s| SweepConfig::parse(s).unwrap())
        .collect();
    for (c, l) in configs.iter().zip(labels) {
        assert_eq!(c.label(), l);
    }
    assert!(configs[1].gptq && !configs[1].importance);
    assert!(configs[3].gptq && configs[3].importance && configs[3].f16_embeddings);
    assert!(!configs[0].gptq);
    let mut input = SweepInput {
        checkpoint: &ck,
        model: "tiny-qwen2".into(),
        data: "random tokens".into(),
        tokens: &toks,
        opts,
        calibration: None,
        configs,
        gpu: None,
    };
    // GPTQ needs calibration
    assert!(sweep(&input, &mut |_| {}).is_err());
    input.calibration = Some((&calib, "random".into()));
    let report = sweep(&input, &mut |_| {}).unwrap();
    let gptq_flags: Vec<bool> = report.rows.iter().map(|r| r.gptq).collect();
    assert_eq!(gptq_flags, [false, true, true, true, true, true]);
    assert!(report.rows.iter().all(|r| r.ppl.is_finite()));
    // GPTQ changed the model (not the same numbers as round-to-nearest)
    assert_ne!(report.rows[0].ppl, report.rows[1].ppl);
    let cal = report.calibration.as_ref().unwrap();
    assert_eq!(cal.gram_bytes, Some(Calibration::gram_bytes(&ck.config)));
    // JSON: `gptq` only on GPTQ rows, so reports without GPTQ are unchanged; round trip
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["rows"][0].get("gptq").is_none());
    assert_eq!(json["rows"][1]["gptq"], true);
    let back: SweepReport = serde_json::from_value(json).unwrap();
    assert_eq!(back.rows[1].config, "m0e4-search+gptq@32");
    assert!(back.rows[1].gptq && !back.rows[0].gptq);
}
