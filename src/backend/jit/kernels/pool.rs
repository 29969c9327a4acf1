//! Max and average pooling, and global and adaptive average pooling. Each has a lowered form (a
//! scalar nest, every read guarded) and a vector schedule over blocks of 4 channels in which the
//! windows of interior pixels are read without bounds checks.

use super::super::compile::JitError;
use super::super::ir::*;
use super::super::lower::Builder;
use super::super::schedule::streamed;
use super::{Lower, TensorView, ceil_div, finish, lanes, new_kernel, rows_tasks, splat_if};
use crate::analysis::fusion::Group;
use crate::ops::{AdaptiveAvgPool, Gap, Pool, PoolKind};

#[derive(Clone, Debug, PartialEq)]
pub(super) struct PoolJob {
    pub(super) name: String,
    pub(super) kind: PoolKind,
    pub(super) kernel: [u64; 2],
    pub(super) stride: [u64; 2],
    pub(super) pad: [u64; 2],
    pub(super) input: TensorView,
    pub(super) output: TensorView,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct AvgJob {
    pub(super) name: String,
    pub(super) input: TensorView,
    pub(super) output: TensorView,
}

impl Lower for Pool {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let (name, input_node) = (b.name_of(g), b.anchor_input(g, 0));
        let job = PoolJob {
            name: name.clone(),
            kind: self.kind,
            kernel: self.kernel,
            stride: self.stride,
            pad: self.pad,
            input: b.view(input_node)?,
            output: b.view(g.output)?,
        };
        let work = (job.output.len() * self.kernel[0] * self.kernel[1]).max(streamed(job.input.len()));
        let bindings = vec![b.arena(input_node)?, b.arena(g.output)?];
        b.push(name, g.nodes.clone(), pool_kernel(&job, Ty::F32), pool_kernel(&job, Ty::F32x4), bindings, work);
        Ok(())
    }
}

impl Lower for AdaptiveAvgPool {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        lower_average(b, g)
    }
}

impl Lower for Gap {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        if g.nodes.len() > 1 {
            // gap + fc (+ epilogue): one pass, in the convolution's kernel.
            let map = b.view(b.anchor_input(g, 0))?;
            super::conv::lower_group(b, g, Some(map))
        } else {
            lower_average(b, g)
        }
    }
}

fn lower_average(b: &mut Builder, g: &Group) -> Result<(), JitError> {
    let (name, input_node) = (b.name_of(g), b.anchor_input(g, 0));
    let job = AvgJob { name: name.clone(), input: b.view(input_node)?, output: b.view(g.output)? };
    // Every input value is read and added once.
    let work = streamed(job.input.len());
    let bindings = vec![b.arena(input_node)?, b.arena(g.output)?];
    b.push(name, g.nodes.clone(), adaptive_kernel(&job, Ty::F32), adaptive_kernel(&job, Ty::F32x4), bindings, work);
    Ok(())
}

/// What every pooling kernel sets up: a kernel reading buffer 0 and writing buffer 1, the
/// variables of the channel block (`c`, `lanes` channels wide) and the output pixel, and the
/// accumulator.
struct Spatial {
    kernel: Kernel,
    vars: Vars,
    c: VarId,
    oy: VarId,
    ox: VarId,
    acc: VarId,
    lanes: i64,
    /// Channel blocks (tasks per row).
    groups: i64,
}

impl Spatial {
    fn new(name: &str, input: &TensorView, output: &TensorView, ty: Ty) -> Spatial {
        let mut vars = Vars::default();
        let (c, oy, ox, acc) = (vars.new_var("c"), vars.new_var("oy"), vars.new_var("ox"), vars.new_var("acc"));
        let kernel = new_kernel(name, vec![input.buffer("in", false), output.buffer("out", true)]);
        let lanes = lanes(ty);
        Spatial { kernel, vars, c, oy, ox, acc, lanes, groups: ceil_div(input.c as i64, lanes) }
    }

    /// Rows `first..first+rows` of the output in parallel tasks, each running `row`.
    fn rows(&mut self, rows: i64, first: i64, row: Vec<Stmt>) {
        rows_tasks(&mut self.kernel, &mut self.vars, self.groups, rows, first, self.c, self.oy, row);
    }

    /// `for ox in from..to { pixel }`.
    fn columns(&self, from: i64, to: i64, pixel: Vec<Stmt>) -> Stmt {
        for_range(self.ox, from, to, pixel)
    }

    fn finish(self, output: &TensorView) -> Kernel {
        finish(self.kernel, self.vars, 1, output)
    }
}

