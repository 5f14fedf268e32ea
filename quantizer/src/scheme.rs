//! The schemes a report puts side by side: M0E4 and the usual 4-bit baselines, behind one trait.
//! Baselines are "fake-quantized" (quantize, then dequantize to f32): their storage layout is
//! not needed to measure their error, only their bits per weight.
//!
//! M0E4 and the INT4 baselines take the caller's group size. The field's formats (MXFP4, NVFP4,
//! NF4, IQ4_NL, Q4_K) have their own block ([`Scheme::block_size`]) whatever group is asked for,
//! and NVFP4 also a per-tensor scale ([`Scheme::fit_tensor`]); [`fake_quantize`] handles both.

use half::f16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::affine::{self, Grid, Method};
use crate::format::{M0E4Grid, nearest_code};
use crate::kquant::{self, SuperBlock};
use crate::levels::{Levels, signed_absmax};
use crate::{QuantError, Result, check_group};
use crate::{fp4, lut};

/// A 4-bit weight format with per-group parameters.
pub trait Scheme: Send + Sync {
    /// Short stable name used in tables and JSON.
    fn name(&self) -> String;
    /// Storage cost including the per-group parameters.
    fn bits_per_weight(&self, group: usize) -> f64;
    /// Quantizes and dequantizes one group in place of `out`.
    fn quantize_group(&self, x: &[f32], imp: Option<&[f32]>, out: &mut [f32]);
    /// Fits the grid of one group (one native block, for a format with its own) exactly as
    /// [`Self::quantize_block`] does under `tensor`, and returns it so that values can be
    /// rounded onto it one at a time (GPTQ changes the remaining values of a group after each
    /// one is rounded). `None`: the scheme cannot do that (the default). Rounding each element
    /// `x[i]` onto the returned grid at position `i` gives `quantize_block`'s output.
    fn fit_grid(
        &self,
        x: &[f32],
        imp: Option<&[f32]>,
        tensor: &TensorParams,
    ) -> Option<Box<dyn GroupGrid>> {
        let _ = (x, imp, tensor);
        None
    }
    /// Whether [`Self::fit_grid`] gives grids (what GPTQ needs).
    fn has_grid(&self) -> bool {
        self.fit_grid(&[0.0, 1.0], None, &TensorParams::default())
            .is_some()
    }
    /// The weights per block when the caller asks for `group`: `group` itself for schemes
    /// whose group size is free (the default), the format's own block otherwise.
    fn block_size(&self, group: usize) -> usize {
        group
    }
    /// Parameters fitted over a whole matrix before its blocks (NVFP4's tensor scale); none by
    /// default.
    fn fit_tensor(&self, data: &[f32]) -> TensorParams {
        let _ = data;
        TensorParams::default()
    }
    /// Quantizes and dequantizes one block of [`Self::block_size`] weights (or fewer, at the
    /// end of a row) under the matrix's [`TensorParams`]. By default the tensor's parameters
    /// are unused and this is [`Self::quantize_group`].
    fn quantize_block(
        &self,
        x: &[f32],
        imp: Option<&[f32]>,
        tensor: &TensorParams,
        out: &mut [f32],
    ) {
        let _ = tensor;
        self.quantize_group(x, imp, out)
    }
}

/// What a scheme fits over a whole matrix before its blocks ([`Scheme::fit_tensor`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TensorParams {
    /// NVFP4's f32 per-tensor scale, `amax / (448 · 6)`; `None` for schemes without one.
    pub global_scale: Option<f32>,
}

/// A group's fitted grid, held fixed while values are rounded onto it.
pub trait GroupGrid: Send + Sync {
    /// The grid value nearest to `w` at position `i` of the group, as the format decodes it
    /// (only a super-block's grid depends on the position: its sub-block's scale and min).
    fn round(&self, i: usize, w: f32) -> f32;
}

/// A [`Grid`] as a [`GroupGrid`]: `decode(encode(w))`.
struct Fitted<G>(G);

impl<G: Grid + Send + Sync> GroupGrid for Fitted<G> {
    fn round(&self, _: usize, w: f32) -> f32 {
        self.0.decode(self.0.encode(w))
    }
}

