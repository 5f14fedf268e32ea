//! RMSNorm ops: of the residual before attention and the MLP, per head (QK-norm), of a
//! projection's output added into the residual (sandwich norms), and of the chosen positions
//! before the LM head.

use super::builder::{Builder, first_chunk, grid_1d};
use super::{BufRef, Op, When, fields};
use crate::kernels::Kernel;
use crate::kernels::params::NormParams;
use crate::kernels::params::binding::norm as bind;
use crate::shape::{Expr, c};

/// What an RMSNorm op reads and writes.
#[derive(Clone, Copy, Debug)]
pub(super) enum NormIo {
    /// `y = norm(x)`.
    From(usize),
    /// `y += norm(x)`.
    AddFrom(usize),
    /// `y = norm(y)`.
    InPlace,
    /// `y = norm(x)` of the logit rows of `x` only.
    Gather(usize),
}

/// An RMSNorm of `rows` rows of length `n` with weight `weight` into `y`.
pub(super) struct NormOp<'a> {
    pub label: String,
    pub io: NormIo,
    pub y: usize,
    pub weight: &'a str,
    pub rows: Expr,
    pub n: usize,
    pub when: When,
    /// `y` in f16 (`rmsnorm_h`; [`NormIo::From`] only).
    pub half: bool,
}

impl Builder<'_> {
    /// Pushes the RMSNorm `op`.
    pub fn norm(&mut self, op: NormOp) {
        let NormOp {
            label,
            io,
            y,
            weight,
            rows,
            n,
            when,
            half,
        } = op;
        let (grid, gw) = grid_1d(rows.clone());
        let mut bindings = vec![(bind::Y, BufRef::Act(y)), (bind::W, first_chunk(weight, 0))];
        let (add, gather) = (
            matches!(io, NormIo::AddFrom(_)),
            matches!(io, NormIo::Gather(_)),
        );
        let (entry, reads) = match io {
            NormIo::From(x) if half => {
                bindings[0] = (bind::Y_H, BufRef::Act(y));
                bindings.push((bind::X, BufRef::Act(x)));
                ("rmsnorm_h", vec![x])
            }
            NormIo::From(x) | NormIo::AddFrom(x) | NormIo::Gather(x) => {
                bindings.push((bind::X, BufRef::Act(x)));
                bindings.push((bind::ROWS, BufRef::LogitRows));
                ("rmsnorm", if add { vec![x, y] } else { vec![x] })
            }
            NormIo::InPlace => ("rmsnorm_inplace", vec![y]),
        };
        let flag = |b: bool| c(u64::from(b));
        let params = NormParams {
            rows,
            n: c(n as u64),
            mode: flag(add),
            gather: flag(gather),
            eps: self.cfg.rms_norm_eps as f32,
            w_offset: self.norm_offset(),
            grid_width: gw,
            _pad: c(0),
        };
        self.push(Op {
            label,
            kernel: Kernel::Norm,
            entry,
            bindings,
            params: fields(params.values()),
            grid,
            when,
            reads,
            writes: vec![y],
        });
    }
}
