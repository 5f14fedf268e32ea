//! Measurements outside any model: what one dispatch costs ([`floor`]) and how fast the decode
//! GEMV kernels read their weights against a plain copy ([`gemv`]), with the small helpers they
//! share to dispatch one kernel ([`pipeline`], [`bind_group`], [`Stamps`]).
//!
//! Both are for `tlite lab` (docs/PERF.md); they return reports whose `Display` is the table
//! the CLI prints, so a test can check the same rows.

use std::fmt;
use std::time::Instant;

use bytemuck::Pod;
use tlite_quantizer::rng::Rng;
use tlite_quantizer::{M0E4Matrix, Method, QuantOptions};
use wgpu::util::DeviceExt;

use crate::dequant::group_words;
use crate::kernels::params::{GEMV_ROWS, GEMV_WIDE_COLS, GEMV_WIDE_ROWS, MatmulParams};
use crate::kernels::{Kernel, binding};
use crate::readback::{map_read, wait_for};
use crate::{Gpu, GpuError, Result};

// ---------------------------------------------------------------------------------------------
// Dispatching one kernel

/// A compute pipeline of `entry` in WGSL `source`, compiled without naga's runtime checks as the
/// runtime compiles its own kernels (the lab's kernels index inside their buffers).
pub fn pipeline_from_source(
    gpu: &Gpu,
    label: &str,
    source: &str,
    entry: &str,
) -> wgpu::ComputePipeline {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    };
    // SAFETY: the runtime's kernels (see exec/pipelines.rs) or the lab's own, which clamp or
    // bound every index by the sizes their callers bind.
    let module = unsafe {
        gpu.device
            .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
    };
    gpu.device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&format!("{label}::{entry}")),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        })
}

/// The pipeline of the runtime kernel `kernel`'s entry point `entry`, as the runtime creates it.
pub fn pipeline(gpu: &Gpu, kernel: Kernel, entry: &str) -> wgpu::ComputePipeline {
    pipeline_from_source(gpu, kernel.name(), &kernel.source(), entry)
}

/// A bind group of group 0 of `pipeline` (automatic layout) with `entries` (binding index,
/// buffer): exactly the bindings the entry point uses.
pub fn bind_group(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    entries: &[(u32, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = entries
        .iter()
        .map(|&(binding, buf)| wgpu::BindGroupEntry {
            binding,
            resource: buf.as_entire_binding(),
        })
        .collect();
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// A storage buffer holding `data`, padded with zeros to whole 16-byte units (for the vector
/// views of the kernels).
pub fn storage(gpu: &Gpu, data: &[u8]) -> wgpu::Buffer {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(16).max(1) * 16, 0);
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("lab"),
            contents: &v,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
}

/// A uniform buffer holding `params`.
pub fn uniform<P: Pod>(gpu: &Gpu, params: &P) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("lab.params"),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// Runs `f` inside a validation error scope: wgpu's complaints become [`GpuError::Validation`].
pub fn scoped<T>(gpu: &Gpu, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let out = f();
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(GpuError::Validation {
            what: what.to_owned(),
            message: e.to_string(),
        });
    }
    out
}

/// Two GPU timestamps, at the start of the first and the end of the last pass of a submission
/// (`ComputePassTimestampWrites`: needs `TIMESTAMP_QUERY` only).
pub struct Stamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    period_ns: f64,
}

impl Stamps {
    /// `None` where the device has no timestamp queries.
    pub fn new(gpu: &Gpu) -> Option<Stamps> {
        if !gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            return None;
        }
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("lab.stamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let buffer = |usage| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("lab.stamps"),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        use wgpu::BufferUsages as U;
        Some(Stamps {
            set,
            resolve: buffer(U::QUERY_RESOLVE | U::COPY_SRC),
            read: buffer(U::MAP_READ | U::COPY_DST),
            period_ns: f64::from(gpu.queue.get_timestamp_period()),
        })
    }

    /// The pass's timestamp writes: the start if `first`, the end if `last`.
    pub fn writes(&self, first: bool, last: bool) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: first.then_some(0),
            end_of_pass_write_index: last.then_some(1),
        }
    }

    /// Encodes the copy of both timestamps into the readable buffer.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        enc.resolve_query_set(&self.set, 0..2, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, 16);
    }

    /// Seconds between the two timestamps (after the submission that resolved them).
    pub fn seconds(&self, gpu: &Gpu) -> Result<f64> {
        let b = map_read(gpu, &self.read, 16)?;
        let t0 = u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
        let t1 = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
        Ok(t1.saturating_sub(t0) as f64 * self.period_ns * 1e-9)
    }
}

/// A pass descriptor with optional timestamps.
fn pass_desc<'a>(
    stamps: Option<&'a Stamps>,
    first: bool,
    last: bool,
) -> wgpu::ComputePassDescriptor<'a> {
    wgpu::ComputePassDescriptor {
        label: None,
        timestamp_writes: stamps
            .filter(|_| first || last)
            .map(|s| s.writes(first, last)),
    }
}

/// Runs `f` once, then again until `at_least` has passed since the first began (a warm-up that
/// lasts while a GPU idle before it ramps its clocks up); returns how many times it ran.
pub fn repeat_at_least<E>(
    at_least: std::time::Duration,
    mut f: impl FnMut() -> std::result::Result<(), E>,
) -> std::result::Result<usize, E> {
    let started = Instant::now();
    let mut runs = 0;
    while runs == 0 || started.elapsed() < at_least {
        f()?;
        runs += 1;
    }
    Ok(runs)
}

/// The median of timed repetitions (of an even count, the mean of the middle two; NaN for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match (v.get(n / 2), n % 2) {
        (Some(&hi), 0) => (v[n / 2 - 1] + hi) / 2.0,
        (Some(&mid), _) => mid,
        (None, _) => f64::NAN,
    }
}

