//! Checkpoints from the Hugging Face Hub: `org/name[@revision]` resolved from the local HF cache
//! first, else downloaded into it — only the files a checkpoint needs, into the cache layout
//! the Python `huggingface_hub` uses (`models--org--name/{blobs,refs,snapshots}`), so that
//! either tool finds what the other fetched.
//!
//! The `hf-hub` crate (0.5, sync, ureq) supplies the client setup (endpoint, token, user agent:
//! [`hf_hub::api::sync::ApiBuilder`]), the repository's file list and commit
//! ([`hf_hub::api::sync::ApiRepo::info`]), the file URLs ([`hf_hub::api::sync::ApiRepo::url`])
//! and the cache's folder names ([`hf_hub::Repo`]). Its file metadata and download are not
//! used: `Api::metadata` panics on a redirect without a `Location` and sends the token to the
//! storage host an LFS file is redirected to; its download renames a partial file into
//! `blobs/` without checking its size or checksum, appends to a partial file even when the
//! server ignored the range, takes the etag and commit from response headers as path
//! components unchecked, and it reads neither `HF_TOKEN`, `HF_HUB_CACHE` nor
//! `HF_HUB_OFFLINE`. Here, through the same ureq:
//!
//! - a file's commit, etag and size come from a one-byte range request that follows only the
//!   hub's relative redirects (an LFS file's `X-Linked-Etag` and `X-Linked-Size` are in the
//!   hub's redirect itself), as the Python tools do; every header value used in a path
//!   (commit, etag) is checked first;
//! - a file is streamed into `blobs/<etag>.incomplete` (the name Python uses too) under a lock
//!   in `.locks/`, resumed with a `Range` request after an interruption — within a run (up to
//!   [`HubOptions::retries`] times) or by the next run — and restarted when the server answers
//!   a range with the whole file;
//! - its size is checked against the hub's, and an LFS file's sha256 against the hub's
//!   `X-Linked-Etag`; a mismatch deletes the download and is an error;
//! - all files are pinned to the commit the revision pointed to when the download began, and
//!   the snapshot's links and the ref are written only after every file is verified: a failed
//!   or interrupted download never leaves a snapshot that looks complete.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::checkpoint::check_shard_name;
use crate::{ConvertError, Result};

/// The hub the Python tools use by default.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The weights of a single-file checkpoint.
pub const SINGLE_WEIGHTS: &str = "model.safetensors";
/// The index of a sharded checkpoint.
pub const INDEX: &str = "model.safetensors.index.json";
/// Files taken when the repository has them: generation settings and the tokenizer side.
pub const OPTIONAL_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];
/// Largest non-weight file accepted (config, index, tokenizer): a tokenizer.json of a 256k
/// vocabulary is about 35 MB.
const MAX_SMALL_FILE: u64 = 256 << 20;
/// Most files a repository listing may hold.
const MAX_SIBLINGS: usize = 1 << 20;

/// Where and how to reach the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache folder (`$HF_HUB_CACHE`, else `$HF_HOME/hub`).
    pub cache: PathBuf,
    /// The hub's base URL (`$HF_ENDPOINT`), without a trailing `/`.
    pub endpoint: String,
    /// A bearer token for gated and private repositories (`$HF_TOKEN`, else the token file).
    pub token: Option<String>,
    /// Never touch the network (`HF_HUB_OFFLINE=1`): the cache or an error.
    pub offline: bool,
    /// Times an interrupted file is resumed within one run before giving up.
    pub retries: usize,
}

impl HubOptions {
    /// The options the process environment gives, as the Python tools read them.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The options `var` gives (an environment: `HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`,
    /// `HF_TOKEN`, `HF_TOKEN_PATH`, `HF_HUB_OFFLINE`, `XDG_CACHE_HOME`, `HOME` or `USERPROFILE`).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env_err = |key: &str, reason: String| ConvertError::Resolve {
            repo: format!("${key}"),
            reason,
        };
        let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let hf_home = match var("HF_HOME") {
            Some(h) => PathBuf::from(h),
            None => match (
                var("XDG_CACHE_HOME"),
                var("HOME").or_else(|| var("USERPROFILE")),
            ) {
                (Some(x), _) => PathBuf::from(x).join("huggingface"),
                (None, Some(h)) => PathBuf::from(h).join(".cache").join("huggingface"),
                (None, None) => {
                    return Err(env_err(
                        "HOME",
                        "no HF cache folder: set HF_HOME or HF_HUB_CACHE".into(),
                    ));
                }
            },
        };
        let cache = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let endpoint = var("HF_ENDPOINT")
            .map(|e| e.trim().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(env_err(
                "HF_ENDPOINT",
                format!("`{endpoint}` is not an http:// or https:// URL"),
            ));
        }
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .map(|t| t.trim().to_owned())
            .or_else(|| {
                let path = var("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| hf_home.join("token"));
                read_token_file(&path)
            });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        Ok(HubOptions {
            cache,
            endpoint,
            token,
            offline,
            retries: 3,
        })
    }
}

