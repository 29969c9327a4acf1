//! Convolution (and fc, which is a convolution whose kernel covers its whole input) with its
//! fused epilogue: folded batch norm and bias, relu, a residual sum, relu, and a non-overlapping
//! pool reduced in registers.
//!
//! `lower` writes the algorithm: a scalar nest per output value, zero padding by bounds checks,
//! weights in PyTorch's `[out, in/groups, kh, kw]` order. `schedule` writes the fast form:
//! - a task is one tile of `V` output-channel blocks (4 channels each) by `TY` output rows;
//! - inside it, tiles of `TY x TX` pixels keep `TY*TX*V` f32x4 accumulators in registers;
//! - the loop over input-channel blocks is the only loop of the reduction; kernel taps and the 4
//!   input lanes of a block are unrolled; each step loads `V` weight vectors and broadcasts one
//!   input value per pixel;
//! - weights are pre-packed so those `V` vectors are adjacent: `[tile][in block][ky][kx][lane][V][4]`;
//! - the input is read through a zero halo, so no bounds checks are needed;
//! - the epilogue applies relu / shortcut / relu / pool to the accumulators and stores them.
//!
//! `pack_weights` produces the packed layout, and `Tile` is chosen by `schedule::choose_tile`.

use super::ir::*;
use crate::graph::PoolKind;

/// Everything a fused convolution group computes, resolved from the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvJob {
    pub name: String,
    pub cin: u64,
    pub h: u64,
    pub w: u64,
    pub cout: u64,
    /// Conv output size (before a fused pool).
    pub oh: u64,
    pub ow: u64,
    pub kernel: [u64; 2],
    pub stride: [u64; 2],
    pub pad: [u64; 2],
    pub dilation: [u64; 2],
    pub groups: u64,
    /// relu straight after conv (+ bias, folded bn).
    pub relu1: bool,
    /// Add the shortcut tensor, then relu if `relu2`.
    pub residual: bool,
    pub relu2: bool,
    /// A non-overlapping pool (kernel = stride, no padding) over the conv output.
    pub pool: Option<(PoolKind, [u64; 2])>,
    pub in_layout: Layout,
    pub out_layout: Layout,
    pub shortcut_layout: Option<Layout>,
}

/// A register tile: `ty x tx` output pixels by `v` blocks of 4 output channels, and the order
/// of the tasks: with `rows_outer`, consecutive tasks share input rows (all channel tiles of a
/// row first); otherwise they share weights (all rows of a channel tile first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub ty: u64,
    pub tx: u64,
    pub v: u64,
    pub rows_outer: bool,
}

impl ConvJob {
    pub fn cin_g(&self) -> u64 {
        self.cin / self.groups
    }

    pub fn cout_g(&self) -> u64 {
        self.cout / self.groups
    }