/// The plan's 1-D grid (graph/builder.rs `grid_1d`): x = min(n, 65535), y = ⌈n / 65535⌉;
/// kernels linearize as x + y · grid_width. Returns the grid and x.
fn grid_1d(n: usize) -> ([u32; 3], u32) {
    const MAX_GRID: usize = 65535;
    let x = n.min(MAX_GRID) as u32;
    ([x, n.div_ceil(MAX_GRID) as u32, 1], x)
}

// ---------------------------------------------------------------------------------------------
// The per-dispatch floor

const BUMP_WGSL: &str = "
@group(0) @binding(0) var<storage, read_write> buf: array<u32>;

@compute @workgroup_size(64)
fn bump(@builtin(local_invocation_index) lid: u32) {
    buf[lid] = buf[lid] + 1u;
}
";

/// How the N dispatches of a floor measurement are recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloorMode {
    /// One compute pass, every dispatch on the same buffer: each reads what the previous wrote.
    DependentOnePass,
    /// The same dependent chain, one compute pass per dispatch, one submission.
    DependentPasses,
    /// The dependent chain, one submission (of one pass) per dispatch, waiting once at the end.
    DependentSubmits,
    /// One compute pass, each dispatch on its own buffer (no dependency between them).
    IndependentOnePass,
}

impl FloorMode {
    pub const ALL: [FloorMode; 4] = [
        FloorMode::DependentOnePass,
        FloorMode::DependentPasses,
        FloorMode::DependentSubmits,
        FloorMode::IndependentOnePass,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FloorMode::DependentOnePass => "dependent, 1 pass",
            FloorMode::DependentPasses => "dependent, N passes",
            FloorMode::DependentSubmits => "dependent, N submits",
            FloorMode::IndependentOnePass => "independent, 1 pass",
        }
    }
}

/// One row of [`FloorReport`]: medians per dispatch.
#[derive(Clone, Debug)]
pub struct FloorRow {
    pub mode: FloorMode,
    pub n: usize,
    /// GPU time per dispatch (µs) from the first pass's start to the last pass's end.
    pub gpu_us: Option<f64>,
    /// Wall time per dispatch (µs): encoding, submission and the wait for completion.
    pub wall_us: f64,
    /// CPU time per dispatch (µs) spent encoding and submitting (part of `wall_us`).
    pub encode_us: f64,
}

/// The per-dispatch floor: trivial 64-thread dispatches in every [`FloorMode`].
#[derive(Clone, Debug)]
pub struct FloorReport {
    pub device: String,
    pub reps: usize,
    pub rows: Vec<FloorRow>,
}

/// Times `counts` dispatches of a trivial kernel (one 64-thread workgroup adding 1 to 64 words)
/// in every [`FloorMode`]: one warm-up, then the median of `reps`. Checks afterwards that every
/// dispatch ran (each buffer holds the number of dispatches made on it).
pub fn floor(gpu: &Gpu, counts: &[usize], reps: usize) -> Result<FloorReport> {
    if counts.is_empty() || counts.contains(&0) || reps == 0 {
        return Err(GpuError::InvalidOptions(
            "floor: dispatch counts and repetitions must be ≥ 1".into(),
        ));
    }
    let max_n = *counts.iter().max().expect("non-empty");
    let stamps = Stamps::new(gpu);
    let pipe = pipeline_from_source(gpu, "lab.bump", BUMP_WGSL, "bump");
    let bufs: Vec<wgpu::Buffer> = (0..max_n).map(|_| storage(gpu, &[0u8; 256])).collect();
    let groups: Vec<wgpu::BindGroup> = bufs
        .iter()
        .map(|b| bind_group(gpu, &pipe, &[(0, b)]))
        .collect();
    // Dispatches made on each buffer, to check against what the GPU counted.
    let mut made = vec![0u32; max_n];
    let mut rows = Vec::new();
    scoped(gpu, "the floor dispatches", || {
        for &n in counts {
            for mode in FloorMode::ALL {
                let (mut gpu_t, mut wall_t, mut enc_t) = (Vec::new(), Vec::new(), Vec::new());
                for rep in 0..=reps {
                    let t0 = Instant::now();
                    let mut last = None;
                    let one_pass = |enc: &mut wgpu::CommandEncoder, first, last, ds: &[usize]| {
                        let mut pass =
                            enc.begin_compute_pass(&pass_desc(stamps.as_ref(), first, last));
                        pass.set_pipeline(&pipe);
                        for &d in ds {
                            pass.set_bind_group(0, &groups[d], &[]);
                            pass.dispatch_workgroups(1, 1, 1);
                        }
                    };
                    match mode {
                        FloorMode::DependentOnePass | FloorMode::IndependentOnePass => {
                            let ds: Vec<usize> = if mode == FloorMode::DependentOnePass {
                                vec![0; n]
                            } else {
                                (0..n).collect()
                            };
                            let mut enc = gpu.device.create_command_encoder(&Default::default());
                            one_pass(&mut enc, true, true, &ds);
                            if let Some(s) = &stamps {
                                s.resolve(&mut enc);
                            }
                            last = Some(gpu.queue.submit([enc.finish()]));
                            for d in ds {
                                made[d] += 1;
                            }
                        }
                        FloorMode::DependentPasses => {
                            let mut enc = gpu.device.create_command_encoder(&Default::default());
                            for i in 0..n {
                                one_pass(&mut enc, i == 0, i + 1 == n, &[0]);
                            }
                            if let Some(s) = &stamps {
                                s.resolve(&mut enc);
                            }
                            last = Some(gpu.queue.submit([enc.finish()]));
                            made[0] += n as u32;
                        }
                        FloorMode::DependentSubmits => {
                            for i in 0..n {
                                let mut enc =
                                    gpu.device.create_command_encoder(&Default::default());
                                one_pass(&mut enc, i == 0, i + 1 == n, &[0]);
                                if i + 1 == n
                                    && let Some(s) = &stamps
                                {
                                    s.resolve(&mut enc);
                                }
                                last = Some(gpu.queue.submit([enc.finish()]));
                            }
                            made[0] += n as u32;
                        }
                    }
                    let encoded = t0.elapsed().as_secs_f64();
                    wait_for(gpu, last.expect("n ≥ 1 submits something"))?;
                    let wall = t0.elapsed().as_secs_f64();
                    let gpu_s = stamps.as_ref().map(|s| s.seconds(gpu)).transpose()?;
                    if rep > 0 {
                        let per = 1e6 / n as f64;
                        wall_t.push(wall * per);
                        enc_t.push(encoded * per);
                        if let Some(g) = gpu_s {
                            gpu_t.push(g * per);
                        }
                    }
                }
                rows.push(FloorRow {
                    mode,
                    n,
                    gpu_us: (!gpu_t.is_empty()).then(|| median(gpu_t)),
                    wall_us: median(wall_t),
                    encode_us: median(enc_t),
                });
            }
        }
        Ok(())
    })?;
    // Every dispatch ran, in order: each word of buffer i counts the dispatches made on it.
    for (i, b) in bufs.iter().enumerate() {
        let read = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("lab.check"),
            size: 256,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(b, 0, &read, 0, 256);
        gpu.queue.submit([enc.finish()]);
        let got = map_read(gpu, &read, 256)?;
        for w in got.chunks_exact(4) {
            let v = u32::from_le_bytes(w.try_into().expect("4 bytes"));
            if v != made[i] {
                return Err(GpuError::Readback(format!(
                    "floor: buffer {i} counted {v} dispatches, {} were made",
                    made[i]
                )));
            }
        }
    }
    Ok(FloorReport {
        device: gpu.info.name.clone(),
        reps,
        rows,
    })
}

