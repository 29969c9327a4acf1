//! Loop IR -> Cranelift IR. Generic over kernels: it compiles loops, lets, loads, stores and float
//! arithmetic, and knows nothing of convolutions.
//!
//! Addresses: every access's physical element offset is put in affine form (constant + sum of
//! coefficient x variable), with floor division and remainder by constants simplified where the
//! coefficients allow. The variable part becomes a base pointer, computed once in the outermost
//! scope where its variables are defined (loop-invariant bases are hoisted before the loop; a
//! base that moves with the loop variable alone becomes an induction pointer, stepped by a
//! constant each iteration); the constant part becomes the instruction's immediate offset.
//! Unrolled register-blocked code thus loads with `[base + imm]`, and its reduction loop's only
//! address arithmetic is one add per pointer.
//!
//! Signature of every kernel: `fn(buffers: *const *mut f32, task_begin: i64, task_end: i64)`.

mod affine;
mod checked;
mod loops;

use super::ir::*;
use affine::{Affine, affine, lane_index, physical, physical_affine};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, I8X16, I64};
use cranelift_codegen::ir::{
    AbiParam, ConstantData, Endianness, Function, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind,
    UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetIsa};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::collections::{HashMap, HashSet};

pub fn kernel_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.push(AbiParam::new(I64));
    sig.params.push(AbiParam::new(I64));
    sig.params.push(AbiParam::new(I64));
    sig
}

fn flags() -> MemFlagsData {
    let mut f = MemFlagsData::new();
    f.set_notrap();
    f
}

pub(super) struct Gen<'a, 'b> {
    b: FunctionBuilder<'b>,
    k: &'a Kernel,
    bufs_ptr: Value,
    buf_ptrs: HashMap<BufId, Value>,
    ints: HashMap<VarId, Variable>,
    floats: HashMap<VarId, (Variable, Ty)>,
    defined: HashSet<VarId>,
    /// Memoised base pointers per scope: (buffer, variable terms) -> value.
    scopes: Vec<HashMap<(BufId, Vec<(VarId, i64)>), Value>>,
    task_begin: Value,
    task_end: Value,
    /// The address of the math functions' constants (`mathfn::table_address`), the pointer
    /// table's first entry.
    consts: Value,
    /// In bounds-checked mode: the error slot (`[buffer + 1, byte offset]` of the first access
    /// found outside its buffer), the entry after the buffers in the pointer table.
    check_slot: Option<Value>,
}

/// Cranelift IR of `k`. With `checked`, every load and store is first compared with its
/// buffer's extent; one outside it is skipped (a load gives 0) and recorded in the error slot.
pub fn build_function(k: &Kernel, isa: &dyn TargetIsa, fctx: &mut FunctionBuilderContext, checked: bool) -> Function {
    let mut func = Function::with_name_signature(UserFuncName::user(0, 0), kernel_signature(isa.default_call_conv()));
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let params = b.block_params(entry).to_vec();
    // The pointer table's first entry. Loaded, not an immediate: Cranelift would materialise an
    // immediate again at every use.
    let consts = b.ins().load(I64, flags(), params[0], 0);
    let mut g = Gen {
        b,
        k,
        bufs_ptr: params[0],
        buf_ptrs: HashMap::new(),
        ints: HashMap::new(),
        floats: HashMap::new(),
        defined: HashSet::new(),
        scopes: vec![HashMap::new()],
        task_begin: params[1],
        task_end: params[2],
        consts,
        check_slot: None,
    };
    // Buffer pointers are loaded once, in the entry block, which dominates every use; stack
    // buffers get a slot in the frame.
    for (i, buf) in k.buffers.iter().enumerate() {
        let v = if buf.stack {
            let bytes = u32::try_from(buf.elements() * 4).expect("stack buffers are small");
            let slot = g.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 4));
            g.b.ins().stack_addr(I64, slot, 0)
        } else {
            g.b.ins().load(I64, flags(), g.bufs_ptr, ((i + 1) * 8) as i32)
        };
        g.buf_ptrs.insert(i, v);
    }
    if checked {
        g.check_slot = Some(g.b.ins().load(I64, flags(), g.bufs_ptr, ((k.buffers.len() + 1) * 8) as i32));
    }
    g.stmts(&k.body);
    g.b.ins().return_(&[]);
    g.b.finalize(isa.frontend_config());
    func
}

