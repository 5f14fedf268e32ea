//! The M0E4 format against an independent scalar implementation written from `docs/M0E4.md`
//! (its own f16 rounding, brute-force nearest code), and against a committed table of test
//! vectors. Regenerate the table with `TLITE_REGEN_VECTORS=1 cargo test -p tlite-quantizer`.

use tlite_quantizer::format::{self, GroupParams};
use tlite_quantizer::rng::Rng;
use tlite_quantizer::{M0E4Matrix, Method, QuantOptions, SchemeKind, fake_quantize};

/// f32 → IEEE half bits, round to nearest even, written from the IEEE 754 definition.
fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    let round = |v: u32, shift: u32| {
        let rem = v & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        let mut r = v >> shift;
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        r
    };
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        return sign | round(man | 0x80_0000, (14 - e) as u32) as u16;
    }
    sign | round(((e as u32) << 23) | man, 13) as u16
}

fn f16_value(h: u16) -> f32 {
    let s = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let e = i32::from((h >> 10) & 0x1f);
    let m = f32::from(h & 0x3ff);
    match e {
        0 => s * m * 2f32.powi(-24),
        31 => s * f32::INFINITY,
        _ => s * (1.0 + m / 1024.0) * 2f32.powi(e - 15),
    }
}

/// The independent min/max M0E4 group: `(S bits, B bits, codes, decoded)`.
fn scalar_group(x: &[f32]) -> (u16, u16, Vec<u8>, Vec<f32>) {
    let m = x.iter().cloned().fold(f32::INFINITY, f32::min);
    let mx = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let s = (mx - m) / 15.0;
    let (sb, bb) = (f16_bits(16.0 * s), f16_bits(m - 16.0 * s));
    let (sv, bv) = (f16_value(sb), f16_value(bb));
    let dec = |q: u8| (1.0 + f32::from(q) / 16.0).mul_add(sv, bv);
    let codes: Vec<u8> = x
        .iter()
        .map(|&w| {
            if sv <= 0.0 {
                return 0;
            }
            (0..16u8)
                .min_by(|&a, &b| (dec(a) - w).abs().total_cmp(&(dec(b) - w).abs()))
                .unwrap()
        })
        .collect();
    let decoded = codes.iter().map(|&q| dec(q)).collect();
    (sb, bb, codes, decoded)
}

fn scalar_pack(codes: &[u8]) -> Vec<u32> {
    codes
        .chunks(8)
        .map(|c| {
            let mut w = 0u32;
            for (k, &q) in c.iter().enumerate() {
                w += u32::from(q) * 16u32.pow(k as u32);
            }
            w
        })
        .collect()
}

struct Vector {
    name: String,
    input: Vec<f32>,
    scale: u16,
    bias: u16,
    codes: Vec<u8>,
    packed: Vec<u32>,
    decoded: Vec<f32>,
}

fn vector_inputs() -> Vec<(String, Vec<f32>)> {
    let mut rng = Rng::new(0x5eed_0001);
    let mut v = vec![
        ("gaussian-0.02".to_string(), rng.gaussian_vec(32, 0.02)),
        (
            "student-t3-0.02".to_string(),
            rng.student_t_vec(32, 3, 0.02),
        ),
        (
            "ramp-minus1-to-1".to_string(),
            (0..32).map(|i| -1.0 + 2.0 * i as f32 / 31.0).collect(),
        ),
        ("constant-0.5".to_string(), vec![0.5; 32]),
        (
            "narrow-1e-4-around-0.01".to_string(),
            rng.gaussian_vec(32, 1e-4)
                .iter()
                .map(|v| v + 0.01)
                .collect(),
        ),
        (
            "all-negative".to_string(),
            rng.gaussian_vec(32, 0.05)
                .iter()
                .map(|v| -v.abs() - 0.1)
                .collect(),
        ),
    ];
    let mut outlier = rng.gaussian_vec(32, 0.01);
    outlier[17] = 0.4;
    v.push(("one-outlier".to_string(), outlier));
    v.push((
        "large-100-to-300".to_string(),
        (0..32)
            .map(|i| 100.0 + (i * 37 % 32) as f32 * 6.25)
            .collect(),
    ));
    v
}