/// `v` with 3 significant digits (at least 0 decimals).
fn sig3(v: f64) -> String {
    let decimals = if v == 0.0 || !v.is_finite() {
        0
    } else {
        (2 - v.abs().log10().floor() as i32).max(0) as usize
    };
    format!("{v:.decimals$}")
}

fn opt_us(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.2}"))
}

impl fmt::Display for FloorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "per-dispatch floor on {} (1 workgroup of 64 threads per dispatch; median of {} after a warm-up; µs per dispatch)",
            self.device, self.reps
        )?;
        writeln!(f, "| mode | N | GPU µs | wall µs | encode+submit µs |")?;
        writeln!(f, "|---|---|---|---|---|")?;
        for r in &self.rows {
            writeln!(
                f,
                "| {} | {} | {} | {:.2} | {:.2} |",
                r.mode.name(),
                r.n,
                opt_us(r.gpu_us),
                r.wall_us,
                r.encode_us
            )?;
        }
        // What the differences at the largest N say, GPU time where there is, wall otherwise.
        let n = self.rows.iter().map(|r| r.n).max().unwrap_or(0);
        let at = |m: FloorMode| {
            self.rows
                .iter()
                .find(|r| r.n == n && r.mode == m)
                .map(|r| r.gpu_us.unwrap_or(r.wall_us))
        };
        if let (Some(dep), Some(ind), Some(passes), Some(submits)) = (
            at(FloorMode::DependentOnePass),
            at(FloorMode::IndependentOnePass),
            at(FloorMode::DependentPasses),
            at(FloorMode::DependentSubmits),
        ) {
            writeln!(
                f,
                "at N = {n}: independent {} µs per dispatch (launch); a dependency adds {} µs; a pass boundary {} µs more; a submission {} µs more than a pass",
                sig3(ind),
                sig3(dep - ind),
                sig3(passes - dep),
                sig3(submits - passes)
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The GEMV lab

const COPY_WGSL: &str = "
struct Params {
    n: u32,
    grid_width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

// 256 threads copy 1024 consecutive vectors, 4 per thread, each step coalesced.
@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = (wg.x + wg.y * params.grid_width) * 1024u + lid;
    for (var j = 0u; j < 4u; j++) {
        let i = base + j * 256u;
        if (i < params.n) {
            dst[i] = src[i];
        }
    }
}
";

/// Vectors a copy workgroup moves.
const COPY_PER_WG: u64 = 1024;

/// The shapes the lab times by default (output rows n × input width k): the projections of the
/// 1B, Qwen and 8B bodies and a 49,152-row LM head.
pub const DEFAULT_SHAPES: &[(usize, usize)] = &[
    (2048, 2048),
    (2048, 8192),
    (8192, 2048),
    (4096, 4096),
    (4096, 14336),
    (14336, 4096),
    (49152, 2048),
];

/// What [`gemv`] measures.
#[derive(Clone, Debug)]
pub struct GemvOptions {
    /// (n, k): output rows × input width.
    pub shapes: Vec<(usize, usize)>,
    pub group: usize,
    /// The copies of each matrix together exceed this many bytes (rotated through, so the L2
    /// cache does not hold them).
    pub rotate_bytes: u64,
    /// Bytes the copy kernel copies.
    pub copy_bytes: u64,
    /// Timed repetitions (after a warm-up); the median is reported.
    pub reps: usize,
    pub seed: u64,
    /// Each matrix is also timed as this many row chunks of the same buffers, one dispatch
    /// each (1: the whole matrix in one dispatch).
    pub splits: Vec<usize>,
    /// Candidate kernels timed beside the runtime's (the adapter must have subgroups).
    pub variants: Vec<GemvVariant>,
    /// Each shape's buffers are allocated this many times (all kept alive until the shape is
    /// done, so each allocation lands elsewhere) and every kernel is timed on each: the spread
    /// shows how much the allocation, rather than the kernel, decides the speed.
    pub allocations: usize,
}

impl Default for GemvOptions {
    fn default() -> Self {
        GemvOptions {
            shapes: DEFAULT_SHAPES.to_vec(),
            group: 64,
            rotate_bytes: 160 << 20,
            copy_bytes: 256 << 20,
            reps: 5,
            seed: 7,
            splits: vec![1],
            variants: Vec::new(),
            allocations: 1,
        }
    }
}

/// One kernel on one shape.
#[derive(Clone, Debug)]
pub struct GemvRow {
    pub n: usize,
    pub k: usize,
    pub entry: String,
    /// Whether the plan (graph/decision.rs) picks this entry for the shape (and one dispatch).
    pub planned: bool,
    /// Dispatches (row chunks of the same buffers) per matrix.
    pub splits: usize,
    /// Which allocation of the shape's buffers (0-based; see [`GemvOptions::allocations`]).
    pub allocation: usize,
    /// Bytes of one copy of the weights (packed words, scales, biases).
    pub weight_bytes: u64,
    pub copies: usize,
    /// GPU µs per matrix, all dispatches writing one output (a barrier between each, as in
    /// the model's step).
    pub serial_us: f64,
    /// GPU µs per matrix, each copy writing its own output (dispatches may overlap).
    pub overlap_us: f64,
    /// Largest |GPU − CPU| of the checked rows over Σ|w·x| of the row.
    pub rel_err: f64,
}

impl GemvRow {
    /// Weight GB/s (10⁹ bytes) at `us` per matrix.
    pub fn gbps(&self, us: f64) -> f64 {
        self.weight_bytes as f64 / (us * 1e3)
    }
}

/// The GEMV lab's report.
#[derive(Clone, Debug)]
pub struct GemvReport {
    pub device: String,
    pub group: usize,
    pub reps: usize,
    /// [`GemvOptions::allocations`].
    pub allocations: usize,
    pub copy_bytes: u64,
    /// GPU µs of one copy dispatch.
    pub copy_us: f64,
    pub rows: Vec<GemvRow>,
}

impl GemvReport {
    /// The copy kernel's GB/s, bytes read plus bytes written.
    pub fn copy_gbps(&self) -> f64 {
        2.0 * self.copy_bytes as f64 / (self.copy_us * 1e3)
    }
}

impl fmt::Display for GemvReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let copy = self.copy_gbps();
        writeln!(
            f,
            "GEMV lab on {} (M0E4 g={}, random weights, rotated copies; GPU timestamps, median of {} after a warm-up)",
            self.device, self.group, self.reps
        )?;
        writeln!(
            f,
            "copy kernel: {} MiB vec4<u32> in {} µs = {} GB/s (read + write)",
            sig3(self.copy_bytes as f64 / f64::from(1u32 << 20)),
            sig3(self.copy_us),
            sig3(copy)
        )?;
        writeln!(
            f,
            "| shape n×k | entry | MiB | copies | µs | GB/s | % of copy | µs overlapped | GB/s overlapped | rel. error |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|---|")?;
        for r in &self.rows {
            let g = r.gbps(r.serial_us);
            writeln!(
                f,
                "| {}×{} | {}{} | {} | {} | {} | {} | {}% | {} | {} | {:.1e} |",
                r.n,
                r.k,
                r.entry,
                if r.planned {
                    " (plan)".to_owned()
                } else if r.splits > 1 {
                    format!(" in {} dispatches", r.splits)
                } else {
                    String::new()
                } + &if self.allocations > 1 {
                    format!(" #{}", r.allocation + 1)
                } else {
                    String::new()
                },
                sig3(r.weight_bytes as f64 / f64::from(1u32 << 20)),
                r.copies,
                sig3(r.serial_us),
                sig3(g),
                sig3(100.0 * g / copy),
                sig3(r.overlap_us),
                sig3(r.gbps(r.overlap_us)),
                r.rel_err
            )?;
        }
        if self.allocations > 1 {
            writeln!(
                f,
                "\nspread over {} allocations: µs min / median / max (GB/s at the median)",
                self.allocations
            )?;
            writeln!(
                f,
                "| shape n×k | entry | dispatches | min µs | median µs | max µs | GB/s |"
            )?;
            writeln!(f, "|---|---|---|---|---|---|---|")?;
            let mut seen: Vec<(usize, usize, &str, usize)> = Vec::new();
            for r in &self.rows {
                let key = (r.n, r.k, r.entry.as_str(), r.splits);
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let us: Vec<f64> = (self.rows.iter())
                    .filter(|x| (x.n, x.k, x.entry.as_str(), x.splits) == key)
                    .map(|x| x.serial_us)
                    .collect();
                let (lo, hi) = us
                    .iter()
                    .fold((f64::INFINITY, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
                let mid = median(us);
                writeln!(
                    f,
                    "| {}×{} | {} | {} | {} | {} | {} | {} |",
                    r.n,
                    r.k,
                    r.entry,
                    r.splits,
                    sig3(lo),
                    sig3(mid),
                    sig3(hi),
                    sig3(r.gbps(mid))
                )?;
            }
        }
        Ok(())
    }
}

/// One timed submission: `dispatches` in one pass, GPU seconds from the pass's timestamps.
fn timed_pass(
    gpu: &Gpu,
    stamps: &Stamps,
    pipe: &wgpu::ComputePipeline,
    dispatches: &[(&wgpu::BindGroup, [u32; 3])],
) -> Result<f64> {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&pass_desc(Some(stamps), true, true));
        pass.set_pipeline(pipe);
        for (g, grid) in dispatches {
            pass.set_bind_group(0, *g, &[]);
            pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
        }
    }
    stamps.resolve(&mut enc);
    let idx = gpu.queue.submit([enc.finish()]);
    wait_for(gpu, idx)?;
    stamps.seconds(gpu)
}

