//! Per-layer costs: parameters (counted as torchvision counts them), BN buffers, MACs, activation
//! bytes and receptive fields; then totals, stage subtotals, the breakdown by op kind and depth.

use crate::diag::Diagnostic;
use crate::geometry::{Shape, adaptive_max_window, effective_kernel};
use crate::graph::{Network, NodeId, Op};
use crate::infer::at_node;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerCost {
    pub weight_params: u64,
    pub bias_params: u64,
    /// BN running mean and variance: state, not parameters.
    pub buffers: u64,
    /// Multiply-accumulates of conv and fc; every other op counts 0.
    pub macs: u64,
    pub activation_bytes: u64,
    /// Receptive field (rows, cols) of one output value, in input pixels.
    pub rf: [u64; 2],
    /// Effective stride (rows, cols): input pixels between adjacent outputs.
    pub jump: [u64; 2],
}

impl LayerCost {
    pub fn params(&self) -> u64 {
        self.weight_params.saturating_add(self.bias_params)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct KindTotals {
    pub kind: &'static str,
    pub params: u64,
    pub macs: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub params: u64,
    pub buffers: u64,
    pub macs: u64,
    pub depth: u64,
    pub by_kind: Vec<KindTotals>,
    /// (params, macs) per stage, in `Network::stages` order.
    pub stages: Vec<(u64, u64)>,
}

fn product(xs: &[u64]) -> Option<u64> {
    xs.iter().try_fold(1u64, |acc, &x| acc.checked_mul(x))
}

/// Costs of every node. `shapes` must be complete (a clean shape check).
pub fn layer_costs(net: &Network, shapes: &[Shape]) -> Result<Vec<LayerCost>, Vec<Diagnostic>> {
    let mut costs: Vec<LayerCost> = Vec::with_capacity(net.nodes.len());
    let mut errors = Vec::new();
    for (id, node) in net.nodes.iter().enumerate() {
        let out = shapes[id];
        let inp = node.inputs.first().map(|&i| shapes[i]);
        let (weight, bias, buffers, macs) = match (&node.op, inp) {
            (Op::Conv(c), Some(inp)) => {
                let cin = inp.channels() / c.groups;
                let (oh, ow) = out.spatial();
                let per_out = product(&[cin, c.kernel[0], c.kernel[1]]);
                (
                    per_out.and_then(|p| p.checked_mul(c.out_channels)),
                    Some(if c.bias { c.out_channels } else { 0 }),
                    Some(0),
                    per_out.and_then(|p| product(&[p, c.out_channels, oh, ow])),
                )
            }
            (Op::Fc(f), Some(inp)) => {
                let w = inp.channels().checked_mul(f.out);
                (w, Some(if f.bias { f.out } else { 0 }), Some(0), w)
            }
            (Op::BatchNorm { .. }, _) => {
                let c = out.channels();
                (Some(c), Some(c), Some(2 * c), Some(0))
            }
            _ => (Some(0), Some(0), Some(0), Some(0)),
        };
        let activation_bytes = out.elements().and_then(|e| e.checked_mul(4));
        let (rf, jump) = receptive_field(net, id, shapes, &costs);
        match (weight, bias, buffers, macs, activation_bytes) {
            (Some(weight_params), Some(bias_params), Some(buffers), Some(macs), Some(activation_bytes)) => {
                costs.push(LayerCost { weight_params, bias_params, buffers, macs, activation_bytes, rf, jump })
            }
            _ => {
                errors.push(at_node(
                    Diagnostic::error(
                        "E0108",
                        node.origin.span,
                        format!("the cost of {} overflows a 64-bit counter", node.name),
                    )
                    .with_label("sizes too large"),
                    node,
                ));
                costs.push(LayerCost::default());
            }
        }
    }
    if errors.is_empty() { Ok(costs) } else { Err(errors) }
}

/// Receptive field and effective stride of `id`, from those of its inputs (already in `done`).
/// Through branches and sums the larger field is taken. gap, flatten and fc see the whole map.
fn receptive_field(net: &Network, id: NodeId, shapes: &[Shape], done: &[LayerCost]) -> ([u64; 2], [u64; 2]) {
    let node = &net.nodes[id];
    if node.inputs.is_empty() {
        return ([1, 1], [1, 1]);
    }
    let mut rf = [1u64, 1];
    let mut jump = [1u64, 1];
    for &i in &node.inputs {
        for a in 0..2 {
            rf[a] = rf[a].max(done[i].rf[a]);
            jump[a] = jump[a].max(done[i].jump[a]);
        }
    }
    let grow = |rf: &mut [u64; 2], jump: &mut [u64; 2], k: [u64; 2], s: [u64; 2]| {
        for a in 0..2 {
            rf[a] = rf[a].saturating_add(k[a].saturating_sub(1).saturating_mul(jump[a]));
            jump[a] = jump[a].saturating_mul(s[a]);
        }
    };
    let (ih, iw) = shapes[node.inputs[0]].spatial();
    match &node.op {
        Op::Conv(c) => {
            let k = [0, 1].map(|a| effective_kernel(c.kernel[a], c.dilation[a]).unwrap_or(u64::MAX));
            grow(&mut rf, &mut jump, k, c.stride);
        }
        Op::Pool(p) => grow(&mut rf, &mut jump, p.kernel, p.stride),
        Op::AdaptiveAvgPool { out } => {
            let k = [adaptive_max_window(ih, out[0]), adaptive_max_window(iw, out[1])];
            let s = [(ih / out[0]).max(1), (iw / out[1]).max(1)];
            grow(&mut rf, &mut jump, k, s);
        }
        Op::Gap | Op::Flatten | Op::Fc(_) if matches!(shapes[node.inputs[0]], Shape::Map { .. }) => {
            grow(&mut rf, &mut jump, [ih, iw], [ih, iw]);
        }
        _ => {}
    }
    (rf, jump)
}

pub fn totals(net: &Network, costs: &[LayerCost]) -> Totals {
    let mut t = Totals { stages: vec![(0, 0); net.stages.len()], ..Totals::default() };
    for (node, c) in net.nodes.iter().zip(costs) {
        t.params = t.params.saturating_add(c.params());
        t.buffers = t.buffers.saturating_add(c.buffers);
        t.macs = t.macs.saturating_add(c.macs);
        if let Some(s) = node.stage {
            t.stages[s].0 = t.stages[s].0.saturating_add(c.params());
            t.stages[s].1 = t.stages[s].1.saturating_add(c.macs);
        }
        if c.params() > 0 || c.macs > 0 {
            let kind = node.op.keyword();
            match t.by_kind.iter_mut().find(|k| k.kind == kind) {
                Some(k) => {
                    k.params = k.params.saturating_add(c.params());
                    k.macs = k.macs.saturating_add(c.macs);
                }
                None => t.by_kind.push(KindTotals { kind, params: c.params(), macs: c.macs }),
            }
        }
    }
    t.depth = depth(net);
    t
}

/// The largest number of conv and fc layers on any path from input to output: how the papers
/// count (VGG-16: 16, GoogLeNet: 22, ResNet-18: 18).
pub fn depth(net: &Network) -> u64 {
    let mut d = vec![0u64; net.nodes.len()];
    for (id, node) in net.nodes.iter().enumerate() {
        let before = node.inputs.iter().map(|&i| d[i]).max().unwrap_or(0);
        d[id] = before + u64::from(node.op.is_weighted_linear());
    }
    d.last().copied().unwrap_or(0)
}
