//! The execution plan: a model becomes a list of ops (kernel, entry point, bindings, parameters
//! and workgroup grid as expressions over `seq`, `past`, `out`), built once from the deployable
//! model's manifest and the architecture table's layer walk (`Arch::layer`). Activations are
//! symbolic tensors that the memory planner places; weights and the KV cache are bound as they
//! are.
//!
//! What each projection's ops do (which GEMV and GEMM, whether the preceding norm or the gated
//! activation is fused) is decided once per projection ([`decision`]); the emitters follow it.
//! `builder` holds the plan under construction, `matmul` emits the projections, `norm` the
//! RMSNorms, `attention` RoPE and attention, `elementwise` the embedding, the gated activation
//! and the LM head, and `layer` walks one layer.

mod attention;
mod builder;
pub mod decision;
mod elementwise;
pub mod join;
mod layer;
mod matmul;
mod norm;

use tlite_model::config::ModelConfig;
use tlite_model::deploy::Manifest;

use crate::kernels::Kernel;
use crate::kernels::params::{ATTENTION_MAX_HD, Value};
use crate::shape::{Expr, c};
use crate::{GpuError, Result};

use attention::Rope;
use builder::Builder;
use decision::Limits;
pub use decision::{Limits as PlanLimits, OnePass};

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

impl From<Value<Expr>> for Field {
    fn from(v: Value<Expr>) -> Field {
        match v {
            Value::U(e) => Field::U(e),
            Value::F(x) => Field::F(x),
            // The bits of an `i32` member, as a `u32` constant.
            Value::I(x) => Field::U(c(u64::from(x as u32))),
        }
    }
}

/// An op's parameters from the values of its family's parameter struct over [`Expr`]
/// (`MatmulParams::<Expr>::values()` and kin), in member order.
pub fn fields(values: Vec<Value<Expr>>) -> Vec<Field> {
    values.into_iter().map(Field::from).collect()
}

/// When an op runs, by the number of tokens of the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// One token.
    Decode,
    /// More than one token.
    Prefill,
    /// 2 to [`TOKENS_GEMV_MIN`] − 1 tokens: an M0E4 projection as `gemv_m0e4` over each token,
    /// its weights read from memory once and reread from cache for the later tokens, instead of
    /// the GEMM, whose tiles of 64 tokens would mostly be padding and whose few workgroups (one
    /// per 128 rows) would leave most of the GPU idle.
    PrefillFew,
    /// [`TOKENS_GEMV_MIN`] to [`SMALL_PREFILL`] tokens: an M0E4 projection as
    /// `gemv_m0e4_tokens`, each word decoded once per pass of 4 tokens.
    PrefillSmall,
    /// More than [`SMALL_PREFILL`] tokens (the GEMM).
    PrefillLarge,
    /// On adapters with cooperative matrices, 2 to [`COOP_SHORT_PREFILL`] tokens: an M0E4
    /// projection as `gemm_m0e4_coop_few` (16 rows × 16 tokens per workgroup).
    PrefillCoopShort,
    /// On adapters with cooperative matrices, more than [`COOP_SHORT_PREFILL`] tokens (the coop
    /// GEMM).
    PrefillCoopLarge,
    /// [`When::PrefillCoopLarge`]'s steps of fewer than [`COOP_WIDE_PREFILL`] tokens, for a
    /// projection of `COOP_LARGE_MIN_ROWS` rows or more: the coop GEMM on 128 × 64 tiles.
    PrefillCoopMid,
    /// The rest of them, [`COOP_WIDE_PREFILL`] tokens or more: the 128 × 128 tiles. Where a
    /// projection's input is written in f16 (`Projection::x_half`), these steps' ops and the
    /// [`When::PrefillCoopShort`] ones read it so, the 128 × 64 tiles f32.
    PrefillCoopWide,
    /// [`When::PrefillCoopShort`] and [`When::PrefillCoopWide`]: the steps whose coop kernels
    /// (the 16 × 16 and the 128 × 128 tiles) read a projection's input in f16 where the op
    /// before writes it so.
    PrefillCoopShortOrWide,
    /// One token or [`When::PrefillCoopMid`]: the ops that write such an input in f32.
    DecodeOrCoopMid,
    /// One token or [`When::PrefillCoopLarge`]: the ops that write in f32 the input of a
    /// projection that reads f16 in its [`When::PrefillCoopShort`] steps only.
    DecodeOrCoopLarge,
}

/// The most tokens of a step whose M0E4 projections run as GEMVs ([`When::PrefillFew`],
/// [`When::PrefillSmall`]).
pub const SMALL_PREFILL: u64 = 48;