/// Median GPU µs per unit of `dispatches` (`units` in all) in one pass, after a warm-up.
fn time_dispatches(
    gpu: &Gpu,
    stamps: &Stamps,
    pipe: &wgpu::ComputePipeline,
    dispatches: &[(&wgpu::BindGroup, [u32; 3])],
    reps: usize,
    units: usize,
) -> Result<f64> {
    timed_pass(gpu, stamps, pipe, dispatches)?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        t.push(timed_pass(gpu, stamps, pipe, dispatches)? * 1e6 / units as f64);
    }
    Ok(median(t))
}

/// A kernel the GEMV lab times.
struct LabEntry<'p> {
    name: String,
    pipe: &'p wgpu::ComputePipeline,
    /// Output rows per workgroup.
    rows: usize,
    /// Whether the plan picks it for the shape.
    planned: bool,
    /// Reads x and the packed words as vec4 (`X4`, `PACKED4`).
    vector: bool,
    /// A runtime kernel, which also binds a bias (and, vector, a norm weight), unused here; a
    /// candidate binds neither.
    runtime: bool,
}

impl<'p> LabEntry<'p> {
    fn runtime(
        name: &str,
        pipe: &'p wgpu::ComputePipeline,
        rows: u32,
        planned: bool,
        vector: bool,
    ) -> Self {
        LabEntry {
            name: name.into(),
            pipe,
            rows: rows as usize,
            planned,
            vector,
            runtime: true,
        }
    }
}

