//! GGUF import against the goldens in `fixtures/goldens/` (Hugging Face transformers, f32, on
//! the same packaged models): tokenizer ids, config numbers, tensor shapes, and the sha256 of
//! `model.safetensors`, which pins every dequantized weight bit for bit.
//!
//! Real models come from `fixtures/fetch.sh` into `.cache/models/<name>/<name>.gguf` (root
//! overridable with `TLITE_CACHE`). A missing SmolLM2 fails under `CI`; a missing Gemma or
//! Qwen fails only when `TLITE_ALL_MODELS` is set (`tlite_gguf::fixtures::required`).
//! Otherwise a missing model is reported as `skipped:` on stderr. The synthetic tests below need
//! no download.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use tlite_converter::{ConvertError, events};
use tlite_gguf::fixtures::{self, golden_path};
use tlite_gguf::permute::{permute_rows, unpermute_rows};
use tlite_gguf::{ImportOptions, OutDType, import_gguf};
use tlite_model::{ModelError, SafetensorsFile};

fn golden(name: &str) -> Json {
    let path = golden_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("golden is JSON")
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("read");
    hex::encode(h.finalize())
}

/// What each real model is expected to import as.
struct Expect {
    name: &'static str,
    layers: u64,
    hidden: u64,
    vocab: u64,
    tied: bool,
    tensors: usize,
    parameters: u64,
    shapes: &'static [(&'static str, &'static [usize])],
}

/// Imports the model, then checks config, tensors, the weights' sha256 and the tokenizer
/// against the golden.
fn check_model(e: &Expect) {
    let Some(src) = fixtures::gguf_or_skip(e.name, "gguf import") else {
        return;
    };
    let g = golden(e.name);
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let start = Instant::now();
    let summary =
        import_gguf(&src, &out, &ImportOptions::default(), &mut events::ignore).expect("import");
    let _ = writeln!(
        std::io::stderr(),
        "{}: imported {} tensors, {} parameters in {:.1} s",
        e.name,
        summary.tensors,
        summary.parameters,
        start.elapsed().as_secs_f64()
    );

    let config: Json =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config.json"))
            .expect("config.json parses");
    assert_eq!(config["model_type"], g["meta"]["model_type"]);
    assert_eq!(config["architectures"], g["meta"]["architectures"]);
    assert_eq!(config["num_hidden_layers"], e.layers);
    assert_eq!(config["hidden_size"], e.hidden);
    assert_eq!(config["vocab_size"], e.vocab);
    assert_eq!(config["vocab_size"], g["meta"]["vocab_size"]);
    assert_eq!(config["tie_word_embeddings"], e.tied);
    assert_eq!(config["bos_token_id"], g["config_bos_token_id"]);

    let st = SafetensorsFile::open(&out.join("model.safetensors")).expect("safetensors");
    assert_eq!(st.entries().len(), e.tensors);
    assert_eq!(summary.tensors, e.tensors);
    let params: usize = st.entries().iter().map(|t| t.numel()).sum();
    assert_eq!(params as u64, e.parameters);
    assert_eq!(summary.parameters, e.parameters);
    for (name, shape) in e.shapes {
        assert_eq!(st.entry(name).expect(name).shape, *shape, "{name}");
    }
    // Byte-identical to the file the goldens were computed from: every weight exact.
    assert_eq!(
        sha256_file(&out.join("model.safetensors")),
        g["meta"]["model_safetensors_sha256"]
            .as_str()
            .expect("sha256")
    );

    check_tokenizer(&out.join("tokenizer.json"), &g);
}

fn check_tokenizer(path: &Path, g: &Json) {
    let tok = tokenizers::Tokenizer::from_file(path).expect("tokenizer.json loads");
    let text = g["text"].as_str().expect("text");
    let adds_bos = g["tokenizer_adds_bos"]
        .as_bool()
        .expect("tokenizer_adds_bos");
    let enc = tok.encode(text, adds_bos).expect("encode");
    let mut ids = enc.get_ids().to_vec();
    if adds_bos {
        assert_eq!(
            Some(&ids[0]),
            g["bos_id"].as_u64().map(|b| b as u32).as_ref()
        );
        ids.remove(0);
    }
    let want: Vec<u32> = g["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect();
    let first_diff = ids.iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "first differing token id");
    assert_eq!(ids[..want.len()], want[..]);
    assert_eq!(
        ids.len() as u64,
        g["n_text_ids"].as_u64().expect("n_text_ids")
    );
    if g["tokenizer_roundtrip_exact"].as_bool() == Some(true) {
        assert_eq!(tok.decode(&ids, true).expect("decode"), text);
    }
}

