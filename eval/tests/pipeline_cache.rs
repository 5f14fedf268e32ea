//! The compiled-pipeline cache on disk (`runtime-gpu/src/pipeline_cache.rs`) on the test adapter
//! (lavapipe under CI, a Vulkan adapter): a load writes it, the next device reuses it and gives
//! the same logits, and a damaged, truncated or oversized file is ignored (never handed to the
//! driver) and rewritten intact by the next load; a folder that cannot be written costs nothing
//! but the cache.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::events;
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_model::arch::Family;
use tlite_model::deploy::DeployedModel;
use tlite_runtime_gpu::device::{DeviceOptions, gpu_for_test};
use tlite_runtime_gpu::pipeline_cache::{Loaded, MAX_BYTES};
use tlite_runtime_gpu::{Gpu, GpuModel, RunOptions};

fn tiny(dir: &Path) -> DeployedModel {
    write_checkpoint(&SynthSpec::tiny(Family::Llama), &dir.join("ck")).unwrap();
    let ck = Checkpoint::open_dir(&dir.join("ck")).unwrap();
    let opts = ConvertOptions {
        group: 32,
        ..Default::default()
    };
    convert(&ck, &dir.join("m0e4"), &opts, &mut events::ignore).unwrap();
    DeployedModel::open(&dir.join("m0e4")).unwrap()
}

fn open(dir: &Path) -> Gpu {
    Gpu::new(&DeviceOptions {
        adapter: std::env::var("TLITE_ADAPTER").ok(),
        pipeline_cache: Some(dir.to_owned()),
        matrix_cores: tlite_runtime_gpu::MatrixCores::from_env(),
        kv_cache: tlite_runtime_gpu::KvCache::from_env(),
    })
    .unwrap()
}

/// Logits of the last position of a 9-token prompt.
fn logits(gpu: &Gpu, m: &DeployedModel) -> Vec<f32> {
    let ids: Vec<u32> = (0..9).map(|i| (i * 31 + 7) % 200).collect();
    let opts = RunOptions {
        max_seq: 16,
        max_batch: 16,
    };
    let mut g = GpuModel::load(gpu, m, opts).unwrap();
    g.step(gpu, &ids, 0, &[8]).unwrap()
}

fn loaded(gpu: &Gpu) -> Loaded {
    gpu.pipeline_cache.as_ref().unwrap().loaded.clone()
}

/// The one cache file in `dir`, checked: its data followed by the data's SHA-256.
fn cache_file(dir: &Path) -> (PathBuf, usize) {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one cache file and no temporary: {files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    assert!(bytes.len() > 32, "{} bytes", bytes.len());
    let (data, digest) = bytes.split_at(bytes.len() - 32);
    assert_eq!(
        Sha256::digest(data).as_slice(),
        digest,
        "the trailer is the data's SHA-256"
    );
    (files[0].clone(), data.len())
}

#[test]
fn the_pipeline_cache_is_written_reused_and_refused_when_damaged() {
    let Some(plain) = gpu_for_test("pipeline cache") else {
        return;
    };
    assert!(plain.pipeline_cache.is_none(), "no folder, no cache");
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny(tmp.path());
    let want = logits(&plain, &m);
    let dir = tmp.path().join("cache");

    let first = open(&dir);
    if first.pipeline_cache.is_none() {
        // Only wgpu's Vulkan backend keeps a pipeline cache; CI's lavapipe is Vulkan.
        assert!(
            std::env::var_os("CI").is_none(),
            "the CI adapter must have a pipeline cache"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {} keeps no pipeline cache",
            first.info.name
        );
        return;
    }
    assert_eq!(loaded(&first), Loaded::Missing);
    assert_eq!(logits(&first, &m), want);
    let (path, n) = cache_file(&dir);
    drop(first);

    let second = open(&dir);
    assert_eq!(loaded(&second), Loaded::Bytes(n));
    assert!(
        second.header().contains("pipeline cache"),
        "{}",
        second.header()
    );
    assert_eq!(logits(&second, &m), want, "the same kernels from the cache");
    drop(second);

    // A flipped byte, a torn file and an oversized one: ignored, then rewritten by the load.
    let good = std::fs::read(&path).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 3] ^= 0x5a;
    let damage = |why: &str, p: &Path| match why {
        "digest" => std::fs::write(p, &flipped).unwrap(),
        "too short" => std::fs::write(p, b"0123456789").unwrap(),
        // sparse: no real disk used
        _ => std::fs::File::create(p)
            .unwrap()
            .set_len(MAX_BYTES + 1)
            .unwrap(),
    };
    for why in ["digest", "too short", "larger than"] {
        damage(why, &path);
        let g = open(&dir);
        match loaded(&g) {
            Loaded::Ignored(reason) => assert!(reason.contains(why), "{why}: {reason}"),
            other => panic!("{why}: the damaged cache was used: {other:?}"),
        }
        assert_eq!(logits(&g, &m), want, "{why}");
        cache_file(&dir);
    }

    // A cache folder that is a file: nothing is written, the load works.
    let blocked = tmp.path().join("blocked");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let g = open(&blocked);
    match loaded(&g) {
        Loaded::Ignored(_) | Loaded::Missing => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(logits(&g, &m), want);
    assert_eq!(std::fs::read(&blocked).unwrap(), b"not a folder");
}
