//! Text generation on any [`LanguageModel`]: the prompt is tokenized (the tokenizer's own
//! special tokens, or a rendered chat template), checked against the context before any model
//! work, prefilled in steps of at most `max_batch` tokens reading back only the last position's
//! logits, then decoded one token per step until an end-of-sequence id, a stop string or the
//! token budget. Text is streamed as it becomes valid UTF-8 (incremental detokenization), with
//! anything that may still turn into a stop string held back.

use std::time::Instant;

use tlite_model::LanguageModel;
use tlite_model::lm::{PrefillRows, prefill};

use crate::TextError;
use crate::codec::{TextCodec, check_context};
use crate::sample::{Sampler, SamplerConfig};
use crate::stream::{StopText, TextStream};

/// An error of [`Generator::generate`]: the text side's, or the model's own (its type kept).
#[derive(Debug, thiserror::Error)]
pub enum GenerateError<E> {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    Model(E),
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_new: usize,
    pub sampler: SamplerConfig,
    /// Texts that end the generation (not included in the output).
    pub stop_strings: Vec<String>,
    /// Token ids that end the generation, besides the model's end-of-sequence ids.
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new: 128,
            sampler: SamplerConfig::greedy(),
            stop_strings: Vec::new(),
            stop_tokens: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-sequence or stop token was drawn (it is not part of the output).
    Eos { token: u32 },
    /// The output reached a stop string.
    StopString { text: String },
    /// `max_new` tokens were generated.
    MaxTokens,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Eos { token } => write!(f, "end-of-sequence token {token}"),
            StopReason::StopString { text } => write!(f, "stop string {text:?}"),
            StopReason::MaxTokens => write!(f, "token limit"),
        }
    }
}

/// Counts and timings of one generation (wall clock; a GPU model's work is synchronized by each
/// readback).
#[derive(Clone, Debug, serde::Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Tokens generated (the stop token excluded).
    pub generated: usize,
    /// Prefill steps (the prompt in chunks of at most `max_batch`).
    pub prefill_steps: usize,
    /// Single-token decode steps (the first token comes from the prefill's logits).
    pub decode_steps: usize,
    /// Compute dispatches of the last prefill step and of a decode step (0 when none ran, or
    /// where the model does not count them: [`LanguageModel::last_dispatches`]).
    pub prefill_dispatches: usize,
    pub decode_dispatches: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub prefill_tok_s: f64,
    /// Decode steps per wall-clock second of decoding.
    pub decode_tok_s: f64,
    /// Whether the model picked the greedy tokens itself, steps in flight with no round trip
    /// per token ([`LanguageModel::decode_greedy`]).
    pub gpu_decode: bool,
    pub stop_reason: StopReason,
}

/// The result of [`Generator::generate`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Generation {
    /// The generated ids (without the stop token).
    pub tokens: Vec<u32>,
    /// The streamed text, exactly as passed to the callback.
    pub text: String,
    pub stats: GenerationStats,
}

/// A model with its tokenizer side.
pub struct Generator<M> {
    pub model: M,
    pub text: TextCodec,
}

impl<M: LanguageModel> Generator<M> {
    pub fn new(model: M, text: TextCodec) -> Self {
        Generator { model, text }
    }

