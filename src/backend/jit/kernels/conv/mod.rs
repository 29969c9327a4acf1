//! Convolution (and fc, which is a convolution whose kernel covers its whole input) with its
//! fused epilogue: folded batch norm and bias, activations, a residual sum, and a
//! non-overlapping pool reduced in registers.
//!
//! `lower` writes the algorithm: a scalar nest per output value, zero padding by bounds checks,
//! weights in PyTorch's `[out, in/groups, kh, kw]` order. `blocked::schedule` writes the fast
//! form (register tiles over packed weights, see there); `pack` packs the weights for it, and
//! `group` turns a fusion group into a `ConvJob` and picks the form.

mod blocked;
mod depthwise;
mod gemv;
mod group;
mod pack;
mod winograd;
mod winograd_transforms;

pub(in super::super) use depthwise::conv_depthwise;
pub(in super::super) use group::{lower_group, plain_algorithms};
pub(in super::super) use winograd::{
    WinoTile, phase_channels, phase_kernel, split_kernels, tile_len, tiles_plane, winograd_forms, winograd_halo,
    winograd_transform_exists,
};

use super::super::ir::*;
use super::append_halo_zeroing;
use super::eltwise::activation_expr;
use crate::ops::{Activation, PoolKind};

/// One step of a convolution's epilogue, applied in order to each accumulator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(in super::super) enum Epilogue {
    Activation(Activation),
    /// Add the shortcut tensor at the same position.
    Residual,
}

/// Everything a fused convolution group computes, resolved from the graph.
#[derive(Clone, Debug, PartialEq)]
pub(in super::super) struct ConvJob {
    pub(in super::super) name: String,
    pub(in super::super) cin: u64,
    /// The input's size as stored (for a phase form, the strided convolution's input).
    pub(in super::super) h: u64,
    pub(in super::super) w: u64,
    pub(in super::super) cout: u64,
    /// Conv output size (before a fused pool).
    pub(in super::super) oh: u64,
    pub(in super::super) ow: u64,
    pub(in super::super) kernel: [u64; 2],
    pub(in super::super) stride: [u64; 2],
    pub(in super::super) pad: [u64; 2],
    pub(in super::super) dilation: [u64; 2],
    pub(in super::super) groups: u64,
    /// After bias and folded bn: activations and the residual sum, in order.
    pub(in super::super) epilogue: Vec<Epilogue>,
    /// A non-overlapping pool (kernel = stride, no padding) over the conv output.
    pub(in super::super) pool: Option<(PoolKind, [u64; 2])>,
    pub(in super::super) in_layout: Layout,
    pub(in super::super) out_layout: Layout,
    pub(in super::super) shortcut_layout: Option<Layout>,
    /// 1, or the stride s of the convolution this job is the phase form of
    /// (`ConvJob::phase_form`): it reads input block `p * B + b` at (y, x) from block `b` at
    /// (s y + p / s, s x + p % s), B = cin / (4 s^2).
    pub(in super::super) phases: u64,
    /// With `phases` s > 1: None for the phase form (all s^2 phases as input blocks), or the
    /// one phase (py, px) this job convolves (`ConvJob::split_phases`): its input pixel (y, x)
    /// is the stored input's (s y + py, s x + px), its blocks the input's.
    pub(in super::super) phase: Option<[u64; 2]>,
    /// The lanes of each input block that may be nonzero: 4, or in the phase form of a
    /// convolution over fewer than 4 channels (a 3-channel image), that many; Winograd's
    /// products skip the others.
    pub(in super::super) lanes: u64,
}

/// A register tile: `ty x tx` output pixels by `v` blocks of 4 output channels, and the order
/// of the tasks: with `rows_outer`, consecutive tasks share input rows (all channel tiles of a
/// row first); otherwise they share weights (all rows of a channel tile first). With
/// `broadcasts`, each input value is a `Stmt::Broadcast` (one `vbroadcastss [mem]` for its `v`
/// FMAs), loaded before the step's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in super::super) struct Tile {
    pub(in super::super) ty: u64,
    pub(in super::super) tx: u64,
    pub(in super::super) v: u64,
    pub(in super::super) rows_outer: bool,
    pub(in super::super) broadcasts: bool,
}

impl ConvJob {
    pub(in super::super) fn cin_g(&self) -> u64 {
        self.cin / self.groups
    }

    pub(in super::super) fn cout_g(&self) -> u64 {
        self.cout / self.groups
    }

