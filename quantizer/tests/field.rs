//! The field's 4-bit formats (MXFP4, NVFP4, NF4, IQ4_NL, Q4_K) through `fake_quantize`: their
//! own blocks and bits, every output a level of its block's grid as the bit-level decoders give
//! it (and within half a step of the input), short last blocks, zeros, importance, bad input.
//! Each block's grid is rebuilt here from its stored parameters with the decoders
//! (`e2m1_decode · e8m0_decode`, `e4m3_decode`, table lookups, `SuperBlock::decode`).

use tlite_quantizer::fp4::{self, e2m1_decode, e4m3_decode, e8m0_decode};
use tlite_quantizer::kquant::{self, SuperBlock};
use tlite_quantizer::lut::{self, IQ4_NL, NF4, table_decode};
use tlite_quantizer::rng::Rng;
use tlite_quantizer::{Method, QuantError, Scheme, SchemeKind, fake_quantize, matrix_bits};

/// A shape no native block divides: 600 = 2 · 256 + 88 = 18 · 32 + 24 = 9 · 64 + 24 = 37 · 16 + 8.
const ROWS: usize = 12;
const COLS: usize = 600;

fn matrices() -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = Rng::new(0x5EED_F0F4);
    vec![
        ("gaussian", rng.gaussian_vec(ROWS * COLS, 0.02)),
        ("student-t3", rng.student_t_vec(ROWS * COLS, 3, 0.02)),
    ]
}

fn importance(cols: usize) -> Vec<f32> {
    let mut rng = Rng::new(77);
    (0..cols)
        .map(|_| (rng.student_t(2).abs() as f32).powi(2) + 1e-3)
        .collect()
}

/// The 16 decoded values of each native block of `x` (one row), from the stored parameters
/// the module fits, through the bit-level decoders; one entry per element.
fn grids_of_row(kind: SchemeKind, x: &[f32], imp: Option<&[f32]>, global: f32) -> Vec<Vec<f32>> {
    let (block, _) = kind.native_format().expect("a field format");
    let mut per_element = Vec::with_capacity(x.len());
    for (b, xb) in x.chunks(block).enumerate() {
        let ib = imp.map(|w| &w[b * block..b * block + xb.len()]);
        match kind {
            SchemeKind::Mxfp4(m) => {
                let (code, _) = fp4::mxfp4_fit(xb, ib, m);
                let g: Vec<f32> = (0..16)
                    .map(|c| e2m1_decode(c) * e8m0_decode(code))
                    .collect();
                per_element.extend(std::iter::repeat_n(g, xb.len()));
            }
            SchemeKind::Nvfp4(m) => {
                let (code, _) = fp4::nvfp4_fit(xb, ib, m, global);
                let s = e4m3_decode(code) * global;
                let g: Vec<f32> = (0..16).map(|c| e2m1_decode(c) * s).collect();
                per_element.extend(std::iter::repeat_n(g, xb.len()));
            }
            SchemeKind::Nf4(m) => {
                let d = lut::nf4_fit(xb, ib, m);
                let g: Vec<f32> = (0..16).map(|c| table_decode(&NF4, d, c)).collect();
                per_element.extend(std::iter::repeat_n(g, xb.len()));
            }
            SchemeKind::Iq4Nl => {
                let d = lut::iq4_nl_fit(xb, ib);
                let g: Vec<f32> = (0..16).map(|c| table_decode(&IQ4_NL, d, c)).collect();
                per_element.extend(std::iter::repeat_n(g, xb.len()));
            }
            SchemeKind::Q4K => {
                let sb = SuperBlock::fit(xb, ib);
                for (j, xs) in xb.chunks(kquant::SUB_BLOCK).enumerate() {
                    let g: Vec<f32> = (0..16).map(|q| sb.decode(j, q)).collect();
                    per_element.extend(std::iter::repeat_n(g, xs.len()));
                }
            }
            other => panic!("{} is not a field format", other.name()),
        }
    }
    per_element
}

