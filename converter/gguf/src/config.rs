//! `config.json` and `generation_config.json` rebuilt from GGUF metadata, with the keys
//! Hugging Face transformers writes for each architecture.

use serde_json::{Map, Value, json};

use tlite_converter::Result;
use tlite_model::arch::{Sliding, json_object};
use tlite_model::validate::limits;

use crate::arch::ArchSpec;
use crate::reader::GgufFile;

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
    /// limits of [`tlite_model::validate::limits`]: values from the file size vectors (one entry per
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

/// Builds `config.json`: the hyperparameters, then what the architecture table says about the
/// family (class, activation, sliding windows, RoPE bases, soft-caps), then the keys the row
/// fixes.
pub fn config_json(
    g: &GgufFile,
    spec: &ArchSpec,
    hp: &Hyper,
    facts: &TensorFacts,
    torch_dtype: &str,
) -> Result<Value> {
    let arch = spec.gguf;
    let row = spec.arch;
    let f = &row.config;
    let k = |s: &str| format!("{arch}.{s}");
    let mut c = Map::new();
    c.insert("architectures".into(), json!([spec.hf_class()]));
    c.insert("model_type".into(), json!(spec.model_type()));
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
    special_token_ids(g, &mut c)?;
    c.insert("attention_dropout".into(), json!(0.0));
    c.insert("initializer_range".into(), json!(0.02));
    c.insert("use_cache".into(), json!(true));
    c.insert("torch_dtype".into(), json!(torch_dtype));
    c.insert("dtype".into(), json!(torch_dtype));
    let act = json!(row.activation.hf_name());
    c.insert("hidden_act".into(), act.clone());
    if let Some(key) = f.activation_key {
        c.insert(key.into(), act);
    }
    if !row.qkv_bias {
        // Optional biases: as the file has them (a family with built-in biases names none).
        c.insert("attention_bias".into(), json!(facts.qkv_bias));
    }
    if f.query_pre_attn_scalar {
        c.insert("query_pre_attn_scalar".into(), json!(hp.head_dim));
    }
    match f.sliding {
        Sliding::Switched => {
            c.insert("use_sliding_window".into(), json!(false));
            let window = g.u64(&k("context_length"))?.unwrap_or(32768);
            c.insert("sliding_window".into(), json!(window));
            c.insert("max_window_layers".into(), json!(hp.layers));
        }
        Sliding::Pattern {
            window,
            every,
            pattern_key,
        } => {
            let pattern = if pattern_key {
                g.u64(&k("attention.sliding_window_pattern"))?
                    .map_or(every, |v| v as usize)
            } else {
                every
            };
            gemma_sliding(g, &mut c, hp, arch, window, pattern)?;
        }
        Sliding::Never | Sliding::AllLayers => {}
    }
    if let Some((attn, last)) = f.softcaps {
        let softcap = |key: &str, default: f64| -> Result<Value> {
            Ok(json!(g.f64(&k(key))?.unwrap_or(default)))
        };
        c.insert(
            "attn_logit_softcapping".into(),
            softcap("attn_logit_softcapping", attn)?,
        );
        c.insert(
            "final_logit_softcapping".into(),
            softcap("final_logit_softcapping", last)?,
        );
    }
    if let Some(base) = f.local_rope_base {
        c.insert("rope_local_base_freq".into(), json!(base));
    }
    c.extend(json_object(f.fixed));
    c.extend(json_object(spec.facts().config_fixed));
    Ok(Value::Object(c))
}

/// Gemma 2/3 local attention: a window (`default_window` when the file gives none), and every
/// `pattern`-th layer global.
fn gemma_sliding(
    g: &GgufFile,
    c: &mut Map<String, Value>,
    hp: &Hyper,
    arch: &str,
    default_window: usize,
    pattern: usize,
) -> Result<()> {
    let window = g.u64(&format!("{arch}.attention.sliding_window"))?;
    c.insert(
        "sliding_window".into(),
        json!(window.unwrap_or(default_window as u64)),
    );
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

/// `bos_token_id`, `eos_token_id` and `pad_token_id`, where the file gives them.
fn special_token_ids(g: &GgufFile, c: &mut Map<String, Value>) -> Result<()> {
    for (key, gguf_key) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(id) = g.u64(gguf_key)? {
            c.insert(key.into(), json!(id));
        }
    }
    Ok(())
}

/// Builds `generation_config.json`: the special token ids.
pub fn generation_config_json(g: &GgufFile) -> Result<Value> {
    let mut c = Map::new();
    special_token_ids(g, &mut c)?;
    c.insert("_from_model_config".into(), json!(true));
    Ok(Value::Object(c))
}
