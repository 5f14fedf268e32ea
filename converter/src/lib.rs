//! Reading Hugging Face checkpoints (local folders, the HF cache, downloads from the hub), writing the deployable M0E4
//! model, crash-safe output folders and random-weight synthetic checkpoints. The model
//! description (architecture table, config, the deployable-model reader) is `tlite_model`'s;
//! GGUF import is `tlite_gguf`'s. Emits progress events ([`events`]); draws nothing.

pub mod checkpoint;
pub mod deploy;
pub mod events;
pub mod export;
pub mod hub;
pub mod output;
pub mod rotate;
pub mod safetensors_out;
pub mod synth;

pub use events::Event;

use std::path::PathBuf;

use tlite_model::ModelError;

/// Errors of checkpoint reading, import and conversion, each naming the file and the problem.
/// What the model description reports (configs, safetensors, manifests) comes through
/// [`ConvertError::Model`].
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: missing shard `{shard}` listed in the index")]
    MissingShard { path: PathBuf, shard: String },
    #[error("{path}: not a usable GGUF file: {reason}")]
    Gguf { path: PathBuf, reason: String },
    #[error("{path}: tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("{path} exists and is not empty (overwrite it with --force)")]
    OutputExists { path: PathBuf },
    #[error("refusing to write {path}: {reason}")]
    OutputRefused { path: PathBuf, reason: String },
    #[error("cannot resolve `{repo}`: {reason}")]
    Resolve { repo: String, reason: String },
}

impl From<tlite_quantizer::QuantError> for ConvertError {
    fn from(e: tlite_quantizer::QuantError) -> Self {
        ConvertError::Model(e.into())
    }
}

pub type Result<T> = std::result::Result<T, ConvertError>;

/// Maps an I/O error to [`ModelError::Io`] naming `path`.
pub fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| tlite_model::io_err(path)(source).into()
}

/// A [`ModelError::Config`] about `path`.
pub fn config_err(path: impl Into<PathBuf>, reason: impl Into<String>) -> ConvertError {
    ModelError::Config {
        path: path.into(),
        reason: reason.into(),
    }
    .into()
}
