//! Projections: the GEMV and GEMM ops of each chunk of a weight, and the fused GLU GEMV, as
//! the projection's [`Decision`] says.

use tlite_model::arch::Activation as Act;
use tlite_model::layer::Proj;

use super::builder::{Builder, first_chunk, grid_1d, m0e4_row, part};
use super::decision::{self, ChunkRows, Decision, Gemm, Gemv, Norm, Site};
use super::join::GROUPS_PART;
use super::norm::{NormIo, NormOp};
use super::{BufRef, Op, When, fields};
use crate::Result;
use crate::kernels::Kernel;
use crate::kernels::params::binding::matmul as bind;
use crate::kernels::params::binding::matmul_coop_h as coop_bind;
use crate::kernels::params::{
    COOP_FEW_ROWS, COOP_FEW_TOKENS, GEMV_GLU_OUTPUTS, GEMV_ROWS, MatmulParams,
};
use crate::shape::{Expr, c};

/// Which GEMV [`Builder::gemv`] emits for a chunk.
#[derive(Clone, Copy)]
enum GemvRun {
    /// The decision's decode GEMV: `entry` with `rows` output rows per block.
    Decode { entry: &'static str, rows: usize },
    /// `gemv_m0e4` over each token of a step of a few tokens ([`When::PrefillFew`]).
    FewPrefill,
    /// `gemv_m0e4_tokens` over the tokens of a short step ([`When::PrefillSmall`]).
    SmallPrefill,
}

/// How a [`GemvRun`] runs on a chunk.
struct GemvShape {
    entry: &'static str,
    /// Output rows per block, and blocks per workgroup.
    rows: usize,
    blocks: usize,
    /// x and the packed words read as vectors.
    vector: bool,
    /// The RMSNorm before the projection applied in the GEMV.
    fused: bool,
    when: When,
    /// The op label's suffix.
    tag: &'static str,
}

impl GemvRun {
    fn shape(self, d: &Decision, ch: &ChunkRows) -> GemvShape {
        match self {
            GemvRun::Decode { entry, rows } => GemvShape {
                entry,
                rows,
                blocks: ch.blocks,
                vector: d.gemv.vector_loads(),
                fused: matches!(d.norm, Norm::Fused { .. }),
                when: When::Decode,
                tag: "gemv",
            },
            // The norm is a separate op in prefill.
            GemvRun::FewPrefill | GemvRun::SmallPrefill => {
                let (entry, when, tag) = match self {
                    GemvRun::FewPrefill => ("gemv_m0e4", When::PrefillFew, "gemv_few"),
                    _ => ("gemv_m0e4_tokens", When::PrefillSmall, "gemv_small"),
                };
                GemvShape {
                    entry,
                    rows: GEMV_ROWS as usize,
                    blocks: 1,
                    vector: false,
                    fused: false,
                    when,
                    tag,
                }
            }
        }
    }
}

/// One projection to emit: `y[:, o] (+)= x · W[rows]ᵀ (+ bias)` over `seq` rows.
pub(super) struct Projection<'a> {
    /// The label of its ops (before the chunk index and the phase).
    pub label: String,
    pub proj: &'a Proj,
    pub x: usize,
    pub y: usize,
    /// Rows of the step: `seq`, or `out` for the LM head.
    pub seq: Expr,
    /// A joined q/k/v projection whose decode GEMV applies RoPE and writes k and v into the
    /// cache itself (`gemv_m0e4_norm_rope`).
    pub rope: Option<RopeWrite>,
    /// The activation its ops on cooperative matrices read in f16 in the steps of
    /// [`Decision::f16_input_steps`], where the op before the projection writes one (`x`
    /// itself, or an activation of its own); `None`: they read `x` in f32.
    pub x_half: Option<usize>,
}

/// What `gemv_m0e4_norm_rope` needs besides the projection: where the rotated q goes, the
/// layer's cache and RoPE tables, and the rotation.
#[derive(Clone, Copy, Debug)]
pub(super) struct RopeWrite {
    pub layer: usize,
    /// The activation of the rotated q.
    pub q: usize,
    /// The RoPE tables' index (`BufRef::Cos`, `BufRef::Sin`).
    pub base: usize,
    pub rot: usize,
    pub interleaved: bool,
}