/// `y` is a value of `grid` nearest to `x`, and within half the grid step around `x` (or the
/// grid's end when `x` lies outside it).
fn check_nearest_within_half_step(what: &str, x: f32, y: f32, grid: &[f32]) {
    assert!(grid.contains(&y), "{what}: {y} is not a level of {grid:?}");
    let best = grid
        .iter()
        .map(|g| (g - x).abs())
        .fold(f32::INFINITY, f32::min);
    assert!(
        (y - x).abs() <= best,
        "{what}: {x} → {y}, a level {best} away exists"
    );
    let lo = grid.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = grid.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if x <= lo {
        assert_eq!(y, lo, "{what}: {x} below the grid");
    } else if x >= hi {
        assert_eq!(y, hi, "{what}: {x} above the grid");
    } else {
        let below = grid.iter().copied().filter(|&g| g <= x).fold(lo, f32::max);
        let above = grid.iter().copied().filter(|&g| g >= x).fold(hi, f32::min);
        let half = 0.5 * (above - below);
        assert!(
            (y - x).abs() <= half * (1.0 + 1e-6),
            "{what}: {x} → {y} beyond half the step {below}..{above}"
        );
    }
}

#[test]
fn field_formats_have_their_own_blocks_and_bits() {
    let want = [
        ("mxfp4", 32, 4.25),
        ("mxfp4-search", 32, 4.25),
        ("nvfp4", 16, 4.5),
        ("nvfp4-search", 16, 4.5),
        ("nf4", 64, 4.5),
        ("nf4-search", 64, 4.5),
        ("iq4_nl", 32, 4.5),
        ("q4_k", 256, 4.5),
    ];
    assert_eq!(SchemeKind::FIELD.len(), want.len());
    for (kind, (name, block, bpw)) in SchemeKind::FIELD.into_iter().zip(want) {
        assert_eq!(kind.name(), name);
        assert_eq!(SchemeKind::parse(name), Some(kind));
        for g in [32, 64, 128] {
            assert_eq!(kind.block_size(g), block, "{name} at g={g}");
            assert_eq!(kind.bits_per_weight(g), bpw, "{name} at g={g}");
        }
        // a short last block pays for a whole one: 2 rows of 600
        let blocks = 2 * COLS.div_ceil(block);
        let bits = 2.0 * COLS as f64 * 4.0 + blocks as f64 * (bpw - 4.0) * block as f64;
        assert_eq!(matrix_bits(&kind, 2, COLS, 64), bits, "{name}");
    }
    // the free-group schemes keep the caller's group
    assert_eq!(SchemeKind::Q4_0.block_size(128), 128);
    assert_eq!(
        matrix_bits(&SchemeKind::M0E4(Method::Search), 1, 576, 128),
        4.0 * 576.0 + 5.0 * 32.0
    );
    for kind in SchemeKind::ALL {
        assert_eq!(SchemeKind::parse(&kind.name()), Some(kind));
    }
    assert_eq!(SchemeKind::parse("q4_k@256"), None);
}

#[test]
fn outputs_are_nearest_levels_of_each_blocks_decoded_grid() {
    let imp = importance(COLS);
    for (dist, x) in matrices() {
        for kind in SchemeKind::FIELD {
            for imp in [None, Some(imp.as_slice())] {
                let y = fake_quantize(&kind, &x, ROWS, COLS, 64, imp).unwrap();
                let global = fp4::nvfp4_tensor_scale(&x);
                for r in 0..ROWS {
                    let row = &x[r * COLS..(r + 1) * COLS];
                    let grids = grids_of_row(kind, row, imp, global);
                    for (c, grid) in grids.iter().enumerate() {
                        let what =
                            format!("{} {dist} imp={} [{r}, {c}]", kind.name(), imp.is_some());
                        check_nearest_within_half_step(&what, row[c], y[r * COLS + c], grid);
                    }
                }
            }
        }
    }
}

#[test]
fn mxfp4_ocp_error_is_at_most_one_scale_unit_below_saturation() {
    // E2M1's largest gap is 2 (between 4 and 6): half of it times the block scale bounds the
    // error of every element of magnitude ≤ 6 · scale; above, the element saturates to 6 · scale.
    for (dist, x) in matrices() {
        let y =
            fake_quantize(&SchemeKind::Mxfp4(Method::MinMax), &x, ROWS, COLS, 64, None).unwrap();
        for (r, (xr, yr)) in x.chunks(COLS).zip(y.chunks(COLS)).enumerate() {
            for (b, (xb, yb)) in xr.chunks(32).zip(yr.chunks(32)).enumerate() {
                let scale = e8m0_decode(fp4::mxfp4_ocp_scale(xb));
                for (&a, &q) in xb.iter().zip(yb) {
                    if a.abs() <= 6.0 * scale {
                        assert!(
                            (a - q).abs() <= scale,
                            "{dist} row {r} block {b}: {a} → {q}"
                        );
                    } else {
                        assert_eq!(q, 6.0 * scale * a.signum(), "{dist}: {a} saturates");
                    }
                }
            }
        }
    }
}

