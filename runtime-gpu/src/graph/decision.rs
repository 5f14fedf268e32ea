//! What a projection's ops do, decided once from the projection, where it sits in the layer,
//! the tensor layouts and the device limits ([`decide`]); the emitters follow the [`Decision`].
//!
//! Decode (one token) runs a GEMV, prefill a tiled GEMM, one of each per chunk of the weight
//! tensor. M0E4 projections run `gemv_m0e4`; the GEMV applies the RMSNorm before it itself (the
//! norm op then runs for prefill only) where every projection reading that norm can: q, k and v
//! in `gemv_m0e4`'s structure, the MLP's too except for inputs of MLP_WIDE_K columns, which take
//! the wide GEMV (the normalized row staged in shared memory); the gate and up projections of a
//! gated MLP become one GEMV with the norm and the activation where the weights and the device
//! allow.

use std::collections::HashMap;
use std::ops::Range;

use tlite_model::deploy::{Storage, TensorLayout};
use tlite_model::layer::Proj;

use super::{MAX_GRID, When};
use crate::kernels::Kernel;
use crate::kernels::params::{
    ATTENTION_DECODE_BYTES, ATTENTION_DECODE_WG, ATTENTION_DECODE_WIDE_WG, COOP_FEW_ROWS, COOP_K,
    COOP_ROWS, COOP_SMALL_ROWS, COOP_SMALL_TOKENS, COOP_TOKENS, GEMM_ROWS, GEMM_TOKENS,
    GEMV_GLU_OUTPUTS, GEMV_GLU_STORAGE_BUFFERS, GEMV_ROWS, GEMV_WG, GEMV_WIDE_COLS, GEMV_WIDE_ROWS,
    NORM_MAX_K,
};
use crate::{GpuError, Result};

/// The deployable model's tensors by name.
pub type Layouts<'a> = HashMap<&'a str, &'a TensorLayout>;

/// Projections of fewer rows than this run the coop GEMM on tiles of half the tokens: at 512
/// tokens a 2048-row projection is 64 workgroups of 128 × 128, half a large GPU's
/// multiprocessors (128 of 128 × 64). From this many rows on, the 128 × 128 tiles in steps of
/// `COOP_WIDE_PREFILL` tokens or more (with f32 input at 4096 rows and 512 tokens about one
/// workgroup per multiprocessor, measured 3% faster than twice as many 128 × 64 ones on the
/// Llama-3-8B body; with f16 input 10% faster at 256 tokens, PERF.md), and a twin op on the
/// 128 × 64 tiles for shorter steps (graph/matmul.rs).
pub const COOP_LARGE_MIN_ROWS: usize = 4096;

/// The 128 × 128 coop GEMM holds one scale and bias (one group word) per 32 columns a thread
/// loads (`UNIFORM_GROUPS` in matmul_coop.wgsl): it runs weights whose group size is a multiple
/// of this; the others take the 128 × 64 tiles, which read each word's group.
pub const COOP_LARGE_GROUP_UNIT: usize = 32;

/// What the plan depends on of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Storage buffers per shader stage.
    pub max_storage_buffers: u32,
    /// M0E4 prefill GEMMs on cooperative matrices ([`crate::Gpu::coop_gemm`]).
    pub coop_gemm: bool,
    /// Bytes of the largest buffer a kernel can bind (the binding and buffer limits and the
    /// kernels' 32-bit indices): a joined weight ([`super::join`]) is only made below it.
    pub max_binding: u64,
    /// The KV cache holds f16 ([`crate::Gpu::kv_f16`]).
    pub kv_f16: bool,
    /// Which of the one-pass decode attention's entry points the device's workgroups allow.
    pub one_pass_decode: OnePass,
}

/// The entry points of decode attention in one pass that a device runs: both need
/// `ATTENTION_DECODE_BYTES` of shared memory (they share the module's arrays), `attention::decode`
/// `ATTENTION_DECODE_WG` threads per workgroup and `decode_wide` `ATTENTION_DECODE_WIDE_WG`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnePass {
    /// Neither: every decode step splits its keys (`partial`, `combine`).
    None,
    /// `decode` up to `ATTENTION_DECODE_NARROW_KEYS` keys, the split past them.
    Narrow,
    /// `decode`, then `decode_wide` up to `ATTENTION_DECODE_KEYS` keys, the split past them.
    Both,
}

