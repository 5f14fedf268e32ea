//! The typed interface of every kernel family: its uniform parameter struct, its binding
//! indices and the constants that Rust and the WGSL share.
//!
//! * **Parameters.** One `#[repr(C)]` struct per family ([`DequantParams`], [`MatmulParams`],
//!   [`NormParams`], [`RopeKvParams`], [`AttentionParams`], [`ElementwiseParams`]) whose fields
//!   are the members of the WGSL `struct Params`, in order, with their types. Each has a member
//!   table (`MEMBERS`: name, byte offset, scalar type) that the naga test in `tests/wgsl.rs`
//!   compares with the WGSL struct, member by member.
//! * **Bindings.** [`binding`] names the index of every global of a family after the WGSL
//!   variable (`binding::matmul::X4` is `@binding(8) var<storage> x4`); the naga test checks
//!   both directions.
//! * **Constants.** Workgroup sizes, rows and tokens per workgroup and staging limits are Rust
//!   constants ([`GEMM_ROWS`], [`NORM_MAX_K`], ...) written into every kernel's prelude by
//!   [`constants_prelude`], so the WGSL's `@workgroup_size(GEMM_WG)` and the Rust grid that
//!   divides by [`GEMM_ROWS`] read the same number.
//!
//! # Filling parameters symbolically
//!
//! Each struct is generic over the type of its `u32` fields, `U`, defaulting to `u32`; `f32`
//! (and `i32`) fields keep their type. `XParams<u32>` (plain `XParams`) is
//! [`bytemuck::Pod`], the bytes of the uniform. `XParams<Expr>` holds the expressions over
//! `seq` / `past` / `out` of the execution plan; [`values`](MatmulParams::values) lists them in
//! member order as [`Value`]s, which `graph::fields` turns into the op's parameters
//! (`Op::params`), and [`map`](MatmulParams::map) evaluates them into the `u32` struct. Every
//! field must be given (padding included), so a member added to the WGSL and the struct cannot
//! be left unset by an emitter. An RMSNorm op of the plan, for example:
//!
//! ```
//! use tlite_runtime_gpu::graph::{self, Field};
//! use tlite_runtime_gpu::kernels::params::NormParams;
//! use tlite_runtime_gpu::shape::{Expr, c};
//!
//! let flag = |b: bool| c(u64::from(b));
//! let typed = NormParams::<Expr> {
//!     rows: Expr::Seq,
//!     n: c(2048),
//!     mode: flag(false),
//!     gather: flag(false),
//!     eps: 1e-6,
//!     w_offset: 0.0,
//!     grid_width: Expr::Seq,
//!     _pad: c(0),
//! };
//! // The plan's parameters, in member order (`Op::params`).
//! let params: Vec<Field> = graph::fields(typed.clone().values());
//! assert_eq!(params.len(), NormParams::MEMBERS.len());
//! assert!(matches!(params[4], Field::F(e) if e == 1e-6));
//! // Or evaluated for a step straight into the uniform's bytes.
//! let syms = tlite_runtime_gpu::shape::Syms { seq: 3, past: 0, out: 1 };
//! let step = typed.map(|e| e.eval(&syms) as u32);
//! assert_eq!(step.rows, 3);
//! assert_eq!(bytemuck::bytes_of(&step).len(), 32);
//! ```

use bytemuck::{Pod, Zeroable};

use super::Kernel;

// ---------------------------------------------------------------------------------------------
// Parameter structs

/// The scalar type of a uniform member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scalar {
    U32,
    F32,
    I32,
}

/// One member of a parameter struct: its name, byte offset and type, as the WGSL declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    pub name: &'static str,
    pub offset: usize,
    pub ty: Scalar,
}

/// A member's value in a parameter struct over `U` ([`MatmulParams::values`] and kin).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<U> {
    U(U),
    F(f32),
    I(i32),
}

/// A family's parameter struct (the `u32` form, the uniform's bytes).
pub trait KernelParams: Pod {
    /// The family whose WGSL declares the struct.
    const KERNEL: Kernel;
    /// The members in order: name, byte offset and type.
    const MEMBERS: &'static [Member];
    /// The member names in order.
    const NAMES: &'static [&'static str];
}