/// The fewest tokens of a step whose M0E4 projections run as `gemv_m0e4_tokens`. Measured on an
/// H200 (docs/PERF.md, "Short prefills: each word decoded once per 4 tokens"): against
/// `gemv_m0e4` per token it was 7-32% slower at 2 and 9 tokens and 3-17% faster at 32 and 48.
pub const TOKENS_GEMV_MIN: u64 = 16;

/// The most tokens of a step whose M0E4 projections run as `gemm_m0e4_coop_few` where the
/// adapter has cooperative matrices ([`When::PrefillCoopShort`]). Measured on an H200
/// (docs/PERF.md, "Short prefills on cooperative matrices"): against the coop GEMM it was 28%
/// faster at 32 tokens and 3% slower at 48.
pub const COOP_SHORT_PREFILL: u64 = 40;

/// The fewest tokens of a step whose projections of `COOP_LARGE_MIN_ROWS` rows or more run the
/// coop GEMM on its 128 × 128 tiles ([`When::PrefillCoopWide`]), reading their input in f16
/// where the op before writes it so ([`When::PrefillCoopShortOrWide`]); shorter steps take the
/// 128 × 64 tiles with f32 input. Measured on an H200 (docs/PERF.md, "the 128 × 128 tiles from
/// 256 tokens"), the 128 × 128 tiles with f16 input against the 128 × 64 ones: 7.38B pp256 +9.9%,
/// pp384 +35.5%, 1.17B pp256 +9.7%; from 128 tokens instead, 7.38B pp128 −6.7% and pp192
/// −1.2% (1.17B pp192 +10.1%). (Before the f16 inputs the 128 × 64 tiles were 22-24% faster at
/// 64-256 tokens, and the threshold 512.)
pub const COOP_WIDE_PREFILL: u64 = 256;

impl When {
    /// An op that runs `self` and writes a projection's input, in f16 in the steps `half` where
    /// the projection reads it so (`Decision::f16_input_steps`): the steps where it writes f32,
    /// then those where it writes f16, each `None` where no step is left to it. Where `self`
    /// is not one of the kinds an input's producer runs as (every step, or prefill), or `half`
    /// not one of the kinds of f16 steps, it writes f32 throughout, and the projection must
    /// then read f32 (`f16_steps` is `None`).
    pub fn split_f16(self, half: Option<When>) -> [(Option<When>, bool); 2] {
        use When::*;
        let (f32_steps, f16_steps) = match (self, half) {
            (Always, Some(PrefillCoopShortOrWide)) => (Some(DecodeOrCoopMid), half),
            (Prefill, Some(PrefillCoopShortOrWide)) => (Some(PrefillCoopMid), half),
            (Always, Some(PrefillCoopShort)) => (Some(DecodeOrCoopLarge), half),
            (Prefill, Some(PrefillCoopShort)) => (Some(PrefillCoopLarge), half),
            (other, _) => (Some(other), None),
        };
        [(f32_steps, false), (f16_steps, true)]
    }

    /// Whether an op of this kind runs in a step of `seq` tokens.
    pub fn runs(self, seq: u64) -> bool {
        match self {
            When::Always => true,
            When::Decode => seq == 1,
            When::Prefill => seq > 1,
            When::PrefillFew => seq > 1 && seq < TOKENS_GEMV_MIN,
            When::PrefillSmall => (TOKENS_GEMV_MIN..=SMALL_PREFILL).contains(&seq),
            When::PrefillLarge => seq > SMALL_PREFILL,
            When::PrefillCoopShort => seq > 1 && seq <= COOP_SHORT_PREFILL,
            When::PrefillCoopLarge => seq > COOP_SHORT_PREFILL,
            When::PrefillCoopMid => seq > COOP_SHORT_PREFILL && seq < COOP_WIDE_PREFILL,
            When::PrefillCoopWide => seq >= COOP_WIDE_PREFILL,
            When::PrefillCoopShortOrWide => {
                When::PrefillCoopShort.runs(seq) || When::PrefillCoopWide.runs(seq)
            }
            When::DecodeOrCoopMid => seq == 1 || When::PrefillCoopMid.runs(seq),
            When::DecodeOrCoopLarge => seq == 1 || When::PrefillCoopLarge.runs(seq),
        }
    }
}

/// One dispatch.
#[derive(Clone, Debug)]
pub struct Op {
    pub label: String,
    pub kernel: Kernel,
    pub entry: &'static str,
    /// Binding index (`kernels::params::binding`) and buffer; the uniform (binding 0) is added
    /// when binding.
    pub bindings: Vec<(u32, BufRef)>,
    /// The members of the kernel's parameter struct, in order ([`fields`]).
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
    /// The weights the load joins from stored tensors ([`join`]).
    pub joined: Vec<join::Joined>,
    /// The KV cache holds f16: `attention`, `rope_kv` and `matmul` are built for it
    /// ([`crate::kernels::Kernel::source_for`]).
    pub kv_f16: bool,
}

