//! Winograd F(m x m, r x r) for r x r stride-1 convolutions (Lavin and Gray, 2015): m = 2, 4 or
//! 6 for 3x3 kernels, 2 or 4 for 5x5 ones. Each m x m tile of output pixels comes from an n x n
//! tile of input (n = m + r - 1 = 4, 6 or 8 points) through n^2 products per channel pair
//! instead of r^2 m^2 (F(4x4, 3x3): 36 instead of 144; F(4x4, 5x5): 64 instead of 400).
//! A 1xk or kx1 kernel (k = 3, 5, 7) takes the one-dimensional F(m, k) along its long axis:
//! F(2, 7) has tiles of 1 x 2 (or 2 x 1) pixels from 1 x 8 inputs, 8 products instead of 14;
//! along the other axis every length is 1 and every transform the identity. Below, n x n stands
//! for n_h x n_w.
//!
//! A task is a chunk of `nt` tiles (row-major over the output) times a part of the output
//! channels:
//! 1. input transform: each tile's n x n window of every input block (4 channels in the lanes),
//!    read without bounds checks through the input's widened halo (`winograd_halo`), goes through
//!    `B^T d B` into `tiles[xi][in block][tile][4]` (each position's plane padded to an odd
//!    number of cache lines, `plane_stride`): in the thread's scratch, or, when the output
//!    channels are split in several parts, once for all of them in a step of its own
//!    (`input_schedule`) writing the shared workspace;
//! 2. for each of the n^2 positions `xi` and each tile of `vb` output blocks of the task, a
//!    register-blocked product (`tx` tiles by `vb` blocks of accumulators, the reduction over
//!    input channels the only loop) of the transformed weights `U[xi]` and `tiles[xi]`, into
//!    `products[xi][block][tile][4]` (per-thread scratch);
//! 3. output transform `A^T m A` of each tile and block, then the epilogue of the direct form
//!    (bias, folded batch norm, activations, residual, a pool whose window divides the tile),
//!    stores guarded on the edge tiles.
//!
//! Weights are transformed at pack time (`winograd_transforms`) into
//! `[channel tile][xi][in block][lane][vb][4]`; they take n^2 / r^2 times the memory of the
//! r x r weights, which `schedule::winograd_plan` budgets.

use super::super::super::ir::*;
use super::super::append_halo_zeroing_in;
use super::winograd_transforms::{TRANSFORM_TEMPORARIES, matrices, separable, transform_1d};
use super::{ConvBufs, ConvJob, Epilogue, STANDARD, broadcast_input, epilogue, pooled};

/// The schedule of a Winograd convolution F(m x m, r x r): `vb` output blocks by `tx` tiles of accumulators,
/// `nt` tiles per task (a multiple of `tx`), the output-channel tiles split in `kparts` tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in super::super::super) struct WinoTile {
    /// Output tile size along each axis the kernel spans: 2, 4 or 6.
    pub(in super::super::super) m: u64,
    /// Kernel size (rows, columns): 3x3, 5x5, or 1xk or kx1 (k = 3, 5, 7). Along an axis of 1
    /// the tile is one pixel and the transforms are the identity.
    pub(in super::super::super) r: [u64; 2],
    pub(in super::super::super) vb: u64,
    pub(in super::super::super) tx: u64,
    pub(in super::super::super) nt: u64,
    pub(in super::super::super) kparts: u64,
    /// Whether the input transform is a step of its own writing every chunk's tiles to shared
    /// memory (when output channels are split in several parts, each of which would otherwise
    /// transform the same tiles again).
    pub(in super::super::super) shared: bool,
    /// The order of the products' loops inside each position: register tiles of the task's
    /// tiles outside its output-channel tiles (each register tile's transformed inputs stay in
    /// L1 while the weights of the task's channel tiles stream past), else the channel tiles
    /// outside (each weight panel stays in L1 while the tiles stream past).
    pub(in super::super::super) tiles_outer: bool,
    /// Whether the products' transformed inputs are `Stmt::Broadcast`s (one `vbroadcastss
    /// [mem]` for the `vb` FMAs each feeds), the first of each step loaded before its weights.
    pub(in super::super::super) broadcasts: bool,
}

impl WinoTile {
    /// Output tile size along `axis`.
    pub(in super::super::super) fn tile(&self, axis: usize) -> u64 {
        tile_len(self.m, self.r[axis])
    }

    /// Input tile size along `axis`.
    fn n(&self, axis: usize) -> usize {
        (self.tile(axis) + self.r[axis] - 1) as usize
    }

    /// `6x6,3x3`, `2x2,5x5`, `1x2,1x7`: the output tile and the kernel.
    pub(in super::super::super) fn describe(&self) -> String {
        format!("{}x{},{}x{}", self.tile(0), self.tile(1), self.r[0], self.r[1])
    }

    /// Positions of a transformed tile: n_h x n_w.
    pub(super) fn xi(&self) -> i64 {
        (self.n(0) * self.n(1)) as i64
    }
}

/// The output tile's length along an axis with a kernel of `r`: `m`, or 1 where the kernel is 1.
pub(in super::super::super) fn tile_len(m: u64, r: u64) -> u64 {
    if r == 1 { 1 } else { m }
}

/// The halo an input of `len` rows (or columns) needs so that every m x m tile's input window
/// of an r x r convolution with `out` output rows and padding `pad` lies inside it: the last
/// window ends `m * ceil(out / m) + r - 1 - pad` rows after the first real one. (The halo is
/// zero, as padding is, and only outputs past the last one read beyond the padding.) Over the
/// phases of a stride-`s` convolution (`ConvJob::phase_form`; `r` and `pad` are then the phase
/// form's), row `y` of a phase is row `s y + p` of the input, p < s.
pub(in super::super::super) fn winograd_halo(m: u64, r: u64, len: u64, out: u64, pad: u64, s: u64) -> u64 {
    (s * (m * out.div_ceil(m) + r - 1)).saturating_sub(s * pad + len).max(s * pad)
}

