//! `cnnc graph`: the network as a picture (SVG, written directly) or as Graphviz DOT.
//!
//! The layout follows how the network was written (`graph::Structure`), which is series-parallel:
//! a sequence stacks its items; branches stand side by side above their concatenation; a
//! residual body stands beside its shortcut (or an identity lane) above the sum; stages and
//! block instances are framed clusters. Every item gets a rectangle of its own, so nothing
//! overlaps by construction. Edges leave a box's bottom, turn only in the gap bands between
//! rows (which no box occupies), and enter the next box's top; each is labelled with the shape
//! of the tensor it carries.

use crate::check::Checked;
use crate::geometry::Shape;
use crate::graph::{GroupKind, NodeId, Op, Structure};
use crate::report::thousands;
use std::fmt::Write;

const NODE_H: f64 = 58.0;
const JOIN_H: f64 = 40.0;
const GAP: f64 = 46.0;
const HGAP: f64 = 28.0;
const PAD: f64 = 14.0;
const LABEL_H: f64 = 22.0;
const LANE: f64 = 80.0;
const CHAR_W: f64 = 7.4;

/// Abbreviates large counts: 1.85G, 590.1K.
fn short(n: u64) -> String {
    match n {
        0..=9_999 => thousands(n),
        10_000..=9_999_999 => format!("{:.1}K", n as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}G", n as f64 / 1e9),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A drawn box: a layer, or a collapsed block instance.
#[derive(Clone, Debug)]
pub struct PlacedBox {
    pub id: String,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub lines: Vec<String>,
    class: &'static str,
}

#[derive(Clone, Debug)]
struct Cluster {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    label: String,
    stage: bool,
}

#[derive(Clone, Debug)]
pub struct Edge {
    pub points: Vec<(f64, f64)>,
    pub label: String,
}

pub struct Drawing {
    pub boxes: Vec<PlacedBox>,
    clusters: Vec<Cluster>,
    pub edges: Vec<Edge>,
    pub width: f64,
    pub height: f64,
    title: String,
}

/// A laid-out item: its size, and the boxes, clusters and edges inside it relative to its
/// top-left corner. `entries` are where incoming edges attach (several for branches and
/// residuals, none for an empty sequence); `exit` is the node whose result leaves at the
/// bottom, with the point it leaves from.
struct Block {
    w: f64,
    h: f64,
    entries: Vec<(f64, f64)>,
    exit: Option<(NodeId, f64, f64)>,
    boxes: Vec<PlacedBox>,
    clusters: Vec<Cluster>,
    edges: Vec<Edge>,
}

impl Block {
    fn empty() -> Block {
        Block {
            w: 0.0,
            h: 0.0,
            entries: Vec::new(),
            exit: None,
            boxes: Vec::new(),
            clusters: Vec::new(),
            edges: Vec::new(),
        }
    }

    fn shift(&mut self, dx: f64, dy: f64) {
        for b in &mut self.boxes {
            b.x += dx;
            b.y += dy;
        }
        for c in &mut self.clusters {
            c.x += dx;
            c.y += dy;
        }
        for e in &mut self.edges {
            for p in &mut e.points {
                p.0 += dx;
                p.1 += dy;
            }
        }
        for e in &mut self.entries {
            e.0 += dx;
            e.1 += dy;
        }
        self.exit = self.exit.map(|(n, x, y)| (n, x + dx, y + dy));
    }

    fn absorb(&mut self, other: Block) {
        self.boxes.extend(other.boxes);
        self.clusters.extend(other.clusters);
        self.edges.extend(other.edges);
    }
}

/// The nodes a structure contains.
fn nodes_in(items: &[Structure], out: &mut Vec<NodeId>) {
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
        }
    }
}

struct Layout<'a> {
    c: &'a Checked,
    collapse: bool,
    node_w: f64,
}

