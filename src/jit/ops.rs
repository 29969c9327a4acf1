//! Loop IR for the ops other than convolution: pooling, global and adaptive average pooling,
//! elementwise ops (relu, batch norm, residual sum), LRN, softmax, concatenation copies, and
//! the conversions between the caller's NCHW arrays and the blocked activations.
//!
//! Each op has a lowered form: a scalar nest, run in parallel over (channel, row). Pools,
//! elementwise ops and average pools also have a vector schedule over blocks of 4 channels, in
//! which the windows of interior pixels are read without bounds checks. LRN, softmax, copies
//! and conversions are cheap and keep their lowered form as their schedule.

use super::conv::append_halo_zeroing;
use super::ir::*;
use crate::graph::PoolKind;

/// A tensor as a kernel sees it: its logical shape and the layout of the storage it lives in.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorView {
    /// A map `(c, h, w)`, or a flat vector of `c` values (`flat`).
    pub c: u64,
    pub h: u64,
    pub w: u64,
    pub flat: bool,
    pub layout: Layout,
}

impl TensorView {
    /// The index of element `f` of a flat tensor, in flatten order (C, H, W) of the map whose
    /// storage it lives in (a flatten view is not moved in memory).
    pub fn flat_index(&self, f: IExpr) -> Index {
        let (h, w) = match &self.layout {
            Layout::Blocked { h, w, .. } => (*h as i64, *w as i64),
            Layout::Flat { .. } => (1, 1),
        };
        if h * w == 1 {
            Index::Act([f, ic(0), ic(0)])
        } else {
            Index::Act([f.clone().div(h * w), f.clone().div(w).rem(h), f.rem(w)])
        }
    }

    pub fn len(&self) -> u64 {
        if self.flat { self.c } else { self.c * self.h * self.w }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn buffer(&self, name: &str, writable: bool) -> Buffer {
        Buffer::new(name, self.layout.clone(), writable)
    }
}

fn new_kernel(name: &str, buffers: Vec<Buffer>) -> Kernel {
    Kernel { name: name.into(), buffers, body: Vec::new(), var_names: Vec::new(), tasks: 0, macs: 0 }
}

/// Installs the variable names and, for a map output, the halo zeroing of its channels.
fn finish(mut k: Kernel, vars: Vars, out_buf: BufId, out: &TensorView) -> Kernel {
    k.var_names = vars.names;
    if !out.flat {
        append_halo_zeroing(&mut k, out_buf, out.c);
    }
    k
}

/// Ceiling division of non-negative integers.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

fn splat_if(ty: Ty, e: FExpr) -> FExpr {
    if ty == Ty::F32x4 { splat(e) } else { e }
}

/// Adds the parallel loop over (channel group, row) of a map: `c` and `y` are defined from `t`,
/// rows `y_first..y_first+rows`. A row is `body`.
fn rows_tasks(
    k: &mut Kernel,
    vars: &mut Vars,
    groups: i64,
    rows: i64,
    y_first: i64,
    c: VarId,
    y: VarId,
    body: Vec<Stmt>,
) {
    if groups * rows <= 0 {
        return;
    }
    let t = vars.new_var("t");
    let mut b = vec![
        Stmt::LetInt { var: c, value: iv(t).div(rows) },
        Stmt::LetInt { var: y, value: iv(t).rem(rows) + y_first },
    ];
    b.extend(body);
    k.push_tasks(t, groups * rows, b);
}

// ---- max and average pooling --------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct PoolJob {
    pub name: String,
    pub kind: PoolKind,
    pub kernel: [u64; 2],
    pub stride: [u64; 2],
    pub pad: [u64; 2],
    pub input: TensorView,
    pub output: TensorView,
}

pub fn lower_pool(p: &PoolJob) -> Kernel {
    pool_kernel(p, Ty::F32)
}

pub fn schedule_pool(p: &PoolJob) -> Kernel {
    pool_kernel(p, Ty::F32x4)
}

