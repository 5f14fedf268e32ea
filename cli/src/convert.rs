//! `tlite convert`

use std::path::PathBuf;

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{self, ConvertOptions, MIN_BINDING_LIMIT};
use tlite_model::deploy::{DEFAULT_BINDING_LIMIT, KeepRule};
use tlite_quantizer::Method;

use crate::progress::EventBar;

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face checkpoint folder, or a repo id `org/name[@revision]` (from the HF cache,
    /// else downloaded into it).
    src: String,
    /// Output folder of the deployable model.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Weights per group along the input dimension (32, 64 or 128; any multiple of 8 from 8
    /// to 4096).
    #[arg(long, short = 'g', default_value_t = 64, value_parser = crate::args::group_size)]
    group_size: usize,
    /// How each group's scale and bias are chosen.
    #[arg(long, default_value = "search")]
    quantizer: Method,
    /// Per-tensor precision: `REGEX=f16`, `REGEX=f32`, or `REGEX=m0e4@GROUP` (M0E4 at its own
    /// group size; matrices only) for tensors whose name matches (repeatable; the first
    /// matching rule decides, before the preset's).
    #[arg(long)]
    keep: Vec<KeepRule>,
    /// A named precision policy: m0e4 (every matrix in M0E4, the default), emb-f16 (embedding
    /// and LM head in f16), mixed (emb-f16, and attention V and the FFN down projection at
    /// group 32).
    #[arg(long, default_value = "m0e4", value_parser = preset_name)]
    preset: String,
    /// Split tensors into chunks of at most this many bytes (a device's binding limit), from
    /// 1 KiB to 4 GiB − 1 (the largest binding a WebGPU device can have).
    #[arg(long, default_value_t = DEFAULT_BINDING_LIMIT,
          value_parser = crate::args::u64_in::<MIN_BINDING_LIMIT, { u32::MAX as u64 }>)]
    binding_limit: u64,
    /// Replace an existing output folder that tlite wrote (any other non-empty folder is refused).
    #[arg(long)]
    force: bool,
    /// Rotate the residual stream before quantizing (as `tlite rotate`: norms folded, LM head
    /// untied; pre-norm families only).
    #[arg(long)]
    rotate: bool,
    /// Seed of the rotation (default 0).
    #[arg(long, requires = "rotate")]
    rotate_seed: Option<u64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn preset_name(s: &str) -> Result<String, String> {
    match deploy::preset(s) {
        Some(_) => Ok(s.to_owned()),
        None => Err(format!(
            "unknown preset `{s}`: expected one of {}",
            (deploy::PRESETS.iter().map(|p| p.0))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let ck = Checkpoint::open(&crate::hub::local(&a.src)?)?;
    let mut keep = a.keep;
    keep.extend(deploy::preset(&a.preset).unwrap_or_default());
    let opts = ConvertOptions {
        group: a.group_size,
        method: a.quantizer,
        keep,
        binding_limit: a.binding_limit,
        overwrite: a.force,
        rotate: a.rotate.then_some(tlite_converter::rotate::RotateOptions {
            seed: a.rotate_seed.unwrap_or(0),
        }),
    };
    if !a.json {
        eprintln!(
            "convert: {} ({}, {} layers, hidden {}) -> {} | M0E4 g={} {}{} | binding limit {}{}",
            ck.dir.display(),
            ck.config.model_type,
            ck.config.num_layers,
            ck.config.hidden_size,
            a.output.display(),
            opts.group,
            opts.method,
            if opts.keep.is_empty() {
                String::new()
            } else {
                let rules: Vec<String> = opts.keep.iter().map(|k| k.to_rule_string()).collect();
                format!(" | rules {}", rules.join(" "))
            },
            crate::progress::bytes(opts.binding_limit),
            match opts.rotate {
                Some(r) => format!(" | rotated (seed {})", r.seed),
                None => String::new(),
            }
        );
    }
    let mut bar = EventBar::new();
    let report = deploy::convert(&ck, &a.output, &opts, &mut |e| bar.on(e))?;
    bar.finish();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{:<56} {:>14} {:>9} {:>7} {:>11} {:>9}",
        "tensor", "shape", "store", "chunks", "bytes", "sqnr_dB"
    );
    for t in &report.tensors {
        let shape = t
            .shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        println!(
            "{:<56} {:>14} {:>9} {:>7} {:>11} {:>9.2}",
            t.name,
            shape,
            match t.group {
                Some(g) => format!("m0e4@{g}"),
                None => format!("{:?}", t.storage).to_lowercase(),
            },
            t.chunks,
            t.bytes,
            t.error.sqnr_db
        );
    }
    println!(
        "\n{} parameters, {:.1} MiB, {:.3} bits per weight over all weights (embeddings and \
         norms included), {:.1} s -> {}",
        report.parameters,
        report.bytes as f64 / (1 << 20) as f64,
        report.bits_per_weight,
        report.seconds,
        report.output.display()
    );
    Ok(())
}