/// The token file's first line, when it is a plausible token (at most 4 KiB, printable).
fn read_token_file(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    let t = text.lines().next()?.trim();
    (!t.is_empty() && t.chars().all(|c| c.is_ascii_graphic())).then(|| t.to_owned())
}

/// A repository and revision: `org/name[@revision]` (default revision `main`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSpec {
    /// `org/name`.
    pub id: String,
    /// A branch, a tag or a commit hash.
    pub revision: String,
}

impl RepoSpec {
    /// Parses `org/name[@revision]`: each part of the id made of letters, digits, `-`, `_`
    /// and `.` (not `.` or `..`, at most 96 characters); a revision of the same characters and
    /// `/`-separated parts (`refs/pr/1`), at most 255 characters.
    pub fn parse(spec: &str) -> std::result::Result<Self, String> {
        let (id, rev) = spec.split_once('@').unwrap_or((spec, "main"));
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let parts: Vec<&str> = id.split('/').collect();
        if parts.len() != 2 || !parts.iter().all(|p| ok_part(p)) {
            return Err(format!(
                "`{id}` is not a repo id of the form org/name (letters, digits, `-`, `_`, `.`)"
            ));
        }
        if rev.len() > 255 || !rev.split('/').all(ok_part) {
            return Err(format!(
                "`{rev}` is not a revision (a branch, tag or commit: letters, digits, `-`, `_`, \
                 `.` and `/`-separated parts)"
            ));
        }
        Ok(RepoSpec {
            id: id.to_owned(),
            revision: rev.to_owned(),
        })
    }

    fn repo(&self, revision: &str) -> Repo {
        Repo::with_revision(self.id.clone(), RepoType::Model, revision.to_owned())
    }

    /// `models--org--name` under `cache`.
    pub fn cache_root(&self, cache: &Path) -> PathBuf {
        cache.join(self.repo("main").folder_name())
    }
}

impl std::fmt::Display for RepoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.id, self.revision)
    }
}

/// What a resolution reports as it goes; the CLI draws a bar per file.
#[derive(Clone, Debug, PartialEq)]
pub enum HubEvent {
    /// The snapshot was found complete in the cache; nothing is downloaded.
    Cached { snapshot: PathBuf },
    /// The revision resolved to `commit`; its files are fetched (or reused) next.
    Resolved { commit: String },
    /// A file begins: `size` bytes in all, `from` of them already on disk (a resumed or
    /// already complete download).
    FileStart { name: String, size: u64, from: u64 },
    /// `done` bytes of the current file are on disk.
    FileProgress { name: String, done: u64 },
    /// The file is complete and verified.
    FileDone { name: String },
    /// The transfer of `name` broke off at `done` bytes; attempt `attempt` resumes it.
    Retry {
        name: String,
        attempt: usize,
        done: u64,
        reason: String,
    },
}

/// `org/name[@revision]` as a local snapshot folder: the cache's when complete, else
/// downloaded (an error when `opts.offline`).
pub fn resolve(
    opts: &HubOptions,
    spec: &RepoSpec,
    progress: &mut dyn FnMut(HubEvent),
) -> Result<PathBuf> {
    if let Some(snap) = cached(&opts.cache, spec) {
        progress(HubEvent::Cached {
            snapshot: snap.clone(),
        });
        return Ok(snap);
    }
    if opts.offline {
        return Err(hub_err(
            spec,
            format!(
                "HF_HUB_OFFLINE is set and the HF cache has no complete snapshot of it (under {}); \
                 unset HF_HUB_OFFLINE to download it, or pass a local folder",
                spec.cache_root(&opts.cache).display()
            ),
        ));
    }
    download(opts, spec, progress)
}

