//! Calibration statistics for importance-weighted quantization: for every linear weight, the
//! mean x² of its input per input channel over a calibration text. A weight column whose input
//! is large matters more; weighting each element's squared error by its column's mean x² makes
//! the group fit minimize (a diagonal approximation of) the error of the layer's output.

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
}

impl Calibration {
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
        let mut stats = Calibration::new();
        for (i, w) in ws.iter().enumerate() {
            let mut cache = model.new_cache(w.len())?;
            model.forward_collect(w, 0, &mut cache, Logits::Last, &mut stats)?;
            progress(i + 1, ws.len());
        }
        Ok(stats)
    }

    /// Adds the rows of `x` (`[n, channels]`) at `site`.
    pub fn observe(&mut self, site: LinearInput, x: &Tensor) -> Result<()> {
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
        let arch = config.arch();
        let mut out = HashMap::new();
        let mut put = |names: Vec<String>, site: LinearInput| {
            if let Some(v) = self.mean_sq(site) {
                for name in names {
                    out.insert(name, v.clone());
                }
            }
        };
        for lay in arch.layers(config) {
            let l = lay.index;
            // A fused tensor is named once per projection it holds: the same entry.
            let w =
                |ps: &[&tlite_model::layer::Proj]| ps.iter().map(|p| p.tensor.clone()).collect();
            put(w(&[&lay.q, &lay.k, &lay.v]), LinearInput::Qkv(l));
            put(w(&[&lay.o]), LinearInput::AttnOut(l));
            put(w(&[&lay.gate, &lay.up]), LinearInput::MlpIn(l));
            put(w(&[&lay.down]), LinearInput::MlpDown(l));
        }
        let head = arch.model_spec(config).lm_head;
        put(vec![head], LinearInput::LmHead);
        out
    }
}
