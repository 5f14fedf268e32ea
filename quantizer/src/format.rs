//! The M0E4 format, written down once (see `docs/M0E4.md`).
//!
//! A code `q` in `0..=15` sits in the top four mantissa bits of an IEEE half with the exponent
//! of 1.0, so `value(q) = 1 + q/16`. A group of weights stores `S = f16(16 s)` and
//! `B = f16(m - 16 s)`, and a weight decodes as `fma(value(q), S, B)`: two bitwise operations
//! and one FMA, no integer-to-float conversion. Eight codes pack into a `u32`, code `k` at bits
//! `4k..4k+3`; one shift, one AND and one OR turn a word into the half pair `(k, k+4)`.

use half::f16;

/// Codes per packed `u32` word.
pub const PACKED_PER_WORD: usize = 8;
/// The number of levels of the grid.
pub const LEVELS: u32 = 16;
/// IEEE half bits of 1.0: sign 0, exponent 01111, mantissa 0.
pub const ONE_F16_BITS: u16 = 0x3C00;
/// Position of the code inside the half's mantissa.
pub const CODE_SHIFT: u32 = 6;
/// Mask selecting the codes `k` and `k + 4` of a word once shifted into place (both halves).
pub const PAIR_MASK: u32 = 0x03C0_03C0;
/// 1.0 in both halves of a word.
pub const PAIR_ONE: u32 = 0x3C00_3C00;
/// Shift (positive = left) that brings codes `(k, k+4)` into the mantissa slots, for k = 0..4.
pub const PAIR_SHIFTS: [i32; 4] = [6, 2, -2, -6];

/// Half bits of the code `q`: `0x3C00 | (q << 6)`.
pub const fn code_bits(q: u8) -> u16 {
    ONE_F16_BITS | ((q as u16 & 0xF) << CODE_SHIFT)
}

/// The decode table `value(q) = 1 + q/16`, built by const evaluation from [`code_bits`].
pub const VALUES_F16_BITS: [u16; 16] = {
    let mut t = [0u16; 16];
    let mut q = 0;
    while q < 16 {
        t[q] = code_bits(q as u8);
        q += 1;
    }
    t
};

/// `value(q) = 1 + q/16` as f32 for every code (exact: five significant bits).
pub const VALUES: [f32; 16] = {
    let mut t = [0f32; 16];
    let mut q = 0;
    while q < 16 {
        t[q] = 1.0 + q as f32 / 16.0;
        q += 1;
    }
    t
};

/// `value(q)` as f32.
#[inline]
pub fn value(q: u8) -> f32 {
    VALUES[usize::from(q & 0xF)]
}

/// `value · S + B` in f32. The product of a 5-bit and an 11-bit significand is exact in f32,
/// so this single-rounding expression gives the same bits as `fma(value, S, B)` on the GPU,
/// without a libm call on CPUs built without FMA.
#[inline(always)]
pub fn fma_exact(value: f32, s: f32, b: f32) -> f32 {
    value * s + b
}

/// A group's stored parameters, as half bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GroupParams {
    /// `S = f16(16 s)`
    pub scale: u16,
    /// `B = f16(m - 16 s)`
    pub bias: u16,
}

impl GroupParams {
    /// Rounds an affine grid `w = min + q * step` to the stored form.
    pub fn from_affine(min: f32, step: f32) -> Self {
        let s16 = 16.0 * step;
        GroupParams {
            scale: f16::from_f32(s16).to_bits(),
            bias: f16::from_f32(min - s16).to_bits(),
        }
    }

    #[inline]
    pub fn scale_f32(self) -> f32 {
        f16::from_bits(self.scale).to_f32()
    }

    #[inline]
    pub fn bias_f32(self) -> f32 {
        f16::from_bits(self.bias).to_f32()
    }

    /// The decoder: `fma(value(q), S, B)` in f32.
    #[inline]
    pub fn decode(self, q: u8) -> f32 {
        M0E4Grid::new(self).decode(q)
    }

    /// The code whose decoded value is nearest to `w` (ties to the lower code).
    #[inline]
    pub fn encode(self, w: f32) -> u8 {
        M0E4Grid::new(self).encode(w)
    }
}

/// A group's parameters with `S` and `B` widened to f32 once, for encoding many weights.
#[derive(Clone, Copy, Debug)]
pub struct M0E4Grid {
    pub params: GroupParams,
    s: f32,
    b: f32,
}

impl M0E4Grid {
    #[inline]
    pub fn new(params: GroupParams) -> Self {
        M0E4Grid {
            params,
            s: params.scale_f32(),
            b: params.bias_f32(),
        }
    }

    #[inline]
    pub fn decode(self, q: u8) -> f32 {
        fma_exact(value(q), self.s, self.b)
    }

