//! The measurement of execution priority (`tlite priority-bench`): a "UI" device at normal
//! priority, opened on the same adapter as the model's, submits a small real job ([`ProbeJob`],
//! an n×n f32 matrix–vector product) every few milliseconds from its own thread while the model
//! decodes. Each probe's latency is the wall time from `submit` until `poll(Wait)` returns for
//! that submission: the time a UI frame's GPU work would wait behind the model plus its own run
//! time. A harness, so the CLI's: the runtime keeps only what sets the priority.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use tlite_quantizer::rng::Rng;
use wgpu::util::DeviceExt;

use tlite_runtime_gpu::readback::{map_read_f32, wait_for};
use tlite_runtime_gpu::{Gpu, GpuError, GpuModel, Result};

/// The probe kernel.
pub const PROBE_WGSL: &str = include_str!("probe.wgsl");

/// The probe's uniform `Params`, as the WGSL declares it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ProbeParams {
    pub n: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(size_of::<ProbeParams>() == 16);

const WORKGROUP: u32 = 64;

/// The UI stand-in: `y = A·x`, `A` n×n, uploaded once; each run is one dispatch, one
/// submission.
pub struct ProbeJob {
    n: u32,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    y: wgpu::Buffer,
    readback: wgpu::Buffer,
    expected: Vec<f32>,
}

impl ProbeJob {
    pub fn new(gpu: &Gpu, n: NonZeroU32) -> Result<Self> {
        let n = n.get();
        let dev = &gpu.device;
        let matrix_bytes = u64::from(n) * u64::from(n) * 4;
        let limit = gpu.limits.max_storage_buffer_binding_size;
        if matrix_bytes > limit {
            return Err(GpuError::BindingTooLarge {
                what: "the probe matrix (lower --probe-size)",
                needed: matrix_bytes,
                limit,
            });
        }
        let mut rng = Rng::new(0x0b5e_55ed);
        let (nu, scale) = (n as usize, 1.0 / (n as f32).sqrt());
        let a = rng.gaussian_vec(nu * nu, scale);
        let x = rng.gaussian_vec(nu, 1.0);
        let expected = a
            .chunks_exact(nu)
            .map(|row| {
                row.iter()
                    .zip(&x)
                    .map(|(&p, &q)| f64::from(p * q))
                    .sum::<f64>() as f32
            })
            .collect();
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let init = |label, contents: &[u8], usage| {
            dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage,
            })
        };
        let params = ProbeParams { n, _pad: [0; 3] };
        let p = init(
            "probe.params",
            bytemuck::bytes_of(&params),
            wgpu::BufferUsages::UNIFORM,
        );
        let a = init(
            "probe.a",
            bytemuck::cast_slice(&a),
            wgpu::BufferUsages::STORAGE,
        );
        let x = init(
            "probe.x",
            bytemuck::cast_slice(&x),
            wgpu::BufferUsages::STORAGE,
        );
        let y = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("probe.y"),
            size: u64::from(n) * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("probe.readback"),
            size: u64::from(n) * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("probe"),
            source: wgpu::ShaderSource::Wgsl(PROBE_WGSL.into()),
        });
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("probe::main"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let entries: Vec<wgpu::BindGroupEntry> = [&p, &a, &x, &y]
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("probe"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Device(e.to_string()));
        }
        Ok(ProbeJob {
            n,
            pipeline,
            bind_group,
            y,
            readback,
            expected,
        })
    }

    fn encode(&self, gpu: &Gpu, copy_out: bool) -> wgpu::CommandBuffer {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("probe"),
            });
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.dispatch_workgroups(self.n.div_ceil(WORKGROUP), 1, 1);
        }
        if copy_out {
            enc.copy_buffer_to_buffer(&self.y, 0, &self.readback, 0, self.readback.size());
        }
        enc.finish()
    }

    /// One probe: encode, then time from `submit` until the submission has completed.
    pub fn run(&self, gpu: &Gpu) -> Result<Duration> {
        let cb = self.encode(gpu, false);
        let t = Instant::now();
        wait_for(gpu, gpu.queue.submit([cb]))?;
        Ok(t.elapsed())
    }

    /// Runs once and returns the largest |GPU − CPU| of `y` (proof the job is real work).
    pub fn check(&self, gpu: &Gpu) -> Result<f32> {
        gpu.queue.submit([self.encode(gpu, true)]);
        let y = map_read_f32(gpu, &self.readback, self.readback.size())?;
        Ok(y.iter()
            .zip(&self.expected)
            .map(|(g, c)| (g - c).abs())
            .fold(0.0f32, f32::max))
    }
}

