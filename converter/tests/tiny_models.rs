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

/// A tiny random checkpoint of `family` (seed [`SEED`]) in a temporary folder.
fn tiny_checkpoint(family: Family) -> (tempfile::TempDir, Checkpoint) {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = SynthSpec::tiny(family);
    spec.seed = SEED;
    write_checkpoint(&spec, &tmp.path().join("ck")).unwrap();
    let ck = Checkpoint::open_dir(&tmp.path().join("ck")).unwrap();
    (tmp, ck)
}

#[test]
fn every_architecture_converts_and_round_trips() {
    eprintln!("checkpoint seed {SEED:#x}");
    for family in families() {
        let (tmp, ck) = tiny_checkpoint(family);
        let dir = tmp.path();
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
    for bad in [
        "x=m0e4@12",
        "x=m0e4@0",
        "x=m0e4@",
        "x=m0e4@8192",
        "x=m0e4@-8",
        "x=m0e4@ab",
    ] {
        assert!(bad.parse::<KeepRule>().is_err(), "{bad}");
    }
    for good in ["down_proj=m0e4@32", "x=m0e4", "y=f16", "z=f32"] {
        assert_eq!(good.parse::<KeepRule>().unwrap().to_rule_string(), good);
    }
}

#[test]
fn precision_presets_and_per_tensor_groups_for_every_architecture() {
    use tlite_converter::deploy::{PRESETS, preset};
    assert!(preset("nope").is_none());
    for family in families() {
        let (tmp, ck) = tiny_checkpoint(family);
        let dir = tmp.path();
        let expected = ck.expected_tensors().unwrap();
        for &(name, _) in PRESETS {
            // A user's rule before the preset's: layer 0's matrices at group 16.
            let mut keep = vec![r"layers\.0\..*=m0e4@16".parse().unwrap()];
            keep.extend(preset(name).unwrap());
            let opts = ConvertOptions {
                group: 64,
                keep,
                ..Default::default()
            };
            let out = dir.join(name);
            let report = convert(&ck, &out, &opts, &mut events::ignore).unwrap();
            let m = DeployedModel::open(&out).unwrap();
            let mut groups = std::collections::BTreeMap::new();
            for t in &expected {
                let l = m.layout(&t.name).unwrap();
                let emb = matches!(t.role, Role::Embedding | Role::LmHead);
                let layer0 = t.name.contains("layers.0.");
                let v_or_down = [".v_proj.", ".down_proj.", ".dense_4h_to_h."]
                    .iter()
                    .any(|s| t.name.contains(s));
                let want = match (t.role.quantizable(), emb, name) {
                    (false, ..) => (Storage::F32, None),
                    (true, _, _) if layer0 => (Storage::M0E4, Some(16)),
                    (true, true, "emb-f16" | "mixed") => (Storage::F16, None),
                    (true, false, "mixed") if v_or_down => (Storage::M0E4, Some(32)),
                    _ => (Storage::M0E4, Some(64)),
                };
                assert_eq!((l.storage, l.group), want, "{family:?} {name}: {}", t.name);
                *groups.entry(format!("{:?}", want)).or_insert(0) += 1;
                // The values are the tensor quantized at its own group size.
                if let (Storage::M0E4, Some(g)) = want {
                    let src = ck.tensor_f32(&t.name).unwrap();
                    let q = M0E4Matrix::quantize(
                        &src,
                        t.shape[0],
                        t.shape[1],
                        &QuantOptions::new(g, Method::Search),
                    )
                    .unwrap();
                    assert_eq!(m.m0e4(&t.name).unwrap(), q, "{}", t.name);
                }
            }
            // Bits per weight are over every weight, dense ones included.
            let bits = report.bytes as f64 * 8.0 / report.parameters as f64;
            assert_eq!(report.bits_per_weight, bits);
            assert_eq!(report.bytes, m.data_bytes());
            eprintln!(
                "{family:?} {name}: {:.3} bpw, {groups:?}",
                report.bits_per_weight
            );
        }
    }
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
