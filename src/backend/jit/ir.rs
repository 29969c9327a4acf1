//! The loop IR: loop nests with static bounds, integer index arithmetic, f32 and f32x4 values,
//! loads, stores, FMAs and a few math functions. Both passes produce it: lowering writes the
//! algorithm as scalar nests over logical tensor coordinates; scheduling rewrites them
//! (register blocks, vectors, unrolled reductions, a parallel task loop). `codegen` compiles any
//! of it to Cranelift IR; it knows nothing about convolutions.
//!
//! Tensors are addressed by *logical* coordinates `[c, y, x]` of one image; the buffer's layout
//! (channel blocks of 4, zero halo, channel offset inside a concatenation) is applied by codegen.
//! Flat buffers (packed weights, external inputs) take a single element index.

use std::fmt;

pub type VarId = u32;
pub type BufId = usize;

/// An integer expression over loop indices and integer lets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IExpr {
    Const(i64),
    Var(VarId),
    Add(Box<IExpr>, Box<IExpr>),
    Mul(Box<IExpr>, Box<IExpr>),
    /// Floor division and remainder by a positive constant.
    Div(Box<IExpr>, i64),
    Rem(Box<IExpr>, i64),
    Min(Box<IExpr>, Box<IExpr>),
    Max(Box<IExpr>, Box<IExpr>),
}

pub fn ic(v: i64) -> IExpr {
    IExpr::Const(v)
}

pub fn iv(v: VarId) -> IExpr {
    IExpr::Var(v)
}

impl std::ops::Add for IExpr {
    type Output = IExpr;
    fn add(self, rhs: IExpr) -> IExpr {
        match (self, rhs) {
            (IExpr::Const(0), e) | (e, IExpr::Const(0)) => e,
            (IExpr::Const(a), IExpr::Const(b)) => IExpr::Const(a + b),
            (a, b) => IExpr::Add(Box::new(a), Box::new(b)),
        }
    }
}

impl std::ops::Add<i64> for IExpr {
    type Output = IExpr;
    fn add(self, rhs: i64) -> IExpr {
        self + IExpr::Const(rhs)
    }
}

impl std::ops::Mul<i64> for IExpr {
    type Output = IExpr;
    fn mul(self, rhs: i64) -> IExpr {
        match (self, rhs) {
            (_, 0) => IExpr::Const(0),
            (e, 1) => e,
            (IExpr::Const(a), b) => IExpr::Const(a * b),
            (a, b) => IExpr::Mul(Box::new(a), Box::new(IExpr::Const(b))),
        }
    }
}

impl IExpr {
    pub fn div(self, d: i64) -> IExpr {
        match self {
            IExpr::Const(a) => IExpr::Const(a.div_euclid(d)),
            e if d == 1 => e,
            e => IExpr::Div(Box::new(e), d),
        }
    }

    pub fn rem(self, d: i64) -> IExpr {
        match self {
            IExpr::Const(a) => IExpr::Const(a.rem_euclid(d)),
            _ if d == 1 => IExpr::Const(0),
            e => IExpr::Rem(Box::new(e), d),
        }
    }

    pub fn min(self, o: IExpr) -> IExpr {
        match (self, o) {
            (IExpr::Const(a), IExpr::Const(b)) => IExpr::Const(a.min(b)),
            (a, b) => IExpr::Min(Box::new(a), Box::new(b)),
        }
    }

