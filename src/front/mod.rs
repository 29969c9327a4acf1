//! The front end: source text to a layer graph. `parse` reads the pest grammar into an owned
//! syntax tree (`ast`) with spans; `elaborate` expands blocks, repetitions and structure into
//! named layers; `expr` evaluates block arithmetic; `fmt` prints the canonical layout.

pub(crate) mod ast;
pub(crate) mod elaborate;
pub(crate) mod expr;
pub(crate) mod fmt;
pub(crate) mod parse;