impl Gen<'_, '_> {
    /// Assigns `v` to float variable `var` (declared on its first assignment).
    fn def_float(&mut self, var: VarId, ty: Ty, v: Value) {
        let fvar = match self.floats.get(&var) {
            Some(&(f, _)) => f,
            None => {
                let f = self.b.declare_var(if ty == Ty::F32x4 { F32X4 } else { F32 });
                self.floats.insert(var, (f, ty));
                f
            }
        };
        self.b.def_var(fvar, v);
    }

    fn buf_ptr(&mut self, buf: BufId) -> Value {
        *self.buf_ptrs.get(&buf).unwrap_or_else(|| panic!("kernel `{}` uses undeclared buffer {buf}", self.k.name))
    }

    fn int(&mut self, e: &IExpr) -> Value {
        match e {
            IExpr::Const(c) => self.b.ins().iconst(I64, *c),
            IExpr::Var(v) => {
                let var = *self.ints.get(v).unwrap_or_else(|| panic!("integer variable {v} used before definition"));
                self.b.use_var(var)
            }
            IExpr::Add(a, c) => {
                let (x, y) = (self.int(a), self.int(c));
                self.b.ins().iadd(x, y)
            }
            IExpr::Mul(a, c) => {
                if let IExpr::Const(k) = **c {
                    let x = self.int(a);
                    return self.b.ins().imul_imm_s(x, k);
                }
                let (x, y) = (self.int(a), self.int(c));
                self.b.ins().imul(x, y)
            }
            IExpr::Div(a, d) | IExpr::Rem(a, d) if *d > 0 && (*d as u64).is_power_of_two() => {
                // Floor division and remainder by 2^k are a shift and a mask in two's complement
                // (Cranelift at opt_level none would emit `idiv`, ~40 cycles).
                let x = self.int(a);
                if matches!(e, IExpr::Div(..)) {
                    self.b.ins().sshr_imm_s(x, d.trailing_zeros() as i64)
                } else {
                    self.b.ins().band_imm_s(x, *d - 1)
                }
            }
            IExpr::Div(a, d) | IExpr::Rem(a, d) if *d > 0 => {
                // Floor division by a constant as a multiply by its reciprocal (Granlund and
                // Montgomery, 1994, theorem 4.2: for 0 <= x < 2^63 and 2^(l-1) < d < 2^l,
                // m = ceil(2^(63+l) / d) < 2^64 gives floor(x / d) = umulhi(x, m) >> (l - 1)).
                // A negative numerator goes through x = -a - 1 = a ^ (a >> 63), whose quotient
                // q' gives floor(a / d) = -1 - q' = q' ^ (a >> 63). (`idiv` takes 15 to 40
                // cycles, and a task's channel and row were two of each.)
                let a = self.int(a);
                let (m, shift) = reciprocal(*d);
                let sign = self.b.ins().sshr_imm_s(a, 63);
                let x = self.b.ins().bxor(a, sign);
                let m = self.b.ins().iconst(I64, m as i64);
                let h = self.b.ins().umulhi(x, m);
                let q = self.b.ins().ushr_imm_s(h, shift as i64);
                let q = self.b.ins().bxor(q, sign);
                if matches!(e, IExpr::Div(..)) {
                    q
                } else {
                    let qd = self.b.ins().imul_imm_s(q, *d);
                    self.b.ins().isub(a, qd)
                }
            }
            IExpr::Div(a, d) | IExpr::Rem(a, d) => {
                let x = self.int(a);
                let dv = self.b.ins().iconst(I64, *d);
                let q = self.b.ins().sdiv(x, dv);
                let r = self.b.ins().srem(x, dv);
                // Floor semantics for negative numerators.
                let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, r, 0);
                if matches!(e, IExpr::Div(..)) {
                    let q1 = self.b.ins().iadd_imm_s(q, -1);
                    self.b.ins().select(neg, q1, q)
                } else {
                    let r1 = self.b.ins().iadd_imm_s(r, *d);
                    self.b.ins().select(neg, r1, r)
                }
            }
            IExpr::Min(a, c) => {
                let (x, y) = (self.int(a), self.int(c));
                self.b.ins().smin(x, y)
            }
            IExpr::Max(a, c) => {
                let (x, y) = (self.int(a), self.int(c));
                self.b.ins().smax(x, y)
            }
        }
    }

    /// Base pointer for the variable part of an affine access, memoised per scope.
    fn base(&mut self, buf: BufId, terms: &[(VarId, i64)]) -> Value {
        let key = (buf, terms.to_vec());
        for scope in self.scopes.iter().rev() {
            if let Some(&v) = scope.get(&key) {
                return v;
            }
        }
        let mut acc = self.buf_ptr(buf);
        for &(v, c) in terms {
            let x = self.int(&IExpr::Var(v));
            let scaled = self.b.ins().imul_imm_s(x, c * 4);
            acc = self.b.ins().iadd(acc, scaled);
        }
        self.scopes.last_mut().expect("a scope").insert(key, acc);
        acc
    }

    /// (pointer, byte offset) of one element.
    fn address(&mut self, buf: BufId, index: &Index) -> (Value, i32) {
        let layout = &self.k.buffers[buf].layout;
        match physical_affine(layout, index) {
            Some(a) if (a.constant * 4).abs() < i32::MAX as i64 => (self.base(buf, &a.terms), (a.constant * 4) as i32),
            _ => {
                let phys = physical(layout, index);
                let off = self.int(&phys);
                let bytes = self.b.ins().imul_imm_s(off, 4);
                let p = self.buf_ptr(buf);
                (self.b.ins().iadd(p, bytes), 0)
            }
        }
    }

    /// Whether a vector access can be done as one 16-byte load or store (lane 0 of a block).
    fn vector_aligned(&self, buf: BufId, index: &Index) -> bool {
        match (&self.k.buffers[buf].layout, index) {
            (Layout::Blocked { channel_offset, .. }, Index::Act([c, _, _])) => {
                let cc = affine(c).map(|a| a.add(Affine::constant(*channel_offset as i64)));
                matches!(cc.and_then(|a| a.rem(4)), Some(r) if r.constant == 0)
            }
            _ => true,
        }
    }

    fn load(&mut self, ty: Ty, buf: BufId, index: &Index) -> Value {
        match ty {
            Ty::F32 => {
                let (p, off) = self.address(buf, index);
                self.raw_load(buf, F32, p, off)
            }
            Ty::F32x4 if self.vector_aligned(buf, index) => {
                let (p, off) = self.address(buf, index);
                self.raw_load(buf, F32X4, p, off)
            }
            Ty::F32x4 => {
                let zero = self.b.ins().f32const(0.0);
                let mut v = self.b.ins().splat(F32X4, zero);
                for lane in 0..4u8 {
                    let (p, off) = self.address(buf, &lane_index(index, lane as i64));
                    let s = self.raw_load(buf, F32, p, off);
                    v = self.b.ins().insertlane(v, s, lane);
                }
                v
            }
        }
    }

    fn store(&mut self, ty: Ty, buf: BufId, index: &Index, value: Value) {
        match ty {
            Ty::F32x4 if !self.vector_aligned(buf, index) => {
                for lane in 0..4u8 {
                    let s = self.b.ins().extractlane(value, lane);
                    let (p, off) = self.address(buf, &lane_index(index, lane as i64));
                    self.raw_store(buf, s, p, off);
                }
            }
            _ => {
                let (p, off) = self.address(buf, index);
                self.raw_store(buf, value, p, off);
            }
        }
    }

    fn cond(&mut self, c: &Cond) -> Value {
        match c {
            Cond::InRange(e, lo, hi) => {
                let (x, l, h) = (self.int(e), self.int(lo), self.int(hi));
                let a = self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, x, l);
                let b = self.b.ins().icmp(IntCC::SignedLessThan, x, h);
                self.b.ins().band(a, b)
            }
            Cond::And(a, b) => {
                let (x, y) = (self.cond(a), self.cond(b));
                self.b.ins().band(x, y)
            }
        }
    }

    fn ty_of(&self, e: &FExpr) -> Ty {
        match e {
            FExpr::Const(_) | FExpr::FromInt(_) | FExpr::Lane(..) => Ty::F32,
            FExpr::Splat(_) | FExpr::Shuffle(..) => Ty::F32x4,
            FExpr::Var(v) => self.floats.get(v).map_or(Ty::F32, |&(_, t)| t),
            FExpr::Load(t, ..) => *t,
            FExpr::Un(_, a) | FExpr::Bin(_, a, _) | FExpr::Fma(a, _, _) | FExpr::Select(_, a, _) => self.ty_of(a),
        }
    }

    fn float(&mut self, e: &FExpr) -> Value {
        match e {
            FExpr::Const(c) => self.b.ins().f32const(*c),
            FExpr::Splat(a) => {
                let x = self.float(a);
                self.b.ins().splat(F32X4, x)
            }
            FExpr::Var(v) => {
                let (var, _) =
                    *self.floats.get(v).unwrap_or_else(|| panic!("float variable {v} used before definition"));
                self.b.use_var(var)
            }
            FExpr::Load(ty, buf, index) => self.load(*ty, *buf, index),
            FExpr::Un(op, a) => {
                let ty = self.ty_of(a);
                let x = self.float(a);
                match op {
                    UnOp::Sqrt => self.b.ins().sqrt(x),
                    _ => {
                        let v = if ty == Ty::F32 { self.b.ins().splat(F32X4, x) } else { x };
                        let r = self.math(*op, &[v])[0];
                        if ty == Ty::F32 { self.b.ins().extractlane(r, 0) } else { r }
                    }
                }
            }
            FExpr::Bin(op, a, c) => {
                let (x, y) = (self.float(a), self.float(c));
                self.bin(*op, x, y)
            }
            FExpr::Fma(a, c, d) => {
                let (x, y, z) = (self.float(a), self.float(c), self.float(d));
                self.b.ins().fma(x, y, z)
            }
            FExpr::FromInt(i) => {
                let x = self.int(i);
                self.b.ins().fcvt_from_sint(F32, x)
            }
            FExpr::Lane(a, l) => {
                let x = self.float(a);
                self.b.ins().extractlane(x, *l)
            }
            FExpr::Shuffle(a, c, lanes) => {
                // Cranelift shuffles bytes: lane l is bytes 4l..4l+4 (b's from 16).
                let little = MemFlagsData::new().with_endianness(Endianness::Little);
                let (x, y) = (self.float(a), self.float(c));
                let (x, y) = (self.b.ins().bitcast(I8X16, little, x), self.b.ins().bitcast(I8X16, little, y));
                let bytes: Vec<u8> = lanes.iter().flat_map(|&l| (0..4).map(move |i| 4 * l + i)).collect();
                let mask = self.b.func.dfg.immediates.push(ConstantData::from(bytes));
                let r = self.b.ins().shuffle(x, y, mask);
                self.b.ins().bitcast(F32X4, little, r)
            }
            FExpr::Select(c, a, d) => {
                // Branch so that the untaken arm (an out-of-bounds load) never runs.
                let ty = if self.ty_of(a) == Ty::F32x4 { F32X4 } else { F32 };
                let cond = self.cond(c);
                let (then_b, else_b, join) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
                let result = self.b.append_block_param(join, ty);
                self.b.ins().brif(cond, then_b, &[], else_b, &[]);
                self.b.seal_block(then_b);
                self.b.seal_block(else_b);
                self.b.switch_to_block(then_b);
                self.scopes.push(HashMap::new());
                let x = self.float(a);
                self.scopes.pop();
                self.b.ins().jump(join, &[x.into()]);
                self.b.switch_to_block(else_b);
                self.scopes.push(HashMap::new());
                let y = self.float(d);
                self.scopes.pop();
                self.b.ins().jump(join, &[y.into()]);
                self.b.seal_block(join);
                self.b.switch_to_block(join);
                result
            }
        }
    }

    fn define_int(&mut self, var: VarId, value: Value) {
        let v = match self.ints.get(&var) {
            Some(&v) => v,
            None => {
                let v = self.b.declare_var(I64);
                self.ints.insert(var, v);
                v
            }
        };
        self.b.def_var(v, value);
        self.defined.insert(var);
    }

    fn stmts(&mut self, stmts: &[Stmt]) {
        let mut i = 0;
        while i < stmts.len() {
            let run = interleavable_run(&stmts[i..]);
            if run.len() < 2 {
                self.stmt(&stmts[i]);
                i += 1;
                continue;
            }
            for group in run.chunks(math_group()) {
                let values: Vec<&FExpr> = group.iter().map(|s| s.value).collect();
                for (s, v) in group.iter().zip(self.float_many(&values)) {
                    self.store(Ty::F32x4, s.buf, s.index, v);
                }
            }
            i += run.len();
        }
    }

    /// `float` of each of `es`, with the math functions of like-shaped expressions (a register
    /// tile's epilogues) emitted together (`mathfn::many`): each expression's operands are
    /// evaluated for all of them first, then the function's steps run across them. The values
    /// are the same as from `float`, one after another.
    fn float_many(&mut self, es: &[&FExpr]) -> Vec<Value> {
        if let [first, ..] = es
            && es.len() > 1
        {
            match first {
                FExpr::Un(op, _) if is_math(*op) => {
                    let args: Option<Vec<&FExpr>> = es
                        .iter()
                        .map(|e| match e {
                            FExpr::Un(o, a) if o == op && self.ty_of(a) == Ty::F32x4 => Some(&**a),
                            _ => None,
                        })
                        .collect();
                    if let Some(args) = args {
                        let xs = self.float_many(&args);
                        return self.math(*op, &xs);
                    }
                }
                FExpr::Bin(op, ..) => {
                    let pairs: Option<Vec<(&FExpr, &FExpr)>> = es
                        .iter()
                        .map(|e| match e {
                            FExpr::Bin(o, a, c) if o == op => Some((&**a, &**c)),
                            _ => None,
                        })
                        .collect();
                    if let Some(pairs) = pairs {
                        let (a, c): (Vec<&FExpr>, Vec<&FExpr>) = pairs.into_iter().unzip();
                        let (xs, ys) = (self.float_many(&a), self.float_many(&c));
                        return xs.into_iter().zip(ys).map(|(x, y)| self.bin(*op, x, y)).collect();
                    }
                }
                _ => {}
            }
        }
        es.iter().map(|e| self.float(e)).collect()
    }

    fn bin(&mut self, op: BinOp, x: Value, y: Value) -> Value {
        match op {
            BinOp::Add => self.b.ins().fadd(x, y),
            BinOp::Sub => self.b.ins().fsub(x, y),
            BinOp::Mul => self.b.ins().fmul(x, y),
            BinOp::Div => self.b.ins().fdiv(x, y),
            // Shapes that Cranelift's x64 backend lowers to one `maxps`/`minps`
            // (`maxss`/`minss`); its `fmax`/`fmin` take eight instructions for IEEE NaN
            // and signed-zero rules that pooling and ReLU do not need.
            BinOp::Max => super::mathfn::select_less(&mut self.b, y, x, x, y),
            BinOp::Min => super::mathfn::select_less(&mut self.b, x, y, x, y),
        }
    }

    fn math(&mut self, f: UnOp, xs: &[Value]) -> Vec<Value> {
        super::mathfn::many(&mut super::mathfn::Consts::new(&mut self.b, self.consts), f, xs)
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::For { var, start, end, body } => {
                let (s, e) = (self.int(start), self.int(end));
                self.emit_loop(*var, s, e, body);
            }
            Stmt::Tasks { var, offset, count, body } => {
                // Iterations of this range that fall in [task_begin, task_end), shifted to 0..count.
                let lo = self.b.ins().iconst(I64, *offset);
                let hi = self.b.ins().iconst(I64, offset + count);
                let begin = self.b.ins().smax(self.task_begin, lo);
                let end = self.b.ins().smin(self.task_end, hi);
                let begin = self.b.ins().iadd_imm_s(begin, -offset);
                let end = self.b.ins().iadd_imm_s(end, -offset);
                self.emit_loop(*var, begin, end, body);
            }
            Stmt::LetInt { var, value } => {
                let v = self.int(value);
                self.define_int(*var, v);
            }
            Stmt::Set { var, ty, value } => {
                let v = self.float(value);
                self.def_float(*var, *ty, v);
            }
            Stmt::Broadcast { var, buf, index, carry } => {
                let x = self.load(Ty::F32, *buf, index);
                let v = self.b.ins().splat(F32X4, x);
                // The broadcast's one user is the jump; its users read the block parameter.
                // (`compile::codegen_function` keeps Cranelift from folding it away again.)
                let next = self.b.create_block();
                let mut args = vec![v.into()];
                let mut params = vec![self.b.append_block_param(next, F32X4)];
                let carried: Vec<Variable> = carry
                    .iter()
                    .map(|c| self.floats.get(c).unwrap_or_else(|| panic!("carried variable {c} is not defined")).0)
                    .collect();
                for &f in &carried {
                    args.push(self.b.use_var(f).into());
                    params.push(self.b.append_block_param(next, F32X4));
                }
                self.b.ins().jump(next, &args);
                self.b.switch_to_block(next);
                self.b.seal_block(next);
                self.def_float(*var, Ty::F32x4, params[0]);
                for (&f, &p) in carried.iter().zip(&params[1..]) {
                    self.b.def_var(f, p);
                }
            }
            Stmt::Store { ty, buf, index, value } => {
                let v = self.float(value);
                self.store(*ty, *buf, index, v);
            }
            Stmt::Comment(_) => {}
        }
    }
}

