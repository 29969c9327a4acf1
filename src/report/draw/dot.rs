//! Graphviz DOT of a network, for Graphviz's own layout.

use super::{nodes_in, short};
use crate::analysis::check::Checked;
use crate::ir::graph::{GroupKind, Structure};
use std::fmt::Write;

/// Graphviz DOT, for Graphviz's own layout: stages as clusters, edges labelled with shapes,
/// block instances as single nodes with `collapse`.
pub fn graph_dot(c: &Checked, collapse: bool) -> String {
    let net = &c.network;
    // With collapse, every node inside an instance is drawn as the instance.
    let mut rep: Vec<String> = net.nodes.iter().map(|n| n.name.clone()).collect();
    let mut body = String::new();
    dot_items(&net.structure, c, collapse, &mut rep, &mut body, 1);
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f4f6f9\", fontname=\"monospace\", fontsize=10];\n  edge [fontname=\"monospace\", fontsize=9];\n",
        net.name
    );
    out += &body;
    for (id, n) in net.nodes.iter().enumerate() {
        for &i in &n.inputs {
            if rep[i] != rep[id] {
                let _ = writeln!(out, "  \"{}\" -> \"{}\" [label=\"{}\"];", rep[i], rep[id], c.shapes[i]);
            }
        }
    }
    out += "}\n";
    out
}

fn dot_items(items: &[Structure], c: &Checked, collapse: bool, rep: &mut Vec<String>, out: &mut String, depth: usize) {
    let indent = "  ".repeat(depth);
    for s in items {
        match s {
            Structure::Node(n) => {
                let node = &c.network.nodes[*n];
                let cost = &c.costs[*n];
                let _ = writeln!(
                    out,
                    "{indent}\"{}\" [label=\"{}\\n{}\\nparams {} MACs {}\"];",
                    node.name,
                    node.name,
                    node.op.describe(),
                    short(cost.params()),
                    short(cost.macs)
                );
            }
            Structure::Group { name, kind: GroupKind::Instance(block), items } if collapse => {
                let mut nodes = Vec::new();
                nodes_in(items, &mut nodes);
                for &n in &nodes {
                    rep[n] = name.clone();
                }
                let params: u64 = nodes.iter().map(|&n| c.costs[n].params()).sum();
                let macs: u64 = nodes.iter().map(|&n| c.costs[n].macs).sum();
                let _ = writeln!(
                    out,
                    "{indent}\"{name}\" [label=\"{name}\\n{block}\\nparams {} MACs {}\", fillcolor=\"#e9e2f8\"];",
                    short(params),
                    short(macs)
                );
            }
            Structure::Group { name, kind: GroupKind::Stage, items } => {
                let _ = writeln!(out, "{indent}subgraph \"cluster_{name}\" {{ label=\"stage {name}\";");
                dot_items(items, c, collapse, rep, out, depth + 1);
                let _ = writeln!(out, "{indent}}}");
            }
            Structure::Group { items, .. } => dot_items(items, c, collapse, rep, out, depth),
            Structure::Branches { branches, join } => {
                for b in branches {
                    dot_items(b, c, collapse, rep, out, depth);
                }
                dot_items(&[Structure::Node(*join)], c, collapse, rep, out, depth);
            }
            Structure::Residual { body, shortcut, join } => {
                dot_items(body, c, collapse, rep, out, depth);
                dot_items(shortcut, c, collapse, rep, out, depth);
                dot_items(&[Structure::Node(*join)], c, collapse, rep, out, depth);
            }
            Structure::Gate { body, join } => {
                dot_items(body, c, collapse, rep, out, depth);
                dot_items(&[Structure::Node(*join)], c, collapse, rep, out, depth);
            }
        }
    }
}