/// The scalar type of a member declared `U` (`u32` in the uniform), `f32` or `i32`.
macro_rules! member_scalar {
    (U) => {
        Scalar::U32
    };
    (f32) => {
        Scalar::F32
    };
    (i32) => {
        Scalar::I32
    };
}

macro_rules! member_value {
    (U, $v:expr) => {
        Value::U($v)
    };
    (f32, $v:expr) => {
        Value::F($v)
    };
    (i32, $v:expr) => {
        Value::I($v)
    };
}

/// Applies `$f` to a `u32` member and keeps the others.
macro_rules! member_map {
    (U, $f:ident, $v:expr) => {
        $f($v)
    };
    (f32, $f:ident, $v:expr) => {
        $v
    };
    (i32, $f:ident, $v:expr) => {
        $v
    };
}

/// A parameter struct of family `$kernel`: the struct generic over its `u32` members (declared
/// `U`), `Pod` for `U = u32`, its member table and its conversions.
macro_rules! kernel_params {
    (
        $(#[$meta:meta])*
        $name:ident for $kernel:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:tt, )*
        }
    ) => {
        $(#[$meta])*
        ///
        /// Generic over the type of its `u32` members (see the [module](self) documentation).
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        pub struct $name<U = u32> {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        // SAFETY: `repr(C)`, every member a 4-byte `u32`, `f32` or `i32` (all bit patterns
        // valid, zero included) and no padding, which the assertion below checks.
        unsafe impl Zeroable for $name<u32> {}
        // SAFETY: as for `Zeroable`; the struct is `Copy` and `'static`.
        unsafe impl Pod for $name<u32> {}

        const _: () = assert!(
            core::mem::size_of::<$name<u32>>() == 4 * $name::<u32>::MEMBERS.len(),
            "parameter structs have no padding"
        );

        impl $name<u32> {
            /// The members in order: name, byte offset and type.
            pub const MEMBERS: &'static [Member] = &[
                $(
                    Member {
                        name: stringify!($field),
                        offset: core::mem::offset_of!($name<u32>, $field),
                        ty: member_scalar!($ty),
                    },
                )*
            ];
            /// The member names in order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];
        }

        impl KernelParams for $name<u32> {
            const KERNEL: Kernel = Kernel::$kernel;
            const MEMBERS: &'static [Member] = $name::<u32>::MEMBERS;
            const NAMES: &'static [&'static str] = $name::<u32>::NAMES;
        }

        impl<U> $name<U> {
            /// The members' values in member order (the uniform's order).
            pub fn values(self) -> Vec<Value<U>> {
                vec![$(member_value!($ty, self.$field)),*]
            }

            /// The struct with `f` applied to every `u32` member (e.g. expressions evaluated
            /// for a step).
            pub fn map<V>(self, mut f: impl FnMut(U) -> V) -> $name<V> {
                $name {
                    $( $field: member_map!($ty, f, self.$field), )*
                }
            }
        }
    };
}

kernel_params! {
    /// The uniform of `dequant.wgsl`.
    DequantParams for Dequant {
        rows: U,
        cols: U,
        group: U,
        words_per_row: U,
        groups_per_row: U,
        /// Invocations per row of the dispatch grid (x extent × [`DEQUANT_WG`]).
        grid_width: U,
        _pad0: U,
        _pad1: U,
    }
}

kernel_params! {
    /// The uniform of `matmul.wgsl` (every GEMV and GEMM).
    MatmulParams for Matmul {
        /// Tokens (rows of x and y).
        seq: U,
        /// Input width.
        k: U,
        /// Output rows computed.
        n: U,
        /// Row stride of y.
        out_stride: U,
        /// First column of y written.
        out_col0: U,
        /// First weight row of the chunk read.
        w_row0: U,
        group: U,
        words_per_row: U,
        groups_per_row: U,
        /// Add into y instead of overwriting it.
        accumulate: U,
        has_bias: U,
        /// Bias entry of output 0.
        bias0: U,
        /// Workgroups per row of the dispatch grid.
        grid_width: U,
        /// Fused RMSNorm of x (`gemv_m0e4_wide`, `gemv_m0e4_glu`; `gemv_m0e4_norm` and
        /// `gemv_m0e4_glu_narrow` always apply it).
        norm: U,
        eps: f32,
        w_offset: f32,
        /// `gemv_m0e4_glu*`: activation of the gate rows (0 SiLU, 1 GELU-tanh).
        act: U,
        /// `gemv_m0e4_glu*`: the first up row.
        up_row0: U,
        /// `gemv_m0e4_wide` / `gemv_m0e4_glu`: row blocks per workgroup.
        blocks: U,
        /// `gemv_m0e4_norm_rope`: the step's first position, the rotated dimensions of a head,
        /// the head size, the q rows and the k (= v) rows, the cache's positions, and the RoPE
        /// layout (1: pairs (2i, 2i + 1); 0: pairs (i, i + rot/2)).
        rope_past: U,
        rope_rot: U,
        rope_hd: U,
        rope_q_rows: U,
        rope_kv_rows: U,
        rope_max_seq: U,
        rope_interleaved: U,
        _pad0: U,
        _pad1: U,
    }
}

