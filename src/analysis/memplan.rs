//! The static memory plan: which tensors share storage, when each storage is live, and the peak.
//! It plans the fused execution (`fusion::fuse`), so the checker's peak is exactly what the
//! JIT's arena must hold (the JIT adds only layout padding and alignment).
//!
//! Storage model (per image):
//! - a step is a fusion group; tensors inside a group (a conv's output before its fused relu)
//!   never exist in memory;
//! - `flatten`, `dropout` and the channel slices `fusion::Views` names are views of their
//!   input: no storage, no work (a slice view is its source's storage at a channel offset);
//! - a concatenation whose two-group shuffle is fused with it (`fusion`) writes a fresh storage;
//! - a standalone `relu`, `bn` or `softmax` works in place when nothing reads its input later;
//! - a fused residual sum writes into the shortcut's storage under the same rule (unless the
//!   conv also reads that storage);
//! - a concatenation owns one storage, and each branch whose result nothing else reads writes
//!   straight into its channel slice; other branches are copied in (so is a branch whose
//!   channel count is not a multiple of 4: the JIT stores blocks of 4 channels, and such a
//!   branch would overwrite the first channels of the next; and so is one that would start at a
//!   channel offset that is not a multiple of 4);
//! - every other group writes a fresh storage.
//!
//! A storage is live from the step that first writes it to the last step that reads any tensor
//! in it; the network's outputs stay live to the end. The peak is the largest sum of live
//! storages over the steps, each step's inputs and output included.

use crate::analysis::fusion::{Group, Views, fuse, role};
use crate::ir::geometry::Shape;
use crate::ir::graph::{Network, NodeId};
use crate::ops::{Fusion, Op};

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Storage {
    /// Size of one image's worth, in f32 elements.
    pub(crate) elements: u64,
    /// First and last step (group index) at which the storage is live.
    pub(crate) first: usize,
    pub(crate) last: usize,
    /// Merged into a concatenation's storage: no longer allocated on its own.
    pub(crate) merged: bool,
    /// The tensor it was created for (every tensor in it has the same height and width).
    pub(crate) creator: NodeId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) storage: usize,
    /// Channel offset of the tensor within its storage (a concatenation slice).
    pub(crate) channel_offset: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MemoryPlan {
    pub(crate) groups: Vec<Group>,
    pub(crate) storages: Vec<Storage>,
    /// Where each node's output lives; `None` for values internal to a fused group. Views
    /// share their source's placement.
    pub(crate) placement: Vec<Option<Placement>>,
    /// Groups whose output overwrites one of their inputs.
    pub(crate) in_place: Vec<bool>,
    /// (concat node, input index) pairs whose branch result is copied into the slice.
    pub(crate) concat_copies: Vec<(NodeId, usize)>,
    /// Peak of live storage, in bytes, at batch 1.
    pub(crate) peak_bytes: u64,
    /// Which nodes are views (no group, no storage).
    pub(crate) views: Views,
}

/// The tensors a run keeps to the end: the output, and the logits before a trailing softmax.
pub(crate) fn kept_outputs(net: &Network, views: &Views) -> Vec<NodeId> {
    let last = net.output();
    let mut kept = vec![views.source_of(net, last)];
    if matches!(net.nodes[last].op, Op::Softmax(_)) {
        kept.push(views.source_of(net, net.nodes[last].inputs[0]));
    }
    kept
}