/// The snapshot folder of `spec` in `cache` when it holds a complete checkpoint (config.json
/// and every weights file), else `None`. The revision is looked up in `refs/`, or taken as a
/// commit hash.
pub fn cached(cache: &Path, spec: &RepoSpec) -> Option<PathBuf> {
    let root = spec.cache_root(cache);
    let commit = match std::fs::read_to_string(root.join("refs").join(&spec.revision)) {
        Ok(c) => c.trim().to_owned(),
        Err(_) => spec.revision.clone(),
    };
    if !is_commit(&commit) && commit != spec.revision {
        return None;
    }
    let snap = root.join("snapshots").join(&commit);
    let complete =
        snap.join("config.json").is_file() && crate::checkpoint::shard_paths(&snap).is_ok();
    complete.then_some(snap)
}

/// A 40-digit lowercase hex commit hash.
fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hub_err(spec: &RepoSpec, reason: impl Into<String>) -> ConvertError {
    ConvertError::Resolve {
        repo: spec.to_string(),
        reason: reason.into(),
    }
}

/// One file to fetch, as the hub describes it.
struct Remote {
    name: String,
    etag: String,
    size: u64,
    /// The sha256 the content must have (LFS files: the hub's `X-Linked-Etag`).
    sha256: Option<String>,
}

/// Downloads the checkpoint files of `spec` into the cache (reusing complete blobs) and
/// returns the snapshot folder.
pub fn download(
    opts: &HubOptions,
    spec: &RepoSpec,
    progress: &mut dyn FnMut(HubEvent),
) -> Result<PathBuf> {
    let api = ApiBuilder::from_cache(Cache::new(opts.cache.clone()))
        .with_endpoint(opts.endpoint.clone())
        .with_token(opts.token.clone())
        .with_progress(false)
        .with_user_agent("tlite", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| hub_err(spec, api_reason(e, "the hub client", opts)))?;
    let info = api
        .repo(spec.repo(&spec.revision))
        .info()
        .map_err(|e| hub_err(spec, api_reason(e, "the repository", opts)))?;
    let commit = info.sha.trim().to_owned();
    if !is_commit(&commit) {
        return Err(hub_err(
            spec,
            format!(
                "the hub gave `{}` as the revision's commit, not a 40-digit hash",
                info.sha.escape_debug()
            ),
        ));
    }
    if info.siblings.len() > MAX_SIBLINGS {
        return Err(hub_err(
            spec,
            format!("the repository lists {} files", info.siblings.len()),
        ));
    }
    let listed: std::collections::HashSet<&str> =
        info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    if !listed.contains("config.json") {
        return Err(hub_err(
            spec,
            "the repository has no config.json: not a Hugging Face model checkpoint",
        ));
    }
    // Every file is fetched at the commit, so that a push during the download cannot mix two
    // versions of the repository.
    let pinned = api.repo(spec.repo(&commit));
    let root = spec.cache_root(&opts.cache);
    let probe_agent = agent(0);
    let agent = agent(10);
    let mut fetched: Vec<Remote> = Vec::new();
    let fetch =
        |name: &str, max: Option<u64>, progress: &mut dyn FnMut(HubEvent)| -> Result<Remote> {
            let url = pinned.url(name);
            let meta = probe(&probe_agent, opts, spec, name, &url)?;
            let remote = remote(spec, name, &commit, &meta)?;
            if let Some(max) = max.filter(|&m| remote.size > m) {
                return Err(hub_err(
                    spec,
                    format!(
                        "{name} is {} bytes; at most {max} are accepted for this file",
                        remote.size
                    ),
                ));
            }
            fetch_blob(&agent, opts, spec, &root, &url, &remote, progress)?;
            Ok(remote)
        };

    // config.json first: an unsupported architecture is an error before gigabytes move.
    let (weights, index) = if listed.contains(INDEX) {
        (None, Some(INDEX))
    } else if listed.contains(SINGLE_WEIGHTS) {
        (Some(SINGLE_WEIGHTS), None)
    } else {
        return Err(hub_err(
            spec,
            format!(
                "the repository has neither {SINGLE_WEIGHTS} nor {INDEX}: tlite reads safetensors \
                 checkpoints only"
            ),
        ));
    };
    let optional: Vec<&str> = OPTIONAL_FILES
        .iter()
        .copied()
        .filter(|f| listed.contains(f))
        .collect();
    progress(HubEvent::Resolved {
        commit: commit.clone(),
    });
    let config = fetch("config.json", Some(MAX_SMALL_FILE), progress)?;
    let config_path = blob_path(&root, &config.etag);
    let config_json: Value =
        read_json(&config_path).map_err(|r| hub_err(spec, format!("config.json: {r}")))?;
    tlite_model::config::ModelConfig::from_json(&config_json, Path::new("config.json"))?;
    fetched.push(config);
    for name in &optional {
        fetched.push(fetch(name, Some(MAX_SMALL_FILE), progress)?);
    }
    let mut shards: Vec<String> = weights.iter().map(|w| (*w).to_owned()).collect();
    if let Some(index) = index {
        let idx = fetch(index, Some(MAX_SMALL_FILE), progress)?;
        shards = index_shards(
            &read_json(&blob_path(&root, &idx.etag))
                .map_err(|r| hub_err(spec, format!("{index}: {r}")))?,
        )
        .map_err(|r| hub_err(spec, format!("{index}: {r}")))?;
        fetched.push(idx);
        if let Some(missing) = shards.iter().find(|s| !listed.contains(s.as_str())) {
            return Err(hub_err(
                spec,
                format!("{index} names the shard `{missing}`, which the repository does not have"),
            ));
        }
    }
    for shard in &shards {
        fetched.push(fetch(shard, None, progress)?);
    }

    // Every file is verified: link the snapshot, then point the ref at it.
    let snap = root.join("snapshots").join(&commit);
    for r in &fetched {
        link(&root, &snap, r)?;
    }
    if spec.revision != commit {
        let ref_path = root.join("refs").join(&spec.revision);
        write_atomic(&ref_path, commit.as_bytes())?;
    }
    Ok(snap)
}