    pub fn max(self, o: IExpr) -> IExpr {
        match (self, o) {
            (IExpr::Const(a), IExpr::Const(b)) => IExpr::Const(a.max(b)),
            (a, b) => IExpr::Max(Box::new(a), Box::new(b)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    F32,
    F32x4,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Index {
    /// Logical `[c, y, x]` of an activation tensor (for a vector: channels c..c+4).
    Act([IExpr; 3]),
    /// Element index of a flat buffer (for a vector: elements i..i+4).
    Flat(IExpr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Exp,
    Ln,
    Tanh,
    /// GELU's exact (erf) form.
    Gelu,
    /// The logistic function, and x times it (SiLU), by a rational approximation.
    Sigmoid,
    Silu,
    Sqrt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `if a > b { a } else { b }` (x86 `maxps`): a NaN in `a` yields `b`. Kernels put the new
    /// value first and the accumulator (or ReLU's zero) second, so a NaN value is ignored, as
    /// Rust's `f32::max` in the interpreter ignores it.
    Max,
    /// `if a < b { a } else { b }` (x86 `minps`), NaN in `a` yields `b`, as `Max`.
    Min,
}

/// A comparison guarding a lazily evaluated value (`Select` never evaluates the other arm).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    /// `lo <= e < hi`.
    InRange(IExpr, IExpr, IExpr),
    And(Box<Cond>, Box<Cond>),
}

/// A float value: f32 or f32x4.
#[derive(Clone, Debug, PartialEq)]
pub enum FExpr {
    Const(f32),
    Splat(Box<FExpr>),
    Var(VarId),
    Load(Ty, BufId, Index),
    Un(UnOp, Box<FExpr>),
    Bin(BinOp, Box<FExpr>, Box<FExpr>),
    /// a * b + c, fused.
    Fma(Box<FExpr>, Box<FExpr>, Box<FExpr>),
    FromInt(IExpr),
    Lane(Box<FExpr>, u8),
    /// Four lanes picked from two vectors: lane `i` of the result is lane `p[i]` of `a` when
    /// `p[i] < 4`, else lane `p[i] - 4` of `b`.
    Shuffle(Box<FExpr>, Box<FExpr>, [u8; 4]),
    Select(Cond, Box<FExpr>, Box<FExpr>),
}

impl FExpr {
    /// The expressions this one computes from, in evaluation order (none for a leaf).
    pub fn operands(&self) -> Vec<&FExpr> {
        match self {
            FExpr::Splat(a) | FExpr::Un(_, a) | FExpr::Lane(a, _) => vec![a],
            FExpr::Bin(_, a, b) | FExpr::Shuffle(a, b, _) | FExpr::Select(_, a, b) => vec![a, b],
            FExpr::Fma(a, b, c) => vec![a, b, c],
            FExpr::Const(_) | FExpr::Var(_) | FExpr::Load(..) | FExpr::FromInt(_) => vec![],
        }
    }
}

impl std::hash::Hash for FExpr {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self).hash(h);
        match self {
            FExpr::Const(v) => v.to_bits().hash(h),
            FExpr::Splat(a) => a.hash(h),
            FExpr::Var(v) => v.hash(h),
            FExpr::Load(t, b, i) => (t, b, i).hash(h),
            FExpr::Un(op, a) => (op, a).hash(h),
            FExpr::Bin(op, a, b) => (op, a, b).hash(h),
            FExpr::Fma(a, b, c) => (a, b, c).hash(h),
            FExpr::FromInt(i) => i.hash(h),
            FExpr::Lane(a, l) => (a, l).hash(h),
            FExpr::Shuffle(a, b, p) => (a, b, p).hash(h),
            FExpr::Select(c, a, b) => (c, a, b).hash(h),
        }
    }
}

impl Kernel {
    /// A hash of what the kernel computes (not its name), for compiling identical kernels once.
    pub fn structure_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.buffers, &self.body, self.tasks).hash(&mut h);
        h.finish()
    }

    /// Whether two kernels compute the same thing (names aside).
    pub fn same_code(&self, other: &Kernel) -> bool {
        self.tasks == other.tasks && self.buffers == other.buffers && self.body == other.body
    }
}

pub fn fc(v: f32) -> FExpr {
    FExpr::Const(v)
}

pub fn fv(v: VarId) -> FExpr {
    FExpr::Var(v)
}

pub fn bin(op: BinOp, a: FExpr, b: FExpr) -> FExpr {
    FExpr::Bin(op, Box::new(a), Box::new(b))
}

pub fn fma(a: FExpr, b: FExpr, c: FExpr) -> FExpr {
    FExpr::Fma(Box::new(a), Box::new(b), Box::new(c))
}

pub fn splat(a: FExpr) -> FExpr {
    FExpr::Splat(Box::new(a))
}

