//! The architecture table: one row per family of tensor names, conventions and config.json
//! facts, not a copy of the model per family. Everything downstream (conversion policy, shape
//! checks at load, the CPU reference, the GPU runtime, GGUF import, tiny synthetic checkpoints)
//! reads this table; a layer's tensors are walked once, by [`Arch::layer`] (see [`crate::layer`]).
//! Adding a family means adding a row.

use serde::{Deserialize, Serialize};

/// A family of architectures sharing one forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama 2/3, SmolLM2, Mistral.
    Llama,
    /// Qwen1.5/2/2.5: Llama with QKV biases.
    Qwen2,
    /// Gemma 1: GeGLU, scaled embeddings, `1 + w` norms.
    Gemma,
    /// Gemma 2: Gemma with sandwich norms, soft-capping and alternating sliding windows.
    Gemma2,
    /// Gemma 3: Gemma 2's norms plus QK-norm, 5 local : 1 global layers, two RoPE bases.
    Gemma3,
    /// ChatGLM2/3: fused QKV with bias, multi-query, partial (interleaved) rotary, fused gate/up.
    ChatGlm,
}

impl Family {
    /// The family's name as written in manifests and presets (`llama`, ..., `chatglm`).
    pub fn from_name(name: &str) -> Option<Family> {
        use serde::de::IntoDeserializer;
        let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.into_deserializer();
        Family::deserialize(d).ok()
    }

    /// The family's name (the inverse of [`Family::from_name`]).
    pub fn name(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            _ => unreachable!("a unit variant serializes as its name"),
        }
    }

    /// This family's row of the table.
    pub fn arch(self) -> &'static Arch {
        Arch::by_family(self)
    }
}

/// How RoPE pairs dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeLayout {
    /// Dimension `i` pairs with `i + d/2` (HF `rotate_half`).
    HalfSplit,
    /// Dimension `2i` pairs with `2i + 1` (GPT-J / ChatGLM / GGUF-permuted Llama).
    Interleaved,
}

/// The RMSNorm weight convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormStyle {
    /// `x̂ · w`
    Weight,
    /// `x̂ · (1 + w)` (Gemma)
    OnePlusWeight,
}

/// The gated MLP's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SwiGLU: `silu(gate) · up`
    Silu,
    /// GeGLU: `gelu_tanh(gate) · up`
    GeluTanh,
}

impl Activation {
    /// The name Hugging Face's config.json gives it.
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::Silu => "silu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
        }
    }
}

/// What a tensor is, which decides how it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Embedding,
    Linear,
    LmHead,
    Norm,
    Bias,
}

impl Role {
    /// Weight matrices that M0E4 quantizes by default.
    pub fn quantizable(self) -> bool {
        matches!(self, Role::Embedding | Role::Linear | Role::LmHead)
    }
}

/// What a stored per-layer tensor holds: its place in the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// RMSNorm of the residual entering attention.
    InputNorm,
    Q,
    K,
    V,
    /// q, k and v stacked by rows in one tensor (ChatGLM's `query_key_value`).
    Qkv,
    /// RMSNorm of each query / key head (Gemma 3).
    QNorm,
    KNorm,
    /// The attention output projection.
    O,
    /// RMSNorm of the attention output before the residual add (Gemma 2/3 sandwich norms).
    AttnOutNorm,
    /// RMSNorm of the residual entering the MLP.
    MlpInNorm,
    /// RMSNorm of the MLP output before the residual add (Gemma 2/3).
    MlpOutNorm,
    Gate,
    Up,
    /// gate and up stacked by rows in one tensor, gate first (ChatGLM's `dense_h_to_4h`).
    GateUp,
    Down,
}

impl Slot {
    /// llama.cpp's name of the slot: GGUF stores the tensor as `blk.N.<name>`.
    pub fn gguf(self) -> &'static str {
        match self {
            Slot::InputNorm => "attn_norm",
            Slot::Q => "attn_q",
            Slot::K => "attn_k",
            Slot::V => "attn_v",
            Slot::Qkv => "attn_qkv",
            Slot::QNorm => "attn_q_norm",
            Slot::KNorm => "attn_k_norm",
            Slot::O => "attn_output",
            Slot::AttnOutNorm => "post_attention_norm",
            Slot::MlpInNorm => "ffn_norm",
            Slot::MlpOutNorm => "post_ffw_norm",
            Slot::Gate => "ffn_gate",
            Slot::Up => "ffn_up",
            Slot::GateUp => "ffn_up",
            Slot::Down => "ffn_down",
        }
    }
}

