//! Measuring on the GPU: perplexity, and KL divergence, top-1 agreement and Δp against a
//! baseline, on exactly the windows of the CPU reference ([`crate::ppl::windows`]) and with its
//! statistics. Every scored row is reduced on the GPU by the runtime's score kernel
//! (`GpuModel::step_scored`); per row only a few numbers come back.
//!
//! A baseline is either another model resident on the same device (exact KL divergence:
//! [`compare`]) or a [`TopKBase`] computed once ([`base_topk`], like llama.cpp's
//! `--kl-divergence-base`) and kept in memory or in a file: each row's `k` largest
//! log-probabilities and the log-probability of its target. Its KL divergence takes the rest of
//! the baseline's mass as one bucket, which by the log-sum inequality is a lower bound of the
//! exact one; [`CompareResult`] of [`compare_to`] reports the mean mass the quantized model puts
//! on the baseline's top k, and the exact figure is a `compare` away.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, TensorFn, convert_in_memory};
use tlite_model::deploy::{DeployedModel, KeepRule, Storage};
use tlite_runtime_gpu::{Baseline, Gpu, GpuError, GpuModel, MAX_TOP_K, RunOptions, Scored};

use crate::load::{Opened, Weights};
use crate::ppl::{Acc, CompareResult, Comparison, PplOptions, PplResult, scored_targets, windows};
use crate::reference::{RefError, Result};

fn gpu_err(e: GpuError) -> RefError {
    RefError::Unsupported(format!("GPU: {e}"))
}

/// `opened` on the GPU with `opts`: a deployable model as it is stored, a checkpoint
/// converted first, in memory, with every tensor `dense` (f32: the checkpoint's values
/// exactly; f16: rounded). Also returns the model's trained positions.
pub fn load(
    gpu: &Gpu,
    opened: &Opened,
    opts: RunOptions,
    dense: Storage,
) -> Result<(GpuModel, usize)> {
    let max_positions = opened.source().config().max_position_embeddings;
    let model = match &opened.weights {
        Weights::Deployed(d) => upload(gpu, d, opts)?,
        Weights::Checkpoint(ck) => load_dense(gpu, ck, None, opts, dense)?,
    };
    Ok((model, max_positions))
}

/// The deployable model `model` on the GPU.
pub fn upload(gpu: &Gpu, model: &DeployedModel, opts: RunOptions) -> Result<GpuModel> {
    GpuModel::load(gpu, model, opts).map_err(gpu_err)
}

/// The checkpoint `ck` on the GPU with every tensor stored `dense`, its values `tensor`'s
/// (e.g. fake-quantized weights) or, without one, the checkpoint's; converted in memory
/// (nothing is written to disk).
pub fn load_dense(
    gpu: &Gpu,
    ck: &Checkpoint,
    tensor: Option<&TensorFn>,
    opts: RunOptions,
    dense: Storage,
) -> Result<GpuModel> {
    let copts = ConvertOptions {
        keep: vec![KeepRule::dense(".*", dense)],
        ..Default::default()
    };
    upload(gpu, &convert_in_memory(ck, &copts, tensor)?, opts)
}

/// One step of a window: tokens `start..end` and the step-relative rows scored, with their
/// targets.
struct Step {
    start: usize,
    end: usize,
    rows: Vec<u32>,
    targets: Vec<u32>,
}

/// A window cut into steps of at most `max_batch` tokens.
fn steps(window: &[u32], opts: &PplOptions, max_batch: usize) -> Vec<Step> {
    let scored: Vec<(usize, u32)> = scored_targets(window, opts).collect();
    (0..window.len())
        .step_by(max_batch.max(1))
        .map(|start| {
            let end = (start + max_batch).min(window.len());
            let (rows, targets) = scored
                .iter()
                .filter(|(p, _)| (start..end).contains(p))
                .map(|&(p, t)| ((p - start) as u32, t))
                .unzip();
            Step {
                start,
                end,
                rows,
                targets,
            }
        })
        .collect()
}

/// Runs one step of `window`: scored when it has rows, else submitted without a readback.
fn run_step(
    gpu: &Gpu,
    model: &mut GpuModel,
    window: &[u32],
    s: &Step,
    base: Baseline<'_>,
    k_out: usize,
) -> Result<Option<Scored>> {
    let tokens = &window[s.start..s.end];
    if s.rows.is_empty() {
        model.step(gpu, tokens, s.start, &[]).map_err(gpu_err)?;
        return Ok(None);
    }
    model
        .step_scored(gpu, tokens, s.start, &s.rows, &s.targets, base, k_out)
        .map(Some)
        .map_err(gpu_err)
}

