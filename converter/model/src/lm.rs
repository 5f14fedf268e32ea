//! The one interface of a model that turns tokens into logits, implemented by the GPU runtime
//! (`tlite_runtime_gpu::GpuLm`) and by the CPU reference (`tlite_eval::reference::ReferenceLm`).
//! Generation (`tlite_text`) and parity (`tlite_eval::parity`) are written once against it, and
//! each model's errors keep their own type.
//!
//! The position is part of every step (`past`), as the KV cache is allocated once: stepping
//! again from an earlier position overwrites the cache from there (a rewind); nothing needs
//! resetting between runs.

/// A model with a KV cache of [`Self::max_seq`] positions.
pub trait LanguageModel {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Entries of one row of logits.
    fn vocab(&self) -> usize;

    /// Width of the residual stream (one row of [`Self::step_with_hidden`]'s hidden states).
    fn hidden(&self) -> usize;

    /// Positions the KV cache holds: `past + tokens` of a step is at most this.
    fn max_seq(&self) -> usize;

    /// Most tokens one step takes.
    fn max_batch(&self) -> usize;

    /// Runs `tokens` at positions `past..`, writing their K/V into the cache, and returns the
    /// logits (`[rows.len(), vocab]`, row-major) of the step-relative positions `rows` (none:
    /// nothing is returned).
    fn step(&mut self, tokens: &[u32], past: usize, rows: &[u32]) -> Result<Vec<f32>, Self::Error>;

    /// As [`Self::step`], also returning the residual stream after every layer
    /// (`layers × tokens × hidden`, row-major): a debugging aid for per-layer parity.
    fn step_with_hidden(
        &mut self,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
    ) -> Result<(Vec<f32>, Vec<f32>), Self::Error>;

    /// Work items of the last step (the GPU's compute dispatches); 0 where not counted.
    fn last_dispatches(&self) -> usize {
        0
    }

    /// Greedy decoding without reading logits back: step `j` runs token `t_j` at position
    /// `past + j` (`t_0 = first`) and yields `t_{j+1}`, the argmax of its logits (the lowest id
    /// on ties), passed to `on_token` in order, until `max_tokens` tokens or `on_token`
    /// returns `false`. The same tokens as stepping and taking the argmax of [`Self::step`]'s
    /// logits; returns the number of tokens yielded. `None`: the model has no faster way than
    /// stepping (the default), and the caller steps.
    fn decode_greedy(
        &mut self,
        first: u32,
        past: usize,
        max_tokens: usize,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Option<Result<usize, Self::Error>> {
        let _ = (first, past, max_tokens, on_token);
        None
    }
}

impl<M: LanguageModel + ?Sized> LanguageModel for &mut M {
    type Error = M::Error;

    fn vocab(&self) -> usize {
        (**self).vocab()
    }

    fn hidden(&self) -> usize {
        (**self).hidden()
    }

    fn max_seq(&self) -> usize {
        (**self).max_seq()
    }

    fn max_batch(&self) -> usize {
        (**self).max_batch()
    }

    fn step(&mut self, tokens: &[u32], past: usize, rows: &[u32]) -> Result<Vec<f32>, Self::Error> {
        (**self).step(tokens, past, rows)
    }

    fn step_with_hidden(
        &mut self,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
    ) -> Result<(Vec<f32>, Vec<f32>), Self::Error> {
        (**self).step_with_hidden(tokens, past, rows)
    }

    fn last_dispatches(&self) -> usize {
        (**self).last_dispatches()
    }

    fn decode_greedy(
        &mut self,
        first: u32,
        past: usize,
        max_tokens: usize,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Option<Result<usize, Self::Error>> {
        (**self).decode_greedy(first, past, max_tokens, on_token)
    }
}

/// Which logits a [`prefill`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefillRows {
    /// Every position's (`[tokens.len(), vocab]`).
    All,
    /// The last position's only; earlier steps read nothing back.
    Last,
}

/// Runs `tokens` from position 0 in steps of at most [`LanguageModel::max_batch`] tokens;
/// returns the logits `rows` asks for and the number of steps.
pub fn prefill<M: LanguageModel + ?Sized>(
    model: &mut M,
    tokens: &[u32],
    rows: PrefillRows,
) -> Result<(Vec<f32>, usize), M::Error> {
    let batch = model.max_batch().max(1);
    let steps = tokens.len().div_ceil(batch);
    let mut logits = Vec::new();
    for (ci, chunk) in tokens.chunks(batch).enumerate() {
        let want: Vec<u32> = match rows {
            PrefillRows::All => (0..chunk.len() as u32).collect(),
            PrefillRows::Last if ci + 1 == steps => vec![chunk.len() as u32 - 1],
            PrefillRows::Last => Vec::new(),
        };
        let out = model.step(chunk, ci * batch, &want)?;
        match rows {
            PrefillRows::All => logits.extend(out),
            PrefillRows::Last => logits = out,
        }
    }
    Ok((logits, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits that record what was asked: row r of a step at `past` is `[past + r, n]`.
    struct Echo {
        steps: Vec<(usize, usize, Vec<u32>)>,
    }

    impl LanguageModel for Echo {
        type Error = std::io::Error;
        fn vocab(&self) -> usize {
            2
        }
        fn hidden(&self) -> usize {
            1
        }
        fn max_seq(&self) -> usize {
            100
        }
        fn max_batch(&self) -> usize {
            4
        }
        fn step(&mut self, t: &[u32], past: usize, rows: &[u32]) -> std::io::Result<Vec<f32>> {
            self.steps.push((past, t.len(), rows.to_vec()));
            Ok(rows
                .iter()
                .flat_map(|&r| [(past + r as usize) as f32, t.len() as f32])
                .collect())
        }
        fn step_with_hidden(
            &mut self,
            t: &[u32],
            past: usize,
            rows: &[u32],
        ) -> std::io::Result<(Vec<f32>, Vec<f32>)> {
            Ok((self.step(t, past, rows)?, Vec::new()))
        }
    }

    #[test]
    fn prefill_steps_in_batches() {
        let mut m = Echo { steps: Vec::new() };
        let (l, n) = prefill(&mut m, &[1; 10], PrefillRows::Last).unwrap();
        assert_eq!((l, n), (vec![9.0, 2.0], 3));
        assert_eq!(
            m.steps,
            [(0, 4, vec![]), (4, 4, vec![]), (8, 2, vec![1])],
            "only the last step reads back"
        );
        let mut m = Echo { steps: Vec::new() };
        let (l, n) = prefill(&mut &mut m, &[1; 5], PrefillRows::All).unwrap();
        assert_eq!(n, 2);
        let positions: Vec<f32> = l.chunks(2).map(|r| r[0]).collect();
        assert_eq!(positions, [0.0, 1.0, 2.0, 3.0, 4.0]);
    }
}