/// Times the decode GEMVs (`gemv_m0e4`, the plan's, and `gemv_m0e4_wide` where k and the group
/// allow; both without a fused norm) and
/// any candidate [`GemvVariant`]s on
/// random M0E4 weights of each shape, rotating through enough copies that they exceed
/// `rotate_bytes`, and a vec4<u32> copy of `copy_bytes` for the bandwidth they are compared
/// with. Needs timestamp queries. Checks one GEMV output against the CPU.
pub fn gemv(gpu: &Gpu, opts: &GemvOptions) -> Result<GemvReport> {
    let stamps = Stamps::new(gpu).ok_or_else(|| {
        GpuError::InvalidOptions(format!(
            "the GEMV lab needs timestamp queries, which {} does not offer",
            gpu.info.name
        ))
    })?;
    if opts.reps == 0
        || opts.group == 0
        || !opts.group.is_multiple_of(8)
        || opts.copy_bytes < 16
        || opts.splits.is_empty()
        || opts.splits.contains(&0)
        || !(1..=64).contains(&opts.allocations)
    {
        return Err(GpuError::InvalidOptions(
            "gemv lab: reps ≥ 1, group a multiple of 8, copy ≥ 16 bytes, splits ≥ 1, \
             allocations 1..=64"
                .into(),
        ));
    }
    let max_binding = gpu.limits.max_storage_buffer_binding_size;
    let copy_bytes = opts.copy_bytes / 16 * 16;
    if copy_bytes > max_binding {
        return Err(GpuError::BindingTooLarge {
            what: "the lab's copy",
            needed: copy_bytes,
            limit: max_binding,
        });
    }
    let copy_us = scoped(gpu, "the copy kernel", || {
        let pipe = pipeline_from_source(gpu, "lab.copy", COPY_WGSL, "copy");
        let make = |usage| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("lab.copy"),
                size: copy_bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let src = make(wgpu::BufferUsages::STORAGE);
        let dst = make(wgpu::BufferUsages::STORAGE);
        let n = copy_bytes / 16;
        let (grid, w) = grid_1d(n.div_ceil(COPY_PER_WG) as usize);
        let params = uniform(gpu, &[n as u32, w, 0, 0]);
        let group = bind_group(gpu, &pipe, &[(0, &params), (1, &src), (2, &dst)]);
        let ds = vec![(&group, grid); 4];
        time_dispatches(gpu, &stamps, &pipe, &ds, opts.reps, 4)
    })?;

    let mut rng = Rng::new(opts.seed);
    let mut rows = Vec::new();
    let wide_pipe = pipeline(gpu, Kernel::Matmul, "gemv_m0e4_wide");
    let narrow_pipe = pipeline(gpu, Kernel::Matmul, "gemv_m0e4");
    let mut variant_pipes = Vec::new();
    for v in &opts.variants {
        if !gpu.features.contains(wgpu::Features::SUBGROUP) {
            return Err(GpuError::InvalidOptions(format!(
                "gemv lab: variant {} needs subgroups, which {} does not offer",
                v.name(),
                gpu.info.name
            )));
        }
        let pipe = scoped(gpu, "a GEMV variant", || {
            Ok(pipeline_from_source(
                gpu,
                "lab.gemv",
                &v.source(),
                "lab_gemv",
            ))
        })?;
        variant_pipes.push((*v, pipe));
    }
    for &(n, k) in &opts.shapes {
        if n == 0 || k == 0 {
            return Err(GpuError::InvalidOptions(format!(
                "gemv lab: empty shape {n}×{k}"
            )));
        }
        let data = rng.gaussian_vec(n * k, 0.05);
        let m = M0E4Matrix::quantize(&data, n, k, &QuantOptions::new(opts.group, Method::MinMax))
            .map_err(|e| GpuError::InvalidOptions(format!("gemv lab: {n}×{k}: {e}")))?;
        drop(data);
        let groups = group_words(&m.scales, &m.biases);
        let weight_bytes = 4 * (m.packed.len() + groups.len()) as u64;
        let copies = (opts.rotate_bytes / weight_bytes + 1) as usize;
        let x: Vec<f32> = rng.gaussian_vec(k, 1.0);
        let wide_ok = k.is_multiple_of(GEMV_WIDE_COLS as usize)
            && opts.group.is_multiple_of(GEMV_WIDE_COLS as usize);
        let mut entries = Vec::new();
        // The plan runs gemv_m0e4 for M0E4 projections (the wide GEMV only for the MLP's gate
        // and up apart with a fused norm, at MLP_WIDE_K columns).
        if wide_ok {
            entries.push(LabEntry::runtime(
                "gemv_m0e4_wide",
                &wide_pipe,
                GEMV_WIDE_ROWS,
                false,
                true,
            ));
        }
        entries.push(LabEntry::runtime(
            "gemv_m0e4",
            &narrow_pipe,
            GEMV_ROWS,
            true,
            false,
        ));
        if wide_ok {
            entries.extend(variant_pipes.iter().map(|(v, pipe)| LabEntry {
                name: v.name(),
                pipe,
                rows: v.rows as usize,
                planned: false,
                vector: true,
                runtime: false,
            }));
        }
        let mut alive: Vec<wgpu::Buffer> = Vec::new();
        for allocation in 0..opts.allocations {
            let (rows_of, kept) = scoped(gpu, "the GEMV lab", || {
                let packed_b: Vec<wgpu::Buffer> = (0..copies)
                    .map(|_| storage(gpu, bytemuck::cast_slice(&m.packed)))
                    .collect();
                let groups_b: Vec<wgpu::Buffer> = (0..copies)
                    .map(|_| storage(gpu, bytemuck::cast_slice(&groups)))
                    .collect();
                let x_b = storage(gpu, bytemuck::cast_slice(&x));
                let y_b: Vec<wgpu::Buffer> = (0..copies)
                    .map(|_| storage(gpu, &vec![0u8; 4 * n]))
                    .collect();
                let dummy = storage(gpu, &[0u8; 16]);
                let mut out = Vec::new();
                for ent in &entries {
                    let (pipe, per, vector) = (ent.pipe, ent.rows, ent.vector);
                    for &splits in &opts.splits {
                        // Row chunks of whole workgroups, each its own dispatch (as the plan runs
                        // the chunks of a tensor), all into one output.
                        let rows_per = n.div_ceil(splits).div_ceil(per) * per;
                        let chunks: Vec<(usize, usize)> = (0..splits)
                            .map(|j| j * rows_per)
                            .filter(|&r0| r0 < n)
                            .map(|r0| (r0, rows_per.min(n - r0)))
                            .collect();
                        let uniforms: Vec<(wgpu::Buffer, [u32; 3])> = chunks
                            .iter()
                            .map(|&(r0, rows)| {
                                let (grid, w) = grid_1d(rows.div_ceil(per));
                                let params = MatmulParams::<u32> {
                                    seq: 1,
                                    k: k as u32,
                                    n: rows as u32,
                                    out_stride: n as u32,
                                    out_col0: r0 as u32,
                                    w_row0: r0 as u32,
                                    group: opts.group as u32,
                                    words_per_row: M0E4Matrix::words_per_row(k) as u32,
                                    groups_per_row: M0E4Matrix::groups_per_row(k, opts.group)
                                        as u32,
                                    accumulate: 0,
                                    has_bias: 0,
                                    bias0: 0,
                                    grid_width: w,
                                    norm: 0,
                                    eps: 0.0,
                                    w_offset: 0.0,
                                    act: 0,
                                    up_row0: 0,
                                    blocks: 1,
                                    rope_past: 0,
                                    rope_rot: 0,
                                    rope_hd: 0,
                                    rope_q_rows: 0,
                                    rope_kv_rows: 0,
                                    rope_max_seq: 0,
                                    rope_interleaved: 0,
                                    _pad0: 0,
                                    _pad1: 0,
                                };
                                (uniform(gpu, &params), grid)
                            })
                            .collect();
                        use binding::matmul as b;
                        // Per copy, per chunk.
                        let groups =
                            |ys: &dyn Fn(usize) -> usize| -> Vec<(wgpu::BindGroup, [u32; 3])> {
                                let mut out = Vec::new();
                                for c in 0..copies {
                                    let y = &y_b[ys(c)];
                                    for (params, grid) in &uniforms {
                                        // Vector kernels read x and the packed words as vec4; the
                                        // runtime's also bind a norm weight and a bias (unused here),
                                        // and the narrow one x as vec4 too (k a multiple of 8).
                                        let (xb, pb) = match vector {
                                            true => (b::X4, b::PACKED4),
                                            false => (b::X, b::PACKED),
                                        };
                                        let mut e: Vec<(u32, &wgpu::Buffer)> = vec![
                                            (b::PARAMS, params),
                                            (xb, &x_b),
                                            (pb, &packed_b[c]),
                                            (b::GROUPS, &groups_b[c]),
                                            (b::Y, y),
                                        ];
                                        if ent.runtime {
                                            e.push((b::BIAS, &dummy));
                                            match vector {
                                                true => e.push((b::NORM_W4, &dummy)),
                                                false => e.push((b::X4, &x_b)),
                                            }
                                        }
                                        out.push((bind_group(gpu, pipe, &e), *grid));
                                    }
                                }
                                out
                            };
                        let serial = groups(&|_| 0);
                        let overlap = groups(&|c| c);
                        // At least 2 rounds through the copies, and ≥ 16 matrices per pass.
                        let count = (2 * copies).max(16);
                        let per_pass = count * chunks.len();
                        let time = |gs: &[(wgpu::BindGroup, [u32; 3])]| {
                            let ds: Vec<(&wgpu::BindGroup, [u32; 3])> = (0..per_pass)
                                .map(|i| (&gs[i % gs.len()].0, gs[i % gs.len()].1))
                                .collect();
                            time_dispatches(gpu, &stamps, pipe, &ds, opts.reps, count)
                        };
                        let serial_us = time(&serial)?;
                        let overlap_us = time(&overlap)?;
                        let rel_err = check_output(gpu, &y_b[0], &m, &x, &ent.name)?;
                        out.push(GemvRow {
                            n,
                            k,
                            entry: ent.name.clone(),
                            allocation,
                            planned: ent.planned && splits == 1,
                            splits: chunks.len(),
                            weight_bytes,
                            copies,
                            serial_us,
                            overlap_us,
                            rel_err,
                        });
                    }
                }
                let mut kept = packed_b;
                kept.extend(groups_b);
                Ok((out, kept))
            })?;
            rows.extend(rows_of);
            alive.extend(kept);
        }
    }
    Ok(GemvReport {
        device: gpu.info.name.clone(),
        group: opts.group,
        reps: opts.reps,
        allocations: opts.allocations,
        copy_bytes,
        copy_us,
        rows,
    })
}