    /// Final output size (after the pool, if any).
    pub fn out_hw(&self) -> (u64, u64) {
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

    pub fn macs(&self) -> u64 {
        let (ch, cw) = self.computed_hw();
        ch * cw * self.cout * self.cin_g() * self.kernel[0] * self.kernel[1]
    }

    /// Whether the register-blocked schedule applies: each tile's output channels must come
    /// from one group, whose input channels start on a block boundary.
    pub fn blockable(&self) -> bool {
        self.groups == 1 || (self.cin_g() % 4 == 0 && self.cout_g() % 4 == 0)
    }

    fn buffers(&self, weights_len: u64, bias_len: u64) -> Vec<Buffer> {
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

/// Which kernel buffers a convolution reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvBufs {
    pub input: BufId,
    pub w: BufId,
    pub bias: BufId,
    pub out: BufId,
    pub shortcut: BufId,
}

/// The buffers of a standalone convolution kernel, in `ConvJob::buffers` order.
pub const STANDARD: ConvBufs = ConvBufs { input: 0, w: 1, bias: 2, out: 3, shortcut: 4 };

fn relu(e: FExpr, ty: Ty) -> FExpr {
    let zero = if ty == Ty::F32x4 { splat(fc(0.0)) } else { fc(0.0) };
    bin(BinOp::Max, e, zero)
}

/// The epilogue before pooling, on one value at output `[c, y, x]` (conv coordinates).
fn epilogue(job: &ConvJob, bufs: ConvBufs, acc: FExpr, ty: Ty, c: IExpr, y: IExpr, x: IExpr) -> FExpr {
    let mut e = acc;
    if job.relu1 {
        e = relu(e, ty);
    }
    if job.residual {
        e = bin(BinOp::Add, e, FExpr::Load(ty, bufs.shortcut, Index::Act([c, y, x])));
        if job.relu2 {
            e = relu(e, ty);
        }
    }
    e
}

/// The algorithm: one scalar nest per output value. Also the fallback schedule for grouped
/// convolutions the register-blocked form cannot express.
pub fn lower(job: &ConvJob) -> Kernel {
    let bufs = STANDARD;
    let (b_in, b_w, b_bias, b_out) = (bufs.input, bufs.w, bufs.bias, bufs.out);
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
        let x_val =
            FExpr::Select(guard, Box::new(FExpr::Load(Ty::F32, b_in, Index::Act([in_c, iy, ix]))), Box::new(fc(0.0)));
        vec![
            Stmt::Set { var: acc, ty: Ty::F32, value: FExpr::Load(Ty::F32, b_bias, Index::Flat(iv(c))) },
            Stmt::For {
                var: ci,
                start: ic(0),
                end: ic(cin_g),
                body: vec![Stmt::For {
                    var: ky,
                    start: ic(0),
                    end: ic(kh),
                    body: vec![Stmt::For {
                        var: kx,
                        start: ic(0),
                        end: ic(kw),
                        body: vec![Stmt::Set {
                            var: acc,
                            ty: Ty::F32,
                            value: fma(x_val, FExpr::Load(Ty::F32, b_w, Index::Flat(w_idx)), fv(acc)),
                        }],
                    }],
                }],
            },
        ]
    };
    let mut inner = Vec::new();
    match job.pool {
        None => {
            inner.extend(conv_value(iv(y), iv(x)));
            let value = epilogue(job, bufs, fv(acc), Ty::F32, iv(c), iv(y), iv(x));
            inner.push(Stmt::Store { ty: Ty::F32, buf: b_out, index: Index::Act([iv(c), iv(y), iv(x)]), value });
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
            body.push(Stmt::Set { var: m, ty: Ty::F32, value: combined });
            let init = if kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 };
            inner.push(Stmt::Set { var: m, ty: Ty::F32, value: fc(init) });
            inner.push(Stmt::For {
                var: py,
                start: ic(0),
                end: ic(k[0] as i64),
                body: vec![Stmt::For { var: px, start: ic(0), end: ic(k[1] as i64), body }],
            });
            let value = match kind {
                PoolKind::Max => fv(m),
                PoolKind::Avg => bin(BinOp::Mul, fv(m), fc(1.0 / (k[0] * k[1]) as f32)),
            };
            inner.push(Stmt::Store { ty: Ty::F32, buf: b_out, index: Index::Act([iv(c), iv(y), iv(x)]), value });
        }
    }
    let t = vars.new_var("t");
    // The parallel loop runs over (channel, row); columns stay inside.
    let body = vec![
        Stmt::LetInt { var: c, value: iv(t).div(oh as i64) },
        Stmt::LetInt { var: y, value: iv(t).rem(oh as i64) },
        Stmt::For { var: x, start: ic(0), end: ic(ow as i64), body: inner },
    ];
    let mut k = Kernel {
        name: job.name.clone(),
        buffers: job.buffers(job.cout * job.cin_g() * job.kernel[0] * job.kernel[1], job.cout),
        body: Vec::new(),
        var_names: vars.names,
        tasks: 0,
        macs: job.macs(),
    };
    k.push_tasks(t, (job.cout * oh) as i64, body);
    append_halo_zeroing(&mut k, b_out, job.cout);
    k
}