/// A field format's fitted block: its 16 levels (MXFP4, NVFP4, NF4, IQ4_NL), or a Q4_K
/// super-block's levels per sub-block. Fake quantization rounds onto it in place; GPTQ gets it
/// boxed.
// A temporary on the stack per block: boxing the large variant is the allocation this avoids.
#[allow(clippy::large_enum_variant)]
enum FieldGrid {
    Block(Levels),
    Super([Levels; kquant::SUBS]),
}

impl GroupGrid for FieldGrid {
    fn round(&self, i: usize, w: f32) -> f32 {
        match self {
            FieldGrid::Block(l) => l.nearest(w),
            FieldGrid::Super(subs) => subs[i / kquant::SUB_BLOCK].nearest(w),
        }
    }
}

fn boxed<G: Grid + Send + Sync + 'static>(g: G) -> Option<Box<dyn GroupGrid>> {
    Some(Box::new(Fitted(g)))
}

/// The schemes tlite knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemeKind {
    /// M0E4: `fma(1 + q/16, S, B)` with f16 `S`, `B` per group.
    M0E4(Method),
    /// INT4 with a float minimum (Q4_1 style): `d q + m`, f16 `d`, `m` per group.
    Int4FloatMin(Method),
    /// INT4 with an integer zero point (GPTQ/AWQ style): `s (q - z)`, f16 `s`, 4-bit `z`.
    Int4ZeroPoint,
    /// Symmetric (Q4_0 style): `d (q - 8)`, f16 `d` from the largest magnitude.
    Q4_0,
    /// MXFP4 (OCP MX): E2M1 elements, an E8M0 power-of-two scale per 32 (4.25 bpw).
    /// [`Method::MinMax`] is the OCP rule `2^(floor(log2 amax) - 2)`; [`Method::Search`] also
    /// tries the neighbouring exponents and keeps the least (weighted) error.
    Mxfp4(Method),
    /// NVFP4: E2M1 elements, an E4M3 scale per 16, an f32 scale per tensor (4.5 bpw).
    /// `MinMax`: block `amax / 6` rounded to E4M3; `Search`: two E4M3 codes either side too.
    Nvfp4(Method),
    /// NF4 (QLoRA): the normal-quantile table, an f32 absmax per 64 (4.5 bpw). `MinMax`: the
    /// absmax (bitsandbytes); `Search`: a weighted scale search with least-squares refits.
    Nf4(Method),
    /// IQ4_NL-style: llama.cpp's non-linear table, an f16 scale per 32 (4.5 bpw), fitted by
    /// llama.cpp's weighted scale search.
    Iq4Nl,
    /// Q4_K-style super-block: 256 weights, 8 sub-blocks of 32 with 6-bit scales and mins
    /// under f16 `d`, `dmin` (4.5 bpw), fitted as llama.cpp's `make_qkx2_quants`.
    Q4K,
}

impl SchemeKind {
    /// M0E4 and the INT4 baselines, whose group size is the caller's.
    pub const REPORT: [SchemeKind; 6] = [
        SchemeKind::M0E4(Method::MinMax),
        SchemeKind::M0E4(Method::Search),
        SchemeKind::Int4ZeroPoint,
        SchemeKind::Int4FloatMin(Method::MinMax),
        SchemeKind::Int4FloatMin(Method::Search),
        SchemeKind::Q4_0,
    ];

    /// The field's 4-bit formats, each at its own block.
    pub const FIELD: [SchemeKind; 8] = [
        SchemeKind::Mxfp4(Method::MinMax),
        SchemeKind::Mxfp4(Method::Search),
        SchemeKind::Nvfp4(Method::MinMax),
        SchemeKind::Nvfp4(Method::Search),
        SchemeKind::Nf4(Method::MinMax),
        SchemeKind::Nf4(Method::Search),
        SchemeKind::Iq4Nl,
        SchemeKind::Q4K,
    ];

    /// Every scheme: [`Self::REPORT`] then [`Self::FIELD`].
    pub const ALL: [SchemeKind; 14] = {
        let mut all = [SchemeKind::Q4_0; 14];
        let mut i = 0;
        while i < 14 {
            all[i] = if i < 6 {
                Self::REPORT[i]
            } else {
                Self::FIELD[i - 6]
            };
            i += 1;
        }
        all
    };