/// Largest workgroup count per grid dimension used by the plan (the WebGPU minimum limit).
pub const MAX_GRID: u64 = 65535;

/// Builds the plan of a deployable model.
///
/// `limits` says what the device allows: fused ops that bind more storage buffers than its
/// limit per shader stage are left out, and the M0E4 prefill GEMMs run on cooperative
/// matrices where it has them.
pub fn build(man: &Manifest, max_seq: usize, limits: Limits) -> Result<Graph> {
    let cfg = &man.config;
    check_supported(cfg)?;
    let arch = cfg.arch();
    let layers: Vec<_> = arch.layers(cfg).collect();
    let (joined, qkv) = {
        let stored: decision::Layouts = man.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut joined = Vec::new();
        let qkv = (layers.iter())
            .map(|lay| join::qkv_proj(lay, &stored, limits, &mut joined))
            .collect();
        (joined, qkv)
    };
    let mut b = Builder::new(man, (&joined, qkv), limits, max_seq);
    let model = arch.model_spec(cfg);
    b.embed(&model.embed)?;
    let rope = Rope::of(cfg);
    let mut layer_end = Vec::with_capacity(cfg.num_layers);
    for lay in &layers {
        b.layer(lay, &rope)?;
        layer_end.push(b.ops.len() - 1);
    }
    let logits = b.head(&model)?;
    let (ops, acts, residual) = (b.ops, b.acts, b.residual);
    Ok(Graph {
        ops,
        acts,
        logits,
        residual,
        rope_bases: rope.bases,
        rot: rope.rot,
        layer_end,
        joined,
        kv_f16: limits.kv_f16,
    })
}

/// Rejects what the kernels cannot run.
fn check_supported(cfg: &ModelConfig) -> Result<()> {
    if cfg.head_dim > ATTENTION_MAX_HD {
        return Err(GpuError::Model(format!(
            "head_dim {} > {ATTENTION_MAX_HD} is not supported by the attention kernel",
            cfg.head_dim
        )));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each family of prefill ops (the GEMV and GEMM path, the cooperative-matrix path) has
    /// exactly one op kind for every step of more than one token, and none for decode.
    #[test]
    fn prefill_whens_partition_the_steps() {
        let gemv = [When::PrefillFew, When::PrefillSmall, When::PrefillLarge];
        let coop = [When::PrefillCoopShort, When::PrefillCoopLarge];
        let coop_wide = [
            When::PrefillCoopShort,
            When::PrefillCoopMid,
            When::PrefillCoopWide,
        ];
        for seq in 1..=2 * COOP_WIDE_PREFILL {
            let want = usize::from(seq > 1);
            assert_eq!(gemv.iter().filter(|w| w.runs(seq)).count(), want, "{seq}");
            assert_eq!(coop.iter().filter(|w| w.runs(seq)).count(), want, "{seq}");
            assert_eq!(
                coop_wide.iter().filter(|w| w.runs(seq)).count(),
                want,
                "{seq}"
            );
            assert_eq!(When::Prefill.runs(seq), seq > 1);
        }
        assert!(When::PrefillCoopShort.runs(COOP_SHORT_PREFILL));
        assert!(When::PrefillCoopLarge.runs(COOP_SHORT_PREFILL + 1));
        assert!(When::PrefillCoopMid.runs(COOP_WIDE_PREFILL - 1));
        assert!(When::PrefillCoopWide.runs(COOP_WIDE_PREFILL));
    }

    /// `split_f16`'s two parts cover the producer's steps exactly once, the f16 part exactly
    /// the f16 steps among them; with no f16 steps (or a producer of another kind) everything
    /// is f32.
    #[test]
    fn split_f16_partitions_the_producers_steps() {
        let halves = [When::PrefillCoopShortOrWide, When::PrefillCoopShort];
        for producer in [When::Always, When::Prefill] {
            for half in halves {
                let [(f32_steps, false), (Some(f16_steps), true)] = producer.split_f16(Some(half))
                else {
                    panic!("{producer:?} {half:?}");
                };
                for seq in 1..=2 * COOP_WIDE_PREFILL {
                    let f32_runs = f32_steps.is_some_and(|w| w.runs(seq));
                    assert_eq!(f16_steps.runs(seq), producer.runs(seq) && half.runs(seq));
                    assert_eq!(f32_runs, producer.runs(seq) && !half.runs(seq), "{seq}");
                }
            }
            let [(Some(all), false), (None, true)] = producer.split_f16(None) else {
                panic!("{producer:?}");
            };
            assert_eq!(all, producer);
        }
        let [(Some(when), false), (None, true)] = When::Decode.split_f16(Some(halves[0])) else {
            panic!("decode");
        };
        assert_eq!(when, When::Decode);
    }
}
