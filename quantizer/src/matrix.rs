//! A packed M0E4 matrix in exactly the layout the WGSL kernels read:
//! `packed[row * words_per_row + w]` holds columns `8w..8w+8` of `row`, and
//! `scales`/`biases[row * groups_per_row + g]` hold the f16 bits of group `g` of `row`.

use rayon::prelude::*;

use crate::affine::{self, Method};
use crate::format::{GroupParams, M0E4Grid, PACKED_PER_WORD, decode_word, pack_codes};
use crate::scheme::check_matrix;
use crate::{QuantError, Result, check_group};

/// Options of an M0E4 quantization.
#[derive(Clone, Copy, Debug)]
pub struct QuantOptions<'a> {
    /// Weights per group along the input dimension (32, 64 or 128 recommended).
    pub group: usize,
    pub method: Method,
    /// Optional importance of each input column (mean x² from calibration), weighting the error.
    pub importance: Option<&'a [f32]>,
}

impl QuantOptions<'_> {
    pub fn new(group: usize, method: Method) -> Self {
        QuantOptions {
            group,
            method,
            importance: None,
        }
    }
}

/// A `[rows, cols]` weight matrix in M0E4.
#[derive(Clone, Debug, PartialEq)]
pub struct M0E4Matrix {
    pub rows: usize,
    pub cols: usize,
    pub group: usize,
    /// `[rows, words_per_row]`, eight codes per word; a short tail is padded with code 0.
    pub packed: Vec<u32>,
    /// `[rows, groups_per_row]` f16 bits of `S`.
    pub scales: Vec<u16>,
    /// `[rows, groups_per_row]` f16 bits of `B`.
    pub biases: Vec<u16>,
}

impl M0E4Matrix {
    pub fn words_per_row(cols: usize) -> usize {
        cols.div_ceil(PACKED_PER_WORD)
    }

    pub fn groups_per_row(cols: usize, group: usize) -> usize {
        cols.div_ceil(group)
    }

    /// Quantizes a row-major `[rows, cols]` matrix, in parallel over rows.
    pub fn quantize(data: &[f32], rows: usize, cols: usize, opts: &QuantOptions) -> Result<Self> {
        check_matrix(data, rows, cols, opts.group, opts.importance)?;
        let (wpr, gpr) = (
            Self::words_per_row(cols),
            Self::groups_per_row(cols, opts.group),
        );
        let mut packed = vec![0u32; rows * wpr];
        let mut params = vec![GroupParams::default(); rows * gpr];
        let group = opts.group;
        packed
            .par_chunks_mut(wpr.max(1))
            .zip(params.par_chunks_mut(gpr.max(1)))
            .zip(data.par_chunks(cols.max(1)))
            .enumerate()
            .try_for_each(|(r, ((pw, pp), x))| -> Result<()> {
                let mut codes = vec![0u8; cols];
                for (gi, (xg, cg)) in x.chunks(group).zip(codes.chunks_mut(group)).enumerate() {
                    let (lo, hi) = affine::min_max(xg);
                    if (16.0 * (hi - lo) / 15.0) > 65504.0
                        || lo.abs() > 65504.0
                        || hi.abs() > 65504.0
                    {
                        return Err(QuantError::ScaleOverflow {
                            row: r,
                            col: gi * group,
                            range: hi - lo,
                        });
                    }
                    let imp = opts
                        .importance
                        .map(|w| &w[gi * group..gi * group + xg.len()]);
                    pp[gi] = affine::fit::<M0E4Grid>(xg, imp, opts.method, cg).params;
                }
                pack_codes(&codes, pw);
                Ok(())
            })?;
        Ok(M0E4Matrix {
            rows,
            cols,
            group,
            packed,
            scales: params.iter().map(|p| p.scale).collect(),
            biases: params.iter().map(|p| p.bias).collect(),
        })
    }

    /// Reassembles a matrix from stored parts, checking every length.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        group: usize,
        packed: Vec<u32>,
        scales: Vec<u16>,
        biases: Vec<u16>,
    ) -> Result<Self> {
        check_group(group)?;
        let too_large = || QuantError::TooLarge { rows, cols };
        let words = rows
            .checked_mul(Self::words_per_row(cols))
            .ok_or_else(too_large)?;
        let groups = rows
            .checked_mul(Self::groups_per_row(cols, group))
            .ok_or_else(too_large)?;
        for (what, expected, found) in [
            ("packed words", words, packed.len()),
            ("group scales", groups, scales.len()),
            ("group biases", groups, biases.len()),
        ] {
            if expected != found {
                return Err(QuantError::Shape {
                    what,
                    expected,
                    found,
                });
            }
        }
        Ok(M0E4Matrix {
            rows,
            cols,
            group,
            packed,
            scales,
            biases,
        })
    }

    /// The stored parameters of group `g` of `row`.
    pub fn params(&self, row: usize, g: usize) -> GroupParams {
        let i = row * Self::groups_per_row(self.cols, self.group) + g;
        GroupParams {
            scale: self.scales[i],
            bias: self.biases[i],
        }
    }

    /// Bits per weight actually stored (codes, padding and f16 `S`/`B`).
    pub fn bits_per_weight(&self) -> f64 {
        let bits = self.packed.len() * 32 + (self.scales.len() + self.biases.len()) * 16;
        bits as f64 / (self.rows * self.cols).max(1) as f64
    }

    /// Dequantizes to row-major f32 with the pair decode the kernels use.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols.max(1))
            .enumerate()
            .for_each(|(r, o)| self.dequantize_row(r, o));
        out
    }

    /// Dequantizes one row into `out` (`cols` long).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let wpr = Self::words_per_row(self.cols);
        let mut buf = [0.0f32; PACKED_PER_WORD];
        for (w, &word) in self.packed[row * wpr..(row + 1) * wpr].iter().enumerate() {
            let col = w * PACKED_PER_WORD;
            decode_word(word, self.params(row, col / self.group), &mut buf);
            let n = PACKED_PER_WORD.min(self.cols - col);
            out[col..col + n].copy_from_slice(&buf[..n]);
        }
    }
}
