//! Where the reference reads its weights: an unquantized checkpoint or a deployable model.

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::config::ModelConfig;
use tlite_converter::deploy::DeployedModel;

/// A model's weights as f32, by HF tensor name.
pub enum WeightSource<'a> {
    /// The unquantized baseline.
    Checkpoint(&'a Checkpoint),
    /// A deployable M0E4 model, dequantized with the quantizer's decoder.
    Deployed(&'a DeployedModel),
}

impl WeightSource<'_> {
    pub fn config(&self) -> &ModelConfig {
        match self {
            WeightSource::Checkpoint(c) => &c.config,
            WeightSource::Deployed(d) => &d.manifest.config,
        }
    }

    pub fn tensor_f32(&self, name: &str) -> tlite_converter::Result<Vec<f32>> {
        match self {
            WeightSource::Checkpoint(c) => c.tensor_f32(name),
            WeightSource::Deployed(d) => d.tensor_f32(name),
        }
    }

    /// A short description for headers.
    pub fn describe(&self) -> String {
        match self {
            WeightSource::Checkpoint(c) => format!("checkpoint {}", c.dir.display()),
            WeightSource::Deployed(d) => format!(
                "M0E4 g={} {} {}",
                d.manifest.quantization.group_size,
                d.manifest.quantization.method,
                d.dir.display()
            ),
        }
    }
}
