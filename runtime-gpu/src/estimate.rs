//! Everything a load will allocate, sized before anything is: weights as uploaded, the KV
//! cache, the planned activations, the RoPE tables, the uniforms and the I/O buffers. Each
//! buffer is checked against the device's buffer and storage-binding limits and the kernels'
//! 32-bit indices, every kernel parameter and workgroup grid at the run options' bounds against
//! `u32` and the device's grid limit, and the total against the device memory where the
//! backend reports it. All arithmetic is checked; a failure names what to change, with the
//! largest `max_seq` / `max_batch` that would pass.

use tlite_model::config::ModelConfig;
use tlite_model::deploy::DeployedModel;

use crate::exec::RunOptions;
use crate::graph::join::WeightBuffer;
use crate::graph::{Field, Graph};
use crate::memory::{
    DeviceMemory, LimitKind, MAX_INDEXED_BYTES, MAX_POSITIONS, MemoryEstimate, fmt_bytes,
};
use crate::planner::{self, Activation, MemoryPlan};
use crate::shape::Syms;
use crate::{GpuError, Result};

/// Smallest size of the runtime's small buffers (a zero-size binding is invalid).
pub(crate) const MIN_BUFFER: u64 = 16;

/// One weight buffer as it will be uploaded.
#[derive(Clone, Debug)]
pub(crate) struct WeightPart {
    /// Its key and the stored parts it holds.
    pub buffer: WeightBuffer,
    /// Bytes on the GPU: f16 widened to f32, padded to a multiple of 4, at least 4.
    pub bytes: u64,
}

impl WeightPart {
    /// The name errors give it: its stored part, or the joined tensor's name.
    fn label(&self) -> &str {
        match self.buffer.parts.as_slice() {
            [one] => one,
            _ => &self.buffer.key.0,
        }
    }
}

/// The device limits a load is checked against.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub max_buffer: u64,
    pub max_binding: u64,
    pub max_workgroups: u64,
    pub uniform_align: u64,
    pub memory: Option<DeviceMemory>,
}

impl Limits {
    pub fn of(gpu: &crate::Gpu) -> Limits {
        Limits {
            max_buffer: gpu.limits.max_buffer_size,
            max_binding: gpu.limits.max_storage_buffer_binding_size,
            max_workgroups: u64::from(gpu.limits.max_compute_workgroups_per_dimension),
            uniform_align: u64::from(gpu.limits.min_uniform_buffer_offset_alignment).max(16),
            memory: gpu.memory(),
        }
    }
}

/// The sizes of one load, all within the limits.
#[derive(Clone, Debug)]
pub(crate) struct Sizes {
    pub estimate: MemoryEstimate,
    pub plan: MemoryPlan,
    /// One K or V buffer of one layer.
    pub kv_buffer: u64,
    /// One cos or sin table.
    pub rope_table: u64,
    /// Bytes per op in the uniform buffer.
    pub uniform_slot: u64,
    /// The token-id and logit-row buffers (each).
    pub io_small: u64,
    /// The logits readback buffer.
    pub readback: u64,
    /// Every weight buffer (what it holds and its size), in the order of
    /// [`crate::graph::join::weight_buffers`]: the upload writes exactly these.
    pub weights: Vec<WeightPart>,
}

/// A size beyond a limit.
#[derive(Debug)]
pub(crate) struct Violation {
    what: String,
    needed: u64,
    limit: u64,
    kind: LimitKind,
    /// What to change when neither a smaller `max_seq` nor a smaller `max_batch` helps.
    fallback: String,
}

/// Sizes loads of one model on one device for any run options.
pub(crate) struct Sizer<'a> {
    cfg: &'a ModelConfig,
    graph: &'a Graph,
    acts: Vec<Activation>,
    weights: Vec<WeightPart>,
    limits: Limits,
}

fn mul(a: u64, b: u64) -> Option<u64> {
    a.checked_mul(b)
}

fn u(v: usize) -> u64 {
    v as u64
}

