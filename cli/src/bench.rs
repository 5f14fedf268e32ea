//! `tlite bench`: prefill and decode throughput on the GPU, like llama-bench's pp/tg.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tlite_model::deploy::DeployedModel;
use tlite_model::lm::{PrefillRows, prefill};
use tlite_quantizer::rng::Rng;
use tlite_runtime_gpu::lab::{median, repeat_at_least};
use tlite_runtime_gpu::{Gpu, GpuError, GpuLm, GpuModel, RunOptions, ShaderChecks};

#[derive(clap::Args)]
pub struct Args {
    /// A deployable model folder.
    model: PathBuf,
    /// Prompt tokens for the prefill test (pp).
    #[arg(long, short = 'p', default_value_t = 512, value_parser = crate::args::count)]
    prompt: usize,
    /// Generated tokens for the decode test (tg).
    #[arg(long, short = 'n', default_value_t = 128, value_parser = crate::args::count)]
    gen_tokens: usize,
    /// Tokens already in the cache when tg starts (as llama-bench's -d): the decode test runs
    /// from position d, after an untimed prefill of d tokens (in batches of at most -p).
    #[arg(long, short = 'd', default_value_t = 0, value_parser = crate::args::count_from::<0>)]
    depth: usize,
    /// Timed repetitions (after the warm-up); the median is reported.
    #[arg(long, short = 'r', default_value_t = 3, value_parser = crate::args::count)]
    reps: usize,
    /// Untimed repetitions first, at least one and until this many milliseconds have passed:
    /// a GPU idle during the load runs at low clocks until its clock has ramped up (on an H200
    /// the first ~0.1 s of work after the load ran 3-4x slower), which a single warm-up of a
    /// short test does not cover. 0: one warm-up repetition; at most a minute.
    #[arg(long, default_value_t = 500, value_parser = crate::args::u64_in::<0, 60_000>)]
    warmup_ms: u64,
    /// Pick the adapter whose name contains this.
    #[arg(long)]
    adapter: Option<String>,
    /// The KV cache's element type (default: TLITE_KV_CACHE, else f16 as llama.cpp's default
    /// cache); f16 where the adapter has it, f32 otherwise.
    #[arg(long, value_enum)]
    kv_cache: Option<crate::args::KvCacheArg>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// After the timed runs, one more prefill and decode with GPU timestamps between
    /// dispatches: time per kind of op (needs timestamp queries inside passes).
    #[arg(long)]
    profile: bool,
    /// Run the kernels with naga's runtime checks (bounds checks, loop counters), which the
    /// runtime leaves out by default.
    #[arg(long)]
    shader_checks: bool,
    /// Decode steps in flight for tg: greedy decoding on the GPU, each step's token picked by
    /// the GPU and fed to the next step, the ids read back as they complete (as `tlite run`
    /// decodes greedily). 0: one step at a time, each waiting for its logits on the host.
    #[arg(long, default_value_t = tlite_runtime_gpu::GpuLm::DEFAULT_LEAD, value_parser = crate::args::lead)]
    lead: usize,
}

/// `tokens.len()` decode steps from position `past` ([`GpuLm::decode_steps`]), all of which
/// must run.
fn decode(lm: &mut GpuLm, tokens: &[u32], past: usize) -> anyhow::Result<()> {
    let steps = lm.decode_steps(tokens, past)?;
    anyhow::ensure!(
        steps == tokens.len(),
        "{steps} of {} steps ran",
        tokens.len()
    );
    Ok(())
}

