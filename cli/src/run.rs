//! `tlite run`: generate text with a deployable model on the GPU — or with the CPU reference
//! (`--device cpu`: a deployable model dequantized, or an unquantized checkpoint) through the
//! same tokenizer, chat template, sampler and generation loop — streamed to stdout; the header
//! (device and settings) and the statistics go to stderr.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail, ensure};
use tlite_eval::load::{Opened, Weights};
use tlite_model::LanguageModel;
use tlite_model::deploy::DeployedModel;
use tlite_runtime_gpu::{Gpu, GpuLm, GpuModel, RunOptions};
use tlite_text::chat::conversation;
use tlite_text::{
    GenerateError, GenerateOptions, GenerationStats, Generator, SamplerConfig, TextCodec,
    check_context,
};

use crate::progress::bytes;

#[derive(clap::Args)]
pub struct Args {
    /// A deployable model folder (made by `tlite convert`); with --device cpu also a Hugging
    /// Face folder or a repo id `org/name[@revision]` (run unquantized).
    model: String,
    /// Where the model runs: the GPU (wgpu), or the CPU reference (candle, f32).
    #[arg(long, value_enum, default_value_t = Device::Gpu)]
    device: Device,
    /// The prompt (with --chat: the user's message).
    #[arg(long, short = 'p')]
    prompt: String,
    /// Wrap the prompt in the model's chat template (from its tokenizer_config.json).
    #[arg(long)]
    chat: bool,
    /// A system message (with --chat).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Most tokens to generate (at most --max-seq, less the prompt).
    #[arg(long = "max-tokens", short = 'n', default_value_t = 128, value_parser = crate::args::count)]
    max_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = crate::args::temperature)]
    temperature: f64,
    /// Sample among the k most likely tokens; 0 = all (as does any k ≥ the vocabulary).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Sample among the most likely tokens whose probability reaches p, in (0, 1]; 1 = all.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = crate::args::top_p)]
    top_p: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when the output reaches this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Context length: positions of the KV cache (prompt + generated tokens), at most the
    /// model's max_position_embeddings [default: 2048, or that if smaller].
    #[arg(long, value_parser = crate::args::count)]
    max_seq: Option<usize>,
    /// Most prompt tokens per prefill step (capped at --max-seq; GPU only: the CPU reference
    /// takes the whole prompt in one step).
    #[arg(long, default_value_t = 256, value_parser = crate::args::count)]
    max_batch: usize,
    /// Pick the adapter whose name contains this (case-insensitive).
    #[arg(long)]
    adapter: Option<String>,
    /// The KV cache's element type (default: TLITE_KV_CACHE, else f16 as llama.cpp's default
    /// cache); f16 where the adapter has it, f32 otherwise.
    #[arg(long, value_enum)]
    kv_cache: Option<crate::args::KvCacheArg>,
    /// Also print the prompt's tokens, and on the GPU the memory report and the dispatches per
    /// step.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Print one JSON object (text, ids, statistics, memory) to stdout instead of streaming.
    #[arg(long)]
    json: bool,
    /// GPU, greedy decoding (temperature 0): steps in flight, each step's token picked on the
    /// GPU and fed to the next, the ids read back as they complete; 0: one step at a time,
    /// each token's logits read back and picked on the host.
    #[arg(long, default_value_t = GpuLm::DEFAULT_LEAD, value_parser = crate::args::lead)]
    lead: usize,
    /// GPU: skip the warm-up after the load (rounds of two decode steps whose results are
    /// discarded: without them the prompt and the first tokens run slower while the device
    /// touches the weights for the first time and ramps its clocks up).
    #[arg(long)]
    no_warmup: bool,
    /// GPU: repeat the warm-up until this many milliseconds have passed (a GPU idle during the
    /// load ramps its clocks up over its first ~0.1 s of work); 0: once. At most a minute.
    #[arg(long, default_value_t = 200, value_parser = crate::args::u64_in::<0, 60_000>)]
    warmup_ms: u64,
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Device {
    Gpu,
    Cpu,
}

/// The context when --max-seq is not given (or the model's positions, if fewer).
const DEFAULT_MAX_SEQ: usize = 2048;

pub fn run(a: Args) -> anyhow::Result<()> {
    let sampler = SamplerConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    };
    sampler.validate()?;
    match a.device {
        Device::Gpu => run_gpu(&a, sampler),
        Device::Cpu => run_cpu(&a, sampler),
    }
}

/// The context: --max-seq, or the default within the model's positions.
fn max_seq(a: &Args, max_positions: usize) -> anyhow::Result<usize> {
    let max_seq = a.max_seq.unwrap_or(DEFAULT_MAX_SEQ.min(max_positions));
    ensure!(
        max_seq <= max_positions,
        "--max-seq {max_seq} is more than the model's {max_positions} positions \
         (max_position_embeddings): use --max-seq {max_positions} or less"
    );
    Ok(max_seq)
}

