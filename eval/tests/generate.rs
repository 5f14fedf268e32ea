//! Generation on the GPU with tiny random models: greedy ids equal the CPU reference's greedy
//! decoding (and the same generation loop on the reference gives the same text), the streamed
//! text is the detokenized ids, a prompt longer than the context is an error before any GPU
//! work, stop tokens and stop strings end generation, and seeded sampling is reproducible.

use std::io::Write as _;

use tempfile::TempDir;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::events;
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_eval::ppl::argmax;
use tlite_eval::reference::{Logits, ReferenceModel, WeightSource, log_softmax_rows};
use tlite_model::arch::{Family, families};
use tlite_model::deploy::DeployedModel;
use tlite_quantizer::Method;
use tlite_runtime_gpu::device::gpu_for_test;
use tlite_runtime_gpu::{DeviceOptions, Gpu, GpuLm, GpuModel, KvCache, MAX_LEAD, RunOptions};
use tlite_text::sample::argmax as cpu_argmax;
use tlite_text::{
    GenerateError, GenerateOptions, Generator, SamplerConfig, StopReason, TextCodec, TextError,
};

/// A converted tiny model of `family` in a fresh temporary folder (removed with it).
fn tiny(family: Family) -> (TempDir, DeployedModel) {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(&SynthSpec::tiny(family), &dir.path().join("ck")).unwrap();
    let ck = tlite_converter::checkpoint::Checkpoint::open_dir(&dir.path().join("ck")).unwrap();
    let opts = ConvertOptions {
        group: 32,
        method: Method::Search,
        overwrite: true,
        binding_limit: 64 << 10,
        ..Default::default()
    };
    convert(&ck, &dir.path().join("m0e4"), &opts, &mut events::ignore).unwrap();
    let m = DeployedModel::open(&dir.path().join("m0e4")).unwrap();
    (dir, m)
}

/// `m` on the GPU with its tokenizer side.
fn on_gpu<'g>(gpu: &'g Gpu, m: &DeployedModel, opts: RunOptions) -> Generator<GpuLm<'g>> {
    let text = TextCodec::open(m).unwrap();
    Generator::new(GpuLm::new(gpu, GpuModel::load(gpu, m, opts).unwrap()), text)
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
        let (_dir, m) = tiny(family);
        let reference = ReferenceModel::load(&WeightSource::Deployed(&m)).unwrap();
        // max_batch 8 < the prompt: prefilled in several steps.
        let opts = RunOptions {
            max_seq: 64,
            max_batch: 8,
        };
        let mut g = on_gpu(&gpu, &m, opts);
        let prompt = g.text.encode_prompt("the cat is on the mat, then").unwrap();
        assert!(prompt.len() > 8, "{prompt:?}");
        let mut streamed = String::new();
        let out = g
            .generate(&prompt, &greedy(16), &mut |s| streamed.push_str(s))
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
        assert!(s.gpu_decode, "greedy decoding picks the tokens on the GPU");
        // Stepping with every token's logits read back: the same tokens.
        g.model.decode_lead = None;
        let stepped = g.generate(&prompt, &greedy(16), &mut |_| {}).unwrap();
        assert!(!stepped.stats.gpu_decode);
        assert_eq!(
            stepped.tokens, out.tokens,
            "{family:?}: stepped vs GPU loop"
        );
        // The same generation loop drives the CPU reference: the same text.
        let session = reference.session(prompt.len() + 16).unwrap();
        let mut cpu = Generator::new(session, TextCodec::open(&m).unwrap());
        let on_cpu = cpu.generate(&prompt, &greedy(16), &mut |_| {}).unwrap();
        assert_eq!(
            on_cpu.tokens, out.tokens,
            "{family:?}: reference generation"
        );
        assert_eq!(on_cpu.text, out.text);
        assert!(!on_cpu.stats.gpu_decode);
        assert_eq!(
            on_cpu.stats.prefill_steps, 1,
            "the reference prefills at once"
        );
    }
}