/// Packs `[cout, cin_g, kh, kw]` weights for `tile` into `[tile][in block][ky][kx][lane][v][4]`,
/// zero where a channel does not exist, multiplying output channel `o` by `scale[o]` (a folded
/// batch norm).
///
/// When no padding is needed (whole blocks of input and output channels) a tile's packed data
/// is exactly as large as its source rows, so each tile is rewritten in place through a
/// per-thread scratch copy: VGG-16's 550 MB of weights need no new memory (fresh pages cost a
/// page fault per 4 KiB, most of the compile time). Tiles are shared out between `threads`.
pub fn pack_weights(
    job: &ConvJob,
    tile: Tile,
    mut weights: Vec<f32>,
    scale: Option<&[f32]>,
    threads: usize,
) -> Vec<f32> {
    let (cin_g, cout) = (job.cin_g() as usize, job.cout as usize);
    let [kh, kw] = job.kernel.map(|k| k as usize);
    let cb_in = cin_g.div_ceil(4);
    let v = tile.v as usize;
    let tiles = cout.div_ceil(4) / v;
    let per_tile = cb_in * kh * kw * 4 * v * 4;
    let row = cin_g * kh * kw;
    // Writes the tile whose source rows are `src` (oc-major, `row` values each) into `dst`.
    // A blocked transpose: a slice of input channels at a time for every output channel of
    // the tile, so reads stream along rows and writes stay in a small window.
    let pack = |src: &[f32], first_oc: usize, dst: &mut [f32]| {
        const CI_CHUNK: usize = 32;
        for ci0 in (0..cin_g).step_by(CI_CHUNK) {
            for r in 0..src.len() / row {
                let (vv, j) = (r / 4, r % 4);
                let s = scale.map_or(1.0, |s| s[first_oc + r]);
                let src_row = &src[r * row..(r + 1) * row];
                for ci in ci0..(ci0 + CI_CHUNK).min(cin_g) {
                    let (icb, lane) = (ci / 4, ci % 4);
                    for ky in 0..kh {
                        for kx in 0..kw {
                            dst[((((icb * kh + ky) * kw + kx) * 4 + lane) * v + vv) * 4 + j] =
                                src_row[(ci * kh + ky) * kw + kx] * s;
                        }
                    }
                }
            }
        }
    };
    // Spawning threads costs more than packing a small layer.
    let threads = if weights.len() < 1 << 20 { 1 } else { threads.clamp(1, tiles.max(1)) };
    let chunk_tiles = tiles.div_ceil(threads).max(1);
    if cin_g % 4 == 0 && cout % (4 * v) == 0 {
        debug_assert_eq!(weights.len(), tiles * per_tile);
        std::thread::scope(|scope| {
            for (c, chunk) in weights.chunks_mut(chunk_tiles * per_tile).enumerate() {
                let pack = &pack;
                scope.spawn(move || {
                    let mut scratch = vec![0.0f32; per_tile];
                    for (k, region) in chunk.chunks_mut(per_tile).enumerate() {
                        scratch.copy_from_slice(region);
                        pack(&scratch, (c * chunk_tiles + k) * 4 * v, region);
                    }
                });
            }
        });
        return weights;
    }
    let mut packed = vec![0.0f32; tiles * per_tile];
    std::thread::scope(|scope| {
        for (c, chunk) in packed.chunks_mut(chunk_tiles * per_tile).enumerate() {
            let (pack, weights) = (&pack, &weights);
            scope.spawn(move || {
                for (k, dst) in chunk.chunks_mut(per_tile).enumerate() {
                    let first_oc = (c * chunk_tiles + k) * 4 * v;
                    let last_oc = (first_oc + 4 * v).min(cout);
                    pack(&weights[first_oc * row..last_oc * row], first_oc, dst);
                }
            });
        }
    });
    packed
}

/// Bias padded to whole blocks of 4 output channels.
pub fn pad_bias(job: &ConvJob, bias: &[f32]) -> Vec<f32> {
    let mut padded = vec![0.0f32; job.cout.div_ceil(4) as usize * 4];
    padded[..bias.len()].copy_from_slice(bias);
    padded
}