impl OnePass {
    /// What a device with these workgroup limits runs.
    pub fn of(invocations: u32, size_x: u32, shared_bytes: u32) -> OnePass {
        let threads = invocations.min(size_x);
        match shared_bytes >= ATTENTION_DECODE_BYTES {
            false => OnePass::None,
            true if threads >= ATTENTION_DECODE_WIDE_WG => OnePass::Both,
            true if threads >= ATTENTION_DECODE_WG => OnePass::Narrow,
            true => OnePass::None,
        }
    }
}

/// The plan's tests' device: 16 storage buffers per stage, no cooperative matrices, 128 MiB
/// bindings, the f32 KV cache, both one-pass decode entries.
#[cfg(test)]
pub(crate) const TEST_LIMITS: Limits = Limits {
    max_storage_buffers: 16,
    coop_gemm: false,
    max_binding: 128 << 20,
    kv_f16: false,
    one_pass_decode: OnePass::Both,
};

impl Limits {
    pub fn of(gpu: &crate::Gpu) -> Limits {
        Limits {
            max_storage_buffers: gpu.limits.max_storage_buffers_per_shader_stage,
            coop_gemm: gpu.coop_gemm(),
            max_binding: (gpu.limits.max_storage_buffer_binding_size)
                .min(gpu.limits.max_buffer_size)
                .min(crate::memory::MAX_INDEXED_BYTES),
            kv_f16: gpu.kv_f16(),
            one_pass_decode: OnePass::of(
                gpu.limits.max_compute_invocations_per_workgroup,
                gpu.limits.max_compute_workgroup_size_x,
                gpu.limits.max_compute_workgroup_storage_size,
            ),
        }
    }
}

/// Where a projection sits in the layer: what it reads and where its output goes.
#[derive(Clone, Copy, Debug)]
pub enum Site<'p> {
    /// Reads a computed activation (attention output, gated activation, final norm); with
    /// `accumulate` it adds into the residual instead of writing its own output.
    Plain { accumulate: bool },
    /// One of `group` (itself included: q, k, v), which all read the RMSNorm of the residual
    /// with weight `norm`.
    Normed {
        group: &'p [&'p Proj],
        norm: &'p str,
    },
    /// The gate of a gated MLP; it and `up` read the RMSNorm of the residual with weight `norm`.
    Gate { up: &'p Proj, norm: &'p str },
    /// The up projection of a gated MLP whose gate is `gate`.
    Up { gate: &'p Proj, norm: &'p str },
}

/// The decode (one-token) op of a projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gemv {
    /// `gemv_dense`: one output row per workgroup (f16 or f32 weights).
    Dense,
    /// `gemv_m0e4`: GEMV_ROWS rows per workgroup, any group size.
    Narrow,
    /// `gemv_m0e4_norm`: `gemv_m0e4` reading the raw residual and applying the RMSNorm
    /// ([`Norm::Fused`]) itself.
    NarrowNorm,
    /// `gemv_m0e4_wide` reading the raw residual and applying the RMSNorm itself, staged in
    /// shared memory (the MLP's inputs of MLP_WIDE_K columns, rows of whole
    /// GEMV_WIDE_COLS-column groups): GEMV_WIDE_ROWS rows per block with vector loads.
    WideNorm,
    /// The gate and up projections of a gated MLP with their norm and activation in one GEMV
    /// (this projection is the gate): `act(norm(x) · Gᵀ) · (norm(x) · Uᵀ)` with U the rows from
    /// `up_row0` of tensor `up`. With `narrow`, `gemv_m0e4_glu_narrow` (GEMV_ROWS / 2 outputs per
    /// workgroup); otherwise `gemv_m0e4_glu` with `blocks` blocks of GEMV_GLU_OUTPUTS outputs per
    /// workgroup.
    Glu {
        up: String,
        up_row0: usize,
        blocks: usize,
        narrow: bool,
    },
    /// None: the gate's fused GLU GEMV covers this projection.
    Covered,
}

impl Gemv {
    /// The entry point of the GEMV that runs per chunk and its output rows per workgroup (none
    /// for the fused GLU, which runs once for gate and up, and for a covered projection).
    pub fn per_chunk(&self) -> Option<(&'static str, usize)> {
        match self {
            Gemv::Dense => Some(("gemv_dense", 1)),
            Gemv::Narrow => Some(("gemv_m0e4", GEMV_ROWS as usize)),
            Gemv::NarrowNorm => Some(("gemv_m0e4_norm", GEMV_ROWS as usize)),
            Gemv::WideNorm => Some(("gemv_m0e4_wide", GEMV_WIDE_ROWS as usize)),
            Gemv::Glu { .. } | Gemv::Covered => None,
        }
    }

