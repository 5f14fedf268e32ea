//! Generation on the GPU with tiny random models: greedy ids equal the CPU reference's greedy
//! decoding, the streamed text is the detokenized ids, a prompt longer than the context is an
//! error before any GPU work, stop tokens and stop strings end generation, and seeded sampling
//! is reproducible.

use std::io::Write as _;
use std::path::PathBuf;

use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::events;
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_eval::ppl::argmax;
use tlite_eval::reference::{Logits, ReferenceModel, WeightSource, log_softmax_rows};
use tlite_model::arch::{Family, families};
use tlite_model::deploy::DeployedModel;
use tlite_quantizer::Method;
use tlite_runtime_gpu::device::gpu_for_test;
use tlite_runtime_gpu::{
    GenerateOptions, Generator, GpuError, RunOptions, SamplerConfig, StopReason,
};

/// A converted tiny model of `family` in a fresh temporary folder.
fn tiny(family: Family, tag: &str) -> (PathBuf, DeployedModel) {
    let dir =
        std::env::temp_dir().join(format!("tlite-gen-{tag}-{}-{family:?}", std::process::id()));
    write_checkpoint(&SynthSpec::tiny(family), &dir.join("ck")).unwrap();
    let ck = tlite_converter::checkpoint::Checkpoint::open_dir(&dir.join("ck")).unwrap();
    let opts = ConvertOptions {
        group: 32,
        method: Method::Search,
        overwrite: true,
        binding_limit: 64 << 10,
        ..Default::default()
    };
    convert(&ck, &dir.join("m0e4"), &opts, &mut events::ignore).unwrap();
    let m = DeployedModel::open(&dir.join("m0e4")).unwrap();
    (dir, m)
}

/// Greedy decoding on the CPU reference, stopping at any of `eos`.
fn reference_greedy(r: &ReferenceModel, prompt: &[u32], max_new: usize, eos: &[u32]) -> Vec<u32> {
    let mut cache = r.new_cache(prompt.len() + max_new).unwrap();
    let mut logits = r.forward(prompt, 0, &mut cache, Logits::Last).unwrap();
    let mut out = Vec::new();
    loop {
        let rows = log_softmax_rows(&logits).unwrap();
        let next = argmax(rows.last().unwrap()) as u32;
        if eos.contains(&next) {
            return out;
        }
        out.push(next);
        if out.len() == max_new {
            return out;
        }
        logits = r
            .forward(
                &[next],
                prompt.len() + out.len() - 1,
                &mut cache,
                Logits::Last,
            )
            .unwrap();
    }
}

fn greedy(max_new: usize) -> GenerateOptions {
    GenerateOptions {
        max_new,
        ..Default::default()
    }
}

