//! Running the plan: weights uploaded as stored (no repacking), the KV cache allocated once,
//! activations placed by the memory planner, pipelines and bind groups created at load. Each
//! step binds the symbols, writes every op's uniforms in one buffer write, encodes all
//! dispatches into one compute pass and one submission, and reads back only the logits.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tlite_model::deploy::{DeployedModel, Storage};

use crate::device;
use crate::estimate::{self, Limits, MIN_BUFFER, Sizer, Sizes};
use crate::graph::{self, BufRef, Field, Graph, When};
use crate::kernels::Kernel;
use crate::memory::{LimitKind, MAX_POSITIONS, MemoryEstimate, fmt_bytes};
use crate::planner::MemoryPlan;
use crate::readback::{map_read, map_read_f32, wait_for};
use crate::shape::Syms;
use crate::{Gpu, GpuError, Result};

/// Sizes the runtime is built for.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Positions of the KV cache (context length).
    pub max_seq: usize,
    /// Most tokens in one step (longer prompts are prefilled in several steps).
    pub max_batch: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_seq: 1024,
            max_batch: 256,
        }
    }
}

/// Whether the WGSL kernels run with the runtime checks naga inserts by default (a bounds
/// check on every buffer access, a counter in every loop so that no loop can hang the GPU).
/// They cost half the prefill speed and a fifth of the decode speed on an H100
/// (docs/PERF.md), so the runtime's own kernels run without them, as native runtimes' do:
/// every kernel clamps its indices into its buffers and bounds its loops by uniform sizes, and
/// the host validates every input that reaches a kernel (token ids, positions, sizes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShaderChecks {
    /// With naga's checks: an indexing bug reads zeros or skips the write (for debugging).
    Checked,
    /// Without them (the default).
    #[default]
    Unchecked,
}

/// Memory figures of a loaded model: the sizes of the buffers created (the load's
/// [`MemoryEstimate`] computed them beforehand).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MemoryReport {
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    /// Activations with the planner's sharing.
    pub activation_bytes: u64,
    /// The RoPE cos and sin tables.
    pub rope_bytes: u64,
    /// The per-op uniform slots.
    pub uniform_bytes: u64,
    /// Token ids, logit rows, the logits readback buffer and the placeholder binding.
    pub io_bytes: u64,
    /// Every buffer of the model.
    pub total_bytes: u64,
    /// Activations with one buffer per tensor.
    pub activation_bytes_unplanned: u64,
    pub activation_buffers: usize,
    pub activation_tensors: usize,
    pub ops: usize,
}

/// What the last step recorded (for tests and `--verbose`).
#[derive(Clone, Debug, Default)]
pub struct StepLog {
    pub dispatches: usize,
    pub submissions: usize,
    /// (source, destination) labels of every copy command.
    pub copies: Vec<(String, String)>,
}

/// GPU time per kind of op, from timestamps written between dispatches (`tlite bench
/// --profile`). Needs `TIMESTAMP_QUERY_INSIDE_PASSES`; a step that is profiled always waits.
pub struct Profiler {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    /// MAP_READ copy of `resolve`, read after each profiled step.
    read: wgpu::Buffer,
    capacity: u32,
    period_ns: f64,
    /// (phase, op kind) → (dispatches, GPU seconds).
    pub ops: BTreeMap<(String, String), (usize, f64)>,
    /// phase → (steps, CPU seconds spent encoding and submitting, wall seconds of the steps).
    pub steps: BTreeMap<String, (usize, f64, f64)>,
}

impl Profiler {
    /// The op's kind: its label without the layer prefix and chunk index
    /// (`l3.q_proj[0] gemv` → `q_proj gemv`).
    fn kind(label: &str) -> String {
        let rest = match label.split_once('.') {
            Some((l, r)) if l.starts_with('l') && l[1..].chars().all(|c| c.is_ascii_digit()) => r,
            _ => label,
        };
        let mut out = String::with_capacity(rest.len());
        let mut skip = false;
        for ch in rest.chars() {
            match ch {
                '[' => skip = true,
                ']' => skip = false,
                _ if !skip => out.push(ch),
                _ => {}
            }
        }
        out
    }
}

