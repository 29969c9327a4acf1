//! `shuffle G`: channel shuffle (ShuffleNet): the channels, seen as G groups of C/G, are
//! transposed to C/G groups of G, as torchvision's `channel_shuffle` does with a view, a
//! transpose and a reshape.

use super::args::{OpSpec, Takes, int_in_range};
use super::support::{needs_map, one};
use super::{Category, Fusion, LayerOp, Op, Traits, Window};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::Axis;

pub(super) const SPECS: &[OpSpec] = &[OpSpec {
    name: "shuffle",
    positional: &[("groups", Takes::Int)],
    required: 1,
    options: &[],
    example: "shuffle 2",
    build: |p, errors| {
        let groups = p.pos(0).and_then(|v| int_in_range("groups", "shuffle", v, 1, errors))?;
        Some(Op::Shuffle(Shuffle { groups }))
    },
}];

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Shuffle {
    pub(crate) groups: u64,
}

impl Shuffle {
    /// The input channel that output channel `o` of `c` takes.
    pub(crate) fn source(&self, o: u64, c: u64) -> u64 {
        let per = c / self.groups;
        (o % self.groups) * per + o / self.groups
    }
}

impl LayerOp for Shuffle {
    fn keyword(&self) -> &'static str {
        "shuffle"
    }

    fn describe(&self) -> String {
        format!("shuffle {}", self.groups)
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        let input = one(inputs, "shuffle");
        let (c, _, _) = needs_map(at, input)?;
        if c % self.groups == 0 {
            return Ok(input);
        }
        Err(Some(
            Diagnostic::error(
                Code::ShuffleGroups,
                at.origin.span,
                format!("shuffle {} needs channels divisible by {}, but the input has {c}", self.groups, self.groups),
            )
            .with_label(format!("{c} channels do not split into {} groups", self.groups))
            .with_help("choose a group count that divides the channels"),
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
        let x = inputs[0].map("shuffle");
        let c = x.dim().1 as u64;
        let mut out = x.clone();
        for (o, mut plane) in out.axis_iter_mut(Axis(1)).enumerate() {
            plane.assign(&x.index_axis(Axis(1), self.source(o as u64, c) as usize));
        }
        Tensor::Map(out)
    }
}
