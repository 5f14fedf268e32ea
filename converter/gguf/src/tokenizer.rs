//! `tokenizer.json` rebuilt from a GGUF vocabulary (`tokenizer.ggml.*`), as the `tokenizers`
//! crate loads it.
//!
//! * `gpt2`: byte-level BPE. Vocabulary and merges are stored as such; the split applied
//!   before the byte-level mapping is chosen by `tokenizer.ggml.pre`.
//! * `llama`: SentencePiece BPE with byte fallback. GGUF keeps no merges, so they are rebuilt
//!   from the vocabulary as Hugging Face's `SentencePieceExtractor` does: every split of a
//!   token into two vocabulary tokens is a merge, ranked by the merged token.

use std::collections::{HashMap, HashSet};

use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{NFC, NormalizerWrapper, Replace};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::processors::sequence::Sequence as PostSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use tlite_converter::{ConvertError, Result};

use crate::reader::GgufFile;

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Qwen2's split (Hugging Face `tokenizer.json`, llama.cpp pre `qwen2`).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Llama 3's split: Qwen2's with digits in groups of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` values understood, by the pre-tokenizer they select.
const PRE_GPT2: &[&str] = &["default", "gpt2"];
const PRE_DIGITS: &[&str] = &["smollm", "starcoder", "refact"];
const PRE_QWEN2: &[&str] = &["qwen2", "deepseek-r1-qwen", "megrez"];
const PRE_LLAMA3: &[&str] = &["llama3", "llama-v3", "llama-bpe", "smaug-bpe", "dbrx"];

/// The tokenizer, and what `tokenizer_config.json` needs to know about it.
pub struct Built {
    pub tokenizer: Tokenizer,
    pub add_bos: bool,
    pub add_eos: bool,
}

