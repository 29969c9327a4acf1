//! Ops that only relabel their input: `dropout [P]` (the identity at inference) and `flatten`
//! (C,H,W order, as PyTorch's `Flatten`). Both are views: no work and no storage.

use super::args::{OpSpec, Takes, float};
use super::support::{one, whole_map};
use super::{Category, Fusion, LayerOp, Op, Traits, Window};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;

pub(super) const SPECS: &[OpSpec] = &[
    OpSpec {
        name: "dropout",
        positional: &[("probability", Takes::Float)],
        required: 0,
        options: &[],
        example: "dropout 0.5",
        build: |p, errors| {
            let prob = match p.pos(0) {
                Some(v) => float("probability", "dropout", v, errors).filter(|&x| {
                    let ok = (0.0..1.0).contains(&x);
                    if !ok {
                        errors.push(
                            Diagnostic::error(
                                Code::BadArgument,
                                v.span,
                                format!("dropout probability must be in [0, 1); found {x}"),
                            )
                            .with_label("out of range"),
                        );
                    }
                    ok
                }),
                None => Some(0.5),
            };
            prob.map(|p| Op::Dropout(Dropout { p }))
        },
    },
    OpSpec {
        name: "flatten",
        positional: &[],
        required: 0,
        options: &[],
        example: "flatten",
        build: |_, _| Some(Op::Flatten(Flatten)),
    },
];

/// The identity at inference.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Dropout {
    pub(crate) p: f64,
}

/// A map as a vector, in C,H,W order.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Flatten;

impl LayerOp for Dropout {
    fn keyword(&self) -> &'static str {
        "dropout"
    }

    fn describe(&self) -> String {
        format!("dropout {}", self.p)
    }

    fn infer(&self, _: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        Ok(one(inputs, "dropout"))
    }

    weightless!();

    fn window(&self, _: &[Shape]) -> Window {
        Window::Point
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Alone
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Other, in_place: false, view: true, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        inputs[0].clone()
    }
}

impl LayerOp for Flatten {
    fn keyword(&self) -> &'static str {
        "flatten"
    }

    fn infer(&self, _: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        Ok(Shape::Flat { n: one(inputs, "flatten").elements().ok_or(None)? })
    }

    weightless!();

    fn window(&self, inputs: &[Shape]) -> Window {
        whole_map(inputs)
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Alone
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Other, in_place: false, view: true, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        Tensor::Flat(inputs[0].to_rows())
    }
}