impl<'a> Sizer<'a> {
    pub fn new(model: &'a DeployedModel, graph: &'a Graph, limits: Limits) -> Result<Sizer<'a>> {
        let man = &model.manifest;
        let mut weights = Vec::new();
        for w in crate::graph::join::weight_buffers(&man.tensors, &graph.joined) {
            let stored = |parts: &[String]| -> Result<u64> {
                let mut len = 0u64;
                for part in parts {
                    let (_, bytes) = model
                        .part(part)
                        .map_err(|e| GpuError::Model(e.to_string()))?;
                    len = len.saturating_add(u(bytes.len()));
                }
                Ok(len)
            };
            let mut len = stored(&w.parts)?;
            if !w.high.is_empty() {
                // Scales and biases, one f16 each per group, interleaved.
                let high = stored(&w.high)?;
                if high != len || len % 2 != 0 {
                    return Err(GpuError::Model(format!(
                        "`{}`: its scales ({len} bytes) and biases ({high} bytes) must be f16 \
                         values, one of each per group",
                        w.key.0
                    )));
                }
                len = len.saturating_add(high);
            }
            let len = if w.f16 { len / 2 * 4 } else { len };
            weights.push(WeightPart {
                buffer: w,
                bytes: len.next_multiple_of(4).max(4),
            });
        }
        Ok(Sizer {
            cfg: &man.config,
            graph,
            acts: activations(graph),
            weights,
            limits,
        })
    }

    /// Sizes a load with `opts` (already checked: 1 ≤ max_batch ≤ max_seq), or the first limit
    /// it exceeds.
    pub fn size(&self, opts: RunOptions) -> std::result::Result<Sizes, Violation> {
        let (seq, batch) = (u(opts.max_seq), u(opts.max_batch));
        let l = &self.limits;
        let cfg = self.cfg;
        let binding = l.max_binding.min(MAX_INDEXED_BYTES);
        let too_large = |what: String, needed: u64, limit: u64, kind, fallback: &str| Violation {
            what,
            needed,
            limit,
            kind,
            fallback: fallback.to_owned(),
        };
        // A buffer bound as storage: the binding limit (or the kernels' indices), then the
        // buffer limit.
        let bound = |what: &dyn Fn() -> String, bytes: Option<u64>, fallback: &str| {
            let bytes = bytes.unwrap_or(u64::MAX);
            if bytes > binding {
                let kind = if binding == l.max_binding {
                    LimitKind::BindingSize
                } else {
                    LimitKind::Index32
                };
                return Err(too_large(what(), bytes, binding, kind, fallback));
            }
            if bytes > l.max_buffer {
                return Err(too_large(
                    what(),
                    bytes,
                    l.max_buffer,
                    LimitKind::BufferSize,
                    fallback,
                ));
            }
            Ok(bytes)
        };
        let lower_both = "use a smaller --max-seq and --max-batch";
        if seq > MAX_POSITIONS {
            return Err(too_large(
                "the context (--max-seq)".into(),
                seq,
                MAX_POSITIONS,
                LimitKind::Positions,
                "use a smaller --max-seq",
            ));
        }

        let mut weight_bytes = 0u64;
        let reconvert = format!(
            "convert the model again with a smaller --binding-limit (at most {})",
            binding.min(l.max_buffer)
        );
        for w in &self.weights {
            bound(
                &|| format!("weight part `{}`", w.label()),
                Some(w.bytes),
                &reconvert,
            )?;
            weight_bytes = weight_bytes.saturating_add(w.bytes);
        }

        let (kvh, hd) = (u(cfg.num_kv_heads), u(cfg.head_dim));
        // f16: 2 bytes an element, the buffer rounded up to 16 bytes (its vec4 view).
        let kv_elem = if self.graph.kv_f16 { 2 } else { 4 };
        let kv_buffer = bound(
            &|| {
                format!(
                    "the KV cache for --max-seq {seq} (one K or V buffer of a layer: {kvh} kv \
                     heads × {seq} positions × {hd} head dim × {kv_elem} B)"
                )
            },
            mul(kvh, hd)
                .and_then(|x| mul(x, seq))
                .and_then(|x| mul(x, kv_elem))
                .and_then(|x| x.checked_next_multiple_of(16)),
            lower_both,
        )?;
        let kv_bytes = mul(kv_buffer, mul(u(cfg.num_layers), 2).unwrap_or(u64::MAX));

        let half = u(self.graph.rot / 2);
        let rope_table = bound(
            &|| format!("the RoPE tables for --max-seq {seq} ({seq} positions × {half} × 4 B)"),
            mul(seq, half).and_then(|x| mul(x, 4)),
            lower_both,
        )?
        .max(MIN_BUFFER);
        let rope_bytes = mul(rope_table, 2 * u(self.graph.rope_bases.len()));

        let syms = Syms {
            seq: batch,
            past: seq,
            out: batch,
        };
        let Some(plan) = planner::plan(&self.acts, &syms) else {
            return Err(too_large(
                format!("the activations for --max-batch {batch}"),
                u64::MAX,
                binding,
                LimitKind::Index32,
                lower_both,
            ));
        };
        let mut activation_bytes = 0u64;
        for (i, &b) in plan.buffer_bytes.iter().enumerate() {
            let names = || {
                let names: Vec<&str> = (0..self.acts.len())
                    .filter(|&a| plan.assignment[a] == i)
                    .map(|a| self.acts[a].name.as_str())
                    .take(3)
                    .collect();
                format!(
                    "activation buffer {i} ({}) for --max-batch {batch}",
                    names.join(", ")
                )
            };
            let b = bound(&names, Some(b), lower_both)?.max(MIN_BUFFER);
            activation_bytes = activation_bytes.saturating_add(b);
        }

        let io_small = bound(
            &|| format!("the token ids of a step of --max-batch {batch}"),
            mul(batch, 4),
            lower_both,
        )?
        .max(MIN_BUFFER);
        let vocab = u(cfg.vocab_size);
        let readback = mul(mul(batch, vocab).unwrap_or(u64::MAX), 4).unwrap_or(u64::MAX);
        if readback > l.max_buffer {
            return Err(too_large(
                format!("the logits readback for --max-batch {batch} (× vocab {vocab} × 4 B)"),
                readback,
                l.max_buffer,
                LimitKind::BufferSize,
                lower_both,
            ));
        }
        let io_bytes = 2 * io_small + MIN_BUFFER + readback;

        // Kernel parameters and grids at the bounds: every expression only grows with `seq`,
        // `past` and `out`, so decode (seq 1) and the largest prefill bound every step.
        let mut points = vec![Syms {
            seq: 1,
            past: seq,
            out: batch,
        }];
        if batch > 1 {
            points.push(syms);
        }
        for op in &self.graph.ops {
            for at in &points {
                for f in &op.params {
                    if let Field::U(e) = f {
                        let v = e.checked_eval(at).unwrap_or(u64::MAX);
                        if v > u64::from(u32::MAX) {
                            return Err(too_large(
                                format!(
                                    "a parameter of `{}` with --max-seq {seq} and --max-batch \
                                     {batch}",
                                    op.label
                                ),
                                v,
                                u64::from(u32::MAX),
                                LimitKind::Param32,
                                lower_both,
                            ));
                        }
                    }
                }
                for g in &op.grid {
                    let v = g.checked_eval(at).unwrap_or(u64::MAX);
                    if v > l.max_workgroups {
                        return Err(too_large(
                            format!("the grid of `{}` with --max-batch {batch}", op.label),
                            v,
                            l.max_workgroups,
                            LimitKind::Workgroups,
                            // Where even one token is too many, it is the model's shapes.
                            "the model's matrices need more workgroups than this adapter \
                             dispatches in one dimension; no --max-seq or --max-batch helps",
                        ));
                    }
                }
            }
        }

        let widest = self.graph.ops.iter().map(|o| 4 * u(o.params.len())).max();
        let uniform_slot = widest
            .unwrap_or(16)
            .max(64)
            .div_ceil(l.uniform_align)
            .saturating_mul(l.uniform_align);
        let uniform_bytes = uniform_slot.saturating_mul(u(self.graph.ops.len().max(1)));
        if uniform_bytes > l.max_buffer {
            return Err(too_large(
                "the kernel parameters".into(),
                uniform_bytes,
                l.max_buffer,
                LimitKind::BufferSize,
                "this model has too many ops for this device",
            ));
        }

        let estimate = MemoryEstimate {
            weight_bytes,
            kv_bytes: kv_bytes.unwrap_or(u64::MAX),
            activation_bytes,
            rope_bytes: rope_bytes.unwrap_or(u64::MAX),
            uniform_bytes,
            io_bytes,
        };
        if let Some(mem) = &l.memory
            && estimate.total() > mem.limit()
        {
            let fallback = if weight_bytes > mem.limit() {
                format!(
                    "the weights alone need {}: this device cannot hold this model",
                    fmt_bytes(weight_bytes)
                )
            } else {
                format!("{lower_both}, or free GPU memory used by other programs")
            };
            return Err(too_large(
                format!(
                    "loading with --max-seq {seq} and --max-batch {batch} ({})",
                    estimate.breakdown()
                ),
                estimate.total(),
                mem.limit(),
                LimitKind::DeviceMemory,
                &fallback,
            ));
        }
        Ok(Sizes {
            estimate,
            plan,
            kv_buffer,
            rope_table,
            uniform_slot,
            io_small,
            readback,
            weights: self.weights.clone(),
        })
    }

    /// The error for `v`, found with `opts`, with the largest `max_seq` and `max_batch` that
    /// would pass in its hint.
    pub fn error(&self, opts: RunOptions, v: Violation) -> GpuError {
        let passes = |s: usize, b: usize| {
            self.size(RunOptions {
                max_seq: s,
                max_batch: b,
            })
            .is_ok()
        };
        let top = opts
            .max_seq
            .saturating_sub(1)
            .min(usize::try_from(MAX_POSITIONS).unwrap_or(usize::MAX));
        let seq = largest(opts.max_batch, top, |s| passes(s, opts.max_batch));
        let batch = (u(opts.max_seq) <= MAX_POSITIONS)
            .then(|| largest(1, opts.max_batch - 1, |b| passes(opts.max_seq, b)))
            .flatten();
        let hint = match (seq, batch) {
            (Some(s), Some(b)) => format!(
                "use a smaller --max-seq (at most {s} here) or --max-batch (at most {b} here)"
            ),
            (Some(s), None) => format!("use a smaller --max-seq (at most {s} here)"),
            (None, Some(b)) => format!("use a smaller --max-batch (at most {b} here)"),
            (None, None) => match largest(1, top, |s| passes(s, opts.max_batch.min(s))) {
                Some(s) => {
                    format!("use a smaller --max-seq and --max-batch (at most {s} here, both)")
                }
                None => v.fallback,
            },
        };
        GpuError::TooLarge {
            what: v.what,
            needed: v.needed,
            limit: v.limit,
            kind: v.kind,
            hint,
        }
    }
}

