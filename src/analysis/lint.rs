//! Design lints on a network whose shapes are known: the opt-in channel-doubling rule, pooling
//! that drops rows or columns, kernels larger than their input, and layers after softmax.
//! (Unused blocks are found during elaboration.)

use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::analysis::infer::at_node;
use crate::front::ast::Span;
use crate::ir::geometry::{Shape, conv_out_len, dropped_trailing};
use crate::ir::graph::{DesignRule, Network};
use crate::ops::{Op, Window};

pub(crate) fn lint(net: &Network, shapes: &[Shape]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for rule in &net.rules {
        match rule {
            DesignRule::DoubleChannels { max, span } => out.extend(double_channels(net, shapes, *max, *span)),
        }
    }
    out.extend(pooling_drops(net, shapes));
    out.extend(kernel_larger_than_input(net, shapes));
    out.extend(after_softmax(net));
    out.extend(even_kernel_default_padding(net, shapes));
    out
}

/// W0006: an even kernel with the default floor(k/2) padding grows the map by one, where
/// PyTorch's default (padding 0) does not. Once per statement, however often it is expanded.
fn even_kernel_default_padding(net: &Network, shapes: &[Shape]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (id, node) in net.nodes.iter().enumerate() {
        let Op::Conv(c) = &node.op else { continue };
        let extent = [0, 1].map(|a| c.dilation[a] * (c.kernel[a] - 1) + 1);
        if !c.pad_default || extent.iter().all(|e| e % 2 == 1) || !seen.insert(node.origin.span) {
            continue;
        }
        let (Shape::Map { h, w, .. }, Shape::Map { h: oh, w: ow, .. }) = (shapes[node.inputs[0]], shapes[id]) else {
            continue;
        };
        let unpadded =
            [(h, 0), (w, 1)].map(|(len, a)| conv_out_len(len, c.kernel[a], c.stride[a], 0, c.dilation[a]).unwrap_or(0));
        let k = format!("{}x{}", c.kernel[0], c.kernel[1]);
        let pad = if c.pad[0] == c.pad[1] { c.pad[0].to_string() } else { format!("{}x{}", c.pad[0], c.pad[1]) };
        out.push(at_node(
            Diagnostic::warning(
                Code::EvenKernelPadding,
                node.origin.span,
                format!(
                    "{} has an even {k} kernel with the default padding {pad}: {h}x{w} becomes {oh}x{ow}, where \
                     PyTorch's default padding 0 gives {}x{}",
                    node.name, unpadded[0], unpadded[1]
                ),
            )
            .with_label(format!("padding {pad} by default"))
            .with_help(format!("write `pad 0` for PyTorch's default, or `pad {pad}` to keep this size")),
            node,
        ));
    }
    out
}

/// VGG's rule: convs at one resolution share a channel count, and the first conv after a
/// downsampling has twice the channels of the resolution before it, capped at `max`. Only convs
/// on the main path count (inception branches legitimately differ).
fn double_channels(net: &Network, shapes: &[Shape], max: Option<u64>, rule_span: Span) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // (resolution, channels the rule expects there, name of the first conv there)
    let mut group: Option<((u64, u64), u64, String)> = None;
    for (id, node) in net.nodes.iter().enumerate() {
        let Op::Conv(c) = &node.op else { continue };
        if node.off_main_path {
            continue;
        }
        let res = shapes[id].spatial();
        let (expected, why, starts_group) = match &group {
            Some((prev, ch, first)) if *prev == res => {
                (*ch, format!("the same as {first}, the first conv at {}x{}", res.0, res.1), false)
            }
            Some((prev, ch, _)) if res.0 * res.1 < prev.0 * prev.1 => {
                let doubled = ch.saturating_mul(2);
                let e = max.map_or(doubled, |m| doubled.min(m));
                let cap = if e < doubled { format!(", capped at {e}") } else { String::new() };
                (e, format!("2 x {ch} after the downsampling to {}x{}{cap}", res.0, res.1), true)
            }
            // The first conv, or the resolution grew: the rule starts from what is there.
            _ => (c.out_channels, String::new(), true),
        };
        if starts_group {
            // Continue from what is there, so one wrong stage is reported once, at its first conv.
            group = Some((res, c.out_channels, node.name.clone()));
        }
        if c.out_channels != expected {
            out.push(at_node(
                Diagnostic::warning(
                    Code::DoubleChannels,
                    node.origin.span,
                    format!(
                        "{} has {} output channels; the double-channels rule expects {expected}",
                        node.name, c.out_channels
                    ),
                )
                .with_label(format!("expected {expected}: {why}"))
                .with_secondary(rule_span, "rule declared here"),
                node,
            ));
        }
    }
    out
}

fn pooling_drops(net: &Network, shapes: &[Shape]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (id, node) in net.nodes.iter().enumerate() {
        let Op::Pool(p) = &node.op else { continue };
        let (Shape::Map { h, w, .. }, Shape::Map { h: oh, w: ow, .. }) = (shapes[node.inputs[0]], shapes[id]) else {
            continue;
        };
        let rows = dropped_trailing(h, p.kernel[0], p.stride[0], p.pad[0], 1, oh);
        let cols = dropped_trailing(w, p.kernel[1], p.stride[1], p.pad[1], 1, ow);
        if rows == 0 && cols == 0 {
            continue;
        }
        let plural = |n: u64, what: &str| {
            if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
        };
        let what = match (rows, cols) {
            (0, c) => plural(c, "column"),
            (r, 0) => plural(r, "row"),
            (r, c) => format!("{} and {}", plural(r, "row"), plural(c, "column")),
        };
        out.push(at_node(
            Diagnostic::warning(
                Code::PoolDropsRows,
                node.origin.span,
                format!("{} {} ignores the last {what} of its {h}x{w} input", node.name, node.op.describe()),
            )
            .with_label(format!("the windows stop before the end of the {h}x{w} input"))
            .with_help("use `ceil` mode, padding, or an input size the stride divides"),
            node,
        ));
    }
    out
}

fn kernel_larger_than_input(net: &Network, shapes: &[Shape]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for node in &net.nodes {
        let inputs: Vec<Shape> = node.inputs.iter().map(|&i| shapes[i]).collect();
        let (Window::Kernel { extent: [kh, kw], .. }, Some(&Shape::Map { h, w, .. })) =
            (node.op.def().window(&inputs), inputs.first())
        else {
            continue;
        };
        if kh > h || kw > w {
            out.push(at_node(
                Diagnostic::warning(
                    Code::KernelLargerThanInput,
                    node.origin.span,
                    format!("{} has a {kh}x{kw} kernel but its input is only {h}x{w}", node.name),
                )
                .with_label("most of each window reads padding")
                .with_help("use a smaller kernel here, or a larger input"),
                node,
            ));
        }
    }
    out
}

fn after_softmax(net: &Network) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for node in &net.nodes {
        let Some(&src) = node.inputs.first() else {
            continue;
        };
        if matches!(net.nodes[src].op, Op::Softmax(_)) {
            out.push(at_node(
                Diagnostic::warning(Code::AfterSoftmax, node.origin.span, format!("{} comes after softmax", node.name))
                    .with_label(format!("{} reads probabilities", node.op.keyword()))
                    .with_help("softmax belongs at the very end; move it after this layer or remove it"),
                node,
            ));
        }
    }
    out
}
