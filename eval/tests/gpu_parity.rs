//! Parity of the wgpu runtime with the CPU reference on the same deployable model: tiny random
//! models of every architecture (top-1 100%) and SmolLM2-135M (top-1 ≥ 99% over 64 forced
//! tokens), mean KLD ≤ 1e-3 — the tolerances of `tlite_eval::parity::tolerance`.

use std::io::Write as _;

use serde_json::Value;
use tempfile::TempDir;
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
use tlite_runtime_gpu::{Gpu, GpuLm, GpuModel, RunOptions};
use tlite_text::sample::argmax;

/// The conversion of the tiny parity checks: search, group `group`, small chunks.
fn tiny_options(group: usize) -> ConvertOptions {
    ConvertOptions {
        group,
        method: Method::Search,
        overwrite: true,
        binding_limit: 64 << 10,
        ..Default::default()
    }
}

#[test]
fn tiny_models_of_every_architecture_match_the_reference() {
    let Some(gpu) = gpu_for_test("tiny parity") else {
        return;
    };
    for family in families() {
        tiny_parity(&gpu, family, &tiny_options(32));
    }
}

/// A per-tensor precision policy runs on the GPU as on the reference: the `mixed` preset
/// (embedding and LM head in f16, V and down at group 32, the rest at 64) with layer 0's
/// matrices at group 16 and layer 1's down projection in f32.
#[test]
fn tiny_models_with_a_mixed_precision_policy_match_the_reference() {
    let Some(gpu) = gpu_for_test("tiny parity, mixed precision") else {
        return;
    };
    for family in families() {
        let mut opts = tiny_options(64);
        opts.keep = vec![
            r"layers\.0\..*=m0e4@16".parse().unwrap(),
            r"layers\.1\..*(down_proj|dense_4h_to_h)=f32"
                .parse()
                .unwrap(),
        ];
        opts.keep
            .extend(tlite_converter::deploy::preset("mixed").unwrap());
        let groups = tiny_parity(&gpu, family, &opts);
        assert!(groups.len() >= 3, "{family:?}: {groups:?}");
    }
}

/// Converts a tiny random `family` model with `opts`, runs it on the GPU and the reference and
/// checks parity; returns the (storage, group) of its tensors.
fn tiny_parity(
    gpu: &Gpu,
    family: tlite_model::arch::Family,
    opts: &ConvertOptions,
) -> std::collections::BTreeSet<String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_checkpoint(&SynthSpec::tiny(family), &dir.join("ck")).unwrap();
    let ck = Checkpoint::open_dir(&dir.join("ck")).unwrap();
    convert(&ck, &dir.join("m0e4"), opts, &mut events::ignore).unwrap();
    let m = DeployedModel::open(&dir.join("m0e4")).unwrap();
    let reference = ReferenceModel::load(&WeightSource::Deployed(&m)).unwrap();
    // max_batch 8 < prompt 12: the prompt is prefilled in two steps.
    let model = GpuModel::load(
        gpu,
        &m,
        RunOptions {
            max_seq: 64,
            max_batch: 8,
        },
    )
    .unwrap();
    let mut g = GpuLm::new(gpu, model);
    let prompt: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 300).collect();
    let mut session = reference.session(prompt.len() + 20).unwrap();
    let r = parity(&mut session, &mut g, &prompt, 20, &mut |_, _| {}).unwrap();
    let groups = (m.tensors().iter())
        .map(|t| format!("{:?}@{:?}", t.storage, t.group))
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "{family:?}: top-1 {:.1}% | KLD {:.2e} | max |Δ| {:.2e} | mean |Δ| {:.2e} over {} positions | {groups:?}",
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
    let g = &g.model;
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
    assert!(g.memory.buffers.activation_bytes < g.memory.activation_bytes_unplanned);
    groups
}

const SMOLLM2: &str = "smollm2-135m-instruct";

/// SmolLM2 converted with `opts` into a temporary folder (removed with it), its goldens and a
/// GPU; `None` when the fixture or the GPU is missing (each harness says whether that fails).
fn smollm2(test: &str, opts: ConvertOptions) -> Option<(TempDir, DeployedModel, Value, Gpu)> {
    let dir = fixtures::imported_or_skip(SMOLLM2, test).unwrap()?;
    let gpu = gpu_for_test(test)?;
    let ck = Checkpoint::open_dir(&dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m0e4");
    let opts = ConvertOptions {
        overwrite: true,
        ..opts
    };
    convert(&ck, &out, &opts, &mut events::ignore).unwrap();
    let m = DeployedModel::open(&out).unwrap();
    let golden =
        serde_json::from_str(&std::fs::read_to_string(fixtures::golden_path(SMOLLM2)).unwrap())
            .unwrap();
    Some((tmp, m, golden, gpu))
}

#[test]
fn smollm2_matches_the_reference_over_64_forced_tokens() {
    let Some((_tmp, m, golden, gpu)) = smollm2("smollm2 parity", ConvertOptions::default()) else {
        return;
    };
    let reference = ReferenceModel::load(&WeightSource::Deployed(&m)).unwrap();
    let model = GpuModel::load(
        &gpu,
        &m,
        RunOptions {
            max_seq: 128,
            max_batch: 32,
        },
    )
    .unwrap();
    let mut g = GpuLm::new(&gpu, model);
    let prompt = fixtures::golden_ids(&golden["greedy"]["prompt_ids"]);
    let mut session = reference.session(prompt.len() + 65).unwrap();
    let r = parity(&mut session, &mut g, &prompt, 65, &mut |_, _| {}).unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "{SMOLLM2}: top-1 {:.2}% | KLD {:.2e} | max |Δ| {:.3} | mean |Δ| {:.2e} over {} positions ({} forced)",
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
}

/// Greedy generation on the GPU from the goldens' prompt, with every tensor kept in f32 (the
/// goldens are the unquantized model's), equals transformers' continuation token for token, or
/// first differs where the goldens' top-2 margin is below 0.05.
#[test]
fn smollm2_gpu_greedy_equals_the_goldens() {
    let opts = ConvertOptions {
        keep: vec![".*=f32".parse().unwrap()],
        ..Default::default()
    };
    let Some((_tmp, m, golden, gpu)) = smollm2("smollm2 greedy", opts) else {
        return;
    };
    let prompt = fixtures::golden_ids(&golden["greedy"]["prompt_ids"]);
    let want = fixtures::golden_ids(&golden["greedy"]["ids"]);
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
                "{SMOLLM2}: GPU greedy first differs at step {step}, a near tie (margin {})",
                margins[step]
            );
            return;
        }
        logits = g.step(&gpu, &[next], prompt.len() + step, &[0]).unwrap();
    }
    let _ = writeln!(
        std::io::stderr(),
        "{SMOLLM2}: GPU greedy continuation equals the goldens ({} tokens) on {}",
        want.len(),
        gpu.info.name
    );
}
