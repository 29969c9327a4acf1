//! Elementwise activations: `relu`. Each works on maps and vectors alike, in place when run on
//! its own, and fuses into a convolution's epilogue.

use super::args::OpSpec;
use super::support::one;
use super::{Category, Fusion, LayerOp, Op, Traits, Window};
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;

pub(super) const SPECS: &[OpSpec] = &[OpSpec {
    name: "relu",
    positional: &[],
    required: 0,
    options: &[],
    example: "relu",
    build: |_, _| Some(Op::Activation(Activation::Relu)),
}];

/// An elementwise non-linearity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Activation {
    /// `max(x, 0)`; a NaN input gives 0 (Rust's `f32::max`, x86 `maxps` with the value first).
    Relu,
}

impl Activation {
    /// Whether applying it twice is applying it once.
    pub(crate) fn idempotent(self) -> bool {
        match self {
            Activation::Relu => true,
        }
    }

    /// The function on one value: the specification the JIT's epilogues are tested against.
    pub(crate) fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
        }
    }
}

impl LayerOp for Activation {
    fn keyword(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
        }
    }

    fn infer(&self, _: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        Ok(one(inputs, self.keyword()))
    }

    weightless!();

    fn window(&self, _: &[Shape]) -> Window {
        Window::Point
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Activation
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Other, in_place: true, view: false, activation: Some(*self) }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        let f = *self;
        inputs[0].mapv(move |v| f.apply(v))
    }
}
