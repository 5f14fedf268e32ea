//! `config.json` read into one normalized struct for every family (ChatGLM's own key names
//! included). Required fields missing or of the wrong type are errors naming the field.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arch::{self, ARCHS, Arch, ConfigKeys, Family, KvHeads, RopeBase, Sliding};
use crate::validate::limits;
use crate::{ModelError, Result, io_err};

/// A model's hyper-parameters, normalized across families.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub model_type: String,
    pub family: Family,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// RoPE base of sliding-window layers (Gemma 3).
    pub rope_local_theta: Option<f64>,
    /// Linear RoPE scaling factor of global layers, when config.json asks for it.
    pub rope_linear_factor: Option<f64>,
    /// Fraction of each head's dimensions that rotate (ChatGLM: 0.5).
    pub partial_rotary_factor: f64,
    pub tie_word_embeddings: bool,
    pub sliding_window: Option<usize>,
    /// Per layer: true where attention is limited to the sliding window.
    pub sliding_layers: Vec<bool>,
    /// Attention scores are scaled by `query_pre_attn_scalar^-0.5` (Gemma) instead of `head_dim^-0.5`.
    pub query_pre_attn_scalar: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

fn get<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| v.get(*k).filter(|x| !x.is_null()))
}

struct Reader<'a> {
    v: &'a Value,
    path: &'a Path,
}

impl Reader<'_> {
    fn err(&self, reason: String) -> ModelError {
        ModelError::Config {
            path: self.path.to_owned(),
            reason,
        }
    }

    fn usize_opt(&self, keys: &[&str]) -> Result<Option<usize>> {
        match get(self.v, keys) {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| Some(n as usize))
                .ok_or_else(|| {
                    self.err(format!(
                        "field `{}` must be a positive integer, found {x}",
                        keys[0]
                    ))
                }),
        }
    }

    fn usize_req(&self, keys: &[&str]) -> Result<usize> {
        self.usize_opt(keys)?
            .ok_or_else(|| self.err(format!("missing required field `{}`", keys.join("` or `"))))
    }

    fn f64_opt(&self, keys: &[&str]) -> Result<Option<f64>> {
        match get(self.v, keys) {
            None => Ok(None),
            Some(x) => x.as_f64().map(Some).ok_or_else(|| {
                self.err(format!("field `{}` must be a number, found {x}", keys[0]))
            }),
        }
    }

    /// A token id or a list of them; ids that are not integers in u32 range are errors.
    fn ids(&self, key: &str) -> Result<Vec<u32>> {
        let one = |x: &Value| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| self.err(format!("`{key}` holds {x}, which is not a token id")))
        };
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) if a.len() <= limits::MAX_SPECIAL_IDS => {
                a.iter().map(one).collect()
            }
            Some(Value::Array(a)) => Err(self.err(format!(
                "`{key}` lists {} ids (at most {} are accepted)",
                a.len(),
                limits::MAX_SPECIAL_IDS
            ))),
            Some(x) => one(x).map(|id| vec![id]),
        }
    }
}