pub fn load(ty: Ty, buf: BufId, index: Index) -> FExpr {
    FExpr::Load(ty, buf, index)
}

/// The logical index `[c, y, x]` of an activation.
pub fn act(c: IExpr, y: IExpr, x: IExpr) -> Index {
    Index::Act([c, y, x])
}

impl From<i64> for IExpr {
    fn from(v: i64) -> IExpr {
        IExpr::Const(v)
    }
}

// ---- statement builders ---------------------------------------------------------------------

/// `for var in start..end { body }`.
pub fn for_range(var: VarId, start: impl Into<IExpr>, end: impl Into<IExpr>, body: Vec<Stmt>) -> Stmt {
    Stmt::For { var, start: start.into(), end: end.into(), body }
}

/// `for a in 0..na { for b in 0..nb { body } }`: the nest of a 2-D window or image.
pub fn for_2d(a: VarId, a_range: (IExpr, IExpr), b: VarId, b_range: (IExpr, IExpr), body: Vec<Stmt>) -> Stmt {
    for_range(a, a_range.0, a_range.1, vec![for_range(b, b_range.0, b_range.1, body)])
}

/// Defines or reassigns a float variable.
pub fn set(var: VarId, ty: Ty, value: FExpr) -> Stmt {
    Stmt::Set { var, ty, value }
}

/// `var = splat(buf[index])`, loaded by one `vbroadcastss [mem]`, with `carry` (a register
/// tile's accumulators) passed through (see `Stmt::Broadcast`).
pub fn broadcast(var: VarId, buf: BufId, index: Index, carry: &[VarId]) -> Stmt {
    Stmt::Broadcast { var, buf, index, carry: carry.to_vec() }
}

pub fn store(ty: Ty, buf: BufId, index: Index, value: FExpr) -> Stmt {
    Stmt::Store { ty, buf, index, value }
}

pub fn let_int(var: VarId, value: IExpr) -> Stmt {
    Stmt::LetInt { var, value }
}

#[derive(Clone, Debug, PartialEq, Hash)]
pub enum Stmt {
    /// `for var in start..end` (bounds may depend on outer variables).
    For {
        var: VarId,
        start: IExpr,
        end: IExpr,
        body: Vec<Stmt>,
    },
    /// A parallel loop: iterations `offset..offset+count` of the kernel's task space, with
    /// `var` running over `0..count`. A call runs the tasks in its `[begin, end)` range.
    Tasks {
        var: VarId,
        offset: i64,
        count: i64,
        body: Vec<Stmt>,
    },
    LetInt {
        var: VarId,
        value: IExpr,
    },
    /// Defines or reassigns a float variable (accumulators are reassigned in loops).
    Set {
        var: VarId,
        ty: Ty,
        value: FExpr,
    },
    /// Defines the f32x4 variable `var` as `splat(buf[index])`, as one `vbroadcastss [mem]`
    /// however many instructions use it. (`Set` of the same splat compiles to `vmovss` and
    /// `vbroadcastss reg`, a load and a shuffle on the FP pipes, whenever the broadcast has
    /// more than one user: Cranelift folds a load into its user only when that user's result
    /// is used once.) The code generator ends the block after the broadcast and passes it to
    /// the next block as a parameter, so that its only user is the jump; register tiles that
    /// feed each broadcast to two or more FMAs use this.
    ///
    /// The f32x4 variables in `carry` (the tile's accumulators) pass to the next block as
    /// parameters too. Left to flow into it implicitly, regalloc2 now and then split one's
    /// live range at a block boundary and spilled it inside the reduction loop (8 of the 322
    /// unrolled reduction loops of the eleven torchvision examples, each then 20 to 30%
    /// slower); passed as parameters, each stays in one register (none spilled).
    Broadcast {
        var: VarId,
        buf: BufId,
        index: Index,
        carry: Vec<VarId>,
    },
    Store {
        ty: Ty,
        buf: BufId,
        index: Index,
        value: FExpr,
    },
    Comment(String),
}