/// A stride-`s` convolution (the same stride along both axes, s > 1, no dilation) as a stride-1
/// convolution over the s x s phases of its input, phase (py, px) holding the input's pixels
/// (s y + py, s x + px): tap `k` along an axis with padding `pad` reads phase `(k - pad) mod s`
/// at offset `floor((k - pad) / s)` from the output's position, so the phase form's kernel
/// spans the offsets `floor(-pad / s) ..= floor((k - 1 - pad) / s)`. Returns its kernel and
/// padding per axis (7x7, stride 2, padding 3: 4x4 and 2; 11x11, stride 4, padding 2: 4x4
/// and 1). Its input has s^2 times the input's blocks, some of its taps zero.
pub(in super::super::super) fn phase_kernel(
    kernel: [u64; 2],
    stride: [u64; 2],
    pad: [u64; 2],
    dilation: [u64; 2],
) -> Option<([u64; 2], [u64; 2])> {
    let s = stride[0];
    if s < 2 || stride[1] != s || dilation != [1, 1] || (0..2).any(|a| pad[a] >= kernel[a]) {
        return None;
    }
    let axis = |a: usize| {
        let (k, p, s) = (kernel[a] as i64, pad[a] as i64, s as i64);
        let (lo, hi) = ((-p).div_euclid(s), (k - 1 - p).div_euclid(s));
        ((hi - lo + 1) as u64, (-lo) as u64)
    };
    let (h, w) = (axis(0), axis(1));
    Some(([h.0, w.0], [h.1, w.1]))
}

/// A stride-`s` convolution (the same stride along both axes, s > 1, no dilation) split by
/// phase: the sum of s^2 stride-1 convolutions, phase (py, px)'s over the input's pixels
/// (s y + py, s x + px) with only its own taps, which `phase_kernel` would pad to one common
/// size. Along an axis, tap `k` (padding `pad`) belongs to phase `(k - pad) mod s` at offset
/// `floor((k - pad) / s)`; a phase's taps are consecutive offsets from `-pad'`. Returns each
/// phase with taps, in row-major order of (py, px): the phase, its kernel and its padding
/// (3x3, stride 2, padding 1: (0, 0) 1x1 and 0; (0, 1) 1x2, padding (0, 1); (1, 0) 2x1; (1, 1)
/// 2x2, padding 1). None unless every phase's kernel has at most 2 taps along each axis (3x3
/// and 4x4 kernels at stride 2), where `split_transform_exists` has transforms.
pub(in super::super::super) fn split_kernels(
    kernel: [u64; 2],
    stride: [u64; 2],
    pad: [u64; 2],
    dilation: [u64; 2],
) -> Option<Vec<SplitPhase>> {
    // The same strides, dilation and padding as the phase form takes.
    phase_kernel(kernel, stride, pad, dilation)?;
    let s = stride[0];
    // Along axis a, phase q: (taps, padding).
    let axis = |a: usize, q: u64| {
        let offsets: Vec<i64> = (0..kernel[a] as i64)
            .map(|k| k - pad[a] as i64)
            .filter(|d| d.rem_euclid(s as i64) == q as i64)
            .map(|d| d.div_euclid(s as i64))
            .collect();
        (offsets.len() as u64, offsets.first().map_or(0, |&o| (-o) as u64))
    };
    let mut phases = Vec::new();
    for py in 0..s {
        for px in 0..s {
            let ((rh, ph), (rw, pw)) = (axis(0, py), axis(1, px));
            if rh == 0 || rw == 0 {
                continue;
            }
            if rh > 2 || rw > 2 {
                return None;
            }
            phases.push(SplitPhase { phase: [py, px], kernel: [rh, rw], pad: [ph, pw] });
        }
    }
    Some(phases)
}

/// A stride-1 kernel and its padding, (rows, columns) each.
pub(in super::super::super) type KernelAndPad = ([u64; 2], [u64; 2]);

/// The stride-1 kernels (with their paddings) through which a convolution runs Winograd with
/// tiles of `m`, and the step s between the input pixels they read: its own at stride 1; its
/// phase form's (`phase_kernel`) where that has a transform with `m`; else its phases'
/// (`split_kernels`). As `lower_group` chooses.
pub(in super::super::super) fn winograd_forms(
    kernel: [u64; 2],
    stride: [u64; 2],
    pad: [u64; 2],
    dilation: [u64; 2],
    m: u64,
) -> (Vec<KernelAndPad>, u64) {
    if stride == [1, 1] {
        return (vec![(kernel, pad)], 1);
    }
    let s = stride[0];
    match phase_kernel(kernel, stride, pad, dilation) {
        Some((r, p)) if winograd_transform_exists(m, r) => (vec![(r, p)], s),
        _ => {
            let phases = split_kernels(kernel, stride, pad, dilation).unwrap_or_default();
            (phases.iter().map(|p| (p.kernel, p.pad)).collect(), s)
        }
    }
}

/// One phase of a split strided convolution (`split_kernels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in super::super::super) struct SplitPhase {
    pub(in super::super::super) phase: [u64; 2],
    pub(in super::super::super) kernel: [u64; 2],
    pub(in super::super::super) pad: [u64; 2],
}