impl ModelConfig {
    /// Reads and normalizes `path` (a config.json).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.to_owned(),
            reason: format!("not valid JSON: {e}"),
        })?;
        Self::from_json(&v, path)
    }

    /// Normalizes a parsed config.json; `path` is only used in error messages.
    pub fn from_json(v: &Value, path: &Path) -> Result<Self> {
        let r = Reader { v, path };
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| r.err("missing required field `model_type`".into()))?;
        let arch = arch::lookup(model_type).ok_or_else(|| ModelError::UnknownArchitecture {
            model_type: model_type.to_owned(),
            supported: arch::supported_model_types(),
        })?;
        let facts = &arch.config;
        let hidden_size = r.usize_req(&["hidden_size"])?;
        let num_heads = r.usize_req(&["num_attention_heads"])?;
        let num_layers = r.usize_req(&key_names(|k| k.layers))?;
        let num_kv_heads = match facts.kv_heads {
            KvHeads::MultiQuery => {
                let mq = v
                    .get("multi_query_attention")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if mq {
                    r.usize_req(&["multi_query_group_num"])?
                } else {
                    num_heads
                }
            }
            KvHeads::Grouped => r.usize_opt(&["num_key_value_heads"])?.unwrap_or(num_heads),
        };
        let head_dim = r
            .usize_opt(&key_names(|k| k.head_dim))?
            .unwrap_or(hidden_size / num_heads);
        if num_heads % num_kv_heads != 0 {
            return Err(r.err(format!(
                "num_attention_heads {num_heads} is not a multiple of num_key_value_heads {num_kv_heads}"
            )));
        }
        let rope_theta = match facts.rope_base {
            RopeBase::Ratio => 10000.0 * r.f64_opt(&["rope_ratio"])?.unwrap_or(1.0),
            RopeBase::Theta => r.f64_opt(&["rope_theta"])?.unwrap_or(10000.0),
        };
        let rope_linear_factor = match v.get("rope_scaling").filter(|s| {
            s.get("rope_type").or(s.get("type")).and_then(Value::as_str) == Some("linear")
        }) {
            None => Ok(None),
            Some(s) => s
                .get("factor")
                .and_then(Value::as_f64)
                .map(Some)
                .ok_or_else(|| r.err("linear `rope_scaling` without a numeric `factor`".into())),
        };
        let sliding_window = match facts.sliding {
            Sliding::Pattern { window, .. } => r.usize_opt(&["sliding_window"])?.or(Some(window)),
            Sliding::AllLayers | Sliding::Switched => {
                let enabled = v
                    .get("use_sliding_window")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if enabled {
                    r.usize_opt(&["sliding_window"])?
                } else {
                    None
                }
            }
            Sliding::Never => None,
        };
        if num_layers > limits::MAX_LAYERS {
            return Err(r.err(format!(
                "num_hidden_layers {num_layers} exceeds the supported maximum of {}",
                limits::MAX_LAYERS
            )));
        }
        let sliding_layers = sliding_layers(v, facts.sliding, num_layers, sliding_window.is_some())
            .map_err(|reason| r.err(reason))?;
        let config = ModelConfig {
            model_type: model_type.to_owned(),
            family: arch.family,
            hidden_size,
            intermediate_size: r.usize_req(&key_names(|k| k.intermediate))?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size: r.usize_req(&key_names(|k| k.vocab))?,
            max_position_embeddings: r
                .usize_opt(&key_names(|k| k.max_positions))?
                .unwrap_or(4096),
            rms_norm_eps: r.f64_opt(&key_names(|k| k.eps))?.unwrap_or(1e-6),
            rope_theta,
            rope_local_theta: match facts.local_rope_base {
                Some(base) => Some(r.f64_opt(&["rope_local_base_freq"])?.unwrap_or(base)),
                None => None,
            },
            rope_linear_factor: rope_linear_factor?,
            partial_rotary_factor: r
                .f64_opt(&["partial_rotary_factor"])?
                .unwrap_or(facts.partial_rotary_default),
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(facts.tie_default),
            sliding_window,
            sliding_layers,
            query_pre_attn_scalar: if facts.query_pre_attn_scalar {
                r.f64_opt(&["query_pre_attn_scalar"])?
            } else {
                None
            },
            attn_logit_softcapping: r.f64_opt(&["attn_logit_softcapping"])?,
            final_logit_softcapping: r.f64_opt(&["final_logit_softcapping"])?,
            bos_token_id: r.ids("bos_token_id")?.first().copied(),
            eos_token_ids: r.ids("eos_token_id")?,
        };
        config.validate().map_err(|reason| r.err(reason))?;
        Ok(config)
    }

    /// This config's row of the architecture table.
    pub fn arch(&self) -> &'static Arch {
        Arch::by_family(self.family)
    }
}

/// Every family's name for one hyper-parameter (Hugging Face's first), so that a config in
/// either spelling reads the same.
fn key_names(key: fn(&ConfigKeys) -> &'static str) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for a in &ARCHS {
        let k = key(a.config.keys);
        if !names.contains(&k) {
            names.push(k);
        }
    }
    names
}

/// Which layers use sliding-window attention: `layer_types` when given, else the family's
/// pattern (every `every`-th layer global, Gemma 3's `sliding_window_pattern` overriding it;
/// other families: every layer when a window is configured).
fn sliding_layers(
    v: &Value,
    sliding: Sliding,
    n: usize,
    has_window: bool,
) -> std::result::Result<Vec<bool>, String> {
    if let Some(types) = v.get("layer_types").and_then(Value::as_array) {
        if types.len() != n {
            return Err(format!(
                "`layer_types` lists {} layers, but the model has {n}",
                types.len()
            ));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(format!(
                    "`layer_types` holds {t}; expected \"sliding_attention\" or \"full_attention\""
                )),
            })
            .collect();
    }
    Ok(match sliding {
        Sliding::Pattern {
            every, pattern_key, ..
        } => {
            let p = match v.get("sliding_window_pattern").filter(|_| pattern_key) {
                None | Some(Value::Null) => every as u64,
                Some(x) => x.as_u64().filter(|&p| p > 0).ok_or_else(|| {
                    format!("`sliding_window_pattern` must be a positive integer, found {x}")
                })?,
            };
            (0..n as u64).map(|l| (l + 1) % p != 0).collect()
        }
        _ => vec![has_window; n],
    })
}
