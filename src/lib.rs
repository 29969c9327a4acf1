//! cnnc: a compiler for a compact language that describes convolutional networks.
//!
//! The folders are the pipeline (ARCHITECTURE.md draws it): `front` (source to layer graph),
//! `ops` (what each layer kind is), `ir` (the graph and shape arithmetic), `analysis` (shapes,
//! costs, memory plan, lints, diagnostics), `backend` (the interpreter and the JIT), `io`
//! (weights, inputs, runs) and `report` (tables, pictures, comparisons, timings). Modules are
//! private; this root re-exports what the command line and other users of the library need.

#![warn(missing_docs)]

mod analysis;
mod backend;
mod front;
mod io;
mod ir;
mod ops;
mod parallel;
mod report;

#[doc(hidden)]
pub mod fuzzing;

pub use analysis::check::{CheckReport, Checked, check_source, parse_input_dims};
pub use analysis::codes::Code;
pub use analysis::cost::{KindTotals, LayerCost, Totals};
pub use analysis::diag::{Diagnostic, LineIndex, Severity};
pub use analysis::params::{ParamSpec, param_specs};
pub use backend::interp::forward;
pub use backend::jit::{Cores, JitError, JitModel, JitOptions, JitOutputs, MAX_THREADS, StepInfo};
pub use front::ast::Span;
pub use front::fmt::format_source;
pub use front::parse::{MAX_NESTING, MAX_SOURCE_BYTES};
pub use io::budget::{
    DEFAULT_MAX_PIXELS, DEFAULT_MEMORY_LIMIT_BYTES, Limits, MemoryNeed, Usage, check_budget, default_memory_limit,
    memory_need, parse_size,
};
pub use io::files::{WriteError, check_writable, read_limited, write_atomic};
pub use io::input::{InputError, load_image_bytes, load_input};
pub use io::run::{
    Backend, MAX_LABELS_BYTES, Model, Prediction, RunError, Runner, WeightsSource, default_threads, forward_output,
    load_model, npy_input_override, read_labels, resolve_weights, usage,
};
pub use io::weights::{
    Loaded, Weights, WeightsError, load_safetensors, random_weights, safetensors_bytes, save_safetensors,
};
pub use ir::geometry::{GeomError, MAX_ELEMENTS, Shape, conv_out_len, pool_out_len};
pub use ir::graph::{DesignRule, GroupKind, Input, Network, Node, NodeId, Origin, Structure};
pub use ir::tensor::Tensor;
pub use ops::ParamKind;
pub use report::bench::{BenchOptions, BenchReport, LayerTime, bench};
pub use report::compare::{Summary, comparison_json, render_comparison, summarize};
pub use report::draw::{Drawing, Edge, PlacedBox, graph_dot, graph_svg, layout_graph};
pub use report::filters::{DEAD_FRACTION, Filters, Picture, dead_filters, find_conv, render_filters};
pub use report::table::{human_bytes, render_table, render_totals, report_json, thousands};

/// The JIT's intermediate representation after a pass, as `cnnc compile --dump` prints it:
/// `lowered` (scalar loop nests), `scheduled` (register tiles, vectors, tasks) or `clif`.
pub fn dump_jit(net: &Network, shapes: &[Shape], weights: Weights, pass: &str) -> Result<String, JitError> {
    backend::jit::dump(net, shapes, weights, pass)
}
