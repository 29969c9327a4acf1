//! A channel slice: `branch A..B { ... }` reads channels `A..B` of its input (ShuffleNetV2's
//! split). The elaborator creates it; it is not written as a layer.

use super::support::{needs_map, one};
use super::{Category, Fusion, LayerOp, Traits, Window};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::{Axis, Slice as Range};

/// Channels `start..end` of a map.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Slice {
    pub(crate) start: i64,
    pub(crate) end: i64,
}

impl LayerOp for Slice {
    fn keyword(&self) -> &'static str {
        "slice"
    }

    fn describe(&self) -> String {
        format!("slice {}..{}", self.start, self.end)
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        let (c, h, w) = needs_map(at, one(inputs, "slice"))?;
        let (start, end) = (self.start, self.end);
        if 0 <= start && start < end && end <= c as i64 {
            return Ok(Shape::Map { c: (end - start) as u64, h, w });
        }
        let why = if start >= end { "it is empty".to_string() } else { format!("the input has {c} channels") };
        Err(Some(
            Diagnostic::error(
                Code::SliceRange,
                at.origin.span,
                format!("the channel range {start}..{end} does not fit: {why}"),
            )
            .with_label(format!("a slice of a {c}-channel input"))
            .with_help(format!("a range `A..B` needs 0 <= A < B <= {c}; `in.c` is the input's channel count")),
        ))
    }

    weightless!();

    fn window(&self, _: &[Shape]) -> Window {
        Window::Point
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Alone
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Other, in_place: false, view: false, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        let x = inputs[0].map("slice");
        Tensor::Map(x.slice_axis(Axis(1), Range::from(self.start as usize..self.end as usize)).to_owned())
    }
}