#[test]
fn greedy_decoding_on_the_gpu_equals_stepping_and_stops_where_asked() {
    let Some(gpu) = gpu_for_test("decode_greedy") else {
        return;
    };
    for family in [Family::Llama, Family::Gemma3] {
        let (_dir, m) = tiny(family);
        let opts = RunOptions {
            max_seq: 64,
            max_batch: 8,
        };
        let mut g = GpuModel::load(&gpu, &m, opts).unwrap();
        let vocab = g.vocab as u32;
        let prompt: Vec<u32> = (0..6).map(|i| (i * 37 + 5) % vocab).collect();
        let past = prompt.len();
        let first = cpu_argmax(&g.step(&gpu, &prompt, 0, &[5]).unwrap());
        // stepping: step j runs token j at past + j, its logits' argmax is token j + 1
        let n = 20;
        let mut want = Vec::new();
        let mut t = first;
        for j in 0..n {
            t = cpu_argmax(&g.step(&gpu, &[t], past + j, &[0]).unwrap());
            want.push(t);
        }
        for lead in [1, 3, MAX_LEAD] {
            let mut got = Vec::new();
            let mut keep = |id| {
                got.push(id);
                true
            };
            let run = g
                .decode_greedy(&gpu, first, past, n, lead, &mut keep)
                .unwrap();
            assert_eq!(got, want, "{family:?} lead {lead}");
            assert_eq!((run.tokens, run.steps), (n, n));
            // a stop after 7 tokens: the steps in flight past it are discarded
            let mut got = Vec::new();
            let mut seven = |id| {
                got.push(id);
                got.len() < 7
            };
            let run = g
                .decode_greedy(&gpu, first, past, n, lead, &mut seven)
                .unwrap();
            assert_eq!(got, want[..7], "{family:?} lead {lead}");
            assert_eq!(run.tokens, 7);
            assert!((7..=7 + lead).contains(&run.steps), "{run:?}");
            // the cache holds the accepted positions: stepping on from the stop agrees
            let next = g.step(&gpu, &[got[6]], past + 7, &[0]).unwrap();
            assert_eq!(cpu_argmax(&next), want[7], "{family:?} lead {lead}");
        }
        // refused before any GPU work: no lead, a token outside the vocabulary, the context
        let mut any = |_| true;
        for (first, max, lead) in [(first, 4, 0), (vocab, 4, 2), (first, 64, 2)] {
            let e = g.decode_greedy(&gpu, first, past, max, lead, &mut any);
            assert!(e.is_err(), "{first} {max} {lead}");
        }
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error_before_gpu_work() {
    let Some(gpu) = gpu_for_test("generate overflow") else {
        return;
    };
    let (_dir, m) = tiny(Family::Llama);
    let opts = RunOptions {
        max_seq: 32,
        max_batch: 8,
    };
    let mut g = on_gpu(&gpu, &m, opts);
    let long = g.text.encode_prompt(&"x".repeat(40)).unwrap();
    assert_eq!(long.len(), 40);
    let err = g.generate(&long, &greedy(1), &mut |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            GenerateError::Text(TextError::ContextOverflow {
                needed: 41,
                max: 32
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("context of 32"), "{err}");
    // The prompt fits but the tokens asked for do not.
    let err = g
        .generate(&long[..30], &greedy(3), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            GenerateError::Text(TextError::ContextOverflow {
                needed: 33,
                max: 32
            })
        ),
        "{err}"
    );
    assert_eq!(g.model.model.last_step.dispatches, 0, "no step ran");
    // Exactly full is fine.
    let out = g.generate(&long[..30], &greedy(2), &mut |_| {}).unwrap();
    assert!(out.tokens.len() <= 2);
}

#[test]
fn stop_tokens_and_stop_strings_end_generation() {
    let Some(gpu) = gpu_for_test("generate stop") else {
        return;
    };
    // Llama: the tied-embedding tiny models repeat one token greedily; this one varies.
    let (_dir, m) = tiny(Family::Llama);
    let opts = RunOptions {
        max_seq: 64,
        max_batch: 16,
    };
    let mut g = on_gpu(&gpu, &m, opts);
    // This model's first greedy token after "once upon a time" is its EOS (id 2, from
    // config.json and generation_config.json): nothing is generated.
    let prompt = g.text.encode_prompt("once upon a time").unwrap();
    let none = g.generate(&prompt, &greedy(24), &mut |_| {}).unwrap();
    assert_eq!(none.stats.stop_reason, StopReason::Eos { token: 2 });
    assert!(none.tokens.is_empty() && none.text.is_empty());
    assert_eq!(none.stats.decode_steps, 0);

    let prompt = g.text.encode_prompt("the cat is on the mat, then").unwrap();
    let first = g.generate(&prompt, &greedy(24), &mut |_| {}).unwrap();
    let t = &first.tokens;
    // The first token not seen before it, past the first.
    let Some(k) = (1..t.len()).find(|&k| !t[..k].contains(&t[k])) else {
        panic!("greedy output too repetitive for the test: {t:?}");
    };
    let opts = GenerateOptions {
        stop_tokens: vec![t[k]],
        ..greedy(24)
    };
    let cut = g.generate(&prompt, &opts, &mut |_| {}).unwrap();
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
            .generate(&prompt, &opts, &mut |s| streamed.push_str(s))
            .unwrap();
        assert_eq!(cut.text, before);
        assert_eq!(streamed, before);
        assert_eq!(cut.stats.stop_reason, StopReason::StopString { text: stop });
    }
}

#[test]
fn seeded_sampling_is_reproducible() {
    let Some(gpu) = gpu_for_test("generate seeded") else {
        return;
    };
    let (_dir, m) = tiny(Family::Llama);
    let opts = RunOptions {
        max_seq: 48,
        max_batch: 16,
    };
    let mut g = on_gpu(&gpu, &m, opts);
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
        g.generate(&prompt, &opts, &mut |_| {}).unwrap().tokens
    };
    let (seed, other) = (42, 43);
    let _ = writeln!(std::io::stderr(), "sampling seeds {seed} and {other}");
    let (a, b, c) = (run(seed), run(seed), run(other));
    assert_eq!(a, b, "same seed, same tokens");
    assert_ne!(a, c, "another seed, other tokens");
}

#[test]
fn short_prefills_run_as_gemvs_and_agree_with_the_gemm_and_the_reference() {
    let Some(gpu) = gpu_for_test("short prefill") else {
        return;
    };
    use tlite_runtime_gpu::graph::{COOP_SHORT_PREFILL, SMALL_PREFILL, TOKENS_GEMV_MIN, When};
    // With cooperative matrices the short steps run gemm_m0e4_coop_few (f16 operands: an f16
    // tolerance, and no exact argmax at near-ties); otherwise the GEMVs (f32).
    let coop = gpu.coop_gemm();
    let (small, shorts, tol) = match coop {
        true => (COOP_SHORT_PREFILL, vec![When::PrefillCoopShort], 2e-2),
        false => (
            SMALL_PREFILL,
            vec![When::PrefillFew, When::PrefillSmall],
            1e-4,
        ),
    };
    let small = small as usize;
    for family in [Family::Llama, Family::Gemma3, Family::ChatGlm] {
        let (_dir, m) = tiny(family);
        let reference = ReferenceModel::load(&WeightSource::Deployed(&m)).unwrap();
        let opts = RunOptions {
            max_seq: 64,
            max_batch: 64,
        };
        let mut g = GpuModel::load(&gpu, &m, opts).unwrap();
        for short in &shorts {
            assert!(g.graph.ops.iter().any(|o| o.when == *short), "{family:?}");
        }
        let vocab = g.vocab;
        let n = small + 4;
        let prompt: Vec<u32> = (0..n as u32)
            .map(|i| (i * 53 + 11) % vocab as u32)
            .collect();
        let mut cache = reference.new_cache(n).unwrap();
        let want = reference
            .forward(&prompt, 0, &mut cache, Logits::All)
            .unwrap();
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        // one step past the small path (the GEMM), and steps of 2, 5 (gemv_m0e4 per token),
        // 17 and `small` tokens (gemv_m0e4_tokens, 4 tokens per pass); with cooperative
        // matrices all four take gemm_m0e4_coop_few
        let all = |k: usize| (0..k as u32).collect::<Vec<_>>();
        let tokens_min = TOKENS_GEMV_MIN as usize;
        for chunk in [n, 2, 5, tokens_min + 1, small] {
            let mut got = Vec::new();
            for (i, c) in prompt.chunks(chunk).enumerate() {
                got.extend(g.step(&gpu, c, i * chunk, &all(c.len())).unwrap());
            }
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            let worst = got
                .iter()
                .zip(&want)
                .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(
                worst <= tol * scale.max(1.0),
                "{family:?} steps of {chunk}: max |Δlogit| {worst} (scale {scale})"
            );
            if !coop {
                let rows = |v: &[f32]| v.chunks(vocab).map(cpu_argmax).collect::<Vec<_>>();
                assert_eq!(rows(&got), rows(&want), "{family:?} steps of {chunk}");
            }
        }
    }
}

/// An f16 KV cache (`TLITE_KV_CACHE=f16`): half the KV memory, and every position's logits
/// (a prefill step, then decode steps) within an f16 tolerance of the f32 cache's and of the
/// CPU reference, as the f32 cache is within the f32 one.
#[test]
fn an_f16_kv_cache_halves_its_memory_and_matches_the_reference() {
    let Some(probe) = gpu_for_test("f16 kv cache") else {
        return;
    };
    if !probe.has_f16() {
        let _ = writeln!(std::io::stderr(), "SKIPPED: the adapter has no f16");
        return;
    }
    drop(probe);
    let open = |kv_cache| {
        Gpu::new(&DeviceOptions {
            adapter: std::env::var("TLITE_ADAPTER").ok(),
            kv_cache,
            ..Default::default()
        })
        .unwrap()
    };
    let (gpu32, gpu16) = (open(KvCache::F32), open(KvCache::F16));
    assert!(!gpu32.kv_f16() && gpu16.kv_f16());
    // The 12-token prefill runs gemm_m0e4_coop_few where the adapter has cooperative matrices
    // (f16 operands: the short-prefill test's tolerance), the f32 GEMVs otherwise.
    let tol32 = if gpu32.coop_gemm() { 2e-2 } else { 1e-4 };
    assert!(gpu16.header().contains("KV cache f16"));
    for family in [Family::Llama, Family::Gemma3, Family::ChatGlm] {
        let (_dir, m) = tiny(family);
        let reference = ReferenceModel::load(&WeightSource::Deployed(&m)).unwrap();
        let n = 20;
        let prompt: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 5) % 300).collect();
        let mut cache = reference.new_cache(n).unwrap();
        let want = reference
            .forward(&prompt, 0, &mut cache, Logits::All)
            .unwrap();
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1.0);
        // A prefill step of 12 tokens, then one token per step; every position's logits.
        let run = |gpu: &Gpu| {
            let opts = RunOptions {
                max_seq: 64,
                max_batch: 16,
            };
            let mut g = GpuModel::load(gpu, &m, opts).unwrap();
            let mut got = Vec::new();
            let rows: Vec<u32> = (0..12).collect();
            got.extend(g.step(gpu, &prompt[..12], 0, &rows).unwrap());
            for p in 12..n {
                got.extend(g.step(gpu, &prompt[p..p + 1], p, &[0]).unwrap());
            }
            (g.memory.buffers.kv_bytes, got)
        };
        let worst = |a: &[f32], b: &[f32]| {
            (a.iter().zip(b)).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
        };
        let ((kv32, got32), (kv16, got16)) = (run(&gpu32), run(&gpu16));
        let (err32, err16) = (worst(&got32, &want), worst(&got16, &want));
        // What the cache alone changes: the same kernels otherwise.
        let cache = worst(&got16, &got32);
        let _ = writeln!(
            std::io::stderr(),
            "{family:?}: KV {kv32} B f32, {kv16} B f16 | max |Δlogit| / scale against the \
             reference {err32:.2e} f32, {err16:.2e} f16; f16 against f32 cache {cache:.2e}"
        );
        assert_eq!(kv16 * 2, kv32, "{family:?}");
        assert!(err32 <= tol32, "{family:?}: f32 cache {err32}");
        assert!(err16 <= tol32.max(2e-3), "{family:?}: f16 cache {err16}");
        assert!(cache <= 2e-3, "{family:?}: f16 against f32 cache {cache}");
    }
}