impl Layout<'_> {
    fn shape(&self, n: NodeId) -> Shape {
        self.c.shapes[n]
    }

    fn node(&self, n: NodeId) -> Block {
        let node = &self.c.network.nodes[n];
        let cost = &self.c.costs[n];
        let (class, join) = match node.op {
            Op::Input => ("input", false),
            Op::Conv(_) => ("conv", false),
            Op::Fc(_) => ("fc", false),
            Op::Pool(_) | Op::AdaptiveAvgPool { .. } | Op::Gap => ("pool", false),
            Op::Concat | Op::Add => ("join", true),
            _ => ("other", false),
        };
        let lines = if join {
            vec![
                format!("{} {}", if node.op == Op::Add { "+" } else { "concat" }, node.name),
                self.shape(n).to_string(),
            ]
        } else if node.op == Op::Input {
            vec![node.name.clone(), format!("{}", self.shape(n))]
        } else if cost.params() > 0 || cost.macs > 0 {
            vec![
                node.name.clone(),
                node.op.describe(),
                format!("params {} · MACs {}", short(cost.params()), short(cost.macs)),
            ]
        } else {
            vec![node.name.clone(), node.op.describe()]
        };
        self.card(node.name.clone(), lines, class, n, if join { JOIN_H } else { NODE_H })
    }

    fn card(&self, id: String, lines: Vec<String>, class: &'static str, exit: NodeId, h: f64) -> Block {
        let w = self.node_w;
        Block {
            w,
            h,
            entries: vec![(w / 2.0, 0.0)],
            exit: Some((exit, w / 2.0, h)),
            boxes: vec![PlacedBox { id, x: 0.0, y: 0.0, w, h, lines, class }],
            clusters: Vec::new(),
            edges: Vec::new(),
        }
    }

    /// An edge from (x1, y1) down to (x2, y2), turning at height `band`.
    fn edge(&self, from: Option<NodeId>, (x1, y1): (f64, f64), (x2, y2): (f64, f64), band: f64) -> Edge {
        let points = if (x1 - x2).abs() < 0.5 {
            vec![(x1, y1), (x2, y2)]
        } else {
            vec![(x1, y1), (x1, band), (x2, band), (x2, y2)]
        };
        Edge { points, label: from.map_or(String::new(), |n| self.shape(n).to_string()) }
    }

    fn seq(&self, items: &[Structure]) -> Block {
        let blocks: Vec<Block> = items.iter().map(|s| self.item(s)).collect();
        let w = blocks.iter().map(|b| b.w).fold(0.0, f64::max);
        let mut out = Block::empty();
        out.w = w;
        let mut y = 0.0;
        let mut prev_exit: Option<(NodeId, f64, f64)> = None;
        for (i, mut b) in blocks.into_iter().enumerate() {
            if i > 0 {
                y += GAP;
            }
            b.shift((w - b.w) / 2.0, y);
            match prev_exit {
                // Fan out to every entry; only the first edge carries the shape label.
                Some((n, x1, y1)) => {
                    for (k, &entry) in b.entries.iter().enumerate() {
                        let mut e = self.edge(Some(n), (x1, y1), entry, y - GAP / 2.0);
                        if k > 0 {
                            e.label.clear();
                        }
                        out.edges.push(e);
                    }
                }
                None if out.entries.is_empty() => out.entries = b.entries.clone(),
                None => {}
            }
            if b.exit.is_some() {
                prev_exit = b.exit;
                out.exit = b.exit;
            }
            y += b.h;
            out.absorb(b);
        }
        out.h = y;
        out
    }

    fn item(&self, s: &Structure) -> Block {
        match s {
            Structure::Node(n) => self.node(*n),
            Structure::Group { name, kind: GroupKind::Instance(block), items } if self.collapse => {
                let mut nodes = Vec::new();
                nodes_in(items, &mut nodes);
                let params: u64 = nodes.iter().map(|&n| self.c.costs[n].params()).sum();
                let macs: u64 = nodes.iter().map(|&n| self.c.costs[n].macs).sum();
                // The instance's result leaves from its last node (its join, for branches).
                let exit = nodes.last().copied().unwrap_or(0);
                let lines = vec![
                    name.clone(),
                    format!("{block} ({} layers)", nodes.len()),
                    format!("params {} · MACs {}", short(params), short(macs)),
                ];
                self.card(name.clone(), lines, "block", exit, NODE_H)
            }
            Structure::Group { name, kind, items } => {
                let mut inner = self.seq(items);
                inner.shift(PAD, PAD + LABEL_H);
                let (w, h) = (inner.w + 2.0 * PAD, inner.h + 2.0 * PAD + LABEL_H);
                let label = match kind {
                    GroupKind::Stage => format!("stage {name}"),
                    GroupKind::Instance(b) => format!("{name}: {b}"),
                    GroupKind::Group => name.clone(),
                };
                inner.clusters.insert(0, Cluster { x: 0.0, y: 0.0, w, h, label, stage: *kind == GroupKind::Stage });
                inner.w = w;
                inner.h = h;
                inner
            }
            Structure::Branches { branches, join } => {
                let mut cols: Vec<Block> = branches.iter().map(|b| self.seq(b)).collect();
                for c in &mut cols {
                    // An identity branch still gets a column for its edge.
                    c.w = c.w.max(if c.boxes.is_empty() { LANE } else { 0.0 });
                }
                let total: f64 = cols.iter().map(|c| c.w).sum::<f64>() + HGAP * cols.len().saturating_sub(1) as f64;
                let w = total.max(self.node_w);
                let jy = cols.iter().map(|c| c.h).fold(0.0, f64::max) + GAP;
                let (jx, band) = (w / 2.0, jy - GAP / 2.0);
                let mut out = Block::empty();
                out.w = w;
                let mut x = (w - total) / 2.0;
                for mut c in cols {
                    let cw = c.w;
                    c.shift(x, 0.0);
                    match c.exit {
                        Some((n, ex, ey)) => {
                            out.entries.extend(c.entries.iter().copied());
                            out.edges.push(self.edge(Some(n), (ex, ey), (jx, jy), band));
                        }
                        None => {
                            let cx = x + cw / 2.0;
                            out.entries.push((cx, 0.0));
                            out.edges.push(self.edge(None, (cx, 0.0), (jx, jy), band));
                        }
                    }
                    out.absorb(c);
                    x += cw + HGAP;
                }
                let mut j = self.node(*join);
                j.shift((w - j.w) / 2.0, jy);
                out.exit = j.exit;
                out.h = jy + j.h;
                out.absorb(j);
                out
            }
            Structure::Residual { body, shortcut, join } => {
                let b = self.seq(body);
                let mut sc = self.seq(shortcut);
                let identity = shortcut.is_empty();
                let sw = if identity { LANE } else { sc.w };
                let jy = b.h.max(sc.h) + GAP;
                let mut out = Block::empty();
                out.w = b.w + HGAP + sw;
                sc.shift(b.w + HGAP, 0.0);
                let mut j = self.node(*join);
                let jx = b.w / 2.0;
                j.shift(jx - j.w / 2.0, jy);
                // The shortcut arrives at the sum's right side.
                let side = (jx + j.w / 2.0, jy + j.h / 2.0);
                if let Some((n, ex, ey)) = b.exit {
                    out.edges.push(self.edge(Some(n), (ex, ey), (jx, jy), jy - GAP / 2.0));
                }
                out.entries.extend(b.entries.iter().copied());
                if identity {
                    let lane_x = b.w + HGAP + sw / 2.0;
                    out.entries.push((lane_x, 0.0));
                    out.edges
                        .push(Edge { points: vec![(lane_x, 0.0), (lane_x, side.1), side], label: "identity".into() });
                } else {
                    out.entries.extend(sc.entries.iter().copied());
                    if let Some((n, ex, ey)) = sc.exit {
                        out.edges.push(Edge {
                            points: vec![(ex, ey), (ex, side.1), side],
                            label: self.shape(n).to_string(),
                        });
                    }
                }
                out.exit = j.exit;
                out.h = jy + j.h;
                out.absorb(b);
                out.absorb(sc);
                out.absorb(j);
                out
            }
        }
    }
}

