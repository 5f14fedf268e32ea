//! The forward pass. One definition for every family: the architecture table's layer walk
//! (`Arch::layer`) says which tensors exist (biases, QK-norm, sandwich norms) and where each
//! projection's rows are stored (a fused tensor is loaded once and sliced by rows); the table
//! says which conventions apply (norm `w` or `1 + w`, RoPE layout and bases, activation,
//! embedding scale, soft-caps).

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor};
use tlite_model::arch::{Activation, Arch, NormStyle};
use tlite_model::config::ModelConfig;
use tlite_model::layer::{ExpectedTensor, Proj};

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
    /// Sandwich norms: the attention output's, before the residual add.
    attn_out_norm: Option<Tensor>,
    mlp_in_norm: Tensor,
    mlp_out_norm: Option<Tensor>,
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

/// Reads a source's tensors in the shapes the architecture gives them, each stored tensor once
/// (the projections of a fused tensor are row slices of it).
struct Loader<'a, 'b> {
    src: &'a WeightSource<'b>,
    shapes: HashMap<String, Vec<usize>>,
    norm: NormStyle,
    loaded: HashMap<String, Tensor>,
}

impl Loader<'_, '_> {
    fn tensor(&mut self, name: &str) -> Result<Tensor> {
        if let Some(t) = self.loaded.get(name) {
            return Ok(t.clone());
        }
        let shape = self.shapes.get(name).ok_or_else(|| {
            RefError::Unsupported(format!("tensor `{name}` is not in the architecture table"))
        })?;
        let t = Tensor::from_vec(self.src.tensor_f32(name)?, shape.as_slice(), &Device::Cpu)?;
        self.loaded.insert(name.to_owned(), t.clone());
        Ok(t)
    }

    fn rows(&mut self, name: &str, rows: &std::ops::Range<usize>) -> Result<Tensor> {
        Ok(self.tensor(name)?.narrow(0, rows.start, rows.len())?)
    }

    /// A projection's weight and bias.
    fn proj(&mut self, p: &Proj) -> Result<(Tensor, Option<Tensor>)> {
        let w = self.rows(&p.tensor, &p.rows)?;
        let b = match &p.bias {
            Some((name, rows)) => Some(self.rows(name, rows)?),
            None => None,
        };
        Ok((w, b))
    }

    /// An RMSNorm weight as the forward pass multiplies by it (`1 + w` applied).
    fn norm(&mut self, name: &str) -> Result<Tensor> {
        let w = self.tensor(name)?;
        Ok(match self.norm {
            NormStyle::Weight => w,
            NormStyle::OnePlusWeight => (w + 1.0)?,
        })
    }

    fn opt_norm(&mut self, name: Option<&String>) -> Result<Option<Tensor>> {
        name.map(|n| self.norm(n)).transpose()
    }
}

impl ReferenceModel {
    /// Loads every weight as f32 (dequantizing M0E4 tensors) and checks shapes.
    pub fn load(src: &WeightSource) -> Result<Self> {
        let config = src.config().clone();
        let arch = config.arch();
        let mut ld = Loader {
            src,
            shapes: arch
                .expected_tensors(&config)
                .into_iter()
                .map(|ExpectedTensor { name, shape, .. }| (name, shape))
                .collect(),
            norm: arch.norm,
            loaded: HashMap::new(),
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for lay in arch.layers(&config) {
            let (q, q_bias) = ld.proj(&lay.q)?;
            let (k, k_bias) = ld.proj(&lay.k)?;
            let (v, v_bias) = ld.proj(&lay.v)?;
            layers.push(Layer {
                input_norm: ld.norm(&lay.input_norm)?,
                q,
                k,
                v,
                q_bias,
                k_bias,
                v_bias,
                q_norm: ld.opt_norm(lay.q_norm.as_ref())?,
                k_norm: ld.opt_norm(lay.k_norm.as_ref())?,
                o: ld.proj(&lay.o)?.0,
                attn_out_norm: ld.opt_norm(lay.attn_out_norm.as_ref())?,
                mlp_in_norm: ld.norm(&lay.mlp_in_norm)?,
                mlp_out_norm: ld.opt_norm(lay.mlp_out_norm.as_ref())?,
                gate: ld.proj(&lay.gate)?.0,
                up: ld.proj(&lay.up)?.0,
                down: ld.proj(&lay.down)?.0,
            });
        }
        let m = arch.model_spec(&config);
        Ok(ReferenceModel {
            embed: ld.tensor(&m.embed)?,
            lm_head: ld.tensor(&m.lm_head)?,
            final_norm: ld.norm(&m.final_norm)?,
            config,
            arch,
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
            let mut attn = linear(&heads_out, &layer.o, None)?;
            if let Some(w) = &layer.attn_out_norm {
                attn = rms_norm(&attn, w, c.rms_norm_eps)?;
            }
            x = (x + attn)?;
            let h = rms_norm(&x, &layer.mlp_in_norm, c.rms_norm_eps)?;
            tap(LinearInput::MlpIn(l), &h)?;
            let g = linear(&h, &layer.gate, None)?;
            let g = match self.arch.activation {
                Activation::Silu => g.silu()?,
                Activation::GeluTanh => g.gelu()?,
            };
            let act = (g * linear(&h, &layer.up, None)?)?;
            tap(LinearInput::MlpDown(l), &act)?;
            let mut m = linear(&act, &layer.down, None)?;
            if let Some(w) = &layer.mlp_out_norm {
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
    Ok(rows.iter().map(|r| log_softmax(r)).collect())
}

/// Log-softmax of one row of logits, in f64.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    row.iter().map(|&v| v as f64 - lse).collect()
}