/// PyTorch's windows: start at `o*s - p`; max ignores positions outside the input; average
/// divides by the window clipped to the padded input (`count_include_pad=True`). In the scalar
/// form every read is guarded; in the vector form only border pixels are.
fn pool_kernel(p: &PoolJob, ty: Ty) -> Kernel {
    let mut vars = Vars::default();
    let (c, oy, ox, ky, kx, acc) = (
        vars.new_var("c"),
        vars.new_var("oy"),
        vars.new_var("ox"),
        vars.new_var("ky"),
        vars.new_var("kx"),
        vars.new_var("acc"),
    );
    let (h, w) = (p.input.h as i64, p.input.w as i64);
    let (oh, ow) = (p.output.h as i64, p.output.w as i64);
    let [kh, kw] = p.kernel.map(|v| v as i64);
    let [sh, sw] = p.stride.map(|v| v as i64);
    let [ph, pw] = p.pad.map(|v| v as i64);
    let lanes = if ty == Ty::F32x4 { 4 } else { 1 };
    let groups = ceil_div(p.input.c as i64, lanes);
    let init = if p.kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 };
    // Small windows are unrolled (offsets become load immediates off one base per pixel);
    // large ones stay loops.
    let unroll = kh * kw <= 25;
    let pixel = |checked: bool| -> Vec<Stmt> {
        let ch = iv(c) * lanes;
        let element = |ky: IExpr, kx: IExpr| -> Stmt {
            let iy = iv(oy) * sh + ky + (-ph);
            let ix = iv(ox) * sw + kx + (-pw);
            let load = FExpr::Load(ty, 0, Index::Act([ch.clone(), iy.clone(), ix.clone()]));
            let value = if checked {
                let guard =
                    Cond::And(Box::new(Cond::InRange(iy, ic(0), ic(h))), Box::new(Cond::InRange(ix, ic(0), ic(w))));
                FExpr::Select(guard, Box::new(load), Box::new(splat_if(ty, fc(init))))
            } else {
                load
            };
            let combined =
                if p.kind == PoolKind::Max { bin(BinOp::Max, value, fv(acc)) } else { bin(BinOp::Add, fv(acc), value) };
            Stmt::Set { var: acc, ty, value: combined }
        };
        let window: Vec<Stmt> = if unroll {
            (0..kh).flat_map(|y| (0..kw).map(move |x| (y, x))).map(|(y, x)| element(ic(y), ic(x))).collect()
        } else {
            vec![Stmt::For {
                var: ky,
                start: ic(0),
                end: ic(kh),
                body: vec![Stmt::For { var: kx, start: ic(0), end: ic(kw), body: vec![element(iv(ky), iv(kx))] }],
            }]
        };
        let result = match (p.kind, checked) {
            (PoolKind::Max, _) => fv(acc),
            (PoolKind::Avg, false) => bin(BinOp::Mul, fv(acc), splat_if(ty, fc(1.0 / (kh * kw) as f32))),
            (PoolKind::Avg, true) => {
                let y0 = iv(oy) * sh + (-ph);
                let x0 = iv(ox) * sw + (-pw);
                let rows = (y0.clone() + kh).min(ic(h + ph)) + y0 * -1;
                let cols = (x0.clone() + kw).min(ic(w + pw)) + x0 * -1;
                let size = IExpr::Mul(Box::new(rows), Box::new(cols));
                bin(BinOp::Div, fv(acc), splat_if(ty, FExpr::FromInt(size)))
            }
        };
        let mut stmts = vec![Stmt::Set { var: acc, ty, value: splat_if(ty, fc(init)) }];
        stmts.extend(window);
        stmts.push(Stmt::Store { ty, buf: 1, index: Index::Act([ch, iv(oy), iv(ox)]), value: result });
        stmts
    };
    let mut k = new_kernel(&p.name, vec![p.input.buffer("in", false), p.output.buffer("out", true)]);
    if ty == Ty::F32 {
        let body = vec![Stmt::For { var: ox, start: ic(0), end: ic(ow), body: pixel(true) }];
        rows_tasks(&mut k, &mut vars, groups, oh, 0, c, oy, body);
        return finish(k, vars, 1, &p.output);
    }
    // Interior pixels: windows entirely inside the input.
    let first_inside = |pad: i64, s: i64| (pad + s - 1) / s;
    let end_inside = |len: i64, k: i64, pad: i64, s: i64| if len + pad >= k { (len + pad - k) / s + 1 } else { 0 };
    let (y_lo, x_lo) = (first_inside(ph, sh).min(oh), first_inside(pw, sw).min(ow));
    let y_hi = end_inside(h, kh, ph, sh).clamp(y_lo, oh);
    let x_hi = end_inside(w, kw, pw, sw).clamp(x_lo, ow);
    let interior_row = vec![
        Stmt::For { var: ox, start: ic(0), end: ic(x_lo), body: pixel(true) },
        Stmt::For { var: ox, start: ic(x_lo), end: ic(x_hi), body: pixel(false) },
        Stmt::For { var: ox, start: ic(x_hi), end: ic(ow), body: pixel(true) },
    ];
    let border_row = vec![Stmt::For { var: ox, start: ic(0), end: ic(ow), body: pixel(true) }];
    rows_tasks(&mut k, &mut vars, groups, y_hi - y_lo, y_lo, c, oy, interior_row);
    rows_tasks(&mut k, &mut vars, groups, y_lo, 0, c, oy, border_row.clone());
    rows_tasks(&mut k, &mut vars, groups, oh - y_hi, y_hi, c, oy, border_row);
    finish(k, vars, 1, &p.output)
}