/// Whether a phase of a split strided convolution (`split_kernels`: 1 or 2 taps along each
/// axis) has transforms with tiles of `m`: n = m + 1 of 4, 6, 7 or 8 points along an axis of 2
/// taps (m = 3, 5, 6, 7), the identity along an axis of one.
pub(in super::super::super) fn split_transform_exists(m: u64, r: [u64; 2]) -> bool {
    r.iter().all(|&r| r == 1 || r == 2) && matches!(m, 3 | 5 | 6 | 7)
}

/// The input channels of the phase form of a stride-`s` convolution over `cin` channels: s^2
/// phases of the input's blocks of 4 (saturating: the plan rejects what would not fit).
pub(in super::super::super) fn phase_channels(cin: u64, s: u64) -> u64 {
    cin.div_ceil(4).saturating_mul(4).saturating_mul(s.saturating_mul(s))
}

/// Whether Winograd with tiles of `m` has transforms for a kernel of `r` (rows, columns): n =
/// m + r - 1 of 4, 6, 7 or 8 points along each axis the kernel spans; 3x3 and 5x5 kernels, and
/// along one axis 1x3, 1x5 and 1x7 (Inception-v3's) and their transposes; 4x4, the phase form
/// of 7x7 stride-2 and 11x11 stride-4 kernels (`phase_kernel`), with m = 3 or 5.
pub(in super::super::super) fn winograd_transform_exists(m: u64, r: [u64; 2]) -> bool {
    match r {
        [3, 3] | [1, 3] | [3, 1] => matches!(m, 2 | 4 | 5 | 6),
        [5, 5] | [1, 5] | [5, 1] => matches!(m, 2 | 4),
        [1, 7] | [7, 1] => m == 2,
        [4, 4] => matches!(m, 3 | 5),
        _ => false,
    }
}

impl ConvJob {
    /// The stride-1 convolution over the phases of this stride-s one (`phase_kernel`): s^2
    /// times the input blocks (block `p * B + b` of the phase form is block `b` of phase p, B
    /// the input's blocks, channels past the input's in a block zero), the phase form's kernel
    /// and padding, `phases = s` and, over fewer than 4 channels, `lanes` that many; the same
    /// input buffer, size, output and epilogue. None where `phase_kernel` has no form or the
    /// job is grouped or already a phase form.
    pub(in super::super::super) fn phase_form(&self) -> Option<ConvJob> {
        let (kernel, pad) = phase_kernel(self.kernel, self.stride, self.pad, self.dilation)?;
        if self.groups != 1 || self.phases != 1 {
            return None;
        }
        let s = self.stride[0];
        let (cin, lanes) = (phase_channels(self.cin, s), self.cin.min(4));
        Some(ConvJob { cin, kernel, stride: [1, 1], pad, phases: s, lanes, ..self.clone() })
    }

    /// The phases of this strided convolution as stride-1 jobs (`split_kernels`), each reading
    /// its phase of the same input in place (`phase`), with its taps, and the same output.
    /// The first's epilogue is empty and the later ones add what the earlier ones stored (a
    /// residual sum over the output itself); the last adds the bias (`lower_split` gives the
    /// zeros before it) and runs this job's epilogue. None where `split_kernels` has no form,
    /// or the job is grouped, already a phase form, has a residual sum of its own or a pool.
    pub(in super::super::super) fn split_phases(&self) -> Option<Vec<ConvJob>> {
        let phases = split_kernels(self.kernel, self.stride, self.pad, self.dilation)?;
        if self.groups != 1 || self.phases != 1 || self.pool.is_some() || self.epilogue.contains(&Epilogue::Residual) {
            return None;
        }
        let last = phases.len() - 1;
        let jobs = phases
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut epilogue = if i == 0 { Vec::new() } else { vec![Epilogue::Residual] };
                if i == last {
                    epilogue.extend(self.epilogue.iter().copied());
                }
                ConvJob {
                    name: format!("{}/phase{}{}", self.name, p.phase[0], p.phase[1]),
                    kernel: p.kernel,
                    stride: [1, 1],
                    pad: p.pad,
                    epilogue,
                    shortcut_layout: (i > 0).then(|| self.out_layout.clone()),
                    phases: self.stride[0],
                    phase: Some(p.phase),
                    ..self.clone()
                }
            })
            .collect();
        Some(jobs)
    }

    /// Whether the Winograd schedule applies: a kernel whose transform with tiles of `m` exists
    /// (`winograd_transform_exists`), stride 1, no dilation, one group, padding under the
    /// kernel's size, whole blocks of at least 16 input channels, at least 16 output channels,
    /// output at least 4x4, no pool or one of at most 2x2 that divides the tile, and an input
    /// halo as wide as `winograd_halo` asks for tiles of `m`. A strided convolution takes it
    /// through its `phase_form`.
    pub(in super::super::super) fn winograd(&self, m: u64) -> bool {
        let Layout::Blocked { halo, .. } = self.in_layout else { return false };
        let r = self.kernel;
        let tile = |a: usize| tile_len(m, r[a]);
        let pool_fits = self.pool.is_none_or(|(_, k)| (0..2).all(|a| k[a] <= 2 && tile(a) % k[a] == 0));
        let exists = match self.phase {
            Some(_) => split_transform_exists(m, r),
            None => winograd_transform_exists(m, r),
        };
        exists
            && self.stride == [1, 1]
            && self.dilation == [1, 1]
            && self.groups == 1
            && halo[0] >= winograd_halo(tile(0), r[0], self.h, self.oh, self.pad[0], self.phases)
            && halo[1] >= winograd_halo(tile(1), r[1], self.w, self.ow, self.pad[1], self.phases)
            && self.pad[0] < r[0]
            && self.pad[1] < r[1]
            && self.cin % 4 == 0
            && self.cin >= 16
            && self.cout >= 16
            && self.oh >= 4
            && self.ow >= 4
            && pool_fits
    }

    /// Output tiles for tiles of `m` (along the axes the kernel spans): (rows of tiles, columns
    /// of tiles) over the computed output.
    pub(in super::super::super) fn wino_tiles(&self, m: u64) -> (u64, u64) {
        let (rows, cols) = self.computed_hw();
        (rows.div_ceil(tile_len(m, self.kernel[0])), cols.div_ceil(tile_len(m, self.kernel[1])))
    }
}

