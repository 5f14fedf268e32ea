//! `tlite export-gguf`

use std::path::PathBuf;

use tlite_converter::checkpoint::Checkpoint;

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face checkpoint folder (e.g. `tlite rotate`'s output), or a repo id.
    src: String,
    /// A GGUF file of the same model whose metadata (tokenizer, hyperparameters) and tensor
    /// names are copied.
    #[arg(long)]
    like: PathBuf,
    /// The GGUF file to write (F32 tensors; for `llama-quantize` and `llama-perplexity`).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.out.exists() && !a.force {
        anyhow::bail!("{} exists (use --force to replace it)", a.out.display());
    }
    let ck = Checkpoint::open(&crate::hub::local(&a.src)?)?;
    let t = std::time::Instant::now();
    let bytes = tlite_gguf::export::export_like(&a.like, &ck, &a.out)?;
    eprintln!(
        "export-gguf: {} shaped like {} -> {} ({}, {:.1} s)",
        ck.dir.display(),
        a.like.display(),
        a.out.display(),
        crate::progress::bytes(bytes),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
