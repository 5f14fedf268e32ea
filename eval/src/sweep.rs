//! A quantization sweep: one baseline pass, then perplexity, ΔPPL, KL divergence and top-1
//! agreement of many fake-quantized variants of the same checkpoint on the same windows.
//!
//! The baseline's log-probabilities are computed once and kept in memory
//! ([`crate::ppl::base_logprobs`]); each configuration then loads the checkpoint through
//! [`WeightSource::FakeQuant`] and is scored with [`crate::ppl::compare_to`]. Every
//! quantizable tensor (embedding, linear weights, untied LM head) is quantized, as the
//! converter does by default, unless a configuration keeps the embedding and LM head in f16
//! (`+f16emb`); bits per weight are those of the quantized matrices.
//!
//! A `+gptq` configuration quantizes every linear weight (and an untied LM head) with GPTQ
//! (`tlite_quantizer::gptq`, default options) from the Gram matrices `XᵀX` of a calibration
//! pass on the unquantized model (all layers at once, not layer by layer on the partly quantized
//! model as the GPTQ paper does); the embedding, tied LM head included, has no such input and is
//! rounded to nearest as without `+gptq` (importance-weighted with `+imp`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert_in_memory};
use tlite_model::arch::Role;
use tlite_model::deploy::Storage;
use tlite_quantizer::gptq::{self, GptqOptions, Prepared};
use tlite_quantizer::{Method, Scheme, SchemeKind};

use crate::gpu;
use crate::ppl::{self, CompareResult, PplOptions};
use crate::reference::{Calibration, LinearInput, RefError, ReferenceModel, Result, WeightSource};

/// One quantized variant: a scheme at a group size, optionally importance-weighted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SweepConfig {
    pub scheme: SchemeKind,
    pub group: usize,
    /// Weight each element's error by its input channel's mean x² from calibration.
    pub importance: bool,
    /// Keep the embedding and LM head in f16 instead of quantizing them.
    pub f16_embeddings: bool,
    /// Quantize the linear weights with GPTQ from calibration Gram matrices.
    pub gptq: bool,
}

