//! Every supported architecture: a seeded tiny random checkpoint is written, read back with
//! shape checks, converted with chunking forced, reopened with checksums verified, and every
//! tensor round-trips (dequantized values equal the quantizer's on the same input).

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert, convert_in_memory};
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_converter::{Event, events};
use tlite_model::arch::{Family, Role, families};
use tlite_model::deploy::{DeployedModel, KeepRule, Storage};
use tlite_quantizer::{M0E4Matrix, Method, QuantOptions};

/// The seed of every random checkpoint here (printed by the tests).
const SEED: u64 = 0x51;

#[test]
fn every_architecture_converts_and_round_trips() {
    eprintln!("checkpoint seed {SEED:#x}");
    for family in families() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut spec = SynthSpec::tiny(family);
        spec.seed = SEED;
        write_checkpoint(&spec, &dir.join("ck")).unwrap();
        let ck = Checkpoint::open_dir(&dir.join("ck")).unwrap();
        let expected = ck.expected_tensors().unwrap();
        let opts = ConvertOptions {
            group: 32,
            method: Method::Search,
            binding_limit: 2048, // forces several chunks per matrix
            ..Default::default()
        };
        let mut events = Vec::new();
        let report = convert(&ck, &dir.join("out"), &opts, &mut |e| events.push(e)).unwrap();
        assert!(matches!(events.first(), Some(Event::Start { .. })));
        // Tensors are converted a batch at a time, in parallel, and reported in order.
        let items: Vec<usize> = (events.iter())
            .filter_map(|e| match e {
                Event::Item { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(items, (0..expected.len()).collect::<Vec<_>>());
        assert_eq!(report.tensors.len(), expected.len());
        let m = DeployedModel::open(&dir.join("out")).unwrap();
        // The same conversion in memory: the same manifest, the same bytes in every part.
        let mem = convert_in_memory(&ck, &opts, None).unwrap();
        mem.verify_checksums().unwrap();
        let json = |m: &DeployedModel| serde_json::to_string(&m.manifest).unwrap();
        assert_eq!(json(&mem), json(&m), "{family:?}");
        for t in m.tensors() {
            for part in t.chunks.iter().flat_map(|c| &c.parts) {
                let (a, b) = (m.part(part).unwrap(), mem.part(part).unwrap());
                assert_eq!(a.0.dtype, b.0.dtype, "{part}");
                assert_eq!(a.0.shape, b.0.shape, "{part}");
                assert!(a.1 == b.1, "{family:?} {part}: bytes differ");
            }
        }
        assert_eq!(m.manifest.architecture, family);
        assert_eq!(
            m.parameters(),
            expected.iter().map(|t| t.numel() as u64).sum::<u64>()
        );
        assert!(m.tokenizer_path().is_some());
        let mut chunked = 0;
        for t in &expected {
            let src = ck.tensor_f32(&t.name).unwrap();
            let layout = m.layout(&t.name).unwrap();
            if t.role.quantizable() {
                assert_eq!(layout.storage, Storage::M0E4, "{}", t.name);
                chunked += usize::from(layout.chunks.len() > 1);
                let q = M0E4Matrix::quantize(
                    &src,
                    t.shape[0],
                    t.shape[1],
                    &QuantOptions::new(32, Method::Search),
                )
                .unwrap();
                assert_eq!(m.m0e4(&t.name).unwrap(), q, "{family:?} {}", t.name);
                assert_eq!(m.tensor_f32(&t.name).unwrap(), q.dequantize());
            } else {
                assert!(matches!(t.role, Role::Norm | Role::Bias));
                assert_eq!(m.tensor_f32(&t.name).unwrap(), src, "{}", t.name);
            }
        }
        assert!(chunked > 0, "{family:?}: no tensor was split");
    }
}

#[test]
fn keep_rules_store_dense() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_checkpoint(&SynthSpec::tiny(Family::Llama), &dir.join("ck")).unwrap();
    let ck = Checkpoint::open_dir(&dir.join("ck")).unwrap();
    let opts = ConvertOptions {
        keep: vec![
            "embed_tokens|lm_head=f16".parse().unwrap(),
            "down_proj=f32".parse().unwrap(),
        ],
        ..Default::default()
    };
    convert(&ck, &dir.join("out"), &opts, &mut events::ignore).unwrap();
    let m = DeployedModel::open(&dir.join("out")).unwrap();
    assert_eq!(
        m.layout("model.embed_tokens.weight").unwrap().storage,
        Storage::F16
    );
    assert_eq!(m.layout("lm_head.weight").unwrap().storage, Storage::F16);
    assert_eq!(
        m.layout("model.layers.1.mlp.down_proj.weight")
            .unwrap()
            .storage,
        Storage::F32
    );
    assert_eq!(
        m.layout("model.layers.1.mlp.up_proj.weight")
            .unwrap()
            .storage,
        Storage::M0E4
    );
    let src = ck
        .tensor_f32("model.layers.0.mlp.down_proj.weight")
        .unwrap();
    assert_eq!(
        m.tensor_f32("model.layers.0.mlp.down_proj.weight").unwrap(),
        src
    );
    assert!("x=int8".parse::<KeepRule>().is_err());
    assert!("(unclosed=f16".parse::<KeepRule>().is_err());
}

#[test]
fn repo_ids_resolve_from_the_hf_cache_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("hub/models--acme--tiny");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    write_checkpoint(
        &SynthSpec::tiny(Family::Qwen2),
        &root.join("snapshots").join(rev),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), rev).unwrap();
    // SAFETY: this test binary sets HF_HUB_CACHE only here, before any reader runs.
    unsafe { std::env::set_var("HF_HUB_CACHE", dir.join("hub")) };
    let ck = Checkpoint::open("acme/tiny").unwrap();
    assert_eq!(ck.config.model_type, "qwen2");
    assert!(Checkpoint::open(&format!("acme/tiny@{rev}")).is_ok());
    let e = Checkpoint::open("acme/missing").err().unwrap().to_string();
    assert!(
        e.contains("acme/missing") && e.contains("not in the Hugging Face cache"),
        "{e}"
    );
    let e = Checkpoint::open("not-a-path-or-repo")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("org/name"), "{e}");
}
