//! Fully connected layers at batch 1 as matrix-vector products over the weights as PyTorch
//! stores them (`[out, in]`, read in place from the memory-mapped weights file: no packed copy).
//! The input vector is gathered once per call into a contiguous stack buffer when it lives in a
//! map's channel blocks (VGG's flatten); each task then computes `OUTS` outputs, four at a time,
//! streaming four weight rows against the vector with f32x4 FMAs and summing the lanes at the
//! end. The layer is bound by memory bandwidth, which both threads share.

use super::super::super::compile::JitError;
use super::super::super::ir::*;
use super::super::super::lower::Builder;
use super::super::super::schedule::streamed;
use super::super::{TensorView, append_halo_zeroing};
use super::{ConvJob, STANDARD, epilogue, lower};
use crate::analysis::fusion::Group;
use crate::io::weights::TensorData;
use crate::ir::graph::NodeId;

/// Outputs per task.
const OUTS: i64 = 16;

impl ConvJob {
    /// Whether this is an fc layer the matrix-vector kernel takes: a kernel covering the whole
    /// input, one output position, no grouping or pool.
    pub(in super::super::super) fn gemv(&self) -> bool {
        self.kernel == [self.h, self.w]
            && self.oh * self.ow == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.groups == 1
            && self.pool.is_none()
    }
}

/// The most input values gathered into the kernel's stack frame (256 KiB): an fc layer whose
/// input is not contiguous and larger than this takes the plain kernel instead, since the
/// gathered copy would overflow the thread's stack (`runtime::WORKER_STACK`, 2 MiB). VGG-16's
/// fc6 gathers 25,088.
const MAX_STACK_GATHER: u64 = 1 << 16;

/// Whether the gemv kernel can read `input` (contiguous, or small enough to gather).
pub(super) fn fits(job: &ConvJob, input: &TensorView) -> bool {
    contiguous(input) || job.cin * job.h * job.w <= MAX_STACK_GATHER
}

/// Whether element `f` of the input vector sits at offset `f` of its buffer (a vector stored
/// as an (n, 1, 1) map without offset or halo).
fn contiguous(input: &TensorView) -> bool {
    match &input.layout {
        Layout::Blocked { h, w, halo, channel_offset, .. } => {
            *h == 1 && *w == 1 && *halo == [0, 0] && *channel_offset == 0
        }
        Layout::Flat { .. } => true,
    }
}

/// Pushes the step of an fc group: `weights` bound where they are (mapped or owned).
pub(super) fn lower_gemv(
    b: &mut Builder,
    g: &Group,
    job: ConvJob,
    input: &TensorView,
    weights: TensorData,
    bias: Vec<f32>,
    shortcut: Option<NodeId>,
) -> Result<(), JitError> {
    let key = format!("gemv {:?} {:?}", ConvJob { name: String::new(), ..job.clone() }, input.layout);
    let kernel = match b.cached_kernel(&key) {
        Some((kernel, _)) => kernel,
        None => {
            let kernel = b.add_kernel(schedule(&job, input));
            b.cache_kernel(key, kernel, None);
            kernel
        }
    };
    let mut bindings = vec![b.arena(g.inputs[0])?, b.param_data(weights), b.param(bias), b.arena(g.output)?];
    if let Some(s) = shortcut {
        bindings.push(b.arena(s)?);
    }
    let lowered = b.keep_lowered().then(|| lower(&job));
    // Each multiply-accumulate streams one weight from memory.
    b.push_step(job.name.clone(), g.nodes.clone(), lowered, kernel, bindings, streamed(job.macs()));
    b.set_algorithm("gemv");
    Ok(())
}