/// The shard file names of a safetensors index, checked as the checkpoint reader checks them.
fn index_shards(idx: &Value) -> std::result::Result<Vec<String>, String> {
    let map = idx
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or("missing `weight_map`")?;
    let mut shards: Vec<String> = map
        .values()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or(format!("`weight_map` holds {v}, not a file name"))
        })
        .collect::<std::result::Result<_, _>>()?;
    shards.sort();
    shards.dedup();
    if shards.is_empty() {
        return Err("`weight_map` is empty".into());
    }
    for s in &shards {
        check_shard_name(s).map_err(|r| format!("shard `{s}`: {r}"))?;
    }
    Ok(shards)
}

/// A small JSON file (at most [`MAX_SMALL_FILE`] bytes, checked before the download).
fn read_json(path: &Path) -> std::result::Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))
}

/// What the hub says about one file.
struct Meta {
    commit: String,
    etag: String,
    size: u64,
}

/// The commit, etag and size of a file, from a one-byte range request to its URL, the way the
/// Python tools ask: relative redirects (a renamed repository) are followed on the hub; an
/// absolute one (an LFS file's storage) is not — the hub's answer itself carries the file's
/// `X-Linked-Etag` (its sha256) and `X-Linked-Size`, so the storage host never sees the token.
fn probe(
    agent: &ureq::Agent,
    opts: &HubOptions,
    spec: &RepoSpec,
    name: &str,
    url: &str,
) -> Result<Meta> {
    let bad = |what: String| hub_err(spec, format!("{name}: {what}"));
    let mut url = url.to_owned();
    for _ in 0..5 {
        let mut req = agent
            .get(&url)
            .header("Range", "bytes=0-0")
            .header("Accept-Encoding", "identity");
        if let Some(t) = &opts.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = req
            .call()
            .map_err(|e| hub_err(spec, transport_reason(&e, name, opts)))?;
        let status = resp.status().as_u16();
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
        };
        let missing = |h: &str| {
            bad(format!(
                "the hub's answer (HTTP {status}) lacks the `{h}` header that a Hugging Face hub \
                 sends (is HF_ENDPOINT={} a hub?)",
                opts.endpoint
            ))
        };
        let number = |h: &str, v: &str| {
            v.parse::<u64>().map_err(|_| {
                bad(format!(
                    "the hub's `{h}` is `{}`, not a size",
                    v.escape_debug()
                ))
            })
        };
        if (300..400).contains(&status) {
            let location = header("location").ok_or_else(|| missing("Location"))?;
            if location.starts_with('/') && !location.starts_with("//") {
                url = format!("{}{location}", origin(&url));
                continue;
            }
            let size = header("x-linked-size").ok_or_else(|| missing("X-Linked-Size"))?;
            return Ok(Meta {
                commit: header("x-repo-commit").ok_or_else(|| missing("X-Repo-Commit"))?,
                etag: header("x-linked-etag")
                    .or_else(|| header("etag"))
                    .ok_or_else(|| missing("X-Linked-Etag"))?,
                size: number("X-Linked-Size", &size)?,
            });
        }
        if !(200..300).contains(&status) {
            return Err(hub_err(spec, status_reason(status, name, opts)));
        }
        let size = match (header("x-linked-size"), status) {
            (Some(s), _) => number("X-Linked-Size", &s)?,
            (None, 206) => {
                let range = header("content-range").ok_or_else(|| missing("Content-Range"))?;
                number(
                    "Content-Range",
                    range.rsplit('/').next().unwrap_or_default(),
                )?
            }
            (None, _) => number(
                "Content-Length",
                &header("content-length").ok_or_else(|| missing("Content-Length"))?,
            )?,
        };
        return Ok(Meta {
            commit: header("x-repo-commit").ok_or_else(|| missing("X-Repo-Commit"))?,
            etag: header("x-linked-etag")
                .or_else(|| header("etag"))
                .ok_or_else(|| missing("ETag"))?,
            size,
        });
    }
    Err(bad("the hub redirected more than 5 times".into()))
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> String {
    let mut parts = url.splitn(4, '/');
    let scheme = parts.next().unwrap_or_default();
    let _ = parts.next();
    format!("{scheme}//{}", parts.next().unwrap_or_default())
}

