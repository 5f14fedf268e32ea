//! Parity of the wgpu runtime with the CPU reference on the same deployable model: tiny random
//! models of every architecture (top-1 100%) and SmolLM2-135M (top-1 ≥ 99% over 64 forced
//! tokens), mean KLD ≤ 1e-3 — the tolerances of `tlite_eval::parity::tolerance`.

use std::io::Write as _;

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::events;
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_eval::parity::{parity, tolerance};
use tlite_eval::reference::{ReferenceModel, WeightSource};
use tlite_gguf::fixtures;
use tlite_model::arch::families;
use tlite_model::deploy::DeployedModel;
use tlite_quantizer::Method;
use tlite_runtime_gpu::device::gpu_for_test;
use tlite_runtime_gpu::{GpuModel, RunOptions};

fn convert_to(ck: &Checkpoint, out: &std::path::Path, group: usize) -> DeployedModel {
    let opts = ConvertOptions {
        group,
        method: Method::Search,
        overwrite: true,
        binding_limit: 64 << 10,
        ..Default::default()
    };
    convert(ck, out, &opts, &mut events::ignore).unwrap();
    DeployedModel::open(out).unwrap()
}

#[test]
fn tiny_models_of_every_architecture_match_the_reference() {
    let Some(gpu) = gpu_for_test("tiny parity") else {
        return;
    };
    for family in families() {
        let dir =
            std::env::temp_dir().join(format!("tlite-parity-{}-{family:?}", std::process::id()));
        write_checkpoint(&SynthSpec::tiny(family), &dir.join("ck")).unwrap();
        let ck = Checkpoint::open_dir(&dir.join("ck")).unwrap();
        let m = convert_to(&ck, &dir.join("m0e4"), 32);
        let reference = ReferenceModel::load(&WeightSource::Deployed(&m)).unwrap();
        // max_batch 8 < prompt 12: the prompt is prefilled in two steps.
        let mut g = GpuModel::load(
            &gpu,
            &m,
            RunOptions {
                max_seq: 64,
                max_batch: 8,
            },
        )
        .unwrap();
        let prompt: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 300).collect();
        let r = parity(&reference, &gpu, &mut g, &prompt, 20, &mut |_, _| {}).unwrap();
        let _ = writeln!(
            std::io::stderr(),
            "{family:?}: top-1 {:.1}% | KLD {:.2e} | max |Δ| {:.2e} | mean |Δ| {:.2e} over {} positions",
            r.top1_agree_pct,
            r.kld_mean,
            r.max_abs_dlogit,
            r.mean_abs_dlogit,
            r.positions
        );
        assert!(
            r.top1_agree_pct >= tolerance::TOP1_MIN_PCT_TINY,
            "{family:?}: {r:?}"
        );
        assert!(r.kld_mean <= tolerance::KLD_MAX, "{family:?}: {r:?}");
        assert_eq!(r.positions, 12 + 19);
        // The step recorded one submission and no copy touching the KV cache.
        let log = &g.last_step;
        assert_eq!(log.submissions, 1);
        assert!(
            log.copies
                .iter()
                .all(|(s, d)| !g.kv_labels().iter().any(|k| k == s || k == d)),
            "{:?}",
            log.copies
        );
        assert_eq!(log.copies.len(), 1, "only the logits are read back");
        assert!(g.memory.activation_bytes < g.memory.activation_bytes_unplanned);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn smollm2_matches_the_reference_over_64_forced_tokens() {
    let name = "smollm2-135m-instruct";
    let Some(dir) = fixtures::imported(name).unwrap() else {
        assert!(std::env::var_os("CI").is_none(), "{name} missing under CI");
        let _ = writeln!(std::io::stderr(), "SKIPPED: {name} not fetched");
        return;
    };
    let Some(gpu) = gpu_for_test("smollm2 parity") else {
        return;
    };
    let ck = Checkpoint::open_dir(&dir).unwrap();
    let out = std::env::temp_dir().join(format!("tlite-parity-smollm2-{}", std::process::id()));
    let opts = ConvertOptions {
        overwrite: true,
        ..Default::default()
    };
    convert(&ck, &out, &opts, &mut events::ignore).unwrap();
    let m = DeployedModel::open(&out).unwrap();
    let reference = ReferenceModel::load(&WeightSource::Deployed(&m)).unwrap();
    let mut g = GpuModel::load(
        &gpu,
        &m,
        RunOptions {
            max_seq: 128,
            max_batch: 32,
        },
    )
    .unwrap();
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures::golden_path(name)).unwrap())
            .unwrap();
    let prompt: Vec<u32> = golden["greedy"]["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let r = parity(&reference, &gpu, &mut g, &prompt, 65, &mut |_, _| {}).unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "{name}: top-1 {:.2}% | KLD {:.2e} | max |Δ| {:.3} | mean |Δ| {:.2e} over {} positions ({} forced)",
        r.top1_agree_pct,
        r.kld_mean,
        r.max_abs_dlogit,
        r.mean_abs_dlogit,
        r.positions,
        r.forced_tokens
    );
    assert!(r.forced_tokens >= 64);
    assert!(r.top1_agree_pct >= tolerance::TOP1_MIN_PCT_REAL, "{r:?}");
    assert!(r.kld_mean <= tolerance::KLD_MAX, "{r:?}");
    let _ = std::fs::remove_dir_all(&out);
}

