//! One validation of a model's configuration, applied to every source of one — config.json,
//! the config rebuilt from GGUF metadata, a deployable model's manifest — before anything is
//! sized by it. [`ModelConfig::validate`] checks the values against each other and against
//! the limits of the kernels; [`ModelConfig::check_fits`] checks the counts against what the
//! file at hand can hold, so that no allocation or loop is sized by a number the file cannot
//! back. docs/SECURITY.md lists which kernel index relies on which check.

use crate::config::ModelConfig;

/// Upper bounds on configuration values. Far above every published model, far below what
/// overflows a `u32` GPU index or a host allocation.
pub mod limits {
    /// Transformer layers (the largest published models have ~130).
    pub const MAX_LAYERS: usize = 4096;
    /// Hidden size, intermediate size, head count × head size.
    pub const MAX_DIM: usize = 1 << 20;
    /// Attention heads (query or key/value).
    pub const MAX_HEADS: usize = 4096;
    /// Size of one attention head: the attention kernel stages a query head in 256 floats.
    pub const MAX_HEAD_DIM: usize = 256;
    /// Vocabulary entries.
    pub const MAX_VOCAB: usize = 1 << 24;
    /// Context positions a config may claim.
    pub const MAX_POSITIONS: usize = 1 << 24;
    /// Elements of any one weight matrix (a `u32` index over the whole tensor must not wrap).
    pub const MAX_TENSOR_ELEMENTS: u64 = (1 << 32) - 1;
    /// Token ids in `bos_token_id` / `eos_token_id` lists.
    pub const MAX_SPECIAL_IDS: usize = 256;
}

/// A finite, strictly positive float.
fn positive(name: &str, x: f64) -> Result<(), String> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be a finite positive number, found {x}"
        ))
    }
}

fn at_most(name: &str, x: usize, max: usize) -> Result<(), String> {
    if x == 0 {
        return Err(format!("`{name}` must be positive, found 0"));
    }
    if x > max {
        return Err(format!(
            "`{name}` is {x}, above the supported maximum of {max}"
        ));
    }
    Ok(())
}