    /// Parses the names printed by [`Scheme::name`].
    pub fn parse(s: &str) -> Option<SchemeKind> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// A format with its own block: `(weights per block, parameter bits per block)`; `None`
    /// when the group size is the caller's.
    pub fn native_format(&self) -> Option<(usize, usize)> {
        match self {
            SchemeKind::M0E4(_)
            | SchemeKind::Int4FloatMin(_)
            | SchemeKind::Int4ZeroPoint
            | SchemeKind::Q4_0 => None,
            SchemeKind::Mxfp4(_) => Some((fp4::MXFP4_BLOCK, 8)),
            SchemeKind::Nvfp4(_) => Some((fp4::NVFP4_BLOCK, 8)),
            SchemeKind::Nf4(_) => Some((lut::NF4_BLOCK, 32)),
            SchemeKind::Iq4Nl => Some((lut::IQ4_NL_BLOCK, 16)),
            SchemeKind::Q4K => Some((kquant::QK_K, kquant::PARAM_BITS)),
        }
    }

    /// The grid of one native block of a field format (`x` at most one block long); `None`
    /// for the schemes whose group size is the caller's.
    fn field_grid(
        &self,
        x: &[f32],
        imp: Option<&[f32]>,
        tensor: &TensorParams,
    ) -> Option<FieldGrid> {
        Some(FieldGrid::Block(match *self {
            SchemeKind::Mxfp4(m) => fp4::mxfp4_fit(x, imp, m).1,
            SchemeKind::Nvfp4(m) => {
                let global = tensor
                    .global_scale
                    .unwrap_or_else(|| fp4::nvfp4_tensor_scale(x));
                fp4::nvfp4_fit(x, imp, m, global).1
            }
            SchemeKind::Nf4(m) => lut::table_levels(&lut::NF4, lut::nf4_fit(x, imp, m)),
            SchemeKind::Iq4Nl => lut::table_levels(&lut::IQ4_NL, lut::iq4_nl_fit(x, imp)),
            SchemeKind::Q4K => {
                // sub-blocks past a short super-block's end have zero scales and are never read
                let sb = SuperBlock::fit(x, imp);
                return Some(FieldGrid::Super(std::array::from_fn(|j| sb.sub_levels(j))));
            }
            SchemeKind::M0E4(_)
            | SchemeKind::Int4FloatMin(_)
            | SchemeKind::Int4ZeroPoint
            | SchemeKind::Q4_0 => return None,
        }))
    }

    /// One native block of a field format (`x` at most one block long).
    fn field_block(&self, x: &[f32], imp: Option<&[f32]>, tensor: &TensorParams, out: &mut [f32]) {
        match self.field_grid(x, imp, tensor) {
            Some(grid) => {
                for (i, (o, &w)) in out.iter_mut().zip(x).enumerate() {
                    *o = grid.round(i, w);
                }
            }
            None => self.quantize_group(x, imp, out),
        }
    }
}

/// `base` for [`Method::MinMax`] (the format's own rule), `base-search` for [`Method::Search`].
fn with_method(base: &str, m: Method) -> String {
    match m {
        Method::MinMax => base.into(),
        Method::Search => format!("{base}-search"),
    }
}

impl Scheme for SchemeKind {
    fn name(&self) -> String {
        match self {
            SchemeKind::M0E4(m) => format!("m0e4-{m}"),
            SchemeKind::Int4FloatMin(m) => format!("q4_1-{m}"),
            SchemeKind::Int4ZeroPoint => "int4-zp".into(),
            SchemeKind::Q4_0 => "q4_0".into(),
            SchemeKind::Mxfp4(m) => with_method("mxfp4", *m),
            SchemeKind::Nvfp4(m) => with_method("nvfp4", *m),
            SchemeKind::Nf4(m) => with_method("nf4", *m),
            SchemeKind::Iq4Nl => "iq4_nl".into(),
            SchemeKind::Q4K => "q4_k".into(),
        }
    }

    fn bits_per_weight(&self, group: usize) -> f64 {
        let g = group as f64;
        match self {
            SchemeKind::M0E4(_) | SchemeKind::Int4FloatMin(_) => 4.0 + 32.0 / g,
            SchemeKind::Int4ZeroPoint => 4.0 + 20.0 / g,
            SchemeKind::Q4_0 => 4.0 + 16.0 / g,
            field => {
                let (block, bits) = field.native_format().expect("a field format");
                4.0 + bits as f64 / block as f64
            }
        }
    }