/// Builds the tokenizer described by `g`'s `tokenizer.ggml.*` metadata.
pub fn build(g: &GgufFile) -> Result<Built> {
    let err = |reason: String| ConvertError::Tokenizer {
        path: g.path().to_owned(),
        reason,
    };
    let model = g
        .str("tokenizer.ggml.model")?
        .ok_or_else(|| err("no `tokenizer.ggml.model` in the file".into()))?;
    let tokens: Vec<String> = g
        .strings("tokenizer.ggml.tokens")?
        .ok_or_else(|| err("no `tokenizer.ggml.tokens` in the file".into()))?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let types = g.i64s("tokenizer.ggml.token_type")?.unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(err(format!(
            "`tokenizer.ggml.token_type` lists {} types for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let id = |key: &str| -> Result<Option<u32>> {
        match g.u64(key)? {
            Some(i) if i < tokens.len() as u64 => Ok(u32::try_from(i).ok()),
            Some(i) => Err(err(format!(
                "`{key}` = {i} is outside the vocabulary of {}",
                tokens.len()
            ))),
            None => Ok(None),
        }
    };
    let bos = id("tokenizer.ggml.bos_token_id")?;
    let eos = id("tokenizer.ggml.eos_token_id")?;
    let unk = id("tokenizer.ggml.unknown_token_id")?;
    let pad = id("tokenizer.ggml.padding_token_id")?;
    let add_bos = g
        .bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(model == "llama");
    let add_eos = g.bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);

    let (mut tokenizer, vocab) = match model {
        "gpt2" => byte_level_bpe(g, &tokens).map_err(err)?,
        "llama" => sentencepiece_bpe(g, &tokens, unk).map_err(err)?,
        other => {
            return Err(err(format!(
                "tokenizer model `{other}` is not supported (supported: gpt2, llama)"
            )));
        }
    };

    if vocab.len() != tokens.len() {
        return Err(err(format!(
            "the vocabulary was rebuilt with {} tokens instead of {}",
            vocab.len(),
            tokens.len()
        )));
    }
    let mut added = Vec::new();
    let mut listed = HashSet::new();
    // `types` is empty or as long as `vocab` (checked above).
    for (i, (&t, token)) in types.iter().zip(&vocab).enumerate() {
        let (special, user) = (t == TOKEN_TYPE_CONTROL, t == TOKEN_TYPE_USER_DEFINED);
        if special || user {
            added.push(AddedToken::from(token.clone(), special).normalized(!special));
            listed.insert(i);
        }
    }
    // The ids were checked against the vocabulary's length by `id`.
    for i in [bos, eos, unk, pad].into_iter().flatten() {
        let token = token_at(&vocab, i).map_err(err)?;
        if listed.insert(i as usize) {
            added.push(AddedToken::from(token.to_owned(), true).normalized(false));
        }
    }
    tokenizer
        .add_special_tokens(added)
        .map_err(|e| err(e.to_string()))?;

    let template =
        template(&vocab, bos.filter(|_| add_bos), eos.filter(|_| add_eos)).map_err(err)?;
    let post = match (model, template) {
        ("gpt2", Some(t)) => Some(PostSequence::new(vec![byte_level_post(), t.into()]).into()),
        ("gpt2", None) => Some(byte_level_post()),
        (_, t) => t.map(PostProcessorWrapper::from),
    };
    tokenizer.with_post_processor(post);
    Ok(Built {
        tokenizer,
        add_bos,
        add_eos,
    })
}

/// Token `id` of `vocab`, or an error naming the id.
fn token_at(vocab: &[String], id: u32) -> std::result::Result<&str, String> {
    vocab
        .get(id as usize)
        .map(String::as_str)
        .ok_or_else(|| format!("token id {id} is outside the vocabulary of {}", vocab.len()))
}

/// `[bos] $A [eos]` when either is added; `None` when neither is.
fn template(
    vocab: &[String],
    bos: Option<u32>,
    eos: Option<u32>,
) -> std::result::Result<Option<TemplateProcessing>, String> {
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let tok = |i: u32| token_at(vocab, i).map(str::to_owned);
    let (mut single, mut pair, mut specials) = (Vec::new(), Vec::new(), Vec::new());
    for (seq, part) in [("A", 0), ("B", 1)] {
        if let Some(b) = bos {
            pair.push(format!("{}:{part}", tok(b)?));
            if part == 0 {
                single.push(tok(b)?);
            }
        }
        pair.push(format!("${seq}:{part}"));
        if part == 0 {
            single.push("$A".to_owned());
        }
        if let Some(e) = eos {
            pair.push(format!("{}:{part}", tok(e)?));
            if part == 0 {
                single.push(tok(e)?);
            }
        }
    }
    for i in [bos, eos].into_iter().flatten() {
        specials.push((tok(i)?, i));
    }
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| e.to_string())?
        .special_tokens(specials)
        .build()
        .map(Some)
        .map_err(|e| e.to_string())
}

fn byte_level_post() -> PostProcessorWrapper {
    ByteLevel::new(false, false, false).into()
}

