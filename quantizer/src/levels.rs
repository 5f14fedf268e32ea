//! The sixteen values a block of a 4-bit format can decode to, and rounding to the nearest.
//! The field's formats ([`crate::fp4`], [`crate::lut`], [`crate::kquant`]) each turn a block's
//! stored parameters into [`Levels`]; fake quantization then rounds every weight to its nearest
//! level, which is what their encoders do (nearest E2M1 value, nearest table entry, nearest
//! affine code).

/// A block's decoded grid: the values of its 16 codes, ascending (duplicates allowed, e.g.
/// E2M1's ±0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Levels([f32; 16]);

impl Levels {
    /// The levels of the 16 codes, in any order.
    pub fn new(mut values: [f32; 16]) -> Self {
        values.sort_by(f32::total_cmp);
        Levels(values)
    }

    /// The levels, ascending.
    pub fn values(&self) -> &[f32; 16] {
        &self.0
    }

    /// The level nearest to `w` (ties to the even index).
    #[inline]
    pub fn nearest(&self, w: f32) -> f32 {
        self.0[nearest_index(&self.0, w)]
    }

    /// Rounds every element of `x` to its nearest level, into `out`.
    pub fn quantize(&self, x: &[f32], out: &mut [f32]) {
        for (o, &w) in out.iter_mut().zip(x) {
            *o = self.nearest(w);
        }
    }

    /// `Σ imp_i (nearest(x_i) - x_i)²` in f64 (unweighted without `imp`).
    pub fn weighted_error(&self, x: &[f32], imp: Option<&[f32]>) -> f64 {
        x.iter()
            .enumerate()
            .map(|(i, &w)| {
                let d = f64::from(self.nearest(w) - w);
                imp.map_or(1.0, |v| f64::from(v[i])) * d * d
            })
            .sum()
    }
}

/// The index of the entry of the ascending `table` nearest to `v`, saturating at both ends;
/// an exact tie goes to the even index (for E2M1 and E4M3 magnitude tables, whose index parity
/// is the mantissa's last bit, this is IEEE round-to-nearest-even). NaN gives 0.
#[inline]
pub fn nearest_index(table: &[f32], v: f32) -> usize {
    let i = table.partition_point(|&t| t < v);
    if i == 0 {
        return 0;
    }
    if i == table.len() {
        return i - 1;
    }
    let (below, above) = (v - table[i - 1], table[i] - v);
    if below < above || (below == above && (i - 1) % 2 == 0) {
        i - 1
    } else {
        i
    }
}

/// The element of largest magnitude (the first one on ties) and that magnitude.
pub fn signed_absmax(x: &[f32]) -> (f32, f32) {
    x.iter().fold((0.0f32, 0.0f32), |(m, a), &v| {
        if v.abs() > a { (v, v.abs()) } else { (m, a) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_index_saturates_and_breaks_ties_to_even() {
        let t = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
        assert_eq!(nearest_index(&t, -1.0), 0);
        assert_eq!(nearest_index(&t, 100.0), 7);
        assert_eq!(nearest_index(&t, 0.24), 0);
        assert_eq!(nearest_index(&t, 0.26), 1);
        // ties: 0.25 → 0 (index 0), 0.75 → 1.0 (index 2), 2.5 → 2 (index 4), 5 → 4 (index 6)
        assert_eq!(nearest_index(&t, 0.25), 0);
        assert_eq!(nearest_index(&t, 0.75), 2);
        assert_eq!(nearest_index(&t, 2.5), 4);
        assert_eq!(nearest_index(&t, 5.0), 6);
        assert_eq!(nearest_index(&t, 3.0), 5);
        assert_eq!(nearest_index(&t, f32::NAN), 0);
    }

    #[test]
    fn levels_sort_and_round_to_nearest() {
        let l = Levels::new(std::array::from_fn(|i| 15.0 - i as f32));
        assert_eq!(l.values()[0], 0.0);
        assert_eq!(l.values()[15], 15.0);
        let x = [-3.0, 0.4, 7.6, 99.0];
        let mut out = [0.0; 4];
        l.quantize(&x, &mut out);
        assert_eq!(out, [0.0, 0.0, 8.0, 15.0]);
        let e = l.weighted_error(&x, Some(&[1.0, 0.0, 2.0, 0.5]));
        let want = 9.0 + 2.0 * 0.4f64.powi(2) + 0.5 * 84.0 * 84.0;
        assert!((e - want).abs() < 1e-4, "{e} vs {want}");
        assert_eq!(signed_absmax(&[0.5, -2.0, 2.0, 1.0]), (-2.0, 2.0));
        assert_eq!(signed_absmax(&[]), (0.0, 0.0));
    }
}