/// A transfer error in the user's terms.
fn transport_reason(e: &ureq::Error, what: &str, opts: &HubOptions) -> String {
    match e {
        ureq::Error::StatusCode(code) => status_reason(*code, what, opts),
        ureq::Error::Io(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Timeout(_) => format!(
            "cannot reach the hub at {} ({e}); check the network or HF_ENDPOINT, or set \
             HF_HUB_OFFLINE=1 to use only the cache",
            opts.endpoint
        ),
        other => format!("{what}: {other}"),
    }
}

/// The checked description of `name` from the hub's metadata.
fn remote(spec: &RepoSpec, name: &str, commit: &str, meta: &Meta) -> Result<Remote> {
    let bad = |what: String| hub_err(spec, format!("{name}: {what}"));
    if meta.commit != commit {
        return Err(bad(format!(
            "the hub served it from commit `{}` while the revision is at `{commit}`: the \
             repository changed during the download; run the command again",
            meta.commit.escape_debug()
        )));
    }
    let etag = meta.etag.trim().trim_start_matches("W/").trim_matches('"');
    let etag_ok = (1..=128).contains(&etag.len())
        && !etag.starts_with('.')
        && etag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !etag_ok {
        return Err(bad(format!(
            "the hub's etag `{}` is not a file name (letters, digits, `-`, `_`, `.`)",
            etag.escape_debug()
        )));
    }
    let lfs = etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit());
    Ok(Remote {
        name: name.to_owned(),
        etag: etag.to_owned(),
        size: meta.size,
        sha256: lfs.then(|| etag.to_ascii_lowercase()),
    })
}

fn blob_path(root: &Path, etag: &str) -> PathBuf {
    root.join("blobs").join(etag)
}

/// The reason an hf-hub call failed, in the user's terms.
fn api_reason(e: ApiError, what: &str, opts: &HubOptions) -> String {
    match e {
        ApiError::RequestError(e) => transport_reason(&e, what, opts),
        ApiError::MissingHeader(h) => format!(
            "{what}: the answer lacks the `{h}` header that a Hugging Face hub sends (is \
             HF_ENDPOINT={} a hub?)",
            opts.endpoint
        ),
        ApiError::InvalidHeader(h) => format!("{what}: the hub's `{h}` header is malformed"),
        other => format!("{what}: {other}"),
    }
}

