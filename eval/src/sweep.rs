//! A quantization sweep: one baseline pass, then perplexity, ΔPPL, KL divergence and top-1
//! agreement of many fake-quantized variants of the same checkpoint on the same windows.
//!
//! The baseline's log-probabilities are computed once and kept in memory
//! ([`crate::ppl::base_logprobs`]); each configuration then loads the checkpoint through
//! [`WeightSource::FakeQuant`] and is scored with [`crate::ppl::compare_to`]. Every
//! quantizable tensor (embedding, linear weights, untied LM head) is quantized, as the
//! converter does by default, unless a configuration keeps the embedding and LM head in f16
//! (`+f16emb`); bits per weight are those of the quantized matrices.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tlite_converter::checkpoint::Checkpoint;
use tlite_model::arch::Role;
use tlite_quantizer::{Method, Scheme, SchemeKind};

use crate::ppl::{self, PplOptions};
use crate::reference::{Calibration, RefError, ReferenceModel, Result, WeightSource};

/// One quantized variant: a scheme at a group size, optionally importance-weighted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SweepConfig {
    pub scheme: SchemeKind,
    pub group: usize,
    /// Weight each element's error by its input channel's mean x² from calibration.
    pub importance: bool,
    /// Keep the embedding and LM head in f16 instead of quantizing them.
    pub f16_embeddings: bool,
}

impl SweepConfig {
    /// `m0e4-search@64`, `m0e4-search+imp@128`, `q4_0+f16emb@32`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.family(), self.group)
    }

    /// The scheme name with `+imp` when importance-weighted and `+f16emb` when the embeddings
    /// are kept in f16: one plotted series.
    pub fn family(&self) -> String {
        format!(
            "{}{}{}",
            self.scheme.name(),
            if self.importance { "+imp" } else { "" },
            if self.f16_embeddings { "+f16emb" } else { "" }
        )
    }

    /// Parses [`Self::label`].
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let (fam, g) = s.rsplit_once('@').ok_or_else(|| {
            format!("`{s}`: expected SCHEME[+imp][+f16emb]@GROUP, e.g. m0e4-search@64")
        })?;
        let group: usize = g
            .parse()
            .map_err(|_| format!("`{s}`: group `{g}` is not a number"))?;
        tlite_quantizer::check_group(group).map_err(|e| format!("`{s}`: {e}"))?;
        let (fam, f16_embeddings) = match fam.strip_suffix("+f16emb") {
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
                SchemeKind::REPORT.map(|k| k.name()).join(", ")
            )
        })?;
        Ok(SweepConfig {
            scheme,
            group,
            importance,
            f16_embeddings,
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
    /// Loading and fake-quantizing the checkpoint.
    pub quantize_seconds: f64,
    /// Scoring the windows.
    pub eval_seconds: f64,
}

/// Where the importance statistics came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// Token positions observed.
    pub tokens: u64,
    pub windows: usize,
    /// A human description of the text slice (never the evaluated tokens).
    pub source: String,
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
}

/// Storage bits per weight under `c`: of the quantized matrices, and of all weight matrices
/// (f16 embeddings included at 16 bits); and the number of weights in all matrices.
pub fn bits_per_weight(ck: &Checkpoint, c: &SweepConfig) -> (f64, f64, u64) {
    let per_group = (c.scheme.bits_per_weight(c.group) - 4.0) * c.group as f64;
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
        let b = 4.0 * numel as f64 + (rows * cols.div_ceil(c.group)) as f64 * per_group;
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
    if needs_imp && input.calibration.is_none() {
        return Err(RefError::Unsupported(
            "importance-weighted configurations need calibration tokens".into(),
        ));
    }
    fn phase(events: &mut dyn FnMut(SweepEvent), name: &str, windows: usize) {
        events(SweepEvent::Phase {
            name: name.to_owned(),
            windows,
        })
    }

    let base_model = ReferenceModel::load(&WeightSource::Checkpoint(ck))?;
    phase(events, "baseline", n_windows);
    let base = ppl::base_logprobs(&base_model, input.tokens, opts, &mut |d, _| {
        events(SweepEvent::Window { done: d })
    })?;
    let mut calibration = None;
    let importance: Option<HashMap<String, Vec<f32>>> = match &input.calibration {
        Some((tokens, source)) if needs_imp => {
            let all = PplOptions {
                max_windows: None,
                ..opts.clone()
            };
            let windows = ppl::windows(tokens, &all).len();
            phase(events, "calibration", windows);
            let stats =
                Calibration::collect(&base_model, tokens, opts.ctx, opts.bos, &mut |d, _| {
                    events(SweepEvent::Window { done: d })
                })?;
            calibration = Some(CalibrationInfo {
                tokens: stats.positions(),
                windows,
                source: source.clone(),
            });
            Some(stats.importance(&ck.config))
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
        tokens_scored: base.result.tokens_scored,
        bos: opts.bos,
        quantized_weights: bits_per_weight(ck, &SweepConfig::defaults(false)[0]).2,
        base_ppl: base.result.ppl,
        base_ppl_err: base.result.ppl_err,
        base_tokens_per_second: base.result.tokens_per_second,
        calibration,
        threads: rayon::current_num_threads(),
        rows: Vec::new(),
    };
    for c in &input.configs {
        phase(events, &c.label(), n_windows);
        let t0 = Instant::now();
        let model = ReferenceModel::load(&WeightSource::FakeQuant {
            source: ck,
            scheme: c.scheme,
            group: c.group,
            importance: if c.importance {
                importance.as_ref()
            } else {
                None
            },
            f16_embeddings: c.f16_embeddings,
        })?;
        let quantize_seconds = t0.elapsed().as_secs_f64();
        let r = ppl::compare_to(&base, &model, input.tokens, opts, &mut |d, _| {
            events(SweepEvent::Window { done: d })
        })?;
        drop(model);
        let (bpw, all_bpw, _) = bits_per_weight(ck, c);
        report.rows.push(SweepRow {
            config: c.label(),
            family: c.family(),
            group: c.group,
            importance: c.importance,
            f16_embeddings: c.f16_embeddings,
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
            quantize_seconds,
            eval_seconds: r.quant.seconds,
        });
        events(SweepEvent::Row(&report));
    }
    Ok(report)
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
