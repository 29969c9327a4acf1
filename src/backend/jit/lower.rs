//! Lowering of the fused network to kernels: storage layouts (blocks of 4 channels, a zero halo
//! as wide as the padding of the convolutions that read the storage), arena offsets, one job
//! per fusion group with its lowered and scheduled kernel, folded batch norm and packed weights.

use super::compile::JitError;
use super::ir::*;
use super::kernels::{Lower, TensorView, lower_output};
use super::schedule::worth_parallel;
use crate::analysis::fusion::{Group, source_of};
use crate::analysis::memplan::{MemoryPlan, Placement, kept_outputs, peak, plan_memory};
use crate::io::weights::Weights;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Network, NodeId};
use crate::ops::{Op, with_op};

/// Where a kernel buffer points at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Binding {
    /// Byte offset into the activation arena.
    Arena(u64),
    /// A packed parameter array.
    Param(usize),
    /// The caller's image, as a flat NCHW array.
    Image,
    /// Result array `k`.
    Result(usize),
    /// The kernel's own stack frame.
    Stack,
}

pub(super) struct Step {
    /// The canonical name of the layer whose result this step produces.
    pub(super) name: String,
    pub(super) nodes: Vec<NodeId>,
    /// The algorithm's form, built only for `--dump lowered`.
    pub(super) lowered: Option<Kernel>,
    pub(super) scheduled: Kernel,
    pub(super) bindings: Vec<Binding>,
    pub(super) parallel: bool,
}

pub(super) struct JitPlan {
    pub(super) steps: Vec<Step>,
    pub(super) params: Vec<Vec<f32>>,
    pub(super) arena_bytes: u64,
    /// The checker's peak (unpadded sizes) and the same liveness peak over padded sizes.
    pub(super) checker_peak_bytes: u64,
    pub(super) padded_peak_bytes: u64,
    pub(super) image_len: usize,
    /// (node, length) of each result: the network output, then the logits before a softmax.
    pub(super) results: Vec<(NodeId, usize)>,
}

/// Vector stores keep 16-byte alignment; storages start on cache lines.
const ALIGN_BYTES: u64 = 64;

struct Layouts {
    /// Per storage: (channels, height, width) and halo.
    shape: Vec<(u64, u64, u64)>,
    halo: Vec<[u64; 2]>,
    offset: Vec<u64>,
}

fn shape3(s: Shape) -> (u64, u64, u64) {
    match s {
        Shape::Map { c, h, w } => (c, h, w),
        Shape::Flat { n } => (n, 1, 1),
    }
}

