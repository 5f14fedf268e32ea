//! The execution plan: a model becomes a list of ops (kernel, entry point, bindings, parameters
//! and workgroup grid as expressions over `seq`, `past`, `out`), built once from the deployable
//! model's manifest and the architecture table's layer walk (`Arch::layer`). Activations are symbolic tensors that the
//! memory planner places; weights and the KV cache are bound as they are.

use std::collections::HashMap;

use tlite_model::arch::{Activation as Act, Arch, NormStyle, RopeLayout};
use tlite_model::config::ModelConfig;
use tlite_model::deploy::{Manifest, Storage, TensorLayout};
use tlite_model::layer::Proj;
use tlite_quantizer::M0E4Matrix;

use crate::kernels::Kernel;
use crate::shape::{Expr, c};
use crate::{GpuError, Result};

/// A buffer an op binds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BufRef {
    /// A planned activation.
    Act(usize),
    /// Part `part` of chunk `chunk` of a weight tensor (M0E4: packed, scales, biases).
    Part {
        tensor: String,
        chunk: usize,
        part: usize,
    },
    KvK(usize),
    KvV(usize),
    Tokens,
    LogitRows,
    /// RoPE cos/sin tables of base `i`.
    Cos(usize),
    Sin(usize),
    /// A small placeholder for bindings an op does not read.
    Dummy,
}

/// A parameter field value.
#[derive(Clone, Debug)]
pub enum Field {
    U(Expr),
    F(f32),
}

/// When an op runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    Decode,
    Prefill,
}

/// One dispatch.
#[derive(Clone, Debug)]
pub struct Op {
    pub label: String,
    pub kernel: Kernel,
    pub entry: &'static str,
    pub bindings: Vec<(u32, BufRef)>,
    pub params: Vec<Field>,
    pub grid: [Expr; 3],
    pub when: When,
    pub reads: Vec<usize>,
    pub writes: Vec<usize>,
}

/// The whole plan.
pub struct Graph {
    pub ops: Vec<Op>,
    /// Activation names and sizes in f32 elements.
    pub acts: Vec<(String, Expr)>,
    /// The logits activation (`[out, vocab]`).
    pub logits: usize,
    /// The residual stream (`[seq, hidden]`).
    pub residual: usize,
    /// RoPE bases: (theta, linear factor).
    pub rope_bases: Vec<(f64, f64)>,
    pub rot: usize,
    /// Index of the last op of each layer (the residual stream is complete after it).
    pub layer_end: Vec<usize>,
}

/// Largest workgroup count per grid dimension used by the plan (the WebGPU minimum limit).
pub const MAX_GRID: u64 = 65535;

/// The M0E4 row-layout params of a matrix with `k` columns in groups of `group`.
fn m0e4_fields(k: usize, group: usize) -> Vec<(&'static str, Field)> {
    vec![
        ("group", Field::U(c(group as u64))),
        (
            "words_per_row",
            Field::U(c(M0E4Matrix::words_per_row(k) as u64)),
        ),
        (
            "groups_per_row",
            Field::U(c(M0E4Matrix::groups_per_row(k, group) as u64)),
        ),
    ]
}

/// Row blocks per workgroup for a fused-norm GEMV over `n` outputs in blocks of `per_block`: as
/// many as keep at least 256 workgroups, at most 4.
fn gemv_blocks(n: usize, per_block: usize) -> usize {
    (n / (per_block * 256)).clamp(1, 4)
}

/// Part `part` of the first (for biases and norms: the only) chunk of `tensor`.
fn first_chunk(tensor: &str, part: usize) -> BufRef {
    BufRef::Part {
        tensor: tensor.to_owned(),
        chunk: 0,
        part,
    }
}

fn grid_1d(n: Expr) -> ([Expr; 3], Expr) {
    // x = min(n, MAX_GRID), y = ⌈n / MAX_GRID⌉; kernels linearize as x + y · grid_width.
    let x = n.clone().min(c(MAX_GRID));
    ([x.clone(), n.ceil_div(c(MAX_GRID)), c(1)], x)
}