impl SweepConfig {
    /// `m0e4-search@64`, `m0e4-search+imp@128`, `q4_0+f16emb@32`, `m0e4-search+imp+gptq@64`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.family(), self.group)
    }

    /// The scheme name with `+imp` when importance-weighted, `+gptq` with GPTQ and `+f16emb`
    /// when the embeddings are kept in f16: one plotted series.
    pub fn family(&self) -> String {
        format!(
            "{}{}{}{}",
            self.scheme.name(),
            if self.importance { "+imp" } else { "" },
            if self.gptq { "+gptq" } else { "" },
            if self.f16_embeddings { "+f16emb" } else { "" }
        )
    }

    /// Parses [`Self::label`]. A format with its own block (`mxfp4`, `q4_k`, …) may leave out
    /// `@GROUP` or give its own block; any other group is refused.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let (fam, g) = match s.rsplit_once('@') {
            Some((fam, g)) => (fam, Some(g)),
            None => (s, None),
        };
        let (fam, f16_embeddings) = match fam.strip_suffix("+f16emb") {
            Some(n) => (n, true),
            None => (fam, false),
        };
        let (fam, gptq) = match fam.strip_suffix("+gptq") {
            Some(n) => (n, true),
            None => (fam, false),
        };
        let (name, importance) = match fam.strip_suffix("+imp") {
            Some(n) => (n, true),
            None => (fam, false),
        };
        let scheme = SchemeKind::parse(name).ok_or_else(|| {
            format!(
                "`{s}`: unknown scheme `{name}`; known: {}",
                SchemeKind::ALL.map(|k| k.name()).join(", ")
            )
        })?;
        let group = config_group(s, scheme, g)?;
        if gptq && !scheme.has_grid() {
            return Err(format!(
                "`{s}`: {} cannot be quantized with GPTQ",
                scheme.name()
            ));
        }
        Ok(SweepConfig {
            scheme,
            group,
            importance,
            f16_embeddings,
            gptq,
        })
    }

    /// The default sweep: M0E4 min/max and searched at 32/64/128, searched + importance at
    /// 64/128 (when `importance`), Q4_0-style at 32 (4.5 bpw) and 64 (4.25), INT4 zero-point
    /// at 64/128, Q4_1-style min/max at 64.
    pub fn defaults(importance: bool) -> Vec<Self> {
        let c = |scheme, group, importance| SweepConfig {
            scheme,
            group,
            importance,
            f16_embeddings: false,
            gptq: false,
        };
        let mut v = Vec::new();
        for g in [32, 64, 128] {
            v.push(c(SchemeKind::M0E4(Method::MinMax), g, false));
            v.push(c(SchemeKind::M0E4(Method::Search), g, false));
        }
        if importance {
            for g in [64, 128] {
                v.push(c(SchemeKind::M0E4(Method::Search), g, true));
            }
        }
        v.push(c(SchemeKind::Q4_0, 32, false));
        v.push(c(SchemeKind::Q4_0, 64, false));
        v.push(c(SchemeKind::Int4ZeroPoint, 64, false));
        v.push(c(SchemeKind::Int4ZeroPoint, 128, false));
        v.push(c(SchemeKind::Int4FloatMin(Method::MinMax), 64, false));
        v
    }

    /// The field's 4-bit formats, each at its own block (`tlite sweep --field-formats`):
    /// MXFP4, NVFP4 and NF4 by their rules and searched, IQ4_NL and Q4_K; with `importance`
    /// also the searched ones importance-weighted.
    pub fn field_formats(importance: bool) -> Vec<Self> {
        let c = |scheme: SchemeKind, importance| SweepConfig {
            scheme,
            // a field format's own block, whatever group is asked for
            group: scheme.block_size(0),
            importance,
            f16_embeddings: false,
            gptq: false,
        };
        let mut v: Vec<Self> = SchemeKind::FIELD.iter().map(|&k| c(k, false)).collect();
        if importance {
            let searched = SchemeKind::FIELD.into_iter().filter(|k| {
                !matches!(
                    k,
                    SchemeKind::Mxfp4(Method::MinMax)
                        | SchemeKind::Nvfp4(Method::MinMax)
                        | SchemeKind::Nf4(Method::MinMax)
                )
            });
            v.extend(searched.map(|k| c(k, true)));
        }
        v
    }
}

/// The group of configuration `s`: `@GROUP` for a scheme whose group is free (required), the
/// format's own block for one that has it (`@GROUP`, if given, must be that block).
fn config_group(
    s: &str,
    scheme: SchemeKind,
    g: Option<&str>,
) -> std::result::Result<usize, String> {
    let group = match g {
        Some(g) => {
            let group: usize = g
                .parse()
                .map_err(|_| format!("`{s}`: group `{g}` is not a number"))?;
            Some(tlite_quantizer::check_group(group).map_err(|e| format!("`{s}`: {e}"))?)
        }
        None => None,
    };
    match (scheme.native_format(), group) {
        (None, Some(group)) => Ok(group),
        (None, None) => Err(format!(
            "`{s}`: expected SCHEME[+imp][+gptq][+f16emb]@GROUP, e.g. m0e4-search@64"
        )),
        (Some((block, _)), None) => Ok(block),
        (Some((block, _)), Some(group)) if group == block => Ok(block),
        (Some((block, _)), Some(group)) => Err(format!(
            "`{s}`: {} has its own block of {block} weights, not {group}: write {} or {}@{block}",
            scheme.name(),
            scheme.name(),
            scheme.name()
        )),
    }
}

