//! Depthwise convolutions (one input and one output channel per group: MobileNet, EfficientNet,
//! ShuffleNet, ConvNeXt's 7x7) with four channels in the vector lanes. A task is one output row
//! of one block of 4 channels: the block's taps are loaded once into registers, then each output
//! pixel is a chain of one FMA per tap on the input window, read through the input's zero halo
//! (as wide as the padding), so no tap needs a bounds check. Weights are packed `[block][tap][4]`
//! with a folded batch norm's scale, the bias padded to whole blocks.

use super::super::super::ir::*;
use super::super::append_halo_zeroing;
use super::{ConvJob, STANDARD, epilogue};

/// Taps held in registers: beyond this (a 7x7 kernel has 49) they are loaded at each use.
const MAX_HOISTED_TAPS: u64 = 12;
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

pub(super) fn schedule(job: &ConvJob) -> Kernel {
    let bufs = STANDARD;
    let mut vars = Vars::default();
    let (t, cb, y, x, acc) =
        (vars.new_var("t"), vars.new_var("cb"), vars.new_var("y"), vars.new_var("x"), vars.new_var("acc"));
    let [kh, kw] = job.kernel.map(|k| k as i64);
    let taps = kh * kw;
    let hoist = job.kernel[0] * job.kernel[1] <= MAX_HOISTED_TAPS;
    let tap_vars: Vec<VarId> =
        if hoist { (0..taps).map(|k| vars.new_var(&format!("w{k}"))).collect() } else { Vec::new() };
    let (oh, ow) = (job.oh as i64, job.ow as i64);
    let weight = |k: i64| load(Ty::F32x4, bufs.w, Index::Flat((iv(cb) * taps + k) * 4));
    let mut task = vec![let_int(cb, iv(t).div(oh)), let_int(y, iv(t).rem(oh))];
    for (k, &v) in tap_vars.iter().enumerate() {
        task.push(set(v, Ty::F32x4, weight(k as i64)));
    }
    let mut pixel = vec![set(acc, Ty::F32x4, load(Ty::F32x4, bufs.bias, Index::Flat(iv(cb) * 4)))];
    for ky in 0..kh {
        for kx in 0..kw {
            let k = ky * kw + kx;
            let iy = iv(y) * job.stride[0] as i64 + (ky * job.dilation[0] as i64 - job.pad[0] as i64);
            let ix = iv(x) * job.stride[1] as i64 + (kx * job.dilation[1] as i64 - job.pad[1] as i64);
            let w = if hoist { fv(tap_vars[k as usize]) } else { weight(k) };
            let input = load(Ty::F32x4, bufs.input, act(iv(cb) * 4, iy, ix));
            pixel.push(set(acc, Ty::F32x4, fma(input, w, fv(acc))));
        }
    }
    let value = epilogue(job, bufs, fv(acc), Ty::F32x4, iv(cb) * 4, iv(y), iv(x));
    pixel.push(store(Ty::F32x4, bufs.out, act(iv(cb) * 4, iv(y), iv(x)), value));
    task.push(for_range(x, 0, ow, pixel));
    let blocks = job.cout.div_ceil(4) as i64;
    let mut k = Kernel {
        name: job.name.clone(),
        buffers: job.buffers(depthwise_weights_len(job), job.cout.div_ceil(4) * 4),
        body: Vec::new(),
        var_names: vars.names,
        tasks: 0,
        macs: job.macs(),
    };
    k.push_tasks(t, blocks * oh, task);
    append_halo_zeroing(&mut k, bufs.out, job.cout);
    k
}
