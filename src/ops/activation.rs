//! Elementwise activations: `relu`, `relu6`, `sigmoid`, `silu` (`swish`), `hardswish`,
//! `hardsigmoid`, `gelu` (`gelu tanh` for the tanh approximation), `tanh`, `leaky_relu A`.
//! Each works on maps and vectors alike, in place when run on its own, and fuses into a
//! convolution's epilogue.

use super::args::{OpSpec, Parsed, Takes, float, opt};
use super::support::one;
use super::{Category, Fusion, LayerOp, Op, Traits, Window};
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;

/// A catalogue entry for an activation without arguments.
const fn plain(name: &'static str, build: fn(&Parsed, &mut Vec<Diagnostic>) -> Option<Op>) -> OpSpec {
    OpSpec { name, positional: &[], required: 0, options: &[], example: name, build }
}

pub(super) const SPECS: &[OpSpec] = &[
    plain("relu", |_, _| Some(Op::Activation(Activation::Relu))),
    plain("relu6", |_, _| Some(Op::Activation(Activation::Relu6))),
    plain("sigmoid", |_, _| Some(Op::Activation(Activation::Sigmoid))),
    plain("silu", |_, _| Some(Op::Activation(Activation::Silu))),
    plain("swish", |_, _| Some(Op::Activation(Activation::Silu))),
    plain("hardswish", |_, _| Some(Op::Activation(Activation::HardSwish))),
    plain("hardsigmoid", |_, _| Some(Op::Activation(Activation::HardSigmoid))),
    OpSpec {
        name: "gelu",
        positional: &[],
        required: 0,
        options: &[opt("tanh", Takes::Flag)],
        example: "gelu tanh",
        build: |p, _| Some(Op::Activation(if p.flag("tanh") { Activation::GeluTanh } else { Activation::Gelu })),
    },
    plain("tanh", |_, _| Some(Op::Activation(Activation::Tanh))),
    OpSpec {
        name: "leaky_relu",
        positional: &[("negative slope", Takes::Float)],
        required: 0,
        options: &[],
        example: "leaky_relu 0.1",
        build: |p, errors| {
            // PyTorch's default slope.
            let slope = match p.pos(0) {
                Some(v) => float("negative slope", "leaky_relu", v, errors)?,
                None => 0.01,
            };
            Some(Op::Activation(Activation::LeakyRelu(slope as f32)))
        },
    },
];

/// An elementwise non-linearity, with PyTorch's definition.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Activation {
    /// `max(x, 0)`; a NaN input gives 0 (Rust's `f32::max`, x86 `maxps` with the value first).
    Relu,
    /// `min(max(x, 0), 6)` (MobileNetV2).
    Relu6,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `x * sigmoid(x)` (EfficientNet's swish).
    Silu,
    /// `x * relu6(x + 3) / 6` (MobileNetV3).
    HardSwish,
    /// `relu6(x + 3) / 6`.
    HardSigmoid,
    /// `x/2 * (1 + erf(x / sqrt 2))`, PyTorch's default GELU.
    Gelu,
    /// `x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, `GELU(approximate="tanh")`.
    GeluTanh,
    Tanh,
    /// `x` for `x >= 0`, else `slope * x`.
    LeakyRelu(f32),
}

/// The error function, to double precision: a Taylor series near 0 and a continued fraction
/// for erfc beyond (the specification; the JIT uses a cheaper approximation within 2e-7).
pub(crate) fn erf(x: f64) -> f64 {
    let a = x.abs();
    let value = if a < 2.5 {
        // erf(x) = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum, x2) = (a, a, a * a);
        for n in 1..60 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if a < 6.0 {
        // erfc(x) = e^(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    } else {
        1.0
    };
    value.copysign(x)
}

impl Activation {
    /// The function on one value: the specification the JIT's epilogues are tested against.
    pub(crate) fn apply(self, x: f32) -> f32 {
        let relu6 = |v: f32| v.max(0.0).min(6.0);
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => relu6(x),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::HardSwish => x * relu6(x + 3.0) / 6.0,
            Activation::HardSigmoid => relu6(x + 3.0) / 6.0,
            Activation::Gelu => (0.5 * x as f64 * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2))) as f32,
            Activation::GeluTanh => {
                let x = x as f64;
                let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                (0.5 * x * (1.0 + inner.tanh())) as f32
            }
            Activation::Tanh => x.tanh(),
            // Written as max and min, as the JIT computes it, so NaN gives 0 on both.
            Activation::LeakyRelu(slope) => x.max(0.0) + slope * x.min(0.0),
        }
    }

    /// Whether applying it twice is applying it once.
    pub(crate) fn idempotent(self) -> bool {
        matches!(self, Activation::Relu | Activation::Relu6)
    }
}

impl LayerOp for Activation {
    fn keyword(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Sigmoid => "sigmoid",
            Activation::Silu => "silu",
            Activation::HardSwish => "hardswish",
            Activation::HardSigmoid => "hardsigmoid",
            Activation::Gelu | Activation::GeluTanh => "gelu",
            Activation::Tanh => "tanh",
            Activation::LeakyRelu(_) => "leaky_relu",
        }
    }

    fn describe(&self) -> String {
        match self {
            Activation::GeluTanh => "gelu tanh".into(),
            Activation::LeakyRelu(s) => format!("leaky_relu {s}"),
            other => other.keyword().into(),
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
        Traits { category: Category::Other, in_place: true, view: false, activation: Some(*self), factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        let f = *self;
        inputs[0].mapv(move |v| f.apply(v))
    }
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_matches_reference_values() {
        // Abramowitz and Stegun, Table 7.1, and erf(3) = 0.9999779095030014.
        for (x, want) in
            [(0.5, 0.5204998778130465), (1.0, 0.8427007929497149), (2.0, 0.9953222650189527), (3.0, 0.9999779095030014)]
        {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-13);
        }
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(10.0), 1.0);
    }
}
