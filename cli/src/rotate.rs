//! `tlite rotate`

use std::path::PathBuf;

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::rotate::{RotateOptions, rotate};

use crate::progress::EventBar;

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face checkpoint folder, or a repo id `org/name[@revision]` (from the HF cache,
    /// else downloaded into it). Pre-norm families only (Llama, Mistral, Qwen2, Gemma 1,
    /// ChatGLM).
    src: String,
    /// Output folder: a Hugging Face checkpoint (f32 safetensors, norms folded, LM head untied).
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Seed of the rotation (the Hadamard transform's signs, or the random orthogonal matrix).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Replace an existing output folder that tlite wrote (any other non-empty folder is refused).
    #[arg(long)]
    force: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let ck = Checkpoint::open(&crate::hub::local(&a.src)?)?;
    let mut bar = EventBar::new();
    let opts = RotateOptions { seed: a.seed };
    let report = rotate(&ck, &a.output, &opts, a.force, &mut |e| bar.on(e))?;
    bar.finish();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "rotated {} ({}, hidden {}) by {} | {} tensors, {} (f32) in {:.1} s -> {}",
            ck.dir.display(),
            ck.config.model_type,
            ck.config.hidden_size,
            report.rotation,
            report.tensors,
            crate::progress::bytes(report.bytes),
            report.seconds,
            report.output.display()
        );
    }
    Ok(())
}
