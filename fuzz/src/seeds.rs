//! Writes the seed corpora of every target under `corpus/<target>/`, from the project's own
//! writers: micro checkpoints of every family (synth), their conversions, a tiny GGUF, the
//! chat templates of the fetched real models, and M0E4 matrices. Run by fuzz/run.sh.

use std::path::{Path, PathBuf};

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_fuzz::join;
use tlite_gguf::reader::GgufFile;
use tlite_gguf::writer::{Gguf, V, s};
use tlite_model::arch::{Family, families};
use tlite_model::deploy::MODEL_FILE;
use tlite_quantizer::{M0E4Matrix, Method, QuantOptions};

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

/// A valid one-layer `llama` GGUF (tied head, a chat template), from the importer's own writer.
fn tiny_gguf(path: &Path) {
    let mut g = Gguf::tiny_llama();
    g.remove_tensor("output.weight");
    g.set("general.alignment", V::U32(32));
    g.set("llama.rope.freq_base", V::F32(10000.0));
    g.set(
        "tokenizer.chat_template",
        s("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"),
    );
    std::fs::write(path, g.bytes()).expect("write gguf");
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");
    let work = std::env::temp_dir().join(format!("tlite-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    for family in families() {
        let name = &family.name();
        let ck = work.join(format!("ck-{name}"));
        write_checkpoint(&micro(family), &ck).expect("synth");
        let config = read(&ck.join("config.json"));
        let model = read(&ck.join("model.safetensors"));
        put(&corpus.join("checkpoint"), name, &join(&[&config, &model]));
        let index = br#"{"metadata": {}, "weight_map": {"model.embed_tokens.weight": "a.safetensors", "x": "b.safetensors"}}"#;
        if family == Family::Llama {
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
        put(
            &corpus.join("deployable"),
            name,
            &read(&out.join(MODEL_FILE)),
        );
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
    let cache = tlite_gguf::fixtures::cache_dir().join("models");
    for name in [
        "smollm2-135m-instruct",
        "gemma3-270m",
        "qwen2.5-coder-0.5b-instruct",
    ] {
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