// ---- global and adaptive average pooling ----------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct AvgJob {
    pub name: String,
    pub input: TensorView,
    pub output: TensorView,
}

pub fn lower_adaptive(a: &AvgJob) -> Kernel {
    adaptive_kernel(a, Ty::F32)
}

pub fn schedule_adaptive(a: &AvgJob) -> Kernel {
    adaptive_kernel(a, Ty::F32x4)
}

/// Adaptive average pooling (gap is the 1x1 case): output `i` averages input
/// `floor(i*L/O) .. ceil((i+1)*L/O)`.
fn adaptive_kernel(a: &AvgJob, ty: Ty) -> Kernel {
    let mut vars = Vars::default();
    let (c, oy, ox, y, x, acc) = (
        vars.new_var("c"),
        vars.new_var("oy"),
        vars.new_var("ox"),
        vars.new_var("y"),
        vars.new_var("x"),
        vars.new_var("acc"),
    );
    let (h, w) = (a.input.h as i64, a.input.w as i64);
    let (oh, ow) = (a.output.h as i64, a.output.w as i64);
    let lanes = if ty == Ty::F32x4 { 4 } else { 1 };
    let groups = ceil_div(a.input.c as i64, lanes);
    let ch = iv(c) * lanes;
    let (y0, y1) = ((iv(oy) * h).div(oh), (iv(oy) * h + (h * 1 + oh - 1)).div(oh));
    let (x0, x1) = ((iv(ox) * w).div(ow), (iv(ox) * w + (w + ow - 1)).div(ow));
    let count = IExpr::Mul(Box::new(y1.clone() + y0.clone() * -1), Box::new(x1.clone() + x0.clone() * -1));
    let pixel = vec![
        Stmt::Set { var: acc, ty, value: splat_if(ty, fc(0.0)) },
        Stmt::For {
            var: y,
            start: y0,
            end: y1,
            body: vec![Stmt::For {
                var: x,
                start: x0,
                end: x1,
                body: vec![Stmt::Set {
                    var: acc,
                    ty,
                    value: bin(BinOp::Add, fv(acc), FExpr::Load(ty, 0, Index::Act([ch.clone(), iv(y), iv(x)]))),
                }],
            }],
        },
        Stmt::Store {
            ty,
            buf: 1,
            index: Index::Act([ch.clone(), iv(oy), iv(ox)]),
            value: bin(BinOp::Div, fv(acc), splat_if(ty, FExpr::FromInt(count))),
        },
    ];
    let mut k = new_kernel(&a.name, vec![a.input.buffer("in", false), a.output.buffer("out", true)]);
    rows_tasks(
        &mut k,
        &mut vars,
        groups,
        oh,
        0,
        c,
        oy,
        vec![Stmt::For { var: ox, start: ic(0), end: ic(ow), body: pixel }],
    );
    finish(k, vars, 1, &a.output)
}

