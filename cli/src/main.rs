//! `tlite`: convert Hugging Face checkpoints to M0E4, measure what quantization costs, and run
//! models on the GPU through wgpu.

mod devices;
mod progress;
mod quant_error;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tlite",
    version,
    about = "M0E4 4-bit LLM toolkit: convert, measure, run on wgpu"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per-tensor quantization error of M0E4 and the 4-bit baselines on a safetensors file.
    QuantError(quant_error::Args),
    /// List GPU adapters, print the chosen one's features and limits, optionally self-check.
    Devices(devices::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::QuantError(a) => quant_error::run(a),
        Command::Devices(a) => devices::run(a),
    }
}
