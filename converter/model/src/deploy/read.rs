//! Opening a deployable model: the manifest is parsed and checked against the file (every part
//! present with the dtype and shape its layout implies, chunks covering every row), and every
//! tensor's checksum is verified before anything is used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::f16;
use safetensors::Dtype;
use sha2::{Digest, Sha256};
use tlite_quantizer::M0E4Matrix;

use super::{FORMAT, FORMAT_VERSION, MANIFEST_KEY, MODEL_FILE, Manifest, Storage, TensorLayout};
use crate::safetensors_file::{SafetensorsFile, TensorEntry};
use crate::{ModelError, Result};

/// An opened, verified deployable model.
pub struct DeployedModel {
    pub dir: PathBuf,
    pub manifest: Manifest,
    file: SafetensorsFile,
    layouts: HashMap<String, usize>,
}

impl DeployedModel {
    /// Whether `path` looks like a deployable model folder (or its weights file).
    pub fn is_deployable(path: &Path) -> bool {
        path.join(MODEL_FILE).is_file() || path.file_name().is_some_and(|n| n == MODEL_FILE)
    }

    /// Opens and fully verifies (structure and checksums) the model at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let m = Self::open_structure(path)?;
        m.verify_checksums()?;
        Ok(m)
    }

    /// Opens and checks the structure, without hashing the tensor data.
    pub fn open_structure(path: &Path) -> Result<Self> {
        let (dir, file_path) = if path.is_file() {
            (
                path.parent().unwrap_or(Path::new(".")).to_owned(),
                path.to_owned(),
            )
        } else {
            (path.to_owned(), path.join(MODEL_FILE))
        };
        let bad = |reason: String| ModelError::Manifest {
            path: file_path.clone(),
            reason,
        };
        if !file_path.is_file() {
            return Err(bad(format!("{MODEL_FILE} not found")));
        }
        let file = SafetensorsFile::open(&file_path)?;
        Self::validated(dir, file)
    }

    /// A deployable model whose `model.safetensors` image is `bytes`, held in memory (e.g. a
    /// conversion measured without writing it to disk), validated as [`Self::open_structure`]
    /// validates a file; `label` names it in errors. It has no tokenizer or other files.
    pub fn from_image(label: &Path, bytes: Vec<u8>) -> Result<Self> {
        let file = SafetensorsFile::from_bytes(label, bytes)?;
        Self::validated(label.to_owned(), file)
    }

    fn validated(dir: PathBuf, file: SafetensorsFile) -> Result<Self> {
        let file_path = file.path().to_owned();
        let bad = |reason: String| ModelError::Manifest {
            path: file_path.clone(),
            reason,
        };
        let json = file
            .metadata()
            .get(MANIFEST_KEY)
            .ok_or_else(|| bad(format!("no `{MANIFEST_KEY}` in the safetensors metadata")))?;
        let manifest: Manifest =
            serde_json::from_str(json).map_err(|e| bad(format!("manifest does not parse: {e}")))?;
        if manifest.format != FORMAT {
            return Err(bad(format!(
                "format `{}` is not `{FORMAT}`",
                manifest.format
            )));
        }
        if manifest.format_version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} is not supported by this build (expects {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        // The config is validated as config.json is, and must fit the file, before anything
        // is sized by it.
        let cfg = &manifest.config;
        cfg.validate()
            .map_err(|r| bad(format!("invalid config: {r}")))?;
        if cfg.arch().family != manifest.architecture {
            return Err(bad(format!(
                "architecture `{:?}` disagrees with the config's family `{:?}`",
                manifest.architecture,
                cfg.arch().family
            )));
        }
        let data_bytes = file.entries().iter().map(|e| e.range.len() as u64).sum();
        // M0E4 weights take at least 4 bits each.
        cfg.check_fits(manifest.tensors.len(), data_bytes, 4)
            .map_err(|r| bad(format!("invalid config: {r}")))?;
        for t in &manifest.tensors {
            check_layout(&file, t).map_err(|r| bad(format!("tensor `{}`: {r}", t.name)))?;
        }
        // Every tensor the configured architecture needs, in the shape its config implies: the
        // GPU kernels index buffers by the config's sizes.
        for e in cfg.arch().expected_tensors(cfg) {
            match manifest.tensors.iter().find(|t| t.name == e.name) {
                None => {
                    return Err(bad(format!(
                        "tensor `{}`, which the config requires, is missing",
                        e.name
                    )));
                }
                Some(t) if t.shape != e.shape => {
                    return Err(bad(format!(
                        "tensor `{}` is {:?}, but the config implies {:?}",
                        e.name, t.shape, e.shape
                    )));
                }
                Some(_) => {}
            }
        }
        let layouts = manifest
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(DeployedModel {
            dir,
            manifest,
            file,
            layouts,
        })
    }

    /// Recomputes every tensor's sha256 and compares it with the manifest.
    pub fn verify_checksums(&self) -> Result<()> {
        use rayon::prelude::*;
        self.manifest.tensors.par_iter().try_for_each(|t| {
            let mut h = Sha256::new();
            for c in &t.chunks {
                for p in &c.parts {
                    h.update(self.part(p)?.1);
                }
            }
            if hex::encode(h.finalize()) == t.sha256 {
                Ok(())
            } else {
                Err(ModelError::Checksum {
                    path: self.file.path().to_owned(),
                    tensor: t.name.clone(),
                })
            }
        })
    }

    pub fn tensors(&self) -> &[TensorLayout] {
        &self.manifest.tensors
    }

    pub fn layout(&self, name: &str) -> Result<&TensorLayout> {
        self.layouts
            .get(name)
            .map(|&i| &self.manifest.tensors[i])
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.file.path().to_owned(),
                tensor: name.to_owned(),
            })
    }

    /// A stored part's header entry and bytes (for upload to the GPU as is).
    pub fn part(&self, name: &str) -> Result<(&TensorEntry, &[u8])> {
        let e = self.file.entry(name)?;
        Ok((e, self.file.bytes(e)))
    }

    /// An M0E4 tensor reassembled from its chunks.
    pub fn m0e4(&self, name: &str) -> Result<M0E4Matrix> {
        let t = self.layout(name)?;
        let group = match (t.storage, t.group) {
            (Storage::M0E4, Some(g)) => g,
            _ => {
                return Err(ModelError::DType {
                    path: self.file.path().to_owned(),
                    tensor: name.to_owned(),
                    dtype: format!("{:?}", t.storage),
                    expected: "M0E4",
                });
            }
        };
        let (rows, cols) = t.rows_cols();
        let (mut packed, mut scales, mut biases) = (Vec::new(), Vec::new(), Vec::new());
        for c in &t.chunks {
            packed.extend(
                self.part(&c.parts[0])?
                    .1
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            scales.extend(
                self.part(&c.parts[1])?
                    .1
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]])),
            );
            biases.extend(
                self.part(&c.parts[2])?
                    .1
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]])),
            );
        }
        Ok(M0E4Matrix::from_parts(
            rows, cols, group, packed, scales, biases,
        )?)
    }

    /// Any tensor as f32: M0E4 dequantized with the quantizer's decoder, dense converted.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.layout(name)?;
        if t.storage == Storage::M0E4 {
            return Ok(self.m0e4(name)?.dequantize());
        }
        let mut out = Vec::with_capacity(t.numel());
        for c in &t.chunks {
            let b = self.part(&c.parts[0])?.1;
            match t.storage {
                Storage::F16 => out.extend(
                    b.chunks_exact(2)
                        .map(|x| f16::from_le_bytes([x[0], x[1]]).to_f32()),
                ),
                _ => out.extend(
                    b.chunks_exact(4)
                        .map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]])),
                ),
            }
        }
        Ok(out)
    }

    /// Parameters (tied embeddings counted once).
    pub fn parameters(&self) -> u64 {
        self.manifest.tensors.iter().map(|t| t.numel() as u64).sum()
    }

    /// Bytes of tensor data in the file.
    pub fn data_bytes(&self) -> u64 {
        self.file
            .entries()
            .iter()
            .map(|e| e.range.len() as u64)
            .sum()
    }

    pub fn tokenizer_path(&self) -> Option<PathBuf> {
        Some(self.dir.join("tokenizer.json")).filter(|p| p.is_file())
    }
}

