//! WGSL kernels: one file per family on disk, each prefixed with a prelude generated from the
//! quantizer's constants (so the CPU and GPU decoders cannot drift) and from the constants the
//! runtime shares with the kernels ([`params`]: workgroup sizes, tiles, staging limits). The
//! typed interface of each family (parameter struct, binding indices) is in [`params`]. Set
//! `TLITE_DUMP_WGSL=DIR` to write every assembled shader to `DIR` for reading.

pub mod params;

use tlite_quantizer::format::{PACKED_PER_WORD, PAIR_MASK, PAIR_ONE, PAIR_SHIFTS};

pub use params::{
    AttentionParams, DequantParams, ElementwiseParams, KernelParams, MatmulParams, Member,
    NormParams, RopeKvParams, Scalar, ScoreParams, Value, binding,
};

/// The kernel families, one WGSL file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// M0E4 → f32 dequantization of a packed matrix.
    Dequant,
    /// M0E4 and dense matrix products: GEMV (decode) and tiled GEMM (prefill).
    Matmul,
    /// The M0E4 prefill GEMM on cooperative matrices (f16 operands, f32 accumulators), for
    /// adapters that have them ([`crate::Gpu::coop_gemm`]).
    MatmulCoop,
    /// The same on workgroups of half the tokens, for projections whose output is too narrow to
    /// give every multiprocessor several of the larger ones, and for the other projections'
    /// steps of fewer than `COOP_WIDE_PREFILL` tokens.
    MatmulCoopSmall,
    /// The M0E4 product of a short prefill on cooperative matrices: 16 rows × 16 tokens per
    /// workgroup, k split between its subgroups.
    MatmulCoopFew,
    /// [`Kernel::MatmulCoop`] and [`Kernel::MatmulCoopFew`] with their input in f16 (`x_h`), as
    /// the norms, the gated activation and the coop prefill attention write it for them
    /// (`Decision::f16_input_steps`).
    MatmulCoopH,
    MatmulCoopFewH,
    /// RMSNorm (plain, fused with the residual add, gathered rows, in place for QK-norm).
    Norm,
    /// RoPE fused with the KV-cache write.
    RopeKv,
    /// Attention over the cache: split partials and their combination.
    Attention,
    /// Prefill attention on cooperative matrices (f16 operands, f32 accumulators), for adapters
    /// that run the GEMM on them ([`crate::Gpu::coop_gemm`]).
    AttentionCoop,
    /// Embedding lookup, gated-MLP activation, logit soft-capping.
    Elementwise,
    /// Rows of logits reduced for perplexity and KL divergence (outside the model's graph).
    Score,
}

impl Kernel {
    pub const ALL: [Kernel; 13] = [
        Kernel::Dequant,
        Kernel::Matmul,
        Kernel::MatmulCoop,
        Kernel::MatmulCoopSmall,
        Kernel::MatmulCoopFew,
        Kernel::MatmulCoopH,
        Kernel::MatmulCoopFewH,
        Kernel::Norm,
        Kernel::RopeKv,
        Kernel::Attention,
        Kernel::AttentionCoop,
        Kernel::Elementwise,
        Kernel::Score,
    ];

