//! Running the plan: weights uploaded as stored (no repacking), the KV cache allocated once,
//! activations placed by the memory planner, pipelines and bind groups created at load. Each
//! step binds the symbols, writes every op's uniforms in one buffer write, encodes all
//! dispatches into one compute pass and one submission, and reads back only the logits.
//!
//! `upload` allocates and fills the buffers, `kv` the KV cache and the RoPE tables,
//! `pipelines` the compute pipelines, `bind` the bind groups and the uniforms, `step` runs a
//! step and `profile` times its ops.

mod bind;
mod decode;
mod kv;
mod pipelines;
mod profile;
mod score;
mod step;
mod upload;

use tlite_model::deploy::DeployedModel;

use crate::estimate::{self, Limits, Sizer, Sizes};
use crate::graph::{self, Graph};
use crate::memory::{MAX_POSITIONS, MemoryEstimate};
use crate::planner::MemoryPlan;
use crate::{Gpu, Result};

pub use decode::{DecodeRun, MAX_LEAD};
pub use profile::Profiler;
pub use score::{Baseline, MAX_TOP_K, RowScore, Scored};
use upload::{Alloc, Resources};

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
/// [`MemoryEstimate`] predicted the same items beforehand).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MemoryReport {
    /// The bytes of each kind of buffer created, itemized as the estimate itemizes them
    /// (serialized as top-level fields).
    #[serde(flatten)]
    pub buffers: MemoryEstimate,
    /// Every buffer of the model.
    pub total_bytes: u64,
    /// Activations with one buffer per tensor.
    pub activation_bytes_unplanned: u64,
    pub activation_buffers: usize,
    pub activation_tensors: usize,
    pub ops: usize,
}

/// Where a load's time went, in seconds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct LoadTimes {
    /// Building the graph, sizing and checking every buffer.
    pub sizing: f64,
    /// Creating the buffers and writing the weights and tables into them, up to their arrival
    /// in device memory.
    pub buffers: f64,
    /// Creating the compute pipelines (shader compilation).
    pub pipelines: f64,
    /// Creating the bind groups.
    pub bind_groups: f64,
}

impl LoadTimes {
    pub fn total(&self) -> f64 {
        self.sizing + self.buffers + self.pipelines + self.bind_groups
    }
}

/// What the last step recorded (for tests and `--verbose`).
#[derive(Clone, Debug, Default)]
pub struct StepLog {
    pub dispatches: usize,
    pub submissions: usize,
    /// (source, destination) labels of every copy command.
    pub copies: Vec<(String, String)>,
    /// Rows of logits the step computed.
    pub logit_rows: usize,
}

/// A model resident on the GPU.
pub struct GpuModel {
    pub graph: Graph,
    pub plan: MemoryPlan,
    pub opts: RunOptions,
    pub memory: MemoryReport,
    /// Where the load's time went.
    pub load_times: LoadTimes,
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
    /// The score kernel's, created by the first scored step.
    score_pipeline: Option<wgpu::ComputePipeline>,
    /// Greedy decoding's next-token kernel, created by the first [`Self::decode_greedy`].
    next_token_pipeline: Option<wgpu::ComputePipeline>,
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
    /// [`GpuError::TooLarge`](crate::GpuError::TooLarge) whose hint names the largest `max_seq`
    /// / `max_batch` that fits. `max_seq` may exceed the model's trained positions (the CLI
    /// warns). Allocation and pipeline creation then run inside wgpu error scopes, so what the
    /// checks cannot foresee (the driver running out of memory) is a
    /// [`GpuError::OutOfMemory`](crate::GpuError::OutOfMemory), not a panic.
    pub fn load_with(
        gpu: &Gpu,
        model: &DeployedModel,
        opts: RunOptions,
        checks: ShaderChecks,
    ) -> Result<Self> {
        let mut clock = std::time::Instant::now();
        let mut lap = || {
            let now = std::time::Instant::now();
            let s = (now - clock).as_secs_f64();
            clock = now;
            s
        };
        let (graph, sizes) = Self::size(gpu, model, opts)?;
        gpu.check_health()?;
        let sizing = lap();
        let alloc = Alloc::new(gpu, &sizes);
        let mut memory = MemoryReport {
            activation_bytes_unplanned: sizes.plan.naive_bytes,
            activation_buffers: sizes.plan.buffer_bytes.len(),
            activation_tensors: graph.acts.len(),
            ops: graph.ops.len(),
            ..Default::default()
        };
        let res = Resources::allocate(&alloc, model, &graph, opts, &mut memory)?;
        // Buffers filled while mapped are copied to the device at the next submission: do it
        // now, so that the load includes the upload and the first step (time to first token)
        // does not, and the staging copies are freed before the first step.
        crate::readback::wait_for(gpu, gpu.queue.submit([]))?;
        gpu.check_health()?;
        let buffers = lap();
        let (pipelines, op_pipeline) = alloc.pipelines(&graph, checks)?;
        if let Some(cache) = &gpu.pipeline_cache {
            // Best effort: a cache that cannot be written (a read-only folder, a full disk)
            // costs the next load its compilation, nothing else.
            let _ = cache.save();
        }
        let pipelines_s = lap();
        let bind_groups = alloc.bind_groups(&graph, &res, &pipelines, &op_pipeline)?;
        let load_times = LoadTimes {
            sizing,
            buffers,
            pipelines: pipelines_s,
            bind_groups: lap(),
        };
        Ok(GpuModel {
            load_times,
            plan: sizes.plan.clone(),
            opts,
            memory,
            vocab: model.manifest.config.vocab_size,
            hidden: model.manifest.config.hidden_size,
            last_step: StepLog::default(),
            kv_labels: res.kv_labels,
            act_bufs: res.acts,
            tokens: res.io.tokens,
            logit_rows: res.io.logit_rows,
            uniforms: res.uniforms,
            slot: sizes.uniform_slot,
            staging: res.io.staging,
            pipelines,
            op_pipeline,
            bind_groups,
            profiler: None,
            score_pipeline: None,
            next_token_pipeline: None,
            graph,
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
        let graph = graph::build(&model.manifest, graph_seq, graph::PlanLimits::of(gpu))?;
        let sizer = Sizer::new(model, &graph, Limits::of(gpu))?;
        let sizes = sizer.size(opts).map_err(|v| sizer.error(opts, v))?;
        Ok((graph, sizes))
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
}
