//! Random-weight Hugging Face checkpoints for every supported architecture, from a shape
//! description: tiny ones (a few hundred KB, made at test time) and real shapes for GPU
//! benchmarks (speed does not depend on the values, but nothing is ever zero).

use std::path::Path;

use rayon::prelude::*;
use safetensors::Dtype;
use serde_json::{Value, json};
use tlite_quantizer::rng::Rng;

use tlite_model::arch::{Arch, Family, KvHeads, NormStyle, Role, RopeBase, Sliding, json_object};
use tlite_model::config::ModelConfig;

use crate::output::Output;
use crate::safetensors_out::{OutTensor, encode_f32, write_streaming};
use crate::{Result, io_err};

/// The shape of a synthetic model.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSpec {
    pub family: Family,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub tied: bool,
    pub dtype: Dtype,
    pub seed: u64,
}

impl SynthSpec {
    /// A tiny model of `family`: hidden 64, 4 heads, vocab 320, and the layers, key/value heads
    /// and tying of the table's [`tlite_model::arch::SynthFacts`].
    pub fn tiny(family: Family) -> Self {
        let t = &family.arch().synth;
        SynthSpec {
            family,
            hidden: 64,
            intermediate: 128,
            layers: t.layers,
            heads: 4,
            kv_heads: t.kv_heads,
            head_dim: 16,
            vocab: 320,
            max_positions: 256,
            tied: t.tied,
            dtype: Dtype::F32,
            seed: 0x7117e,
        }
    }

    /// Named real shapes: `llama-8b` (Llama-3-8B body), `llama-1b` (hidden 2048, 16 layers),
    /// `qwen2.5-1.5b`, `gemma-2b`, or `tiny-<family>`.
    pub fn preset(name: &str) -> Option<Self> {
        let base =
            |family, hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, tied| {
                SynthSpec {
                    family,
                    hidden,
                    intermediate,
                    layers,
                    heads,
                    kv_heads,
                    head_dim,
                    vocab,
                    max_positions: 4096,
                    tied,
                    dtype: Dtype::BF16,
                    seed: 1,
                }
            };
        Some(match name {
            "llama-8b" => base(Family::Llama, 4096, 14336, 32, 32, 8, 128, 128256, false),
            "llama-1b" => base(Family::Llama, 2048, 8192, 16, 32, 8, 64, 49152, true),
            "qwen2.5-1.5b" => base(Family::Qwen2, 1536, 8960, 28, 12, 2, 128, 151936, true),
            "gemma-2b" => base(Family::Gemma, 2048, 16384, 18, 8, 1, 256, 256000, true),
            _ => {
                let f = name.strip_prefix("tiny-")?;
                Self::tiny(Family::from_name(f)?)
            }
        })
    }

    /// The config.json this spec writes, in the family's own key names and with the keys its
    /// row of the table gives.
    pub fn config_json(&self) -> Value {
        let arch = Arch::by_family(self.family);
        let (facts, t) = (&arch.config, &arch.synth);
        let k = facts.keys;
        let dtype = match self.dtype {
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            _ => "float32",
        };
        let mut c = json!({
            "architectures": [facts.hf_class], "model_type": arch.model_types[0],
            "hidden_size": self.hidden, k.intermediate: self.intermediate,
            k.layers: self.layers, "num_attention_heads": self.heads,
            k.head_dim: self.head_dim, k.vocab: self.vocab, k.max_positions: self.max_positions,
            k.eps: t.eps, "tie_word_embeddings": self.tied,
            "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": dtype,
        });
        let mut put = |key: &str, v: Value| c[key] = v;
        match facts.kv_heads {
            KvHeads::Grouped => put("num_key_value_heads", json!(self.kv_heads)),
            KvHeads::MultiQuery => {
                put("multi_query_attention", json!(true));
                put("multi_query_group_num", json!(self.kv_heads));
            }
        }
        if facts.rope_base == RopeBase::Theta {
            put("rope_theta", json!(t.rope_theta));
        }
        if let Some(key) = facts.activation_key {
            put(key, json!(arch.activation.hf_name()));
        }
        if facts.sliding == Sliding::Switched {
            put("use_sliding_window", json!(false));
        }
        if t.query_pre_attn_scalar {
            put("query_pre_attn_scalar", json!(self.head_dim));
        }
        if let Some((attn, last)) = facts.softcaps {
            put("attn_logit_softcapping", json!(attn));
            put("final_logit_softcapping", json!(last));
        }
        if let Some(base) = facts.local_rope_base {
            put("rope_local_base_freq", json!(base));
        }
        for (key, v) in json_object(facts.fixed)
            .into_iter()
            .chain(json_object(t.extra))
        {
            put(&key, v);
        }
        c
    }
}