fn hex_list<T: std::fmt::LowerHex>(v: &[T], width: usize) -> String {
    v.iter()
        .map(|x| format!("{x:0width$x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_hex(s: &str) -> Vec<u32> {
    s.split_whitespace()
        .map(|t| u32::from_str_radix(t, 16).expect("hex"))
        .collect()
}

fn vectors_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/m0e4_vectors.txt")
}

fn read_vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(vectors_path()).expect("committed test vectors");
    let mut out = Vec::new();
    let mut lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty());
    while let Some(head) = lines.next() {
        let name = head
            .strip_prefix("vector ")
            .expect("vector line")
            .to_string();
        let mut field = |key: &str| {
            let l = lines.next().expect("field");
            l.strip_prefix(key).expect(key).to_string()
        };
        let input: Vec<f32> = parse_hex(&field("input "))
            .into_iter()
            .map(f32::from_bits)
            .collect();
        let sb = parse_hex(&field("scale_bias "));
        let codes: Vec<u8> = field("codes ")
            .chars()
            .map(|c| c.to_digit(16).unwrap() as u8)
            .collect();
        let packed = parse_hex(&field("packed "));
        let decoded = parse_hex(&field("decoded "))
            .into_iter()
            .map(f32::from_bits)
            .collect();
        out.push(Vector {
            name,
            input,
            scale: sb[0] as u16,
            bias: sb[1] as u16,
            codes,
            packed,
            decoded,
        });
    }
    out
}

#[test]
fn committed_vectors_match_scalar_and_library() {
    if std::env::var_os("TLITE_REGEN_VECTORS").is_some() {
        let mut s = String::from(
            "# M0E4 test vectors (docs/M0E4.md): groups of 32, min/max rounding.\n\
             # Written by the independent scalar implementation in quantizer/tests/format.rs.\n\
             # input/decoded: f32 bits; scale_bias: f16 bits of S and B; codes: one hex digit each;\n\
             # packed: u32 words, code k of a word at bits 4k..4k+3.\n",
        );
        for (name, x) in vector_inputs() {
            let (sb, bb, codes, dec) = scalar_group(&x);
            let bits: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
            let dbits: Vec<u32> = dec.iter().map(|v| v.to_bits()).collect();
            s += &format!(
                "vector {name}\ninput {}\nscale_bias {sb:04x} {bb:04x}\ncodes {}\npacked {}\ndecoded {}\n",
                hex_list(&bits, 8),
                codes.iter().map(|q| format!("{q:x}")).collect::<String>(),
                hex_list(&scalar_pack(&codes), 8),
                hex_list(&dbits, 8)
            );
        }
        std::fs::write(vectors_path(), s).unwrap();
    }
    let vectors = read_vectors();
    assert_eq!(vectors.len(), vector_inputs().len());
    for v in &vectors {
        // The independent implementation reproduces the table...
        let (sb, bb, codes, dec) = scalar_group(&v.input);
        assert_eq!((sb, bb), (v.scale, v.bias), "{}: scalar S/B", v.name);
        assert_eq!(codes, v.codes, "{}: scalar codes", v.name);
        assert_eq!(scalar_pack(&codes), v.packed, "{}: scalar packing", v.name);
        assert_eq!(dec, v.decoded, "{}: scalar decode", v.name);
        // ...and so does the library.
        let m =
            M0E4Matrix::quantize(&v.input, 1, 32, &QuantOptions::new(32, Method::MinMax)).unwrap();
        assert_eq!(
            (m.scales[0], m.biases[0]),
            (v.scale, v.bias),
            "{}: S/B",
            v.name
        );
        assert_eq!(m.packed, v.packed, "{}: packed", v.name);
        let d = m.dequantize();
        assert_eq!(
            d.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.decoded.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "{}: decoded",
            v.name
        );
    }
}

