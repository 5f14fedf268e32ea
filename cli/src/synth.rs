//! `tlite synth`

use std::path::PathBuf;

use anyhow::Context;
use tlite_converter::synth::{SynthSpec, write_checkpoint_to};

#[derive(clap::Args)]
pub struct Args {
    /// `tiny-<llama|qwen2|gemma|gemma2|gemma3|chatglm>`, `llama-1b`, `llama-8b`, `qwen2.5-1.5b`, `gemma-2b`.
    preset: String,
    /// Output folder (a Hugging Face-style checkpoint).
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Seed of the random weights.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the number of layers (1 to 1024).
    #[arg(long, value_parser = crate::args::count_upto::<1024>)]
    layers: Option<usize>,
    /// Override the vocabulary size (300 to 1,048,576; e.g. 49152 for the side-by-side
    /// bodies, SmolLM2's).
    #[arg(long, value_parser = crate::args::count_upto::<1_048_576>)]
    vocab: Option<usize>,
    /// Replace an existing output folder that tlite wrote.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut spec =
        SynthSpec::preset(&a.preset).with_context(|| format!("unknown preset `{}`", a.preset))?;
    if let Some(s) = a.seed {
        spec.seed = s;
    }
    if let Some(l) = a.layers {
        spec.layers = l;
    }
    if let Some(v) = a.vocab {
        anyhow::ensure!(
            v >= 300,
            "--vocab {v}: at least 300 (the byte tokenizer's tokens)"
        );
        spec.vocab = v;
    }
    write_checkpoint_to(&spec, &a.output, a.force)?;
    println!(
        "wrote {} ({:?}, {} layers, hidden {}) to {}",
        a.preset,
        spec.family,
        spec.layers,
        spec.hidden,
        a.output.display()
    );
    Ok(())
}
