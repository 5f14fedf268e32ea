//! `tlite import-gguf`

use std::path::PathBuf;
use std::time::Instant;

use indicatif::ProgressBar;
use tlite_converter::Event;
use tlite_gguf::{ImportOptions, OutDType, import_gguf};

#[derive(Clone, Copy, clap::ValueEnum)]
enum DType {
    F32,
    F16,
    Bf16,
}

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file (llama, qwen2, gemma, gemma2 or gemma3).
    path: PathBuf,
    /// The Hugging Face-style folder to write.
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Storage type of model.safetensors (f32 keeps the dequantized values exactly).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DType,
    /// Replace OUT when it is a folder tlite wrote (any other non-empty folder is refused).
    #[arg(long)]
    force: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let dtype = match a.dtype {
        DType::F32 => OutDType::F32,
        DType::F16 => OutDType::F16,
        DType::Bf16 => OutDType::BF16,
    };
    eprintln!(
        "import-gguf: {} -> {} (dtype {}, overwrite {})",
        a.path.display(),
        a.out.display(),
        dtype.torch_name(),
        a.force
    );
    let opts = ImportOptions {
        dtype,
        overwrite: a.force,
    };
    let start = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let summary = import_gguf(&a.path, &a.out, &opts, &mut |e| match e {
        Event::Start { phase, total } => {
            bar = Some(crate::progress::bar(total as u64, phase));
        }
        Event::Item { name, .. } => {
            if let Some(pb) = &bar {
                pb.set_message(name);
                pb.inc(1);
            }
        }
        Event::Done { .. } => {
            if let Some(pb) = bar.take() {
                pb.finish_and_clear();
            }
        }
    })?;
    let seconds = start.elapsed().as_secs_f64();
    if a.json {
        let mut v = serde_json::to_value(&summary)?;
        v["seconds"] = serde_json::json!(seconds);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let types: Vec<String> = summary
            .source_types
            .iter()
            .map(|(t, n)| format!("{t}×{n}"))
            .collect();
        println!(
            "architecture  {} ({} in GGUF)",
            summary.architecture, summary.gguf_architecture
        );
        println!(
            "tensors       {} (source: {})",
            summary.tensors,
            types.join(", ")
        );
        println!("parameters    {}", summary.parameters);
        println!("vocabulary    {}", summary.vocab_size);
        println!(
            "output        {} ({:.1} MB, {})",
            summary.out_dir.display(),
            summary.bytes_written as f64 / 1e6,
            dtype.torch_name()
        );
        println!("seconds       {seconds:.1}");
    }
    Ok(())
}