/// Byte-level BPE (`tokenizer.ggml.model = gpt2`). Returns the tokenizer and the vocabulary
/// as the model spells it.
fn byte_level_bpe(
    g: &GgufFile,
    tokens: &[String],
) -> std::result::Result<(Tokenizer, Vec<String>), String> {
    let merges = g
        .strings("tokenizer.ggml.merges")
        .map_err(|e| e.to_string())?
        .ok_or("no `tokenizer.ggml.merges` in a gpt2 (byte-level BPE) vocabulary")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| format!("malformed merge `{m}`"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let vocab = byte_level_spelling(tokens);
    let pre = g
        .str("tokenizer.ggml.pre")
        .map_err(|e| e.to_string())?
        .unwrap_or("default");
    let bpe = BPE::builder()
        .vocab_and_merges(index(&vocab), merges)
        .ignore_merges(PRE_LLAMA3.contains(&pre))
        .build()
        .map_err(|e| e.to_string())?;
    let mut t = Tokenizer::new(bpe);
    let byte_level = |use_regex| PreTokenizerWrapper::from(ByteLevel::new(false, true, use_regex));
    let split = |re: &str| -> std::result::Result<PreTokenizerWrapper, String> {
        let s = Split::new(
            SplitPattern::Regex(re.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| e.to_string())?;
        Ok(PreSequence::new(vec![s.into(), byte_level(false)]).into())
    };
    let pre_tokenizer = if PRE_GPT2.contains(&pre) {
        byte_level(true)
    } else if PRE_DIGITS.contains(&pre) {
        PreSequence::new(vec![Digits::new(true).into(), byte_level(true)]).into()
    } else if PRE_QWEN2.contains(&pre) {
        let nfc: NormalizerWrapper = NFC.into();
        t.with_normalizer(Some(nfc)).map_err(|e| e.to_string())?;
        split(QWEN2_SPLIT)?
    } else if PRE_LLAMA3.contains(&pre) {
        split(LLAMA3_SPLIT)?
    } else {
        let known: Vec<&str> = [PRE_GPT2, PRE_DIGITS, PRE_QWEN2, PRE_LLAMA3].concat();
        return Err(format!(
            "pre-tokenizer `{pre}` is not supported (supported: {})",
            known.join(", ")
        ));
    };
    t.with_pre_tokenizer(Some(pre_tokenizer));
    t.with_decoder(Some(ByteLevel::new(false, true, true)));
    Ok((t, vocab))
}

/// GPT-2's byte-to-character table: the printable bytes stand for themselves, the rest are
/// shifted past U+0100.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).unwrap_or('\0');
    }
    table
}

/// Tokens as the merges spell them: a token holding characters outside the byte-level
/// alphabet (llama.cpp writes some undecodable ones raw) is respelled from its UTF-8 bytes.
fn byte_level_spelling(tokens: &[String]) -> Vec<String> {
    let table = bytes_to_unicode();
    let alphabet: HashSet<char> = table.iter().copied().collect();
    tokens
        .iter()
        .map(|t| {
            if t.chars().all(|c| alphabet.contains(&c)) {
                t.clone()
            } else {
                t.bytes().map(|b| table[b as usize]).collect()
            }
        })
        .collect()
}

