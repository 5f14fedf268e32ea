//! The one walk of a model's tensors. [`Arch::layer`] turns a row of the table and a config into
//! a [`LayerSpec`]: every logical projection as rows of a stored tensor (a fused tensor such as
//! ChatGLM's `query_key_value` is several projections' row ranges of one stored tensor), every
//! norm by its place in the layer, and the layer's stored tensors once each with shape and role.
//! The expected-tensor check, the CPU reference loader and the GPU graph builder all read this;
//! none of them matches on how a family stores its projections.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::arch::{Arch, Role, Slot};
use crate::config::ModelConfig;

/// One logical projection `y = x · W[rows]ᵀ (+ b)`: rows `rows` of the stored tensor `tensor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proj {
    /// The stored weight tensor (full name).
    pub tensor: String,
    /// The stored tensor's name relative to the layer prefix, without `.weight`
    /// (`self_attn.q_proj`; a fused tensor's for each of its projections).
    pub rel: &'static str,
    /// Its rows that hold this projection.
    pub rows: Range<usize>,
    /// Input width.
    pub cols: usize,
    /// The bias: the stored tensor and its entries that belong to this projection.
    pub bias: Option<(String, Range<usize>)>,
}

impl Proj {
    /// Output width.
    pub fn out(&self) -> usize {
        self.rows.len()
    }
}

/// One transformer layer as the forward pass reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    pub index: usize,
    /// RMSNorm of the residual entering attention.
    pub input_norm: String,
    pub q: Proj,
    pub k: Proj,
    pub v: Proj,
    /// RMSNorm of each query / key head after the projection.
    pub q_norm: Option<String>,
    pub k_norm: Option<String>,
    pub o: Proj,
    /// RMSNorm of the attention output before it joins the residual (sandwich norms).
    pub attn_out_norm: Option<String>,
    /// RMSNorm of the residual entering the MLP.
    pub mlp_in_norm: String,
    /// RMSNorm of the MLP output before it joins the residual.
    pub mlp_out_norm: Option<String>,
    pub gate: Proj,
    pub up: Proj,
    pub down: Proj,
    /// The layer's stored tensors, each once, in file order.
    pub tensors: Vec<ExpectedTensor>,
}

impl LayerSpec {
    /// The linear projections, in forward order.
    pub fn projections(&self) -> [&Proj; 7] {
        [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ]
    }

    /// q, k and v live in one stored tensor.
    pub fn fused_qkv(&self) -> bool {
        self.q.tensor == self.k.tensor
    }
}

/// The tensors outside the layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// `[vocab, hidden]`.
    pub embed: String,
    pub final_norm: String,
    /// The LM head's weight: its own tensor, or the embedding when tied.
    pub lm_head: String,
    pub tied: bool,
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

/// How the tensor in a slot is stored.
enum Stored {
    /// An RMSNorm weight of this many entries.
    Norm(usize),
    /// A matrix of `cols` columns whose rows hold one projection per entry of `parts` (their
    /// output widths, in order), with a bias of the same rows where `bias`.
    Matrix {
        parts: Vec<usize>,
        cols: usize,
        bias: bool,
    },
}

/// What the tensor in `slot` holds, in `c`'s sizes.
fn stored(slot: Slot, arch: &Arch, c: &ModelConfig) -> Stored {
    let (h, hd, f) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (q, kv) = (c.num_heads * hd, c.num_kv_heads * hd);
    let matrix = |parts: Vec<usize>, cols| Stored::Matrix {
        parts,
        cols,
        bias: arch.qkv_bias && matches!(slot, Slot::Q | Slot::K | Slot::V | Slot::Qkv),
    };
    match slot {
        Slot::InputNorm | Slot::AttnOutNorm | Slot::MlpInNorm | Slot::MlpOutNorm => Stored::Norm(h),
        Slot::QNorm | Slot::KNorm => Stored::Norm(hd),
        Slot::Q => matrix(vec![q], h),
        Slot::K | Slot::V => matrix(vec![kv], h),
        Slot::Qkv => matrix(vec![q, kv, kv], h),
        Slot::O => matrix(vec![h], q),
        Slot::Gate | Slot::Up => matrix(vec![f], h),
        Slot::GateUp => matrix(vec![f, f], h),
        Slot::Down => matrix(vec![h], f),
    }
}

/// A layer's fields while the table's list is walked.
#[derive(Default)]
struct Partial {
    input_norm: Option<String>,
    q: Option<Proj>,
    k: Option<Proj>,
    v: Option<Proj>,
    q_norm: Option<String>,
    k_norm: Option<String>,
    o: Option<Proj>,
    attn_out_norm: Option<String>,
    mlp_in_norm: Option<String>,
    mlp_out_norm: Option<String>,
    gate: Option<Proj>,
    up: Option<Proj>,
    down: Option<Proj>,
}

