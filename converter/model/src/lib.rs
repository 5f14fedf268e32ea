//! The model description, in one place: the architecture table ([`arch`]) and the one walk of a
//! layer's tensors that every consumer uses ([`layer`]), `config.json` normalized and validated
//! ([`config`], [`validate`]), and the deployable M0E4 model — its manifest and the verifying
//! reader ([`deploy`]) over a checked, memory-mapped safetensors file ([`safetensors_file`]);
//! and the interface every model that produces logits implements ([`lm::LanguageModel`]).
//!
//! Nothing here depends on candle or on a checkpoint importer: the GPU runtime reads models
//! through this crate alone.

pub mod arch;
pub mod config;
pub mod deploy;
pub mod layer;
pub mod lm;
pub mod safetensors_file;
pub mod validate;

pub use lm::LanguageModel;
pub use safetensors_file::{SafetensorsFile, TensorEntry};

use std::path::PathBuf;

/// Errors of reading a model description or a model file, each naming the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    #[error("{path}: tensor `{tensor}` not found")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor `{tensor}` has dtype {dtype}, expected one of {expected}")]
    DType {
        path: PathBuf,
        tensor: String,
        dtype: String,
        expected: &'static str,
    },
    #[error("{path}: invalid config: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("unknown architecture `{model_type}`; supported: {supported}")]
    UnknownArchitecture {
        model_type: String,
        supported: String,
    },
    #[error("{path}: not a valid deployable model: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("{path}: checksum mismatch in tensor `{tensor}` (the file is corrupted)")]
    Checksum { path: PathBuf, tensor: String },
    #[error(transparent)]
    Quant(#[from] tlite_quantizer::QuantError),
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// Maps an I/O error to [`ModelError::Io`] naming `path`.
pub fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_owned(),
        source,
    }
}
