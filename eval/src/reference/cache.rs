//! The preallocated KV cache: one K and one V tensor per layer at `max_seq`, written in place
//! at the step's position; attention reads the prefix.

use candle_core::{DType, Device, Tensor};

use super::Result;

/// Per layer `[kv_heads, max_seq, head_dim]` K and V, allocated once.
pub struct KvCache {
    pub(crate) k: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    pub max_seq: usize,
}

impl KvCache {
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, max_seq: usize) -> Result<Self> {
        let mk = || Tensor::zeros((kv_heads, max_seq, head_dim), DType::F32, &Device::Cpu);
        Ok(KvCache {
            k: (0..layers)
                .map(|_| mk())
                .collect::<candle_core::Result<_>>()?,
            v: (0..layers)
                .map(|_| mk())
                .collect::<candle_core::Result<_>>()?,
            max_seq,
        })
    }
}