/// A buffer of `size` bytes created mapped and filled by `fill` (the whole mapped range; the
/// buffer starts zeroed). A buffer the device could not create cannot be mapped: that is an
/// error here, and the error scope around the call says why.
fn upload(
    dev: &wgpu::Device,
    label: &str,
    size: u64,
    usage: wgpu::BufferUsages,
    fill: impl FnOnce(wgpu::WriteOnly<'_, [u8]>),
) -> Result<wgpu::Buffer> {
    let buf = dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage,
        mapped_at_creation: true,
    });
    {
        let mut view = buf
            .get_mapped_range_mut(..)
            .map_err(|e| GpuError::Device(format!("mapping `{label}` for its upload: {e}")))?;
        fill(view.slice(..));
    }
    buf.unmap();
    Ok(buf)
}

/// Writes `f(0..n)` as little-endian f32 to the start of `dst`, a block at a time.
fn write_f32(mut dst: wgpu::WriteOnly<'_, [u8]>, n: usize, mut f: impl FnMut(usize) -> f32) {
    const BLOCK: usize = 16 << 10;
    let mut tmp: Vec<u8> = Vec::with_capacity(4 * BLOCK.min(n));
    let mut i = 0;
    while i < n {
        let end = (i + BLOCK).min(n);
        tmp.clear();
        tmp.extend((i..end).flat_map(|j| f(j).to_le_bytes()));
        dst.slice(4 * i..4 * end).copy_from_slice(&tmp);
        i = end;
    }
}

/// A model resident on the GPU.
pub struct GpuModel {
    pub graph: Graph,
    pub plan: MemoryPlan,
    pub opts: RunOptions,
    pub memory: MemoryReport,
    pub vocab: usize,
    pub hidden: usize,
    pub last_step: StepLog,
    kv_labels: Vec<String>,
    act_bufs: Vec<wgpu::Buffer>,
    tokens: wgpu::Buffer,
    logit_rows: wgpu::Buffer,
    uniforms: wgpu::Buffer,
    slot: u64,
    staging: wgpu::Buffer,
    pipelines: Vec<wgpu::ComputePipeline>,
    op_pipeline: Vec<usize>,
    bind_groups: Vec<wgpu::BindGroup>,
    /// Set by [`Self::enable_profiling`].
    pub profiler: Option<Profiler>,
}

impl GpuModel {
    /// Uploads `model` and prepares every step's resources.
    pub fn load(gpu: &Gpu, model: &DeployedModel, opts: RunOptions) -> Result<Self> {
        Self::load_with(gpu, model, opts, ShaderChecks::default())
    }

