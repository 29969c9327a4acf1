//! AST -> layer graph. Reads the header, validates block definitions and calls (undefined,
//! recursive, wrong argument counts), expands blocks, repetitions, branches and residuals, and
//! gives every layer its canonical name. Collects every error it can find rather than stopping.
//!
//! Naming scheme (also in README.md):
//! - a stage is a name root: its items are `stage.1`, `stage.2`, ... by position;
//! - a label (`inception3a: inception(...)`) is a name root too, replacing the path;
//! - a block instance or `{ ... }` group is a scope: its items are `scope.1`, `scope.2`, ...;
//! - repetition `xN` gives each copy its own position (a labelled item becomes `label.1`, ...);
//! - consecutive `branch`es are `b1`, `b2`, ... of the enclosing scope, their concatenation `cat`;
//! - a residual body is numbered in the enclosing scope, its shortcut `sc1`, `sc2`, ..., the sum
//!   `add`;
//! - items outside any stage are named by their op (or block) and position: `conv1`, `fc7`.

mod blocks;
mod choose;
mod expand;
mod header;
mod naming;

use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::front::ast::*;
use crate::front::expr::{BlockInput, Env, eval_expr};
use crate::ir::geometry::{MAX_ELEMENTS, Shape};
use crate::ir::graph::*;
use crate::ops::{InputOp, Op};
use naming::Scope;
use std::collections::{HashMap, HashSet};

/// Expansion stops with an error beyond this many layers: no published CNN comes near it, and it
/// bounds the memory a hostile `x1000000` can claim.
pub(crate) const MAX_LAYERS: usize = 100_000;
pub(crate) const MAX_REPEAT: i64 = 10_000;
/// Block instances nest at most this deep (recursion is an error before this matters).
pub(crate) const MAX_CALL_DEPTH: usize = 64;

pub(crate) struct Elaborated {
    pub(crate) network: Network,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

/// Builds the network. `default_name` (the file stem) is used when there is no `network` line.
pub(crate) fn elaborate(file: &File, default_name: &str) -> Elaborated {
    let mut e = Elaborator {
        blocks: HashMap::new(),
        bad_calls: HashSet::new(),
        instantiated: HashSet::new(),
        names: HashMap::new(),
        nodes: Vec::new(),
        stages: Vec::new(),
        diags: Vec::new(),
        too_large: false,
        frames: vec![Vec::new()],
        shapes: Vec::new(),
        declared: Input { c: 0, h: 0, w: 0 },
    };
    let header = e.header(file, default_name);
    e.declared = header.input;
    e.collect_blocks(file);
    e.check_calls(file);
    e.nodes.push(Node {
        name: "input".into(),
        op: Op::Input(InputOp),
        inputs: Vec::new(),
        origin: Origin { span: header.input_span, call_sites: Vec::new() },
        stage: None,
        off_main_path: false,
    });
    e.shapes.push(Some(Shape::Map { c: header.input.c, h: header.input.h, w: header.input.w }));
    e.names.insert("input".into(), header.input_span);
    e.frames[0].push(Structure::Node(0));
    let mut top = Scope::top();
    let body: Vec<&Item> =
        file.items.iter().filter(|i| !header::is_header(i) && !matches!(i.stmt, Stmt::Block(_))).collect();
    let ctx = Ctx { call_sites: Vec::new(), stage: None, off_main: false, blocks: Vec::new() };
    e.expand_seq(&body, &mut top, &Env::default(), 0, &ctx);
    e.lint_unused_blocks();
    let structure = e.frames.pop().unwrap_or_default();
    let network = Network {
        name: header.name,
        input: header.input,
        input_span: header.input_span,
        mean: header.mean,
        std: header.std,
        labels: header.labels,
        rules: header.rules,
        stages: e.stages,
        nodes: e.nodes,
        structure,
    };
    Elaborated { network, diagnostics: e.diags }
}

/// Where expansion is: the block call sites above, the stage, whether off the main path (in a
/// branch or shortcut), and the blocks being instantiated (to stop runaway nesting).
#[derive(Clone)]
struct Ctx {
    call_sites: Vec<(Span, String)>,
    stage: Option<usize>,
    off_main: bool,
    blocks: Vec<String>,
}

struct Elaborator<'a> {
    blocks: HashMap<String, &'a BlockDef>,
    /// Call sites already reported (undefined, recursive, wrong arity): skipped when expanding.
    bad_calls: HashSet<Span>,
    instantiated: HashSet<String>,
    names: HashMap<String, Span>,
    nodes: Vec<Node>,
    stages: Vec<String>,
    diags: Vec<Diagnostic>,
    too_large: bool,
    /// The structure being built: one frame per open stage, instance, group, branch or body.
    frames: Vec<Vec<Structure>>,
    /// Each node's shape at the declared input, as far as known.
    shapes: Vec<Option<Shape>>,
    declared: Input,
}