#[test]
fn smollm2_matches_goldens() {
    check_model(&Expect {
        name: "smollm2-135m-instruct",
        layers: 30,
        hidden: 576,
        vocab: 49152,
        tied: true,
        tensors: 272,
        parameters: 134_515_008,
        shapes: &[
            ("model.embed_tokens.weight", &[49152, 576]),
            ("model.layers.0.self_attn.q_proj.weight", &[576, 576]),
            ("model.layers.0.self_attn.k_proj.weight", &[192, 576]),
            ("model.layers.29.mlp.down_proj.weight", &[576, 1536]),
            ("model.norm.weight", &[576]),
        ],
    });
}

#[test]
fn gemma3_matches_goldens() {
    check_model(&Expect {
        name: "gemma3-270m",
        layers: 18,
        hidden: 640,
        vocab: 262144,
        tied: true,
        tensors: 236,
        parameters: 268_098_176,
        shapes: &[
            ("model.embed_tokens.weight", &[262144, 640]),
            ("model.layers.0.self_attn.q_proj.weight", &[1024, 640]),
            ("model.layers.0.self_attn.k_proj.weight", &[256, 640]),
            ("model.layers.0.self_attn.q_norm.weight", &[256]),
            ("model.layers.17.post_feedforward_layernorm.weight", &[640]),
        ],
    });
}

#[test]
fn qwen2_5_coder_0_5b_matches_goldens() {
    check_model(&Expect {
        name: "qwen2.5-coder-0.5b-instruct",
        layers: 24,
        hidden: 896,
        vocab: 151936,
        // The AWQ checkpoint behind this GGUF stores its own `lm_head`.
        tied: false,
        tensors: 291,
        parameters: 630_167_424,
        shapes: &[
            ("model.embed_tokens.weight", &[151936, 896]),
            ("model.layers.0.self_attn.q_proj.bias", &[896]),
            ("model.layers.0.self_attn.k_proj.weight", &[128, 896]),
            ("model.layers.23.mlp.up_proj.weight", &[4864, 896]),
            ("lm_head.weight", &[151936, 896]),
        ],
    });
}