fn schedule(job: &ConvJob, input: &TensorView) -> Kernel {
    let bufs = STANDARD;
    let k_in = (job.cin * job.h * job.w) as i64;
    let cout = job.cout as i64;
    let mut vars = Vars::default();
    let (t, g, i, f, o) =
        (vars.new_var("t"), vars.new_var("g"), vars.new_var("i"), vars.new_var("f"), vars.new_var("o"));
    let accs: Vec<VarId> = (0..4).map(|j| vars.new_var(&format!("acc{j}"))).collect();
    let sum = vars.new_var("sum");
    let mut buffers = job.buffers((job.cout as i64 * k_in) as u64, job.cout);
    let mut body = Vec::new();
    // The input vector as a contiguous array: the input itself, or a stack copy.
    let (xbuf, x_at): (BufId, Box<dyn Fn(IExpr) -> Index>) = if contiguous(input) {
        (bufs.input, Box::new(|e: IExpr| Index::Act([e, ic(0), ic(0)])))
    } else {
        let xs = buffers.len();
        buffers.push(Buffer { stack: true, ..Buffer::new("x", Layout::Flat { len: k_in as u64 }, true) });
        body.push(Stmt::Comment("the input vector, gathered once per call".into()));
        body.push(for_range(
            f,
            0,
            k_in,
            vec![store(Ty::F32, xs, Index::Flat(iv(f)), load(Ty::F32, bufs.input, input.flat_index(iv(f))))],
        ));
        (xs, Box::new(Index::Flat))
    };
    let whole = k_in / 4 * 4;
    // `outputs` rows starting at `o`: four-lane partial sums, then lanes, tail and bias.
    let rows = |n: usize, o: IExpr| -> Vec<Stmt> {
        let mut s: Vec<Stmt> = (0..n).map(|j| set(accs[j], Ty::F32x4, splat(fc(0.0)))).collect();
        let x = load(Ty::F32x4, xbuf, x_at(iv(i) * 4));
        let macs = (0..n)
            .map(|j| {
                let w = load(Ty::F32x4, bufs.w, Index::Flat((o.clone() + j as i64) * k_in + iv(i) * 4));
                set(accs[j], Ty::F32x4, fma(w, x.clone(), fv(accs[j])))
            })
            .collect();
        s.push(for_range(i, 0, whole / 4, macs));
        for (j, &acc) in accs.iter().enumerate().take(n) {
            let row = o.clone() + j as i64;
            let lanes = (1..4)
                .fold(FExpr::Lane(Box::new(fv(acc)), 0), |a, l| bin(BinOp::Add, a, FExpr::Lane(Box::new(fv(acc)), l)));
            s.push(set(sum, Ty::F32, bin(BinOp::Add, lanes, load(Ty::F32, bufs.bias, Index::Flat(row.clone())))));
            let tail = fma(
                load(Ty::F32, bufs.w, Index::Flat(row.clone() * k_in + iv(f))),
                load(Ty::F32, xbuf, x_at(iv(f))),
                fv(sum),
            );
            s.push(for_range(f, whole, k_in, vec![set(sum, Ty::F32, tail)]));
            let value = epilogue(job, bufs, fv(sum), Ty::F32, row.clone(), ic(0), ic(0));
            s.push(store(Ty::F32, bufs.out, Index::Act([row, ic(0), ic(0)]), value));
        }
        s
    };
    // Tasks of OUTS rows, four at a time; the last rows (cout % 4) one at a time after them.
    let groups = cout / 4;
    let tasks = (groups + OUTS / 4 - 1) / (OUTS / 4);
    let group_loop =
        for_range(g, iv(t) * (OUTS / 4), (iv(t) * (OUTS / 4) + OUTS / 4).min(ic(groups)), rows(4, iv(g) * 4));
    let mut k = Kernel { name: job.name.clone(), buffers, body, var_names: Vec::new(), tasks: 0, macs: job.macs() };
    k.push_tasks(t, tasks, vec![group_loop]);
    if cout % 4 != 0 {
        let t2 = vars.new_var("t_tail");
        k.push_tasks(t2, cout % 4, vec![let_int(o, iv(t2) + groups * 4)].into_iter().chain(rows(1, iv(o))).collect());
    }
    k.var_names = vars.names;
    // The output may be read by a padded convolution (a 1x1 map): its halo must be zero.
    append_halo_zeroing(&mut k, bufs.out, job.cout);
    k
}
