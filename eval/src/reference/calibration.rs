//! Calibration statistics for importance-weighted quantization: for every linear weight, the
//! mean x² of its input per input channel over a calibration text. A weight column whose input
//! is large matters more; weighting each element's squared error by its column's mean x² makes
//! the group fit minimize (a diagonal approximation of) the error of the layer's output.
//!
//! Optionally ([`Calibration::collect_gram`]) the Gram matrix `H = XᵀX` of every input site is
//! accumulated too, for GPTQ (`tlite_quantizer::gptq`). `H` is symmetric, so only its lower
//! triangle is kept, packed, in f32 (each window's product is computed in f32 anyway; the sum
//! over a few windows adds a relative rounding of ~1e-7 per window): `2·cols·(cols + 1)` bytes
//! per site. SmolLM2-135M (30 layers, hidden 576, intermediate 1536) needs 30 × (3 × 576·577 +
//! 1536·1537) × 2 B + 576·577 × 2 B = 203 MB; Qwen2.5-1.5B (28 layers, 1536 / 8960) 4.9 GB.
//! All sites are held at once (the pass runs the whole model); [`Calibration::gram`] expands one
//! site to the full f64 matrix GPTQ factors.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use tlite_model::config::ModelConfig;

use super::{Logits, RefError, ReferenceModel, Result};

/// A place in the forward pass whose activations are the input of one or more weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearInput {
    /// The normed residual entering attention of layer `l` (Q, K and V).
    Qkv(usize),
    /// The heads' outputs of layer `l` (the output projection).
    AttnOut(usize),
    /// The normed residual entering the MLP of layer `l` (gate and up).
    MlpIn(usize),
    /// The activated MLP hidden state of layer `l` (down).
    MlpDown(usize),
    /// The final normed hidden state (the LM head, or the tied embedding).
    LmHead,
}

/// Per-channel sums of x² at every [`LinearInput`], filled by
/// [`super::ReferenceModel::forward_collect`].
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// Σ x² per input channel, and the number of rows (token positions) summed.
    sums: HashMap<LinearInput, (Vec<f64>, u64)>,
    /// Σ xᵀx per site: its lower triangle, packed by rows (`(i, j ≤ i)` at `i(i+1)/2 + j`),
    /// when collecting Gram matrices.
    grams: Option<HashMap<LinearInput, Vec<f32>>>,
}

impl Calibration {
    /// A sensible bound for [`Self::collect_gram`]'s Gram matrices: 8 GiB (Qwen2.5-1.5B needs
    /// 4.9 GB; the model itself and the quantized copy come on top).
    pub const DEFAULT_MAX_GRAM_BYTES: u64 = 8 << 30;

    pub fn new() -> Self {
        Self::default()
    }

    /// A calibration pass: `model` runs over the windows of `ctx` tokens that perplexity would
    /// run on ([`crate::ppl::windows`]: `bos`, when given, before the text and at the start of
    /// every window), each from an empty cache, collecting the input of every linear layer at
    /// every position.
    /// `progress(done, total)` is called after each window.
    pub fn collect(
        model: &ReferenceModel,
        tokens: &[u32],
        ctx: usize,
        bos: Option<u32>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        Calibration::new().run(model, tokens, ctx, bos, progress)
    }

    /// As [`Self::collect`], also accumulating the Gram matrix `XᵀX` of every input site (for
    /// GPTQ). Refused before the pass when the matrices would take more than `max_bytes`
    /// (see [`Self::gram_bytes`]; [`Self::DEFAULT_MAX_GRAM_BYTES`] is a sensible bound).
    pub fn collect_gram(
        model: &ReferenceModel,
        tokens: &[u32],
        ctx: usize,
        bos: Option<u32>,
        max_bytes: u64,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let need = Self::gram_bytes(&model.config);
        if need > max_bytes {
            return Err(RefError::Unsupported(format!(
                "the Gram matrices (XᵀX) of {} input sites would take {:.2} GB, more than the \
                 {:.2} GB allowed",
                Self::sites(&model.config).len(),
                need as f64 / 1e9,
                max_bytes as f64 / 1e9
            )));
        }
        let stats = Calibration {
            grams: Some(HashMap::new()),
            ..Default::default()
        };
        stats.run(model, tokens, ctx, bos, progress)
    }

    fn run(
        mut self,
        model: &ReferenceModel,
        tokens: &[u32],
        ctx: usize,
        bos: Option<u32>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let opts = crate::ppl::PplOptions {
            ctx: ctx.max(2),
            bos,
            ..Default::default()
        };
        let ws = crate::ppl::windows(tokens, &opts);
        if ws.is_empty() {
            return Err(RefError::Unsupported(format!(
                "calibration needs at least one window of {ctx} tokens, got {}",
                tokens.len()
            )));
        }
        for (i, w) in ws.iter().enumerate() {
            let mut cache = model.new_cache(w.len())?;
            model.forward_collect(w, 0, &mut cache, Logits::Last, &mut self)?;
            progress(i + 1, ws.len());
        }
        Ok(self)
    }

    /// Bytes the Gram matrices of `config`'s input sites take (f32 lower triangles,
    /// `cols·(cols + 1)/2` values each).
    pub fn gram_bytes(config: &ModelConfig) -> u64 {
        Self::sites(config)
            .values()
            .map(|&cols| 4 * packed_len(cols) as u64)
            .sum()
    }