    /// Whether this GEMV reads `x` and the packed words as vectors (`binding::matmul::X4` and
    /// `PACKED4`).
    pub fn vector_loads(&self) -> bool {
        matches!(self, Gemv::WideNorm)
    }

    /// When the gated activation after the gate and up projections runs: the fused GLU GEMV
    /// applies it for decode.
    pub fn activation_when(&self) -> When {
        match self {
            Gemv::Glu { .. } => When::Prefill,
            _ => When::Always,
        }
    }
}

/// The prefill (several-token) op of a projection: GEMM_ROWS rows × GEMM_TOKENS tokens per
/// workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gemm {
    /// `gemm_m0e4`.
    M0e4,
    /// `matmul_coop::gemm_m0e4_coop`: on cooperative matrices, f16 operands (k a multiple of
    /// `COOP_K`).
    M0e4Coop,
    /// `matmul_coop_small::gemm_m0e4_coop`: the same on half as many tokens per workgroup, for
    /// projections of fewer than `COOP_LARGE_MIN_ROWS` rows (and, as the twin op of the others,
    /// for their steps of fewer than `COOP_WIDE_PREFILL` tokens).
    M0e4CoopSmall,
    /// `gemm_dense` (f16 or f32 weights).
    Dense,
}

impl Gemm {
    pub fn entry(self) -> &'static str {
        match self {
            Gemm::M0e4 => "gemm_m0e4",
            Gemm::M0e4Coop | Gemm::M0e4CoopSmall => "gemm_m0e4_coop",
            Gemm::Dense => "gemm_dense",
        }
    }

    pub fn kernel(self) -> Kernel {
        match self {
            Gemm::M0e4Coop => Kernel::MatmulCoop,
            Gemm::M0e4CoopSmall => Kernel::MatmulCoopSmall,
            _ => Kernel::Matmul,
        }
    }

    /// Output rows and tokens per workgroup (the grid's x and y).
    pub fn tile(self) -> (u32, u32) {
        match self {
            Gemm::M0e4Coop => (COOP_ROWS, COOP_TOKENS),
            Gemm::M0e4CoopSmall => (COOP_SMALL_ROWS, COOP_SMALL_TOKENS),
            _ => (GEMM_ROWS, GEMM_TOKENS),
        }
    }

    /// Whether it runs on cooperative matrices (and reads x and the packed words as vectors).
    pub fn coop(self) -> bool {
        matches!(self, Gemm::M0e4Coop | Gemm::M0e4CoopSmall)
    }

    /// Whether the weight binds as M0E4 (packed, scales, biases) rather than one dense part.
    pub fn m0e4(self) -> bool {
        self != Gemm::Dense
    }
}

/// Where the RMSNorm before a projection runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Norm {
    /// In its own op (or the input is no norm's output).
    Separate,
    /// In the decode GEMV, which reads the residual and the norm weight `weight`; the norm op
    /// runs for prefill only.
    Fused { weight: String },
}

impl Norm {
    /// When the norm op before the projection runs.
    pub fn op_when(&self) -> When {
        match self {
            Norm::Separate => When::Always,
            Norm::Fused { .. } => When::Prefill,
        }
    }
}

/// The rows of a projection in one chunk of its weight tensor: one GEMV and one GEMM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRows {
    /// The chunk's index in the tensor.
    pub chunk: usize,
    /// The rows (of the tensor) that the ops compute.
    pub rows: Range<usize>,
    /// The first of them within the chunk.
    pub w_row0: usize,
    /// The first of them within the projection (its output column and bias entry).
    pub out_col0: usize,
    /// Row blocks per workgroup of the GEMV (more than 1 only for a fused-norm GEMV).
    pub blocks: usize,
}

/// What a projection's ops do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub gemv: Gemv,
    pub gemm: Gemm,
    /// Steps of 2 to `COOP_SHORT_PREFILL` tokens run `gemm_m0e4_coop_few` (with the coop GEMM,
    /// where each chunk's rows fit its grid of 16-row workgroups), not the GEMVs.
    pub coop_short: bool,
    pub norm: Norm,
    /// Input width.
    pub k: usize,
    /// The M0E4 group size (8 in the parameters of dense weights, which do not read it).
    pub group: usize,
    /// One entry per chunk of the tensor that holds rows of the projection.
    pub chunks: Vec<ChunkRows>,
    /// The bias tensor and its entry of the projection's first row.
    pub bias: Option<(String, usize)>,
    /// Add into the output (the residual) instead of overwriting it.
    pub accumulate: bool,
}

