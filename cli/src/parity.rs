//! `tlite parity`

use std::path::PathBuf;

use anyhow::ensure;
use tlite_eval::load::{Opened, Weights};
use tlite_eval::parity::{self, tolerance};
use tlite_eval::reference::{ReferenceModel, WeightSource};
use tlite_model::deploy::DeployedModel;
use tlite_runtime_gpu::{DeviceOptions, Gpu, GpuError, GpuLm, GpuModel, RunOptions};

#[derive(clap::Args)]
pub struct Args {
    /// A deployable model folder.
    model: PathBuf,
    /// A text whose first tokens are the prompt.
    #[arg(long)]
    data: PathBuf,
    /// Prompt tokens taken from the start of the text (at least 1).
    #[arg(long, default_value_t = 32, value_parser = crate::args::count)]
    prompt_tokens: usize,
    /// Tokens decoded greedily by the reference and forced into the GPU (at least 1; with
    /// --prompt-tokens, at most the model's positions).
    #[arg(long, default_value_t = 64, value_parser = crate::args::count)]
    forced: usize,
    /// Most tokens per GPU step (the prompt is prefilled in steps of this size).
    #[arg(long, default_value_t = 64, value_parser = crate::args::count)]
    max_batch: usize,
    /// Also report the NMSE of the hidden state after every layer, on the prompt.
    #[arg(long)]
    layers: bool,
    /// Pick the adapter whose name contains this.
    #[arg(long)]
    adapter: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let gpu = Gpu::new(&DeviceOptions::from_env(a.adapter.clone()))?;
    eprintln!("{}", gpu.header());
    ensure!(
        DeployedModel::is_deployable(&a.model),
        "{} is not a deployable model (tlite convert first)",
        a.model.display()
    );
    let opened = Opened::open(&a.model.to_string_lossy())?;
    let Weights::Deployed(m) = &opened.weights else {
        unreachable!("checked deployable")
    };
    let max_positions = m.manifest.config.max_position_embeddings;
    ensure!(
        a.prompt_tokens + a.forced <= max_positions,
        "--prompt-tokens {} + --forced {} = {} positions, more than the model's {max_positions} \
         (max_position_embeddings)",
        a.prompt_tokens,
        a.forced,
        a.prompt_tokens + a.forced
    );
    let tokens = opened.tokenize_file(&a.data, Some(a.prompt_tokens * 16))?;
    ensure!(
        tokens.len() >= a.prompt_tokens,
        "{}: only {} tokens",
        a.data.display(),
        tokens.len()
    );
    let prompt = &tokens[..a.prompt_tokens];
    let reference_model = ReferenceModel::load(&WeightSource::Deployed(m))?;
    let max_seq = a.prompt_tokens + a.forced;
    let g = GpuModel::load(
        &gpu,
        m,
        RunOptions {
            max_seq,
            max_batch: a.max_batch.min(max_seq),
        },
    )
    .map_err(|e| match e {
        // The context comes from --prompt-tokens and --forced here, not from --max-seq.
        GpuError::TooLarge { .. } | GpuError::InvalidOptions(_) | GpuError::OutOfMemory { .. } => {
            anyhow::anyhow!(
                "{e} (tlite parity uses a context of --prompt-tokens + --forced = {max_seq}: \
                 lower those instead of --max-seq)"
            )
        }
        e => e.into(),
    })?;
    let mut reference = reference_model.session(max_seq)?;
    let mut g = GpuLm::new(&gpu, g);
    let pb = crate::progress::bar((2 * a.forced) as u64, "parity");
    let r = parity::parity(&mut reference, &mut g, prompt, a.forced, &mut |d, _| {
        pb.set_position(d as u64)
    })?;
    pb.finish_and_clear();
    let layer_nmse = if a.layers {
        Some(parity::layer_nmse(&mut reference, &mut g, prompt)?)
    } else {
        None
    };
    let pass = r.top1_agree_pct >= tolerance::TOP1_MIN_PCT_REAL && r.kld_mean <= tolerance::KLD_MAX;
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["device"] = gpu.info.name.clone().into();
        v["layer_nmse"] = serde_json::to_value(&layer_nmse)?;
        v["pass"] = pass.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "parity on {}: {} prompt + {} forced tokens, {} positions",
            gpu.info.name, r.prompt_tokens, r.forced_tokens, r.positions
        );
        println!(
            "top-1 agreement   {:>10.2}%   (tolerance ≥ {}%)",
            r.top1_agree_pct,
            tolerance::TOP1_MIN_PCT_REAL
        );
        println!(
            "mean KLD          {:>10.3e}   (tolerance ≤ {:e})",
            r.kld_mean,
            tolerance::KLD_MAX
        );
        println!("max KLD           {:>10.3e}", r.kld_max);
        println!(
            "max |Δlogprob|    {:>10.3e}   at position {}, token {}",
            r.max_abs_dlogit, r.max_at.0, r.max_at.1
        );
        println!("mean |Δlogprob|   {:>10.3e}", r.mean_abs_dlogit);
        if let Some(l) = &layer_nmse {
            for (i, v) in l.iter().enumerate() {
                println!("layer {i:>3} hidden NMSE {v:.3e}");
            }
        }
        println!("{}", if pass { "PASS" } else { "FAIL" });
    }
    ensure!(pass, "parity outside tolerance");
    Ok(())
}
