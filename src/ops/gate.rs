//! `gate { ... }`: the input times a per-channel (C x 1 x 1) tensor its body computes from it,
//! the squeeze-excitation of MobileNetV3, EfficientNet and RegNetY. The product is this op; the
//! body is ordinary layers, expanded by the elaborator.

use super::support::needs_map;
use super::{Category, Fusion, LayerOp, Traits, Window};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::Zip;

/// The gate's product: inputs are [x, gate], the gate `C x 1 x 1`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct GateMul;

impl LayerOp for GateMul {
    fn keyword(&self) -> &'static str {
        "gate"
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        let (x, g) = (inputs[0], inputs[1]);
        let (c, _, _) = needs_map(at, x)?;
        if g == (Shape::Map { c, h: 1, w: 1 }) {
            return Ok(x);
        }
        let help = match g {
            Shape::Map { c: gc, .. } if gc != c => {
                format!("end the body with a layer of {c} channels (`conv 1x1 {c}`)")
            }
            Shape::Map { .. } => "start the body with `gap`, which pools each channel to one value".to_string(),
            Shape::Flat { .. } => format!("keep the body spatial: `gap; conv 1x1 ...` gives {c}x1x1"),
        };
        Err(Some(
            Diagnostic::error(
                Code::GateShape,
                at.origin.span,
                format!("a gate's body must give one value per channel, {c}x1x1, but it gives {g}"),
            )
            .with_label(format!("the gate multiplies a {x} input"))
            .with_help(help),
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
        Traits { category: Category::Join, in_place: false, view: false, activation: None, factor: true }
    }

    /// `x[n, c, y, x] * g[n, c, 0, 0]`.
    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        let (x, g) = (inputs[0].map("gate"), inputs[1].map("gate"));
        let g = g.broadcast(x.dim()).expect("gate shapes were checked");
        Tensor::Map(Zip::from(x).and(&g).map_collect(|a, b| a * b))
    }
}
