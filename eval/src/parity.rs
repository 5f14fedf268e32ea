//! Parity of a model with the reference, both [`LanguageModel`]s (in practice the GPU runtime
//! against the CPU reference). The reference decodes greedily from a prompt; the compared model
//! is force-fed the same tokens (prefill of the prompt in steps of at most its `max_batch`, then
//! one token per step) and every position's logits are compared: top-1 agreement, mean KL
//! divergence of the compared distribution from the reference's, and max / mean |Δlogit|. Each
//! model's errors keep their type ([`ParityError`]).

use serde::Serialize;
use tlite_model::LanguageModel;
use tlite_model::lm::{PrefillRows, prefill};

use crate::ppl::argmax;
use crate::reference::log_softmax;

/// The tolerances parity is held to, in one place.
pub mod tolerance {
    /// Tiny random models: every position's top token must agree.
    pub const TOP1_MIN_PCT_TINY: f64 = 100.0;
    /// Real models: near-ties may flip.
    pub const TOP1_MIN_PCT_REAL: f64 = 99.0;
    /// Mean KL(reference ‖ GPU) per position.
    pub const KLD_MAX: f64 = 1e-3;
}

/// The comparison of one run.
#[derive(Clone, Debug, Serialize)]
pub struct ParityReport {
    pub prompt_tokens: usize,
    pub forced_tokens: usize,
    pub positions: usize,
    pub top1_agree_pct: f64,
    pub kld_mean: f64,
    pub kld_max: f64,
    pub max_abs_dlogit: f64,
    pub mean_abs_dlogit: f64,
    /// (position, vocabulary id) of the largest |Δlogit|.
    pub max_at: (usize, usize),
    /// The tokens fed after the prompt (the reference's greedy choices).
    pub tokens: Vec<u32>,
}

/// An error of [`parity`] or [`layer_nmse`]: a setting that cannot be compared, or an error
/// of either model, with its own type.
#[derive(Debug, thiserror::Error)]
pub enum ParityError<R, T> {
    #[error("parity needs at least one prompt token")]
    EmptyPrompt,
    #[error("{tokens} positions (prompt + forced tokens) exceed the context of {max} positions")]
    ContextOverflow { tokens: usize, max: usize },
    #[error("the reference's vocabulary of {reference} differs from the compared model's {tested}")]
    Vocab { reference: usize, tested: usize },
    #[error("the compared model's logits at position {pos} are not finite")]
    NotFinite { pos: usize },
    #[error("the compared model's hidden states end before layer {layer}")]
    HiddenShape { layer: usize },
    #[error(transparent)]
    Reference(R),
    #[error(transparent)]
    Tested(T),
}