struct Builder<'a> {
    cfg: &'a ModelConfig,
    arch: &'static Arch,
    layouts: HashMap<&'a str, &'a TensorLayout>,
    ops: Vec<Op>,
    acts: Vec<(String, Expr)>,
    /// While set, the decode GEMVs that `matmul` emits read this raw activation and apply the
    /// RMSNorm with this weight themselves (the norm op then runs for prefill only).
    decode_norm: Option<(usize, String)>,
    /// While set, `matmul` emits no decode GEMV (a fused op replaces it).
    skip_decode: bool,
}

/// Widest input a fused-norm GEMV stages in shared memory (`xs` in matmul.wgsl).
const NORM_MAX_K: usize = 4096;

/// Storage buffers `gemv_m0e4_glu` binds (gate and up: 3 each; x, norm weight, y).
const GLU_STORAGE_BUFFERS: u32 = 9;

impl<'a> Builder<'a> {
    fn act(&mut self, name: String, elems: Expr) -> usize {
        self.acts.push((name, elems));
        self.acts.len() - 1
    }

    fn layout(&self, name: &str) -> Result<&'a TensorLayout> {
        self.layouts
            .get(name)
            .copied()
            .ok_or_else(|| GpuError::Model(format!("the deployable model has no tensor `{name}`")))
    }

    fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Whether `weight` can take the wide GEMV (and with it the fused norm and GLU): M0E4 with
    /// rows of whole 32-column groups.
    fn wide_ok(&self, weight: &str) -> bool {
        self.layouts.get(weight).is_some_and(|w| {
            let (_, k) = w.rows_cols();
            w.storage == Storage::M0E4 && k % 32 == 0 && w.group.is_some_and(|g| g % 32 == 0)
        })
    }

    /// Whether `weight` can take the wide GEMV with the preceding norm fused in (its input
    /// row staged in shared memory: at most NORM_MAX_K columns).
    fn norm_fusable(&self, weight: &str) -> bool {
        self.wide_ok(weight)
            && self
                .layouts
                .get(weight)
                .is_some_and(|w| w.rows_cols().1 <= NORM_MAX_K)
    }

    /// `w_offset` of this architecture's norms (Gemma's `1 + w`).
    fn norm_offset(&self) -> f32 {
        if self.arch.norm == NormStyle::OnePlusWeight {
            1.0
        } else {
            0.0
        }
    }

    /// Params of a GEMV that applies the RMSNorm itself.
    fn norm_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("norm", Field::U(c(1))),
            ("eps", Field::F(self.cfg.rms_norm_eps as f32)),
            ("w_offset", Field::F(self.norm_offset())),
        ]
    }

    /// Restricts the op just pushed to prefill steps.
    fn last_prefill_only(&mut self) {
        if let Some(op) = self.ops.last_mut() {
            op.when = When::Prefill;
        }
    }

    fn params(kernel: Kernel, vals: Vec<(&str, Field)>) -> Vec<Field> {
        kernel
            .fields()
            .iter()
            .map(|f| {
                // The last value given for a field wins (defaults first, overrides after).
                vals.iter()
                    .rev()
                    .find(|(n, _)| n == f)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| {
                        assert!(f.starts_with('_'), "{kernel:?}: parameter `{f}` not set");
                        Field::U(c(0))
                    })
            })
            .collect()
    }

    /// `y[:, col0 + o] (+)= x · W[rows]ᵀ (+ bias[bias_rows])`, one op per chunk and variant.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        label: &str,
        weight: &str,
        rows: std::ops::Range<usize>,
        x: usize,
        y: usize,
        out_stride: usize,
        col0: usize,
        accumulate: bool,
        bias: Option<(&str, usize)>,
        seq: Expr,
    ) -> Result<()> {
        let w = self.layout(weight)?;
        let (_, k) = w.rows_cols();
        for (ci, ch) in w.chunks.iter().enumerate() {
            let (a, b) = (ch.rows.0.max(rows.start), ch.rows.1.min(rows.end));
            if a >= b {
                continue;
            }
            let n = b - a;
            let m0e4 = w.storage == Storage::M0E4;
            let part = |p: usize| BufRef::Part {
                tensor: weight.to_owned(),
                chunk: ci,
                part: p,
            };
            let mut bindings = vec![(1, BufRef::Act(x)), (2, BufRef::Act(y))];
            bindings.push((
                3,
                match bias {
                    Some((t, _)) => first_chunk(t, 0),
                    None => BufRef::Dummy,
                },
            ));
            if m0e4 {
                bindings.extend([(4, part(0)), (5, part(1)), (6, part(2))]);
            } else {
                bindings.push((7, part(0)));
            }
            let group = w.group.unwrap_or(8);
            let wide = self.wide_ok(weight);
            // Rows per workgroup: gemv_m0e4_wide 16, gemv_m0e4 8 (GV_ROWS), gemv_dense 1.
            let gemv_rows = match (m0e4, wide) {
                (true, true) => n.div_ceil(16),
                (true, false) => n.div_ceil(8),
                _ => n,
            };
            let (gv, gx) = grid_1d(c(gemv_rows as u64));
            let base = |grid_width: Expr| {
                let mut v = m0e4_fields(k, group);
                v.extend([
                    ("seq", Field::U(seq.clone())),
                    ("k", Field::U(c(k as u64))),
                    ("n", Field::U(c(n as u64))),
                    ("out_stride", Field::U(c(out_stride as u64))),
                    ("out_col0", Field::U(c((col0 + a - rows.start) as u64))),
                    ("w_row0", Field::U(c((a - ch.rows.0) as u64))),
                    ("accumulate", Field::U(c(u64::from(accumulate)))),
                    ("has_bias", Field::U(c(u64::from(bias.is_some())))),
                    (
                        "bias0",
                        Field::U(c(bias.map_or(0, |(_, o)| o + a - rows.start) as u64)),
                    ),
                    ("grid_width", Field::U(grid_width)),
                    ("norm", Field::U(c(0))),
                    ("eps", Field::F(0.0)),
                    ("w_offset", Field::F(0.0)),
                    ("act", Field::U(c(0))),
                    ("up_row0", Field::U(c(0))),
                    ("blocks", Field::U(c(1))),
                ]);
                v
            };
            let (reads, writes) = if accumulate {
                (vec![x, y], vec![y])
            } else {
                (vec![x], vec![y])
            };
            // gemv_m0e4_wide reads x and the packed words as vectors (binding 8, 9): rows of
            // whole 32-column groups. It can apply the preceding RMSNorm itself.
            let norm = self.decode_norm.clone().filter(|_| wide);
            assert!(
                wide || self.decode_norm.is_none(),
                "{weight}: a fused norm needs the wide GEMV"
            );
            let (gemv_x, norm_w) = match &norm {
                Some((raw, w)) => (*raw, first_chunk(w, 0)),
                None => (x, BufRef::Dummy),
            };
            let gemv_bindings = if wide {
                let mut b: Vec<(u32, BufRef)> = bindings
                    .iter()
                    .filter(|(i, _)| ![1, 4].contains(i))
                    .cloned()
                    .collect();
                b.extend([(8, BufRef::Act(gemv_x)), (9, part(0)), (10, norm_w)]);
                b
            } else {
                bindings.clone()
            };
            let mut gemv_params = base(gx);
            let mut gemv_grid = gv;
            if norm.is_some() {
                gemv_params.extend(self.norm_fields());
                // Share the staged row across blocks while keeping ≥ 256 workgroups.
                let blocks = gemv_blocks(n, 16);
                let (grid, width) = grid_1d(c(n.div_ceil(16 * blocks) as u64));
                gemv_params.push(("blocks", Field::U(c(blocks as u64))));
                gemv_params.push(("grid_width", Field::U(width)));
                gemv_grid = grid;
            }
            let mut gemv_reads = reads.clone();
            gemv_reads.push(gemv_x);
            if !self.skip_decode {
                self.push(Op {
                    label: format!("{label}[{ci}] gemv"),
                    kernel: Kernel::Matmul,
                    entry: match (m0e4, wide) {
                        (true, true) => "gemv_m0e4_wide",
                        (true, false) => "gemv_m0e4",
                        _ => "gemv_dense",
                    },
                    bindings: gemv_bindings,
                    params: Self::params(Kernel::Matmul, gemv_params),
                    grid: gemv_grid,
                    when: When::Decode,
                    reads: gemv_reads,
                    writes: writes.clone(),
                });
            }
            self.push(Op {
                label: format!("{label}[{ci}] gemm"),
                kernel: Kernel::Matmul,
                entry: if m0e4 { "gemm_m0e4" } else { "gemm_dense" },
                bindings,
                params: Self::params(Kernel::Matmul, base(c(0))),
                // gemm_*: 128 rows × 64 tokens per workgroup (TO, TT in matmul.wgsl).
                grid: [
                    c(n as u64).ceil_div(c(128)),
                    seq.clone().ceil_div(c(64)),
                    c(1),
                ],
                when: When::Prefill,
                reads,
                writes,
            });
        }
        Ok(())
    }

    /// Decode op `gemv_m0e4_glu` of layer `l`: `y = act(norm(x) · Gᵀ) · (norm(x) · Uᵀ)` with G the
    /// `f` rows of `gate` (from row 0 of its tensor) and U those of `up`. Pushed only where both
    /// are single-chunk M0E4 with the same group size (false: the caller keeps separate ops).
    fn glu_gemv(
        &mut self,
        l: usize,
        (gate_proj, up_proj): (&Proj, &Proj),
        x: usize,
        y: usize,
        norm_w: &str,
    ) -> Result<bool> {
        let (gate, up, up_row0) = (
            gate_proj.tensor.as_str(),
            up_proj.tensor.as_str(),
            up_proj.rows.start,
        );
        let (g, u) = (self.layout(gate)?, self.layout(up)?);
        if g.chunks.len() != 1 || u.chunks.len() != 1 || g.group != u.group {
            return Ok(false);
        }
        if gate_proj.rows.start != 0 {
            return Ok(false);
        }
        let (_, k) = g.rows_cols();
        let f = self.cfg.intermediate_size;
        let group = g.group.unwrap_or(32);
        // gemv_m0e4_glu computes `blocks` blocks of 8 outputs per workgroup.
        let blocks = gemv_blocks(f, 8);
        let (grid, gw) = grid_1d(c(f.div_ceil(8 * blocks) as u64));
        let mut vals = m0e4_fields(k, group);
        vals.extend([
            ("seq", Field::U(Expr::Seq)),
            ("k", Field::U(c(k as u64))),
            ("n", Field::U(c(f as u64))),
            ("out_stride", Field::U(c(f as u64))),
            ("out_col0", Field::U(c(0))),
            ("w_row0", Field::U(c(0))),
            ("accumulate", Field::U(c(0))),
            ("has_bias", Field::U(c(0))),
            ("bias0", Field::U(c(0))),
            ("grid_width", Field::U(gw)),
            (
                "act",
                Field::U(c(u64::from(self.arch.activation == Act::GeluTanh))),
            ),
            ("up_row0", Field::U(c(up_row0 as u64))),
            ("blocks", Field::U(c(blocks as u64))),
        ]);
        vals.extend(self.norm_fields());
        self.push(Op {
            label: format!("l{l}.gate_up_glu gemv"),
            kernel: Kernel::Matmul,
            entry: "gemv_m0e4_glu",
            bindings: vec![
                (2, BufRef::Act(y)),
                (5, first_chunk(gate, 1)),
                (6, first_chunk(gate, 2)),
                (8, BufRef::Act(x)),
                (9, first_chunk(gate, 0)),
                (10, first_chunk(norm_w, 0)),
                (11, first_chunk(up, 0)),
                (12, first_chunk(up, 1)),
                (13, first_chunk(up, 2)),
            ],
            params: Self::params(Kernel::Matmul, vals),
            grid,
            when: When::Decode,
            reads: vec![x],
            writes: vec![y],
        });
        Ok(true)
    }

    /// `x += p(input)`; with an output norm (sandwich norms) `x += norm(p(input))` through a
    /// temporary activation: `(activation name, norm label, norm weight)`.
    fn add_to_residual(
        &mut self,
        (label, p): (&str, &Proj),
        input: usize,
        x: usize,
        out_norm: Option<(String, String, &str)>,
    ) -> Result<()> {
        let (n, seq) = (p.out(), Expr::Seq);
        let Some((tmp_name, norm_label, w)) = out_norm else {
            return self.matmul(
                label,
                &p.tensor,
                p.rows.clone(),
                input,
                x,
                n,
                0,
                true,
                None,
                seq,
            );
        };
        let tmp = self.act(tmp_name, seq.clone() * n);
        self.matmul(
            label,
            &p.tensor,
            p.rows.clone(),
            input,
            tmp,
            n,
            0,
            false,
            None,
            seq.clone(),
        )?;
        self.norm(&norm_label, Some(tmp), x, w, seq, n, true, false);
        Ok(())
    }

    /// RMSNorm of `rows` rows of length `n` from `x` into `y` (mode 1: added into `y`).
    #[allow(clippy::too_many_arguments)]
    fn norm(
        &mut self,
        label: &str,
        x: Option<usize>,
        y: usize,
        w: &str,
        rows: Expr,
        n: usize,
        add: bool,
        gather: bool,
    ) {
        let off = self.norm_offset();
        let (grid, gw) = grid_1d(rows.clone());
        let mut bindings = vec![(2, BufRef::Act(y)), (3, first_chunk(w, 0))];
        let (entry, reads) = match x {
            Some(x) => {
                bindings.push((1, BufRef::Act(x)));
                bindings.push((4, BufRef::LogitRows));
                ("rmsnorm", if add { vec![x, y] } else { vec![x] })
            }
            None => ("rmsnorm_inplace", vec![y]),
        };
        self.push(Op {
            label: label.to_owned(),
            kernel: Kernel::Norm,
            entry,
            bindings,
            params: Self::params(
                Kernel::Norm,
                vec![
                    ("rows", Field::U(rows)),
                    ("n", Field::U(c(n as u64))),
                    ("mode", Field::U(c(u64::from(add)))),
                    ("gather", Field::U(c(u64::from(gather)))),
                    ("eps", Field::F(self.cfg.rms_norm_eps as f32)),
                    ("w_offset", Field::F(off)),
                    ("grid_width", Field::U(gw)),
                ],
            ),
            grid,
            when: When::Always,
            reads,
            writes: vec![y],
        });
    }

    fn elementwise(
        &mut self,
        label: &str,
        entry: &'static str,
        bindings: Vec<(u32, BufRef)>,
        vals: Vec<(&str, Field)>,
        threads: Expr,
        rw: (Vec<usize>, Vec<usize>),
    ) {
        let (grid, gw) = grid_1d(threads.ceil_div(c(64)));
        let mut vals = vals;
        vals.push(("grid_width", Field::U(gw * 64u64)));
        // Fields an entry point does not read.
        for (name, v) in [
            ("row0", 0u64),
            ("rows", 0),
            ("group", 8),
            ("words_per_row", 0),
            ("groups_per_row", 0),
            ("act", 0),
        ] {
            if !vals.iter().any(|(n, _)| *n == name) {
                vals.push((name, Field::U(c(v))));
            }
        }
        for (name, v) in [("scale", 1.0f32), ("cap", 0.0)] {
            if !vals.iter().any(|(n, _)| *n == name) {
                vals.push((name, Field::F(v)));
            }
        }
        self.push(Op {
            label: label.to_owned(),
            kernel: Kernel::Elementwise,
            entry,
            bindings,
            params: Self::params(Kernel::Elementwise, vals),
            grid,
            when: When::Always,
            reads: rw.0,
            writes: rw.1,
        });
    }
}

