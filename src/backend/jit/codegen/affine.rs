//! Physical addresses of logical indices in affine form (constant + sum of coefficient x
//! variable), so that codegen can hoist the variable part into base pointers and fold the
//! constant into the instruction's offset; and the accesses and variables of a loop body, which
//! decide what can be hoisted out of it.

use super::super::ir::*;
use std::collections::HashSet;

/// `constant + sum(coeff * var)`: a physical element offset. Terms are sorted by variable and
/// have non-zero coefficients (kernels have few variables per access, so a vector beats a map).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Affine {
    pub(super) terms: Vec<(VarId, i64)>,
    pub(super) constant: i64,
}

impl Affine {
    pub(super) fn constant(c: i64) -> Affine {
        Affine { terms: Vec::new(), constant: c }
    }

    pub(super) fn add(self, o: Affine) -> Affine {
        let mut terms = Vec::with_capacity(self.terms.len() + o.terms.len());
        let (mut a, mut b) = (self.terms.into_iter().peekable(), o.terms.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&(va, ca)), Some(&(vb, cb))) if va == vb => {
                    a.next();
                    b.next();
                    (va, ca + cb)
                }
                (Some(&(va, _)), Some(&(vb, _))) if va < vb => a.next().expect("peeked"),
                (Some(_), Some(_)) => b.next().expect("peeked"),
                (Some(_), None) => a.next().expect("peeked"),
                (None, Some(_)) => b.next().expect("peeked"),
                (None, None) => break,
            };
            if next.1 != 0 {
                terms.push(next);
            }
        }
        Affine { terms, constant: self.constant + o.constant }
    }

    fn scale(mut self, k: i64) -> Affine {
        if k == 0 {
            return Affine::constant(0);
        }
        for t in &mut self.terms {
            t.1 *= k;
        }
        self.constant *= k;
        self
    }

    /// Floor division by `d`, when exact on the variable part.
    fn div(&self, d: i64) -> Option<Affine> {
        self.terms.iter().all(|(_, c)| c % d == 0).then(|| Affine {
            terms: self.terms.iter().map(|&(v, c)| (v, c / d)).collect(),
            constant: self.constant.div_euclid(d),
        })
    }

    /// Remainder by `d`, when the variable part is a multiple of `d`.
    pub(super) fn rem(&self, d: i64) -> Option<Affine> {
        self.terms.iter().all(|(_, c)| c % d == 0).then(|| Affine::constant(self.constant.rem_euclid(d)))
    }
}

/// Affine form of `e`, if it has one (floor division and remainder by constants simplify when
/// the variable part is a multiple of the divisor).
pub(super) fn affine(e: &IExpr) -> Option<Affine> {
    match e {
        IExpr::Const(c) => Some(Affine::constant(*c)),
        IExpr::Var(v) => Some(Affine { terms: vec![(*v, 1)], constant: 0 }),
        IExpr::Add(a, b) => Some(affine(a)?.add(affine(b)?)),
        IExpr::Mul(a, b) => match (affine(a)?, affine(b)?) {
            (x, k) if k.terms.is_empty() => Some(x.scale(k.constant)),
            (k, x) if k.terms.is_empty() => Some(x.scale(k.constant)),
            _ => None,
        },
        IExpr::Div(a, d) => affine(a)?.div(*d),
        IExpr::Rem(a, d) => affine(a)?.rem(*d),
        IExpr::Min(..) | IExpr::Max(..) => None,
    }
}