/// Sizes derived from the job and the tile.
struct Geo {
    rows: i64,
    cols: i64,
    ntx: i64,
    tiles: i64,
    cb: i64,
    kb: i64,
    /// Output-channel tiles (`vb` blocks each) and how many a task takes.
    kt: i64,
    kt_per_part: i64,
}

impl Geo {
    fn new(job: &ConvJob, wt: WinoTile) -> Geo {
        let (rows, cols) = job.computed_hw();
        let (nty, ntx) = job.wino_tiles(wt.m);
        let kb = job.cout.div_ceil(4) as i64;
        let kt = kb / wt.vb as i64;
        Geo {
            rows: rows as i64,
            cols: cols as i64,
            ntx: ntx as i64,
            tiles: (nty * ntx) as i64,
            cb: (job.cin / 4) as i64,
            kb,
            kt,
            kt_per_part: (kt + wt.kparts as i64 - 1) / wt.kparts as i64,
        }
    }

    fn chunks(&self, wt: WinoTile) -> i64 {
        (self.tiles + wt.nt as i64 - 1) / wt.nt as i64
    }
}

/// Length of the transformed weights.
pub(in super::super::super) fn wino_packed_len(job: &ConvJob, m: u64) -> u64 {
    let n = |a: usize| tile_len(m, job.kernel[a]) + job.kernel[a] - 1;
    n(0) * n(1) * job.cout.div_ceil(4) * 4 * job.cin
}

/// Scratch lengths (f32): a chunk's transformed input tiles and the products of a task's output
/// channels (per thread; the tiles of every chunk in shared memory, if `shared`).
pub(in super::super::super) fn wino_scratch(job: &ConvJob, wt: WinoTile) -> [u64; 2] {
    let kt = job.cout.div_ceil(4) / wt.vb;
    let kpp = kt.div_ceil(wt.kparts);
    let (rows, cols) = job.wino_tiles(wt.m);
    let chunks = if wt.shared { (rows * cols).div_ceil(wt.nt) } else { 1 };
    let xi = wt.xi() as u64;
    [xi * tiles_plane(job.cin, wt.nt) * chunks, xi * products_plane(kpp, wt)]
}

/// Floats per position of the transformed tiles: `cin * nt`, padded (`plane_stride`).
pub(in super::super::super) fn tiles_plane(cin: u64, nt: u64) -> u64 {
    plane_stride(cin * nt)
}

/// Floats per position of the products: `kpp` channel tiles of `vb` blocks, `nt` tiles each.
fn products_plane(kpp: u64, wt: WinoTile) -> u64 {
    plane_stride(kpp * wt.vb * 4 * wt.nt)
}

/// The stride between two positions' planes: `floats` rounded up to an odd number of 64-byte
/// lines. The input transform stores a tile's n^2 values in n^2 planes at once, and the output
/// transform loads them so; planes a multiple of 1 KiB apart (ResNet-18's layer1: 64 channels
/// by 196 tiles, 50,176 bytes) fall in 4 of the L1's 64 sets, whose 8 ways cannot hold 36
/// lines being written. An odd number of lines puts the planes in distinct sets. Zen 4, sums of
/// the input-transform steps' minima over 2 alternating rounds, planes as they were then
/// padded: ResNet-18 2.70 -> 1.74 ms, VGG-16 3.80 -> 2.68, DenseNet-121 2.07 -> 1.56,
/// GoogLeNet 0.86 -> 0.69, Inception-v3 2.62 -> 2.51; the products' steps unchanged.
fn plane_stride(floats: u64) -> u64 {
    (floats.div_ceil(16) | 1) * 16
}

fn sub(a: IExpr, b: IExpr) -> IExpr {
    a + b * -1
}

/// 1 if `e > 0`, else 0.
fn positive(e: IExpr) -> IExpr {
    e.max(ic(0)).min(ic(1))
}

fn k(c: f32) -> FExpr {
    splat(fc(c))
}

/// With `shared`, the first step: the input transform of every chunk into shared memory, in
/// tasks over (chunk, part of the input blocks).
pub(in super::super::super) fn input_schedule(job: &ConvJob, wt: WinoTile) -> Kernel {
    let g = Geo::new(job, wt);
    let [vs_len, _] = wino_scratch(job, wt);
    let buffers =
        vec![Buffer::new("in", job.in_layout.clone(), false), Buffer::new("tiles", Layout::Flat { len: vs_len }, true)];
    let bufs = ConvBufs { input: 0, w: 0, bias: 0, out: 0, shortcut: 0 };
    let chunks = g.chunks(wt);
    let parts = ((16 + chunks - 1) / chunks).clamp(1, g.cb);
    let per_part = (g.cb + parts - 1) / parts;
    let mut w = Wino { job, wt, g, bufs, vs: 1, ms: 1, vars: Vars::default() };
    let (t, chunk, c0) = (w.vars.new_var("t"), w.vars.new_var("chunk"), w.vars.new_var("c0"));
    let mut body = vec![
        Stmt::Comment(format!("winograd F({}) input transform: {} tiles per chunk", wt.describe(), wt.nt)),
        let_int(chunk, iv(t).div(parts)),
        let_int(c0, iv(t).rem(parts) * per_part),
    ];
    let per_chunk = wt.xi() * tiles_plane(job.cin, wt.nt) as i64;
    body.extend(w.input_transform(chunk, (iv(c0), (iv(c0) + per_part).min(ic(w.g.cb))), iv(chunk) * per_chunk));
    let mut kernel = Kernel {
        name: format!("{}/in", job.name),
        buffers,
        body: Vec::new(),
        var_names: Vec::new(),
        tasks: 0,
        macs: 0,
    };
    kernel.push_tasks(t, chunks * parts, body);
    kernel.var_names = w.vars.names;
    kernel
}

