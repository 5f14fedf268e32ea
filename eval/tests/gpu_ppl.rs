//! Measuring on the GPU against the CPU reference on the same windows of the Brown corpus
//! (SmolLM2-135M, 2 windows of 16: lavapipe runs the 135M model at ~2 tokens/s): perplexity within 0.05% on the f32 path (the checkpoint
//! uploaded dense f32) and 0.5% with f16 weights; KL divergence and top-1 agreement of an M0E4
//! model against its baseline within 2% (relative) of the CPU's; and the top-k baseline file
//! (`tlite ppl --save-base`), whose KL divergence is a lower bound of the exact one.

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert, convert_in_memory};
use tlite_converter::events;
use tlite_eval::gpu::{self, TopKBase};
use tlite_eval::load::Opened;
use tlite_eval::ppl::{self, PplOptions};
use tlite_gguf::fixtures;
use tlite_model::deploy::Storage;
use tlite_runtime_gpu::device::gpu_for_test;
use tlite_runtime_gpu::{Gpu, RunOptions};

const MODEL: &str = "smollm2-135m-instruct";
const CTX: usize = 16;

fn opts() -> PplOptions {
    PplOptions {
        ctx: CTX,
        max_windows: Some(2),
        ..Default::default()
    }
}

/// The imported SmolLM2, the Brown corpus and a GPU; `None` when a fixture or the GPU is
/// missing (each harness says whether that fails).
fn fixtures_or_skip(test: &str) -> Option<(PathBuf, PathBuf, Gpu)> {
    let src = fixtures::imported_or_skip(MODEL, test).unwrap()?;
    let corpus = fixtures::corpus_or_skip(MODEL, test)?;
    let gpu = gpu_for_test(test)?;
    Some((src, corpus, gpu))
}

fn tokens(o: &Opened, corpus: &Path) -> Vec<u32> {
    o.tokenize_file(corpus, Some(4 * CTX * 8)).unwrap()
}

fn run_opts() -> RunOptions {
    // One step per window (lavapipe pays per step; the tiny models test steps that split a window).
    RunOptions {
        max_seq: CTX,
        max_batch: CTX,
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a / b - 1.0).abs()
}

#[test]
fn gpu_perplexity_matches_the_cpu_reference() {
    let Some((src, corpus, gpu)) = fixtures_or_skip("gpu_perplexity_matches_the_cpu_reference")
    else {
        return;
    };
    let o = Opened::open(src.to_str().unwrap()).unwrap();
    let toks = tokens(&o, &corpus);
    let cpu =
        ppl::perplexity(&o.load_reference().unwrap(), &toks, &opts(), &mut |_, _| {}).unwrap();
    for (dense, tol) in [(Storage::F32, 5e-4), (Storage::F16, 5e-3)] {
        let (mut m, max) = gpu::load(&gpu, &o, run_opts(), dense).unwrap();
        let g = gpu::perplexity(&gpu, &mut m, max, &toks, &opts(), &mut |_, _| {}).unwrap();
        eprintln!(
            "{MODEL} {dense:?}: PPL GPU {:.6} CPU {:.6} (rel {:.2e}, tol {tol:.0e}) | {} tokens \
             scored | GPU {:.1} tok/s, CPU {:.1} tok/s",
            g.ppl,
            cpu.ppl,
            rel(g.ppl, cpu.ppl),
            g.tokens_scored,
            g.tokens_per_second,
            cpu.tokens_per_second
        );
        assert_eq!(g.tokens_scored, cpu.tokens_scored);
        assert_eq!(g.windows, 2);
        assert!(
            rel(g.ppl, cpu.ppl) <= tol,
            "{dense:?}: {} vs {}",
            g.ppl,
            cpu.ppl
        );
    }
}

