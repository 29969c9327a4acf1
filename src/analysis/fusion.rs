//! Fusion groups: which layers run as one loop nest. A pure function of the graph and shapes,
//! shared by the memory plan (so the checker's peak is the JIT's) and by the JIT.
//!
//! - conv or fc, then along a chain of single-consumer tensors: bn (folded into the weights,
//!   only straight after the conv/fc), relu, one residual `add` (the other operand is read in the
//!   epilogue), relu, and for conv a non-overlapping max/avg pool (kernel = stride, no padding,
//!   no partial windows), which the epilogue reduces in registers;
//! - gap, then fc (through flatten/dropout), with relu: one pass;
//! - an elementwise layer that no conv absorbed (bn, scale, an activation, a sum), then the
//!   activations along its single-consumer chain: one pass;
//! - a concatenation of two equal halves whose one consumer is a two-group `shuffle`: one pass
//!   that interleaves the halves (ShuffleNetV2's unit), so the concatenation never exists;
//! - flatten, dropout and a channel slice the JIT can read where its source lies (`Views`) are
//!   views: they belong to no group and cost nothing;
//! - everything else is a group of its own.
//!
//! Groups are listed in execution order: by the index of their last node, which is a
//! topological order because every absorbed node's other inputs come earlier in the file.

use crate::ir::geometry::Shape;
use crate::ir::graph::{Network, NodeId};
use crate::ops::{Fusion, Op};

/// Layers that run as one loop nest.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Group {
    /// The nodes computed by this group, in order; the anchor (conv, fc, gap, ...) first.
    pub(crate) nodes: Vec<NodeId>,
    /// The node whose tensor the group writes.
    pub(crate) output: NodeId,
    /// Tensors read from outside the group (producers' node ids), main input first.
    pub(crate) inputs: Vec<NodeId>,
}

impl Group {
    pub(crate) fn anchor(&self) -> NodeId {
        self.nodes[0]
    }
}

/// How node `id` joins a fused loop nest (its op's rule, at its input shapes).
pub(crate) fn role(net: &Network, shapes: &[Shape], id: NodeId) -> Fusion {
    let node = &net.nodes[id];
    let inputs: Vec<Shape> = node.inputs.iter().map(|&i| shapes[i]).collect();
    node.op.def().fusion(&inputs)
}

/// Which nodes only relabel their input (no group, no storage, no work): flatten and dropout,
/// and the channel slices the JIT can read where their source lies.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Views {
    /// Per node, the first channel of a slice that is a view.
    slice: Vec<Option<u64>>,
}

impl Views {
    /// A slice is a view when it covers whole blocks of 4 channels (`start` and `end` multiples
    /// of 4), so that every reader sees block-aligned channels; or when every reader addresses
    /// its channels in a way a misaligned offset does not disturb: a 1x1 convolution (groups 1,
    /// on a map larger than 1x1: the register-blocked form, which reads its input one channel
    /// at a time) reading it as its input, or (a slice starting on a block) a concatenation of
    /// two halves fused with its two-group shuffle, which reads whole blocks and keeps only the
    /// real channels' lanes. ShuffleNetV2's 58-channel halves at 28x28 are the second kind.
    pub(crate) fn of(net: &Network, shapes: &[Shape]) -> Views {
        let consumers = net.consumers();
        let sole = sole_consumer(net, &consumers);
        let output = net.output();
        let slice = (0..net.nodes.len())
            .map(|id| {
                let Op::Slice(s) = &net.nodes[id].op else { return None };
                let aligned = s.start % 4 == 0 && s.end % 4 == 0;
                let reader_fine = |&c: &NodeId| match &net.nodes[c].op {
                    Op::Conv(conv) => {
                        conv.kernel == [1, 1] && conv.groups == 1 && net.nodes[c].inputs == [id] && {
                            let (h, w) = shapes[id].spatial();
                            h * w > 1
                        }
                    }
                    Op::Concat(_) => s.start % 4 == 0 && interleaved_halves(net, shapes, &sole, c).is_some(),
                    _ => false,
                };
                let read_in_place = id != output && !consumers[id].is_empty() && consumers[id].iter().all(reader_fine);
                (aligned || read_in_place).then_some(s.start as u64)
            })
            .collect();
        Views { slice }
    }

    pub(crate) fn is(&self, net: &Network, id: NodeId) -> bool {
        net.nodes[id].op.def().traits().view || self.slice[id].is_some()
    }

    /// The first channel of a slice that is a view (its offset in its source's storage).
    pub(crate) fn slice_start(&self, id: NodeId) -> Option<u64> {
        self.slice[id]
    }

    /// Follows views from `id` back to the node that actually produced the data (the owner of
    /// the storage it lives in).
    pub(crate) fn source_of(&self, net: &Network, mut id: NodeId) -> NodeId {
        while self.is(net, id) {
            id = net.nodes[id].inputs[0];
        }
        id
    }

    /// Follows the views that keep every value where it is (flatten, dropout) back to the
    /// tensor a group reads: its producer, or a slice view, whose channels start at an offset
    /// in the storage.
    pub(crate) fn operand_of(&self, net: &Network, mut id: NodeId) -> NodeId {
        while self.is(net, id) && self.slice[id].is_none() {
            id = net.nodes[id].inputs[0];
        }
        id
    }
}

