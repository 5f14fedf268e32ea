//! Downloads from a hub: a local stand-in server (`support/hub_server.rs`, on 127.0.0.1) serves
//! synthetic checkpoints in the hub's URL layout with its headers. Covered: a first download
//! into the standard cache layout (only the checkpoint's files) and a conversion of it; the
//! cached second resolution with the server stopped, and offline; a sharded checkpoint; a
//! transfer cut off halfway, resumed within the run and by a later run; a 404 file and an
//! unknown repository; a gated repository without and with a token; content that fails its
//! checksum or its size (an error, the download deleted, nothing in `snapshots/`); a hub that
//! misbehaves (a redirect without `Location`, an etag that is a path, another commit) is an
//! error, never a panic or a file outside the cache; a renamed repository's relative redirect
//! is followed.
//! Options are passed explicitly (never through the process environment).

#[path = "support/hub_server.rs"]
mod hub_server;

use std::path::{Path, PathBuf};

use hub_server::{GOOD_TOKEN, HubServer, Quirk, Repo};
use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::events;
use tlite_converter::hub::{self, HubEvent, HubOptions, RepoSpec};
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_model::arch::Family;
use tlite_model::deploy::DeployedModel;

/// A tiny checkpoint of `family` served as `id`; `shards` > 1 splits its weights into that
/// many files with an index.
fn repo(tmp: &Path, id: &str, family: Family, shards: usize) -> Repo {
    let dir = tmp.join(id.replace('/', "_"));
    // A seed of the id's own: two repositories never share a blob.
    let mut spec = SynthSpec::tiny(family);
    spec.seed = id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    write_checkpoint(&spec, &dir).unwrap();
    if shards > 1 {
        split(&dir, shards);
    }
    Repo::from_dir(id, &dir)
}

/// Replaces `model.safetensors` by `shards` files and `model.safetensors.index.json`.
fn split(dir: &Path, shards: usize) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_owned).collect();
    names.sort();
    let mut map = serde_json::Map::new();
    for (i, group) in names.chunks(names.len().div_ceil(shards)).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> = group
            .iter()
            .map(|n| (n.clone(), st.tensor(n).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(&file)).unwrap();
        for n in group {
            map.insert(n.clone(), serde_json::json!(file));
        }
    }
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
}

fn options(server: &HubServer, cache: &Path) -> HubOptions {
    HubOptions {
        cache: cache.to_owned(),
        endpoint: server.endpoint(),
        token: None,
        offline: false,
        retries: 3,
    }
}

fn spec(s: &str) -> RepoSpec {
    RepoSpec::parse(s).unwrap()
}

/// Resolves and collects the events.
fn resolve(opts: &HubOptions, s: &str) -> (tlite_converter::Result<PathBuf>, Vec<HubEvent>) {
    let mut events = Vec::new();
    let r = hub::resolve(opts, &spec(s), &mut |e| events.push(e));
    (r, events)
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn downloads_converts_and_then_resolves_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let r = repo(tmp.path(), "tiny-org/tiny-llama", Family::Llama, 1);
    let commit = r.commit.clone();
    let mut server = HubServer::start(vec![r]);
    let cache = tmp.path().join("hf/hub");
    let opts = options(&server, &cache);

    let (snap, events) = resolve(&opts, "tiny-org/tiny-llama");
    let snap = snap.unwrap();
    let root = cache.join("models--tiny-org--tiny-llama");
    assert_eq!(snap, root.join("snapshots").join(&commit));
    assert_eq!(
        std::fs::read_to_string(root.join("refs/main")).unwrap(),
        commit
    );
    assert!(events.contains(&HubEvent::Resolved {
        commit: commit.clone()
    }));
    // Only the checkpoint's files, each a relative link to a blob.
    assert_eq!(
        files_under(&snap),
        [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json"
        ]
    );
    for f in files_under(&snap) {
        let target = std::fs::read_link(snap.join(&f)).unwrap();
        assert!(target.starts_with("../../blobs"), "{f} -> {target:?}");
    }
    assert!(
        !files_under(&root.join("blobs"))
            .iter()
            .any(|f| f.ends_with(".incomplete")),
        "no partial file is left"
    );
    let log = server.log();
    assert!(
        !log.iter()
            .any(|l| l.path.contains("README") || l.path.contains(".bin")),
        "only the checkpoint's files are fetched: {log:?}"
    );
    assert!(
        log.iter()
            .filter(|l| l.path.starts_with("/cdn/") && l.range.is_none())
            .all(|l| l.accept_encoding.as_deref() == Some("identity")),
        "downloads ask for the bytes as stored"
    );
    // Files are fetched at the commit, not at `main`.
    assert!(
        log.iter()
            .filter(|l| l.path.contains("/resolve/"))
            .all(|l| l.path.contains(&commit)),
        "{log:?}"
    );

    // The download is a checkpoint that converts.
    let ck = Checkpoint::open_dir(&snap).unwrap();
    let out = tmp.path().join("m0e4");
    convert(
        &ck,
        &out,
        &ConvertOptions {
            group: 32,
            ..Default::default()
        },
        &mut events::ignore,
    )
    .unwrap();
    DeployedModel::open(&out).unwrap();

    // The server gone: the cache answers, online or offline, without a request.
    server.stop();
    let (again, events) = resolve(&opts, "tiny-org/tiny-llama");
    assert_eq!(again.unwrap(), snap);
    assert!(matches!(events.as_slice(), [HubEvent::Cached { .. }]));
    let offline = HubOptions {
        offline: true,
        ..opts.clone()
    };
    assert_eq!(resolve(&offline, "tiny-org/tiny-llama").0.unwrap(), snap);
    assert_eq!(
        resolve(&offline, &format!("tiny-org/tiny-llama@{commit}"))
            .0
            .unwrap(),
        snap
    );
    // Offline and not cached: a clear error, no network.
    let err = resolve(&offline, "tiny-org/other")
        .0
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HF_HUB_OFFLINE") && err.contains("tiny-org/other"),
        "{err}"
    );
    // Online, the server gone, not cached: the hub cannot be reached.
    let err = resolve(&opts, "tiny-org/other").0.unwrap_err().to_string();
    assert!(err.contains("cannot reach the hub"), "{err}");
}

