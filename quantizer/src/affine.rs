//! Choosing a group's grid. Every 4-bit scheme here with a float offset (M0E4, the Q4_1-style
//! baseline) stores an affine grid `w ≈ a + d q`, differing only in how `(a, d)` is rounded to
//! storage. [`fit`] picks `(a, d)` by min/max or by an error-minimizing search, optionally
//! weighted by the importance of each input channel.

use serde::{Deserialize, Serialize};

/// How a group's scale and offset are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `a = min`, `d = (max - min) / 15`: the reference rounding.
    #[default]
    MinMax,
    /// Search over clipping of both ends, refit `(a, d)` by weighted least squares on the
    /// codes, and keep whichever grid has the smallest (weighted) squared error after the
    /// parameters are rounded to storage.
    Search,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::MinMax => "minmax",
            Method::Search => "search",
        })
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minmax" => Ok(Method::MinMax),
            "search" => Ok(Method::Search),
            _ => Err(format!(
                "unknown quantizer `{s}`: expected minmax or search"
            )),
        }
    }
}

/// A 16-level affine grid as a format stores it.
pub trait Grid: Copy {
    /// Rounds `w = min + q * step` to the stored parameters.
    fn from_affine(min: f32, step: f32) -> Self;
    /// The stored decoder.
    fn decode(self, q: u8) -> f32;
    /// The code whose decoded value is nearest to `w`.
    fn encode(self, w: f32) -> u8;
    /// [`Grid::encode`] of every element.
    fn encode_all(self, x: &[f32], codes: &mut [u8]) {
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = self.encode(v);
        }
    }
}

impl Grid for crate::format::M0E4Grid {
    fn from_affine(min: f32, step: f32) -> Self {
        Self::new(crate::format::GroupParams::from_affine(min, step))
    }
    fn decode(self, q: u8) -> f32 {
        crate::format::M0E4Grid::decode(self, q)
    }
    fn encode(self, w: f32) -> u8 {
        crate::format::M0E4Grid::encode(self, w)
    }
    fn encode_all(self, x: &[f32], codes: &mut [u8]) {
        crate::format::M0E4Grid::encode_all(self, x, codes)
    }
}

/// Clipping fractions of the range tried at each end by [`Method::Search`].
const CLIP: [f32; 3] = [0.0, 0.06, 0.12];

/// Groups up to this size keep their trial codes on the stack.
const STACK_GROUP: usize = 256;

/// Fits a grid to `x`, writing the codes. `imp` weights each element's squared error.
pub fn fit<G: Grid>(x: &[f32], imp: Option<&[f32]>, method: Method, codes: &mut [u8]) -> G {
    debug_assert_eq!(x.len(), codes.len());
    let (min, max) = min_max(x);
    let minmax = G::from_affine(min, (max - min) / 15.0);
    minmax.encode_all(x, codes);
    if method == Method::MinMax || max == min {
        return minmax;
    }
    let mut stack = [0u8; STACK_GROUP];
    let mut heap = Vec::new();
    let trial: &mut [u8] = if x.len() <= STACK_GROUP {
        &mut stack[..x.len()]
    } else {
        heap.resize(x.len(), 0);
        &mut heap
    };
    let mut best = minmax;
    let mut best_err = weighted_error(minmax, x, imp, codes);
    let range = max - min;
    let mut consider = |g: G, trial: &mut [u8], codes: &mut [u8]| {
        g.encode_all(x, trial);
        let e = weighted_error(g, x, imp, trial);
        if e < best_err {
            best_err = e;
            best = g;
            codes.copy_from_slice(trial);
        }
    };
    for lo_clip in CLIP {
        for hi_clip in CLIP {
            let lo = min + lo_clip * range;
            let hi = max - hi_clip * range;
            let step = (hi - lo) / 15.0;
            for (t, &v) in trial.iter_mut().zip(x) {
                *t = crate::format::round_code((v - lo) / step) as u8;
            }
            if let Some((a, d)) = refit(x, imp, trial) {
                consider(G::from_affine(a, d), trial, codes);
            }
        }
    }
    // One more refit on the winning codes, then re-encode with the rounded parameters.
    if let Some((a, d)) = refit(x, imp, codes) {
        consider(G::from_affine(a, d), trial, codes);
    }
    best
}

/// Smallest and largest element.
pub fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// `Σ imp_i (decode(q_i) - x_i)²`, in f64.
pub fn weighted_error<G: Grid>(g: G, x: &[f32], imp: Option<&[f32]>, codes: &[u8]) -> f64 {
    let d = |v: f32, q: u8| f64::from(g.decode(q) - v);
    match imp {
        None => x.iter().zip(codes).map(|(&v, &q)| d(v, q) * d(v, q)).sum(),
        Some(w) => (x.iter().zip(codes).zip(w))
            .map(|((&v, &q), &w)| f64::from(w) * d(v, q) * d(v, q))
            .sum(),
    }
}

/// Weighted least squares `min Σ w (a + d q - x)²` over `(a, d)` for fixed codes.
/// `None` when the codes do not determine a positive step.
fn refit(x: &[f32], imp: Option<&[f32]>, codes: &[u8]) -> Option<(f32, f32)> {
    match imp {
        None => refit_by(x, codes, |_| 1.0),
        Some(w) => refit_by(x, codes, |i| f64::from(w[i])),
    }
}

/// [`refit`] with element `i` weighted by `weight(i)` (monomorphized: no branch per element).
#[inline(always)]
fn refit_by(x: &[f32], codes: &[u8], weight: impl Fn(usize) -> f64) -> Option<(f32, f32)> {
    let (mut sw, mut sl, mut sl2, mut sx, mut sxl) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (i, (&v, &q)) in x.iter().zip(codes).enumerate() {
        let w = weight(i);
        let l = f64::from(q);
        let v = f64::from(v);
        sw += w;
        sl += w * l;
        sl2 += w * l * l;
        sx += w * v;
        sxl += w * v * l;
    }
    let det = sw * sl2 - sl * sl;
    if det.is_nan() || det <= 0.0 {
        return None;
    }
    let d = (sw * sxl - sl * sx) / det;
    let a = (sl2 * sx - sl * sxl) / det;
    (d > 0.0 && d.is_finite() && a.is_finite()).then_some((a as f32, d as f32))
}