kernel_params! {
    /// The uniform of `norm.wgsl`.
    NormParams for Norm {
        rows: U,
        /// Row length.
        n: U,
        /// 0 writes y, 1 adds into y.
        mode: U,
        /// Row r reads source row `rows[r]`.
        gather: U,
        eps: f32,
        w_offset: f32,
        /// Workgroups per row of the dispatch grid.
        grid_width: U,
        _pad: U,
    }
}

kernel_params! {
    /// The uniform of `rope_kv.wgsl`.
    RopeKvParams for RopeKv {
        seq: U,
        past: U,
        heads: U,
        kv_heads: U,
        hd: U,
        /// Rotated dimensions per head.
        rot: U,
        /// Layout 1: pairs (2i, 2i + 1); 0: pairs (i, i + rot/2).
        interleaved: U,
        /// Positions of the cache.
        max_seq: U,
    }
}

kernel_params! {
    /// The uniform of `attention.wgsl` (both entry points).
    AttentionParams for Attention {
        seq: U,
        past: U,
        heads: U,
        kv_heads: U,
        hd: U,
        max_seq: U,
        /// Sliding window (0: none).
        window: U,
        /// Splits of the keys.
        splits: U,
        /// Keys per split.
        kps: U,
        scale: f32,
        /// Logit soft-cap (0: none).
        softcap: f32,
        _pad: U,
    }
}

kernel_params! {
    /// The uniform of `elementwise.wgsl`.
    ElementwiseParams for Elementwise {
        seq: U,
        n: U,
        /// First table row of the embedding chunk.
        row0: U,
        /// Rows of the embedding chunk.
        rows: U,
        group: U,
        words_per_row: U,
        groups_per_row: U,
        /// 0 SiLU, 1 GELU-tanh.
        act: U,
        scale: f32,
        cap: f32,
        /// Invocations per row of the dispatch grid (x extent × [`ELEMENTWISE_WG`]).
        grid_width: U,
        _pad: U,
    }
}

kernel_params! {
    /// The uniform of `score.wgsl`.
    ScoreParams for Score {
        /// Rows of logits scored (one workgroup each).
        rows: U,
        vocab: U,
        /// 0: no baseline, 1: the baseline's logits of the same rows, 2: its top `k_in`.
        base_mode: U,
        k_in: U,
        /// Top log-probabilities written per row (0: none).
        k_out: U,
        _pad0: U,
        _pad1: U,
        _pad2: U,
    }
}