/// Consumes `weights`: conv and fc weights are packed in the memory they were loaded into.
/// `keep_lowered` keeps each step's lowered kernel (for dumps).
pub(super) fn plan(
    net: &Network,
    shapes: &[Shape],
    weights: Weights,
    threads: usize,
    keep_lowered: bool,
) -> Result<JitPlan, JitError> {
    let mp = plan_memory(net, shapes);
    // Which storages a register-blocked conv reads with padding: they need a halo.
    let mut halo = vec![[0u64; 2]; mp.storages.len()];
    for g in &mp.groups {
        if let Op::Conv(c) = &net.nodes[g.anchor()].op {
            let p = placement(&mp, g.inputs[0])?;
            let blockable = c.groups == 1
                || (shapes[g.inputs[0]].channels() / c.groups % 4 == 0 && c.out_channels / c.groups % 4 == 0);
            if blockable {
                for a in 0..2 {
                    halo[p.storage][a] = halo[p.storage][a].max(c.pad[a]);
                }
            }
        }
    }
    let shape: Vec<_> = mp.storages.iter().map(|s| shape3(shapes[s.creator])).collect();
    let padded: Vec<u64> = (0..mp.storages.len())
        .map(|s| {
            let (c, h, w) = shape[s];
            c.div_ceil(4) * 4 * (h + 2 * halo[s][0]) * (w + 2 * halo[s][1]) * 4
        })
        .collect();
    let live: Vec<usize> = (0..mp.storages.len()).filter(|&s| !mp.storages[s].merged).collect();
    let (offset, arena_bytes) = assign_offsets(&mp, &live, &padded);
    let padded_peak_bytes = peak(
        live.iter()
            .map(|&s| (padded[s].div_ceil(ALIGN_BYTES) * ALIGN_BYTES, mp.storages[s].first, mp.storages[s].last)),
        mp.groups.len(),
    );
    let layouts = Layouts { shape, halo, offset };
    let mut b = Builder {
        threads,
        keep_lowered,
        net,
        shapes,
        weights,
        mp: &mp,
        layouts: &layouts,
        steps: Vec::new(),
        params: Vec::new(),
    };
    for g in &mp.groups {
        let t = std::time::Instant::now();
        b.group(g)?;
        if std::env::var_os("CNNC_TIME_COMPILE").is_some() {
            eprintln!("  group {:<20} {:>8.1} ms", net.nodes[g.output].name, t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut results = Vec::new();
    let last = net.output();
    let mut kept = vec![last];
    if matches!(net.nodes[last].op, Op::Softmax(_)) {
        kept.push(net.nodes[last].inputs[0]);
    }
    debug_assert_eq!(kept.iter().map(|&k| source_of(net, k)).collect::<Vec<_>>(), kept_outputs(net));
    for (k, &node) in kept.iter().enumerate() {
        let view = b.view(node)?;
        let len = view.len() as usize;
        let kernel = lower_output(&format!("result{k}"), &view);
        b.push(
            format!("result{k}"),
            vec![node],
            kernel.clone(),
            kernel,
            vec![b.arena(node)?, Binding::Result(k)],
            len as u64,
        );
        results.push((node, len));
    }
    // The input node's shape is the one checked (it differs from the header under `--input`).
    let image_len = shapes[0].elements().unwrap_or(0) as usize;
    Ok(JitPlan {
        steps: b.steps,
        params: b.params,
        arena_bytes,
        checker_peak_bytes: mp.peak_bytes,
        padded_peak_bytes,
        image_len,
        results,
    })
}

fn placement(mp: &MemoryPlan, node: NodeId) -> Result<Placement, JitError> {
    mp.placement[node].ok_or_else(|| JitError::Unsupported(format!("internal error: node {node} has no storage")))
}

/// Places storages in the arena: each at the lowest offset that overlaps no storage live at
/// the same time, in one of several orders (by size, by first use, by lifetime); the smallest
/// arena wins. Returns byte offsets and the arena size.
fn assign_offsets(mp: &MemoryPlan, live: &[usize], bytes: &[u64]) -> (Vec<u64>, u64) {
    let size = |s: usize| bytes[s].div_ceil(ALIGN_BYTES) * ALIGN_BYTES;
    let span = |s: usize| (mp.storages[s].last - mp.storages[s].first) as u64 + 1;
    let orders: [&dyn Fn(usize) -> (u64, u64, u64); 4] = [
        &|s| (u64::MAX - size(s), mp.storages[s].first as u64, 0),
        &|s| (mp.storages[s].first as u64, u64::MAX - size(s), 0),
        &|s| (u64::MAX - span(s), u64::MAX - size(s), 0),
        &|s| (u64::MAX - size(s).saturating_mul(span(s)), mp.storages[s].first as u64, 0),
    ];
    let mut best: Option<(Vec<u64>, u64)> = None;
    for key in orders {
        let mut order: Vec<usize> = live.to_vec();
        order.sort_by_key(|&s| key(s));
        let mut offset = vec![0u64; mp.storages.len()];
        let mut placed: Vec<usize> = Vec::new();
        let mut arena = 0u64;
        for s in order {
            let (f, l) = (mp.storages[s].first, mp.storages[s].last);
            let mut busy: Vec<(u64, u64)> = placed
                .iter()
                .filter(|&&o| mp.storages[o].first <= l && f <= mp.storages[o].last)
                .map(|&o| (offset[o], offset[o] + size(o)))
                .collect();
            busy.sort();
            let mut at = 0u64;
            for (start, end) in busy {
                if at + size(s) <= start {
                    break;
                }
                at = at.max(end);
            }
            offset[s] = at;
            arena = arena.max(at + size(s));
            placed.push(s);
        }
        if best.as_ref().is_none_or(|(_, a)| arena < *a) {
            best = Some((offset, arena));
        }
    }
    best.unwrap_or((vec![0; mp.storages.len()], 0))
}

pub(super) struct Builder<'a> {
    threads: usize,
    keep_lowered: bool,
    net: &'a Network,
    shapes: &'a [Shape],
    weights: Weights,
    mp: &'a MemoryPlan,
    layouts: &'a Layouts,
    steps: Vec<Step>,
    params: Vec<Vec<f32>>,
}

impl Builder<'_> {
    pub(super) fn net(&self) -> &Network {
        self.net
    }

    /// The checked batch-1 shape of `node`'s output.
    pub(super) fn shape(&self, node: NodeId) -> Shape {
        self.shapes[node]
    }

    pub(super) fn node_name(&self, node: NodeId) -> &str {
        &self.net.nodes[node].name
    }

    /// The name of the layer whose result a group produces: its kernel's name.
    pub(super) fn name_of(&self, g: &Group) -> String {
        self.net.nodes[g.output].name.clone()
    }

    /// Input `k` of the group's anchor. Operands are read through the anchor's own inputs: a
    /// flatten view keeps its flat shape (the group's `inputs` are the storage-owning sources).
    pub(super) fn anchor_input(&self, g: &Group, k: usize) -> NodeId {
        self.net.nodes[g.anchor()].inputs[k]
    }

    pub(super) fn channels(&self, node: NodeId) -> u64 {
        self.shapes[node].channels()
    }

    pub(super) fn keep_lowered(&self) -> bool {
        self.keep_lowered
    }

    pub(super) fn threads(&self) -> usize {
        self.threads
    }

    /// The tensor produced by `node` (or the view `node` is), as kernels address it.
    pub(super) fn view(&self, node: NodeId) -> Result<TensorView, JitError> {
        let p = placement(self.mp, node)?;
        let (sc, sh, sw) = self.layouts.shape[p.storage];
        let halo = self.layouts.halo[p.storage];
        Ok(match self.shapes[node] {
            Shape::Map { c, h, w } => TensorView {
                c,
                h,
                w,
                flat: false,
                layout: Layout::Blocked { c, h, w, halo, channel_offset: p.channel_offset },
            },
            Shape::Flat { n } => {
                // A flat tensor lives in the storage of the map it was flattened from (or in an
                // (n, 1, 1) storage of its own); it is addressed through that map's layout.
                let c = if sh * sw == 1 { n } else { sc };
                TensorView {
                    c: n,
                    h: 1,
                    w: 1,
                    flat: true,
                    layout: Layout::Blocked { c, h: sh, w: sw, halo, channel_offset: p.channel_offset },
                }
            }
        })
    }

    /// The channel offset of `node`'s tensor in its storage (a concatenation slice).
    pub(super) fn channel_offset(&self, node: NodeId) -> Result<u64, JitError> {
        Ok(placement(self.mp, node)?.channel_offset)
    }

    /// Whether branch `k` of the concatenation `node` is copied in (not written in place).
    pub(super) fn is_concat_copy(&self, node: NodeId, k: usize) -> bool {
        self.mp.concat_copies.contains(&(node, k))
    }

    pub(super) fn arena(&self, node: NodeId) -> Result<Binding, JitError> {
        let p = placement(self.mp, node)?;
        Ok(Binding::Arena(self.layouts.offset[p.storage]))
    }

    pub(super) fn param(&mut self, data: Vec<f32>) -> Binding {
        self.params.push(data);
        Binding::Param(self.params.len() - 1)
    }

    /// Adds a step: `work` (values touched or MACs) decides whether it is worth running on
    /// several threads.
    pub(super) fn push(
        &mut self,
        name: String,
        nodes: Vec<NodeId>,
        lowered: Kernel,
        scheduled: Kernel,
        bindings: Vec<Binding>,
        work: u64,
    ) {
        let parallel = worth_parallel(scheduled.tasks, work.max(scheduled.macs));
        let lowered = self.keep_lowered.then_some(lowered);
        self.steps.push(Step { name, nodes, lowered, scheduled, bindings, parallel });
    }

    /// A copy of a weight tensor.
    pub(super) fn tensor(&self, name: &str) -> Vec<f32> {
        self.weights.get(name).to_vec()
    }

    /// A weight tensor, taken out of the loaded weights (to be packed in its own memory).
    pub(super) fn take_tensor(&mut self, name: &str) -> Vec<f32> {
        self.weights.take(name)
    }

    /// Lowers one fusion group through its anchor's `Lower`.
    fn group(&mut self, g: &Group) -> Result<(), JitError> {
        let op = &self.net.nodes[g.anchor()].op;
        with_op!(op, o => Lower::lower(o, self, g))
    }
}