fn sampling(a: &Args, sampler: &SamplerConfig) -> String {
    if sampler.is_greedy() {
        "greedy".to_owned()
    } else {
        format!(
            "temperature {} top-k {} top-p {} seed {}",
            a.temperature, a.top_k, a.top_p, a.seed
        )
    }
}

/// The prompt's ids (rendered through the chat template with --chat), checked against the
/// context before any model work.
fn prompt_ids(a: &Args, text: &TextCodec, max_seq: usize) -> anyhow::Result<Vec<u32>> {
    let prompt = if a.chat {
        let messages = conversation(a.system.as_deref(), &a.prompt);
        let (rendered, ids) = text.encode_chat(&messages)?;
        if a.verbose {
            eprintln!("chat prompt:\n{rendered}");
        }
        ids
    } else {
        text.encode_prompt(&a.prompt)?
    };
    if a.verbose {
        eprintln!(
            "prompt: {} tokens {:?} | stop ids {:?}",
            prompt.len(),
            prompt,
            text.eos_ids()
        );
    }
    check_context(prompt.len(), a.max_tokens, max_seq).with_context(|| {
        format!(
            "the prompt is {} tokens and --max-tokens asks for {} more, but the context \
             (--max-seq) holds {} positions",
            prompt.len(),
            a.max_tokens,
            max_seq
        )
    })?;
    Ok(prompt)
}