/// How a buffer's logical coordinates map to memory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// An activation tensor of `c x h x w` stored in channel blocks of 4 (`[C/4][H'][W'][4]`)
    /// inside a storage with a zero halo of `halo` rows/columns (H' = H + 2 halo), starting at
    /// channel `channel_offset` of the storage.
    Blocked { c: u64, h: u64, w: u64, halo: [u64; 2], channel_offset: u64 },
    /// Contiguous f32 elements.
    Flat { len: u64 },
}

#[derive(Clone, Debug, PartialEq, Hash)]
pub struct Buffer {
    pub name: String,
    pub layout: Layout,
    pub writable: bool,
    /// Scratch space in the kernel's stack frame rather than a caller-provided pointer.
    pub stack: bool,
}

impl Buffer {
    pub fn new(name: &str, layout: Layout, writable: bool) -> Buffer {
        Buffer { name: name.into(), layout, writable, stack: false }
    }

    /// Physical size in f32 elements.
    pub fn elements(&self) -> u64 {
        match &self.layout {
            Layout::Blocked { c, h, w, halo, channel_offset } => {
                (channel_offset + c).div_ceil(4) * 4 * (h + 2 * halo[0]) * (w + 2 * halo[1])
            }
            Layout::Flat { len } => *len,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub buffers: Vec<Buffer>,
    pub body: Vec<Stmt>,
    /// Variable names, for printing.
    pub var_names: Vec<String>,
    /// Size of the task space (the `Tasks` ranges end to end).
    pub tasks: i64,
    /// Multiply-accumulates performed, for GFLOP/s reports.
    pub macs: u64,
}

/// Allocates variables with readable names while a kernel is built.
#[derive(Default)]
pub struct Vars {
    pub names: Vec<String>,
}

impl Vars {
    pub fn new_var(&mut self, name: &str) -> VarId {
        self.names.push(format!("{name}{}", self.names.len()));
        (self.names.len() - 1) as VarId
    }
}

// ---- printing -------------------------------------------------------------------------------

struct Show<'a, T>(&'a T, &'a [String]);

fn var_name(names: &[String], v: VarId) -> &str {
    names.get(v as usize).map_or("?", String::as_str)
}

impl fmt::Display for Show<'_, IExpr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.1;
        match self.0 {
            IExpr::Const(v) => write!(f, "{v}"),
            IExpr::Var(v) => write!(f, "{}", var_name(n, *v)),
            IExpr::Add(a, b) => write!(f, "{} + {}", Show(&**a, n), Show(&**b, n)),
            IExpr::Mul(a, b) => write!(f, "({})*{}", Show(&**a, n), Show(&**b, n)),
            IExpr::Div(a, d) => write!(f, "({})/{d}", Show(&**a, n)),
            IExpr::Rem(a, d) => write!(f, "({})%{d}", Show(&**a, n)),
            IExpr::Min(a, b) => write!(f, "min({}, {})", Show(&**a, n), Show(&**b, n)),
            IExpr::Max(a, b) => write!(f, "max({}, {})", Show(&**a, n), Show(&**b, n)),
        }
    }
}

fn show_index(i: &Index, n: &[String]) -> String {
    match i {
        Index::Act([c, y, x]) => format!("[{}, {}, {}]", Show(c, n), Show(y, n), Show(x, n)),
        Index::Flat(e) => format!("[{}]", Show(e, n)),
    }
}

fn show_cond(c: &Cond, n: &[String]) -> String {
    match c {
        Cond::InRange(e, lo, hi) => format!("{} <= {} < {}", Show(lo, n), Show(e, n), Show(hi, n)),
        Cond::And(a, b) => format!("{} && {}", show_cond(a, n), show_cond(b, n)),
    }
}