/// Builds the plan of a deployable model.
///
/// `max_storage_buffers` is the device's limit per shader stage; fused ops that bind more are
/// left out where it is lower.
pub fn build(man: &Manifest, max_seq: usize, max_storage_buffers: u32) -> Result<Graph> {
    let cfg = &man.config;
    let arch = cfg.arch();
    if cfg.head_dim > 256 {
        return Err(GpuError::Model(format!(
            "head_dim {} > 256 is not supported by the attention kernel",
            cfg.head_dim
        )));
    }
    let mut b = Builder {
        cfg,
        arch,
        layouts: man.tensors.iter().map(|t| (t.name.as_str(), t)).collect(),
        ops: Vec::new(),
        acts: Vec::new(),
        decode_norm: None,
        skip_decode: false,
    };
    let model = arch.model_spec(cfg);
    let (h, hd, f) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let (heads, kvh) = (cfg.num_heads, cfg.num_kv_heads);
    let (q_out, kv_out) = (heads * hd, kvh * hd);
    let seq = Expr::Seq;
    let x = b.act("residual".into(), seq.clone() * h);
    // Embedding lookup, one op per chunk of the table.
    let emb = b.layout(&model.embed)?;
    let scale = if arch.scale_embeddings {
        (h as f32).sqrt()
    } else {
        1.0
    };
    for (ci, ch) in emb.chunks.iter().enumerate() {
        let part = |p: usize| BufRef::Part {
            tensor: model.embed.clone(),
            chunk: ci,
            part: p,
        };
        let m0e4 = emb.storage == Storage::M0E4;
        let group = emb.group.unwrap_or(8);
        let mut bindings = vec![(1, BufRef::Tokens), (2, BufRef::Act(x))];
        let threads = if m0e4 {
            bindings.extend([(3, part(0)), (4, part(1)), (5, part(2))]);
            seq.clone() * M0E4Matrix::words_per_row(h)
        } else {
            bindings.push((6, part(0)));
            seq.clone() * h
        };
        b.elementwise(
            &format!("embed[{ci}]"),
            if m0e4 { "embed_m0e4" } else { "embed_dense" },
            bindings,
            vec![
                ("seq", Field::U(seq.clone())),
                ("n", Field::U(c(h as u64))),
                ("row0", Field::U(c(ch.rows.0 as u64))),
                ("rows", Field::U(c((ch.rows.1 - ch.rows.0) as u64))),
                ("scale", Field::F(scale)),
            ]
            .into_iter()
            .chain(m0e4_fields(h, group))
            .collect(),
            threads,
            (vec![], vec![x]),
        );
    }
    let rot = ((hd as f64) * cfg.partial_rotary_factor) as usize;
    let mut rope_bases = vec![(cfg.rope_theta, cfg.rope_linear_factor.unwrap_or(1.0))];
    if let Some(t) = cfg.rope_local_theta {
        rope_bases.push((t, 1.0));
    }
    let mut layer_end = Vec::with_capacity(cfg.num_layers);
    // Decode splits the keys into chunks of 32 (at most 32 splits): more workgroups, shorter
    // serial loops per thread.
    let splits = Expr::decode_or((Expr::Past + 1u64).ceil_div(c(32)).min(c(32)), c(1));
    for lay in arch.layers(cfg) {
        let l = lay.index;
        let hn = b.act(format!("l{l}.norm_in"), seq.clone() * h);
        let input_norm_w = &lay.input_norm;
        b.norm(
            &format!("l{l}.input_norm"),
            Some(x),
            hn,
            input_norm_w,
            seq.clone(),
            h,
            false,
            false,
        );
        // Decode: the q/k/v GEMVs apply the input norm themselves where they can.
        let qkv = [&lay.q, &lay.k, &lay.v];
        if qkv.iter().all(|p| b.norm_fusable(&p.tensor)) {
            b.last_prefill_only();
            b.decode_norm = Some((x, input_norm_w.clone()));
        }
        let q = b.act(format!("l{l}.q"), seq.clone() * q_out);
        let k = b.act(format!("l{l}.k"), seq.clone() * kv_out);
        let v = b.act(format!("l{l}.v"), seq.clone() * kv_out);
        for (t, p) in [q, k, v].into_iter().zip(qkv) {
            let label = if lay.fused_qkv() { "qkv" } else { p.rel };
            b.matmul(
                &format!("l{l}.{label}"),
                &p.tensor,
                p.rows.clone(),
                hn,
                t,
                p.out(),
                0,
                false,
                p.bias
                    .as_ref()
                    .map(|(name, rows)| (name.as_str(), rows.start)),
                seq.clone(),
            )?;
        }
        b.decode_norm = None;
        for (name, t, w, n) in [
            ("q_norm", q, &lay.q_norm, heads),
            ("k_norm", k, &lay.k_norm, kvh),
        ] {
            if let Some(w) = w {
                let rows = seq.clone() * n;
                b.norm(&format!("l{l}.{name}"), None, t, w, rows, hd, false, false);
            }
        }
        let base = usize::from(cfg.sliding_layers[l] && rope_bases.len() > 1);
        b.push(Op {
            label: format!("l{l}.rope_kv"),
            kernel: Kernel::RopeKv,
            entry: "main",
            bindings: vec![
                (1, BufRef::Act(q)),
                (2, BufRef::Act(k)),
                (3, BufRef::Act(v)),
                (4, BufRef::KvK(l)),
                (5, BufRef::KvV(l)),
                (6, BufRef::Cos(base)),
                (7, BufRef::Sin(base)),
            ],
            params: Builder::params(
                Kernel::RopeKv,
                vec![
                    ("seq", Field::U(seq.clone())),
                    ("past", Field::U(Expr::Past)),
                    ("heads", Field::U(c(heads as u64))),
                    ("kv_heads", Field::U(c(kvh as u64))),
                    ("hd", Field::U(c(hd as u64))),
                    ("rot", Field::U(c(rot as u64))),
                    (
                        "interleaved",
                        Field::U(c(u64::from(arch.rope == RopeLayout::Interleaved))),
                    ),
                    ("max_seq", Field::U(c(max_seq as u64))),
                ],
            ),
            grid: [
                seq.clone(),
                c(((heads * (rot / 2)).max(kvh * hd) as u64).div_ceil(64)),
                c(1),
            ],
            when: When::Always,
            reads: vec![q, k, v],
            writes: vec![q],
        });
        // (seq + 32) bounds both prefill (one split per query) and decode (up to 32 splits).
        let parts = b.act(
            format!("l{l}.attn_parts"),
            (seq.clone() + 32u64) * (heads * (hd + 2)),
        );
        let attn = b.act(format!("l{l}.attn"), seq.clone() * q_out);
        let window = if cfg.sliding_layers[l] {
            cfg.sliding_window.unwrap_or(0)
        } else {
            0
        };
        let scale = cfg.query_pre_attn_scalar.unwrap_or(hd as f64).powf(-0.5) as f32;
        let attn_params = Builder::params(
            Kernel::Attention,
            vec![
                ("seq", Field::U(seq.clone())),
                ("past", Field::U(Expr::Past)),
                ("heads", Field::U(c(heads as u64))),
                ("kv_heads", Field::U(c(kvh as u64))),
                ("hd", Field::U(c(hd as u64))),
                ("max_seq", Field::U(c(max_seq as u64))),
                ("window", Field::U(c(window as u64))),
                ("splits", Field::U(splits.clone())),
                (
                    "kps",
                    Field::U((Expr::Past + Expr::Seq).ceil_div(splits.clone())),
                ),
                ("scale", Field::F(scale)),
                (
                    "softcap",
                    Field::F(cfg.attn_logit_softcapping.unwrap_or(0.0) as f32),
                ),
            ],
        );
        let attn_bind = [
            (1, BufRef::Act(q)),
            (2, BufRef::KvK(l)),
            (3, BufRef::KvV(l)),
            (4, BufRef::Act(parts)),
            (5, BufRef::Act(attn)),
            (6, BufRef::KvK(l)),
        ];
        b.push(Op {
            label: format!("l{l}.attention"),
            kernel: Kernel::Attention,
            entry: "partial",
            bindings: attn_bind.iter().filter(|(i, _)| *i != 5).cloned().collect(),
            params: attn_params.clone(),
            grid: [splits.clone(), c(heads as u64), seq.clone()],
            when: When::Always,
            reads: vec![q],
            writes: vec![parts],
        });
        b.push(Op {
            label: format!("l{l}.attention_combine"),
            kernel: Kernel::Attention,
            entry: "combine",
            bindings: attn_bind
                .iter()
                .filter(|(i, _)| (4..=5).contains(i))
                .cloned()
                .collect(),
            params: attn_params,
            grid: [c(heads as u64), seq.clone(), c(1)],
            when: When::Always,
            reads: vec![parts],
            writes: vec![attn],
        });
        b.add_to_residual(
            (&format!("l{l}.o_proj"), &lay.o),
            attn,
            x,
            lay.attn_out_norm
                .as_deref()
                .map(|w| (format!("l{l}.attn_out"), format!("l{l}.post_attn_norm"), w)),
        )?;
        let hn2 = b.act(format!("l{l}.norm_mlp"), seq.clone() * h);
        let pre_w = &lay.mlp_in_norm;
        b.norm(
            &format!("l{l}.pre_mlp_norm"),
            Some(x),
            hn2,
            pre_w,
            seq.clone(),
            h,
            false,
            false,
        );
        let gate = b.act(format!("l{l}.gate"), seq.clone() * f);
        let up = b.act(format!("l{l}.up"), seq.clone() * f);
        // Decode: norm, gate, up and the activation in one GEMV where the device and the
        // weights allow; otherwise the norm alone is fused into the gate and up GEMVs.
        let mlp_wide = b.norm_fusable(&lay.gate.tensor) && b.norm_fusable(&lay.up.tensor);
        if mlp_wide {
            b.last_prefill_only();
        }
        let glu_fused = mlp_wide
            && max_storage_buffers >= GLU_STORAGE_BUFFERS
            && b.glu_gemv(l, (&lay.gate, &lay.up), x, gate, pre_w)?;
        if mlp_wide {
            if glu_fused {
                b.skip_decode = true;
            } else {
                b.decode_norm = Some((x, pre_w.clone()));
            }
        }
        for (label, t, p) in [("gate", gate, &lay.gate), ("up", up, &lay.up)] {
            b.matmul(
                &format!("l{l}.{label}"),
                &p.tensor,
                p.rows.clone(),
                hn2,
                t,
                f,
                0,
                false,
                None,
                seq.clone(),
            )?;
        }
        b.decode_norm = None;
        b.skip_decode = false;
        b.elementwise(
            &format!("l{l}.glu"),
            "glu",
            vec![(2, BufRef::Act(gate)), (7, BufRef::Act(up))],
            vec![
                ("seq", Field::U(seq.clone())),
                ("n", Field::U(c(f as u64))),
                (
                    "act",
                    Field::U(c(u64::from(arch.activation == Act::GeluTanh))),
                ),
            ],
            seq.clone() * f,
            (vec![gate, up], vec![gate]),
        );
        if glu_fused {
            b.last_prefill_only();
        }
        b.add_to_residual(
            (&format!("l{l}.down"), &lay.down),
            gate,
            x,
            lay.mlp_out_norm
                .as_deref()
                .map(|w| (format!("l{l}.mlp_out"), format!("l{l}.post_mlp_norm"), w)),
        )?;
        layer_end.push(b.ops.len() - 1);
    }
    // Final norm of the chosen positions only, then the LM head.
    let hf = b.act("final_norm".into(), Expr::Out * h);
    b.norm(
        "final_norm",
        Some(x),
        hf,
        &model.final_norm,
        Expr::Out,
        h,
        false,
        true,
    );
    let vocab = cfg.vocab_size;
    let logits = b.act("logits".into(), Expr::Out * vocab);
    b.matmul(
        "lm_head",
        &model.lm_head,
        0..vocab,
        hf,
        logits,
        vocab,
        0,
        false,
        None,
        Expr::Out,
    )?;
    if let Some(cap) = cfg.final_logit_softcapping {
        b.elementwise(
            "logit_softcap",
            "softcap",
            vec![(2, BufRef::Act(logits))],
            vec![
                ("seq", Field::U(Expr::Out)),
                ("n", Field::U(c(vocab as u64))),
                ("cap", Field::F(cap as f32)),
            ],
            Expr::Out * vocab,
            (vec![logits], vec![logits]),
        );
    }
    Ok(Graph {
        ops: b.ops,
        acts: b.acts,
        logits,
        residual: x,
        rope_bases,
        rot,
        layer_end,
    })
}

