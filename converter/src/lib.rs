//! Reading checkpoints (Hugging Face folders, the HF cache, GGUF import), the architecture
//! tables, and writing and reading the deployable M0E4 model. Emits progress events
//! ([`events`]); draws nothing.

pub mod arch;
pub mod checkpoint;
pub mod config;
pub mod deploy;
pub mod events;
pub mod fixtures;
pub mod gguf;
pub mod output;
pub mod safetensors_file;
pub mod synth;
pub mod validate;

pub use events::Event;
pub use safetensors_file::{SafetensorsFile, TensorEntry};

use std::path::PathBuf;

/// Errors of checkpoint reading and conversion, each naming the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
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
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: invalid config: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("unknown architecture `{model_type}`; supported: {supported}")]
    UnknownArchitecture {
        model_type: String,
        supported: String,
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
    #[error("{path}: not a valid deployable model: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("{path}: checksum mismatch in tensor `{tensor}` (the file is corrupted)")]
    Checksum { path: PathBuf, tensor: String },
    #[error("cannot resolve `{repo}`: {reason}")]
    Resolve { repo: String, reason: String },
    #[error(transparent)]
    Quant(#[from] tlite_quantizer::QuantError),
}

pub type Result<T> = std::result::Result<T, ConvertError>;

/// Maps an I/O error to [`ConvertError::Io`] naming `path`.
pub fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_owned(),
        source,
    }
}
