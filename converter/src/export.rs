//! `export`: a deployable model's weights dequantized (the quantizer's decoder, as the CPU
//! reference reads them) into a standard Hugging Face folder — sharded safetensors and
//! `model.safetensors.index.json`, `config.json` as transformers reads it for the family, the
//! tokenizer files and `generation_config.json` — written through [`Output`] like every
//! folder tlite writes.
//!
//! Tensor names come from the one layer walk ([`tlite_model::arch::Arch::expected_tensors`]):
//! a deployable model keeps each stored tensor under its checkpoint name, and where a family
//! stores several projections in one tensor (ChatGLM's `query_key_value` and
//! `dense_h_to_4h`: the walk's `Proj` row ranges), its Hugging Face checkpoint does too, so
//! every tensor is written whole under the family's own name. A tied LM head stays tied.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use safetensors::Dtype;
use serde::Serialize;
use serde_json::{Value, json};
use tlite_model::deploy::DeployedModel;

use crate::events::Event;
use crate::output::Output;
use crate::safetensors_out::{OutTensor, encode_f32, write_streaming};
use crate::{Result, config_err, io_err};

/// The element type of the exported weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportDtype {
    Bf16,
    F16,
    /// Exact: the dequantized values as the reference computes them.
    F32,
}

impl ExportDtype {
    /// transformers' name (`torch_dtype` in config.json).
    pub fn torch_name(self) -> &'static str {
        match self {
            ExportDtype::Bf16 => "bfloat16",
            ExportDtype::F16 => "float16",
            ExportDtype::F32 => "float32",
        }
    }

    /// The type a config.json's `torch_dtype` (or `dtype`) names, if one of these.
    pub fn from_torch_name(s: &str) -> Option<Self> {
        match s {
            "bfloat16" => Some(ExportDtype::Bf16),
            "float16" => Some(ExportDtype::F16),
            "float32" => Some(ExportDtype::F32),
            _ => None,
        }
    }

    fn safetensors(self) -> Dtype {
        match self {
            ExportDtype::Bf16 => Dtype::BF16,
            ExportDtype::F16 => Dtype::F16,
            ExportDtype::F32 => Dtype::F32,
        }
    }

    fn width(self) -> usize {
        match self {
            ExportDtype::F32 => 4,
            _ => 2,
        }
    }

    fn encode(self, v: &[f32]) -> Vec<u8> {
        encode_f32(v, self.safetensors())
    }
}

impl std::str::FromStr for ExportDtype {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "bf16" | "bfloat16" => Ok(ExportDtype::Bf16),
            "f16" | "float16" => Ok(ExportDtype::F16),
            "f32" | "float32" => Ok(ExportDtype::F32),
            _ => Err(format!("`{s}`: the export types are bf16, f16 and f32")),
        }
    }
}

/// Export settings.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The weights' type; `None`: the source config's `torch_dtype` when it is one of the three,
    /// else bf16.
    pub dtype: Option<ExportDtype>,
    /// Largest shard in bytes (a larger tensor gets a shard of its own).
    pub shard_bytes: u64,
    /// Replace an existing output folder that tlite wrote.
    pub overwrite: bool,
}

/// transformers' usual shard limit for models of a few billion parameters.
pub const DEFAULT_SHARD_BYTES: u64 = 4 << 30;

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            dtype: None,
            shard_bytes: DEFAULT_SHARD_BYTES,
            overwrite: false,
        }
    }
}

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub output: PathBuf,
    pub dtype: ExportDtype,
    pub tensors: usize,
    pub shards: Vec<String>,
    /// Bytes of tensor data.
    pub bytes: u64,
    pub seconds: f64,
}

/// The index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Files copied from the deployable model's folder when present.
const COPIED: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
];