/// Checks that a layout's chunks cover its rows and that each part has the implied dtype/shape.
fn check_layout(file: &SafetensorsFile, t: &TensorLayout) -> std::result::Result<(), String> {
    if !(1..=2).contains(&t.shape.len()) || t.shape.contains(&0) {
        return Err(format!(
            "shape {:?}: tensors are vectors or matrices with no empty dimension",
            t.shape
        ));
    }
    if t.chunks.len() > t.shape[0] {
        return Err(format!("{} chunks for {} rows", t.chunks.len(), t.shape[0]));
    }
    let (rows, cols) = t.rows_cols();
    let mut next = 0;
    for c in &t.chunks {
        let (a, b) = c.rows;
        if a != next || b <= a || b > rows {
            return Err(format!(
                "chunk rows {a}..{b} do not continue at row {next} of {rows}"
            ));
        }
        next = b;
        let expect: Vec<(Dtype, Vec<usize>)> = match (t.storage, t.group) {
            (Storage::M0E4, Some(g)) => {
                tlite_quantizer::check_group(g).map_err(|e| e.to_string())?;
                let (w, gp) = (
                    M0E4Matrix::words_per_row(cols),
                    M0E4Matrix::groups_per_row(cols, g),
                );
                vec![
                    (Dtype::U32, vec![b - a, w]),
                    (Dtype::F16, vec![b - a, gp]),
                    (Dtype::F16, vec![b - a, gp]),
                ]
            }
            (Storage::M0E4, None) => return Err("M0E4 tensor without a group size".into()),
            (s, _) => {
                let dt = if s == Storage::F16 {
                    Dtype::F16
                } else {
                    Dtype::F32
                };
                let shape = if t.shape.len() == 1 {
                    vec![cols]
                } else {
                    vec![b - a, cols]
                };
                vec![(dt, shape)]
            }
        };
        if c.parts.len() != expect.len() {
            return Err(format!(
                "chunk has {} parts, expected {}",
                c.parts.len(),
                expect.len()
            ));
        }
        for (p, (dt, shape)) in c.parts.iter().zip(expect) {
            let e = file
                .entry(p)
                .map_err(|_| format!("part `{p}` is missing from the file"))?;
            if e.dtype != dt || e.shape != shape {
                return Err(format!(
                    "part `{p}` is {:?} {:?}, expected {dt:?} {shape:?}",
                    e.dtype, e.shape
                ));
            }
        }
    }
    if next != rows {
        return Err(format!("chunks cover {next} of {rows} rows"));
    }
    Ok(())
}