impl ModelConfig {
    /// Checks every value against the others and against the kernels' limits. Called by every
    /// constructor of a config (config.json, GGUF metadata, manifest).
    pub fn validate(&self) -> Result<(), String> {
        at_most("num_hidden_layers", self.num_layers, limits::MAX_LAYERS)?;
        at_most("hidden_size", self.hidden_size, limits::MAX_DIM)?;
        at_most("intermediate_size", self.intermediate_size, limits::MAX_DIM)?;
        at_most("num_attention_heads", self.num_heads, limits::MAX_HEADS)?;
        at_most("num_key_value_heads", self.num_kv_heads, limits::MAX_HEADS)?;
        at_most("head_dim", self.head_dim, limits::MAX_HEAD_DIM)?;
        at_most("vocab_size", self.vocab_size, limits::MAX_VOCAB)?;
        at_most(
            "max_position_embeddings",
            self.max_position_embeddings,
            limits::MAX_POSITIONS,
        )?;
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        at_most(
            "num_attention_heads × head_dim",
            self.num_heads * self.head_dim,
            limits::MAX_DIM,
        )?;
        for (name, elements) in self.matrix_elements() {
            if elements > limits::MAX_TENSOR_ELEMENTS {
                return Err(format!(
                    "{name} would hold {elements} elements, above the supported maximum of {}",
                    limits::MAX_TENSOR_ELEMENTS
                ));
            }
        }
        if !(self.partial_rotary_factor > 0.0 && self.partial_rotary_factor <= 1.0) {
            return Err(format!(
                "`partial_rotary_factor` must be in (0, 1], found {}",
                self.partial_rotary_factor
            ));
        }
        let rot = self.rotary_dims();
        if rot < 2 || !rot.is_multiple_of(2) {
            return Err(format!(
                "head_dim {} × partial_rotary_factor {} gives {rot} rotary dimensions; RoPE needs \
                 an even number of at least 2",
                self.head_dim, self.partial_rotary_factor
            ));
        }
        positive("rms_norm_eps", self.rms_norm_eps)?;
        positive("rope_theta", self.rope_theta)?;
        for (name, v) in [
            ("rope_local_base_freq", self.rope_local_theta),
            ("rope_scaling.factor", self.rope_linear_factor),
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
        ] {
            if let Some(x) = v {
                positive(name, x)?;
            }
        }
        if self.sliding_layers.len() != self.num_layers {
            return Err(format!(
                "the sliding-window pattern covers {} layers, but the model has {}",
                self.sliding_layers.len(),
                self.num_layers
            ));
        }
        if self.sliding_layers.iter().any(|&s| s) {
            match self.sliding_window {
                None => {
                    return Err(
                        "layers use sliding-window attention but no `sliding_window` \
                                is set"
                            .into(),
                    );
                }
                Some(0) => return Err("`sliding_window` must be positive, found 0".into()),
                Some(_) => {}
            }
        }
        for id in self.bos_token_id.iter().chain(&self.eos_token_ids) {
            if *id as usize >= self.vocab_size {
                return Err(format!(
                    "special token id {id} is outside the vocabulary of {}",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }

    /// Dimensions of each head that RoPE rotates (`head_dim × partial_rotary_factor`).
    pub fn rotary_dims(&self) -> usize {
        ((self.head_dim as f64) * self.partial_rotary_factor) as usize
    }

    /// Elements of the largest matrices the config implies, with their names, computed without
    /// overflow (the config's values are bounded by [`Self::validate`]'s first checks).
    fn matrix_elements(&self) -> [(&'static str, u64); 4] {
        let (h, f, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.vocab_size as u64,
        );
        let q = (self.num_heads * self.head_dim) as u64;
        let kv = (self.num_kv_heads * self.head_dim) as u64;
        [
            ("the embedding table (vocab_size × hidden_size)", v * h),
            ("a fused gate/up projection", 2 * f * h),
            ("a fused q/k/v projection", (q + 2 * kv) * h),
            ("the attention output projection", q * h),
        ]
    }

    /// Tensors per layer and elements of the whole model, as the architecture implies them
    /// (every layer is laid out as the first).
    fn implied_totals(&self) -> (u64, u64) {
        let layer = self.arch().layer(self, 0);
        let per_layer_tensors = layer.tensors.len() as u64;
        let per_layer_elements: u64 = layer
            .projections()
            .iter()
            .map(|p| p.out() as u64 * p.cols as u64)
            .sum();
        let (h, v) = (self.hidden_size as u64, self.vocab_size as u64);
        let head = if self.tie_word_embeddings { 1 } else { 2 };
        let elements = (self.num_layers as u64)
            .saturating_mul(per_layer_elements)
            .saturating_add(head * v * h);
        (per_layer_tensors, elements)
    }

    /// Checks that a file with `tensors` tensors holding `bytes` bytes of tensor data can
    /// back this config: every layer needs its tensors, and every weight at least
    /// `min_bits` bits (4 for a quantized file, 16 for a float checkpoint). Run before the
    /// expected-tensor list, or anything else sized by the config, is built.
    pub fn check_fits(&self, tensors: usize, bytes: u64, min_bits: u64) -> Result<(), String> {
        let (per_layer, elements) = self.implied_totals();
        let needed_tensors = (self.num_layers as u64).saturating_mul(per_layer) + 2;
        if needed_tensors > tensors as u64 {
            return Err(format!(
                "{} layers need at least {needed_tensors} tensors; the file holds {tensors}",
                self.num_layers
            ));
        }
        let needed_bytes = elements.saturating_mul(min_bits) / 8;
        if needed_bytes > bytes {
            return Err(format!(
                "the config implies {elements} weights (≥ {needed_bytes} bytes at {min_bits} \
                 bits each); the file holds {bytes} bytes of tensor data"
            ));
        }
        Ok(())
    }
}
