//! A Q4_K-style super-block (llama.cpp `block_q4_K`): 256 weights in 8 sub-blocks of 32, each
//! with a 6-bit scale `sc` and a 6-bit min `m` quantized against the super-block's f16 `d` and
//! `dmin`; `w = d · sc · q - dmin · m`. 256 · 4 + 2 · 16 + 12 · 8 bits = 4.5 bpw.
//!
//! Fitted as llama.cpp's `quantize_row_q4_K_ref`: each sub-block's scale and min by
//! `make_qkx2_quants` (min/max, then 21 inverse scales with a weighted least-squares refit of
//! scale and min, the min kept ≤ 0), then the eight scales and mins to 6 bits against the
//! largest of each, then every weight to its nearest code under the stored parameters. The
//! weights are tlite's importance (or 1), the error the reports measure; llama.cpp uses
//! `mean|x| + |x|` without an imatrix.

use half::f16;

use crate::affine::min_max;
use crate::levels::Levels;

/// Weights per super-block.
pub const QK_K: usize = 256;
/// Weights per sub-block.
pub const SUB_BLOCK: usize = 32;
/// Sub-blocks per super-block.
pub const SUBS: usize = QK_K / SUB_BLOCK;
/// Stored bits per super-block besides the codes: f16 `d` and `dmin`, 12 bytes of 6-bit
/// scales and mins.
pub const PARAM_BITS: usize = 2 * 16 + 12 * 8;

/// Packs eight 6-bit scales and mins into llama.cpp's 12 bytes: bytes 0..4 hold `sc[0..4]`
/// and bytes 4..8 `m[0..4]` in their low six bits, bytes 8..12 the low nibbles of `sc[4..8]`
/// and `m[4..8]`, and the top two bits of bytes 0..8 the high bits of `sc[4..8]`, `m[4..8]`.
pub fn pack_scale_min(sc: &[u8; SUBS], m: &[u8; SUBS]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = sc[j] & 63;
        q[j + 4] = m[j] & 63;
    }
    for j in 4..SUBS {
        q[j + 4] = (sc[j] & 0xF) | ((m[j] & 0xF) << 4);
        q[j - 4] |= ((sc[j] >> 4) & 3) << 6;
        q[j] |= ((m[j] >> 4) & 3) << 6;
    }
    q
}

/// llama.cpp's `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min from the 12 bytes.
pub fn scale_min(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// A super-block's stored parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SuperBlock {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
}

impl SuperBlock {
    /// The decoder of sub-block `j`: `d · sc · q - dmin · m`, as llama.cpp computes it.
    pub fn decode(&self, j: usize, q: u8) -> f32 {
        let (sc, m) = scale_min(j, &self.scales);
        let d1 = self.d.to_f32() * f32::from(sc);
        let m1 = self.dmin.to_f32() * f32::from(m);
        d1 * f32::from(q & 15) - m1
    }

    /// The 16 values of sub-block `j`.
    pub fn sub_levels(&self, j: usize) -> Levels {
        Levels::new(std::array::from_fn(|q| self.decode(j, q as u8)))
    }

    /// Fits a super-block of up to 256 weights (a short one has fewer, possibly shorter,
    /// sub-blocks; unused scale slots are 0). `imp` weights each element's squared error.
    pub fn fit(x: &[f32], imp: Option<&[f32]>) -> Self {
        debug_assert!(x.len() <= QK_K);
        let (mut scales, mut mins) = ([0f32; SUBS], [0f32; SUBS]);
        for (j, xs) in x.chunks(SUB_BLOCK).enumerate() {
            let w = imp.map(|v| &v[j * SUB_BLOCK..j * SUB_BLOCK + xs.len()]);
            (scales[j], mins[j]) = fit_sub_block(xs, w);
        }
        let max_scale = scales.iter().fold(0f32, |a, &s| a.max(s));
        let max_min = mins.iter().fold(0f32, |a, &m| a.max(m));
        let inv = |mx: f32| if mx > 0.0 { 63.0 / mx } else { 0.0 };
        let (inv_scale, inv_min) = (inv(max_scale), inv(max_min));
        let six = |v: f32| (v.round_ties_even() as u8).min(63);
        let sc: [u8; SUBS] = std::array::from_fn(|j| six(inv_scale * scales[j]));
        let m: [u8; SUBS] = std::array::from_fn(|j| six(inv_min * mins[j]));
        SuperBlock {
            d: f16::from_f32(max_scale / 63.0),
            dmin: f16::from_f32(max_min / 63.0),
            scales: pack_scale_min(&sc, &m),
        }
    }
}

