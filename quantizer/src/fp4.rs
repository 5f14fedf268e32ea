//! FP4 formats: E2M1 elements with a shared scale. MXFP4 (OCP Microscaling v1.0) stores one
//! E8M0 power of two per 32 elements (4.25 bpw); NVFP4 one E4M3 (FP8) scale per 16 elements
//! plus one f32 scale per tensor (4.5 bpw, the tensor's f32 not counted).
//!
//! The element and scale types are written down once, as const tables built from their bit
//! fields; encoders round to nearest (ties to even) and saturate, as the specifications do.

use crate::affine::Method;
use crate::levels::{Levels, nearest_index, signed_absmax};

/// Elements per MXFP4 block.
pub const MXFP4_BLOCK: usize = 32;
/// Elements per NVFP4 block.
pub const NVFP4_BLOCK: usize = 16;
/// Largest E2M1 magnitude.
pub const E2M1_MAX: f32 = 6.0;
/// The exponent of E2M1's largest power of two (4 = 2²): OCP MX's `emax_elem`.
pub const E2M1_EMAX: i32 = 2;
/// Largest finite E4M3 value (`S.1111.110`).
pub const E4M3_MAX: f32 = 448.0;
/// The E8M0 code that means NaN.
pub const E8M0_NAN: u8 = 0xFF;

/// `2^e` for `e` in `-149..=127`, built from bits (subnormal below `-126`).
const fn pow2(e: i32) -> f32 {
    if e >= -126 {
        f32::from_bits(((e + 127) as u32) << 23)
    } else {
        f32::from_bits(1 << (e + 149))
    }
}

/// The magnitude of an E2M1 code's low three bits: exponent bits 2..1 (bias 1), mantissa bit 0;
/// exponent 0 is subnormal (`m · 0.5`).
pub const fn e2m1_magnitude(code: u8) -> f32 {
    let e = ((code >> 1) & 3) as i32;
    let m = (code & 1) as f32;
    if e == 0 {
        m * 0.5
    } else {
        (1.0 + m * 0.5) * pow2(e - 1)
    }
}

/// `[f(0), f(1), …, f(N - 1)]` for a `const fn f(u8) -> f32`, at compile time.
macro_rules! code_table {
    ($n:expr, $f:path) => {{
        let mut t = [0f32; $n];
        let mut c = 0;
        while c < $n {
            t[c] = $f(c as u8);
            c += 1;
        }
        t
    }};
}

/// E2M1 magnitudes by code `0..8`: `0, 0.5, 1, 1.5, 2, 3, 4, 6`.
pub const E2M1: [f32; 8] = code_table!(8, e2m1_magnitude);

/// Decodes a 4-bit E2M1 code (bit 3 is the sign).
#[inline]
pub fn e2m1_decode(code: u8) -> f32 {
    let v = E2M1[usize::from(code & 7)];
    if code & 8 != 0 { -v } else { v }
}

/// The E2M1 code nearest to `v`, ties to even, saturating at ±6.
#[inline]
pub fn e2m1_encode(v: f32) -> u8 {
    let i = nearest_index(&E2M1, v.abs()) as u8;
    if v.is_sign_negative() { i | 8 } else { i }
}

/// Decodes an E8M0 scale: `2^(code - 127)`; `0xFF` is NaN.
pub fn e8m0_decode(code: u8) -> f32 {
    if code == E8M0_NAN {
        f32::NAN
    } else {
        pow2(i32::from(code) - 127)
    }
}

/// The E8M0 code of `2^e`, `e` clamped to the representable `-127..=127`.
pub fn e8m0_from_exponent(e: i32) -> u8 {
    (e.clamp(-127, 127) + 127) as u8
}

/// `floor(log2 x)` of a positive finite `x`, exact (read from the bits, subnormals included).
pub fn floor_log2(x: f32) -> i32 {
    let b = x.to_bits() & 0x7FFF_FFFF;
    let e = (b >> 23) as i32;
    if e != 0 {
        e - 127
    } else {
        (31 - b.leading_zeros() as i32) - 149
    }
}