    fn quantize_group(&self, x: &[f32], imp: Option<&[f32]>, out: &mut [f32]) {
        let mut codes = vec![0u8; x.len()];
        match *self {
            SchemeKind::M0E4(m) => {
                let g: M0E4Grid = affine::fit(x, imp, m, &mut codes);
                decode_into(g, &codes, out);
            }
            SchemeKind::Int4FloatMin(m) => {
                let g: F16Affine = affine::fit(x, imp, m, &mut codes);
                decode_into(g, &codes, out);
            }
            SchemeKind::Int4ZeroPoint => {
                let g = ZeroPoint::fit(x);
                for (c, &v) in codes.iter_mut().zip(x) {
                    *c = g.encode(v);
                }
                decode_into(g, &codes, out);
            }
            SchemeKind::Q4_0 => {
                let g = Symmetric::fit(x);
                for (c, &v) in codes.iter_mut().zip(x) {
                    *c = g.encode(v);
                }
                decode_into(g, &codes, out);
            }
            // A group of a field format is a matrix of one row: its own blocks, its own
            // tensor scale.
            _ => self.quantize_block(x, imp, &TensorParams::default(), out),
        }
    }

    fn block_size(&self, group: usize) -> usize {
        self.native_format().map_or(group, |(block, _)| block)
    }

    fn fit_tensor(&self, data: &[f32]) -> TensorParams {
        match self {
            SchemeKind::Nvfp4(_) => TensorParams {
                global_scale: Some(fp4::nvfp4_tensor_scale(data)),
            },
            _ => TensorParams::default(),
        }
    }

    fn quantize_block(
        &self,
        x: &[f32],
        imp: Option<&[f32]>,
        tensor: &TensorParams,
        out: &mut [f32],
    ) {
        let Some((block, _)) = self.native_format() else {
            return self.quantize_group(x, imp, out);
        };
        let tensor = match tensor.global_scale {
            Some(_) => *tensor,
            None => self.fit_tensor(x),
        };
        for (i, (xb, ob)) in x.chunks(block).zip(out.chunks_mut(block)).enumerate() {
            let ib = imp.map(|w| &w[i * block..i * block + xb.len()]);
            self.field_block(xb, ib, &tensor, ob);
        }
    }

    fn fit_grid(
        &self,
        x: &[f32],
        imp: Option<&[f32]>,
        tensor: &TensorParams,
    ) -> Option<Box<dyn GroupGrid>> {
        let mut codes = vec![0u8; x.len()];
        match *self {
            SchemeKind::M0E4(m) => boxed(affine::fit::<M0E4Grid>(x, imp, m, &mut codes)),
            SchemeKind::Int4FloatMin(m) => boxed(affine::fit::<F16Affine>(x, imp, m, &mut codes)),
            SchemeKind::Int4ZeroPoint => boxed(ZeroPoint::fit(x)),
            SchemeKind::Q4_0 => boxed(Symmetric::fit(x)),
            _ => self
                .field_grid(x, imp, tensor)
                .map(|g| Box::new(g) as Box<dyn GroupGrid>),
        }
    }
}

fn decode_into<G: Grid>(g: G, codes: &[u8], out: &mut [f32]) {
    for (o, &q) in out.iter_mut().zip(codes) {
        *o = g.decode(q);
    }
}

/// Q4_1-style grid: f16 step `d` and f16 minimum `m`, `w = d q + m`.
#[derive(Clone, Copy, Debug)]
pub struct F16Affine {
    d: f32,
    m: f32,
}

impl Grid for F16Affine {
    fn from_affine(min: f32, step: f32) -> Self {
        F16Affine {
            d: f16::from_f32(step).to_f32(),
            m: f16::from_f32(min).to_f32(),
        }
    }
    fn decode(self, q: u8) -> f32 {
        // 4-bit × 11-bit product: exact, so this equals an FMA
        f32::from(q) * self.d + self.m
    }
    fn encode(self, w: f32) -> u8 {
        if self.d.is_nan() || self.d <= 0.0 {
            return 0;
        }
        nearest_code(w, (w - self.m) / self.d, |q| self.decode(q))
    }
}

/// AWQ-style asymmetric INT4: `s (q - z)`, f16 `s = max(range, 1e-5) / 15`,
/// `z = clamp(-round(min / s), 0, 15)`.
#[derive(Clone, Copy, Debug)]
struct ZeroPoint {
    s: f32,
    z: u8,
}

