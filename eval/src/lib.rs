//! The reference side of tlite: quantization-error reports now; the candle CPU reference model,
//! perplexity, KL divergence and GPU parity as they land.

pub mod quant_error;
