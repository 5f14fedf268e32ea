//! `tlite quant-error`

use std::path::PathBuf;

use anyhow::{Context, bail};
use tlite_converter::SafetensorsFile;
use tlite_eval::quant_error::{QuantErrorReport, WeightMatrix};
use tlite_quantizer::SchemeKind;

#[derive(clap::Args)]
pub struct Args {
    /// A .safetensors file.
    path: PathBuf,
    /// Weights per group along the input dimension (32, 64 or 128).
    #[arg(long, short = 'g', default_value_t = 64)]
    group: usize,
    /// Schemes to compare (default: all of m0e4-minmax, m0e4-search, int4-zp, q4_1-minmax,
    /// q4_1-search, q4_0).
    #[arg(long, value_delimiter = ',')]
    schemes: Vec<String>,
    /// Only tensors whose name contains this string.
    #[arg(long)]
    filter: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    tlite_quantizer::check_group(a.group)?;
    let schemes: Vec<SchemeKind> = if a.schemes.is_empty() {
        SchemeKind::REPORT.to_vec()
    } else {
        a.schemes
            .iter()
            .map(|s| {
                SchemeKind::parse(s).with_context(|| {
                    format!(
                        "unknown scheme `{s}`; known: {}",
                        SchemeKind::REPORT
                            .map(|k| tlite_quantizer::Scheme::name(&k))
                            .join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let file = SafetensorsFile::open(&a.path)?;
    let weights: Vec<_> = file
        .entries()
        .iter()
        .filter(|e| e.shape.len() == 2)
        .filter(|e| a.filter.as_ref().is_none_or(|f| e.name.contains(f)))
        .collect();
    if weights.is_empty() {
        bail!("{}: no 2-D weight tensors to measure", a.path.display());
    }
    let pb = crate::progress::bar(weights.len() as u64, "quantizing");
    let mut report = QuantErrorReport::new(a.group, &schemes);
    for e in weights {
        pb.set_message(e.name.clone());
        let data = file.to_f32(e)?;
        report.add(
            &schemes,
            &WeightMatrix {
                name: &e.name,
                data: &data,
                rows: e.shape[0],
                cols: e.shape[1],
            },
            None,
        )?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