impl Partial {
    fn set_norm(&mut self, slot: Slot, name: String) {
        let field = match slot {
            Slot::InputNorm => &mut self.input_norm,
            Slot::QNorm => &mut self.q_norm,
            Slot::KNorm => &mut self.k_norm,
            Slot::AttnOutNorm => &mut self.attn_out_norm,
            Slot::MlpInNorm => &mut self.mlp_in_norm,
            _ => &mut self.mlp_out_norm,
        };
        *field = Some(name);
    }

    /// The projections a stored matrix holds, in the order of its rows.
    fn set_projs(&mut self, slot: Slot, projs: Vec<Proj>) {
        let fields = match slot {
            Slot::Q => vec![&mut self.q],
            Slot::K => vec![&mut self.k],
            Slot::V => vec![&mut self.v],
            Slot::Qkv => vec![&mut self.q, &mut self.k, &mut self.v],
            Slot::O => vec![&mut self.o],
            Slot::Gate => vec![&mut self.gate],
            Slot::Up => vec![&mut self.up],
            Slot::GateUp => vec![&mut self.gate, &mut self.up],
            _ => vec![&mut self.down],
        };
        for (field, p) in fields.into_iter().zip(projs) {
            *field = Some(p);
        }
    }
}

fn take<T>(x: Option<T>, what: &str, arch: &Arch) -> T {
    x.unwrap_or_else(|| panic!("the {:?} row of the table has no {what}", arch.family))
}

impl Arch {
    /// The tensors outside the layers.
    pub fn model_spec(&self, c: &ModelConfig) -> ModelSpec {
        let n = &self.names;
        let tied = c.tie_word_embeddings;
        ModelSpec {
            embed: n.embed.to_owned(),
            final_norm: n.final_norm.to_owned(),
            lm_head: if tied { n.embed } else { n.lm_head }.to_owned(),
            tied,
        }
    }

    /// Layer `l`: the one walk of the table's list of a layer's stored tensors. A stored
    /// matrix's rows are split among the projections it holds; a bias follows its weight.
    pub fn layer(&self, c: &ModelConfig, l: usize) -> LayerSpec {
        let mut tensors = Vec::new();
        let mut p = Partial::default();
        for (slot, rel) in self.layer_tensors() {
            let weight = self.layer_name(l, rel, ".weight");
            match stored(slot, self, c) {
                Stored::Norm(len) => {
                    tensors.push(ExpectedTensor::new(&weight, vec![len], Role::Norm));
                    p.set_norm(slot, weight);
                }
                Stored::Matrix { parts, cols, bias } => {
                    let rows: usize = parts.iter().sum();
                    tensors.push(ExpectedTensor::new(&weight, vec![rows, cols], Role::Linear));
                    let bias = bias.then(|| {
                        let name = self.layer_name(l, rel, ".bias");
                        tensors.push(ExpectedTensor::new(&name, vec![rows], Role::Bias));
                        name
                    });
                    let mut start = 0;
                    let projs = parts
                        .iter()
                        .map(|&n| {
                            let r = start..start + n;
                            start += n;
                            Proj {
                                tensor: weight.clone(),
                                rel,
                                rows: r.clone(),
                                cols,
                                bias: bias.clone().map(|b| (b, r)),
                            }
                        })
                        .collect();
                    p.set_projs(slot, projs);
                }
            }
        }
        LayerSpec {
            index: l,
            input_norm: take(p.input_norm, "input norm", self),
            q: take(p.q, "q projection", self),
            k: take(p.k, "k projection", self),
            v: take(p.v, "v projection", self),
            q_norm: p.q_norm,
            k_norm: p.k_norm,
            o: take(p.o, "output projection", self),
            attn_out_norm: p.attn_out_norm,
            mlp_in_norm: take(p.mlp_in_norm, "MLP norm", self),
            mlp_out_norm: p.mlp_out_norm,
            gate: take(p.gate, "gate projection", self),
            up: take(p.up, "up projection", self),
            down: take(p.down, "down projection", self),
            tensors,
        }
    }

    /// Every layer, in order.
    pub fn layers<'a>(&'a self, c: &'a ModelConfig) -> impl Iterator<Item = LayerSpec> + 'a {
        (0..c.num_layers).map(move |l| self.layer(c, l))
    }