/// Runs the probe every `interval` (never in bursts to catch up) until `stop` is set or
/// `until` passes; returns every probe's latency.
pub fn run_probes(
    gpu: &Gpu,
    job: &ProbeJob,
    interval: Duration,
    stop: &AtomicBool,
    until: Option<Instant>,
) -> Result<Vec<Duration>> {
    let mut out = Vec::new();
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        if stop.load(Ordering::Acquire) || until.is_some_and(|u| Instant::now() >= u) {
            return Ok(out);
        }
        out.push(job.run(gpu)?);
        next = (next + interval).max(Instant::now());
    }
}

/// What one decode run under the probe recorded.
#[derive(Clone, Debug)]
pub struct DecodeUnderProbe {
    pub tokens: usize,
    pub seconds: f64,
    pub dispatches_per_step: usize,
    pub submissions_per_step: usize,
    pub probes: Vec<Duration>,
}

impl DecodeUnderProbe {
    pub fn tok_s(&self) -> f64 {
        self.tokens as f64 / self.seconds
    }
}

/// Decodes `tokens` (one per step, positions `0..`) on `model` while `ui` runs `job` every
/// `interval` from another thread; the probes cover exactly the decode.
pub fn decode_with_probes(
    model_gpu: &Gpu,
    model: &mut GpuModel,
    tokens: &[u32],
    ui: &Gpu,
    job: &ProbeJob,
    interval: Duration,
) -> Result<DecodeUnderProbe> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let prober = s.spawn(|| run_probes(ui, job, interval, &stop, None));
        let t = Instant::now();
        let decoded = tokens
            .iter()
            .enumerate()
            .try_for_each(|(i, &tok)| model.step(model_gpu, &[tok], i, &[0]).map(drop));
        let seconds = t.elapsed().as_secs_f64();
        stop.store(true, Ordering::Release);
        let probes = prober
            .join()
            .map_err(|_| GpuError::Device("the probe thread panicked".into()))??;
        decoded?;
        Ok(DecodeUnderProbe {
            tokens: tokens.len(),
            seconds,
            dispatches_per_step: model.last_step.dispatches,
            submissions_per_step: model.last_step.submissions,
            probes,
        })
    })
}

/// Percentiles of probe latencies, in milliseconds (nearest rank).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LatencyStats {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencyStats {
    /// `None` for no samples.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let rank = |p: f64| ms[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        (n > 0).then(|| LatencyStats {
            count: n,
            p50_ms: rank(50.0),
            p90_ms: rank(90.0),
            p99_ms: rank(99.0),
            max_ms: ms[n - 1],
            mean_ms: ms.iter().sum::<f64>() / n as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use tlite_runtime_gpu::device::gpu_for_test;

    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = LatencyStats::of(&d).unwrap();
        assert_eq!(
            (s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(
            LatencyStats::of(&[Duration::from_millis(3)])
                .unwrap()
                .p99_ms,
            3.0
        );
        assert!(LatencyStats::of(&[]).is_none());
    }

    #[test]
    fn the_probe_is_real_work_and_its_kernel_validates() {
        let module = naga::front::wgsl::parse_str(PROBE_WGSL).expect("probe.wgsl parses");
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .expect("probe.wgsl validates");
        let (_, var) = module
            .global_variables
            .iter()
            .find(|(_, v)| v.space == naga::AddressSpace::Uniform)
            .expect("a uniform Params");
        let naga::TypeInner::Struct { span, .. } = module.types[var.ty].inner else {
            panic!("Params is a struct")
        };
        assert_eq!(span as usize, size_of::<ProbeParams>());

        let Some(gpu) = gpu_for_test("the_probe_is_real_work") else {
            return;
        };
        let job = ProbeJob::new(&gpu, NonZeroU32::new(200).unwrap()).unwrap();
        let err = job.check(&gpu).unwrap();
        assert!(err < 1e-4, "probe max |GPU − CPU| = {err}");
        let t = job.run(&gpu).unwrap();
        assert!(t.as_nanos() > 0);
    }
}
