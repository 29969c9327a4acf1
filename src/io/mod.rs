//! Inputs and outputs of a run: weights (safetensors), images and `.npy` tensors, and the
//! `cnnc run` pipeline as a library.

pub(crate) mod budget;
pub(crate) mod files;
pub(crate) mod input;
pub(crate) mod jpeg;
pub(crate) mod run;
pub(crate) mod weights;
