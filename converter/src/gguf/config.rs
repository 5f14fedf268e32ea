//! `config.json` and `generation_config.json` rebuilt from GGUF metadata, with the keys
//! Hugging Face transformers writes for each architecture.

use serde_json::{Map, Value, json};

use super::arch::ArchSpec;
use super::reader::GgufFile;
use crate::Result;
use crate::validate::limits;

/// What the config needs beyond metadata: facts read off the tensors.
pub struct TensorFacts {
    /// Rows of `token_embd.weight`.
    pub vocab_size: usize,
    /// No `output.weight`: the LM head is the embedding.
    pub tied: bool,
    /// Any `attn_q.bias`.
    pub qkv_bias: bool,
}

/// The hyperparameters every supported architecture has.
#[derive(Clone, Copy, Debug)]
pub struct Hyper {
    pub hidden: usize,
    pub layers: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub intermediate: usize,
}

impl Hyper {
    /// Reads the hyperparameters under `<arch>.` keys. Each must be positive and within the
    /// limits of [`crate::validate::limits`]: values from the file size vectors (one entry per
    /// layer, ...) before the whole config is validated.
    pub fn read(g: &GgufFile, arch: &str) -> Result<Self> {
        let k = |s: &str| format!("{arch}.{s}");
        let bounded = |s: &str, v: u64, max: usize| -> Result<usize> {
            match usize::try_from(v) {
                Ok(0) => Err(g.err(format!("`{}` is 0", k(s)))),
                Ok(v) if v <= max => Ok(v),
                _ => Err(g.err(format!(
                    "`{}` is {v}, above the supported maximum of {max}",
                    k(s)
                ))),
            }
        };
        let get = |s: &str, max: usize| bounded(s, g.require_u64(&k(s))?, max);
        let opt = |s: &str, max: usize| -> Result<Option<usize>> {
            g.u64(&k(s))?.map(|v| bounded(s, v, max)).transpose()
        };
        let hidden = get("embedding_length", limits::MAX_DIM)?;
        let layers = get("block_count", limits::MAX_LAYERS)?;
        let n_head = get("attention.head_count", limits::MAX_HEADS)?;
        let n_head_kv = opt("attention.head_count_kv", limits::MAX_HEADS)?.unwrap_or(n_head);
        let head_dim = opt("attention.key_length", limits::MAX_DIM)?.unwrap_or(hidden / n_head);
        let intermediate = get("feed_forward_length", limits::MAX_DIM)?;
        Ok(Self {
            hidden,
            layers,
            n_head,
            n_head_kv,
            head_dim,
            intermediate,
        })
    }
}

