//! GPTQ against round-to-nearest on synthetic layers with correlated inputs, its exact
//! reduction to round-to-nearest when `H` is diagonal, and its refusals.

use tlite_quantizer::gptq::{self, GptqOptions, output_error};
use tlite_quantizer::rng::Rng;
use tlite_quantizer::{Method, QuantError, Scheme, SchemeKind, TensorParams, fake_quantize};

const ROWS: usize = 48;
const COLS: usize = 128;
const GROUP: usize = 32;

/// `W` (`ROWS × COLS`, Gaussian σ 0.02) and `H = XᵀX` for `X = Z·A·diag(s)`: Gaussian `Z`
/// (1024 samples), a random mixing `A` and log-normal channel scales `s` — correlated inputs of
/// unequal size, as activations are.
fn layer(seed: u64) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let n = 1024;
    let w = rng.gaussian_vec(ROWS * COLS, 0.02);
    let a: Vec<f64> = (0..COLS * COLS)
        .map(|_| rng.normal() / (COLS as f64).sqrt())
        .collect();
    let s: Vec<f64> = (0..COLS).map(|_| (0.8 * rng.normal()).exp()).collect();
    let mut x = vec![0f64; n * COLS];
    let mut z = vec![0f64; COLS];
    for t in 0..n {
        z.iter_mut().for_each(|v| *v = rng.normal());
        for j in 0..COLS {
            let v: f64 = (0..COLS).map(|k| z[k] * a[k * COLS + j]).sum();
            x[t * COLS + j] = v * s[j];
        }
    }
    (w, gram(&x, COLS), x)
}

fn gram(x: &[f64], cols: usize) -> Vec<f64> {
    let mut h = vec![0f64; cols * cols];
    for row in x.chunks(cols) {
        for i in 0..cols {
            for j in 0..cols {
                h[i * cols + j] += row[i] * row[j];
            }
        }
    }
    h
}

fn diag_f32(h: &[f64], cols: usize) -> Vec<f32> {
    (0..cols).map(|i| h[i * cols + i] as f32).collect()
}

/// Relative output error `‖X(W − Ŵ)ᵀ‖² / ‖XWᵀ‖²`.
fn rel_out(w: &[f32], q: &[f32], h: &[f64]) -> f64 {
    let (e, s) = output_error(w, q, ROWS, COLS, h).unwrap();
    e / s
}

fn mse(w: &[f32], q: &[f32]) -> f64 {
    w.iter()
        .zip(q)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum::<f64>()
        / w.len() as f64
}

const SCHEMES: [SchemeKind; 5] = [
    SchemeKind::M0E4(Method::Search),
    SchemeKind::M0E4(Method::MinMax),
    SchemeKind::Int4FloatMin(Method::Search),
    SchemeKind::Int4ZeroPoint,
    SchemeKind::Q4_0,
];

#[test]
fn output_error_is_the_direct_one() {
    let (w, h, x) = layer(1);
    let q = fake_quantize(&SchemeKind::Q4_0, &w, ROWS, COLS, GROUP, None).unwrap();
    let (e, s) = output_error(&w, &q, ROWS, COLS, &h).unwrap();
    // ‖X(W − Ŵ)ᵀ‖² and ‖XWᵀ‖² computed from X itself
    let (mut de, mut ds) = (0f64, 0f64);
    for xr in x.chunks(COLS) {
        for r in 0..ROWS {
            let (mut y, mut dy) = (0f64, 0f64);
            for c in 0..COLS {
                y += xr[c] * f64::from(w[r * COLS + c]);
                dy += xr[c] * (f64::from(w[r * COLS + c]) - f64::from(q[r * COLS + c]));
            }
            ds += y * y;
            de += dy * dy;
        }
    }
    assert!((e - de).abs() <= 1e-9 * de, "{e} vs {de}");
    assert!((s - ds).abs() <= 1e-9 * ds, "{s} vs {ds}");
}

#[test]
fn gptq_beats_round_to_nearest_on_correlated_inputs() {
    for seed in [1, 2] {
        let (w, h, _) = layer(seed);
        let imp = diag_f32(&h, COLS);
        // and the field's formats, each at its own block (Q4_K's 256 is a short super-block)
        for scheme in SCHEMES.into_iter().chain(SchemeKind::FIELD) {
            // the strongest round-to-nearest: weighted by the same diagonal GPTQ's fit uses
            let rtn = fake_quantize(&scheme, &w, ROWS, COLS, GROUP, Some(&imp)).unwrap();
            let plain = fake_quantize(&scheme, &w, ROWS, COLS, GROUP, None).unwrap();
            let q =
                gptq::gptq(&scheme, &w, ROWS, COLS, GROUP, &h, &GptqOptions::default()).unwrap();
            let (eg, er, ep) = (
                rel_out(&w, &q, &h),
                rel_out(&w, &rtn, &h),
                rel_out(&w, &plain, &h),
            );
            println!(
                "seed {seed} {:<14} output error: gptq {eg:.4e}  rtn+imp {er:.4e}  rtn {ep:.4e}  \
                 (gptq/rtn+imp {:.3}); weight mse gptq {:.3e} rtn+imp {:.3e}",
                scheme.name(),
                eg / er,
                mse(&w, &q),
                mse(&w, &rtn)
            );
            assert!(
                eg < 0.9 * er && eg < 0.9 * ep,
                "{}: GPTQ {eg:e} not below round-to-nearest {er:e} / {ep:e}",
                scheme.name()
            );
        }
    }
}

