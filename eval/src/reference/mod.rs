//! The candle CPU reference: one forward pass for every supported architecture, driven by the
//! architecture table (`tlite_model`), computed in f32. It loads an unquantized checkpoint (the
//! baseline), a deployable M0E4 model (dequantized on load with the quantizer's decoder), or a
//! checkpoint fake-quantized on load with any scheme ([`WeightSource::FakeQuant`]); an optional
//! calibration pass collects the statistics of importance-weighted quantization ([`Calibration`]).
//! With a cache of its own it is a [`tlite_model::LanguageModel`] ([`ReferenceLm`]), which
//! parity and generation drive like the GPU runtime.
//! This is the oracle every quantized and GPU result is checked against.

mod cache;
mod calibration;
mod fused;
mod lm;
mod model;
mod rope;
mod source;

pub use cache::KvCache;
pub use calibration::{Calibration, LinearInput};
pub use lm::ReferenceLm;
pub use model::{Logits, ReferenceModel, log_softmax, log_softmax_rows, nll_rows};
pub use source::WeightSource;

/// Errors of the reference pipeline.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error(transparent)]
    Convert(#[from] tlite_converter::ConvertError),
    #[error(transparent)]
    Model(#[from] tlite_model::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Text(#[from] tlite_text::TextError),
    #[error("{tokens} tokens at position {pos} exceed the cache of {max} positions")]
    ContextOverflow {
        pos: usize,
        tokens: usize,
        max: usize,
    },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, RefError>;
