//! The register-blocked form of a convolution:
//! - a task is one tile of `V` output-channel blocks (4 channels each) by `TY` output rows;
//! - inside it, tiles of `TY x TX` pixels keep `TY*TX*V` f32x4 accumulators in registers;
//! - the loop over input-channel blocks is the only loop of the reduction; kernel taps and the 4
//!   input lanes of a block are unrolled; each step loads `V` weight vectors and broadcasts one
//!   input value per pixel;
//! - weights are pre-packed (`pack`) so those `V` vectors are adjacent;
//! - the input is read through a zero halo, so no bounds checks are needed;
//! - the epilogue applies activations / shortcut / pool to the accumulators and stores them.
//!
//! `Tile` is chosen by `schedule::choose_tile`.

use super::super::super::ir::*;
use super::super::append_halo_zeroing;
use super::{ConvBufs, ConvJob, STANDARD, Tile, broadcast_input, epilogue, pooled};

/// How many input-channel blocks ahead a 1x1 reduction touches its input (`touch_ahead`)...
const PREFETCH_BLOCKS: i64 = 2;
/// ... when its input's channel blocks are at least this far apart (bytes). Below a page the
/// hardware prefetchers keep up: one thread, 384 -> 96 and 480 -> 192 channels, touching
/// changed nothing at 14x14 (3,136 bytes apart) and gained 10-20% at 28x28 (12,544), 30-45% at
/// 48x48. Without the touch the loop body is emitted once, not twice.
const TOUCH_MIN_BLOCK_BYTES: u64 = 4096;
/// Kernels with this many taps or more (5x5, 7x7, 11x11) loop over their rows in each reduction
/// step instead of unrolling every tap: the unrolled 7x7 stem of GoogLeNet and ResNet-18 was
/// 18 KB of code and the network's slowest kernel to compile.
const ROLLED_ROWS_TAPS: i64 = 25;
/// Accumulators that keep the FMA pipes busy despite each FMA's latency: 2 pipes times 4
/// cycles on Zen (`lane_splits`).
const LATENCY_ACCUMULATORS: usize = 8;

/// The register-blocked form. `tile.v` divides the output blocks of a group; `tile.ty` divides
/// the computed rows (it is 1 or the pool's height); `tile.tx` is a multiple of the pool width.
pub(in super::super::super) fn schedule(job: &ConvJob, tile: Tile) -> Kernel {
    let mut vars = Vars::default();
    let t = vars.new_var("t");
    let mut body = vec![Stmt::Comment(format!(
        "tile {}x{} pixels x {} block(s) of 4 channels, {} outermost",
        tile.ty,
        tile.tx,
        tile.v,
        if tile.rows_outer { "rows" } else { "channel tiles" }
    ))];
    body.extend(scheduled_task(job, tile, STANDARD, &mut vars, t));
    let cb_out = job.cout.div_ceil(4);
    let mut k = Kernel {
        name: job.name.clone(),
        buffers: job.buffers(packed_len(job, tile), cb_out * 4),
        body: Vec::new(),
        var_names: vars.names,
        tasks: 0,
        macs: job.macs(),
    };
    k.push_tasks(t, scheduled_tasks(job, tile), body);
    append_halo_zeroing(&mut k, STANDARD.out, job.cout);
    k
}

/// Length of the packed weights for `tile`.
pub(super) fn packed_len(job: &ConvJob, tile: Tile) -> u64 {
    let n_oc_tiles = job.cout.div_ceil(4) / tile.v;
    n_oc_tiles * job.cin_g().div_ceil(4) * job.kernel[0] * job.kernel[1] * 4 * tile.v * 4
}

/// Number of tasks of the register-blocked form: output-channel tiles x row tiles.
pub(super) fn scheduled_tasks(job: &ConvJob, tile: Tile) -> i64 {
    let (rows, _) = job.computed_hw();
    (job.cout.div_ceil(4) / tile.v * (rows / tile.ty)) as i64
}