#[test]
fn a_sharded_checkpoint_downloads_its_index_and_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let r = repo(tmp.path(), "org/sharded", Family::Qwen2, 3);
    let server = HubServer::start(vec![r]);
    let opts = options(&server, &tmp.path().join("cache"));
    let snap = resolve(&opts, "org/sharded").0.unwrap();
    let files = files_under(&snap);
    for f in [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
        "model.safetensors.index.json",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} missing: {files:?}");
    }
    let ck = Checkpoint::open_dir(&snap).unwrap();
    ck.expected_tensors().unwrap();
}

#[test]
fn an_interrupted_download_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = repo(tmp.path(), "org/cut", Family::Llama, 1);
    r.interrupt_once = vec!["model.safetensors".into(), "tokenizer.json".into()];
    let size = r.files["model.safetensors"].len();
    let server = HubServer::start(vec![r]);

    // Within one run: the transfer is resumed where it broke off.
    let opts = options(&server, &tmp.path().join("cache"));
    let (snap, events) = resolve(&opts, "org/cut");
    let snap = snap.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, HubEvent::Retry { name, done, .. } if name == "model.safetensors" && *done > 0)),
        "{events:?}"
    );
    let resumed = format!("bytes={}-", size / 2);
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.path.starts_with("/cdn/") && l.range.as_deref() == Some(resumed.as_str())),
        "a range request from where the transfer stopped: {:?}",
        server.log()
    );
    Checkpoint::open_dir(&snap).unwrap();
}

#[test]
fn an_interrupted_download_resumes_in_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = repo(tmp.path(), "org/cut", Family::Gemma, 1);
    r.interrupt_once = vec!["model.safetensors".into()];
    let size = r.files["model.safetensors"].len();
    let server = HubServer::start(vec![r]);
    let cache = tmp.path().join("cache");
    let opts = HubOptions {
        retries: 0,
        ..options(&server, &cache)
    };
    let err = resolve(&opts, "org/cut").0.unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("run the command again to resume"),
        "{err}"
    );
    let blobs = cache.join("models--org--cut/blobs");
    let part = files_under(&blobs)
        .into_iter()
        .find(|f| f.ends_with(".incomplete"))
        .expect("the partial download is kept");
    assert_eq!(
        std::fs::metadata(blobs.join(&part)).unwrap().len(),
        size as u64 / 2
    );
    assert!(!cache.join("models--org--cut/snapshots").exists());

    server.clear_log();
    let (snap, events) = resolve(&opts, "org/cut");
    let snap = snap.unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        HubEvent::FileStart { name, from, .. } if name == "model.safetensors" && *from == size as u64 / 2
    )));
    let resumed = format!("bytes={}-", size / 2);
    let whole = server
        .log()
        .iter()
        .filter(|l| l.path.starts_with("/cdn/") && l.range.is_none())
        .count();
    assert_eq!(whole, 0, "the second run fetches only the rest");
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.range.as_deref() == Some(resumed.as_str()))
    );
    Checkpoint::open_dir(&snap).unwrap();
}