/// Greedy generation on the GPU from the goldens' prompt, with every tensor kept in f32 (the
/// goldens are the unquantized model's), equals transformers' continuation token for token, or
/// first differs where the goldens' top-2 margin is below 0.05.
#[test]
fn smollm2_gpu_greedy_equals_the_goldens() {
    let name = "smollm2-135m-instruct";
    let Some(dir) = fixtures::imported(name).unwrap() else {
        assert!(std::env::var_os("CI").is_none(), "{name} missing under CI");
        let _ = writeln!(std::io::stderr(), "SKIPPED: {name} not fetched");
        return;
    };
    let Some(gpu) = gpu_for_test("smollm2 greedy") else {
        return;
    };
    let ck = Checkpoint::open_dir(&dir).unwrap();
    let out = std::env::temp_dir().join(format!("tlite-greedy-smollm2-{}", std::process::id()));
    let opts = ConvertOptions {
        overwrite: true,
        keep: vec![".*=f32".parse().unwrap()],
        ..Default::default()
    };
    convert(&ck, &out, &opts, &mut events::ignore).unwrap();
    let m = DeployedModel::open(&out).unwrap();
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures::golden_path(name)).unwrap())
            .unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let prompt = ids(&golden["greedy"]["prompt_ids"]);
    let want = ids(&golden["greedy"]["ids"]);
    let margins: Vec<f64> = golden["greedy"]["top2_margin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let mut g = GpuModel::load(
        &gpu,
        &m,
        RunOptions {
            max_seq: prompt.len() + want.len(),
            max_batch: 16,
        },
    )
    .unwrap();
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0 as u32
    };
    let mut logits = g
        .step(&gpu, &prompt, 0, &[prompt.len() as u32 - 1])
        .unwrap();
    for (step, &w) in want.iter().enumerate() {
        let next = argmax(&logits);
        if next != w {
            assert!(
                margins[step] < 0.05,
                "greedy differs at step {step}: {next} vs {w} (margin {})",
                margins[step]
            );
            let _ = writeln!(
                std::io::stderr(),
                "{name}: GPU greedy first differs at step {step}, a near tie (margin {})",
                margins[step]
            );
            return;
        }
        logits = g.step(&gpu, &[next], prompt.len() + step, &[0]).unwrap();
    }
    let _ = writeln!(
        std::io::stderr(),
        "{name}: GPU greedy continuation equals the goldens ({} tokens) on {}",
        want.len(),
        gpu.info.name
    );
    let _ = std::fs::remove_dir_all(&out);
}
