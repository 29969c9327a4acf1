//! The JIT's kernels, one file per op family: each builds loop IR for the fusion groups its ops
//! anchor (`Lower`), in a lowered (scalar, obvious) form and a scheduled (vector, blocked) form.
//! `lower::Builder::group` picks an op's `Lower` through `with_op!`, the one exhaustive match.
//!
//! Shared here: how a kernel sees a tensor (`TensorView`), the parallel loop over (channel
//! block, row) most kernels use, and the zeroing of an output's halo.

mod channels;
pub(super) mod conv;
mod eltwise;
mod io;
mod layernorm;
mod lrn;
mod pool;
mod softmax;

pub(super) use eltwise::bn_scale_shift;
pub(super) use io::lower_output;

use super::compile::JitError;
use super::ir::*;
use super::lower::Builder;
use crate::analysis::fusion::Group;

/// How a fusion group anchored on an op becomes kernels: every op answers, views and the
/// invalid placeholder with the bug it would be to ask.
pub(super) trait Lower {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError>;
}

/// A tensor as a kernel sees it: its logical shape and the layout of the storage it lives in.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TensorView {
    /// A map `(c, h, w)`, or a flat vector of `c` values (`flat`).
    pub(super) c: u64,
    pub(super) h: u64,
    pub(super) w: u64,
    pub(super) flat: bool,
    pub(super) layout: Layout,
}

impl TensorView {
    /// The index of element `f` of a flat tensor, in flatten order (C, H, W) of the map whose
    /// storage it lives in (a flatten view is not moved in memory).
    pub(super) fn flat_index(&self, f: IExpr) -> Index {
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

    pub(super) fn len(&self) -> u64 {
        if self.flat { self.c } else { self.c * self.h * self.w }
    }

    pub(super) fn buffer(&self, name: &str, writable: bool) -> Buffer {
        Buffer::new(name, self.layout.clone(), writable)
    }

    /// The shape of the storage map the tensor is addressed through.
    pub(super) fn layout_shape(&self) -> (u64, u64, u64) {
        match &self.layout {
            Layout::Blocked { c, h, w, .. } => (*c, *h, *w),
            Layout::Flat { len } => (*len, 1, 1),
        }
    }
}

pub(super) fn new_kernel(name: &str, buffers: Vec<Buffer>) -> Kernel {
    Kernel { name: name.into(), buffers, body: Vec::new(), var_names: Vec::new(), tasks: 0, macs: 0 }
}

/// Installs the variable names and, for a map output, the halo zeroing of its channels.
pub(super) fn finish(mut k: Kernel, vars: Vars, out_buf: BufId, out: &TensorView) -> Kernel {
    k.var_names = vars.names;
    if !out.flat {
        append_halo_zeroing(&mut k, out_buf, out.c);
    }
    k
}

/// Ceiling division of non-negative integers.
pub(super) fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

pub(super) fn splat_if(ty: Ty, e: FExpr) -> FExpr {
    if ty == Ty::F32x4 { splat(e) } else { e }
}

/// Lanes per value: 4 for vectors over channel blocks, 1 for scalars.
pub(super) fn lanes(ty: Ty) -> i64 {
    if ty == Ty::F32x4 { 4 } else { 1 }
}

/// Adds the parallel loop over (channel group, row) of a map: `c` and `y` are defined from `t`,
/// rows `y_first..y_first+rows`. A row is `body`.
#[allow(clippy::too_many_arguments)]
pub(super) fn rows_tasks(
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
    let mut b = vec![let_int(c, iv(t).div(rows)), let_int(y, iv(t).rem(rows) + y_first)];
    b.extend(body);
    k.push_tasks(t, groups * rows, b);
}

/// Appends tasks that write zeros into the halo of `buf`'s channels `0..channels`, one task per
/// block of 4 channels (one per channel when the tensor starts inside a block of its storage),
/// so a storage read by a padded conv always sees zero padding. (The rows and columns a kernel
/// writes never overlap the halo; a whole block's halo may cover a neighbouring tensor's
/// channels, whose halo is zero too.)
pub(super) fn append_halo_zeroing(k: &mut Kernel, buf: BufId, channels: u64) {
    append_halo_zeroing_in(k, buf, channels, channels);
}

/// `append_halo_zeroing` in at most `tasks` tasks (runs of blocks): for kernels whose own tasks
/// are few and long, so that the runtime's chunked claims stay balanced.
pub(super) fn append_halo_zeroing_in(k: &mut Kernel, buf: BufId, channels: u64, tasks: u64) {
    let Layout::Blocked { h, w, halo, channel_offset, .. } = k.buffers[buf].layout.clone() else { return };
    if halo == [0, 0] || channels == 0 {
        return;
    }
    // Whole vectors of 4 channels when the tensor starts on a block, else channel by channel.
    let (ty, units, step) =
        if channel_offset % 4 == 0 { (Ty::F32x4, channels.div_ceil(4), 4) } else { (Ty::F32, channels, 1) };
    let tasks = tasks.clamp(1, units) as i64;
    let per_task = (units as i64 + tasks - 1) / tasks;
    let mut vars = Vars { names: std::mem::take(&mut k.var_names) };
    let (t, y, x) = (vars.new_var("halo_c"), vars.new_var("hy"), vars.new_var("hx"));
    let (h, w, hy, hx) = (h as i64, w as i64, halo[0] as i64, halo[1] as i64);
    let zero = |y: IExpr, x: IExpr| store(ty, buf, act(iv(t) * step, y, x), splat_if(ty, fc(0.0)));
    let per_unit = vec![
        // Rows above and below, full width including the corners.
        for_2d(y, (ic(-hy), ic(0)), x, (ic(-hx), ic(w + hx)), vec![zero(iv(y), iv(x)), zero(iv(y) + (h + hy), iv(x))]),
        // Columns left and right of every row.
        for_2d(y, (ic(0), ic(h)), x, (ic(-hx), ic(0)), vec![zero(iv(y), iv(x)), zero(iv(y), iv(x) + (w + hx))]),
    ];
    // One unit (block or channel) per task: the task index is the unit.
    let (task, body) = if per_task == 1 {
        (t, per_unit)
    } else {
        let task = vars.new_var("halo_task");
        let end = (iv(task) * per_task + per_task).min(ic(units as i64));
        (task, vec![for_range(t, iv(task) * per_task, end, per_unit)])
    };
    k.var_names = vars.names;
    k.body.push(Stmt::Comment(format!("zero the {hy}x{hx} halo of {}", k.buffers[buf].name)));
    k.push_tasks(task, tasks, body);
}
