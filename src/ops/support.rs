//! Small helpers the op files share: shape-rule diagnostics, checked products and the compact
//! spelling of sizes in descriptions.

use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::{GeomError, Shape};
use crate::ir::graph::Node;

/// The (c, h, w) of a feature map, or E0103 for a flat vector.
pub(super) fn needs_map(node: &Node, s: Shape) -> Result<(u64, u64, u64), Option<Diagnostic>> {
    match s {
        Shape::Map { c, h, w } => Ok((c, h, w)),
        Shape::Flat { n } => {
            let op = node.op.keyword();
            Err(Some(
                Diagnostic::error(
                    Code::SpatialAfterFlat,
                    node.origin.span,
                    format!("{op} expects a CxHxW feature map but receives a flat vector of {n} values"),
                )
                .with_label(format!("{op} needs spatial input"))
                .with_help(format!("move `flatten` after the last spatial layer; {op} cannot follow flatten or fc")),
            ))
        }
    }
}

/// E0101 (or E0108 on overflow) for a window that does not fit along `axis`.
pub(super) fn shrink_error(node: &Node, axis: &str, len: u64, e: GeomError) -> Diagnostic {
    let op = node.op.keyword();
    match e {
        GeomError::Shrinks { kernel, padded } => Diagnostic::error(
            Code::Shrinks,
            node.origin.span,
            format!(
                "{op} shrinks its input to nothing: the {axis} is {len} ({padded} with padding) but the kernel spans {kernel}"
            ),
        )
        .with_label(format!("output {axis} would be 0 or less"))
        .with_help("use a larger input, a smaller kernel or stride, or more padding"),
        GeomError::Overflow => {
            Diagnostic::error(Code::TooLarge, node.origin.span, format!("{op}: size arithmetic overflows"))
                .with_label("sizes too large")
        }
    }
}

/// The product of `xs`, if it fits in 64 bits.
pub(super) fn product(xs: &[u64]) -> Option<u64> {
    xs.iter().try_fold(1u64, |acc, &x| acc.checked_mul(x))
}

/// `3` for a square size, `3x2` otherwise.
pub(super) fn dims(d: [u64; 2]) -> String {
    if d[0] == d[1] { d[0].to_string() } else { format!("{}x{}", d[0], d[1]) }
}

/// `3x3`, always both sides.
pub(super) fn kernel(d: [u64; 2]) -> String {
    format!("{}x{}", d[0], d[1])
}

/// The only input of a one-input op.
pub(super) fn one(inputs: &[Shape], op: &str) -> Shape {
    *inputs.first().unwrap_or_else(|| panic!("graph: {op} has one input"))
}

/// The whole map as one window (gap, flatten, fc on a map); a point for vectors.
pub(super) fn whole_map(inputs: &[Shape]) -> super::Window {
    match inputs.first() {
        Some(&Shape::Map { h, w, .. }) => super::Window::Kernel { extent: [h, w], stride: [h, w] },
        _ => super::Window::Point,
    }
}
