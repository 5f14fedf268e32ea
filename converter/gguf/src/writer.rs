//! A tiny GGUF writer whose every field can be set — or corrupted — by the caller: the
//! hostile-file tests, the crash-safety tests and the fuzz seeds build their GGUF files with
//! it. [`Gguf::tiny_llama`] is a valid one-layer `llama` model to start from. Tensors are
//! written as given (F32 bytes, or any ggml type's raw blocks).

/// GGUF metadata value type ids.
pub mod ty {
    pub const U8: u32 = 0;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
}

/// ggml type ids.
pub const GGML_F32: u32 = 0;
pub const GGML_Q4_0: u32 = 2;

/// A metadata value, or raw bytes written after a type id of the caller's choice.
#[derive(Clone)]
pub enum V {
    U32(u32),
    F32(f32),
    Str(String),
    /// Element type and elements (each written without a type id).
    Arr(u32, Vec<V>),
    I32(i32),
    /// A type id followed by exactly these bytes.
    Raw(u32, Vec<u8>),
}

pub fn s(x: &str) -> V {
    V::Str(x.to_owned())
}

#[derive(Clone)]
pub struct Tensor {
    pub name: String,
    /// Outermost first (Hugging Face order); written innermost first.
    pub dims: Vec<u64>,
    pub ggml: u32,
    pub data: Vec<u8>,
    /// Replaces the computed offset.
    pub offset: Option<u64>,
}

#[derive(Clone)]
pub struct Gguf {
    pub version: u32,
    pub kv: Vec<(Vec<u8>, V)>,
    pub tensors: Vec<Tensor>,
    /// Alignment used to lay the file out (independent of `general.alignment`).
    pub align: u64,
}

impl Gguf {
    /// A valid tiny `llama`: one layer, hidden 8, 2 heads of 4, 1 KV head, FFN 16, an untied
    /// head and a four-token byte-level vocabulary; every tensor F32.
    pub fn tiny_llama() -> Gguf {
        let (h, f, v) = (8u64, 16u64, 4u64);
        let mut g = Gguf {
            version: 3,
            kv: Vec::new(),
            tensors: Vec::new(),
            align: 32,
        };
        g.set("general.architecture", s("llama"));
        g.set("llama.embedding_length", V::U32(h as u32));
        g.set("llama.block_count", V::U32(1));
        g.set("llama.feed_forward_length", V::U32(f as u32));
        g.set("llama.attention.head_count", V::U32(2));
        g.set("llama.attention.head_count_kv", V::U32(1));
        g.set("llama.context_length", V::U32(64));
        g.set("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5));
        g.set("tokenizer.ggml.model", s("gpt2"));
        g.set("tokenizer.ggml.pre", s("default"));
        g.set(
            "tokenizer.ggml.tokens",
            V::Arr(ty::STRING, ["a", "b", "ab", "<s>"].map(s).to_vec()),
        );
        g.set(
            "tokenizer.ggml.token_type",
            V::Arr(ty::I32, [1, 1, 1, 3].map(V::I32).to_vec()),
        );
        g.set("tokenizer.ggml.merges", V::Arr(ty::STRING, vec![s("a b")]));
        g.set("tokenizer.ggml.bos_token_id", V::U32(3));
        g.set("tokenizer.ggml.eos_token_id", V::U32(3));
        for (name, dims) in [
            ("token_embd.weight", vec![v, h]),
            ("output.weight", vec![v, h]),
            ("output_norm.weight", vec![h]),
            ("blk.0.attn_norm.weight", vec![h]),
            ("blk.0.ffn_norm.weight", vec![h]),
            ("blk.0.attn_q.weight", vec![h, h]),
            ("blk.0.attn_k.weight", vec![4, h]),
            ("blk.0.attn_v.weight", vec![4, h]),
            ("blk.0.attn_output.weight", vec![h, h]),
            ("blk.0.ffn_gate.weight", vec![f, h]),
            ("blk.0.ffn_up.weight", vec![f, h]),
            ("blk.0.ffn_down.weight", vec![h, f]),
        ] {
            g.f32_tensor(name, dims);
        }
        g
    }

    /// Sets (or adds) metadata `key`.
    pub fn set(&mut self, key: &str, v: V) {
        match self.kv.iter_mut().find(|(k, _)| k == key.as_bytes()) {
            Some(slot) => slot.1 = v,
            None => self.kv.push((key.as_bytes().to_vec(), v)),
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.kv.retain(|(k, _)| k != key.as_bytes());
    }

    /// Adds an F32 tensor of `dims` filled with small deterministic values.
    pub fn f32_tensor(&mut self, name: &str, dims: Vec<u64>) {
        let n: u64 = dims.iter().product();
        let data = (0..n)
            .flat_map(|i| ((i % 7) as f32 * 0.125 - 0.25).to_le_bytes())
            .collect();
        self.tensors.push(Tensor {
            name: name.into(),
            dims,
            ggml: GGML_F32,
            data,
            offset: None,
        });
    }

    pub fn tensor(&mut self, name: &str) -> &mut Tensor {
        self.tensors
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }

    pub fn remove_tensor(&mut self, name: &str) {
        self.tensors.retain(|t| t.name != name);
    }

    fn len(&self, b: &mut Vec<u8>, n: u64) {
        if self.version == 1 {
            b.extend((n as u32).to_le_bytes());
        } else {
            b.extend(n.to_le_bytes());
        }
    }

    fn string(&self, b: &mut Vec<u8>, x: &[u8]) {
        self.len(b, x.len() as u64);
        b.extend(x);
    }

    fn type_of(v: &V) -> u32 {
        match v {
            V::U32(_) => ty::U32,
            V::I32(_) => ty::I32,
            V::F32(_) => ty::F32,
            V::Str(_) => ty::STRING,
            V::Arr(..) => ty::ARRAY,
            V::Raw(t, _) => *t,
        }
    }

    fn payload(&self, b: &mut Vec<u8>, v: &V) {
        match v {
            V::U32(x) => b.extend(x.to_le_bytes()),
            V::I32(x) => b.extend(x.to_le_bytes()),
            V::F32(x) => b.extend(x.to_le_bytes()),
            V::Str(x) => self.string(b, x.as_bytes()),
            V::Arr(elem, items) => {
                b.extend(elem.to_le_bytes());
                self.len(b, items.len() as u64);
                for item in items {
                    self.payload(b, item);
                }
            }
            V::Raw(_, bytes) => b.extend(bytes),
        }
    }

    /// The file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(self.version.to_le_bytes());
        self.len(&mut b, self.tensors.len() as u64);
        self.len(&mut b, self.kv.len() as u64);
        for (k, v) in &self.kv {
            self.string(&mut b, k);
            b.extend(Self::type_of(v).to_le_bytes());
            self.payload(&mut b, v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            self.string(&mut b, t.name.as_bytes());
            b.extend((t.dims.len() as u32).to_le_bytes());
            for &d in t.dims.iter().rev() {
                self.len(&mut b, d);
            }
            b.extend(t.ggml.to_le_bytes());
            b.extend(t.offset.unwrap_or(offset).to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).next_multiple_of(self.align);
        }
        b.resize((b.len() as u64).next_multiple_of(self.align) as usize, 0);
        let start = b.len();
        for (t, o) in self.tensors.iter().zip(offsets) {
            b.resize(start + o as usize, 0);
            b.extend(&t.data);
        }
        b
    }
}
