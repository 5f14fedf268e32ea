//! `tlite`: convert Hugging Face checkpoints to M0E4, measure what quantization costs, and run
//! models on the GPU through wgpu.

mod args;
mod bench;
mod convert;
mod devices;
mod export;
mod export_gguf;
mod hub;
mod import_gguf;
mod inspect;
mod lab;
mod parity;
mod ppl;
mod priority;
mod probe;
mod progress;
mod quant_error;
mod rotate;
mod run;
mod sweep;
mod synth;

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
    /// Per-tensor quantization error of M0E4 and the 4-bit baselines (a checkpoint or a
    /// safetensors file; optionally weighted by calibration statistics).
    QuantError(quant_error::Args),
    /// List GPU adapters, print the chosen one's features and limits, optionally self-check.
    Devices(devices::Args),
    /// Convert a Hugging Face checkpoint into a deployable M0E4 model.
    Convert(convert::Args),
    /// Write a deployable model's weights, dequantized, as a Hugging Face checkpoint.
    Export(export::Args),
    /// Rotate a checkpoint's residual stream (norms folded): an equivalent Hugging Face
    /// checkpoint whose weights quantize with fewer outliers.
    Rotate(rotate::Args),
    /// Architecture, parameters, bits per weight and tensor layout of a model or checkpoint.
    Inspect(inspect::Args),
    /// Perplexity of a model on a text corpus (on the GPU or the CPU reference).
    Ppl(ppl::PplArgs),
    /// KL divergence, top-1 agreement and ΔPPL of a quantized model against its baseline.
    Compare(ppl::CompareArgs),
    /// Parity of the GPU runtime with the CPU reference on forced tokens.
    Parity(parity::Args),
    /// Prefill and decode throughput on the GPU (pp / tg, median of repeats).
    Bench(bench::Args),
    /// Generate text on the GPU, or on the CPU reference with --device cpu (streamed; --chat uses
    /// the model's template).
    Run(run::Args),
    /// Write a random-weight checkpoint of a named shape (tiny test models, benchmark bodies).
    Synth(synth::Args),
    /// ΔPPL, KLD and top-1 of many fake-quantized variants against one baseline pass.
    Sweep(sweep::Args),
    /// Draw the ΔPPL-vs-bits-per-weight SVG of sweep reports and print their tables.
    SweepPlot(sweep::PlotArgs),
    /// Import a GGUF file as a Hugging Face-style folder (dequantized to f32 by default).
    ImportGguf(import_gguf::Args),
    /// Write a checkpoint as an F32 GGUF file shaped like a GGUF of the same model (its
    /// metadata and tensor names): a rotated checkpoint for llama.cpp's tools.
    ExportGguf(export_gguf::Args),
    /// Latency of a small concurrent GPU job while the model decodes, per execution priority.
    PriorityBench(priority::Args),
    /// Measurements outside any model: the per-dispatch floor, the decode GEMVs' bandwidth.
    Lab(lab::Args),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, never a backtrace (whatever RUST_BACKTRACE).
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`tlite inspect … | head`) would
    // panic; restore the default and end quietly instead, as other command-line tools do.
    #[cfg(unix)]
    // SAFETY: sets a signal disposition at the start of main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::QuantError(a) => quant_error::run(a),
        Command::Devices(a) => devices::run(a),
        Command::ImportGguf(a) => import_gguf::run(a),
        Command::ExportGguf(a) => export_gguf::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Export(a) => export::run(a),
        Command::Rotate(a) => rotate::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Run(a) => run::run(a),
        Command::Parity(a) => parity::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Ppl(a) => ppl::run_ppl(a),
        Command::Compare(a) => ppl::run_compare(a),
        Command::Sweep(a) => sweep::run(a),
        Command::SweepPlot(a) => sweep::run_plot(a),
        Command::PriorityBench(a) => priority::run(a),
        Command::Lab(a) => lab::run(a),
    }
}
