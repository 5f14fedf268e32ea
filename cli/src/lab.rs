//! `tlite lab`: measurements outside any model (docs/PERF.md): the per-dispatch floor, the
//! decode GEMV kernels' weight bandwidth against a copy kernel (`tlite_runtime_gpu::lab`), and
//! the driver's statistics of every compiled kernel (`tlite_runtime_gpu::pipeline_stats`).

use tlite_runtime_gpu::Gpu;
use tlite_runtime_gpu::lab::{self, GemvOptions, GemvVariant};
use tlite_runtime_gpu::pipeline_stats;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    /// Pick the adapter whose name contains this.
    #[arg(long, global = true)]
    adapter: Option<String>,
}

#[derive(clap::Subcommand)]
enum What {
    /// N trivial dispatches (one 64-thread workgroup each) dependent in one pass, in N passes,
    /// in N submissions, and independent in one pass: GPU and wall µs per dispatch.
    Floor {
        /// Dispatch counts N, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64, 256])]
        counts: Vec<usize>,
        /// Timed repetitions (after one warm-up); the median is reported.
        #[arg(long, short = 'r', default_value_t = 7)]
        reps: usize,
    },
    /// The runtime's decode GEMVs on random M0E4 weights, rotated through copies larger than
    /// the L2 cache: µs and weight GB/s per shape, against a vec4<u32> copy kernel.
    Gemv {
        /// Shapes n×k (output rows × input width), comma-separated, e.g. 2048x2048,8192x2048.
        #[arg(long, value_delimiter = ',', value_parser = shape)]
        shapes: Vec<(usize, usize)>,
        /// M0E4 group size.
        #[arg(long, short = 'g', default_value_t = 64)]
        group: usize,
        /// The copies of each matrix together exceed this many MiB.
        #[arg(long, default_value_t = 160.0)]
        rotate_mib: f64,
        /// MiB the copy kernel copies.
        #[arg(long, default_value_t = 256.0)]
        copy_mib: f64,
        /// Timed repetitions (after one warm-up); the median is reported.
        #[arg(long, short = 'r', default_value_t = 5)]
        reps: usize,
        /// Also time each matrix as this many row chunks of the same buffers, one dispatch
        /// each (comma-separated; 1 = the whole matrix).
        #[arg(long, value_delimiter = ',', default_values_t = [1usize])]
        splits: Vec<usize>,
        /// Candidate kernels to time beside the runtime's, comma-separated
        /// WGxROWSxUNROLL[m|u][p], e.g. 128x4x2,256x2x4mp (needs subgroups): m decodes the codes
        /// straight to f32 bits, u through unpack4x8unorm; p loads the next round before this
        /// round's products.
        #[arg(long, value_delimiter = ',', value_parser = GemvVariant::parse)]
        variants: Vec<GemvVariant>,
        /// Allocate each shape's buffers this many times (all kept alive) and time every kernel
        /// on each: a spread table shows how much the allocation decides the speed (1..=64).
        #[arg(long, default_value_t = 1)]
        allocations: usize,
    },
    /// What the driver compiled each kernel's entry points into (registers, shared and local
    /// memory, spills, instructions: the statistics of VK_KHR_pipeline_executable_properties),
    /// one line per pipeline executable.
    Stats {
        /// Only the pipelines whose `kernel::entry` contains this.
        #[arg(long)]
        only: Option<String>,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
}

/// `n×k` (or `nxk`).
fn shape(s: &str) -> Result<(usize, usize), String> {
    let (n, k) = s
        .split_once(['x', '×'])
        .ok_or_else(|| format!("`{s}`: expected n×k, e.g. 2048x8192"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("`{s}`: sizes must be positive integers"))
    };
    Ok((p(n)?, p(k)?))
}

fn mib(v: f64) -> anyhow::Result<u64> {
    anyhow::ensure!(v.is_finite() && v > 0.0, "sizes in MiB must be positive");
    Ok((v * f64::from(1u32 << 20)) as u64)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    // As `run` and `bench` open it (the KV cache in f16 where the adapter has it, so `stats`
    // reports the kernels those commands build).
    let gpu = Gpu::new(&crate::args::device_options(a.adapter, None))?;
    println!("{}", gpu.header());
    match a.what {
        What::Floor { counts, reps } => {
            print!("{}", lab::floor(&gpu, &counts, reps)?);
        }
        What::Gemv {
            shapes,
            group,
            rotate_mib,
            copy_mib,
            reps,
            splits,
            variants,
            allocations,
        } => {
            let mut opts = GemvOptions {
                group,
                rotate_bytes: mib(rotate_mib)?,
                copy_bytes: mib(copy_mib)?,
                reps,
                splits,
                variants,
                allocations,
                ..GemvOptions::default()
            };
            if !shapes.is_empty() {
                opts.shapes = shapes;
            }
            print!("{}", lab::gemv(&gpu, &opts)?);
        }
        What::Stats { only, json } => {
            let pipelines: Vec<_> = (pipeline_stats::kernels_of(&gpu).into_iter())
                .filter(|(k, e)| {
                    let name = format!("{}::{e}", k.name());
                    only.as_deref().is_none_or(|o| name.contains(o))
                })
                .collect();
            anyhow::ensure!(
                !pipelines.is_empty(),
                "no kernel entry point matches --only"
            );
            let report = pipeline_stats::pipeline_statistics(&gpu, &pipelines)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                if let Some(why) = &report.missing {
                    anyhow::bail!(
                        "{why}: no statistics (the {} pipelines were created)",
                        report.pipelines.len()
                    );
                }
                for p in &report.pipelines {
                    for e in &p.executables {
                        let values: Vec<String> = (e.statistics.iter())
                            .map(|s| format!("{}={}", s.name, s.value))
                            .collect();
                        println!(
                            "{} [{}, subgroup {}] {}",
                            p.pipeline,
                            e.name,
                            e.subgroup_size,
                            values.join(" | ")
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