#[test]
fn act_order_runs_and_beats_round_to_nearest() {
    let (w, h, _) = layer(3);
    let imp = diag_f32(&h, COLS);
    for scheme in [SchemeKind::M0E4(Method::Search), SchemeKind::Q4_0] {
        let rtn = fake_quantize(&scheme, &w, ROWS, COLS, GROUP, Some(&imp)).unwrap();
        let er = rel_out(&w, &rtn, &h);
        for static_groups in [false, true] {
            let opts = GptqOptions {
                act_order: true,
                static_groups,
                ..Default::default()
            };
            let q = gptq::gptq(&scheme, &w, ROWS, COLS, GROUP, &h, &opts).unwrap();
            let eg = rel_out(&w, &q, &h);
            println!(
                "{:<14} act-order static_groups={static_groups}: gptq {eg:.4e} rtn+imp {er:.4e}",
                scheme.name()
            );
            assert!(eg < 0.9 * er, "{}: {eg:e} vs {er:e}", scheme.name());
        }
    }
}

#[test]
fn identity_hessian_gives_round_to_nearest_exactly() {
    let mut rng = Rng::new(9);
    let w = rng.student_t_vec(ROWS * COLS, 3, 0.02);
    // any multiple of I: nothing to feed forward, and a constant importance
    let mut h = vec![0f64; COLS * COLS];
    for i in 0..COLS {
        h[i * COLS + i] = 7.0;
    }
    // the constant importance GPTQ's fit sees
    let imp = vec![7f32; COLS];
    for scheme in SchemeKind::ALL {
        let rtn = fake_quantize(&scheme, &w, ROWS, COLS, GROUP, Some(&imp)).unwrap();
        for (act_order, static_groups, block) in [
            (false, false, 128),
            (false, false, 48),
            (true, false, 40),
            (true, true, 7),
        ] {
            let opts = GptqOptions {
                act_order,
                static_groups,
                block,
                ..Default::default()
            };
            let q = gptq::gptq(&scheme, &w, ROWS, COLS, GROUP, &h, &opts).unwrap();
            let diff = q
                .iter()
                .zip(&rtn)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(diff, 0, "{} {opts:?}: {diff} values differ", scheme.name());
        }
    }
}

#[test]
fn lazy_batching_changes_nothing() {
    let (w, h, _) = layer(4);
    let scheme = SchemeKind::M0E4(Method::Search);
    for act_order in [false, true] {
        let run = |block| {
            let opts = GptqOptions {
                act_order,
                block,
                ..Default::default()
            };
            gptq::gptq(&scheme, &w, ROWS, COLS, GROUP, &h, &opts).unwrap()
        };
        // one block (no lazy update), blocks straddling groups, one column per block
        let whole = run(COLS);
        for block in [48, 1] {
            let q = run(block);
            let same = q.iter().zip(&whole).filter(|(a, b)| a == b).count();
            assert!(
                same as f64 >= 0.99 * q.len() as f64,
                "act_order {act_order} block {block}: {same} of {} values agree",
                q.len()
            );
            let (a, b) = (rel_out(&w, &q, &h), rel_out(&w, &whole, &h));
            assert!((a - b).abs() <= 1e-3 * b, "{a} vs {b}");
        }
    }
}

#[test]
fn dead_columns_are_zeroed() {
    let (mut w, _, mut x) = layer(5);
    let dead = [5usize, 77];
    for xr in x.chunks_mut(COLS) {
        for &d in &dead {
            xr[d] = 0.0;
        }
    }
    let h = gram(&x, COLS);
    // a huge weight on an input that is always zero must not spoil its group
    for r in 0..ROWS {
        w[r * COLS + dead[0]] = 5.0;
    }
    let scheme = SchemeKind::M0E4(Method::Search);
    let p = gptq::prepare(&h, COLS, &GptqOptions::default()).unwrap();
    assert_eq!(p.dead_columns, 2);
    let q = gptq::quantize(&scheme, &w, ROWS, COLS, GROUP, &p).unwrap();
    assert!(q.iter().all(|v| v.is_finite()));
    for r in 0..ROWS {
        assert!(
            q[r * COLS + dead[0]].abs() < 0.5,
            "row {r}: the dead weight kept its value"
        );
    }
    let rtn = fake_quantize(&scheme, &w, ROWS, COLS, GROUP, None).unwrap();
    let (eg, er) = (rel_out(&w, &q, &h), rel_out(&w, &rtn, &h));
    assert!(eg < 0.5 * er, "{eg:e} vs {er:e}");
}