/// An HTTP error status in the user's terms.
fn status_reason(code: u16, what: &str, opts: &HubOptions) -> String {
    match code {
        401 | 403 if opts.token.is_none() => format!(
            "{what}: the hub refused access (HTTP {code}): the repository is gated or private, \
             or does not exist. For a gated or private repository, accept its terms on the hub \
             and set HF_TOKEN to an access token (or save one in $HF_HOME/token)"
        ),
        401 | 403 => format!(
            "{what}: the hub refused the token from HF_TOKEN (HTTP {code}): it has no access to \
             this repository (gated: accept its terms on the hub with that account), or the \
             repository does not exist"
        ),
        404 => format!("{what}: not found on the hub (HTTP 404); check the repo id and revision"),
        416 => format!("{what}: the hub rejected the byte range (HTTP 416)"),
        429 => format!("{what}: the hub is rate-limiting requests (HTTP 429); try again later"),
        c => format!("{what}: the hub answered HTTP {c}"),
    }
}

/// The HTTP agent of the probes (`redirects` 0: redirects are returned) and the downloads:
/// error statuses are read, not raised; the token follows redirects to the same host and
/// scheme only (not to the storage the hub redirects LFS files to); a transfer that stalls for
/// a minute is an interruption.
fn agent(redirects: u32) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .max_redirects(redirects)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(format!("tlite/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Why one transfer attempt stopped.
enum Attempt {
    /// The transfer broke off; resuming may help.
    Interrupted(String),
    /// A final error.
    Failed(ConvertError),
}

/// Puts the verified content of `r` at `blobs/<etag>`, reusing a complete blob and resuming
/// an incomplete one.
fn fetch_blob(
    agent: &ureq::Agent,
    opts: &HubOptions,
    spec: &RepoSpec,
    root: &Path,
    url: &str,
    r: &Remote,
    progress: &mut dyn FnMut(HubEvent),
) -> Result<()> {
    let blob = blob_path(root, &r.etag);
    let blobs = root.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(crate::io_err(&blobs))?;
    let _lock = lock(&opts.cache, root, &r.etag, spec)?;
    if let Ok(m) = std::fs::metadata(&blob) {
        if m.len() == r.size {
            progress(HubEvent::FileStart {
                name: r.name.clone(),
                size: r.size,
                from: r.size,
            });
            progress(HubEvent::FileDone {
                name: r.name.clone(),
            });
            return Ok(());
        }
        // Not what the hub describes: fetched again.
        std::fs::remove_file(&blob).map_err(crate::io_err(&blob))?;
    }
    let part = blobs.join(format!("{}.incomplete", r.etag));
    let mut attempt = 0;
    let mut started = false;
    loop {
        match transfer(agent, opts, spec, url, r, &part, !started, progress) {
            Ok(()) => break,
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::Interrupted(reason)) => {
                let done = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                if attempt >= opts.retries {
                    return Err(hub_err(
                        spec,
                        format!(
                            "{}: the download broke off at {done} of {} bytes ({reason}); the \
                             part is kept in {}: run the command again to resume",
                            r.name,
                            r.size,
                            part.display()
                        ),
                    ));
                }
                attempt += 1;
                progress(HubEvent::Retry {
                    name: r.name.clone(),
                    attempt,
                    done,
                    reason,
                });
                std::thread::sleep(Duration::from_millis(200 << attempt.min(5)));
            }
        }
        started = true;
    }
    verify(spec, r, &part)?;
    std::fs::rename(&part, &blob).map_err(crate::io_err(&blob))?;
    progress(HubEvent::FileDone {
        name: r.name.clone(),
    });
    Ok(())
}

/// One GET of the rest of `part`.
#[allow(clippy::too_many_arguments)]
fn transfer(
    agent: &ureq::Agent,
    opts: &HubOptions,
    spec: &RepoSpec,
    url: &str,
    r: &Remote,
    part: &Path,
    first: bool,
    progress: &mut dyn FnMut(HubEvent),
) -> std::result::Result<(), Attempt> {
    let fail = |e: ConvertError| Attempt::Failed(e);
    let mut from = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if from > r.size {
        // Longer than the file: not a prefix of it.
        std::fs::remove_file(part).map_err(|e| fail(crate::io_err(part)(e)))?;
        from = 0;
    }
    if first {
        progress(HubEvent::FileStart {
            name: r.name.clone(),
            size: r.size,
            from,
        });
    }
    if from == r.size {
        return Ok(());
    }
    let mut req = agent.get(url).header("Accept-Encoding", "identity");
    if from > 0 {
        req = req.header("Range", format!("bytes={from}-"));
    }
    if let Some(t) = &opts.token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(e @ (ureq::Error::StatusCode(_) | ureq::Error::BadUri(_) | ureq::Error::Http(_))) => {
            return Err(fail(hub_err(spec, format!("{}: {e}", r.name))));
        }
        Err(e) => return Err(Attempt::Interrupted(e.to_string())),
    };
    let status = resp.status().as_u16();
    let header = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match status {
        206 if from > 0 => {
            let want = format!("bytes {from}-");
            let range = header("content-range").unwrap_or_default();
            let total = range.rsplit('/').next().and_then(|t| t.parse::<u64>().ok());
            if !range.starts_with(&want) || total != Some(r.size) {
                return Err(fail(hub_err(
                    spec,
                    format!(
                        "{}: asked for bytes {from}- of {}, the server sent `{range}`",
                        r.name, r.size
                    ),
                )));
            }
        }
        200 => {
            if from > 0 {
                // The server ignored the range: start over.
                from = 0;
            }
        }
        code if (200..300).contains(&code) => {
            return Err(fail(hub_err(
                spec,
                format!("{}: unexpected HTTP {code} for a download", r.name),
            )));
        }
        416 if from > 0 => {
            // The file ends before the announced size.
            let _ = std::fs::remove_file(part);
            return Err(fail(hub_err(
                spec,
                format!(
                    "{}: the server has no bytes from {from} on, the hub announced {}; the \
                     download was deleted and nothing was added to the snapshot",
                    r.name, r.size
                ),
            )));
        }
        code => return Err(fail(hub_err(spec, status_reason(code, &r.name, opts)))),
    }
    let file = if from == 0 {
        std::fs::File::create(part)
    } else {
        std::fs::OpenOptions::new().append(true).open(part)
    }
    .map_err(|e| fail(crate::io_err(part)(e)))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = from;
    let mut last_report = from;
    let result = loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(Attempt::Interrupted(e.to_string())),
        };
        if done + n as u64 > r.size {
            break Err(fail(hub_err(
                spec,
                format!(
                    "{}: the server sent more than the {} bytes the hub announced; the download \
                     was deleted and nothing was added to the snapshot",
                    r.name, r.size
                ),
            )));
        }
        if let Err(e) = out.write_all(&buf[..n]) {
            break Err(fail(crate::io_err(part)(e)));
        }
        done += n as u64;
        if done - last_report >= 1 << 20 || done == r.size {
            last_report = done;
            progress(HubEvent::FileProgress {
                name: r.name.clone(),
                done,
            });
        }
    };
    // What arrived is kept for a resume, whatever ended the transfer.
    let flushed = out
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all());
    if let Err(Attempt::Failed(_)) = &result {
        let _ = std::fs::remove_file(part);
    }
    result?;
    flushed.map_err(|e| fail(crate::io_err(part)(e)))?;
    if done < r.size {
        return Err(Attempt::Interrupted(format!(
            "the connection ended after {done} of {} bytes",
            r.size
        )));
    }
    Ok(())
}