/// Checks the options against the model's positions and its KV cache.
fn check(model: &GpuModel, tokens: &[u32], opts: &PplOptions, max_positions: usize) -> Result<()> {
    opts.check_positions(max_positions, tokens)?;
    if opts.ctx > model.opts.max_seq {
        return Err(RefError::Unsupported(format!(
            "a window of {} tokens does not fit the GPU model's cache of {} positions",
            opts.ctx, model.opts.max_seq
        )));
    }
    Ok(())
}

/// Perplexity of `model` (at most `max_positions` positions) over `tokens`.
pub fn perplexity(
    gpu: &Gpu,
    model: &mut GpuModel,
    max_positions: usize,
    tokens: &[u32],
    opts: &PplOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PplResult> {
    Ok(
        base_topk(gpu, model, max_positions, tokens, opts, 0, progress)?
            .header
            .result,
    )
}

/// One window of a [`TopKBase`]: per scored row, the log-probability of its target, and its
/// `k` largest log-probabilities with their ids (largest first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowTopK {
    pub target_logprob: Vec<f32>,
    pub ids: Vec<u32>,
    pub logprobs: Vec<f32>,
}

/// A baseline's scored rows over every window, kept for comparisons ([`compare_to`]).
#[derive(Clone, Debug)]
pub struct TopKBase {
    pub header: TopKHeader,
    pub windows: Vec<WindowTopK>,
}

/// What a [`TopKBase`] was computed on: checked before it is used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopKHeader {
    pub k: usize,
    pub vocab: usize,
    pub ctx: usize,
    pub score_all: bool,
    pub bos: Option<u32>,
    /// Scored rows per window, in order.
    pub rows: Vec<usize>,
    /// FNV-1a of the windows' tokens: the same text, tokenizer and windows.
    pub tokens_hash: u64,
    /// The baseline's perplexity on these windows.
    pub result: PplResult,
}