/// Token → id; a repeated token keeps its last id, as a Python dict built from the list does.
fn index(vocab: &[String]) -> Vocab {
    vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

/// SentencePiece BPE (`tokenizer.ggml.model = llama`).
fn sentencepiece_bpe(
    g: &GgufFile,
    tokens: &[String],
    unk: Option<u32>,
) -> std::result::Result<(Tokenizer, Vec<String>), String> {
    let scores = g
        .f32s("tokenizer.ggml.scores")
        .map_err(|e| e.to_string())?
        .ok_or("no `tokenizer.ggml.scores` in a llama (SentencePiece) vocabulary")?;
    if scores.len() != tokens.len() {
        return Err(format!(
            "{} scores for {} tokens",
            scores.len(),
            tokens.len()
        ));
    }
    let gemma = tokens
        .iter()
        .any(|t| t.contains(' ') && t.trim().is_empty());
    // Gemma writes runs of spaces as spaces; its merges and its normalizer spell them `▁`.
    let vocab: Vec<String> = tokens
        .iter()
        .map(|t| {
            if gemma && t.trim().is_empty() {
                t.replace(' ', "▁")
            } else {
                t.clone()
            }
        })
        .collect();
    let merges = sentencepiece_merges(&vocab, &scores, gemma)?;
    let add_prefix = g
        .bool("tokenizer.ggml.add_space_prefix")
        .map_err(|e| e.to_string())?
        .unwrap_or(!gemma);
    let mut builder = BPE::builder()
        .vocab_and_merges(index(&vocab), merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(u) = unk {
        builder = builder.unk_token(token_at(&vocab, u)?.to_owned());
    }
    let mut t = Tokenizer::new(builder.build().map_err(|e| e.to_string())?);
    let mut decoders: Vec<DecoderWrapper> = if gemma {
        let n: NormalizerWrapper = Replace::new(" ", "▁").map_err(|e| e.to_string())?.into();
        t.with_normalizer(Some(n)).map_err(|e| e.to_string())?;
        vec![
            Replace::new("▁", " ").map_err(|e| e.to_string())?.into(),
            ByteFallback::new().into(),
            Fuse::new().into(),
        ]
    } else {
        let scheme = if add_prefix {
            PrependScheme::First
        } else {
            PrependScheme::Never
        };
        t.with_pre_tokenizer(Some(Metaspace::new('▁', scheme, false)));
        vec![
            ByteFallback::new().into(),
            Fuse::new().into(),
            Replace::new("▁", " ").map_err(|e| e.to_string())?.into(),
        ]
    };
    if add_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    t.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok((t, vocab))
}

/// Work [`sentencepiece_merges`] may do, in bytes hashed (each split of a token hashes it
/// once): far above a real vocabulary's (Gemma 3's 262,144 tokens take a few tens of
/// millions), low enough that a vocabulary of long tokens cannot stall the import.
pub const MAX_MERGE_WORK: u64 = 1 << 29;
/// Merges a SentencePiece vocabulary may produce (real ones: about two per token).
pub const MAX_MERGES: usize = 1 << 23;

/// Merges rebuilt from a SentencePiece vocabulary, as Hugging Face's converter does: each
/// split of a token into two vocabulary tokens, best-scored pieces first within a token, and
/// tokens ranked by score — or, for Gemma, whose scores are ranks with placeholders (every
/// whitespace run scores -1000), by position in the vocabulary.
///
/// `scores` holds one score per token (a missing score counts as -∞). An error when the
/// vocabulary would take more than [`MAX_MERGE_WORK`] or give more than [`MAX_MERGES`].
pub fn sentencepiece_merges(
    vocab: &[String],
    scores: &[f32],
    rank_by_position: bool,
) -> std::result::Result<Vec<(String, String)>, String> {
    let work: u64 = vocab
        .iter()
        .map(|t| t.len() as u64 * t.chars().count() as u64)
        .fold(0, u64::saturating_add);
    if work > MAX_MERGE_WORK {
        return Err(format!(
            "the vocabulary's tokens are too long to rebuild SentencePiece merges from \
             ({work} bytes to hash; at most {MAX_MERGE_WORK})"
        ));
    }
    let last: HashMap<&str, usize> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let score = |t: &str| {
        last.get(t)
            .and_then(|&i| scores.get(i))
            .copied()
            .unwrap_or(f32::NEG_INFINITY)
    };
    let mut ranked: Vec<(f32, &str, &str)> = Vec::new();
    let mut seen = HashSet::new();
    for (i, token) in vocab.iter().enumerate() {
        let merged = token.as_str();
        // Each distinct token once, where it first appears.
        if !seen.insert(merged) {
            continue;
        }
        let rank = if rank_by_position {
            -(last.get(merged).copied().unwrap_or(i) as f32)
        } else {
            score(merged)
        };
        let mut local: Vec<(&str, &str)> = merged
            .char_indices()
            .skip(1)
            .map(|(b, _)| merged.split_at(b))
            .filter(|(l, r)| last.contains_key(l) && last.contains_key(r))
            .collect();
        local.sort_by(|a, b| {
            score(b.0)
                .total_cmp(&score(a.0))
                .then(score(b.1).total_cmp(&score(a.1)))
        });
        ranked.extend(local.into_iter().map(|(l, r)| (rank, l, r)));
        if ranked.len() > MAX_MERGES {
            return Err(format!(
                "the vocabulary gives more than {MAX_MERGES} SentencePiece merges"
            ));
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(ranked
        .into_iter()
        .map(|(_, l, r)| (l.to_owned(), r.to_owned()))
        .collect())
}