/// Checks a complete download's size and (LFS files) sha256; a mismatch deletes it.
fn verify(spec: &RepoSpec, r: &Remote, part: &Path) -> Result<()> {
    let len = std::fs::metadata(part).map_err(crate::io_err(part))?.len();
    let mismatch = if len != r.size {
        Some(format!("{len} bytes, the hub announced {}", r.size))
    } else if let Some(want) = &r.sha256 {
        let mut h = Sha256::new();
        let mut f = std::fs::File::open(part).map_err(crate::io_err(part))?;
        std::io::copy(&mut f, &mut h).map_err(crate::io_err(part))?;
        let got = hex::encode(h.finalize());
        (&got != want).then(|| format!("sha256 {got}, the hub's checksum is {want}"))
    } else {
        None
    };
    match mismatch {
        None => Ok(()),
        Some(what) => {
            std::fs::remove_file(part).map_err(crate::io_err(part))?;
            Err(hub_err(
                spec,
                format!(
                    "{}: the download does not match the hub's description ({what}); it was \
                     deleted and nothing was added to the snapshot",
                    r.name
                ),
            ))
        }
    }
}

/// `snapshots/<commit>/<name>` pointing at the blob (a relative symlink, as the Python tools
/// make; a copy where symlinks are unavailable).
fn link(root: &Path, snap: &Path, r: &Remote) -> Result<()> {
    let pointer = snap.join(&r.name);
    let parent = pointer.parent().unwrap_or(snap);
    std::fs::create_dir_all(parent).map_err(crate::io_err(parent))?;
    let blob = blob_path(root, &r.etag);
    if std::fs::metadata(&pointer).is_ok_and(|m| m.len() == r.size) {
        return Ok(());
    }
    if std::fs::symlink_metadata(&pointer).is_ok() {
        std::fs::remove_file(&pointer).map_err(crate::io_err(&pointer))?;
    }
    // From snapshots/<commit>/<dirs of name>/ up to the repository folder.
    let depth = Path::new(&r.name)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
        + 1;
    let mut rel = PathBuf::new();
    for _ in 0..depth {
        rel.push("..");
    }
    rel.push("blobs");
    rel.push(&r.etag);
    #[cfg(unix)]
    let linked = std::os::unix::fs::symlink(&rel, &pointer);
    #[cfg(not(unix))]
    let linked = std::fs::copy(&blob, &pointer).map(|_| ());
    let _ = &rel;
    linked.map_err(crate::io_err(&pointer))?;
    if !std::fs::metadata(&pointer).is_ok_and(|m| m.len() == r.size) {
        return Err(crate::io_err(&pointer)(std::io::Error::other(format!(
            "does not reach the blob {}",
            blob.display()
        ))));
    }
    Ok(())
}

