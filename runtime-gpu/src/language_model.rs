//! A loaded model with the device it runs on, as a [`LanguageModel`]: what generation
//! (`tlite-text`) and parity (`tlite-eval`) drive, with [`GpuError`] as the error.

use tlite_model::LanguageModel;

use crate::{Gpu, GpuError, GpuModel};

/// [`GpuModel`] bound to its [`Gpu`].
pub struct GpuLm<'g> {
    pub gpu: &'g Gpu,
    pub model: GpuModel,
}

impl<'g> GpuLm<'g> {
    pub fn new(gpu: &'g Gpu, model: GpuModel) -> Self {
        GpuLm { gpu, model }
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
}
