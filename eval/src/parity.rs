//! GPU-vs-reference parity. The reference decodes greedily on the CPU from a prompt; the GPU is
//! force-fed the same tokens (prefill of the prompt in steps of at most `max_batch`, then one
//! token per step) and every position's logits are compared: top-1 agreement, mean KL
//! divergence of the GPU's distribution from the reference's, and max / mean |Δlogit|.

use serde::Serialize;
use tlite_runtime_gpu::{Gpu, GpuModel};

use crate::ppl::argmax;
use crate::reference::{Logits, RefError, ReferenceModel, Result, log_softmax_rows};

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

/// Runs the comparison. `forced` tokens are decoded greedily by the reference after `prompt`.
pub fn parity(
    reference: &ReferenceModel,
    gpu: &Gpu,
    model: &mut GpuModel,
    prompt: &[u32],
    forced: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ParityReport> {
    let total = prompt.len() + forced;
    if prompt.is_empty() || total > model.opts.max_seq {
        return Err(RefError::ContextOverflow {
            pos: 0,
            tokens: total,
            max: model.opts.max_seq,
        });
    }
    // Reference: the prompt in one pass (all positions), then greedy decoding.
    let mut cache = reference.new_cache(total)?;
    let mut ref_rows = log_rows(&reference.forward(prompt, 0, &mut cache, Logits::All)?)?;
    let mut tokens = Vec::new();
    for step in 0..forced {
        let next = argmax(ref_rows.last().expect("at least one row")) as u32;
        tokens.push(next);
        if step + 1 < forced {
            let l = reference.forward(&[next], prompt.len() + step, &mut cache, Logits::Last)?;
            ref_rows.extend(log_rows(&l)?);
        }
        progress(step + 1, forced * 2);
    }
    // GPU: the same tokens, forced.
    let mut gpu_rows: Vec<Vec<f32>> = Vec::new();
    let vocab = model.vocab;
    let gpu_err = |e: tlite_runtime_gpu::GpuError| RefError::Unsupported(format!("GPU: {e}"));
    for (ci, chunk) in prompt.chunks(model.opts.max_batch).enumerate() {
        let rows: Vec<u32> = (0..chunk.len() as u32).collect();
        let out = model
            .step(gpu, chunk, ci * model.opts.max_batch, &rows)
            .map_err(gpu_err)?;
        gpu_rows.extend(out.chunks(vocab).map(<[f32]>::to_vec));
    }
    for (step, &t) in tokens.iter().enumerate().take(forced.saturating_sub(1)) {
        let out = model
            .step(gpu, &[t], prompt.len() + step, &[0])
            .map_err(gpu_err)?;
        gpu_rows.push(out);
        progress(forced + step + 1, forced * 2);
    }
    compare_rows(&ref_rows, &gpu_rows, prompt.len(), tokens)
}

fn log_rows(t: &candle_core::Tensor) -> Result<Vec<Vec<f64>>> {
    log_softmax_rows(t)
}

fn compare_rows(
    reference: &[Vec<f64>],
    gpu: &[Vec<f32>],
    prompt: usize,
    tokens: Vec<u32>,
) -> Result<ParityReport> {
    let n = reference.len().min(gpu.len());
    let (mut agree, mut kld_sum, mut kld_max) = (0usize, 0f64, 0f64);
    let (mut max_abs, mut sum_abs, mut count, mut max_at) = (0f64, 0f64, 0usize, (0, 0));
    for pos in 0..n {
        let r = &reference[pos];
        let g: Vec<f64> = gpu[pos].iter().map(|&v| f64::from(v)).collect();
        if g.iter().any(|v| !v.is_finite()) {
            return Err(RefError::Unsupported(format!(
                "GPU logits at position {pos} are not finite"
            )));
        }
        let gm = g.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = gm + g.iter().map(|v| (v - gm).exp()).sum::<f64>().ln();
        let gl: Vec<f64> = g.iter().map(|v| v - lse).collect();
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