pub fn layout(c: &Checked, collapse: bool) -> Drawing {
    let longest = c
        .network
        .nodes
        .iter()
        .zip(&c.costs)
        .map(|(n, cost)| {
            let params = format!("params {} · MACs {}", short(cost.params()), short(cost.macs));
            n.name.len().max(n.op.describe().len()).max(params.chars().count()).max(12)
        })
        .max()
        .unwrap_or(20);
    let l = Layout { c, collapse, node_w: (longest as f64 * CHAR_W + 24.0).max(150.0) };
    let mut d = l.seq(&c.network.structure);
    let (margin, title_h) = (24.0, 34.0);
    d.shift(margin, margin + title_h);
    let title = format!(
        "{}  ·  input {}  ·  {} params  ·  {} MACs",
        c.network.name,
        c.input,
        thousands(c.totals.params),
        thousands(c.totals.macs)
    );
    // The title is set in 15px bold: about 9px per character.
    let title_w = title.chars().count() as f64 * 9.2 + 2.0 * margin;
    Drawing {
        boxes: d.boxes,
        clusters: d.clusters,
        edges: d.edges,
        width: (d.w + 2.0 * margin).max(title_w),
        height: d.h + 2.0 * margin + title_h,
        title,
    }
}

const STYLE: &str = concat!(
    "<style>.cluster rect{fill:#fafbfc;stroke:#b9c1cc;stroke-dasharray:4 3}",
    ".cluster.stage rect{fill:#f3f6fa;stroke:#8a99ad;stroke-dasharray:none}",
    ".cluster-label{fill:#4a5a70;font-weight:bold;paint-order:stroke;stroke:#fafbfc;stroke-width:5px}",
    ".cluster-label.stage{stroke:#f3f6fa}.node rect{stroke:#3d4f66;stroke-width:1.2}",
    ".node text{fill:#1d2633}.conv rect{fill:#dcebfa}.fc rect{fill:#fde8cf}.pool rect{fill:#dff3e2}",
    ".join rect{fill:#fff6c7}.input rect{fill:#ececec}.block rect{fill:#e9e2f8}.other rect{fill:#f4f4f4}",
    ".edge path{fill:none;stroke:#556;stroke-width:1.2;marker-end:url(#arrow)}",
    ".edge text{fill:#6b7686;font-size:10px}</style>\n"
);

