//! `tlite run`: generate text with a deployable model on the GPU, streamed to stdout; the header
//! (adapter and settings) and the statistics go to stderr.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail, ensure};
use tlite_model::deploy::DeployedModel;
use tlite_runtime_gpu::{DeviceOptions, Gpu, GpuLm, GpuModel, RunOptions};
use tlite_text::chat::conversation;
use tlite_text::{GenerateOptions, Generator, SamplerConfig, TextCodec, check_context};

use crate::progress::bytes;

#[derive(clap::Args)]
pub struct Args {
    /// A deployable model folder (made by `tlite convert`).
    model: PathBuf,
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
    /// Most prompt tokens per prefill step (capped at --max-seq).
    #[arg(long, default_value_t = 256, value_parser = crate::args::count)]
    max_batch: usize,
    /// Pick the adapter whose name contains this (case-insensitive).
    #[arg(long)]
    adapter: Option<String>,
    /// Also print the prompt's tokens, the memory report and the dispatches per step.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Print one JSON object (text, ids, statistics, memory) to stdout instead of streaming.
    #[arg(long)]
    json: bool,
}

/// The context when --max-seq is not given (or the model's positions, if fewer).
const DEFAULT_MAX_SEQ: usize = 2048;

pub fn run(a: Args) -> anyhow::Result<()> {
    if !DeployedModel::is_deployable(&a.model) && a.model.join("config.json").is_file() {
        bail!(
            "{} is a Hugging Face checkpoint, not a deployable model: convert it first \
             (`tlite convert {} -o OUT`), then `tlite run OUT`",
            a.model.display(),
            a.model.display()
        );
    }
    let m = DeployedModel::open(&a.model)?;
    let cfg = &m.manifest.config;
    let max_positions = cfg.max_position_embeddings;
    let max_seq = a.max_seq.unwrap_or(DEFAULT_MAX_SEQ.min(max_positions));
    ensure!(
        max_seq <= max_positions,
        "--max-seq {max_seq} is more than the model's {max_positions} positions \
         (max_position_embeddings): use --max-seq {max_positions} or less"
    );
    let gpu = Gpu::new(&DeviceOptions {
        adapter: a.adapter.clone(),
    })?;
    let opts = RunOptions {
        max_seq,
        max_batch: a.max_batch.min(max_seq),
    };
    let sampler = SamplerConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    };
    sampler.validate()?;
    let sampling = if sampler.is_greedy() {
        "greedy".to_owned()
    } else {
        format!(
            "temperature {} top-k {} top-p {} seed {}",
            a.temperature, a.top_k, a.top_p, a.seed
        )
    };
    eprintln!("{}", gpu.header());
    eprintln!(
        "run: {} ({}, {:.1}M params, {} g{}) | {} | max tokens {} | max_seq {} | max_batch {}{}",
        m.dir.display(),
        cfg.model_type,
        m.parameters() as f64 / 1e6,
        m.manifest.quantization.scheme,
        m.manifest.quantization.group_size,
        sampling,
        a.max_tokens,
        opts.max_seq,
        opts.max_batch,
        if a.chat { " | chat" } else { "" }
    );

    // Tokenize and check the context before the weights go to the GPU.
    let text = TextCodec::open(&m)?;
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
    check_context(prompt.len(), a.max_tokens, opts.max_seq).with_context(|| {
        format!(
            "the prompt is {} tokens and --max-tokens asks for {} more, but the context \
             (--max-seq) holds {} positions",
            prompt.len(),
            a.max_tokens,
            opts.max_seq
        )
    })?;

    let model = GpuModel::load(&gpu, &m, opts)?;
    if a.verbose {
        print_memory(&model, &m);
    }
    let mut g = Generator::new(GpuLm::new(&gpu, model), text);
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
    let r = g.generate(&prompt, &gen_opts, &mut on_text)?;
    if let Some(e) = write_err {
        return Err(e).context("writing the generated text to stdout");
    }
    let s = &r.stats;
    if a.json {
        let v = serde_json::json!({
            "device": gpu.info.name,
            "model": m.dir,
            "settings": {"sampler": sampler, "max_tokens": a.max_tokens, "max_seq": opts.max_seq,
                         "max_batch": opts.max_batch, "chat": a.chat, "stop": a.stop},
            "prompt_ids": prompt,
            "text": r.text,
            "tokens": r.tokens,
            "stats": s,
            "memory": g.model.model.memory,
        });
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
    if a.verbose {
        eprintln!(
            "dispatches per step: prefill {} | decode {} ({} ops in the plan)",
            s.prefill_dispatches, s.decode_dispatches, g.model.model.memory.ops
        );
    }
    Ok(())
}

/// Weights, the one KV cache and its formula, and planned vs one-buffer-per-tensor activations.
fn print_memory(model: &GpuModel, m: &DeployedModel) {
    let mem = &model.memory;
    let c = &m.manifest.config;
    let max_seq = model.opts.max_seq;
    let kv_formula = (c.num_layers * 2 * c.num_kv_heads * max_seq * c.head_dim * 4) as u64;
    eprintln!("memory: weights {}", bytes(mem.weight_bytes));
    eprintln!(
        "memory: KV cache {} = {} layers × 2 (K, V) × {} kv heads × {} positions × {} head dim × 4 B{}",
        bytes(mem.kv_bytes),
        c.num_layers,
        c.num_kv_heads,
        max_seq,
        c.head_dim,
        if kv_formula == mem.kv_bytes {
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
        bytes(mem.activation_bytes),
        mem.activation_buffers,
        bytes(mem.activation_bytes_unplanned),
        mem.activation_tensors,
        mem.activation_bytes_unplanned as f64 / mem.activation_bytes.max(1) as f64
    );
    eprintln!(
        "memory: total {} | {} ops per step",
        bytes(mem.weight_bytes + mem.kv_bytes + mem.activation_bytes),
        mem.ops
    );
}
