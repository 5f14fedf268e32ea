//! Execution priority on whatever adapter exists (lavapipe in CI): the cooperative mode splits
//! a step into several submissions and gives the same logits bit for bit; a `low` request
//! falls back cleanly (and says so) where the adapter has no global-priority extension. Also the
//! per-op timestamp profile, and the kernels with and without naga's runtime checks. (The
//! priority bench's probe job is the CLI's: cli/src/probe.rs.)

use std::num::NonZeroUsize;

use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::events;
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_model::deploy::DeployedModel;
use tlite_quantizer::Method;
use tlite_runtime_gpu::priority::{self, DEFAULT_SUBMIT_EVERY, GlobalSupport};
use tlite_runtime_gpu::{
    DeviceOptions, Gpu, GpuModel, Priority, Profiler, RunOptions, ShaderChecks,
};

fn opts() -> DeviceOptions {
    DeviceOptions {
        adapter: std::env::var("TLITE_ADAPTER").ok(),
        ..Default::default()
    }
}

fn tiny_model(tag: &str) -> DeployedModel {
    let dir = std::env::temp_dir().join(format!("tlite-priority-{tag}-{}", std::process::id()));
    let spec = SynthSpec::preset("tiny-llama").expect("tiny-llama preset");
    write_checkpoint(&spec, &dir.join("ck")).unwrap();
    let ck = tlite_converter::checkpoint::Checkpoint::open_dir(&dir.join("ck")).unwrap();
    let opts = ConvertOptions {
        group: 32,
        method: Method::MinMax,
        overwrite: true,
        ..Default::default()
    };
    convert(&ck, &dir.join("m"), &opts, &mut events::ignore).unwrap();
    DeployedModel::open(&dir.join("m")).unwrap()
}

type Run = (Vec<Vec<f32>>, [(usize, usize); 2]);

/// Prefill 5 tokens, then decode 4; every step's logits, and the last two steps' logs.
fn run(gpu: &Gpu, m: &DeployedModel) -> Run {
    run_profiled(gpu, m, false).0
}

/// [`run`], with per-op GPU timestamps when `profile` is set.
fn run_profiled(gpu: &Gpu, m: &DeployedModel, profile: bool) -> (Run, Option<Profiler>) {
    run_with(gpu, m, profile, ShaderChecks::default())
}

fn run_with(
    gpu: &Gpu,
    m: &DeployedModel,
    profile: bool,
    checks: ShaderChecks,
) -> (Run, Option<Profiler>) {
    let mut g = GpuModel::load_with(
        gpu,
        m,
        RunOptions {
            max_seq: 32,
            max_batch: 8,
        },
        checks,
    )
    .unwrap();
    if profile {
        g.enable_profiling(gpu).unwrap();
    }
    let prompt = [3u32, 17, 42, 7, 99];
    let mut out = vec![g.step(gpu, &prompt, 0, &[0, 4]).unwrap()];
    let prefill = (g.last_step.dispatches, g.last_step.submissions);
    for (i, t) in [5u32, 8, 13, 21].into_iter().enumerate() {
        out.push(g.step(gpu, &[t], prompt.len() + i, &[0]).unwrap());
    }
    (
        (
            out,
            [prefill, (g.last_step.dispatches, g.last_step.submissions)],
        ),
        g.profiler.take(),
    )
}

#[test]
fn profiling_times_every_dispatch_and_changes_no_logit() {
    let Some(gpu) = tlite_runtime_gpu::device::gpu_for_test("profiling") else {
        return;
    };
    let need = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
    let m = tiny_model("profile");
    if !gpu.features.contains(need) {
        let mut g = GpuModel::load(&gpu, &m, RunOptions::default()).unwrap();
        let err = g.enable_profiling(&gpu).unwrap_err().to_string();
        assert!(err.contains("timestamp queries"), "{err}");
        return;
    }
    let (want, _) = run(&gpu, &m);
    let ((got, [(pd, _), (dd, _)]), prof) = run_profiled(&gpu, &m, true);
    assert_eq!(want, got, "profiling changed the logits");
    let prof = prof.expect("profiler enabled");
    assert_eq!(prof.steps["prefill"].0, 1);
    assert_eq!(prof.steps["decode"].0, 4);
    for (phase, steps, per_step) in [("prefill", 1, pd), ("decode", 4, dd)] {
        let ops: Vec<_> = prof.ops.iter().filter(|((p, _), _)| p == phase).collect();
        let calls: usize = ops.iter().map(|(_, (n, _))| n).sum();
        assert_eq!(
            calls,
            steps * per_step,
            "{phase}: every dispatch timed once"
        );
        let secs: f64 = ops.iter().map(|(_, (_, s))| s).sum();
        assert!(secs > 0.0 && secs.is_finite(), "{phase}: {secs} s");
        // Op kinds lose the layer prefix and chunk index: one kind per layer-free label.
        assert!(
            ops.iter()
                .all(|((_, kind), _)| !kind.starts_with("l0.") && !kind.contains('[')),
            "{ops:?}"
        );
    }
    // A few positions: the one-pass decode attention.
    assert!(
        prof.ops
            .contains_key(&("decode".to_owned(), "attention_decode".to_owned()))
    );
}

