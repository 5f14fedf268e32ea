//! The forward pass. One definition for every family: the architecture table says which
//! tensors exist (biases, QK-norm, sandwich norms, fused projections) and which conventions
//! apply (norm `w` or `1 + w`, RoPE layout and bases, activation, embedding scale, soft-caps).

use candle_core::{D, DType, Device, Tensor};
use tlite_converter::arch::{Activation, Arch, MlpIn, NormStyle, Qkv};
use tlite_converter::config::ModelConfig;

use super::cache::KvCache;
use super::calibration::{Calibration, LinearInput};
use super::source::WeightSource;
use super::{RefError, Result, rope};

/// Which positions of a step produce logits.
#[derive(Clone, Copy, Debug)]
pub enum Logits<'a> {
    All,
    Last,
    /// Positions relative to the step's first token.
    Positions(&'a [usize]),
}

struct Layer {
    input_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_bias: Option<Tensor>,
    k_bias: Option<Tensor>,
    v_bias: Option<Tensor>,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    o: Tensor,
    post_attn_norm: Tensor,
    pre_ffn_norm: Option<Tensor>,
    post_ffn_norm: Option<Tensor>,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

/// The reference model, all weights in f32.
pub struct ReferenceModel {
    pub config: ModelConfig,
    arch: &'static Arch,
    embed: Tensor,
    lm_head: Tensor,
    final_norm: Tensor,
    layers: Vec<Layer>,
}

fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(&w.t()?)?;
    Ok(match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(x.broadcast_mul(&(ms + eps)?.sqrt()?.recip()?)?
        .broadcast_mul(w)?)
}

fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

fn softcap(x: &Tensor, cap: Option<f64>) -> Result<Tensor> {
    Ok(match cap {
        Some(c) => ((x / c)?.tanh()? * c)?,
        None => x.clone(),
    })
}

impl ReferenceModel {
    /// Loads every weight as f32 (dequantizing M0E4 tensors) and checks shapes.
    pub fn load(src: &WeightSource) -> Result<Self> {
        let config = src.config().clone();
        let arch = config.arch();
        let expected = arch.expected_tensors(&config);
        let get = |name: &str| -> Result<Tensor> {
            let t = expected.iter().find(|t| t.name == name).ok_or_else(|| {
                RefError::Unsupported(format!("tensor `{name}` is not in the architecture table"))
            })?;
            let data = src.tensor_f32(name)?;
            Ok(Tensor::from_vec(data, t.shape.as_slice(), &Device::Cpu)?)
        };
        let norm = |name: &str| -> Result<Tensor> {
            let w = get(name)?;
            Ok(match arch.norm {
                NormStyle::Weight => w,
                NormStyle::OnePlusWeight => (w + 1.0)?,
            })
        };
        let n = &arch.names;
        let (hd, q_out, kv_out) = (
            config.head_dim,
            config.num_heads * config.head_dim,
            config.num_kv_heads * config.head_dim,
        );
        let _ = hd;
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let name = |rel: &str, suffix: &str| arch.layer_name(l, rel, suffix);
            let opt_norm = |rel: Option<&str>| rel.map(|r| norm(&name(r, ".weight"))).transpose();
            let (q, k, v, q_bias, k_bias, v_bias) = match &n.qkv {
                Qkv::Split { q, k, v } => {
                    let b = |r: &str| -> Result<Option<Tensor>> {
                        if arch.qkv_bias {
                            Ok(Some(get(&name(r, ".bias"))?))
                        } else {
                            Ok(None)
                        }
                    };
                    (
                        get(&name(q, ".weight"))?,
                        get(&name(k, ".weight"))?,
                        get(&name(v, ".weight"))?,
                        b(q)?,
                        b(k)?,
                        b(v)?,
                    )
                }
                Qkv::Fused(f) => {
                    let w = get(&name(f, ".weight"))?;
                    let split = |t: &Tensor| -> Result<[Tensor; 3]> {
                        Ok([
                            t.narrow(0, 0, q_out)?,
                            t.narrow(0, q_out, kv_out)?,
                            t.narrow(0, q_out + kv_out, kv_out)?,
                        ])
                    };
                    let [q, k, v] = split(&w)?;
                    let (qb, kb, vb) = if arch.qkv_bias {
                        let [a, b, c] = split(&get(&name(f, ".bias"))?)?;
                        (Some(a), Some(b), Some(c))
                    } else {
                        (None, None, None)
                    };
                    (q, k, v, qb, kb, vb)
                }
            };
            let (gate, up) = match &n.mlp_in {
                MlpIn::Split { gate, up } => {
                    (get(&name(gate, ".weight"))?, get(&name(up, ".weight"))?)
                }
                MlpIn::Fused(f) => {
                    let w = get(&name(f, ".weight"))?;
                    let half = config.intermediate_size;
                    (w.narrow(0, 0, half)?, w.narrow(0, half, half)?)
                }
            };
            layers.push(Layer {
                input_norm: norm(&name(n.input_norm, ".weight"))?,
                q,
                k,
                v,
                q_bias,
                k_bias,
                v_bias,
                q_norm: opt_norm(n.q_norm)?,
                k_norm: opt_norm(n.k_norm)?,
                o: get(&name(n.o, ".weight"))?,
                post_attn_norm: norm(&name(n.post_attn_norm, ".weight"))?,
                pre_ffn_norm: opt_norm(n.pre_ffn_norm)?,
                post_ffn_norm: opt_norm(n.post_ffn_norm)?,
                gate,
                up,
                down: get(&name(n.down, ".weight"))?,
            });
        }
        let embed = get(n.embed)?;
        let lm_head = if config.tie_word_embeddings {
            embed.clone()
        } else {
            get(n.lm_head)?
        };
        Ok(ReferenceModel {
            final_norm: norm(n.final_norm)?,
            config,
            arch,
            embed,
            lm_head,
            layers,
        })
    }

