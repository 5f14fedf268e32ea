//! The M0E4 decoder on arbitrary bytes: shape and group from the first bytes, then packed
//! codes, scales and biases; a matrix that is accepted decodes in full, and every value
//! equals the scalar decoder's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlite_quantizer::M0E4Matrix;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let rows = u16::from_le_bytes([data[0], data[1]]) as usize;
    let cols = u16::from_le_bytes([data[2], data[3]]) as usize;
    let group = u16::from_le_bytes([data[4], data[5]]) as usize;
    let body = &data[6..];
    let words = M0E4Matrix::words_per_row(cols).saturating_mul(rows);
    let groups = if group == 0 {
        0
    } else {
        M0E4Matrix::groups_per_row(cols, group).saturating_mul(rows)
    };
    // Lengths derived from the shape, clipped to the bytes given (mismatches must be errors).
    let take = |from: usize, n: usize, width: usize| -> Vec<u8> {
        body.get(from..).unwrap_or(&[]).iter().copied().take(n.saturating_mul(width)).collect()
    };
    let packed: Vec<u32> = take(0, words, 4)
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let halves = |bytes: Vec<u8>| -> Vec<u16> {
        bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()
    };
    let scales = halves(take(words * 4, groups, 2));
    let biases = halves(take(words * 4 + groups * 2, groups, 2));
    let Ok(m) = M0E4Matrix::from_parts(rows, cols, group, packed, scales, biases) else {
        return;
    };
    let all = m.dequantize();
    assert_eq!(all.len(), rows * cols);
    let mut row = vec![0.0f32; cols];
    for r in 0..rows {
        m.dequantize_row(r, &mut row);
        for (c, &v) in row.iter().enumerate() {
            let q = tlite_quantizer::format::code_at(m.packed[r * M0E4Matrix::words_per_row(cols) + c / 8], c % 8);
            let expect = m.params(r, c / group).decode(q);
            assert!(
                v.to_bits() == expect.to_bits() || (v.is_nan() && expect.is_nan()),
                "row {r} col {c}: {v} vs scalar {expect}"
            );
            assert!(
                v.to_bits() == all[r * cols + c].to_bits() || (v.is_nan() && all[r * cols + c].is_nan())
            );
        }
    }
});