impl Builder<'_> {
    /// What `proj`'s ops do at `site`.
    pub fn decide(&self, proj: &Proj, site: Site) -> Result<Decision> {
        decision::decide(proj, site, &self.layouts, self.limits)
    }

    /// The ops of projection `p` that `d` decides: the fused GLU GEMV where it is one, then per
    /// chunk a GEMV (decode) and a GEMM (prefill).
    pub fn project(&mut self, p: &Projection, d: &Decision) {
        // The fused GLU GEMV always applies the norm.
        if let (
            Gemv::Glu {
                up,
                up_row0,
                blocks,
                narrow,
            },
            Norm::Fused { weight },
        ) = (&d.gemv, &d.norm)
        {
            self.glu_gemv(p, d, (up, *up_row0, *blocks, *narrow), weight);
        }
        for ch in &d.chunks {
            if let Some((entry, rows)) = d.gemv.per_chunk() {
                let op = self.gemv(p, d, ch, GemvRun::Decode { entry, rows });
                self.push(op);
            }
            // M0E4: a few tokens as GEMVs (or, on cooperative matrices, in tiles of 16
            // tokens), more through the GEMM; on cooperative matrices the 16 × 16 and the 128 ×
            // 128 tiles read the input in f16 where it is written so (Decision::f16_input_steps).
            let mut op = self.gemm(p, d, ch);
            // The LM head's rows are the step's outputs (often 1), not its tokens: it keeps the
            // GEMVs there.
            if d.coop_short && p.seq == Expr::Seq {
                let few = self.coop_few(p, d, ch);
                self.push(few);
                op.when = When::PrefillCoopLarge;
                // Projections on the 128 × 128 tiles take the 128 × 64 ones below
                // COOP_WIDE_PREFILL tokens, where the larger tiles leave the GPU half idle.
                if d.gemm == Gemm::M0e4Coop {
                    let narrow = Decision {
                        gemm: Gemm::M0e4CoopSmall,
                        ..d.clone()
                    };
                    let mut mid = self.gemm(p, &narrow, ch);
                    mid.when = When::PrefillCoopMid;
                    self.push(mid);
                    op.when = When::PrefillCoopWide;
                }
            } else if d.gemm.m0e4() {
                for run in [GemvRun::FewPrefill, GemvRun::SmallPrefill] {
                    let g = self.gemv(p, d, ch, run);
                    self.push(g);
                }
                op.when = When::PrefillLarge;
            }
            self.push(op);
        }
    }

    /// The steps in which the ops on cooperative matrices of `proj`, added to the residual by
    /// [`Builder::add_to_residual`] (with an output norm: `out_norm`), read their input in f16
    /// ([`Decision::f16_input_steps`]): the op before it writes one there.
    pub fn residual_input_half(&self, proj: &Proj, out_norm: bool) -> Result<Option<When>> {
        let site = Site::Plain {
            accumulate: !out_norm,
        };
        Ok(self.decide(proj, site)?.f16_input_steps())
    }

    /// `x += p(input)`; with an output norm (sandwich norms) `x += norm(p(input))` through a
    /// temporary activation: `(activation name, norm label, norm weight)`. `input_half`: the
    /// input in f16 in the steps [`Builder::residual_input_half`] gives, where written so.
    pub fn add_to_residual(
        &mut self,
        (label, proj): (&str, &Proj),
        (input, input_half): (usize, Option<usize>),
        out_norm: Option<(String, String, &str)>,
    ) -> Result<()> {
        let (n, seq, x) = (proj.out(), Expr::Seq, self.residual);
        let accumulate = out_norm.is_none();
        let d = self.decide(proj, Site::Plain { accumulate })?;
        let y = match &out_norm {
            None => x,
            Some((tmp_name, ..)) => self.act(tmp_name.clone(), seq.clone() * n),
        };
        let label = label.to_owned();
        let p = Projection {
            label,
            proj,
            x: input,
            y,
            seq: seq.clone(),
            rope: None,
            x_half: input_half,
        };
        self.project(&p, &d);
        if let Some((_, norm_label, weight)) = out_norm {
            self.norm(NormOp {
                label: norm_label,
                io: NormIo::AddFrom(y),
                y: x,
                weight,
                rows: seq,
                n,
                when: When::Always,
                half: false,
            });
        }
        Ok(())
    }

    /// The GEMV op of chunk `ch`: the decision's decode GEMV, or a GEMV over the tokens of a
    /// short prefill.
    fn gemv(&self, p: &Projection, d: &Decision, ch: &ChunkRows, run: GemvRun) -> Op {
        let g = run.shape(d, ch);
        let (grid, width) = grid_1d(c(ch.rows.len().div_ceil(g.rows * g.blocks) as u64));
        let (gemv_x, norm_w) = match &d.norm {
            Norm::Fused { weight } if g.fused => (self.residual, first_chunk(weight, 0)),
            _ => (p.x, BufRef::Dummy),
        };
        let mut bindings = weight_bindings(p, d, ch);
        if g.fused && !g.vector {
            // gemv_m0e4_norm: it reads the residual (as vectors: k is a multiple of 8) and the
            // norm weight.
            for (i, b) in bindings.iter_mut() {
                if *i == bind::X {
                    (*i, *b) = (bind::X4, BufRef::Act(gemv_x));
                }
            }
            bindings.push((bind::NORM_W4, norm_w.clone()));
        } else if !g.vector && d.gemm.m0e4() {
            // gemv_m0e4 and gemv_m0e4_tokens read x as vectors too where k is a multiple of 8.
            bindings.push((bind::X4, BufRef::Act(gemv_x)));
        }
        if g.vector {
            // x and the packed words as vectors instead of scalars.
            bindings.retain(|(i, _)| ![bind::X, bind::PACKED].contains(i));
            let packed = part(&p.proj.tensor, ch.chunk, 0);
            bindings.extend([
                (bind::X4, BufRef::Act(gemv_x)),
                (bind::PACKED4, packed),
                (bind::NORM_W4, norm_w),
            ]);
        }
        let (mut reads, mut writes) = reads_writes(p, d);
        if !reads.contains(&gemv_x) {
            reads.push(gemv_x);
        }
        let blocked = ChunkRows {
            blocks: g.blocks,
            ..ch.clone()
        };
        let mut params = self.matmul_params(p, d, &blocked, width, g.fused);
        let mut entry = g.entry;
        if let (GemvRun::Decode { .. }, Some(r), "gemv_m0e4_norm") = (run, p.rope, g.entry) {
            entry = "gemv_m0e4_norm_rope";
            params = self.with_rope(r, &mut bindings, params);
            writes = vec![r.q];
        }
        Op {
            label: format!("{}[{}] {}", p.label, ch.chunk, g.tag),
            kernel: Kernel::Matmul,
            entry,
            bindings,
            params: fields(params.values()),
            grid,
            when: g.when,
            reads,
            writes,
        }
    }

    /// `gemv_m0e4_norm`'s bindings and parameters turned into `gemv_m0e4_norm_rope`'s: the
    /// rotated q into its own activation, k and v into layer `r.layer`'s cache.
    fn with_rope(
        &self,
        r: RopeWrite,
        bindings: &mut Vec<(u32, BufRef)>,
        params: MatmulParams<Expr>,
    ) -> MatmulParams<Expr> {
        let cfg = self.cfg;
        let (q_rows, kv_rows) = (
            cfg.num_heads * cfg.head_dim,
            cfg.num_kv_heads * cfg.head_dim,
        );
        for (i, b) in bindings.iter_mut() {
            if *i == bind::Y {
                *b = BufRef::Act(r.q);
            }
        }
        bindings.extend([
            (bind::KCACHE, BufRef::KvK(r.layer)),
            (bind::VCACHE, BufRef::KvV(r.layer)),
            (bind::COS_T, BufRef::Cos(r.base)),
            (bind::SIN_T, BufRef::Sin(r.base)),
        ]);
        let n = |v: usize| c(v as u64);
        MatmulParams {
            out_stride: n(q_rows),
            out_col0: c(0),
            rope_past: Expr::Past,
            rope_rot: n(r.rot),
            rope_hd: n(cfg.head_dim),
            rope_q_rows: n(q_rows),
            rope_kv_rows: n(kv_rows),
            rope_max_seq: n(self.max_seq),
            rope_interleaved: c(u64::from(r.interleaved)),
            ..params
        }
    }

    /// The prefill op of chunk `ch`; on the 128 × 128 coop tiles with the input in f16 from
    /// activation `p.x_half` where given (the only GEMM built for f16 input).
    fn gemm(&self, p: &Projection, d: &Decision, ch: &ChunkRows) -> Op {
        let half = p.x_half.filter(|_| d.gemm == Gemm::M0e4Coop);
        let (mut reads, writes) = reads_writes(p, d);
        let unblocked = ChunkRows {
            blocks: 1,
            ..ch.clone()
        };
        let mut bindings = weight_bindings(p, d, ch);
        if d.gemm.coop() {
            // It reads x and the packed words as vectors; x in f16 where the op before the
            // projection writes it so (`half`).
            for (i, r) in bindings.iter_mut() {
                *i = match *i {
                    bind::X if half.is_some() => coop_bind::X_H,
                    bind::X => bind::X4,
                    bind::PACKED => bind::PACKED4,
                    other => other,
                };
                if let (coop_bind::X_H, Some(xh)) = (*i, half) {
                    *r = BufRef::Act(xh);
                }
            }
            if let Some(xh) = half {
                reads[0] = xh;
            }
        }
        let kernel = match half {
            Some(_) => Kernel::MatmulCoopH,
            None => d.gemm.kernel(),
        };
        Op {
            label: format!("{}[{}] gemm", p.label, ch.chunk),
            kernel,
            entry: d.gemm.entry(),
            bindings,
            params: fields(self.matmul_params(p, d, &unblocked, c(0), false).values()),
            grid: tile_grid(p, ch, d.gemm.tile()),
            when: When::Prefill,
            reads,
            writes,
        }
    }

    /// The short-prefill op of chunk `ch` on cooperative matrices: `gemm_m0e4_coop_few` with
    /// the bindings and parameters of a coop GEMM op (the input in f16 where `p.x_half` gives
    /// it).
    fn coop_few(&self, p: &Projection, d: &Decision, ch: &ChunkRows) -> Op {
        let wide = Decision {
            gemm: Gemm::M0e4Coop,
            ..d.clone()
        };
        let gemm = self.gemm(p, &wide, ch);
        Op {
            label: format!("{}[{}] gemm_few", p.label, ch.chunk),
            kernel: match gemm.kernel {
                Kernel::MatmulCoopH => Kernel::MatmulCoopFewH,
                _ => Kernel::MatmulCoopFew,
            },
            entry: "gemm_m0e4_coop_few",
            grid: tile_grid(p, ch, (COOP_FEW_ROWS, COOP_FEW_TOKENS)),
            when: When::PrefillCoopShort,
            ..gemm
        }
    }

    /// Decode op `gemv_m0e4_glu` (`gemv_m0e4_glu_narrow` with `narrow`): `y = act(norm(x) · Gᵀ) ·
    /// (norm(x) · Uᵀ)` with G the gate's rows (`p`, from row 0 of its single chunk), U those of
    /// tensor `up` from `up_row0` and the norm's weight `norm_w`.
    fn glu_gemv(
        &mut self,
        p: &Projection,
        d: &Decision,
        (up, up_row0, blocks, narrow): (&str, usize, usize, bool),
        norm_w: &str,
    ) {
        let f = p.proj.out();
        // The narrow GEMV reads the packed words as scalars, the wide one as vectors; both read
        // x as vectors.
        let (entry, per_wg, packed_at, up_at) = match narrow {
            true => (
                "gemv_m0e4_glu_narrow",
                GEMV_ROWS as usize / 2,
                bind::PACKED,
                bind::PACKED_UP,
            ),
            false => (
                "gemv_m0e4_glu",
                GEMV_GLU_OUTPUTS as usize * blocks,
                bind::PACKED4,
                bind::PACKED4_UP,
            ),
        };
        let (grid, gw) = grid_1d(c(f.div_ceil(per_wg) as u64));
        let ch = ChunkRows {
            chunk: 0,
            rows: 0..f,
            w_row0: 0,
            out_col0: 0,
            blocks,
        };
        let act = u64::from(self.arch.activation == Act::GeluTanh);
        let params = MatmulParams {
            act: c(act),
            up_row0: c(up_row0 as u64),
            ..self.matmul_params(p, d, &ch, gw, true)
        };
        let (gate, x) = (p.proj.tensor.as_str(), self.residual);
        self.push(Op {
            label: format!("{}_up_glu gemv", p.label),
            kernel: Kernel::Matmul,
            entry,
            bindings: vec![
                (bind::Y, BufRef::Act(p.y)),
                (bind::GROUPS, first_chunk(gate, GROUPS_PART)),
                (bind::X4, BufRef::Act(x)),
                (packed_at, first_chunk(gate, 0)),
                (bind::NORM_W4, first_chunk(norm_w, 0)),
                (up_at, first_chunk(up, 0)),
                (bind::GROUPS_UP, first_chunk(up, GROUPS_PART)),
            ],
            params: fields(params.values()),
            grid,
            when: When::Decode,
            reads: vec![x],
            writes: vec![p.y],
        });
    }

    /// The `Matmul` parameters of chunk `ch` of `p`, with the op's `grid_width`; with `norm` the
    /// op applies the RMSNorm itself. The fused GLU GEMV sets `act` and `up_row0` over them.
    fn matmul_params(
        &self,
        p: &Projection,
        d: &Decision,
        ch: &ChunkRows,
        grid_width: Expr,
        norm: bool,
    ) -> MatmulParams<Expr> {
        let flag = |b: bool| c(u64::from(b));
        let (eps, w_offset) = match norm {
            true => (self.cfg.rms_norm_eps as f32, self.norm_offset()),
            false => (0.0, 0.0),
        };
        let bias0 = d.bias.as_ref().map_or(0, |(_, o)| o + ch.out_col0);
        let [group, words_per_row, groups_per_row] = m0e4_row(d.k, d.group);
        MatmulParams {
            seq: p.seq.clone(),
            k: c(d.k as u64),
            n: c(ch.rows.len() as u64),
            out_stride: c(p.proj.out() as u64),
            out_col0: c(ch.out_col0 as u64),
            w_row0: c(ch.w_row0 as u64),
            group,
            words_per_row,
            groups_per_row,
            accumulate: flag(d.accumulate),
            has_bias: flag(d.bias.is_some()),
            bias0: c(bias0 as u64),
            grid_width,
            norm: flag(norm),
            eps,
            w_offset,
            act: c(0),
            up_row0: c(0),
            blocks: c(ch.blocks as u64),
            rope_past: c(0),
            rope_rot: c(0),
            rope_hd: c(0),
            rope_q_rows: c(0),
            rope_kv_rows: c(0),
            rope_max_seq: c(0),
            rope_interleaved: c(0),
            _pad0: c(0),
            _pad1: c(0),
        }
    }
}

