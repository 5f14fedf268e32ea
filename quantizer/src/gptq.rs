//! GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
//! Pre-trained Transformers"): quantize a linear layer's weights column by column, feeding each
//! column's rounding error forward onto the columns not yet quantized so that the layer's
//! *output* error `‖X Wᵀ − X Ŵᵀ‖²` is small, given `H = XᵀX` over calibration inputs `X`.
//!
//! `W` is `[rows, cols]` (rows = outputs, cols = inputs, groups along cols, as everywhere in this
//! crate). The steps follow the reference implementation (`gptq.py`, `fasterquant`):
//!
//! 1. Dead inputs (`H_ii = 0`: the channel was always zero) get `W[:, i] = 0` and `H_ii = 1`.
//! 2. With act-order, columns are processed by descending `H_ii`.
//! 3. Damping `λ = percdamp · mean(diag H)` is added to the diagonal. If `H + λI` is still not
//!    positive definite, `percdamp` is multiplied by 10, up to [`DAMP_RETRIES`] times, then
//!    [`QuantError::NotPositiveDefinite`].
//! 4. `U` = upper Cholesky factor of `H⁻¹` (`H⁻¹ = UᵀU`), computed as the inverse of the
//!    "reversed" Cholesky factor of `H`: with `J` the reversal, `JHJ = LLᵀ` gives `H = VVᵀ`,
//!    `V = JLJ` upper, so `H⁻¹ = (V⁻¹)ᵀV⁻¹` and `U = V⁻¹ = J L⁻¹ J` (one factorization and one
//!    triangular inverse instead of the reference's three steps).
//! 5. Columns in blocks of `block`: column `a` is rounded onto its group's grid, `e = (w_a −
//!    q_a) / U_aa`, and `w_j −= e U_aj` for the later columns of the block; after the block, the
//!    columns after it get all of the block's errors at once (lazy batch update).
//!
//! **Groups** are always contiguous runs of `group` columns in the *original* order — the
//! layout every format here stores (no per-column group index). A group's grid is fitted by the
//! scheme's own fit ([`Scheme::fit_grid`]: min/max or search) with `diag H` as the per-column
//! importance (dead columns 0), when the first of its columns is reached, on the *current*
//! values of all its columns (every error fed forward so far, including the pending part of the
//! lazy update, is applied first). Without act-order this is the reference's behaviour; with
//! act-order a group's columns are scattered through the processing order, so its grid is
//! fitted when its most important column comes up. With `static_groups` every grid is fitted
//! up front on the original weights instead (the reference's `--static-groups`).
//! The reference's default act-order (groups of consecutive *permuted* columns) would need a
//! per-column group index that no format here stores, so it is not offered.
//!
//! Every row of `W` is independent (its groups and its error feedback stay in the row), so rows
//! run in parallel. Note that GPTQ *raises* the plain weight MSE (it moves error onto the
//! directions `X` does not excite); judge it by [`output_error`].

use rayon::prelude::*;

use crate::linalg::{self, cholesky_lower, dot, lower_inverse};
use crate::scheme::{GroupGrid, Scheme, TensorParams, check_matrix};
use crate::{QuantError, Result};

/// Times the damping is multiplied by ten after a failed factorization before giving up.
pub const DAMP_RETRIES: usize = 3;

/// Rows quantized together: each row of `U` is read once per this many rows.
const ROW_CHUNK: usize = 16;

/// The knobs of GPTQ; [`Default`] is the reference's (`percdamp` 0.01, blocks of 128, no
/// act-order).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GptqOptions {
    /// Damping as a fraction of the mean diagonal of `H`.
    pub percdamp: f64,
    /// Columns per lazy-update block.
    pub block: usize,
    /// Process columns by descending `H_ii`.
    pub act_order: bool,
    /// Fit every group's grid up front on the original weights (only matters with act-order).
    pub static_groups: bool,
}

impl Default for GptqOptions {
    fn default() -> Self {
        GptqOptions {
            percdamp: 0.01,
            block: 128,
            act_order: false,
            static_groups: false,
        }
    }
}

