//! Scalar reference dequantizers written from gguf-py's `quants.py`, one f32 operation at a
//! time in its order, and a test that candle's dequantization (what the importer uses) agrees
//! with them bit for bit on every type the supported models contain. (Products of an f16
//! scale and the small integer factors are exact in f32, so what this pins is the bit layout
//! of each block; the arithmetic order could not change a value.)

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q4_1, blocks of 32: `(d * q) + m`.
fn q4_1(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    for b in raw.chunks_exact(20) {
        let (d, m, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..20]);
        let q = |i: usize| {
            if i < 16 { qs[i] & 0xF } else { qs[i - 16] >> 4 }
        };
        out.extend((0..32).map(|i| (d * q(i) as f32) + m));
    }
    out
}

/// Q8_0, blocks of 32: `d * q`.
fn q8_0(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    for b in raw.chunks_exact(34) {
        let d = f16_at(b, 0);
        out.extend(b[2..34].iter().map(|&q| d * (q as i8) as f32));
    }
    out
}

/// Q5_0, blocks of 32: `d * q`, q = 4 low bits | 1 high bit from `qh`, minus 16.
fn q5_0(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    for b in raw.chunks_exact(22) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        out.extend((0..32).map(|i| {
            let low = if i < 16 { qs[i] & 0xF } else { qs[i - 16] >> 4 };
            let high = ((qh >> i) & 1) as u8;
            d * ((low | (high << 4)) as i8 - 16) as f32
        }));
    }
    out
}

/// Q4_K, blocks of 256 in 8 sub-blocks of 32: `(d * sc) * q - (dmin * m)`.
fn q4_k(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    for b in raw.chunks_exact(144) {
        let (d, dmin, s, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..144]);
        for j in 0..8 {
            let (sc, m) = if j < 4 {
                (s[j] & 63, s[j + 4] & 63)
            } else {
                (
                    (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
                    (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
                )
            };
            let (dj, mj) = (d * sc as f32, dmin * m as f32);
            let chunk = &qs[(j / 2) * 32..(j / 2) * 32 + 32];
            out.extend(chunk.iter().map(|&q| {
                let q = if j % 2 == 0 { q & 0xF } else { q >> 4 };
                dj * q as f32 - mj
            }));
        }
    }
    out
}

/// Q6_K, blocks of 256: `(d * scale) * q`, q = 4 low bits | 2 high bits, minus 32.
fn q6_k(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    for b in raw.chunks_exact(210) {
        let (ql, qh, sc, d) = (&b[0..128], &b[128..192], &b[192..208], f16_at(b, 208));
        out.extend((0..256).map(|e| {
            let (h, r) = (e / 128, e % 128);
            let low = (ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0xF;
            let high = (qh[h * 32 + r % 32] >> (2 * (r / 32))) & 3;
            let q = (low | (high << 4)) as i8 - 32;
            (d * (sc[e / 16] as i8) as f32) * q as f32
        }));
    }
    out
}

#[test]
fn candle_dequantization_matches_gguf_py_bit_for_bit() {
    let n = 4096;
    let mut s = 0x9e3779b97f4a7c15u64;
    let xs: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    let t = Tensor::from_vec(xs, (16, n / 16), &Device::Cpu).expect("tensor");
    type Dequant = fn(&[u8]) -> Vec<f32>;
    let cases: [(GgmlDType, Dequant); 5] = [
        (GgmlDType::Q4_1, q4_1),
        (GgmlDType::Q8_0, q8_0),
        (GgmlDType::Q5_0, q5_0),
        (GgmlDType::Q4K, q4_k),
        (GgmlDType::Q6K, q6_k),
    ];
    for (dtype, reference) in cases {
        let q = QTensor::quantize(&t, dtype).expect("quantize");
        let raw = q.data().expect("raw bytes");
        let want = reference(&raw);
        let got: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("dequantize");
        assert_eq!(got.len(), want.len(), "{dtype:?}");
        let mismatches = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(mismatches, 0, "{dtype:?}: values differing from gguf-py");
    }
}
