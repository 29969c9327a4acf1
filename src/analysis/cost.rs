//! Per-layer costs: parameters (counted as torchvision counts them), BN buffers, MACs, activation
//! bytes and receptive fields; then totals, stage subtotals, the breakdown by op kind and depth.
//! What an op costs is its own rule (`LayerOp::weights`, `macs`, `window`); parameters come from
//! the same weight list as the tensors `cnnc params` lists, so the two cannot disagree.

use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::analysis::infer::at_node;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Network, NodeId};
use crate::ops::{ParamKind, Window};

/// What one layer costs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerCost {
    /// Weight values (BN: gamma).
    pub weight_params: u64,
    /// Bias values (BN: beta).
    pub bias_params: u64,
    /// BN running mean and variance: state, not parameters.
    pub buffers: u64,
    /// Multiply-accumulates of conv and fc; every other op counts 0.
    pub macs: u64,
    /// Bytes of the output at batch 1 in f32.
    pub activation_bytes: u64,
    /// Receptive field (rows, cols) of one output value, in input pixels.
    pub rf: [u64; 2],
    /// Effective stride (rows, cols): input pixels between adjacent outputs.
    pub jump: [u64; 2],
}

impl LayerCost {
    /// Weights and biases.
    pub fn params(&self) -> u64 {
        self.weight_params.saturating_add(self.bias_params)
    }
}

/// Parameters and MACs of one op kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KindTotals {
    /// The op keyword.
    pub kind: &'static str,
    /// Parameters of all layers of this kind.
    pub params: u64,
    /// MACs of all layers of this kind.
    pub macs: u64,
}

/// Whole-network figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Parameters, as `sum(p.numel() for p in model.parameters())` counts them.
    pub params: u64,
    /// BN running statistics.
    pub buffers: u64,
    /// Multiply-accumulates of conv and fc.
    pub macs: u64,
    /// Conv and fc layers on the longest path.
    pub depth: u64,
    /// Parameters and MACs per op kind, in order of first appearance.
    pub by_kind: Vec<KindTotals>,
    /// (params, macs) per stage, in `Network::stages` order.
    pub stages: Vec<(u64, u64)>,
}

/// (weight, bias, buffer) values of a node's weight list, `None` on overflow.
fn weight_split(net: &Network, id: NodeId, shapes: &[Shape]) -> Option<(u64, u64, u64)> {
    let node = &net.nodes[id];
    let inputs: Vec<Shape> = node.inputs.iter().map(|&i| shapes[i]).collect();
    let (mut weight, mut bias, mut buffers) = (0u64, 0u64, 0u64);
    for w in node.op.def().weights(&inputs) {
        let n = w.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d))?;
        let slot = match w.kind {
            ParamKind::Weight => &mut weight,
            ParamKind::Bias => &mut bias,
            ParamKind::RunningMean | ParamKind::RunningVar => &mut buffers,
        };
        *slot = slot.checked_add(n)?;
    }
    Some((weight, bias, buffers))
}

/// Costs of every node. `shapes` must be complete (a clean shape check).
pub(crate) fn layer_costs(net: &Network, shapes: &[Shape]) -> Result<Vec<LayerCost>, Vec<Diagnostic>> {
    let mut costs: Vec<LayerCost> = Vec::with_capacity(net.nodes.len());
    let mut errors = Vec::new();
    for (id, node) in net.nodes.iter().enumerate() {
        let out = shapes[id];
        let inputs: Vec<Shape> = node.inputs.iter().map(|&i| shapes[i]).collect();
        let macs = node.op.def().macs(&inputs, out);
        let activation_bytes = out.elements().and_then(|e| e.checked_mul(4));
        let (rf, jump) = receptive_field(net, id, shapes, &costs);
        match (weight_split(net, id, shapes), macs, activation_bytes) {
            (Some((weight_params, bias_params, buffers)), Some(macs), Some(activation_bytes)) => {
                costs.push(LayerCost { weight_params, bias_params, buffers, macs, activation_bytes, rf, jump })
            }
            _ => {
                errors.push(at_node(
                    Diagnostic::error(
                        Code::TooLarge,
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
/// The stride comes from the inputs at the first input's resolution (a gate's C x 1 x 1 factor
/// widens the field to the whole image without changing the stride).
fn receptive_field(net: &Network, id: NodeId, shapes: &[Shape], done: &[LayerCost]) -> ([u64; 2], [u64; 2]) {
    let node = &net.nodes[id];
    if node.inputs.is_empty() {
        return ([1, 1], [1, 1]);
    }
    let mut rf = [1u64, 1];
    let mut jump = [1u64, 1];
    let resolution = shapes[node.inputs[0]].spatial();
    for &i in &node.inputs {
        for a in 0..2 {
            rf[a] = rf[a].max(done[i].rf[a]);
            if shapes[i].spatial() == resolution {
                jump[a] = jump[a].max(done[i].jump[a]);
            }
        }
    }
    let inputs: Vec<Shape> = node.inputs.iter().map(|&i| shapes[i]).collect();
    if let Window::Kernel { extent, stride } = node.op.def().window(&inputs) {
        for a in 0..2 {
            rf[a] = rf[a].saturating_add(extent[a].saturating_sub(1).saturating_mul(jump[a]));
            jump[a] = jump[a].saturating_mul(stride[a]);
        }
    }
    (rf, jump)
}

pub(crate) fn totals(net: &Network, costs: &[LayerCost]) -> Totals {
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
/// count (VGG-16: 16, GoogLeNet: 22, ResNet-18: 18). A gate's factor (squeeze-excitation) is
/// not on the path, as EfficientNet and RegNet count.
pub(crate) fn depth(net: &Network) -> u64 {
    let mut d = vec![0u64; net.nodes.len()];
    for (id, node) in net.nodes.iter().enumerate() {
        let inputs = if node.op.def().traits().factor { &node.inputs[..1] } else { &node.inputs[..] };
        let before = inputs.iter().map(|&i| d[i]).max().unwrap_or(0);
        d[id] = before + u64::from(node.op.is_weighted_linear());
    }
    d.last().copied().unwrap_or(0)
}