impl GptqOptions {
    fn check(&self) -> Result<()> {
        if !(self.percdamp.is_finite() && self.percdamp > 0.0) {
            return Err(QuantError::GptqOption(format!(
                "damping {} must be a positive number (0.01 is usual)",
                self.percdamp
            )));
        }
        if self.block == 0 {
            return Err(QuantError::GptqOption(
                "block size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What GPTQ needs from `H`, computed once per input site and shared by every matrix that reads
/// the same input (e.g. q, k and v).
#[derive(Clone, Debug)]
pub struct Prepared {
    cols: usize,
    opts: GptqOptions,
    /// Upper Cholesky factor of `(H + λI)⁻¹` in processing order, `cols × cols` row-major.
    u: Vec<f64>,
    /// Processing position → original column.
    perm: Vec<usize>,
    /// Original column → processing position.
    pos: Vec<usize>,
    /// `H_ii` per original column (0 for dead columns): the group fit's importance.
    imp: Vec<f32>,
    dead: Vec<bool>,
    /// The `percdamp` that succeeded (the option's, or a multiple after retries).
    pub percdamp_used: f64,
    /// Columns with `H_ii = 0`.
    pub dead_columns: usize,
}

impl Prepared {
    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Checks `h` (`cols × cols`, symmetric; only the lower triangle is read) and factors it.
pub fn prepare(h: &[f64], cols: usize, opts: &GptqOptions) -> Result<Prepared> {
    opts.check()?;
    if h.len() != cols * cols {
        return Err(QuantError::Shape {
            what: "Hessian (cols × cols)",
            expected: cols * cols,
            found: h.len(),
        });
    }
    if let Some(i) = h.iter().position(|v| !v.is_finite()) {
        return Err(QuantError::NonFiniteHessian {
            row: i / cols,
            col: i % cols,
            value: h[i],
        });
    }
    let n = cols;
    let dead: Vec<bool> = (0..n).map(|i| h[i * n + i] == 0.0).collect();
    let diag: Vec<f64> = (0..n)
        .map(|i| if dead[i] { 1.0 } else { h[i * n + i] })
        .collect();
    let mut perm: Vec<usize> = (0..n).collect();
    if opts.act_order {
        // stable: equal diagonals keep their order
        perm.sort_by(|&a, &b| diag[b].total_cmp(&diag[a]));
    }
    let mut pos = vec![0usize; n];
    for (a, &c) in perm.iter().enumerate() {
        pos[c] = a;
    }
    let mean_diag = diag.iter().sum::<f64>() / n.max(1) as f64;
    let mut percdamp = opts.percdamp;
    let mut tries = 0;
    let linv = loop {
        tries += 1;
        let damp = percdamp * mean_diag;
        // M = J P H Pᵀ J + λI: reversed processing order
        let mut m = vec![0f64; n * n];
        for a in 0..n {
            let ca = perm[n - 1 - a];
            for b in 0..=a {
                let cb = perm[n - 1 - b];
                let v = if ca == cb {
                    diag[ca] + damp
                } else if dead[ca] || dead[cb] {
                    0.0
                } else {
                    // the lower triangle of the original
                    h[ca.max(cb) * n + ca.min(cb)]
                };
                m[a * n + b] = v;
            }
        }
        if mean_diag > 0.0 && cholesky_lower(&mut m, n) {
            break lower_inverse(&m, n);
        }
        if tries > DAMP_RETRIES {
            return Err(QuantError::NotPositiveDefinite {
                cols: n,
                damp: percdamp,
                tries,
            });
        }
        percdamp *= 10.0;
    };
    // U = J L⁻¹ J
    let mut u = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            u[i * n + j] = linv[(n - 1 - i) * n + (n - 1 - j)];
        }
    }
    let imp = (0..n)
        .map(|i| if dead[i] { 0.0 } else { h[i * n + i] as f32 })
        .collect();
    Ok(Prepared {
        cols: n,
        opts: *opts,
        u,
        perm,
        pos,
        imp,
        dead_columns: dead.iter().filter(|&&d| d).count(),
        dead,
        percdamp_used: percdamp,
    })
}

/// GPTQ-quantizes (and dequantizes) a `[rows, cols]` matrix with `scheme` at `group` given `H`.
pub fn gptq(
    scheme: &dyn Scheme,
    w: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    h: &[f64],
    opts: &GptqOptions,
) -> Result<Vec<f32>> {
    check_matrix(w, rows, cols, group, None)?;
    let p = prepare(h, cols, opts)?;
    quantize(scheme, w, rows, cols, group, &p)
}

/// GPTQ with an already prepared `H` (see [`prepare`]).
pub fn quantize(
    scheme: &dyn Scheme,
    w: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    p: &Prepared,
) -> Result<Vec<f32>> {
    // a format with its own block quantizes in that block whatever group is asked for
    let group = scheme.block_size(group);
    check_matrix(w, rows, cols, group, None)?;
    if p.cols != cols {
        return Err(QuantError::Shape {
            what: "Hessian columns (the weight's input columns)",
            expected: cols,
            found: p.cols,
        });
    }
    if !scheme.has_grid() {
        return Err(QuantError::GptqUnsupported {
            scheme: scheme.name(),
        });
    }
    let mut out = vec![0f32; w.len()];
    if w.is_empty() {
        return Ok(out);
    }
    // parameters of the whole matrix (NVFP4's tensor scale) from the original weights
    let tensor = scheme.fit_tensor(w);
    out.par_chunks_mut(cols * ROW_CHUNK)
        .zip(w.par_chunks(cols * ROW_CHUNK))
        .try_for_each(|(o, x)| quantize_rows(scheme, x, o, group, &tensor, p))?;
    Ok(out)
}

/// GPTQ on a few whole rows (`x.len() / cols` of them).
fn quantize_rows(
    scheme: &dyn Scheme,
    x: &[f32],
    out: &mut [f32],
    group: usize,
    tensor: &TensorParams,
    p: &Prepared,
) -> Result<()> {
    let n = p.cols;
    let nr = x.len() / n;
    let ngroups = n.div_ceil(group);
    let block = p.opts.block.min(n);
    let cols_of = |g: usize| g * group..((g + 1) * group).min(n);
    let fit = |vals: &[f32], g: usize| {
        scheme
            .fit_grid(vals, Some(&p.imp[cols_of(g)]), tensor)
            .ok_or_else(|| QuantError::GptqUnsupported {
                scheme: scheme.name(),
            })
    };
    // working rows in processing order, dead columns zeroed
    let mut work = vec![0f64; nr * n];
    for r in 0..nr {
        for (a, &c) in p.perm.iter().enumerate() {
            if !p.dead[c] {
                work[r * n + a] = f64::from(x[r * n + c]);
            }
        }
    }
    let mut grids: Vec<Option<Box<dyn GroupGrid>>> = (0..nr * ngroups).map(|_| None).collect();
    let mut vals = vec![0f32; group];
    if p.opts.static_groups {
        for r in 0..nr {
            for g in 0..ngroups {
                let cs = cols_of(g);
                for (v, c) in vals.iter_mut().zip(cs.clone()) {
                    *v = if p.dead[c] { 0.0 } else { x[r * n + c] };
                }
                grids[r * ngroups + g] = Some(fit(&vals[..cs.len()], g)?);
            }
        }
    }
    let mut err = vec![0f64; nr * block];
    let mut i1 = 0;
    while i1 < n {
        let i2 = (i1 + block).min(n);
        for a in i1..i2 {
            let c = p.perm[a];
            let g = c / group;
            let urow = &p.u[a * n..(a + 1) * n];
            let d = urow[a];
            for r in 0..nr {
                let wr = &mut work[r * n..(r + 1) * n];
                let er = &mut err[r * block..(r + 1) * block];
                let slot = &mut grids[r * ngroups + g];
                let grid = match slot {
                    Some(grid) => grid,
                    None => {
                        // the group's current values: columns in this block are up to date;
                        // later ones still lack this block's errors so far
                        let cs = cols_of(g);
                        for (v, cc) in vals.iter_mut().zip(cs.clone()) {
                            let b = p.pos[cc];
                            let mut cur = wr[b];
                            if b >= i2 {
                                for k in i1..a {
                                    cur -= er[k - i1] * p.u[k * n + b];
                                }
                            }
                            *v = cur as f32;
                        }
                        slot.insert(fit(&vals[..cs.len()], g)?)
                    }
                };
                let q = grid.round(c - g * group, wr[a] as f32);
                out[r * n + c] = q;
                let e = (wr[a] - f64::from(q)) / d;
                er[a - i1] = e;
                for (wj, uj) in wr[a + 1..i2].iter_mut().zip(&urow[a + 1..i2]) {
                    *wj -= e * uj;
                }
            }
        }
        if i2 < n {
            let (k, c) = (i2 - i1, n - i2);
            let u = &p.u[i1 * n + i2..];
            linalg::sub_mul((nr, c, k), &mut work[i2..], n, &err, block, u, n);
        }
        i1 = i2;
    }
    Ok(())
}

/// `Σ_r (w_r − ŵ_r)ᵀ H (w_r − ŵ_r)` and `Σ_r w_rᵀ H w_r`: the layer's output error
/// `‖X(W − Ŵ)ᵀ‖²` and output energy `‖XWᵀ‖²` over the calibration inputs, from `H = XᵀX`.
pub fn output_error(
    w: &[f32],
    w_hat: &[f32],
    rows: usize,
    cols: usize,
    h: &[f64],
) -> Result<(f64, f64)> {
    for (what, len, want) in [
        ("weights (rows × cols)", w.len(), rows * cols),
        ("quantized weights (rows × cols)", w_hat.len(), rows * cols),
        ("Hessian (cols × cols)", h.len(), cols * cols),
    ] {
        if len != want {
            return Err(QuantError::Shape {
                what,
                expected: want,
                found: len,
            });
        }
    }
    if cols == 0 {
        return Ok((0.0, 0.0));
    }
    let quad = |v: &[f64]| -> f64 {
        h.chunks(cols)
            .zip(v)
            .map(|(hr, &vi)| vi * dot(hr, v))
            .sum::<f64>()
    };
    Ok(w.par_chunks(cols)
        .zip(w_hat.par_chunks(cols))
        .map(|(a, b)| {
            let wr: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
            let er: Vec<f64> = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| f64::from(x) - f64::from(y))
                .collect();
            (quad(&er), quad(&wr))
        })
        .reduce(|| (0.0, 0.0), |x, y| (x.0 + y.0, x.1 + y.1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_is_the_upper_cholesky_of_the_inverse() {
        let n = 23;
        let mut rng = crate::rng::Rng::new(3);
        let a: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
        // H = AᵀA + I, symmetric positive definite
        let mut h = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = (0..n).map(|k| a[k * n + i] * a[k * n + j]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let opts = GptqOptions {
            percdamp: 1e-12,
            ..Default::default()
        };
        let p = prepare(&h, n, &opts).unwrap();
        // UᵀU H = I, U upper with a positive diagonal
        let mut worst = 0f64;
        for i in 0..n {
            assert!(p.u[i * n + i] > 0.0);
            for j in 0..i {
                assert_eq!(p.u[i * n + j], 0.0);
            }
            for j in 0..n {
                let mut s = 0.0;
                for k in 0..n {
                    let uu: f64 = (0..n).map(|m| p.u[m * n + i] * p.u[m * n + k]).sum();
                    s += uu * h[k * n + j];
                }
                worst = worst.max((s - if i == j { 1.0 } else { 0.0 }).abs());
            }
        }
        assert!(worst < 1e-8, "|UᵀU H − I| = {worst}");
    }
}
