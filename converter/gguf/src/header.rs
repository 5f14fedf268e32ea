//! The GGUF header — version, metadata and tensor directory — parsed with every size it
//! declares checked against the file before anything is allocated or read by it.
//!
//! Model files come from strangers, so nothing here trusts a count, a length or an offset:
//! each is compared (with checked arithmetic) with the bytes the file still holds, arrays
//! nest at most [`MAX_ARRAY_DEPTH`] deep, strings must be UTF-8, and the tensor directory
//! must describe non-overlapping, aligned tensors that lie inside the data section. The
//! result uses candle's public types ([`Value`], [`TensorInfo`]) so the importer can keep
//! dequantizing with candle. Layout: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::Read;

use candle_core::Shape;
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{TensorInfo, Value};

/// `GGUF` read as a little-endian u32.
const MAGIC: u32 = u32::from_le_bytes(*b"GGUF");
/// Data-section alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Array nesting: an array of arrays is accepted, an array of arrays of arrays is not.
pub const MAX_ARRAY_DEPTH: usize = 2;
/// Elements of one metadata array (a vocabulary of 16M tokens is far above any model's).
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Metadata values in the whole file, array elements included: an element takes one byte on
/// disk but a few dozen in memory, so this bounds the memory metadata can claim.
pub const MAX_METADATA_VALUES: u64 = 1 << 25;
/// GGUF's value type id of an array.
const VALUE_TYPE_ARRAY: u32 = 9;

/// A parsed, checked GGUF header.
#[derive(Debug)]
pub struct Header {
    /// GGUF version (1 to 3).
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    /// Shapes outermost dimension first (GGUF stores innermost first; candle's order).
    pub tensor_infos: HashMap<String, TensorInfo>,
    /// `general.alignment`, or [`DEFAULT_ALIGNMENT`].
    pub alignment: u64,
    /// Where the data section starts.
    pub tensor_data_offset: u64,
    /// Bytes from the data section's start to the end of the file.
    pub tensor_data_len: u64,
    /// Bytes of tensor data the directory describes, all tensors together.
    pub tensor_bytes: u64,
}

/// The ggml storage type with id `id`, when it is one the importer can dequantize.
/// `Err` holds ggml's name of a type that exists but is not supported, if it is known.
pub fn ggml_type(id: u32) -> Result<GgmlDType, Option<&'static str>> {
    Ok(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        30 => GgmlDType::BF16,
        _ => {
            return Err(Some(match id {
                9 => "Q8_1",
                15 => "Q8_K",
                16 => "IQ2_XXS",
                17 => "IQ2_XS",
                18 => "IQ3_XXS",
                19 => "IQ1_S",
                20 => "IQ4_NL",
                21 => "IQ3_S",
                22 => "IQ2_S",
                23 => "IQ4_XS",
                24 => "I8",
                25 => "I16",
                26 => "I32",
                27 => "I64",
                28 => "F64",
                29 => "IQ1_M",
                34 => "TQ1_0",
                35 => "TQ2_0",
                39 => "MXFP4",
                _ => return Err(None),
            }));
        }
    })
}

/// Bytes a tensor of type `t` with dimensions `dims` (GGUF order: innermost first) takes,
/// or why it cannot be stored: rows that do not divide into blocks, or a size that overflows.
pub fn tensor_bytes(t: GgmlDType, dims: &[usize]) -> Result<u64, String> {
    let block = t.block_size();
    let innermost = dims.first().copied().unwrap_or(1);
    if !innermost.is_multiple_of(block) {
        return Err(format!(
            "rows of {innermost} values do not divide into blocks of {block}"
        ));
    }
    let row = ((innermost / block) as u64).checked_mul(t.type_size() as u64);
    dims.iter()
        .skip(1)
        .fold(row, |acc, &d| acc?.checked_mul(d as u64))
        .ok_or_else(|| "its size in bytes overflows".to_owned())
}