/// Names of one family's tensors.
#[derive(Debug)]
pub struct TensorNames {
    pub embed: &'static str,
    pub final_norm: &'static str,
    pub lm_head: &'static str,
    /// Printf-style prefix with `{}` for the layer index.
    pub layer: &'static str,
    /// A layer's stored tensors in file order, in segments: what each holds and its name
    /// relative to the layer prefix, without `.weight` / `.bias`.
    pub layer_tensors: &'static [&'static [(Slot, &'static str)]],
}

/// config.json's names of the hyper-parameters: Hugging Face's, or a family's own.
#[derive(Debug)]
pub struct ConfigKeys {
    pub intermediate: &'static str,
    pub layers: &'static str,
    pub head_dim: &'static str,
    pub vocab: &'static str,
    pub max_positions: &'static str,
    pub eps: &'static str,
}

/// Hugging Face transformers' key names.
pub const HF_KEYS: ConfigKeys = ConfigKeys {
    intermediate: "intermediate_size",
    layers: "num_hidden_layers",
    head_dim: "head_dim",
    vocab: "vocab_size",
    max_positions: "max_position_embeddings",
    eps: "rms_norm_eps",
};

/// ChatGLM's own key names.
pub const GLM_KEYS: ConfigKeys = ConfigKeys {
    intermediate: "ffn_hidden_size",
    layers: "num_layers",
    head_dim: "kv_channels",
    vocab: "padded_vocab_size",
    max_positions: "seq_length",
    eps: "layernorm_epsilon",
};

/// How config.json gives the number of key/value heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvHeads {
    /// `num_key_value_heads`, default: one per query head.
    Grouped,
    /// `multi_query_group_num` when `multi_query_attention` is true (ChatGLM).
    MultiQuery,
}

/// How config.json gives the RoPE base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeBase {
    /// `rope_theta`, default 10000.
    Theta,
    /// 10000 × `rope_ratio` (default 1; ChatGLM).
    Ratio,
}

/// Which layers attend within a sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sliding {
    /// None; `sliding_window` is ignored.
    Never,
    /// Every layer, when config.json sets `sliding_window` and `use_sliding_window` is not false
    /// (Mistral).
    AllLayers,
    /// As [`Sliding::AllLayers`], and the family's config.json states `use_sliding_window`
    /// itself, off in the released models (Qwen2).
    Switched,
    /// Local layers with a window of `sliding_window` (default `window`), every `every`-th layer
    /// global; where `pattern_key`, config.json's `sliding_window_pattern` overrides `every`.
    Pattern {
        window: usize,
        every: usize,
        pattern_key: bool,
    },
}

/// How a family's config.json spells and defaults what tlite reads.
#[derive(Debug)]
pub struct ConfigFacts {
    /// The Hugging Face class (`architectures[0]`).
    pub hf_class: &'static str,
    pub keys: &'static ConfigKeys,
    /// The key naming the activation (`hidden_act`; Gemma's `hidden_activation`); ChatGLM's
    /// config names none.
    pub activation_key: Option<&'static str>,
    pub kv_heads: KvHeads,
    pub rope_base: RopeBase,
    /// `tie_word_embeddings` when config.json does not say.
    pub tie_default: bool,
    /// `partial_rotary_factor` when config.json does not say.
    pub partial_rotary_default: f64,
    pub sliding: Sliding,
    /// Sliding-window layers use a second RoPE base, `rope_local_base_freq` (this default).
    pub local_rope_base: Option<f64>,
    /// Attention scores are scaled by `query_pre_attn_scalar^-0.5` when config.json gives it.
    pub query_pre_attn_scalar: bool,
    /// Hugging Face's default soft-caps (attention scores, final logits).
    pub softcaps: Option<(f64, f64)>,
    /// Keys the family's config.json carries with fixed values (JSON object; tlite reads none).
    pub fixed: &'static str,
}