    /// Every input site with its number of channels (the input columns of its weights).
    fn sites(config: &ModelConfig) -> HashMap<LinearInput, usize> {
        let shapes: HashMap<String, Vec<usize>> = config
            .arch()
            .expected_tensors(config)
            .into_iter()
            .map(|t| (t.name, t.shape))
            .collect();
        Self::tensor_sites(config)
            .into_iter()
            .filter_map(|(name, site)| Some((site, *shapes.get(&name)?.get(1)?)))
            .collect()
    }

    /// Adds the rows of `x` (`[n, channels]`) at `site`.
    pub fn observe(&mut self, site: LinearInput, x: &Tensor) -> Result<()> {
        if let Some(grams) = self.grams.as_mut() {
            let n = x.dim(0)?;
            let c = x.elem_count() / n.max(1);
            let xf = x.to_dtype(DType::F32)?.reshape((n, c))?.contiguous()?;
            // XᵀX of this call (one window), its lower triangle added to the site's
            let g = xf.t()?.matmul(&xf)?.flatten_all()?.to_vec1::<f32>()?;
            let acc = grams
                .entry(site)
                .or_insert_with(|| vec![0.0; packed_len(c)]);
            if acc.len() != packed_len(c) {
                return Err(RefError::Unsupported(format!(
                    "calibration at {site:?}: {c} channels after a different number"
                )));
            }
            for (i, row) in g.chunks_exact(c).enumerate() {
                let start = i * (i + 1) / 2;
                for (a, v) in acc[start..=start + i].iter_mut().zip(row) {
                    *a += v;
                }
            }
        }
        let n = x.dim(0)? as u64;
        let sq = x
            .to_dtype(DType::F32)?
            .sqr()?
            .sum(0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let entry = self
            .sums
            .entry(site)
            .or_insert_with(|| (vec![0.0; sq.len()], 0));
        if entry.0.len() != sq.len() {
            return Err(RefError::Unsupported(format!(
                "calibration at {site:?}: {} channels after {}",
                sq.len(),
                entry.0.len()
            )));
        }
        for (s, v) in entry.0.iter_mut().zip(sq) {
            *s += f64::from(v);
        }
        entry.1 += n;
        Ok(())
    }

    /// Token positions observed (at the LM head; zero before any pass).
    pub fn positions(&self) -> u64 {
        self.sums.get(&LinearInput::LmHead).map_or(0, |e| e.1)
    }

    /// Mean x² per input channel at `site`, if observed.
    pub fn mean_sq(&self, site: LinearInput) -> Option<Vec<f32>> {
        self.sums
            .get(&site)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| s.iter().map(|v| (v / *n as f64) as f32).collect())
    }

    /// The importance of every weight matrix, by HF tensor name: the mean x² of its input
    /// channels. Fused projections share their input's statistics; a tied embedding gets the
    /// LM head's (its columns are the LM head's input channels).
    pub fn importance(&self, config: &ModelConfig) -> HashMap<String, Vec<f32>> {
        let mut cache: HashMap<LinearInput, Option<Vec<f32>>> = HashMap::new();
        Self::tensor_sites(config)
            .into_iter()
            .filter_map(|(name, site)| {
                let v = cache.entry(site).or_insert_with(|| self.mean_sq(site));
                Some((name, v.clone()?))
            })
            .collect()
    }

    /// The input site of every weight matrix, by HF tensor name (fused projections and a tied
    /// embedding as in [`Self::importance`]).
    pub fn tensor_sites(config: &ModelConfig) -> HashMap<String, LinearInput> {
        let arch = config.arch();
        let mut out = HashMap::new();
        for lay in arch.layers(config) {
            let l = lay.index;
            // A fused tensor is named once per projection it holds: the same entry.
            for (ps, site) in [
                (vec![&lay.q, &lay.k, &lay.v], LinearInput::Qkv(l)),
                (vec![&lay.o], LinearInput::AttnOut(l)),
                (vec![&lay.gate, &lay.up], LinearInput::MlpIn(l)),
                (vec![&lay.down], LinearInput::MlpDown(l)),
            ] {
                for p in ps {
                    out.insert(p.tensor.clone(), site);
                }
            }
        }
        out.insert(arch.model_spec(config).lm_head, LinearInput::LmHead);
        out
    }

    /// `H = XᵀX` at `site` (the full symmetric `cols × cols` matrix, row-major, in f64, summed
    /// over every observed position) and `cols`, when Gram matrices were collected and the site
    /// observed. A new matrix per call (`8·cols²` bytes).
    pub fn gram(&self, site: LinearInput) -> Option<(Vec<f64>, usize)> {
        let g = self.grams.as_ref()?.get(&site)?;
        // packed_len(n) = g.len(): n = (√(8·len + 1) − 1) / 2
        let n = ((8 * g.len() + 1).isqrt() - 1) / 2;
        let mut h = vec![0f64; n * n];
        for i in 0..n {
            let row = &g[i * (i + 1) / 2..][..=i];
            for (j, &v) in row.iter().enumerate() {
                h[i * n + j] = f64::from(v);
                h[j * n + i] = f64::from(v);
            }
        }
        Some((h, n))
    }
}

/// Values in the packed lower triangle of an `n × n` matrix.
fn packed_len(n: usize) -> usize {
    n * (n + 1) / 2
}
