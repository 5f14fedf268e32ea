//! `convert`: a checkpoint in, a deployable M0E4 model out (the format and its reader:
//! `tlite_model::deploy`), written to a temporary folder and renamed only when complete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use half::f16;
use safetensors::Dtype;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tlite_model::arch::Role;
use tlite_model::deploy::{
    Chunk, DEFAULT_BINDING_LIMIT, DeployedModel, FORMAT, FORMAT_VERSION, KeepRule, MANIFEST_KEY,
    MODEL_FILE, Manifest, QuantSettings, Storage, TensorLayout,
};
use tlite_model::layer::ExpectedTensor;

use tlite_quantizer::{ErrorStats, M0E4Matrix, Method, QuantOptions};

use crate::checkpoint::Checkpoint;
use crate::events::Event;
use crate::output::Output;
use crate::rotate::{RotateOptions, Rotated};
use crate::safetensors_out::{OutTensor, encode_f32, image, write_streaming};
use crate::{Result, config_err, io_err};

/// Conversion settings.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub group: usize,
    pub method: Method,
    pub keep: Vec<KeepRule>,
    /// Largest chunk in bytes (a device's storage-binding limit).
    pub binding_limit: u64,
    /// Replace an existing output folder.
    pub overwrite: bool,
    /// Rotate the residual stream before quantizing (`crate::rotate`): the model converted is
    /// the rotated checkpoint, norms folded and LM head untied.
    pub rotate: Option<RotateOptions>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            group: 64,
            method: Method::Search,
            keep: Vec::new(),
            binding_limit: DEFAULT_BINDING_LIMIT,
            overwrite: false,
            rotate: None,
        }
    }
}

/// The named per-tensor precision policies of `tlite convert --preset`, as rules appended to a
/// conversion's own (which, matching first, take precedence).
pub const PRESETS: &[(&str, &str)] = &[
    (
        "m0e4",
        "every matrix in M0E4 at the conversion's group size (the default)",
    ),
    (
        "emb-f16",
        "the embedding and the LM head in f16, the other matrices in M0E4",
    ),
    (
        "mixed",
        "emb-f16, and attention V and the FFN down projection in M0E4 at group 32 (more bits \
         where llama.cpp's Q4_K_M spends them)",
    ),
];

/// The embedding and LM head of every supported family.
const EMBEDDINGS: &str = r"^(model\.embed_tokens|lm_head|transformer\.embedding\.word_embeddings|transformer\.output_layer)\.weight$";
/// Attention V and the FFN down projection (ChatGLM's V is inside its fused QKV).
const V_AND_DOWN: &str = r"\.(self_attn\.v_proj|mlp\.down_proj|mlp\.dense_4h_to_h)\.weight$";

/// The rules of preset `name` (see [`PRESETS`]); `None` for an unknown name.
pub fn preset(name: &str) -> Option<Vec<KeepRule>> {
    let m0e4_at = |pattern: &str, group| KeepRule {
        pattern: pattern.to_owned(),
        storage: Storage::M0E4,
        group: Some(group),
    };
    Some(match name {
        "m0e4" => Vec::new(),
        "emb-f16" => vec![KeepRule::dense(EMBEDDINGS, Storage::F16)],
        "mixed" => vec![
            KeepRule::dense(EMBEDDINGS, Storage::F16),
            m0e4_at(V_AND_DOWN, 32),
        ],
        _ => return None,
    })
}

/// What conversion did to one tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorReport {
    pub name: String,
    pub shape: Vec<usize>,
    pub storage: Storage,
    /// M0E4 only: the tensor's group size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
    pub chunks: usize,
    pub bytes: u64,
    /// Error against the source (zero for f32 storage).
    pub error: ErrorStats,
}

/// The result of a conversion.
#[derive(Clone, Debug, Serialize)]
pub struct ConvertReport {
    pub output: PathBuf,
    pub parameters: u64,
    pub bytes: u64,
    pub bits_per_weight: f64,
    pub seconds: f64,
    pub tensors: Vec<TensorReport>,
}