/// `  [min-max of N]` in tok/s for more than one repetition, else nothing.
fn range(reps: &[f64]) -> String {
    let min = reps.iter().copied().fold(f64::INFINITY, f64::min);
    let max = reps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match reps.len() {
        0 | 1 => String::new(),
        n => format!("  [{min:.1}-{max:.1} of {n}]"),
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let gpu = Gpu::new(&crate::args::device_options(a.adapter.clone(), a.kv_cache))?;
    eprintln!("{}", gpu.header());
    let m = DeployedModel::open(&a.model)?;
    let cfg = &m.manifest.config;
    let max_seq = a
        .prompt
        .max(a.depth.saturating_add(a.gen_tokens).saturating_add(1));
    let checks = if a.shader_checks {
        ShaderChecks::Checked
    } else {
        ShaderChecks::Unchecked
    };
    let g = GpuModel::load_with(
        &gpu,
        &m,
        RunOptions {
            max_seq,
            max_batch: a.prompt.max(1),
        },
        checks,
    )
    .map_err(|e| match e {
        // The sizes come from -p and -n here, not from --max-seq / --max-batch.
        GpuError::TooLarge { .. } | GpuError::InvalidOptions(_) | GpuError::OutOfMemory { .. } => {
            anyhow::anyhow!(
                "{e} (tlite bench uses a context of max(-p, -d + -n + 1) = {max_seq} and a batch \
                 of -p = {}: lower -p, -d or -n instead)",
                a.prompt.max(1)
            )
        }
        e => e.into(),
    })?;
    let mut lm = GpuLm::new(&gpu, g);
    lm.decode_lead = (a.lead > 0).then_some(a.lead);
    let vocab = cfg.vocab_size as u64;
    let mut rng = Rng::new(0x5eed);
    let tokens: Vec<u32> = (0..a.prompt.max(a.depth + a.gen_tokens))
        .map(|_| rng.below(vocab) as u32)
        .collect();
    // One repetition: (pp, tg) in tok/s.
    let rep = |lm: &mut GpuLm| -> anyhow::Result<(f64, f64)> {
        // Prefill: the whole prompt in one step, logits for its last position.
        let t = Instant::now();
        lm.model
            .step(&gpu, &tokens[..a.prompt], 0, &[a.prompt as u32 - 1])?;
        let pp_s = t.elapsed().as_secs_f64();
        // Decode: one token per step from a cache of `depth` tokens.
        prefill(lm, &tokens[..a.depth], PrefillRows::Last)?;
        let t = Instant::now();
        decode(lm, &tokens[a.depth..][..a.gen_tokens], a.depth)?;
        let tg_s = t.elapsed().as_secs_f64();
        Ok((a.prompt as f64 / pp_s, a.gen_tokens as f64 / tg_s))
    };
    let warmup = Duration::from_millis(a.warmup_ms);
    let warmup_reps = repeat_at_least(warmup, || rep(&mut lm).map(|_| ()))?;
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for _ in 0..a.reps {
        let (p, t) = rep(&mut lm)?;
        pp.push(p);
        tg.push(t);
    }
    // Every repetition's figure is kept: the median is reported, the range beside it (one slow
    // process or repetition shows there, not in the median alone).
    let (pp_reps, tg_reps) = (pp, tg);
    let (pp, tg) = (median(pp_reps.clone()), median(tg_reps.clone()));
    if a.profile {
        lm.model.enable_profiling(&gpu)?;
        lm.model
            .step(&gpu, &tokens[..a.prompt], 0, &[a.prompt as u32 - 1])?;
        prefill(&mut lm, &tokens[..a.depth], PrefillRows::Last)?;
        // profiled steps one at a time (the timestamps are read back per step)
        lm.decode_lead = None;
        decode(&mut lm, &tokens[a.depth..][..a.gen_tokens], a.depth)?;
        if let Some(p) = &lm.model.profiler {
            print_profile(p);
        }
    }
    let weight_gb = lm.model.memory.buffers.weight_bytes as f64 / 1e9;
    let params = m.parameters() as f64;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "device": gpu.info.name, "model": a.model, "parameters": params, "weight_bytes": lm.model.memory.buffers.weight_bytes,
                "pp_tokens": a.prompt, "pp_tok_s": pp, "pp_ms": 1e3 * a.prompt as f64 / pp,
                "tg_tokens": a.gen_tokens, "tg_depth": a.depth, "tg_tok_s": tg,
                "pp_tok_s_reps": pp_reps, "tg_tok_s_reps": tg_reps,
                "tg_weight_gb_s": tg * weight_gb, "pp_tflop_s": pp * 2.0 * params / 1e12, "reps": a.reps,
                "warmup_reps": warmup_reps,
                "dispatches_per_decode_step": lm.model.last_step.dispatches, "tg_steps_in_flight": a.lead,
            })
        );
    } else {
        println!(
            "{} | {:.0}M params, {:.1} MiB weights | {} dispatches per decode step | {warmup_reps} \
             warm-up repetitions",
            gpu.info.name,
            params / 1e6,
            lm.model.memory.buffers.weight_bytes as f64 / (1 << 20) as f64,
            lm.model.last_step.dispatches
        );
        // A pp step ends when its last position's logits are on the host: its time is the
        // time to the first token's logits for a prompt of that length.
        println!(
            "pp{:<5} {:>10.1} tok/s  ({:.2} TFLOP/s, {:.1} ms to the first token's logits){}",
            a.prompt,
            pp,
            pp * 2.0 * params / 1e12,
            1e3 * a.prompt as f64 / pp,
            range(&pp_reps)
        );
        // As llama-bench names a test at depth: tg128 @ d512.
        let label = match a.depth {
            0 => format!("tg{}", a.gen_tokens),
            d => format!("tg{} @ d{d}", a.gen_tokens),
        };
        println!(
            "{label:<7} {:>10.1} tok/s  ({:.1} GB/s of weights){}",
            tg,
            tg * weight_gb,
            range(&tg_reps)
        );
    }
    Ok(())
}

fn print_profile(p: &tlite_runtime_gpu::Profiler) {
    for (phase, &(steps, encode_s, wall_s)) in &p.steps {
        let mut rows: Vec<(&str, usize, f64)> = p
            .ops
            .iter()
            .filter(|((ph, _), _)| ph == phase)
            .map(|((_, kind), &(calls, secs))| (kind.as_str(), calls, secs))
            .collect();
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        let gpu_s: f64 = rows.iter().map(|r| r.2).sum();
        let per = |s: f64| s / steps as f64 * 1e6;
        println!(
            "profile {phase}: {steps} steps | per step: wall {:.1} µs, CPU encode+submit {:.1} µs, GPU (sum of ops) {:.1} µs",
            per(wall_s),
            per(encode_s),
            per(gpu_s)
        );
        println!(
            "  {:<28} {:>9} {:>12} {:>7}",
            "op", "per step", "µs/step", "share"
        );
        for (kind, calls, secs) in rows {
            println!(
                "  {:<28} {:>9.1} {:>12.1} {:>6.1}%",
                kind,
                calls as f64 / steps as f64,
                per(secs),
                100.0 * secs / gpu_s.max(1e-12)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{median, range};

    #[test]
    fn median_of_odd_and_even_counts_and_the_range() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        // Even: the middle two's mean, not the upper one (with -r 2 that was the best run).
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![10.0, 20.0]), 15.0);
        assert!(median(Vec::new()).is_nan());
        assert_eq!(range(&[12.5, 28.6, 13.0]), "  [12.5-28.6 of 3]");
        assert_eq!(range(&[5.0]), "");
    }
}
