//! The reference side of tlite: the candle CPU reference model ([`reference`]), perplexity,
//! KL divergence and top-1 agreement ([`ppl`]), quantization-error reports
//! ([`quant_error`]), and quantization sweeps over many schemes with their plot ([`sweep`],
//! [`plot`]).

pub mod gpu;
pub mod load;
pub mod parity;
pub mod plot;
pub mod ppl;
pub mod quant_error;
pub mod reference;
pub mod sweep;
