//! A Hugging Face checkpoint: a local folder or a repo id resolved from the HF cache, with its
//! config, one or more memory-mapped safetensors shards, and the tokenizer files. Tensor data
//! is read from the maps on demand; the checkpoint is never loaded into memory whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use tlite_model::ModelError;
use tlite_model::arch::Arch;
use tlite_model::config::ModelConfig;
use tlite_model::layer::ExpectedTensor;
use tlite_model::safetensors_file::{SafetensorsFile, TensorEntry};

use crate::{ConvertError, Result, config_err, io_err};

/// An opened checkpoint.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: ModelConfig,
    /// config.json as written.
    pub config_json: Value,
    pub tokenizer: Option<PathBuf>,
    pub generation_config: Option<Value>,
    files: Vec<SafetensorsFile>,
    index: HashMap<String, (usize, usize)>,
}

impl Checkpoint {
    /// Opens a local folder, or resolves `org/name[@revision]` from the HF cache.
    pub fn open(src: &str) -> Result<Self> {
        let p = Path::new(src);
        if p.exists() {
            return Self::open_dir(p);
        }
        Self::open_dir(&resolve_repo(src)?)
    }

    /// Opens a local folder holding config.json and model.safetensors (or an index + shards).
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            return Err(config_err(
                cfg_path,
                "config.json not found: not a Hugging Face checkpoint folder",
            ));
        }
        let config_json: Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?)
                .map_err(|e| config_err(&cfg_path, format!("not valid JSON: {e}")))?;
        let config = ModelConfig::from_json(&config_json, &cfg_path)?;
        let files = shard_paths(dir)?
            .iter()
            .map(|p| Ok(SafetensorsFile::open(p)?))
            .collect::<Result<Vec<_>>>()?;
        let mut index = HashMap::new();
        for (fi, f) in files.iter().enumerate() {
            for (ei, e) in f.entries().iter().enumerate() {
                if let Some((other, _)) = index.insert(e.name.clone(), (fi, ei)) {
                    return Err(ModelError::Safetensors {
                        path: f.path().to_owned(),
                        reason: format!(
                            "tensor `{}` is also stored in {}; a checkpoint holds each tensor once",
                            e.name,
                            files[other].path().display()
                        ),
                    }
                    .into());
                }
            }
        }

        let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        let gen_path = dir.join("generation_config.json");
        let generation_config = std::fs::read_to_string(&gen_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let ck = Checkpoint {
            dir: dir.to_owned(),
            config,
            config_json,
            tokenizer,
            generation_config,
            files,
            index,
        };
        // Float checkpoints: every weight takes at least 16 bits.
        ck.config
            .check_fits(ck.index.len(), ck.data_bytes(), 16)
            .map_err(|reason| config_err(cfg_path, reason))?;
        Ok(ck)
    }

    pub fn arch(&self) -> &'static Arch {
        self.config.arch()
    }

    /// The file and header entry of a tensor.
    pub fn entry(&self, name: &str) -> Result<(&SafetensorsFile, &TensorEntry)> {
        let &(fi, ei) = self
            .index
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.dir.clone(),
                tensor: name.to_owned(),
            })?;
        let f = &self.files[fi];
        Ok((f, &f.entries()[ei]))
    }

    /// A float tensor as f32.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (f, e) = self.entry(name)?;
        Ok(f.to_f32(e)?)
    }

    /// Every tensor name in the checkpoint.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// The tensors the architecture needs, each checked for presence, shape and float dtype.
    pub fn expected_tensors(&self) -> Result<Vec<ExpectedTensor>> {
        let expected = self.arch().expected_tensors(&self.config);
        for t in &expected {
            let (f, e) = self.entry(&t.name)?;
            if e.shape != t.shape {
                return Err(ConvertError::Shape {
                    path: f.path().to_owned(),
                    tensor: t.name.clone(),
                    expected: t.shape.clone(),
                    found: e.shape.clone(),
                });
            }
            if !matches!(
                e.dtype,
                safetensors::Dtype::F32 | safetensors::Dtype::F16 | safetensors::Dtype::BF16
            ) {
                return Err(ModelError::DType {
                    path: f.path().to_owned(),
                    tensor: t.name.clone(),
                    dtype: format!("{:?}", e.dtype),
                    expected: "F32, F16, BF16",
                }
                .into());
            }
        }
        Ok(expected)
    }

    /// Total bytes of tensor data (the I/O floor of reading the checkpoint once).
    pub fn data_bytes(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|f| f.entries())
            .map(|e| e.range.len() as u64)
            .sum()
    }
}

/// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
pub(crate) fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let idx_path = dir.join("model.safetensors.index.json");
    if !idx_path.is_file() {
        return Err(ConvertError::MissingShard {
            path: dir.to_owned(),
            shard: "model.safetensors (or model.safetensors.index.json)".into(),
        });
    }
    let idx: Value =
        serde_json::from_str(&std::fs::read_to_string(&idx_path).map_err(io_err(&idx_path))?)
            .map_err(|e| config_err(&idx_path, format!("not valid JSON: {e}")))?;
    let map = idx
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| config_err(&idx_path, "missing `weight_map`"))?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    shards.sort();
    shards.dedup();
    if shards.len() > MAX_SHARDS {
        return Err(config_err(
            &idx_path,
            format!(
                "the index lists {} shard files (at most {MAX_SHARDS} are accepted)",
                shards.len()
            ),
        ));
    }
    shards
        .into_iter()
        .map(|s| {
            if let Err(reason) = check_shard_name(&s) {
                return Err(config_err(&idx_path, format!("shard `{s}`: {reason}")));
            }
            let p = dir.join(&s);
            if p.is_file() {
                Ok(p)
            } else {
                Err(ConvertError::MissingShard {
                    path: idx_path.clone(),
                    shard: s,
                })
            }
        })
        .collect()
}

/// Most shard files an index may name.
const MAX_SHARDS: usize = 65536;

/// A shard path must stay inside the checkpoint folder: relative, made of normal components
/// only (no `..`, no `.`, no root or drive prefix), with no NUL and no backslash.
pub fn check_shard_name(s: &str) -> std::result::Result<(), &'static str> {
    use std::path::Component;
    if s.is_empty() {
        return Err("empty path");
    }
    if s.contains('\\') || s.contains('\0') {
        return Err("backslashes and NUL are not allowed in shard paths");
    }
    if Path::new(s)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        Ok(())
    } else {
        Err("shard paths must be relative to the checkpoint folder, without `..` or `.`")
    }
}

/// The HF hub cache folder as the environment gives it (`$HF_HUB_CACHE`, else `$HF_HOME/hub`,
/// else `~/.cache/huggingface/hub`): [`crate::hub::HubOptions::from_env`]'s.
pub fn hub_cache_dir() -> Option<PathBuf> {
    crate::hub::HubOptions::from_env().ok().map(|o| o.cache)
}

/// Resolves `org/name[@revision]` to a complete snapshot folder of the HF cache, offline (the
/// revision: a branch or tag looked up in `refs/`, or a commit hash; default `main`). Fetching
/// from the hub is [`crate::hub::resolve`]'s, which the command line calls first.
pub fn resolve_repo(spec: &str) -> Result<PathBuf> {
    let err = |reason: String| ConvertError::Resolve {
        repo: spec.to_owned(),
        reason,
    };
    let repo = crate::hub::RepoSpec::parse(spec).map_err(|r| {
        err(format!(
            "not an existing path, nor a repo id org/name[@revision]: {r}"
        ))
    })?;
    let cache = hub_cache_dir()
        .ok_or_else(|| err("no HF cache folder (set HF_HOME or HF_HUB_CACHE)".into()))?;
    crate::hub::cached(&cache, &repo).ok_or_else(|| {
        err(format!(
            "not in the Hugging Face cache ({} has no complete snapshot of it); `tlite convert`, \
             `inspect`, `ppl` and `quant-error` download it, or pass a local folder",
            repo.cache_root(&cache).display()
        ))
    })
}
