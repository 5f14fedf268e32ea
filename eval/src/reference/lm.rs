//! The reference with a KV cache of its own, as a [`LanguageModel`]: what parity and generation
//! drive. Each step is one [`ReferenceModel::forward`] (any number of tokens up to the cache);
//! the logits asked for map to [`Logits`] exactly as callers of `forward` pick them (every
//! position, the last one, or a selection), so the numbers are `forward`'s.

use candle_core::{DType, Tensor};
use tlite_model::LanguageModel;

use super::{KvCache, Logits, RefError, ReferenceModel, Result};

/// A [`ReferenceModel`] and its cache.
pub struct ReferenceLm<'m> {
    pub model: &'m ReferenceModel,
    pub cache: KvCache,
}

impl ReferenceModel {
    /// This model with a cache of `max_seq` positions.
    pub fn session(&self, max_seq: usize) -> Result<ReferenceLm<'_>> {
        Ok(ReferenceLm {
            model: self,
            cache: self.new_cache(max_seq)?,
        })
    }
}

/// The logits a step asks for.
enum Rows {
    None,
    Last,
    All,
    Positions(Vec<usize>),
}

impl Rows {
    /// `rows` of a step of `n` tokens (at least one).
    fn of(rows: &[u32], n: usize) -> Result<Self> {
        if n == 0 {
            return Err(RefError::Unsupported(
                "a step takes at least one token".into(),
            ));
        }
        if let Some(&r) = rows.iter().find(|&&r| r as usize >= n) {
            return Err(RefError::Unsupported(format!(
                "logit row {r} is outside the step's {n} tokens"
            )));
        }
        let rows: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
        Ok(if rows.is_empty() {
            Rows::None
        } else if rows == [n - 1] {
            Rows::Last
        } else if rows.iter().copied().eq(0..n) {
            Rows::All
        } else {
            Rows::Positions(rows)
        })
    }
}

impl ReferenceLm<'_> {
    fn run(
        &mut self,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
        hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<Vec<f32>> {
        let rows = Rows::of(rows, tokens.len())?;
        let logits = match &rows {
            Rows::None | Rows::Last => Logits::Last,
            Rows::All => Logits::All,
            Rows::Positions(p) => Logits::Positions(p),
        };
        let out = self
            .model
            .forward_with_hidden(tokens, past, &mut self.cache, logits, hidden)?;
        match rows {
            Rows::None => Ok(Vec::new()),
            _ => flat(&out),
        }
    }
}

/// A tensor's values in row-major order, as f32.
fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
}

impl LanguageModel for ReferenceLm<'_> {
    type Error = RefError;

    fn vocab(&self) -> usize {
        self.model.config.vocab_size
    }

    fn hidden(&self) -> usize {
        self.model.config.hidden_size
    }

    fn max_seq(&self) -> usize {
        self.cache.max_seq
    }

    /// Any number of tokens that fits the cache.
    fn max_batch(&self) -> usize {
        self.cache.max_seq
    }

    fn step(&mut self, tokens: &[u32], past: usize, rows: &[u32]) -> Result<Vec<f32>> {
        self.run(tokens, past, rows, None)
    }

    fn step_with_hidden(
        &mut self,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut layers = Vec::new();
        let logits = self.run(tokens, past, rows, Some(&mut layers))?;
        let mut hidden = Vec::new();
        for t in &layers {
            hidden.extend(flat(t)?);
        }
        Ok((logits, hidden))
    }
}
