//! Elementwise ops and the ends of the model: the embedding lookup, the gated-MLP activation,
//! the final norm with the LM head, and logit soft-capping.

use tlite_model::arch::Activation as Act;
use tlite_model::deploy::Storage;
use tlite_model::layer::{ModelSpec, Proj};
use tlite_quantizer::M0E4Matrix;

use super::builder::{Builder, grid_1d, m0e4_row, part};
use super::decision::Site;
use super::join::GROUPS_PART;
use super::matmul::Projection;
use super::norm::{NormIo, NormOp};
use super::{BufRef, Op, When, fields};
use crate::Result;
use crate::kernels::Kernel;
use crate::kernels::params::binding::elementwise as bind;
use crate::kernels::params::{ELEMENTWISE_WG, ElementwiseParams, GLU_PER_THREAD};
use crate::shape::{Expr, c};

/// The activations an op reads and writes.
type Rw = (Vec<usize>, Vec<usize>);

impl Builder<'_> {
    /// The embedding lookup of the step's tokens into the residual, one op per chunk of the
    /// table `embed`.
    pub fn embed(&mut self, embed: &str) -> Result<()> {
        let (h, x, seq) = (self.cfg.hidden_size, self.residual, Expr::Seq);
        let emb = self.layout(embed)?;
        let scale = if self.arch.scale_embeddings {
            (h as f32).sqrt()
        } else {
            1.0
        };
        let (m0e4, group) = (emb.storage == Storage::M0E4, emb.group.unwrap_or(8));
        for (ci, ch) in emb.chunks.iter().enumerate() {
            let p = |i: usize| part(embed, ci, i);
            let mut bindings = vec![(bind::TOKENS, BufRef::Tokens), (bind::Y, BufRef::Act(x))];
            let threads = if m0e4 {
                bindings.extend([(bind::PACKED, p(0)), (bind::GROUPS, p(GROUPS_PART))]);
                seq.clone() * M0E4Matrix::words_per_row(h)
            } else {
                bindings.push((bind::DENSE, p(0)));
                seq.clone() * h
            };
            let [group, words_per_row, groups_per_row] = m0e4_row(h, group);
            let params = ElementwiseParams {
                row0: c(ch.rows.0 as u64),
                rows: c((ch.rows.1 - ch.rows.0) as u64),
                group,
                words_per_row,
                groups_per_row,
                scale,
                ..elementwise_params(seq.clone(), h)
            };
            let entry = if m0e4 { "embed_m0e4" } else { "embed_dense" };
            let label = format!("embed[{ci}]");
            self.elementwise(&label, entry, bindings, params, threads, (vec![], vec![x]));
        }
        Ok(())
    }

    /// `gate = act(gate) · up` of layer `l`, for the steps in `when`.
    pub fn glu(
        &mut self,
        l: usize,
        (gate, up): (usize, usize),
        when: When,
        half: Option<When>,
    ) -> Option<usize> {
        let f = self.cfg.intermediate_size;
        let act = u64::from(self.arch.activation == Act::GeluTanh);
        let params = ElementwiseParams {
            act: c(act),
            ..elementwise_params(Expr::Seq, f)
        };
        let mut bindings = vec![(bind::Y, BufRef::Act(gate)), (bind::UP, BufRef::Act(up))];
        // Where the down projection reads its input in f16 (the steps `half`): `glu_h` writes it
        // there into an activation of its own (in place, a pair's word would overwrite values
        // other threads have yet to read).
        let [(f32_steps, _), (f16_steps, _)] = when.split_f16(half.filter(|_| f.is_multiple_of(2)));
        let label = format!("l{l}.glu");
        let per = u64::from(GLU_PER_THREAD);
        if let Some(when) = f32_steps {
            let rw = (vec![gate, up], vec![gate]);
            let threads = (Expr::Seq * f).ceil_div(c(per));
            self.elementwise(&label, "glu", bindings.clone(), params.clone(), threads, rw);
            if let Some(op) = self.ops.last_mut() {
                op.when = when;
            }
        }
        let when = f16_steps?;
        let act_h = self.act(format!("l{l}.act_h"), Expr::Seq * (f / 2));
        bindings.push((bind::Y_H, BufRef::Act(act_h)));
        let rw = (vec![gate, up], vec![act_h]);
        let threads = (Expr::Seq * (f / 2)).ceil_div(c(per / 2));
        self.elementwise(&label, "glu_h", bindings, params, threads, rw);
        if let Some(op) = self.ops.last_mut() {
            op.when = when;
        }
        Some(act_h)
    }

    /// The final norm of the chosen positions only, the LM head and the logit soft-cap; returns
    /// the logits activation.
    pub fn head(&mut self, model: &ModelSpec) -> Result<usize> {
        let (h, vocab) = (self.cfg.hidden_size, self.cfg.vocab_size);
        let hf = self.act("final_norm".into(), Expr::Out * h);
        self.norm(NormOp {
            label: "final_norm".into(),
            io: NormIo::Gather(self.residual),
            y: hf,
            weight: &model.final_norm,
            rows: Expr::Out,
            n: h,
            when: When::Always,
            half: false,
        });
        let logits = self.act("logits".into(), Expr::Out * vocab);
        let proj = Proj {
            tensor: model.lm_head.clone(),
            rel: "lm_head",
            rows: 0..vocab,
            cols: h,
            bias: None,
        };
        let d = self.decide(&proj, Site::Plain { accumulate: false })?;
        let p = Projection {
            label: "lm_head".into(),
            proj: &proj,
            x: hf,
            x_half: None,
            y: logits,
            seq: Expr::Out,
            rope: None,
        };
        self.project(&p, &d);
        if let Some(cap) = self.cfg.final_logit_softcapping {
            self.elementwise(
                "logit_softcap",
                "softcap",
                vec![(bind::Y, BufRef::Act(logits))],
                ElementwiseParams {
                    cap: cap as f32,
                    ..elementwise_params(Expr::Out, vocab)
                },
                Expr::Out * vocab,
                (vec![logits], vec![logits]),
            );
        }
        Ok(logits)
    }

    /// An `Elementwise` op of `threads` threads (ELEMENTWISE_WG per workgroup) with `params`,
    /// whose `grid_width` it sets.
    fn elementwise(
        &mut self,
        label: &str,
        entry: &'static str,
        bindings: Vec<(u32, BufRef)>,
        params: ElementwiseParams<Expr>,
        threads: Expr,
        (reads, writes): Rw,
    ) {
        let wg = u64::from(ELEMENTWISE_WG);
        let (grid, gw) = grid_1d(threads.ceil_div(c(wg)));
        let params = ElementwiseParams {
            grid_width: gw * wg,
            ..params
        };
        self.push(Op {
            label: label.to_owned(),
            kernel: Kernel::Elementwise,
            entry,
            bindings,
            params: fields(params.values()),
            grid,
            when: When::Always,
            reads,
            writes,
        });
    }
}

/// The `Elementwise` parameters of `seq` rows of `n` elements; the others take the values the
/// entry points that do not read them expect (`grid_width` is the op's, set by
/// `Builder::elementwise`).
fn elementwise_params(seq: Expr, n: usize) -> ElementwiseParams<Expr> {
    ElementwiseParams {
        seq,
        n: c(n as u64),
        row0: c(0),
        rows: c(0),
        group: c(8),
        words_per_row: c(0),
        groups_per_row: c(0),
        act: c(0),
        scale: 1.0,
        cap: 0.0,
        grid_width: c(0),
        _pad: c(0),
    }
}