/// The single consumer of a node, if it has exactly one and is not the network's output (the
/// output tensor itself must stay visible).
fn sole_consumer<'a>(net: &Network, consumers: &'a [Vec<NodeId>]) -> impl Fn(NodeId) -> Option<NodeId> + 'a {
    let output = net.output();
    move |id| (consumers[id].len() == 1 && id != output).then(|| consumers[id][0])
}

pub(crate) fn fuse(net: &Network, shapes: &[Shape], views: &Views) -> Vec<Group> {
    let consumers = net.consumers();
    let sole = sole_consumer(net, &consumers);
    let mut taken = vec![false; net.nodes.len()];
    let mut groups = Vec::new();
    for id in 0..net.nodes.len() {
        if taken[id] || views.is(net, id) {
            continue;
        }
        let mut nodes = vec![id];
        let mut inputs: Vec<NodeId> = net.nodes[id].inputs.iter().map(|&i| views.operand_of(net, i)).collect();
        if let Some(shuffle) = interleaved_halves(net, shapes, &sole, id) {
            nodes.push(shuffle);
        }
        match role(net, shapes, id) {
            Fusion::Anchor { .. } => absorb_epilogue(net, shapes, views, &sole, &taken, id, &mut nodes, &mut inputs),
            Fusion::GlobalPool => {
                // gap -> [views] -> fc: one pass, then the fc's epilogue.
                let mut cur = id;
                while let Some(next) = sole(cur).filter(|&n| views.is(net, n)) {
                    cur = next;
                }
                let fc = sole(cur).filter(|&n| role(net, shapes, n) == Fusion::Anchor { spatial: false });
                if let Some(fc) = fc {
                    nodes.push(fc);
                    absorb_epilogue(net, shapes, views, &sole, &taken, fc, &mut nodes, &mut inputs);
                }
            }
            // An elementwise layer on its own (DenseNet's pre-activation `bn`, a sum no
            // convolution absorbed) takes the activations that follow it: one pass, not two.
            Fusion::Fold | Fusion::Activation | Fusion::Sum => {
                let mut cur = id;
                while let Some(next) = sole(cur).filter(|&n| !taken[n] && role(net, shapes, n) == Fusion::Activation) {
                    nodes.push(next);
                    cur = next;
                }
            }
            Fusion::Pool | Fusion::Alone => {}
        }
        for &n in &nodes {
            taken[n] = true;
        }
        let out = *nodes.last().expect("a group has nodes");
        groups.push(Group { nodes, output: out, inputs });
    }
    groups.sort_by_key(|g| g.output);
    groups
}

/// The two-group shuffle that is the one consumer of concatenation `id`, when `id` joins two
/// maps of the same channel count: the shuffle then interleaves the two inputs channel by
/// channel (output `2i` is channel `i` of the first, `2i + 1` of the second), and the pair runs
/// as one pass.
fn interleaved_halves(
    net: &Network,
    shapes: &[Shape],
    sole: &dyn Fn(NodeId) -> Option<NodeId>,
    id: NodeId,
) -> Option<NodeId> {
    let node = &net.nodes[id];
    let halves = matches!(node.op, Op::Concat(_))
        && node.inputs.len() == 2
        && matches!(shapes[id], Shape::Map { .. })
        && shapes[node.inputs[0]].channels() == shapes[node.inputs[1]].channels();
    let next = sole(id).filter(|_| halves)?;
    matches!(&net.nodes[next].op, Op::Shuffle(s) if s.groups == 2).then_some(next)
}

/// Extends a conv/fc group along its single-consumer chain.
#[allow(clippy::too_many_arguments)]
fn absorb_epilogue(
    net: &Network,
    shapes: &[Shape],
    views: &Views,
    sole: &dyn Fn(NodeId) -> Option<NodeId>,
    taken: &[bool],
    anchor: NodeId,
    nodes: &mut Vec<NodeId>,
    inputs: &mut Vec<NodeId>,
) {
    let is_conv = role(net, shapes, anchor) == Fusion::Anchor { spatial: true };
    let mut activation_seen = net.nodes[anchor].op.def().traits().activation.is_some();
    let mut add_seen = false;
    let mut cur = *nodes.last().expect("anchor");
    // A node another group already absorbed (the sum a residual body's conv owns) stops the chain.
    while let Some(next) = sole(cur).filter(|&n| !taken[n]) {
        let node = &net.nodes[next];
        let next_role = role(net, shapes, next);
        let ok = match next_role {
            // Folding needs the raw conv output: nothing but the conv may come before.
            Fusion::Fold => cur == anchor && !activation_seen,
            Fusion::Activation => true,
            Fusion::Sum => {
                let other = if node.inputs[0] == cur { node.inputs[1] } else { node.inputs[0] };
                let fine = !add_seen && other != cur && node.inputs[0] != node.inputs[1];
                if fine {
                    inputs.push(views.operand_of(net, other));
                }
                fine
            }
            Fusion::Pool => is_conv,
            Fusion::Anchor { .. } | Fusion::GlobalPool | Fusion::Alone => false,
        };
        if !ok {
            break;
        }
        add_seen |= next_role == Fusion::Sum;
        activation_seen |= next_role == Fusion::Activation;
        nodes.push(next);
        cur = next;
        if next_role == Fusion::Pool {
            break; // the pool ends the epilogue
        }
    }
}
