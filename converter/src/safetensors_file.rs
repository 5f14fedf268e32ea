//! A memory-mapped safetensors file: the header is parsed and validated (offsets in order, no
//! overlap, nothing past the end), tensor bytes are read from the map on demand.

use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::{ConvertError, Result};

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

/// A validated, memory-mapped safetensors file.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mmap,
    entries: Vec<TensorEntry>,
    metadata: std::collections::HashMap<String, String>,
}

impl SafetensorsFile {
    /// Maps and validates `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| ConvertError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file truncated underneath it is the same hazard every
        // mmap-based reader (candle, safetensors) accepts.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let (header_len, meta) =
            SafeTensors::read_metadata(&map).map_err(|e| ConvertError::Safetensors {
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
            .ok_or_else(|| ConvertError::MissingTensor {
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
                return Err(ConvertError::DType {
                    path: self.path.clone(),
                    tensor: e.name.clone(),
                    dtype: format!("{d:?}"),
                    expected: "F32, F16, BF16",
                });
            }
        })
    }
}

/// One tensor of a file being written: name, dtype and shape (its bytes come later).
pub struct OutTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl OutTensor {
    /// Bytes of the tensor's data; `None` when the size overflows.
    pub fn byte_len(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.bitsize(), |acc, &d| acc.checked_mul(d))
            .map(|bits| bits.div_ceil(8))
    }
}

/// Writes a safetensors file tensor by tensor: the header first (through the `safetensors`
/// crate's own `Metadata`, so the bytes equal `safetensors::serialize_to_file`'s), then each
/// tensor's data, produced by `data(index, writer)` in the file's order (descending dtype,
/// then name; `index` is the tensor's position in `tensors`). A tensor that writes a different
/// number of bytes than its shape implies is an error. Returns the file size.
pub fn write_streaming(
    path: &Path,
    metadata: Option<std::collections::HashMap<String, String>>,
    tensors: &[OutTensor],
    mut data: impl FnMut(usize, &mut dyn std::io::Write) -> Result<()>,
) -> Result<u64> {
    use std::io::Write;
    let st_err = |reason: String| ConvertError::Safetensors {
        path: path.to_owned(),
        reason,
    };
    // safetensors' own order: descending dtype, then name (so the bytes equal
    // `serialize_to_file`'s for the same tensors).
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let (l, r) = (&tensors[a], &tensors[b]);
        r.dtype.cmp(&l.dtype).then(l.name.cmp(&r.name))
    });
    let mut infos = Vec::with_capacity(tensors.len());
    let mut offset = 0usize;
    let mut sizes = Vec::with_capacity(tensors.len());
    for t in order.iter().map(|&i| &tensors[i]) {
        let n = t
            .byte_len()
            .ok_or_else(|| st_err(format!("tensor `{}` is too large", t.name)))?;
        sizes.push(n as u64);
        let end = offset
            .checked_add(n)
            .ok_or_else(|| st_err(format!("tensor `{}` is too large", t.name)))?;
        infos.push((
            t.name.clone(),
            safetensors::tensor::TensorInfo {
                dtype: t.dtype,
                shape: t.shape.clone(),
                data_offsets: (offset, end),
            },
        ));
        offset = end;
    }
    let meta =
        safetensors::tensor::Metadata::new(metadata, infos).map_err(|e| st_err(e.to_string()))?;
    let mut header = serde_json::to_string(&meta)
        .map_err(|e| st_err(e.to_string()))?
        .into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let file = File::create(path).map_err(crate::io_err(path))?;
    let mut w = CountingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        written: 0,
    };
    w.write_all(&(header.len() as u64).to_le_bytes())
        .and_then(|()| w.write_all(&header))
        .map_err(crate::io_err(path))?;
    for (n, (&i, t)) in order.iter().zip(order.iter().map(|&i| &tensors[i])).enumerate() {
        let before = w.written;
        data(i, &mut w)?;
        if w.written - before != sizes[n] {
            return Err(st_err(format!(
                "tensor `{}`: wrote {} bytes, its shape needs {}",
                t.name,
                w.written - before,
                sizes[n]
            )));
        }
        if n == tensors.len() / 2 {
            crate::output::failpoint("mid-write");
        }
    }
    let file = w
        .inner
        .into_inner()
        .map_err(|e| crate::io_err(path)(e.into_error()))?;
    file.sync_all().map_err(crate::io_err(path))?;
    Ok((8 + header.len() + offset) as u64)
}

struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
