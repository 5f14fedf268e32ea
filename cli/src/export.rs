//! `tlite export`

use std::path::PathBuf;

use anyhow::bail;
use tlite_converter::export::{self, ExportDtype, ExportOptions};
use tlite_model::deploy::DeployedModel;

use crate::progress::EventBar;

#[derive(clap::Args)]
pub struct Args {
    /// A deployable model folder (made by `tlite convert`).
    model: PathBuf,
    /// Output folder: a Hugging Face checkpoint (sharded safetensors with an index, config.json,
    /// tokenizer files).
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Type of the exported weights: bf16, f16 or f32 (f32 holds the dequantized values
    /// exactly) [default: the source checkpoint's torch_dtype, else bf16].
    #[arg(long)]
    dtype: Option<ExportDtype>,
    /// Largest shard: bytes, or with K, M or G (binary units).
    #[arg(long, default_value = "4G", value_parser = crate::args::byte_size)]
    shard_size: u64,
    /// Replace an existing output folder that tlite wrote (any other non-empty folder is refused).
    #[arg(long)]
    force: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if !DeployedModel::is_deployable(&a.model) {
        bail!(
            "{} is not a deployable model (a folder with {} made by `tlite convert`)",
            a.model.display(),
            tlite_model::deploy::MODEL_FILE
        );
    }
    let m = DeployedModel::open(&a.model)?;
    let opts = ExportOptions {
        dtype: a.dtype,
        shard_bytes: a.shard_size,
        overwrite: a.force,
    };
    let mut bar = EventBar::new();
    let r = export::export(&m, &a.output, &opts, &mut |e| bar.on(e))?;
    bar.finish();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} tensors in {} shard{} ({}, {}) in {:.1} s -> {}",
            r.tensors,
            r.shards.len(),
            if r.shards.len() == 1 { "" } else { "s" },
            r.dtype.torch_name(),
            crate::progress::bytes(r.bytes),
            r.seconds,
            r.output.display()
        );
    }
    Ok(())
}
