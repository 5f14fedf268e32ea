//! `tlite quant-error`

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use tlite_converter::checkpoint::Checkpoint;
use tlite_eval::load::{Opened, Weights};
use tlite_eval::quant_error::{Hessian, QuantErrorReport, WeightMatrix};
use tlite_eval::reference::{Calibration, LinearInput};
use tlite_model::SafetensorsFile;
use tlite_model::config::ModelConfig;
use tlite_quantizer::gptq::{self, GptqOptions, Prepared};
use tlite_quantizer::{Scheme, SchemeKind};

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face checkpoint folder or repo id `org/name[@revision]` (from the HF cache, else
    /// downloaded into it): its quantizable matrices; or a single
    /// .safetensors file (every 2-D tensor).
    path: String,
    /// Weights per group along the input dimension (32, 64 or 128; any multiple of 8 from 8
    /// to 4096) for M0E4 and the INT4 baselines; the field's formats use their own blocks
    /// (MXFP4 32, NVFP4 16, NF4 64, IQ4_NL 32, Q4_K 256).
    #[arg(long, short = 'g', default_value_t = 64, value_parser = crate::args::group_size)]
    group: usize,
    /// Schemes to compare (default: all of m0e4-minmax, m0e4-search, int4-zp, q4_1-minmax,
    /// q4_1-search, q4_0, and the field's formats mxfp4, mxfp4-search, nvfp4, nvfp4-search,
    /// nf4, nf4-search, iq4_nl, q4_k).
    #[arg(long, value_delimiter = ',')]
    schemes: Vec<String>,
    /// Only tensors whose name contains this string.
    #[arg(long)]
    filter: Option<String>,
    /// A plain-text file for a calibration pass (checkpoints only): errors are weighted per
    /// input channel by the mean x² of that channel's input, and the searched schemes fit to
    /// the weighted error. Its last `--calib-chunks` windows of `--ctx` tokens are used.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Windows of the calibration pass (at least 1).
    #[arg(long, default_value_t = 8, value_parser = crate::args::count)]
    calib_chunks: usize,
    /// Tokens per calibration window: at least 2, at most the model's positions.
    #[arg(long, default_value_t = 512, value_parser = crate::args::count_from::<2>)]
    ctx: usize,
    /// With `--calibration`: also collect each input's Gram matrix XᵀX (its lower triangle in
    /// f32, 2·cols·(cols+1) bytes per input site, ~0.2 GB for SmolLM2-135M), add a GPTQ column `SCHEME+gptq` for every scheme
    /// that supports it, and report every column's relative output error ‖X(W−Ŵ)ᵀ‖²/‖XWᵀ‖²
    /// (GPTQ raises the weight MSE; the output error is what it lowers). The embedding is
    /// rounded to nearest in the GPTQ columns (it has no input to calibrate).
    #[arg(long, requires = "calibration")]
    gptq: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The matrices to measure (name and shape) and where their data is read.
struct Source {
    files: Vec<(String, Vec<usize>)>,
    checkpoint: Option<Checkpoint>,
    single: Option<SafetensorsFile>,
}

impl Source {
    fn open(path: &str, filter: Option<&str>) -> anyhow::Result<Self> {
        let keep = |n: &str| filter.is_none_or(|f| n.contains(f));
        if path.ends_with(".safetensors") && Path::new(path).is_file() {
            let file = SafetensorsFile::open(Path::new(path))?;
            let files = file
                .entries()
                .iter()
                .filter(|e| e.shape.len() == 2 && keep(&e.name))
                .map(|e| (e.name.clone(), e.shape.clone()))
                .collect();
            return Ok(Source {
                files,
                checkpoint: None,
                single: Some(file),
            });
        }
        let ck = Checkpoint::open(path)?;
        let files = ck
            .expected_tensors()?
            .into_iter()
            .filter(|t| t.role.quantizable() && t.shape.len() == 2 && keep(&t.name))
            .map(|t| (t.name, t.shape))
            .collect();
        Ok(Source {
            files,
            checkpoint: Some(ck),
            single: None,
        })
    }

    fn data(&self, name: &str) -> anyhow::Result<Vec<f32>> {
        Ok(match (&self.checkpoint, &self.single) {
            (Some(ck), _) => ck.tensor_f32(name)?,
            (None, Some(f)) => {
                let e = f
                    .entries()
                    .iter()
                    .find(|e| e.name == name)
                    .context("tensor listed but not found")?;
                f.to_f32(e)?
            }
            (None, None) => unreachable!("a source holds a checkpoint or a file"),
        })
    }
}

/// Runs the calibration pass over the end of `text` (with Gram matrices under `--gptq`).
fn calibrate(a: &Args, text: &Path) -> anyhow::Result<(Calibration, ModelConfig)> {
    let opened = Opened::open(&a.path)?;
    ensure!(
        matches!(opened.weights, Weights::Checkpoint(_)),
        "--calibration needs an unquantized checkpoint"
    );
    let model = opened.load_reference()?;
    let max_positions = model.config.max_position_embeddings;
    ensure!(
        a.ctx <= max_positions,
        "--ctx {} is more than the model's {max_positions} positions (max_position_embeddings): \
         use --ctx {max_positions} or less",
        a.ctx
    );
    let (tail, _) = opened.tokenize_file_tail(text, (a.calib_chunks + 1) * a.ctx * 8)?;
    let want = a.calib_chunks * a.ctx;
    ensure!(
        tail.len() >= want,
        "{}: {} tokens, need {want} for calibration",
        text.display(),
        tail.len()
    );
    let pb = crate::progress::bar(a.calib_chunks as u64, "calibration");
    let toks = &tail[tail.len() - want..];
    let (bos, mut progress) = (opened.window_bos()?, |d, _| pb.set_position(d as u64));
    let stats = if a.gptq {
        let max = Calibration::DEFAULT_MAX_GRAM_BYTES;
        Calibration::collect_gram(&model, toks, a.ctx, bos, max, &mut progress)?
    } else {
        Calibration::collect(&model, toks, a.ctx, bos, &mut progress)?
    };
    pb.finish_and_clear();
    Ok((stats, model.config))
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    a.path = crate::hub::local(&a.path)?;
    tlite_quantizer::check_group(a.group)?;
    let schemes: Vec<SchemeKind> = if a.schemes.is_empty() {
        SchemeKind::ALL.to_vec()
    } else {
        a.schemes
            .iter()
            .map(|s| {
                SchemeKind::parse(s).with_context(|| {
                    format!(
                        "unknown scheme `{s}`; known: {}",
                        SchemeKind::ALL
                            .map(|k| tlite_quantizer::Scheme::name(&k))
                            .join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let src = Source::open(&a.path, a.filter.as_deref())?;
    if src.files.is_empty() {
        bail!("{}: no 2-D weight tensors to measure", a.path);
    }
    let calib = match &a.calibration {
        Some(text) => {
            ensure!(
                src.checkpoint.is_some(),
                "--calibration needs a checkpoint folder or repo id, not a single .safetensors file"
            );
            Some(calibrate(&a, text)?)
        }
        None => None,
    };
    let imp = calib.as_ref().map(|(c, config)| c.importance(config));
    let gptq_schemes: Vec<SchemeKind> = if a.gptq {
        schemes.iter().copied().filter(|s| s.has_grid()).collect()
    } else {
        Vec::new()
    };
    // the input site of every matrix with one (not the embedding, whose input is a lookup)
    let sites: HashMap<String, LinearInput> = match &calib {
        Some((_, config)) if a.gptq => {
            let embed = config.arch().model_spec(config).embed;
            Calibration::tensor_sites(config)
                .into_iter()
                .filter(|(name, _)| *name != embed)
                .collect()
        }
        _ => HashMap::new(),
    };
    let pb = crate::progress::bar(src.files.len() as u64, "quantizing");
    let mut report = QuantErrorReport::with_gptq(a.group, &schemes, &gptq_schemes);
    // the site of the previous tensor: its Gram matrix (expanded) and factorization
    let mut last: Option<(LinearInput, Vec<f64>, Prepared)> = None;
    for (name, shape) in &src.files {
        pb.set_message(name.clone());
        let data = src.data(name)?;
        let site = match (sites.get(name), &calib) {
            (Some(&site), Some((stats, _))) => {
                if last.as_ref().is_none_or(|(s, ..)| *s != site) {
                    last = match stats.gram(site) {
                        Some((h, n)) => {
                            let p = gptq::prepare(&h, n, &GptqOptions::default())
                                .with_context(|| format!("GPTQ for {name}"))?;
                            Some((site, h, p))
                        }
                        None => None,
                    };
                }
                Some(site)
            }
            _ => None,
        };
        let hessian = match (site, &last) {
            (Some(site), Some((s, h, p))) if *s == site => Some(Hessian { h, prepared: p }),
            _ => None,
        };
        report.add_with_hessian(
            &schemes,
            &gptq_schemes,
            &WeightMatrix {
                name,
                data: &data,
                rows: shape[0],
                cols: shape[1],
            },
            imp.as_ref().and_then(|m| m.get(name)).map(Vec::as_slice),
            hessian.as_ref(),
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