// ---------------------------------------------------------------------------------------------
// GEMV variants: candidate decode kernels tried in the lab before the runtime adopts one

/// How a candidate decodes its codes before the dot products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeDecode {
    /// The runtime's: pairs of codes into IEEE halves, then `unpack2x16float` (two
    /// half → float conversions per pair).
    Half,
    /// Straight to f32 bits: code j shifted into the top of an f32 mantissa with the exponent
    /// of 1.0 (`0x3F800000 | q << 19` = 1 + q/16), no conversion instruction (suffix `m`).
    F32,
    /// Bytes of codes (`w & 0x0F0F0F0F`, then `w >> 4`) through `unpack4x8unorm`: 1 + q/16 =
    /// 1 + 255·u/16 (suffix `u`).
    Unorm,
}

/// A candidate M0E4 GEMV (k and the group multiples of 32): `rows` rows per workgroup of `wg`
/// threads, each thread reading one vec4<u32> (32 weights) of every row per step and issuing
/// `unroll` steps' loads before using any; with `prefetch`, the next round's loads are issued
/// before this round's products (software pipelining). The row sums are reduced with subgroup
/// additions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemvVariant {
    pub wg: u32,
    pub rows: u32,
    pub unroll: u32,
    pub decode: CodeDecode,
    pub prefetch: bool,
}

