//! Table formats: a block stores 16 indices into a fixed non-uniform table and one scale `d`,
//! `w = d · table[q]`. NF4 (QLoRA / bitsandbytes): the normal-quantile table, an f32 absmax per
//! 64 weights (4.5 bpw; no double quantization). IQ4_NL (llama.cpp): `kvalues_iq4nl`, an f16
//! scale per 32 weights (4.5 bpw).
//!
//! The scale search ([`search_scale`]) follows llama.cpp's `quantize_row_iq4_nl_impl`: map the
//! element of largest magnitude to the table's end, try inverse scales around it, refit `d` by
//! weighted least squares on each candidate's indices, keep the smallest weighted error, then
//! round every weight to the nearest entry under the stored scale. The weights are tlite's
//! importance (or 1), the error the reports measure; llama.cpp weights by `x²` without an
//! imatrix and by `imatrix · sqrt(σ² + x²)` with one.

use half::f16;

use crate::affine::Method;
use crate::levels::{Levels, nearest_index, signed_absmax};

/// Weights per NF4 block (bitsandbytes' default blocksize).
pub const NF4_BLOCK: usize = 64;
/// Weights per IQ4_NL block.
pub const IQ4_NL_BLOCK: usize = 32;

/// bitsandbytes' NF4 table (`create_normal_map`, as hard-coded in its kernels), written with
/// the digits bitsandbytes prints so that it can be compared with its source.
#[allow(clippy::excessive_precision)]
pub const NF4: [f32; 16] = [
    -1.0,
    -0.696_192_800_998_687_7,
    -0.525_073_051_452_636_7,
    -0.394_917_488_098_144_53,
    -0.284_441_381_692_886_35,
    -0.184_773_430_228_233_34,
    -0.091_050_036_251_544_95,
    0.0,
    0.079_580_299_556_255_34,
    0.160_930_201_411_247_25,
    0.246_112_301_945_686_34,
    0.337_915_241_718_292_24,
    0.440_709_829_330_444_34,
    0.562_617_003_917_694_1,
    0.722_956_836_223_602_3,
    1.0,
];

/// llama.cpp's `kvalues_iq4nl`.
pub const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// [`IQ4_NL_VALUES`] as f32.
pub const IQ4_NL: [f32; 16] = {
    let mut t = [0f32; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = IQ4_NL_VALUES[i] as f32;
        i += 1;
    }
    t
};

/// Candidate inverse scales on each side of the first guess (llama.cpp's `ntry` for IQ4_NL).
const NTRY: i32 = 7;

/// The grid `d · table[q]` of the 16 indices.
pub fn table_levels(table: &[f32; 16], d: f32) -> Levels {
    Levels::new(table.map(|t| t * d))
}

/// Decodes one index: `d · table[q & 15]`.
pub fn table_decode(table: &[f32; 16], d: f32, q: u8) -> f32 {
    d * table[usize::from(q & 15)]
}

/// A table format: its table, how its scale is stored, and how the scale search steps.
struct TableFormat {
    table: &'static [f32; 16],
    /// The stored scale (f16 or f32 rounding).
    round: fn(f32) -> f32,
    /// The first scale, from the element of largest magnitude `max` and `amax = |max|`;
    /// the search only replaces it by a candidate of smaller error.
    rule: fn(f32, f32) -> f32,
    /// Table ends the largest element may map to (those of the table's largest magnitude).
    ends: &'static [f32],
    /// Relative step of the inverse scale between candidates.
    step: f32,
}

const NF4_FORMAT: TableFormat = TableFormat {
    table: &NF4,
    round: |d| d,
    rule: |_, amax| amax,
    ends: &[-1.0, 1.0],
    step: 1.0 / 48.0,
};

const IQ4_NL_FORMAT: TableFormat = TableFormat {
    table: &IQ4_NL,
    round: |d| f16::from_f32(d).to_f32(),
    rule: |max, _| f16::from_f32(max / -127.0).to_f32(),
    ends: &[-127.0],
    // llama.cpp: id = (itry + values[0]) / max, i.e. steps of 1/127 of the end
    step: 1.0 / 127.0,
};

