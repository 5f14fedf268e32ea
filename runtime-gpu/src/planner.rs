//! The memory planner: activations whose lifetimes (first write to last read, in op order) do
//! not overlap share a buffer when their sizes are symbolically comparable (one bounds the other
//! for every `seq`, `past`, `out`). Buffers are sized at the symbols' bounds.

use crate::shape::{Expr, Poly, Syms};

/// One activation to place.
#[derive(Clone, Debug)]
pub struct Activation {
    pub name: String,
    /// Size in f32 elements.
    pub elems: Expr,
    /// First and last op index that touches it.
    pub first: usize,
    pub last: usize,
}

/// Where each activation lives.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// Activation index → buffer index.
    pub assignment: Vec<usize>,
    /// Buffer sizes in bytes at the bounds.
    pub buffer_bytes: Vec<u64>,
    /// Bytes with sharing.
    pub planned_bytes: u64,
    /// Bytes with one buffer per activation.
    pub naive_bytes: u64,
}

/// Assigns buffers greedily in order of first use, preferring the closest-sized free buffer.
/// `None` when a size at the bounds overflows 64 bits (bounds no device could take).
pub fn plan(acts: &[Activation], bound: &Syms) -> Option<MemoryPlan> {
    let sizes: Vec<u64> = acts
        .iter()
        .map(|a| a.elems.checked_eval(bound)?.checked_mul(4))
        .collect::<Option<_>>()?;
    let mut order: Vec<usize> = (0..acts.len()).collect();
    order.sort_by_key(|&i| (acts[i].first, acts[i].last));
    struct Slot {
        poly: Option<Poly>,
        bytes: u64,
        last: usize,
    }
    let mut slots: Vec<Slot> = Vec::new();
    let mut assignment = vec![0; acts.len()];
    for i in order {
        let a = &acts[i];
        let bytes = sizes[i];
        let poly = a.elems.poly();
        let candidate = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.last < a.first)
            .filter(|(_, s)| match (&s.poly, &poly) {
                (Some(x), Some(y)) => x.comparable(y),
                _ => false,
            })
            .min_by_key(|(_, s)| s.bytes.abs_diff(bytes))
            .map(|(j, _)| j);
        match candidate {
            Some(j) => {
                let s = &mut slots[j];
                let p = poly.expect("comparable implies a polynomial");
                if s.poly.as_ref().is_some_and(|q| q.le(&p)) {
                    s.poly = Some(p);
                }
                s.bytes = s.bytes.max(bytes);
                s.last = a.last;
                assignment[i] = j;
            }
            None => {
                assignment[i] = slots.len();
                slots.push(Slot {
                    poly,
                    bytes,
                    last: a.last,
                });
            }
        }
    }
    let buffer_bytes: Vec<u64> = slots.iter().map(|s| s.bytes).collect();
    let sum = |v: &[u64]| v.iter().try_fold(0u64, |t, &b| t.checked_add(b));
    Some(MemoryPlan {
        assignment,
        planned_bytes: sum(&buffer_bytes)?,
        naive_bytes: sum(&sizes)?,
        buffer_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::c;

    fn act(name: &str, elems: Expr, first: usize, last: usize) -> Activation {
        Activation {
            name: name.into(),
            elems,
            first,
            last,
        }
    }

    #[test]
    fn disjoint_comparable_tensors_share() {
        let bound = Syms {
            seq: 512,
            past: 0,
            out: 1,
        };
        let acts = vec![
            act("a", Expr::Seq * 64usize, 0, 1),
            act("b", Expr::Seq * 128usize, 2, 3),
            act("c", Expr::Seq * 64usize, 1, 2),
            act("d", (Expr::Past + Expr::Seq).ceil_div(c(2)), 4, 5),
        ];
        let p = plan(&acts, &bound).unwrap();
        assert_eq!(
            p.assignment[0], p.assignment[1],
            "a and b are disjoint and comparable"
        );
        assert_ne!(p.assignment[0], p.assignment[2], "a and c overlap");
        assert_ne!(
            p.assignment[3], p.assignment[0],
            "a non-polynomial size is never shared"
        );
        assert_eq!(p.buffer_bytes[p.assignment[0]], 512 * 128 * 4);
        assert!(p.planned_bytes < p.naive_bytes);
    }

    #[test]
    fn incomparable_sizes_do_not_share() {
        let bound = Syms {
            seq: 8,
            past: 100,
            out: 1,
        };
        let acts = vec![
            act("s", Expr::Seq * 1000usize, 0, 0),
            act("p", Expr::Past * 10usize, 1, 1),
        ];
        let p = plan(&acts, &bound).unwrap();
        assert_ne!(p.assignment[0], p.assignment[1]);
    }

    #[test]
    fn overflowing_bounds_are_none() {
        let bound = Syms {
            seq: u64::MAX / 2,
            past: 0,
            out: 1,
        };
        assert!(plan(&[act("s", Expr::Seq * 64usize, 0, 0)], &bound).is_none());
    }
}
