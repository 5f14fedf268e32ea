//! One transformer layer: input norm, q/k/v, QK-norm, RoPE and the KV write, attention, the
//! output projection into the residual, then the MLP (pre-norm, gate and up, the gated
//! activation, down into the residual).

use tlite_model::arch::RopeLayout;
use tlite_model::layer::{LayerSpec, Proj};

use super::When;
use super::attention::{QkvActs, Rope};
use super::builder::Builder;
use super::decision::{Decision, Gemv, Site};
use super::matmul::{Projection, RopeWrite};
use super::norm::{NormIo, NormOp};
use crate::Result;
use crate::kernels::params::GEMV_ROPE_STORAGE_BUFFERS;
use crate::shape::Expr;

impl Builder<'_> {
    /// The ops of layer `lay`.
    pub fn layer(&mut self, lay: &LayerSpec, rope: &Rope) -> Result<()> {
        let l = lay.index;
        let (acts, rope_in_gemv) = self.qkv(lay, rope)?;
        let q = match acts {
            QkvActs::Apart([q, k, _]) => {
                self.qk_norms(lay, q, k);
                q
            }
            QkvActs::Together { q, .. } => q,
        };
        let rope_when = if rope_in_gemv {
            When::Prefill
        } else {
            When::Always
        };
        self.rope_kv(l, acts, rope, rope_when);
        let attn_out_norm = (lay.attn_out_norm.as_deref())
            .map(|w| (format!("l{l}.attn_out"), format!("l{l}.post_attn_norm"), w));
        let o_half = self.residual_input_half(&lay.o, attn_out_norm.is_some())?;
        let (attn, attn_half) = self.attention(l, q, o_half);
        let input = (attn, attn_half.then_some(attn));
        self.add_to_residual((&format!("l{l}.o_proj"), &lay.o), input, attn_out_norm)?;
        self.mlp(lay)
    }

    /// The input norm and the q, k and v projections; returns their activations, and whether
    /// the decode GEMV of a joined q/k/v applies RoPE and writes the cache itself.
    fn qkv(&mut self, lay: &LayerSpec, rope: &Rope) -> Result<(QkvActs, bool)> {
        let (l, cfg, seq) = (lay.index, self.cfg, Expr::Seq);
        let hn = self.act(format!("l{l}.norm_in"), seq.clone() * cfg.hidden_size);
        let (q_out, kv_out) = (
            cfg.num_heads * cfg.head_dim,
            cfg.num_kv_heads * cfg.head_dim,
        );
        let norm = (format!("l{l}.input_norm"), lay.input_norm.as_str());
        if let Some(p) = self.qkv.get(l).cloned().flatten() {
            // One projection into [seq, q | k | v]; RoPE writes q into its own activation.
            let qkv = self.act(format!("l{l}.qkv"), seq.clone() * p.out());
            let q = self.act(format!("l{l}.q"), seq * q_out);
            let site = Site::Normed {
                group: &[&p],
                norm: &lay.input_norm,
            };
            let d = self.decide(&p, site)?;
            let rope = self.rope_write(&p, &d, rope, l, q);
            let projs = vec![(format!("l{l}.qkv"), &p, qkv, d)];
            self.normed_projections(norm, hn, projs, rope);
            return Ok((QkvActs::Together { qkv, q }, rope.is_some()));
        }
        let q = self.act(format!("l{l}.q"), seq.clone() * q_out);
        let k = self.act(format!("l{l}.k"), seq.clone() * kv_out);
        let v = self.act(format!("l{l}.v"), seq * kv_out);
        let group = [&lay.q, &lay.k, &lay.v];
        // Decode: the q/k/v GEMVs apply the input norm themselves where they can.
        let site = Site::Normed {
            group: &group,
            norm: &lay.input_norm,
        };
        let projs = [q, k, v].into_iter().zip(group).map(|(y, proj)| {
            let name = if lay.fused_qkv() { "qkv" } else { proj.rel };
            Ok((format!("l{l}.{name}"), proj, y, self.decide(proj, site)?))
        });
        let projs = projs.collect::<Result<Vec<_>>>()?;
        self.normed_projections(norm, hn, projs, None);
        Ok((QkvActs::Apart([q, k, v]), false))
    }

    /// RoPE and the KV write in the decode GEMV of the joined q/k/v projection `p` of layer `l`
    /// (rotated q into activation `q`), where it runs `gemv_m0e4_norm_rope`'s loop on one
    /// chunk, the device has the storage buffers, and every block of 8 rows lies in one head and
    /// one side of the rotated dimensions.
    fn rope_write(
        &self,
        p: &Proj,
        d: &Decision,
        rope: &Rope,
        l: usize,
        q: usize,
    ) -> Option<RopeWrite> {
        let cfg = self.cfg;
        let (hd, rot) = (cfg.head_dim, rope.rot);
        let fits = d.gemv == Gemv::NarrowNorm
            && d.chunks.len() == 1
            && self.limits.max_storage_buffers >= GEMV_ROPE_STORAGE_BUFFERS
            && hd.is_multiple_of(8)
            && rot.is_multiple_of(8)
            && rot <= hd
            && p.out() == (cfg.num_heads + 2 * cfg.num_kv_heads) * hd;
        fits.then(|| RopeWrite {
            layer: l,
            q,
            base: rope.base(cfg, l),
            rot,
            interleaved: self.arch.rope == RopeLayout::Interleaved,
        })
    }

    /// The RMSNorm `(label, weight)` of the residual into `hn`, then the projections that read
    /// it: (label, projection, output, decision) each. The norm op runs for prefill only where
    /// the decode GEMVs apply it themselves. Where every projection reads f16 input in the same
    /// steps ([`Decision::f16_input_steps`]), the norm writes `hn` in f16 there
    /// ([`When::split_f16`]) and they read it so.
    fn normed_projections(
        &mut self,
        (label, weight): (String, &str),
        hn: usize,
        projs: Vec<(String, &Proj, usize, Decision)>,
        rope: Option<RopeWrite>,
    ) {
        let when = projs.first().map_or(When::Always, |p| p.3.norm.op_when());
        let steps = projs.first().and_then(|p| p.3.f16_input_steps());
        let steps = steps.filter(|s| projs.iter().all(|p| p.3.f16_input_steps() == Some(*s)));
        let n = self.cfg.hidden_size;
        let mut half = false;
        for (when, f16_out) in when.split_f16(steps) {
            if let Some(when) = when {
                half |= f16_out;
                self.norm(NormOp {
                    label: label.clone(),
                    io: NormIo::From(self.residual),
                    y: hn,
                    weight,
                    rows: Expr::Seq,
                    n,
                    when,
                    half: f16_out,
                });
            }
        }
        for (label, proj, y, d) in projs {
            let seq = Expr::Seq;
            self.project(
                &Projection {
                    label,
                    proj,
                    x: hn,
                    y,
                    seq,
                    rope,
                    x_half: half.then_some(hn),
                },
                &d,
            );
        }
    }

    /// The per-head RMSNorms of `q` and `k`, where the layer has them.
    fn qk_norms(&mut self, lay: &LayerSpec, q: usize, k: usize) {
        let (l, cfg) = (lay.index, self.cfg);
        for (name, y, w, n) in [
            ("q_norm", q, &lay.q_norm, cfg.num_heads),
            ("k_norm", k, &lay.k_norm, cfg.num_kv_heads),
        ] {
            if let Some(w) = w {
                self.norm(NormOp {
                    label: format!("l{l}.{name}"),
                    io: NormIo::InPlace,
                    y,
                    weight: w,
                    rows: Expr::Seq * n,
                    n: cfg.head_dim,
                    when: When::Always,
                    half: false,
                });
            }
        }
    }

    /// The MLP: its norm, gate and up, the gated activation and down into the residual.
    fn mlp(&mut self, lay: &LayerSpec) -> Result<()> {
        let (l, cfg, seq) = (lay.index, self.cfg, Expr::Seq);
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        let hn = self.act(format!("l{l}.norm_mlp"), seq.clone() * h);
        let gate = self.act(format!("l{l}.gate"), seq.clone() * f);
        let up = self.act(format!("l{l}.up"), seq * f);
        let norm = lay.mlp_in_norm.as_str();
        // Decode: norm, gate, up and the activation in one GEMV where the device and the
        // weights allow; otherwise the norm alone is fused into the gate and up GEMVs.
        let dg = self.decide(&lay.gate, Site::Gate { up: &lay.up, norm })?;
        let up_site = Site::Up {
            gate: &lay.gate,
            norm,
        };
        let du = self.decide(&lay.up, up_site)?;
        let glu_when = dg.gemv.activation_when();
        let projs = vec![
            (format!("l{l}.gate"), &lay.gate, gate, dg),
            (format!("l{l}.up"), &lay.up, up, du),
        ];
        self.normed_projections((format!("l{l}.pre_mlp_norm"), norm), hn, projs, None);
        let mlp_out_norm = (lay.mlp_out_norm.as_deref())
            .map(|w| (format!("l{l}.mlp_out"), format!("l{l}.post_mlp_norm"), w));
        let down_half = self.residual_input_half(&lay.down, mlp_out_norm.is_some())?;
        let act_half = self.glu(l, (gate, up), glu_when, down_half);
        let input = (gate, act_half);
        self.add_to_residual((&format!("l{l}.down"), &lay.down), input, mlp_out_norm)
    }
}