#[test]
fn gpu_kl_divergence_matches_the_cpu_reference() {
    use tlite_converter::synth::{SynthSpec, write_checkpoint};
    use tlite_model::arch::Family;
    let Some(gpu) = gpu_for_test("gpu_kl_divergence_matches_the_cpu_reference") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    write_checkpoint(&SynthSpec::tiny(Family::Llama), &tmp.path().join("ck")).unwrap();
    let ck = Checkpoint::open_dir(&tmp.path().join("ck")).unwrap();
    let vocab = ck.config.vocab_size as u64;
    let mut rng = tlite_quantizer::rng::Rng::new(5);
    let toks: Vec<u32> = (0..120)
        .map(|_| 3 + (rng.next_u64() % (vocab - 3)) as u32)
        .collect();
    let opts = PplOptions {
        ctx: 32,
        max_windows: Some(3),
        ..Default::default()
    };
    // Two steps per window: the scored rows span a step boundary.
    let run = RunOptions {
        max_seq: 32,
        max_batch: 20,
    };
    kl_matches(&gpu, &ck, &tmp, &toks, &opts, run, "tiny llama");
}

/// The same on SmolLM2 and the Brown corpus where the GPU is a real one (lavapipe runs the
/// 135M model at ~2 tokens/s: CI runs the tiny model above).
#[test]
fn gpu_kl_divergence_matches_the_cpu_reference_smollm2() {
    let test = "gpu_kl_divergence_matches_the_cpu_reference_smollm2";
    let Some((src, corpus, gpu)) = fixtures_or_skip(test) else {
        return;
    };
    if gpu.is_cpu() {
        eprintln!("skipped: {test}: a CPU adapter (the tiny model's test covers it)");
        return;
    }
    let tmp = TempDir::new().unwrap();
    let ck = Checkpoint::open_dir(&src).unwrap();
    let toks = tokens(&Opened::open(src.to_str().unwrap()).unwrap(), &corpus);
    kl_matches(&gpu, &ck, &tmp, &toks, &opts(), run_opts(), MODEL);
}