/// Whether `op` is one of `mathfn`'s functions (all but `Sqrt`, an instruction of its own).
fn is_math(op: UnOp) -> bool {
    op != UnOp::Sqrt
}

/// Whether `e` calls a math function.
fn has_math(e: &FExpr) -> bool {
    matches!(e, FExpr::Un(op, _) if is_math(*op)) || e.operands().into_iter().any(has_math)
}

/// The buffers `e` loads from.
fn loads_from(e: &FExpr, out: &mut Vec<BufId>) {
    if let FExpr::Load(_, buf, _) = e {
        out.push(*buf);
    }
    for o in e.operands() {
        loads_from(o, out);
    }
}

/// A vector store of a run `Gen::stmts` interleaves.
struct RunStore<'a> {
    buf: BufId,
    index: &'a Index,
    value: &'a FExpr,
}

/// The statements at the start of `stmts` that are vector stores whose values call a math
/// function and may be evaluated before any of them is stored (`Gen::float_many`): none of the
/// values loads from a buffer the run stores to. Fewer than 2 when there is no such run.
fn interleavable_run(stmts: &[Stmt]) -> Vec<RunStore<'_>> {
    let mut run = Vec::new();
    let (mut stored, mut loaded) = (Vec::new(), Vec::new());
    for s in stmts {
        let Stmt::Store { ty: Ty::F32x4, buf, index, value } = s else { break };
        if !has_math(value) {
            break;
        }
        let mut l = Vec::new();
        loads_from(value, &mut l);
        if l.iter().any(|b| stored.contains(b) || b == buf) || loaded.contains(buf) {
            break;
        }
        stored.push(*buf);
        loaded.extend(l);
        run.push(RunStore { buf: *buf, index, value });
    }
    run
}

