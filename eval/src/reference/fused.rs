//! Fused f32 kernels of the forward pass: each reads its input once and writes one new tensor
//! where a chain of candle element-wise ops would allocate and walk a tensor per op (RMSNorm,
//! the split into heads, the causal softmax of attention, SwiGLU). Each element gets the same
//! f32 operations in the same order as the candle chain it replaces; only the sums over a row
//! (RMSNorm's mean square, softmax's denominator) may add in another order.

use candle_core::{Device, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::{RefError, Result};

/// Rows handed to one rayon task.
const ROWS_PER_TASK: usize = 16;

/// Calls `f` with `t`'s values (f32, row-major).
pub(super) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(RefError::Unsupported(
            "the reference runs on the CPU".into(),
        ));
    };
    let start = layout.start_offset();
    Ok(f(
        &cpu.as_slice::<f32>()?[start..start + layout.shape().elem_count()]
    ))
}

fn tensor(v: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// Sum of `x²` in 8 lanes (each square rounded to f32, as candle's `sqr` then `sum`).
fn sum_sq(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l] * c[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for &v in tail {
        s += v * v;
    }
    s
}

/// RMSNorm over the last dimension: `x · 1/sqrt(mean(x²) + eps) · w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let d = w.elem_count();
    let w = w.flatten_all()?.to_vec1::<f32>()?;
    let inv_d = (1.0 / d as f64) as f32;
    let eps = eps as f32;
    let out = with_f32(x, |x| {
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d * ROWS_PER_TASK)
            .zip(x.par_chunks(d * ROWS_PER_TASK))
            .for_each(|(o, x)| {
                for (o, x) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                    let r = 1.0 / (sum_sq(x) * inv_d + eps).sqrt();
                    for ((o, &x), &w) in o.iter_mut().zip(x).zip(&w) {
                        *o = x * r * w;
                    }
                }
            });
        out
    })?;
    tensor(out, x.shape())
}

/// `[n, heads·head_dim]` to `[heads, n, head_dim]`, as values.
pub fn split_heads(y: &Tensor, heads: usize, head_dim: usize) -> Result<Vec<f32>> {
    with_f32(y, |y| {
        let n = y.len() / (heads * head_dim);
        let mut out = vec![0f32; y.len()];
        for (h, oh) in out.chunks_exact_mut(n * head_dim).enumerate() {
            for (i, o) in oh.chunks_exact_mut(head_dim).enumerate() {
                o.copy_from_slice(&y[(i * heads + h) * head_dim..][..head_dim]);
            }
        }
        out
    })
}

/// `[heads, n, head_dim]` values as a tensor of that shape.
pub fn heads_tensor(v: Vec<f32>, heads: usize, head_dim: usize) -> Result<Tensor> {
    let n = v.len() / (heads * head_dim);
    tensor(v, (heads, n, head_dim))
}

/// How attention scores become probabilities.
pub struct CausalSoftmax {
    /// Queries per head; row `r` of the scores is query `r % n`.
    pub n: usize,
    /// Position of the first query.
    pub pos: usize,
    pub scale: f64,
    pub softcap: Option<f64>,
    /// Sliding window: a query sees the last `w` positions, itself included.
    pub window: Option<usize>,
}

impl CausalSoftmax {
    /// Softmax over the visible keys of each row of `scores` (`[.., rows, keys]`): scaled,
    /// soft-capped (`tanh(s/c)·c`), keys after the query or outside its window at probability 0.
    pub fn apply(&self, scores: &Tensor) -> Result<Tensor> {
        let total = scores.dim(candle_core::D::Minus1)?;
        let scale = self.scale as f32;
        let cap = self.softcap.map(|c| ((1.0 / c) as f32, c as f32));
        let out = with_f32(scores, |s| {
            let mut out = vec![0f32; s.len()];
            out.par_chunks_mut(total * ROWS_PER_TASK)
                .zip(s.par_chunks(total * ROWS_PER_TASK))
                .enumerate()
                .for_each(|(t, (o, s))| {
                    let rows = o.chunks_exact_mut(total).zip(s.chunks_exact(total));
                    for (k, (o, s)) in rows.enumerate() {
                        let qi = self.pos + (t * ROWS_PER_TASK + k) % self.n;
                        let lo = self.window.map_or(0, |w| (qi + 1).saturating_sub(w));
                        let hi = (qi + 1).min(total);
                        let (o, s) = (&mut o[lo..hi], &s[lo..hi]);
                        let mut m = f32::NEG_INFINITY;
                        for (o, &s) in o.iter_mut().zip(s) {
                            let mut v = s * scale;
                            if let Some((inv, c)) = cap {
                                v = (v * inv).tanh() * c;
                            }
                            *o = v;
                            m = m.max(v);
                        }
                        let mut sum = 0f32;
                        for o in o.iter_mut() {
                            *o = (*o - m).exp();
                            sum += *o;
                        }
                        for o in o.iter_mut() {
                            *o /= sum;
                        }
                    }
                });
            out
        })?;
        tensor(out, scores.shape())
    }
}

/// SwiGLU's product `silu(g) · u` (`silu(g) = g / (1 + exp(−g))`).
pub fn silu_mul(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    zip_map(g, u, |g, u| g / (1.0 + (-g).exp()) * u)
}

/// `a + b`, element by element.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    zip_map(a, b, |a, b| a + b)
}

/// `f(a, b)` element by element over two tensors of one shape.
fn zip_map(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Result<Tensor> {
    const CHUNK: usize = 1 << 14;
    if a.shape() != b.shape() {
        return Err(RefError::Unsupported(format!(
            "element-wise op on {:?} and {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let out = with_f32(a, |a| {
        with_f32(b, |b| {
            let mut out = vec![0f32; a.len()];
            out.par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                .for_each(|(o, (a, b))| {
                    for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                        *o = f(a, b);
                    }
                });
            out
        })
    })??;
    tensor(out, a.shape())
}