/// KLD, top-1 and ΔPPL of `ck` converted (min/max, g64) against `ck` on the GPU within 2% of
/// the CPU reference's; a top-k baseline file gives lower bounds, tighter with more kept; a
/// baseline file of other windows is refused.
fn kl_matches(
    gpu: &Gpu,
    ck: &Checkpoint,
    tmp: &TempDir,
    toks: &[u32],
    opts: &PplOptions,
    run: RunOptions,
    name: &str,
) {
    let qdir = tmp.path().join("m0e4");
    // Min/max scales: the fastest conversion (any quantized model will do).
    let copts = ConvertOptions {
        method: tlite_quantizer::Method::MinMax,
        ..Default::default()
    };
    convert(ck, &qdir, &copts, &mut events::ignore).unwrap();
    let base = Opened::open(ck.dir.to_str().unwrap()).unwrap();
    let quant = Opened::open(qdir.to_str().unwrap()).unwrap();
    let cpu = ppl::compare(
        &base.load_reference().unwrap(),
        &quant.load_reference().unwrap(),
        toks,
        opts,
        &mut |_, _| {},
    )
    .unwrap();
    let (mut gb, max) = gpu::load(gpu, &base, run, Storage::F32).unwrap();
    let (mut gq, _) = gpu::load(gpu, &quant, run, Storage::F32).unwrap();
    let g = gpu::compare(gpu, &mut gb, &mut gq, max, toks, opts, &mut |_, _| {}).unwrap();
    eprintln!(
        "{name} M0E4 min/max g64: KLD GPU {:.6} CPU {:.6} | top-1 GPU {:.3}% CPU {:.3}% | ΔPPL GPU \
         {:.3}% CPU {:.3}%",
        g.kld_mean,
        cpu.kld_mean,
        g.top1_agree_pct,
        cpu.top1_agree_pct,
        g.delta_ppl_pct,
        cpu.delta_ppl_pct
    );
    assert_eq!(g.base.tokens_scored, cpu.base.tokens_scored);
    assert!(rel(g.kld_mean, cpu.kld_mean) <= 0.02);
    assert!(rel(g.top1_agree_pct, cpu.top1_agree_pct) <= 0.02);
    assert!(rel(g.quant.ppl, cpu.quant.ppl) <= 5e-4);
    assert!(
        cpu.kld_mean > 1e-3,
        "a quantized model differs from its baseline"
    );

    // The same against a top-k baseline, through its file: the top 64 computed once, the top 8
    // its prefix.
    let file = tmp.path().join("base.tlkl");
    let b64 = gpu::base_topk(gpu, &mut gb, max, toks, opts, 64, &mut |_, _| {}).unwrap();
    b64.write(&file).unwrap();
    let b64 = TopKBase::read(&file).unwrap();
    assert!(rel(b64.header.result.ppl, g.base.ppl) <= 1e-6);
    let mut last = 0.0;
    for k in [8, 64] {
        let b = prefix(&b64, k);
        let t = gpu::compare_to(gpu, &b, &mut gq, max, toks, opts, &mut |_, _| {}).unwrap();
        let r = &t.result;
        eprintln!(
            "top-{k} baseline: KLD {:.6} ({:+.2}% of the exact {:.6}), top-1 {:.3}%, quant mass \
             on the top {k} {:.2}%",
            r.kld_mean,
            (r.kld_mean / g.kld_mean - 1.0) * 100.0,
            g.kld_mean,
            r.top1_agree_pct,
            t.mean_topk_mass * 100.0
        );
        // A lower bound, within f32 rounding, tighter with more of the baseline kept; top-1
        // the same.
        assert!(r.kld_mean <= g.kld_mean * (1.0 + 1e-4));
        assert!(
            r.kld_mean >= last * (1.0 - 1e-4),
            "{} < {last} with more kept",
            r.kld_mean
        );
        last = r.kld_mean;
        assert!((r.top1_agree_pct - g.top1_agree_pct).abs() < 1e-9);
        assert!(rel(r.quant.ppl, g.quant.ppl) <= 1e-6);
    }
    // Another text: refused.
    let mut other = toks.to_vec();
    other.swap(3, 4);
    let e = gpu::compare_to(gpu, &b64, &mut gq, max, &other, opts, &mut |_, _| {});
    assert!(e.unwrap_err().to_string().contains("another text"));
}

/// The baseline keeping only each row's first `k` log-probabilities.
fn prefix(b: &TopKBase, k: usize) -> TopKBase {
    let kk = b.header.k;
    let cut = |v: &[u32]| -> Vec<u32> { v.chunks(kk).flat_map(|r| r[..k].to_vec()).collect() };
    let cutf = |v: &[f32]| -> Vec<f32> { v.chunks(kk).flat_map(|r| r[..k].to_vec()).collect() };
    let mut out = b.clone();
    out.header.k = k;
    for (o, w) in out.windows.iter_mut().zip(&b.windows) {
        o.ids = cut(&w.ids);
        o.logprobs = cutf(&w.logprobs);
    }
    out
}

