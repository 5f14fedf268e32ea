//! Perplexity, KL divergence and top-1 agreement, the way llama.cpp's perplexity tool measures
//! them: the tokenized corpus is cut into non-overlapping windows of `ctx` tokens, each window
//! runs from an empty cache, and the second half of each window is scored (or all of it).
//! For KL divergence the baseline's log-probabilities are kept in memory one window at a time.

use serde::Serialize;

use crate::reference::{Logits, ReferenceModel, Result, log_softmax_rows};

/// How the corpus is windowed and scored.
#[derive(Clone, Debug)]
pub struct PplOptions {
    /// Tokens per window.
    pub ctx: usize,
    /// At most this many windows (all that fit when `None`).
    pub max_windows: Option<usize>,
    /// Score every position instead of the second half.
    pub score_all: bool,
    /// Replace each window's first token with this BOS id (llama.cpp does when the model adds BOS).
    pub bos: Option<u32>,
}

impl Default for PplOptions {
    fn default() -> Self {
        PplOptions {
            ctx: 512,
            max_windows: None,
            score_all: false,
            bos: None,
        }
    }
}

/// Perplexity of one model.
#[derive(Clone, Debug, Serialize)]
pub struct PplResult {
    pub ppl: f64,
    /// One standard error of the perplexity.
    pub ppl_err: f64,
    pub nll_mean: f64,
    pub tokens_scored: usize,
    pub windows: usize,
    pub ctx: usize,
    pub seconds: f64,
    /// Tokens evaluated (all window positions) per second.
    pub tokens_per_second: f64,
}

/// A quantized model against its baseline on the same tokens.
#[derive(Clone, Debug, Serialize)]
pub struct CompareResult {
    pub base: PplResult,
    pub quant: PplResult,
    /// `(ppl_quant / ppl_base - 1) * 100`
    pub delta_ppl_pct: f64,
    /// Mean KL(base ‖ quant) per scored token.
    pub kld_mean: f64,
    pub kld_err: f64,
    pub kld_p99: f64,
    pub kld_max: f64,
    /// Share of positions where both models rank the same token first, in percent.
    pub top1_agree_pct: f64,
    /// Percentiles (1, 5, 50, 95, 99) of Δp = p_quant(next) − p_base(next), in percent.
    pub delta_p_pct: [f64; 5],
    pub rms_delta_p_pct: f64,
}

/// Windows of `ctx` tokens.
pub fn windows<'a>(tokens: &'a [u32], opts: &PplOptions) -> Vec<&'a [u32]> {
    let mut w: Vec<&[u32]> = tokens.chunks_exact(opts.ctx.max(2)).collect();
    if let Some(m) = opts.max_windows {
        w.truncate(m);
    }
    w
}

fn first_scored(opts: &PplOptions) -> usize {
    if opts.score_all { 0 } else { opts.ctx / 2 }
}

/// Log-probabilities of positions `first..ctx-1` of one window (each predicting the next token).
fn window_logprobs(
    model: &ReferenceModel,
    window: &[u32],
    opts: &PplOptions,
) -> Result<Vec<Vec<f64>>> {
    let mut w = window.to_vec();
    if let Some(b) = opts.bos {
        w[0] = b;
    }
    let first = first_scored(opts);
    let positions: Vec<usize> = (first..w.len() - 1).collect();
    let mut cache = model.new_cache(w.len())?;
    let logits = model.forward(&w, 0, &mut cache, Logits::Positions(&positions))?;
    log_softmax_rows(&logits)
}

struct Acc {
    nll: Vec<f64>,
}

impl Acc {
    fn result(&self, windows: usize, ctx: usize, seconds: f64) -> PplResult {
        let n = self.nll.len().max(1) as f64;
        let mean = self.nll.iter().sum::<f64>() / n;
        let var = self.nll.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let ppl = mean.exp();
        PplResult {
            ppl,
            ppl_err: ppl * (var / n).sqrt(),
            nll_mean: mean,
            tokens_scored: self.nll.len(),
            windows,
            ctx,
            seconds,
            tokens_per_second: (windows * ctx) as f64 / seconds.max(1e-9),
        }
    }
}

/// Perplexity of `model` over `tokens`. `progress(done, total)` is called after each window.
pub fn perplexity(
    model: &ReferenceModel,
    tokens: &[u32],
    opts: &PplOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PplResult> {
    let t0 = std::time::Instant::now();
    let ws = windows(tokens, opts);
    let mut acc = Acc { nll: Vec::new() };
    for (i, w) in ws.iter().enumerate() {
        let lp = window_logprobs(model, w, opts)?;
        let first = first_scored(opts);
        for (k, row) in lp.iter().enumerate() {
            acc.nll.push(-row[w[first + k + 1] as usize]);
        }
        progress(i + 1, ws.len());
    }
    Ok(acc.result(ws.len(), opts.ctx, t0.elapsed().as_secs_f64()))
}

/// KL divergence, top-1 agreement and Δp of `quant` against `base` on the same windows.
pub fn compare(
    base: &ReferenceModel,
    quant: &ReferenceModel,
    tokens: &[u32],
    opts: &PplOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CompareResult> {
    let ws = windows(tokens, opts);
    let first = first_scored(opts);
    let (mut ab, mut aq) = (Acc { nll: Vec::new() }, Acc { nll: Vec::new() });
    let (mut tb, mut tq) = (0f64, 0f64);
    let (mut kld, mut dp, mut agree) = (Vec::new(), Vec::new(), 0usize);
    for (i, w) in ws.iter().enumerate() {
        let t = std::time::Instant::now();
        let lb = window_logprobs(base, w, opts)?;
        tb += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let lq = window_logprobs(quant, w, opts)?;
        tq += t.elapsed().as_secs_f64();
        for (k, (rb, rq)) in lb.iter().zip(&lq).enumerate() {
            let next = w[first + k + 1] as usize;
            ab.nll.push(-rb[next]);
            aq.nll.push(-rq[next]);
            kld.push(
                rb.iter()
                    .zip(rq)
                    .map(|(b, q)| b.exp() * (b - q))
                    .sum::<f64>()
                    .max(0.0),
            );
            dp.push((rq[next].exp() - rb[next].exp()) * 100.0);
            agree += usize::from(argmax(rb) == argmax(rq));
        }
        progress(i + 1, ws.len());
    }
    let base_r = ab.result(ws.len(), opts.ctx, tb);
    let quant_r = aq.result(ws.len(), opts.ctx, tq);
    let n = kld.len().max(1) as f64;
    let kld_mean = kld.iter().sum::<f64>() / n;
    let kld_var = kld.iter().map(|x| (x - kld_mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let rms_dp = (dp.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
    let mut sorted_k = kld.clone();
    sorted_k.sort_by(f64::total_cmp);
    dp.sort_by(f64::total_cmp);
    Ok(CompareResult {
        delta_ppl_pct: (quant_r.ppl / base_r.ppl - 1.0) * 100.0,
        base: base_r,
        quant: quant_r,
        kld_mean,
        kld_err: (kld_var / n).sqrt(),
        kld_p99: percentile(&sorted_k, 99.0),
        kld_max: sorted_k.last().copied().unwrap_or(0.0),
        top1_agree_pct: 100.0 * agree as f64 / n,
        delta_p_pct: [1.0, 5.0, 50.0, 95.0, 99.0].map(|p| percentile(&dp, p)),
        rms_delta_p_pct: rms_dp,
    })
}

/// Index of the largest value (first on ties).
pub fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv { (i, x) } else { (bi, bv) }
        })
        .0
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