/// FNV-1a over the windows' tokens.
fn tokens_hash(ws: &[Vec<u32>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in ws.iter().flatten() {
        for b in t.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Runs `model` over the windows of `tokens`, keeping each scored row's top `k` (none with
/// `k` = 0: perplexity only).
pub fn base_topk(
    gpu: &Gpu,
    model: &mut GpuModel,
    max_positions: usize,
    tokens: &[u32],
    opts: &PplOptions,
    k: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TopKBase> {
    check(model, tokens, opts, max_positions)?;
    if k > MAX_TOP_K.min(model.vocab) {
        return Err(RefError::Unsupported(format!(
            "a top-{k} baseline: use 1..={MAX_TOP_K} (and at most the vocabulary)"
        )));
    }
    let t0 = Instant::now();
    let ws = windows(tokens, opts);
    let mut acc = Acc::default();
    let mut out = Vec::with_capacity(ws.len());
    let mut rows = Vec::with_capacity(ws.len());
    let max_batch = model.opts.max_batch;
    for (i, w) in ws.iter().enumerate() {
        let mut wt = WindowTopK::default();
        for s in steps(w, opts, max_batch) {
            if let Some(sc) = run_step(gpu, model, w, &s, Baseline::None, k)? {
                for r in &sc.rows {
                    acc.nll.push(-f64::from(r.logprob));
                    wt.target_logprob.push(r.logprob);
                }
                wt.ids.extend(sc.top_ids);
                wt.logprobs.extend(sc.top_logprobs);
            }
        }
        rows.push(wt.target_logprob.len());
        if k > 0 {
            out.push(wt);
        }
        progress(i + 1, ws.len());
    }
    let result = acc.result(ws.len(), opts.ctx, t0.elapsed().as_secs_f64());
    Ok(TopKBase {
        header: TopKHeader {
            k,
            vocab: model.vocab,
            ctx: opts.ctx,
            score_all: opts.score_all,
            bos: opts.bos,
            rows,
            tokens_hash: tokens_hash(&ws),
            result,
        },
        windows: out,
    })
}

/// KL divergence, top-1 agreement and Δp of `quant` against `base`, both resident on the same
/// device and run window by window on the same steps: every quantity exact up to f32 rounding.
pub fn compare(
    gpu: &Gpu,
    base: &mut GpuModel,
    quant: &mut GpuModel,
    max_positions: usize,
    tokens: &[u32],
    opts: &PplOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CompareResult> {
    check(base, tokens, opts, max_positions)?;
    check(quant, tokens, opts, max_positions)?;
    if base.vocab != quant.vocab {
        return Err(RefError::Unsupported(format!(
            "the baseline's vocabulary of {} is not the quantized model's {}",
            base.vocab, quant.vocab
        )));
    }
    let ws = windows(tokens, opts);
    let mut cmp = Comparison::new();
    let (mut tb, mut tq) = (0f64, 0f64);
    let max_batch = base.opts.max_batch.min(quant.opts.max_batch);
    for (i, w) in ws.iter().enumerate() {
        for s in steps(w, opts, max_batch) {
            let t = Instant::now();
            run_step(gpu, base, w, &s, Baseline::None, 0)?;
            tb += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let scored = run_step(gpu, quant, w, &s, Baseline::Logits(base), 0)?;
            tq += t.elapsed().as_secs_f64();
            for r in scored.map(|s| s.rows).unwrap_or_default() {
                let (b, q) = (f64::from(r.base_logprob), f64::from(r.logprob));
                cmp.add_scores(b, q, f64::from(r.kld), r.argmax == r.base_argmax);
            }
        }
        progress(i + 1, ws.len());
    }
    Ok(cmp.finish_timed(ws.len(), opts.ctx, (tb, tq)))
}

/// A comparison against a [`TopKBase`], and the mean probability the quantized model puts on
/// the baseline's top k (the share of the distribution the KL divergence sees exactly).
#[derive(Clone, Debug, Serialize)]
pub struct TopKComparison {
    #[serde(flatten)]
    pub result: CompareResult,
    pub top_k: usize,
    pub mean_topk_mass: f64,
}

/// As [`compare`], against a baseline computed once ([`base_topk`]) on the same tokens and
/// options: the KL divergence with the baseline's mass beyond its top k as one bucket.
pub fn compare_to(
    gpu: &Gpu,
    base: &TopKBase,
    quant: &mut GpuModel,
    max_positions: usize,
    tokens: &[u32],
    opts: &PplOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TopKComparison> {
    check(quant, tokens, opts, max_positions)?;
    let ws = windows(tokens, opts);
    let h = &base.header;
    let mismatch = |what: String| {
        Err(RefError::Unsupported(format!(
            "the baseline's log-probabilities were computed on {what}: run the baseline again \
             on these windows"
        )))
    };
    if h.vocab != quant.vocab {
        return mismatch(format!("a vocabulary of {}, not {}", h.vocab, quant.vocab));
    }
    if (h.ctx, h.score_all, h.bos) != (opts.ctx, opts.score_all, opts.bos)
        || h.rows.len() != ws.len()
        || h.tokens_hash != tokens_hash(&ws)
        || base.windows.len() != ws.len()
    {
        return mismatch(format!(
            "{} windows of {} tokens (BOS {:?}, score all {}) of another text",
            h.rows.len(),
            h.ctx,
            h.bos,
            h.score_all
        ));
    }
    let k = h.k;
    let mut cmp = Comparison::new();
    let mut mass = 0f64;
    let t0 = Instant::now();
    for (i, (w, bw)) in ws.iter().zip(&base.windows).enumerate() {
        let mut row0 = 0;
        for s in steps(w, opts, quant.opts.max_batch) {
            let n = s.rows.len();
            let (ids, lps) = (
                bw.ids.get(row0 * k..(row0 + n) * k),
                bw.logprobs.get(row0 * k..(row0 + n) * k),
            );
            let (Some(ids), Some(logprobs)) = (ids, lps) else {
                return mismatch("fewer rows".into());
            };
            let b = Baseline::TopK { k, ids, logprobs };
            if let Some(sc) = run_step(gpu, quant, w, &s, b, 0)? {
                for (j, r) in sc.rows.iter().enumerate() {
                    let bl = f64::from(bw.target_logprob[row0 + j]);
                    let top1 = r.argmax == r.base_argmax;
                    cmp.add_scores(bl, f64::from(r.logprob), f64::from(r.kld), top1);
                    mass += f64::from(r.topk_mass);
                }
            }
            row0 += n;
        }
        progress(i + 1, ws.len());
    }
    let n = cmp.len().max(1) as f64;
    let seconds = t0.elapsed().as_secs_f64();
    Ok(TopKComparison {
        result: cmp.finish_against(h.result.clone(), ws.len(), opts.ctx, seconds),
        top_k: k,
        mean_topk_mass: mass / n,
    })
}

// ---------------------------------------------------------------------------------------------
// The baseline file

const MAGIC: &[u8; 8] = b"TLKLBASE";
const VERSION: u32 = 1;
/// Largest JSON header accepted (a header lists one row count per window).
const MAX_HEADER: u64 = 64 << 20;

impl TopKBase {
    /// Writes the baseline: magic, version, header length and JSON header, then per window its
    /// target log-probabilities, ids and log-probabilities (little-endian 32-bit).
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| RefError::from(tlite_model::io_err(path)(e));
        let header = serde_json::to_vec(&self.header)
            .map_err(|e| RefError::Unsupported(format!("baseline header: {e}")))?;
        let tmp = path.with_extension("tlite-tmp");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(&io)?);
        f.write_all(MAGIC).map_err(&io)?;
        f.write_all(&VERSION.to_le_bytes()).map_err(&io)?;
        f.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(&io)?;
        f.write_all(&header).map_err(&io)?;
        for w in &self.windows {
            let words = (w.target_logprob.iter().map(|v| v.to_bits()))
                .chain(w.ids.iter().copied())
                .chain(w.logprobs.iter().map(|v| v.to_bits()));
            for x in words {
                f.write_all(&x.to_le_bytes()).map_err(&io)?;
            }
        }
        f.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(&io)?;
        // Complete or absent: a reader never sees a half-written baseline.
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a baseline written by [`Self::write`], checking every size against the header and
    /// the file before allocating.
    pub fn read(path: &Path) -> Result<Self> {
        let io = |e: std::io::Error| RefError::from(tlite_model::io_err(path)(e));
        let bad = |why: String| {
            RefError::Unsupported(format!("{}: not a tlite baseline: {why}", path.display()))
        };
        let file = std::fs::File::open(path).map_err(&io)?;
        let len = file.metadata().map_err(&io)?.len();
        let mut f = std::io::BufReader::new(file);
        let mut fixed = [0u8; 20];
        f.read_exact(&mut fixed)
            .map_err(|_| bad("shorter than its header".into()))?;
        if &fixed[..8] != MAGIC {
            return Err(bad("wrong magic".into()));
        }
        let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad(format!("version {version}, expected {VERSION}")));
        }
        let hlen = u64::from_le_bytes(fixed[12..20].try_into().expect("8 bytes"));
        if hlen > MAX_HEADER || hlen > len - 20 {
            return Err(bad(format!("a header of {hlen} bytes in a file of {len}")));
        }
        let mut hbytes = vec![0u8; hlen as usize];
        f.read_exact(&mut hbytes).map_err(&io)?;
        let header: TopKHeader =
            serde_json::from_slice(&hbytes).map_err(|e| bad(format!("header: {e}")))?;
        if header.k == 0 || header.k > MAX_TOP_K || header.k > header.vocab {
            return Err(bad(format!("top-k of {}", header.k)));
        }
        let words_per_row = 1 + 2 * header.k as u64;
        let rows: u64 = header.rows.iter().map(|&r| r as u64).sum();
        let expected = rows
            .checked_mul(words_per_row * 4)
            .and_then(|b| b.checked_add(20 + hlen));
        if expected != Some(len) {
            return Err(bad(format!(
                "{len} bytes, the header describes {}",
                expected.map_or("more than 2^64".into(), |e| e.to_string())
            )));
        }
        let mut windows = Vec::with_capacity(header.rows.len());
        for &n in &header.rows {
            let mut buf = vec![0u8; n * words_per_row as usize * 4];
            f.read_exact(&mut buf).map_err(&io)?;
            let words: Vec<u32> = buf
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let (t, rest) = words.split_at(n);
            let (ids, lps) = rest.split_at(n * header.k);
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= header.vocab) {
                return Err(bad(format!(
                    "token {id} beyond the vocabulary of {}",
                    header.vocab
                )));
            }
            windows.push(WindowTopK {
                target_logprob: t.iter().map(|&w| f32::from_bits(w)).collect(),
                ids: ids.to_vec(),
                logprobs: lps.iter().map(|&w| f32::from_bits(w)).collect(),
            });
        }
        Ok(TopKBase { header, windows })
    }
}
