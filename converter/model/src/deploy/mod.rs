//! The deployable model: one safetensors file holding the packed M0E4 codes (U32) and their
//! per-group f16 `S`/`B` tensors in exactly the layout the WGSL kernels read, plus dense
//! tensors (norms, biases, kept matrices), with a versioned manifest in `__metadata__`; next to
//! it `tokenizer.json` and the source `config.json`. The converter writes it
//! (`tlite_converter::deploy`); [`DeployedModel`] reads and verifies it.
//!
//! Tensors larger than the binding limit are split by rows into chunks at conversion time, so
//! no chunk exceeds a device's `max_storage_buffer_binding_size`.

mod read;

pub use read::DeployedModel;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tlite_quantizer::Method;

use crate::arch::{Family, NormStyle, Role, RopeLayout};
use crate::config::ModelConfig;

/// Value of the manifest's `format` field.
pub const FORMAT: &str = "tlite-m0e4";
/// Bumped whenever the layout or the M0E4 definition changes.
pub const FORMAT_VERSION: u32 = 1;
/// The weights file inside a deployable model folder.
pub const MODEL_FILE: &str = "model.m0e4.safetensors";
/// The `__metadata__` key holding the manifest JSON.
pub const MANIFEST_KEY: &str = "tlite.manifest";
/// Default chunk limit: 128 MiB, the storage-binding limit of many mobile and browser devices.
pub const DEFAULT_BINDING_LIMIT: u64 = 128 << 20;

/// The manifest of a deployable model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub architecture: Family,
    pub config: ModelConfig,
    /// config.json as given by the source checkpoint.
    pub source_config: Value,
    pub quantization: QuantSettings,
    pub rope_layout: RopeLayout,
    pub norm: NormStyle,
    pub tensors: Vec<TensorLayout>,
}

/// How the model was quantized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantSettings {
    pub scheme: String,
    pub group_size: usize,
    pub method: Method,
    pub keep: Vec<KeepRule>,
    pub binding_limit: u64,
    /// Decode: `w = fma(1 + q/16, S, B)`; code k of a u32 at bits 4k..4k+3.
    pub decode: String,
}

/// How one tensor is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    M0E4,
    F16,
    F32,
}

/// One model tensor's layout: its chunks (row ranges) and the stored tensors of each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorLayout {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
    pub storage: Storage,
    /// Group size along the input dimension (M0E4 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
    pub chunks: Vec<Chunk>,
    /// sha256 over the bytes of every part of every chunk, in order.
    pub sha256: String,
}

/// Rows `[start, end)` of a tensor. Parts: `[packed, scales, biases]` for M0E4, `[data]` else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub rows: (usize, usize),
    pub parts: Vec<String>,
}

impl TensorLayout {
    /// Rows (first dimension) and columns (product of the rest; 1 for vectors).
    pub fn rows_cols(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [n] => (1, *n),
            [r, rest @ ..] => (*r, rest.iter().product()),
            [] => (1, 1),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A per-tensor precision rule, `REGEX=f16|f32|m0e4[@G]`: tensors whose name matches are
/// stored dense, or in M0E4 with their own group size `G` (the conversion's when absent). The
/// first matching rule of a conversion decides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeepRule {
    pub pattern: String,
    pub storage: Storage,
    /// M0E4 only: the group size of matching tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
}

impl KeepRule {
    /// Matching tensors stored dense as `storage`.
    pub fn dense(pattern: &str, storage: Storage) -> Self {
        KeepRule {
            pattern: pattern.to_owned(),
            storage,
            group: None,
        }
    }

    /// The rule as `REGEX=f16|f32|m0e4[@G]` (what [`str::parse`] reads).
    pub fn to_rule_string(&self) -> String {
        let s = match (self.storage, self.group) {
            (Storage::F16, _) => "f16".to_owned(),
            (Storage::F32, _) => "f32".to_owned(),
            (Storage::M0E4, None) => "m0e4".to_owned(),
            (Storage::M0E4, Some(g)) => format!("m0e4@{g}"),
        };
        format!("{}={s}", self.pattern)
    }
}

impl std::str::FromStr for KeepRule {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (pattern, dt) = s.rsplit_once('=').unwrap_or((s, "f16"));
        let bad = || {
            format!(
                "`{s}`: precision rules are REGEX=f16, REGEX=f32, REGEX=m0e4 or REGEX=m0e4@GROUP"
            )
        };
        let (storage, group) = match dt {
            "f16" => (Storage::F16, None),
            "f32" => (Storage::F32, None),
            "m0e4" => (Storage::M0E4, None),
            _ => {
                let g = dt.strip_prefix("m0e4@").ok_or_else(bad)?;
                let g: usize = g.parse().map_err(|_| bad())?;
                let g = tlite_quantizer::check_group(g).map_err(|e| format!("`{s}`: {e}"))?;
                (Storage::M0E4, Some(g))
            }
        };
        regex::Regex::new(pattern).map_err(|e| format!("`{pattern}` is not a valid regex: {e}"))?;
        Ok(KeepRule {
            pattern: pattern.to_owned(),
            storage,
            group,
        })
    }
}
