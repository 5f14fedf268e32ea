//! GGUF import: a GGUF file becomes a Hugging Face-style folder (`config.json`,
//! `generation_config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`).
//!
//! Every tensor is dequantized exactly to f32 (optionally stored as f16/bf16), renamed to
//! its Hugging Face name, and put back in Hugging Face's convention: llama.cpp's Q/K row
//! permutation undone for `llama`, the `+1` on Gemma's RMSNorm weights removed. The folder is
//! built next to its destination and renamed into place only when complete.
//!
//! This is the one crate that dequantizes through candle; what it writes is a plain
//! checkpoint for `tlite_converter`. [`fixtures`] imports the fetched real models on first use.

pub mod arch;
pub mod config;
#[cfg(test)]
mod dequant_ref;
pub mod export;
pub mod fixtures;
pub mod header;
pub mod permute;
pub mod reader;
pub mod tensors;
pub mod tokenizer;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use tlite_converter::output::Output;
use tlite_converter::{ConvertError, Event, Result, config_err, io_err};
use tlite_model::ModelError;
use tlite_model::config::ModelConfig;

use arch::Heads;
use config::{Hyper, TensorFacts};
use reader::{GgufFile, ggml_type_name};
use tensors::Planned;

/// The floating-point type tensors are stored in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutDType {
    /// Exact: every dequantized value as computed.
    #[default]
    F32,
    /// Rounded to nearest even.
    F16,
    /// Rounded to nearest even.
    BF16,
}

impl OutDType {
    /// The name `config.json` uses (`torch_dtype`).
    pub fn torch_name(self) -> &'static str {
        match self {
            OutDType::F32 => "float32",
            OutDType::F16 => "float16",
            OutDType::BF16 => "bfloat16",
        }
    }
}

/// How to import.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportOptions {
    /// Storage type of `model.safetensors`.
    pub dtype: OutDType,
    /// Replace an existing non-empty output folder.
    pub overwrite: bool,
}

/// What an import produced.
#[derive(Clone, Debug, Serialize)]
pub struct ImportSummary {
    /// The folder written.
    pub out_dir: PathBuf,
    /// `general.architecture` of the GGUF file.
    pub gguf_architecture: String,
    /// The Hugging Face class (`architectures[0]`).
    pub architecture: String,
    /// The Hugging Face `model_type`.
    pub model_type: String,
    /// Tensors written.
    pub tensors: usize,
    /// Total number of weights.
    pub parameters: u64,
    /// Storage type of `model.safetensors`.
    pub dtype: OutDType,
    /// Bytes written across all files.
    pub bytes_written: u64,
    /// How many tensors the GGUF file stored in each ggml type (`Q4_K`, `F32`, ...).
    pub source_types: BTreeMap<String, usize>,
    /// Vocabulary size of the rebuilt tokenizer.
    pub vocab_size: usize,
}

/// The architecture, hyperparameters and head counts of the model in `g`.
pub(crate) fn model_of(g: &GgufFile) -> Result<(arch::ArchSpec, Hyper, Heads)> {
    let gguf_arch = g
        .str("general.architecture")?
        .ok_or_else(|| g.err("missing metadata key `general.architecture`"))?
        .to_owned();
    let spec = arch::lookup(&gguf_arch)?;
    let hp = Hyper::read(g, spec.gguf)?;
    let heads = Heads {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
    };
    Ok((spec, hp, heads))
}

