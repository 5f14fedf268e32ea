//! Where the reference reads its weights: an unquantized checkpoint, a deployable model, or a
//! checkpoint fake-quantized on load with any 4-bit scheme the quantizer knows.

use std::collections::HashMap;

use half::f16;
use tlite_converter::checkpoint::Checkpoint;
use tlite_model::arch::Role;
use tlite_model::config::ModelConfig;
use tlite_model::deploy::DeployedModel;
use tlite_quantizer::{Scheme, SchemeKind, fake_quantize};

/// A model's weights as f32, by HF tensor name.
pub enum WeightSource<'a> {
    /// The unquantized baseline.
    Checkpoint(&'a Checkpoint),
    /// A deployable M0E4 model, dequantized with the quantizer's decoder.
    Deployed(&'a DeployedModel),
    /// A checkpoint whose quantizable tensors are quantized and dequantized on load
    /// ("fake quantization"), so that any scheme can be measured without a storage layout.
    ///
    /// Quantizable means the roles the converter quantizes by default
    /// ([`Role::quantizable`]: the embedding, every linear weight and an untied LM head),
    /// taken from `arch.expected_tensors`; norms and biases pass through in f32. Groups run
    /// along the input dimension (the last axis), `group` weights each. For
    /// [`SchemeKind::M0E4`] the result is bit-identical to dequantizing the deployable model
    /// the converter writes with the same group and method (checked in the quantizer's and
    /// this crate's tests).
    ///
    /// `importance` maps a tensor name to one weight per input column (mean x² of that
    /// column's input over a calibration text, see [`super::Calibration`]); tensors missing
    /// from the map are quantized unweighted.
    ///
    /// `f16_embeddings` keeps the embedding and an untied LM head out of quantization, rounded
    /// to f16 instead (what the converter stores for `--keep 'embed_tokens|lm_head=f16'`;
    /// llama.cpp similarly keeps its output matrix at 6 bits or more).
    FakeQuant {
        source: &'a Checkpoint,
        scheme: SchemeKind,
        group: usize,
        importance: Option<&'a HashMap<String, Vec<f32>>>,
        f16_embeddings: bool,
    },
    /// A checkpoint's configuration with every tensor produced by `tensor` (by HF name), e.g.
    /// GPTQ-quantized where the caller has calibration data and [`Self::FakeQuant`] elsewhere
    /// (`crate::sweep`). `label` describes it in headers.
    Computed {
        source: &'a Checkpoint,
        tensor: &'a (dyn Fn(&str) -> tlite_converter::Result<Vec<f32>> + Sync),
        label: String,
    },
}

impl WeightSource<'_> {
    pub fn config(&self) -> &ModelConfig {
        match self {
            WeightSource::Checkpoint(c)
            | WeightSource::FakeQuant { source: c, .. }
            | WeightSource::Computed { source: c, .. } => &c.config,
            WeightSource::Deployed(d) => &d.manifest.config,
        }
    }

    pub fn tensor_f32(&self, name: &str) -> tlite_converter::Result<Vec<f32>> {
        match self {
            WeightSource::Checkpoint(c) => c.tensor_f32(name),
            WeightSource::Deployed(d) => Ok(d.tensor_f32(name)?),
            WeightSource::Computed { tensor, .. } => tensor(name),
            WeightSource::FakeQuant {
                source,
                scheme,
                group,
                importance,
                f16_embeddings,
            } => {
                let data = source.tensor_f32(name)?;
                let expected = source.arch().expected_tensors(&source.config);
                let Some(t) = expected
                    .iter()
                    .find(|t| t.name == name && t.role.quantizable() && t.shape.len() == 2)
                else {
                    return Ok(data);
                };
                if *f16_embeddings && matches!(t.role, Role::Embedding | Role::LmHead) {
                    return Ok(data.iter().map(|&v| f16::from_f32(v).to_f32()).collect());
                }
                let imp = importance.and_then(|m| m.get(name)).map(Vec::as_slice);
                Ok(fake_quantize(
                    scheme, &data, t.shape[0], t.shape[1], *group, imp,
                )?)
            }
        }
    }

    /// A short description for headers.
    pub fn describe(&self) -> String {
        match self {
            WeightSource::Checkpoint(c) => format!("checkpoint {}", c.dir.display()),
            WeightSource::Computed { source, label, .. } => {
                format!("{label} {}", source.dir.display())
            }
            WeightSource::Deployed(d) => format!(
                "M0E4 g={} {} {}",
                d.manifest.quantization.group_size,
                d.manifest.quantization.method,
                d.dir.display()
            ),
            WeightSource::FakeQuant {
                source,
                scheme,
                group,
                importance,
                f16_embeddings,
            } => format!(
                "fake-quantized {} g={group}{}{} {}",
                scheme.name(),
                if importance.is_some() {
                    " importance-weighted"
                } else {
                    ""
                },
                if *f16_embeddings {
                    " (embeddings f16)"
                } else {
                    ""
                },
                source.dir.display()
            ),
        }
    }
}