    /// Final output size (after the pool, if any).
    fn out_hw(&self) -> (u64, u64) {
        match self.pool {
            Some((_, k)) => (self.oh / k[0], self.ow / k[1]),
            None => (self.oh, self.ow),
        }
    }

    /// Conv output rows and columns that are actually computed (a pool drops the rest).
    fn computed_hw(&self) -> (u64, u64) {
        match self.pool {
            Some((_, k)) => (self.oh / k[0] * k[0], self.ow / k[1] * k[1]),
            None => (self.oh, self.ow),
        }
    }

    pub(in super::super) fn macs(&self) -> u64 {
        let (ch, cw) = self.computed_hw();
        ch * cw * self.cout * self.cin_g() * self.kernel[0] * self.kernel[1]
    }

    /// Whether the register-blocked schedule applies (`conv_blockable`).
    pub(in super::super) fn blockable(&self) -> bool {
        conv_blockable(self.kernel, self.groups, self.cin, self.cout)
    }

    pub(super) fn buffers(&self, weights_len: u64, bias_len: u64) -> Vec<Buffer> {
        let mut b = vec![
            Buffer::new("in", self.in_layout.clone(), false),
            Buffer::new("w", Layout::Flat { len: weights_len }, false),
            Buffer::new("bias", Layout::Flat { len: bias_len }, false),
            Buffer::new("out", self.out_layout.clone(), true),
        ];
        if let Some(l) = &self.shortcut_layout {
            b.push(Buffer::new("shortcut", l.clone(), false));
        }
        b
    }
}

/// Whether a convolution takes the register-blocked schedule: each tile's output channels must
/// come from one group, whose input channels start on a block boundary, and the kernel must be
/// small enough to unroll (its taps are unrolled in every reduction step; a 1x99999 kernel would
/// be a million statements). The others run the lowered form, whose taps are a loop.
pub(in super::super) fn conv_blockable(kernel: [u64; 2], groups: u64, cin: u64, cout: u64) -> bool {
    const MAX_UNROLLED_TAPS: u64 = 256;
    let grouping = groups == 1 || (cin / groups % 4 == 0 && cout / groups % 4 == 0);
    grouping && kernel[0].saturating_mul(kernel[1]) <= MAX_UNROLLED_TAPS
}

/// Which kernel buffers a convolution reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConvBufs {
    input: BufId,
    w: BufId,
    bias: BufId,
    out: BufId,
    shortcut: BufId,
}

/// The buffers of a standalone convolution kernel, in `ConvJob::buffers` order.
const STANDARD: ConvBufs = ConvBufs { input: 0, w: 1, bias: 2, out: 3, shortcut: 4 };

/// The epilogue before pooling, on one value at output `[c, y, x]` (conv coordinates).
fn epilogue(job: &ConvJob, bufs: ConvBufs, acc: FExpr, ty: Ty, c: IExpr, y: IExpr, x: IExpr) -> FExpr {
    let mut e = acc;
    for step in &job.epilogue {
        e = match step {
            Epilogue::Activation(a) => activation_expr(*a, e, ty),
            Epilogue::Residual => bin(BinOp::Add, e, load(ty, bufs.shortcut, act(c.clone(), y.clone(), x.clone()))),
        };
    }
    e
}

/// A non-overlapping pool window of register values (`value(row, col)` over `rows` x `cols`):
/// their maximum, or their mean.
fn pooled(
    kind: PoolKind,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    value: &dyn Fn(usize, usize) -> FExpr,
) -> FExpr {
    let n = rows.len() * cols.len();
    let mut e: Option<FExpr> = None;
    for a in rows {
        for b in cols.clone() {
            let val = value(a, b);
            e = Some(match (e, kind) {
                (None, _) => val,
                (Some(p), PoolKind::Max) => bin(BinOp::Max, p, val),
                (Some(p), PoolKind::Avg) => bin(BinOp::Add, p, val),
            });
        }
    }
    let value = e.expect("a pool window has values");
    match kind {
        PoolKind::Max => value,
        PoolKind::Avg => bin(BinOp::Mul, value, splat(fc(1.0 / n as f32))),
    }
}

/// Puts input value `buf[at]` in every lane of `var` for a register tile's FMAs: as a
/// `Stmt::Broadcast` that carries the tile's accumulators `accs` when the schedule asks for
/// `broadcasts` (`Tile::broadcasts`, `WinoTile::broadcasts`), else as a `Set` of a splat. The
/// two compile to the same values.
pub(super) fn broadcast_input(broadcasts: bool, var: VarId, buf: BufId, at: Index, accs: &[VarId]) -> Stmt {
    if broadcasts { broadcast(var, buf, at, accs) } else { set(var, Ty::F32x4, splat(load(Ty::F32, buf, at))) }
}