/// One configuration's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepRow {
    pub config: String,
    /// Series name: the scheme, with `+imp` when importance-weighted.
    pub family: String,
    pub group: usize,
    pub importance: bool,
    /// The embedding and LM head were kept in f16 (else quantized like every matrix).
    pub f16_embeddings: bool,
    /// The linear weights were quantized with GPTQ (absent in reports without GPTQ rows).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gptq: bool,
    /// Storage bits per weight of the quantized matrices with their shapes (a row's last
    /// group may be short, e.g. SmolLM2's 576 columns at g = 128). Includes the embedding
    /// and LM head unless `f16_embeddings`.
    pub bits_per_weight: f64,
    /// Bits per weight of all weight matrices, the embedding and LM head included at their
    /// storage (equal to `bits_per_weight` unless `f16_embeddings`).
    pub all_matrices_bits_per_weight: f64,
    /// `Scheme::bits_per_weight(group)`: 4 bits plus the group's parameters over `group`.
    pub nominal_bits_per_weight: f64,
    pub ppl: f64,
    pub ppl_err: f64,
    pub delta_ppl_pct: f64,
    /// One standard error of `delta_ppl_pct` (absent in reports of older builds).
    #[serde(default)]
    pub delta_ppl_err_pct: Option<f64>,
    /// Mean KL(base ‖ quant) per scored token, in nats.
    pub kld_mean: f64,
    pub kld_err: f64,
    pub kld_p99: f64,
    pub top1_agree_pct: f64,
    pub rms_delta_p_pct: f64,
    /// On the GPU, for an M0E4 configuration the converter can make (no importance, GPTQ or
    /// f16 embeddings): the converted model through the runtime's M0E4 kernels against its
    /// fake-quantized weights uploaded dense (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<NativeCheck>,
    /// Loading and fake-quantizing the checkpoint.
    pub quantize_seconds: f64,
    /// Scoring the windows.
    pub eval_seconds: f64,
}

/// The converted M0E4 model (native kernels) against the same weights dense, on the same
/// windows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NativeCheck {
    pub kld_mean: f64,
    pub kld_max: f64,
    pub top1_agree_pct: f64,
    /// Within the parity tolerance (`crate::parity::tolerance`: mean KLD ≤ 1e-3, top-1 ≥ 99%,
    /// as for a real model).
    pub within_tolerance: bool,
}

/// Where the importance statistics came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// Token positions observed.
    pub tokens: u64,
    pub windows: usize,
    /// A human description of the text slice (never the evaluated tokens).
    pub source: String,
    /// Memory of the Gram matrices `XᵀX` collected for GPTQ (absent when none were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gram_bytes: Option<u64>,
}

/// A whole sweep of one model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepReport {
    pub model: String,
    pub architecture: String,
    pub data: String,
    pub ctx: usize,
    pub windows: usize,
    pub tokens_scored: usize,
    /// The BOS id the tokenizer adds, if any: before the text and at the start of every window
    /// (llama.cpp's windows, `ppl::windows`).
    pub bos: Option<u32>,
    /// Weights in all quantizable matrices (embedding and LM head included).
    pub quantized_weights: u64,
    pub base_ppl: f64,
    pub base_ppl_err: f64,
    /// Reference tokens (all window positions) per second of the baseline pass.
    pub base_tokens_per_second: f64,
    pub calibration: Option<CalibrationInfo>,
    /// Rayon threads the reference ran on.
    pub threads: usize,
    /// The GPU adapter the windows were scored on and the precision of its matrix products
    /// ([`tlite_runtime_gpu::Gpu::compute_label`]; absent: the CPU reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub rows: Vec<SweepRow>,
}

/// What a sweep reports while it runs.
pub enum SweepEvent<'a> {
    /// A phase begins (`baseline`, `calibration`, or a configuration's label).
    Phase { name: String, windows: usize },
    /// `done` of the phase's windows are finished.
    Window { done: usize },
    /// A configuration finished; the report so far.
    Row(&'a SweepReport),
}

/// What to sweep.
pub struct SweepInput<'a> {
    pub checkpoint: &'a Checkpoint,
    /// A label for the report (the path or repo id given).
    pub model: String,
    pub data: String,
    /// The evaluated tokens (windowed by `opts`).
    pub tokens: &'a [u32],
    pub opts: PplOptions,
    /// Tokens for the calibration pass (disjoint from `tokens`), and their description;
    /// required when a configuration is importance-weighted.
    pub calibration: Option<(&'a [u32], String)>,
    pub configs: Vec<SweepConfig>,
    /// Score on this GPU, else on the CPU reference.
    pub gpu: Option<SweepGpu<'a>>,
}

