//! Run options beyond what a device can hold fail with typed errors before anything is
//! allocated, quickly, naming the largest setting that fits; the load's memory estimate equals
//! the sizes of the buffers a real load creates; per-step inputs are checked. Runs on whatever
//! adapter exists (lavapipe in CI).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::events;
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_model::deploy::DeployedModel;
use tlite_quantizer::Method;
use tlite_runtime_gpu::device::gpu_for_test;
use tlite_runtime_gpu::{Gpu, GpuError, GpuModel, LimitKind, RunOptions};

/// A converted tiny Llama in a fresh temporary folder.
fn tiny_model(tag: &str) -> (PathBuf, DeployedModel) {
    let dir = std::env::temp_dir().join(format!("tlite-limits-{tag}-{}", std::process::id()));
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
    let m = DeployedModel::open(&dir.join("m")).unwrap();
    (dir, m)
}

fn opts(max_seq: usize, max_batch: usize) -> RunOptions {
    RunOptions { max_seq, max_batch }
}

/// Bytes the device's allocator holds (where the backend reports it).
fn allocated(gpu: &Gpu) -> Option<u64> {
    gpu.device
        .generate_allocator_report()
        .map(|r| r.total_allocated_bytes)
}

/// Loads `o`, expecting an error before any allocation and within a few seconds.
fn load_fails(gpu: &Gpu, m: &DeployedModel, o: RunOptions) -> GpuError {
    let before = allocated(gpu);
    let t = Instant::now();
    let e = match GpuModel::load(gpu, m, o) {
        Ok(_) => panic!("{o:?} loaded"),
        Err(e) => e,
    };
    let took = t.elapsed();
    eprintln!("{o:?}: {e} ({:.0} ms)", took.as_secs_f64() * 1e3);
    assert!(took < Duration::from_secs(10), "{o:?} took {took:?}");
    assert_eq!(allocated(gpu), before, "{o:?} allocated before failing");
    assert!(!e.to_string().contains('\n'), "one line: {e}");
    e
}

/// The `N` of the hint's "`flag` (at most N here)".
fn at_most(msg: &str, flag: &str) -> usize {
    let pat = format!("{flag} (at most ");
    let at = msg
        .find(&pat)
        .unwrap_or_else(|| panic!("no `{pat}` in: {msg}"));
    let rest = &msg[at + pat.len()..];
    rest[..rest.find(' ').unwrap()].parse().unwrap()
}

