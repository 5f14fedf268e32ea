//! Reading a GGUF file: metadata by key with typed errors, and tensors dequantized to `f32`.
//!
//! The header is parsed by [`crate::header`], which checks every size and offset against the
//! file; dequantization is candle's (`candle_core::quantized`). Its CPU dequantizers
//! follow ggml's reference code and give gguf-py's f32 values bit for bit (`dequant_ref`
//! checks this): every product in these formats is exact in f32 (an f16 scale has 11
//! significant bits, the integer factors at most 13 together), so the only rounding is the
//! last operation — `+ m` in Q4_1, `- dmin·m` in Q4_K, none in Q4_0/Q5_0/Q8_0/Q6_K — and
//! neither the order of the multiplications nor a fused multiply-add can change a value.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::GgmlDType;
use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::{TensorInfo, Value};

use tlite_converter::{ConvertError, Result, io_err};

use crate::header::{self, Header};

/// An open GGUF file: its parsed header and a handle for reading tensor data.
pub struct GgufFile {
    path: PathBuf,
    file: File,
    header: Header,
}

impl GgufFile {
    /// Opens `path` and parses its header (metadata and tensor directory), checking every
    /// size it declares against the file: afterwards every tensor is known to lie inside the
    /// file's data section.
    pub fn open(path: &Path) -> Result<Self> {
        let gguf_err = |reason: String| ConvertError::Gguf {
            path: path.to_owned(),
            reason,
        };
        let file = File::open(path).map_err(io_err(path))?;
        let meta = file.metadata().map_err(io_err(path))?;
        if !meta.is_file() {
            return Err(gguf_err("not a regular file".into()));
        }
        let reader = BufReader::with_capacity(1 << 16, &file);
        let header = header::parse(reader, meta.len()).map_err(gguf_err)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            header,
        })
    }

    /// Bytes of tensor data the file holds, all tensors together (non-overlapping, each
    /// inside the data section).
    pub fn tensor_data_bytes(&self) -> u64 {
        self.header.tensor_bytes
    }

    /// The GGUF version (1 to 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A [`ConvertError::Gguf`] about this file.
    pub fn err(&self, reason: impl Into<String>) -> ConvertError {
        ConvertError::Gguf {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// All metadata entries.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.header.metadata
    }

    /// A metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.header.metadata.get(key)
    }

    /// An integer metadata value of any integer type; an error if present with another type.
    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| as_u64(v).ok_or_else(|| self.type_err(key, "a non-negative integer", v)))
            .transpose()
    }

    /// A required integer metadata value.
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        self.u64(key)?
            .ok_or_else(|| self.err(format!("missing metadata key `{key}`")))
    }

    /// A floating-point (or integer) metadata value, widened to f64; NaN and infinities are
    /// errors.
    ///
    /// An f32 is converted through its shortest decimal form, so `1e-5f32` becomes `1e-5`
    /// rather than `9.999999747378752e-6`: configs read the way their authors wrote them.
    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| match v {
                Value::F32(x) => Ok(x.to_string().parse().unwrap_or(*x as f64)),
                Value::F64(x) => Ok(*x),
                other => as_u64(other)
                    .map(|x| x as f64)
                    .ok_or_else(|| self.type_err(key, "a number", other)),
            })
            .transpose()?
            .map(|x: f64| {
                if x.is_finite() {
                    Ok(x)
                } else {
                    Err(self.err(format!("metadata key `{key}` is {x}, not a finite number")))
                }
            })
            .transpose()
    }

    /// A boolean metadata value.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| match v {
                Value::Bool(b) => Ok(*b),
                other => Err(self.type_err(key, "a boolean", other)),
            })
            .transpose()
    }

    /// A string metadata value.
    pub fn str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key)
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.type_err(key, "a string", other)),
            })
            .transpose()
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.array(key, "an array of strings", |v| match v {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// An array of numbers, as f32.
    pub fn f32s(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.array(key, "an array of numbers", |v| match v {
            Value::F32(x) => Some(*x),
            Value::F64(x) => Some(*x as f32),
            other => as_i64(other).map(|x| x as f32),
        })
    }

    /// An array of integers.
    pub fn i64s(&self, key: &str) -> Result<Option<Vec<i64>>> {
        self.array(key, "an array of integers", as_i64)
    }

    fn array<'a, T>(
        &'a self,
        key: &str,
        what: &str,
        f: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.type_err(key, what, v));
        };
        items
            .iter()
            .map(|item| f(item).ok_or_else(|| self.type_err(key, what, item)))
            .collect::<Result<Vec<T>>>()
            .map(Some)
    }

    fn type_err(&self, key: &str, expected: &str, found: &Value) -> ConvertError {
        self.err(format!(
            "metadata key `{key}` should be {expected}, found {:?}",
            found.value_type()
        ))
    }

    /// Tensor names, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .header
            .tensor_infos
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }

    /// The directory entry of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo> {
        self.header
            .tensor_infos
            .get(name)
            .ok_or_else(|| self.err(format!("tensor `{name}` not found")))
    }

    /// Rows `rows` of tensor `name` (rows: the outermost dimension, Hugging Face order;
    /// candle reverses GGUF's innermost-first dimension list), dequantized to f32, row-major.
    /// A 1-D tensor is one row.
    pub fn dequantize_rows(&mut self, name: &str, rows: Range<usize>) -> Result<Vec<f32>> {
        let Self { path, file, header } = self;
        let err = |reason: String| ConvertError::Gguf {
            path: path.clone(),
            reason: format!("tensor `{name}`: {reason}"),
        };
        let info = header
            .tensor_infos
            .get(name)
            .ok_or_else(|| err("not found".into()))?;
        // The header proved that `offset + bytes` lies inside the data section; every sum
        // below is still checked, so that a mistake here is an error, not a wrapped offset.
        let bytes = header::info_bytes(info).map_err(err)?;
        let dims = info.shape.dims();
        let (n_rows, cols) = match dims {
            [] => (1, 1),
            [n] => (1, *n),
            [outer @ .., inner] => (outer.iter().product(), *inner),
        };
        if rows.start > rows.end || rows.end > n_rows {
            return Err(err(format!("rows {rows:?} out of 0..{n_rows}")));
        }
        let row_bytes = bytes / n_rows.max(1) as u64;
        let overflow = || err("offset arithmetic overflows".into());
        let first = (rows.start as u64)
            .checked_mul(row_bytes)
            .and_then(|b| info.offset.checked_add(b))
            .ok_or_else(overflow)?;
        let len = ((rows.end - rows.start) as u64)
            .checked_mul(row_bytes)
            .ok_or_else(overflow)?;
        let end = first.checked_add(len).ok_or_else(overflow)?;
        if end > header.tensor_data_len {
            return Err(err(format!(
                "bytes {first}..{end} lie outside the data section of {} bytes",
                header.tensor_data_len
            )));
        }
        let start = header
            .tensor_data_offset
            .checked_add(first)
            .ok_or_else(overflow)?;
        let len = usize::try_from(len).map_err(|_| overflow())?;
        let mut raw = vec![0u8; len];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut raw))
            .map_err(|e| err(format!("reading {len} bytes at offset {start}: {e}")))?;
        let shape = vec![rows.end - rows.start, cols];
        qtensor_from_ggml(info.ggml_dtype, &raw, shape, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| err(e.to_string()))
    }
}

/// ggml's name for a storage type, as llama.cpp prints it.
pub fn ggml_type_name(t: GgmlDType) -> &'static str {
    match t {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::U64(x) => i64::try_from(*x).ok()?,
        Value::I64(x) => *x,
        _ => return None,
    })
}

fn as_u64(v: &Value) -> Option<u64> {
    as_i64(v).and_then(|x| u64::try_from(x).ok())
}