/// The kernel: tasks over (tile chunk, channel part), then the output halo's zeroing.
pub(in super::super::super) fn schedule(job: &ConvJob, wt: WinoTile) -> Kernel {
    let g = Geo::new(job, wt);
    let mut buffers = job.buffers(wino_packed_len(job, wt.m), g.kb as u64 * 4);
    let [vs_len, ms_len] = wino_scratch(job, wt);
    let (vs, ms) = (buffers.len(), buffers.len() + 1);
    buffers.push(Buffer::new("tiles", Layout::Flat { len: vs_len }, !wt.shared));
    buffers.push(Buffer::new("products", Layout::Flat { len: ms_len }, true));
    let mut w = Wino { job, wt, g, bufs: STANDARD, vs, ms, vars: Vars::default() };
    let t = w.vars.new_var("t");
    let (chunk, part, kt) = (w.vars.new_var("chunk"), w.vars.new_var("part"), w.vars.new_var("kt"));
    let (k0, k1) = (w.vars.new_var("k0"), w.vars.new_var("k1"));
    let mut body = vec![
        Stmt::Comment(format!(
            "winograd F({}): {} tiles per task, {}x{} tile(s) x block(s) of accumulators{}",
            wt.describe(),
            wt.nt,
            wt.tx,
            wt.vb,
            if wt.tiles_outer { ", register tiles outside channel tiles" } else { "" },
        )),
        let_int(chunk, iv(t).div(wt.kparts as i64)),
        let_int(part, iv(t).rem(wt.kparts as i64)),
    ];
    let per_chunk = wt.xi() * tiles_plane(job.cin, wt.nt) as i64;
    let tiles_at = if wt.shared {
        iv(chunk) * per_chunk
    } else {
        body.extend(w.input_transform(chunk, (ic(0), ic(w.g.cb)), ic(0)));
        ic(0)
    };
    let kpp = w.g.kt_per_part;
    body.push(let_int(k0, iv(part) * kpp));
    body.push(let_int(k1, (iv(k0) + kpp).min(ic(w.g.kt))));
    body.extend(w.products(k0, k1, tiles_at));
    let per_kt = w.output_transform(chunk, kt, k0);
    body.push(for_range(kt, iv(k0), iv(k1), per_kt));
    let tasks = w.g.chunks(wt) * wt.kparts as i64;
    let mut kernel =
        Kernel { name: job.name.clone(), buffers, body: Vec::new(), var_names: Vec::new(), tasks: 0, macs: job.macs() };
    kernel.push_tasks(t, tasks, body);
    kernel.var_names = w.vars.names;
    // Two tasks: the runtime claims tasks in equal runs, and these are short next to the others.
    append_halo_zeroing_in(&mut kernel, STANDARD.out, job.cout, 2);
    kernel
}

struct Wino<'a> {
    job: &'a ConvJob,
    wt: WinoTile,
    g: Geo,
    bufs: ConvBufs,
    vs: BufId,
    ms: BufId,
    vars: Vars,
}

