//! `tlite inspect`

use std::path::PathBuf;

use serde_json::json;
use tlite_converter::checkpoint::Checkpoint;
use tlite_model::deploy::DeployedModel;

#[derive(clap::Args)]
pub struct Args {
    /// A deployable model folder, a Hugging Face checkpoint folder, or a repo id
    /// `org/name[@revision]` (from the HF cache, else downloaded into it).
    path: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Skip checksum verification of a deployable model.
    #[arg(long)]
    no_verify: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let p = PathBuf::from(&a.path);
    if DeployedModel::is_deployable(&p) {
        let m = if a.no_verify {
            DeployedModel::open_structure(&p)?
        } else {
            DeployedModel::open(&p)?
        };
        let man = &m.manifest;
        let params = m.parameters();
        let bpw = m.data_bytes() as f64 * 8.0 / params as f64;
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "kind": "deployable", "parameters": params, "bits_per_weight": bpw,
                    "bytes": m.data_bytes(), "checksums_verified": !a.no_verify, "manifest": man,
                }))?
            );
            return Ok(());
        }
        println!("deployable model: {}", m.dir.display());
        println!(
            "format {} v{} | architecture {:?} ({}) | rope {:?} | norm {:?}",
            man.format,
            man.format_version,
            man.architecture,
            man.config.model_type,
            man.rope_layout,
            man.norm
        );
        println!(
            "quantization: {} g={} {} | keep {:?} | binding limit {}",
            man.quantization.scheme,
            man.quantization.group_size,
            man.quantization.method,
            man.quantization
                .keep
                .iter()
                .map(|k| k.to_rule_string())
                .collect::<Vec<_>>(),
            crate::progress::bytes(man.quantization.binding_limit)
        );
        println!(
            "{params} parameters | {:.1} MiB | {bpw:.3} bits per weight | checksums {}",
            m.data_bytes() as f64 / (1 << 20) as f64,
            if a.no_verify {
                "not verified"
            } else {
                "verified"
            }
        );
        println!(
            "{:<56} {:>14} {:>6} {:>6} {:>7}",
            "tensor", "shape", "store", "group", "chunks"
        );
        for t in m.tensors() {
            println!(
                "{:<56} {:>14} {:>6} {:>6} {:>7}",
                t.name,
                t.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x"),
                format!("{:?}", t.storage).to_lowercase(),
                t.group.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
                t.chunks.len()
            );
        }
        return Ok(());
    }
    let ck = Checkpoint::open(&crate::hub::local(&a.path)?)?;
    let tensors = ck.expected_tensors()?;
    let params: u64 = tensors.iter().map(|t| t.numel() as u64).sum();
    let bpw = ck.data_bytes() as f64 * 8.0 / params as f64;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "kind": "checkpoint", "path": ck.dir, "parameters": params, "bits_per_weight": bpw,
                "config": ck.config, "tensors": tensors,
            }))?
        );
        return Ok(());
    }
    let c = &ck.config;
    println!("checkpoint: {}", ck.dir.display());
    println!(
        "architecture {:?} ({}) | {} layers | hidden {} | ffn {} | heads {}/{} x {} | vocab {} | tied {} | rope {:?} | norm {:?}",
        c.family,
        c.model_type,
        c.num_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_heads,
        c.num_kv_heads,
        c.head_dim,
        c.vocab_size,
        c.tie_word_embeddings,
        ck.arch().rope,
        ck.arch().norm
    );
    println!(
        "{params} parameters | {bpw:.2} bits per weight | tokenizer {}",
        if ck.tokenizer.is_some() { "yes" } else { "no" }
    );
    println!("{:<56} {:>14} {:>10}", "tensor", "shape", "role");
    for t in &tensors {
        println!(
            "{:<56} {:>14} {:>10}",
            t.name,
            t.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x"),
            format!("{:?}", t.role).to_lowercase()
        );
    }
    Ok(())
}
