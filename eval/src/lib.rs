//! The reference side of tlite: the candle CPU reference model ([`reference`]), perplexity,
//! KL divergence and top-1 agreement ([`ppl`]), and quantization-error reports
//! ([`quant_error`]).

pub mod load;
pub mod ppl;
pub mod quant_error;
pub mod reference;
