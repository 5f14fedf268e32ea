//! RoPE fused with the KV-cache write, and attention over the cache in split partials and
//! their combination.

use tlite_model::arch::RopeLayout;
use tlite_model::config::ModelConfig;

use super::builder::Builder;
use super::{BufRef, Field, OnePass, Op, When, fields};
use crate::kernels::Kernel;
use crate::kernels::params::binding::{
    attention as attn_bind, attention_coop as coop_bind, rope_kv as rope_bind,
};
use crate::kernels::params::{
    ATTENTION_COOP_MAX_HD, ATTENTION_COOP_QUERIES, ATTENTION_DECODE_KEYS,
    ATTENTION_DECODE_NARROW_KEYS, ATTENTION_PREFILL_MAX_HD, ATTENTION_PREFILL_QUERIES,
    AttentionParams, ROPE_KV_WG, RopeKvParams,
};
use crate::shape::{Expr, c};

/// The model's RoPE: rotated dimensions per head and the tables' bases.
pub(super) struct Rope {
    pub rot: usize,
    /// (theta, linear factor): the global base, then the local one of sliding layers if any.
    pub bases: Vec<(f64, f64)>,
}

impl Rope {
    pub fn of(cfg: &ModelConfig) -> Rope {
        let rot = ((cfg.head_dim as f64) * cfg.partial_rotary_factor) as usize;
        let mut bases = vec![(cfg.rope_theta, cfg.rope_linear_factor.unwrap_or(1.0))];
        if let Some(t) = cfg.rope_local_theta {
            bases.push((t, 1.0));
        }
        Rope { rot, bases }
    }

    /// The base (table index) of layer `l`.
    pub fn base(&self, cfg: &ModelConfig, l: usize) -> usize {
        usize::from(cfg.sliding_layers[l] && self.bases.len() > 1)
    }
}

/// The activations of a layer's q, k and v projections, which RoPE and the KV write read.
#[derive(Clone, Copy, Debug)]
pub(super) enum QkvActs {
    /// Three projections, three activations: q rotated in place.
    Apart([usize; 3]),
    /// One projection into `qkv` (`[seq, q | k | v]`); the rotated q goes to `q`.
    Together { qkv: usize, q: usize },
}