/// PyTorch's windows: start at `o*s - p`; max ignores positions outside the input; average
/// divides by the window clipped to the padded input (`count_include_pad=True`). In the scalar
/// form every read is guarded; in the vector form only border pixels are.
pub(super) fn pool_kernel(p: &PoolJob, ty: Ty) -> Kernel {
    let mut sp = Spatial::new(&p.name, &p.input, &p.output, ty);
    let (ky, kx) = (sp.vars.new_var("ky"), sp.vars.new_var("kx"));
    let (c, oy, ox, acc) = (sp.c, sp.oy, sp.ox, sp.acc);
    let (h, w) = (p.input.h as i64, p.input.w as i64);
    let (oh, ow) = (p.output.h as i64, p.output.w as i64);
    let [kh, kw] = p.kernel.map(|v| v as i64);
    let [sh, sw] = p.stride.map(|v| v as i64);
    let [ph, pw] = p.pad.map(|v| v as i64);
    let init = if p.kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 };
    // Small windows are unrolled (offsets become load immediates off one base per pixel);
    // large ones stay loops.
    let unroll = kh * kw <= 25;
    let ch = iv(c) * sp.lanes;
    // `ey`, `ex`: what is known of the window's rows and columns (see `Edge`).
    let pixel = |ey: Edge, ex: Edge| -> Vec<Stmt> {
        let checked = ey != Edge::Inside || ex != Edge::Inside;
        // The guard one dimension needs for window offset `k`: none (inside), a run-time range
        // check, or None when the position is known to lie outside (the tap is left out: max
        // ignores it, and it adds 0 to a sum).
        let guard = |edge: Edge, o: VarId, s: i64, pad: i64, len: i64, k: i64| -> Option<Option<Cond>> {
            match edge {
                Edge::Inside => Some(None),
                Edge::At(at) => (0..len).contains(&(at * s + k - pad)).then_some(None),
                Edge::Unknown => Some(Some(Cond::InRange(iv(o) * s + k + (-pad), ic(0), ic(len)))),
            }
        };
        let element = |y: i64, x: i64| -> Option<Stmt> {
            let iy = iv(oy) * sh + y + (-ph);
            let ix = iv(ox) * sw + x + (-pw);
            let load = load(ty, 0, act(ch.clone(), iy, ix));
            let value = match (guard(ey, oy, sh, ph, h, y)?, guard(ex, ox, sw, pw, w, x)?) {
                (None, None) => load,
                (Some(g), None) | (None, Some(g)) => FExpr::Select(g, Box::new(load), Box::new(splat_if(ty, fc(init)))),
                (Some(gy), Some(gx)) => FExpr::Select(
                    Cond::And(Box::new(gy), Box::new(gx)),
                    Box::new(load),
                    Box::new(splat_if(ty, fc(init))),
                ),
            };
            let combined =
                if p.kind == PoolKind::Max { bin(BinOp::Max, value, fv(acc)) } else { bin(BinOp::Add, fv(acc), value) };
            Some(set(acc, ty, combined))
        };
        let window: Vec<Stmt> = if unroll {
            (0..kh).flat_map(|y| (0..kw).map(move |x| (y, x))).filter_map(|(y, x)| element(y, x)).collect()
        } else {
            // A large window is clipped to the input: the work is the output times the part of
            // the window that reads real values, never the whole (padded) window.
            let (y0, x0) = (iv(oy) * sh + (-ph), iv(ox) * sw + (-pw));
            let rows = (y0.clone().max(ic(0)), (y0 + kh).min(ic(h)));
            let cols = (x0.clone().max(ic(0)), (x0 + kw).min(ic(w)));
            let value = load(ty, 0, act(ch.clone(), iv(ky), iv(kx)));
            let combined =
                if p.kind == PoolKind::Max { bin(BinOp::Max, value, fv(acc)) } else { bin(BinOp::Add, fv(acc), value) };
            vec![for_2d(ky, rows, kx, cols, vec![set(acc, ty, combined)])]
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
        let mut stmts = vec![set(acc, ty, splat_if(ty, fc(init)))];
        stmts.extend(window);
        stmts.push(store(ty, 1, act(ch.clone(), iv(oy), iv(ox)), result));
        stmts
    };
    if ty == Ty::F32 {
        let row = vec![sp.columns(0, ow, pixel(Edge::Unknown, Edge::Unknown))];
        sp.rows(oh, 0, row);
        return sp.finish(&p.output);
    }
    // Interior pixels: windows entirely inside the input.
    let first_inside = |pad: i64, s: i64| (pad + s - 1) / s;
    let end_inside = |len: i64, k: i64, pad: i64, s: i64| if len + pad >= k { (len + pad - k) / s + 1 } else { 0 };
    let (y_lo, x_lo) = (first_inside(ph, sh).min(oh), first_inside(pw, sw).min(ow));
    let y_hi = end_inside(h, kh, ph, sh).clamp(y_lo, oh);
    let x_hi = end_inside(w, kw, pw, sw).clamp(x_lo, ow);
    // Every row splits into border columns, interior ones and border ones again; a border of
    // one row or column has its taps decided here (`Edge::At`).
    let row = |ey: Edge| {
        vec![
            sp.columns(0, x_lo, pixel(ey, Edge::border(0, x_lo))),
            sp.columns(x_lo, x_hi, pixel(ey, Edge::Inside)),
            sp.columns(x_hi, ow, pixel(ey, Edge::border(x_hi, ow))),
        ]
    };
    let (interior, top, bottom) = (row(Edge::Inside), row(Edge::border(0, y_lo)), row(Edge::border(y_hi, oh)));
    sp.rows(y_hi - y_lo, y_lo, interior);
    sp.rows(y_lo, 0, top);
    sp.rows(oh - y_hi, y_hi, bottom);
    sp.finish(&p.output)
}