/// A sweep on the GPU: the baseline and every configuration's weights uploaded `dense`, M0E4
/// configurations also converted and run through the runtime's M0E4 kernels
/// ([`SweepRow::native`]).
#[derive(Clone, Copy)]
pub struct SweepGpu<'a> {
    pub gpu: &'a tlite_runtime_gpu::Gpu,
    pub run: tlite_runtime_gpu::RunOptions,
    pub dense: Storage,
}

/// Most memory the CPU sweep's baseline log-probabilities may take.
pub const MAX_CPU_BASE_BYTES: u64 = 16 << 30;

/// Where a sweep scores its windows.
enum Engine<'a> {
    /// The CPU reference, against the baseline's log-probabilities kept in memory.
    Cpu(ppl::BaseLogprobs),
    /// The GPU, against the baseline model resident on it (exact KL divergence).
    Gpu(SweepGpu<'a>, Box<tlite_runtime_gpu::GpuModel>),
}

/// Storage bits per weight under `c`: of the quantized matrices, and of all weight matrices
/// (f16 embeddings included at 16 bits); and the number of weights in all matrices.
pub fn bits_per_weight(ck: &Checkpoint, c: &SweepConfig) -> (f64, f64, u64) {
    let (mut qbits, mut qn, mut bits, mut n) = (0f64, 0u64, 0f64, 0u64);
    for t in ck.arch().expected_tensors(&ck.config) {
        if !(t.role.quantizable() && t.shape.len() == 2) {
            continue;
        }
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let numel = (rows * cols) as u64;
        n += numel;
        if c.f16_embeddings && matches!(t.role, Role::Embedding | Role::LmHead) {
            bits += 16.0 * numel as f64;
            continue;
        }
        let b = tlite_quantizer::matrix_bits(&c.scheme, rows, cols, c.group);
        qbits += b;
        bits += b;
        qn += numel;
    }
    (qbits / qn.max(1) as f64, bits / n.max(1) as f64, n)
}

