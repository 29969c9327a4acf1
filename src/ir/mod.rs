//! The intermediate representation shared by the analyses and the backends: the layer graph,
//! shape arithmetic and batched tensors.

pub(crate) mod geometry;
pub(crate) mod graph;
pub(crate) mod tensor;