/// The family in llama.cpp's GGUF files: what the importer reads and undoes. (RMSNorm weights
/// of a `1 + w` family are stored as `1 + w`.)
#[derive(Debug)]
pub struct GgufArch {
    /// `general.architecture`.
    pub name: &'static str,
    /// llama.cpp permuted the Q/K rows for its interleaved RoPE (Llama only: Qwen2 and Gemma
    /// use llama.cpp's NeoX RoPE on unpermuted weights).
    pub permuted_qk: bool,
    /// Keys the rebuilt config.json carries with fixed values (JSON object): what
    /// transformers writes for the class beyond the facts above.
    pub config_fixed: &'static str,
}

/// What a tiny synthetic checkpoint of the family looks like (`tlite synth tiny-<family>`).
/// The tiny goldens are pinned to the bytes these values produce.
#[derive(Debug)]
pub struct SynthFacts {
    pub layers: usize,
    pub kv_heads: usize,
    pub tied: bool,
    /// The RMSNorm epsilon written.
    pub eps: f64,
    /// `rope_theta` written (families whose base is [`RopeBase::Theta`]).
    pub rope_theta: f64,
    /// config.json says `query_pre_attn_scalar` = `head_dim`.
    pub query_pre_attn_scalar: bool,
    /// Further keys written (JSON object).
    pub extra: &'static str,
}

/// One row of the table.
#[derive(Debug)]
pub struct Arch {
    pub family: Family,
    /// `model_type` values of config.json that select this row (the first is written).
    pub model_types: &'static [&'static str],
    pub rope: RopeLayout,
    pub norm: NormStyle,
    pub activation: Activation,
    /// q/k/v projections carry biases.
    pub qkv_bias: bool,
    /// Embeddings are multiplied by `sqrt(hidden)`.
    pub scale_embeddings: bool,
    pub names: TensorNames,
    pub config: ConfigFacts,
    /// The GGUF architecture, where the importer supports the family.
    pub gguf: Option<GgufArch>,
    pub synth: SynthFacts,
}

/// Segments of a layer's list of stored tensors, in file order.
type Segment = &'static [(Slot, &'static str)];

const HF_QKV: Segment = &[
    (Slot::InputNorm, "input_layernorm"),
    (Slot::Q, "self_attn.q_proj"),
    (Slot::K, "self_attn.k_proj"),
    (Slot::V, "self_attn.v_proj"),
];
const HF_QK_NORMS: Segment = &[
    (Slot::QNorm, "self_attn.q_norm"),
    (Slot::KNorm, "self_attn.k_norm"),
];
const HF_O: Segment = &[(Slot::O, "self_attn.o_proj")];
const LLAMA_NORMS: Segment = &[(Slot::MlpInNorm, "post_attention_layernorm")];
const SANDWICH_NORMS: Segment = &[
    (Slot::AttnOutNorm, "post_attention_layernorm"),
    (Slot::MlpInNorm, "pre_feedforward_layernorm"),
    (Slot::MlpOutNorm, "post_feedforward_layernorm"),
];
const HF_MLP: Segment = &[
    (Slot::Gate, "mlp.gate_proj"),
    (Slot::Up, "mlp.up_proj"),
    (Slot::Down, "mlp.down_proj"),
];
const GLM_LAYER: Segment = &[
    (Slot::InputNorm, "input_layernorm"),
    (Slot::Qkv, "self_attention.query_key_value"),
    (Slot::O, "self_attention.dense"),
    (Slot::MlpInNorm, "post_attention_layernorm"),
    (Slot::GateUp, "mlp.dense_h_to_4h"),
    (Slot::Down, "mlp.dense_4h_to_h"),
];

const fn hf_names(layer_tensors: &'static [Segment]) -> TensorNames {
    TensorNames {
        embed: "model.embed_tokens.weight",
        final_norm: "model.norm.weight",
        lm_head: "lm_head.weight",
        layer: "model.layers.{}.",
        layer_tensors,
    }
}

