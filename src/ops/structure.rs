//! The ops the structure of a file creates rather than a layer statement: the input, the
//! concatenation of consecutive branches, the residual sum, and the placeholder for a statement
//! that failed to elaborate.

use super::{Category, Fusion, LayerOp, Traits, Window};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::{Axis, Zip};

/// The network's input: the image batch.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct InputOp;

/// Channel concatenation of the branch outputs, in branch order.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Concat;

/// Residual sum: inputs are [body, shortcut].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Add;

/// A statement that failed to elaborate; its error is already reported.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Invalid;

/// The trait methods every structural op answers alike: no weights, no MACs, a point window.
macro_rules! structural {
    () => {
        weightless!();

        fn window(&self, _: &[Shape]) -> Window {
            Window::Point
        }
    };
}

impl LayerOp for InputOp {
    fn keyword(&self) -> &'static str {
        "input"
    }

    fn infer(&self, _: &Node, _: &[Shape], input: Input) -> Result<Shape, Option<Diagnostic>> {
        Ok(Shape::Map { c: input.c, h: input.h, w: input.w })
    }

    structural!();

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Alone
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Input, in_place: false, view: false, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        inputs[0].clone()
    }
}

impl LayerOp for Concat {
    fn keyword(&self) -> &'static str {
        "concat"
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        concat_shape(at, inputs)
    }

    structural!();

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Alone
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Join, in_place: false, view: false, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        match inputs[0] {
            Tensor::Map(_) => {
                let views: Vec<_> = inputs.iter().map(|t| t.map("concat").view()).collect();
                Tensor::Map(ndarray::concatenate(Axis(1), &views).expect("branch shapes were checked"))
            }
            Tensor::Flat(_) => {
                let views: Vec<_> = inputs.iter().map(|t| t.flat("concat").view()).collect();
                Tensor::Flat(ndarray::concatenate(Axis(1), &views).expect("branch shapes were checked"))
            }
        }
    }
}

fn concat_shape(node: &Node, ins: &[Shape]) -> Result<Shape, Option<Diagnostic>> {
    let listing =
        || ins.iter().enumerate().map(|(i, s)| format!("b{} gives {s}", i + 1)).collect::<Vec<_>>().join(", ");
    match ins[0] {
        Shape::Map { h, w, .. } => {
            let mut c = 0u64;
            for s in ins {
                match *s {
                    Shape::Map { c: bc, h: bh, w: bw } if bh == h && bw == w => {
                        c = c.checked_add(bc).ok_or(None)?;
                    }
                    _ => {
                        return Err(Some(
                            Diagnostic::error(
                                Code::ConcatMismatch,
                                node.origin.span,
                                format!("concatenated branches must agree on height and width: {}", listing()),
                            )
                            .with_label("branch outputs differ in size")
                            .with_help(
                                "give every branch the same stride and padding (pools in branches often need `pad 1`)",
                            ),
                        ));
                    }
                }
            }
            Ok(Shape::Map { c, h, w })
        }
        Shape::Flat { .. } => {
            let mut n = 0u64;
            for s in ins {
                match *s {
                    Shape::Flat { n: bn } => n = n.checked_add(bn).ok_or(None)?,
                    Shape::Map { .. } => {
                        return Err(Some(
                            Diagnostic::error(
                                Code::ConcatMismatch,
                                node.origin.span,
                                format!("concatenated branches must all be maps or all be vectors: {}", listing()),
                            )
                            .with_label("mixed branch outputs"),
                        ));
                    }
                }
            }
            Ok(Shape::Flat { n })
        }
    }
}

impl LayerOp for Add {
    fn keyword(&self) -> &'static str {
        "add"
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        let (body, short) = (inputs[0], inputs[1]);
        if body == short {
            return Ok(body);
        }
        let mut d = Diagnostic::error(
            Code::ResidualMismatch,
            at.origin.span,
            format!("residual sum needs equal shapes, but the body gives {body} and the shortcut gives {short}"),
        )
        .with_label("shapes differ");
        if let (Shape::Map { c, h, .. }, Shape::Map { h: sh, .. }) = (body, short) {
            let stride = if h > 0 && sh % h == 0 { sh / h } else { 1 };
            let stride = if stride > 1 { format!(" stride {stride}") } else { String::new() };
            d = d.with_help(format!("add a projection: `shortcut {{ conv 1x1 {c}{stride} nobias; bn }}`"));
        }
        Err(Some(d))
    }

    structural!();

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Sum
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Join, in_place: false, view: false, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        match (inputs[0], inputs[1]) {
            (Tensor::Map(x), Tensor::Map(y)) => Tensor::Map(Zip::from(x).and(y).map_collect(|p, q| p + q)),
            (Tensor::Flat(x), Tensor::Flat(y)) => Tensor::Flat(Zip::from(x).and(y).map_collect(|p, q| p + q)),
            _ => panic!("residual sum of a map and a vector: shape inference should have rejected this"),
        }
    }
}

impl LayerOp for Invalid {
    fn keyword(&self) -> &'static str {
        "invalid"
    }

    fn infer(&self, _: &Node, _: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        Err(None)
    }

    structural!();

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Alone
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Other, in_place: false, view: false, activation: None, factor: false }
    }

    fn eval(&self, _: &[&Tensor], _: &[&[f32]]) -> Tensor {
        panic!("the interpreter was given a network that failed to check")
    }
}