impl Wino<'_> {
    fn vars_n(&mut self, name: &str, n: usize) -> Vec<VarId> {
        (0..n).map(|_| self.vars.new_var(name)).collect()
    }

    /// Defines `tile` (its index over the output) and `ty`, `tx` for tile `t` of the chunk.
    /// With `clamp`, the chunk's padding (tiles past the last) repeats the last tile, whose
    /// input window lies inside the input's halo.
    fn locate(&mut self, chunk: VarId, t: IExpr, clamp: bool) -> (VarId, VarId, VarId, Vec<Stmt>) {
        let (tile, ty, tx) = (self.vars.new_var("tile"), self.vars.new_var("ty"), self.vars.new_var("tx"));
        let index = iv(chunk) * self.wt.nt as i64 + t;
        let index = if clamp { index.min(ic(self.g.tiles - 1)) } else { index };
        let code =
            vec![let_int(tile, index), let_int(ty, iv(tile).div(self.g.ntx)), let_int(tx, iv(tile).rem(self.g.ntx))];
        (tile, ty, tx, code)
    }

    /// `B^T d B` of every tile of the chunk and input blocks `blocks`, into `tiles` from `at`.
    fn input_transform(&mut self, chunk: VarId, blocks: (IExpr, IExpr), at: IExpr) -> Vec<Stmt> {
        let (t, cb) = (self.vars.new_var("t"), self.vars.new_var("icb"));
        let (_, ty, tx, mut body) = self.locate(chunk, iv(t), true);
        let job = self.job;
        let (mh, mw) = (self.wt.tile(0) as i64, self.wt.tile(1) as i64);
        // Every window lies inside the input's halo (`winograd_halo`), which is zero.
        let (y0, x0) = (iv(ty) * mh + -(job.pad[0] as i64), iv(tx) * mw + -(job.pad[1] as i64));
        let d = self.vars_n("d", self.wt.xi() as usize);
        let tv = self.vars_n("bt", self.wt.xi() as usize);
        let tmp = self.vars_n("s", TRANSFORM_TEMPORARIES);
        let s = job.phases as i64;
        let (mut block, source) = if s == 1 {
            (Vec::new(), [iv(cb), y0, x0])
        } else if let Some([py, px]) = job.phase {
            // One phase of a split convolution: its blocks are the input's.
            (Vec::new(), [iv(cb), y0 * s + py as i64, x0 * s + px as i64])
        } else {
            // Block cb of the phase form: block `src` of phase (py, px).
            let [phase, src, py, px] = ["phase", "src", "py", "px"].map(|n| self.vars.new_var(n));
            let blocks_per_phase = self.g.cb / (s * s);
            let lets = vec![
                let_int(phase, iv(cb).div(blocks_per_phase)),
                let_int(src, iv(cb).rem(blocks_per_phase)),
                let_int(py, iv(phase).div(s)),
                let_int(px, iv(phase).rem(s)),
            ];
            (lets, [iv(src), y0 * s + iv(py), x0 * s + iv(px)])
        };
        block.extend(self.transform_block(cb, t, &d, &tv, &tmp, &source, &at));
        body.push(for_range(cb, blocks.0, blocks.1, block));
        vec![for_range(t, 0, self.wt.nt as i64, body)]
    }

    /// One input block `cb` of one tile, read from block `src` at window origin `(y0, x0)` with
    /// a step of `phases` pixels: n^2 loads, the column then the row transforms, n^2 stores into
    /// `tiles` from `at`.
    #[allow(clippy::too_many_arguments)]
    fn transform_block(
        &self,
        cb: VarId,
        t: VarId,
        d: &[VarId],
        tv: &[VarId],
        tmp: &[VarId],
        [src, y0, x0]: &[IExpr; 3],
        at0: &IExpr,
    ) -> Vec<Stmt> {
        let step = self.job.phases as i64;
        let (nh, nw) = (self.wt.n(0), self.wt.n(1));
        let bts = [0, 1].map(|a| matrices(self.wt.tile(a), self.wt.r[a]).0);
        // Column j of the window into d[0..nh].
        let load_col = |j: usize| -> Vec<Stmt> {
            (0..nh)
                .map(|i| {
                    let (y, x) = (y0.clone() + i as i64 * step, x0.clone() + j as i64 * step);
                    set(d[i], Ty::F32x4, load(Ty::F32x4, self.bufs.input, act(src.clone() * 4, y, x)))
                })
                .collect()
        };
        let transform = |a: usize| {
            let bt = &bts[a];
            move |input: &[VarId], out: &[VarId]| transform_1d(bt, input, out, tmp)
        };
        // (B^T d B)[i][j] into d, each row stored at positions i*nw + j once computed.
        let mut store_row = |i: usize, out: &[VarId]| {
            let mut stores = Vec::new();
            for (j, &v) in out.iter().enumerate() {
                let xi = (i * nw + j) as i64;
                let plane = tiles_plane(self.job.cin, self.wt.nt) as i64;
                let at = (iv(cb) * self.wt.nt as i64 + iv(t)) * 4 + xi * plane + at0.clone();
                stores.push(store(Ty::F32x4, self.vs, Index::Flat(at), fv(v)));
            }
            stores
        };
        let (t0, t1) = (transform(0), transform(1));
        separable([&t0, &t1], &load_col, d, tv, d, [nh, nw], [nh, nw], &mut store_row)
    }

    /// The n^2 products of the task's output-channel tiles `k0..k1`: for each position (outermost,
    /// so that its transformed tiles stay in cache while the weights stream past), each channel
    /// tile and each of the `nt / tx` register tiles (in the order `tiles_outer` says), a
    /// reduction over all input channels.
    fn products(&mut self, k0: VarId, k1: VarId, tiles_at: IExpr) -> Vec<Stmt> {
        let (xi, tg, cb) = (self.vars.new_var("xi"), self.vars.new_var("tg"), self.vars.new_var("icb"));
        let kt = self.vars.new_var("kt");
        let kpp = self.g.kt_per_part;
        let pplane = products_plane(kpp as u64, self.wt) as i64;
        let (vb, tx, nt, cbn) = (self.wt.vb as usize, self.wt.tx as usize, self.wt.nt as i64, self.g.cb);
        let accs = self.vars_n("acc", vb * tx);
        let wregs = self.vars_n("w", vb);
        let xreg = self.vars.new_var("x");
        let mut init: Vec<Stmt> = accs.iter().map(|&a| set(a, Ty::F32x4, k(0.0))).collect();
        // Weights of (xi, kt, block): [lane][vb][4]. A position's panels are contiguous, so the
        // channel tiles' weights stream in order (in the networks, from memory: ResNet-18's
        // layer3 1.15-1.17 -> 0.89-0.91 ms with [kt][xi] panels before).
        let w_base = ((iv(xi) * self.g.kt + iv(kt)) * cbn + iv(cb)) * (16 * vb as i64);
        let plane = tiles_plane(self.job.cin, self.wt.nt) as i64;
        let x_base = iv(xi) * plane + (iv(cb) * nt + iv(tg) * tx as i64) * 4 + tiles_at;
        let mut step = Vec::new();
        for lane in 0..self.job.lanes as i64 {
            let weights: Vec<Stmt> = wregs
                .iter()
                .enumerate()
                .map(|(v, &wv)| {
                    let at = w_base.clone() + (lane * vb as i64 + v as i64) * 4;
                    set(wv, Ty::F32x4, load(Ty::F32x4, self.bufs.w, Index::Flat(at)))
                })
                .collect();
            if !self.wt.broadcasts {
                step.extend(weights.iter().cloned());
            }
            for b in 0..tx {
                let at = Index::Flat(x_base.clone() + (b as i64 * 4 + lane));
                step.push(broadcast_input(self.wt.broadcasts, xreg, self.vs, at, &accs));
                // The weights load after the first broadcast: loaded first, before the
                // accumulators were carried (`Stmt::Broadcast`), regalloc2 spilled one in
                // ResNet-18's layer4 products (1.47 -> 1.88 ms).
                if self.wt.broadcasts && b == 0 {
                    step.extend(weights.iter().cloned());
                }
                for (v, &wv) in wregs.iter().enumerate() {
                    let acc = accs[b * vb + v];
                    step.push(set(acc, Ty::F32x4, fma(fv(xreg), fv(wv), fv(acc))));
                }
            }
        }
        init.push(for_range(cb, 0, cbn, step));
        for b in 0..tx {
            for v in 0..vb {
                let block = sub(iv(kt), iv(k0)) * vb as i64 + v as i64;
                let at = iv(xi) * pplane + (block * nt + (iv(tg) * tx as i64 + b as i64)) * 4;
                init.push(store(Ty::F32x4, self.ms, Index::Flat(at), fv(accs[b * vb + v])));
            }
        }
        let nest = if self.wt.tiles_outer {
            for_range(tg, 0, nt / tx as i64, vec![for_range(kt, iv(k0), iv(k1), init)])
        } else {
            for_range(kt, iv(k0), iv(k1), vec![for_range(tg, 0, nt / tx as i64, init)])
        };
        vec![for_range(xi, 0, self.wt.xi(), vec![nest])]
    }

    /// `A^T m A` of each real tile of the chunk and each block of channel tile `kt` (the task's
    /// first is `k0`), bias and
    /// epilogue, stores (guarded where the tile crosses the output's edge).
    fn output_transform(&mut self, chunk: VarId, kt: VarId, k0: VarId) -> Vec<Stmt> {
        let (t, v) = (self.vars.new_var("t"), self.vars.new_var("v"));
        let (_, ty, tx, mut body) = self.locate(chunk, iv(t), false);
        let (vb, nt) = (self.wt.vb as i64, self.wt.nt as i64);
        let pplane = products_plane(self.g.kt_per_part as u64, self.wt) as i64;
        let (mh, mw) = (self.wt.tile(0) as usize, self.wt.tile(1) as usize);
        let (nh, nw) = (self.wt.n(0), self.wt.n(1));
        let ats = [0, 1].map(|a| matrices(self.wt.tile(a), self.wt.r[a]).2);
        let m = self.vars_n("m", nh * nw);
        let s = self.vars_n("at", mh * nw);
        let tmp = self.vars_n("s", TRANSFORM_TEMPORARIES);
        let bias = self.vars.new_var("bias");
        let c = (iv(kt) * vb + iv(v)) * 4;
        let mut block = vec![set(bias, Ty::F32x4, load(Ty::F32x4, self.bufs.bias, Index::Flat(c.clone())))];
        // Column j of the products into m[0..nh].
        let load_col = |j: usize| -> Vec<Stmt> {
            (0..nh)
                .map(|i| {
                    let xi = (i * nw + j) as i64;
                    let at = ic(xi * pplane) + ((sub(iv(kt), iv(k0)) * vb + iv(v)) * nt + iv(t)) * 4;
                    set(m[i], Ty::F32x4, load(Ty::F32x4, self.ms, Index::Flat(at)))
                })
                .collect()
        };
        let transform = |a: usize| {
            let (at, tmp) = (&ats[a], &tmp);
            move |input: &[VarId], out: &[VarId]| transform_1d(at, input, out, tmp)
        };
        // (A^T m A)[i][j] into m[i * nw + j], i < mh, j < mw.
        let (t0, t1) = (transform(0), transform(1));
        block.extend(separable([&t0, &t1], &load_col, &m, &s, &m, [nh, nw], [mh, mw], &mut |_, _| Vec::new()));
        let (y0, x0) = (iv(ty) * mh as i64, iv(tx) * mw as i64);
        // Tiles past the last one (the last chunk's padding) store nothing.
        let real = positive(sub(ic(self.g.tiles), iv(t) + iv(chunk) * nt));
        let full = positive(sub(ic(self.g.rows - (mh as i64 - 1)), y0.clone()))
            .min(positive(sub(ic(self.g.cols - (mw as i64 - 1)), x0.clone())));
        let once = (self.vars.new_var("full"), self.vars.new_var("edge"));
        let (job, bufs) = (self.job, self.bufs);
        let value = |i: usize, j: usize| {
            let e = bin(BinOp::Add, fv(m[i * nw + j]), fv(bias));
            epilogue(job, bufs, e, Ty::F32x4, c.clone(), y0.clone() + i as i64, x0.clone() + j as i64)
        };
        let fast = self.stores(&value, &c, &y0, &x0, false);
        let edge = self.stores(&value, &c, &y0, &x0, true);
        let mut full_path = block.clone();
        full_path.extend(fast);
        let mut edge_path = block;
        edge_path.extend(edge);
        body.push(for_range(once.0, 0, full.clone(), vec![for_range(v, 0, vb, full_path)]));
        body.push(for_range(once.1, full, real.clone().min(ic(1)), vec![for_range(v, 0, vb, edge_path)]));
        vec![for_range(t, 0, nt, body)]
    }

    /// The m x m values' stores, or the pooled values' (a window of `k` divides the tile).
    fn stores(
        &mut self,
        value: &dyn Fn(usize, usize) -> FExpr,
        c: &IExpr,
        y0: &IExpr,
        x0: &IExpr,
        guarded: bool,
    ) -> Vec<Stmt> {
        let (out, mut code) = (self.bufs.out, Vec::new());
        let (py, px) = self.job.pool.map_or((1, 1), |(_, k)| (k[0] as usize, k[1] as usize));
        let (mh, mw) = (self.wt.tile(0) as usize, self.wt.tile(1) as usize);
        for a in 0..mh / py {
            for b in 0..mw / px {
                let e = match self.job.pool {
                    Some((kind, _)) => pooled(kind, a * py..(a + 1) * py, b * px..(b + 1) * px, value),
                    None => value(a, b),
                };
                // Output coordinates (pooled, when there is a pool).
                let y = (y0.clone() + (a * py) as i64).div(py as i64);
                let x = (x0.clone() + (b * px) as i64).div(px as i64);
                let st = store(Ty::F32x4, out, act(c.clone(), y.clone(), x.clone()), e);
                if guarded {
                    let (rows, cols) = (self.g.rows / py as i64, self.g.cols / px as i64);
                    let inside = positive(sub(ic(rows), y)).min(positive(sub(ic(cols), x)));
                    let once = self.vars.new_var("in");
                    code.push(for_range(once, 0, inside, vec![st]));
                } else {
                    code.push(st);
                }
            }
        }
        code
    }
}

