//! Symbolic shapes: expressions over the step's symbols `seq` (new tokens), `past` (cached
//! tokens) and `out` (positions that produce logits). Derived once when a model is loaded;
//! each step binds the symbols and evaluates every expression on the CPU (integer work only).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, Mul};

/// Values of the symbols for one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syms {
    pub seq: u64,
    pub past: u64,
    pub out: u64,
}

/// An integer expression over the symbols.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    C(u64),
    Seq,
    Past,
    Out,
    Add(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    CeilDiv(Box<Expr>, Box<Expr>),
    FloorDiv(Box<Expr>, Box<Expr>),
    Min(Box<Expr>, Box<Expr>),
    Max(Box<Expr>, Box<Expr>),
    /// `a` when `seq == 1` (decode), else `b` (prefill).
    Decode(Box<Expr>, Box<Expr>),
}

pub fn c(v: u64) -> Expr {
    Expr::C(v)
}

impl Expr {
    pub fn ceil_div(self, d: impl Into<Expr>) -> Expr {
        Expr::CeilDiv(Box::new(self), Box::new(d.into()))
    }
    pub fn floor_div(self, d: impl Into<Expr>) -> Expr {
        Expr::FloorDiv(Box::new(self), Box::new(d.into()))
    }
    pub fn min(self, o: impl Into<Expr>) -> Expr {
        Expr::Min(Box::new(self), Box::new(o.into()))
    }
    pub fn max(self, o: impl Into<Expr>) -> Expr {
        Expr::Max(Box::new(self), Box::new(o.into()))
    }
    pub fn decode_or(decode: Expr, prefill: Expr) -> Expr {
        Expr::Decode(Box::new(decode), Box::new(prefill))
    }

    pub fn eval(&self, s: &Syms) -> u64 {
        match self {
            Expr::C(v) => *v,
            Expr::Seq => s.seq,
            Expr::Past => s.past,
            Expr::Out => s.out,
            Expr::Add(a, b) => a.eval(s) + b.eval(s),
            Expr::Mul(a, b) => a.eval(s) * b.eval(s),
            Expr::CeilDiv(a, b) => a.eval(s).div_ceil(b.eval(s).max(1)),
            Expr::FloorDiv(a, b) => a.eval(s) / b.eval(s).max(1),
            Expr::Min(a, b) => a.eval(s).min(b.eval(s)),
            Expr::Max(a, b) => a.eval(s).max(b.eval(s)),
            Expr::Decode(a, b) => {
                if s.seq == 1 {
                    a.eval(s)
                } else {
                    b.eval(s)
                }
            }
        }
    }

    /// [`Self::eval`] with overflow reported as `None` (sizes at user-chosen bounds).
    pub fn checked_eval(&self, s: &Syms) -> Option<u64> {
        Some(match self {
            Expr::C(v) => *v,
            Expr::Seq => s.seq,
            Expr::Past => s.past,
            Expr::Out => s.out,
            Expr::Add(a, b) => a.checked_eval(s)?.checked_add(b.checked_eval(s)?)?,
            Expr::Mul(a, b) => a.checked_eval(s)?.checked_mul(b.checked_eval(s)?)?,
            Expr::CeilDiv(a, b) => a.checked_eval(s)?.div_ceil(b.checked_eval(s)?.max(1)),
            Expr::FloorDiv(a, b) => a.checked_eval(s)? / b.checked_eval(s)?.max(1),
            Expr::Min(a, b) => a.checked_eval(s)?.min(b.checked_eval(s)?),
            Expr::Max(a, b) => a.checked_eval(s)?.max(b.checked_eval(s)?),
            Expr::Decode(a, b) => {
                if s.seq == 1 {
                    a.checked_eval(s)?
                } else {
                    b.checked_eval(s)?
                }
            }
        })
    }

    /// The polynomial of a sum-of-products expression (sizes), for symbolic comparison.
    pub fn poly(&self) -> Option<Poly> {
        Some(match self {
            Expr::C(v) => Poly::monomial([0, 0, 0], *v),
            Expr::Seq => Poly::monomial([1, 0, 0], 1),
            Expr::Past => Poly::monomial([0, 1, 0], 1),
            Expr::Out => Poly::monomial([0, 0, 1], 1),
            Expr::Add(a, b) => a.poly()?.add(&b.poly()?),
            Expr::Mul(a, b) => a.poly()?.mul(&b.poly()?),
            _ => return None,
        })
    }
}