/// Deterministic pseudo-random values in [-1, 1).
fn lcg(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn qk_permutation_round_trips() {
    for (rows, cols, heads) in [(12, 5, 3), (8, 3, 1), (64, 7, 4), (24, 2, 2)] {
        let w = lcg(rows * cols, rows as u64);
        let p = permute_rows(&w, rows, cols, heads);
        assert_ne!(p, w, "{rows}x{cols}/{heads} permutation should move rows");
        assert_eq!(unpermute_rows(&p, rows, cols, heads), w);
    }
    // llama.cpp's order for one head of size 4: rows [0, 2, 1, 3].
    let w = [0.0, 1.0, 2.0, 3.0];
    assert_eq!(permute_rows(&w, 4, 1, 1), [0.0, 2.0, 1.0, 3.0]);
}

/// A tiny `llama` GGUF written with candle: one layer, hidden 8, 2 heads of 4, 1 KV head, an
/// untied head and a three-token byte-level vocabulary. Q and K are stored permuted, as
/// llama.cpp's converter stores them. Returns the Hugging Face Q, K and Q bias.
fn write_tiny_llama(
    path: &Path,
    arch: &str,
    extra_tensor: Option<&str>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (hidden, ffn, vocab) = (8usize, 16usize, 4usize);
    let q_hf = lcg(hidden * hidden, 1);
    let k_hf = lcg(4 * hidden, 2);
    let q_bias_hf = lcg(hidden, 14);
    let mut tensors: Vec<(String, Vec<f32>, Vec<usize>)> = vec![
        (
            "token_embd.weight".into(),
            lcg(vocab * hidden, 3),
            vec![vocab, hidden],
        ),
        (
            "output.weight".into(),
            lcg(vocab * hidden, 4),
            vec![vocab, hidden],
        ),
        ("output_norm.weight".into(), lcg(hidden, 5), vec![hidden]),
        (
            "blk.0.attn_norm.weight".into(),
            lcg(hidden, 6),
            vec![hidden],
        ),
        ("blk.0.ffn_norm.weight".into(), lcg(hidden, 7), vec![hidden]),
        (
            "blk.0.attn_q.weight".into(),
            permute_rows(&q_hf, hidden, hidden, 2),
            vec![hidden, hidden],
        ),
        (
            "blk.0.attn_k.weight".into(),
            permute_rows(&k_hf, 4, hidden, 1),
            vec![4, hidden],
        ),
        (
            "blk.0.attn_v.weight".into(),
            lcg(4 * hidden, 8),
            vec![4, hidden],
        ),
        (
            "blk.0.attn_output.weight".into(),
            lcg(hidden * hidden, 9),
            vec![hidden, hidden],
        ),
        (
            "blk.0.ffn_gate.weight".into(),
            lcg(ffn * hidden, 10),
            vec![ffn, hidden],
        ),
        (
            "blk.0.ffn_up.weight".into(),
            lcg(ffn * hidden, 11),
            vec![ffn, hidden],
        ),
        (
            "blk.0.ffn_down.weight".into(),
            lcg(hidden * ffn, 12),
            vec![hidden, ffn],
        ),
    ];
    tensors.push((
        "blk.0.attn_q.bias".into(),
        permute_rows(&q_bias_hf, hidden, 1, 2),
        vec![hidden],
    ));
    if let Some(name) = extra_tensor {
        tensors.push((name.into(), lcg(hidden, 13), vec![hidden]));
    }
    let q: Vec<(String, QTensor)> = tensors
        .into_iter()
        .map(|(name, data, shape)| {
            let t = Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor");
            (
                name,
                QTensor::quantize(&t, GgmlDType::F32).expect("f32 qtensor"),
            )
        })
        .collect();
    let s = |x: &str| Value::String(x.into());
    let strings = |xs: &[&str]| Value::Array(xs.iter().map(|x| s(x)).collect());
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", s(arch)),
        ("llama.embedding_length", Value::U32(hidden as u32)),
        ("llama.block_count", Value::U32(1)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(2)),
        ("llama.attention.head_count_kv", Value::U32(1)),
        ("llama.context_length", Value::U32(64)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("default")),
        ("tokenizer.ggml.tokens", strings(&["a", "b", "ab", "<s>"])),
        (
            "tokenizer.ggml.token_type",
            Value::Array([1, 1, 1, 3].map(Value::I32).to_vec()),
        ),
        ("tokenizer.ggml.merges", strings(&["a b"])),
        ("tokenizer.ggml.bos_token_id", Value::U32(3)),
        ("tokenizer.ggml.eos_token_id", Value::U32(3)),
    ];
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = q.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).expect("create gguf");
    gguf_file::write(&mut f, &md, &ts).expect("write gguf");
    (q_hf, k_hf, q_bias_hf)
}