#[test]
fn code_table_is_one_plus_q_over_16() {
    for q in 0..16u8 {
        assert_eq!(
            format::VALUES_F16_BITS[q as usize],
            0x3C00 | (u16::from(q) << 6)
        );
        assert_eq!(format::value(q), 1.0 + f32::from(q) / 16.0);
        assert_eq!(f16_value(format::code_bits(q)), 1.0 + f32::from(q) / 16.0);
    }
}

#[test]
fn pair_decode_equals_scalar_decoder() {
    let mut rng = Rng::new(0xfeed_beef ^ std::process::id() as u64);
    for _ in 0..100_000 {
        let word = rng.next_u64() as u32;
        for k in 0..4 {
            let (lo, hi) = format::decode_pair(word, k);
            let scalar = |j: usize| 1.0 + f32::from(((word >> (4 * j)) & 15) as u8) / 16.0;
            assert_eq!(lo, scalar(k), "word {word:08x} code {k}");
            assert_eq!(hi, scalar(k + 4), "word {word:08x} code {}", k + 4);
        }
    }
}

#[test]
fn f16_rounding_agrees_with_half_crate() {
    let mut rng = Rng::new(7);
    for _ in 0..200_000 {
        let x = f32::from_bits(rng.next_u64() as u32);
        if x.is_nan() {
            continue;
        }
        assert_eq!(f16_bits(x), half::f16::from_f32(x).to_bits(), "{x:e}");
    }
}

/// Fresh Gaussian and heavy-tailed matrices, odd shapes with a short last group.
fn random_matrices(seed: u64) -> Vec<(&'static str, Vec<f32>, usize, usize)> {
    let mut rng = Rng::new(seed);
    vec![
        ("gaussian", rng.gaussian_vec(48 * 576, 0.02), 48, 576),
        ("student-t3", rng.student_t_vec(40 * 256, 3, 0.02), 40, 256),
        ("ragged", rng.gaussian_vec(7 * 200, 0.05), 7, 200),
    ]
}

fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn library_minmax_matches_scalar_on_random_groups() {
    let seed = fresh_seed();
    for (name, x, rows, cols) in random_matrices(seed) {
        for g in [32, 64, 128] {
            let m = M0E4Matrix::quantize(&x, rows, cols, &QuantOptions::new(g, Method::MinMax))
                .unwrap();
            let d = m.dequantize();
            for r in 0..rows {
                for (gi, chunk) in x[r * cols..(r + 1) * cols].chunks(g).enumerate() {
                    let (sb, bb, _, dec) = scalar_group(chunk);
                    let p = m.params(r, gi);
                    assert_eq!(
                        (p.scale, p.bias),
                        (sb, bb),
                        "{name} g{g} seed {seed} row {r} group {gi}"
                    );
                    let start = r * cols + gi * g;
                    assert_eq!(
                        &d[start..start + chunk.len()],
                        &dec[..],
                        "{name} g{g} seed {seed}"
                    );
                }
            }
        }
    }
}

#[test]
fn packed_dequant_equals_fake_quant_and_search_never_loses() {
    let seed = fresh_seed();
    for (name, x, rows, cols) in random_matrices(seed) {
        for g in [32, 64, 128] {
            let mut mse = [0.0f64; 2];
            for (i, method) in [Method::MinMax, Method::Search].into_iter().enumerate() {
                let m =
                    M0E4Matrix::quantize(&x, rows, cols, &QuantOptions::new(g, method)).unwrap();
                let packed = m.dequantize();
                let fake =
                    fake_quantize(&SchemeKind::M0E4(method), &x, rows, cols, g, None).unwrap();
                assert_eq!(packed, fake, "{name} g{g} {method} seed {seed}");
                mse[i] = x
                    .iter()
                    .zip(&packed)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>();
                // Every weight lies within one step of the grid's range.
                for r in 0..rows {
                    for gi in 0..cols.div_ceil(g) {
                        let p: GroupParams = m.params(r, gi);
                        assert!(p.scale_f32() >= 0.0 && p.scale_f32().is_finite());
                    }
                }
            }
            assert!(
                mse[1] <= mse[0],
                "{name} g{g}: search {} > minmax {}",
                mse[1],
                mse[0]
            );
            assert!(
                mse[1] < mse[0] * 0.97,
                "{name} g{g}: search gains < 3% ({} vs {})",
                mse[1],
                mse[0]
            );
        }
    }
}