#[cfg(test)]
mod tests {
    use super::{SplitPhase, phase_kernel, plane_stride, split_kernels};

    /// A split strided convolution's phases (`split_kernels`) hold each tap of the kernel
    /// exactly once, where `split_weights` takes it from: the examples' 3x3 stride-2 kernels
    /// spelled out, and every kernel up to 4 at stride 2 with every padding below it.
    #[test]
    fn split_phases_hold_every_tap_once() {
        let phase = |phase, kernel, pad| SplitPhase { phase, kernel, pad };
        // ResNet's 3x3 stride 2 with padding 1: the centre tap alone in phase (0, 0).
        assert_eq!(
            split_kernels([3, 3], [2, 2], [1, 1], [1, 1]),
            Some(vec![
                phase([0, 0], [1, 1], [0, 0]),
                phase([0, 1], [1, 2], [0, 1]),
                phase([1, 0], [2, 1], [1, 0]),
                phase([1, 1], [2, 2], [1, 1]),
            ])
        );
        // Inception-v3's without padding: the corner taps in phase (0, 0).
        assert_eq!(
            split_kernels([3, 3], [2, 2], [0, 0], [1, 1]),
            Some(vec![
                phase([0, 0], [2, 2], [0, 0]),
                phase([0, 1], [2, 1], [0, 0]),
                phase([1, 0], [1, 2], [0, 0]),
                phase([1, 1], [1, 1], [0, 0]),
            ])
        );
        assert_eq!(split_kernels([5, 5], [2, 2], [2, 2], [1, 1]), None);
        assert_eq!(split_kernels([3, 3], [1, 1], [1, 1], [1, 1]), None);
        assert_eq!(split_kernels([3, 3], [2, 2], [1, 1], [2, 2]), None);
        // Every tap of a kernel of up to 4 at stride 2 lands in exactly one phase's kernel.
        for k in 1..=4u64 {
            for p in 0..k {
                let phases = split_kernels([k, k], [2, 2], [p, p], [1, 1]).expect("a split");
                let mut seen = vec![0; (k * k) as usize];
                for ph in &phases {
                    for ty in 0..ph.kernel[0] {
                        for tx in 0..ph.kernel[1] {
                            // As `split_weights` places them.
                            let ky = p + 2 * ty + ph.phase[0] - 2 * ph.pad[0];
                            let kx = p + 2 * tx + ph.phase[1] - 2 * ph.pad[1];
                            seen[(ky * k + kx) as usize] += 1;
                        }
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "k {k} p {p}: {seen:?}");
            }
        }
    }

    /// Every tap of a strided kernel lands inside the phase form's kernel, whose first and last
    /// offsets are both used: for kernels up to 11, strides up to 4 and every padding below the
    /// kernel; with the shapes of the examples spelled out.
    #[test]
    fn phase_forms_hold_every_tap_and_no_more() {
        assert_eq!(phase_kernel([7, 7], [2, 2], [3, 3], [1, 1]), Some(([4, 4], [2, 2])));
        assert_eq!(phase_kernel([11, 11], [4, 4], [2, 2], [1, 1]), Some(([4, 4], [1, 1])));
        assert_eq!(phase_kernel([3, 3], [2, 2], [1, 1], [1, 1]), Some(([2, 2], [1, 1])));
        assert_eq!(phase_kernel([3, 3], [1, 1], [1, 1], [1, 1]), None);
        assert_eq!(phase_kernel([3, 3], [2, 1], [1, 1], [1, 1]), None);
        assert_eq!(phase_kernel([3, 3], [2, 2], [1, 1], [2, 2]), None);
        for k in 1..=11u64 {
            for s in 2..=4u64 {
                for p in 0..k {
                    let ([r, _], [pad, _]) = phase_kernel([k, k], [s, s], [p, p], [1, 1]).expect("a phase form");
                    let offsets: Vec<i64> =
                        (0..k as i64).map(|tap| (tap - p as i64).div_euclid(s as i64) + pad as i64).collect();
                    assert!(offsets.iter().all(|&o| (0..r as i64).contains(&o)), "k {k} s {s} p {p}");
                    assert_eq!((offsets[0], offsets[k as usize - 1]), (0, r as i64 - 1), "k {k} s {s} p {p}");
                }
            }
        }
    }

    /// Planes are whole, odd numbers of 64-byte lines (16 floats), and no smaller than asked.
    #[test]
    fn planes_take_odd_numbers_of_lines() {
        for floats in [1u64, 15, 16, 17, 32, 33, 12_544, 50_176 / 4] {
            let stride = plane_stride(floats);
            assert!(stride >= floats && stride % 16 == 0 && (stride / 16) % 2 == 1, "{floats}: {stride}");
        }
        assert_eq!(plane_stride(12_544), 12_560);
    }
}
