//! The wgpu runtime: device setup ([`device`]), the WGSL kernels on disk with their parameter
//! structs ([`kernels`]), and the operations built from them ([`dequant`]). A loaded model is a
//! [`tlite_model::LanguageModel`] through [`GpuLm`]; the text side (tokenizer, chat templates,
//! sampling, the generation loop) is the `tlite-text` crate's.
//!
//! The runtime computes on the GPU only; candle is the reference's, not the runtime's.

pub mod dequant;
pub mod device;
mod estimate;
pub mod exec;
pub mod graph;
pub mod kernels;
pub mod lab;
mod language_model;
pub mod memory;
pub mod pipeline_cache;
pub mod pipeline_stats;
pub mod planner;
pub mod priority;
pub mod readback;
pub mod shape;

pub use device::{DeviceOptions, Gpu, KvCache, MatrixCores};
pub use exec::{
    Baseline, DecodeRun, GpuModel, LoadTimes, MAX_LEAD, MAX_TOP_K, MemoryReport, Profiler,
    RowScore, RunOptions, Scored, ShaderChecks,
};
pub use language_model::GpuLm;
pub use memory::{DeviceMemory, LimitKind, MemoryEstimate};
pub use priority::Priority;

/// Errors of the GPU runtime, each naming what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found for backends {backends}: install a Vulkan driver (for a software GPU on Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1)"
    )]
    NoAdapter { backends: String },
    #[error("no adapter matches `{wanted}`; available: {available}")]
    AdapterNotFound { wanted: String, available: String },
    #[error("requesting a device from `{adapter}` failed: {source}")]
    RequestDevice {
        adapter: String,
        #[source]
        source: wgpu::RequestDeviceError,
    },
    #[error("{what} needs {needed} bytes in one binding, above this device's limit of {limit}")]
    BindingTooLarge {
        what: &'static str,
        needed: u64,
        limit: u64,
    },
    /// A buffer, binding, grid or kernel parameter that the run options ask for is beyond what
    /// the device (or the kernels' 32-bit indices) allows; `hint` says what to change.
    #[error("{}", memory::too_large_message(what, *needed, *limit, *kind, hint))]
    TooLarge {
        what: String,
        needed: u64,
        limit: u64,
        kind: LimitKind,
        hint: String,
    },
    /// Run options that no device could take (zero sizes, a batch larger than the context).
    #[error("invalid run options: {0}")]
    InvalidOptions(String),
    /// The device could not allocate `what` (an error scope caught wgpu's out-of-memory error).
    #[error(
        "the GPU ran out of memory allocating {what} ({}): {hint}",
        memory::fmt_bytes(*bytes)
    )]
    OutOfMemory {
        what: String,
        bytes: u64,
        hint: String,
    },
    /// wgpu rejected a call of the runtime's (a bug in tlite, not in the input).
    #[error("wgpu rejected {what}: {message} (a bug in tlite: please report it)")]
    Validation { what: String, message: String },
    /// The device was lost (driver reset, GPU hang, removed device); the model must be loaded
    /// again on a new device.
    #[error(
        "the GPU device was lost ({reason}): {message}; open the device again (restart the command)"
    )]
    DeviceLost { reason: String, message: String },
    #[error(
        "{needed} positions exceed the context of {max} (raise --max-seq or shorten the prompt)"
    )]
    ContextOverflow { needed: usize, max: usize },
    #[error("model: {0}")]
    Model(String),
    #[error("GPU readback failed: {0}")]
    Readback(String),
    #[error("the GPU device was lost or a validation error occurred: {0}")]
    Device(String),
    /// `tlite lab stats` could not read the driver's pipeline statistics.
    #[error("pipeline statistics: {0}")]
    Statistics(String),
}

pub type Result<T> = std::result::Result<T, GpuError>;
