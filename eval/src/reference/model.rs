//! The forward pass. One definition for every family: the architecture table's layer walk
//! (`Arch::layer`) says which tensors exist (biases, QK-norm, sandwich norms) and where each
//! projection's rows are stored (a fused tensor is loaded once and sliced by rows); the table
//! says which conventions apply (norm `w` or `1 + w`, RoPE layout and bases, activation,
//! embedding scale, soft-caps).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use tlite_model::arch::{Activation, Arch, NormStyle};
use tlite_model::config::ModelConfig;
use tlite_model::layer::{ExpectedTensor, Proj};

use super::cache::KvCache;
use super::calibration::{Calibration, LinearInput};
use super::source::WeightSource;
use super::{RefError, Result, fused, rope};

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

/// Queries per block of attention (see `ReferenceModel::attention`).
const ATTN_BLOCK: usize = 64;

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

use super::fused::rms_norm;

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
        let global = rope::tables(c.rope_theta, rot, pos, n, factor);
        let local = c
            .rope_local_theta
            .map(|t| rope::tables(t, rot, pos, n, 1.0));
        for (l, layer) in self.layers.iter().enumerate() {
            let sliding = c.sliding_layers[l];
            let tables = if sliding {
                local.as_ref().unwrap_or(&global)
            } else {
                &global
            };
            let window = if sliding { c.sliding_window } else { None };
            let h = rms_norm(&x, &layer.input_norm, c.rms_norm_eps)?;
            tap(LinearInput::Qkv(l), &h)?;
            let heads_out = self.attention(layer, &h, pos, cache, l, tables, window)?;
            tap(LinearInput::AttnOut(l), &heads_out)?;
            let mut attn = linear(&heads_out, &layer.o, None)?;
            if let Some(w) = &layer.attn_out_norm {
                attn = rms_norm(&attn, w, c.rms_norm_eps)?;
            }
            x = fused::add(&x, &attn)?;
            let h = rms_norm(&x, &layer.mlp_in_norm, c.rms_norm_eps)?;
            tap(LinearInput::MlpIn(l), &h)?;
            let g = linear(&h, &layer.gate, None)?;
            let up = linear(&h, &layer.up, None)?;
            let act = match self.arch.activation {
                Activation::Silu => fused::silu_mul(&g, &up)?,
                Activation::GeluTanh => (g.gelu()? * up)?,
            };
            tap(LinearInput::MlpDown(l), &act)?;
            let mut m = linear(&act, &layer.down, None)?;
            if let Some(w) = &layer.mlp_out_norm {
                m = rms_norm(&m, w, c.rms_norm_eps)?;
            }
            x = fused::add(&x, &m)?;
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

    /// Causal self-attention of `h` (`[n, hidden]`) at positions `pos..`: Q·Kᵀ and P·V as
    /// matrix products over the cache's prefix, the scaled, capped and masked softmax fused
    /// ([`fused::CausalSoftmax`]), RoPE applied in place while splitting into heads.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: &Layer,
        h: &Tensor,
        pos: usize,
        cache: &mut KvCache,
        l: usize,
        tables: &rope::Tables,
        window: Option<usize>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (n, hd, heads, kvh) = (h.dim(0)?, c.head_dim, c.num_heads, c.num_kv_heads);
        // Split into heads, QK-norm where the family has it, then RoPE.
        let heads_of = |w: &Tensor, b: Option<&Tensor>, norm: Option<&Tensor>, nh: usize| {
            let mut t = fused::split_heads(&linear(h, w, b)?, nh, hd)?;
            if let Some(w) = norm {
                let normed = rms_norm(&fused::heads_tensor(t, nh, hd)?, w, c.rms_norm_eps)?;
                t = normed.flatten_all()?.to_vec1::<f32>()?;
            }
            rope::apply(&mut t, hd, tables, self.arch.rope);
            fused::heads_tensor(t, nh, hd)
        };
        let q = heads_of(
            &layer.q,
            layer.q_bias.as_ref(),
            layer.q_norm.as_ref(),
            heads,
        )?;
        let k = heads_of(&layer.k, layer.k_bias.as_ref(), layer.k_norm.as_ref(), kvh)?;
        let v = fused::heads_tensor(
            fused::split_heads(&linear(h, &layer.v, layer.v_bias.as_ref())?, kvh, hd)?,
            kvh,
            hd,
        )?;
        cache.k[l].slice_set(&k, 1, pos)?;
        cache.v[l].slice_set(&v, 1, pos)?;
        // Queries in blocks, each against the keys up to its last query: the products skip
        // most of what the causal mask would zero.
        let group = heads / kvh;
        let mut outs = Vec::with_capacity(n.div_ceil(ATTN_BLOCK));
        for s in (0..n).step_by(ATTN_BLOCK) {
            let nb = ATTN_BLOCK.min(n - s);
            let keys = pos + s + nb;
            let qb = q
                .narrow(1, s, nb)?
                .contiguous()?
                .reshape((kvh, group * nb, hd))?;
            let probs = fused::CausalSoftmax {
                n: nb,
                pos: pos + s,
                scale: c.query_pre_attn_scalar.unwrap_or(hd as f64).powf(-0.5),
                softcap: c.attn_logit_softcapping,
                window,
            }
            .apply(&qb.matmul(&cache.k[l].narrow(1, 0, keys)?.t()?)?)?;
            let out = probs.matmul(&cache.v[l].narrow(1, 0, keys)?)?;
            outs.push(out.reshape((heads, nb, hd))?);
        }
        let out = Tensor::cat(&outs, 1)?;
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
    Ok(rows.par_iter().map(|r| log_softmax(r)).collect())
}

/// The negative log-likelihood of `targets[i]` under row `i` of a `[n, vocab]` logits
/// tensor: `-log_softmax(row)[target]`, the same f64 value [`log_softmax`] gives, without
/// keeping the rows.
pub fn nll_rows(logits: &Tensor, targets: &[u32]) -> Result<Vec<f64>> {
    let logits = logits.to_dtype(DType::F32)?;
    let vocab = logits.dim(1)?;
    if logits.dim(0)? != targets.len() {
        return Err(RefError::Unsupported(format!(
            "{} targets for {} rows of logits",
            targets.len(),
            logits.dim(0)?
        )));
    }
    if let Some(&id) = targets.iter().find(|&&t| t as usize >= vocab) {
        return Err(RefError::TokenOutOfRange { id, vocab });
    }
    super::fused::with_f32(&logits, |flat| {
        flat.par_chunks_exact(vocab)
            .zip(targets)
            .map(|(row, &t)| -(row[t as usize] as f64 - log_sum_exp(row)))
            .collect()
    })
}

/// `log Σ exp(row)` in f64, shifted by the row's maximum.
fn log_sum_exp(row: &[f32]) -> f64 {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
}

/// Log-softmax of one row of logits, in f64.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let lse = log_sum_exp(row);
    row.iter().map(|&v| v as f64 - lse).collect()
}
