//! `tlite ppl` and `tlite compare`

use std::path::PathBuf;

use tlite_eval::load::Opened;
use tlite_eval::ppl::{self, PplOptions, PplOptionsError};

/// Corpus and windowing options shared by `ppl` and `compare`.
#[derive(clap::Args)]
pub struct DataArgs {
    /// A plain-text corpus (e.g. .cache/corpus/brown.txt).
    #[arg(long)]
    data: PathBuf,
    /// Tokens per window: at least 3 (2 with --all), at most the model's positions.
    #[arg(long, default_value_t = 512, value_parser = crate::args::count_from::<2>)]
    ctx: usize,
    /// At most this many windows (at least 1).
    #[arg(long, value_parser = crate::args::count)]
    chunks: Option<usize>,
    /// Score every position of a window instead of its second half.
    #[arg(long)]
    all: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl DataArgs {
    fn options(&self) -> anyhow::Result<PplOptions> {
        let opts = PplOptions {
            ctx: self.ctx,
            max_windows: self.chunks,
            score_all: self.all,
            // The model's, once its tokenizer is open (`Opened::window_bos`).
            bos: None,
        };
        opts.check().map_err(|e| self.flag_error(e))?;
        Ok(opts)
    }

    /// `e` in the terms of the flags that set the options.
    fn flag_error(&self, e: PplOptionsError) -> anyhow::Error {
        match e {
            PplOptionsError::ContextTooShort { min, .. } => anyhow::anyhow!(
                "--ctx {} leaves no token to score: use --ctx {min} or more ({e})",
                self.ctx
            ),
            PplOptionsError::ContextTooLong { max, .. } => anyhow::anyhow!(
                "--ctx {} is more than the model's {max} positions (max_position_embeddings): \
                 use --ctx {max} or less",
                self.ctx
            ),
            PplOptionsError::ZeroWindows => anyhow::anyhow!("--chunks must be at least 1"),
            PplOptionsError::NotOneWindow { tokens, ctx } => anyhow::anyhow!(
                "{}: {tokens} tokens, not one window of --ctx {ctx}",
                self.data.display()
            ),
        }
    }

    /// Enough characters for the windows asked for (about 8 per token), or the whole file.
    fn max_chars(&self) -> Option<usize> {
        self.chunks
            .map(|c| (c + 1).saturating_mul(self.ctx).saturating_mul(8))
    }
}

#[derive(clap::Args)]
pub struct PplArgs {
    /// A deployable M0E4 model, a Hugging Face folder, or a repo id `org/name[@revision]` (from
    /// the HF cache, else downloaded into it).
    model: String,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The unquantized baseline (HF folder or repo id).
    base: String,
    /// The quantized model (deployable M0E4 folder).
    quant: String,
    #[command(flatten)]
    data: DataArgs,
}

/// How the windows begin (llama.cpp's windows: `tlite_eval::ppl::windows`).
fn bos_note(opts: &PplOptions) -> String {
    match opts.bos {
        Some(b) => format!(", BOS {b} before the text and at each window's start"),
        None => ", no BOS (the tokenizer adds none)".into(),
    }
}

fn load(path: &str) -> anyhow::Result<(Opened, tlite_eval::reference::ReferenceModel)> {
    let o = Opened::open(&crate::hub::local(path)?)?;
    let m = o.load_reference()?;
    Ok((o, m))
}

pub fn run_ppl(a: PplArgs) -> anyhow::Result<()> {
    let mut opts = a.data.options()?;
    let (o, model) = load(&a.model)?;
    let tokens = o.tokenize_file(&a.data.data, a.data.max_chars())?;
    opts.bos = o.window_bos()?;
    opts.check_for(&model, &tokens)
        .map_err(|e| a.data.flag_error(e))?;
    let n = ppl::windows(&tokens, &opts).len();
    eprintln!(
        "ppl: {} | {} tokens, {n} windows of {}{}",
        o.source().describe(),
        tokens.len(),
        opts.ctx,
        bos_note(&opts)
    );
    let pb = crate::progress::bar(n as u64, "windows");
    let r = ppl::perplexity(&model, &tokens, &opts, &mut |d, _| {
        pb.set_position(d as u64)
    })?;
    pb.finish_and_clear();
    if a.data.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "PPL {:.4} ± {:.4} | mean NLL {:.5} | {} tokens scored in {} windows | {:.1} tok/s",
            r.ppl, r.ppl_err, r.nll_mean, r.tokens_scored, r.windows, r.tokens_per_second
        );
    }
    Ok(())
}

pub fn run_compare(a: CompareArgs) -> anyhow::Result<()> {
    let mut opts = a.data.options()?;
    let (ob, base) = load(&a.base)?;
    let (oq, quant) = load(&a.quant)?;
    let tokens = ob.tokenize_file(&a.data.data, a.data.max_chars())?;
    opts.bos = ob.window_bos()?;
    for m in [&base, &quant] {
        opts.check_for(m, &tokens)
            .map_err(|e| a.data.flag_error(e))?;
    }
    let n = ppl::windows(&tokens, &opts).len();
    eprintln!(
        "compare: base {} | quant {} | {n} windows of {}{}",
        ob.source().describe(),
        oq.source().describe(),
        opts.ctx,
        bos_note(&opts)
    );
    let pb = crate::progress::bar(n as u64, "windows");
    let r = ppl::compare(&base, &quant, &tokens, &opts, &mut |d, _| {
        pb.set_position(d as u64)
    })?;
    pb.finish_and_clear();
    if a.data.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("{:<26} {:>12}", "", "value");
    println!(
        "{:<26} {:>12.4} ± {:.4}",
        "PPL base", r.base.ppl, r.base.ppl_err
    );
    println!(
        "{:<26} {:>12.4} ± {:.4}",
        "PPL quant", r.quant.ppl, r.quant.ppl_err
    );
    println!(
        "{:<26} {:>11.3}% ± {:.3}%",
        "ΔPPL", r.delta_ppl_pct, r.delta_ppl_err_pct
    );
    println!("{:<26} {:>12.5} ± {:.5}", "mean KLD", r.kld_mean, r.kld_err);
    println!("{:<26} {:>12.5}", "KLD p99", r.kld_p99);
    println!("{:<26} {:>11.2}%", "same top token", r.top1_agree_pct);
    println!("{:<26} {:>11.3}%", "RMS Δp", r.rms_delta_p_pct);
    println!(
        "{:<26} {:>7.2}% {:>7.2}% {:>7.2}% {:>7.2}% {:>7.2}%",
        "Δp p1/p5/p50/p95/p99",
        r.delta_p_pct[0],
        r.delta_p_pct[1],
        r.delta_p_pct[2],
        r.delta_p_pct[3],
        r.delta_p_pct[4]
    );
    println!("{} tokens scored", r.base.tokens_scored);
    Ok(())
}
