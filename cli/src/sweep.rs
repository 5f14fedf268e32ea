//! `tlite sweep` and `tlite sweep-plot`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use tlite_eval::load::{Opened, Weights};
use tlite_eval::plot::delta_ppl_svg;
use tlite_eval::ppl::{self, PplOptions};
use tlite_eval::sweep::{SweepConfig, SweepEvent, SweepInput, SweepReport, sweep};

#[derive(clap::Args)]
pub struct Args {
    /// The unquantized baseline: a Hugging Face folder or a repo id.
    base: String,
    /// A plain-text corpus (e.g. .cache/corpus/brown.txt). Windows are taken from its start;
    /// calibration text from its end.
    #[arg(long)]
    data: PathBuf,
    /// Tokens per window: at least 3, at most the model's positions.
    #[arg(long, default_value_t = 512, value_parser = crate::args::count_from::<3>)]
    ctx: usize,
    /// Windows to evaluate (at least 1).
    #[arg(long, default_value_t = 8, value_parser = crate::args::count)]
    chunks: usize,
    /// Configurations, SCHEME[+imp][+gptq][+f16emb]@GROUP (e.g. m0e4-search@64,q4_0@32,
    /// m0e4-search+imp@128, m0e4-search+imp+gptq@64: GPTQ for the linear weights from the Gram
    /// matrices of the calibration pass, ~0.2 GB for SmolLM2-135M, 4.9 GB for Qwen2.5-1.5B);
    /// default: M0E4 minmax/search at 32/64/128, M0E4 search+imp at 64/128, q4_0 at 32/64,
    /// int4-zp at 64/128, q4_1-minmax at 64. The field's formats have their own block and
    /// need no @GROUP: mxfp4[-search], nvfp4[-search], nf4[-search], iq4_nl, q4_k (e.g.
    /// q4_k,iq4_nl+imp,q4_k+imp+gptq).
    #[arg(long, value_delimiter = ',')]
    configs: Vec<String>,
    /// Also run the field's 4-bit formats, each at its own block: mxfp4, mxfp4-search, nvfp4,
    /// nvfp4-search, nf4, nf4-search, iq4_nl, q4_k, and (unless --no-importance) the searched
    /// ones with +imp.
    #[arg(long)]
    field_formats: bool,
    /// Leave the importance-weighted configurations out of the default set.
    #[arg(long)]
    no_importance: bool,
    /// Windows of `ctx` tokens for the calibration pass, from the end of `--data` (at least 1).
    #[arg(long, default_value_t = 8, value_parser = crate::args::count)]
    calib_chunks: usize,
    /// Write the report as JSON here (rewritten after every configuration).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the rows of an existing `--json` report of the same model, data and windows, and
    /// run only the configurations it lacks (the baseline is recomputed and must agree).
    #[arg(long, requires = "json")]
    resume: bool,
    #[command(flatten)]
    device: crate::ppl::DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut configs: Vec<SweepConfig> = if a.configs.is_empty() {
        SweepConfig::defaults(!a.no_importance)
    } else {
        a.configs
            .iter()
            .map(|s| SweepConfig::parse(s).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?
    };
    if a.field_formats {
        for c in SweepConfig::field_formats(!a.no_importance) {
            if !configs.contains(&c) {
                configs.push(c);
            }
        }
    }
    let opened = Opened::open(&a.base)?;
    let Weights::Checkpoint(ck) = &opened.weights else {
        anyhow::bail!(
            "{}: a sweep needs the unquantized checkpoint, not a deployable model",
            a.base
        );
    };
    let max_positions = ck.config.max_position_embeddings;
    ensure!(
        a.ctx <= max_positions,
        "--ctx {} is more than the model's {max_positions} positions (max_position_embeddings): \
         use --ctx {max_positions} or less",
        a.ctx
    );
    let eval_chars = (a.chunks + 1) * a.ctx * 8;
    let tokens = opened.tokenize_file(&a.data, Some(eval_chars))?;
    let opts = PplOptions {
        ctx: a.ctx,
        max_windows: Some(a.chunks),
        score_all: false,
        bos: opened.window_bos()?,
    };
    let n = ppl::windows(&tokens, &opts).len();
    ensure!(
        n == a.chunks,
        "{}: {} tokens give {n} windows of {}, not {}",
        a.data.display(),
        tokens.len(),
        a.ctx,
        a.chunks
    );
    let previous = match (&a.json, a.resume) {
        (Some(p), true) if p.is_file() => Some(previous_report(p, &a, &opts)?),
        _ => None,
    };
    if let Some(prev) = &previous {
        configs.retain(|c| !prev.rows.iter().any(|r| r.config == c.label()));
        eprintln!(
            "resuming: {} rows kept, {} configurations to run",
            prev.rows.len(),
            configs.len()
        );
        if configs.is_empty() {
            print!("{}", prev.to_markdown());
            return Ok(());
        }
    }
    let calib = if configs.iter().any(|c| c.importance || c.gptq) {
        Some(calibration_tokens(&opened, &a, eval_chars)?)
    } else {
        None
    };
    eprintln!(
        "sweep: {} | {n} windows of {} from {} | {} configurations | {} threads",
        ck.dir.display(),
        a.ctx,
        a.data.display(),
        configs.len(),
        rayon_threads()
    );
    let gpu = a.device.gpu()?;
    let input = SweepInput {
        checkpoint: ck,
        model: a.base.clone(),
        data: a.data.display().to_string(),
        tokens: &tokens,
        opts,
        calibration: calib.as_ref().map(|(t, s)| (t.as_slice(), s.clone())),
        configs,
        gpu: gpu.as_ref().map(|g| a.device.sweep_gpu(g, a.ctx)),
    };
    let report = run_with_log(&input, a.json.as_ref(), previous.as_ref())?;
    print!("{}", report.to_markdown());
    Ok(())
}

/// An earlier report to resume, checked to describe the same evaluation.
fn previous_report(path: &PathBuf, a: &Args, opts: &PplOptions) -> anyhow::Result<SweepReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let prev: SweepReport = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a sweep report", path.display()))?;
    ensure!(
        prev.model == a.base
            && prev.data == a.data.display().to_string()
            && prev.ctx == opts.ctx
            && prev.windows == a.chunks
            && prev.bos == opts.bos,
        "{}: a sweep of {} on {} ({} × {}), not this one; use another --json",
        path.display(),
        prev.model,
        prev.data,
        prev.windows,
        prev.ctx
    );
    Ok(prev)
}

