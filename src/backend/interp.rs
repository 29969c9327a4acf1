//! The reference interpreter: the executable specification every fast path is compared against.
//! Each op's kernel is obvious loops over ndarray tensors in f32 with PyTorch's semantics, kept
//! in the op's own file (`LayerOp::eval`); this pass runs them in order and frees each tensor
//! after its last reader. Speed is not a goal here; being evidently right is.

use crate::io::weights::Weights;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Network, NodeId};
use crate::ir::tensor::Tensor;
use ndarray::Array4;

/// Runs the network on `input` (N, C, H, W) and returns the outputs of the nodes in `keep`
/// (the network's output is the last node).
pub fn forward(net: &Network, weights: &Weights, input: Array4<f32>, keep: &[NodeId]) -> Vec<Tensor> {
    run(net, weights, input, keep, None)
}

/// The output of the network, adding each node's wall time (seconds) to `seconds`.
pub(crate) fn forward_timed(net: &Network, weights: &Weights, input: Array4<f32>, seconds: &mut [f64]) -> Tensor {
    run(net, weights, input, &[net.output()], Some(seconds)).remove(0)
}

fn run(
    net: &Network,
    weights: &Weights,
    input: Array4<f32>,
    keep: &[NodeId],
    mut seconds: Option<&mut [f64]>,
) -> Vec<Tensor> {
    let consumers = net.consumers();
    let last_use: Vec<NodeId> = (0..net.nodes.len()).map(|t| consumers[t].iter().copied().max().unwrap_or(t)).collect();
    let mut values: Vec<Option<Tensor>> = vec![None; net.nodes.len()];
    let image = Tensor::Map(input);
    for (id, node) in net.nodes.iter().enumerate() {
        let started = seconds.is_some().then(std::time::Instant::now);
        let inputs: Vec<&Tensor> = if node.inputs.is_empty() {
            vec![&image]
        } else {
            node.inputs.iter().map(|&i| values[i].as_ref().expect("inputs are computed before use")).collect()
        };
        // The weight list (and so the names) follows from the input shapes, which are the tensors'.
        let in_shapes: Vec<Shape> =
            inputs.iter().skip(usize::from(node.inputs.is_empty())).map(|t| t.shape()).collect();
        let decls = node.op.def().weights(&in_shapes);
        let params: Vec<&[f32]> =
            decls.iter().map(|w| weights.get(&format!("{}.{}", node.name, w.kind.suffix()))).collect();
        let out = node.op.def().eval(&inputs, &params);
        values[id] = Some(out);
        if let (Some(s), Some(t)) = (seconds.as_deref_mut(), started) {
            s[id] += t.elapsed().as_secs_f64();
        }
        for &i in &node.inputs {
            if last_use[i] == id && !keep.contains(&i) {
                values[i] = None;
            }
        }
    }
    keep.iter().map(|&k| values[k].clone().expect("kept tensors stay alive")).collect()
}
