//! Perplexity, KL divergence and top-1 agreement, the way llama.cpp's perplexity tool measures
//! them: the tokenized corpus (BOS first when the model's tokenizer adds one) is cut into
//! non-overlapping windows of `ctx` tokens, each window starts with BOS (when the tokenizer adds
//! one) and runs from an empty cache, and the second half of each window is scored (or all of
//! it). [`windows`] is the one definition of what a model is run on.
//! For KL divergence the baseline's log-probabilities are kept in memory one window at a time
//! ([`compare`]), or all of them once for many quantized models ([`base_logprobs`],
//! [`compare_to`]).

use serde::{Deserialize, Serialize};

use crate::reference::{Logits, RefError, ReferenceModel, Result, log_softmax_rows, nll_rows};

/// How the corpus is windowed and scored.
#[derive(Clone, Debug)]
pub struct PplOptions {
    /// Tokens per window.
    pub ctx: usize,
    /// At most this many windows (all that fit when `None`).
    pub max_windows: Option<usize>,
    /// Score every position instead of the second half.
    pub score_all: bool,
    /// The BOS id when the model's tokenizer adds one to a text (`Opened::window_bos`): put
    /// before the text's first token, and in place of every window's first token, as llama.cpp
    /// does ([`windows`]). `None` when the tokenizer adds no BOS (SmolLM2, Qwen2).
    pub bos: Option<u32>,
}

/// Windowing options that no evaluation can use (see [`PplOptions::check`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PplOptionsError {
    /// Too few tokens per window to score one: `min` is 2 when every position is scored (the
    /// first predicts the second), 3 when only the second half is.
    #[error(
        "a window of {ctx} tokens scores no token: windows need at least {min} tokens{}",
        if *score_all { "" } else { " when only their second half is scored" }
    )]
    ContextTooShort {
        ctx: usize,
        min: usize,
        score_all: bool,
    },
    /// Longer windows than the model has positions.
    #[error(
        "a window of {ctx} tokens is longer than the model's {max} positions (max_position_embeddings)"
    )]
    ContextTooLong { ctx: usize, max: usize },
    /// `max_windows` of `Some(0)`.
    #[error("at most 0 windows: nothing would be scored")]
    ZeroWindows,
    /// The tokens (BOS included) do not fill one window.
    #[error("{tokens} tokens: not one window of {ctx}")]
    NotOneWindow { tokens: usize, ctx: usize },
}

impl From<PplOptionsError> for RefError {
    fn from(e: PplOptionsError) -> Self {
        RefError::Unsupported(e.to_string())
    }
}

impl PplOptions {
    /// The shortest window that scores a token.
    pub fn min_ctx(&self) -> usize {
        if self.score_all { 2 } else { 3 }
    }

    /// Checks the options on their own: a window scores at least one token, and at least one
    /// window is asked for.
    pub fn check(&self) -> std::result::Result<(), PplOptionsError> {
        if self.ctx < self.min_ctx() {
            return Err(PplOptionsError::ContextTooShort {
                ctx: self.ctx,
                min: self.min_ctx(),
                score_all: self.score_all,
            });
        }
        if self.max_windows == Some(0) {
            return Err(PplOptionsError::ZeroWindows);
        }
        Ok(())
    }

    /// [`Self::check`], and that a window fits the model's positions and `tokens` fill one.
    pub fn check_for(
        &self,
        model: &ReferenceModel,
        tokens: &[u32],
    ) -> std::result::Result<(), PplOptionsError> {
        self.check_positions(model.config.max_position_embeddings, tokens)
    }

