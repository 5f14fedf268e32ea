//! Writing a safetensors file tensor by tensor, with the bytes `safetensors::serialize_to_file`
//! would write for the same tensors, and a crash-test failpoint halfway.

use std::fs::File;
use std::path::Path;

use half::{bf16, f16};
use safetensors::Dtype;

use crate::{ConvertError, Result, io_err};

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
    data: impl FnMut(usize, &mut dyn std::io::Write) -> Result<()>,
) -> Result<u64> {
    // The header first, so that a tensor list it cannot describe creates no file.
    let header = Header::new(path, metadata, tensors)?;
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    write_body(path, &mut w, &header, tensors, data)?;
    let file = w.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(header.file_size() as u64)
}

/// A file's header: the 8-byte length and the JSON, padded to 8 bytes; the tensors in file
/// order (indices into `tensors`) with their byte sizes.
struct Header {
    bytes: Vec<u8>,
    order: Vec<usize>,
    sizes: Vec<usize>,
}

impl Header {
    fn new(
        path: &Path,
        metadata: Option<std::collections::HashMap<String, String>>,
        tensors: &[OutTensor],
    ) -> Result<Self> {
        let st_err = |reason: String| -> ConvertError {
            tlite_model::ModelError::Safetensors {
                path: path.to_owned(),
                reason,
            }
            .into()
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
            sizes.push(n);
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
        let meta = safetensors::tensor::Metadata::new(metadata, infos)
            .map_err(|e| st_err(e.to_string()))?;
        let mut json = serde_json::to_string(&meta)
            .map_err(|e| st_err(e.to_string()))?
            .into_bytes();
        json.resize(json.len().next_multiple_of(8), b' ');
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&json);
        Ok(Header {
            bytes,
            order,
            sizes,
        })
    }

    fn file_size(&self) -> usize {
        self.bytes.len() + self.sizes.iter().sum::<usize>()
    }
}

/// The header and each tensor's data (`data(index, writer)`) into `out`.
fn write_body(
    path: &Path,
    out: &mut impl std::io::Write,
    header: &Header,
    tensors: &[OutTensor],
    mut data: impl FnMut(usize, &mut dyn std::io::Write) -> Result<()>,
) -> Result<()> {
    use std::io::Write;
    let mut w = CountingWriter {
        inner: out,
        written: 0,
    };
    w.write_all(&header.bytes).map_err(io_err(path))?;
    for (n, &i) in header.order.iter().enumerate() {
        let before = w.written;
        data(i, &mut w)?;
        if w.written - before != header.sizes[n] as u64 {
            let reason = format!(
                "tensor `{}`: wrote {} bytes, its shape needs {}",
                tensors[i].name,
                w.written - before,
                header.sizes[n]
            );
            return Err(tlite_model::ModelError::Safetensors {
                path: path.to_owned(),
                reason,
            }
            .into());
        }
        if n == tensors.len() / 2 {
            crate::output::failpoint("mid-write");
        }
    }
    w.flush().map_err(io_err(path))
}

/// [`write_streaming`]'s bytes as a file image in memory, each tensor's bytes `data(index)`
/// copied in parallel; `path` only names it in errors.
pub fn image<'a>(
    path: &Path,
    metadata: Option<std::collections::HashMap<String, String>>,
    tensors: &[OutTensor],
    data: impl Fn(usize) -> &'a [u8] + Sync,
) -> Result<Vec<u8>> {
    use rayon::prelude::*;
    let header = Header::new(path, metadata, tensors)?;
    for (n, &i) in header.order.iter().enumerate() {
        if data(i).len() != header.sizes[n] {
            let reason = format!(
                "tensor `{}` has {} bytes, its shape needs {}",
                tensors[i].name,
                data(i).len(),
                header.sizes[n]
            );
            return Err(tlite_model::ModelError::Safetensors {
                path: path.to_owned(),
                reason,
            }
            .into());
        }
    }
    // Zeroed pages come from the kernel untouched; each is written once, by the copying thread.
    let mut out = vec![0u8; header.file_size()];
    let (head, mut rest) = out.split_at_mut(header.bytes.len());
    head.copy_from_slice(&header.bytes);
    let mut jobs = Vec::with_capacity(header.order.len());
    for (n, &i) in header.order.iter().enumerate() {
        let (dst, tail) = rest.split_at_mut(header.sizes[n]);
        jobs.push((dst, i));
        rest = tail;
    }
    jobs.into_par_iter()
        .for_each(|(dst, i)| dst.copy_from_slice(data(i)));
    Ok(out)
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

/// Little-endian bytes of `v` as `dtype`: f16 and bf16 rounded to nearest, every other type as f32.
pub fn encode_f32(v: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F16 => v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::BF16 => v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => {
            // A loop of fixed-size copies, not an iterator chain: this is the dense path of
            // every conversion.
            let mut out = Vec::with_capacity(4 * v.len());
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
            out
        }
    }
}