/// Searches the block's scale (see the module documentation): returns the stored `d`, 0 for an
/// all-zero block.
fn search_scale(f: &TableFormat, x: &[f32], imp: Option<&[f32]>) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax == 0.0 {
        return 0.0;
    }
    let w = |i: usize| imp.map_or(1.0, |v| f64::from(v[i]));
    let sxx: f64 = x
        .iter()
        .enumerate()
        .map(|(i, &v)| w(i) * f64::from(v) * f64::from(v))
        .sum();
    // The rule's scale, scored on its own nearest indices.
    let mut best_d = (f.rule)(max, amax);
    let mut best_err = table_levels(f.table, best_d).weighted_error(x, imp);
    for &end in f.ends {
        for k in -NTRY..=NTRY {
            let id = end * (1.0 + k as f32 * f.step) / max;
            let (mut sxt, mut stt) = (0f64, 0f64);
            for (i, &v) in x.iter().enumerate() {
                let t = f64::from(f.table[nearest_index(f.table, v * id)]);
                sxt += w(i) * f64::from(v) * t;
                stt += w(i) * t * t;
            }
            if stt <= 0.0 {
                continue;
            }
            let d = (f.round)((sxt / stt) as f32);
            // The error of these indices under the stored d; rounding to the nearest entry
            // afterwards can only lower it.
            let dd = f64::from(d);
            let err = sxx - 2.0 * dd * sxt + dd * dd * stt;
            if err < best_err && d.is_finite() {
                best_err = err;
                best_d = d;
            }
        }
    }
    best_d
}

/// Fits one NF4 block: `d` = the absmax (bitsandbytes), or with [`Method::Search`] the
/// importance-weighted scale search, both signs of the scale tried (NF4's table is
/// asymmetric). Returns the f32 scale.
pub fn nf4_fit(x: &[f32], imp: Option<&[f32]>, method: Method) -> f32 {
    match method {
        Method::MinMax => signed_absmax(x).1,
        Method::Search => search_scale(&NF4_FORMAT, x, imp),
    }
}

/// Fits one IQ4_NL block with llama.cpp's search (importance-weighted); returns the scale,
/// rounded to f16 (negative when the largest element is positive: it maps to -127).
pub fn iq4_nl_fit(x: &[f32], imp: Option<&[f32]>) -> f32 {
    search_scale(&IQ4_NL_FORMAT, x, imp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf4_table_lookups() {
        assert_eq!(NF4[0], -1.0);
        assert_eq!(NF4[7], 0.0);
        assert_eq!(NF4[15], 1.0);
        let close = |a: f32, b: f64| (f64::from(a) - b).abs() < 1e-7;
        assert!(close(NF4[1], -0.6961928009986877));
        assert!(close(NF4[14], 0.7229568362236023));
        assert!(NF4.windows(2).all(|w| w[0] < w[1]));
        // absmax 2: index 13 decodes to 2 · 0.5626170039176941
        assert!(close(table_decode(&NF4, 2.0, 13), 2.0 * 0.5626170039176941));
        assert_eq!(table_decode(&NF4, 0.5, 0), -0.5);
        // encoding by absmax: 0.3 / 2 = 0.15 → nearest 0.16093 (index 9)
        let d = nf4_fit(&[2.0, 0.3, -1.0], None, Method::MinMax);
        assert_eq!(d, 2.0);
        let l = table_levels(&NF4, d);
        assert_eq!(l.nearest(0.3), 2.0 * NF4[9]);
        assert_eq!(l.nearest(-1.0), 2.0 * NF4[2]); // -0.5 → -0.5251
        assert_eq!(l.nearest(2.0), 2.0);
    }

    #[test]
    fn iq4_nl_table_and_scale() {
        assert_eq!(IQ4_NL[0], -127.0);
        assert_eq!(IQ4_NL[8], 1.0);
        assert_eq!(IQ4_NL[15], 113.0);
        assert!(IQ4_NL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(table_decode(&IQ4_NL, 0.5, 3), -32.5);
        // the largest element maps to the -127 end: a block of one positive value x is exact
        // with d = -x/127 (f16-rounded; 1.27 / -127 = -0.01)
        let d = iq4_nl_fit(&[1.27, 0.0], None);
        assert!(d < 0.0 && (d + 0.01).abs() < 1e-4, "{d}");
        assert_eq!(d, f16::from_f32(d).to_f32());
        assert!((table_levels(&IQ4_NL, d).nearest(1.27) - 1.27).abs() < 1e-3);
        assert_eq!(iq4_nl_fit(&[0.0; 32], None), 0.0);
        assert_eq!(nf4_fit(&[0.0; 64], None, Method::Search), 0.0);
    }
}
