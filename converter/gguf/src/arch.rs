//! The GGUF architectures the importer knows: the rows of `tlite_model`'s architecture table
//! that have GGUF facts. A GGUF tensor's Hugging Face name comes from the row's names and the
//! layer slot llama.cpp names it by (`Slot::gguf`); the transforms llama.cpp's converter
//! applied are undone.

use tlite_converter::Result;
use tlite_model::ModelError;
use tlite_model::arch::{ARCHS, Arch, GgufArch, NormStyle};

/// What llama.cpp did to a tensor on the way into GGUF, undone on the way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// Stored as Hugging Face stores it.
    None,
    /// Rows permuted by llama.cpp's `permute(w, n_head, n_head_kv)` (Q and K of `llama`):
    /// undone with [`super::permute::unpermute_rows`] over this many heads.
    UnpermuteRows { heads: usize },
    /// An RMSNorm weight stored as `1 + w` (Gemma): 1 is subtracted.
    SubtractOne,
}

/// One supported GGUF architecture: its row of the table, with the GGUF facts unpacked.
#[derive(Clone, Copy, Debug)]
pub struct ArchSpec {
    /// The row of `tlite_model`'s architecture table.
    pub arch: &'static Arch,
    /// `general.architecture` in the GGUF file.
    pub gguf: &'static str,
    /// Whether llama.cpp permuted Q/K rows for its interleaved RoPE ([`GgufArch::permuted_qk`]).
    pub permuted_qk: bool,
    /// Whether RMSNorm weights are stored as `1 + w` (every `*norm.weight`): llama.cpp's norm
    /// has no offset, so its converter adds 1 to the weights of a `1 + w` family.
    pub norm_plus_one: bool,
}

impl ArchSpec {
    fn of(arch: &'static Arch, g: &'static GgufArch) -> Self {
        ArchSpec {
            arch,
            gguf: g.name,
            permuted_qk: g.permuted_qk,
            norm_plus_one: arch.norm == NormStyle::OnePlusWeight,
        }
    }

    /// The Hugging Face class (`architectures[0]`).
    pub fn hf_class(&self) -> &'static str {
        self.arch.config.hf_class
    }

    /// The Hugging Face `model_type`.
    pub fn model_type(&self) -> &'static str {
        self.arch.model_types[0]
    }

    /// The row's GGUF facts.
    pub fn facts(&self) -> &'static GgufArch {
        self.arch
            .gguf
            .as_ref()
            .expect("an ArchSpec is made from a row with GGUF facts")
    }
}

/// Every architecture the importer supports, in table order.
pub fn archs() -> impl Iterator<Item = ArchSpec> {
    ARCHS
        .iter()
        .filter_map(|a| a.gguf.as_ref().map(|g| ArchSpec::of(a, g)))
}

/// The spec for GGUF architecture `name`, or [`ModelError::UnknownArchitecture`].
pub fn lookup(name: &str) -> Result<ArchSpec> {
    archs().find(|a| a.gguf == name).ok_or_else(|| {
        ModelError::UnknownArchitecture {
            model_type: name.to_owned(),
            supported: archs().map(|a| a.gguf).collect::<Vec<_>>().join(", "),
        }
        .into()
    })
}

/// A model-level name without its `.weight` (`model.embed_tokens`).
fn stem_of(name: &'static str) -> &'static str {
    name.strip_suffix(".weight").unwrap_or(name)
}

/// Head counts needed to undo the Q/K permutation.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub n_head: usize,
    pub n_head_kv: usize,
}

impl ArchSpec {
    /// The Hugging Face name of GGUF tensor `name` and the transform to apply, or `None` when
    /// the name is not part of this architecture.
    pub fn map_tensor(&self, name: &str, heads: Heads) -> Option<(String, Transform)> {
        let (stem, kind) = name.rsplit_once('.')?;
        if kind != "weight" && kind != "bias" {
            return None;
        }
        let n = &self.arch.names;
        let hf = match stem {
            "token_embd" => stem_of(n.embed).to_owned(),
            "output_norm" => stem_of(n.final_norm).to_owned(),
            "output" => stem_of(n.lm_head).to_owned(),
            _ => {
                let (layer, part) = split_layer(stem)?;
                let (_, rel) = self.arch.layer_tensors().find(|(s, _)| s.gguf() == part)?;
                self.arch.layer_name(layer, rel, "")
            }
        };
        let transform = if self.norm_plus_one && stem.ends_with("norm") && kind == "weight" {
            Transform::SubtractOne
        } else if self.permuted_qk && stem.ends_with(".attn_q") {
            Transform::UnpermuteRows {
                heads: heads.n_head,
            }
        } else if self.permuted_qk && stem.ends_with(".attn_k") {
            Transform::UnpermuteRows {
                heads: heads.n_head_kv,
            }
        } else {
            Transform::None
        };
        Some((format!("{hf}.{kind}"), transform))
    }

    /// The GGUF name of Hugging Face tensor `hf` (the inverse of [`Self::map_tensor`]), for
    /// error messages; `None` for a name this architecture does not use.
    pub fn gguf_name(&self, hf: &str) -> Option<String> {
        let (stem, kind) = hf.rsplit_once('.')?;
        let n = &self.arch.names;
        let g = if stem == stem_of(n.embed) {
            "token_embd".to_owned()
        } else if stem == stem_of(n.final_norm) {
            "output_norm".to_owned()
        } else if stem == stem_of(n.lm_head) {
            "output".to_owned()
        } else {
            let (prefix, _) = n.layer.split_once("{}")?;
            let (layer, part) = stem.strip_prefix(prefix)?.split_once('.')?;
            let (slot, _) = self.arch.layer_tensors().find(|(_, r)| *r == part)?;
            format!("blk.{layer}.{}", slot.gguf())
        };
        Some(format!("{g}.{kind}"))
    }
}

/// The layer number and the rest of a `blk.N.<part>` stem. `N` must be written canonically
/// (digits, no sign, no leading zero), so that two GGUF names cannot map to one tensor.
fn split_layer(stem: &str) -> Option<(usize, &str)> {
    let (layer, part) = stem.strip_prefix("blk.")?.split_once('.')?;
    let canonical = !layer.is_empty()
        && layer.bytes().all(|b| b.is_ascii_digit())
        && (layer == "0" || !layer.starts_with('0'));
    Some((layer.parse().ok().filter(|_| canonical)?, part))
}

/// The layer a GGUF tensor name belongs to (`blk.N.*`), if any.
pub fn layer_of(name: &str) -> Option<usize> {
    split_layer(name).map(|(l, _)| l)
}