/// Runs the sweep.
pub fn sweep(input: &SweepInput, events: &mut dyn FnMut(SweepEvent)) -> Result<SweepReport> {
    let ck = input.checkpoint;
    let opts = &input.opts;
    opts.check()?;
    let n_windows = ppl::windows(input.tokens, opts).len();
    if n_windows == 0 {
        return Err(ppl::PplOptionsError::NotOneWindow {
            tokens: input.tokens.len(),
            ctx: opts.ctx,
        }
        .into());
    }
    let needs_imp = input.configs.iter().any(|c| c.importance);
    let needs_gram = input.configs.iter().any(|c| c.gptq);
    if (needs_imp || needs_gram) && input.calibration.is_none() {
        return Err(RefError::Unsupported(
            "importance-weighted and GPTQ configurations need calibration tokens".into(),
        ));
    }
    fn phase(events: &mut dyn FnMut(SweepEvent), name: &str, windows: usize) {
        events(SweepEvent::Phase {
            name: name.to_owned(),
            windows,
        })
    }

    // The CPU reference of the baseline: for the CPU's windows and for calibration.
    let base_model = match input.gpu.is_none() || needs_imp || needs_gram {
        true => Some(ReferenceModel::load(&WeightSource::Checkpoint(ck))?),
        false => None,
    };
    let reference = || {
        base_model
            .as_ref()
            .ok_or_else(|| RefError::Unsupported("the sweep did not load the reference".into()))
    };
    phase(events, "baseline", n_windows);
    let max_pos = ck.config.max_position_embeddings;
    let mut tick = |d, _| events(SweepEvent::Window { done: d });
    let (mut engine, base_result) = match input.gpu {
        Some(sg) => {
            let mut m = gpu::load_dense(sg.gpu, ck, None, sg.run, sg.dense)?;
            let r = gpu::perplexity(sg.gpu, &mut m, max_pos, input.tokens, opts, &mut tick)?;
            (Engine::Gpu(sg, Box::new(m)), r)
        }
        None => {
            let rows = ppl::windows(input.tokens, opts)
                .iter()
                .map(|w| ppl::scored_targets(w, opts).count() as u64)
                .sum::<u64>();
            let bytes = rows * ck.config.vocab_size as u64 * 4;
            if bytes > MAX_CPU_BASE_BYTES {
                return Err(RefError::Unsupported(format!(
                    "a sweep on the CPU keeps the baseline's log-probabilities of every scored \
                     position in memory: {:.1} GiB for {n_windows} windows, above the limit of \
                     {} GiB; sweep on the GPU (which keeps the baseline model instead) or over \
                     fewer windows",
                    bytes as f64 / (1u64 << 30) as f64,
                    MAX_CPU_BASE_BYTES >> 30
                )));
            }
            let b = ppl::base_logprobs(reference()?, input.tokens, opts, &mut tick)?;
            let r = b.result.clone();
            (Engine::Cpu(b), r)
        }
    };
    let mut calibration = None;
    let mut stats = None;
    let importance: Option<HashMap<String, Vec<f32>>> = match &input.calibration {
        Some((tokens, source)) if needs_imp || needs_gram => {
            let all = PplOptions {
                max_windows: None,
                ..opts.clone()
            };
            let windows = ppl::windows(tokens, &all).len();
            phase(events, "calibration", windows);
            let mut progress = |d, _| events(SweepEvent::Window { done: d });
            let s = if needs_gram {
                let max = Calibration::DEFAULT_MAX_GRAM_BYTES;
                Calibration::collect_gram(
                    reference()?,
                    tokens,
                    opts.ctx,
                    opts.bos,
                    max,
                    &mut progress,
                )?
            } else {
                Calibration::collect(reference()?, tokens, opts.ctx, opts.bos, &mut progress)?
            };
            calibration = Some(CalibrationInfo {
                tokens: s.positions(),
                windows,
                source: source.clone(),
                gram_bytes: needs_gram.then(|| Calibration::gram_bytes(&ck.config)),
            });
            let imp = s.importance(&ck.config);
            stats = Some(s);
            Some(imp)
        }
        _ => None,
    };
    drop(base_model);

    let mut report = SweepReport {
        model: input.model.clone(),
        architecture: ck.config.model_type.clone(),
        data: input.data.clone(),
        ctx: opts.ctx,
        windows: n_windows,
        tokens_scored: base_result.tokens_scored,
        bos: opts.bos,
        quantized_weights: bits_per_weight(ck, &SweepConfig::defaults(false)[0]).2,
        base_ppl: base_result.ppl,
        base_ppl_err: base_result.ppl_err,
        base_tokens_per_second: base_result.tokens_per_second,
        calibration,
        threads: rayon::current_num_threads(),
        device: input.gpu.map(|g| g.gpu.compute_label()),
        rows: Vec::new(),
    };
    for c in &input.configs {
        phase(events, &c.label(), n_windows);
        let t0 = Instant::now();
        let fake = WeightSource::FakeQuant {
            source: ck,
            scheme: c.scheme,
            group: c.group,
            importance: if c.importance {
                importance.as_ref()
            } else {
                None
            },
            f16_embeddings: c.f16_embeddings,
        };
        let gptq = match (&stats, c.gptq) {
            (Some(stats), true) => Some(GptqSource::new(ck, stats, c, &fake)),
            _ => None,
        };
        let gptq_tensor = |name: &str| {
            gptq.as_ref()
                .map_or_else(|| fake.tensor_f32(name), |g| g.tensor(name))
        };
        let computed = WeightSource::Computed {
            source: ck,
            tensor: &gptq_tensor,
            label: format!("GPTQ {} g={}", c.scheme.name(), c.group),
        };
        let source = if gptq.is_some() { &computed } else { &fake };
        let mut tick = |d, _| events(SweepEvent::Window { done: d });
        let (r, native, quantize_seconds) = match &mut engine {
            Engine::Cpu(base) => {
                let model = ReferenceModel::load(source)?;
                let q = t0.elapsed().as_secs_f64();
                (
                    ppl::compare_to(base, &model, input.tokens, opts, &mut tick)?,
                    None,
                    q,
                )
            }
            Engine::Gpu(SweepGpu { gpu: g, run, dense }, base) => {
                let (g, run, dense) = (*g, *run, *dense);
                let toks = input.tokens;
                // A configuration the converter makes is quantized once: the converted model
                // runs through the M0E4 kernels, its dequantized weights (the fake
                // quantization's, bit for bit) are the dense model.
                let converted = native_options(c)
                    .map(|copts| convert_in_memory(ck, &copts, None))
                    .transpose()?;
                let mut native = (converted.as_ref())
                    .map(|d| gpu::upload(g, d, run))
                    .transpose()?;
                let mut model = {
                    let tensor = |name: &str| match &converted {
                        Some(d) => Ok(d.tensor_f32(name)?),
                        None => source.tensor_f32(name),
                    };
                    gpu::load_dense(g, ck, Some(&tensor), run, dense)?
                };
                drop(converted);
                let q = t0.elapsed().as_secs_f64();
                let r = gpu::compare(g, base, &mut model, max_pos, toks, opts, &mut tick)?;
                let check = (native.as_mut())
                    .map(|n| native_check(g, max_pos, &mut model, n, toks, opts))
                    .transpose()?;
                (r, check, q)
            }
        };
        let (bpw, all_bpw, _) = bits_per_weight(ck, c);
        report.rows.push(SweepRow {
            config: c.label(),
            family: c.family(),
            group: c.group,
            importance: c.importance,
            f16_embeddings: c.f16_embeddings,
            gptq: c.gptq,
            bits_per_weight: bpw,
            all_matrices_bits_per_weight: all_bpw,
            nominal_bits_per_weight: c.scheme.bits_per_weight(c.group),
            ppl: r.quant.ppl,
            ppl_err: r.quant.ppl_err,
            delta_ppl_pct: r.delta_ppl_pct,
            delta_ppl_err_pct: Some(r.delta_ppl_err_pct),
            kld_mean: r.kld_mean,
            kld_err: r.kld_err,
            kld_p99: r.kld_p99,
            top1_agree_pct: r.top1_agree_pct,
            rms_delta_p_pct: r.rms_delta_p_pct,
            native,
            quantize_seconds,
            eval_seconds: r.quant.seconds,
        });
        events(SweepEvent::Row(&report));
    }
    Ok(report)
}