pub(crate) fn plan_memory(net: &Network, shapes: &[Shape]) -> MemoryPlan {
    let views = Views::of(net, shapes);
    let groups = fuse(net, shapes, &views);
    let n_steps = groups.len();
    let n = net.nodes.len();
    let elems = |t: NodeId| shapes[t].elements().unwrap_or(0);
    // The last step that reads each (source) tensor; kept outputs: past the end.
    // (A group may read a slice view: the read keeps the view's source alive.)
    let mut last_read = vec![0usize; n];
    for (step, g) in groups.iter().enumerate() {
        last_read[g.output] = last_read[g.output].max(step);
        for &i in &g.inputs {
            let i = views.source_of(net, i);
            last_read[i] = last_read[i].max(step);
        }
    }
    for t in kept_outputs(net, &views) {
        last_read[t] = n_steps;
    }

    let mut storages: Vec<Storage> = Vec::new();
    let mut members: Vec<Vec<NodeId>> = Vec::new();
    let mut placement: Vec<Option<Placement>> = vec![None; n];
    let mut in_place = vec![false; n_steps];
    let mut concat_copies = Vec::new();

    for (step, g) in groups.iter().enumerate() {
        let t = g.output;
        let fresh = |storages: &mut Vec<Storage>, members: &mut Vec<Vec<NodeId>>| {
            storages.push(Storage { elements: elems(t), first: step, last: last_read[t], merged: false, creator: t });
            members.push(vec![t]);
            Placement { storage: storages.len() - 1, channel_offset: 0 }
        };
        let reusable = |p: Option<Placement>, storages: &Vec<Storage>| {
            p.filter(|p| {
                p.channel_offset == 0 && storages[p.storage].last == step && storages[p.storage].elements == elems(t)
            })
        };
        let anchor = &net.nodes[g.anchor()].op;
        // A lone elementwise layer, or one with the activations it absorbed: each value is
        // computed from the same position of the input.
        let elementwise = g.nodes.iter().all(|&m| net.nodes[m].op.def().traits().in_place);
        let anchored = matches!(role(net, shapes, g.anchor()), Fusion::Anchor { .. });
        let fused_sum = anchored && g.nodes[1..].iter().any(|&m| role(net, shapes, m) == Fusion::Sum);
        let chosen = if elementwise {
            reusable(resolve(net, &views, &placement, g.inputs[0]), &storages)
        } else if fused_sum {
            let shortcut = *g.inputs.last().expect("a fused add reads its shortcut");
            let main_storage = resolve(net, &views, &placement, g.inputs[0]).map(|p| p.storage);
            reusable(resolve(net, &views, &placement, shortcut), &storages).filter(|p| Some(p.storage) != main_storage)
        } else {
            None
        };
        // (A concatenation fused with its shuffle writes the shuffled channels afresh.)
        let is_concat = matches!(anchor, Op::Concat(_)) && g.nodes.len() == 1;
        let p = match (is_concat, chosen) {
            (_, Some(p)) => {
                in_place[step] = true;
                storages[p.storage].last = storages[p.storage].last.max(last_read[t]);
                members[p.storage].push(t);
                p
            }
            (true, None) => {
                let target = fresh(&mut storages, &mut members);
                let mut channel = 0u64;
                for (k, &b) in g.inputs.iter().enumerate() {
                    let p = resolve(net, &views, &placement, b).expect("branch results are stored");
                    let whole = p.channel_offset == 0 && storages[p.storage].elements == elems(b);
                    let shared = g.inputs[..k]
                        .iter()
                        .any(|&o| resolve(net, &views, &placement, o).map(|q| q.storage) == Some(p.storage));
                    let blocks = shapes[b].channels() % 4 == 0 && channel % 4 == 0;
                    if whole && !shared && blocks && storages[p.storage].last == step && p.storage != 0 {
                        // Redirect every tensor of the branch's storage into the slice.
                        for &m in &std::mem::take(&mut members[p.storage]) {
                            let old = placement[m].expect("members are placed");
                            placement[m] = Some(Placement {
                                storage: target.storage,
                                channel_offset: channel + old.channel_offset,
                            });
                            members[target.storage].push(m);
                        }
                        storages[target.storage].first = storages[target.storage].first.min(storages[p.storage].first);
                        storages[p.storage].merged = true;
                    } else {
                        concat_copies.push((t, k));
                    }
                    channel += shapes[b].channels();
                }
                target
            }
            _ => fresh(&mut storages, &mut members),
        };
        placement[t] = Some(p);
    }
    // Views share their source's placement (a slice view at its channel offset in it).
    for id in 0..n {
        if placement[id].is_none() && views.is(net, id) {
            placement[id] = resolve(net, &views, &placement, id);
        }
    }
    let peak_elements = peak(storages.iter().filter(|s| !s.merged).map(|s| (s.elements, s.first, s.last)), n_steps);
    let peak_bytes = peak_elements.saturating_mul(4);
    MemoryPlan { groups, storages, placement, in_place, concat_copies, peak_bytes, views }
}

/// Where tensor `id` lives: its own placement, or for a view its source's, shifted by the
/// channel offsets of the slice views on the way.
fn resolve(net: &Network, views: &Views, placement: &[Option<Placement>], mut id: NodeId) -> Option<Placement> {
    let mut offset = 0;
    while views.is(net, id) {
        offset += views.slice_start(id).unwrap_or(0);
        id = net.nodes[id].inputs[0];
    }
    placement[id].map(|p| Placement { channel_offset: p.channel_offset + offset, ..p })
}

/// The largest sum of live sizes over steps `0..=n_steps`, given (size, first, last) intervals.
pub(crate) fn peak(intervals: impl Iterator<Item = (u64, usize, usize)>, n_steps: usize) -> u64 {
    let mut delta = vec![0i128; n_steps + 2];
    for (size, first, last) in intervals {
        delta[first] += size as i128;
        delta[(last + 1).min(n_steps + 1)] -= size as i128;
    }
    let mut live = 0i128;
    let mut best = 0i128;
    for d in delta {
        live += d;
        best = best.max(live);
    }
    best as u64
}
