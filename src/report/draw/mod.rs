//! `cnnc graph`: the network as a picture (SVG, written directly) or as Graphviz DOT.
//!
//! The layout follows how the network was written (`graph::Structure`), which is series-parallel:
//! a sequence stacks its items; branches stand side by side above their concatenation; a
//! residual body stands beside its shortcut (or an identity lane) above the sum; stages and
//! block instances are framed clusters. Every item gets a rectangle of its own, so nothing
//! overlaps by construction. Edges leave a box's bottom, turn only in the gap bands between
//! rows (which no box occupies), and enter the next box's top; each is labelled with the shape
//! of the tensor it carries.

mod dot;
mod layout;
mod svg;

pub use dot::graph_dot;
pub use layout::layout_graph;
pub use svg::graph_svg;

use crate::ir::graph::{NodeId, Structure};
use crate::report::table::thousands;

/// Abbreviates large counts: 1.85G, 590.1K.
pub(super) fn short(n: u64) -> String {
    match n {
        0..=9_999 => thousands(n),
        10_000..=9_999_999 => format!("{:.1}K", n as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}G", n as f64 / 1e9),
    }
}

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A drawn box: a layer, or a collapsed block instance.
#[derive(Clone, Debug)]
pub struct PlacedBox {
    /// The layer (or collapsed instance) name.
    pub id: String,
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
    /// Its text, a line each.
    pub lines: Vec<String>,
    pub(super) class: &'static str,
}

#[derive(Clone, Debug)]
pub(super) struct Cluster {
    pub(super) x: f64,
    pub(super) y: f64,
    pub(super) w: f64,
    pub(super) h: f64,
    pub(super) label: String,
    pub(super) stage: bool,
}

/// A drawn edge: a polyline from a box's bottom to the next box.
#[derive(Clone, Debug)]
pub struct Edge {
    /// Its points, first to last.
    pub points: Vec<(f64, f64)>,
    /// The shape of the tensor it carries.
    pub label: String,
}

/// A laid-out picture of a network.
pub struct Drawing {
    /// Every box.
    pub boxes: Vec<PlacedBox>,
    pub(super) clusters: Vec<Cluster>,
    /// Every edge.
    pub edges: Vec<Edge>,
    /// Width in pixels.
    pub width: f64,
    /// Height in pixels.
    pub height: f64,
    pub(super) title: String,
}

/// The nodes a structure contains.
pub(super) fn nodes_in(items: &[Structure], out: &mut Vec<NodeId>) {
    for s in items {
        match s {
            Structure::Node(n) => out.push(*n),
            Structure::Group { items, .. } => nodes_in(items, out),
            Structure::Branches { branches, join } => {
                for b in branches {
                    nodes_in(b, out);
                }
                out.push(*join);
            }
            Structure::Residual { body, shortcut, join } => {
                nodes_in(body, out);
                nodes_in(shortcut, out);
                out.push(*join);
            }
            Structure::Gate { body, join } => {
                nodes_in(body, out);
                out.push(*join);
            }
        }
    }
}
