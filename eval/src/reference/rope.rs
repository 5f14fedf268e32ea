//! Rotary position embeddings in both layouts, over the first `rot` dimensions of each head.

use candle_core::{D, Device, Tensor};

use super::Result;
use tlite_model::arch::RopeLayout;

/// cos/sin tables for positions `pos..pos + n`, each `[n, rot/2]`, computed in f64.
pub fn tables(
    theta: f64,
    rot: usize,
    pos: usize,
    n: usize,
    linear_factor: f64,
) -> Result<(Tensor, Tensor)> {
    let half = rot / 2;
    let inv: Vec<f64> = (0..half)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / rot as f64))
        .collect();
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in pos..pos + n {
        for f in &inv {
            let a = p as f64 / linear_factor * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, half), &Device::Cpu)?,
        Tensor::from_vec(sin, (n, half), &Device::Cpu)?,
    ))
}

/// Rotates `x` (`[heads, n, head_dim]`) in place of its first `rot` dims.
pub fn apply(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    rot: usize,
    layout: RopeLayout,
) -> Result<Tensor> {
    let (heads, n, hd) = x.dims3()?;
    let half = rot / 2;
    let xr = x.narrow(D::Minus1, 0, rot)?;
    let (cos, sin) = (cos.unsqueeze(0)?, sin.unsqueeze(0)?);
    let rotated = match layout {
        RopeLayout::HalfSplit => {
            let a = xr.narrow(D::Minus1, 0, half)?;
            let b = xr.narrow(D::Minus1, half, half)?;
            let ra = (a.broadcast_mul(&cos)? - b.broadcast_mul(&sin)?)?;
            let rb = (b.broadcast_mul(&cos)? + a.broadcast_mul(&sin)?)?;
            Tensor::cat(&[ra, rb], D::Minus1)?
        }
        RopeLayout::Interleaved => {
            let pairs = xr.reshape((heads, n, half, 2))?;
            let a = pairs.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
            let b = pairs.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
            let ra = (a.broadcast_mul(&cos)? - b.broadcast_mul(&sin)?)?;
            let rb = (b.broadcast_mul(&cos)? + a.broadcast_mul(&sin)?)?;
            Tensor::stack(&[ra, rb], D::Minus1)?.reshape((heads, n, rot))?
        }
    };
    if rot == hd {
        Ok(rotated)
    } else {
        Ok(Tensor::cat(
            &[rotated, x.narrow(D::Minus1, rot, hd - rot)?],
            D::Minus1,
        )?)
    }
}