/// The algorithm: one scalar nest per output value. Also the fallback schedule for grouped
/// convolutions the register-blocked form cannot express.
pub(in super::super) fn lower(job: &ConvJob) -> Kernel {
    let bufs = STANDARD;
    let mut vars = Vars::default();
    let (c, y, x) = (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"));
    let (ci, ky, kx) = (vars.new_var("ci"), vars.new_var("ky"), vars.new_var("kx"));
    let acc = vars.new_var("acc");
    let (cin_g, cout_g) = (job.cin_g() as i64, job.cout_g() as i64);
    let [kh, kw] = job.kernel.map(|k| k as i64);
    let (oh, ow) = job.out_hw();
    // One conv value at conv-output coordinates (cy, cx), into `acc`.
    let conv_value = |cy: IExpr, cx: IExpr| -> Vec<Stmt> {
        let iy = cy * job.stride[0] as i64 + iv(ky) * job.dilation[0] as i64 + (-(job.pad[0] as i64));
        let ix = cx * job.stride[1] as i64 + iv(kx) * job.dilation[1] as i64 + (-(job.pad[1] as i64));
        let in_c = iv(c).div(cout_g) * cin_g + iv(ci);
        let w_idx = ((iv(c) * cin_g + iv(ci)) * kh + iv(ky)) * kw + iv(kx);
        let guard = Cond::And(
            Box::new(Cond::InRange(iy.clone(), ic(0), ic(job.h as i64))),
            Box::new(Cond::InRange(ix.clone(), ic(0), ic(job.w as i64))),
        );
        let x_val = FExpr::Select(guard, Box::new(load(Ty::F32, bufs.input, act(in_c, iy, ix))), Box::new(fc(0.0)));
        let mac = set(acc, Ty::F32, fma(x_val, load(Ty::F32, bufs.w, Index::Flat(w_idx)), fv(acc)));
        vec![
            set(acc, Ty::F32, load(Ty::F32, bufs.bias, Index::Flat(iv(c)))),
            for_range(ci, 0, cin_g, vec![for_2d(ky, (ic(0), ic(kh)), kx, (ic(0), ic(kw)), vec![mac])]),
        ]
    };
    let mut inner = Vec::new();
    match job.pool {
        None => {
            inner.extend(conv_value(iv(y), iv(x)));
            let value = epilogue(job, bufs, fv(acc), Ty::F32, iv(c), iv(y), iv(x));
            inner.push(store(Ty::F32, bufs.out, act(iv(c), iv(y), iv(x)), value));
        }
        Some((kind, k)) => {
            let (py, px, m) = (vars.new_var("py"), vars.new_var("px"), vars.new_var("pooled"));
            let cy = iv(y) * k[0] as i64 + iv(py);
            let cx = iv(x) * k[1] as i64 + iv(px);
            let mut body = conv_value(cy.clone(), cx.clone());
            let v = epilogue(job, bufs, fv(acc), Ty::F32, iv(c), cy, cx);
            let combined = match kind {
                PoolKind::Max => bin(BinOp::Max, v, fv(m)),
                PoolKind::Avg => bin(BinOp::Add, fv(m), v),
            };
            body.push(set(m, Ty::F32, combined));
            let init = if kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 };
            inner.push(set(m, Ty::F32, fc(init)));
            inner.push(for_2d(py, (ic(0), ic(k[0] as i64)), px, (ic(0), ic(k[1] as i64)), body));
            let value = match kind {
                PoolKind::Max => fv(m),
                PoolKind::Avg => bin(BinOp::Mul, fv(m), fc(1.0 / (k[0] * k[1]) as f32)),
            };
            inner.push(store(Ty::F32, bufs.out, act(iv(c), iv(y), iv(x)), value));
        }
    }
    let t = vars.new_var("t");
    // The parallel loop runs over (channel, row); columns stay inside.
    let body =
        vec![let_int(c, iv(t).div(oh as i64)), let_int(y, iv(t).rem(oh as i64)), for_range(x, 0, ow as i64, inner)];
    let mut k = Kernel {
        name: job.name.clone(),
        buffers: job.buffers(job.cout * job.cin_g() * job.kernel[0] * job.kernel[1], job.cout),
        body: Vec::new(),
        var_names: vars.names,
        tasks: 0,
        macs: job.macs(),
    };
    k.push_tasks(t, (job.cout * oh) as i64, body);
    append_halo_zeroing(&mut k, bufs.out, job.cout);
    k
}
