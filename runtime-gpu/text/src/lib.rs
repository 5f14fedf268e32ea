//! The host-side text stack of tlite, for any model that implements
//! [`tlite_model::LanguageModel`] (the GPU runtime's and the CPU reference): a model's tokenizer
//! and special ids ([`codec`]), chat templates rendered within limits ([`chat`]), incremental
//! detokenization and stop strings ([`stream`]), sampling ([`sample`]) and the prefill + decode
//! loop with streamed text ([`generate`]).
//!
//! Nothing here computes on a GPU or links candle.

pub mod chat;
pub mod codec;
pub mod generate;
pub mod sample;
pub mod stream;

pub use codec::{TextCodec, check_context};
pub use generate::{
    GenerateError, GenerateOptions, Generation, GenerationStats, Generator, StopReason,
};
pub use sample::{Sampler, SamplerConfig};

/// Errors of the text side, each naming what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("sampling settings: {0}")]
    Sampling(String),
    #[error(
        "{needed} positions exceed the context of {max} (raise --max-seq or shorten the prompt)"
    )]
    ContextOverflow { needed: usize, max: usize },
    /// A model file the text side reads, or a prompt the model cannot take.
    #[error("model: {0}")]
    Model(String),
}

pub type Result<T> = std::result::Result<T, TextError>;