impl GemvVariant {
    /// Parses `WGxROWSxUNROLL` with optional suffixes `m` or `u` (the code decode) and `p`
    /// (prefetch), e.g. `128x4x2`, `128x4x2mp`.
    pub fn parse(s: &str) -> std::result::Result<GemvVariant, String> {
        let bad = || format!("`{s}`: expected WGxROWSxUNROLL[m|u][p], e.g. 128x4x2 or 128x4x2mp");
        let digits = s.trim_end_matches(['m', 'u', 'p']);
        let flags = &s[digits.len()..];
        let (decode, prefetch) = match flags {
            "" => (CodeDecode::Half, false),
            "p" => (CodeDecode::Half, true),
            "m" => (CodeDecode::F32, false),
            "mp" => (CodeDecode::F32, true),
            "u" => (CodeDecode::Unorm, false),
            "up" => (CodeDecode::Unorm, true),
            _ => return Err(bad()),
        };
        let v: Vec<u32> = digits
            .split('x')
            .map(|p| p.parse::<u32>().map_err(|_| bad()))
            .collect::<std::result::Result<_, _>>()?;
        let [wg, rows, unroll] = v[..] else {
            return Err(bad());
        };
        if !(32..=1024).contains(&wg)
            || !wg.is_power_of_two()
            || !(1..=16).contains(&rows)
            || !(1..=8).contains(&unroll)
        {
            return Err(format!(
                "`{s}`: workgroup a power of two in 32..=1024, rows 1..=16, unroll 1..=8"
            ));
        }
        Ok(GemvVariant {
            wg,
            rows,
            unroll,
            decode,
            prefetch,
        })
    }

    pub fn name(&self) -> String {
        let d = match self.decode {
            CodeDecode::Half => "",
            CodeDecode::F32 => "m",
            CodeDecode::Unorm => "u",
        };
        let p = if self.prefetch { "p" } else { "" };
        format!("sg{}x{}x{}{d}{p}", self.wg, self.rows, self.unroll)
    }