fn show_f(e: &FExpr, k: &Kernel) -> String {
    let n = &k.var_names;
    let buf = |b: &BufId| k.buffers.get(*b).map_or("?", |b| b.name.as_str()).to_string();
    match e {
        FExpr::Const(v) => format!("{v:?}"),
        FExpr::Splat(a) => format!("splat({})", show_f(a, k)),
        FExpr::Var(v) => var_name(n, *v).to_string(),
        FExpr::Load(Ty::F32, b, i) => format!("{}{}", buf(b), show_index(i, n)),
        FExpr::Load(Ty::F32x4, b, i) => format!("{}.v4{}", buf(b), show_index(i, n)),
        FExpr::Un(op, a) => format!("{}({})", format!("{op:?}").to_lowercase(), show_f(a, k)),
        FExpr::Bin(op, a, b) => format!("{}({}, {})", format!("{op:?}").to_lowercase(), show_f(a, k), show_f(b, k)),
        FExpr::Fma(a, b, c) => format!("fma({}, {}, {})", show_f(a, k), show_f(b, k), show_f(c, k)),
        FExpr::FromInt(i) => format!("float({})", Show(i, n)),
        FExpr::Lane(a, l) => format!("{}.lane{l}", show_f(a, k)),
        FExpr::Shuffle(a, b, p) => format!("shuffle({}, {}, {p:?})", show_f(a, k), show_f(b, k)),
        FExpr::Select(c, a, b) => format!("if {} then {} else {}", show_cond(c, n), show_f(a, k), show_f(b, k)),
    }
}

fn show_stmts(out: &mut String, stmts: &[Stmt], k: &Kernel, depth: usize) {
    let pad = "  ".repeat(depth);
    let n = &k.var_names;
    for s in stmts {
        match s {
            Stmt::For { var, start, end, body } => {
                out.push_str(&format!("{pad}for {} in {}..{} {{\n", var_name(n, *var), Show(start, n), Show(end, n)));
                show_stmts(out, body, k, depth + 1);
                out.push_str(&format!("{pad}}}\n"));
            }
            Stmt::Tasks { var, offset, count, body } => {
                out.push_str(&format!(
                    "{pad}parallel {} in 0..{count} (tasks {offset}..{}) {{\n",
                    var_name(n, *var),
                    offset + count
                ));
                show_stmts(out, body, k, depth + 1);
                out.push_str(&format!("{pad}}}\n"));
            }
            Stmt::LetInt { var, value } => out.push_str(&format!("{pad}{} = {}\n", var_name(n, *var), Show(value, n))),
            Stmt::Set { var, ty, value } => {
                let t = if *ty == Ty::F32x4 { ": f32x4" } else { "" };
                out.push_str(&format!("{pad}{}{t} = {}\n", var_name(n, *var), show_f(value, k)));
            }
            Stmt::Broadcast { var, buf, index, .. } => {
                let name = k.buffers.get(*buf).map_or("?", |b| b.name.as_str());
                out.push_str(&format!(
                    "{pad}{}: f32x4 = broadcast({name}{})\n",
                    var_name(n, *var),
                    show_index(index, n)
                ));
            }
            Stmt::Store { ty, buf, index, value } => {
                let v = if *ty == Ty::F32x4 { ".v4" } else { "" };
                let name = k.buffers.get(*buf).map_or("?", |b| b.name.as_str());
                out.push_str(&format!("{pad}{name}{v}{} = {}\n", show_index(index, n), show_f(value, k)));
            }
            Stmt::Comment(c) => out.push_str(&format!("{pad}# {c}\n")),
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kernel {} ({} tasks, {} MACs)", self.name, self.tasks, self.macs)?;
        for (i, b) in self.buffers.iter().enumerate() {
            let layout = match &b.layout {
                Layout::Blocked { c, h, w, halo, channel_offset } => {
                    format!("{c}x{h}x{w} blocked4 halo {}x{} channel offset {channel_offset}", halo[0], halo[1])
                }
                Layout::Flat { len } => format!("flat {len}"),
            };
            let place = if b.stack {
                " (stack)"
            } else if b.writable {
                " (written)"
            } else {
                ""
            };
            writeln!(f, "  buf{i} {}: {layout}{place}", b.name)?;
        }
        let mut out = String::new();
        show_stmts(&mut out, &self.body, self, 1);
        f.write_str(&out)
    }
}

impl Kernel {
    /// Appends a parallel loop as the next range of the task space.
    pub fn push_tasks(&mut self, var: VarId, count: i64, body: Vec<Stmt>) {
        self.body.push(Stmt::Tasks { var, offset: self.tasks, count, body });
        self.tasks += count;
    }
}