/// Folders named after `out` (`out.tmp-*`, `out.old-*`) left behind in its parent.
fn leftovers(out: &Path) -> Vec<String> {
    let prefix = format!("{}.", out.file_name().expect("name").to_string_lossy());
    std::fs::read_dir(out.parent().expect("parent"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn tiny_llama_imports_with_qk_unpermuted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("tiny.gguf");
    let (q_hf, k_hf, q_bias_hf) = write_tiny_llama(&src, "llama", None);
    let out = dir.path().join("out");
    let mut events = Vec::new();
    let summary = import_gguf(&src, &out, &ImportOptions::default(), &mut |e| {
        events.push(e)
    })
    .expect("import");
    assert_eq!(summary.tensors, 13);
    assert_eq!(summary.architecture, "LlamaForCausalLM");
    assert!(events.iter().any(|e| matches!(
        e,
        events::Event::Done {
            phase: "dequantize"
        }
    )));

    let st = SafetensorsFile::open(&out.join("model.safetensors")).expect("safetensors");
    let q = st
        .entry("model.layers.0.self_attn.q_proj.weight")
        .expect("q");
    assert_eq!(st.to_f32(q).expect("q f32"), q_hf);
    let k = st
        .entry("model.layers.0.self_attn.k_proj.weight")
        .expect("k");
    assert_eq!(st.to_f32(k).expect("k f32"), k_hf);
    let qb = st
        .entry("model.layers.0.self_attn.q_proj.bias")
        .expect("q bias");
    assert_eq!(st.to_f32(qb).expect("q bias f32"), q_bias_hf);
    assert!(st.entry("lm_head.weight").is_ok());

    let config: Json =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("read"))
            .expect("config");
    assert_eq!(config["tie_word_embeddings"], false);
    assert_eq!(config["attention_bias"], true);
    assert_eq!(config["head_dim"], 4);
    assert_eq!(config["num_key_value_heads"], 1);
    assert_eq!(config["rms_norm_eps"].as_f64(), Some(1e-5));

    let tok = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).expect("tokenizer");
    assert_eq!(
        tok.encode("abba", false).expect("encode").get_ids(),
        [2, 1, 0]
    );

    // A non-empty folder is refused, then replaced with `overwrite`, leaving nothing beside it.
    let err = import_gguf(&src, &out, &ImportOptions::default(), &mut events::ignore);
    assert!(
        matches!(err, Err(ConvertError::OutputExists { .. })),
        "{err:?}"
    );
    let opts = ImportOptions {
        dtype: OutDType::BF16,
        overwrite: true,
    };
    import_gguf(&src, &out, &opts, &mut events::ignore).expect("overwrite");
    let st = SafetensorsFile::open(&out.join("model.safetensors")).expect("safetensors");
    let q = st
        .entry("model.layers.0.self_attn.q_proj.weight")
        .expect("q");
    let q_bf16: Vec<f32> = st.to_f32(q).expect("q f32");
    let rounded: Vec<f32> = q_hf
        .iter()
        .map(|&x| half::bf16::from_f32(x).to_f32())
        .collect();
    assert_eq!(q_bf16, rounded);
    assert_eq!(leftovers(&out), Vec::<String>::new());
}

#[test]
fn unknown_architecture_and_tensor_are_named_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("mamba.gguf");
    write_tiny_llama(&src, "mamba", None);
    let out = dir.path().join("out");
    match import_gguf(&src, &out, &ImportOptions::default(), &mut events::ignore) {
        Err(ConvertError::Model(ModelError::UnknownArchitecture {
            model_type,
            supported,
        })) => {
            assert_eq!(model_type, "mamba");
            assert!(
                supported.contains("llama") && supported.contains("gemma3"),
                "{supported}"
            );
        }
        other => panic!("expected UnknownArchitecture, got {other:?}"),
    }
    let src = dir.path().join("extra.gguf");
    write_tiny_llama(&src, "llama", Some("blk.0.mystery.weight"));
    let err = import_gguf(&src, &out, &ImportOptions::default(), &mut events::ignore);
    match err {
        Err(ConvertError::Gguf { reason, .. }) => {
            assert!(reason.contains("blk.0.mystery.weight"), "{reason}")
        }
        other => panic!("expected a Gguf error, got {other:?}"),
    }
    assert!(!out.exists());

    // Tensor data cut short: the error comes mid-write, and the partial folder is removed.
    let src = dir.path().join("truncated.gguf");
    write_tiny_llama(&src, "llama", None);
    let len = std::fs::metadata(&src).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .expect("open");
    f.set_len(len - 64).expect("truncate");
    let err = import_gguf(&src, &out, &ImportOptions::default(), &mut events::ignore);
    assert!(matches!(err, Err(ConvertError::Gguf { .. })), "{err:?}");
    assert!(!out.exists());
    assert_eq!(leftovers(&out), Vec::<String>::new());
}
