//! The series-parallel layout: each item of `graph::Structure` becomes a block of its own size,
//! stacked, placed side by side or framed, with edges that turn only in the gaps between rows.

use super::{Cluster, Drawing, Edge, PlacedBox, nodes_in, short};
use crate::analysis::check::Checked;
use crate::ir::geometry::Shape;
use crate::ir::graph::{GroupKind, NodeId, Structure};
use crate::ops::Category;
use crate::report::table::thousands;

const NODE_H: f64 = 58.0;
const JOIN_H: f64 = 40.0;
const GAP: f64 = 46.0;
const HGAP: f64 = 28.0;
const PAD: f64 = 14.0;
const LABEL_H: f64 = 22.0;
const LANE: f64 = 80.0;
const CHAR_W: f64 = 7.4;

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
        let category = node.op.def().traits().category;
        let (class, join) = match category {
            Category::Input => ("input", false),
            Category::Conv => ("conv", false),
            Category::Fc => ("fc", false),
            Category::Pool => ("pool", false),
            Category::Join => ("join", true),
            Category::Other => ("other", false),
        };
        let lines = if join {
            vec![
                // The sum as `+`, a gate's product as `×`, a concatenation by name.
                format!(
                    "{} {}",
                    match node.op.keyword() {
                        "add" => "+",
                        "gate" => "×",
                        k => k,
                    },
                    node.name
                ),
                self.shape(n).to_string(),
            ]
        } else if category == Category::Input {
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
                self.collapsed(name, block, items)
            }
            Structure::Group { name, kind, items } => self.group(name, kind, items),
            Structure::Branches { branches, join } => self.branches(branches, *join),
            Structure::Residual { body, shortcut, join } => self.residual(body, shortcut, *join),
            Structure::Gate { body, join } => self.gate(body, *join),
        }
    }

    /// A block instance as one box.
    fn collapsed(&self, name: &str, block: &str, items: &[Structure]) -> Block {
        let mut nodes = Vec::new();
        nodes_in(items, &mut nodes);
        let params: u64 = nodes.iter().map(|&n| self.c.costs[n].params()).sum();
        let macs: u64 = nodes.iter().map(|&n| self.c.costs[n].macs).sum();
        // The instance's result leaves from its last node (its join, for branches).
        let exit = nodes.last().copied().unwrap_or(0);
        let lines = vec![
            name.to_string(),
            format!("{block} ({} layers)", nodes.len()),
            format!("params {} · MACs {}", short(params), short(macs)),
        ];
        self.card(name.to_string(), lines, "block", exit, NODE_H)
    }

    /// A stage, instance or group: its sequence in a labelled frame.
    fn group(&self, name: &str, kind: &GroupKind, items: &[Structure]) -> Block {
        let mut inner = self.seq(items);
        inner.shift(PAD, PAD + LABEL_H);
        let (w, h) = (inner.w + 2.0 * PAD, inner.h + 2.0 * PAD + LABEL_H);
        let label = match kind {
            GroupKind::Stage => format!("stage {name}"),
            GroupKind::Instance(b) => format!("{name}: {b}"),
            GroupKind::Group => name.to_string(),
        };
        inner.clusters.insert(0, Cluster { x: 0.0, y: 0.0, w, h, label, stage: *kind == GroupKind::Stage });
        inner.w = w;
        inner.h = h;
        inner
    }

    /// Branches side by side above their concatenation.
    fn branches(&self, branches: &[Vec<Structure>], join: NodeId) -> Block {
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
        let mut j = self.node(join);
        j.shift((w - j.w) / 2.0, jy);
        out.exit = j.exit;
        out.h = jy + j.h;
        out.absorb(j);
        out
    }

    /// A residual body beside its shortcut (or an identity lane), above the sum.
    fn residual(&self, body: &[Structure], shortcut: &[Structure], join: NodeId) -> Block {
        let b = self.seq(body);
        let mut sc = self.seq(shortcut);
        let identity = shortcut.is_empty();
        let sw = if identity { LANE } else { sc.w };
        let jy = b.h.max(sc.h) + GAP;
        let mut out = Block::empty();
        out.w = b.w + HGAP + sw;
        sc.shift(b.w + HGAP, 0.0);
        let mut j = self.node(join);
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
            out.edges.push(Edge { points: vec![(lane_x, 0.0), (lane_x, side.1), side], label: "identity".into() });
        } else {
            out.entries.extend(sc.entries.iter().copied());
            if let Some((n, ex, ey)) = sc.exit {
                out.edges.push(Edge { points: vec![(ex, ey), (ex, side.1), side], label: self.shape(n).to_string() });
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

impl Layout<'_> {
    /// A gate: the input's lane straight down into the product, the gate's body beside it,
    /// arriving at the product's right side.
    fn gate(&self, body: &[Structure], join: NodeId) -> Block {
        let mut g = self.seq(body);
        let mut j = self.node(join);
        let lane = j.w.max(LANE);
        let jy = g.h + GAP;
        let mut out = Block::empty();
        out.w = lane + HGAP + g.w;
        g.shift(lane + HGAP, 0.0);
        let jx = lane / 2.0;
        j.shift(jx - j.w / 2.0, jy);
        out.entries.push((jx, 0.0));
        out.edges.push(Edge { points: vec![(jx, 0.0), (jx, jy)], label: String::new() });
        out.entries.extend(g.entries.iter().copied());
        let side = (jx + j.w / 2.0, jy + j.h / 2.0);
        if let Some((n, ex, ey)) = g.exit {
            out.edges.push(Edge { points: vec![(ex, ey), (ex, side.1), side], label: self.shape(n).to_string() });
        }
        out.exit = j.exit;
        out.h = jy + j.h;
        out.absorb(g);
        out.absorb(j);
        out
    }
}

/// Lays out the network's picture; `collapse` draws each block instance as one box.
pub fn layout_graph(c: &Checked, collapse: bool) -> Drawing {
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