/// The previous rows followed by the new ones; the baselines must agree.
fn merge(previous: Option<&SweepReport>, new: &SweepReport) -> anyhow::Result<SweepReport> {
    let Some(prev) = previous else {
        return Ok(new.clone());
    };
    ensure!(
        (prev.base_ppl - new.base_ppl).abs() <= 1e-9 * prev.base_ppl,
        "the baseline PPL {} differs from the resumed report's {}",
        new.base_ppl,
        prev.base_ppl
    );
    let mut out = new.clone();
    out.rows = prev.rows.iter().chain(&new.rows).cloned().collect();
    if out.calibration.is_none() {
        out.calibration = prev.calibration.clone();
    }
    Ok(out)
}

/// The last `calib_chunks` windows of tokens of the corpus, checked to lie after the evaluated
/// head of the file.
fn calibration_tokens(
    opened: &Opened,
    a: &Args,
    eval_chars: usize,
) -> anyhow::Result<(Vec<u32>, String)> {
    let want = a.calib_chunks * a.ctx;
    let (tail, start) = opened.tokenize_file_tail(&a.data, (a.calib_chunks + 1) * a.ctx * 8)?;
    ensure!(
        start >= eval_chars,
        "{} is too short: the calibration text (from byte {start}) would overlap the evaluated \
         text (bytes 0..{eval_chars})",
        a.data.display()
    );
    ensure!(
        tail.len() >= want,
        "calibration: {} tokens at the end of {}, need {want}",
        tail.len(),
        a.data.display()
    );
    let toks = tail[tail.len() - want..].to_vec();
    let desc = format!(
        "the last {want} tokens of {} (text from byte {start}; evaluation reads bytes 0..{eval_chars})",
        a.data.display()
    );
    Ok((toks, desc))
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the sweep, logging phases and rows to stderr and rewriting the JSON after each row.
fn run_with_log(
    input: &SweepInput,
    json: Option<&PathBuf>,
    previous: Option<&SweepReport>,
) -> anyhow::Result<SweepReport> {
    let mut pb: Option<indicatif::ProgressBar> = None;
    let mut t_phase = Instant::now();
    let mut phase_name = String::new();
    let mut write_err: Option<anyhow::Error> = None;
    let report = sweep(input, &mut |e| match e {
        SweepEvent::Phase { name, windows } => {
            if let Some(b) = pb.take() {
                b.finish_and_clear();
            }
            if !phase_name.is_empty() {
                eprintln!(
                    "  {phase_name} done in {:.1}s",
                    t_phase.elapsed().as_secs_f64()
                );
            }
            eprintln!("{name} ...");
            pb = Some(crate::progress::bar(windows as u64, &name));
            phase_name = name;
            t_phase = Instant::now();
        }
        SweepEvent::Window { done } => {
            if let Some(b) = &pb {
                b.set_position(done as u64);
            }
        }
        SweepEvent::Row(r) => {
            if let Some(row) = r.rows.last() {
                eprintln!(
                    "  {:<22} {:.3} bpw  PPL {:.4}  ΔPPL {:+.2}% ± {:.2}  KLD {:.4}  top-1 {:.2}%  (quantize {:.1}s, eval {:.1}s)",
                    row.config,
                    row.bits_per_weight,
                    row.ppl,
                    row.delta_ppl_pct,
                    row.delta_ppl_err_pct.unwrap_or(f64::NAN),
                    row.kld_mean,
                    row.top1_agree_pct,
                    row.quantize_seconds,
                    row.eval_seconds
                );
            }
            if let Some(path) = json
                && let Err(e) = merge(previous, r).and_then(|m| write_json(path, &m))
            {
                write_err.get_or_insert(e);
            }
        }
    })?;
    if let Some(b) = pb.take() {
        b.finish_and_clear();
    }
    eprintln!(
        "  {phase_name} done in {:.1}s",
        t_phase.elapsed().as_secs_f64()
    );
    if let Some(e) = write_err {
        return Err(e);
    }
    let report = merge(previous, &report)?;
    if let Some(path) = json {
        write_json(path, &report)?;
    }
    Ok(report)
}

/// Writes through a temporary name so that a reader never sees half a file.
fn write_json(path: &PathBuf, report: &SweepReport) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[derive(clap::Args)]
pub struct PlotArgs {
    /// Sweep reports written by `tlite sweep --json`, one panel each, in this order.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// The plot's title.
    #[arg(
        long,
        default_value = "ΔPPL vs bits per weight (fake-quantized, CPU reference)"
    )]
    title: String,
}

pub fn run_plot(a: PlotArgs) -> anyhow::Result<()> {
    let reports: Vec<SweepReport> = a
        .reports
        .iter()
        .map(|p| -> anyhow::Result<SweepReport> {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not a sweep report", p.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    std::fs::write(&a.output, delta_ppl_svg(&reports, &a.title))
        .with_context(|| format!("writing {}", a.output.display()))?;
    for (p, r) in a.reports.iter().zip(&reports) {
        println!(
            "### {} ({}; {} windows × {} tokens, {} scored)\n",
            r.model,
            p.display(),
            r.windows,
            r.ctx,
            r.tokens_scored
        );
        println!("{}", r.to_markdown());
    }
    eprintln!("wrote {}", a.output.display());
    Ok(())
}