/// One stored safetensors entry.
struct Part {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Converts `ck` into a deployable model at `out`.
pub fn convert(
    ck: &Checkpoint,
    out: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<ConvertReport> {
    convert_inner(ck, out, opts, None, progress)
}

/// The values of a tensor by name (a [`convert_tensors`] source).
pub type TensorFn<'a> = dyn Fn(&str) -> Result<Vec<f32>> + Sync + 'a;

/// [`convert`] with every tensor's values from `tensor` instead of the checkpoint, which still
/// gives the configuration, the tensor list and the tokenizer: e.g. fake-quantized weights
/// stored dense, to measure them on the GPU. `tensor` must return the checkpoint's shapes.
pub fn convert_tensors(
    ck: &Checkpoint,
    out: &Path,
    opts: &ConvertOptions,
    tensor: &TensorFn,
    progress: &mut dyn FnMut(Event),
) -> Result<ConvertReport> {
    convert_inner(ck, out, opts, Some(tensor), progress)
}

fn convert_inner(
    ck: &Checkpoint,
    out: &Path,
    opts: &ConvertOptions,
    given: Option<&TensorFn>,
    progress: &mut dyn FnMut(Event),
) -> Result<ConvertReport> {
    let t0 = Instant::now();
    check_options(out, opts, given.is_some())?;
    let output = Output::prepare(out, &[&ck.dir], opts.overwrite)?;
    let built = build(ck, out, opts, given, progress)?;
    write_folder(ck, output, &built)?;
    progress(Event::Done { phase: "convert" });
    Ok(built.report(out, t0))
}

/// [`convert`] (or, with `given`, [`convert_tensors`]) into memory: the deployable model
/// [`DeployedModel::from_image`] opens from the bytes the folder's `model.safetensors` would
/// hold, with nothing written to disk (e.g. a configuration measured on the GPU and dropped).
pub fn convert_in_memory(
    ck: &Checkpoint,
    opts: &ConvertOptions,
    given: Option<&TensorFn>,
) -> Result<DeployedModel> {
    let label = ck.dir.join("(converted in memory)");
    check_options(&label, opts, given.is_some())?;
    let built = build(ck, &label, opts, given, &mut |_| {})?;
    let (meta, tensors) = built.file_header();
    let image = image(&label, Some(meta), &tensors, |i| &built.parts[i].bytes)?;
    drop(built);
    Ok(DeployedModel::from_image(&label, image)?)
}

fn check_options(out: &Path, opts: &ConvertOptions, given: bool) -> Result<()> {
    tlite_quantizer::check_group(opts.group)?;
    for k in &opts.keep {
        if let Some(g) = k.group {
            tlite_quantizer::check_group(g)?;
        }
    }
    if given && opts.rotate.is_some() {
        return Err(config_err(
            out,
            "a conversion of given tensors cannot also rotate them",
        ));
    }
    if opts.binding_limit < MIN_BINDING_LIMIT {
        return Err(config_err(
            out,
            format!(
                "a binding limit of {} bytes is below the minimum of {MIN_BINDING_LIMIT}",
                opts.binding_limit
            ),
        ));
    }
    Ok(())
}

/// A conversion before it is written: the manifest and every part's bytes.
struct Built {
    manifest: Manifest,
    parts: Vec<Part>,
    reports: Vec<TensorReport>,
    parameters: u64,
    /// A rotated model's config.json (it differs from the source's).
    rotated_config: Option<serde_json::Value>,
}

impl Built {
    /// The safetensors metadata (the manifest) and the tensor list of `model.safetensors`.
    fn file_header(&self) -> (HashMap<String, String>, Vec<OutTensor>) {
        let json = serde_json::to_string(&self.manifest).expect("manifest serializes");
        let meta = HashMap::from([(MANIFEST_KEY.to_owned(), json)]);
        let tensors = (self.parts.iter())
            .map(|p| OutTensor {
                name: p.name.clone(),
                dtype: p.dtype,
                shape: p.shape.clone(),
            })
            .collect();
        (meta, tensors)
    }

    fn report(self, out: &Path, t0: Instant) -> ConvertReport {
        let bytes: u64 = self.parts.iter().map(|p| p.bytes.len() as u64).sum();
        ConvertReport {
            output: out.to_owned(),
            parameters: self.parameters,
            bytes,
            bits_per_weight: bytes as f64 * 8.0 / self.parameters.max(1) as f64,
            seconds: t0.elapsed().as_secs_f64(),
            tensors: self.reports,
        }
    }
}

/// Quantizes and lays out every tensor of `ck` (the rotated checkpoint with `opts.rotate`,
/// `given`'s values with `given`), as many tensors at a time as there are worker threads.
fn build(
    ck: &Checkpoint,
    out: &Path,
    opts: &ConvertOptions,
    given: Option<&TensorFn>,
    progress: &mut dyn FnMut(Event),
) -> Result<Built> {
    use rayon::prelude::*;
    let rules: Vec<(regex::Regex, &KeepRule)> = opts
        .keep
        .iter()
        .map(|k| {
            regex::Regex::new(&k.pattern)
                .map(|re| (re, k))
                .map_err(|e| {
                    config_err(
                        out,
                        format!("keep rule `{}` is not a valid regex: {e}", k.pattern),
                    )
                })
        })
        .collect::<Result<_>>()?;
    let rotated = opts.rotate.map(|r| Rotated::new(ck, &r)).transpose()?;
    let (config, config_json) = match &rotated {
        Some(r) => (r.config(), r.config_json()),
        None => (&ck.config, &ck.config_json),
    };
    let expected = match &rotated {
        Some(r) => r.expected_tensors().to_vec(),
        None => ck.expected_tensors()?,
    };
    progress(Event::Start {
        phase: "convert",
        total: expected.len(),
    });
    let one = |t: &ExpectedTensor| -> Result<(TensorLayout, Vec<Part>, TensorReport)> {
        let data = match (&rotated, given) {
            (Some(r), _) => r.tensor_f32(&t.name)?,
            (None, Some(f)) => f(&t.name)?,
            (None, None) => ck.tensor_f32(&t.name)?,
        };
        if data.len() != t.numel() {
            return Err(config_err(
                out,
                format!(
                    "tensor {} has {} values, its shape {:?} holds {}",
                    t.name,
                    data.len(),
                    t.shape,
                    t.numel()
                ),
            ));
        }
        // An M0E4 rule applies to quantizable matrices only (a norm it matches stays f32).
        let rule = (rules.iter())
            .find(|(re, k)| {
                re.is_match(&t.name) && (k.storage != Storage::M0E4 || t.role.quantizable())
            })
            .map(|r| r.1);
        let storage = rule.map(|r| r.storage).unwrap_or(if t.role.quantizable() {
            Storage::M0E4
        } else {
            Storage::F32
        });
        let group = rule.and_then(|r| r.group).unwrap_or(opts.group);
        let (layout, parts, error) =
            store_tensor(&t.name, &t.shape, t.role, storage, &data, group, opts)?;
        let report = TensorReport {
            name: t.name.clone(),
            shape: t.shape.clone(),
            storage,
            group: layout.group,
            chunks: layout.chunks.len(),
            bytes: parts.iter().map(|p| p.bytes.len() as u64).sum(),
            error,
        };
        Ok((layout, parts, report))
    };
    let mut parts = Vec::new();
    let mut layouts = Vec::new();
    let mut reports = Vec::new();
    // A batch of tensors at a time, their f32 values in memory together: at most one per
    // worker thread and, past its first tensor, at most `BATCH_BYTES` of values.
    let threads = rayon::current_num_threads().max(1);
    let mut start = 0;
    while start < expected.len() {
        let (mut end, mut bytes) = (start, 0usize);
        while end < expected.len() && end - start < threads {
            let b = 4 * expected[end].numel();
            if end > start && bytes + b > BATCH_BYTES {
                break;
            }
            bytes += b;
            end += 1;
        }
        let done: Vec<Result<_>> = expected[start..end].par_iter().map(one).collect();
        for (j, r) in done.into_iter().enumerate() {
            let (layout, new_parts, report) = r?;
            progress(Event::Item {
                index: start + j,
                name: report.name.clone(),
            });
            parts.extend(new_parts);
            layouts.push(layout);
            reports.push(report);
        }
        start = end;
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        architecture: config.family,
        config: config.clone(),
        source_config: config_json.clone(),
        quantization: QuantSettings {
            scheme: "m0e4".into(),
            group_size: opts.group,
            method: opts.method,
            keep: opts.keep.clone(),
            binding_limit: opts.binding_limit,
            decode: "w = fma(1 + q/16, S, B); q = code k of a u32 at bits 4k..4k+3".into(),
        },
        rope_layout: ck.arch().rope,
        norm: ck.arch().norm,
        tensors: layouts,
    };
    Ok(Built {
        manifest,
        parts,
        reports,
        parameters: expected.iter().map(|t| t.numel() as u64).sum(),
        rotated_config: rotated.as_ref().map(|r| r.config_json().clone()),
    })
}

/// Most bytes of f32 values converted at once (a larger tensor is converted alone).
const BATCH_BYTES: usize = 2 << 30;

/// The smallest accepted binding limit, 1 KiB: far below any device's (wgpu guarantees
/// 128 MiB), small enough for tests to force chunking on tiny models.
pub const MIN_BINDING_LIMIT: u64 = 1 << 10;

/// Row ranges of at most `limit` bytes each (at least one row per chunk).
fn row_chunks(rows: usize, bytes_per_row: usize, limit: u64) -> Vec<(usize, usize)> {
    let per = ((limit / bytes_per_row.max(1) as u64) as usize).max(1);
    (0..rows)
        .step_by(per)
        .map(|s| (s, (s + per).min(rows)))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn store_tensor(
    name: &str,
    shape: &[usize],
    role: Role,
    storage: Storage,
    data: &[f32],
    group: usize,
    opts: &ConvertOptions,
) -> Result<(TensorLayout, Vec<Part>, ErrorStats)> {
    let mut layout = TensorLayout {
        name: name.to_owned(),
        shape: shape.to_vec(),
        role,
        storage,
        group: None,
        chunks: Vec::new(),
        sha256: String::new(),
    };
    let (rows, cols) = layout.rows_cols();
    let mut parts = Vec::new();
    let error;
    match storage {
        Storage::M0E4 => {
            let m = M0E4Matrix::quantize(data, rows, cols, &QuantOptions::new(group, opts.method))?;
            error = ErrorStats::compute(data, &m.dequantize(), cols, None, m.bits_per_weight());
            layout.group = Some(group);
            let (wpr, gpr) = (
                M0E4Matrix::words_per_row(cols),
                M0E4Matrix::groups_per_row(cols, group),
            );
            for (ci, (a, b)) in row_chunks(rows, wpr * 4, opts.binding_limit)
                .into_iter()
                .enumerate()
            {
                let base = format!("{name}@{ci}");
                let mk = |suffix: &str, dtype, width: usize, bytes: Vec<u8>| Part {
                    name: format!("{base}.{suffix}"),
                    dtype,
                    shape: vec![b - a, width],
                    bytes,
                };
                let halves = |v: &[u16]| {
                    v[a * gpr..b * gpr]
                        .iter()
                        .flat_map(|h| h.to_le_bytes())
                        .collect()
                };
                let chunk_parts = [
                    mk(
                        "packed",
                        Dtype::U32,
                        wpr,
                        m.packed[a * wpr..b * wpr]
                            .iter()
                            .flat_map(|w| w.to_le_bytes())
                            .collect(),
                    ),
                    mk("scales", Dtype::F16, gpr, halves(&m.scales)),
                    mk("biases", Dtype::F16, gpr, halves(&m.biases)),
                ];
                layout.chunks.push(Chunk {
                    rows: (a, b),
                    parts: chunk_parts.iter().map(|p| p.name.clone()).collect(),
                });
                parts.extend(chunk_parts);
            }
        }
        Storage::F16 | Storage::F32 => {
            let (dtype, width) = if storage == Storage::F16 {
                (Dtype::F16, 2)
            } else {
                (Dtype::F32, 4)
            };
            let bits = (width * 8) as f64;
            error = if storage == Storage::F16 {
                let recon: Vec<f32> = data.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
                ErrorStats::compute(data, &recon, cols, None, bits)
            } else {
                ErrorStats::compute(data, data, cols, None, bits)
            };
            for (ci, (a, b)) in row_chunks(rows, cols * width, opts.binding_limit)
                .into_iter()
                .enumerate()
            {
                let bytes = encode_f32(&data[a * cols..b * cols], dtype);
                let pshape = if shape.len() == 1 {
                    vec![cols]
                } else {
                    vec![b - a, cols]
                };
                let p = Part {
                    name: format!("{name}@{ci}"),
                    dtype,
                    shape: pshape,
                    bytes,
                };
                layout.chunks.push(Chunk {
                    rows: (a, b),
                    parts: vec![p.name.clone()],
                });
                parts.push(p);
            }
        }
    }
    let mut h = Sha256::new();
    for p in &parts {
        h.update(&p.bytes);
    }
    layout.sha256 = hex::encode(h.finalize());
    Ok((layout, parts, error))
}

/// Writes the model into the output's temporary folder and installs it.
fn write_folder(ck: &Checkpoint, output: Output, built: &Built) -> Result<()> {
    let tmp = output.dir();
    let (meta, tensors) = built.file_header();
    let model_path = tmp.join(MODEL_FILE);
    write_streaming(&model_path, Some(meta), &tensors, |i, w| {
        w.write_all(&built.parts[i].bytes)
            .map_err(io_err(&model_path))
    })?;
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
    ] {
        let src = ck.dir.join(name);
        if src.is_file() {
            std::fs::copy(&src, tmp.join(name)).map_err(io_err(&src))?;
        }
    }
    if let Some(config_json) = &built.rotated_config {
        // A rotated model's config differs from the source's (untied, `tlite_rotation`).
        let cfg = tmp.join("config.json");
        let text = serde_json::to_string_pretty(config_json).expect("config serializes");
        std::fs::write(&cfg, text + "\n").map_err(io_err(&cfg))?;
    }
    output.install()?;
    Ok(())
}
