//! The schemes a report puts side by side: M0E4 and the usual 4-bit baselines, behind one trait.
//! Baselines are "fake-quantized" (quantize, then dequantize to f32): their storage layout is
//! not needed to measure their error, only their bits per weight.

use half::f16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::affine::{self, Grid, Method};
use crate::format::{M0E4Grid, nearest_code};
use crate::{QuantError, Result, check_group};

/// A 4-bit weight format with per-group parameters.
pub trait Scheme: Send + Sync {
    /// Short stable name used in tables and JSON.
    fn name(&self) -> String;
    /// Storage cost including the per-group parameters.
    fn bits_per_weight(&self, group: usize) -> f64;
    /// Quantizes and dequantizes one group in place of `out`.
    fn quantize_group(&self, x: &[f32], imp: Option<&[f32]>, out: &mut [f32]);
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
}

impl SchemeKind {
    /// The set every error report shows.
    pub const REPORT: [SchemeKind; 6] = [
        SchemeKind::M0E4(Method::MinMax),
        SchemeKind::M0E4(Method::Search),
        SchemeKind::Int4ZeroPoint,
        SchemeKind::Int4FloatMin(Method::MinMax),
        SchemeKind::Int4FloatMin(Method::Search),
        SchemeKind::Q4_0,
    ];

    /// Parses the names printed by [`Scheme::name`].
    pub fn parse(s: &str) -> Option<SchemeKind> {
        Self::REPORT.into_iter().find(|k| k.name() == s)
    }
}

impl Scheme for SchemeKind {
    fn name(&self) -> String {
        match self {
            SchemeKind::M0E4(m) => format!("m0e4-{m}"),
            SchemeKind::Int4FloatMin(m) => format!("q4_1-{m}"),
            SchemeKind::Int4ZeroPoint => "int4-zp".into(),
            SchemeKind::Q4_0 => "q4_0".into(),
        }
    }

    fn bits_per_weight(&self, group: usize) -> f64 {
        let g = group as f64;
        match self {
            SchemeKind::M0E4(_) | SchemeKind::Int4FloatMin(_) => 4.0 + 32.0 / g,
            SchemeKind::Int4ZeroPoint => 4.0 + 20.0 / g,
            SchemeKind::Q4_0 => 4.0 + 16.0 / g,
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
        let v = x
            .iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        Symmetric {
            d: f16::from_f32(v / -8.0).to_f32(),
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

/// Quantizes and dequantizes a `[rows, cols]` matrix group by group along `cols`, in parallel
/// over rows. The last group of a row may be shorter when `cols` is not a multiple of `group`.
pub fn fake_quantize(
    scheme: &dyn Scheme,
    data: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    importance: Option<&[f32]>,
) -> Result<Vec<f32>> {
    check_matrix(data, rows, cols, group, importance)?;
    let mut out = vec![0.0f32; data.len()];
    out.par_chunks_mut(cols.max(1))
        .zip(data.par_chunks(cols.max(1)))
        .for_each(|(o, x)| {
            for (gi, (og, xg)) in o.chunks_mut(group).zip(x.chunks(group)).enumerate() {
                let imp = importance.map(|w| &w[gi * group..gi * group + xg.len()]);
                scheme.quantize_group(xg, imp, og);
            }
        });
    Ok(out)
}