/// The largest `x` in `lo..=hi` with `ok(x)`, where `ok` holds on a prefix of the range.
fn largest(lo: usize, hi: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    if lo > hi || !ok(lo) {
        return None;
    }
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// The graph's activations with their lifetimes (first and last op that touches each).
fn activations(graph: &Graph) -> Vec<Activation> {
    let mut first = vec![usize::MAX; graph.acts.len()];
    let mut last = vec![0usize; graph.acts.len()];
    for (i, op) in graph.ops.iter().enumerate() {
        for &a in op.reads.iter().chain(&op.writes) {
            first[a] = first[a].min(i);
            last[a] = last[a].max(i);
        }
    }
    graph
        .acts
        .iter()
        .enumerate()
        .map(|(i, (name, elems))| Activation {
            name: name.clone(),
            elems: elems.clone(),
            first: first[i],
            last: last[i],
        })
        .collect()
}

/// Run options no device could take: zero sizes, a batch beyond the context.
pub(crate) fn validate(opts: RunOptions) -> Result<()> {
    let RunOptions { max_seq, max_batch } = opts;
    if max_seq == 0 {
        return Err(GpuError::InvalidOptions(
            "--max-seq (the context) must be at least 1".into(),
        ));
    }
    if max_batch == 0 {
        return Err(GpuError::InvalidOptions(
            "--max-batch (tokens per step) must be at least 1".into(),
        ));
    }
    if max_batch > max_seq {
        return Err(GpuError::InvalidOptions(format!(
            "--max-batch {max_batch} is larger than the context (--max-seq {max_seq}): use \
             --max-batch {max_seq} or less"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tlite_converter::deploy::{ConvertOptions, convert};
    use tlite_converter::synth::{SynthSpec, write_checkpoint};

    use super::*;

    const PLAN: crate::graph::PlanLimits = crate::graph::decision::TEST_LIMITS;

    fn tiny(tag: &str) -> (std::path::PathBuf, DeployedModel) {
        let dir = std::env::temp_dir().join(format!("tlite-estimate-{tag}-{}", std::process::id()));
        let spec = SynthSpec::preset("tiny-llama").expect("tiny-llama preset");
        write_checkpoint(&spec, &dir.join("ck")).unwrap();
        let ck = tlite_converter::checkpoint::Checkpoint::open_dir(&dir.join("ck")).unwrap();
        let opts = ConvertOptions {
            group: 32,
            overwrite: true,
            ..Default::default()
        };
        convert(
            &ck,
            &dir.join("m"),
            &opts,
            &mut tlite_converter::events::ignore,
        )
        .unwrap();
        let m = DeployedModel::open(&dir.join("m")).unwrap();
        (dir, m)
    }

    /// lavapipe's limits, with `memory`.
    fn limits(memory: Option<DeviceMemory>) -> Limits {
        Limits {
            max_buffer: 2 << 30,
            max_binding: 128 << 20,
            max_workgroups: 65535,
            uniform_align: 256,
            memory,
        }
    }

    fn hint_value(msg: &str, flag: &str) -> usize {
        let pat = format!("{flag} (at most ");
        let rest = &msg[msg.find(&pat).unwrap_or_else(|| panic!("{msg}")) + pat.len()..];
        rest[..rest.find(' ').unwrap()].parse().unwrap()
    }

    #[test]
    fn grids_beyond_the_adapter_name_the_model_when_no_option_helps() {
        let (dir, m) = tiny("grid");
        let graph = crate::graph::build(&m.manifest, 1000, PLAN).unwrap();
        let l = Limits {
            max_workgroups: 1,
            ..limits(None)
        };
        let sizer = Sizer::new(&m, &graph, l).unwrap();
        let o = RunOptions {
            max_seq: 64,
            max_batch: 8,
        };
        let v = sizer.size(o).unwrap_err();
        let msg = sizer.error(o, v).to_string();
        assert!(msg.contains("workgroups in one grid dimension"), "{msg}");
        assert!(msg.contains("no --max-seq or --max-batch helps"), "{msg}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn largest_finds_the_end_of_the_prefix() {
        assert_eq!(largest(1, 100, |x| x <= 37), Some(37));
        assert_eq!(largest(1, 100, |_| true), Some(100));
        assert_eq!(largest(5, 100, |x| x <= 4), None);
        assert_eq!(largest(3, 2, |_| true), None);
        assert_eq!(largest(0, usize::MAX, |x| x <= 1 << 40), Some(1 << 40));
    }

    #[test]
    fn the_arithmetic_of_the_estimate() {
        let (dir, m) = tiny("arith");
        let c = &m.manifest.config;
        let graph = crate::graph::build(&m.manifest, 1000, PLAN).unwrap();
        let sizer = Sizer::new(&m, &graph, limits(None)).unwrap();
        let o = RunOptions {
            max_seq: 1000,
            max_batch: 3,
        };
        let s = sizer.size(o).unwrap();
        let e = &s.estimate;
        let kv = (c.num_kv_heads * 1000 * c.head_dim * 4) as u64;
        assert_eq!(s.kv_buffer, kv);
        assert_eq!(e.kv_bytes, kv * 2 * c.num_layers as u64);
        let half = (graph.rot / 2) as u64;
        assert_eq!(s.rope_table, 1000 * half * 4);
        assert_eq!(e.rope_bytes, 2 * 1000 * half * 4);
        assert_eq!(
            s.io_small, 16,
            "3 token ids round up to the 16-byte minimum"
        );
        assert_eq!(s.readback, (3 * c.vocab_size * 4) as u64);
        assert_eq!(e.io_bytes, 16 + 16 + 16 + s.readback);
        assert_eq!(e.uniform_bytes, s.uniform_slot * graph.ops.len() as u64);
        assert_eq!(s.uniform_slot % 256, 0);
        assert_eq!(
            e.weight_bytes,
            s.weights.iter().map(|w| w.bytes).sum::<u64>()
        );
        assert!(e.weight_bytes >= m.data_bytes());
        assert_eq!(
            e.total(),
            e.weight_bytes
                + e.kv_bytes
                + e.activation_bytes
                + e.rope_bytes
                + e.uniform_bytes
                + e.io_bytes
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_total_is_checked_against_the_device_memory() {
        let (dir, m) = tiny("budget");
        let graph = crate::graph::build(&m.manifest, 4096, PLAN).unwrap();
        let o = RunOptions {
            max_seq: 4096,
            max_batch: 64,
        };
        let unbounded = Sizer::new(&m, &graph, limits(None)).unwrap();
        let est = unbounded.size(o).unwrap().estimate;
        // One byte short: the largest context that fits is one position less (the total
        // grows by the KV cache and RoPE bytes of a position).
        let short = DeviceMemory {
            heap_bytes: 4 * est.total(),
            available_bytes: Some(est.total() - 1),
        };
        let sizer = Sizer::new(&m, &graph, limits(Some(short))).unwrap();
        let v = sizer.size(o).unwrap_err();
        assert_eq!(v.kind, LimitKind::DeviceMemory);
        assert_eq!((v.needed, v.limit), (est.total(), est.total() - 1));
        let msg = sizer.error(o, v).to_string();
        assert!(msg.starts_with("loading with --max-seq 4096 and --max-batch 64 (weights "));
        assert!(msg.contains("free"), "{msg}");
        assert_eq!(hint_value(&msg, "--max-seq"), 4095, "{msg}");
        let b = hint_value(&msg, "--max-batch");
        assert!(b < 64, "{msg}");
        assert!(sizer.size(RunOptions { max_batch: b, ..o }).is_ok());
        assert!(
            sizer
                .size(RunOptions {
                    max_batch: b + 1,
                    ..o
                })
                .is_err()
        );
        // Without a budget the heap is the limit.
        let heap = DeviceMemory {
            heap_bytes: est.total(),
            available_bytes: None,
        };
        assert!(
            Sizer::new(&m, &graph, limits(Some(heap)))
                .unwrap()
                .size(o)
                .is_ok()
        );
        // Weights beyond the device: no setting helps.
        let tiny_device = DeviceMemory {
            heap_bytes: est.weight_bytes - 1,
            available_bytes: None,
        };
        let sizer = Sizer::new(&m, &graph, limits(Some(tiny_device))).unwrap();
        let msg = sizer.error(o, sizer.size(o).unwrap_err()).to_string();
        assert!(
            msg.ends_with(": this device cannot hold this model"),
            "{msg}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn weight_parts_beyond_the_binding_limit_ask_for_a_reconversion() {
        let (dir, m) = tiny("weights");
        let graph = crate::graph::build(&m.manifest, 64, PLAN).unwrap();
        let mut l = limits(None);
        l.max_binding = 1024;
        let sizer = Sizer::new(&m, &graph, l).unwrap();
        let o = RunOptions {
            max_seq: 64,
            max_batch: 8,
        };
        let v = sizer.size(o).unwrap_err();
        assert_eq!(v.kind, LimitKind::BindingSize);
        let msg = sizer.error(o, v).to_string();
        assert!(msg.starts_with("weight part `"), "{msg}");
        assert!(
            msg.ends_with("convert the model again with a smaller --binding-limit (at most 1024)"),
            "{msg}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