/// llama.cpp's `make_qkx2_quants(n, 15, x, weights, L, &min, Laux, -1, 0.1, 20, false)`:
/// a sub-block's `(scale, min)` with `w ≈ scale · q - min`, `min ≥ 0`, minimizing the weighted
/// squared error over the min/max grid and 21 inverse scales `(14 + 0.1 k) / (max - min)`,
/// each refit by weighted least squares.
pub fn fit_sub_block(x: &[f32], imp: Option<&[f32]>) -> (f32, f32) {
    const NMAX: f32 = 15.0;
    const RMIN: f32 = -1.0;
    const RDELTA: f32 = 0.1;
    const NSTEP: i32 = 20;
    let w = |i: usize| imp.map_or(1.0, |v| f64::from(v[i]));
    let (lo, max) = min_max(x);
    let base = lo.min(0.0);
    if max == base {
        return (0.0, -base);
    }
    let code = |iscale: f32, v: f32| (iscale * (v - base)).round_ties_even().clamp(0.0, NMAX);
    // The weighted error of `scale · l + min` with the codes `l` of `iscale`.
    let err = |scale: f32, min: f32, iscale: f32| -> f64 {
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let d = f64::from(scale * code(iscale, v) + min - v);
                w(i) * d * d
            })
            .sum()
    };
    let (sum_w, sum_x) = x.iter().enumerate().fold((0f64, 0f64), |(a, b), (i, &v)| {
        (a + w(i), b + w(i) * f64::from(v))
    });
    let iscale0 = NMAX / (max - base);
    let (mut scale, mut min) = (1.0 / iscale0, base);
    let mut best = err(scale, min, iscale0);
    for is in 0..=NSTEP {
        let iscale = (RMIN + RDELTA * is as f32 + NMAX) / (max - base);
        let (mut sl, mut sl2, mut sxl) = (0f64, 0f64, 0f64);
        for (i, &v) in x.iter().enumerate() {
            let l = f64::from(code(iscale, v));
            sl += w(i) * l;
            sl2 += w(i) * l * l;
            sxl += w(i) * l * f64::from(v);
        }
        let det = sum_w * sl2 - sl * sl;
        if det <= 0.0 {
            continue;
        }
        let mut this_scale = (sum_w * sxl - sum_x * sl) / det;
        let mut this_min = (sl2 * sum_x - sl * sxl) / det;
        if this_min > 0.0 {
            this_min = 0.0;
            this_scale = sxl / sl2;
        }
        let (ts, tm) = (this_scale as f32, this_min as f32);
        let e = err(ts, tm, iscale);
        if e < best && ts.is_finite() && tm.is_finite() {
            best = e;
            scale = ts;
            min = tm;
        }
    }
    (scale, -min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_scale_packing_matches_llama_cpp_layout() {
        let sc = [63, 1, 2, 3, 40, 50, 60, 17];
        let m = [0, 5, 63, 32, 33, 16, 15, 48];
        // hand-packed per quantize_row_q4_K_ref
        let want = [191, 193, 194, 67, 128, 69, 63, 224, 24, 2, 252, 1];
        let q = pack_scale_min(&sc, &m);
        assert_eq!(q, want);
        for j in 0..SUBS {
            assert_eq!(scale_min(j, &q), (sc[j], m[j]), "sub-block {j}");
        }
    }

    #[test]
    fn sub_block_reconstruction() {
        let b = SuperBlock {
            d: f16::from_f32(0.5),
            dmin: f16::from_f32(0.25),
            scales: [191, 193, 194, 67, 128, 69, 63, 224, 24, 2, 252, 1],
        };
        // sub-block 1: sc 1, m 5 → 0.5 · 1 · 3 - 0.25 · 5 = 0.25
        assert_eq!(b.decode(1, 3), 0.25);
        // sub-block 4: sc 40, m 33 → 0.5 · 40 · 15 - 0.25 · 33 = 291.75
        assert_eq!(b.decode(4, 15), 291.75);
        // sub-block 0: sc 63, m 0 → 0.5 · 63 · q
        assert_eq!(b.decode(0, 2), 63.0);
        let l = b.sub_levels(2); // sc 2, m 63: -15.75 + q
        assert_eq!(l.values()[0], -15.75);
        assert_eq!(l.values()[15], -0.75);
    }

    #[test]
    fn sub_block_fit_keeps_min_nonpositive_and_is_exact_on_its_grid() {
        // a block exactly on an affine grid with a negative offset is reproduced
        let x: Vec<f32> = (0..32).map(|i| -0.5 + 0.125 * (i % 16) as f32).collect();
        let (scale, min) = fit_sub_block(&x, None);
        assert!((scale - 0.125).abs() < 1e-6 && (min - 0.5).abs() < 1e-6);
        // all-positive values: the min stays 0 (the format stores m ≥ 0)
        let (_, min) = fit_sub_block(&[1.0, 2.0, 3.0], None);
        assert_eq!(min, 0.0);
        // a constant negative block is represented by the min alone
        assert_eq!(fit_sub_block(&[-2.0; 8], None), (0.0, 2.0));
        assert_eq!(fit_sub_block(&[0.0; 8], None), (0.0, 0.0));
    }
}