impl ZeroPoint {
    fn fit(x: &[f32]) -> Self {
        let (min, max) = affine::min_max(x);
        let s = f16::from_f32((max - min).max(1e-5) / 15.0).to_f32();
        let z = (-(min / s).round()).clamp(0.0, 15.0) as u8;
        ZeroPoint { s, z }
    }
}

impl Grid for ZeroPoint {
    fn from_affine(_: f32, _: f32) -> Self {
        unreachable!("zero-point grids are fitted by ZeroPoint::fit")
    }
    fn decode(self, q: u8) -> f32 {
        (f32::from(q) - f32::from(self.z)) * self.s
    }
    fn encode(self, w: f32) -> u8 {
        nearest_code(w, w / self.s + f32::from(self.z), |q| self.decode(q))
    }
}

/// llama.cpp Q4_0-style symmetric grid: `d = v / -8` for the element `v` of largest magnitude,
/// `w = d (q - 8)`.
#[derive(Clone, Copy, Debug)]
struct Symmetric {
    d: f32,
}

impl Symmetric {
    fn fit(x: &[f32]) -> Self {
        Symmetric {
            d: f16::from_f32(signed_absmax(x).0 / -8.0).to_f32(),
        }
    }
}

impl Grid for Symmetric {
    fn from_affine(_: f32, _: f32) -> Self {
        unreachable!("symmetric grids are fitted by Symmetric::fit")
    }
    fn decode(self, q: u8) -> f32 {
        (f32::from(q) - 8.0) * self.d
    }
    fn encode(self, w: f32) -> u8 {
        if self.d == 0.0 {
            return 8;
        }
        nearest_code(w, w / self.d + 8.0, |q| self.decode(q))
    }
}

/// Validates a `[rows, cols]` matrix, its optional per-column importance and the group size,
/// and rejects non-finite weights with their position.
pub fn check_matrix(
    data: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    importance: Option<&[f32]>,
) -> Result<()> {
    check_group(group)?;
    if data.len() != rows * cols {
        return Err(QuantError::Shape {
            what: "weights (rows × cols)",
            expected: rows * cols,
            found: data.len(),
        });
    }
    if let Some(imp) = importance
        && imp.len() != cols
    {
        return Err(QuantError::Shape {
            what: "importance (one per input column)",
            expected: cols,
            found: imp.len(),
        });
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(QuantError::NonFinite {
            row: i / cols,
            col: i % cols,
            value: data[i],
        });
    }
    Ok(())
}

/// Quantizes and dequantizes a `[rows, cols]` matrix block by block along `cols`, in parallel
/// over rows. Blocks are `scheme.block_size(group)` long (`group` unless the format has its
/// own block); the last block of a row may be shorter when `cols` is not a multiple of it.
/// Tensor-level parameters ([`Scheme::fit_tensor`]) are fitted on the whole matrix first.
pub fn fake_quantize(
    scheme: &dyn Scheme,
    data: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    importance: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let block = scheme.block_size(group);
    check_matrix(data, rows, cols, block, importance)?;
    let tensor = scheme.fit_tensor(data);
    let mut out = vec![0.0f32; data.len()];
    out.par_chunks_mut(cols.max(1))
        .zip(data.par_chunks(cols.max(1)))
        .for_each(|(o, x)| {
            for (gi, (og, xg)) in o.chunks_mut(block).zip(x.chunks(block)).enumerate() {
                let imp = importance.map(|w| &w[gi * block..gi * block + xg.len()]);
                scheme.quantize_block(xg, imp, &tensor, og);
            }
        });
    Ok(out)
}

/// Storage bits of a `[rows, cols]` matrix under `scheme` asked for `group`: 4 per weight plus
/// every block's parameters, a row's short last block paying for a whole block's. (NVFP4's one
/// f32 per tensor is not counted.)
pub fn matrix_bits(scheme: &dyn Scheme, rows: usize, cols: usize, group: usize) -> f64 {
    let block = scheme.block_size(group);
    let per_block = (scheme.bits_per_weight(group) - 4.0) * block as f64;
    4.0 * (rows * cols) as f64 + (rows * cols.div_ceil(block.max(1))) as f64 * per_block
}
