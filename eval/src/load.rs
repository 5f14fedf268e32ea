//! Opening any model the CLI is given: a deployable M0E4 folder, an HF folder or a repo id;
//! and tokenizing a corpus with the model's own tokenizer (loaded once, on first use).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tlite_converter::checkpoint::Checkpoint;
use tlite_model::deploy::DeployedModel;
use tlite_text::TextCodec;

use crate::reference::{RefError, ReferenceModel, Result, WeightSource};

/// Where an opened model's weights are.
pub enum Weights {
    Checkpoint(Checkpoint),
    Deployed(DeployedModel),
}

/// An opened model: its weights, and its tokenizer once something was tokenized.
pub struct Opened {
    pub weights: Weights,
    text: OnceLock<TextCodec>,
}

impl Opened {
    pub fn open(path: &str) -> Result<Self> {
        let p = Path::new(path);
        let weights = if DeployedModel::is_deployable(p) {
            Weights::Deployed(DeployedModel::open(p)?)
        } else {
            Weights::Checkpoint(Checkpoint::open(path)?)
        };
        Ok(Opened {
            weights,
            text: OnceLock::new(),
        })
    }

    pub fn source(&self) -> WeightSource<'_> {
        match &self.weights {
            Weights::Checkpoint(c) => WeightSource::Checkpoint(c),
            Weights::Deployed(d) => WeightSource::Deployed(d),
        }
    }

    pub fn tokenizer_path(&self) -> Option<PathBuf> {
        match &self.weights {
            Weights::Checkpoint(c) => c.tokenizer.clone(),
            Weights::Deployed(d) => d.tokenizer_path(),
        }
    }

    pub fn load_reference(&self) -> Result<ReferenceModel> {
        ReferenceModel::load(&self.source())
    }

    /// The model's tokenizer, read from its file the first time.
    pub fn text(&self) -> Result<&TextCodec> {
        if let Some(t) = self.text.get() {
            return Ok(t);
        }
        let path = self
            .tokenizer_path()
            .ok_or_else(|| RefError::Unsupported("the model has no tokenizer.json".into()))?;
        let codec = TextCodec::from_file(&path)?;
        Ok(self.text.get_or_init(|| codec))
    }

    fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        Ok(self.text()?.encode(text, special)?)
    }

    /// Tokenizes the first `max_chars` characters of the text file `data` (whole file if `None`),
    /// without special tokens.
    pub fn tokenize_file(&self, data: &Path, max_chars: Option<usize>) -> Result<Vec<u32>> {
        let text = std::fs::read_to_string(data).map_err(tlite_model::io_err(data))?;
        let end = match max_chars {
            Some(n) if n < text.len() => floor_boundary(&text, n),
            _ => text.len(),
        };
        self.encode(&text[..end], false)
    }

    /// Tokenizes the last `chars` bytes of the text file `data` (from a character boundary),
    /// without special tokens; also returns the byte offset where that slice starts, so that
    /// callers can check it does not overlap an evaluated head of the file.
    pub fn tokenize_file_tail(&self, data: &Path, chars: usize) -> Result<(Vec<u32>, usize)> {
        let text = std::fs::read_to_string(data).map_err(tlite_model::io_err(data))?;
        let start = floor_boundary(&text, text.len().saturating_sub(chars));
        Ok((self.encode(&text[start..], false)?, start))
    }

    /// The BOS id to put at the start of each perplexity window, the way llama.cpp does: the
    /// config's BOS when the tokenizer adds it to a sequence (Gemma), else `None`.
    pub fn window_bos(&self) -> Result<Option<u32>> {
        let bos = match &self.source().config().bos_token_id {
            Some(b) => *b,
            None => return Ok(None),
        };
        let ids = self.encode("a", true)?;
        Ok((ids.first() == Some(&bos)).then_some(bos))
    }
}

/// The largest character boundary of `text` at or below byte `n`.
fn floor_boundary(text: &str, mut n: usize) -> usize {
    n = n.min(text.len());
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    n
}