/// How many stores' math functions `Gen::stmts` interleaves (`CNNC_MATH_GROUP` overrides, for
/// measurements).
fn math_group() -> usize {
    static GROUP: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
        std::env::var("CNNC_MATH_GROUP").ok().and_then(|v| v.parse().ok()).filter(|&g| g >= 1).unwrap_or(2)
    });
    *GROUP
}

/// The multiplier and shift that divide `0 <= x < 2^63` by `d > 1` (not a power of two):
/// `floor(x / d) = umulhi(x, m) >> shift`, with `l = ceil(log2 d)`, `m = ceil(2^(63+l) / d)`
/// (below 2^64 because `d > 2^(l-1)`) and `shift = l - 1`.
fn reciprocal(d: i64) -> (u64, u32) {
    let l = 64 - (d as u64 - 1).leading_zeros();
    ((1u128 << (63 + l)).div_ceil(d as u128) as u64, l - 1)
}

#[cfg(test)]
mod tests {
    use super::reciprocal;

    /// The emitted sequence, in Rust: sign trick, high half of the product, shift.
    fn floor_div(a: i64, d: i64) -> i64 {
        let (m, shift) = reciprocal(d);
        let sign = a >> 63;
        let x = (a ^ sign) as u64;
        let q = (((x as u128 * m as u128) >> 64) as u64 >> shift) as i64;
        q ^ sign
    }

    #[test]
    fn reciprocal_division_is_floor_division() {
        let ds = [3, 5, 6, 7, 9, 10, 12, 14, 28, 29, 49, 55, 58, 112, 196, 1000, 3136, 12_544, 1_000_003];
        let mut xs: Vec<i64> = (-5000..5000).collect();
        for k in 1..63 {
            for v in [(1i64 << k) - 1, 1i64 << k, (1i64 << k) + 1] {
                xs.extend([v, -v]);
            }
        }
        xs.extend([i64::MAX, i64::MAX - 1, i64::MIN, i64::MIN + 1]);
        for &d in &ds {
            for &a in &xs {
                assert_eq!(floor_div(a, d), a.div_euclid(d), "{a} / {d}");
            }
        }
    }
}