/// The converter's options for `c`, when it is an M0E4 configuration the converter makes (no
/// importance weighting, GPTQ or f16 embeddings).
fn native_options(c: &SweepConfig) -> Option<ConvertOptions> {
    match c.scheme {
        SchemeKind::M0E4(method) if !(c.importance || c.gptq || c.f16_embeddings) => {
            Some(ConvertOptions {
                group: c.group,
                method,
                ..Default::default()
            })
        }
        _ => None,
    }
}

/// The converted M0E4 model through the runtime's M0E4 kernels (`native`) against the same
/// weights dense (`dense`), on the same windows.
fn native_check(
    g: &tlite_runtime_gpu::Gpu,
    max_pos: usize,
    dense: &mut tlite_runtime_gpu::GpuModel,
    native: &mut tlite_runtime_gpu::GpuModel,
    tokens: &[u32],
    opts: &PplOptions,
) -> Result<NativeCheck> {
    let r: CompareResult = gpu::compare(g, dense, native, max_pos, tokens, opts, &mut |_, _| {})?;
    use crate::parity::tolerance::{KLD_MAX, TOP1_MIN_PCT_REAL};
    Ok(NativeCheck {
        kld_mean: r.kld_mean,
        kld_max: r.kld_max,
        top1_agree_pct: r.top1_agree_pct,
        within_tolerance: r.kld_mean <= KLD_MAX && r.top1_agree_pct >= TOP1_MIN_PCT_REAL,
    })
}

/// The tensors of a `+gptq` configuration: GPTQ for every linear weight (and untied LM head)
/// whose input site has a Gram matrix, `fake`'s rounding for the rest.
struct GptqSource<'a> {
    ck: &'a Checkpoint,
    stats: &'a Calibration,
    config: &'a SweepConfig,
    fake: &'a WeightSource<'a>,
    /// GPTQ-able tensors: (site, rows, cols).
    targets: HashMap<String, (LinearInput, usize, usize)>,
    /// The factorizations of the sites used most recently, each computed once: q/k/v and
    /// gate/up share one, and the converter loads a batch of tensors at a time, in order.
    recent: Mutex<VecDeque<(LinearInput, Slot)>>,
}