/// Generates with any model, streaming to stdout (or one JSON object with `extra`'s fields
/// and `memory`), and prints the statistics line.
fn generate<M: LanguageModel>(
    a: &Args,
    g: &mut Generator<M>,
    prompt: &[u32],
    sampler: SamplerConfig,
    max_seq: usize,
    extra: serde_json::Value,
    memory: impl FnOnce(&M) -> serde_json::Value,
) -> anyhow::Result<GenerationStats> {
    let gen_opts = GenerateOptions {
        max_new: a.max_tokens,
        sampler,
        stop_strings: a.stop.clone(),
        stop_tokens: Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    let mut write_err: Option<std::io::Error> = None;
    let mut on_text = |s: &str| {
        if !a.json && write_err.is_none() {
            write_err = out.write_all(s.as_bytes()).and_then(|()| out.flush()).err();
        }
    };
    let r = g
        .generate(prompt, &gen_opts, &mut on_text)
        .map_err(|e| match e {
            GenerateError::Text(e) => anyhow::Error::new(e),
            GenerateError::Model(e) => anyhow::Error::new(e),
        })?;
    if let Some(e) = write_err {
        return Err(e).context("writing the generated text to stdout");
    }
    let s = &r.stats;
    if a.json {
        let mut v = serde_json::json!({
            "settings": {"sampler": sampler, "max_tokens": a.max_tokens, "max_seq": max_seq,
                         "max_batch": g.model.max_batch(), "chat": a.chat, "stop": a.stop},
            "prompt_ids": prompt,
            "text": r.text,
            "tokens": r.tokens,
            "stats": s,
            "memory": memory(&g.model),
        });
        if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(out)?;
    }
    eprintln!(
        "prompt {} tokens: prefill {:.1} tok/s ({:.2} s, {} step{}) | generated {} tokens: decode {:.2} tok/s ({} steps, {:.2} s) | stopped: {}",
        s.prompt_tokens,
        s.prefill_tok_s,
        s.prefill_seconds,
        s.prefill_steps,
        if s.prefill_steps == 1 { "" } else { "s" },
        s.generated,
        s.decode_tok_s,
        s.decode_steps,
        s.decode_seconds,
        s.stop_reason
    );
    Ok(r.stats)
}

fn run_gpu(a: &Args, sampler: SamplerConfig) -> anyhow::Result<()> {
    let model_path = PathBuf::from(&a.model);
    if !DeployedModel::is_deployable(&model_path) && model_path.join("config.json").is_file() {
        bail!(
            "{} is a Hugging Face checkpoint, not a deployable model: convert it first \
             (`tlite convert {} -o OUT`), then `tlite run OUT` (or run it unquantized on the \
             CPU reference with --device cpu)",
            a.model,
            a.model
        );
    }
    let m = DeployedModel::open(&model_path)?;
    let cfg = &m.manifest.config;
    let max_seq = max_seq(a, cfg.max_position_embeddings)?;
    let gpu = Gpu::new(&crate::args::device_options(a.adapter.clone(), a.kv_cache))?;
    let opts = RunOptions {
        max_seq,
        max_batch: a.max_batch.min(max_seq),
    };
    eprintln!("{}", gpu.header());
    eprintln!(
        "run: {} ({}, {:.1}M params, {} g{}) | {} | max tokens {} | max_seq {} | max_batch {}{}",
        m.dir.display(),
        cfg.model_type,
        m.parameters() as f64 / 1e6,
        m.manifest.quantization.scheme,
        m.manifest.quantization.group_size,
        sampling(a, &sampler),
        a.max_tokens,
        opts.max_seq,
        opts.max_batch,
        if a.chat { " | chat" } else { "" }
    );

    // Tokenize and check the context before the weights go to the GPU.
    let text = TextCodec::open(&m)?;
    let prompt = prompt_ids(a, &text, opts.max_seq)?;
    let model = GpuModel::load(&gpu, &m, opts)?;
    if a.verbose {
        print_memory(&model, &m);
    }
    let mut lm = GpuLm::new(&gpu, model);
    lm.decode_lead = (a.lead > 0).then_some(a.lead);
    let started = std::time::Instant::now();
    let warmup_rounds = match a.no_warmup {
        true => 0,
        false => lm.warm_up(std::time::Duration::from_millis(a.warmup_ms))?,
    };
    let warmup_seconds = started.elapsed().as_secs_f64();
    let mut g = Generator::new(lm, text);
    let extra = serde_json::json!({
        "device": gpu.info.name, "model": m.dir, "load_seconds": g.model.model.load_times,
        "warmup_seconds": warmup_seconds, "warmup_rounds": warmup_rounds,
    });
    let s = generate(a, &mut g, &prompt, sampler, max_seq, extra, |lm| {
        serde_json::to_value(&lm.model.memory).unwrap_or_default()
    })?;
    if a.verbose {
        eprintln!(
            "dispatches per step: prefill {} | decode {} ({} ops in the plan)",
            s.prefill_dispatches, s.decode_dispatches, g.model.model.memory.ops
        );
    }
    Ok(())
}

/// The CPU reference (candle, f32): a deployable model dequantized, or an unquantized
/// checkpoint (a folder or a repo id), through the same tokenizer, template, sampler and
/// generation loop as the GPU.
fn run_cpu(a: &Args, sampler: SamplerConfig) -> anyhow::Result<()> {
    ensure!(
        a.adapter.is_none(),
        "--adapter picks a GPU adapter; it does not apply to --device cpu"
    );
    let path = crate::hub::local(&a.model)?;
    let opened = Opened::open(&path)?;
    let (text, dir) = match &opened.weights {
        Weights::Deployed(d) => (TextCodec::open(d)?, d.dir.clone()),
        Weights::Checkpoint(c) => (TextCodec::open_folder(&c.dir, &c.config)?, c.dir.clone()),
    };
    let cfg = opened.source().config().clone();
    let max_seq = max_seq(a, cfg.max_position_embeddings)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("device: cpu (candle reference, f32, {threads} threads)");
    eprintln!(
        "run: {} ({}) | {} | max tokens {} | max_seq {}{}",
        opened.source().describe(),
        cfg.model_type,
        sampling(a, &sampler),
        a.max_tokens,
        max_seq,
        if a.chat { " | chat" } else { "" }
    );
    let prompt = prompt_ids(a, &text, max_seq)?;
    let model = opened.load_reference()?;
    let mut g = Generator::new(model.session(max_seq)?, text);
    let extra = serde_json::json!({"device": "cpu", "model": dir});
    generate(a, &mut g, &prompt, sampler, max_seq, extra, |_| {
        serde_json::Value::Null
    })?;
    Ok(())
}

/// Weights, the one KV cache and its formula, and planned vs one-buffer-per-tensor activations.
fn print_memory(model: &GpuModel, m: &DeployedModel) {
    let mem = &model.memory;
    let c = &m.manifest.config;
    let max_seq = model.opts.max_seq;
    // f32, or f16 with TLITE_KV_CACHE=f16.
    let elem = if model.graph.kv_f16 { 2 } else { 4 };
    let kv_formula = (c.num_layers * 2 * c.num_kv_heads * max_seq * c.head_dim * elem) as u64;
    eprintln!("memory: weights {}", bytes(mem.buffers.weight_bytes));
    eprintln!(
        "memory: KV cache {} = {} layers × 2 (K, V) × {} kv heads × {} positions × {} head dim × {elem} B{}",
        bytes(mem.buffers.kv_bytes),
        c.num_layers,
        c.num_kv_heads,
        max_seq,
        c.head_dim,
        if kv_formula == mem.buffers.kv_bytes {
            " (one cache, allocated once)".to_owned()
        } else {
            format!(
                " = {} (the runtime allocated a different size)",
                bytes(kv_formula)
            )
        }
    );
    eprintln!(
        "memory: activations {} planned in {} buffers vs {} one-buffer-per-tensor ({} tensors), {:.1}x less",
        bytes(mem.buffers.activation_bytes),
        mem.activation_buffers,
        bytes(mem.activation_bytes_unplanned),
        mem.activation_tensors,
        mem.activation_bytes_unplanned as f64 / mem.buffers.activation_bytes.max(1) as f64
    );
    eprintln!(
        "memory: total {} | {} ops per step",
        bytes(mem.buffers.weight_bytes + mem.buffers.kv_bytes + mem.buffers.activation_bytes),
        mem.ops
    );
}