#[test]
fn cooperative_mode_matches_normal_in_several_submissions() {
    let Some(normal) = tlite_runtime_gpu::device::gpu_for_test("cooperative_mode_matches_normal")
    else {
        return;
    };
    let m = tiny_model("coop");
    let (want, [(pd, ps), (dd, ds)]) = run(&normal, &m);
    assert_eq!((ps, ds), (1, 1), "normal mode: one submission per step");
    let every = NonZeroUsize::new(3).unwrap();
    let coop = Gpu::with_priority(&opts(), Priority::Cooperative(every)).unwrap();
    eprintln!("[cooperative] {}", coop.header());
    assert_eq!(coop.priority.submit_every, Some(3));
    assert!(
        coop.header()
            .contains("cooperative (submit every 3 dispatches)")
    );
    let (got, [(cpd, cps), (cdd, cds)]) = run(&coop, &m);
    assert_eq!((cpd, cdd), (pd, dd), "same dispatches in both modes");
    eprintln!("prefill: {pd} dispatches in {cps} submissions; decode: {dd} in {cds}");
    // A split after every 3rd dispatch (none after the step's last op).
    assert!(
        cps > 1 && cds > 1,
        "prefill {cps}, decode {cds} submissions"
    );
    assert!(
        cps >= pd.div_ceil(3) && cps <= pd.div_ceil(3) + 1,
        "{cps} for {pd}"
    );
    assert!(
        cds >= dd.div_ceil(3) && cds <= dd.div_ceil(3) + 1,
        "{cds} for {dd}"
    );
    for (step, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w.len(), g.len());
        let differ = w
            .iter()
            .zip(g)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "step {step}: {differ} logits differ");
    }
}

#[test]
fn low_priority_falls_back_cleanly_without_the_extension() {
    let Some(normal) = tlite_runtime_gpu::device::gpu_for_test("low_priority_falls_back") else {
        return;
    };
    // Forced: the plan for an adapter without the extension, on a real device.
    let forced = Gpu::open_with(&opts(), |_| {
        priority::plan(
            Priority::Low,
            &GlobalSupport::Unavailable("test: pretend no VK_*_global_priority".into()),
        )
    })
    .unwrap();
    let header = forced.header();
    eprintln!("[forced fallback] {header}");
    assert!(header.contains("FELL BACK: test: pretend"), "{header}");
    assert_eq!(forced.priority.global_low, None);
    assert_eq!(
        forced.priority.submit_every,
        Some(DEFAULT_SUBMIT_EVERY.get())
    );

    // Real: whatever this adapter offers, `low` opens a device that says what it got and
    // computes the same logits.
    let low = Gpu::with_priority(&opts(), Priority::Low).unwrap();
    let header = low.header();
    eprintln!("[low] {header}");
    match (&low.priority.global_low, &low.priority.fallback) {
        (Some(ext), None) => {
            assert!(header.contains(&format!("priority low (global queue priority via {ext})")))
        }
        (None, Some(why)) => {
            assert!(
                header.contains("FELL BACK") && header.contains(why.as_str()),
                "{header}"
            );
            assert_eq!(low.priority.submit_every, Some(DEFAULT_SUBMIT_EVERY.get()));
        }
        other => panic!("inconsistent state {other:?}"),
    }
    let m = tiny_model("low");
    let (want, _) = run(&normal, &m);
    for gpu in [&forced, &low] {
        let (got, _) = run(gpu, &m);
        assert!(
            want.iter()
                .flatten()
                .zip(got.iter().flatten())
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}

#[test]
fn kernels_give_the_same_logits_with_and_without_shader_checks() {
    let Some(gpu) = tlite_runtime_gpu::device::gpu_for_test("shader_checks") else {
        return;
    };
    let m = tiny_model("checks");
    let ((checked, logs_c), _) = run_with(&gpu, &m, false, ShaderChecks::Checked);
    let ((unchecked, logs_u), _) = run_with(&gpu, &m, false, ShaderChecks::Unchecked);
    assert_eq!(logs_c, logs_u);
    for (step, (a, b)) in checked.iter().zip(&unchecked).enumerate() {
        let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "step {step}: max |Δ| {worst} (scale {scale})"
        );
    }
}