/// The OCP MX rule for a block's shared scale: `2^(floor(log2 amax) - emax_elem)`, as an E8M0
/// code. Elements of magnitude in `[6, 8) · 2^(that)` saturate to ±6. An all-zero block gets the
/// smallest scale, `2^-127`.
pub fn mxfp4_ocp_scale(x: &[f32]) -> u8 {
    let (_, amax) = signed_absmax(x);
    if amax == 0.0 {
        return 0;
    }
    e8m0_from_exponent(floor_log2(amax) - E2M1_EMAX)
}

/// The 16 values of E2M1 codes times `scale`.
pub fn fp4_levels(scale: f32) -> Levels {
    Levels::new(std::array::from_fn(|c| e2m1_decode(c as u8) * scale))
}

/// Of `candidates` (scale codes with their decoded scales), the one whose grid has the least
/// weighted error; the first wins ties.
fn best_scale(
    x: &[f32],
    imp: Option<&[f32]>,
    candidates: impl Iterator<Item = (u8, f32)>,
) -> (u8, Levels) {
    let mut best: Option<(u8, Levels, f64)> = None;
    for (code, scale) in candidates {
        let l = fp4_levels(scale);
        let e = l.weighted_error(x, imp);
        if best.as_ref().is_none_or(|b| e < b.2) {
            best = Some((code, l, e));
        }
    }
    let (code, l, _) = best.expect("at least one candidate scale");
    (code, l)
}

/// Fits one MXFP4 block: the OCP scale, or with [`Method::Search`] the OCP exponent and its
/// two neighbours, keeping the one of least (importance-weighted) error. Returns the E8M0 code
/// and the grid.
pub fn mxfp4_fit(x: &[f32], imp: Option<&[f32]>, method: Method) -> (u8, Levels) {
    let ocp = mxfp4_ocp_scale(x);
    let codes: &[i32] = match method {
        Method::MinMax => &[0],
        Method::Search => &[0, -1, 1],
    };
    let candidates = codes
        .iter()
        .map(|&k| i32::from(ocp) + k)
        .filter(|c| (0..=254).contains(c))
        .map(|c| (c as u8, e8m0_decode(c as u8)));
    best_scale(x, imp, candidates)
}

/// Decodes an E4M3 (FP8, bias 7, no infinities) magnitude from a code's low seven bits;
/// `0x7F` is NaN and not in [`E4M3`].
pub const fn e4m3_magnitude(code: u8) -> f32 {
    let e = ((code >> 3) & 0xF) as i32;
    let m = (code & 7) as f32;
    if e == 0 {
        m * pow2(-9)
    } else {
        (8.0 + m) * pow2(e - 10)
    }
}

/// E4M3 magnitudes by code `0..=0x7E`, ascending: `0, 2^-9, …, 448`.
pub const E4M3: [f32; 127] = code_table!(127, e4m3_magnitude);

/// Decodes an E4M3 byte (bit 7 is the sign; `S.1111.111` is NaN).
pub fn e4m3_decode(code: u8) -> f32 {
    if code & 0x7F == 0x7F {
        return f32::NAN;
    }
    let v = E4M3[usize::from(code & 0x7F)];
    if code & 0x80 != 0 { -v } else { v }
}

/// The E4M3 code nearest to `v`, ties to even, saturating at ±448 (`satfinite`).
pub fn e4m3_encode(v: f32) -> u8 {
    let i = nearest_index(&E4M3, v.abs()) as u8;
    if v.is_sign_negative() { i | 0x80 } else { i }
}

/// NVFP4's per-tensor f32 scale: `amax / (448 · 6)`, so that a block scale of the tensor's
/// largest block is E4M3's largest value.
pub fn nvfp4_tensor_scale(data: &[f32]) -> f32 {
    signed_absmax(data).1 / (E4M3_MAX * E2M1_MAX)
}