impl Kernel {
    /// The members of the family's uniform `Params`, in order.
    pub fn members(self) -> &'static [Member] {
        match self {
            Kernel::Dequant => DequantParams::MEMBERS,
            Kernel::Matmul
            | Kernel::MatmulCoop
            | Kernel::MatmulCoopSmall
            | Kernel::MatmulCoopFew
            | Kernel::MatmulCoopH
            | Kernel::MatmulCoopFewH => MatmulParams::MEMBERS,
            Kernel::Norm => NormParams::MEMBERS,
            Kernel::RopeKv => RopeKvParams::MEMBERS,
            Kernel::Attention | Kernel::AttentionCoop => AttentionParams::MEMBERS,
            Kernel::Elementwise => ElementwiseParams::MEMBERS,
            Kernel::Score => ScoreParams::MEMBERS,
        }
    }

    /// Bytes of the family's uniform `Params`.
    pub fn params_size(self) -> usize {
        match self {
            Kernel::Dequant => size_of::<DequantParams>(),
            Kernel::Matmul
            | Kernel::MatmulCoop
            | Kernel::MatmulCoopSmall
            | Kernel::MatmulCoopFew
            | Kernel::MatmulCoopH
            | Kernel::MatmulCoopFewH => size_of::<MatmulParams>(),
            Kernel::Norm => size_of::<NormParams>(),
            Kernel::RopeKv => size_of::<RopeKvParams>(),
            Kernel::Attention | Kernel::AttentionCoop => size_of::<AttentionParams>(),
            Kernel::Elementwise => size_of::<ElementwiseParams>(),
            Kernel::Score => size_of::<ScoreParams>(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bindings

macro_rules! kernel_bindings {
    (
        $(
            $(#[$meta:meta])*
            $family:ident {
                $( $(#[$bmeta:meta])* $name:ident = $index:expr, )*
            }
        )*
    ) => {
        $(
            $(#[$meta])*
            pub mod $family {
                $( $(#[$bmeta])* pub const $name: u32 = $index; )*
                /// Every binding of the family: the WGSL variable's name (in capitals) and its
                /// index.
                pub const ALL: &[(&str, u32)] = &[$((stringify!($name), $name)),*];
            }
        )*
    };
}

/// Binding indices of group 0, per family, named after the WGSL variables (in capitals).
pub mod binding {
    /// The uniform `Params` of every family.
    pub const PARAMS: u32 = 0;

    kernel_bindings! {
        /// `dequant.wgsl`.
        dequant {
            PARAMS = super::PARAMS,
            PACKED = 1,
            SCALES = 2,
            BIASES = 3,
            OUT = 4,
        }
        /// `matmul.wgsl`.
        matmul {
            PARAMS = super::PARAMS,
            /// Activations (scalar loads).
            X = 1,
            Y = 2,
            BIAS = 3,
            /// M0E4 weight: packed words, and each group's f16 scale and bias in one word.
            PACKED = 4,
            GROUPS = 5,
            /// Dense f32 weight.
            DENSE = 7,
            /// `x` as vectors (`gemv_m0e4_wide`, `gemv_m0e4_glu`; the raw residual with a fused
            /// norm).
            X4 = 8,
            /// `packed` as vectors.
            PACKED4 = 9,
            /// The fused norm's weight.
            NORM_W4 = 10,
            /// `gemv_m0e4_glu`: the up projection's packed words and group parameters.
            PACKED4_UP = 11,
            GROUPS_UP = 12,
            /// `gemv_m0e4_glu_narrow`: the up projection's packed words as scalars.
            PACKED_UP = 14,
            /// `gemv_m0e4_norm_rope`: the layer's K and V caches and the RoPE tables.
            KCACHE = 15,
            VCACHE = 16,
            COS_T = 17,
            SIN_T = 18,
        }
        /// `matmul_coop.wgsl`, `matmul_coop_few.wgsl`: the bindings of `matmul_io.wgsl`, as in `matmul`.
        matmul_coop {
            PARAMS = super::PARAMS,
            X = super::matmul::X,
            Y = super::matmul::Y,
            BIAS = super::matmul::BIAS,
            PACKED = super::matmul::PACKED,
            GROUPS = super::matmul::GROUPS,
            X4 = super::matmul::X4,
            PACKED4 = super::matmul::PACKED4,
        }
        /// `matmul_coop.wgsl` and `matmul_coop_few.wgsl` built for f16 input
        /// (`Kernel::MatmulCoopH`, `Kernel::MatmulCoopFewH`): `matmul_coop`'s bindings and x in
        /// f16 (`X_H`), which their loads read instead of `X4`.
        matmul_coop_h {
            PARAMS = super::PARAMS,
            X = super::matmul::X,
            Y = super::matmul::Y,
            BIAS = super::matmul::BIAS,
            PACKED = super::matmul::PACKED,
            GROUPS = super::matmul::GROUPS,
            X4 = super::matmul::X4,
            PACKED4 = super::matmul::PACKED4,
            X_H = 19,
        }
        /// `norm.wgsl`.
        norm {
            PARAMS = super::PARAMS,
            X = 1,
            Y = 2,
            /// The norm weight.
            W = 3,
            /// Source rows of a gathering norm.
            ROWS = 4,
            /// `rmsnorm_h`'s output, f16 pairs (instead of `Y`).
            Y_H = 5,
        }
        /// `rope_kv.wgsl`.
        rope_kv {
            PARAMS = super::PARAMS,
            Q = 1,
            K = 2,
            V = 3,
            KCACHE = 4,
            VCACHE = 5,
            COS_T = 6,
            SIN_T = 7,
            /// `from_qkv`: q, k and v of each token side by side (one fused projection's output).
            QKV = 8,
            /// `from_qkv4`: QKV, Q and the caches as vectors of 4.
            QKV4 = 9,
            Q4 = 10,
            KCACHE4 = 11,
            VCACHE4 = 12,
        }
        /// `attention.wgsl`.
        attention {
            PARAMS = super::PARAMS,
            Q = 1,
            KCACHE = 2,
            VCACHE = 3,
            /// The splits' partials (max, sum and `hd` accumulators each).
            PARTS = 4,
            OUT = 5,
            /// The K cache again, as vectors.
            KCACHE4 = 6,
            /// The V cache again, as vectors (`prefill`).
            VCACHE4 = 7,
        }
        /// `attention_coop.wgsl`: `attention::prefill`'s bindings, at the same indices.
        attention_coop {
            PARAMS = super::PARAMS,
            Q = super::attention::Q,
            OUT = super::attention::OUT,
            KCACHE4 = super::attention::KCACHE4,
            VCACHE4 = super::attention::VCACHE4,
            /// `prefill_h`'s output in f16 (instead of `OUT`).
            OUT_H = 8,
            /// The K and V caches in 16-byte load units (instead of `KCACHE4`, `VCACHE4`).
            KCACHE_L = 9,
            VCACHE_L = 10,
        }
        /// `elementwise.wgsl`.
        elementwise {
            PARAMS = super::PARAMS,
            TOKENS = 1,
            Y = 2,
            PACKED = 3,
            /// Each group's f16 scale and bias in one word.
            GROUPS = 4,
            DENSE = 6,
            /// The up projection of the gated activation.
            UP = 7,
            /// `glu_h`'s output, f16 pairs.
            Y_H = 8,
        }
        /// `score.wgsl`.
        score {
            PARAMS = super::PARAMS,
            LOGITS = 1,
            TARGETS = 2,
            /// The baseline's logits of the same rows (`base_mode` 1).
            BASE = 3,
            /// The baseline's top-k ids and log-probabilities (`base_mode` 2).
            BASE_IDS = 4,
            BASE_LP = 5,
            /// `SCORE_OUT` words per row.
            OUT = 6,
            /// This row's top `k_out` ids and log-probabilities.
            TOP_IDS = 7,
            TOP_LP = 8,
        }
    }
}

impl Kernel {
    /// Every binding of the family: the WGSL variable's name in capitals and its index.
    pub fn bindings(self) -> &'static [(&'static str, u32)] {
        match self {
            Kernel::Dequant => binding::dequant::ALL,
            Kernel::Matmul => binding::matmul::ALL,
            Kernel::MatmulCoop | Kernel::MatmulCoopSmall | Kernel::MatmulCoopFew => {
                binding::matmul_coop::ALL
            }
            Kernel::MatmulCoopH | Kernel::MatmulCoopFewH => binding::matmul_coop_h::ALL,
            Kernel::Norm => binding::norm::ALL,
            Kernel::RopeKv => binding::rope_kv::ALL,
            Kernel::Attention => binding::attention::ALL,
            Kernel::AttentionCoop => binding::attention_coop::ALL,
            Kernel::Elementwise => binding::elementwise::ALL,
            Kernel::Score => binding::score::ALL,
        }
    }
}

/// Shared memory of `attention::decode` and `decode_wide` (the module's variables they use:
/// the staged query, the scores, the reductions' and the slices' arrays).
pub const ATTENTION_DECODE_BYTES: u32 = (ATTENTION_MAX_HD as u32 / 4) * 16
    + ATTENTION_DECODE_KEYS * 4
    + ATTENTION_DECODE_WIDE_WG * (4 + 16);

/// Shared memory of `attention_coop::prefill`: the f16 tiles of q (then K and V) and P in rows
/// padded by 8 halves, two 16 × 16 f32 tiles per subgroup, and a maximum and a sum per thread.
pub const ATTENTION_COOP_BYTES: u32 =
    ATTENTION_COOP_QUERIES * (ATTENTION_COOP_MAX_HD as u32 + 8) * 2
        + ATTENTION_COOP_QUERIES * (ATTENTION_COOP_KEYS + 8) * 2
        + (ATTENTION_COOP_WG / 32) * 512 * 4
        + ATTENTION_COOP_WG * 2 * 4;

// ---------------------------------------------------------------------------------------------
// Shared constants

macro_rules! shared_constants {
    ($( $(#[$meta:meta])* pub const $name:ident: $ty:ty = $value:expr; )*) => {
        $( $(#[$meta])* pub const $name: $ty = $value; )*

        /// The constants written into every kernel's prelude, by name.
        pub const WGSL_CONSTANTS: &[(&str, u64)] = &[$((stringify!($name), $name as u64)),*];
    };
}

shared_constants! {
    /// Threads per workgroup of `dequant::main` (one per packed word).
    pub const DEQUANT_WG: u32 = 64;
    /// Threads per workgroup of the shared reductions (`reduce.wgsl`) and of the kernels that
    /// use them: `norm::rmsnorm_inplace`, `attention::*`, `matmul::gemv_dense`.
    pub const REDUCE_WG: u32 = 64;
    /// Threads per workgroup (one workgroup per row) of `norm::rmsnorm`.
    pub const NORM_WG: u32 = 256;
    /// Threads per workgroup of `rope_kv::main`; the grid is (token, ⌈max(heads · rot/2,
    /// kv_heads · hd) / ROPE_KV_WG⌉).
    pub const ROPE_KV_WG: u32 = 64;
    /// Largest head dimension of the attention kernel (its staged query).
    pub const ATTENTION_MAX_HD: usize = 256;
    /// Threads per workgroup of `attention::decode`.
    pub const ATTENTION_DECODE_WG: u32 = 256;
    /// Threads per key of `attention::decode`'s scores (as `ATTENTION_DECODE_WIDE_TPK`): at
    /// most `ATTENTION_DECODE_NARROW_KEYS` keys, so every thread takes part.
    pub const ATTENTION_DECODE_TPK: u32 = 2;
    /// Threads per workgroup of `attention::decode_wide`.
    pub const ATTENTION_DECODE_WIDE_WG: u32 = 1024;
    /// Threads per key of `attention::decode_wide`'s scores (a power of 2 dividing its
    /// workgroup): each adds every TPK-th vector of the key.
    pub const ATTENTION_DECODE_WIDE_TPK: u32 = 4;
    /// The most keys `attention::decode` and `decode_wide` attend to (a multiple of the first's
    /// workgroup): the plan takes them for a one-token step whose keys number at most this many.
    pub const ATTENTION_DECODE_KEYS: u32 = 512;
    /// The most keys of a step the plan gives `attention::decode`; `decode_wide` takes more.
    pub const ATTENTION_DECODE_NARROW_KEYS: u32 = 128;
    /// Largest head dimension of `attention::prefill` (its registers per thread); it also needs
    /// a multiple of 4. Wider heads prefill through `partial` and `combine`.
    pub const ATTENTION_PREFILL_MAX_HD: usize = 128;
    /// Queries per workgroup of `attention::prefill` (4 threads each).
    pub const ATTENTION_PREFILL_QUERIES: u32 = 32;
    /// Threads per workgroup of `attention::prefill`.
    pub const ATTENTION_PREFILL_WG: u32 = 128;
    /// Largest head dimension of `attention_coop::prefill` (a multiple of 16 is needed too).
    pub const ATTENTION_COOP_MAX_HD: usize = 128;
    /// Queries per workgroup of `attention_coop::prefill` (16 per subgroup).
    pub const ATTENTION_COOP_QUERIES: u32 = 64;
    /// Threads per workgroup of `attention_coop::prefill`: 4 subgroups of 32.
    pub const ATTENTION_COOP_WG: u32 = 128;
    /// Keys per tile of `attention_coop::prefill`.
    pub const ATTENTION_COOP_KEYS: u32 = 32;
    /// Threads per workgroup of every `elementwise` entry point (one thread per element or
    /// packed word).
    pub const ELEMENTWISE_WG: u32 = 64;
    /// Elements per thread of `elementwise::glu` (and `glu_h`, in pairs): a multiple of 2.
    pub const GLU_PER_THREAD: u32 = 4;
    /// Threads per workgroup of `matmul::gemv_m0e4`.
    pub const GEMV_WG: u32 = 256;
    /// Output rows per workgroup of `matmul::gemv_m0e4`.
    pub const GEMV_ROWS: u32 = 8;
    /// Tokens per pass of `matmul::gemv_m0e4_tokens` (each word decoded once for all of them).
    pub const GEMV_TOKENS: u32 = 4;
    /// Threads per workgroup of `matmul::gemv_m0e4_wide` and `matmul::gemv_m0e4_glu`.
    pub const GEMV_WIDE_WG: u32 = 128;
    /// Output rows per block of `matmul::gemv_m0e4_wide` (`blocks` blocks per workgroup).
    pub const GEMV_WIDE_ROWS: u32 = 16;
    /// Outputs per block of `matmul::gemv_m0e4_glu` (each a gate and an up row).
    pub const GEMV_GLU_OUTPUTS: u32 = 8;
    /// Columns per step of a lane of the wide GEMVs: their `k` and group size must be
    /// multiples of it.
    pub const GEMV_WIDE_COLS: u32 = 32;
    /// Widest input a fused-norm GEMV stages in shared memory (`xs` in matmul.wgsl).
    pub const NORM_MAX_K: usize = 4096;
    /// Threads per workgroup of `matmul::gemm_*`.
    pub const GEMM_WG: u32 = 256;
    /// Output rows per workgroup of `matmul::gemm_*` (grid x).
    pub const GEMM_ROWS: u32 = 128;
    /// Tokens per workgroup of `matmul::gemm_*` (grid y).
    pub const GEMM_TOKENS: u32 = 64;
    /// Threads per workgroup of `matmul_coop::gemm_m0e4_coop`: 8 subgroups of 32.
    pub const COOP_WG: u32 = 256;
    /// Output rows per workgroup of `matmul_coop::gemm_m0e4_coop` (grid x).
    pub const COOP_ROWS: u32 = 128;
    /// Tokens per workgroup of `matmul_coop::gemm_m0e4_coop` (grid y).
    pub const COOP_TOKENS: u32 = 128;
    /// Threads per workgroup of `matmul_coop_small::gemm_m0e4_coop`: the large kernel's.
    pub const COOP_SMALL_WG: u32 = COOP_WG;
    /// Output rows per workgroup of `matmul_coop_small::gemm_m0e4_coop` (grid x): the large
    /// kernel's rows over half its tokens (measured against 64 × 64 and 64 × 128 tiles).
    pub const COOP_SMALL_ROWS: u32 = COOP_ROWS;
    /// Tokens per workgroup of `matmul_coop_small::gemm_m0e4_coop` (grid y).
    pub const COOP_SMALL_TOKENS: u32 = 64;
    /// Threads per workgroup of `matmul_coop_few::gemm_m0e4_coop_few`: 4 subgroups of 32, which
    /// split k.
    pub const COOP_FEW_WG: u32 = 128;
    /// Output rows per workgroup of `matmul_coop_few::gemm_m0e4_coop_few` (grid x).
    pub const COOP_FEW_ROWS: u32 = 16;
    /// Tokens per workgroup of `matmul_coop_few::gemm_m0e4_coop_few` (grid y).
    pub const COOP_FEW_TOKENS: u32 = 16;
    /// Columns per step of `matmul_coop::gemm_m0e4_coop` (and of `gemm_m0e4_coop_few`'s
    /// subgroups): their `k` must be a multiple of it.
    pub const COOP_K: u32 = 64;
    /// Words written per row by `score::main`.
    pub const SCORE_OUT: u32 = 8;
}

/// Storage buffers `matmul::gemv_m0e4_glu` binds (gate and up: packed words and group
/// parameters each; x, norm weight, y): the fused GLU GEMV needs a device limit of at least this
/// many per shader stage (WebGPU's default is 8).
pub const GEMV_GLU_STORAGE_BUFFERS: u32 = 7;

/// Storage buffers `matmul::gemv_m0e4_norm_rope` binds (y, bias, packed words, group
/// parameters, x, norm weight, the K and V caches, the cos and sin tables): the q/k/v GEMV takes
/// RoPE and the KV write only where the device allows this many per shader stage.
pub const GEMV_ROPE_STORAGE_BUFFERS: u32 = 10;

const _: () = assert!(NORM_MAX_K.is_multiple_of(4) && ATTENTION_MAX_HD.is_multiple_of(4));

/// The WGSL declarations of [`WGSL_CONSTANTS`], part of every kernel's prelude.
pub fn constants_prelude() -> String {
    let mut s = String::from("// ---- shared constants, generated from kernels::params ----\n");
    for (name, value) in WGSL_CONSTANTS {
        let value = u32::try_from(*value).expect("shared constants fit u32");
        s.push_str(&format!("const {name}: u32 = {value}u;\n"));
    }
    s.push_str("// ---- end of shared constants ----\n");
    s
}

impl Kernel {
    /// Threads per workgroup (x; y and z are 1) of entry point `entry`; a test checks them
    /// against the WGSL.
    pub fn workgroup_size(self, entry: &str) -> u32 {
        match (self, entry) {
            (Kernel::Dequant, _) => DEQUANT_WG,
            (
                Kernel::Matmul,
                "gemv_m0e4"
                | "gemv_m0e4_norm"
                | "gemv_m0e4_norm_rope"
                | "gemv_m0e4_tokens"
                | "gemv_m0e4_glu_narrow",
            ) => GEMV_WG,
            (Kernel::Matmul, "gemv_m0e4_wide" | "gemv_m0e4_glu") => GEMV_WIDE_WG,
            (Kernel::Matmul, "gemv_dense") => REDUCE_WG,
            (Kernel::Matmul, _) => GEMM_WG,
            (Kernel::MatmulCoop | Kernel::MatmulCoopH, _) => COOP_WG,
            (Kernel::MatmulCoopSmall, _) => COOP_SMALL_WG,
            (Kernel::MatmulCoopFew | Kernel::MatmulCoopFewH, _) => COOP_FEW_WG,
            (Kernel::Norm, "rmsnorm" | "rmsnorm_h") => NORM_WG,
            (Kernel::Norm, _) => REDUCE_WG,
            (Kernel::RopeKv, _) => ROPE_KV_WG,
            (Kernel::Attention, "prefill") => ATTENTION_PREFILL_WG,
            (Kernel::Attention, "decode") => ATTENTION_DECODE_WG,
            (Kernel::Attention, "decode_wide") => ATTENTION_DECODE_WIDE_WG,
            (Kernel::Attention, _) => REDUCE_WG,
            (Kernel::AttentionCoop, _) => ATTENTION_COOP_WG,
            (Kernel::Elementwise, _) => ELEMENTWISE_WG,
            (Kernel::Score, _) => REDUCE_WG,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_tables_are_dense_and_ordered() {
        for k in Kernel::ALL {
            let m = k.members();
            for (i, mem) in m.iter().enumerate() {
                assert_eq!(mem.offset, 4 * i, "{}: {}", k.name(), mem.name);
            }
            assert_eq!(k.params_size(), 4 * m.len(), "{}", k.name());
            assert_eq!(k.fields().len(), m.len());
        }
    }

    #[test]
    fn values_follow_the_bytes() {
        let p = MatmulParams::<u32> {
            seq: 1,
            k: 2,
            n: 3,
            eps: 0.5,
            _pad0: 7,
            ..Default::default()
        };
        let bytes: Vec<u8> = p
            .values()
            .into_iter()
            .flat_map(|v| match v {
                Value::U(x) => x.to_le_bytes(),
                Value::F(x) => x.to_bits().to_le_bytes(),
                Value::I(x) => x.to_le_bytes(),
            })
            .collect();
        assert_eq!(bytes, bytemuck::bytes_of(&p));
        let doubled = p.map(|x| 2 * x);
        assert_eq!((doubled.n, doubled.eps, doubled._pad0), (6, 0.5, 14));
    }

    #[test]
    fn bindings_are_distinct() {
        for k in Kernel::ALL {
            let mut seen: Vec<u32> = k.bindings().iter().map(|(_, i)| *i).collect();
            seen.sort_unstable();
            let n = seen.len();
            seen.dedup();
            assert_eq!(seen.len(), n, "{}: duplicate binding index", k.name());
        }
    }
}