/// Writes `m`'s weights, dequantized, as a Hugging Face checkpoint at `out`.
pub fn export(
    m: &DeployedModel,
    out: &Path,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<ExportReport> {
    let t0 = Instant::now();
    let man = &m.manifest;
    let cfg = &man.config;
    let dtype = opts
        .dtype
        .unwrap_or_else(|| source_dtype(&man.source_config));
    let config = hf_config(m, dtype)?;
    if opts.shard_bytes == 0 {
        return Err(config_err(out, "a shard size of 0 bytes"));
    }
    let output = Output::prepare(out, &[&m.dir], opts.overwrite)?;
    let tmp = output.dir().to_owned();

    // Shards filled in the layer walk's order.
    let expected = cfg.arch().expected_tensors(cfg);
    let mut shards: Vec<Vec<usize>> = Vec::new();
    let mut fill = u64::MAX;
    let mut total = 0u64;
    for (i, t) in expected.iter().enumerate() {
        let bytes = (t.numel() * dtype.width()) as u64;
        if shards.is_empty() || fill.saturating_add(bytes) > opts.shard_bytes {
            shards.push(Vec::new());
            fill = 0;
        }
        shards.last_mut().expect("a shard").push(i);
        fill += bytes;
        total += bytes;
    }
    let n = shards.len();
    let names: Vec<String> = (1..=n)
        .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
        .collect();
    progress(Event::Start {
        phase: "export",
        total: expected.len(),
    });
    let mut weight_map = serde_json::Map::new();
    let mut done = 0;
    for (shard, file) in shards.iter().zip(&names) {
        let path = tmp.join(file);
        let tensors: Vec<OutTensor> = shard
            .iter()
            .map(|&i| OutTensor {
                name: expected[i].name.clone(),
                dtype: dtype.safetensors(),
                shape: expected[i].shape.clone(),
            })
            .collect();
        let meta = HashMap::from([("format".to_owned(), "pt".to_owned())]);
        write_streaming(&path, Some(meta), &tensors, |k, w| {
            let t = &expected[shard[k]];
            let data = m.tensor_f32(&t.name)?;
            w.write_all(&dtype.encode(&data)).map_err(io_err(&path))?;
            progress(Event::Item {
                index: done,
                name: t.name.clone(),
            });
            done += 1;
            Ok(())
        })?;
        for &i in shard {
            weight_map.insert(expected[i].name.clone(), json!(file));
        }
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    write_json(&tmp.join(INDEX_FILE), &index)?;
    write_json(&tmp.join("config.json"), &config)?;
    for name in COPIED {
        let src = m.dir.join(name);
        if src.is_file() {
            std::fs::copy(&src, tmp.join(name)).map_err(io_err(&src))?;
        }
    }
    output.install()?;
    progress(Event::Done { phase: "export" });
    Ok(ExportReport {
        output: out.to_owned(),
        dtype,
        tensors: expected.len(),
        shards: names,
        bytes: total,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The type the source checkpoint was published in, when the export types include it.
fn source_dtype(source: &Value) -> ExportDtype {
    ["torch_dtype", "dtype"]
        .iter()
        .find_map(|k| source.get(k).and_then(Value::as_str))
        .and_then(ExportDtype::from_torch_name)
        .unwrap_or(ExportDtype::Bf16)
}

/// config.json for the export: the source's, with the weights' type, the tying stated, no
/// quantization settings, and the family's class where the source names none (Gemma 3's text
/// model as `gemma3_text`, the type transformers gives a flat Gemma 3 config).
pub fn hf_config(m: &DeployedModel, dtype: ExportDtype) -> Result<Value> {
    let man = &m.manifest;
    let cfg = &man.config;
    let Value::Object(mut c) = man.source_config.clone() else {
        return Err(config_err(
            &m.dir,
            "the manifest's source config is not a JSON object",
        ));
    };
    let facts = &cfg.arch().config;
    c.remove("quantization_config");
    c.insert("torch_dtype".into(), json!(dtype.torch_name()));
    if c.contains_key("dtype") {
        c.insert("dtype".into(), json!(dtype.torch_name()));
    }
    c.insert("tie_word_embeddings".into(), json!(cfg.tie_word_embeddings));
    if cfg.model_type == "gemma3" && !c.contains_key("text_config") {
        c.insert("model_type".into(), json!("gemma3_text"));
        c.insert("architectures".into(), json!([facts.hf_class]));
    }
    if !c.get("architectures").is_some_and(Value::is_array) {
        c.insert("architectures".into(), json!([facts.hf_class]));
    }
    Ok(Value::Object(c))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("JSON values serialize");
    std::fs::write(path, text + "\n").map_err(io_err(path))
}
