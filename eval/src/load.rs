//! Opening any model the CLI is given: a deployable M0E4 folder, an HF folder or a repo id;
//! and tokenizing a corpus with the model's own tokenizer.

use std::path::{Path, PathBuf};

use tlite_converter::ConvertError;
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::DeployedModel;

use crate::reference::{RefError, ReferenceModel, Result, WeightSource};

/// An opened model: where its weights came from, and its tokenizer file.
pub enum Opened {
    Checkpoint(Checkpoint),
    Deployed(DeployedModel),
}

impl Opened {
    pub fn open(path: &str) -> Result<Self> {
        let p = Path::new(path);
        Ok(if DeployedModel::is_deployable(p) {
            Opened::Deployed(DeployedModel::open(p)?)
        } else {
            Opened::Checkpoint(Checkpoint::open(path)?)
        })
    }

    pub fn source(&self) -> WeightSource<'_> {
        match self {
            Opened::Checkpoint(c) => WeightSource::Checkpoint(c),
            Opened::Deployed(d) => WeightSource::Deployed(d),
        }
    }

    pub fn tokenizer_path(&self) -> Option<PathBuf> {
        match self {
            Opened::Checkpoint(c) => c.tokenizer.clone(),
            Opened::Deployed(d) => d.tokenizer_path(),
        }
    }

    pub fn load_reference(&self) -> Result<ReferenceModel> {
        ReferenceModel::load(&self.source())
    }

    /// Tokenizes the first `max_chars` characters of the text file `data` (whole file if `None`),
    /// without special tokens.
    pub fn tokenize_file(&self, data: &Path, max_chars: Option<usize>) -> Result<Vec<u32>> {
        let tok_path = self
            .tokenizer_path()
            .ok_or_else(|| RefError::Unsupported("the model has no tokenizer.json".into()))?;
        let tok =
            tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| ConvertError::Tokenizer {
                path: tok_path.clone(),
                reason: e.to_string(),
            })?;
        let text = std::fs::read_to_string(data).map_err(tlite_converter::io_err(data))?;
        let text = match max_chars {
            Some(n) if n < text.len() => {
                let mut end = n;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                &text[..end]
            }
            _ => &text[..],
        };
        let enc = tok
            .encode(text, false)
            .map_err(|e| ConvertError::Tokenizer {
                path: tok_path,
                reason: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }
}
