//! The candle edge: 2-D f32/f16/bf16 tensors in, packed matrices or tensors out.

use candle_core::{DType, Device, Tensor};

use crate::matrix::{M0E4Matrix, QuantOptions};
use crate::scheme::{Scheme, fake_quantize};
use crate::{QuantError, Result};

/// A 2-D f32, f16 or bf16 tensor as row-major f32 with its shape.
pub fn tensor_to_matrix(t: &Tensor) -> Result<(Vec<f32>, usize, usize)> {
    let (rows, cols) = match t.dims() {
        [r, c] => (*r, *c),
        d => return Err(QuantError::Rank(d.len())),
    };
    match t.dtype() {
        DType::F32 | DType::F16 | DType::BF16 => {}
        d => return Err(QuantError::DType(format!("{d:?}"))),
    }
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok((v, rows, cols))
}

/// Quantizes a 2-D tensor to M0E4.
pub fn quantize_tensor(t: &Tensor, opts: &QuantOptions) -> Result<M0E4Matrix> {
    let (v, rows, cols) = tensor_to_matrix(t)?;
    M0E4Matrix::quantize(&v, rows, cols, opts)
}

/// Quantizes and dequantizes a 2-D tensor with any scheme; the result is f32.
pub fn fake_quantize_tensor(
    scheme: &dyn Scheme,
    t: &Tensor,
    group: usize,
    importance: Option<&[f32]>,
) -> Result<Tensor> {
    let (v, rows, cols) = tensor_to_matrix(t)?;
    let out = fake_quantize(scheme, &v, rows, cols, group, importance)?;
    Ok(Tensor::from_vec(out, (rows, cols), t.device())?)
}

impl M0E4Matrix {
    /// The dequantized matrix as an f32 tensor.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.dequantize(),
            (self.rows, self.cols),
            device,
        )?)
    }
}
