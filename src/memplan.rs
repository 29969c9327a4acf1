//! The static memory plan: which tensors share storage, when each storage is live, and the peak.
//! The checker reports `peak_bytes`; the JIT lays out the same storages in one arena.
//!
//! Storage model (per image; a batch multiplies every size by N):
//! - `flatten` and `dropout` are views of their input: no storage, no work;
//! - `relu`, `bn` and `softmax` work in place when nothing reads their input afterwards;
//! - a residual `add` writes into the body's storage (or the shortcut's) under the same rule;
//! - a concatenation owns one storage, and each branch whose result is read by nothing else
//!   writes straight into its channel slice; other branches are copied in;
//! - every other op writes a fresh storage.
//!
//! A storage is live from the step that first writes it to the last step that reads any tensor
//! in it; the network output stays live to the end. The peak is the largest sum of live storages
//! over the steps, the step's inputs and output included.

use crate::geometry::Shape;
use crate::graph::{Network, NodeId, Op};

#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    /// Size of one image's worth, in f32 elements.
    pub elements: u64,
    pub first: NodeId,
    pub last: NodeId,
    /// Merged into a concatenation's storage: no longer allocated on its own.
    pub merged: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub storage: usize,
    /// Element offset of the tensor within one image of its storage (a concat channel slice).
    pub offset: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    pub storages: Vec<Storage>,
    /// Where each node's output lives.
    pub placement: Vec<Placement>,
    /// Elementwise nodes that overwrite their input.
    pub in_place: Vec<bool>,
    /// (concat node, input index) pairs whose branch result must be copied into the slice.
    pub concat_copies: Vec<(NodeId, usize)>,
    /// Peak of live storage, in bytes, at batch 1.
    pub peak_bytes: u64,
}

pub fn plan_memory(net: &Network, shapes: &[Shape]) -> MemoryPlan {
    let n = net.nodes.len();
    let consumers = net.consumers();
    let output = net.output();
    // The last step that reads each tensor (the output: past the end).
    let last_read: Vec<NodeId> = (0..n)
        .map(|t| {
            if t == output {
                n
            } else {
                consumers[t].iter().copied().max().unwrap_or(t)
            }
        })
        .collect();
    let elems = |t: NodeId| shapes[t].elements().unwrap_or(0);

    let mut storages: Vec<Storage> = Vec::new();
    let mut members: Vec<Vec<NodeId>> = Vec::new();
    let mut placement = vec![
        Placement {
            storage: 0,
            offset: 0
        };
        n
    ];
    let mut in_place = vec![false; n];
    let mut concat_copies = Vec::new();

    let fresh = |t: NodeId, storages: &mut Vec<Storage>, members: &mut Vec<Vec<NodeId>>| {
        storages.push(Storage {
            elements: elems(t),
            first: t,
            last: last_read[t],
            merged: false,
        });
        members.push(vec![t]);
        Placement {
            storage: storages.len() - 1,
            offset: 0,
        }
    };
    let join =
        |t: NodeId, p: Placement, storages: &mut Vec<Storage>, members: &mut Vec<Vec<NodeId>>| {
            storages[p.storage].last = storages[p.storage].last.max(last_read[t]);
            members[p.storage].push(t);
            p
        };

    for (t, node) in net.nodes.iter().enumerate() {
        let input = node.inputs.first().map(|&i| placement[i]);
        placement[t] = match (&node.op, input) {
            (Op::Flatten | Op::Dropout { .. }, Some(p)) => join(t, p, &mut storages, &mut members),
            (Op::Relu | Op::BatchNorm { .. } | Op::Softmax, Some(p))
                if storages[p.storage].last == t =>
            {
                in_place[t] = true;
                join(t, p, &mut storages, &mut members)
            }
            (Op::Add, _) => {
                let reusable = node.inputs.iter().map(|&i| placement[i]).find(|p| {
                    storages[p.storage].last == t
                        && storages[p.storage].elements == elems(t)
                        && p.offset == 0
                });
                match reusable {
                    Some(p) => {
                        in_place[t] = true;
                        join(t, p, &mut storages, &mut members)
                    }
                    None => fresh(t, &mut storages, &mut members),
                }
            }
            (Op::Concat, _) => {
                let target = fresh(t, &mut storages, &mut members);
                let (h, w) = shapes[t].spatial();
                let mut offset = 0u64;
                for (k, &b) in node.inputs.iter().enumerate() {
                    let p = placement[b];
                    let whole = p.offset == 0 && storages[p.storage].elements == elems(b);
                    let shared = node.inputs[..k]
                        .iter()
                        .any(|&o| placement[o].storage == p.storage);
                    if whole && !shared && storages[p.storage].last == t && p.storage != 0 {
                        // Redirect every tensor of the branch's storage into the slice.
                        let moved = std::mem::take(&mut members[p.storage]);
                        for &m in &moved {
                            placement[m] = Placement {
                                storage: target.storage,
                                offset: offset + placement[m].offset,
                            };
                        }
                        storages[target.storage].first = storages[target.storage]
                            .first
                            .min(storages[p.storage].first);
                        storages[p.storage].merged = true;
                        members[target.storage].extend(moved);
                    } else {
                        concat_copies.push((t, k));
                    }
                    offset += shapes[b].channels() * h * w;
                }
                target
            }
            _ => fresh(t, &mut storages, &mut members),
        };
    }
    let peak_elements = peak(&storages, n);
    MemoryPlan {
        storages,
        placement,
        in_place,
        concat_copies,
        peak_bytes: peak_elements.saturating_mul(4),
    }
}

/// The largest sum of live (unmerged) storage sizes over steps `0..n`.
fn peak(storages: &[Storage], n: usize) -> u64 {
    let mut delta = vec![0i128; n + 2];
    for s in storages.iter().filter(|s| !s.merged) {
        delta[s.first] += s.elements as i128;
        delta[(s.last + 1).min(n + 1)] -= s.elements as i128;
    }
    let mut live = 0i128;
    let mut best = 0i128;
    for d in delta {
        live += d;
        best = best.max(live);
    }
    best as u64
}