pub fn svg(d: &Drawing) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">"#,
        w = d.width,
        h = d.height
    );
    s.push_str(concat!(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" ",
        "orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#556\"/></marker></defs>\n"
    ));
    s.push_str(STYLE);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="24" y="32" font-size="15" font-weight="bold">{}</text>"#, escape(&d.title));
    for c in &d.clusters {
        let _ = writeln!(
            s,
            r#"<g class="cluster{}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="8"/></g>"#,
            if c.stage { " stage" } else { "" },
            c.x,
            c.y,
            c.w,
            c.h
        );
    }
    for e in &d.edges {
        let path: Vec<String> = e
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}{:.1} {:.1}", if i == 0 { "M" } else { "L" }, p.0, p.1))
            .collect();
        let _ = write!(s, r#"<g class="edge"><path d="{}"/>"#, path.join(" "));
        if let (false, Some(&(x, y))) = (e.label.is_empty(), e.points.first()) {
            // Just below the source, beside the edge: edges converging on a join leave from
            // different boxes, so their labels never share a place.
            let _ = write!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, x + 6.0, y + 14.0, escape(&e.label));
        }
        s.push_str("</g>\n");
    }
    // Cluster labels go over the edges, with a halo, so a line passing under one stays readable.
    for c in &d.clusters {
        let _ = writeln!(
            s,
            r#"<text class="cluster-label{}" x="{:.1}" y="{:.1}">{}</text>"#,
            if c.stage { " stage" } else { "" },
            c.x + 10.0,
            c.y + 16.0,
            escape(&c.label)
        );
    }
    for b in &d.boxes {
        let _ = write!(
            s,
            r#"<g class="node {}" id="node-{}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="5"/>"#,
            b.class,
            escape(&b.id),
            b.x,
            b.y,
            b.w,
            b.h
        );
        let line_h = 15.0;
        let top = b.y + (b.h - line_h * b.lines.len() as f64) / 2.0 + 11.0;
        for (i, line) in b.lines.iter().enumerate() {
            let weight = if i == 0 { r#" font-weight="bold""# } else { "" };
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}"{weight}>{}</text>"#,
                b.x + 10.0,
                top + i as f64 * line_h,
                escape(line)
            );
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

/// Graphviz DOT, for Graphviz's own layout: stages as clusters, edges labelled with shapes,
/// block instances as single nodes with `collapse`.
pub fn dot(c: &Checked, collapse: bool) -> String {
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
        }
    }
}
