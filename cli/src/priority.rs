//! `tlite priority-bench`: what execution priority does for a UI. A "UI" device at normal
//! priority runs a small GPU job every few milliseconds from its own thread; its latency is
//! recorded idle and while the model decodes on a second device of the same adapter, once per
//! priority mode (normal, low, cooperative), beside the model's decode speed.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tlite_model::deploy::DeployedModel;
use tlite_quantizer::rng::Rng;
use tlite_runtime_gpu::priority::{DEFAULT_SUBMIT_EVERY, PriorityState};
use tlite_runtime_gpu::{DeviceOptions, Gpu, GpuModel, Priority, RunOptions};

use crate::probe::{self, LatencyStats, ProbeJob};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// One submission per step, default queue priority.
    Normal,
    /// Vulkan global queue priority LOW (falls back to cooperative where unavailable).
    Low,
    /// Each step split into submissions of --submit-every dispatches.
    Cooperative,
}

#[derive(clap::Args)]
pub struct Args {
    /// A deployable model folder.
    model: PathBuf,
    /// Modes to measure, in order (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Mode::Normal, Mode::Low, Mode::Cooperative])]
    mode: Vec<Mode>,
    /// Dispatches per submission in cooperative mode.
    #[arg(long, default_value_t = DEFAULT_SUBMIT_EVERY)]
    submit_every: NonZeroUsize,
    /// Milliseconds between the starts of two probes (above 0, at most 60000).
    #[arg(long, default_value_t = 5.0, value_parser = crate::args::interval_ms)]
    probe_interval_ms: f64,
    /// Side of the probe's square f32 matrix (the probe is one n×n matrix–vector product),
    /// from 1 to 32768 (4 GiB; the device's binding limit is checked too).
    #[arg(long, default_value_t = NonZeroU32::new(256).expect("non-zero"),
          value_parser = probe_size)]
    probe_size: NonZeroU32,
    /// Decoded tokens per mode (one per step, from an empty cache; at least 1).
    #[arg(long, short = 'n', default_value_t = 128, value_parser = crate::args::count)]
    tokens: usize,
    /// Milliseconds of probes with no model running (the idle baseline), at most an hour.
    #[arg(long, default_value_t = 1000, value_parser = crate::args::u64_in::<0, 3_600_000>)]
    idle_ms: u64,
    /// Pick the adapter whose name contains this.
    #[arg(long)]
    adapter: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Row {
    mode: String,
    /// What the model's device got (granted / fell back), `None` for the idle baseline.
    priority: Option<PriorityState>,
    decode_tok_s_alone: Option<f64>,
    decode_tok_s_probed: Option<f64>,
    dispatches_per_step: Option<usize>,
    submissions_per_step: Option<usize>,
    probe: Option<LatencyStats>,
}

