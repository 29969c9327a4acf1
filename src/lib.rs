//! cnnc: a compiler for a compact language that describes convolutional networks.
//!
//! The pipeline is described in ARCHITECTURE.md: parse -> elaborate -> infer -> cost/lint, then
//! (for running) weights -> interpreter or JIT.

pub mod ast;
pub mod bench;
pub mod check;
pub mod compare;
pub mod cost;
pub mod diag;
pub mod draw;
pub mod elaborate;
pub mod expr;
pub mod fmt;
pub mod fusion;
pub mod geometry;
pub mod graph;
pub mod infer;
pub mod input;
pub mod interp;
pub mod jit;
pub mod kernels;
pub mod layer_args;
pub mod lint;
pub mod memplan;
pub mod params;
pub mod parse;
pub mod report;
pub mod run;
pub mod weights;