/// The physical element offset of a logical index, in affine form, computed directly from the
/// index (no intermediate expression tree). `None` when it is not affine.
pub(super) fn physical_affine(layout: &Layout, index: &Index) -> Option<Affine> {
    match (layout, index) {
        (Layout::Blocked { h, w, halo, channel_offset, .. }, Index::Act([c, y, x])) => {
            let (hs, ws) = (*h as i64 + 2 * halo[0] as i64, *w as i64 + 2 * halo[1] as i64);
            let cc = affine(c)?.add(Affine::constant(*channel_offset as i64));
            let block = cc.div(4)?.scale(hs * ws * 4);
            let lane = cc.rem(4)?;
            let row = affine(y)?.add(Affine::constant(halo[0] as i64)).scale(ws * 4);
            let col = affine(x)?.add(Affine::constant(halo[1] as i64)).scale(4);
            Some(block.add(row).add(col).add(lane))
        }
        (Layout::Flat { .. }, Index::Flat(i)) => affine(i),
        _ => panic!("index kind does not match the buffer layout"),
    }
}

/// The physical element offset of a logical index, as an expression (the general path).
pub(super) fn physical(layout: &Layout, index: &Index) -> IExpr {
    match (layout, index) {
        (Layout::Blocked { h, w, halo, channel_offset, .. }, Index::Act([c, y, x])) => {
            let (hs, ws) = (*h as i64 + 2 * halo[0] as i64, *w as i64 + 2 * halo[1] as i64);
            let cc = c.clone() + *channel_offset as i64;
            cc.clone().div(4) * (hs * ws * 4)
                + (y.clone() + halo[0] as i64) * (ws * 4)
                + (x.clone() + halo[1] as i64) * 4
                + cc.rem(4)
        }
        (Layout::Flat { .. }, Index::Flat(i)) => i.clone(),
        _ => panic!("index kind does not match the buffer layout"),
    }
}

/// Logical index shifted by `lane` channels (vectors over an unaligned channel offset are
/// accessed lane by lane).
pub(super) fn lane_index(index: &Index, lane: i64) -> Index {
    match index {
        Index::Act([c, y, x]) => Index::Act([c.clone() + lane, y.clone(), x.clone()]),
        Index::Flat(i) => Index::Flat(i.clone() + lane),
    }
}

/// Every load and store in `stmts` outside conditional arms: (buffer, index, type).
pub(super) fn collect_accesses<'s>(stmts: &'s [Stmt], out: &mut Vec<(BufId, &'s Index, Ty)>) {
    fn fexpr<'s>(e: &'s FExpr, out: &mut Vec<(BufId, &'s Index, Ty)>) {
        match e {
            FExpr::Load(t, b, i) => out.push((*b, i, *t)),
            FExpr::Splat(a) | FExpr::Un(_, a) | FExpr::Lane(a, _) => fexpr(a, out),
            FExpr::Bin(_, a, b) | FExpr::Shuffle(a, b, _) => {
                fexpr(a, out);
                fexpr(b, out);
            }
            FExpr::Fma(a, b, c) => {
                fexpr(a, out);
                fexpr(b, out);
                fexpr(c, out);
            }
            // Loads under a condition stay where they are: they may be out of bounds.
            FExpr::Select(..) | FExpr::Const(_) | FExpr::Var(_) | FExpr::FromInt(_) => {}
        }
    }
    for s in stmts {
        match s {
            Stmt::For { body, .. } | Stmt::Tasks { body, .. } => collect_accesses(body, out),
            Stmt::Set { value, .. } => fexpr(value, out),
            Stmt::Broadcast { buf, index, .. } => out.push((*buf, index, Ty::F32)),
            Stmt::Store { ty, buf, index, value } => {
                out.push((*buf, index, *ty));
                fexpr(value, out);
            }
            Stmt::LetInt { .. } | Stmt::Comment(_) => {}
        }
    }
}

/// The integer variables `stmts` define (loop counters and lets).
pub(super) fn defined_in(stmts: &[Stmt]) -> HashSet<VarId> {
    let mut out = HashSet::new();
    for s in stmts {
        match s {
            Stmt::For { var, body, .. } | Stmt::Tasks { var, body, .. } => {
                out.insert(*var);
                out.extend(defined_in(body));
            }
            Stmt::LetInt { var, .. } => {
                out.insert(*var);
            }
            _ => {}
        }
    }
    out
}