/// The body of one task of the register-blocked form; `t` is the task index.
pub(super) fn scheduled_task(job: &ConvJob, tile: Tile, bufs: ConvBufs, vars: &mut Vars, t: VarId) -> Vec<Stmt> {
    let cb_out = job.cout.div_ceil(4) as i64;
    let cb_out_g = if job.groups == 1 { cb_out } else { (job.cout_g() / 4) as i64 };
    let tiles_per_group = cb_out_g / tile.v as i64;
    let n_oc_tiles = cb_out / tile.v as i64;
    let (rows, cols) = job.computed_hw();
    let n_row_tiles = (rows / tile.ty) as i64;
    let o = vars.new_var("tile");
    let r = vars.new_var("row");
    let g = vars.new_var("group");
    let icb = vars.new_var("icb");
    let xt = vars.new_var("xt");
    let (o_value, r_value) = if tile.rows_outer {
        (iv(t).rem(n_oc_tiles), iv(t).div(n_oc_tiles))
    } else {
        (iv(t).div(n_row_tiles), iv(t).rem(n_row_tiles))
    };
    let mut body = vec![let_int(o, o_value), let_int(r, r_value), let_int(g, iv(o).div(tiles_per_group))];
    // Accumulator variables, one per (pixel row, pixel col, vector).
    let accs: Vec<VarId> = (0..tile.ty * tile.tx * tile.v).map(|_| vars.new_var("acc")).collect();
    let wregs: Vec<VarId> = (0..tile.v).map(|_| vars.new_var("w")).collect();
    let xreg = vars.new_var("x");
    let touched = vars.new_var("touched");
    let [kh, kw] = job.kernel.map(|k| k as i64);
    let ky = (kh > 1 && kh * kw >= ROLLED_ROWS_TAPS).then(|| vars.new_var("ky"));
    let task = Task { job, tile, bufs, o, r, g, icb, accs, wregs, xreg, touched, ky };
    let full_x = cols / tile.tx;
    let rem_x = (cols % tile.tx) as usize;
    if full_x > 0 {
        let x0 = iv(xt) * tile.tx as i64;
        body.push(for_range(xt, 0, full_x as i64, task.column_tile(x0, tile.tx as usize)));
    }
    if rem_x > 0 {
        body.push(Stmt::Comment(format!("remainder: {rem_x} column(s)")));
        body.extend(task.column_tile(ic((full_x * tile.tx) as i64), rem_x));
    }
    body
}

/// One task's variables: its channel tile `o`, row tile `r` and group `g`, the reduction
/// counter, and the registers (accumulators, weights, the broadcast input).
struct Task<'a> {
    job: &'a ConvJob,
    tile: Tile,
    bufs: ConvBufs,
    o: VarId,
    r: VarId,
    g: VarId,
    icb: VarId,
    accs: Vec<VarId>,
    wregs: Vec<VarId>,
    xreg: VarId,
    /// The scalar `touch_ahead` loads into (never read).
    touched: VarId,
    /// The kernel row, when a step loops over the rows of a large kernel (`ROLLED_ROWS_TAPS`).
    ky: Option<VarId>,
}

