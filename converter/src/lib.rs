//! Reading checkpoints and writing the deployable M0E4 model. Emits progress events; draws
//! nothing.

pub mod safetensors_file;

pub use safetensors_file::{SafetensorsFile, TensorEntry};

use std::path::PathBuf;

/// Errors of checkpoint reading and conversion, each naming the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot read {path}: {source}")]
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
    #[error(transparent)]
    Quant(#[from] tlite_quantizer::QuantError),
}

pub type Result<T> = std::result::Result<T, ConvertError>;