#[test]
fn invalid_options_are_typed_errors() {
    let Some(gpu) = gpu_for_test("invalid_options_are_typed_errors") else {
        return;
    };
    let (dir, m) = tiny_model("invalid");
    for (o, says) in [
        (opts(0, 1), "--max-seq (the context) must be at least 1"),
        (opts(0, 0), "--max-seq (the context) must be at least 1"),
        (
            opts(16, 0),
            "--max-batch (tokens per step) must be at least 1",
        ),
        (
            opts(16, 17),
            "--max-batch 17 is larger than the context (--max-seq 16)",
        ),
    ] {
        let e = load_fails(&gpu, &m, o);
        assert!(
            matches!(&e, GpuError::InvalidOptions(s) if s.contains(says)),
            "{o:?}: {e}"
        );
        assert!(GpuModel::estimate(&gpu, &m, o).is_err());
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_context_beyond_the_device_fails_before_allocating_with_the_largest_that_fits() {
    let Some(gpu) = gpu_for_test("a_context_beyond_the_device_fails") else {
        return;
    };
    let (dir, m) = tiny_model("seq");
    // 10M positions: one layer's K (or V) cache of this tiny model is 1.2 GiB, beyond
    // lavapipe's 128 MiB binding limit; on a device that binds more, a context just past its
    // limit instead.
    let c = &m.manifest.config;
    let per_position = (c.num_kv_heads * c.head_dim * 4) as u64;
    let binding = gpu
        .limits
        .max_storage_buffer_binding_size
        .min(u32::MAX as u64);
    let seq = 10_000_000usize.max((binding / per_position) as usize + 1);
    let e = load_fails(&gpu, &m, opts(seq, 256));
    let msg = e.to_string();
    let GpuError::TooLarge { what, kind, .. } = &e else {
        panic!("{e}");
    };
    assert!(
        what.starts_with(&format!("the KV cache for --max-seq {seq} ")),
        "{msg}"
    );
    assert!(
        matches!(
            kind,
            LimitKind::BindingSize | LimitKind::BufferSize | LimitKind::DeviceMemory
        ),
        "{msg}"
    );
    let n = at_most(&msg, "--max-seq");
    assert!((256..seq).contains(&n), "{msg}");
    GpuModel::estimate(&gpu, &m, opts(n, 256)).unwrap();
    assert!(GpuModel::estimate(&gpu, &m, opts(n + 1, 256)).is_err());

    // usize::MAX: beyond 32-bit positions, and the same largest context in the hint.
    let e = load_fails(&gpu, &m, opts(usize::MAX, 256));
    assert!(
        matches!(
            &e,
            GpuError::TooLarge {
                kind: LimitKind::Positions,
                needed,
                ..
            } if *needed == usize::MAX as u64
        ),
        "{e}"
    );
    assert_eq!(at_most(&e.to_string(), "--max-seq"), n, "{e}");
    // Both at usize::MAX: the hint lowers both.
    let e = load_fails(&gpu, &m, opts(usize::MAX, usize::MAX));
    assert!(matches!(&e, GpuError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("--max-batch"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_batch_beyond_the_device_fails_with_the_largest_that_fits() {
    let Some(gpu) = gpu_for_test("a_batch_beyond_the_device") else {
        return;
    };
    let (dir, m) = tiny_model("batch");
    let wg = gpu.limits.max_compute_workgroups_per_dimension as usize;
    // Some ops have one workgroup per token: a batch past the grid limit cannot run (wgpu
    // would reject the dispatch at the step).
    if wg <= 65535 {
        let e = load_fails(&gpu, &m, opts(wg + 1, wg + 1));
        let msg = e.to_string();
        assert!(
            matches!(
                &e,
                GpuError::TooLarge {
                    kind: LimitKind::Workgroups,
                    ..
                }
            ),
            "{msg}"
        );
        assert_eq!(at_most(&msg, "--max-batch"), wg, "{msg}");
        GpuModel::estimate(&gpu, &m, opts(wg + 1, wg)).unwrap();
    }
    // A batch whose logits alone exceed the binding limit.
    let vocab = m.manifest.config.vocab_size;
    let big = (gpu.limits.max_storage_buffer_binding_size / (4 * vocab as u64)) as usize + 1;
    let e = load_fails(&gpu, &m, opts(2 * big, big));
    let msg = e.to_string();
    assert!(matches!(&e, GpuError::TooLarge { .. }), "{msg}");
    let b = at_most(&msg, "--max-batch");
    assert!(b < big, "{msg}");
    GpuModel::estimate(&gpu, &m, opts(2 * big, b)).unwrap();
    assert!(GpuModel::estimate(&gpu, &m, opts(2 * big, b + 1)).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_estimate_equals_the_report_of_a_real_load() {
    let Some(gpu) = gpu_for_test("the_estimate_equals_the_report") else {
        return;
    };
    let (dir, m) = tiny_model("estimate");
    let c = &m.manifest.config;
    for o in [opts(64, 8), opts(33, 1), opts(300, 300)] {
        let est = GpuModel::estimate(&gpu, &m, o).unwrap();
        let g = GpuModel::load(&gpu, &m, o).unwrap();
        let r = &g.memory;
        assert_eq!(est.weight_bytes, r.buffers.weight_bytes, "{o:?}");
        assert_eq!(
            est.kv_bytes,
            (c.num_layers * 2 * c.num_kv_heads * o.max_seq * c.head_dim * 4) as u64
        );
        assert_eq!(est.kv_bytes, r.buffers.kv_bytes, "{o:?}");
        assert_eq!(est.activation_bytes, r.buffers.activation_bytes, "{o:?}");
        assert_eq!(est.rope_bytes, r.buffers.rope_bytes, "{o:?}");
        assert_eq!(est.uniform_bytes, r.buffers.uniform_bytes, "{o:?}");
        assert_eq!(est.io_bytes, r.buffers.io_bytes, "{o:?}");
        assert_eq!(est.total(), r.total_bytes, "{o:?}");
        // The weights as uploaded: every part of the file, f16 widened to f32.
        assert!(r.buffers.weight_bytes >= m.data_bytes(), "{o:?}");
        // The RoPE tables: cos and sin, max_seq × rot/2 f32 each.
        let rot = (c.head_dim as f64 * c.partial_rotary_factor) as usize;
        assert_eq!(r.buffers.rope_bytes, (2 * o.max_seq * (rot / 2) * 4) as u64);
        // The report's breakdown covers every buffer.
        assert_eq!(
            r.total_bytes,
            r.buffers.weight_bytes
                + r.buffers.kv_bytes
                + r.buffers.activation_bytes
                + r.buffers.rope_bytes
                + r.buffers.uniform_bytes
                + r.buffers.io_bytes
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn step_inputs_are_checked() {
    let Some(gpu) = gpu_for_test("step_inputs_are_checked") else {
        return;
    };
    let (dir, m) = tiny_model("step");
    let vocab = m.manifest.config.vocab_size as u32;
    let mut g = GpuModel::load(&gpu, &m, opts(16, 4)).unwrap();
    let bad = |r: Result<Vec<f32>, GpuError>| r.expect_err("accepted");
    // Token ids within the vocabulary.
    let e = bad(g.step(&gpu, &[1, vocab], 0, &[0]));
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
    // Positions within the context, also where past + n overflows.
    let e = bad(g.step(&gpu, &[1, 2], 15, &[0]));
    assert!(
        matches!(
            e,
            GpuError::ContextOverflow {
                needed: 17,
                max: 16
            }
        ),
        "{e}"
    );
    let e = bad(g.step(&gpu, &[1], usize::MAX, &[0]));
    assert!(matches!(e, GpuError::ContextOverflow { .. }), "{e}");
    // Steps of 1..=max_batch tokens, logit rows within the step, at most max_batch of them.
    assert!(g.step(&gpu, &[], 0, &[]).is_err());
    assert!(g.step(&gpu, &[1; 5], 0, &[0]).is_err());
    assert!(g.step(&gpu, &[1, 2], 0, &[2]).is_err());
    assert!(g.step(&gpu, &[1], 0, &[0; 5]).is_err());
    // After all of that, the model still runs and the device is healthy.
    let logits = g.step(&gpu, &[1, 2, 3], 0, &[2]).unwrap();
    assert_eq!(logits.len(), vocab as usize);
    assert!(logits.iter().all(|x| x.is_finite()));
    gpu.check_health().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn errors_outside_a_scope_and_device_loss_are_reported_not_panics() {
    let Some(gpu) = gpu_for_test("errors_outside_a_scope_and_device_loss") else {
        return;
    };
    let (dir, m) = tiny_model("health");
    let mut g = GpuModel::load(&gpu, &m, opts(16, 4)).unwrap();
    // A wgpu error outside any scope (wgpu's default handler would panic): reported once.
    let _bad = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("too large"),
        size: gpu.limits.max_buffer_size + 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let e = gpu.check_health().expect_err("the error is kept");
    assert!(matches!(e, GpuError::Validation { .. }), "{e}");
    gpu.check_health().unwrap();
    g.step(&gpu, &[1, 2], 0, &[1]).unwrap();
    // A lost device: every later step says so.
    gpu.device.destroy();
    for _ in 0..2 {
        let e = g.step(&gpu, &[3], 2, &[0]).expect_err("a lost device");
        eprintln!("after destroy: {e}");
        assert!(matches!(e, GpuError::DeviceLost { .. }), "{e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