#[test]
fn minmax_error_is_within_half_a_step() {
    let mut rng = Rng::new(fresh_seed());
    let x = rng.gaussian_vec(64 * 128, 0.02);
    let m = M0E4Matrix::quantize(&x, 64, 128, &QuantOptions::new(64, Method::MinMax)).unwrap();
    let d = m.dequantize();
    for (i, (a, b)) in x.iter().zip(&d).enumerate() {
        let p = m.params(i / 128, (i % 128) / 64);
        let step = p.scale_f32() / 16.0;
        // half a step, plus the f16 rounding of B (half an ulp of B) and of S (spread over 16 steps)
        let slack =
            step * 0.5 + p.bias_f32().abs() * 2f32.powi(-11) + p.scale_f32() * 2f32.powi(-11) * 2.0;
        assert!(
            (a - b).abs() <= slack * 1.0001,
            "weight {i}: {a} vs {b}, step {step}"
        );
    }
}

#[test]
fn importance_weighting_lowers_weighted_error() {
    let mut rng = Rng::new(fresh_seed());
    let (rows, cols, g) = (64, 256, 64);
    let x = rng.student_t_vec(rows * cols, 3, 0.02);
    let imp: Vec<f32> = (0..cols)
        .map(|_| (rng.student_t(2).abs() as f32).powi(2) + 1e-3)
        .collect();
    let plain =
        M0E4Matrix::quantize(&x, rows, cols, &QuantOptions::new(g, Method::Search)).unwrap();
    let weighted = M0E4Matrix::quantize(
        &x,
        rows,
        cols,
        &QuantOptions {
            group: g,
            method: Method::Search,
            importance: Some(&imp),
        },
    )
    .unwrap();
    let werr = |d: &[f32]| -> f64 {
        x.iter()
            .zip(d)
            .enumerate()
            .map(|(i, (a, b))| f64::from(imp[i % cols]) * f64::from(a - b).powi(2))
            .sum()
    };
    let (ep, ew) = (werr(&plain.dequantize()), werr(&weighted.dequantize()));
    assert!(ew < ep, "importance-weighted {ew} not below plain {ep}");
}

#[test]
fn baselines_have_their_bits_and_bounded_error() {
    use tlite_quantizer::Scheme;
    let mut rng = Rng::new(fresh_seed());
    let x = rng.gaussian_vec(32 * 128, 0.02);
    for kind in SchemeKind::REPORT {
        let bpw = kind.bits_per_weight(64);
        let expected = match kind {
            SchemeKind::M0E4(_) | SchemeKind::Int4FloatMin(_) => 4.5,
            SchemeKind::Int4ZeroPoint => 4.3125,
            SchemeKind::Q4_0 => 4.25,
            other => panic!("{} is not a free-group scheme", other.name()),
        };
        assert_eq!(bpw, expected, "{}", kind.name());
        let d = fake_quantize(&kind, &x, 32, 128, 64, None).unwrap();
        let rmse = (x
            .iter()
            .zip(&d)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            / x.len() as f64)
            .sqrt();
        // 16 levels over ~±3σ of a σ = 0.02 Gaussian: RMSE near step/√12 ≈ 0.002
        assert!(rmse > 5e-4 && rmse < 4e-3, "{}: rmse {rmse}", kind.name());
        assert_eq!(SchemeKind::parse(&kind.name()), Some(kind));
    }
}