impl Elaborator<'_> {
    fn error_at(&mut self, mut d: Diagnostic, ctx: &Ctx) {
        for (span, text) in &ctx.call_sites {
            d = d.with_secondary(*span, text.clone());
        }
        self.diags.push(d);
    }

    fn add_node(&mut self, name: String, op: Op, inputs: Vec<NodeId>, span: Span, ctx: &Ctx) -> NodeId {
        if self.nodes.len() >= MAX_LAYERS {
            if !self.too_large {
                self.too_large = true;
                let d = Diagnostic::error(
                    Code::TooManyLayers,
                    span,
                    format!("the network expands to more than {MAX_LAYERS} layers"),
                )
                .with_label("expansion stopped here")
                .with_help("check the repetition counts");
                self.error_at(d, ctx);
            }
            return inputs.first().copied().unwrap_or(0);
        }
        let name = self.claim_name(&name, span, ctx);
        let id = self.nodes.len();
        if let Some(frame) = self.frames.last_mut() {
            frame.push(Structure::Node(id));
        }
        self.nodes.push(Node {
            name,
            op,
            inputs,
            origin: Origin { span, call_sites: ctx.call_sites.clone() },
            stage: ctx.stage,
            off_main_path: ctx.off_main,
        });
        // Shapes as the network grows, at the declared input, for `in.c` (diagnostics come
        // from the shape pass, later).
        let node = &self.nodes[id];
        let ins: Option<Vec<Shape>> = node.inputs.iter().map(|&i| self.shapes[i]).collect();
        let shape = ins.and_then(|ins| node.op.def().infer(node, &ins, self.declared).ok());
        self.shapes.push(shape.filter(|s| s.elements().is_some_and(|n| n <= MAX_ELEMENTS)));
        id
    }

    /// What `in.?` means in a block instance reading node `input`.
    fn block_input(&self, input: NodeId) -> BlockInput {
        match self.shapes.get(input).copied().flatten() {
            Some(Shape::Map { c, h, w }) => BlockInput::Known([c, h, w]),
            Some(Shape::Flat { n }) => BlockInput::Known([n, 1, 1]),
            None => BlockInput::Unknown,
        }
    }

    /// Runs `f` in a fresh structure frame and returns what it produced and the frame.
    fn framed<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> (T, Vec<Structure>) {
        self.frames.push(Vec::new());
        let out = f(self);
        (out, self.frames.pop().unwrap_or_default())
    }

    fn push_structure(&mut self, s: Structure) {
        if let Some(frame) = self.frames.last_mut() {
            frame.push(s);
        }
    }

    /// Replaces the structure entry of the join node just added by `wrap(join)`.
    fn wrap_join(&mut self, join: NodeId, wrap: impl FnOnce(NodeId) -> Structure) {
        if let Some(frame) = self.frames.last_mut() {
            if frame.last() == Some(&Structure::Node(join)) {
                frame.pop();
                frame.push(wrap(join));
            }
        }
    }

    fn repeat_count(&mut self, repeat: &Option<Repeat>, env: &Env, ctx: &Ctx) -> Option<i64> {
        let Some(r) = repeat else { return Some(1) };
        match eval_expr(&r.count, env) {
            Ok(n) if (1..=MAX_REPEAT).contains(&n) => Some(n),
            Ok(n) => {
                let d = Diagnostic::error(
                    Code::BadArgument,
                    r.span,
                    format!("a repetition count must be between 1 and {MAX_REPEAT}; found {n}"),
                )
                .with_label("out of range");
                self.error_at(d, ctx);
                None
            }
            Err(d) => {
                self.report(d, ctx);
                None
            }
        }
    }

    /// Reports `d` if there is one (`None`: the problem was reported upstream).
    fn report(&mut self, d: Option<Diagnostic>, ctx: &Ctx) {
        if let Some(d) = d {
            self.error_at(d, ctx);
        }
    }
}