/// Writes `config.json`, `model.safetensors`, `tokenizer.json` and `generation_config.json`
/// into `dir`, replacing a folder that tlite wrote there before.
pub fn write_checkpoint(spec: &SynthSpec, dir: &Path) -> Result<()> {
    write_checkpoint_to(spec, dir, true)
}

/// [`write_checkpoint`] through [`Output`]: `overwrite` allows replacing a non-empty folder
/// that tlite wrote; any other non-empty folder is refused.
pub fn write_checkpoint_to(spec: &SynthSpec, target: &Path, overwrite: bool) -> Result<()> {
    let cfg_json = spec.config_json();
    let config = ModelConfig::from_json(&cfg_json, &target.join("config.json"))?;
    let output = Output::prepare(target, &[], overwrite)?;
    let dir = output.dir();
    let arch = config.arch();
    let tensors = arch.expected_tensors(&config);
    let bytes: Vec<Vec<u8>> = tensors
        .par_iter()
        .enumerate()
        .map(|(i, t)| {
            let mut rng = Rng::new(spec.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let values: Vec<f32> = match t.role {
                Role::Norm if arch.norm == NormStyle::OnePlusWeight => {
                    rng.gaussian_vec(t.numel(), 0.1)
                }
                Role::Norm => rng
                    .gaussian_vec(t.numel(), 0.1)
                    .iter()
                    .map(|v| 1.0 + v)
                    .collect(),
                Role::Bias => rng.gaussian_vec(t.numel(), 0.02),
                Role::Embedding | Role::LmHead => rng.gaussian_vec(t.numel(), 0.5),
                Role::Linear => rng.gaussian_vec(t.numel(), (1.0 / t.shape[1] as f32).sqrt()),
            };
            encode_f32(&values, spec.dtype)
        })
        .collect();
    let out_tensors: Vec<OutTensor> = tensors
        .iter()
        .map(|t| OutTensor {
            name: t.name.clone(),
            dtype: spec.dtype,
            shape: t.shape.clone(),
        })
        .collect();
    let model = dir.join("model.safetensors");
    write_streaming(&model, None, &out_tensors, |i, w| {
        w.write_all(&bytes[i]).map_err(io_err(&model))
    })?;
    let write = |name: &str, v: &Value| {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v).expect("json")).map_err(io_err(&p))
    };
    write("config.json", &cfg_json)?;
    write(
        "generation_config.json",
        &json!({"bos_token_id": 1, "eos_token_id": 2}),
    )?;
    write("tokenizer.json", &byte_tokenizer(spec.vocab))?;
    output.install()?;
    Ok(())
}

/// GPT-2's byte → printable character map.
fn byte_char(b: u8) -> char {
    let mut n = 0u32;
    for x in 0..=255u8 {
        let printable = matches!(x, 33..=126 | 161..=172 | 174..=255);
        if x == b {
            return if printable {
                char::from(x)
            } else {
                char::from_u32(256 + n).expect("valid")
            };
        }
        if !printable {
            n += 1;
        }
    }
    unreachable!("every byte is mapped")
}

/// A byte-level BPE tokenizer: `<unk>`, `<s>`, `</s>`, then the 256 bytes, then merges of
/// common English pairs up to `vocab` entries.
pub fn byte_tokenizer(vocab: usize) -> Value {
    let mut v = serde_json::Map::new();
    for (i, s) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        v.insert((*s).into(), json!(i));
    }
    for b in 0..=255u8 {
        v.insert(byte_char(b).to_string(), json!(3 + b as usize));
    }
    let mut merges = Vec::new();
    let pairs = [
        "Ġ t", "h e", "i n", "Ġ a", "e r", "o n", "Ġt he", "r e", "a t", "e n", "o r", "Ġ s",
        "e s", "Ġ o", "i s",
    ];
    for p in pairs {
        if v.len() >= vocab {
            break;
        }
        let tok = p.replace(' ', "");
        if !v.contains_key(&tok) {
            v.insert(tok, json!(v.len()));
            merges.push(p.to_owned());
        }
    }
    json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": v, "merges": merges}
    })
}