    /// Every tensor the model must hold, with its shape and role, in file order: the
    /// embedding, each layer's stored tensors, the final norm and an untied LM head.
    pub fn expected_tensors(&self, c: &ModelConfig) -> Vec<ExpectedTensor> {
        let m = self.model_spec(c);
        let (h, vocab) = (c.hidden_size, c.vocab_size);
        let mut v = vec![ExpectedTensor::new(
            &m.embed,
            vec![vocab, h],
            Role::Embedding,
        )];
        for layer in self.layers(c) {
            v.extend(layer.tensors);
        }
        v.push(ExpectedTensor::new(&m.final_norm, vec![h], Role::Norm));
        if !m.tied {
            v.push(ExpectedTensor::new(
                &m.lm_head,
                vec![vocab, h],
                Role::LmHead,
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::arch::{ARCHS, Family};

    /// A config of every family with distinct sizes: hidden 48, 4 heads of 8, 2 KV heads,
    /// FFN 80, vocab 96, 3 layers.
    fn config(arch: &Arch) -> ModelConfig {
        let k = arch.config.keys;
        let mut v = json!({
            "model_type": arch.model_types[0], "hidden_size": 48, "num_attention_heads": 4,
            k.head_dim: 8, k.intermediate: 80, k.vocab: 96, k.layers: 3,
            "num_key_value_heads": 2, "multi_query_attention": true, "multi_query_group_num": 2,
        });
        if matches!(arch.config.sliding, crate::arch::Sliding::Pattern { .. }) {
            v["layer_types"] = json!(["sliding_attention", "full_attention", "full_attention"]);
        }
        ModelConfig::from_json(&v, std::path::Path::new("config.json")).unwrap()
    }

    #[test]
    fn every_row_describes_a_whole_layer() {
        for arch in &ARCHS {
            let c = config(arch);
            let lay = arch.layer(&c, 2);
            assert_eq!(lay.q.out(), 32, "{:?}", arch.family);
            assert_eq!((lay.k.out(), lay.v.out()), (16, 16));
            assert_eq!((lay.o.out(), lay.o.cols), (48, 32));
            assert_eq!((lay.gate.out(), lay.up.out(), lay.down.cols), (80, 80, 80));
            for (i, p) in lay.projections().into_iter().enumerate() {
                assert!(p.tensor.contains(".2.") && p.tensor.ends_with(".weight"));
                // q, k and v carry the family's biases; nothing else has one.
                assert_eq!(p.bias.is_some(), arch.qkv_bias && i < 3, "{}", p.tensor);
            }
            assert_eq!(lay.q_norm.is_some(), arch.family == Family::Gemma3);
            assert_eq!(lay.attn_out_norm.is_some(), lay.mlp_out_norm.is_some());
        }
    }

    /// A fused tensor's projections cover its rows exactly, in order, and its bias the same
    /// rows; every stored tensor is listed once with the shape its projections imply.
    #[test]
    fn projections_partition_their_stored_tensors() {
        for arch in &ARCHS {
            let c = config(arch);
            let lay = arch.layer(&c, 0);
            let mut names: Vec<&str> = lay.tensors.iter().map(|t| t.name.as_str()).collect();
            names.dedup();
            assert_eq!(
                names.len(),
                lay.tensors.len(),
                "{:?}: a tensor listed twice",
                arch.family
            );
            for t in lay.tensors.iter().filter(|t| t.role == Role::Linear) {
                let mut ps: Vec<&Proj> = lay
                    .projections()
                    .into_iter()
                    .filter(|p| p.tensor == t.name)
                    .collect();
                ps.sort_by_key(|p| p.rows.start);
                let mut next = 0;
                for p in &ps {
                    assert_eq!(p.rows.start, next, "{}", t.name);
                    assert_eq!(vec![t.shape[0], p.cols], t.shape);
                    if let Some((b, r)) = &p.bias {
                        assert_eq!(r, &p.rows);
                        let bt = lay.tensors.iter().find(|x| &x.name == b).unwrap();
                        assert_eq!((bt.role, bt.shape.clone()), (Role::Bias, vec![t.shape[0]]));
                    }
                    next = p.rows.end;
                }
                assert_eq!(next, t.shape[0], "{}: rows not covered", t.name);
            }
            assert_eq!(lay.fused_qkv(), arch.family == Family::ChatGlm);
        }
    }

    #[test]
    fn expected_tensors_follow_the_table() {
        let arch = Arch::by_family(Family::ChatGlm);
        let c = config(arch);
        let names: Vec<String> = arch
            .expected_tensors(&c)
            .into_iter()
            .filter(|t| t.name.contains(".layers.1."))
            .map(|t| {
                format!(
                    "{} {:?}",
                    t.name.trim_start_matches("transformer.encoder.layers.1."),
                    t.shape
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "input_layernorm.weight [48]",
                "self_attention.query_key_value.weight [64, 48]",
                "self_attention.query_key_value.bias [64]",
                "self_attention.dense.weight [48, 32]",
                "post_attention_layernorm.weight [48]",
                "mlp.dense_h_to_4h.weight [160, 48]",
                "mlp.dense_4h_to_h.weight [48, 80]",
            ]
        );
        let all = arch.expected_tensors(&c);
        assert_eq!(all.len(), 1 + 3 * 7 + 2);
        assert_eq!(all.last().unwrap().role, Role::LmHead);
    }
}