/// The bindings of `p`'s ops on chunk `ch` that read `x` as scalars: x, y, the bias and the
/// weight's parts.
fn weight_bindings(p: &Projection, d: &Decision, ch: &ChunkRows) -> Vec<(u32, BufRef)> {
    let bias = match &d.bias {
        Some((t, _)) => first_chunk(t, 0),
        None => BufRef::Dummy,
    };
    let mut b = vec![
        (bind::X, BufRef::Act(p.x)),
        (bind::Y, BufRef::Act(p.y)),
        (bind::BIAS, bias),
    ];
    let w = |i: usize| part(&p.proj.tensor, ch.chunk, i);
    if d.gemm.m0e4() {
        b.extend([(bind::PACKED, w(0)), (bind::GROUPS, w(GROUPS_PART))]);
    } else {
        b.push((bind::DENSE, w(0)));
    }
    b
}

/// The grid of a GEMM-shaped op on chunk `ch`: workgroups of `rows` weight rows × `tokens` of
/// the step's rows.
fn tile_grid(p: &Projection, ch: &ChunkRows, (rows, tokens): (u32, u32)) -> [Expr; 3] {
    [
        c(ch.rows.len() as u64).ceil_div(c(u64::from(rows))),
        p.seq.clone().ceil_div(c(u64::from(tokens))),
        c(1),
    ]
}

/// The activations `p`'s ops read and write.
fn reads_writes(p: &Projection, d: &Decision) -> (Vec<usize>, Vec<usize>) {
    if d.accumulate {
        (vec![p.x, p.y], vec![p.y])
    } else {
        (vec![p.x], vec![p.y])
    }
}
