//! `tlite ppl` and `tlite compare`

use std::path::{Path, PathBuf};

use anyhow::ensure;
use tlite_eval::gpu::{self, TopKBase};
use tlite_eval::load::Opened;
use tlite_eval::ppl::{self, CompareResult, PplOptions, PplOptionsError};
use tlite_model::deploy::Storage;
use tlite_runtime_gpu::{DeviceOptions, Gpu, GpuModel, RunOptions};

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
    #[command(flatten)]
    device: DeviceArgs,
}

/// Where a measurement runs.
#[derive(clap::Args)]
pub struct DeviceArgs {
    /// gpu: the wgpu runtime, every scored row reduced on the GPU; cpu: the candle reference
    /// (f32, the oracle); auto: the GPU when a hardware adapter exists (a CPU adapter such as
    /// lavapipe does not count), else the CPU.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// GPU: pick the adapter whose name contains this (case-insensitive).
    #[arg(long)]
    pub adapter: Option<String>,
    /// GPU: how an unquantized checkpoint is uploaded (converted in memory to dense tensors
    /// first): f32 keeps its values exactly, f16 rounds them.
    #[arg(long, value_enum, default_value_t = Dense::F32)]
    pub dense: Dense,
    /// GPU: most tokens per step (a window runs in ⌈ctx / max-batch⌉ steps).
    #[arg(long, default_value_t = 512, value_parser = crate::args::count)]
    pub max_batch: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Gpu,
    Cpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dense {
    F32,
    F16,
}

impl DeviceArgs {
    /// The GPU to measure on, or `None` for the CPU reference.
    pub fn gpu(&self) -> anyhow::Result<Option<Gpu>> {
        let gpu = match self.device {
            DeviceChoice::Cpu => {
                ensure!(
                    self.adapter.is_none(),
                    "--adapter picks a GPU adapter; it does not apply to --device cpu"
                );
                return Ok(None);
            }
            DeviceChoice::Gpu => true,
            DeviceChoice::Auto => {
                self.adapter.is_some()
                    || Gpu::adapters()
                        .iter()
                        .any(|a| a.device_type != wgpu::DeviceType::Cpu)
            }
        };
        if !gpu {
            eprintln!(
                "device: cpu (candle reference, f32; no hardware GPU adapter: --device gpu to use a CPU adapter)"
            );
            return Ok(None);
        }
        let g = Gpu::new(&DeviceOptions::from_env(self.adapter.clone()))?;
        eprintln!("{}", g.header());
        Ok(Some(g))
    }

    /// The GPU settings of a sweep with windows of `ctx` tokens.
    pub fn sweep_gpu<'g>(&self, gpu: &'g Gpu, ctx: usize) -> tlite_eval::sweep::SweepGpu<'g> {
        tlite_eval::sweep::SweepGpu {
            gpu,
            run: self.run_options(ctx),
            dense: self.storage(),
        }
    }

    fn run_options(&self, ctx: usize) -> RunOptions {
        RunOptions {
            max_seq: ctx,
            max_batch: self.max_batch.min(ctx),
        }
    }

    fn storage(&self) -> Storage {
        match self.dense {
            Dense::F32 => Storage::F32,
            Dense::F16 => Storage::F16,
        }
    }

    /// `opened` on `gpu` for windows of `ctx` tokens; also its trained positions.
    pub fn load(
        &self,
        gpu: &Gpu,
        opened: &Opened,
        ctx: usize,
    ) -> anyhow::Result<(GpuModel, usize)> {
        Ok(gpu::load(
            gpu,
            opened,
            self.run_options(ctx),
            self.storage(),
        )?)
    }
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
    /// GPU: also write each scored position's top --top-k log-probabilities to FILE, a baseline
    /// for `tlite compare FILE QUANT` (like llama.cpp's --kl-divergence-base).
    #[arg(long)]
    save_base: Option<PathBuf>,
    /// Log-probabilities kept per position in --save-base (1..=1024).
    #[arg(long, default_value_t = 64, value_parser = crate::args::count)]
    top_k: usize,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The unquantized baseline (HF folder or repo id), or a baseline file written by
    /// `tlite ppl --save-base` (GPU).
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

/// The opened model, the corpus tokenized with its tokenizer, and the windowing options with
/// its BOS, checked against its trained positions.
fn open_data(path: &str, data: &DataArgs) -> anyhow::Result<(Opened, Vec<u32>, PplOptions)> {
    let mut opts = data.options()?;
    let o = Opened::open(&crate::hub::local(path)?)?;
    let tokens = o.tokenize_file(&data.data, data.max_chars())?;
    opts.bos = o.window_bos()?;
    let max = o.source().config().max_position_embeddings;
    opts.check_positions(max, &tokens)
        .map_err(|e| data.flag_error(e))?;
    Ok((o, tokens, opts))
}

