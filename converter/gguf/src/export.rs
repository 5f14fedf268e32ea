//! A checkpoint written as a GGUF file shaped like a template GGUF of the same model: the
//! template's metadata (hyperparameters, tokenizer, chat template) copied byte for byte, its
//! tensor names and layouts (Q/K rows permuted back for `llama`, Gemma's norms stored as
//! `1 + w`), every tensor in F32. This is how a transformed checkpoint — e.g. `tlite rotate`'s —
//! reaches llama.cpp's `llama-quantize` and `llama-perplexity` without its Python converter. An
//! LM head the template ties is added as `output.weight` when the checkpoint has its own.

use std::io::Write;
use std::path::Path;

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::{Result, io_err};

use crate::arch::Transform;
use crate::permute::permute_rows;
use crate::reader::GgufFile;

/// ggml's F32 type id.
const GGML_F32: u32 = 0;

/// Writes `ck`'s tensors into a GGUF file at `out` with `template`'s metadata and tensor
/// names (a temporary file renamed when complete). Returns the file size.
pub fn export_like(template: &Path, ck: &Checkpoint, out: &Path) -> Result<u64> {
    let g = GgufFile::open(template)?;
    let (spec, _, heads) = crate::model_of(&g)?;
    let mut names: Vec<String> = g.tensor_names().iter().map(|s| s.to_string()).collect();
    if !names.iter().any(|n| n == "output.weight") && !ck.config.tie_word_embeddings {
        names.push("output.weight".into());
    }
    // (GGUF name, dims innermost first, values)
    let shapes: std::collections::HashMap<String, Vec<usize>> = (ck.expected_tensors()?)
        .into_iter()
        .map(|t| (t.name, t.shape))
        .collect();
    let mut tensors = Vec::with_capacity(names.len());
    for name in &names {
        let (hf, transform) = spec
            .map_tensor(name, heads)
            .ok_or_else(|| g.err(format!("tensor `{name}` has no Hugging Face name")))?;
        let shape = shapes
            .get(&hf)
            .ok_or_else(|| g.err(format!("the checkpoint has no `{hf}` (for `{name}`)")))?;
        let data = ck.tensor_f32(&hf)?;
        let data = match transform {
            Transform::None => data,
            Transform::SubtractOne => data.into_iter().map(|x| x + 1.0).collect(),
            Transform::UnpermuteRows { heads } => {
                let outer = shape.first().copied().unwrap_or(1);
                permute_rows(&data, outer, data.len() / outer.max(1), heads)
            }
        };
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        tensors.push((name.clone(), dims, data));
    }
    let kv = metadata_bytes(template, &g)?;
    let align = g.u64("general.alignment")?.unwrap_or(32).max(1);
    let tmp = out.with_extension("gguf.partial");
    let written = write(&tmp, &kv, g.metadata().len() as u64, &tensors, align).and_then(|size| {
        std::fs::rename(&tmp, out)
            .map_err(io_err(out))
            .map(|()| size)
    });
    if written.is_err() {
        // No half-written file is left behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The template's metadata section, as it is in the file (GGUF 2 and 3: 64-bit counts).
fn metadata_bytes(path: &Path, g: &GgufFile) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    if g.version() < 2 {
        return Err(g.err("a GGUF version 1 template is not supported"));
    }
    let mut c = Cursor { b: &bytes, p: 16 };
    let end = (|| {
        let n_kv = c.u64()?;
        for _ in 0..n_kv {
            let klen = c.u64()?;
            c.skip(klen)?;
            let t = c.u32()?;
            c.value(t)?;
        }
        Some(c.p)
    })()
    .ok_or_else(|| g.err("the metadata section is malformed or ends early"))?;
    Ok(bytes[24..end].to_vec())
}

/// A reader over a file's bytes.
struct Cursor<'a> {
    b: &'a [u8],
    p: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: u64) -> Option<&[u8]> {
        let end = self.p.checked_add(usize::try_from(n).ok()?)?;
        let s = self.b.get(self.p..end)?;
        self.p = end;
        Some(s)
    }
    fn skip(&mut self, n: u64) -> Option<()> {
        self.take(n).map(drop)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// Skips one metadata value of type `t`.
    fn value(&mut self, t: u32) -> Option<()> {
        match t {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            8 => {
                let n = self.u64()?;
                self.skip(n)
            }
            9 => {
                let et = self.u32()?;
                let n = self.u64()?;
                (0..n).try_for_each(|_| self.value(et))
            }
            _ => None,
        }
    }
}

fn write(
    path: &Path,
    kv: &[u8],
    n_kv: u64,
    tensors: &[(String, Vec<u64>, Vec<f32>)],
    align: u64,
) -> Result<u64> {
    let mut head = b"GGUF".to_vec();
    head.extend(3u32.to_le_bytes());
    head.extend((tensors.len() as u64).to_le_bytes());
    head.extend(n_kv.to_le_bytes());
    head.extend(kv);
    let mut offset = 0u64;
    let mut offsets = Vec::with_capacity(tensors.len());
    for (name, dims, data) in tensors {
        head.extend((name.len() as u64).to_le_bytes());
        head.extend(name.as_bytes());
        head.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| head.extend(d.to_le_bytes()));
        head.extend(GGML_F32.to_le_bytes());
        head.extend(offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + 4 * data.len() as u64).next_multiple_of(align);
    }
    head.resize((head.len() as u64).next_multiple_of(align) as usize, 0);
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    w.write_all(&head).map_err(io_err(path))?;
    let mut written = 0u64;
    for ((_, _, data), o) in tensors.iter().zip(offsets) {
        w.write_all(&vec![0u8; (o - written) as usize])
            .map_err(io_err(path))?;
        for x in data {
            w.write_all(&x.to_le_bytes()).map_err(io_err(path))?;
        }
        written = o + 4 * data.len() as u64;
    }
    let file = w.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(head.len() as u64 + written)
}