/// Hostile baseline files are refused with an error naming the problem.
#[test]
fn malformed_baseline_files_are_refused() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("b.tlkl");
    let header = |json: &str, extra: usize| {
        let mut v = b"TLKLBASE".to_vec();
        v.extend(1u32.to_le_bytes());
        v.extend((json.len() as u64).to_le_bytes());
        v.extend(json.as_bytes());
        v.extend(vec![0u8; extra]);
        v
    };
    let result = r#"{"ppl":1.0,"ppl_err":0.0,"nll_mean":0.0,"tokens_scored":1,"windows":1,"ctx":4,"seconds":1.0,"tokens_per_second":1.0}"#;
    let good = |k: usize, vocab: usize, rows: usize| {
        format!(
            r#"{{"k":{k},"vocab":{vocab},"ctx":4,"score_all":false,"bos":null,"rows":[{rows}],"tokens_hash":1,"result":{result}}}"#
        )
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"TLKL".to_vec(), "shorter than its header"),
        (
            header("{}", 0).iter().map(|b| b ^ 1).collect(),
            "wrong magic",
        ),
        (
            {
                let mut v = header("{}", 0);
                v[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
                v
            },
            "a header of",
        ),
        (header("{not json", 0), "header:"),
        (header(&good(0, 10, 1), 0), "top-k of 0"),
        (header(&good(20, 10, 1), 0), "top-k of 20"),
        // One row of k = 2: 5 words; one word short.
        (header(&good(2, 10, 1), 16), "the header describes"),
        (
            {
                let mut v = header(&good(2, 10, 1), 20);
                let n = v.len();
                v[n - 16..n - 12].copy_from_slice(&10u32.to_le_bytes());
                v
            },
            "beyond the vocabulary",
        ),
    ];
    for (bytes, want) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let e = TopKBase::read(&path).unwrap_err().to_string();
        assert!(e.contains(want), "expected `{want}` in: {e}");
    }
    // And the well-formed one reads back.
    std::fs::write(&path, header(&good(2, 10, 1), 20)).unwrap();
    let b = TopKBase::read(&path).unwrap();
    assert_eq!(
        (b.header.k, b.windows.len(), b.windows[0].ids.len()),
        (2, 1, 2)
    );
}

/// A sweep on the GPU equals the CPU reference's on the same windows (a tiny Qwen2, random
/// tokens): ΔPPL, KLD and top-1 per configuration; M0E4 rows also run natively within the
/// parity tolerance, other schemes not.
#[test]
fn gpu_sweep_matches_the_cpu_sweep() {
    use tlite_converter::synth::{SynthSpec, write_checkpoint};
    use tlite_eval::sweep::{SweepConfig, SweepGpu, SweepInput, sweep};
    use tlite_model::arch::Family;
    let Some(gpu) = gpu_for_test("gpu_sweep_matches_the_cpu_sweep") else {
        return;
    };
    let dir = TempDir::new().unwrap();
    write_checkpoint(&SynthSpec::tiny(Family::Qwen2), &dir.path().join("ck")).unwrap();
    let ck = Checkpoint::open_dir(&dir.path().join("ck")).unwrap();
    let vocab = ck.config.vocab_size as u64;
    let mut rng = tlite_quantizer::rng::Rng::new(11);
    let toks: Vec<u32> = (0..200)
        .map(|_| 3 + (rng.next_u64() % (vocab - 3)) as u32)
        .collect();
    let (eval, calib) = toks.split_at(100);
    let configs: Vec<SweepConfig> = ["m0e4-search@32", "q4_0@32", "m0e4-minmax+imp@32"]
        .iter()
        .map(|s| SweepConfig::parse(s).unwrap())
        .collect();
    let mut input = SweepInput {
        checkpoint: &ck,
        model: "tiny-qwen2".into(),
        data: "random tokens".into(),
        tokens: eval,
        opts: PplOptions {
            ctx: 32,
            max_windows: Some(3),
            ..Default::default()
        },
        calibration: Some((calib, "random".into())),
        configs,
        gpu: None,
    };
    let cpu = sweep(&input, &mut |_| {}).unwrap();
    input.gpu = Some(SweepGpu {
        gpu: &gpu,
        run: RunOptions {
            max_seq: 32,
            max_batch: 20,
        },
        dense: Storage::F32,
    });
    let g = sweep(&input, &mut |_| {}).unwrap();
    assert!(g.device.is_some() && cpu.device.is_none());
    assert!(rel(g.base_ppl, cpu.base_ppl) <= 5e-4);
    for (c, r) in cpu.rows.iter().zip(&g.rows) {
        eprintln!(
            "{}: ΔPPL GPU {:.4}% CPU {:.4}% | KLD GPU {:.3e} CPU {:.3e} | top-1 GPU {:.2}% CPU \
             {:.2}% | native {:?}",
            r.config,
            r.delta_ppl_pct,
            c.delta_ppl_pct,
            r.kld_mean,
            c.kld_mean,
            r.top1_agree_pct,
            c.top1_agree_pct,
            r.native
        );
        assert_eq!(r.config, c.config);
        assert!(rel(r.ppl, c.ppl) <= 5e-4);
        assert!(rel(r.kld_mean, c.kld_mean) <= 0.02);
        // At most one position may flip at a near tie.
        assert!(
            (r.top1_agree_pct - c.top1_agree_pct).abs() <= 100.0 / g.tokens_scored as f64 + 1e-9
        );
        let native_expected = r.config.starts_with("m0e4") && !r.importance;
        assert_eq!(r.native.is_some(), native_expected, "{}", r.config);
        if let Some(n) = &r.native {
            assert!(n.within_tolerance, "{}: {n:?}", r.config);
        }
    }
}