#[test]
fn missing_files_and_repositories_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = repo(tmp.path(), "org/holey", Family::Llama, 1);
    r.missing = vec!["model.safetensors".into()];
    let server = HubServer::start(vec![r]);
    let cache = tmp.path().join("cache");
    let opts = options(&server, &cache);
    let err = resolve(&opts, "org/holey").0.unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("404"),
        "{err}"
    );
    assert!(!cache.join("models--org--holey/snapshots").exists());
    let err = resolve(&opts, "org/nothing-here")
        .0
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("org/nothing-here") && err.contains("404"),
        "{err}"
    );
    let err = resolve(&opts, "org/holey@v9").0.unwrap_err().to_string();
    assert!(err.contains("404"), "{err}");
}

#[test]
fn a_gated_repository_needs_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = repo(tmp.path(), "org/gated", Family::Gemma2, 1);
    r.gated = true;
    let server = HubServer::start(vec![r]);
    let cache = tmp.path().join("cache");
    let opts = options(&server, &cache);
    let err = resolve(&opts, "org/gated").0.unwrap_err().to_string();
    assert!(
        err.contains("401") && err.contains("HF_TOKEN") && err.contains("gated"),
        "{err}"
    );
    let wrong = HubOptions {
        token: Some("hf_wrong".into()),
        ..opts.clone()
    };
    let err = resolve(&wrong, "org/gated").0.unwrap_err().to_string();
    assert!(err.contains("refused the token"), "{err}");
    let good = HubOptions {
        token: Some(GOOD_TOKEN.into()),
        ..opts
    };
    let snap = resolve(&good, "org/gated").0.unwrap();
    Checkpoint::open_dir(&snap).unwrap();
    // The token never reaches the storage host the hub redirects to, and the storage is asked
    // only for the files themselves (sizes come from the hub's redirect).
    assert!(
        server
            .log()
            .iter()
            .filter(|l| l.path.starts_with("/cdn/"))
            .all(|l| l.auth.is_none() && l.range.is_none()),
        "{:?}",
        server.log()
    );
}

#[test]
fn checksum_and_size_mismatches_leave_nothing_in_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bad_sum = repo(tmp.path(), "org/bad-sum", Family::Llama, 1);
    bad_sum.corrupt = vec!["model.safetensors".into()];
    let mut bad_size = repo(tmp.path(), "org/bad-size", Family::Llama, 1);
    bad_size.short_size = vec!["model.safetensors".into()];
    let server = HubServer::start(vec![bad_sum, bad_size]);
    let cache = tmp.path().join("cache");
    let opts = options(&server, &cache);
    for (id, want) in [("org/bad-sum", "sha256"), ("org/bad-size", "bytes")] {
        let err = resolve(&opts, id).0.unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains(want) && err.contains("deleted"),
            "{id}: {err}"
        );
        let root = cache.join(format!("models--{}", id.replace('/', "--")));
        assert!(
            !root.join("snapshots").exists(),
            "{id}: {:?}",
            files_under(&root.join("snapshots"))
        );
        assert!(!root.join("refs").exists());
        let blobs = files_under(&root.join("blobs"));
        assert!(
            !blobs
                .iter()
                .any(|b| b.ends_with(".incomplete") || b.len() == 64),
            "{id}: the bad download is gone: {blobs:?}"
        );
        // Offline, the failed repository is not in the cache.
        let offline = HubOptions {
            offline: true,
            ..opts.clone()
        };
        assert!(resolve(&offline, id).0.is_err());
    }
}

#[test]
fn a_misbehaving_hub_is_an_error_and_a_renamed_repository_is_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repos = Vec::new();
    for (id, quirk) in [
        ("org/no-location", Quirk::RedirectWithoutLocation),
        ("org/etag-path", Quirk::EtagPath),
        ("org/other-commit", Quirk::OtherCommit),
    ] {
        let mut r = repo(tmp.path(), id, Family::Llama, 1);
        r.quirk = quirk;
        repos.push(r);
    }
    let new = repo(tmp.path(), "org/new-name", Family::Llama, 1);
    let mut old = new.clone();
    old.id = "org/old-name".into();
    old.moved_to = Some("org/new-name".into());
    repos.extend([new, old]);
    let server = HubServer::start(repos);
    let cache = tmp.path().join("cache");
    let opts = options(&server, &cache);
    for (id, want) in [
        ("org/no-location", "Location"),
        ("org/etag-path", "not a file name"),
        ("org/other-commit", "changed during the download"),
    ] {
        let err = resolve(&opts, id).0.unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains(want),
            "{id}: {err}"
        );
    }
    assert!(
        !tmp.path().join("escaped").exists() && !cache.join("escaped").exists(),
        "nothing is written outside the cache"
    );
    let snap = resolve(&opts, "org/old-name").0.unwrap();
    assert!(snap.starts_with(cache.join("models--org--old-name")));
    Checkpoint::open_dir(&snap).unwrap();
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.path.starts_with("/org/new-name/resolve/")),
        "the relative redirect is followed"
    );
}