/// A site's factorization, filled by the first tensor that needs it (the others wait).
type Slot = Arc<Mutex<Option<Arc<Prepared>>>>;

impl<'a> GptqSource<'a> {
    fn new(
        ck: &'a Checkpoint,
        stats: &'a Calibration,
        config: &'a SweepConfig,
        fake: &'a WeightSource<'a>,
    ) -> Self {
        let sites = Calibration::tensor_sites(&ck.config);
        let targets = ck
            .arch()
            .expected_tensors(&ck.config)
            .into_iter()
            .filter(|t| {
                t.shape.len() == 2
                    && match t.role {
                        Role::Linear => true,
                        Role::LmHead => !config.f16_embeddings,
                        _ => false,
                    }
            })
            .filter_map(|t| {
                let site = *sites.get(&t.name)?;
                Some((t.name, (site, t.shape[0], t.shape[1])))
            })
            .collect();
        GptqSource {
            ck,
            stats,
            config,
            fake,
            targets,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// The factorization of `site`'s Gram matrix, computed once; `None` when the site has none.
    fn prepared(&self, site: LinearInput) -> tlite_converter::Result<Option<Arc<Prepared>>> {
        let slot = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            match recent.iter().find(|(s, _)| *s == site) {
                Some((_, slot)) => slot.clone(),
                None => {
                    let slot = Slot::default();
                    recent.push_back((site, slot.clone()));
                    // Enough for the sites of a batch in flight (7 linear tensors use 4 sites).
                    if recent.len() > rayon::current_num_threads().max(4) {
                        recent.pop_front();
                    }
                    slot
                }
            }
        };
        let mut p = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = &*p {
            return Ok(Some(p.clone()));
        }
        let Some((h, n)) = self.stats.gram(site) else {
            return Ok(None);
        };
        let new = Arc::new(gptq::prepare(&h, n, &GptqOptions::default())?);
        *p = Some(new.clone());
        Ok(Some(new))
    }

    fn tensor(&self, name: &str) -> tlite_converter::Result<Vec<f32>> {
        let Some(&(site, rows, cols)) = self.targets.get(name) else {
            return self.fake.tensor_f32(name);
        };
        let Some(prepared) = self.prepared(site)? else {
            return self.fake.tensor_f32(name);
        };
        let data = self.ck.tensor_f32(name)?;
        let c = self.config;
        Ok(gptq::quantize(
            &c.scheme, &data, rows, cols, c.group, &prepared,
        )?)
    }
}

impl SweepReport {
    /// A Markdown table: the baseline, then one row per configuration (with the bits per
    /// weight of all matrices when some configuration keeps the embeddings in f16).
    pub fn to_markdown(&self) -> String {
        let all = self.rows.iter().any(|r| r.f16_embeddings);
        let mut s = String::from("| config | bits/weight |");
        s += if all { " all matrices |" } else { "" };
        s += " PPL | ΔPPL % | mean KLD | top-1 % |\n|---|---:|";
        s += if all { "---:|" } else { "" };
        s += "---:|---:|---:|---:|\n";
        s += &format!(
            "| baseline (f32) | 32 |{} {:.4} ± {:.4} | — | — | — |\n",
            if all { " 32 |" } else { "" },
            self.base_ppl,
            self.base_ppl_err
        );
        for r in &self.rows {
            s += &format!("| {} | {:.3} |", r.config, r.bits_per_weight);
            if all {
                s += &format!(" {:.3} |", r.all_matrices_bits_per_weight);
            }
            let err = r
                .delta_ppl_err_pct
                .map_or(String::new(), |e| format!(" ± {e:.2}"));
            s += &format!(
                " {:.4} | {:+.2}{err} | {:.4} ± {:.4} | {:.2} |\n",
                r.ppl, r.delta_ppl_pct, r.kld_mean, r.kld_err, r.top1_agree_pct
            );
        }
        s
    }
}