    /// [`Self::load`] with a choice of shader runtime checks.
    ///
    /// Before anything is allocated, the options are validated and every buffer, binding,
    /// kernel parameter and grid is sized at their bounds and checked against the device's
    /// limits and (where the backend reports it) its free memory; an excess is a
    /// [`GpuError::TooLarge`] whose hint names the largest `max_seq` / `max_batch` that fits.
    /// `max_seq` may exceed the model's trained positions (the CLI warns). Allocation and
    /// pipeline creation then run inside wgpu error scopes, so what the checks cannot foresee
    /// (the driver running out of memory) is a [`GpuError::OutOfMemory`], not a panic.
    pub fn load_with(
        gpu: &Gpu,
        model: &DeployedModel,
        opts: RunOptions,
        checks: ShaderChecks,
    ) -> Result<Self> {
        let sizes = Self::size(gpu, model, opts)?;
        gpu.check_health()?;
        let (graph, sizes) = sizes;
        let man = &model.manifest;
        let cfg = &man.config;
        let dev = &gpu.device;
        let est = &sizes.estimate;
        let oom_hint = match gpu.memory() {
            Some(m) => format!(
                "this load needs {} ({}) of the {} the device reports free; use a smaller \
                 --max-seq or --max-batch, or free GPU memory used by other programs",
                fmt_bytes(est.total()),
                est.breakdown(),
                fmt_bytes(m.limit())
            ),
            None => format!(
                "this load needs {} ({}); use a smaller --max-seq or --max-batch, or free GPU \
                 memory used by other programs",
                fmt_bytes(est.total()),
                est.breakdown()
            ),
        };
        let scoped = |what: &str, bytes: u64, work: &mut dyn FnMut() -> Result<()>| {
            device::scoped(gpu, what, bytes, &oom_hint, work)
        };
        let buffer = |label: &str, size: u64, usage| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let mut memory = MemoryReport {
            activation_bytes_unplanned: sizes.plan.naive_bytes,
            activation_buffers: sizes.plan.buffer_bytes.len(),
            activation_tensors: graph.acts.len(),
            ops: graph.ops.len(),
            ..Default::default()
        };

        // Weights, as stored (f16 widened to f32), written straight into mapped buffers.
        let mut weights: HashMap<(String, usize, usize), wgpu::Buffer> = HashMap::new();
        scoped("the weights", est.weight_bytes, &mut || {
            let mut sized = sizes.weights.iter();
            for t in &man.tensors {
                for (ci, ch) in t.chunks.iter().enumerate() {
                    for (pi, part) in ch.parts.iter().enumerate() {
                        let size = sized.next().copied().unwrap_or(4);
                        let (_, bytes) = model
                            .part(part)
                            .map_err(|e| GpuError::Model(e.to_string()))?;
                        let f16 = t.storage == Storage::F16;
                        let buf = upload(dev, part, size, wgpu::BufferUsages::STORAGE, |dst| {
                            if f16 {
                                write_f32(dst, bytes.len() / 2, |i| {
                                    half::f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])
                                        .to_f32()
                                });
                            } else {
                                dst.into_slice(..bytes.len()).copy_from_slice(bytes);
                            }
                        })?;
                        memory.weight_bytes += buf.size();
                        weights.insert((t.name.clone(), ci, pi), buf);
                    }
                }
            }
            Ok(())
        })?;

        // The KV cache: one K and one V buffer per layer at max_seq.
        let kv_labels: Vec<String> = (0..cfg.num_layers)
            .flat_map(|l| [format!("kv.k{l}"), format!("kv.v{l}")])
            .collect();
        let mut kv: Vec<wgpu::Buffer> = Vec::with_capacity(kv_labels.len());
        let kv_what = format!("the KV cache for --max-seq {}", opts.max_seq);
        scoped(&kv_what, est.kv_bytes, &mut || {
            for label in &kv_labels {
                let b = buffer(label, sizes.kv_buffer, wgpu::BufferUsages::STORAGE);
                memory.kv_bytes += b.size();
                kv.push(b);
            }
            Ok(())
        })?;

        // Activations, planned.
        let plan = sizes.plan.clone();
        let mut act_bufs: Vec<wgpu::Buffer> = Vec::with_capacity(plan.buffer_bytes.len());
        let act_what = format!("the activations for --max-batch {}", opts.max_batch);
        scoped(&act_what, est.activation_bytes, &mut || {
            for (i, &b) in plan.buffer_bytes.iter().enumerate() {
                let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
                let buf = buffer(&format!("act{i}"), b.max(MIN_BUFFER), usage);
                memory.activation_bytes += buf.size();
                act_bufs.push(buf);
            }
            Ok(())
        })?;

        // Step inputs and outputs, RoPE tables and uniforms.
        let copy_dst = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let mut io = Vec::new();
        let mut tables = Vec::new();
        let mut uniforms = None;
        let other = est.io_bytes + est.rope_bytes + est.uniform_bytes;
        scoped(
            "the RoPE tables, step buffers and uniforms",
            other,
            &mut || {
                for (label, size, usage) in [
                    ("tokens", sizes.io_small, copy_dst),
                    ("logit_rows", sizes.io_small, copy_dst),
                    ("dummy", MIN_BUFFER, wgpu::BufferUsages::STORAGE),
                    (
                        "logits.readback",
                        sizes.readback,
                        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    ),
                ] {
                    let b = buffer(label, size, usage);
                    memory.io_bytes += b.size();
                    io.push(b);
                }
                let half = graph.rot / 2;
                for &(theta, factor) in &graph.rope_bases {
                    let inv: Vec<f64> = (0..half)
                        .map(|i| 1.0 / theta.powf((2 * i) as f64 / graph.rot as f64))
                        .collect();
                    let angle = |i: usize| (i / half.max(1)) as f64 / factor * inv[i % half.max(1)];
                    let n = opts.max_seq * half;
                    let usage = wgpu::BufferUsages::STORAGE;
                    let cos = upload(dev, "rope.cos", sizes.rope_table, usage, |d| {
                        write_f32(d, n, |i| angle(i).cos() as f32);
                    })?;
                    let sin = upload(dev, "rope.sin", sizes.rope_table, usage, |d| {
                        write_f32(d, n, |i| angle(i).sin() as f32);
                    })?;
                    memory.rope_bytes += cos.size() + sin.size();
                    tables.push((cos, sin));
                }
                let b = buffer(
                    "uniforms",
                    est.uniform_bytes,
                    wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                );
                memory.uniform_bytes += b.size();
                uniforms = Some(b);
                Ok(())
            },
        )?;
        let [tokens, logit_rows, dummy, staging] =
            <[wgpu::Buffer; 4]>::try_from(io).map_err(|_| GpuError::Device("io buffers".into()))?;
        let uniforms = uniforms.ok_or_else(|| GpuError::Device("uniforms".into()))?;
        memory.total_bytes = memory.weight_bytes
            + memory.kv_bytes
            + memory.activation_bytes
            + memory.rope_bytes
            + memory.uniform_bytes
            + memory.io_bytes;

        // Pipelines, one per (kernel, entry), created lazily and cached.
        let mut pipelines = Vec::new();
        let mut op_pipeline = Vec::new();
        scoped("the compute pipelines", 0, &mut || {
            let mut modules: HashMap<Kernel, wgpu::ShaderModule> = HashMap::new();
            let mut pipe_index: HashMap<(Kernel, &'static str), usize> = HashMap::new();
            for op in &graph.ops {
                let key = (op.kernel, op.entry);
                let idx = match pipe_index.get(&key) {
                    Some(&i) => i,
                    None => {
                        let module = modules.entry(op.kernel).or_insert_with(|| {
                            let desc = wgpu::ShaderModuleDescriptor {
                                label: Some(op.kernel.name()),
                                source: wgpu::ShaderSource::Wgsl(op.kernel.source().into()),
                            };
                            match checks {
                                ShaderChecks::Checked => dev.create_shader_module(desc),
                                // SAFETY: the runtime's own kernels, which clamp every index
                                // into its buffer and bound every loop by uniform sizes; the
                                // host checks the inputs that reach them (see ShaderChecks).
                                ShaderChecks::Unchecked => unsafe {
                                    dev.create_shader_module_trusted(
                                        desc,
                                        wgpu::ShaderRuntimeChecks::unchecked(),
                                    )
                                },
                            }
                        });
                        pipelines.push(dev.create_compute_pipeline(
                            &wgpu::ComputePipelineDescriptor {
                                label: Some(&format!("{}::{}", op.kernel.name(), op.entry)),
                                layout: None,
                                module,
                                entry_point: Some(op.entry),
                                compilation_options: Default::default(),
                                cache: None,
                            },
                        ));
                        pipe_index.insert(key, pipelines.len() - 1);
                        pipelines.len() - 1
                    }
                };
                op_pipeline.push(idx);
            }
            Ok(())
        })?;

        // Bind groups, with each op's uniforms at a fixed offset of its own slot.
        let slot = sizes.uniform_slot;
        let mut bind_groups = Vec::with_capacity(graph.ops.len());
        scoped("the bind groups", 0, &mut || {
            for (i, op) in graph.ops.iter().enumerate() {
                let resolve = |r: &BufRef| -> Result<&wgpu::Buffer> {
                    Ok(match r {
                        BufRef::Act(a) => &act_bufs[plan.assignment[*a]],
                        BufRef::Part {
                            tensor,
                            chunk,
                            part,
                        } => weights
                            .get(&(tensor.clone(), *chunk, *part))
                            .ok_or_else(|| {
                                GpuError::Model(format!(
                                    "weight `{tensor}` chunk {chunk} part {part} missing"
                                ))
                            })?,
                        BufRef::KvK(l) => &kv[2 * l],
                        BufRef::KvV(l) => &kv[2 * l + 1],
                        BufRef::Tokens => &tokens,
                        BufRef::LogitRows => &logit_rows,
                        BufRef::Cos(b) => &tables[*b].0,
                        BufRef::Sin(b) => &tables[*b].1,
                        BufRef::Dummy => &dummy,
                    })
                };
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniforms,
                        offset: slot * i as u64,
                        size: wgpu::BufferSize::new((op.params.len() * 4) as u64),
                    }),
                }];
                for (b, r) in &op.bindings {
                    entries.push(wgpu::BindGroupEntry {
                        binding: *b,
                        resource: resolve(r)?.as_entire_binding(),
                    });
                }
                bind_groups.push(dev.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&op.label),
                    layout: &pipelines[op_pipeline[i]].get_bind_group_layout(0),
                    entries: &entries,
                }));
            }
            Ok(())
        })?;
        Ok(GpuModel {
            graph,
            plan,
            opts,
            memory,
            vocab: cfg.vocab_size,
            hidden: cfg.hidden_size,
            last_step: StepLog::default(),
            kv_labels,
            act_bufs,
            tokens,
            logit_rows,
            uniforms,
            slot,
            staging,
            pipelines,
            op_pipeline,
            bind_groups,
            profiler: None,
        })
    }

    /// What a load of `model` with `opts` would allocate, with every check of
    /// [`Self::load_with`] but nothing allocated.
    pub fn estimate(gpu: &Gpu, model: &DeployedModel, opts: RunOptions) -> Result<MemoryEstimate> {
        Ok(Self::size(gpu, model, opts)?.1.estimate)
    }

    /// The plan and the sizes of a load, checked (see [`Self::load_with`]).
    fn size(gpu: &Gpu, model: &DeployedModel, opts: RunOptions) -> Result<(Graph, Sizes)> {
        estimate::validate(opts)?;
        // A context beyond 32-bit positions fails the sizing below; the graph is built at a
        // bound its parameters can hold so that the hint can be searched for.
        let graph_seq = opts
            .max_seq
            .min(usize::try_from(MAX_POSITIONS).unwrap_or(usize::MAX));
        let graph = graph::build(
            &model.manifest,
            graph_seq,
            gpu.limits.max_storage_buffers_per_shader_stage,
        )?;
        let sizer = Sizer::new(model, &graph, Limits::of(gpu))?;
        let sizes = sizer.size(opts).map_err(|v| sizer.error(opts, v))?;
        Ok((graph, sizes))
    }

    /// Times every following step per op with GPU timestamps (see [`Profiler`]).
    pub fn enable_profiling(&mut self, gpu: &Gpu) -> Result<()> {
        let need = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if !gpu.features.contains(need) {
            return Err(GpuError::Model(format!(
                "profiling needs timestamp queries inside passes, which {} does not offer",
                gpu.info.name
            )));
        }
        let capacity = (self.graph.ops.len() as u32 + 1).min(wgpu::QUERY_SET_MAX_QUERIES);
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: capacity,
        });
        let buffer = |label, usage| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: u64::from(capacity) * 8,
                usage,
                mapped_at_creation: false,
            })
        };
        use wgpu::BufferUsages as U;
        self.profiler = Some(Profiler {
            set,
            resolve: buffer("profile.resolve", U::QUERY_RESOLVE | U::COPY_SRC),
            read: buffer("profile.read", U::MAP_READ | U::COPY_DST),
            capacity,
            period_ns: f64::from(gpu.queue.get_timestamp_period()),
            ops: BTreeMap::new(),
            steps: BTreeMap::new(),
        });
        Ok(())
    }

    /// Labels of the KV-cache buffers.
    pub fn kv_labels(&self) -> &[String] {
        &self.kv_labels
    }

    /// Runs `tokens` at positions `past..`, writing their K/V into the cache, and returns the
    /// logits (`[rows.len(), vocab]`, row-major) of the step-relative positions `rows` (none:
    /// the step is submitted without waiting and nothing is read back).
    pub fn step(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
    ) -> Result<Vec<f32>> {
        Ok(self.step_inner(gpu, tokens, past, rows, false)?.0)
    }

    /// As [`Self::step`], also returning the residual stream after every layer
    /// (`layers × seq × hidden`). The step is split into one compute pass per layer with a copy
    /// of the residual after each: a debugging aid for per-layer parity, not the fast path.
    pub fn step_with_hidden(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (l, h) = self.step_inner(gpu, tokens, past, rows, true)?;
        Ok((l, h.unwrap_or_default()))
    }

    fn step_inner(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
        capture: bool,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        gpu.check_health()?;
        let n = tokens.len();
        if n == 0 || n > self.opts.max_batch {
            return Err(GpuError::Model(format!(
                "a step takes 1..={} tokens, got {n}",
                self.opts.max_batch
            )));
        }
        let end = past.saturating_add(n);
        if end > self.opts.max_seq {
            return Err(GpuError::ContextOverflow {
                needed: end,
                max: self.opts.max_seq,
            });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(GpuError::Model(format!(
                "token id {t} is outside the vocabulary of {}",
                self.vocab
            )));
        }
        if rows.iter().any(|&r| r as usize >= n) {
            return Err(GpuError::Model(format!(
                "logit rows {rows:?} must be within the step's {n} tokens"
            )));
        }
        // The logits buffers hold max_batch rows.
        if rows.len() > self.opts.max_batch {
            return Err(GpuError::Model(format!(
                "a step reads back at most {} logit rows (max_batch), got {}",
                self.opts.max_batch,
                rows.len()
            )));
        }
        let syms = Syms {
            seq: n as u64,
            past: past as u64,
            out: rows.len() as u64,
        };
        let t_start = Instant::now();
        let profiling = self.profiler.is_some() && !capture;
        let phase = if n > 1 { "prefill" } else { "decode" };
        let mut stamped: Vec<usize> = Vec::new();
        let q = &gpu.queue;
        q.write_buffer(&self.tokens, 0, bytemuck::cast_slice(tokens));
        q.write_buffer(&self.logit_rows, 0, bytemuck::cast_slice(rows));
        let mut u = vec![0u8; self.uniforms.size() as usize];
        for (i, op) in self.graph.ops.iter().enumerate() {
            let base = i * self.slot as usize;
            for (j, f) in op.params.iter().enumerate() {
                let bits = match f {
                    // Checked at load for every step within the options; kept as a guard.
                    Field::U(e) => {
                        let v = e.checked_eval(&syms).unwrap_or(u64::MAX);
                        u32::try_from(v).map_err(|_| GpuError::TooLarge {
                            what: format!("a parameter of `{}` in this step", op.label),
                            needed: v,
                            limit: u64::from(u32::MAX),
                            kind: LimitKind::Param32,
                            hint: "use a smaller --max-seq or --max-batch".into(),
                        })?
                    }
                    Field::F(v) => v.to_bits(),
                };
                u[base + 4 * j..base + 4 * j + 4].copy_from_slice(&bits.to_le_bytes());
            }
        }
        q.write_buffer(&self.uniforms, 0, &u);
        let mut log = StepLog::default();
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        let hidden_bytes = (n * self.hidden * 4) as u64;
        let capture_bytes = hidden_bytes
            .saturating_mul(self.graph.layer_end.len() as u64)
            .max(16);
        if capture && capture_bytes > gpu.limits.max_buffer_size {
            return Err(GpuError::TooLarge {
                what: format!("the residual capture of a {n}-token step"),
                needed: capture_bytes,
                limit: gpu.limits.max_buffer_size,
                kind: LimitKind::BufferSize,
                hint: "capture fewer tokens per step".into(),
            });
        }
        let capture_buf = capture.then(|| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("hidden.capture"),
                size: capture_bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        // Pass boundaries: one pass for the whole step, or one per layer when capturing.
        let mut ends: Vec<usize> = if capture {
            self.graph.layer_end.clone()
        } else {
            Vec::new()
        };
        ends.push(self.graph.ops.len() - 1);
        // Cooperative priority: submit every `every` dispatches and wait, so other contexts'
        // work can run between the parts of a step (see `crate::priority`).
        let every = gpu.priority.submit_every.filter(|&e| e > 0);
        let mut start = 0;
        for (pi, &end) in ends.iter().enumerate() {
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("step"),
                    timestamp_writes: None,
                });
                let prof = self.profiler.as_ref().filter(|_| profiling);
                if let Some(pr) = prof {
                    pass.write_timestamp(&pr.set, 0);
                }
                for i in start..=end {
                    let op = &self.graph.ops[i];
                    let run = match op.when {
                        When::Always => true,
                        When::Decode => n == 1,
                        When::Prefill => n > 1,
                    };
                    if !run {
                        continue;
                    }
                    let [x, y, z] =
                        grid(op, &syms, gpu.limits.max_compute_workgroups_per_dimension)?;
                    if x == 0 || y == 0 || z == 0 {
                        continue;
                    }
                    pass.set_pipeline(&self.pipelines[self.op_pipeline[i]]);
                    pass.set_bind_group(0, &self.bind_groups[i], &[]);
                    pass.dispatch_workgroups(x, y, z);
                    log.dispatches += 1;
                    if let Some(pr) = prof
                        && (stamped.len() as u32 + 1) < pr.capacity
                    {
                        stamped.push(i);
                        pass.write_timestamp(&pr.set, stamped.len() as u32);
                    }
                    if every.is_some_and(|e| log.dispatches % e == 0)
                        && i + 1 < self.graph.ops.len()
                    {
                        drop(pass);
                        let done = std::mem::replace(
                            &mut enc,
                            gpu.device.create_command_encoder(&Default::default()),
                        );
                        wait_for(gpu, gpu.queue.submit([done.finish()]))?;
                        log.submissions += 1;
                        pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some("step"),
                            timestamp_writes: None,
                        });
                    }
                }
            }
            if let Some(cb) = &capture_buf
                && pi < self.graph.layer_end.len()
            {
                let src = &self.act_bufs[self.plan.assignment[self.graph.residual]];
                enc.copy_buffer_to_buffer(src, 0, cb, hidden_bytes * pi as u64, hidden_bytes);
                log.copies.push((
                    format!("act{}", self.plan.assignment[self.graph.residual]),
                    "hidden.capture".into(),
                ));
            }
            start = end + 1;
        }
        // Bytes of timestamps to read back after the step.
        let stamp_bytes = u64::from(stamped.len() as u32 + 1) * 8;
        if let Some(pr) = self.profiler.as_ref().filter(|_| profiling)
            && !stamped.is_empty()
        {
            enc.resolve_query_set(&pr.set, 0..stamped.len() as u32 + 1, &pr.resolve, 0);
            enc.copy_buffer_to_buffer(&pr.resolve, 0, &pr.read, 0, stamp_bytes);
        }
        let bytes = (rows.len() * self.vocab * 4) as u64;
        if bytes == 0 && !profiling {
            // No logits asked for (a prefill chunk before the last): submit without waiting;
            // the queue orders the next step after this one.
            gpu.queue.submit([enc.finish()]);
            log.submissions += 1;
            gpu.check_health()?;
            let hidden = match capture_buf {
                Some(cb) => Some(map_read_f32(gpu, &cb, cb.size())?),
                None => None,
            };
            self.last_step = log;
            return Ok((Vec::new(), hidden));
        }
        if bytes > 0 {
            let src = &self.act_bufs[self.plan.assignment[self.graph.logits]];
            enc.copy_buffer_to_buffer(src, 0, &self.staging, 0, bytes);
            log.copies.push((
                format!("act{}", self.plan.assignment[self.graph.logits]),
                "logits.readback".into(),
            ));
        }
        let encoded = t_start.elapsed().as_secs_f64();
        let index = gpu.queue.submit([enc.finish()]);
        log.submissions += 1;
        let out = if bytes > 0 {
            map_read_f32(gpu, &self.staging, bytes)?
        } else {
            wait_for(gpu, index)?;
            Vec::new()
        };
        if profiling && let Some(pr) = self.profiler.as_mut() {
            let wall = t_start.elapsed().as_secs_f64();
            let e = pr.steps.entry(phase.to_owned()).or_default();
            e.0 += 1;
            e.1 += encoded;
            e.2 += wall;
            if !stamped.is_empty() {
                let ticks: Vec<u64> = map_read(gpu, &pr.read, stamp_bytes)?
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect();
                for (j, &i) in stamped.iter().enumerate() {
                    let dt = ticks[j + 1].saturating_sub(ticks[j]) as f64 * pr.period_ns * 1e-9;
                    let kind = Profiler::kind(&self.graph.ops[i].label);
                    let e = pr.ops.entry((phase.to_owned(), kind)).or_default();
                    e.0 += 1;
                    e.1 += dt;
                }
            }
        }
        let hidden = match capture_buf {
            Some(cb) => Some(map_read_f32(gpu, &cb, cb.size())?),
            None => None,
        };
        gpu.check_health()?;
        self.last_step = log;
        Ok((out, hidden))
    }
}

/// The workgroup grid of `op` in a step: within the device's per-dimension limit (checked at
/// load for every step the options allow; kept as a guard, since wgpu rejects a larger one).
fn grid(op: &graph::Op, syms: &Syms, max: u32) -> Result<[u32; 3]> {
    let mut out = [0u32; 3];
    for (o, e) in out.iter_mut().zip(&op.grid) {
        let v = e.checked_eval(syms).unwrap_or(u64::MAX);
        *o = u32::try_from(v)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| GpuError::TooLarge {
                what: format!("the grid of `{}` in this step", op.label),
                needed: v,
                limit: u64::from(max),
                kind: LimitKind::Workgroups,
                hint: "use a smaller --max-batch".into(),
            })?;
    }
    Ok(out)
}
