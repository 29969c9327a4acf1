//! Depthwise convolutions (one input and one output channel per group: MobileNet, EfficientNet,
//! ShuffleNet, ConvNeXt's 7x7) with four channels in the vector lanes. A task is one output row
//! of one block of 4 channels, computed a few neighbouring pixels at a time
//! (`schedule::depthwise_pixels`): each output
//! pixel is a chain of one FMA per tap on the input window (in tap order, so the sum is the
//! same as one pixel at a time), read through the input's zero halo (as wide as the padding),
//! so no tap needs a bounds check. Weights are packed `[block][tap][4]`
//! with a folded batch norm's scale, the bias padded to whole blocks.

use super::super::super::ir::*;
use super::super::append_halo_zeroing;
use super::{ConvJob, STANDARD, epilogue};

/// Kernels up to this many taps are unrolled (ConvNeXt's 7x7 is 49).
pub(in super::super::super) const MAX_DEPTHWISE_TAPS: u64 = 81;

/// Whether a convolution takes the depthwise schedule: as many groups as input and output
/// channels, a kernel small enough to unroll, and no fused pool.
pub(in super::super::super) fn conv_depthwise(kernel: [u64; 2], groups: u64, cin: u64, cout: u64) -> bool {
    groups == cin && cout == cin && kernel[0].saturating_mul(kernel[1]) <= MAX_DEPTHWISE_TAPS
}

impl ConvJob {
    /// Whether the depthwise schedule applies (`conv_depthwise`, and no fused pool).
    pub(in super::super::super) fn depthwise(&self) -> bool {
        conv_depthwise(self.kernel, self.groups, self.cin, self.cout) && self.pool.is_none()
    }
}

/// The packed weights' length: whole blocks of 4 channels, one vector per tap.
pub(super) fn depthwise_weights_len(job: &ConvJob) -> u64 {
    job.cout.div_ceil(4) * 4 * job.kernel[0] * job.kernel[1]
}

/// Packs `[c, 1, kh, kw]` weights as `[block][tap][lane]`, channel `c` times `scale[c]`.
pub(super) fn pack_depthwise(job: &ConvJob, weights: &[f32], scale: Option<&[f32]>) -> Vec<f32> {
    let taps = (job.kernel[0] * job.kernel[1]) as usize;
    let mut out = vec![0.0f32; depthwise_weights_len(job) as usize];
    for c in 0..job.cout as usize {
        let s = scale.map_or(1.0, |s| s[c]);
        for t in 0..taps {
            out[((c / 4) * taps + t) * 4 + c % 4] = (weights[c * taps + t] as f64 * s as f64) as f32;
        }
    }
    out
}

/// The kernel, `n` neighbouring output pixels of a row at a time: each tap's weights are loaded
/// once for all of them, and an input column that several of them read through different taps
/// is loaded once (a 3x3 stride-1 row of taps: 6 loads for 4 pixels, not 12).
pub(super) fn schedule(job: &ConvJob, n: usize) -> Kernel {
    let bufs = STANDARD;
    let mut vars = Vars::default();
    let (t, cb, y, xt) = (vars.new_var("t"), vars.new_var("cb"), vars.new_var("y"), vars.new_var("xt"));
    let accs: Vec<VarId> = (0..n).map(|_| vars.new_var("acc")).collect();
    let w = vars.new_var("w");
    // One variable per input column a row of taps of `n` neighbours reads.
    let span = (n as u64 - 1) * job.stride[1] + (job.kernel[1] - 1) * job.dilation[1] + 1;
    let cols: Vec<VarId> = (0..span).map(|_| vars.new_var("in")).collect();
    let regs = Regs { cb, y, accs: &accs, w, cols: &cols };
    let ow = job.ow as i64;
    let full = ow / n as i64;
    let mut task = vec![let_int(cb, iv(t).div(job.oh as i64)), let_int(y, iv(t).rem(job.oh as i64))];
    if full > 0 {
        task.push(for_range(xt, 0, full, pixels(job, &regs, iv(xt) * n as i64, n)));
    }
    let rem = (ow % n as i64) as usize;
    if rem > 0 {
        task.push(Stmt::Comment(format!("remainder: {rem} pixel(s)")));
        task.extend(pixels(job, &regs, ic(full * n as i64), rem));
    }
    let blocks = job.cout.div_ceil(4) as i64;
    let mut k = Kernel {
        name: job.name.clone(),
        buffers: job.buffers(depthwise_weights_len(job), job.cout.div_ceil(4) * 4),
        body: Vec::new(),
        var_names: vars.names,
        tasks: 0,
        macs: job.macs(),
    };
    k.push_tasks(t, blocks * job.oh as i64, task);
    append_halo_zeroing(&mut k, bufs.out, job.cout);
    k
}

/// The variables of a depthwise task: its channel block and row, one accumulator per pixel,
/// the current tap's weights, and the input columns of the current row of taps.
struct Regs<'a> {
    cb: VarId,
    y: VarId,
    accs: &'a [VarId],
    w: VarId,
    cols: &'a [VarId],
}

/// `n` output pixels of the task's row from column `x0`: for each tap, its weights once and an
/// FMA per pixel; each input column is loaded at its first use within a row of taps.
fn pixels(job: &ConvJob, r: &Regs, x0: IExpr, n: usize) -> Vec<Stmt> {
    let bufs = STANDARD;
    let [kh, kw] = job.kernel.map(|k| k as i64);
    let [sy, sx] = job.stride.map(|s| s as i64);
    let [dy, dx] = job.dilation.map(|d| d as i64);
    let [py, px] = job.pad.map(|p| p as i64);
    let mut s: Vec<Stmt> = r.accs[..n]
        .iter()
        .map(|&acc| set(acc, Ty::F32x4, load(Ty::F32x4, bufs.bias, Index::Flat(iv(r.cb) * 4))))
        .collect();
    for ky in 0..kh {
        let iy = iv(r.y) * sy + (ky * dy - py);
        let mut loaded = vec![false; r.cols.len()];
        for kx in 0..kw {
            let tap = ky * kw + kx;
            s.push(set(r.w, Ty::F32x4, load(Ty::F32x4, bufs.w, Index::Flat((iv(r.cb) * (kh * kw) + tap) * 4))));
            for (j, &acc) in r.accs[..n].iter().enumerate() {
                let col = j as i64 * sx + kx * dx;
                if !loaded[col as usize] {
                    loaded[col as usize] = true;
                    let ix = x0.clone() * sx + (col - px);
                    s.push(set(
                        r.cols[col as usize],
                        Ty::F32x4,
                        load(Ty::F32x4, bufs.input, act(iv(r.cb) * 4, iy.clone(), ix)),
                    ));
                }
                s.push(set(acc, Ty::F32x4, fma(fv(r.cols[col as usize]), fv(r.w), fv(acc))));
            }
        }
    }
    for (j, &acc) in r.accs[..n].iter().enumerate() {
        let x = x0.clone() + j as i64;
        let value = epilogue(job, bufs, fv(acc), Ty::F32x4, iv(r.cb) * 4, iv(r.y), x.clone());
        s.push(store(Ty::F32x4, bufs.out, act(iv(r.cb) * 4, iv(r.y), x), value));
    }
    s
}
