//! Streaming text out of a token stream: incremental detokenization (the tokenizer's
//! `DecodeStream`, which emits a piece once it decodes to complete UTF-8, with a full re-decode
//! as fallback) and stop strings (text that could still become a stop string is held back).

use tokenizers::{
    DecodeStream, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper, Tokenizer,
};

use crate::{Result, TextError};

type Stream<'t> = DecodeStream<
    't,
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Token ids in, text pieces out (special tokens skipped).
pub struct TextStream<'t> {
    tokenizer: &'t Tokenizer,
    inner: Stream<'t>,
    ids: Vec<u32>,
    emitted: String,
    /// Set when `DecodeStream` rejected a step: every later step re-decodes all ids.
    fallback: bool,
}

impl<'t> TextStream<'t> {
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        TextStream {
            tokenizer,
            inner: tokenizer.decode_stream(true),
            ids: Vec::new(),
            emitted: String::new(),
            fallback: false,
        }
    }

    /// The new text that `id` completes, if any.
    pub fn step(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        if !self.fallback {
            match self.inner.step(id) {
                Ok(Some(piece)) => {
                    self.emitted.push_str(&piece);
                    return Ok(Some(piece));
                }
                Ok(None) => return Ok(None),
                Err(_) => self.fallback = true,
            }
        }
        self.suffix(false)
    }

    /// What is left at the end (an incomplete character decodes to U+FFFD).
    pub fn finish(&mut self) -> Result<Option<String>> {
        self.suffix(true)
    }

    fn suffix(&mut self, last: bool) -> Result<Option<String>> {
        let all = self
            .tokenizer
            .decode(&self.ids, true)
            .map_err(|e| TextError::Tokenizer(e.to_string()))?;
        if (last || !all.ends_with('\u{FFFD}'))
            && all.len() > self.emitted.len()
            && all.starts_with(&self.emitted)
        {
            let piece = all[self.emitted.len()..].to_owned();
            self.emitted = all;
            return Ok(Some(piece));
        }
        Ok(None)
    }
}

/// Cuts streamed text at the first stop string.
pub struct StopText<'s> {
    stops: Vec<&'s str>,
    pending: String,
}

impl<'s> StopText<'s> {
    pub fn new(stops: &'s [String]) -> Self {
        StopText {
            stops: stops
                .iter()
                .map(String::as_str)
                .filter(|s| !s.is_empty())
                .collect(),
            pending: String::new(),
        }
    }

    /// Adds `piece`; returns the text safe to emit now and the stop string if one was reached
    /// (the text before it is emitted, the stop string and anything after it are not).
    pub fn push(&mut self, piece: &str) -> (String, Option<String>) {
        self.pending.push_str(piece);
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s).map(|at| (at, *s)))
            .min();
        if let Some((at, stop)) = hit {
            let out = self.pending[..at].to_owned();
            self.pending.clear();
            return (out, Some(stop.to_owned()));
        }
        // Hold back the longest tail that is the start of some stop string.
        let hold = self
            .stops
            .iter()
            .flat_map(|s| {
                s.char_indices()
                    .map(|(i, _)| i)
                    .skip(1)
                    .filter(|&k| self.pending.ends_with(&s[..k]))
            })
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_owned();
        self.pending.drain(..cut);
        (out, None)
    }

    /// The held-back text, at the end of generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, Option<String>) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut st = StopText::new(&stops);
        let mut out = Vec::new();
        for p in pieces {
            let (o, hit) = st.push(p);
            out.push(o);
            if hit.is_some() {
                return (out, hit);
            }
        }
        out.push(st.finish());
        (out, None)
    }

    #[test]
    fn stop_strings_cut_and_hold_back() {
        // No stop strings: everything passes straight through.
        assert_eq!(run(&[], &["a", "b"]).0, ["a", "b", ""]);
        // A stop string split over pieces is held back, then cut.
        let (out, hit) = run(&["\nUser:"], &["Hi", " there\n", "Us", "er: next"]);
        assert_eq!(out, ["Hi", " there", "", ""]);
        assert_eq!(hit.as_deref(), Some("\nUser:"));
        // A false start is released once it can no longer match.
        let (out, hit) = run(&["STOP"], &["ST", "ART", " ok"]);
        assert_eq!(out.concat(), "START ok");
        assert_eq!(hit, None);
        // The earliest of several stop strings wins; multi-byte text is cut on boundaries.
        let (out, hit) = run(&["é!", "zz"], &["caf", "é", "! zz"]);
        assert_eq!(out.concat(), "caf");
        assert_eq!(hit.as_deref(), Some("é!"));
    }

    #[test]
    fn text_stream_reassembles_the_text() {
        let tok: Tokenizer =
            serde_json::from_value(tlite_converter::synth::byte_tokenizer(320)).unwrap();
        let text = "the cat is on the mat — naïve";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        let mut s = TextStream::new(&tok);
        let mut out = String::new();
        let mut pieces = 0;
        for &id in &ids {
            if let Some(p) = s.step(id).unwrap() {
                out.push_str(&p);
                pieces += 1;
            }
        }
        out.extend(s.finish().unwrap());
        assert_eq!(out, text);
        assert!(pieces > 5, "streamed in pieces");
        // A dangling partial character is flushed at the end as U+FFFD.
        let mut s = TextStream::new(&tok);
        let e_acute = tok.encode("é", false).unwrap().get_ids().to_vec();
        assert_eq!(e_acute.len(), 2);
        assert_eq!(s.step(e_acute[0]).unwrap(), None);
        assert_eq!(s.finish().unwrap().as_deref(), Some("\u{FFFD}"));
    }
}