#[test]
fn greedy_generation_matches_the_reference() {
    let Some(gpu) = gpu_for_test("generate greedy") else {
        return;
    };
    for family in families() {
        let (dir, m) = tiny(family, "greedy");
        let reference = ReferenceModel::load(&WeightSource::Deployed(&m)).unwrap();
        // max_batch 8 < the prompt: prefilled in several steps.
        let opts = RunOptions {
            max_seq: 64,
            max_batch: 8,
        };
        let mut g = Generator::load(&gpu, &m, opts).unwrap();
        let prompt = g.text.encode_prompt("the cat is on the mat, then").unwrap();
        assert!(prompt.len() > 8, "{prompt:?}");
        let mut streamed = String::new();
        let out = g
            .generate(&gpu, &prompt, &greedy(16), &mut |s| streamed.push_str(s))
            .unwrap();
        let expect = reference_greedy(&reference, &prompt, 16, g.text.eos_ids());
        let s = &out.stats;
        let _ = writeln!(
            std::io::stderr(),
            "{family:?}: {} prompt + {} generated ({}) | prefill {:.0} tok/s, decode {:.1} tok/s | {:?}",
            s.prompt_tokens,
            s.generated,
            s.stop_reason,
            s.prefill_tok_s,
            s.decode_tok_s,
            out.text
        );
        assert_eq!(
            out.tokens, expect,
            "{family:?}: GPU vs reference greedy ids"
        );
        assert_eq!(streamed, out.text);
        let decoded = g.text.tokenizer().decode(&out.tokens, true).unwrap();
        assert_eq!(out.text, decoded, "{family:?}: streamed text = decoded ids");
        assert_eq!(s.prefill_steps, prompt.len().div_ceil(8));
        assert_eq!(s.generated, out.tokens.len());
        if s.stop_reason == StopReason::MaxTokens {
            assert_eq!(s.decode_steps, 15);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error_before_gpu_work() {
    let Some(gpu) = gpu_for_test("generate overflow") else {
        return;
    };
    let (dir, m) = tiny(Family::Llama, "overflow");
    let opts = RunOptions {
        max_seq: 32,
        max_batch: 8,
    };
    let mut g = Generator::load(&gpu, &m, opts).unwrap();
    let long = g.text.encode_prompt(&"x".repeat(40)).unwrap();
    assert_eq!(long.len(), 40);
    let err = g
        .generate(&gpu, &long, &greedy(1), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            GpuError::ContextOverflow {
                needed: 41,
                max: 32
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("context of 32"), "{err}");
    // The prompt fits but the tokens asked for do not.
    let err = g
        .generate(&gpu, &long[..30], &greedy(3), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            GpuError::ContextOverflow {
                needed: 33,
                max: 32
            }
        ),
        "{err}"
    );
    assert_eq!(g.model.last_step.dispatches, 0, "no step ran");
    // Exactly full is fine.
    let out = g
        .generate(&gpu, &long[..30], &greedy(2), &mut |_| {})
        .unwrap();
    assert!(out.tokens.len() <= 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stop_tokens_and_stop_strings_end_generation() {
    let Some(gpu) = gpu_for_test("generate stop") else {
        return;
    };
    // Llama: the tied-embedding tiny models repeat one token greedily; this one varies.
    let (dir, m) = tiny(Family::Llama, "stop");
    let opts = RunOptions {
        max_seq: 64,
        max_batch: 16,
    };
    let mut g = Generator::load(&gpu, &m, opts).unwrap();
    // This model's first greedy token after "once upon a time" is its EOS (id 2, from
    // config.json and generation_config.json): nothing is generated.
    let prompt = g.text.encode_prompt("once upon a time").unwrap();
    let none = g.generate(&gpu, &prompt, &greedy(24), &mut |_| {}).unwrap();
    assert_eq!(none.stats.stop_reason, StopReason::Eos { token: 2 });
    assert!(none.tokens.is_empty() && none.text.is_empty());
    assert_eq!(none.stats.decode_steps, 0);

    let prompt = g.text.encode_prompt("the cat is on the mat, then").unwrap();
    let first = g.generate(&gpu, &prompt, &greedy(24), &mut |_| {}).unwrap();
    let t = &first.tokens;
    // The first token not seen before it, past the first.
    let Some(k) = (1..t.len()).find(|&k| !t[..k].contains(&t[k])) else {
        panic!("greedy output too repetitive for the test: {t:?}");
    };
    let opts = GenerateOptions {
        stop_tokens: vec![t[k]],
        ..greedy(24)
    };
    let cut = g.generate(&gpu, &prompt, &opts, &mut |_| {}).unwrap();
    assert_eq!(cut.tokens, t[..k]);
    assert_eq!(cut.stats.stop_reason, StopReason::Eos { token: t[k] });

    // A stop string from the middle of the text: the output is the text before it.
    let chars: Vec<char> = first.text.chars().collect();
    if chars.len() < 4 {
        let _ = writeln!(
            std::io::stderr(),
            "stop-string part SKIPPED: text too short: {:?}",
            first.text
        );
    } else {
        let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
        let before = &first.text[..first.text.find(&stop).unwrap()];
        let opts = GenerateOptions {
            stop_strings: vec![stop.clone()],
            ..greedy(24)
        };
        let mut streamed = String::new();
        let cut = g
            .generate(&gpu, &prompt, &opts, &mut |s| streamed.push_str(s))
            .unwrap();
        assert_eq!(cut.text, before);
        assert_eq!(streamed, before);
        assert_eq!(cut.stats.stop_reason, StopReason::StopString { text: stop });
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let Some(gpu) = gpu_for_test("generate seeded") else {
        return;
    };
    let (dir, m) = tiny(Family::Llama, "seeded");
    let opts = RunOptions {
        max_seq: 48,
        max_batch: 16,
    };
    let mut g = Generator::load(&gpu, &m, opts).unwrap();
    let prompt = g.text.encode_prompt("in the beginning").unwrap();
    let mut run = |seed| {
        let opts = GenerateOptions {
            max_new: 16,
            sampler: SamplerConfig {
                temperature: 1.0,
                top_k: 40,
                top_p: 0.95,
                seed,
            },
            ..Default::default()
        };
        g.generate(&gpu, &prompt, &opts, &mut |_| {})
            .unwrap()
            .tokens
    };
    let (a, b, c) = (run(42), run(42), run(43));
    assert_eq!(a, b, "same seed, same tokens");
    assert_ne!(a, c, "another seed, other tokens");
    let _ = std::fs::remove_dir_all(&dir);
}
