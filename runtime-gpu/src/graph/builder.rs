//! The plan under construction: activations, ops, and the helpers every op family shares
//! (the M0E4 row layout of the parameters, 1-D grids, weight parts).

use tlite_model::arch::{Arch, NormStyle};
use tlite_model::config::ModelConfig;
use tlite_model::deploy::{Manifest, TensorLayout};
use tlite_quantizer::M0E4Matrix;

use super::decision::{self, Layouts, Limits};
use super::join::Joined;
use super::{BufRef, MAX_GRID, Op};
use crate::Result;
use crate::shape::{Expr, c};

pub(super) struct Builder<'a> {
    pub cfg: &'a ModelConfig,
    pub arch: &'static Arch,
    pub layouts: Layouts<'a>,
    pub limits: Limits,
    /// Positions of the KV cache.
    pub max_seq: usize,
    pub ops: Vec<Op>,
    pub acts: Vec<(String, Expr)>,
    /// The residual stream (`[seq, hidden]`), the first activation.
    pub residual: usize,
    /// Each layer's projection of q, k and v together, where it has one ([`super::join`]).
    pub qkv: Vec<Option<tlite_model::layer::Proj>>,
}

impl<'a> Builder<'a> {
    /// An empty plan of `man`'s model with its residual stream; `joined` are the weights the
    /// load joins and `qkv` each layer's q/k/v projection over them ([`super::join`]).
    pub fn new(
        man: &'a Manifest,
        (joined, qkv): (&'a [Joined], Vec<Option<tlite_model::layer::Proj>>),
        limits: Limits,
        max_seq: usize,
    ) -> Self {
        let cfg = &man.config;
        let stored = man.tensors.iter();
        let mut b = Builder {
            cfg,
            arch: cfg.arch(),
            layouts: (stored.chain(joined.iter().map(|j| &j.layout)))
                .map(|t| (t.name.as_str(), t))
                .collect(),
            limits,
            max_seq,
            ops: Vec::new(),
            acts: Vec::new(),
            residual: 0,
            qkv,
        };
        b.residual = b.act("residual".into(), Expr::Seq * cfg.hidden_size);
        b
    }

    /// A new activation of `elems` f32 elements.
    pub fn act(&mut self, name: String, elems: Expr) -> usize {
        self.acts.push((name, elems));
        self.acts.len() - 1
    }

    pub fn layout(&self, name: &str) -> Result<&'a TensorLayout> {
        decision::layout(&self.layouts, name)
    }

    pub fn push(&mut self, op: Op) {
        debug_assert_eq!(op.params.len(), op.kernel.members().len(), "{}", op.label);
        self.ops.push(op);
    }

    /// `w_offset` of this architecture's norms (Gemma's `1 + w`).
    pub fn norm_offset(&self) -> f32 {
        if self.arch.norm == NormStyle::OnePlusWeight {
            1.0
        } else {
            0.0
        }
    }
}

/// The M0E4 row layout of a matrix with `k` columns in groups of `group`: the parameters
/// `[group, words_per_row, groups_per_row]`.
pub(super) fn m0e4_row(k: usize, group: usize) -> [Expr; 3] {
    [
        c(group as u64),
        c(M0E4Matrix::words_per_row(k) as u64),
        c(M0E4Matrix::groups_per_row(k, group) as u64),
    ]
}

/// Part `part` of chunk `chunk` of `tensor`.
pub(super) fn part(tensor: &str, chunk: usize, part: usize) -> BufRef {
    BufRef::Part {
        tensor: tensor.to_owned(),
        chunk,
        part,
    }
}

/// Part `part` of the first (for biases and norms: the only) chunk of `tensor`.
pub(super) fn first_chunk(tensor: &str, p: usize) -> BufRef {
    part(tensor, 0, p)
}

/// A grid of `n` workgroups and its width: x = min(n, MAX_GRID), y = ⌈n / MAX_GRID⌉; kernels
/// linearize as x + y · grid_width.
pub(super) fn grid_1d(n: Expr) -> ([Expr; 3], Expr) {
    let x = n.clone().min(c(MAX_GRID));
    ([x.clone(), n.ceil_div(c(MAX_GRID)), c(1)], x)
}
