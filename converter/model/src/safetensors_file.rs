//! A memory-mapped safetensors file (or a file image held in memory): the header is parsed and
//! validated (offsets in order, no overlap, nothing past the end), tensor bytes are read from
//! the map on demand.

use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::{ModelError, Result};

/// One tensor's header entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range inside the mapped file.
    pub range: std::ops::Range<usize>,
}

impl TensorEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Where a file's bytes are: mapped from disk, or an image built in memory.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A validated safetensors file, memory-mapped or held in memory.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Bytes,
    entries: Vec<TensorEntry>,
    metadata: std::collections::HashMap<String, String>,
}

impl SafetensorsFile {
    /// Maps and validates `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| ModelError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file truncated underneath it is the same hazard every
        // mmap-based reader (candle, safetensors) accepts.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Bytes::Mapped(map))
    }

    /// The file image `bytes`, held in memory and validated as [`SafetensorsFile::open`]
    /// validates a file; `path` only names it in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(path, Bytes::Owned(bytes))
    }

    fn parse(path: &Path, map: Bytes) -> Result<Self> {
        let (header_len, meta) =
            SafeTensors::read_metadata(&map).map_err(|e| ModelError::Safetensors {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let base = 8 + header_len;
        let mut entries: Vec<TensorEntry> = meta
            .tensors()
            .into_iter()
            .map(|(name, info)| TensorEntry {
                name,
                dtype: info.dtype,
                shape: info.shape.clone(),
                range: base + info.data_offsets.0..base + info.data_offsets.1,
            })
            .collect();
        entries.sort_by_key(|e| e.range.start);
        Ok(SafetensorsFile {
            path: path.to_owned(),
            map,
            entries,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensors in file order.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    /// The `__metadata__` map of the header.
    pub fn metadata(&self) -> &std::collections::HashMap<String, String> {
        &self.metadata
    }

    pub fn entry(&self, name: &str) -> Result<&TensorEntry> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_owned(),
            })
    }

    /// The raw little-endian bytes of a tensor.
    pub fn bytes(&self, e: &TensorEntry) -> &[u8] {
        &self.map[e.range.clone()]
    }

    /// A float tensor (f32, f16 or bf16) converted to f32.
    pub fn to_f32(&self, e: &TensorEntry) -> Result<Vec<f32>> {
        let b = self.bytes(e);
        Ok(match e.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            d => {
                return Err(ModelError::DType {
                    path: self.path.clone(),
                    tensor: e.name.clone(),
                    dtype: format!("{d:?}"),
                    expected: "F32, F16, BF16",
                });
            }
        })
    }
}