    /// Whether the kernel's module uses cooperative matrices (built only where the plan runs
    /// them: [`crate::Gpu::coop_gemm`]).
    pub fn needs_cooperative_matrices(self) -> bool {
        matches!(
            self,
            Kernel::MatmulCoop
                | Kernel::MatmulCoopSmall
                | Kernel::MatmulCoopFew
                | Kernel::MatmulCoopH
                | Kernel::MatmulCoopFewH
                | Kernel::AttentionCoop
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Dequant => "dequant",
            Kernel::Matmul => "matmul",
            Kernel::MatmulCoop => "matmul_coop",
            Kernel::MatmulCoopSmall => "matmul_coop_small",
            Kernel::MatmulCoopFew => "matmul_coop_few",
            Kernel::MatmulCoopH => "matmul_coop_h",
            Kernel::MatmulCoopFewH => "matmul_coop_few_h",
            Kernel::Norm => "norm",
            Kernel::RopeKv => "rope_kv",
            Kernel::Attention => "attention",
            Kernel::AttentionCoop => "attention_coop",
            Kernel::Elementwise => "elementwise",
            Kernel::Score => "score",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Kernel::Dequant => include_str!("dequant.wgsl"),
            Kernel::Matmul => include_str!("matmul.wgsl"),
            Kernel::MatmulCoop | Kernel::MatmulCoopSmall | Kernel::MatmulCoopH => {
                include_str!("matmul_coop.wgsl")
            }
            Kernel::MatmulCoopFew | Kernel::MatmulCoopFewH => include_str!("matmul_coop_few.wgsl"),
            Kernel::Norm => include_str!("norm.wgsl"),
            Kernel::RopeKv => include_str!("rope_kv.wgsl"),
            Kernel::Attention => include_str!("attention.wgsl"),
            Kernel::AttentionCoop => include_str!("attention_coop.wgsl"),
            Kernel::Elementwise => include_str!("elementwise.wgsl"),
            Kernel::Score => include_str!("score.wgsl"),
        }
    }