    /// A cache for this model of `max_seq` positions.
    pub fn new_cache(&self, max_seq: usize) -> Result<KvCache> {
        let c = &self.config;
        KvCache::new(c.num_layers, c.num_kv_heads, c.head_dim, max_seq)
    }

    /// Runs `tokens` at positions `pos..`, writing K/V into `cache`; returns `[n, vocab]` logits.
    pub fn forward(
        &self,
        tokens: &[u32],
        pos: usize,
        cache: &mut KvCache,
        logits: Logits,
    ) -> Result<Tensor> {
        self.forward_with_hidden(tokens, pos, cache, logits, None)
    }

    /// As [`Self::forward`], also collecting the residual stream after every layer
    /// (`[n, hidden]` each) when `hidden` is given.
    pub fn forward_with_hidden(
        &self,
        tokens: &[u32],
        pos: usize,
        cache: &mut KvCache,
        logits: Logits,
        hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        self.run(tokens, pos, cache, logits, hidden, None)
    }

    /// As [`Self::forward`], also adding the input of every linear layer to `stats`
    /// (a calibration pass: per-input-channel mean x², see [`Calibration`]).
    pub fn forward_collect(
        &self,
        tokens: &[u32],
        pos: usize,
        cache: &mut KvCache,
        logits: Logits,
        stats: &mut Calibration,
    ) -> Result<Tensor> {
        self.run(tokens, pos, cache, logits, None, Some(stats))
    }