// ---- elementwise: relu, batch norm, residual sum --------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum EltOp {
    Relu,
    /// `x * scale + shift` per channel (map) or per feature (flat), from buffer 2 (scales) and
    /// 3 (shifts).
    Affine,
    /// `x + y`, then relu if set; `y` is buffer 2.
    Add {
        relu: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct EltJob {
    pub name: String,
    pub op: EltOp,
    pub input: TensorView,
    pub other: Option<TensorView>,
    pub output: TensorView,
    /// Length of the scale and shift buffers of `Affine`.
    pub params: u64,
}

pub fn lower_elementwise(e: &EltJob) -> Kernel {
    elementwise_kernel(e, Ty::F32)
}

pub fn schedule_elementwise(e: &EltJob) -> Kernel {
    // Flat tensors (which may live in a map's storage) are addressed element by element.
    elementwise_kernel(e, if e.input.flat { Ty::F32 } else { Ty::F32x4 })
}

fn elementwise_kernel(e: &EltJob, ty: Ty) -> Kernel {
    let mut vars = Vars::default();
    let mut buffers = vec![e.input.buffer("in", false), e.output.buffer("out", true)];
    match &e.op {
        EltOp::Affine => {
            buffers.push(Buffer::new("scale", Layout::Flat { len: e.params }, false));
            buffers.push(Buffer::new("shift", Layout::Flat { len: e.params }, false));
        }
        EltOp::Add { .. } => buffers.push(e.other.as_ref().expect("add has two operands").buffer("other", false)),
        EltOp::Relu => {}
    }
    let mut k = new_kernel(&e.name, buffers);
    let apply = |x: FExpr, other: FExpr, param: IExpr| -> FExpr {
        match &e.op {
            EltOp::Relu => bin(BinOp::Max, x, splat_if(ty, fc(0.0))),
            EltOp::Affine => {
                fma(x, FExpr::Load(ty, 2, Index::Flat(param.clone())), FExpr::Load(ty, 3, Index::Flat(param)))
            }
            EltOp::Add { relu } => {
                let s = bin(BinOp::Add, x, other);
                if *relu { bin(BinOp::Max, s, splat_if(ty, fc(0.0))) } else { s }
            }
        }
    };
    if e.input.flat {
        // One loop over the features in flatten order; scale/shift are per feature.
        let (t, f) = (vars.new_var("t"), vars.new_var("f"));
        let n = e.input.len() as i64;
        let other = e.other.as_ref().map_or(fc(0.0), |o| FExpr::Load(Ty::F32, 2, o.flat_index(iv(f))));
        let value = apply(FExpr::Load(Ty::F32, 0, e.input.flat_index(iv(f))), other, iv(f));
        let body = vec![Stmt::For {
            var: f,
            start: iv(t) * 64,
            end: (iv(t) * 64 + 64).min(ic(n)),
            body: vec![Stmt::Store { ty: Ty::F32, buf: 1, index: e.output.flat_index(iv(f)), value }],
        }];
        k.push_tasks(t, ceil_div(n, 64), body);
        k.var_names = vars.names;
        return k;
    }
    let (c, y, x) = (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"));
    let lanes = if ty == Ty::F32x4 { 4 } else { 1 };
    let ch = iv(c) * lanes;
    let index = Index::Act([ch.clone(), iv(y), iv(x)]);
    let other = if e.other.is_some() { FExpr::Load(ty, 2, index.clone()) } else { fc(0.0) };
    let value = apply(FExpr::Load(ty, 0, index.clone()), other, ch);
    let body = vec![Stmt::For {
        var: x,
        start: ic(0),
        end: ic(e.input.w as i64),
        body: vec![Stmt::Store { ty, buf: 1, index, value }],
    }];
    rows_tasks(&mut k, &mut vars, ceil_div(e.input.c as i64, lanes), e.input.h as i64, 0, c, y, body);
    // In place, the halo is the input's and already zero.
    k.var_names = vars.names;
    if e.input.layout != e.output.layout {
        append_halo_zeroing(&mut k, 1, e.output.c);
    }
    k
}

// ---- local response normalisation -----------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct LrnJob {
    pub name: String,
    pub size: u64,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
    pub input: TensorView,
    pub output: TensorView,
}

/// `b_c = a_c / (k + alpha/n * sum_{c'} a_{c'}^2)^beta`, with `x^beta = exp(beta * ln x)`.
pub fn lower_lrn(l: &LrnJob) -> Kernel {
    let mut vars = Vars::default();
    let (c, y, x, cc, sum) =
        (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"), vars.new_var("cc"), vars.new_var("sum"));
    let (n, channels) = (l.size as i64, l.input.c as i64);
    let (before, after) = (n / 2, (n - 1) / 2);
    let a = FExpr::Load(Ty::F32, 0, Index::Act([iv(cc), iv(y), iv(x)]));
    let base = fma(fv(sum), fc((l.alpha / l.size as f64) as f32), fc(l.k as f32));
    let div = FExpr::Un(UnOp::Exp, Box::new(bin(BinOp::Mul, fc(l.beta as f32), FExpr::Un(UnOp::Ln, Box::new(base)))));
    let pixel = vec![
        Stmt::Set { var: sum, ty: Ty::F32, value: fc(0.0) },
        Stmt::For {
            var: cc,
            start: (iv(c) + (-before)).max(ic(0)),
            end: (iv(c) + (after + 1)).min(ic(channels)),
            body: vec![Stmt::Set { var: sum, ty: Ty::F32, value: fma(a.clone(), a, fv(sum)) }],
        },
        Stmt::Store {
            ty: Ty::F32,
            buf: 1,
            index: Index::Act([iv(c), iv(y), iv(x)]),
            value: bin(BinOp::Div, FExpr::Load(Ty::F32, 0, Index::Act([iv(c), iv(y), iv(x)])), div),
        },
    ];
    let mut k = new_kernel(&l.name, vec![l.input.buffer("in", false), l.output.buffer("out", true)]);
    rows_tasks(
        &mut k,
        &mut vars,
        channels,
        l.input.h as i64,
        0,
        c,
        y,
        vec![Stmt::For { var: x, start: ic(0), end: ic(l.input.w as i64), body: pixel }],
    );
    finish(k, vars, 1, &l.output)
}

// ---- softmax --------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct SoftmaxJob {
    pub name: String,
    pub input: TensorView,
    pub output: TensorView,
}

/// Softmax over the features: of the whole vector (flat), or of each pixel's channels (map).
/// Max-subtracted for stability, as PyTorch does.
pub fn lower_softmax(s: &SoftmaxJob) -> Kernel {
    let mut vars = Vars::default();
    let (i, m, sum, e) = (vars.new_var("i"), vars.new_var("max"), vars.new_var("sum"), vars.new_var("e"));
    let mut k = new_kernel(&s.name, vec![s.input.buffer("in", false), s.output.buffer("out", true)]);
    // `at(i)` addresses element i of the reduced axis for the current task.
    let (t, y, x) = (vars.new_var("t"), vars.new_var("y"), vars.new_var("x"));
    let (count, tasks, at_in, at_out): (i64, i64, Box<dyn Fn(IExpr) -> Index>, Box<dyn Fn(IExpr) -> Index>) =
        if s.input.flat {
            let (vin, vout) = (s.input.clone(), s.output.clone());
            (s.input.len() as i64, 1, Box::new(move |f| vin.flat_index(f)), Box::new(move |f| vout.flat_index(f)))
        } else {
            (
                s.input.c as i64,
                (s.input.h * s.input.w) as i64,
                Box::new(move |ch| Index::Act([ch, iv(y), iv(x)])),
                Box::new(move |ch| Index::Act([ch, iv(y), iv(x)])),
            )
        };
    let xval = FExpr::Load(Ty::F32, 0, at_in(iv(i)));
    let mut body = Vec::new();
    if !s.input.flat {
        body.push(Stmt::LetInt { var: y, value: iv(t).div(s.input.w as i64) });
        body.push(Stmt::LetInt { var: x, value: iv(t).rem(s.input.w as i64) });
    }
    body.extend([
        Stmt::Set { var: m, ty: Ty::F32, value: fc(f32::NEG_INFINITY) },
        Stmt::For {
            var: i,
            start: ic(0),
            end: ic(count),
            body: vec![Stmt::Set { var: m, ty: Ty::F32, value: bin(BinOp::Max, xval.clone(), fv(m)) }],
        },
        Stmt::Set { var: sum, ty: Ty::F32, value: fc(0.0) },
        Stmt::For {
            var: i,
            start: ic(0),
            end: ic(count),
            body: vec![
                Stmt::Set { var: e, ty: Ty::F32, value: FExpr::Un(UnOp::Exp, Box::new(bin(BinOp::Sub, xval, fv(m)))) },
                Stmt::Store { ty: Ty::F32, buf: 1, index: at_out(iv(i)), value: fv(e) },
                Stmt::Set { var: sum, ty: Ty::F32, value: bin(BinOp::Add, fv(sum), fv(e)) },
            ],
        },
        Stmt::For {
            var: i,
            start: ic(0),
            end: ic(count),
            body: vec![Stmt::Store {
                ty: Ty::F32,
                buf: 1,
                index: at_out(iv(i)),
                value: bin(BinOp::Div, FExpr::Load(Ty::F32, 1, at_out(iv(i))), fv(sum)),
            }],
        },
    ]);
    k.push_tasks(t, tasks, body);
    k.var_names = vars.names;
    if !s.output.flat && s.input.layout != s.output.layout {
        append_halo_zeroing(&mut k, 1, s.output.c);
    }
    k
}

// ---- copies and conversions -----------------------------------------------------------------

/// Copies a map into a channel slice of another storage (a concatenation branch that could not
/// be written in place). `output.layout` carries the slice's channel offset.
pub fn lower_copy(name: &str, input: &TensorView, output: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let (c, y, x) = (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"));
    let mut k = new_kernel(name, vec![input.buffer("in", false), output.buffer("out", true)]);
    if input.flat || output.flat {
        let (t, f) = (vars.new_var("t"), vars.new_var("f"));
        let n = input.len() as i64;
        let body = vec![Stmt::For {
            var: f,
            start: iv(t) * 256,
            end: (iv(t) * 256 + 256).min(ic(n)),
            body: vec![Stmt::Store {
                ty: Ty::F32,
                buf: 1,
                index: output.flat_index(iv(f)),
                value: FExpr::Load(Ty::F32, 0, input.flat_index(iv(f))),
            }],
        }];
        k.push_tasks(t, ceil_div(n, 256), body);
        k.var_names = vars.names;
        return k;
    }
    let body = vec![Stmt::For {
        var: x,
        start: ic(0),
        end: ic(input.w as i64),
        body: vec![Stmt::Store {
            ty: Ty::F32,
            buf: 1,
            index: Index::Act([iv(c), iv(y), iv(x)]),
            value: FExpr::Load(Ty::F32, 0, Index::Act([iv(c), iv(y), iv(x)])),
        }],
    }];
    rows_tasks(&mut k, &mut vars, input.c as i64, input.h as i64, 0, c, y, body);
    finish(k, vars, 1, output)
}

/// The caller's NCHW image (flat buffer 0) into the blocked input storage; padding channels of
/// the last block are written as zeros.
pub fn lower_input(name: &str, output: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let (c, y, x) = (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"));
    let (ch, h, w) = (output.c as i64, output.h as i64, output.w as i64);
    let mut k = new_kernel(
        name,
        vec![Buffer::new("image", Layout::Flat { len: output.len() }, false), output.buffer("out", true)],
    );
    let body = vec![Stmt::For {
        var: x,
        start: ic(0),
        end: ic(w),
        body: vec![Stmt::Store {
            ty: Ty::F32,
            buf: 1,
            index: Index::Act([iv(c), iv(y), iv(x)]),
            value: FExpr::Load(Ty::F32, 0, Index::Flat(iv(c) * (h * w) + iv(y) * w + iv(x))),
        }],
    }];
    rows_tasks(&mut k, &mut vars, ch, h, 0, c, y, body);
    let padded = ceil_div(ch, 4) * 4;
    if padded > ch {
        // The padding lanes: (c - ch) runs over 0..padded-ch.
        let (t, p) = (vars.new_var("t"), vars.new_var("p"));
        let body = vec![
            Stmt::LetInt { var: p, value: iv(t).div(h) + ch },
            Stmt::LetInt { var: y, value: iv(t).rem(h) },
            Stmt::For {
                var: x,
                start: ic(0),
                end: ic(w),
                body: vec![Stmt::Store {
                    ty: Ty::F32,
                    buf: 1,
                    index: Index::Act([iv(p), iv(y), iv(x)]),
                    value: fc(0.0),
                }],
            },
        ];
        k.push_tasks(t, (padded - ch) * h, body);
    }
    finish(k, vars, 1, output)
}

/// A tensor into the caller's flat array (buffer 1), in C, H, W order. Maps are copied a row
/// per task so that no address needs a division by a non-constant-power-of-two.
pub fn lower_output(name: &str, input: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let n = input.len() as i64;
    let mut k =
        new_kernel(name, vec![input.buffer("in", false), Buffer::new("result", Layout::Flat { len: n as u64 }, true)]);
    if input.flat {
        let (t, f) = (vars.new_var("t"), vars.new_var("f"));
        let body = vec![Stmt::For {
            var: f,
            start: iv(t) * 1024,
            end: (iv(t) * 1024 + 1024).min(ic(n)),
            body: vec![Stmt::Store {
                ty: Ty::F32,
                buf: 1,
                index: Index::Flat(iv(f)),
                value: FExpr::Load(Ty::F32, 0, input.flat_index(iv(f))),
            }],
        }];
        k.push_tasks(t, ceil_div(n, 1024), body);
    } else {
        // A task is a row of one block of 4 channels: each pixel's block is loaded as one
        // vector and its lanes stored to the rows of their channels.
        let (ch, h, w) = (input.c as i64, input.h as i64, input.w as i64);
        let row = |vars: &mut Vars, lanes: i64, cb: VarId, y: VarId| -> Vec<Stmt> {
            let (x, px) = (vars.new_var("x"), vars.new_var("px"));
            let mut body = vec![Stmt::Set {
                var: px,
                ty: Ty::F32x4,
                value: FExpr::Load(Ty::F32x4, 0, Index::Act([iv(cb) * 4, iv(y), iv(x)])),
            }];
            for lane in 0..lanes {
                body.push(Stmt::Store {
                    ty: Ty::F32,
                    buf: 1,
                    index: Index::Flat((iv(cb) * 4 + lane) * (h * w) + iv(y) * w + iv(x)),
                    value: FExpr::Lane(Box::new(fv(px)), lane as u8),
                });
            }
            vec![Stmt::For { var: x, start: ic(0), end: ic(w), body }]
        };
        let (cb, y) = (vars.new_var("cb"), vars.new_var("y"));
        let body = row(&mut vars, 4, cb, y);
        rows_tasks(&mut k, &mut vars, ch / 4, h, 0, cb, y, body);
        if ch % 4 != 0 {
            // The last, partial block: its real lanes only.
            let (t, y) = (vars.new_var("t"), vars.new_var("y"));
            let cb = vars.new_var("cb");
            let mut body = vec![Stmt::LetInt { var: cb, value: ic(ch / 4) }, Stmt::LetInt { var: y, value: iv(t) }];
            body.extend(row(&mut vars, ch % 4, cb, y));
            k.push_tasks(t, h, body);
        }
    }
    k.var_names = vars.names;
    k
}