impl Decision {
    /// The steps in which the projection reads its input in f16, written so by the op before
    /// it ([`When::split_f16`]): those on the 16 × 16 tiles (`gemm_m0e4_coop_few`) and on the
    /// 128 × 128 tiles; the 128 × 64 tiles read f32. Measured on an H200 with 8 f16 columns per
    /// 16-byte load (docs/PERF.md, "f16 input on the 16 × 16 tiles"): f16 input made the
    /// 128 × 128 tiles 19.6% faster at 512 tokens (and 11.5% before the 16-byte loads), the
    /// 16 × 16 tiles' steps 9-19% faster at 9-40 tokens, and the 128 × 64 tiles' 12% slower at
    /// 128 tokens and 5% at 512 (the 1.17B's 2048-row projections).
    pub fn f16_input_steps(&self) -> Option<When> {
        match (self.gemm, self.coop_short) {
            (Gemm::M0e4Coop, true) => Some(When::PrefillCoopShortOrWide),
            (Gemm::M0e4CoopSmall, true) => Some(When::PrefillCoopShort),
            _ => None,
        }
    }
}

/// The tensor `name` of the model.
pub fn layout<'a>(layouts: &Layouts<'a>, name: &str) -> Result<&'a TensorLayout> {
    layouts
        .get(name)
        .copied()
        .ok_or_else(|| GpuError::Model(format!("the deployable model has no tensor `{name}`")))
}

/// What `proj`'s ops do at `site`.
pub fn decide(proj: &Proj, site: Site, layouts: &Layouts, limits: Limits) -> Result<Decision> {
    let w = layout(layouts, &proj.tensor)?;
    let (gemv, norm) = decode(proj, site, w, layouts, limits);
    let chunks = chunk_rows(proj, w, &gemv);
    let k = w.rows_cols().1;
    let gemm = match w.storage {
        Storage::M0E4 if limits.coop_gemm && k.is_multiple_of(COOP_K as usize) => {
            let uniform = w
                .group
                .is_some_and(|g| g.is_multiple_of(COOP_LARGE_GROUP_UNIT));
            match proj.rows.len() >= COOP_LARGE_MIN_ROWS && uniform {
                true => Gemm::M0e4Coop,
                false => Gemm::M0e4CoopSmall,
            }
        }
        Storage::M0E4 => Gemm::M0e4,
        _ => Gemm::Dense,
    };
    // A chunk of more than MAX_GRID · 16 rows keeps the GEMVs (their grids fold into two
    // dimensions).
    let few_rows = COOP_FEW_ROWS as usize;
    let coop_short = gemm.coop()
        && (chunks.iter()).all(|ch| ch.rows.len().div_ceil(few_rows) as u64 <= MAX_GRID);
    Ok(Decision {
        gemm,
        coop_short,
        k,
        group: w.group.unwrap_or(8),
        chunks,
        bias: (proj.bias.as_ref()).map(|(t, rows)| (t.clone(), rows.start)),
        accumulate: matches!(site, Site::Plain { accumulate: true }),
        gemv,
        norm,
    })
}

/// The decode op of `proj` (weights `w`) at `site` and where the norm before it runs.
fn decode(
    proj: &Proj,
    site: Site,
    w: &TensorLayout,
    layouts: &Layouts,
    limits: Limits,
) -> (Gemv, Norm) {
    let fused = |norm: &str| Norm::Fused {
        weight: norm.to_owned(),
    };
    let fusable = |p: &Proj| fused_gemv(layouts.get(p.tensor.as_str()).copied(), false).is_some();
    // Projections reading one norm share its input width, so the fusable ones agree on the kind.
    let normed = |mlp: bool| match fused_gemv(Some(w), mlp) {
        Some(FusedGemv::Narrow) => Gemv::NarrowNorm,
        _ => Gemv::WideNorm,
    };
    match site {
        Site::Normed { group, norm } if group.iter().all(|p| fusable(p)) => {
            (normed(false), fused(norm))
        }
        Site::Gate { up, norm } if fusable(proj) && fusable(up) => {
            match glu(proj, up, layouts, limits) {
                Some(g) => (g, fused(norm)),
                None => (normed(true), fused(norm)),
            }
        }
        Site::Up { gate, norm } if fusable(gate) && fusable(proj) => {
            match glu(gate, proj, layouts, limits) {
                Some(_) => (Gemv::Covered, fused(norm)),
                None => (normed(true), fused(norm)),
            }
        }
        _ if w.storage != Storage::M0E4 => (Gemv::Dense, Norm::Separate),
        _ => (Gemv::Narrow, Norm::Separate),
    }
}

