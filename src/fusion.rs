//! Fusion groups: which layers run as one loop nest. A pure function of the graph and shapes,
//! shared by the memory plan (so the checker's peak is the JIT's) and by the JIT.
//!
//! - conv or fc, then along a chain of single-consumer tensors: bn (folded into the weights,
//!   only straight after the conv/fc), relu, one residual `add` (the other operand is read in the
//!   epilogue), relu, and for conv a non-overlapping max/avg pool (kernel = stride, no padding,
//!   no partial windows), which the epilogue reduces in registers;
//! - gap, then fc (through flatten/dropout), with relu: one pass;
//! - flatten and dropout are views: they belong to no group and cost nothing;
//! - everything else is a group of its own.
//!
//! Groups are listed in execution order: by the index of their last node, which is a
//! topological order because every absorbed node's other inputs come earlier in the file.

use crate::geometry::Shape;
use crate::graph::{Network, NodeId, Op};

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The nodes computed by this group, in order; the anchor (conv, fc, gap, ...) first.
    pub nodes: Vec<NodeId>,
    /// The node whose tensor the group writes.
    pub output: NodeId,
    /// Tensors read from outside the group (producers' node ids), main input first.
    pub inputs: Vec<NodeId>,
}

impl Group {
    pub fn anchor(&self) -> NodeId {
        self.nodes[0]
    }
}

/// Whether a node only relabels its input (no work, no storage).
pub fn is_view(op: &Op) -> bool {
    matches!(op, Op::Flatten | Op::Dropout { .. })
}

/// Follows views from `id` back to the node that actually produced the data.
pub fn source_of(net: &Network, mut id: NodeId) -> NodeId {
    while is_view(&net.nodes[id].op) {
        id = net.nodes[id].inputs[0];
    }
    id
}

pub fn fuse(net: &Network, shapes: &[Shape]) -> Vec<Group> {
    let consumers = net.consumers();
    let output = net.output();
    // The single consumer of `id`, if it has exactly one and is not the network output's reader
    // of an earlier value (the output tensor itself must stay visible).
    let sole = |id: NodeId| -> Option<NodeId> { (consumers[id].len() == 1 && id != output).then(|| consumers[id][0]) };
    let mut taken = vec![false; net.nodes.len()];
    let mut groups = Vec::new();
    for id in 0..net.nodes.len() {
        if taken[id] || is_view(&net.nodes[id].op) {
            continue;
        }
        let mut nodes = vec![id];
        let mut inputs: Vec<NodeId> = net.nodes[id].inputs.iter().map(|&i| source_of(net, i)).collect();
        match &net.nodes[id].op {
            Op::Conv(_) | Op::Fc(_) => absorb_epilogue(net, shapes, &sole, &taken, id, &mut nodes, &mut inputs),
            Op::Gap => {
                // gap -> [views] -> fc: one pass, then the fc's epilogue.
                let mut cur = id;
                while let Some(next) = sole(cur).filter(|&n| is_view(&net.nodes[n].op)) {
                    cur = next;
                }
                if let Some(fc) = sole(cur).filter(|&n| matches!(net.nodes[n].op, Op::Fc(_))) {
                    nodes.push(fc);
                    absorb_epilogue(net, shapes, &sole, &taken, fc, &mut nodes, &mut inputs);
                }
            }
            _ => {}
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

/// Extends a conv/fc group along its single-consumer chain.
fn absorb_epilogue(
    net: &Network,
    shapes: &[Shape],
    sole: &dyn Fn(NodeId) -> Option<NodeId>,
    taken: &[bool],
    anchor: NodeId,
    nodes: &mut Vec<NodeId>,
    inputs: &mut Vec<NodeId>,
) {
    let is_conv = matches!(net.nodes[anchor].op, Op::Conv(_));
    let mut relu_seen = match &net.nodes[anchor].op {
        Op::Conv(c) => c.relu,
        Op::Fc(f) => f.relu,
        _ => false,
    };
    let mut add_seen = false;
    let mut cur = *nodes.last().expect("anchor");
    // A node another group already absorbed (the sum a residual body's conv owns) stops the chain.
    while let Some(next) = sole(cur).filter(|&n| !taken[n]) {
        let node = &net.nodes[next];
        let ok = match &node.op {
            // Folding needs the raw conv output: nothing but the conv may come before.
            Op::BatchNorm { .. } => cur == anchor && !relu_seen,
            Op::Relu => true,
            Op::Add => {
                let other = if node.inputs[0] == cur { node.inputs[1] } else { node.inputs[0] };
                let fine = !add_seen && other != cur && node.inputs[0] != node.inputs[1];
                if fine {
                    inputs.push(source_of(net, other));
                }
                fine
            }
            Op::Pool(p) if is_conv => pool_fusable(p, shapes[cur]),
            _ => false,
        };
        if !ok {
            break;
        }
        add_seen |= node.op == Op::Add;
        relu_seen |= node.op == Op::Relu;
        nodes.push(next);
        cur = next;
        if let Op::Pool(_) = node.op {
            break; // the pool ends the epilogue
        }
    }
}

/// A pool the conv epilogue can reduce in registers: non-overlapping windows that tile the
/// conv output exactly (a floor-mode pool may drop trailing rows; those are never computed).
pub fn pool_fusable(p: &crate::graph::Pool, input: Shape) -> bool {
    let (h, w) = input.spatial();
    let exact = |axis: usize, len: u64| !p.ceil || len % p.kernel[axis] == 0;
    p.kernel == p.stride
        && p.pad == [0, 0]
        && p.kernel[0] <= 3
        && p.kernel[1] <= 3
        && exact(0, h)
        && exact(1, w)
        && h >= p.kernel[0]
        && w >= p.kernel[1]
}
