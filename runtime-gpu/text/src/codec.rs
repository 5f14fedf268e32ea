//! The text side of a model: its tokenizer, BOS, end-of-sequence ids and chat template, usable
//! before (and without) any model work — a prompt is tokenized and checked against the context
//! before the weights are uploaded.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tlite_model::config::ModelConfig;
use tlite_model::deploy::DeployedModel;
use tokenizers::Tokenizer;

use crate::chat::{ChatMessage, ChatTemplate};
use crate::{Result, TextError};

/// Tokenizer, special ids and the model folder (for its chat template).
pub struct TextCodec {
    tokenizer: Tokenizer,
    eos_ids: Vec<u32>,
    bos_id: Option<u32>,
    model_dir: Option<PathBuf>,
}

impl TextCodec {
    /// The tokenizer of a deployable model, and the end-of-sequence ids of its config.json,
    /// generation_config.json and tokenizer_config.json (`eos_token`), all of them.
    pub fn open(model: &DeployedModel) -> Result<Self> {
        Self::open_folder(&model.dir, &model.manifest.config).map_err(|e| match e {
            TextError::Tokenizer(_) if model.tokenizer_path().is_none() => {
                TextError::Tokenizer(format!(
                    "{} has no tokenizer.json (convert from a folder that has one)",
                    model.dir.display()
                ))
            }
            e => e,
        })
    }

    /// The text side of a model folder (a deployable model's or a Hugging Face checkpoint's)
    /// whose config is `cfg`: `tokenizer.json`, the end-of-sequence ids of the config,
    /// generation_config.json and tokenizer_config.json (`eos_token`), the config's BOS, and
    /// the folder's chat template.
    pub fn open_folder(dir: &Path, cfg: &ModelConfig) -> Result<Self> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(TextError::Tokenizer(format!(
                "{} has no tokenizer.json",
                dir.display()
            )));
        }
        let tokenizer = Self::from_file(&tok_path)?.tokenizer;
        let mut eos = cfg.eos_token_ids.clone();
        if let Some(g) = read_json(&dir.join("generation_config.json"))? {
            eos.extend(ids_of(&g["eos_token_id"]));
        }
        if let Some(tc) = read_json(&dir.join("tokenizer_config.json"))? {
            let name = match &tc["eos_token"] {
                Json::Object(o) => o.get("content").and_then(Json::as_str),
                v => v.as_str(),
            };
            eos.extend(name.and_then(|n| tokenizer.token_to_id(n)));
        }
        let mut codec = TextCodec::new(tokenizer, eos);
        codec.bos_id = cfg.bos_token_id;
        codec.model_dir = Some(dir.to_owned());
        Ok(codec)
    }

    /// The tokenizer file `path` alone (a checkpoint's): no end-of-sequence ids, no BOS
    /// fallback, no chat template.
    pub fn from_file(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| TextError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(TextCodec::new(tokenizer, Vec::new()))
    }

    /// A codec from parts (tests, custom tokenizers): no BOS fallback, no chat template.
    pub fn new(tokenizer: Tokenizer, mut eos_ids: Vec<u32>) -> Self {
        eos_ids.sort_unstable();
        eos_ids.dedup();
        TextCodec {
            tokenizer,
            eos_ids,
            bos_id: None,
            model_dir: None,
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The ids that end generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Tokenizes `text`; `add_special_tokens` lets the tokenizer's post-processor add BOS (or
    /// whatever its template adds).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, add_special_tokens)
            .map_err(|e| TextError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// A plain prompt with the tokenizer's special tokens; an empty one is the BOS alone.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let ids = self.encode(text, true)?;
        match (ids.is_empty(), self.bos_id) {
            (true, Some(bos)) => Ok(vec![bos]),
            (true, None) => Err(TextError::Tokenizer(
                "the prompt is empty and the model has no BOS token".into(),
            )),
            (false, _) => Ok(ids),
        }
    }

    /// The model's chat template, if it has one.
    pub fn chat_template(&self) -> Result<Option<ChatTemplate>> {
        match &self.model_dir {
            Some(dir) => ChatTemplate::from_model_dir(dir),
            None => Ok(None),
        }
    }

    /// The chat template rendered for `messages` with the assistant's turn opened, and its ids
    /// (the template writes the special tokens itself, so the tokenizer adds none).
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<(String, Vec<u32>)> {
        let template = self.chat_template()?.ok_or_else(|| {
            TextError::ChatTemplate(
                "the model has no chat template (no `chat_template` in its tokenizer_config.json): \
                 use a plain prompt"
                    .into(),
            )
        })?;
        let text = template.render(messages, true)?;
        let ids = self.encode(&text, false)?;
        Ok((text, ids))
    }
}

/// `prompt` tokens followed by `max_new` generated ones must fit the `max_seq` positions of the
/// KV cache.
pub fn check_context(prompt: usize, max_new: usize, max_seq: usize) -> Result<()> {
    let needed = prompt.saturating_add(max_new);
    if needed > max_seq {
        return Err(TextError::ContextOverflow {
            needed,
            max: max_seq,
        });
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| TextError::Model(format!("{} is not valid JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TextError::Model(format!("reading {}: {e}", path.display()))),
    }
}

/// A token id, or a list of them, as Hugging Face configs write `eos_token_id`.
fn ids_of(v: &Json) -> Vec<u32> {
    let one = |v: &Json| v.as_u64().and_then(|x| u32::try_from(x).ok());
    match v {
        Json::Array(a) => a.iter().filter_map(one).collect(),
        v => one(v).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_check_and_eos_lists() {
        assert!(check_context(10, 6, 16).is_ok());
        assert!(matches!(
            check_context(10, usize::MAX, 16),
            Err(TextError::ContextOverflow {
                needed: usize::MAX,
                max: 16
            })
        ));
        assert!(matches!(
            check_context(10, 7, 16),
            Err(TextError::ContextOverflow {
                needed: 17,
                max: 16
            })
        ));
        assert_eq!(ids_of(&serde_json::json!([2, 7])), [2, 7]);
        assert_eq!(ids_of(&serde_json::json!(5)), [5]);
        assert!(ids_of(&Json::Null).is_empty());
    }
}