/// Fits one NVFP4 block under the tensor scale `global`: the block scale `amax / 6 / global`
/// rounded to E4M3, or with [`Method::Search`] that code and two neighbours each side, keeping
/// the least (importance-weighted) error. Returns the E4M3 code and the grid (the decoded
/// scale is `E4M3[code] · global`). A zero or non-finite `global` gives an all-zero grid.
pub fn nvfp4_fit(x: &[f32], imp: Option<&[f32]>, method: Method, global: f32) -> (u8, Levels) {
    if !(global.is_finite() && global > 0.0) {
        return (0, fp4_levels(0.0));
    }
    let (_, amax) = signed_absmax(x);
    let code = i32::from(e4m3_encode(amax / E2M1_MAX / global));
    let spread = match method {
        Method::MinMax => 0,
        Method::Search => 2,
    };
    let candidates = (code - spread..=code + spread)
        .filter(|c| (0..=0x7E).contains(c))
        .map(|c| (c as u8, E4M3[c as usize] * global));
    // Search the rule's code first so that it wins ties.
    let first = (code as u8, E4M3[code as usize] * global);
    best_scale(x, imp, std::iter::once(first).chain(candidates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2m1_code_table() {
        // hand-computed from the bit fields: S EE M
        let want = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
        assert_eq!(E2M1, want);
        for c in 0..8u8 {
            assert_eq!(e2m1_decode(c), want[c as usize]);
            assert_eq!(e2m1_decode(c | 8), -want[c as usize]);
            assert_eq!(e2m1_encode(want[c as usize]), c);
        }
        assert_eq!(e2m1_decode(0b1011), -1.5);
        assert_eq!(e2m1_decode(0b0111), 6.0);
        // ties to even mantissa, saturation
        assert_eq!(e2m1_encode(0.75), 0b010);
        assert_eq!(e2m1_encode(1.25), 0b010);
        assert_eq!(e2m1_encode(1.75), 0b100);
        assert_eq!(e2m1_encode(2.5), 0b100);
        assert_eq!(e2m1_encode(3.5), 0b110);
        assert_eq!(e2m1_encode(5.0), 0b110);
        assert_eq!(e2m1_encode(5.1), 0b111);
        assert_eq!(e2m1_encode(1e9), 0b111);
        assert_eq!(e2m1_encode(-1e9), 0b1111);
        assert_eq!(e2m1_encode(-0.2), 0b1000);
    }

    #[test]
    fn e8m0_decode_and_edges() {
        assert_eq!(e8m0_decode(127), 1.0);
        assert_eq!(e8m0_decode(128), 2.0);
        assert_eq!(e8m0_decode(126), 0.5);
        assert_eq!(e8m0_decode(254), 2f32.powi(127));
        assert_eq!(e8m0_decode(1), 2f32.powi(-126));
        assert_eq!(e8m0_decode(0), 2f32.powi(-126) / 2.0);
        assert!(e8m0_decode(E8M0_NAN).is_nan());
        assert_eq!(e8m0_from_exponent(-300), 0);
        assert_eq!(e8m0_from_exponent(300), 254);
        assert_eq!(e8m0_from_exponent(-3), 124);
    }

    #[test]
    fn floor_log2_is_exact_at_powers_of_two_and_subnormals() {
        assert_eq!(floor_log2(1.0), 0);
        assert_eq!(floor_log2(f32::from_bits(1.0f32.to_bits() - 1)), -1);
        assert_eq!(floor_log2(7.99), 2);
        assert_eq!(floor_log2(8.0), 3);
        assert_eq!(floor_log2(f32::MAX), 127);
        assert_eq!(floor_log2(f32::from_bits(1)), -149);
        assert_eq!(floor_log2(f32::MIN_POSITIVE / 2.0), -127);
    }

    #[test]
    fn mxfp4_ocp_rule() {
        // amax 5 → floor(log2 5) = 2 → scale 2^0; 7 would saturate to 6
        let mut x = [0.0f32; 32];
        x[0] = 5.0;
        x[1] = -0.3;
        assert_eq!(mxfp4_ocp_scale(&x), 127);
        x[0] = 7.0;
        assert_eq!(mxfp4_ocp_scale(&x), 127);
        let (code, l) = mxfp4_fit(&x, None, Method::MinMax);
        assert_eq!(code, 127);
        assert_eq!(l.nearest(7.0), 6.0);
        assert_eq!(l.nearest(-0.3), -0.5);
        // amax 0.1 → floor(log2 0.1) = -4 → 2^-6
        assert_eq!(mxfp4_ocp_scale(&[0.1, -0.05]), 121);
        assert_eq!(mxfp4_ocp_scale(&[0.0; 32]), 0);
        // the search tries the neighbouring exponents: 7.5 clips to 6 under the OCP scale 2^0
        // (error 1.5) and rounds to 4 · 2 = 8 under 2^1 (error 0.5)
        assert_eq!(mxfp4_fit(&[7.5], None, Method::MinMax).0, 127);
        let (code, l) = mxfp4_fit(&[7.5], None, Method::Search);
        assert_eq!(code, 128);
        assert_eq!(l.nearest(7.5), 8.0);
        // on a tie the OCP scale stays: 7 is 6 (error 1) under 2^0 and 8 (error 1) under 2^1
        assert_eq!(mxfp4_fit(&[7.0], None, Method::Search).0, 127);
    }

    #[test]
    fn e4m3_decode_and_edges() {
        assert_eq!(e4m3_decode(0x00), 0.0);
        assert_eq!(e4m3_decode(0x01), 2f32.powi(-9)); // smallest subnormal
        assert_eq!(e4m3_decode(0x07), 7.0 * 2f32.powi(-9)); // largest subnormal
        assert_eq!(e4m3_decode(0x08), 2f32.powi(-6)); // smallest normal
        assert_eq!(e4m3_decode(0x38), 1.0); // exponent 7 = bias
        assert_eq!(e4m3_decode(0x3C), 1.5);
        assert_eq!(e4m3_decode(0x7E), 448.0);
        assert_eq!(E4M3[126], E4M3_MAX);
        assert_eq!(e4m3_decode(0xB8), -1.0);
        assert!(e4m3_decode(0x7F).is_nan());
        assert!(e4m3_decode(0xFF).is_nan());
        assert!(E4M3.windows(2).all(|w| w[0] < w[1]));
        // encode: saturation (no infinities), ties to even, round trip
        assert_eq!(e4m3_encode(1e6), 0x7E);
        assert_eq!(e4m3_encode(-1e6), 0xFE);
        assert_eq!(e4m3_encode(1.0625), 0x38); // halfway 1 and 1.125 → even mantissa
        assert_eq!(e4m3_encode(1.1875), 0x3A); // halfway 1.125 and 1.25 → even
        for c in 0..=0x7Eu8 {
            assert_eq!(e4m3_encode(e4m3_decode(c)), c);
        }
    }

    #[test]
    fn nvfp4_block_scale_rule() {
        // tensor amax 2688 → global 1; a block of amax 6 → scale 1 (code 0x38)
        let global = nvfp4_tensor_scale(&[2688.0, -3.0]);
        assert_eq!(global, 1.0);
        let (code, l) = nvfp4_fit(&[6.0, -1.0, 0.2], None, Method::MinMax, global);
        assert_eq!(code, 0x38);
        assert_eq!(l.nearest(-1.0), -1.0);
        assert_eq!(l.nearest(0.2), 0.0);
        // amax 13 → 13/6 = 2.1667 → E4M3 2.25 (0x41): 13/2.25 = 5.78 → 6 → 13.5
        let (code, l) = nvfp4_fit(&[13.0], None, Method::MinMax, global);
        assert_eq!(code, 0x41);
        assert_eq!(l.nearest(13.0), 13.5);
        // the search tries E4M3 codes 0x3F..=0x43 (1.875..2.75): 2.0 · 6 = 12 and 2.25 · 6 = 13.5
        // are the closest, and 2.25 wins (error 0.5); with 12.2 instead, 2.0 wins
        let (code, _) = nvfp4_fit(&[13.0], None, Method::Search, global);
        assert_eq!(code, 0x41);
        assert_eq!(nvfp4_fit(&[12.2], None, Method::MinMax, global).0, 0x40);
        let (code, l) = nvfp4_fit(&[12.2, 1.1], Some(&[0.0, 1.0]), Method::Search, global);
        // weighted on 1.1 alone: scale 2.0 gives 1.0 (error 0.1); 2.25 gives 1.125 (0.025);
        // 2.5 gives 1.25; 1.875 gives 0.9375: 2.25 wins
        assert_eq!(code, 0x41);
        assert_eq!(l.nearest(1.1), 1.125);
        // a zero tensor scale gives zeros
        let (_, l) = nvfp4_fit(&[1.0], None, Method::MinMax, 0.0);
        assert_eq!(l.nearest(1.0), 0.0);
    }
}