impl Builder<'_> {
    /// Layer `l`'s RoPE of q and k and the write of k and v into the cache, in the steps `when`
    /// says (prefill only where the q/k/v GEMV does it for decode).
    pub fn rope_kv(&mut self, l: usize, acts: QkvActs, rope: &Rope, when: When) {
        let cfg = self.cfg;
        let (q_el, kv_el) = (
            cfg.num_heads * cfg.head_dim,
            cfg.num_kv_heads * cfg.head_dim,
        );
        let interleaved = self.arch.rope == RopeLayout::Interleaved;
        // From one q/k/v activation, 4 elements per thread where every quad of a head's
        // dimensions rotates with one quad of partners (`from_qkv4`).
        let quads = cfg.head_dim.is_multiple_of(4)
            && rope.rot.is_multiple_of(if interleaved { 4 } else { 8 });
        let threads = match acts {
            QkvActs::Apart(_) => (cfg.num_heads * (rope.rot / 2)).max(kv_el),
            QkvActs::Together { .. } if quads => (q_el + kv_el) / 4,
            QkvActs::Together { .. } => q_el + kv_el,
        } as u64;
        let base = rope.base(cfg, l);
        let [heads, kv_heads, hd, max_seq] = self.head_fields();
        let params = RopeKvParams {
            seq: Expr::Seq,
            past: Expr::Past,
            heads,
            kv_heads,
            hd,
            rot: c(rope.rot as u64),
            interleaved: c(u64::from(interleaved)),
            max_seq,
        };
        let (entry, mut bindings, reads, q) = match acts {
            QkvActs::Apart([q, k, v]) => (
                "main",
                vec![
                    (rope_bind::Q, BufRef::Act(q)),
                    (rope_bind::K, BufRef::Act(k)),
                    (rope_bind::V, BufRef::Act(v)),
                    (rope_bind::KCACHE, BufRef::KvK(l)),
                    (rope_bind::VCACHE, BufRef::KvV(l)),
                ],
                vec![q, k, v],
                q,
            ),
            QkvActs::Together { qkv, q } if quads => (
                "from_qkv4",
                vec![
                    (rope_bind::QKV4, BufRef::Act(qkv)),
                    (rope_bind::Q4, BufRef::Act(q)),
                    (rope_bind::KCACHE4, BufRef::KvK(l)),
                    (rope_bind::VCACHE4, BufRef::KvV(l)),
                ],
                vec![qkv],
                q,
            ),
            QkvActs::Together { qkv, q } => (
                "from_qkv",
                vec![
                    (rope_bind::QKV, BufRef::Act(qkv)),
                    (rope_bind::Q, BufRef::Act(q)),
                    (rope_bind::KCACHE, BufRef::KvK(l)),
                    (rope_bind::VCACHE, BufRef::KvV(l)),
                ],
                vec![qkv],
                q,
            ),
        };
        bindings.extend([
            (rope_bind::COS_T, BufRef::Cos(base)),
            (rope_bind::SIN_T, BufRef::Sin(base)),
        ]);
        self.push(Op {
            label: format!("l{l}.rope_kv"),
            kernel: Kernel::RopeKv,
            entry,
            bindings,
            params: fields(params.values()),
            grid: [Expr::Seq, c(threads.div_ceil(u64::from(ROPE_KV_WG))), c(1)],
            when,
            reads,
            writes: vec![q],
        });
    }

    /// Layer `l`'s attention of `q` over the cache; returns its output activation, and whether
    /// it is written in f16 in the steps `half` (those in which the output projection reads it
    /// so, `Decision::f16_input_steps`).
    pub fn attention(&mut self, l: usize, q: usize, half: Option<When>) -> (usize, bool) {
        let (heads, hd, seq) = (self.cfg.num_heads, self.cfg.head_dim, Expr::Seq);
        // (seq + 32) bounds both prefill (one split per query) and decode (up to 32 splits).
        let parts = self.act(
            format!("l{l}.attn_parts"),
            (seq.clone() + 32u64) * (heads * (hd + 2)),
        );
        let attn = self.act(format!("l{l}.attn"), seq.clone() * (heads * hd));
        let params = self.attention_params(l);
        // Prefill in blocks of queries where the heads fit the prefill kernel; decode, and
        // prefill of wider heads, through split partials and their combination.
        let blocked = hd.is_multiple_of(4) && hd <= ATTENTION_PREFILL_MAX_HD;
        let split_when = if blocked { When::Decode } else { When::Always };
        // Prefill on cooperative matrices where the GEMM runs on them and the heads are of
        // whole 16 × 16 tiles; there `prefill_h` writes f16 for an output projection that reads
        // it so, in the steps `half`.
        let coop = blocked
            && self.limits.coop_gemm
            && hd.is_multiple_of(16)
            && hd <= ATTENTION_COOP_MAX_HD;
        let attn_half = half.filter(|_| coop);
        let mut wrote_half = false;
        // Decode over at most ATTENTION_DECODE_KEYS keys in one pass (heads of a multiple of 4,
        // where the device has the workgroups, [`OnePass`]): `decode` over at most
        // ATTENTION_DECODE_NARROW_KEYS, `decode_wide` over more; `partial` and `combine` past
        // the entries the device runs. Grid factors of 1 and 0: ⌊a / b⌋ min 1 is 1 where b ≤ a,
        // else 0.
        let keys = match self.attention_window(l) {
            0 => Expr::Past + 1u64,
            w => (Expr::Past + 1u64).min(c(w as u64)),
        };
        let at_most = |n: u32| c(u64::from(n)).floor_div(keys.clone()).min(c(1));
        let more_than = |n: u32| keys.clone().floor_div(c(u64::from(n) + 1)).min(c(1));
        // The one-pass and the prefill kernels' bindings: q, the caches as vectors, the output.
        let vectors = vec![
            (attn_bind::Q, BufRef::Act(q)),
            (attn_bind::KCACHE4, BufRef::KvK(l)),
            (attn_bind::VCACHE4, BufRef::KvV(l)),
            (attn_bind::OUT, BufRef::Act(attn)),
        ];
        let narrow = ("decode", at_most(ATTENTION_DECODE_NARROW_KEYS));
        let wide = (
            "decode_wide",
            more_than(ATTENTION_DECODE_NARROW_KEYS) * at_most(ATTENTION_DECODE_KEYS),
        );
        // The one-pass entries the device runs, and the most keys they cover.
        let (passes, most) = match self.limits.one_pass_decode {
            _ if !hd.is_multiple_of(4) => (vec![], 0),
            OnePass::None => (vec![], 0),
            OnePass::Narrow => (vec![narrow], ATTENTION_DECODE_NARROW_KEYS),
            OnePass::Both => (vec![narrow, wide], ATTENTION_DECODE_KEYS),
        };
        let split_on = match most {
            0 => c(1),
            n => Expr::decode_or(more_than(n), c(1)),
        };
        for (entry, on) in passes {
            self.push(Op {
                label: format!("l{l}.attention_{entry}"),
                kernel: Kernel::Attention,
                entry,
                bindings: vectors.clone(),
                params: params.clone(),
                grid: [c(heads as u64), on, c(1)],
                when: When::Decode,
                reads: vec![q],
                writes: vec![attn],
            });
        }
        if blocked {
            // Queries per workgroup: attention_coop's take two blocks each (`attend`).
            let (kernel, queries) = match coop {
                true => (Kernel::AttentionCoop, 2 * ATTENTION_COOP_QUERIES),
                false => (Kernel::Attention, ATTENTION_PREFILL_QUERIES),
            };
            // On cooperative matrices both entry points use both outputs; the one an op does not
            // write is bound to a placeholder.
            for (when, f16_out) in When::Prefill.split_f16(attn_half) {
                let Some(when) = when else { continue };
                wrote_half |= f16_out;
                let mut bindings = vectors.clone();
                let entry = match f16_out {
                    true => "prefill_h",
                    false => "prefill",
                };
                if coop {
                    let (out, out_h) = match f16_out {
                        true => (BufRef::Dummy, BufRef::Act(attn)),
                        false => (BufRef::Act(attn), BufRef::Dummy),
                    };
                    // It reads the caches in 16-byte units (KCACHE_L, VCACHE_L).
                    for (i, r) in bindings.iter_mut() {
                        match *i {
                            attn_bind::OUT => *r = out.clone(),
                            attn_bind::KCACHE4 => *i = coop_bind::KCACHE_L,
                            attn_bind::VCACHE4 => *i = coop_bind::VCACHE_L,
                            _ => {}
                        }
                    }
                    bindings.push((coop_bind::OUT_H, out_h));
                }
                self.push(Op {
                    label: format!("l{l}.attention_prefill"),
                    kernel,
                    entry,
                    bindings,
                    params: params.clone(),
                    grid: [
                        seq.clone().ceil_div(c(u64::from(queries))),
                        c(heads as u64),
                        c(1),
                    ],
                    when,
                    reads: vec![q],
                    writes: vec![attn],
                });
            }
        }
        self.push(Op {
            label: format!("l{l}.attention"),
            kernel: Kernel::Attention,
            entry: "partial",
            bindings: vec![
                (attn_bind::Q, BufRef::Act(q)),
                (attn_bind::KCACHE, BufRef::KvK(l)),
                (attn_bind::VCACHE, BufRef::KvV(l)),
                (attn_bind::PARTS, BufRef::Act(parts)),
                (attn_bind::OUT, BufRef::Act(attn)),
                (attn_bind::KCACHE4, BufRef::KvK(l)),
            ],
            params: params.clone(),
            grid: [splits() * split_on.clone(), c(heads as u64), seq.clone()],
            when: split_when,
            reads: vec![q],
            writes: vec![parts, attn],
        });
        self.push(Op {
            label: format!("l{l}.attention_combine"),
            kernel: Kernel::Attention,
            entry: "combine",
            bindings: vec![
                (attn_bind::PARTS, BufRef::Act(parts)),
                (attn_bind::OUT, BufRef::Act(attn)),
            ],
            params,
            // Not dispatched where one split covers every key (⌊min(splits, 2) / 2⌋ = 0):
            // partial writes the output.
            grid: [
                c(heads as u64),
                seq,
                splits().min(c(2)).floor_div(c(2)) * split_on,
            ],
            when: split_when,
            reads: vec![parts],
            writes: vec![attn],
        });
        (attn, wrote_half)
    }

    /// Layer `l`'s sliding window (0: none).
    fn attention_window(&self, l: usize) -> usize {
        let cfg = self.cfg;
        if cfg.sliding_layers[l] {
            cfg.sliding_window.unwrap_or(0)
        } else {
            0
        }
    }

    /// The attention parameters of layer `l` (every entry point).
    fn attention_params(&self, l: usize) -> Vec<Field> {
        let cfg = self.cfg;
        let hd = cfg.head_dim;
        let window = self.attention_window(l);
        let scale = cfg.query_pre_attn_scalar.unwrap_or(hd as f64).powf(-0.5) as f32;
        let softcap = cfg.attn_logit_softcapping.unwrap_or(0.0) as f32;
        let kps = (Expr::Past + Expr::Seq).ceil_div(splits());
        let [heads, kv_heads, hd, max_seq] = self.head_fields();
        let params = AttentionParams {
            seq: Expr::Seq,
            past: Expr::Past,
            heads,
            kv_heads,
            hd,
            max_seq,
            window: c(window as u64),
            splits: splits(),
            kps,
            scale,
            softcap,
            _pad: c(0),
        };
        fields(params.values())
    }

    /// The fields RoPE and attention share besides the step's positions: `[heads, kv_heads,
    /// hd, max_seq]` (the cache's positions).
    fn head_fields(&self) -> [Expr; 4] {
        let cfg = self.cfg;
        [cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, self.max_seq].map(|v| c(v as u64))
    }
}

/// Most splits of the keys of a decode step.
const MAX_SPLITS: u64 = 32;

/// Keys per split of a decode step (while at most MAX_SPLITS splits). On an H200 (docs/PERF.md),
/// 64 and 128 keys per split, which leave one split to more of a short decode, were 1-4% slower
/// at tg128 than 32: a split's keys are a serial loop.
const KEYS_PER_SPLIT: u64 = 32;

/// Splits of the keys: decode splits them into chunks of KEYS_PER_SPLIT (at most MAX_SPLITS
/// splits) for more workgroups and shorter serial loops per thread; prefill runs one per query.
fn splits() -> Expr {
    Expr::decode_or(
        (Expr::Past + 1u64)
            .ceil_div(c(KEYS_PER_SPLIT))
            .min(c(MAX_SPLITS)),
        c(1),
    )
}
