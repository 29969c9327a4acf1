//! Loops: the hoisting of loop-invariant base pointers and the induction pointers of bases
//! that move with the loop variable alone, around the loop's blocks.

use super::super::ir::*;
use super::Gen;
use super::affine::{collect_accesses, defined_in, lane_index, physical_affine};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{InstBuilder, Value};
use cranelift_frontend::Variable;
use std::collections::{HashMap, HashSet};

/// Induction pointers per loop at most: each holds a register across the loop, and the
/// register-blocked reductions need two (weights and input).
const MAX_INDUCTIONS: usize = 4;

/// A base pointer that moves by `step` bytes per iteration of its loop.
struct Induction {
    key: (BufId, Vec<(VarId, i64)>),
    var: Variable,
    step: i64,
}

impl Gen<'_, '_> {
    /// Emits, before a loop, the base pointers its body needs that do not change inside it, and
    /// an induction pointer for each base that moves with the loop variable alone (its other
    /// variables invariant): set to the base at `start` here, stepped by a constant at the end
    /// of each iteration. The reduction loops thus do no multiplications for their addresses:
    /// recomputing every term of such a base on each iteration cost integer multiplies on the
    /// port that also issues FMAs (llvm-mca on a 1x1 convolution's loop: 5 `imul` per step).
    fn hoist(&mut self, body: &[Stmt], loop_var: VarId, start: Value) -> Vec<Induction> {
        let mut accesses = Vec::new();
        collect_accesses(body, &mut accesses);
        let inner = defined_in(body);
        let mut seen: HashSet<(BufId, Vec<(VarId, i64)>)> = HashSet::new();
        let mut inductions = Vec::new();
        for (buf, index, ty) in accesses {
            let layout = &self.k.buffers[buf].layout;
            let lanes = if ty == Ty::F32x4 && !self.vector_aligned(buf, index) { 4 } else { 1 };
            for lane in 0..lanes {
                let a = if lanes == 1 {
                    physical_affine(layout, index)
                } else {
                    physical_affine(layout, &lane_index(index, lane))
                };
                let Some(a) = a else { continue };
                let others: Vec<(VarId, i64)> = a.terms.iter().copied().filter(|(v, _)| *v != loop_var).collect();
                let invariant = others.iter().all(|(v, _)| !inner.contains(v) && self.defined.contains(v));
                if !invariant || !seen.insert((buf, a.terms.clone())) {
                    continue;
                }
                if others.len() == a.terms.len() {
                    self.base(buf, &others);
                } else if inductions.len() < MAX_INDUCTIONS {
                    let base = self.base(buf, &others);
                    let step = a.terms.iter().find(|(v, _)| *v == loop_var).map_or(0, |t| t.1) * 4;
                    let offset = self.b.ins().imul_imm_s(start, step);
                    let first = self.b.ins().iadd(base, offset);
                    let var = self.b.declare_var(I64);
                    self.b.def_var(var, first);
                    inductions.push(Induction { key: (buf, a.terms.clone()), var, step });
                }
            }
        }
        inductions
    }

    pub(super) fn emit_loop(&mut self, var: VarId, start: Value, end: Value, body: &[Stmt]) {
        let inductions = self.hoist(body, var, start);
        self.define_int(var, start);
        let header = self.b.create_block();
        let body_block = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(self.ints[&var]);
        let go = self.b.ins().icmp(IntCC::SignedLessThan, i, end);
        self.b.ins().brif(go, body_block, &[], exit, &[]);
        self.b.switch_to_block(body_block);
        self.b.seal_block(body_block);
        let mut scope = HashMap::new();
        for ind in &inductions {
            scope.insert(ind.key.clone(), self.b.use_var(ind.var));
        }
        self.scopes.push(scope);
        self.stmts(body);
        self.scopes.pop();
        for ind in &inductions {
            let p = self.b.use_var(ind.var);
            let next = self.b.ins().iadd_imm_s(p, ind.step);
            self.b.def_var(ind.var, next);
        }
        let i = self.b.use_var(self.ints[&var]);
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(self.ints[&var], next);
        self.b.ins().jump(header, &[]);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
    }
}