#[test]
fn short_last_blocks_are_quantized_on_their_own() {
    let imp = importance(COLS);
    let (_, x) = &matrices()[1];
    for kind in SchemeKind::FIELD {
        let y = fake_quantize(&kind, x, ROWS, COLS, 64, Some(&imp)).unwrap();
        let block = kind.block_size(64);
        let tensor = kind.fit_tensor(x);
        let tail = COLS % block;
        assert!(tail > 0, "{}: 600 is a multiple of {block}", kind.name());
        for r in 0..ROWS {
            let (xr, yr) = (&x[r * COLS..(r + 1) * COLS], &y[r * COLS..(r + 1) * COLS]);
            let mut out = vec![0.0; tail];
            kind.quantize_block(
                &xr[COLS - tail..],
                Some(&imp[COLS - tail..]),
                &tensor,
                &mut out,
            );
            assert_eq!(out, &yr[COLS - tail..], "{} row {r}", kind.name());
        }
        // the caller's group does not matter to a format with its own block
        let y128 = fake_quantize(&kind, x, ROWS, COLS, 128, Some(&imp)).unwrap();
        assert_eq!(y, y128, "{}", kind.name());
    }
}

#[test]
fn zero_blocks_give_zeros() {
    let mut rng = Rng::new(5);
    let mut x = rng.gaussian_vec(4 * 512, 0.02);
    // row 1 all zero; row 2 zero in its first 64 (a whole block of every format but Q4_K's,
    // two whole Q4_K sub-blocks)
    x[512..1024].fill(0.0);
    x[1024..1088].fill(0.0);
    for kind in SchemeKind::FIELD {
        let y = fake_quantize(&kind, &x, 4, 512, 64, None).unwrap();
        assert!(y[512..1088].iter().all(|&v| v == 0.0), "{}", kind.name());
        assert!(y[..512].iter().any(|&v| v != 0.0), "{}", kind.name());
        let z = fake_quantize(&kind, &[0.0; 512], 2, 256, 64, None).unwrap();
        assert!(z.iter().all(|&v| v == 0.0), "{}", kind.name());
    }
}

#[test]
fn nvfp4_block_scales_are_relative_to_the_tensor() {
    // The same block in a tensor with a larger amax gets a coarser E4M3 scale step: its output
    // depends on the tensor, which quantize_group (a group alone) cannot see.
    let mut rng = Rng::new(9);
    let mut x = rng.gaussian_vec(2 * 64, 0.02);
    x[64] = 1000.0;
    let kind = SchemeKind::Nvfp4(Method::MinMax);
    let t = kind.fit_tensor(&x);
    assert_eq!(t.global_scale, Some(1000.0 / 2688.0));
    let whole = fake_quantize(&kind, &x, 2, 64, 64, None).unwrap();
    let mut alone = vec![0.0; 64];
    kind.quantize_group(&x[..64], None, &mut alone);
    let first_row = fake_quantize(&kind, &x[..64], 1, 64, 64, None).unwrap();
    assert_eq!(alone, first_row);
    assert_ne!(&whole[..64], &alone[..], "the tensor scale had no effect");
}

/// Σ imp (x - y)² over a `[rows, cols]` matrix.
fn weighted_error(x: &[f32], y: &[f32], imp: &[f32]) -> f64 {
    x.iter()
        .zip(y)
        .enumerate()
        .map(|(i, (a, b))| f64::from(imp[i % imp.len()]) * f64::from(a - b).powi(2))
        .sum()
}