/// Runs the comparison. `forced` tokens are decoded greedily by the reference after `prompt`;
/// both models need `prompt.len() + forced` positions.
pub fn parity<R: LanguageModel, T: LanguageModel>(
    reference: &mut R,
    tested: &mut T,
    prompt: &[u32],
    forced: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ParityReport, ParityError<R::Error, T::Error>> {
    let total = prompt.len() + forced;
    let max = reference.max_seq().min(tested.max_seq());
    if prompt.is_empty() {
        return Err(ParityError::EmptyPrompt);
    }
    if total > max {
        return Err(ParityError::ContextOverflow { tokens: total, max });
    }
    let vocab = reference.vocab();
    if tested.vocab() != vocab {
        return Err(ParityError::Vocab {
            reference: vocab,
            tested: tested.vocab(),
        });
    }
    // Reference: the prompt (all positions), then greedy decoding.
    let (logits, _) =
        prefill(reference, prompt, PrefillRows::All).map_err(ParityError::Reference)?;
    let mut ref_rows: Vec<Vec<f64>> = logits.chunks(vocab).map(log_softmax).collect();
    let mut tokens = Vec::new();
    for step in 0..forced {
        let next = argmax(ref_rows.last().expect("at least one row")) as u32;
        tokens.push(next);
        if step + 1 < forced {
            let l = reference
                .step(&[next], prompt.len() + step, &[0])
                .map_err(ParityError::Reference)?;
            ref_rows.extend(l.chunks(vocab).map(log_softmax));
        }
        progress(step + 1, forced * 2);
    }
    // The compared model: the same tokens, forced.
    let (logits, _) = prefill(tested, prompt, PrefillRows::All).map_err(ParityError::Tested)?;
    let mut rows: Vec<Vec<f32>> = logits.chunks(vocab).map(<[f32]>::to_vec).collect();
    for (step, &t) in tokens.iter().enumerate().take(forced.saturating_sub(1)) {
        let out = tested
            .step(&[t], prompt.len() + step, &[0])
            .map_err(ParityError::Tested)?;
        rows.push(out);
        progress(forced + step + 1, forced * 2);
    }
    compare_rows(&ref_rows, &rows, prompt.len(), tokens)
}

/// NMSE of the residual stream after every layer, compared model against reference, over the
/// first tokens of the prompt (as many as one step of each takes), from position 0.
pub fn layer_nmse<R: LanguageModel, T: LanguageModel>(
    reference: &mut R,
    tested: &mut T,
    prompt: &[u32],
) -> Result<Vec<f64>, ParityError<R::Error, T::Error>> {
    let n = prompt
        .len()
        .min(reference.max_batch())
        .min(tested.max_batch());
    if n == 0 {
        return Err(ParityError::EmptyPrompt);
    }
    let (p, last) = (&prompt[..n], [n as u32 - 1]);
    let (_, rh) = reference
        .step_with_hidden(p, 0, &last)
        .map_err(ParityError::Reference)?;
    let (_, th) = tested
        .step_with_hidden(p, 0, &last)
        .map_err(ParityError::Tested)?;
    let per = n * reference.hidden();
    rh.chunks(per)
        .enumerate()
        .map(|(layer, r)| {
            let t = th
                .get(layer * per..(layer + 1) * per)
                .ok_or(ParityError::HiddenShape { layer })?;
            let (num, den) = r.iter().zip(t).fold((0f64, 0f64), |(a, b), (&x, &y)| {
                (a + f64::from(x - y).powi(2), b + f64::from(x).powi(2))
            });
            Ok(num / den.max(f64::MIN_POSITIVE))
        })
        .collect()
}

fn compare_rows<R, T>(
    reference: &[Vec<f64>],
    tested: &[Vec<f32>],
    prompt: usize,
    tokens: Vec<u32>,
) -> Result<ParityReport, ParityError<R, T>> {
    let n = reference.len().min(tested.len());
    let (mut agree, mut kld_sum, mut kld_max) = (0usize, 0f64, 0f64);
    let (mut max_abs, mut sum_abs, mut count, mut max_at) = (0f64, 0f64, 0usize, (0, 0));
    for pos in 0..n {
        let r = &reference[pos];
        if tested[pos].iter().any(|v| !v.is_finite()) {
            return Err(ParityError::NotFinite { pos });
        }
        let gl = log_softmax(&tested[pos]);
        agree += usize::from(argmax(r) == argmax(&gl));
        let kld: f64 = r
            .iter()
            .zip(&gl)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>()
            .max(0.0);
        kld_sum += kld;
        kld_max = kld_max.max(kld);
        // Logits are compared as log-probabilities (the runtime's and the reference's logits
        // may differ by a constant per position that softmax removes).
        for (v, (a, b)) in r.iter().zip(&gl).enumerate() {
            let d = (a - b).abs();
            sum_abs += d;
            count += 1;
            if d > max_abs {
                max_abs = d;
                max_at = (pos, v);
            }
        }
    }
    Ok(ParityReport {
        prompt_tokens: prompt,
        forced_tokens: tokens.len(),
        positions: n,
        top1_agree_pct: 100.0 * agree as f64 / n.max(1) as f64,
        kld_mean: kld_sum / n.max(1) as f64,
        kld_max,
        max_abs_dlogit: max_abs,
        mean_abs_dlogit: sum_abs / count.max(1) as f64,
        max_at,
        tokens,
    })
}
