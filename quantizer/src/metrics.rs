//! Error metrics of a quantized tensor against its original.

use serde::Serialize;

/// Error of a reconstruction. Sums are kept so that tensors can be merged into a summary.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct ErrorStats {
    /// Number of weights.
    pub n: u64,
    /// Mean squared error (importance-weighted when importance was given).
    pub mse: f64,
    pub rmse: f64,
    /// Signal-to-quantization-noise ratio, `10 log10(Σ w² / Σ (w - w')²)`, in dB.
    pub sqnr_db: f64,
    /// Largest absolute error.
    pub max_abs: f64,
    /// Storage bits per weight.
    pub bits_per_weight: f64,
    #[serde(skip)]
    sum_err: f64,
    #[serde(skip)]
    sum_sig: f64,
    #[serde(skip)]
    sum_w: f64,
}

impl ErrorStats {
    /// Compares `recon` with `orig` (`[rows, cols]` row-major). With `importance` (one weight
    /// per column), squared errors and signal are weighted per input channel.
    pub fn compute(
        orig: &[f32],
        recon: &[f32],
        cols: usize,
        importance: Option<&[f32]>,
        bits_per_weight: f64,
    ) -> Self {
        assert_eq!(orig.len(), recon.len(), "reconstruction length differs");
        let (mut sum_err, mut sum_sig, mut sum_w, mut max_abs) = (0f64, 0f64, 0f64, 0f64);
        let mut add = |w: f64, a: f32, b: f32| {
            let e = f64::from(a) - f64::from(b);
            sum_err += w * e * e;
            sum_sig += w * f64::from(a) * f64::from(a);
            sum_w += w;
            max_abs = max_abs.max(e.abs());
        };
        // Row by row, so that the column's weight is not a division per element.
        let cols = cols.max(1);
        for (ra, rb) in orig.chunks(cols).zip(recon.chunks(cols)) {
            match importance {
                None => (ra.iter().zip(rb)).for_each(|(&a, &b)| add(1.0, a, b)),
                Some(imp) => {
                    (ra.iter().zip(rb).zip(imp)).for_each(|((&a, &b), &w)| add(f64::from(w), a, b))
                }
            }
        }
        Self::from_sums(
            orig.len() as u64,
            sum_err,
            sum_sig,
            sum_w,
            max_abs,
            bits_per_weight,
        )
    }

    fn from_sums(n: u64, sum_err: f64, sum_sig: f64, sum_w: f64, max_abs: f64, bpw: f64) -> Self {
        let mse = if sum_w > 0.0 { sum_err / sum_w } else { 0.0 };
        ErrorStats {
            n,
            mse,
            rmse: mse.sqrt(),
            sqnr_db: 10.0 * (sum_sig / sum_err).log10(),
            max_abs,
            bits_per_weight: bpw,
            sum_err,
            sum_sig,
            sum_w,
        }
    }

    /// Merges two reports as if computed over both tensors together (bits weighted by count).
    pub fn merge(&self, other: &ErrorStats) -> ErrorStats {
        let n = self.n + other.n;
        let bpw = if n == 0 {
            0.0
        } else {
            (self.bits_per_weight * self.n as f64 + other.bits_per_weight * other.n as f64)
                / n as f64
        };
        Self::from_sums(
            n,
            self.sum_err + other.sum_err,
            self.sum_sig + other.sum_sig,
            self.sum_w + other.sum_w,
            self.max_abs.max(other.max_abs),
            bpw,
        )
    }
}