impl Task<'_> {
    fn acc(&self, a: usize, b: usize, v: usize) -> VarId {
        self.accs[(a * self.tile.tx as usize + b) * self.tile.v as usize + v]
    }

    /// The first output channel of vector `v` of the tile.
    fn oc_block(&self, v: usize) -> IExpr {
        iv(self.o) * self.tile.v as i64 + v as i64
    }

    /// Conv output row of pixel row `a` of the tile.
    fn conv_row(&self, a: usize) -> IExpr {
        iv(self.r) * self.tile.ty as i64 + a as i64
    }

    /// One column tile starting at conv column `x0`, `tx` pixels wide: initialise, reduce, store.
    fn column_tile(&self, x0: IExpr, tx: usize) -> Vec<Stmt> {
        let splits = self.lane_splits(tx);
        let mut code = self.init_accumulators(tx, splits);
        code.extend(self.reduction(&x0, tx, splits));
        code.extend(self.combine_splits(tx, splits));
        code.extend(self.stores(&x0, tx));
        code
    }

    /// How many sets of accumulators a tile `tx` pixels wide sums its lanes into: 1, or for a
    /// remainder tile of fewer than `LATENCY_ACCUMULATORS` accumulators, up to 4 (one per lane
    /// of an input block; the unused accumulators of the full tile hold them), so that its FMA
    /// chains do not wait on each other. One pixel left of a 7x7 map's 49 by 1 x 4 tiles ran as
    /// long as a whole tile with 2 chains.
    fn lane_splits(&self, tx: usize) -> usize {
        let acc = self.tile.ty as usize * tx * self.tile.v as usize;
        let full = self.tile.tx as usize;
        if tx >= full || acc >= LATENCY_ACCUMULATORS {
            return 1;
        }
        LATENCY_ACCUMULATORS.div_ceil(acc).min(4).min(full / tx).max(1)
    }

    /// The accumulator of set `j` (`lane_splits`) for pixel (a, b) and vector v of a tile
    /// `tx` wide: set 0 is the tile's own, set j takes pixel column `b + j tx` of the full tile.
    fn split_acc(&self, a: usize, b: usize, v: usize, j: usize, tx: usize) -> VarId {
        self.acc(a, b + j * tx, v)
    }

    fn init_accumulators(&self, tx: usize, splits: usize) -> Vec<Stmt> {
        let mut code = Vec::new();
        for a in 0..self.tile.ty as usize {
            for b in 0..tx {
                for v in 0..self.tile.v as usize {
                    let bias = load(Ty::F32x4, self.bufs.bias, Index::Flat(self.oc_block(v) * 4));
                    code.push(set(self.acc(a, b, v), Ty::F32x4, bias));
                    for j in 1..splits {
                        code.push(set(self.split_acc(a, b, v, j, tx), Ty::F32x4, splat(fc(0.0))));
                    }
                }
            }
        }
        code
    }

    /// Sums the sets of accumulators (`lane_splits`) into the first, pairwise.
    fn combine_splits(&self, tx: usize, splits: usize) -> Vec<Stmt> {
        let mut code = Vec::new();
        for a in 0..self.tile.ty as usize {
            for b in 0..tx {
                for v in 0..self.tile.v as usize {
                    let mut step = 1;
                    while step < splits {
                        for j in (0..splits).step_by(2 * step).filter(|j| j + step < splits) {
                            let (into, from) = (self.split_acc(a, b, v, j, tx), self.split_acc(a, b, v, j + step, tx));
                            code.push(set(into, Ty::F32x4, bin(BinOp::Add, fv(into), fv(from))));
                        }
                        step *= 2;
                    }
                }
            }
        }
        code
    }

    /// The loop over input-channel blocks; the last, partial block only over its real lanes.
    fn reduction(&self, x0: &IExpr, tx: usize, splits: usize) -> Vec<Stmt> {
        let cin_g = self.job.cin_g() as i64;
        let cb_in = self.job.cin_g().div_ceil(4) as i64;
        let icb = self.icb;
        let full_blocks = if cin_g % 4 == 0 { cb_in } else { cb_in - 1 };
        let mut code = Vec::new();
        let far_apart = self.job.h * self.job.w * 16 >= TOUCH_MIN_BLOCK_BYTES;
        let ahead =
            if self.job.kernel == [1, 1] && far_apart && full_blocks > PREFETCH_BLOCKS { PREFETCH_BLOCKS } else { 0 };
        if ahead > 0 {
            let mut body = self.touch_ahead(iv(icb) + ahead, x0, tx);
            body.extend(self.step(iv(icb), 4, x0, tx, splits));
            code.push(for_range(icb, 0, full_blocks - ahead, body));
        }
        if full_blocks > 0 {
            let start = if ahead > 0 { full_blocks - ahead } else { 0 };
            code.push(for_range(icb, start, full_blocks, self.step(iv(icb), 4, x0, tx, splits)));
        }
        if cin_g % 4 != 0 {
            // Wrapped in a loop of one iteration because straight after the accumulators'
            // initialisation Cranelift does not fold the input loads into `vbroadcastss mem`
            // (seen in the disassembly: `vmovss` + register `vbroadcastss`, ~20% slower on
            // VGG's 3-channel first layer).
            code.push(for_range(icb, cb_in - 1, cb_in, self.step(iv(icb), cin_g % 4, x0, tx, splits)));
        }
        code
    }

    /// The input's channel block for block `blk` of the task's group.
    fn input_block(&self, blk: IExpr) -> IExpr {
        iv(self.g) * (self.job.cin_g() as i64 / 4).max(1) + blk
    }

    /// Loads (into a variable nothing reads; Cranelift keeps loads) one value of each
    /// cache line that the step over input block `blk` will read. The reduction walks the
    /// channel blocks a whole block apart, a stride no hardware prefetcher follows; loading a
    /// few blocks ahead starts those lines' misses early. (One 1x1 layer, 384 -> 96 channels at
    /// 56x56, one thread: 26-29 -> 38-41 GFLOP/s; see BENCHMARKS.md.)
    fn touch_ahead(&self, blk: IExpr, x0: &IExpr, tx: usize) -> Vec<Stmt> {
        let job = self.job;
        let in_block = self.input_block(blk);
        // Pixels 4 apart are a 64-byte line apart; the last pixel covers the final line.
        let span = (tx as i64 - 1) * job.stride[1] as i64 + 1;
        let mut xs: Vec<i64> = (0..span).step_by(4).collect();
        if xs.last() != Some(&(span - 1)) {
            xs.push(span - 1);
        }
        let mut s = Vec::new();
        // The rows and columns the step reads: a 1x1 kernel may still pad (into the halo).
        let [py, px] = job.pad.map(|p| p as i64);
        for a in 0..self.tile.ty as usize {
            let iy = self.conv_row(a) * job.stride[0] as i64 + -py;
            for &dx in &xs {
                let ix = x0.clone() * job.stride[1] as i64 + (dx - px);
                let v = load(Ty::F32, self.bufs.input, act(in_block.clone() * 4, iy.clone(), ix));
                s.push(set(self.touched, Ty::F32, v));
            }
        }
        s
    }

    /// One reduction step over input block `blk` with `lanes` real lanes: every tap and lane
    /// unrolled (a kernel of `ROLLED_ROWS_TAPS` taps or more: a loop over its rows, each row's
    /// taps and lanes unrolled); `V` weight loads and one broadcast per pixel feed `TY*TX*V` FMAs.
    fn step(&self, blk: IExpr, lanes: i64, x0: &IExpr, tx: usize, splits: usize) -> Vec<Stmt> {
        let kh = self.job.kernel[0] as i64;
        match self.ky {
            Some(ky) => vec![for_range(ky, 0, kh, self.step_rows(blk, 0..1, Some(iv(ky)), lanes, x0, tx, splits))],
            None => self.step_rows(blk, 0..kh, None, lanes, x0, tx, splits),
        }
    }

    /// The taps of kernel rows `rows` of a reduction step, each offset by `rolled` rows if the
    /// step loops over the kernel's rows (see `step`); lane l's products go to accumulator set
    /// `l % splits` (`lane_splits`).
    #[allow(clippy::too_many_arguments)]
    fn step_rows(
        &self,
        blk: IExpr,
        rows: std::ops::Range<i64>,
        rolled: Option<IExpr>,
        lanes: i64,
        x0: &IExpr,
        tx: usize,
        splits: usize,
    ) -> Vec<Stmt> {
        let job = self.job;
        let v_n = self.tile.v as i64;
        let [kh, kw] = job.kernel.map(|k| k as i64);
        let cb_in = job.cin_g().div_ceil(4) as i64;
        let mut w_base = (iv(self.o) * cb_in + blk.clone()) * (kh * kw * 4 * v_n * 4);
        if let Some(ky) = &rolled {
            w_base = w_base + ky.clone() * (kw * 4 * v_n * 4);
        }
        let in_block = self.input_block(blk);
        // The accumulators of this (possibly narrower) tile, carried past each broadcast.
        let live: Vec<VarId> = (0..self.tile.ty as usize)
            .flat_map(|a| {
                (0..tx).flat_map(move |b| {
                    (0..v_n as usize).flat_map(move |v| (0..splits).map(move |j| self.split_acc(a, b, v, j, tx)))
                })
            })
            .collect();
        let mut s = Vec::new();
        for ky in rows {
            for kx in 0..kw {
                for lane in 0..lanes {
                    let tap = ((ky * kw + kx) * 4 + lane) * v_n * 4;
                    let weights: Vec<Stmt> = (self.wregs.iter().enumerate())
                        .map(|(v, &wvar)| {
                            let w = load(Ty::F32x4, self.bufs.w, Index::Flat(w_base.clone() + (tap + v as i64 * 4)));
                            set(wvar, Ty::F32x4, w)
                        })
                        .collect();
                    // With broadcasts, the weights load after the step's first broadcast, as in
                    // the Winograd products (`Wino::products`).
                    if !self.tile.broadcasts {
                        s.extend(weights.iter().cloned());
                    }
                    for a in 0..self.tile.ty as usize {
                        let mut iy =
                            self.conv_row(a) * job.stride[0] as i64 + (ky * job.dilation[0] as i64 - job.pad[0] as i64);
                        if let Some(ky) = &rolled {
                            iy = iy + ky.clone() * job.dilation[0] as i64;
                        }
                        for b in 0..tx {
                            let cx = (x0.clone() + b as i64) * job.stride[1] as i64;
                            let ix = cx + (kx * job.dilation[1] as i64 - job.pad[1] as i64);
                            let at = act(in_block.clone() * 4 + lane, iy.clone(), ix);
                            s.push(broadcast_input(self.tile.broadcasts, self.xreg, self.bufs.input, at, &live));
                            if self.tile.broadcasts && a == 0 && b == 0 {
                                s.extend(weights.iter().cloned());
                            }
                            for (v, &wvar) in self.wregs.iter().enumerate() {
                                let acc = self.split_acc(a, b, v, lane as usize % splits, tx);
                                s.push(set(acc, Ty::F32x4, fma(fv(self.xreg), fv(wvar), fv(acc))));
                            }
                        }
                    }
                }
            }
        }
        s
    }

    /// The epilogue and the stores, through a fused pool if there is one.
    fn stores(&self, x0: &IExpr, tx: usize) -> Vec<Stmt> {
        let (ty_n, out) = (self.tile.ty as usize, self.bufs.out);
        let mut code = Vec::new();
        for v in 0..self.tile.v as usize {
            let c = self.oc_block(v) * 4;
            let value_at = |a: usize, b: usize| {
                let acc = fv(self.acc(a, b, v));
                epilogue(self.job, self.bufs, acc, Ty::F32x4, c.clone(), self.conv_row(a), x0.clone() + b as i64)
            };
            match self.job.pool {
                None => {
                    for a in 0..ty_n {
                        for b in 0..tx {
                            let index = act(c.clone(), self.conv_row(a), x0.clone() + b as i64);
                            code.push(store(Ty::F32x4, out, index, value_at(a, b)));
                        }
                    }
                }
                Some((kind, k)) => {
                    let (pky, pkx) = (k[0] as usize, k[1] as usize);
                    for pa in 0..ty_n / pky {
                        for pb in 0..tx / pkx {
                            let value = pooled(kind, pa * pky..(pa + 1) * pky, pb * pkx..(pb + 1) * pkx, &value_at);
                            let py = iv(self.r) * (self.tile.ty as i64 / pky as i64) + pa as i64;
                            let px = x0.clone().div(pkx as i64) + pb as i64;
                            code.push(store(Ty::F32x4, out, act(c.clone(), py, px), value));
                        }
                    }
                }
            }
        }
        code
    }
}