#[test]
fn importance_lowers_weighted_error_of_the_searched_formats() {
    let (rows, cols) = (64, 512);
    let x = Rng::new(31).student_t_vec(rows * cols, 3, 0.02);
    let imp = importance(cols);
    let searched = [
        SchemeKind::Mxfp4(Method::Search),
        SchemeKind::Nvfp4(Method::Search),
        SchemeKind::Nf4(Method::Search),
        SchemeKind::Iq4Nl,
        SchemeKind::Q4K,
    ];
    for kind in searched {
        let plain = fake_quantize(&kind, &x, rows, cols, 64, None).unwrap();
        let weighted = fake_quantize(&kind, &x, rows, cols, 64, Some(&imp)).unwrap();
        let (ep, ew) = (
            weighted_error(&x, &plain, &imp),
            weighted_error(&x, &weighted, &imp),
        );
        assert!(
            ew < ep,
            "{}: weighted {ew} not below plain {ep}",
            kind.name()
        );
    }
    // The formats' own rules have no choice to make: importance changes nothing.
    let with_rule: [fn(Method) -> SchemeKind; 3] =
        [SchemeKind::Mxfp4, SchemeKind::Nvfp4, SchemeKind::Nf4];
    for kind in with_rule.map(|make| make(Method::MinMax)) {
        let plain = fake_quantize(&kind, &x, rows, cols, 64, None).unwrap();
        let weighted = fake_quantize(&kind, &x, rows, cols, 64, Some(&imp)).unwrap();
        assert_eq!(plain, weighted, "{}", kind.name());
    }
}

#[test]
fn importance_moves_the_mxfp4_exponent_on_a_constructed_block() {
    // 7.5 and 31 × 0.4. Unweighted, 2^0 wins: 7.5 → 6 (1.5² = 2.25) and 0.4 → 0.5 (31 · 0.01)
    // = 2.56, against 2^1: 7.5 → 8 (0.25) and 0.4 → 0 (31 · 0.16) = 5.21. With the first
    // element 100 times as important, 2^1 wins: 25 + 4.96 against 225 + 0.31.
    let mut x = [0.4f32; 32];
    x[0] = 7.5;
    let mut imp = [1.0f32; 32];
    imp[0] = 100.0;
    let kind = SchemeKind::Mxfp4(Method::Search);
    let plain = fake_quantize(&kind, &x, 1, 32, 32, None).unwrap();
    let weighted = fake_quantize(&kind, &x, 1, 32, 32, Some(&imp)).unwrap();
    assert_eq!((plain[0], plain[1]), (6.0, 0.5));
    assert_eq!((weighted[0], weighted[1]), (8.0, 0.0));
    let (ep, ew) = (
        weighted_error(&x, &plain, &imp),
        weighted_error(&x, &weighted, &imp),
    );
    assert!(ew < ep, "weighted {ew} not below plain {ep}");
}

#[test]
fn searched_variants_do_not_lose_to_their_rules() {
    for (dist, x) in matrices() {
        let with_rule: [fn(Method) -> SchemeKind; 3] =
            [SchemeKind::Mxfp4, SchemeKind::Nvfp4, SchemeKind::Nf4];
        for make in with_rule {
            let (rule, search) = (make(Method::MinMax), make(Method::Search));
            let ones = vec![1.0f32; COLS];
            let e = |k: SchemeKind| {
                let y = fake_quantize(&k, &x, ROWS, COLS, 64, None).unwrap();
                weighted_error(&x, &y, &ones)
            };
            let (er, es) = (e(rule), e(search));
            assert!(
                es <= er,
                "{dist}: {} {es} above {} {er}",
                search.name(),
                rule.name()
            );
        }
    }
}

#[test]
fn bad_input_is_refused_with_its_position() {
    let mut x = vec![0.01f32; 3 * 100];
    x[2 * 100 + 37] = f32::INFINITY;
    for kind in SchemeKind::FIELD {
        let e = fake_quantize(&kind, &x, 3, 100, 64, None).unwrap_err();
        assert!(
            matches!(
                e,
                QuantError::NonFinite {
                    row: 2,
                    col: 37,
                    ..
                }
            ),
            "{}: {e}",
            kind.name()
        );
        let e = fake_quantize(&kind, &x[..299], 3, 100, 64, None).unwrap_err();
        assert!(e.to_string().contains("expected 300, found 299"), "{e}");
        let e = fake_quantize(&kind, &[0.0; 300], 3, 100, 64, Some(&[1.0; 99])).unwrap_err();
        assert!(e.to_string().contains("expected 100, found 99"), "{e}");
    }
}