/// A scheme that cannot round onto a fixed grid (the trait's default `fit_grid`).
struct NoGrid;

impl Scheme for NoGrid {
    fn name(&self) -> String {
        "no-grid".into()
    }
    fn bits_per_weight(&self, _: usize) -> f64 {
        4.0
    }
    fn quantize_group(&self, x: &[f32], _: Option<&[f32]>, out: &mut [f32]) {
        out.copy_from_slice(x);
    }
}

#[test]
fn bad_inputs_are_refused() {
    let n = 16;
    let w = vec![0.01f32; 4 * n];
    let s = SchemeKind::Q4_0;
    let opts = GptqOptions::default();
    let eye = |scale: f64| {
        let mut h = vec![0f64; n * n];
        for i in 0..n {
            h[i * n + i] = scale;
        }
        h
    };
    // indefinite: the pair (0, 1) has eigenvalues 51 and −49, far beyond 10·mean(diag)
    let mut h = eye(1.0);
    h[1] = 50.0;
    h[n] = 50.0;
    assert!(matches!(
        gptq::gptq(&s, &w, 4, n, 8, &h, &opts),
        Err(QuantError::NotPositiveDefinite { tries: 4, .. })
    ));
    // slightly indefinite (eigenvalue −0.02): more damping fixes it
    let mut h = eye(1.0);
    h[1] = 1.02;
    h[n] = 1.02;
    let p = gptq::prepare(&h, n, &opts).unwrap();
    assert!(p.percdamp_used > opts.percdamp);
    // negative diagonal
    assert!(matches!(
        gptq::prepare(&eye(-1.0), n, &opts),
        Err(QuantError::NotPositiveDefinite { .. })
    ));
    let mut h = eye(1.0);
    h[3 * n + 2] = f64::NAN;
    assert!(matches!(
        gptq::prepare(&h, n, &opts),
        Err(QuantError::NonFiniteHessian { row: 3, col: 2, .. })
    ));
    assert!(matches!(
        gptq::gptq(&s, &w, 4, n, 8, &eye(1.0)[1..], &opts),
        Err(QuantError::Shape { .. })
    ));
    assert!(matches!(
        gptq::gptq(&s, &w, 5, n, 8, &eye(1.0), &opts),
        Err(QuantError::Shape { .. })
    ));
    let mut bad = w.clone();
    bad[n + 3] = f32::INFINITY;
    assert!(matches!(
        gptq::gptq(&s, &bad, 4, n, 8, &eye(1.0), &opts),
        Err(QuantError::NonFinite { row: 1, col: 3, .. })
    ));
    let p = gptq::prepare(&eye(1.0), n, &opts).unwrap();
    assert!(matches!(
        gptq::quantize(&s, &w[..2 * n], 2, n, 8, &p),
        Ok(q) if q.len() == 2 * n
    ));
    assert!(matches!(
        gptq::quantize(&s, &w[..8], 1, 8, 8, &p),
        Err(QuantError::Shape { .. })
    ));
    assert!(matches!(
        gptq::quantize(&NoGrid, &w, 4, n, 8, &p),
        Err(QuantError::GptqUnsupported { .. })
    ));
    for bad in [
        GptqOptions {
            percdamp: 0.0,
            ..opts
        },
        GptqOptions {
            percdamp: f64::NAN,
            ..opts
        },
        GptqOptions { block: 0, ..opts },
    ] {
        assert!(matches!(
            gptq::prepare(&eye(1.0), n, &bad),
            Err(QuantError::GptqOption(_))
        ));
    }
}

#[test]
fn fitted_grids_reproduce_quantize_block() {
    let mut rng = Rng::new(11);
    for scheme in SchemeKind::ALL {
        for trial in 0..50 {
            // a free group size, or the format's block (whole, or short at a row's end)
            let g = match scheme.native_format() {
                Some((block, _)) if trial % 5 == 4 => block / 2 + 3,
                Some((block, _)) => block,
                None => 8 * (1 + trial % 8),
            };
            let x = rng.student_t_vec(g, 3, 0.02);
            let imp: Vec<f32> = (0..g).map(|_| rng.uniform() as f32 + 0.01).collect();
            // the block's own tensor parameters, or a wider matrix's (NVFP4's tensor scale)
            let wide: Vec<f32> = x.iter().map(|v| 3.0 * v).collect();
            for tensor in [TensorParams::default(), scheme.fit_tensor(&wide)] {
                for imp in [None, Some(imp.as_slice())] {
                    let mut want = vec![0f32; g];
                    scheme.quantize_block(&x, imp, &tensor, &mut want);
                    let grid = scheme
                        .fit_grid(&x, imp, &tensor)
                        .expect("every scheme has a grid");
                    let got: Vec<f32> = (x.iter().enumerate())
                        .map(|(i, &v)| grid.round(i, v))
                        .collect();
                    assert_eq!(got, want, "{} g={g} {tensor:?}", scheme.name());
                }
            }
        }
    }
}