impl From<u64> for Expr {
    fn from(v: u64) -> Expr {
        Expr::C(v)
    }
}

impl From<usize> for Expr {
    fn from(v: usize) -> Expr {
        Expr::C(v as u64)
    }
}

impl<T: Into<Expr>> Add<T> for Expr {
    type Output = Expr;
    fn add(self, o: T) -> Expr {
        Expr::Add(Box::new(self), Box::new(o.into()))
    }
}

impl<T: Into<Expr>> Mul<T> for Expr {
    type Output = Expr;
    fn mul(self, o: T) -> Expr {
        Expr::Mul(Box::new(self), Box::new(o.into()))
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::C(v) => write!(f, "{v}"),
            Expr::Seq => f.write_str("seq"),
            Expr::Past => f.write_str("past"),
            Expr::Out => f.write_str("out"),
            Expr::Add(a, b) => write!(f, "({a} + {b})"),
            Expr::Mul(a, b) => write!(f, "{a}·{b}"),
            Expr::CeilDiv(a, b) => write!(f, "⌈{a}/{b}⌉"),
            Expr::FloorDiv(a, b) => write!(f, "⌊{a}/{b}⌋"),
            Expr::Min(a, b) => write!(f, "min({a}, {b})"),
            Expr::Max(a, b) => write!(f, "max({a}, {b})"),
            Expr::Decode(a, b) => write!(f, "(seq = 1 ? {a} : {b})"),
        }
    }
}

/// A polynomial with non-negative coefficients in `seq`, `past`, `out` (all ≥ 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Poly(BTreeMap<[u32; 3], u64>);

impl Poly {
    fn monomial(pow: [u32; 3], coeff: u64) -> Poly {
        let mut m = BTreeMap::new();
        if coeff != 0 {
            m.insert(pow, coeff);
        }
        Poly(m)
    }

    fn add(&self, o: &Poly) -> Poly {
        let mut m = self.0.clone();
        for (k, v) in &o.0 {
            *m.entry(*k).or_insert(0) += v;
        }
        Poly(m)
    }

    fn mul(&self, o: &Poly) -> Poly {
        let mut m = BTreeMap::new();
        for (a, x) in &self.0 {
            for (b, y) in &o.0 {
                *m.entry([a[0] + b[0], a[1] + b[1], a[2] + b[2]])
                    .or_insert(0) += x * y;
            }
        }
        Poly(m)
    }

    /// `self ≤ other` for every value of the symbols: each coefficient is no larger.
    pub fn le(&self, other: &Poly) -> bool {
        self.0
            .iter()
            .all(|(k, v)| other.0.get(k).is_some_and(|w| v <= w))
    }

    /// Whether one of the two bounds the other everywhere.
    pub fn comparable(&self, other: &Poly) -> bool {
        self.le(other) || other.le(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The combine pass's grid (graph/attention.rs): 0 with one split of the keys, 1 with more.
    #[test]
    fn floor_div_rounds_down_and_a_zero_divisor_counts_as_one() {
        let splits = (Expr::Past + 1u64).ceil_div(c(32)).min(c(32));
        let one_if_split = splits.min(c(2)).floor_div(c(2));
        for (past, want) in [(0, 0), (31, 0), (32, 1), (100, 1), (5000, 1)] {
            let s = Syms {
                seq: 1,
                past,
                out: 0,
            };
            assert_eq!(one_if_split.eval(&s), want, "past {past}");
            assert_eq!(one_if_split.checked_eval(&s), Some(want), "past {past}");
        }
        let s = Syms {
            seq: 7,
            past: 0,
            out: 0,
        };
        assert_eq!(Expr::Seq.floor_div(c(2)).eval(&s), 3);
        assert_eq!(Expr::Seq.floor_div(c(0)).eval(&s), 7);
        assert_eq!(Expr::Seq.floor_div(c(2)).to_string(), "⌊seq/2⌋");
        assert!(Expr::Seq.floor_div(c(2)).poly().is_none());
    }
}
