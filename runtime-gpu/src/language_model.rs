//! A loaded model with the device it runs on, as a [`LanguageModel`]: what generation
//! (`tlite-text`) and parity (`tlite-eval`) drive, with [`GpuError`] as the error.

use tlite_model::LanguageModel;

use crate::{Gpu, GpuError, GpuModel};

/// [`GpuModel`] bound to its [`Gpu`].
pub struct GpuLm<'g> {
    pub gpu: &'g Gpu,
    pub model: GpuModel,
    /// Greedy decoding on the GPU ([`GpuModel::decode_greedy`]) with this many steps in flight;
    /// `None`: greedy decoding steps and reads every token's logits back.
    pub decode_lead: Option<usize>,
}

impl<'g> GpuLm<'g> {
    /// Steps in flight of greedy decoding by default: enough to hide the host's round trip.
    pub const DEFAULT_LEAD: usize = 4;

    pub fn new(gpu: &'g Gpu, model: GpuModel) -> Self {
        GpuLm {
            gpu,
            model,
            decode_lead: Some(Self::DEFAULT_LEAD),
        }
    }

    /// Runs two decode steps from token 0 at position 0 and discards them, as llama.cpp's
    /// warm-up does, again until `at_least` has passed: the first passes over freshly allocated
    /// weights run at a fraction of the memory bandwidth, and a GPU idle during the load runs
    /// its first ~0.1 s of work at low clocks (docs/PERF.md), which the first prompt and the
    /// first generated tokens would otherwise pay. The cache rows it writes are the prompt's,
    /// which overwrites them before anything reads them. Returns the rounds run.
    pub fn warm_up(&mut self, at_least: std::time::Duration) -> Result<usize, GpuError> {
        let steps = self.model.opts.max_seq.min(2);
        crate::lab::repeat_at_least(at_least, || {
            self.decode_steps(&[0; 2][..steps], 0).map(|_| ())
        })
    }

    /// `tokens.len()` decode steps from position `past` (the cache's first `past` rows already
    /// written), their results discarded: with `decode_lead`, greedy decoding on the GPU from
    /// `tokens[0]` (the model picks the rest); without, the given tokens one step at a time,
    /// each reading its logits back. Returns the steps that ran.
    pub fn decode_steps(&mut self, tokens: &[u32], past: usize) -> Result<usize, GpuError> {
        let Some(&first) = tokens.first() else {
            return Ok(0);
        };
        match self.decode_lead {
            Some(lead) => {
                let n = tokens.len();
                let run =
                    (self.model).decode_greedy(self.gpu, first, past, n, lead, &mut |_| true)?;
                Ok(run.steps)
            }
            None => {
                for (i, &tok) in tokens.iter().enumerate() {
                    self.model.step(self.gpu, &[tok], past + i, &[0])?;
                }
                Ok(tokens.len())
            }
        }
    }
}

impl LanguageModel for GpuLm<'_> {
    type Error = GpuError;

    fn vocab(&self) -> usize {
        self.model.vocab
    }

    fn hidden(&self) -> usize {
        self.model.hidden
    }

    fn max_seq(&self) -> usize {
        self.model.opts.max_seq
    }

    fn max_batch(&self) -> usize {
        self.model.opts.max_batch
    }

    fn step(&mut self, tokens: &[u32], past: usize, rows: &[u32]) -> Result<Vec<f32>, GpuError> {
        self.model.step(self.gpu, tokens, past, rows)
    }

    fn step_with_hidden(
        &mut self,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
    ) -> Result<(Vec<f32>, Vec<f32>), GpuError> {
        self.model.step_with_hidden(self.gpu, tokens, past, rows)
    }

    fn last_dispatches(&self) -> usize {
        self.model.last_step.dispatches
    }

    fn decode_greedy(
        &mut self,
        first: u32,
        past: usize,
        max_tokens: usize,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Option<Result<usize, GpuError>> {
        let lead = self.decode_lead?;
        let run = (self.model).decode_greedy(self.gpu, first, past, max_tokens, lead, on_token);
        Some(run.map(|r| r.tokens))
    }
}
