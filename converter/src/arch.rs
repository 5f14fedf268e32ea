//! The architecture table: one row per family of tensor names and conventions, not a copy of
//! the model per family. Everything downstream (conversion policy, shape checks at load, the
//! CPU reference, the GPU runtime, tiny synthetic checkpoints) reads this table.

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;

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

/// Names of one family's tensors. Layer names are relative to the layer prefix.
#[derive(Debug)]
pub struct TensorNames {
    pub embed: &'static str,
    pub final_norm: &'static str,
    pub lm_head: &'static str,
    /// Printf-style prefix with `{}` for the layer index.
    pub layer: &'static str,
    /// Separate q/k/v projections, or one fused `query_key_value`.
    pub qkv: Qkv,
    pub o: &'static str,
    /// Separate gate/up, or one fused `[2 * ffn, hidden]` matrix (gate first).
    pub mlp_in: MlpIn,
    pub down: &'static str,
    pub input_norm: &'static str,
    /// Norm after attention: before the MLP (Llama) or on the attention output (Gemma 2/3).
    pub post_attn_norm: &'static str,
    pub pre_ffn_norm: Option<&'static str>,
    pub post_ffn_norm: Option<&'static str>,
    pub q_norm: Option<&'static str>,
    pub k_norm: Option<&'static str>,
}