/// Writes `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(crate::io_err(parent))?;
    let tmp = parent.join(format!(
        ".{}.tlite-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(crate::io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(crate::io_err(path))
}

/// An exclusive lock on `.locks/<repo folder>/<etag>.lock` (the Python tools' lock file), held
/// while the blob is written; another process holding it is an error, not a wait.
fn lock(cache: &Path, root: &Path, etag: &str, spec: &RepoSpec) -> Result<Option<std::fs::File>> {
    let dir = cache
        .join(".locks")
        .join(root.file_name().unwrap_or_default());
    std::fs::create_dir_all(&dir).map_err(crate::io_err(&dir))?;
    let path = dir.join(format!("{etag}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(crate::io_err(&path))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; released when the file closes.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            return Err(hub_err(
                spec,
                format!(
                    "another process is downloading the same file (lock {} is held); wait for it \
                     to finish",
                    path.display()
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = spec;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_specs_parse_and_refuse() {
        let s = RepoSpec::parse("HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
        assert_eq!(
            (s.id.as_str(), s.revision.as_str()),
            ("HuggingFaceTB/SmolLM2-135M-Instruct", "main")
        );
        let s = RepoSpec::parse("a/b@refs/pr/1").unwrap();
        assert_eq!(s.revision, "refs/pr/1");
        assert_eq!(s.cache_root(Path::new("/c")), Path::new("/c/models--a--b"));
        for bad in [
            "a", "a/b/c", "../b", "a/..", "a/b@", "a/b@../x", "a/b@x//y", "a b/c", "a/b@x y",
        ] {
            assert!(RepoSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_follow_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let o = HubOptions::from_vars(env(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(o.cache, Path::new("/home/u/.cache/huggingface/hub"));
        assert_eq!(o.endpoint, DEFAULT_ENDPOINT);
        assert!(!o.offline);
        let o = HubOptions::from_vars(env(&[
            ("HF_HOME", "/h"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_TOKEN", " hf_x "),
            ("HF_HUB_OFFLINE", "1"),
        ]))
        .unwrap();
        assert_eq!(o.cache, Path::new("/h/hub"));
        assert_eq!(o.endpoint, "http://127.0.0.1:9");
        assert_eq!(o.token.as_deref(), Some("hf_x"));
        assert!(o.offline);
        let o = HubOptions::from_vars(env(&[("HF_HOME", "/h"), ("HF_HUB_CACHE", "/c")])).unwrap();
        assert_eq!(o.cache, Path::new("/c"));
        assert!(HubOptions::from_vars(env(&[("HOME", "/h"), ("HF_ENDPOINT", "ftp://x")])).is_err());
        assert!(HubOptions::from_vars(env(&[])).is_err());
    }

    #[test]
    fn index_shards_are_checked() {
        let ok = serde_json::json!({"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors", "c": "m-1.safetensors"}});
        assert_eq!(
            index_shards(&ok).unwrap(),
            ["m-1.safetensors", "m-2.safetensors"]
        );
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"weight_map": {}}),
            serde_json::json!({"weight_map": {"a": "../x.safetensors"}}),
            serde_json::json!({"weight_map": {"a": 3}}),
        ] {
            assert!(index_shards(&bad).is_err(), "{bad}");
        }
    }
}