/// Input widths from which the MLP's norm-fused GEMVs (the GLU GEMV, or gate and up apart) take
/// `gemv_m0e4`'s structure again above [`MLP_WIDE_K`]: each of its GEMV_WG threads then reads at
/// least two words of every row. Measured on an H200 (docs/PERF.md, "Decode GEMVs in
/// gemv_m0e4's structure"): at k = 4096 the narrow norm and GLU GEMVs took 17-18% off those ops.
pub const NARROW_NORM_MIN_K: usize = 2 * GEMV_WG as usize * M0E4_WORD;

/// Input widths at which the MLP's norm-fused GEMVs run the wide kernels (`gemv_m0e4_glu`,
/// `gemv_m0e4_wide`). Measured on an H200 (docs/PERF.md, "The norm-fused GEMVs below 4096
/// columns"): at k = 2048 the narrow GLU GEMV made decode 2.3% slower, at k = 1536 17% faster;
/// q, k and v (one GEMV) were faster narrow at both (2% and 4%), so they take it at every width.
pub const MLP_WIDE_K: Range<usize> = 2048..NARROW_NORM_MIN_K;

/// Codes per packed word.
const M0E4_WORD: usize = 8;

/// Which GEMV can apply the RMSNorm before weight `w` itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FusedGemv {
    /// `gemv_m0e4_norm` (and `gemv_m0e4_glu_narrow`): M0E4 rows of whole words and groups of whole
    /// words; the norm is applied on the fly.
    Narrow,
    /// `gemv_m0e4_wide` (and `gemv_m0e4_glu`): rows of whole GEMV_WIDE_COLS-column groups, at
    /// most NORM_MAX_K columns (the normalized row is staged in shared memory).
    Wide,
}

/// The GEMV that applies the norm before weight `w` (`mlp`: one of the MLP's projections).
fn fused_gemv(w: Option<&TensorLayout>, mlp: bool) -> Option<FusedGemv> {
    let w = w?;
    let k = w.rows_cols().1;
    let narrow = w.storage == Storage::M0E4
        && k.is_multiple_of(M0E4_WORD)
        && w.group.is_some_and(|g| g.is_multiple_of(M0E4_WORD));
    let wide = wide_ok(w) && k <= NORM_MAX_K;
    match (narrow, wide) {
        (_, true) if mlp && MLP_WIDE_K.contains(&k) => Some(FusedGemv::Wide),
        (true, _) => Some(FusedGemv::Narrow),
        (false, true) => Some(FusedGemv::Wide),
        (false, false) => None,
    }
}

/// Whether `w` can take the wide GEMV (with the fused norm, and the GLU GEMV): M0E4 with rows of
/// whole GEMV_WIDE_COLS-column groups.
fn wide_ok(w: &TensorLayout) -> bool {
    let (_, k) = w.rows_cols();
    let cols = GEMV_WIDE_COLS as usize;
    w.storage == Storage::M0E4
        && k.is_multiple_of(cols)
        && w.group.is_some_and(|g| g.is_multiple_of(cols))
}

/// The fused GLU GEMV of `gate` and `up` (both norm-fusable, so of one kind), where the device binds enough
/// storage buffers and both are single-chunk M0E4 of the same group size with the gate's rows
/// from row 0 of its tensor.
fn glu(gate: &Proj, up: &Proj, layouts: &Layouts, limits: Limits) -> Option<Gemv> {
    let (g, u) = (
        layouts.get(gate.tensor.as_str())?,
        layouts.get(up.tensor.as_str())?,
    );
    let fits = limits.max_storage_buffers >= GEMV_GLU_STORAGE_BUFFERS
        && g.chunks.len() == 1
        && u.chunks.len() == 1
        && g.group == u.group
        && gate.rows.start == 0;
    let narrow = fused_gemv(Some(g), true) == Some(FusedGemv::Narrow);
    fits.then(|| Gemv::Glu {
        up: up.tensor.clone(),
        up_row0: up.rows.start,
        blocks: match narrow {
            true => 1,
            false => gemv_blocks(gate.out(), GEMV_GLU_OUTPUTS as usize),
        },
        narrow,
    })
}