    /// [`Self::check`], and that a window fits `max` positions and `tokens` fill one.
    pub fn check_positions(
        &self,
        max: usize,
        tokens: &[u32],
    ) -> std::result::Result<(), PplOptionsError> {
        self.check()?;
        if self.ctx > max {
            return Err(PplOptionsError::ContextTooLong { ctx: self.ctx, max });
        }
        let stream = tokens.len() + usize::from(self.bos.is_some());
        if stream < self.ctx {
            return Err(PplOptionsError::NotOneWindow {
                tokens: stream,
                ctx: self.ctx,
            });
        }
        Ok(())
    }
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// One standard error of `delta_ppl_pct`, from the per-token differences of NLL (the
    /// two models are scored on the same tokens, so this is much smaller than the error of
    /// either perplexity).
    pub delta_ppl_err_pct: f64,
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

/// The windows a model is run on: llama.cpp's definition (tools/perplexity/perplexity.cpp,
/// `perplexity`, and the same in `kl_divergence` and imatrix). `tokens` is the text tokenized
/// without special tokens; with `opts.bos` (the tokenizer adds BOS), the stream is BOS followed
/// by `tokens`, else `tokens` alone. Window `i` is stream tokens `i·ctx .. (i+1)·ctx` (a partial
/// last window is dropped; at most `max_windows`), and with `opts.bos` its first token is
/// replaced by BOS — for window 0 it already is. Position `p` of a window predicts token
/// `p + 1`; the scored positions are `ctx/2 .. ctx-1` ([`scored_targets`]), so the replaced
/// first token is never a target. Options that [`PplOptions::check`] refuses give windows that
/// score nothing.
pub fn windows(tokens: &[u32], opts: &PplOptions) -> Vec<Vec<u32>> {
    let stream: Vec<u32> = opts.bos.into_iter().chain(tokens.iter().copied()).collect();
    stream
        .chunks_exact(opts.ctx.max(2))
        .take(opts.max_windows.unwrap_or(usize::MAX))
        .map(|w| {
            let mut w = w.to_vec();
            if let Some(b) = opts.bos {
                w[0] = b;
            }
            w
        })
        .collect()
}

/// A window's scored targets: `(position, token)` for each position whose prediction of the
/// next token counts, `first_scored .. ctx-1` (llama.cpp: `first = n_ctx/2`, logits of
/// positions `first .. n_ctx-2` against tokens `first+1 .. n_ctx-1`).
pub fn scored_targets<'a>(
    window: &'a [u32],
    opts: &PplOptions,
) -> impl Iterator<Item = (usize, u32)> + 'a {
    let first = first_scored(opts);
    (first..window.len().saturating_sub(1)).map(move |p| (p, window[p + 1]))
}

fn first_scored(opts: &PplOptions) -> usize {
    if opts.score_all { 0 } else { opts.ctx / 2 }
}

/// Log-probabilities at the scored positions of one window ([`scored_targets`]), in order.
fn window_logprobs(
    model: &ReferenceModel,
    window: &[u32],
    opts: &PplOptions,
) -> Result<Vec<Vec<f64>>> {
    let positions: Vec<usize> = scored_targets(window, opts).map(|(p, _)| p).collect();
    let mut cache = model.new_cache(window.len())?;
    let logits = model.forward(window, 0, &mut cache, Logits::Positions(&positions))?;
    log_softmax_rows(&logits)
}

/// The negative log-likelihood of each scored target of one window ([`scored_targets`]), in
/// order: the values [`window_logprobs`] gives at the targets, without the rows.
fn window_nll(model: &ReferenceModel, window: &[u32], opts: &PplOptions) -> Result<Vec<f64>> {
    let (positions, targets): (Vec<usize>, Vec<u32>) = scored_targets(window, opts).unzip();
    let mut cache = model.new_cache(window.len())?;
    let logits = model.forward(window, 0, &mut cache, Logits::Positions(&positions))?;
    nll_rows(&logits, &targets)
}

/// The negative log-likelihood of every scored token, in order.
#[derive(Default)]
pub(crate) struct Acc {
    pub nll: Vec<f64>,
}