/// Llama's config facts; the other Hugging Face families differ from it.
const LLAMA_CONFIG: ConfigFacts = ConfigFacts {
    hf_class: "LlamaForCausalLM",
    keys: &HF_KEYS,
    activation_key: Some("hidden_act"),
    kv_heads: KvHeads::Grouped,
    rope_base: RopeBase::Theta,
    tie_default: false,
    partial_rotary_default: 1.0,
    sliding: Sliding::AllLayers,
    local_rope_base: None,
    query_pre_attn_scalar: false,
    softcaps: None,
    fixed: "{}",
};

const GEMMA_CONFIG: ConfigFacts = ConfigFacts {
    hf_class: "GemmaForCausalLM",
    activation_key: Some("hidden_activation"),
    tie_default: true,
    sliding: Sliding::Never,
    query_pre_attn_scalar: true,
    ..LLAMA_CONFIG
};

/// Gemma 2/3's local attention: a 4096-token window by default.
const GEMMA_WINDOW: usize = 4096;

const LLAMA_SYNTH: SynthFacts = SynthFacts {
    layers: 2,
    kv_heads: 2,
    tied: false,
    eps: 1e-6,
    rope_theta: 10000.0,
    query_pre_attn_scalar: false,
    extra: "{}",
};

const fn gguf(name: &'static str, permuted_qk: bool, config_fixed: &'static str) -> GgufArch {
    GgufArch {
        name,
        permuted_qk,
        config_fixed,
    }
}

/// The Llama row; other rows say how they differ from it.
const LLAMA: Arch = Arch {
    family: Family::Llama,
    model_types: &["llama", "mistral"],
    rope: RopeLayout::HalfSplit,
    norm: NormStyle::Weight,
    activation: Activation::Silu,
    qkv_bias: false,
    scale_embeddings: false,
    names: hf_names(&[HF_QKV, HF_O, LLAMA_NORMS, HF_MLP]),
    config: LLAMA_CONFIG,
    gguf: Some(gguf(
        "llama",
        true,
        r#"{"mlp_bias": false, "pretraining_tp": 1}"#,
    )),
    synth: LLAMA_SYNTH,
};

