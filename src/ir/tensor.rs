//! Batched tensors as the interpreter computes them and the backends return them.

use ndarray::{Array2, Array4};

/// A batch of feature maps (N, C, H, W) or of vectors (N, F).
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// Feature maps, NCHW.
    Map(Array4<f32>),
    /// Vectors, one row per batch element.
    Flat(Array2<f32>),
}

impl Tensor {
    /// The batch size.
    pub fn batch(&self) -> usize {
        match self {
            Tensor::Map(a) => a.dim().0,
            Tensor::Flat(a) => a.dim().0,
        }
    }

    /// The shape of one batch element.
    pub(crate) fn shape(&self) -> crate::ir::geometry::Shape {
        use crate::ir::geometry::Shape;
        match self {
            Tensor::Map(a) => {
                let (_, c, h, w) = a.dim();
                Shape::Map { c: c as u64, h: h as u64, w: w as u64 }
            }
            Tensor::Flat(a) => Shape::Flat { n: a.dim().1 as u64 },
        }
    }

    /// Each image's values in C,H,W order: one row per batch element.
    pub fn to_rows(&self) -> Array2<f32> {
        match self {
            Tensor::Flat(a) => a.clone(),
            Tensor::Map(a) => {
                let (n, c, h, w) = a.dim();
                a.as_standard_layout().to_owned().into_shape_with_order((n, c * h * w)).expect("contiguous reshape")
            }
        }
    }

    /// The feature maps; `op` names the caller for the message of the bug this would be.
    pub(crate) fn map(&self, op: &str) -> &Array4<f32> {
        match self {
            Tensor::Map(a) => a,
            Tensor::Flat(_) => {
                panic!("{op} on a flat tensor: shape inference should have rejected this")
            }
        }
    }

    /// The vectors; `op` names the caller for the message of the bug this would be.
    pub(crate) fn flat(&self, op: &str) -> &Array2<f32> {
        match self {
            Tensor::Flat(a) => a,
            Tensor::Map(_) => panic!("{op} on a feature map: shape inference should have rejected this"),
        }
    }

    /// Applies `f` to every value.
    pub(crate) fn mapv(&self, f: impl Fn(f32) -> f32) -> Tensor {
        match self {
            Tensor::Map(a) => Tensor::Map(a.mapv(f)),
            Tensor::Flat(a) => Tensor::Flat(a.mapv(f)),
        }
    }
}