/// --probe-size: from 1 to 32768.
fn probe_size(s: &str) -> Result<NonZeroU32, String> {
    let n = crate::args::u64_in::<1, 32_768>(s)?;
    NonZeroU32::new(n as u32).ok_or_else(|| "must be at least 1".to_string())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(a.probe_interval_ms / 1e3);
    let m =
        DeployedModel::open(&a.model).with_context(|| format!("opening {}", a.model.display()))?;
    let max_positions = m.manifest.config.max_position_embeddings;
    ensure!(
        a.tokens <= max_positions,
        "--tokens {} is more than the model's {max_positions} positions \
         (max_position_embeddings): use --tokens {max_positions} or less",
        a.tokens
    );
    let opts = DeviceOptions {
        adapter: a.adapter.clone(),
        ..Default::default()
    };
    let ui = Gpu::new(&opts)?;
    eprintln!("ui device: {}", ui.header());
    if ui.is_cpu() {
        eprintln!(
            "note: a CPU adapter: model and probe share the host's cores, so these numbers say \
             little about a GPU's scheduler"
        );
    }
    let job = ProbeJob::new(&ui, a.probe_size)?;
    let err = job.check(&ui)?;
    ensure!(
        err < 1e-3,
        "the probe's GPU result is off by {err} from the CPU's"
    );
    let vocab = m.manifest.config.vocab_size as u64;
    let mut rng = Rng::new(0x5eed);
    let tokens: Vec<u32> = (0..a.tokens).map(|_| rng.below(vocab) as u32).collect();

    let mut rows = Vec::new();
    eprintln!("idle baseline: {} ms of probes", a.idle_ms);
    let idle = probe::run_probes(
        &ui,
        &job,
        interval,
        &AtomicBool::new(false),
        Some(Instant::now() + Duration::from_millis(a.idle_ms)),
    )?;
    rows.push(Row {
        mode: "idle (no model)".into(),
        priority: None,
        decode_tok_s_alone: None,
        decode_tok_s_probed: None,
        dispatches_per_step: None,
        submissions_per_step: None,
        probe: LatencyStats::of(&idle),
    });
    for mode in &a.mode {
        let priority = match mode {
            Mode::Normal => Priority::Normal,
            Mode::Low => Priority::Low,
            Mode::Cooperative => Priority::Cooperative(a.submit_every),
        };
        let gpu = Gpu::with_priority(&opts, priority)?;
        eprintln!("model device ({priority}): {}", gpu.header());
        let run = RunOptions {
            max_seq: a.tokens.max(8),
            max_batch: 1,
        };
        let mut g = GpuModel::load(&gpu, &m, run)?;
        // Warm-up (pipelines, caches), then decode alone, then decode under the probe.
        for (i, &t) in tokens.iter().take(4).enumerate() {
            g.step(&gpu, &[t], i, &[0])?;
        }
        eprintln!("  decoding {} tokens alone, then under the probe", a.tokens);
        let t = Instant::now();
        for (i, &tok) in tokens.iter().enumerate() {
            g.step(&gpu, &[tok], i, &[0])?;
        }
        let alone = a.tokens as f64 / t.elapsed().as_secs_f64();
        let d = probe::decode_with_probes(&gpu, &mut g, &tokens, &ui, &job, interval)?;
        rows.push(Row {
            mode: priority.to_string(),
            priority: Some(gpu.priority.clone()),
            decode_tok_s_alone: Some(alone),
            decode_tok_s_probed: Some(d.tok_s()),
            dispatches_per_step: Some(d.dispatches_per_step),
            submissions_per_step: Some(d.submissions_per_step),
            probe: LatencyStats::of(&d.probes),
        });
    }

    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "adapter": ui.info.name,
                "backend": format!("{:?}", ui.info.backend),
                "model": a.model,
                "tokens": a.tokens,
                "probe_size": a.probe_size,
                "probe_interval_ms": a.probe_interval_ms,
                "rows": rows,
            }))?
        );
    } else {
        print_table(&ui, &a, &rows);
    }
    Ok(())
}

fn got(p: &Option<PriorityState>) -> String {
    match p {
        None => "-".into(),
        Some(s) => match (&s.global_low, s.submit_every, &s.fallback) {
            (Some(ext), _, _) => format!("low via {ext}"),
            (None, Some(n), Some(_)) => format!("FELL BACK: coop/{n}"),
            (None, Some(n), None) => format!("coop/{n}"),
            (None, None, _) => "normal".into(),
        },
    }
}

fn print_table(ui: &Gpu, a: &Args, rows: &[Row]) {
    println!(
        "{} ({:?}) | {} | {} tokens per mode | probe {n}×{n} f32 matvec every {} ms",
        ui.info.name,
        ui.info.backend,
        a.model.display(),
        a.tokens,
        a.probe_interval_ms,
        n = a.probe_size
    );
    println!(
        "{:<16} {:<34} {:>8} {:>9} {:>9} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "mode",
        "model device got",
        "sub/step",
        "tok/s",
        "tok/s+ui",
        "probes",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for r in rows {
        let (n, p50, p90, p99, max) = match r.probe {
            Some(s) => (
                s.count.to_string(),
                format!("{:.3}", s.p50_ms),
                format!("{:.3}", s.p90_ms),
                format!("{:.3}", s.p99_ms),
                format!("{:.3}", s.max_ms),
            ),
            None => ("0".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<16} {:<34} {:>8} {:>9} {:>9} {:>6} {:>8} {:>8} {:>8} {:>8}",
            r.mode,
            got(&r.priority),
            r.submissions_per_step
                .map_or("-".to_string(), |s| s.to_string()),
            opt(r.decode_tok_s_alone),
            opt(r.decode_tok_s_probed),
            n,
            p50,
            p90,
            p99,
            max
        );
    }
    for r in rows {
        if let Some(why) = r.priority.as_ref().and_then(|p| p.fallback.as_ref()) {
            println!("{}: low was not granted: {why}", r.mode);
        }
    }
}
