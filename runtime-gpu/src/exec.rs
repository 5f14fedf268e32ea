//! Running the plan: weights uploaded as stored (no repacking), the KV cache allocated once,
//! activations placed by the memory planner, pipelines and bind groups created at load. Each
//! step binds the symbols, writes every op's uniforms in one buffer write, encodes all
//! dispatches into one compute pass and one submission, and reads back only the logits.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tlite_converter::deploy::{DeployedModel, Storage};
use wgpu::util::DeviceExt;

use crate::graph::{self, BufRef, Field, Graph, When};
use crate::kernels::Kernel;
use crate::planner::{self, Activation, MemoryPlan};
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

/// Memory figures of a loaded model.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MemoryReport {
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    /// Activations with the planner's sharing.
    pub activation_bytes: u64,
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
    pub fn load_with(
        gpu: &Gpu,
        model: &DeployedModel,
        opts: RunOptions,
        checks: ShaderChecks,
    ) -> Result<Self> {
        let man = &model.manifest;
        let cfg = &man.config;
        if opts.max_batch == 0 || opts.max_seq == 0 || opts.max_batch > opts.max_seq {
            return Err(GpuError::Model(format!(
                "max_batch {} must be between 1 and max_seq {}",
                opts.max_batch, opts.max_seq
            )));
        }
        let graph = graph::build(
            man,
            opts.max_seq,
            gpu.limits.max_storage_buffers_per_shader_stage,
        )?;
        let dev = &gpu.device;
        let limit = gpu.limits.max_storage_buffer_binding_size;
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);

        // Weights, as stored.
        let mut weights: HashMap<(String, usize, usize), wgpu::Buffer> = HashMap::new();
        let mut weight_bytes = 0u64;
        for t in &man.tensors {
            for (ci, ch) in t.chunks.iter().enumerate() {
                for (pi, part) in ch.parts.iter().enumerate() {
                    let (_, bytes) = model
                        .part(part)
                        .map_err(|e| GpuError::Model(e.to_string()))?;
                    let mut data: Vec<u8> = if t.storage == Storage::F16 {
                        bytes
                            .chunks_exact(2)
                            .flat_map(|b| {
                                half::f16::from_le_bytes([b[0], b[1]])
                                    .to_f32()
                                    .to_le_bytes()
                            })
                            .collect()
                    } else {
                        bytes.to_vec()
                    };
                    while !data.len().is_multiple_of(4) || data.is_empty() {
                        data.push(0);
                    }
                    if data.len() as u64 > limit {
                        return Err(GpuError::BindingTooLarge {
                            what: "a weight chunk",
                            needed: data.len() as u64,
                            limit,
                        });
                    }
                    weight_bytes += data.len() as u64;
                    let buf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some(part),
                        contents: &data,
                        usage: wgpu::BufferUsages::STORAGE,
                    });
                    weights.insert((t.name.clone(), ci, pi), buf);
                }
            }
        }

        // The KV cache: one K and one V buffer per layer at max_seq.
        let kv_elems = cfg.num_kv_heads * opts.max_seq * cfg.head_dim;
        let kv_labels: Vec<String> = (0..cfg.num_layers)
            .flat_map(|l| [format!("kv.k{l}"), format!("kv.v{l}")])
            .collect();
        let kv: Vec<wgpu::Buffer> = kv_labels
            .iter()
            .map(|label| {
                dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: (kv_elems * 4) as u64,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
            .collect();

        // Activations, planned.
        let mut first = vec![usize::MAX; graph.acts.len()];
        let mut last = vec![0usize; graph.acts.len()];
        for (i, op) in graph.ops.iter().enumerate() {
            for &a in op.reads.iter().chain(&op.writes) {
                first[a] = first[a].min(i);
                last[a] = last[a].max(i);
            }
        }
        let acts: Vec<Activation> = graph
            .acts
            .iter()
            .enumerate()
            .map(|(i, (name, elems))| Activation {
                name: name.clone(),
                elems: elems.clone(),
                first: first[i],
                last: last[i],
            })
            .collect();
        let bound = Syms {
            seq: opts.max_batch as u64,
            past: opts.max_seq as u64,
            out: opts.max_batch as u64,
        };
        let plan = planner::plan(&acts, &bound);
        let act_bufs: Vec<wgpu::Buffer> = plan
            .buffer_bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if b > limit {
                    return Err(GpuError::BindingTooLarge {
                        what: "an activation buffer (lower --max-batch)",
                        needed: b,
                        limit,
                    });
                }
                Ok(dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("act{i}")),
                    size: b.max(16),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }))
            })
            .collect::<Result<_>>()?;

        let storage = |label: &str, size: u64, usage| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(16),
                usage,
                mapped_at_creation: false,
            })
        };
        let copy_dst = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let tokens = storage("tokens", (opts.max_batch * 4) as u64, copy_dst);
        let logit_rows = storage("logit_rows", (opts.max_batch * 4) as u64, copy_dst);
        let dummy = storage("dummy", 16, wgpu::BufferUsages::STORAGE);
        let half = graph.rot / 2;
        let mut tables = Vec::new();
        for &(theta, factor) in &graph.rope_bases {
            let inv: Vec<f64> = (0..half)
                .map(|i| 1.0 / theta.powf((2 * i) as f64 / graph.rot as f64))
                .collect();
            let (mut cs, mut sn) = (Vec::new(), Vec::new());
            for p in 0..opts.max_seq {
                for f in &inv {
                    let a = p as f64 / factor * f;
                    cs.push(a.cos() as f32);
                    sn.push(a.sin() as f32);
                }
            }
            let mk = |label: &str, v: &[f32]| {
                dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: if v.is_empty() {
                        &[0u8; 16]
                    } else {
                        bytemuck::cast_slice(v)
                    },
                    usage: wgpu::BufferUsages::STORAGE,
                })
            };
            tables.push((mk("rope.cos", &cs), mk("rope.sin", &sn)));
        }

        // Pipelines, one per (kernel, entry), created lazily and cached.
        let mut modules: HashMap<Kernel, wgpu::ShaderModule> = HashMap::new();
        let mut pipe_index: HashMap<(Kernel, &'static str), usize> = HashMap::new();
        let mut pipelines = Vec::new();
        let mut op_pipeline = Vec::new();
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
                            // SAFETY: the runtime's own kernels, which clamp every index into
                            // its buffer and bound every loop by uniform sizes; the host checks
                            // the inputs that reach them (see ShaderChecks).
                            ShaderChecks::Unchecked => unsafe {
                                dev.create_shader_module_trusted(
                                    desc,
                                    wgpu::ShaderRuntimeChecks::unchecked(),
                                )
                            },
                        }
                    });
                    pipelines.push(
                        dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                            label: Some(&format!("{}::{}", op.kernel.name(), op.entry)),
                            layout: None,
                            module,
                            entry_point: Some(op.entry),
                            compilation_options: Default::default(),
                            cache: None,
                        }),
                    );
                    pipe_index.insert(key, pipelines.len() - 1);
                    pipelines.len() - 1
                }
            };
            op_pipeline.push(idx);
        }

        // Uniforms: one slot per op (the widest params, rounded up to the offset alignment), bound
        // at a fixed offset.
        let align = u64::from(gpu.limits.min_uniform_buffer_offset_alignment).max(16);
        let widest = graph.ops.iter().map(|o| 4 * o.params.len() as u64).max();
        let slot = widest.unwrap_or(16).max(64).div_ceil(align) * align;
        let uniforms = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniforms"),
            size: slot * graph.ops.len().max(1) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut bind_groups = Vec::new();
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
        let vocab = cfg.vocab_size;
        let staging = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits.readback"),
            size: (opts.max_batch * vocab * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Device(e.to_string()));
        }
        let memory = MemoryReport {
            weight_bytes,
            kv_bytes: (kv_elems * 4 * 2 * cfg.num_layers) as u64,
            activation_bytes: plan.planned_bytes,
            activation_bytes_unplanned: plan.naive_bytes,
            activation_buffers: plan.buffer_bytes.len(),
            activation_tensors: graph.acts.len(),
            ops: graph.ops.len(),
        };
        Ok(GpuModel {
            graph,
            plan,
            opts,
            memory,
            vocab,
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
        let n = tokens.len();
        if n == 0 || n > self.opts.max_batch {
            return Err(GpuError::Model(format!(
                "a step takes 1..={} tokens, got {n}",
                self.opts.max_batch
            )));
        }
        if past + n > self.opts.max_seq {
            return Err(GpuError::ContextOverflow {
                needed: past + n,
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
                    Field::U(e) => e.eval(&syms) as u32,
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
        let capture_buf = capture.then(|| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("hidden.capture"),
                size: (hidden_bytes * self.graph.layer_end.len() as u64).max(16),
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
                    let [x, y, z] = op.grid.clone().map(|e| e.eval(&syms) as u32);
                    if !run || x == 0 || y == 0 || z == 0 {
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
        self.last_step = log;
        Ok((out, hidden))
    }
}