    /// Generates after `prompt`, streaming text through `on_text`. The prompt and `max_new`
    /// must fit the context: that is checked before any model work.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, GenerateError<M::Error>> {
        let (max_seq, vocab) = (self.model.max_seq(), self.model.vocab());
        if prompt.is_empty() {
            return Err(TextError::Model("the prompt has no tokens".into()).into());
        }
        if opts.max_new == 0 {
            return Err(TextError::Sampling(
                "the number of tokens to generate must be at least 1".into(),
            )
            .into());
        }
        check_context(prompt.len(), opts.max_new, max_seq)?;
        if let Some(t) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(TextError::Model(format!(
                "prompt token {t} is outside the model's vocabulary of {vocab}"
            ))
            .into());
        }
        let mut sampler = Sampler::new(opts.sampler)?;

        let start = Instant::now();
        // Only the last chunk's last position needs logits; earlier chunks read nothing back.
        let (mut logits, prefill_steps) =
            prefill(&mut self.model, prompt, PrefillRows::Last).map_err(GenerateError::Model)?;
        let prefill_seconds = start.elapsed().as_secs_f64();

        let mut stream = TextStream::new(self.text.tokenizer());
        let mut stop_text = StopText::new(&opts.stop_strings);
        let mut text = String::new();
        let mut emit = |s: &str, text: &mut String| {
            if !s.is_empty() {
                on_text(s);
                text.push_str(s);
            }
        };
        let mut tokens = Vec::new();
        let (mut decode_steps, mut decode_seconds) = (0usize, 0f64);
        let prefill_dispatches = self.model.last_dispatches();
        let mut decode_dispatches = 0;
        let eos = self.text.eos_ids();
        // Takes the next token: `Some` when generation ends with it (a stop token is not kept).
        let mut accept = |next: u32| -> Result<Option<StopReason>, TextError> {
            if eos.contains(&next) || opts.stop_tokens.contains(&next) {
                return Ok(Some(StopReason::Eos { token: next }));
            }
            tokens.push(next);
            if let Some(piece) = stream.step(next)? {
                let (out, hit) = stop_text.push(&piece);
                emit(&out, &mut text);
                if let Some(hit) = hit {
                    return Ok(Some(StopReason::StopString { text: hit }));
                }
            }
            Ok((tokens.len() == opts.max_new).then_some(StopReason::MaxTokens))
        };
        // The first token comes from the prefill's logits; each later one costs a step.
        let mut next = sampler.sample(&logits)?;
        let mut stopped = accept(next)?;
        let mut kept = 1;
        let mut gpu_decode = false;
        if stopped.is_none() && sampler.config().is_greedy() {
            // Greedy: the model may pick the tokens itself, without a round trip per token.
            let t = Instant::now();
            let mut failed = None;
            let mut on_token = |id: u32| match accept(id) {
                Ok(None) => true,
                Ok(Some(reason)) => {
                    stopped = Some(reason);
                    false
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            };
            let left = opts.max_new - 1;
            if let Some(run) = (self.model).decode_greedy(next, prompt.len(), left, &mut on_token) {
                decode_steps = run.map_err(GenerateError::Model)?;
                if let Some(e) = failed {
                    return Err(e.into());
                }
                gpu_decode = true;
                decode_seconds = t.elapsed().as_secs_f64();
                decode_dispatches = self.model.last_dispatches();
            }
        }
        let mut stop_reason = loop {
            if let Some(reason) = stopped {
                break reason;
            }
            if gpu_decode {
                // `decode_greedy` ends only at a stop or after the tokens asked for
                break StopReason::MaxTokens;
            }
            let t = Instant::now();
            logits = self
                .model
                .step(&[next], prompt.len() + kept - 1, &[0])
                .map_err(GenerateError::Model)?;
            decode_seconds += t.elapsed().as_secs_f64();
            decode_steps += 1;
            decode_dispatches = self.model.last_dispatches();
            next = sampler.sample(&logits)?;
            stopped = accept(next)?;
            kept += 1;
        };
        if !matches!(stop_reason, StopReason::StopString { .. }) {
            if let Some(rest) = stream.finish()? {
                let (out, hit) = stop_text.push(&rest);
                emit(&out, &mut text);
                if let Some(hit) = hit {
                    stop_reason = StopReason::StopString { text: hit };
                }
            }
            emit(&stop_text.finish(), &mut text);
        }
        let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let stats = GenerationStats {
            prompt_tokens: prompt.len(),
            generated: tokens.len(),
            prefill_steps,
            decode_steps,
            prefill_dispatches,
            decode_dispatches,
            prefill_seconds,
            decode_seconds,
            prefill_tok_s: rate(prompt.len(), prefill_seconds),
            decode_tok_s: rate(decode_steps, decode_seconds),
            gpu_decode,
            stop_reason,
        };
        Ok(Generation {
            tokens,
            text,
            stats,
        })
    }
}