/// What a pooling kernel knows of the window positions of the pixels a loop covers, in one
/// dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edge {
    /// Every window lies inside the input.
    Inside,
    /// Only at run time: each read is range-checked.
    Unknown,
    /// The loop covers this one output position: each tap is known inside or outside.
    At(i64),
}

impl Edge {
    /// A border run of output positions `from..to`.
    fn border(from: i64, to: i64) -> Edge {
        if to - from == 1 { Edge::At(from) } else { Edge::Unknown }
    }
}

/// Adaptive average pooling (gap is the 1x1 case): output `i` averages input
/// `floor(i*L/O) .. ceil((i+1)*L/O)`. The vector form sums up to `AVG_BLOCKS` channel blocks
/// side by side, each in its own accumulator and in the same order as alone: one chain of
/// additions is bound by the add's latency (a gap over 144 x 56 x 56 took 0.096 ms on one
/// thread). The last task's spare accumulators repeat the last block.
pub(super) fn adaptive_kernel(a: &AvgJob, ty: Ty) -> Kernel {
    let mut sp = Spatial::new(&a.name, &a.input, &a.output, ty);
    let (y, x) = (sp.vars.new_var("y"), sp.vars.new_var("x"));
    let (oy, ox) = (sp.oy, sp.ox);
    let (h, w) = (a.input.h as i64, a.input.w as i64);
    let (oh, ow) = (a.output.h as i64, a.output.w as i64);
    // (At most half the blocks, so that two threads have a task each.)
    let side_by_side = if ty == Ty::F32x4 { ceil_div(sp.groups, 2).clamp(1, AVG_BLOCKS) } else { 1 };
    let accs: Vec<VarId> = (0..side_by_side).map(|j| if j == 0 { sp.acc } else { sp.vars.new_var("acc") }).collect();
    let last = sp.groups - 1;
    let blocks: Vec<VarId> = (0..side_by_side).map(|_| sp.vars.new_var("cb")).collect();
    let channels: Vec<IExpr> = blocks.iter().map(|&cb| iv(cb) * sp.lanes).collect();
    let mut pixel: Vec<Stmt> = blocks
        .iter()
        .enumerate()
        .map(|(j, &cb)| let_int(cb, (iv(sp.c) * side_by_side + j as i64).min(ic(last))))
        .collect();
    sp.groups = ceil_div(sp.groups, side_by_side);
    let (y0, y1) = ((iv(oy) * h).div(oh), (iv(oy) * h + (h * 1 + oh - 1)).div(oh));
    let (x0, x1) = ((iv(ox) * w).div(ow), (iv(ox) * w + (w + ow - 1)).div(ow));
    let count = IExpr::Mul(Box::new(y1.clone() + y0.clone() * -1), Box::new(x1.clone() + x0.clone() * -1));
    pixel.extend(accs.iter().map(|&acc| set(acc, ty, splat_if(ty, fc(0.0)))));
    let sums = accs
        .iter()
        .zip(&channels)
        .map(|(&acc, ch)| set(acc, ty, bin(BinOp::Add, fv(acc), load(ty, 0, act(ch.clone(), iv(y), iv(x))))))
        .collect();
    pixel.push(for_2d(y, (y0, y1), x, (x0, x1), sums));
    for (&acc, ch) in accs.iter().zip(&channels) {
        let mean = bin(BinOp::Div, fv(acc), splat_if(ty, FExpr::FromInt(count.clone())));
        pixel.push(store(ty, 1, act(ch.clone(), iv(oy), iv(ox)), mean));
    }
    let row = vec![sp.columns(0, ow, pixel)];
    sp.rows(oh, 0, row);
    sp.finish(&a.output)
}

/// Channel blocks an average pool sums side by side (four chains of additions cover the
/// latency of each).
const AVG_BLOCKS: i64 = 4;
