//! The M0E4 4-bit format of Transformer-Lite (arXiv 2403.20041, spelled "E0M4" in the paper's
//! body): codes, packing and the one-FMA decoder ([`format`]), the algorithms that choose a
//! group's scale and bias ([`affine`]), the 4-bit baselines every report puts beside it
//! ([`scheme`]) with the field's formats among them (FP4: [`fp4`]; table formats: [`lut`];
//! Q4_K super-blocks: [`kquant`]), and error metrics ([`metrics`]).
//!
//! The core works on plain `f32` slices; candle tensors are accepted at the edge (`tensor`,
//! behind the `candle` feature).
//! Nothing here knows about files, models or GPUs.

pub mod affine;
pub mod format;
pub mod fp4;
pub mod gptq;
pub mod kquant;
pub mod levels;
mod linalg;
pub mod lut;
pub mod matrix;
pub mod metrics;
pub mod rng;
pub mod scheme;
#[cfg(feature = "candle")]
pub mod tensor;

pub use affine::Method;
pub use format::{GroupParams, PACKED_PER_WORD};
pub use gptq::GptqOptions;
pub use matrix::{M0E4Matrix, QuantOptions};
pub use metrics::ErrorStats;
pub use scheme::{GroupGrid, Scheme, SchemeKind, TensorParams, fake_quantize, matrix_bits};

/// Errors of the quantizer: invalid shapes, options or values. Every variant names the problem.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error(
        "group size {0} is not supported: use a multiple of 8 between 8 and 4096 (32, 64 or 128 recommended)"
    )]
    GroupSize(usize),
    #[error("shape mismatch: {what}: expected {expected}, found {found}")]
    Shape {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("a matrix of {rows} × {cols} is too large to address")]
    TooLarge { rows: usize, cols: usize },
    #[error("non-finite weight {value} at row {row}, column {col}")]
    NonFinite { row: usize, col: usize, value: f32 },
    #[error("group at row {row}, column {col} spans {range:e}, beyond what an f16 scale can hold")]
    ScaleOverflow { row: usize, col: usize, range: f32 },
    #[error("{scheme} has no fixed per-group grid to round onto, so GPTQ cannot use it")]
    GptqUnsupported { scheme: String },
    #[error(
        "the Hessian (XᵀX, {cols} × {cols}) is not positive definite even with damping {damp:e} \
         × mean(diag H) ({tries} tries): the calibration inputs are degenerate or too few"
    )]
    NotPositiveDefinite {
        cols: usize,
        damp: f64,
        tries: usize,
    },
    #[error("the Hessian holds a non-finite value {value} at row {row}, column {col}")]
    NonFiniteHessian { row: usize, col: usize, value: f64 },
    #[error("invalid GPTQ option: {0}")]
    GptqOption(String),
    #[cfg(feature = "candle")]
    #[error("tensor must be 2-D, found rank {0}")]
    Rank(usize),
    #[cfg(feature = "candle")]
    #[error("unsupported tensor dtype {0}: expected f32, f16 or bf16")]
    DType(String),
    #[cfg(feature = "candle")]
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, QuantError>;

/// Checks a group size: a multiple of 8 (a packed word never spans two groups) in 8..=4096.
pub fn check_group(group: usize) -> Result<usize> {
    if (8..=4096).contains(&group) && group.is_multiple_of(8) {
        Ok(group)
    } else {
        Err(QuantError::GroupSize(group))
    }
}