/// The sweep's native check compares what it should: a converted M0E4 model through the M0E4
/// kernels and its fake-quantized weights uploaded dense give the same logits (to f32
/// rounding), while the unquantized weights do not.
#[test]
fn native_m0e4_equals_its_dense_fake_quantized_weights() {
    use tlite_converter::synth::{SynthSpec, write_checkpoint};
    use tlite_eval::reference::WeightSource;
    use tlite_model::arch::Family;
    use tlite_quantizer::{Method, SchemeKind};
    let Some(gpu) = gpu_for_test("native_m0e4_equals_its_dense_fake_quantized_weights") else {
        return;
    };
    let dir = TempDir::new().unwrap();
    write_checkpoint(&SynthSpec::tiny(Family::Llama), &dir.path().join("ck")).unwrap();
    let ck = Checkpoint::open_dir(&dir.path().join("ck")).unwrap();
    let run = RunOptions {
        max_seq: 32,
        max_batch: 32,
    };
    let fake = WeightSource::FakeQuant {
        source: &ck,
        scheme: SchemeKind::M0E4(Method::Search),
        group: 32,
        importance: None,
        f16_embeddings: false,
    };
    let copts = ConvertOptions {
        group: 32,
        method: Method::Search,
        ..Default::default()
    };
    // The sweep quantizes an M0E4 row once and uploads the conversion's dequantized weights as
    // its dense model: they must be the fake quantization's, bit for bit.
    let converted = convert_in_memory(&ck, &copts, None).unwrap();
    for t in ck.expected_tensors().unwrap() {
        let (a, b) = (
            fake.tensor_f32(&t.name).unwrap(),
            converted.tensor_f32(&t.name).unwrap(),
        );
        let same = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "{}: the converter's M0E4 differs from the fake quantization",
            t.name
        );
    }
    let fake_fn = |name: &str| fake.tensor_f32(name);
    let mut dense = gpu::load_dense(&gpu, &ck, Some(&fake_fn), run, Storage::F32).unwrap();
    let mut plain = gpu::load_dense(&gpu, &ck, None, run, Storage::F32).unwrap();
    let mut native = gpu::upload(&gpu, &converted, run).unwrap();
    let tokens: Vec<u32> = (0..24).map(|i| (i * 37 + 5) % 300).collect();
    let rows: Vec<u32> = (0..24).collect();
    let logits = |m: &mut tlite_runtime_gpu::GpuModel| m.step(&gpu, &tokens, 0, &rows).unwrap();
    let (n, d, p) = (logits(&mut native), logits(&mut dense), logits(&mut plain));
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let scale = n.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!(
        "max |logit| {scale:.3}: native vs dense fake-quantized {:.3e}, native vs unquantized {:.3e}",
        max_diff(&n, &d),
        max_diff(&n, &p)
    );
    assert!(max_diff(&n, &d) <= 1e-4 * scale);
    assert!(max_diff(&n, &p) > 1e-3 * scale);
}