    /// Entry points of the file.
    pub fn entries(self) -> &'static [&'static str] {
        match self {
            Kernel::Dequant => &["main"],
            Kernel::Matmul => &[
                "gemv_m0e4",
                "gemv_m0e4_tokens",
                "gemv_m0e4_norm",
                "gemv_m0e4_norm_rope",
                "gemv_m0e4_glu_narrow",
                "gemv_m0e4_wide",
                "gemv_m0e4_glu",
                "gemv_dense",
                "gemm_m0e4",
                "gemm_dense",
            ],
            Kernel::MatmulCoop | Kernel::MatmulCoopSmall | Kernel::MatmulCoopH => {
                &["gemm_m0e4_coop"]
            }
            Kernel::MatmulCoopFew | Kernel::MatmulCoopFewH => &["gemm_m0e4_coop_few"],
            Kernel::Norm => &["rmsnorm", "rmsnorm_h", "rmsnorm_inplace"],
            Kernel::RopeKv => &["main", "from_qkv", "from_qkv4"],
            Kernel::Attention => &["partial", "combine", "prefill", "decode", "decode_wide"],
            Kernel::AttentionCoop => &["prefill", "prefill_h"],
            Kernel::Elementwise => &["embed_m0e4", "embed_dense", "glu", "glu_h", "softcap"],
            Kernel::Score => &["main", "next_token"],
        }
    }

    /// The names of the kernel's uniform `Params` members, in order (all 4 bytes wide): the
    /// names of [`Kernel::members`], which a test checks against the WGSL struct.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Kernel::Dequant => DequantParams::NAMES,
            Kernel::Matmul
            | Kernel::MatmulCoop
            | Kernel::MatmulCoopSmall
            | Kernel::MatmulCoopFew
            | Kernel::MatmulCoopH
            | Kernel::MatmulCoopFewH => MatmulParams::NAMES,
            Kernel::Norm => NormParams::NAMES,
            Kernel::RopeKv => RopeKvParams::NAMES,
            Kernel::Attention | Kernel::AttentionCoop => AttentionParams::NAMES,
            Kernel::Elementwise => ElementwiseParams::NAMES,
            Kernel::Score => ScoreParams::NAMES,
        }
    }

    /// The complete WGSL of this kernel with an f32 KV cache ([`Kernel::source_for`]).
    pub fn source(self) -> String {
        self.source_for(false)
    }

    /// The complete WGSL of this kernel: its `enable` directives, the M0E4 prelude and the
    /// shared constants, followed by the shared functions it uses and its file. The kernels
    /// that touch the KV cache (`attention`, `rope_kv`, `matmul`'s `gemv_m0e4_norm_rope`) store it as `kv_t`: f16 with `kv_f16`
    /// (written through `to_kv`, which clamps to the finite f16 range), f32 otherwise.
    pub fn source_for(self, kv_f16: bool) -> String {
        // The directives, then the rows and threads per workgroup the coop file is built for.
        let enables = match self {
            Kernel::MatmulCoop | Kernel::MatmulCoopH => {
                "enable f16;\nenable wgpu_cooperative_matrix;\n\
                 const CR: u32 = COOP_ROWS;\nconst CWG: u32 = COOP_WG;\nconst TT: u32 = COOP_TOKENS;\n\
                 const UNIFORM_GROUPS: bool = true;\n"
            }
            Kernel::MatmulCoopSmall => {
                "enable f16;\nenable wgpu_cooperative_matrix;\n\
                 const CR: u32 = COOP_SMALL_ROWS;\nconst CWG: u32 = COOP_SMALL_WG;\n\
                 const TT: u32 = COOP_SMALL_TOKENS;\nconst UNIFORM_GROUPS: bool = false;\n"
            }
            Kernel::MatmulCoopFew | Kernel::MatmulCoopFewH => {
                "enable f16;\nenable wgpu_cooperative_matrix;\n"
            }
            // The cache's load unit (attention_coop.wgsl): 16 bytes, 8 f16 or 4 f32 values.
            Kernel::AttentionCoop if kv_f16 => {
                "enable f16;\nenable wgpu_cooperative_matrix;\nalias kv_t = f16;\n\
                 const KVL: u32 = 8u;\nalias kvl_t = vec4<u32>;\n\
                 fn kv_part(v: kvl_t, p: u32) -> vec4<f16> { return halves(v, p); }\n"
            }
            Kernel::AttentionCoop => {
                "enable f16;\nenable wgpu_cooperative_matrix;\nalias kv_t = f32;\n\
                 const KVL: u32 = 4u;\nalias kvl_t = vec4<f32>;\n\
                 fn kv_part(v: kvl_t, p: u32) -> vec4<f16> { return h4(v); }\n"
            }
            Kernel::Matmul | Kernel::Attention | Kernel::RopeKv if kv_f16 => {
                "enable f16;\nalias kv_t = f16;\n\
                 fn to_kv(x: f32) -> kv_t { return kv_t(clamp(x, -65504.0, 65504.0)); }\n"
            }
            Kernel::Matmul | Kernel::Attention | Kernel::RopeKv => {
                "alias kv_t = f32;\nfn to_kv(x: f32) -> kv_t { return x; }\n"
            }
            _ => "",
        };
        let io = match self {
            Kernel::Matmul => include_str!("matmul_io.wgsl"),
            Kernel::Attention | Kernel::AttentionCoop => include_str!("attention_io.wgsl"),
            Kernel::MatmulCoop
            | Kernel::MatmulCoopSmall
            | Kernel::MatmulCoopFew
            | Kernel::MatmulCoopH
            | Kernel::MatmulCoopFewH => {
                concat!(
                    include_str!("matmul_io.wgsl"),
                    include_str!("coop_common.wgsl")
                )
            }
            _ => "",
        };
        // The coop GEMMs' input (coop_common.wgsl): f32 from x4 (4 columns per load), or f16
        // from x_h (8 columns per 16-byte load).
        let input = match self {
            Kernel::MatmulCoop | Kernel::MatmulCoopSmall | Kernel::MatmulCoopFew => {
                "const XV: u32 = 4u;\nalias xv_t = vec4<f32>;\n\
                 fn x_at(i: u32) -> xv_t { return x4[i]; }\n\
                 fn x_part(v: xv_t, p: u32) -> vec4<f16> { return h4(v); }\n"
                    .to_owned()
            }
            Kernel::MatmulCoopH | Kernel::MatmulCoopFewH => format!(
                "const XV: u32 = 8u;\nalias xv_t = vec4<u32>;\n\
                 @group(0) @binding({}) var<storage, read> x_h: array<vec4<u32>>;\n\
                 fn x_at(i: u32) -> xv_t {{ return x_h[i]; }}\n\
                 fn x_part(v: xv_t, p: u32) -> vec4<f16> {{ return halves(v, p); }}\n",
                params::binding::matmul_coop_h::X_H
            ),
            _ => String::new(),
        };
        // The f16 conversions of the kernels on cooperative matrices (`F16_UNITS`).
        let f16_units = match self.needs_cooperative_matrices() {
            true => F16_UNITS,
            false => "",
        };
        let reductions = match self {
            Kernel::Matmul | Kernel::Norm | Kernel::Attention | Kernel::Score => {
                include_str!("reduce.wgsl")
            }
            _ => "",
        };
        let activations = match self {
            Kernel::Matmul | Kernel::Elementwise => include_str!("activation.wgsl"),
            _ => "",
        };
        let src = format!(
            "{enables}{input}{f16_units}{}\n{}\n{reductions}\n{activations}\n{io}\n{}",
            m0e4_prelude(),
            params::constants_prelude(),
            self.file()
        );
        if let Some(dir) = std::env::var_os("TLITE_DUMP_WGSL") {
            let path = std::path::Path::new(&dir).join(format!("{}.wgsl", self.name()));
            let _ = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(path, &src));
        }
        src
    }
}