/// Imports the GGUF file `src` into the folder `out_dir`.
///
/// Refuses a non-empty `out_dir` unless `opts.overwrite`. Nothing appears under `out_dir`
/// until every file is complete; on error the partial folder is removed.
pub fn import_gguf(
    src: &Path,
    out_dir: &Path,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<ImportSummary> {
    let mut g = GgufFile::open(src)?;
    let (spec, hp, heads) = model_of(&g)?;
    let plan = tensors::plan(&g, &spec, heads, hp.layers)?;
    let embed = plan
        .iter()
        .find(|t| t.gguf_name == "token_embd.weight")
        .ok_or_else(|| g.err("no `token_embd.weight` tensor"))?;
    let &[vocab_size, _] = embed.shape.as_slice() else {
        return Err(g.err(format!(
            "`token_embd.weight` has shape {:?}; expected [vocab, hidden]",
            embed.shape
        )));
    };
    let facts = TensorFacts {
        vocab_size,
        tied: !plan.iter().any(|t| t.gguf_name == "output.weight"),
        qkv_bias: plan.iter().any(|t| t.gguf_name.ends_with("attn_q.bias")),
    };
    let config = config::config_json(&g, &spec, &hp, &facts, opts.dtype.torch_name())?;
    let generation = config::generation_config_json(&g)?;
    validate(&g, &spec, &config, &plan)?;
    // Everything that can be refused is checked before the output folder is touched.
    progress(Event::Start {
        phase: "tokenizer",
        total: 1,
    });
    let tok = tokenizer::build(&g)?;
    let tok_config = tokenizer_config(&g, tok.add_bos, tok.add_eos)?;

    let output = Output::prepare(out_dir, &[src], opts.overwrite)?;
    let tmp = output.dir().to_owned();
    let (bytes_written, vocab_size) = (|| -> Result<(u64, usize)> {
        let mut bytes = write_json(&tmp.join("config.json"), &config)?;
        bytes += write_json(&tmp.join("generation_config.json"), &generation)?;
        let vocab_size = tok.tokenizer.get_vocab_size(true);
        let tok_path = tmp.join("tokenizer.json");
        tok.tokenizer
            .save(&tok_path, false)
            .map_err(|e| ConvertError::Tokenizer {
                path: tok_path.clone(),
                reason: e.to_string(),
            })?;
        bytes += fs::metadata(&tok_path).map_err(io_err(&tok_path))?.len();
        bytes += write_json(&tmp.join("tokenizer_config.json"), &tok_config)?;
        progress(Event::Item {
            index: 0,
            name: "tokenizer.json".into(),
        });
        progress(Event::Done { phase: "tokenizer" });
        let st = tmp.join("model.safetensors");
        bytes += tensors::write_safetensors(&st, &mut g, &plan, opts.dtype, progress)?;
        Ok((bytes, vocab_size))
    })()?;
    output.install()?;

    let mut source_types = BTreeMap::new();
    for t in &plan {
        *source_types
            .entry(ggml_type_name(t.ggml_type).to_owned())
            .or_insert(0) += 1;
    }
    Ok(ImportSummary {
        out_dir: out_dir.to_owned(),
        gguf_architecture: spec.gguf.to_owned(),
        architecture: spec.hf_class().to_owned(),
        model_type: spec.model_type().to_owned(),
        tensors: plan.len(),
        parameters: plan.iter().map(|t| t.numel() as u64).sum(),
        dtype: opts.dtype,
        bytes_written,
        source_types,
        vocab_size,
    })
}

/// Checks the rebuilt config through the one config validation, then against the file: the
/// tensors and bytes it holds must be able to back the config, and every tensor the
/// architecture needs must be there with its shape. Runs before anything is written.
fn validate(g: &GgufFile, spec: &arch::ArchSpec, config: &Value, plan: &[Planned]) -> Result<()> {
    let cfg = ModelConfig::from_json(config, g.path()).map_err(|e| match e {
        ModelError::Config { reason, .. } => g.err(format!(
            "the config rebuilt from its metadata is invalid: {reason}"
        )),
        other => other.into(),
    })?;
    cfg.check_fits(plan.len(), g.tensor_data_bytes(), 4)
        .map_err(|reason| g.err(reason))?;
    let by_name: HashMap<&str, &Planned> = plan.iter().map(|t| (t.hf_name.as_str(), t)).collect();
    for e in cfg.arch().expected_tensors(&cfg) {
        let gguf_name = spec.gguf_name(&e.name).unwrap_or_else(|| e.name.clone());
        match by_name.get(e.name.as_str()) {
            None => {
                return Err(g.err(format!(
                    "tensor `{gguf_name}` is missing (the config needs `{}`, shape {:?})",
                    e.name, e.shape
                )));
            }
            Some(t) if t.shape != e.shape => {
                return Err(g.err(format!(
                    "tensor `{gguf_name}` has shape {:?}; the config needs {:?}",
                    t.shape, e.shape
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `tokenizer_config.json`: special tokens, BOS/EOS behaviour and the chat template.
fn tokenizer_config(g: &GgufFile, add_bos: bool, add_eos: bool) -> Result<Value> {
    let tokens = g.strings("tokenizer.ggml.tokens")?.unwrap_or_default();
    let token = |key: &str| -> Result<Value> {
        match g.u64(key)? {
            None => Ok(Value::Null),
            Some(i) => usize::try_from(i)
                .ok()
                .and_then(|i| tokens.get(i))
                .map(|t| json!(t))
                .ok_or_else(|| {
                    g.err(format!(
                        "`{key}` = {i} is outside the vocabulary of {} tokens",
                        tokens.len()
                    ))
                }),
        }
    };
    let mut c = serde_json::Map::new();
    c.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    c.insert("bos_token".into(), token("tokenizer.ggml.bos_token_id")?);
    c.insert("eos_token".into(), token("tokenizer.ggml.eos_token_id")?);
    c.insert(
        "unk_token".into(),
        token("tokenizer.ggml.unknown_token_id")?,
    );
    c.insert(
        "pad_token".into(),
        token("tokenizer.ggml.padding_token_id")?,
    );
    c.insert("add_bos_token".into(), json!(add_bos));
    c.insert("add_eos_token".into(), json!(add_eos));
    c.insert("clean_up_tokenization_spaces".into(), json!(false));
    if let Some(t) = g.str("tokenizer.chat_template")? {
        c.insert("chat_template".into(), json!(t));
    }
    Ok(Value::Object(c))
}

/// Writes pretty JSON with a trailing newline; returns its size.
fn write_json(path: &Path, v: &Value) -> Result<u64> {
    let mut s = serde_json::to_string_pretty(v).map_err(|e| config_err(path, e.to_string()))?;
    s.push('\n');
    fs::write(path, &s).map_err(io_err(path))?;
    Ok(s.len() as u64)
}