/// The Gemma 1 row, the base of Gemma 2 and 3.
const GEMMA: Arch = Arch {
    family: Family::Gemma,
    model_types: &["gemma"],
    norm: NormStyle::OnePlusWeight,
    activation: Activation::GeluTanh,
    scale_embeddings: true,
    config: GEMMA_CONFIG,
    gguf: Some(gguf("gemma", false, r#"{"attention_bias": false}"#)),
    synth: SynthFacts {
        tied: true,
        ..LLAMA_SYNTH
    },
    ..LLAMA
};

/// The supported architectures, in order of support.
pub static ARCHS: [Arch; 6] = [
    LLAMA,
    Arch {
        family: Family::Qwen2,
        model_types: &["qwen2"],
        qkv_bias: true,
        config: ConfigFacts {
            hf_class: "Qwen2ForCausalLM",
            sliding: Sliding::Switched,
            ..LLAMA_CONFIG
        },
        gguf: Some(gguf("qwen2", false, "{}")),
        synth: SynthFacts {
            tied: true,
            rope_theta: 1000000.0,
            ..LLAMA_SYNTH
        },
        ..LLAMA
    },
    GEMMA,
    Arch {
        family: Family::Gemma2,
        model_types: &["gemma2"],
        names: hf_names(&[HF_QKV, HF_O, SANDWICH_NORMS, HF_MLP]),
        config: ConfigFacts {
            hf_class: "Gemma2ForCausalLM",
            sliding: Sliding::Pattern {
                window: GEMMA_WINDOW,
                every: 2,
                pattern_key: false,
            },
            softcaps: Some((50.0, 30.0)),
            ..GEMMA_CONFIG
        },
        gguf: Some(gguf("gemma2", false, r#"{"attention_bias": false}"#)),
        synth: SynthFacts {
            tied: true,
            query_pre_attn_scalar: true,
            extra: r#"{"sliding_window": 8}"#,
            ..LLAMA_SYNTH
        },
        ..GEMMA
    },
    Arch {
        family: Family::Gemma3,
        model_types: &["gemma3_text", "gemma3"],
        names: hf_names(&[HF_QKV, HF_QK_NORMS, HF_O, SANDWICH_NORMS, HF_MLP]),
        config: ConfigFacts {
            hf_class: "Gemma3ForCausalLM",
            sliding: Sliding::Pattern {
                window: GEMMA_WINDOW,
                every: 6,
                pattern_key: true,
            },
            local_rope_base: Some(10000.0),
            ..GEMMA_CONFIG
        },
        gguf: Some(gguf(
            "gemma3",
            false,
            r#"{"attention_bias": false, "attn_logit_softcapping": null,
                "final_logit_softcapping": null, "use_bidirectional_attention": false}"#,
        )),
        synth: SynthFacts {
            // Three layers, so that the pattern of 3 has a global layer.
            layers: 3,
            tied: true,
            rope_theta: 1000000.0,
            query_pre_attn_scalar: true,
            extra: r#"{"sliding_window": 8, "sliding_window_pattern": 3}"#,
            ..LLAMA_SYNTH
        },
        ..GEMMA
    },
    Arch {
        family: Family::ChatGlm,
        model_types: &["chatglm"],
        rope: RopeLayout::Interleaved,
        qkv_bias: true,
        names: TensorNames {
            embed: "transformer.embedding.word_embeddings.weight",
            final_norm: "transformer.encoder.final_layernorm.weight",
            lm_head: "transformer.output_layer.weight",
            layer: "transformer.encoder.layers.{}.",
            layer_tensors: &[GLM_LAYER],
        },
        config: ConfigFacts {
            hf_class: "ChatGLMModel",
            keys: &GLM_KEYS,
            activation_key: None,
            kv_heads: KvHeads::MultiQuery,
            rope_base: RopeBase::Ratio,
            partial_rotary_default: 0.5,
            sliding: Sliding::Never,
            fixed: r#"{"add_qkv_bias": true, "rmsnorm": true,
                "apply_residual_connection_post_layernorm": false}"#,
            ..LLAMA_CONFIG
        },
        gguf: None,
        synth: SynthFacts {
            kv_heads: 1,
            eps: 1e-5,
            ..LLAMA_SYNTH
        },
        ..LLAMA
    },
];

/// The `model_type` values tlite supports, for error messages.
pub fn supported_model_types() -> String {
    ARCHS
        .iter()
        .flat_map(|a| a.model_types.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The row for a config.json `model_type`.
pub fn lookup(model_type: &str) -> Option<&'static Arch> {
    ARCHS.iter().find(|a| a.model_types.contains(&model_type))
}

/// Every family, in table order.
pub fn families() -> impl Iterator<Item = Family> {
    ARCHS.iter().map(|a| a.family)
}

/// A JSON object literal of the table, parsed.
pub fn json_object(literal: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(literal).expect("the architecture table's JSON literals parse")
}

impl Arch {
    pub fn by_family(f: Family) -> &'static Arch {
        ARCHS
            .iter()
            .find(|a| a.family == f)
            .expect("every family has a row")
    }

    /// The full name of a layer tensor.
    pub fn layer_name(&self, layer: usize, rel: &str, suffix: &str) -> String {
        format!("{}{rel}{suffix}", self.layer_prefix(layer))
    }

    /// `model.layers.N.` (the row's prefix for layer `N`).
    pub fn layer_prefix(&self, layer: usize) -> String {
        self.names.layer.replace("{}", &layer.to_string())
    }

    /// A layer's stored tensors in file order: what each holds and its relative name.
    pub fn layer_tensors(&self) -> impl Iterator<Item = (Slot, &'static str)> {
        self.names
            .layer_tensors
            .iter()
            .flat_map(|seg| seg.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_round_trip() {
        for f in families() {
            assert_eq!(Family::from_name(&f.name()), Some(f));
        }
        assert_eq!(Family::Gemma3.name(), "gemma3");
        assert_eq!(Family::from_name("chatglm"), Some(Family::ChatGlm));
        assert_eq!(Family::from_name("llama3"), None);
    }

    #[test]
    fn json_literals_parse() {
        for a in &ARCHS {
            json_object(a.config.fixed);
            json_object(a.synth.extra);
            if let Some(g) = &a.gguf {
                json_object(g.config_fixed);
            }
        }
    }
}