impl Acc {
    pub(crate) fn result(&self, windows: usize, ctx: usize, seconds: f64) -> PplResult {
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
    opts.check_for(model, tokens)?;
    let t0 = std::time::Instant::now();
    let ws = windows(tokens, opts);
    let mut acc = Acc { nll: Vec::new() };
    for (i, w) in ws.iter().enumerate() {
        acc.nll.extend(window_nll(model, w, opts)?);
        progress(i + 1, ws.len());
    }
    Ok(acc.result(ws.len(), opts.ctx, t0.elapsed().as_secs_f64()))
}

/// The baseline's log-probabilities at every scored position of every window, kept in memory
/// (f32, `positions × vocab` per window) so that many quantized models can be compared with
/// one baseline pass ([`compare_to`]). Gemma-3's 262k vocabulary costs ~270 MB per window of
/// 512.
pub struct BaseLogprobs {
    /// Per window, row-major `[scored positions, vocab]`.
    windows: Vec<Vec<f32>>,
    vocab: usize,
    /// The baseline's perplexity on the same windows (computed in f64, as [`perplexity`]).
    pub result: PplResult,
}

/// Runs the baseline once over the windows and keeps its log-probabilities.
pub fn base_logprobs(
    base: &ReferenceModel,
    tokens: &[u32],
    opts: &PplOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BaseLogprobs> {
    opts.check_for(base, tokens)?;
    let t0 = std::time::Instant::now();
    let ws = windows(tokens, opts);
    let mut acc = Acc { nll: Vec::new() };
    let mut out = Vec::with_capacity(ws.len());
    let vocab = base.config.vocab_size;
    for (i, w) in ws.iter().enumerate() {
        let lp = window_logprobs(base, w, opts)?;
        let mut flat = Vec::with_capacity(lp.len() * vocab);
        for (row, (_, next)) in lp.iter().zip(scored_targets(w, opts)) {
            acc.nll.push(-row[next as usize]);
            flat.extend(row.iter().map(|&v| v as f32));
        }
        out.push(flat);
        progress(i + 1, ws.len());
    }
    Ok(BaseLogprobs {
        windows: out,
        vocab,
        result: acc.result(ws.len(), opts.ctx, t0.elapsed().as_secs_f64()),
    })
}

/// The per-position statistics of a comparison, accumulated window by window.
pub(crate) struct Comparison {
    base: Acc,
    quant: Acc,
    kld: Vec<f64>,
    dp: Vec<f64>,
    agree: usize,
}

impl Comparison {
    pub(crate) fn new() -> Self {
        Comparison {
            base: Acc { nll: Vec::new() },
            quant: Acc { nll: Vec::new() },
            kld: Vec::new(),
            dp: Vec::new(),
            agree: 0,
        }
    }

    /// One position: the two models' log-probabilities and the true next token.
    fn add<B: Copy + Into<f64>>(&mut self, rb: &[B], rq: &[f64], next: usize) {
        let kld = rb
            .iter()
            .zip(rq)
            .map(|(&b, q)| {
                let b: f64 = b.into();
                b.exp() * (b - q)
            })
            .sum::<f64>();
        let (mut bi, mut bv) = (0, f64::NEG_INFINITY);
        for (i, &b) in rb.iter().enumerate() {
            let b: f64 = b.into();
            if b > bv {
                (bi, bv) = (i, b);
            }
        }
        self.add_scores(rb[next].into(), rq[next], kld, bi == argmax(rq));
    }

    /// One position from its statistics: the two models' log-probabilities of the true next
    /// token, KL(base ‖ quant) and whether they rank the same token first.
    pub(crate) fn add_scores(&mut self, b_next: f64, q_next: f64, kld: f64, agree: bool) {
        self.base.nll.push(-b_next);
        self.quant.nll.push(-q_next);
        self.kld.push(kld.max(0.0));
        self.dp.push((q_next.exp() - b_next.exp()) * 100.0);
        self.agree += usize::from(agree);
    }

    /// The results, with each model's perplexity over `windows` of `ctx` tokens evaluated in
    /// its `seconds`.
    pub(crate) fn finish_timed(
        self,
        windows: usize,
        ctx: usize,
        (base_s, quant_s): (f64, f64),
    ) -> CompareResult {
        let base = self.base.result(windows, ctx, base_s);
        let quant = self.quant.result(windows, ctx, quant_s);
        self.finish(base, quant)
    }

    /// Positions added.
    pub(crate) fn len(&self) -> usize {
        self.kld.len()
    }

    /// The results against a baseline whose own result is known, the quantized model's
    /// perplexity over `windows` of `ctx` tokens evaluated in `seconds`.
    pub(crate) fn finish_against(
        self,
        base: PplResult,
        windows: usize,
        ctx: usize,
        seconds: f64,
    ) -> CompareResult {
        let quant = self.quant.result(windows, ctx, seconds);
        self.finish(base, quant)
    }

    pub(crate) fn finish(self, base: PplResult, quant: PplResult) -> CompareResult {
        let diff: Vec<f64> = (self.quant.nll.iter().zip(&self.base.nll))
            .map(|(q, b)| q - b)
            .collect();
        let nd = diff.len().max(1) as f64;
        let d_mean = diff.iter().sum::<f64>() / nd;
        let d_var = diff.iter().map(|x| (x - d_mean).powi(2)).sum::<f64>() / (nd - 1.0).max(1.0);
        let delta_ppl_err_pct = 100.0 * d_mean.exp() * (d_var / nd).sqrt();
        let Comparison {
            kld, mut dp, agree, ..
        } = self;
        let n = kld.len().max(1) as f64;
        let kld_mean = kld.iter().sum::<f64>() / n;
        let kld_var = kld.iter().map(|x| (x - kld_mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let rms_dp = (dp.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
        let mut sorted_k = kld;
        sorted_k.sort_by(f64::total_cmp);
        dp.sort_by(f64::total_cmp);
        CompareResult {
            delta_ppl_pct: (quant.ppl / base.ppl - 1.0) * 100.0,
            delta_ppl_err_pct,
            base,
            quant,
            kld_mean,
            kld_err: (kld_var / n).sqrt(),
            kld_p99: percentile(&sorted_k, 99.0),
            kld_max: sorted_k.last().copied().unwrap_or(0.0),
            top1_agree_pct: 100.0 * agree as f64 / n,
            delta_p_pct: [1.0, 5.0, 50.0, 95.0, 99.0].map(|p| percentile(&dp, p)),
            rms_delta_p_pct: rms_dp,
        }
    }
}

/// KL divergence, top-1 agreement and Δp of `quant` against `base` on the same windows,
/// running both models window by window (one window of log-probabilities in memory).
pub fn compare(
    base: &ReferenceModel,
    quant: &ReferenceModel,
    tokens: &[u32],
    opts: &PplOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CompareResult> {
    opts.check_for(base, tokens)?;
    opts.check_for(quant, tokens)?;
    let ws = windows(tokens, opts);
    let mut cmp = Comparison::new();
    let (mut tb, mut tq) = (0f64, 0f64);
    for (i, w) in ws.iter().enumerate() {
        let t = std::time::Instant::now();
        let lb = window_logprobs(base, w, opts)?;
        tb += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let lq = window_logprobs(quant, w, opts)?;
        tq += t.elapsed().as_secs_f64();
        for ((rb, rq), (_, next)) in lb.iter().zip(&lq).zip(scored_targets(w, opts)) {
            cmp.add(rb, rq, next as usize);
        }
        progress(i + 1, ws.len());
    }
    Ok(cmp.finish_timed(ws.len(), opts.ctx, (tb, tq)))
}

/// As [`compare`], against a baseline computed once by [`base_logprobs`] on the same tokens
/// and options. The KL divergence reads the baseline's log-probabilities rounded to f32.
pub fn compare_to(
    base: &BaseLogprobs,
    quant: &ReferenceModel,
    tokens: &[u32],
    opts: &PplOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CompareResult> {
    opts.check_for(quant, tokens)?;
    let ws = windows(tokens, opts);
    if ws.len() != base.windows.len() || quant.config.vocab_size != base.vocab {
        return Err(RefError::Unsupported(format!(
            "baseline log-probs of {} windows × vocab {} do not match {} windows × vocab {}",
            base.windows.len(),
            base.vocab,
            ws.len(),
            quant.config.vocab_size
        )));
    }
    let mut cmp = Comparison::new();
    let t0 = std::time::Instant::now();
    for (i, (w, lb)) in ws.iter().zip(&base.windows).enumerate() {
        let lq = window_logprobs(quant, w, opts)?;
        let rows = lb.chunks_exact(base.vocab).zip(&lq);
        for ((rb, rq), (_, next)) in rows.zip(scored_targets(w, opts)) {
            cmp.add(rb, rq, next as usize);
        }
        progress(i + 1, ws.len());
    }
    let quant_r = cmp
        .quant
        .result(ws.len(), opts.ctx, t0.elapsed().as_secs_f64());
    Ok(cmp.finish(base.result.clone(), quant_r))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's windows on a text of 11 tokens, 10..=20, in windows of 4 (scored from
    /// position 4/2 = 2).
    #[test]
    fn windows_are_llama_cpps() {
        let text: Vec<u32> = (10..=20).collect();
        let o = |bos, max_windows| PplOptions {
            ctx: 4,
            max_windows,
            score_all: false,
            bos,
        };
        // A tokenizer that adds BOS (1): the stream is [1, 10, .., 20], 12 tokens, 3 windows;
        // each window's first stream token (1, 13, 17) becomes BOS, so 13 and 17 are neither
        // read nor scored.
        let with = o(Some(1), None);
        let ws = windows(&text, &with);
        assert_eq!(ws, [[1, 10, 11, 12], [1, 14, 15, 16], [1, 18, 19, 20]]);
        let targets: Vec<Vec<(usize, u32)>> = ws
            .iter()
            .map(|w| scored_targets(w, &with).collect())
            .collect();
        assert_eq!(targets, [[(2, 12)], [(2, 16)], [(2, 20)]]);
        // No BOS (Qwen2, SmolLM2): the text alone, 2 whole windows, the last 3 tokens dropped.
        let without = o(None, None);
        let ws = windows(&text, &without);
        assert_eq!(ws, [[10, 11, 12, 13], [14, 15, 16, 17]]);
        let targets: Vec<(usize, u32)> = ws
            .iter()
            .flat_map(|w| scored_targets(w, &without).collect::<Vec<_>>())
            .collect();
        assert_eq!(targets, [(2, 13), (2, 17)]);
        // `max_windows` keeps the first ones; every position scored predicts from BOS on.
        assert_eq!(windows(&text, &o(Some(1), Some(1))), [[1, 10, 11, 12]]);
        let all = PplOptions {
            score_all: true,
            ..with
        };
        let w = &windows(&text, &all)[1];
        let t: Vec<(usize, u32)> = scored_targets(w, &all).collect();
        assert_eq!(t, [(0, 14), (1, 15), (2, 16)]);
        // The BOS counts towards filling a window.
        let one = PplOptions {
            ctx: 12,
            ..o(Some(1), None)
        };
        assert_eq!(windows(&text, &one).len(), 1);
        assert!(windows(&text, &PplOptions { bos: None, ..one }).is_empty());
    }

    #[test]
    fn options_that_score_nothing_are_refused() {
        let o = |ctx, score_all, max_windows| PplOptions {
            ctx,
            max_windows,
            score_all,
            bos: None,
        };
        for ctx in [0, 1] {
            assert_eq!(
                o(ctx, true, None).check(),
                Err(PplOptionsError::ContextTooShort {
                    ctx,
                    min: 2,
                    score_all: true
                })
            );
        }
        // The second half of 2 tokens is the last one, which predicts nothing.
        let e = o(2, false, None).check().unwrap_err();
        assert!(e.to_string().contains("at least 3 tokens"), "{e}");
        assert_eq!(o(2, true, None).check(), Ok(()));
        assert_eq!(o(3, false, None).check(), Ok(()));
        assert_eq!(
            o(512, false, Some(0)).check(),
            Err(PplOptionsError::ZeroWindows)
        );
        // The smallest accepted windows score exactly one token each.
        for opts in [o(2, true, None), o(3, false, None)] {
            let w = windows(&[1, 2, 3, 4, 5, 6], &opts);
            assert!(w.iter().all(|w| w.len() - 1 - first_scored(&opts) == 1));
        }
    }
}
