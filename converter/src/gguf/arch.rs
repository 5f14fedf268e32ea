//! The GGUF architectures the importer knows, as data: tensor names, the transforms
//! llama.cpp's converter applied (and the importer undoes), and Hugging Face class names.

use crate::{ConvertError, Result};

/// What llama.cpp did to a tensor on the way into GGUF, undone on the way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// Stored as Hugging Face stores it.
    None,
    /// Rows permuted by llama.cpp's `permute(w, n_head, n_head_kv)` (Q and K of `llama`):
    /// undone with [`super::permute::unpermute_rows`] over this many heads.
    UnpermuteRows { heads: usize },
    /// An RMSNorm weight stored as `1 + w` (Gemma): 1 is subtracted.
    SubtractOne,
}

/// One supported GGUF architecture.
pub struct ArchSpec {
    /// `general.architecture` in the GGUF file.
    pub gguf: &'static str,
    /// The Hugging Face `architectures[0]`.
    pub hf_class: &'static str,
    /// The Hugging Face `model_type`.
    pub model_type: &'static str,
    /// Whether llama.cpp permuted Q/K rows for its interleaved RoPE (Llama only: Qwen2 and
    /// Gemma use llama.cpp's NeoX RoPE on unpermuted weights).
    pub permuted_qk: bool,
    /// Whether RMSNorm weights are stored as `1 + w` (every `*norm.weight`, Gemma family).
    pub norm_plus_one: bool,
    /// Per-layer tensor names: GGUF `blk.N.<gguf>` → `model.layers.N.<hf>`.
    pub layer: &'static [(&'static str, &'static str)],
}

const LLAMA_LAYER: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

const GEMMA2_LAYER: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

const GEMMA3_LAYER: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Every architecture the importer supports.
pub const ARCHS: &[ArchSpec] = &[
    ArchSpec {
        gguf: "llama",
        hf_class: "LlamaForCausalLM",
        model_type: "llama",
        permuted_qk: true,
        norm_plus_one: false,
        layer: LLAMA_LAYER,
    },
    ArchSpec {
        gguf: "qwen2",
        hf_class: "Qwen2ForCausalLM",
        model_type: "qwen2",
        permuted_qk: false,
        norm_plus_one: false,
        layer: LLAMA_LAYER,
    },
    ArchSpec {
        gguf: "gemma",
        hf_class: "GemmaForCausalLM",
        model_type: "gemma",
        permuted_qk: false,
        norm_plus_one: true,
        layer: LLAMA_LAYER,
    },
    ArchSpec {
        gguf: "gemma2",
        hf_class: "Gemma2ForCausalLM",
        model_type: "gemma2",
        permuted_qk: false,
        norm_plus_one: true,
        layer: GEMMA2_LAYER,
    },
    ArchSpec {
        gguf: "gemma3",
        hf_class: "Gemma3ForCausalLM",
        model_type: "gemma3_text",
        permuted_qk: false,
        norm_plus_one: true,
        layer: GEMMA3_LAYER,
    },
];

/// The spec for GGUF architecture `name`, or [`ConvertError::UnknownArchitecture`].
pub fn lookup(name: &str) -> Result<&'static ArchSpec> {
    ARCHS
        .iter()
        .find(|a| a.gguf == name)
        .ok_or_else(|| ConvertError::UnknownArchitecture {
            model_type: name.to_owned(),
            supported: ARCHS.iter().map(|a| a.gguf).collect::<Vec<_>>().join(", "),
        })
}

/// Head counts needed to undo the Q/K permutation.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub n_head: usize,
    pub n_head_kv: usize,
}

impl ArchSpec {
    /// The Hugging Face name of GGUF tensor `name` and the transform to apply, or `None` when
    /// the name is not part of this architecture.
    pub fn map_tensor(&self, name: &str, heads: Heads) -> Option<(String, Transform)> {
        let (stem, kind) = name.rsplit_once('.')?;
        if kind != "weight" && kind != "bias" {
            return None;
        }
        let hf = match stem {
            "token_embd" => "model.embed_tokens".to_owned(),
            "output_norm" => "model.norm".to_owned(),
            "output" => "lm_head".to_owned(),
            _ => {
                let (layer, part) = split_layer(stem)?;
                let (_, hf_part) = self.layer.iter().find(|(g, _)| *g == part)?;
                format!("model.layers.{layer}.{hf_part}")
            }
        };
        let transform = if self.norm_plus_one && stem.ends_with("norm") && kind == "weight" {
            Transform::SubtractOne
        } else if self.permuted_qk && stem.ends_with(".attn_q") {
            Transform::UnpermuteRows {
                heads: heads.n_head,
            }
        } else if self.permuted_qk && stem.ends_with(".attn_k") {
            Transform::UnpermuteRows {
                heads: heads.n_head_kv,
            }
        } else {
            Transform::None
        };
        Some((format!("{hf}.{kind}"), transform))
    }

    /// The GGUF name of Hugging Face tensor `hf` (the inverse of [`Self::map_tensor`]), for
    /// error messages; `None` for a name this architecture does not use.
    pub fn gguf_name(&self, hf: &str) -> Option<String> {
        let (stem, kind) = hf.rsplit_once('.')?;
        let g = match stem {
            "model.embed_tokens" => "token_embd".to_owned(),
            "model.norm" => "output_norm".to_owned(),
            "lm_head" => "output".to_owned(),
            _ => {
                let (layer, part) = stem.strip_prefix("model.layers.")?.split_once('.')?;
                let (g_part, _) = self.layer.iter().find(|(_, h)| *h == part)?;
                format!("blk.{layer}.{g_part}")
            }
        };
        Some(format!("{g}.{kind}"))
    }
}

/// The layer number and the rest of a `blk.N.<part>` stem. `N` must be written canonically
/// (digits, no sign, no leading zero), so that two GGUF names cannot map to one tensor.
fn split_layer(stem: &str) -> Option<(usize, &str)> {
    let (layer, part) = stem.strip_prefix("blk.")?.split_once('.')?;
    let canonical = !layer.is_empty()
        && layer.bytes().all(|b| b.is_ascii_digit())
        && (layer == "0" || !layer.starts_with('0'));
    Some((layer.parse().ok().filter(|_| canonical)?, part))
}

/// The layer a GGUF tensor name belongs to (`blk.N.*`), if any.
pub fn layer_of(name: &str) -> Option<usize> {
    split_layer(name).map(|(l, _)| l)
}