#[test]
fn bad_input_is_a_named_error() {
    let mut x = vec![0.25f32; 64];
    x[37] = f32::NAN;
    let e = M0E4Matrix::quantize(&x, 2, 32, &QuantOptions::new(32, Method::MinMax)).unwrap_err();
    assert!(e.to_string().contains("row 1, column 5"), "{e}");
    let e = M0E4Matrix::quantize(
        &[0.0; 64],
        2,
        32,
        &QuantOptions::new(48 - 1, Method::MinMax),
    )
    .unwrap_err();
    assert!(e.to_string().contains("group size 47"), "{e}");
    let e = M0E4Matrix::quantize(&[0.5; 60], 2, 32, &QuantOptions::new(32, Method::MinMax))
        .unwrap_err();
    assert!(e.to_string().contains("expected 64, found 60"), "{e}");
    let big = [-60000.0f32, 60000.0].repeat(16);
    let e = M0E4Matrix::quantize(&big, 1, 32, &QuantOptions::new(32, Method::MinMax)).unwrap_err();
    assert!(e.to_string().contains("f16 scale"), "{e}");
}

#[test]
fn candle_tensors_of_every_float_dtype() {
    use candle_core::{DType, Device, Tensor};
    let mut rng = Rng::new(fresh_seed());
    let x = rng.gaussian_vec(16 * 96, 0.02);
    let t = Tensor::from_vec(x.clone(), (16, 96), &Device::Cpu).unwrap();
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let td = t.to_dtype(dt).unwrap();
        let m =
            tlite_quantizer::tensor::quantize_tensor(&td, &QuantOptions::new(32, Method::Search))
                .unwrap();
        let src = td
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let direct =
            M0E4Matrix::quantize(&src, 16, 96, &QuantOptions::new(32, Method::Search)).unwrap();
        assert_eq!(m, direct, "{dt:?}");
        let back = m.to_tensor(&Device::Cpu).unwrap();
        assert_eq!(back.dims(), &[16, 96]);
    }
    let t3 = Tensor::ones((2, 3, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(
        tlite_quantizer::tensor::quantize_tensor(&t3, &QuantOptions::new(32, Method::MinMax))
            .is_err()
    );
    let ti = Tensor::ones((2, 32), DType::U32, &Device::Cpu).unwrap();
    let e = tlite_quantizer::tensor::quantize_tensor(&ti, &QuantOptions::new(32, Method::MinMax))
        .unwrap_err();
    assert!(e.to_string().contains("dtype"), "{e}");
}

#[test]
fn vectorized_encode_equals_the_scalar_encoder() {
    // Grids of every kind of range (tiny, huge, negative, subnormal steps), values inside,
    // outside, on and between the levels, and the non-finite ones.
    let seed = fresh_seed();
    eprintln!("seed {seed:#x}");
    let mut rng = Rng::new(seed);
    let mut checked = 0usize;
    for trial in 0..4000 {
        let mag = 10f32.powi(trial % 13 - 8);
        let lo = (rng.normal() as f32) * mag;
        let step = (rng.uniform() as f32) * mag / 4.0;
        let grid = format::M0E4Grid::new(GroupParams::from_affine(lo, step));
        let mut x: Vec<f32> = (0..48)
            .map(|_| lo + (rng.uniform() as f32 * 19.0 - 2.0) * step)
            .collect();
        // Exactly on every level and on the f32 midpoints between neighbours.
        for q in 0..16u8 {
            let d = grid.decode(q);
            x.push(d);
            if q < 15 {
                x.push((d + grid.decode(q + 1)) / 2.0);
            }
        }
        x.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN,
        ]);
        let mut codes = vec![0u8; x.len()];
        grid.encode_all(&x, &mut codes);
        for (&w, &c) in x.iter().zip(&codes) {
            assert_eq!(c, grid.encode(w), "w {w:e} on grid {grid:?}");
            checked += 1;
        }
    }
    assert!(checked > 300_000);
}
