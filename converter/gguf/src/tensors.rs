//! Which GGUF tensor becomes which Hugging Face tensor, and `model.safetensors` written one
//! tensor at a time: the header first (through the `safetensors` crate's own `Metadata`, so
//! the bytes equal `safetensors::serialize_to_file`'s), then each tensor dequantized,
//! transformed and encoded as it is written, in chunks of rows: memory stays at a few chunks,
//! whatever the model's size.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use candle_core::quantized::GgmlDType;
use safetensors::Dtype;

use tlite_converter::Event;
use tlite_converter::safetensors_out::{OutTensor, write_streaming};
use tlite_converter::{Result, io_err};

use crate::OutDType;
use crate::arch::{ArchSpec, Heads, Transform, layer_of};
use crate::permute::{can_permute, unpermute_rows};
use crate::reader::GgufFile;

/// One output tensor: where it comes from and what is done to it.
#[derive(Clone, Debug)]
pub struct Planned {
    pub gguf_name: String,
    pub hf_name: String,
    /// Outermost dimension first, as Hugging Face stores it.
    pub shape: Vec<usize>,
    pub transform: Transform,
    pub ggml_type: GgmlDType,
}

impl Planned {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Rows (every dimension but the innermost; 1 for a vector) and row length.
    fn rows_cols(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [] => (1, 1),
            [n] => (1, *n),
            [outer @ .., inner] => (outer.iter().product(), *inner),
        }
    }
}

/// Maps every tensor of `g`, sorted by Hugging Face name; a tensor the architecture does not
/// know, or of a layer at or past `layers`, is an error naming it.
pub fn plan(g: &GgufFile, spec: &ArchSpec, heads: Heads, layers: usize) -> Result<Vec<Planned>> {
    let mut out = Vec::new();
    for name in g.tensor_names() {
        let info = g.tensor_info(name)?;
        if let Some(l) = layer_of(name)
            && l >= layers
        {
            return Err(g.err(format!(
                "tensor `{name}` belongs to layer {l}, but `{}.block_count` is {layers}",
                spec.gguf
            )));
        }
        let Some((hf_name, transform)) = spec.map_tensor(name, heads) else {
            let hint = if name == "rope_freqs.weight" {
                " (Llama 3 rope scaling factors have no Hugging Face tensor; not supported)"
            } else {
                ""
            };
            return Err(g.err(format!(
                "tensor `{name}` is not part of architecture `{}`{hint}",
                spec.gguf
            )));
        };
        let shape = info.shape.dims().to_vec();
        if let Transform::UnpermuteRows { heads } = transform {
            let rows = shape.first().copied().unwrap_or(0);
            if shape.len() > 2 || !can_permute(rows, heads) {
                return Err(g.err(format!(
                    "tensor `{name}` has shape {shape:?}: its rows do not split into {heads} heads \
                     of an even size, so llama.cpp's Q/K permutation cannot be undone"
                )));
            }
        }
        out.push(Planned {
            gguf_name: name.to_owned(),
            hf_name,
            shape,
            transform,
            ggml_type: info.ggml_dtype,
        });
    }
    out.sort_by(|a, b| a.hf_name.cmp(&b.hf_name));
    if let Some(w) = out.windows(2).find(|w| w[0].hf_name == w[1].hf_name) {
        return Err(g.err(format!(
            "tensors `{}` and `{}` both become `{}`",
            w[0].gguf_name, w[1].gguf_name, w[0].hf_name
        )));
    }
    Ok(out)
}

/// Values per chunk when a tensor is streamed (16 MiB of f32).
const CHUNK_VALUES: usize = 1 << 22;

/// The whole tensor's f32 values, in Hugging Face layout and convention.
pub fn materialize(g: &mut GgufFile, t: &Planned) -> Result<Vec<f32>> {
    let (rows, _) = t.rows_cols();
    let data = g.dequantize_rows(&t.gguf_name, 0..rows)?;
    Ok(match t.transform {
        Transform::UnpermuteRows { heads } => {
            // Permuted along the outermost dimension: a bias's values are its rows.
            let outer = t.shape.first().copied().unwrap_or(1);
            unpermute_rows(&data, outer, data.len() / outer, heads)
        }
        _ => elementwise(t.transform, data),
    })
}

/// Applies the transforms that act value by value.
fn elementwise(transform: Transform, mut data: Vec<f32>) -> Vec<f32> {
    if transform == Transform::SubtractOne {
        data.iter_mut().for_each(|x| *x -= 1.0);
    }
    data
}

/// Streams one tensor to `w`: in chunks of rows, or whole when its rows are permuted.
fn write_tensor(
    g: &mut GgufFile,
    t: &Planned,
    dtype: OutDType,
    w: &mut impl Write,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let path = g.path().to_owned();
    let mut emit = |data: &[f32]| -> Result<()> {
        encode(data, dtype, buf);
        w.write_all(buf).map_err(io_err(&path))
    };
    if matches!(t.transform, Transform::UnpermuteRows { .. }) {
        return emit(&materialize(g, t)?);
    }
    let (rows, cols) = t.rows_cols();
    let step = (CHUNK_VALUES / cols.max(1)).max(1);
    for start in (0..rows).step_by(step) {
        let data = g.dequantize_rows(&t.gguf_name, start..rows.min(start + step))?;
        emit(&elementwise(t.transform, data))?;
    }
    Ok(())
}

/// Writes `model.safetensors` at `path` with every planned tensor (already sorted by name)
/// in `dtype`; returns the file size in bytes.
pub fn write_safetensors(
    path: &Path,
    g: &mut GgufFile,
    plan: &[Planned],
    dtype: OutDType,
    progress: &mut dyn FnMut(Event),
) -> Result<u64> {
    let st_dtype = match dtype {
        OutDType::F32 => Dtype::F32,
        OutDType::F16 => Dtype::F16,
        OutDType::BF16 => Dtype::BF16,
    };
    let tensors: Vec<OutTensor> = plan
        .iter()
        .map(|t| OutTensor {
            name: t.hf_name.clone(),
            dtype: st_dtype,
            shape: t.shape.clone(),
        })
        .collect();
    let format = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    progress(Event::Start {
        phase: "dequantize",
        total: plan.len(),
    });
    let mut buf = Vec::new();
    let bytes = write_streaming(path, Some(format), &tensors, |index, mut w| {
        let t = &plan[index];
        write_tensor(g, t, dtype, &mut w, &mut buf)?;
        progress(Event::Item {
            index,
            name: t.hf_name.clone(),
        });
        Ok(())
    })?;
    progress(Event::Done {
        phase: "dequantize",
    });
    Ok(bytes)
}

/// Little-endian bytes of `xs` in `dtype` (f16/bf16 rounded to nearest even), into `buf`.
fn encode(xs: &[f32], dtype: OutDType, buf: &mut Vec<u8>) {
    buf.clear();
    match dtype {
        OutDType::F32 => xs
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        OutDType::F16 => xs
            .iter()
            .for_each(|&x| buf.extend_from_slice(&half::f16::from_f32(x).to_le_bytes())),
        OutDType::BF16 => xs
            .iter()
            .for_each(|&x| buf.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes())),
    }
}
