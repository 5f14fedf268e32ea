//! The compiled-pipeline cache on disk, where the backend has one (Vulkan): the driver's
//! compiled pipelines are saved after a load and given back to it at the next, so a model's
//! kernels compile once per adapter and driver rather than once per process.
//!
//! The file is `DIR/<wgpu's key for the adapter>.bin`: the bytes of `PipelineCache::get_data`
//! followed by their SHA-256. It is handed to the driver only when the digest matches (a torn
//! or altered file is ignored and rewritten, never given to the driver), and wgpu checks its
//! header against the adapter and driver. It is written to a temporary file in the same folder
//! and renamed over the old one, so a reader sees the old cache or the new one, never half.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The largest cache file read back; a larger one is ignored (and replaced at the next save).
pub const MAX_BYTES: u64 = 256 << 20;

const DIGEST: usize = 32;

/// An open pipeline cache and the file it came from and goes back to.
pub struct PipelineCacheFile {
    pub(crate) cache: wgpu::PipelineCache,
    path: PathBuf,
    /// What the load found: bytes handed to the driver, or why none were.
    pub loaded: Loaded,
    /// The digest of the data last read or written (nothing to write while unchanged).
    digest: Mutex<Option<[u8; DIGEST]>>,
}

/// What opening the cache found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// This many bytes of cached pipelines were given to the driver.
    Bytes(usize),
    /// No file yet.
    Missing,
    /// A file that was not used (torn, altered, too large, unreadable): the reason.
    Ignored(String),
}

/// The default folder: `$XDG_CACHE_HOME/tlite/pipelines`, else `$HOME/.cache/tlite/pipelines`
/// (`%LOCALAPPDATA%\tlite\pipelines` on Windows); none where no such variable is set.
pub fn default_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
    };
    base.map(|b| b.join("tlite").join("pipelines"))
}

/// The folder the command-line tool uses: `TLITE_PIPELINE_CACHE` names one, or `off` (or `0`)
/// turns the cache off; unset, [`default_dir`].
pub fn dir_from_env() -> Option<PathBuf> {
    match std::env::var_os("TLITE_PIPELINE_CACHE") {
        Some(v) if v == "off" || v == "0" => None,
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => default_dir(),
    }
}

/// Reads `path` (at most [`MAX_BYTES`]) and returns the cached data if its digest matches.
fn read_checked(path: &Path) -> (Option<Vec<u8>>, Loaded) {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (None, Loaded::Missing),
        Err(e) => return (None, Loaded::Ignored(format!("cannot open it: {e}"))),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_BYTES + 1).read_to_end(&mut bytes) {
        return (None, Loaded::Ignored(format!("cannot read it: {e}")));
    }
    if bytes.len() as u64 > MAX_BYTES {
        return (
            None,
            Loaded::Ignored(format!("larger than {MAX_BYTES} bytes")),
        );
    }
    if bytes.len() <= DIGEST {
        return (None, Loaded::Ignored("too short to hold its digest".into()));
    }
    let (data, digest) = bytes.split_at(bytes.len() - DIGEST);
    if Sha256::digest(data).as_slice() != digest {
        return (
            None,
            Loaded::Ignored("its digest does not match (torn or altered)".into()),
        );
    }
    let n = data.len();
    bytes.truncate(n);
    (Some(bytes), Loaded::Bytes(n))
}

impl PipelineCacheFile {
    /// Opens the cache of `device` (on `adapter`) in `dir`, seeded from its file where that is
    /// intact. None where the backend keeps no pipeline cache (only Vulkan in wgpu 30) or the
    /// device lacks `PIPELINE_CACHE`.
    pub fn open(
        device: &wgpu::Device,
        adapter: &wgpu::AdapterInfo,
        features: wgpu::Features,
        dir: &Path,
    ) -> Option<PipelineCacheFile> {
        if !features.contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let key = wgpu::util::pipeline_cache_key(adapter)?;
        let path = dir.join(format!("{key}.bin"));
        let (data, loaded) = read_checked(&path);
        let digest = data.as_deref().map(|d| Sha256::digest(d).into());
        // SAFETY: `data` is, byte for byte (its SHA-256 checked above), what `get_data` of a
        // cache on this adapter returned, as `save` wrote it; wgpu also checks its header against
        // the adapter and driver, and with `fallback` an unusable cache starts empty.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("tlite.pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(PipelineCacheFile {
            cache,
            path,
            loaded,
            digest: Mutex::new(digest),
        })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the cache's current data if it changed since it was read or last written:
    /// `Ok(true)` when written. The folder is created; the file is replaced atomically.
    pub fn save(&self) -> std::io::Result<bool> {
        let Some(data) = self.cache.get_data() else {
            return Ok(false);
        };
        let digest: [u8; DIGEST] = Sha256::digest(&data).into();
        let mut last = self.digest.lock().unwrap_or_else(|p| p.into_inner());
        if data.is_empty() || *last == Some(digest) || (data.len() + DIGEST) as u64 > MAX_BYTES {
            return Ok(false);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("cache"),
            std::process::id()
        ));
        let written = (|| {
            let mut bytes = data;
            bytes.extend_from_slice(&digest);
            fs::write(&tmp, &bytes)?;
            fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        *last = Some(digest);
        Ok(true)
    }
}

impl std::fmt::Display for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loaded::Bytes(n) => write!(f, "{:.1} KiB given to the driver", *n as f64 / 1024.0),
            Loaded::Missing => write!(f, "empty"),
            Loaded::Ignored(why) => write!(f, "ignored ({why})"),
        }
    }
}