/// Row blocks per workgroup for a fused-norm GEMV over `n` outputs in blocks of `per_block`: as
/// many as keep at least 256 workgroups, at most 4.
fn gemv_blocks(n: usize, per_block: usize) -> usize {
    (n / (per_block * 256)).clamp(1, 4)
}

/// The chunks of `w` that hold rows of `proj`.
fn chunk_rows(proj: &Proj, w: &TensorLayout, gemv: &Gemv) -> Vec<ChunkRows> {
    let rows = &proj.rows;
    let chunks = w.chunks.iter().enumerate();
    chunks
        .filter_map(|(chunk, ch)| {
            let (a, b) = (ch.rows.0.max(rows.start), ch.rows.1.min(rows.end));
            (a < b).then(|| ChunkRows {
                chunk,
                rows: a..b,
                w_row0: a - ch.rows.0,
                out_col0: a - rows.start,
                // Share the staged row across blocks while keeping ≥ 256 workgroups.
                blocks: match gemv {
                    Gemv::WideNorm => gemv_blocks(b - a, GEMV_WIDE_ROWS as usize),
                    _ => 1,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tlite_model::arch::Role;
    use tlite_model::deploy::Chunk;

    use super::*;

    /// A `[rows, cols]` tensor in chunks ending at `ends`.
    fn tensor(
        name: &str,
        (rows, cols): (usize, usize),
        storage: Storage,
        group: usize,
        ends: &[usize],
    ) -> TensorLayout {
        let starts = std::iter::once(0).chain(ends.iter().copied());
        TensorLayout {
            name: name.into(),
            shape: vec![rows, cols],
            role: Role::Linear,
            storage,
            group: (storage == Storage::M0E4).then_some(group),
            chunks: (starts.zip(ends))
                .map(|(a, &b)| Chunk {
                    rows: (a, b),
                    parts: vec![],
                })
                .collect(),
            sha256: String::new(),
        }
    }

    /// A single-chunk 64 × 64 tensor.
    fn square(name: &str, storage: Storage, group: usize) -> TensorLayout {
        tensor(name, (64, 64), storage, group, &[64])
    }

    fn index(ts: &[TensorLayout]) -> Layouts<'_> {
        ts.iter().map(|t| (t.name.as_str(), t)).collect()
    }

    fn proj(tensor: &str, rows: Range<usize>, cols: usize) -> Proj {
        Proj {
            tensor: tensor.into(),
            rel: "p",
            rows,
            cols,
            bias: None,
        }
    }

    const WIDE: Limits = super::TEST_LIMITS;

    #[test]
    fn one_pass_decode_follows_the_workgroup_limits() {
        let bytes = ATTENTION_DECODE_BYTES;
        assert_eq!(OnePass::of(1024, 1024, bytes), OnePass::Both);
        assert_eq!(OnePass::of(1024, 1024, 48 << 10), OnePass::Both);
        // Too little shared memory for the module's arrays: neither entry.
        assert_eq!(OnePass::of(1024, 1024, bytes - 1), OnePass::None);
        // 256 to 1023 threads (on either limit): the 256-thread entry only.
        assert_eq!(OnePass::of(512, 1024, bytes), OnePass::Narrow);
        assert_eq!(OnePass::of(1024, 256, bytes), OnePass::Narrow);
        // WebGPU's defaults (256 threads, 16 KiB): neither.
        assert_eq!(OnePass::of(256, 256, 16 << 10), OnePass::None);
        assert_eq!(OnePass::of(128, 128, bytes), OnePass::None);
    }

    #[test]
    fn prefill_runs_on_cooperative_matrices_where_the_device_and_k_allow() {
        let ts = [
            square("g32", Storage::M0E4, 32),
            tensor("k40", (64, 40), Storage::M0E4, 8, &[64]),
            square("f16", Storage::F16, 0),
        ];
        let layouts = index(&ts);
        let site = Site::Plain { accumulate: false };
        let coop = Limits {
            coop_gemm: true,
            ..WIDE
        };
        let d = |t: &str, cols, l| decide(&proj(t, 0..64, cols), site, &layouts, l).unwrap();
        assert_eq!(d("g32", 64, coop).gemm, Gemm::M0e4CoopSmall);
        assert_eq!(d("g32", 64, WIDE).gemm, Gemm::M0e4);
        // k = 40 is no multiple of COOP_K: the f32 GEMM.
        assert_eq!(d("k40", 40, coop).gemm, Gemm::M0e4);
        assert_eq!(d("f16", 64, coop).gemm, Gemm::Dense);
        let wide = tensor(
            "wide",
            (COOP_LARGE_MIN_ROWS, 64),
            Storage::M0E4,
            32,
            &[COOP_LARGE_MIN_ROWS],
        );
        let l = index(std::slice::from_ref(&wide));
        let rows = 0..COOP_LARGE_MIN_ROWS;
        let dw = decide(&proj("wide", rows.clone(), 64), site, &l, coop).unwrap();
        assert_eq!(dw.gemm, Gemm::M0e4Coop);
        // Groups of no multiple of COOP_LARGE_GROUP_UNIT columns: the 128 × 64 tiles whatever
        // the rows.
        for g in [8, 16, 40, 48] {
            let odd = tensor(
                "odd",
                (COOP_LARGE_MIN_ROWS, 64),
                Storage::M0E4,
                g,
                &[COOP_LARGE_MIN_ROWS],
            );
            let lo = index(std::slice::from_ref(&odd));
            let d = decide(&proj("odd", rows.clone(), 64), site, &lo, coop).unwrap();
            assert_eq!(d.gemm, Gemm::M0e4CoopSmall, "group {g}");
        }
        // Short steps on the matrix cores where the coop GEMM runs, unless a chunk has more
        // rows than a grid of 16-row workgroups can cover.
        assert!(dw.coop_short && d("g32", 64, coop).coop_short);
        assert!(!d("g32", 64, WIDE).coop_short && !d("f16", 64, coop).coop_short);
        let tall_rows = MAX_GRID as usize * COOP_FEW_ROWS as usize + 1;
        let tall = tensor("tall", (tall_rows, 64), Storage::M0E4, 32, &[tall_rows]);
        let lt = index(std::slice::from_ref(&tall));
        let dt = decide(&proj("tall", 0..tall_rows, 64), site, &lt, coop).unwrap();
        assert_eq!(dt.gemm, Gemm::M0e4Coop);
        assert!(!dt.coop_short);
        for (c, k) in [
            (Gemm::M0e4Coop, Kernel::MatmulCoop),
            (Gemm::M0e4CoopSmall, Kernel::MatmulCoopSmall),
        ] {
            assert!(c.m0e4() && c.coop() && c.kernel() == k && c.entry() == "gemm_m0e4_coop");
        }
        assert!(!Gemm::M0e4.coop());
    }

    #[test]
    fn plain_projections_take_the_gemv_their_weights_allow() {
        let ts = [
            square("g32", Storage::M0E4, 32),
            square("g16", Storage::M0E4, 16),
            square("f16", Storage::F16, 0),
        ];
        let layouts = index(&ts);
        let site = Site::Plain { accumulate: true };
        let d = |t: &str| decide(&proj(t, 0..64, 64), site, &layouts, WIDE).unwrap();
        assert_eq!((d("g32").gemv, d("g32").gemm), (Gemv::Narrow, Gemm::M0e4));
        assert_eq!(d("g16").gemv, Gemv::Narrow);
        assert_eq!((d("f16").gemv, d("f16").gemm), (Gemv::Dense, Gemm::Dense));
        assert!(d("g32").accumulate && d("g32").norm == Norm::Separate);
        assert!(decide(&proj("none", 0..1, 64), site, &layouts, WIDE).is_err());
    }

    #[test]
    fn rows_split_at_chunk_boundaries() {
        let t = tensor("w", (96, 64), Storage::M0E4, 32, &[40, 96]);
        let layouts = index(std::slice::from_ref(&t));
        let d = decide(
            &proj("w", 32..64, 64),
            Site::Plain { accumulate: false },
            &layouts,
            WIDE,
        );
        let rows: Vec<_> = (d.unwrap().chunks.iter())
            .map(|c| (c.chunk, c.rows.clone(), c.w_row0, c.out_col0))
            .collect();
        assert_eq!(rows, [(0, 32..40, 32, 0), (1, 40..64, 0, 8)]);
    }

    #[test]
    fn a_norm_fuses_only_where_every_reader_can_take_it() {
        let ts = [
            square("q", Storage::M0E4, 32),
            square("k", Storage::M0E4, 32),
            // kept dense: no GEMV of it applies a norm
            square("v", Storage::F16, 0),
        ];
        let layouts = index(&ts);
        let (q, k, v) = (
            proj("q", 0..64, 64),
            proj("k", 0..64, 64),
            proj("v", 0..64, 64),
        );
        let d = |group: &[&Proj]| {
            let site = Site::Normed { group, norm: "n" };
            decide(&q, site, &layouts, WIDE).unwrap()
        };
        // q, k and v take gemv_m0e4's structure at every width (the wide GEMV's rows of whole
        // 32-column groups are whole words too).
        let fused = d(&[&q, &k]);
        assert_eq!(fused.gemv, Gemv::NarrowNorm);
        assert_eq!(fused.norm.op_when(), When::Prefill);
        let separate = d(&[&q, &k, &v]);
        assert_eq!(
            (separate.gemv, separate.norm),
            (Gemv::Narrow, Norm::Separate)
        );
        // The norm fuses into gemv_m0e4 with any group of whole words, also past NORM_MAX_K; a
        // width of no whole words keeps it separate.
        let kn = NARROW_NORM_MIN_K;
        let ts = [
            tensor("a", (8, kn), Storage::M0E4, 64, &[8]),
            tensor("b", (8, kn), Storage::M0E4, 8, &[8]),
            tensor("c", (8, 2 * kn), Storage::M0E4, 64, &[8]),
            tensor("d", (8, kn + 4), Storage::M0E4, 64, &[8]),
        ];
        let layouts = index(&ts);
        let d = |t: &str, cols: usize| {
            let p = proj(t, 0..8, cols);
            let site = Site::Normed {
                group: &[&p],
                norm: "n",
            };
            decide(&p, site, &layouts, WIDE).unwrap().gemv
        };
        assert_eq!(d("a", kn), Gemv::NarrowNorm);
        assert_eq!(d("b", kn), Gemv::NarrowNorm);
        assert_eq!(d("c", 2 * kn), Gemv::NarrowNorm);
        assert_eq!(d("d", kn + 4), Gemv::Narrow);
    }

    #[test]
    fn gate_and_up_fuse_into_one_glu_gemv_where_the_device_binds_enough() {
        let t = tensor("gu", (128, 64), Storage::M0E4, 32, &[128]);
        let layouts = index(std::slice::from_ref(&t));
        let (gate, up) = (proj("gu", 0..64, 64), proj("gu", 64..128, 64));
        let both = |limits| {
            let g = decide(&gate, Site::Gate { up: &up, norm: "n" }, &layouts, limits);
            let u = decide(
                &up,
                Site::Up {
                    gate: &gate,
                    norm: "n",
                },
                &layouts,
                limits,
            );
            (g.unwrap().gemv, u.unwrap().gemv)
        };
        // Below MLP_WIDE_K: the GLU GEMV in gemv_m0e4's structure.
        let glu = Gemv::Glu {
            up: "gu".into(),
            up_row0: 64,
            blocks: 1,
            narrow: true,
        };
        assert_eq!(both(WIDE), (glu.clone(), Gemv::Covered));
        assert_eq!(glu.activation_when(), When::Prefill);
        let few = Limits {
            max_storage_buffers: GEMV_GLU_STORAGE_BUFFERS - 1,
            ..WIDE
        };
        assert_eq!(both(few), (Gemv::NarrowNorm, Gemv::NarrowNorm));
        // The gate's GEMV at k input columns (group 64), with and without the GLU's buffers.
        let gate_at = |k: usize| {
            let t = tensor("gu", (128, k), Storage::M0E4, 64, &[128]);
            let layouts = index(std::slice::from_ref(&t));
            let (gate, up) = (proj("gu", 0..64, k), proj("gu", 64..128, k));
            let site = Site::Gate { up: &up, norm: "n" };
            [WIDE, few].map(|l| decide(&gate, site, &layouts, l).unwrap().gemv)
        };
        let glu = |narrow| Gemv::Glu {
            up: "gu".into(),
            up_row0: 64,
            blocks: 1,
            narrow,
        };
        // Inputs of MLP_WIDE_K columns: the wide GLU GEMV (and wide norm-fused GEMVs apart);
        // from NARROW_NORM_MIN_K columns gemv_m0e4's structure again.
        assert_eq!(gate_at(MLP_WIDE_K.start), [glu(false), Gemv::WideNorm]);
        assert_eq!(gate_at(NARROW_NORM_MIN_K), [glu(true), Gemv::NarrowNorm]);
    }
}