/// What the kernels on cooperative matrices (the coop GEMMs, the coop prefill attention) share
/// to fill their f16 tiles: `h4`, 4 f32 values as f16, clamped to the finite f16 range (an
/// overflow would be ±inf, then NaN), and `halves(v, p)`, values 4 p .. 4 p + 3 of the 8 f16 in
/// a 16-byte load unit.
const F16_UNITS: &str = "\
fn h4(v: vec4<f32>) -> vec4<f16> {
    return vec4<f16>(clamp(v, vec4<f32>(-65504.0), vec4<f32>(65504.0)));
}
fn halves(v: vec4<u32>, p: u32) -> vec4<f16> {
    return vec4<f16>(vec4<f32>(unpack2x16float(v[2u * p]), unpack2x16float(v[2u * p + 1u])));
}
";

/// WGSL constants and the pair decoder of M0E4, generated from `tlite_quantizer::format`.
pub fn m0e4_prelude() -> String {
    let shift = |k: usize| {
        let s = PAIR_SHIFTS[k];
        if s >= 0 {
            format!("(w << {s}u)")
        } else {
            format!("(w >> {}u)", -s)
        }
    };
    format!(
        "// ---- M0E4 prelude, generated from tlite_quantizer::format ----\n\
         const M0E4_PER_WORD: u32 = {PACKED_PER_WORD}u;\n\
         const M0E4_PAIR_MASK: u32 = 0x{PAIR_MASK:08x}u;\n\
         const M0E4_PAIR_ONE: u32 = 0x{PAIR_ONE:08x}u;\n\
         // The values 1 + q/16 of codes (k, k + 4) of word `w`, k in 0..4: one shift, one AND, one OR.\n\
         fn m0e4_pair(w: u32, k: u32) -> vec2<f32> {{\n\
         \x20   var p: u32;\n\
         \x20   switch k {{\n\
         \x20       case 0u: {{ p = {}; }}\n\
         \x20       case 1u: {{ p = {}; }}\n\
         \x20       case 2u: {{ p = {}; }}\n\
         \x20       default: {{ p = {}; }}\n\
         \x20   }}\n\
         \x20   return unpack2x16float((p & M0E4_PAIR_MASK) | M0E4_PAIR_ONE);\n\
         }}\n\
         // ---- end of prelude ----\n",
        shift(0),
        shift(1),
        shift(2),
        shift(3)
    )
}