/// Bytes of `info`'s data, checked as [`tensor_bytes`].
pub fn info_bytes(info: &TensorInfo) -> Result<u64, String> {
    let mut dims = info.shape.dims().to_vec();
    dims.reverse();
    tensor_bytes(info.ggml_dtype, &dims)
}

/// Parses the header of a GGUF file of `file_len` bytes from `r`, positioned at its start.
/// The error is one line saying what is wrong and where.
pub fn parse(r: impl Read, file_len: u64) -> Result<Header, String> {
    let mut p = Parser {
        r,
        pos: 0,
        len: file_len,
        v1: false,
        values: 0,
    };
    let magic = p.u32(&|| "the magic number".into())?;
    if magic != MAGIC {
        return Err(format!(
            "not a GGUF file (magic {:?}, expected \"GGUF\")",
            String::from_utf8_lossy(&magic.to_le_bytes())
        ));
    }
    let version = p.u32(&|| "the version".into())?;
    if (1..=3).contains(&version.swap_bytes()) {
        return Err(format!(
            "big-endian GGUF (version {}) is not supported",
            version.swap_bytes()
        ));
    }
    if !(1..=3).contains(&version) {
        return Err(format!(
            "GGUF version {version} is not supported (versions 1 to 3 are)"
        ));
    }
    p.v1 = version == 1;
    let n_tensors = p.length(&|| "the tensor count".into())?;
    let n_kv = p.length(&|| "the metadata count".into())?;
    // At least: a metadata entry, a key length, a type id and one byte; a tensor, a name
    // length, a dimension count, one dimension, a type id and an offset.
    let prefix = p.prefix();
    let min_kv = prefix + 4 + 1;
    let min_tensor = 2 * prefix + 4 + 4 + 8;
    let needed = n_kv
        .checked_mul(min_kv)
        .zip(n_tensors.checked_mul(min_tensor))
        .and_then(|(a, b)| a.checked_add(b));
    if needed.is_none_or(|n| n > p.remaining()) {
        return Err(format!(
            "the header declares {n_tensors} tensors and {n_kv} metadata entries, more than \
             the file's {} bytes can hold",
            p.len
        ));
    }

    let mut metadata = HashMap::new();
    for i in 0..n_kv {
        let key = p.string(&|| format!("the key of metadata entry {i}"))?;
        let what = || format!("metadata key `{key}`");
        let ty = p.u32(&what)?;
        let value = p.value(ty, 0, &what)?;
        match metadata.entry(key) {
            Entry::Occupied(e) => {
                return Err(format!("metadata key `{}` appears twice", e.key()));
            }
            Entry::Vacant(e) => {
                e.insert(value);
            }
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(Value::U32(a)) => {
            return Err(format!(
                "`general.alignment` is {a}; it must be a power of two"
            ));
        }
        Some(v) => {
            return Err(format!(
                "`general.alignment` must be a u32, found {:?}",
                v.value_type()
            ));
        }
    };

    // The directory in file order: (name, GGUF dims innermost first, type, offset, bytes).
    let mut tensors: Vec<(String, Vec<usize>, GgmlDType, u64, u64)> = Vec::new();
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let name = p.string(&|| format!("the name of tensor {i}"))?;
        if !names.insert(name.clone()) {
            return Err(format!("tensor `{name}` is listed twice"));
        }
        let what = || format!("tensor `{name}`");
        let n_dims = p.u32(&what)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!(
                "tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} are supported)"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = p.length(&what)?;
            if d == 0 || d > i64::MAX as u64 {
                return Err(format!("tensor `{name}` has a dimension of {d}"));
            }
            let d = usize::try_from(d)
                .map_err(|_| format!("tensor `{name}` has a dimension of {d}, too large"))?;
            dims.push(d);
        }
        let numel = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as usize)
            .ok_or_else(|| {
                format!("tensor `{name}` has dimensions {dims:?}, whose product overflows")
            })?;
        let type_id = p.u32(&what)?;
        let ggml = ggml_type(type_id).map_err(|known| match known {
            Some(t) => format!(
                "tensor `{name}` is stored as {t} (ggml type {type_id}), which is not supported"
            ),
            None => format!("tensor `{name}` has unknown ggml type id {type_id}"),
        })?;
        let bytes = tensor_bytes(ggml, &dims)
            .map_err(|e| format!("tensor `{name}` of {numel} values: {e}"))?;
        let offset = p.u64(&what)?;
        tensors.push((name, dims, ggml, offset, bytes));
    }

    let header_end = p.pos;
    let tensor_data_offset = header_end
        .checked_next_multiple_of(alignment)
        .filter(|&o| o <= p.len || tensors.is_empty())
        .ok_or_else(|| {
            format!(
                "the tensor data would start past the end of the file ({} bytes; header ends \
                 at {header_end}, alignment {alignment})",
                p.len
            )
        })?;
    let tensor_data_len = p.len.saturating_sub(tensor_data_offset);

    let mut tensor_bytes = 0u64;
    for (name, _, _, offset, bytes) in &tensors {
        if !offset.is_multiple_of(alignment) {
            return Err(format!(
                "tensor `{name}` starts at offset {offset}, not a multiple of the alignment \
                 {alignment}"
            ));
        }
        if offset
            .checked_add(*bytes)
            .is_none_or(|end| end > tensor_data_len)
        {
            return Err(format!(
                "tensor `{name}` ({bytes} bytes at offset {offset}) runs past the end of the \
                 file: the data section holds {tensor_data_len} bytes"
            ));
        }
        // Cannot overflow: each tensor lies inside the data section and none overlap.
        tensor_bytes += bytes;
    }
    let mut by_offset: Vec<&(String, Vec<usize>, GgmlDType, u64, u64)> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.3);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // `a.3 + a.4` was checked above.
        if a.3 + a.4 > b.3 {
            return Err(format!(
                "tensors `{}` and `{}` overlap (offsets {} and {}, {} bytes)",
                a.0, b.0, a.3, b.3, a.4
            ));
        }
    }

    let tensor_infos = tensors
        .into_iter()
        .map(|(name, mut dims, ggml_dtype, offset, _)| {
            dims.reverse();
            let info = TensorInfo {
                ggml_dtype,
                shape: Shape::from(dims),
                offset,
            };
            (name, info)
        })
        .collect();
    Ok(Header {
        version,
        metadata,
        tensor_infos,
        alignment,
        tensor_data_offset,
        tensor_data_len,
        tensor_bytes,
    })
}

