//! Writes the seed corpora of every target under `corpus/<target>/`, from the project's own
//! writers: micro checkpoints of every family (synth), their conversions, a tiny GGUF, the
//! chat templates of the fetched real models, and M0E4 matrices. Run by fuzz/run.sh.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use tlite_converter::arch::Family;
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, MODEL_FILE, convert};
use tlite_converter::gguf::reader::GgufFile;
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_fuzz::join;
use tlite_quantizer::{M0E4Matrix, Method, QuantOptions};

const FAMILIES: [(&str, Family); 6] = [
    ("llama", Family::Llama),
    ("qwen2", Family::Qwen2),
    ("gemma", Family::Gemma),
    ("gemma2", Family::Gemma2),
    ("gemma3", Family::Gemma3),
    ("chatglm", Family::ChatGlm),
];

fn micro(family: Family) -> SynthSpec {
    SynthSpec {
        hidden: 16,
        intermediate: 32,
        layers: if family == Family::Gemma3 { 2 } else { 1 },
        heads: 2,
        kv_heads: 1,
        head_dim: 8,
        vocab: 32,
        max_positions: 64,
        ..SynthSpec::tiny(family)
    }
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus folder");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn tiny_gguf(path: &Path) {
    let (hidden, ffn, vocab) = (8usize, 16usize, 4usize);
    let t = |name: &str, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| ((i * 7919 % 97) as f32 / 97.0) - 0.5).collect();
        let t = Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor");
        (name.to_owned(), QTensor::quantize(&t, GgmlDType::F32).expect("qtensor"))
    };
    let tensors = vec![
        t("token_embd.weight", vec![vocab, hidden]),
        t("output_norm.weight", vec![hidden]),
        t("blk.0.attn_norm.weight", vec![hidden]),
        t("blk.0.ffn_norm.weight", vec![hidden]),
        t("blk.0.attn_q.weight", vec![hidden, hidden]),
        t("blk.0.attn_k.weight", vec![4, hidden]),
        t("blk.0.attn_v.weight", vec![4, hidden]),
        t("blk.0.attn_output.weight", vec![hidden, hidden]),
        t("blk.0.ffn_gate.weight", vec![ffn, hidden]),
        t("blk.0.ffn_up.weight", vec![ffn, hidden]),
        t("blk.0.ffn_down.weight", vec![hidden, ffn]),
    ];
    let s = |x: &str| Value::String(x.into());
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", s("llama")),
        ("general.alignment", Value::U32(32)),
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
        (
            "tokenizer.ggml.tokens",
            Value::Array(["a", "b", "ab", "<s>"].map(s).to_vec()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array([1, 1, 1, 3].map(Value::I32).to_vec()),
        ),
        ("tokenizer.ggml.merges", Value::Array(vec![s("a b")])),
        ("tokenizer.ggml.bos_token_id", Value::U32(3)),
        ("tokenizer.ggml.eos_token_id", Value::U32(3)),
        (
            "tokenizer.chat_template",
            s("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"),
        ),
    ];
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).expect("create gguf");
    gguf_file::write(&mut f, &md, &ts).expect("write gguf");
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");
    let work = std::env::temp_dir().join(format!("tlite-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    for (name, family) in FAMILIES {
        let ck = work.join(format!("ck-{name}"));
        write_checkpoint(&micro(family), &ck).expect("synth");
        let config = read(&ck.join("config.json"));
        let model = read(&ck.join("model.safetensors"));
        put(&corpus.join("checkpoint"), name, &join(&[&config, &model]));
        let index = br#"{"metadata": {}, "weight_map": {"model.embed_tokens.weight": "a.safetensors", "x": "b.safetensors"}}"#;
        if name == "llama" {
            put(
                &corpus.join("checkpoint"),
                "llama-sharded",
                &join(&[&config, index, &model, b"\x02\0\0\0\0\0\0\0{}"]),
            );
        }
        let out = work.join(format!("out-{name}"));
        let opened = Checkpoint::open_dir(&ck).expect("open micro checkpoint");
        let opts = ConvertOptions {
            group: 8,
            ..Default::default()
        };
        convert(&opened, &out, &opts, &mut |_| {}).expect("convert micro");
        put(&corpus.join("deployable"), name, &read(&out.join(MODEL_FILE)));
    }
    let gguf = work.join("tiny.gguf");
    tiny_gguf(&gguf);
    put(&corpus.join("gguf"), "tiny-llama", &read(&gguf));

    let templates = corpus.join("chat_template");
    put(
        &templates,
        "simple",
        b"{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
    );
    put(
        &templates,
        "macro",
        b"{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{{ n }}{% endmacro %}{{ f(5) }}{{ bos_token }}{{ messages | tojson }}",
    );
    let cache = tlite_converter::fixtures::cache_dir().join("models");
    for name in ["smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct"] {
        let p = cache.join(name).join(format!("{name}.gguf"));
        if let Ok(g) = GgufFile::open(&p)
            && let Ok(Some(t)) = g.str("tokenizer.chat_template")
        {
            put(&templates, name, t.as_bytes());
        } else {
            eprintln!("seeds: no {name} fixture, its chat template is not a seed");
        }
    }

    let m0e4 = corpus.join("m0e4");
    for (i, (rows, cols, group)) in [(2usize, 16usize, 8usize), (3, 20, 8), (1, 64, 32)]
        .into_iter()
        .enumerate()
    {
        let data: Vec<f32> = (0..rows * cols).map(|k| (k as f32 * 0.37).sin()).collect();
        let m = M0E4Matrix::quantize(&data, rows, cols, &QuantOptions::new(group, Method::MinMax))
            .expect("quantize");
        let mut bytes = Vec::new();
        for v in [rows, cols, group] {
            bytes.extend_from_slice(&(v as u16).to_le_bytes());
        }
        bytes.extend(m.packed.iter().flat_map(|w| w.to_le_bytes()));
        bytes.extend(m.scales.iter().flat_map(|h| h.to_le_bytes()));
        bytes.extend(m.biases.iter().flat_map(|h| h.to_le_bytes()));
        put(&m0e4, &format!("m{i}"), &bytes);
    }
    let _ = std::fs::remove_dir_all(&work);
    println!("seeds written to {}", corpus.display());
}