impl Graph {
    /// A text listing of the plan (ops with their bindings, parameter bytes and grids at each of
    /// `points`, activations, layer ends), for comparing plans across refactorings.
    pub fn dump(&self, points: &[crate::shape::Syms]) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "logits {} residual {} rot {} rope_bases {:?} layer_end {:?}",
            self.logits, self.residual, self.rot, self.rope_bases, self.layer_end
        );
        for (i, (name, e)) in self.acts.iter().enumerate() {
            let _ = writeln!(s, "act {i} {name} {e}");
        }
        for (i, op) in self.ops.iter().enumerate() {
            let mut b = op.bindings.clone();
            b.sort_by_key(|(i, _)| *i);
            let _ = writeln!(
                s,
                "op {i} {} | {}::{} | {:?} | reads {:?} writes {:?} | bindings {:?}",
                op.label,
                op.kernel.name(),
                op.entry,
                op.when,
                op.reads,
                op.writes,
                b
            );
            let _ = writeln!(
                s,
                "   grid [{}, {}, {}]",
                op.grid[0], op.grid[1], op.grid[2]
            );
            for p in points {
                let bytes: Vec<u8> = op
                    .params
                    .iter()
                    .flat_map(|f| match f {
                        Field::U(e) => (e.eval(p) as u32).to_le_bytes(),
                        Field::F(v) => v.to_bits().to_le_bytes(),
                    })
                    .collect();
                let grid: Vec<u64> = op.grid.iter().map(|g| g.eval(p)).collect();
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let _ = writeln!(
                    s,
                    "   at {}/{}/{}: grid {grid:?} params {hex}",
                    p.seq, p.past, p.out
                );
            }
        }
        s
    }
}
