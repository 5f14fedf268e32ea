//! Dense f64 linear algebra for GPTQ at real widths: a blocked Cholesky factorization, a blocked
//! lower-triangular inverse and the lazy-update product, with their bulk in `gemm`'s packed
//! kernels. A Hessian of 8,960 columns (Qwen2.5-1.5B's MLP down projection) costs about
//! 2 × n³/3 = 4.8 · 10¹¹ flops to prepare: minutes in scalar loops on one core, seconds here.
//!
//! Matrices are row-major `n × n` slices; "lower" means the lower triangle including the
//! diagonal.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// Rows and columns per block.
const NB: usize = 128;

/// `dst[m × c] = beta_dst · dst − lhs[m × k] · rhs[k × c]`, each given by its first element and
/// its row stride (column stride 1), except `rhs` which may be transposed (`rhs_t`: `rhs[p][j]`
/// is at `rhs + j·rs + p`). `keep`: whether `dst` is read (else it is overwritten).
///
/// # Safety
/// The pointers must address the matrices they describe, `dst` must not overlap the inputs.
#[allow(clippy::too_many_arguments)]
unsafe fn sub_product(
    (m, c, k): (usize, usize, usize),
    dst: *mut f64,
    dst_rs: usize,
    keep: bool,
    lhs: *const f64,
    lhs_rs: usize,
    rhs: *const f64,
    rhs_rs: usize,
    rhs_t: bool,
    par: Parallelism,
) {
    if m == 0 || c == 0 {
        return;
    }
    let (rhs_cs, rhs_rs) = match rhs_t {
        true => (rhs_rs as isize, 1),
        false => (1, rhs_rs as isize),
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm(
            m,
            c,
            k,
            dst,
            1,
            dst_rs as isize,
            keep && k > 0,
            lhs,
            1,
            lhs_rs as isize,
            rhs,
            rhs_cs,
            rhs_rs,
            1.0,
            -1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// `dst[m × c] −= lhs[m × k] · rhs[k × c]` on slices with the given row strides (the lazy
/// batch update of GPTQ), single-threaded (callers run rows in parallel).
pub(crate) fn sub_mul(
    (m, c, k): (usize, usize, usize),
    dst: &mut [f64],
    dst_rs: usize,
    lhs: &[f64],
    lhs_rs: usize,
    rhs: &[f64],
    rhs_rs: usize,
) {
    if m == 0 || c == 0 || k == 0 {
        return;
    }
    assert!(dst.len() >= (m - 1) * dst_rs + c && dst_rs >= c);
    assert!(lhs.len() >= (m - 1) * lhs_rs + k && lhs_rs >= k);
    assert!(rhs.len() >= (k - 1) * rhs_rs + c && rhs_rs >= c);
    // SAFETY: the bounds are checked above; `dst` is borrowed mutably, the inputs shared.
    unsafe {
        sub_product(
            (m, c, k),
            dst.as_mut_ptr(),
            dst_rs,
            true,
            lhs.as_ptr(),
            lhs_rs,
            rhs.as_ptr(),
            rhs_rs,
            false,
            Parallelism::None,
        )
    }
}

/// In-place Cholesky `A = LLᵀ` of the lower triangle of `a` (`n × n` row-major). Entries above
/// the diagonal are overwritten with scratch values. `false` when `A` is not (numerically)
/// positive definite.
pub(crate) fn cholesky_lower(a: &mut [f64], n: usize) -> bool {
    assert_eq!(a.len(), n * n);
    let mut k0 = 0;
    while k0 < n {
        let k1 = (k0 + NB).min(n);
        let b = k1 - k0;
        // the diagonal block, already updated by every earlier panel
        if !cholesky_unblocked(&mut a[k0 * n..k1 * n], n, k0, b) {
            return false;
        }
        if k1 == n {
            break;
        }
        let (top, below) = a.split_at_mut(k1 * n);
        let l11 = &top[k0 * n..];
        // the panel: L21 = A21 L11⁻ᵀ, row by row
        below.par_chunks_mut(n).for_each(|row| {
            let y = &mut row[k0..k1];
            for c in 0..b {
                let lc = &l11[c * n + k0..c * n + k0 + c];
                let s = y[c] - dot(&y[..c], lc);
                y[c] = s / l11[c * n + k0 + c];
            }
        });
        // trailing update A22 −= L21 L21ᵀ, lower blocks only, a block row per task
        let panel: Vec<f64> = below
            .chunks(n)
            .flat_map(|row| row[k0..k1].iter().copied())
            .collect();
        below
            .par_chunks_mut(n * NB)
            .enumerate()
            .for_each(|(ib, rows)| {
                let r0 = ib * NB;
                let m = rows.len() / n;
                let lhs = &panel[r0 * b..];
                // columns k1 .. k1 + r0 + m (through this block's diagonal)
                // SAFETY: `rows` holds `m` rows of `n` from column `k1`, `r0 + m` columns fit
                // (k1 + r0 + m ≤ n); `panel` holds `(n − k1) × b` values; disjoint buffers.
                unsafe {
                    sub_product(
                        (m, r0 + m, b),
                        rows.as_mut_ptr().add(k1),
                        n,
                        true,
                        lhs.as_ptr(),
                        b,
                        panel.as_ptr(),
                        b,
                        true,
                        Parallelism::None,
                    )
                }
            });
        k0 = k1;
    }
    true
}

/// Unblocked Cholesky of the `b × b` diagonal block at rows `rows` (`b` rows of `n`), columns
/// `k0 .. k0 + b`.
fn cholesky_unblocked(rows: &mut [f64], n: usize, k0: usize, b: usize) -> bool {
    for i in 0..b {
        let (done, rest) = rows.split_at_mut(i * n);
        let row_i = &mut rest[k0..k0 + b];
        for j in 0..=i {
            let s = if j < i {
                row_i[j] - dot(&row_i[..j], &done[j * n + k0..j * n + k0 + j])
            } else {
                row_i[i] - dot(&row_i[..i], &row_i[..i])
            };
            if j == i {
                if !(s > 0.0 && s.is_finite()) {
                    return false;
                }
                row_i[i] = s.sqrt();
            } else {
                row_i[j] = s / done[j * n + k0 + j];
            }
        }
    }
    true
}

/// The inverse of the lower-triangular `L` (lower triangle of `l`, `n × n` row-major) as a new
/// lower-triangular matrix (zeros above the diagonal). Block row `i` solves
/// `L_ii X_ij = δ_ij I − Σ_{j ≤ k < i} L_ik X_kj` for every block column `j ≤ i`.
pub(crate) fn lower_inverse(l: &[f64], n: usize) -> Vec<f64> {
    assert_eq!(l.len(), n * n);
    let mut x = vec![0f64; n * n];
    let mut i0 = 0;
    while i0 < n {
        let i1 = (i0 + NB).min(n);
        let b = i1 - i0;
        let (done, rows) = x.split_at_mut(i0 * n);
        let blocks: Vec<usize> = (0..=i0 / NB).collect();
        let solved: Vec<(usize, usize, Vec<f64>)> = blocks
            .into_par_iter()
            .map(|jb| {
                let j0 = jb * NB;
                let j1 = (j0 + NB).min(i1);
                let c = j1 - j0;
                // rhs = δ_ij I − L[i, j0..i0] · X[j0..i0, j0..j1]
                let mut r = vec![0f64; b * c];
                if j0 == i0 {
                    for d in 0..b {
                        r[d * c + d] = 1.0;
                    }
                } else {
                    // SAFETY: `l` rows i0..i1 from column j0 (i0 − j0 columns), `done` rows
                    // j0..i0 from column j0 (c columns), `r` is `b × c`; all in bounds.
                    unsafe {
                        sub_product(
                            (b, c, i0 - j0),
                            r.as_mut_ptr(),
                            c,
                            false,
                            l.as_ptr().add(i0 * n + j0),
                            n,
                            done.as_ptr().add(j0 * n + j0),
                            n,
                            false,
                            Parallelism::None,
                        )
                    }
                }
                // forward substitution with L_ii
                for d in 0..b {
                    let (prev, cur) = r.split_at_mut(d * c);
                    let cur = &mut cur[..c];
                    for s in 0..d {
                        let f = l[(i0 + d) * n + i0 + s];
                        if f != 0.0 {
                            for (v, p) in cur.iter_mut().zip(&prev[s * c..(s + 1) * c]) {
                                *v -= f * p;
                            }
                        }
                    }
                    let diag = l[(i0 + d) * n + i0 + d];
                    for v in cur.iter_mut() {
                        *v /= diag;
                    }
                }
                (j0, c, r)
            })
            .collect();
        for (j0, c, r) in solved {
            for d in 0..b {
                rows[d * n + j0..d * n + j0 + c].copy_from_slice(&r[d * c..(d + 1) * c]);
            }
        }
        // the diagonal block's strict upper part is zero by construction of the solve
        for d in 0..b {
            rows[d * n + i0 + d + 1..d * n + i1].fill(0.0);
        }
        i0 = i1;
    }
    x
}

/// `Σ a_i b_i` with four partial sums (vectorizable).
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            s[k] += x[k] * y[k];
        }
    }
    s[0] + s[1] + s[2] + s[3] + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = crate::rng::Rng::new(seed);
        let a: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
        let mut h = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = (0..n).map(|k| a[k * n + i] * a[k * n + j]).sum::<f64>()
                    + if i == j { n as f64 * 0.1 } else { 0.0 };
            }
        }
        h
    }

    #[test]
    fn blocked_factor_and_inverse_are_exact_across_block_edges() {
        // sizes below, at and across the block size
        for n in [1, 5, NB - 1, NB, NB + 1, 2 * NB + 37] {
            let h = spd(n, n as u64);
            let mut l = h.clone();
            assert!(cholesky_lower(&mut l, n), "n = {n}");
            let mut worst: f64 = 0.0;
            for i in 0..n {
                for j in 0..=i {
                    let s: f64 = (0..=j).map(|k| l[i * n + k] * l[j * n + k]).sum();
                    worst = worst.max((s - h[i * n + j]).abs() / h[i * n + i]);
                }
            }
            assert!(worst < 1e-12, "n = {n}: |LLᵀ − H| = {worst}");
            let x = lower_inverse(&l, n);
            let mut worst: f64 = 0.0;
            for i in 0..n {
                for j in 0..n {
                    if j > i {
                        assert_eq!(x[i * n + j], 0.0);
                        continue;
                    }
                    let s: f64 = (j..=i).map(|k| x[i * n + k] * l[k * n + j]).sum();
                    worst = worst.max((s - if i == j { 1.0 } else { 0.0 }).abs());
                }
            }
            assert!(worst < 1e-10, "n = {n}: |XL − I| = {worst}");
        }
    }

    #[test]
    fn not_positive_definite_is_reported() {
        let n = NB + 3;
        let mut h = spd(n, 1);
        // a negative pivot past the first block
        h[(NB + 1) * n + NB + 1] = -1.0;
        assert!(!cholesky_lower(&mut h, n));
        let mut z = vec![0f64; 4];
        assert!(!cholesky_lower(&mut z, 2));
    }

    #[test]
    fn sub_mul_subtracts_the_product() {
        let (m, c, k) = (3, 4, 5);
        let lhs: Vec<f64> = (0..m * 6).map(|v| v as f64 * 0.5).collect(); // stride 6
        let rhs: Vec<f64> = (0..k * 7).map(|v| (v % 5) as f64 - 1.0).collect(); // stride 7
        let mut dst: Vec<f64> = (0..m * 9).map(|v| v as f64).collect(); // stride 9
        let before = dst.clone();
        sub_mul((m, c, k), &mut dst, 9, &lhs, 6, &rhs, 7);
        for i in 0..m {
            for j in 0..9 {
                let want = if j < c {
                    before[i * 9 + j] - (0..k).map(|p| lhs[i * 6 + p] * rhs[p * 7 + j]).sum::<f64>()
                } else {
                    before[i * 9 + j]
                };
                assert_eq!(dst[i * 9 + j], want, "({i}, {j})");
            }
        }
    }
}