    fn run(
        &self,
        tokens: &[u32],
        pos: usize,
        cache: &mut KvCache,
        logits: Logits,
        mut hidden: Option<&mut Vec<Tensor>>,
        mut stats: Option<&mut Calibration>,
    ) -> Result<Tensor> {
        let collecting = stats.is_some();
        let mut tap = |site: LinearInput, x: &Tensor| -> Result<()> {
            match stats.as_deref_mut() {
                Some(s) => s.observe(site, x),
                None => Ok(()),
            }
        };
        let c = &self.config;
        let n = tokens.len();
        if pos + n > cache.max_seq {
            return Err(RefError::ContextOverflow {
                pos,
                tokens: n,
                max: cache.max_seq,
            });
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(RefError::TokenOutOfRange {
                id,
                vocab: c.vocab_size,
            });
        }
        let ids = Tensor::from_vec(tokens.to_vec(), n, &Device::Cpu)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        if self.arch.scale_embeddings {
            x = (x * f64::from((c.hidden_size as f32).sqrt()))?;
        }
        let rot = c.rotary_dims();
        let factor = c.rope_linear_factor.unwrap_or(1.0);
        let global = rope::tables(c.rope_theta, rot, pos, n, factor)?;
        let local = match c.rope_local_theta {
            Some(t) => Some(rope::tables(t, rot, pos, n, 1.0)?),
            None => None,
        };
        for (l, layer) in self.layers.iter().enumerate() {
            let sliding = c.sliding_layers[l];
            let (cos, sin) = if sliding {
                local.as_ref().unwrap_or(&global)
            } else {
                &global
            };
            let window = if sliding { c.sliding_window } else { None };
            let h = rms_norm(&x, &layer.input_norm, c.rms_norm_eps)?;
            tap(LinearInput::Qkv(l), &h)?;
            let heads_out = self.attention(layer, &h, pos, cache, l, (cos, sin, rot), window)?;
            tap(LinearInput::AttnOut(l), &heads_out)?;
            let attn = linear(&heads_out, &layer.o, None)?;
            let attn = if self.arch.sandwich_norms {
                rms_norm(&attn, &layer.post_attn_norm, c.rms_norm_eps)?
            } else {
                attn
            };
            x = (x + attn)?;
            let pre = if self.arch.sandwich_norms {
                layer.pre_ffn_norm.as_ref().unwrap_or(&layer.post_attn_norm)
            } else {
                &layer.post_attn_norm
            };
            let h = rms_norm(&x, pre, c.rms_norm_eps)?;
            tap(LinearInput::MlpIn(l), &h)?;
            let g = linear(&h, &layer.gate, None)?;
            let g = match self.arch.activation {
                Activation::Silu => g.silu()?,
                Activation::GeluTanh => g.gelu()?,
            };
            let act = (g * linear(&h, &layer.up, None)?)?;
            tap(LinearInput::MlpDown(l), &act)?;
            let mut m = linear(&act, &layer.down, None)?;
            if let Some(w) = &layer.post_ffn_norm {
                m = rms_norm(&m, w, c.rms_norm_eps)?;
            }
            x = (x + m)?;
            if let Some(hs) = hidden.as_deref_mut() {
                hs.push(x.clone());
            }
        }
        if collecting {
            // The LM head's input statistics cover every position, whatever logits are asked.
            tap(
                LinearInput::LmHead,
                &rms_norm(&x, &self.final_norm, c.rms_norm_eps)?,
            )?;
        }
        let x = match logits {
            Logits::All => x,
            Logits::Last => x.narrow(0, n - 1, 1)?,
            Logits::Positions(p) => {
                let idx = Tensor::from_vec(
                    p.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                    p.len(),
                    &Device::Cpu,
                )?;
                x.index_select(&idx, 0)?
            }
        };
        let x = rms_norm(&x, &self.final_norm, c.rms_norm_eps)?;
        softcap(&linear(&x, &self.lm_head, None)?, c.final_logit_softcapping)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: &Layer,
        h: &Tensor,
        pos: usize,
        cache: &mut KvCache,
        l: usize,
        (cos, sin, rot): (&Tensor, &Tensor, usize),
        window: Option<usize>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (n, hd, heads, kvh) = (h.dim(0)?, c.head_dim, c.num_heads, c.num_kv_heads);
        let split = |t: Tensor, nh: usize| -> Result<Tensor> {
            Ok(t.reshape((n, nh, hd))?.transpose(0, 1)?.contiguous()?)
        };
        let mut q = split(linear(h, &layer.q, layer.q_bias.as_ref())?, heads)?;
        let mut k = split(linear(h, &layer.k, layer.k_bias.as_ref())?, kvh)?;
        let v = split(linear(h, &layer.v, layer.v_bias.as_ref())?, kvh)?;
        if let Some(w) = &layer.q_norm {
            q = rms_norm(&q, w, c.rms_norm_eps)?;
        }
        if let Some(w) = &layer.k_norm {
            k = rms_norm(&k, w, c.rms_norm_eps)?;
        }
        let q = rope::apply(&q, cos, sin, rot, self.arch.rope)?;
        let k = rope::apply(&k, cos, sin, rot, self.arch.rope)?.contiguous()?;
        cache.k[l].slice_set(&k, 1, pos)?;
        cache.v[l].slice_set(&v, 1, pos)?;
        let total = pos + n;
        let kk = cache.k[l].narrow(1, 0, total)?;
        let vv = cache.v[l].narrow(1, 0, total)?;
        let group = heads / kvh;
        let scale = c.query_pre_attn_scalar.unwrap_or(hd as f64).powf(-0.5);
        let qg = q.reshape((kvh, group * n, hd))?;
        let scores = (qg.matmul(&kk.t()?)? * scale)?.reshape((heads, n, total))?;
        let scores = softcap(&scores, c.attn_logit_softcapping)?;
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| {
                let qi = pos + i;
                (0..total).map(move |j| {
                    let visible = j <= qi && window.is_none_or(|w| qi - j < w);
                    if visible { 0.0 } else { f32::NEG_INFINITY }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (1, n, total), &Device::Cpu)?;
        let probs = softmax_last(&scores.broadcast_add(&mask)?)?;
        let out = probs
            .reshape((kvh, group * n, total))?
            .matmul(&vv.contiguous()?)?;
        // The heads' outputs `[n, heads * head_dim]`; the caller applies `o`.
        Ok(out
            .reshape((heads, n, hd))?
            .transpose(0, 1)?
            .reshape((n, heads * hd))?)
    }
}

/// Log-softmax of a `[n, vocab]` logits tensor, in f64 on the CPU, one row per position.
pub fn log_softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f64>>> {
    let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + r.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            r.iter().map(|&v| v as f64 - lse).collect()
        })
        .collect())
}