    /// The variant's WGSL (entry point `lab_gemv`): matmul's parameter struct, bindings and
    /// word decoder (`word_dot`, taken from matmul_io.wgsl and matmul.wgsl
    /// themselves) around its own loop.
    pub fn source(&self) -> String {
        let matmul = concat!(
            include_str!("kernels/matmul_io.wgsl"),
            include_str!("kernels/matmul.wgsl")
        );
        // A top-level item of the matmul files: from `head` to its closing brace.
        let item = |head: &str| {
            let start =
                (matmul.find(head)).unwrap_or_else(|| panic!("the matmul files have `{head}`"));
            let len = matmul[start..].find("\n}\n").expect("the item ends") + 3;
            &matmul[start..start + len]
        };
        let dot = match self.decode {
            CodeDecode::Half => "word_dot",
            CodeDecode::F32 => "word_dot_f32",
            CodeDecode::Unorm => "word_dot_unorm",
        };
        // The loop: without prefetch, each round loads then computes; with it, the next
        // round's loads are issued before this round's products.
        let body = if self.prefetch {
            "    var steps = round_steps(i, q4);\n\
             \x20   var cur = load_round(i, steps, base, gbase);\n\
             \x20   loop {\n\
             \x20       if (steps == 0u) {\n\
             \x20           break;\n\
             \x20       }\n\
             \x20       let i_next = i + steps * LWG;\n\
             \x20       let steps_next = round_steps(i_next, q4);\n\
             \x20       let nxt = load_round(i_next, steps_next, base, gbase);\n\
             \x20       compute_round(i, steps, cur, &acc);\n\
             \x20       cur = nxt;\n\
             \x20       i = i_next;\n\
             \x20       steps = steps_next;\n\
             \x20   }\n"
        } else {
            "    loop {\n\
             \x20       let steps = round_steps(i, q4);\n\
             \x20       if (steps == 0u) {\n\
             \x20           break;\n\
             \x20       }\n\
             \x20       let cur = load_round(i, steps, base, gbase);\n\
             \x20       compute_round(i, steps, cur, &acc);\n\
             \x20       i += steps * LWG;\n\
             \x20   }\n"
        };
        format!(
            "{prelude}\n{consts}\n{params}\n{word_dot}\n\
@group(0) @binding(0) var<uniform> params: Params;\n\
@group(0) @binding(2) var<storage, read_write> y: array<f32>;\n\
@group(0) @binding(5) var<storage, read> groups: array<u32>;\n\
@group(0) @binding(8) var<storage, read> x4: array<vec4<f32>>;\n\
@group(0) @binding(9) var<storage, read> packed4: array<vec4<u32>>;\n\
const LWG: u32 = {wg}u;\n\
const LR: u32 = {rows}u;\n\
const LU: u32 = {unroll}u;\n\
var<workgroup> lred: array<f32, LR * LWG>;\n\
// Codes 0..3 (lo) and 4..7 (hi) of a word as f32 1 + q/16: each code shifted into the top\n\
// four bits of the mantissa of 1.0.\n\
fn m0e4_lo_f32(w: u32) -> vec4<f32> {{\n\
    return bitcast<vec4<f32>>(((vec4<u32>(w) << vec4<u32>(19u, 15u, 11u, 7u)) & vec4<u32>(0x00780000u)) | vec4<u32>(0x3F800000u));\n\
}}\n\
fn word_dot_f32(w: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {{\n\
    return dot(m0e4_lo_f32(w), xa) + dot(m0e4_lo_f32(w >> 16u), xb);\n\
}}\n\
// Σ (1 + q/16) x = Σ x + (255/16) Σ unorm(q) x, the codes as bytes: even codes, odd codes.\n\
fn word_dot_unorm(w: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {{\n\
    return bitcast<f32>((w & 0x007FFFFFu) | 0x3F800000u) + xa.x + xb.y;\n\
}}\n\
// Steps in the round that starts at step i: LU while whole rounds remain, then 1, then 0.\n\
fn round_steps(i: u32, q4: u32) -> u32 {{\n\
    if (i + (LU - 1u) * LWG < q4) {{\n\
        return LU;\n\
    }}\n\
    return select(0u, 1u, i < q4);\n\
}}\n\
struct Round {{\n\
    w: array<vec4<u32>, LR * LU>,\n\
    sc: array<vec2<f32>, LR * LU>,\n\
}}\n\
fn load_round(i: u32, steps: u32, base: array<u32, LR>, gbase: array<u32, LR>) -> Round {{\n\
    var rd: Round;\n\
    for (var u = 0u; u < LU; u++) {{\n\
        if (u < steps) {{\n\
            let ii = i + u * LWG;\n\
            let gi = (ii * 32u) / params.group;\n\
            for (var r = 0u; r < LR; r++) {{\n\
                rd.w[u * LR + r] = packed4[base[r] + ii];\n\
                let g = gbase[r] + gi;\n\
                rd.sc[u * LR + r] = unpack2x16float(groups[g]);\n\
            }}\n\
        }}\n\
    }}\n\
    return rd;\n\
}}\n\
fn compute_round(i: u32, steps: u32, rd: Round, acc: ptr<function, array<f32, LR>>) {{\n\
    for (var u = 0u; u < LU; u++) {{\n\
        if (u >= steps) {{\n\
            break;\n\
        }}\n\
        let ii = i + u * LWG;\n\
        var xv: array<vec4<f32>, 8>;\n\
        var sxv = vec4<f32>(0.0);\n\
        for (var j = 0u; j < 8u; j++) {{\n\
            xv[j] = x4[ii * 8u + j];\n\
            sxv += xv[j];\n\
        }}\n\
        let sx = dot(sxv, vec4<f32>(1.0));\n\
        for (var r = 0u; r < LR; r++) {{\n\
            let wv = rd.w[u * LR + r];\n\
            let d = {dot}(wv.x, xv[0], xv[1]) + {dot}(wv.y, xv[2], xv[3])\n\
                + {dot}(wv.z, xv[4], xv[5]) + {dot}(wv.w, xv[6], xv[7]);\n\
            let s = rd.sc[u * LR + r];\n\
            (*acc)[r] += s.x * d + s.y * sx;\n\
        }}\n\
    }}\n\
}}\n\
@compute @workgroup_size(LWG)\n\
fn lab_gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,\n\
    @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_id) sgid: u32,\n\
    @builtin(num_subgroups) nsg: u32) {{\n\
    let o0 = (wg.x + wg.y * params.grid_width) * LR;\n\
    if (o0 >= params.n) {{\n\
        return;\n\
    }}\n\
    let q4 = params.words_per_row / 4u;\n\
    var base: array<u32, LR>;\n\
    var gbase: array<u32, LR>;\n\
    for (var r = 0u; r < LR; r++) {{\n\
        let row = params.w_row0 + min(o0 + r, params.n - 1u);\n\
        base[r] = row * q4;\n\
        gbase[r] = row * params.groups_per_row;\n\
    }}\n\
    var acc: array<f32, LR>;\n\
    var i = lid;\n\
{body}\
    for (var r = 0u; r < LR; r++) {{\n\
        let s = subgroupAdd(acc[r]);\n\
        if (sid == 0u) {{\n\
            lred[r * LWG + sgid] = s;\n\
        }}\n\
    }}\n\
    workgroupBarrier();\n\
    if (lid < LR && o0 + lid < params.n) {{\n\
        var t = 0.0;\n\
        for (var j = 0u; j < nsg; j++) {{\n\
            t += lred[lid * LWG + j];\n\
        }}\n\
        y[params.out_col0 + o0 + lid] = t;\n\
    }}\n\
}}\n",
            prelude = crate::kernels::m0e4_prelude(),
            consts = crate::kernels::params::constants_prelude(),
            params = item("struct Params {"),
            word_dot = item("fn word_dot("),
            wg = self.wg,
            rows = self.rows,
            unroll = self.unroll,
        )
    }
}

/// Compares the GEMV output `y` with the CPU (a few rows): a kernel that was timed but computed
/// nothing (a wrong binding, an early exit) fails the lab. Returns the largest error over Σ|w·x|.
fn check_output(
    gpu: &Gpu,
    y: &wgpu::Buffer,
    m: &M0E4Matrix,
    x: &[f32],
    entry: &str,
) -> Result<f64> {
    let (n, k) = (m.rows, m.cols);
    let bytes = 4 * n as u64;
    let read = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("lab.check"),
        size: bytes.div_ceil(4) * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(y, 0, &read, 0, bytes);
    gpu.queue.submit([enc.finish()]);
    let got = crate::readback::map_read_f32(gpu, &read, bytes)?;
    let mut w = vec![0f32; k];
    let mut worst = 0f64;
    for row in [0, n / 2, n - 1] {
        m.dequantize_row(row, &mut w);
        let want: f64 = w
            .iter()
            .zip(x)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        let size: f64 = w
            .iter()
            .zip(x)
            .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
            .sum();
        let g = f64::from(got[row]);
        worst = worst.max((g - want).abs() / size.max(1e-30));
        let ko = entry.starts_with("sg") && (entry.ends_with('u') || entry.ends_with("up"));
        if !ko && (!g.is_finite() || (g - want).abs() > 1e-4 * size + 1e-6) {
            return Err(GpuError::Readback(format!(
                "gemv lab: {entry} {n}×{k} row {row}: GPU {g}, CPU {want}"
            )));
        }
    }
    Ok(worst)
}