    #[inline]
    pub fn encode(self, w: f32) -> u8 {
        if self.s.is_nan() || self.s <= 0.0 {
            return 0;
        }
        nearest_code(w, (w - self.b) / self.s * 16.0 - 16.0, |q| self.decode(q))
    }

    /// [`Self::encode`] of every element of `x` into `codes` (the same codes), without a branch
    /// per element so that the loop vectorizes: the three candidates of [`nearest_code`] are
    /// clamped to `0..=15` instead of skipped (a clamped candidate repeats its neighbour, and
    /// the tie rule keeps the same code) and the decoder is computed, not looked up.
    pub fn encode_all(self, x: &[f32], codes: &mut [u8]) {
        let (s, b) = (self.s, self.b);
        if s.is_nan() || s <= 0.0 {
            codes.fill(0);
            return;
        }
        // value(q) = (16 + q) / 16 exactly; value · S is exact and `+ b` rounds once, as in
        // `fma_exact`.
        let dec = |q: i32| fma_exact((16 + q) as f32 * (1.0 / 16.0), s, b);
        for (c, &w) in codes.iter_mut().zip(x) {
            let g = round_code((w - b) / s * 16.0 - 16.0);
            let (gm, gp) = ((g - 1).max(0), (g + 1).min(15));
            let (e0, em, ep) = ((dec(g) - w).abs(), (dec(gm) - w).abs(), (dec(gp) - w).abs());
            let (q, e) = if em <= e0 { (gm, em) } else { (g, e0) };
            *c = if ep < e { gp } else { q } as u8;
        }
    }
}

/// The code in `0..=15` whose `decode` is nearest to `w`, ties to the lower code. `guess` is
/// the real-valued code from the grid's formula; after f32 rounding it can be one off at
/// near-ties, so its neighbours are checked against the exact decoder.
#[inline]
pub fn nearest_code(w: f32, guess: f32, decode: impl Fn(u8) -> f32) -> u8 {
    let g = round_code(guess);
    let mut best = g as u8;
    let mut best_err = (decode(best) - w).abs();
    for q in [g - 1, g + 1] {
        if (0..16).contains(&q) {
            let e = (decode(q as u8) - w).abs();
            if e < best_err || (e == best_err && (q as u8) < best) {
                best = q as u8;
                best_err = e;
            }
        }
    }
    best
}

/// `x.round().clamp(0.0, 15.0)` as an integer (NaN: 0), without the libm call `f32::round`
/// compiles to on CPUs built without SSE4.1, and without a branch: `x` clamped first (the same
/// result, since rounding is monotonic), then rounded half away from zero exactly
/// (`x - trunc(x)` is exact below 2²³).
#[inline(always)]
pub fn round_code(x: f32) -> i32 {
    // NaN stays NaN through the clamp, casts to 0 and fails the comparison.
    let x = x.clamp(0.0, 15.0);
    let i = x as i32;
    i + i32::from(x - i as f32 >= 0.5)
}

/// Packs codes (one per byte, `0..=15`) eight to a word; a short tail is padded with code 0.
pub fn pack_codes(codes: &[u8], out: &mut [u32]) {
    debug_assert_eq!(out.len(), codes.len().div_ceil(PACKED_PER_WORD));
    for (word, chunk) in out.iter_mut().zip(codes.chunks(PACKED_PER_WORD)) {
        *word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (k, &q)| acc | (u32::from(q & 0xF) << (4 * k)));
    }
}

/// The scalar decoder of one code of a word: `(word >> 4k) & 15`.
#[inline]
pub fn code_at(word: u32, k: usize) -> u8 {
    ((word >> (4 * k)) & 0xF) as u8
}

/// The GPU's bitwise decode of the pair `(k, k + 4)`, `k` in `0..4`: one shift, one AND, one
/// OR give two IEEE halves holding `value(q_k)` (low) and `value(q_{k+4})` (high).
#[inline]
pub fn pair_bits(word: u32, k: usize) -> u32 {
    let sh = PAIR_SHIFTS[k];
    let shifted = if sh >= 0 { word << sh } else { word >> (-sh) };
    (shifted & PAIR_MASK) | PAIR_ONE
}

/// `unpack2x16float` of [`pair_bits`]: the values of codes `k` and `k + 4`.
#[inline]
pub fn decode_pair(word: u32, k: usize) -> (f32, f32) {
    let p = pair_bits(word, k);
    (
        f16::from_bits(p as u16).to_f32(),
        f16::from_bits((p >> 16) as u16).to_f32(),
    )
}

/// Decodes a word's eight weights with the pair trick, as the kernels do.
#[inline]
pub fn decode_word(word: u32, params: GroupParams, out: &mut [f32; 8]) {
    let (s, b) = (params.scale_f32(), params.bias_f32());
    for k in 0..4 {
        let (lo, hi) = decode_pair(word, k);
        out[k] = fma_exact(lo, s, b);
        out[k + 4] = fma_exact(hi, s, b);
    }
}