/// The register-blocked form. `tile.v` divides the output blocks of a group; `tile.ty` divides
/// the computed rows (it is 1 or the pool's height); `tile.tx` is a multiple of the pool width.
pub fn schedule(job: &ConvJob, tile: Tile) -> Kernel {
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
pub fn packed_len(job: &ConvJob, tile: Tile) -> u64 {
    let n_oc_tiles = job.cout.div_ceil(4) / tile.v;
    n_oc_tiles * job.cin_g().div_ceil(4) * job.kernel[0] * job.kernel[1] * 4 * tile.v * 4
}

/// Number of tasks of the register-blocked form: output-channel tiles x row tiles.
pub fn scheduled_tasks(job: &ConvJob, tile: Tile) -> i64 {
    let (rows, _) = job.computed_hw();
    (job.cout.div_ceil(4) / tile.v * (rows / tile.ty)) as i64
}

/// The body of one task of the register-blocked form; `t` is the task index.
pub fn scheduled_task(job: &ConvJob, tile: Tile, bufs: ConvBufs, vars: &mut Vars, t: VarId) -> Vec<Stmt> {
    let (b_in, b_w, b_bias, b_out) = (bufs.input, bufs.w, bufs.bias, bufs.out);
    let (ty_n, tx_n, v_n) = (tile.ty as usize, tile.tx as usize, tile.v as usize);
    let cin_g = job.cin_g() as i64;
    let cb_in = (job.cin_g().div_ceil(4)) as i64;
    let cb_out = job.cout.div_ceil(4) as i64;
    let cb_out_g = if job.groups == 1 { cb_out } else { (job.cout_g() / 4) as i64 };
    let tiles_per_group = cb_out_g / tile.v as i64;
    let n_oc_tiles = cb_out / tile.v as i64;
    let (rows, cols) = job.computed_hw();
    let n_row_tiles = (rows / tile.ty) as i64;
    let [kh, kw] = job.kernel.map(|k| k as i64);
    let taps = kh * kw;

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
    let mut body = vec![
        Stmt::LetInt { var: o, value: o_value },
        Stmt::LetInt { var: r, value: r_value },
        Stmt::LetInt { var: g, value: iv(o).div(tiles_per_group) },
    ];
    // Accumulator variables, one per (pixel row, pixel col, vector).
    let accs: Vec<VarId> = (0..ty_n * tx_n * v_n).map(|_| vars.new_var("acc")).collect();
    let wregs: Vec<VarId> = (0..v_n).map(|_| vars.new_var("w")).collect();
    let xreg = vars.new_var("x");
    let acc_of = |a: usize, b: usize, v: usize| accs[(a * tx_n + b) * v_n + v];

    // One column tile starting at conv column `x0` (an expression), `tx` pixels wide.
    let tile_code = |x0: IExpr, tx: usize| -> Vec<Stmt> {
        let mut code = Vec::new();
        let oc_block = |v: usize| iv(o) * tile.v as i64 + v as i64;
        for a in 0..ty_n {
            for b in 0..tx {
                for v in 0..v_n {
                    code.push(Stmt::Set {
                        var: acc_of(a, b, v),
                        ty: Ty::F32x4,
                        value: FExpr::Load(Ty::F32x4, b_bias, Index::Flat(oc_block(v) * 4)),
                    });
                }
            }
        }
        // One reduction step over input block `blk` (an expression) with the given lanes.
        let step = |blk: IExpr, lanes: i64| -> Vec<Stmt> {
            let mut s = Vec::new();
            let w_base = (iv(o) * cb_in + blk.clone()) * (taps * 4 * tile.v as i64 * 4);
            let in_block = iv(g) * (cin_g / 4).max(1) + blk.clone();
            for ky in 0..kh {
                for kx in 0..kw {
                    for lane in 0..lanes {
                        let tap = ((ky * kw + kx) * 4 + lane) * tile.v as i64 * 4;
                        // Each weight vector is loaded once per step, each input value broadcast
                        // once per pixel: V + TY*TX loads for TY*TX*V FMAs.
                        for (v, &wvar) in wregs.iter().enumerate() {
                            let value = FExpr::Load(Ty::F32x4, b_w, Index::Flat(w_base.clone() + (tap + v as i64 * 4)));
                            s.push(Stmt::Set { var: wvar, ty: Ty::F32x4, value });
                        }
                        for a in 0..ty_n {
                            let cy = (iv(r) * tile.ty as i64 + a as i64) * job.stride[0] as i64;
                            let iy = cy + (ky * job.dilation[0] as i64 - job.pad[0] as i64);
                            for b in 0..tx {
                                let cx = (x0.clone() + b as i64) * job.stride[1] as i64;
                                let ix = cx + (kx * job.dilation[1] as i64 - job.pad[1] as i64);
                                let c = in_block.clone() * 4 + lane;
                                let value = splat(FExpr::Load(Ty::F32, b_in, Index::Act([c, iy.clone(), ix])));
                                s.push(Stmt::Set { var: xreg, ty: Ty::F32x4, value });
                                for (v, &wvar) in wregs.iter().enumerate() {
                                    let acc = acc_of(a, b, v);
                                    s.push(Stmt::Set {
                                        var: acc,
                                        ty: Ty::F32x4,
                                        value: fma(fv(xreg), fv(wvar), fv(acc)),
                                    });
                                }
                            }
                        }
                    }
                }
            }
            s
        };
        let full_blocks = if cin_g % 4 == 0 { cb_in } else { cb_in - 1 };
        if full_blocks > 0 {
            code.push(Stmt::For { var: icb, start: ic(0), end: ic(full_blocks), body: step(iv(icb), 4) });
        }
        if cin_g % 4 != 0 {
            // The last, partial input block: only its real lanes. It is wrapped in a loop of one
            // iteration because straight after the accumulators' initialisation Cranelift does
            // not fold the input loads into `vbroadcastss mem` (seen in the disassembly:
            // `vmovss` + register `vbroadcastss`, ~20% slower on VGG's 3-channel first layer).
            code.push(Stmt::For { var: icb, start: ic(cb_in - 1), end: ic(cb_in), body: step(iv(icb), cin_g % 4) });
        }
        // Epilogue and stores.
        for v in 0..v_n {
            let c = oc_block(v) * 4;
            let value_at = |a: usize, b: usize| {
                let cy = iv(r) * tile.ty as i64 + a as i64;
                let cx = x0.clone() + b as i64;
                epilogue(job, bufs, fv(acc_of(a, b, v)), Ty::F32x4, c.clone(), cy, cx)
            };
            match job.pool {
                None => {
                    for a in 0..ty_n {
                        for b in 0..tx {
                            let index =
                                Index::Act([c.clone(), iv(r) * tile.ty as i64 + a as i64, x0.clone() + b as i64]);
                            code.push(Stmt::Store { ty: Ty::F32x4, buf: b_out, index, value: value_at(a, b) });
                        }
                    }
                }
                Some((kind, k)) => {
                    let (pky, pkx) = (k[0] as usize, k[1] as usize);
                    for pa in 0..ty_n / pky {
                        for pb in 0..tx / pkx {
                            let mut e: Option<FExpr> = None;
                            for a in pa * pky..(pa + 1) * pky {
                                for b in pb * pkx..(pb + 1) * pkx {
                                    let val = value_at(a, b);
                                    e = Some(match (e, kind) {
                                        (None, _) => val,
                                        (Some(p), PoolKind::Max) => bin(BinOp::Max, p, val),
                                        (Some(p), PoolKind::Avg) => bin(BinOp::Add, p, val),
                                    });
                                }
                            }
                            let mut value = e.expect("a pool window has values");
                            if kind == PoolKind::Avg {
                                value = bin(BinOp::Mul, value, splat(fc(1.0 / (pky * pkx) as f32)));
                            }
                            let py = iv(r) * (tile.ty as i64 / pky as i64) + pa as i64;
                            let px = x0.clone().div(pkx as i64) + pb as i64;
                            code.push(Stmt::Store {
                                ty: Ty::F32x4,
                                buf: b_out,
                                index: Index::Act([c.clone(), py, px]),
                                value,
                            });
                        }
                    }
                }
            }
        }
        code
    };

    let full_x = cols / tile.tx;
    let rem_x = (cols % tile.tx) as usize;
    if full_x > 0 {
        let x0 = iv(xt) * tile.tx as i64;
        body.push(Stmt::For { var: xt, start: ic(0), end: ic(full_x as i64), body: tile_code(x0, tx_n) });
    }
    if rem_x > 0 {
        body.push(Stmt::Comment(format!("remainder: {rem_x} column(s)")));
        body.extend(tile_code(ic((full_x * tile.tx) as i64), rem_x));
    }
    body
}

/// Appends tasks that write zeros into the halo of `buf`'s channels `0..channels`, one task per
/// channel, so a storage read by a padded conv always sees zero padding. (The rows and columns a
/// kernel writes never overlap the halo.)
pub fn append_halo_zeroing(k: &mut Kernel, buf: BufId, channels: u64) {
    let Layout::Blocked { h, w, halo, .. } = k.buffers[buf].layout.clone() else { return };
    if halo == [0, 0] {
        return;
    }
    let mut vars = Vars { names: std::mem::take(&mut k.var_names) };
    let (t, y, x) = (vars.new_var("halo_c"), vars.new_var("hy"), vars.new_var("hx"));
    let (h, w, hy, hx) = (h as i64, w as i64, halo[0] as i64, halo[1] as i64);
    let zero = |y: IExpr, x: IExpr| Stmt::Store { ty: Ty::F32, buf, index: Index::Act([iv(t), y, x]), value: fc(0.0) };
    let body = vec![
        // Rows above and below, full width including the corners.
        Stmt::For {
            var: y,
            start: ic(-hy),
            end: ic(0),
            body: vec![Stmt::For {
                var: x,
                start: ic(-hx),
                end: ic(w + hx),
                body: vec![zero(iv(y), iv(x)), zero(iv(y) + (h + hy), iv(x))],
            }],
        },
        // Columns left and right of every row.
        Stmt::For {
            var: y,
            start: ic(0),
            end: ic(h),
            body: vec![Stmt::For {
                var: x,
                start: ic(-hx),
                end: ic(0),
                body: vec![zero(iv(y), iv(x)), zero(iv(y), iv(x) + (w + hx))],
            }],
        },
    ];
    k.var_names = vars.names;
    k.body.push(Stmt::Comment(format!("zero the {hy}x{hx} halo of {}", k.buffers[buf].name)));
    k.push_tasks(t, channels as i64, body);
}