pub fn run_ppl(a: PplArgs) -> anyhow::Result<()> {
    ensure!(
        a.top_k <= tlite_runtime_gpu::MAX_TOP_K,
        "--top-k {}: at most {}",
        a.top_k,
        tlite_runtime_gpu::MAX_TOP_K
    );
    ensure!(
        a.save_base.is_none() || a.data.device.device != DeviceChoice::Cpu,
        "--save-base writes the GPU's top-k log-probabilities: use --device gpu"
    );
    let (o, tokens, opts) = open_data(&a.model, &a.data)?;
    let gpu = a.data.device.gpu()?;
    ensure!(
        a.save_base.is_none() || gpu.is_some(),
        "--save-base writes the GPU's top-k log-probabilities: use --device gpu"
    );
    let n = ppl::windows(&tokens, &opts).len();
    eprintln!(
        "ppl: {} | {} tokens, {n} windows of {}{}",
        o.source().describe(),
        tokens.len(),
        opts.ctx,
        bos_note(&opts)
    );
    let pb = crate::progress::WindowBar::new(n, opts.ctx);
    let mut tick = |d: usize, _| pb.tick(d, 1);
    let r = match &gpu {
        Some(g) => {
            let t0 = std::time::Instant::now();
            let (mut model, max) = a.data.device.load(g, &o, opts.ctx)?;
            let lt = model.load_times;
            eprintln!(
                "GPU memory: {} (weights {}, KV cache {}, activations {}); loaded in {:.2} s \
                 (upload {:.2} s: buffers {:.2} s, pipelines {:.2} s)",
                crate::progress::bytes(model.memory.total_bytes),
                crate::progress::bytes(model.memory.buffers.weight_bytes),
                crate::progress::bytes(model.memory.buffers.kv_bytes),
                crate::progress::bytes(model.memory.buffers.activation_bytes),
                t0.elapsed().as_secs_f64(),
                lt.total(),
                lt.buffers,
                lt.pipelines
            );
            let k = if a.save_base.is_some() { a.top_k } else { 0 };
            let base = gpu::base_topk(g, &mut model, max, &tokens, &opts, k, &mut tick)?;
            if let Some(path) = &a.save_base {
                base.write(path)?;
                eprintln!(
                    "baseline: top {k} log-probabilities per position written to {}",
                    path.display()
                );
            }
            base.header.result
        }
        None => {
            let model = o.load_reference()?;
            ppl::perplexity(&model, &tokens, &opts, &mut tick)?
        }
    };
    pb.finish();
    if a.data.json {
        let mut v = serde_json::to_value(&r)?;
        v["device"] = device_label(gpu.as_ref()).into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "PPL {:.4} ± {:.4} | mean NLL {:.5} | {} tokens scored in {} windows | {:.1} tok/s",
            r.ppl, r.ppl_err, r.nll_mean, r.tokens_scored, r.windows, r.tokens_per_second
        );
    }
    Ok(())
}

/// Whether `path` is a baseline file of `tlite ppl --save-base`.
fn is_base_file(path: &str) -> bool {
    let mut magic = [0u8; 8];
    Path::new(path).is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
        && &magic == b"TLKLBASE"
}

pub fn run_compare(a: CompareArgs) -> anyhow::Result<()> {
    let from_file = is_base_file(&a.base);
    // The quantized model's tokenizer when the baseline is a file.
    let first = if from_file { &a.quant } else { &a.base };
    let (ob, tokens, opts) = open_data(first, &a.data)?;
    let oq = if from_file {
        None
    } else {
        Some(Opened::open(&crate::hub::local(&a.quant)?)?)
    };
    let oq_ref = oq.as_ref().unwrap_or(&ob);
    let max = oq_ref.source().config().max_position_embeddings;
    opts.check_positions(max, &tokens)
        .map_err(|e| a.data.flag_error(e))?;
    let gpu = a.data.device.gpu()?;
    ensure!(
        !from_file || gpu.is_some(),
        "{} is a baseline file of `tlite ppl --save-base`: compare against it with --device gpu",
        a.base
    );
    let n = ppl::windows(&tokens, &opts).len();
    let base_name = match from_file {
        true => format!("baseline file {}", a.base),
        false => ob.source().describe(),
    };
    eprintln!(
        "compare: base {base_name} | quant {} | {n} windows of {}{}",
        oq_ref.source().describe(),
        opts.ctx,
        bos_note(&opts)
    );
    let pb = crate::progress::WindowBar::new(n, opts.ctx);
    let models = if from_file { 1 } else { 2 };
    let mut tick = |d: usize, _| pb.tick(d, models);
    let mut topk = None;
    let r = match (&gpu, from_file) {
        (Some(g), true) => {
            let base = TopKBase::read(Path::new(&a.base))?;
            let (mut quant, max) = a.data.device.load(g, &ob, opts.ctx)?;
            let c = gpu::compare_to(g, &base, &mut quant, max, &tokens, &opts, &mut tick)?;
            topk = Some((c.top_k, c.mean_topk_mass));
            c.result
        }
        (Some(g), false) => {
            let (mut base, max) = a.data.device.load(g, &ob, opts.ctx)?;
            let (mut quant, _) = a.data.device.load(g, oq_ref, opts.ctx)?;
            gpu::compare(g, &mut base, &mut quant, max, &tokens, &opts, &mut tick)?
        }
        (None, _) => {
            let base = ob.load_reference()?;
            let quant = oq_ref.load_reference()?;
            ppl::compare(&base, &quant, &tokens, &opts, &mut tick)?
        }
    };
    pb.finish();
    print_compare(&r, a.data.json.then(|| device_label(gpu.as_ref())), topk)
}

/// Where a measurement ran, for its JSON record: the GPU and the precision of its matrix
/// products, or the CPU reference.
fn device_label(gpu: Option<&Gpu>) -> String {
    gpu.map_or_else(
        || "cpu (candle reference, f32)".to_owned(),
        Gpu::compute_label,
    )
}

/// Prints `r`; as JSON (with the `device` it ran on) where `json` is given.
fn print_compare(
    r: &CompareResult,
    json: Option<String>,
    topk: Option<(usize, f64)>,
) -> anyhow::Result<()> {
    if let Some(device) = json {
        let mut v = serde_json::to_value(r)?;
        v["device"] = device.into();
        if let Some((k, mass)) = topk {
            v["top_k"] = k.into();
            v["mean_topk_mass"] = mass.into();
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if let Some((k, mass)) = topk {
        println!(
            "KLD against the baseline's top {k} log-probabilities and the rest of its mass as one \
             bucket (a lower bound); the quantized model puts {:.2}% of its mass on them",
            mass * 100.0
        );
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