/// Names what is being read, for an error message; called only when one is made.
type What<'a> = &'a dyn Fn() -> String;

/// A reader that knows how many bytes the file still holds.
struct Parser<R> {
    r: R,
    pos: u64,
    len: u64,
    /// GGUF v1: lengths and dimensions are u32.
    v1: bool,
    /// Metadata values read so far, array elements included.
    values: u64,
}

impl<R: Read> Parser<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Bytes of a length or dimension.
    fn prefix(&self) -> u64 {
        if self.v1 { 4 } else { 8 }
    }

    fn need(&self, n: u64, what: What) -> Result<(), String> {
        if n > self.remaining() {
            return Err(format!(
                "{}: {n} bytes needed at offset {}, but the file ends {} bytes later",
                what(),
                self.pos,
                self.remaining()
            ));
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8], what: What) -> Result<(), String> {
        self.need(buf.len() as u64, what)?;
        self.r
            .read_exact(buf)
            .map_err(|e| format!("{}: reading at offset {}: {e}", what(), self.pos))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: What) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    fn u32(&mut self, what: What) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: What) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A length or count: u32 in GGUF v1, u64 after.
    fn length(&mut self, what: What) -> Result<u64, String> {
        if self.v1 {
            self.u32(what).map(u64::from)
        } else {
            self.u64(what)
        }
    }

    /// A length-prefixed UTF-8 string. Trailing NULs are dropped, as candle and llama.cpp's
    /// own readers tolerate writers that add one.
    fn string(&mut self, what: What) -> Result<String, String> {
        let len = self.length(&what)?;
        self.need(len, &|| format!("{}: a string of {len} bytes", what()))?;
        // `len` is at most the bytes left in the file.
        let mut v = vec![0u8; len as usize];
        self.fill(&mut v, what)?;
        while v.last() == Some(&0) {
            v.pop();
        }
        String::from_utf8(v).map_err(|e| format!("{}: a string is not UTF-8 ({e})", what()))
    }

    /// Bytes a value of type `ty` takes at least.
    fn min_size(&self, ty: u32) -> u64 {
        match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => self.prefix(),
            _ => 4 + self.prefix(),
        }
    }

    /// A metadata value of type id `ty`, `depth` arrays deep.
    fn value(&mut self, ty: u32, depth: usize, what: What) -> Result<Value, String> {
        self.values += 1;
        if self.values > MAX_METADATA_VALUES {
            return Err(format!(
                "{}: the metadata holds more than {MAX_METADATA_VALUES} values",
                what()
            ));
        }
        Ok(match ty {
            0 => Value::U8(self.array::<1>(&what)?[0]),
            1 => Value::I8(i8::from_le_bytes(self.array(&what)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => Value::U32(self.u32(&what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => match self.array::<1>(&what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("{}: boolean byte {b} is neither 0 nor 1", what())),
            },
            8 => Value::String(self.string(what)?),
            VALUE_TYPE_ARRAY => {
                if depth + 1 > MAX_ARRAY_DEPTH {
                    return Err(format!(
                        "{}: arrays nested more than {MAX_ARRAY_DEPTH} deep",
                        what()
                    ));
                }
                let elem = self.u32(&what)?;
                if elem > 12 {
                    return Err(format!("{}: unknown array element type {elem}", what()));
                }
                let n = self.length(&what)?;
                if n > MAX_ARRAY_LEN {
                    return Err(format!(
                        "{}: an array of {n} elements (at most {MAX_ARRAY_LEN} are accepted)",
                        what()
                    ));
                }
                // Checked against the file before anything is allocated.
                self.need(n * self.min_size(elem), &|| {
                    format!("{}: an array of {n} elements", what())
                })?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1, what)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(&what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            other => return Err(format!("{}: unknown value type {other}", what())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &mut Vec<u8>, x: &str) {
        b.extend((x.len() as u64).to_le_bytes());
        b.extend(x.as_bytes());
    }

    fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b
    }

    fn parse_bytes(b: &[u8]) -> Result<Header, String> {
        parse(b, b.len() as u64)
    }

    #[test]
    fn one_tensor_round_trips() {
        let mut b = header(1, 1);
        s(&mut b, "general.alignment");
        b.extend(4u32.to_le_bytes());
        b.extend(16u32.to_le_bytes());
        s(&mut b, "t");
        b.extend(2u32.to_le_bytes());
        b.extend(3u64.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.resize(b.len().next_multiple_of(16) + 24, 0);
        let h = parse_bytes(&b).expect("valid");
        assert_eq!(h.alignment, 16);
        assert_eq!(h.tensor_bytes, 24);
        assert_eq!(h.tensor_infos["t"].shape.dims(), [2, 3]);
        // One byte short.
        b.pop();
        let e = parse_bytes(&b).expect_err("short");
        assert!(e.contains("runs past the end"), "{e}");
    }

    #[test]
    fn nested_arrays_are_bounded() {
        let mut b = header(0, 1);
        s(&mut b, "deep");
        b.extend(9u32.to_le_bytes());
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend([0u8; 64]);
        let e = parse_bytes(&b).expect_err("deep");
        assert!(e.contains("nested"), "{e}");
    }

    #[test]
    fn big_endian_and_v1() {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_be_bytes());
        b.extend([0u8; 16]);
        let e = parse_bytes(&b).expect_err("be");
        assert!(e.contains("big-endian"), "{e}");
        // v1: u32 counts and lengths.
        let mut b = b"GGUF".to_vec();
        b.extend(1u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.push(b'k');
        b.extend(8u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        b.extend(b"hi");
        let h = parse_bytes(&b).expect("v1");
        assert!(matches!(&h.metadata["k"], Value::String(s) if s == "hi"));
    }
}