#[derive(Debug)]
pub enum Qkv {
    Split {
        q: &'static str,
        k: &'static str,
        v: &'static str,
    },
    Fused(&'static str),
}

#[derive(Debug)]
pub enum MlpIn {
    Split {
        gate: &'static str,
        up: &'static str,
    },
    Fused(&'static str),
}

/// One row of the table.
#[derive(Debug)]
pub struct Arch {
    pub family: Family,
    /// `model_type` values of config.json that select this row.
    pub model_types: &'static [&'static str],
    pub rope: RopeLayout,
    pub norm: NormStyle,
    pub activation: Activation,
    /// q/k/v projections carry biases.
    pub qkv_bias: bool,
    /// Embeddings are multiplied by `sqrt(hidden)`.
    pub scale_embeddings: bool,
    /// `post_attn_norm` normalizes the attention output (sandwich norms) instead of the MLP input.
    pub sandwich_norms: bool,
    pub names: TensorNames,
}

const LLAMA_NAMES: TensorNames = TensorNames {
    embed: "model.embed_tokens.weight",
    final_norm: "model.norm.weight",
    lm_head: "lm_head.weight",
    layer: "model.layers.{}.",
    qkv: Qkv::Split {
        q: "self_attn.q_proj",
        k: "self_attn.k_proj",
        v: "self_attn.v_proj",
    },
    o: "self_attn.o_proj",
    mlp_in: MlpIn::Split {
        gate: "mlp.gate_proj",
        up: "mlp.up_proj",
    },
    down: "mlp.down_proj",
    input_norm: "input_layernorm",
    post_attn_norm: "post_attention_layernorm",
    pre_ffn_norm: None,
    post_ffn_norm: None,
    q_norm: None,
    k_norm: None,
};

const GEMMA2_NAMES: TensorNames = TensorNames {
    pre_ffn_norm: Some("pre_feedforward_layernorm"),
    post_ffn_norm: Some("post_feedforward_layernorm"),
    ..LLAMA_NAMES
};

/// The supported architectures, in order of support.
pub static ARCHS: [Arch; 6] = [
    Arch {
        family: Family::Llama,
        model_types: &["llama", "mistral"],
        rope: RopeLayout::HalfSplit,
        norm: NormStyle::Weight,
        activation: Activation::Silu,
        qkv_bias: false,
        scale_embeddings: false,
        sandwich_norms: false,
        names: LLAMA_NAMES,
    },
    Arch {
        family: Family::Qwen2,
        model_types: &["qwen2"],
        rope: RopeLayout::HalfSplit,
        norm: NormStyle::Weight,
        activation: Activation::Silu,
        qkv_bias: true,
        scale_embeddings: false,
        sandwich_norms: false,
        names: LLAMA_NAMES,
    },
    Arch {
        family: Family::Gemma,
        model_types: &["gemma"],
        rope: RopeLayout::HalfSplit,
        norm: NormStyle::OnePlusWeight,
        activation: Activation::GeluTanh,
        qkv_bias: false,
        scale_embeddings: true,
        sandwich_norms: false,
        names: LLAMA_NAMES,
    },
    Arch {
        family: Family::Gemma2,
        model_types: &["gemma2"],
        rope: RopeLayout::HalfSplit,
        norm: NormStyle::OnePlusWeight,
        activation: Activation::GeluTanh,
        qkv_bias: false,
        scale_embeddings: true,
        sandwich_norms: true,
        names: GEMMA2_NAMES,
    },
    Arch {
        family: Family::Gemma3,
        model_types: &["gemma3_text", "gemma3"],
        rope: RopeLayout::HalfSplit,
        norm: NormStyle::OnePlusWeight,
        activation: Activation::GeluTanh,
        qkv_bias: false,
        scale_embeddings: true,
        sandwich_norms: true,
        names: TensorNames {
            q_norm: Some("self_attn.q_norm"),
            k_norm: Some("self_attn.k_norm"),
            ..GEMMA2_NAMES
        },
    },
    Arch {
        family: Family::ChatGlm,
        model_types: &["chatglm"],
        rope: RopeLayout::Interleaved,
        norm: NormStyle::Weight,
        activation: Activation::Silu,
        qkv_bias: true,
        scale_embeddings: false,
        sandwich_norms: false,
        names: TensorNames {
            embed: "transformer.embedding.word_embeddings.weight",
            final_norm: "transformer.encoder.final_layernorm.weight",
            lm_head: "transformer.output_layer.weight",
            layer: "transformer.encoder.layers.{}.",
            qkv: Qkv::Fused("self_attention.query_key_value"),
            o: "self_attention.dense",
            mlp_in: MlpIn::Fused("mlp.dense_h_to_4h"),
            down: "mlp.dense_4h_to_h",
            input_norm: "input_layernorm",
            post_attn_norm: "post_attention_layernorm",
            pre_ffn_norm: None,
            post_ffn_norm: None,
            q_norm: None,
            k_norm: None,
        },
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

impl Arch {
    pub fn by_family(f: Family) -> &'static Arch {
        ARCHS
            .iter()
            .find(|a| a.family == f)
            .expect("every family has a row")
    }

    /// The full name of a layer tensor.
    pub fn layer_name(&self, layer: usize, rel: &str, suffix: &str) -> String {
        format!(
            "{}{rel}{suffix}",
            self.names.layer.replace("{}", &layer.to_string())
        )
    }

    /// Every tensor the model must hold, with its shape and role, in a stable order.
    pub fn expected_tensors(&self, c: &ModelConfig) -> Vec<ExpectedTensor> {
        let n = &self.names;
        let (h, hd, f) = (c.hidden_size, c.head_dim, c.intermediate_size);
        let (q_out, kv_out) = (c.num_heads * hd, c.num_kv_heads * hd);
        let mut v = vec![ExpectedTensor::new(
            n.embed,
            vec![c.vocab_size, h],
            Role::Embedding,
        )];
        for l in 0..c.num_layers {
            let t = |rel: &str, suffix: &str, shape: Vec<usize>, role| {
                ExpectedTensor::new(&self.layer_name(l, rel, suffix), shape, role)
            };
            v.push(t(n.input_norm, ".weight", vec![h], Role::Norm));
            match &n.qkv {
                Qkv::Split { q, k, v: vv } => {
                    for (name, out) in [(q, q_out), (k, kv_out), (vv, kv_out)] {
                        v.push(t(name, ".weight", vec![out, h], Role::Linear));
                        if self.qkv_bias {
                            v.push(t(name, ".bias", vec![out], Role::Bias));
                        }
                    }
                }
                Qkv::Fused(name) => {
                    v.push(t(
                        name,
                        ".weight",
                        vec![q_out + 2 * kv_out, h],
                        Role::Linear,
                    ));
                    if self.qkv_bias {
                        v.push(t(name, ".bias", vec![q_out + 2 * kv_out], Role::Bias));
                    }
                }
            }
            for norm in [n.q_norm, n.k_norm].into_iter().flatten() {
                v.push(t(norm, ".weight", vec![hd], Role::Norm));
            }
            v.push(t(n.o, ".weight", vec![h, q_out], Role::Linear));
            v.push(t(n.post_attn_norm, ".weight", vec![h], Role::Norm));
            for norm in [n.pre_ffn_norm, n.post_ffn_norm].into_iter().flatten() {
                v.push(t(norm, ".weight", vec![h], Role::Norm));
            }
            match &n.mlp_in {
                MlpIn::Split { gate, up } => {
                    v.push(t(gate, ".weight", vec![f, h], Role::Linear));
                    v.push(t(up, ".weight", vec![f, h], Role::Linear));
                }
                MlpIn::Fused(name) => v.push(t(name, ".weight", vec![2 * f, h], Role::Linear)),
            }
            v.push(t(n.down, ".weight", vec![h, f], Role::Linear));
        }
        v.push(ExpectedTensor::new(n.final_norm, vec![h], Role::Norm));
        if !c.tie_word_embeddings {
            v.push(ExpectedTensor::new(
                n.lm_head,
                vec![c.vocab_size, h],
                Role::LmHead,
            ));
        }
        v
    }
}

/// A tensor the architecture requires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

impl ExpectedTensor {
    fn new(name: &str, shape: Vec<usize>, role: Role) -> Self {
        ExpectedTensor {
            name: name.to_owned(),
            shape,
            role,
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}
