//! Rotary position embeddings in both layouts, over the first `rot` dimensions of each head.

use tlite_model::arch::RopeLayout;

/// cos/sin tables for positions `pos..pos + n`, each `[n, rot/2]` row-major, computed in f64
/// and rounded to f32.
pub struct Tables {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    /// Rotated dimensions of a head (even).
    pub rot: usize,
}

/// The tables of positions `pos..pos + n` for base `theta`, positions divided by
/// `linear_factor`.
pub fn tables(theta: f64, rot: usize, pos: usize, n: usize, linear_factor: f64) -> Tables {
    let half = rot / 2;
    let inv: Vec<f64> = (0..half)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / rot as f64))
        .collect();
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in pos..pos + n {
        for f in &inv {
            let a = p as f64 / linear_factor * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    Tables { cos, sin, rot }
}

/// Rotates the first `t.rot` dims of every head of `x` (`[heads, n, head_dim]` row-major, the
/// tables' `n` positions) in place: each pair `(a, b)` becomes `(a·cos − b·sin, b·cos + a·sin)`
/// in f32 — pairs `(i, i + rot/2)` half-split, `(2i, 2i + 1)` interleaved.
pub fn apply(x: &mut [f32], head_dim: usize, t: &Tables, layout: RopeLayout) {
    let half = t.rot / 2;
    if half == 0 {
        return;
    }
    let n = t.cos.len() / half;
    for (r, row) in x.chunks_exact_mut(head_dim).enumerate() {
        let p = r % n;
        let (cos, sin) = (&t.cos[p * half..][..half], &t.sin[p * half..][..half]);
        match layout {
            RopeLayout::HalfSplit => {
                let (a, b) = row[..t.rot].split_at_mut(half);
                for i in 0..half {
                    let (x0, x1) = (a[i], b[i]);
                    a[i] = x0 * cos[i] - x1 * sin[i];
                    b[i] = x1 * cos[i] + x0 * sin[i];
                }
            }
            RopeLayout::Interleaved => {
                for (i, pair) in row[..t.rot].chunks_exact_mut(2).enumerate() {
                    let (x0, x1) = (pair[0], pair[1]);
                    pair[0] = x0 * cos[i] - x1 * sin[i];
                    pair[1] = x1 * cos[i] + x0 * sin[i];
                }
            }
        }
    }
}