/// Builds `config.json`.
pub fn config_json(
    g: &GgufFile,
    spec: &ArchSpec,
    hp: &Hyper,
    facts: &TensorFacts,
    torch_dtype: &str,
) -> Result<Value> {
    let arch = spec.gguf;
    let k = |s: &str| format!("{arch}.{s}");
    let mut c = Map::new();
    c.insert("architectures".into(), json!([spec.hf_class]));
    c.insert("model_type".into(), json!(spec.model_type));
    c.insert("hidden_size".into(), json!(hp.hidden));
    c.insert("intermediate_size".into(), json!(hp.intermediate));
    c.insert("num_hidden_layers".into(), json!(hp.layers));
    c.insert("num_attention_heads".into(), json!(hp.n_head));
    c.insert("num_key_value_heads".into(), json!(hp.n_head_kv));
    c.insert("head_dim".into(), json!(hp.head_dim));
    c.insert("vocab_size".into(), json!(facts.vocab_size));
    c.insert("tie_word_embeddings".into(), json!(facts.tied));
    c.insert(
        "rms_norm_eps".into(),
        json!(
            g.f64(&k("attention.layer_norm_rms_epsilon"))?
                .unwrap_or(1e-6)
        ),
    );
    c.insert(
        "rope_theta".into(),
        json!(g.f64(&k("rope.freq_base"))?.unwrap_or(10000.0)),
    );
    c.insert("rope_scaling".into(), rope_scaling(g, arch)?);
    if let Some(n) = g.u64(&k("context_length"))? {
        c.insert("max_position_embeddings".into(), json!(n));
    }
    for (key, gguf_key) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(id) = g.u64(gguf_key)? {
            c.insert(key.into(), json!(id));
        }
    }
    c.insert("attention_dropout".into(), json!(0.0));
    c.insert("initializer_range".into(), json!(0.02));
    c.insert("use_cache".into(), json!(true));
    c.insert("torch_dtype".into(), json!(torch_dtype));
    c.insert("dtype".into(), json!(torch_dtype));
    match spec.model_type {
        "llama" => {
            c.insert("hidden_act".into(), json!("silu"));
            c.insert("attention_bias".into(), json!(facts.qkv_bias));
            c.insert("mlp_bias".into(), json!(false));
            c.insert("pretraining_tp".into(), json!(1));
        }
        "qwen2" => {
            c.insert("hidden_act".into(), json!("silu"));
            c.insert("use_sliding_window".into(), json!(false));
            let window = g.u64(&k("context_length"))?.unwrap_or(32768);
            c.insert("sliding_window".into(), json!(window));
            c.insert("max_window_layers".into(), json!(hp.layers));
        }
        "gemma" => gemma_common(&mut c, hp),
        "gemma2" => {
            gemma_common(&mut c, hp);
            gemma_sliding(g, &mut c, hp, arch, 2)?;
            let softcap = |key: &str, default: f64| -> Result<Value> {
                Ok(json!(g.f64(&k(key))?.unwrap_or(default)))
            };
            c.insert(
                "attn_logit_softcapping".into(),
                softcap("attn_logit_softcapping", 50.0)?,
            );
            c.insert(
                "final_logit_softcapping".into(),
                softcap("final_logit_softcapping", 30.0)?,
            );
        }
        _ => {
            // gemma3_text
            gemma_common(&mut c, hp);
            let pattern = g
                .u64(&k("attention.sliding_window_pattern"))?
                .map_or(6, |v| v as usize);
            gemma_sliding(g, &mut c, hp, arch, pattern)?;
            c.insert("rope_local_base_freq".into(), json!(10000.0));
            c.insert("attn_logit_softcapping".into(), Value::Null);
            c.insert("final_logit_softcapping".into(), Value::Null);
            c.insert("use_bidirectional_attention".into(), json!(false));
        }
    }
    Ok(Value::Object(c))
}

/// Keys every Gemma generation shares.
fn gemma_common(c: &mut Map<String, Value>, hp: &Hyper) {
    c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
    c.insert("hidden_act".into(), json!("gelu_pytorch_tanh"));
    c.insert("attention_bias".into(), json!(false));
    c.insert("query_pre_attn_scalar".into(), json!(hp.head_dim));
}

/// Gemma 2/3 local attention: a window, and every `pattern`-th layer global.
fn gemma_sliding(
    g: &GgufFile,
    c: &mut Map<String, Value>,
    hp: &Hyper,
    arch: &str,
    pattern: usize,
) -> Result<()> {
    let window = g.u64(&format!("{arch}.attention.sliding_window"))?;
    c.insert("sliding_window".into(), json!(window.unwrap_or(4096)));
    let pattern = pattern.max(1);
    let types: Vec<&str> = (0..hp.layers)
        .map(|i| {
            if (i + 1) % pattern == 0 {
                "full_attention"
            } else {
                "sliding_attention"
            }
        })
        .collect();
    c.insert("layer_types".into(), json!(types));
    c.insert("sliding_window_pattern".into(), json!(pattern));
    c.insert("_sliding_window_pattern".into(), json!(pattern));
    Ok(())
}

/// `rope_scaling` from `<arch>.rope.scaling.*`, or null.
fn rope_scaling(g: &GgufFile, arch: &str) -> Result<Value> {
    let k = |s: &str| format!("{arch}.rope.scaling.{s}");
    let kind = g.str(&k("type"))?;
    let factor = g.f64(&k("factor"))?;
    match (kind, factor) {
        (None | Some("none"), _) | (_, None) => Ok(Value::Null),
        (Some(kind), Some(factor)) => {
            let mut m = Map::new();
            m.insert("rope_type".into(), json!(kind));
            m.insert("factor".into(), json!(factor));
            if let Some(n) = g.u64(&k("original_context_length"))? {
                m.insert("original_max_position_embeddings".into(), json!(n));
            }
            Ok(Value::Object(m))
        }
    }
}

/// Builds `generation_config.json`: the special token ids.
pub fn generation_config_json(g: &GgufFile) -> Result<Value> {
    let mut c = Map::new();
    for (key, gguf_key) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(id) = g.u64(gguf_key)? {
            c.insert(key.into(), json!(id));
        }
    }
    c.insert("_from_model_config".into(), json!(true));
    Ok(Value::Object(c))
}
