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

use crate::ast::*;
use crate::diag::{Diagnostic, did_you_mean};
use crate::expr::{Env, eval_expr};
use crate::graph::*;
use crate::layer_args::{HEADER_KEYWORDS, MAX_SIZE, Value, build_op, eval_args, is_keyword, op_names, show};
use std::collections::{HashMap, HashSet};

/// Expansion stops with an error beyond this many layers: no published CNN comes near it, and it
/// bounds the memory a hostile `x1000000` can claim.
pub const MAX_LAYERS: usize = 100_000;
pub const MAX_REPEAT: i64 = 10_000;
/// Block instances nest at most this deep (recursion is an error before this matters).
pub const MAX_CALL_DEPTH: usize = 64;

pub struct Elaborated {
    pub network: Network,
    pub diagnostics: Vec<Diagnostic>,
}

/// Builds the network. `default_name` (the file stem) is used when there is no `network` line.
pub fn elaborate(file: &File, default_name: &str) -> Elaborated {
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
    };
    let header = e.header(file, default_name);
    e.collect_blocks(file);
    e.check_calls(file);
    e.nodes.push(Node {
        name: "input".into(),
        op: Op::Input,
        inputs: Vec::new(),
        origin: Origin { span: header.input_span, call_sites: Vec::new() },
        stage: None,
        off_main_path: false,
    });
    e.names.insert("input".into(), header.input_span);
    e.frames[0].push(Structure::Node(0));
    let mut top = Scope::top();
    let body: Vec<&Item> = file.items.iter().filter(|i| !is_header(i) && !matches!(i.stmt, Stmt::Block(_))).collect();
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

struct Header {
    name: String,
    input: Input,
    input_span: Span,
    mean: Vec<f64>,
    std: Vec<f64>,
    labels: Option<String>,
    rules: Vec<DesignRule>,
}

fn is_header(item: &Item) -> bool {
    matches!(&item.stmt, Stmt::Layer { op, .. } if HEADER_KEYWORDS.contains(&op.name.as_str()))
}

#[derive(Clone)]
struct Scope {
    prefix: String,
    top: bool,
    shortcut: bool,
    pos: u32,
    branch: u32,
    sc: u32,
    cat: u32,
    add: u32,
}

impl Scope {
    fn top() -> Scope {
        Scope { prefix: String::new(), top: true, shortcut: false, pos: 0, branch: 0, sc: 0, cat: 0, add: 0 }
    }

    fn named(prefix: String) -> Scope {
        Scope { prefix, top: false, ..Scope::top() }
    }

    fn join(&self, segment: &str) -> String {
        if self.prefix.is_empty() { segment.to_string() } else { format!("{}.{segment}", self.prefix) }
    }

    /// The name of the next positional item; `kind` names top-level items (`conv1`).
    fn next_position(&mut self, kind: &str) -> String {
        self.pos += 1;
        if self.shortcut {
            self.join(&format!("sc{}", self.pos))
        } else if self.top {
            format!("{kind}{}", self.pos)
        } else {
            self.join(&self.pos.to_string())
        }
    }

    fn next_join(&mut self, kind: &str) -> String {
        let n = if kind == "cat" {
            self.cat += 1;
            self.cat
        } else {
            self.add += 1;
            self.add
        };
        if n == 1 { self.join(kind) } else { self.join(&format!("{kind}{n}")) }
    }
}

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
}

impl<'a> Elaborator<'a> {
    fn header(&mut self, file: &File, default_name: &str) -> Header {
        let mut h = Header {
            name: default_name.to_string(),
            input: Input { c: 0, h: 0, w: 0 },
            input_span: Span::new(0, 0),
            mean: Vec::new(),
            std: Vec::new(),
            labels: None,
            rules: Vec::new(),
        };
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut have_input = false;
        for item in file.items.iter().filter(|i| is_header(i)) {
            let Stmt::Layer { op, args, repeat } = &item.stmt else {
                continue;
            };
            if let Some(r) = repeat {
                self.diags.push(Diagnostic::error("E0005", r.span, format!("`{}` cannot be repeated", op.name)));
            }
            if let Some(first) = seen.get(&op.name).filter(|_| op.name != "rule") {
                self.diags.push(
                    Diagnostic::error("E0005", op.span, format!("`{}` is given twice", op.name))
                        .with_label("second definition")
                        .with_secondary(*first, "first given here"),
                );
                continue;
            }
            seen.insert(op.name.clone(), op.span);
            let values = match eval_args(args, &Env::default(), |n| n == "max") {
                Ok(v) => v,
                Err(ds) => {
                    self.diags.extend(ds);
                    continue;
                }
            };
            let mut bad = |msg: String, span: Span, example: &str| {
                self.diags.push(
                    Diagnostic::error("E0005", span, msg)
                        .with_label("here")
                        .with_help(format!("for example: `{example}`")),
                );
            };
            match (op.name.as_str(), values.as_slice()) {
                ("network", [v]) => match &v.value {
                    Value::Name(n) | Value::Word(n) | Value::Str(n) => h.name = n.clone(),
                    _ => bad(format!("`network` takes a name; found {}", show(&v.value)), v.span, "network vgg16"),
                },
                ("input", [v]) => match &v.value {
                    Value::Dims(d) if d.len() == 3 && d.iter().all(|&x| (1..=MAX_SIZE).contains(&x)) => {
                        h.input = Input { c: d[0] as u64, h: d[1] as u64, w: d[2] as u64 };
                        h.input_span = item.span;
                        have_input = true;
                    }
                    Value::Dims(d) if d.len() == 3 => bad(
                        format!("input sizes must be between 1 and {MAX_SIZE}; found {}", show(&v.value)),
                        v.span,
                        "input 3x224x224",
                    ),
                    _ => bad(format!("`input` takes CxHxW; found {}", show(&v.value)), v.span, "input 3x224x224"),
                },
                ("mean" | "std", vs) if !vs.is_empty() => {
                    let mut nums = Vec::new();
                    for v in vs {
                        match v.value {
                            Value::Float(f) => nums.push(f),
                            Value::Int(i) => nums.push(i as f64),
                            _ => bad(
                                format!("`{}` takes numbers; found {}", op.name, show(&v.value)),
                                v.span,
                                "mean 0.485 0.456 0.406",
                            ),
                        }
                    }
                    if op.name == "std" {
                        if let Some(v) = vs.iter().zip(&nums).find(|(_, x)| **x <= 0.0) {
                            bad(
                                format!("std values must be positive; found {}", v.1),
                                v.0.span,
                                "std 0.229 0.224 0.225",
                            );
                        }
                        h.std = nums;
                    } else {
                        h.mean = nums;
                    }
                }
                ("labels", [v]) => match &v.value {
                    Value::Str(s) => h.labels = Some(s.clone()),
                    _ => bad(
                        format!("`labels` takes a quoted file name; found {}", show(&v.value)),
                        v.span,
                        "labels \"imagenet_labels.txt\"",
                    ),
                },
                ("rule", [first, rest @ ..]) => self.rule(first, rest, &mut h),
                (name, _) => bad(format!("`{name}` has the wrong number of arguments"), op.span, header_example(name)),
            }
        }
        if !have_input {
            self.diags.push(
                Diagnostic::error("E0005", Span::new(0, 0), "the network has no `input` line")
                    .with_label("expected `input CxHxW` in the header")
                    .with_help("add a line such as `input 3x224x224`"),
            );
            h.input = Input { c: 3, h: 224, w: 224 };
        }
        let channels = h.input.c as usize;
        for (which, values) in [("mean", &mut h.mean), ("std", &mut h.std)] {
            if values.is_empty() {
                let default = if which == "mean" { IMAGENET_MEAN } else { IMAGENET_STD };
                *values = if channels == 3 {
                    default.to_vec()
                } else {
                    // Other channel counts get the average, broadcast.
                    vec![default.iter().sum::<f64>() / 3.0]
                };
            } else if values.len() != channels && values.len() != 1 {
                let span = seen.get(which).copied().unwrap_or_default();
                self.diags.push(
                    Diagnostic::error(
                        "E0005",
                        span,
                        format!("`{which}` gives {} values but the input has {channels} channels", values.len()),
                    )
                    .with_label("one value per input channel, or one for all"),
                );
            }
        }
        h
    }

    fn rule(&mut self, first: &crate::layer_args::ArgValue, rest: &[crate::layer_args::ArgValue], h: &mut Header) {
        let name = match &first.value {
            Value::Word(w) | Value::Name(w) => w.as_str(),
            _ => "",
        };
        if name != "double-channels" {
            let mut d = Diagnostic::error("E0005", first.span, format!("unknown design rule {}", show(&first.value)))
                .with_label("not a rule");
            d = d.with_help(did_you_mean(name, ["double-channels"]).unwrap_or("the rules are: double-channels".into()));
            self.diags.push(d);
            return;
        }
        let max = match rest {
            [] => None,
            [k, v] if k.value == Value::Name("max".into()) => match v.value {
                Value::Int(m) if (1..=MAX_SIZE).contains(&m) => Some(m as u64),
                _ => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0005",
                            v.span,
                            format!("`max` takes a channel count; found {}", show(&v.value)),
                        )
                        .with_label("expected a positive integer"),
                    );
                    return;
                }
            },
            [other, ..] => {
                self.diags.push(
                    Diagnostic::error(
                        "E0005",
                        other.span,
                        format!("unexpected {} after the rule name", show(&other.value)),
                    )
                    .with_label("expected `max N` or nothing")
                    .with_help("for example: `rule double-channels max 512`"),
                );
                return;
            }
        };
        h.rules
            .push(DesignRule::DoubleChannels { max, span: first.span.to(rest.last().map_or(first.span, |v| v.span)) });
    }

    fn collect_blocks(&mut self, file: &'a File) {
        for item in &file.items {
            let Stmt::Block(def) = &item.stmt else {
                continue;
            };
            if let Some(label) = &item.label {
                self.diags.push(Diagnostic::error("E0013", label.span, "a block definition cannot have a label"));
            }
            if let Some(prev) = self.blocks.get(&def.name.name) {
                self.diags.push(
                    Diagnostic::error("E0009", def.name.span, format!("block `{}` is defined twice", def.name.name))
                        .with_label("second definition")
                        .with_secondary(prev.name.span, "first defined here"),
                );
                continue;
            }
            if op_names().any(|o| o == def.name.name) || is_keyword(&def.name.name) {
                self.diags.push(
                    Diagnostic::error(
                        "E0009",
                        def.name.span,
                        format!("`{}` is a keyword and cannot name a block", def.name.name),
                    )
                    .with_label("reserved"),
                );
            }
            let mut seen_default = false;
            for (i, p) in def.params.iter().enumerate() {
                if let Some(prev) = def.params[..i].iter().find(|q| q.name.name == p.name.name) {
                    self.diags.push(
                        Diagnostic::error(
                            "E0009",
                            p.name.span,
                            format!("parameter `{}` is declared twice", p.name.name),
                        )
                        .with_label("second declaration")
                        .with_secondary(prev.name.span, "first declared here"),
                    );
                }
                if is_keyword(&p.name.name) {
                    self.diags.push(
                        Diagnostic::error(
                            "E0009",
                            p.name.span,
                            format!("parameter `{}` would shadow a keyword", p.name.name),
                        )
                        .with_label("reserved word")
                        .with_help("choose another name"),
                    );
                }
                if p.default.is_some() {
                    seen_default = true;
                } else if seen_default {
                    self.diags.push(
                        Diagnostic::error(
                            "E0008",
                            p.name.span,
                            format!("parameter `{}` has no default but follows one that has", p.name.name),
                        )
                        .with_label("needs a default")
                        .with_help("put parameters with defaults last"),
                    );
                }
            }
            self.blocks.insert(def.name.name.clone(), def);
        }
    }

    /// Checks every call in the file, used or not: undefined blocks, argument counts, recursion.
    fn check_calls(&mut self, file: &'a File) {
        let mut edges: Vec<(String, &'a Ident)> = Vec::new(); // (caller block, callee ident)
        let mut calls: Vec<(&'a Ident, usize)> = Vec::new();
        fn walk<'f>(
            items: &'f [Item],
            caller: &str,
            edges: &mut Vec<(String, &'f Ident)>,
            calls: &mut Vec<(&'f Ident, usize)>,
        ) {
            for item in items {
                match &item.stmt {
                    Stmt::Call { callee, args, .. } => {
                        edges.push((caller.to_string(), callee));
                        calls.push((callee, args.len()));
                    }
                    Stmt::Stage { body, .. } | Stmt::Branch { body, .. } | Stmt::Group { body, .. } => {
                        walk(body, caller, edges, calls)
                    }
                    Stmt::Residual { body, shortcut, .. } => {
                        walk(body, caller, edges, calls);
                        if let Some(s) = shortcut {
                            walk(s, caller, edges, calls);
                        }
                    }
                    Stmt::Block(def) => walk(&def.body, &def.name.name, edges, calls),
                    Stmt::Layer { .. } => {}
                }
            }
        }
        walk(&file.items, "", &mut edges, &mut calls);
        for (callee, nargs) in calls {
            let Some(def) = self.blocks.get(&callee.name) else {
                let mut d = Diagnostic::error("E0006", callee.span, format!("no block named `{}`", callee.name))
                    .with_label("undefined block");
                if op_names().any(|o| o == callee.name) {
                    d = d.with_help(format!("`{}` is a layer: write its arguments without parentheses", callee.name));
                } else if let Some(h) = did_you_mean(&callee.name, self.blocks.keys().map(String::as_str)) {
                    d = d.with_help(h);
                }
                self.diags.push(d);
                self.bad_calls.insert(callee.span);
                continue;
            };
            let max = def.params.len();
            let min = def.params.iter().filter(|p| p.default.is_none()).count();
            if nargs < min || nargs > max {
                let expected = if min == max { format!("{max}") } else { format!("{min} to {max}") };
                let params: Vec<_> = def.params.iter().map(|p| p.name.name.as_str()).collect();
                self.diags.push(
                    Diagnostic::error(
                        "E0008",
                        callee.span,
                        format!("block `{}` takes {expected} arguments but {nargs} were given", callee.name),
                    )
                    .with_label(format!("expects ({})", params.join(", ")))
                    .with_secondary(def.name.span, "defined here"),
                );
                self.bad_calls.insert(callee.span);
            }
        }
        // Recursion: a depth-first search over the block call graph.
        let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = on stack, 2 = done
        let names: Vec<String> = {
            let mut v: Vec<_> = self.blocks.keys().cloned().collect();
            v.sort();
            v
        };
        for name in &names {
            let mut path = Vec::new();
            self.find_cycles(name, &edges, &mut state, &mut path);
        }
    }

    fn find_cycles<'e>(
        &mut self,
        block: &'e str,
        edges: &'e [(String, &'a Ident)],
        state: &mut HashMap<&'e str, u8>,
        path: &mut Vec<&'e str>,
    ) {
        if state.get(block).is_some() {
            return;
        }
        state.insert(block, 1);
        path.push(block);
        for (caller, callee) in edges.iter().filter(|(c, _)| c == block) {
            let _ = caller;
            let target = callee.name.as_str();
            if !self.blocks.contains_key(target) {
                continue;
            }
            match state.get(target) {
                Some(1) => {
                    let start = path.iter().position(|b| *b == target).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[start..].to_vec();
                    cycle.push(target);
                    self.diags.push(
                        Diagnostic::error("E0007", callee.span, format!("block `{target}` instantiates itself"))
                            .with_label("recursive call")
                            .with_note(format!("the cycle is {}", cycle.join(" -> ")))
                            .with_help("a network is finite: use repetition (`x3`) instead of recursion"),
                    );
                    self.bad_calls.insert(callee.span);
                }
                Some(_) => {}
                None => self.find_cycles(target, edges, state, path),
            }
        }
        path.pop();
        state.insert(block, 2);
    }

    fn lint_unused_blocks(&mut self) {
        let mut unused: Vec<_> = self.blocks.values().filter(|d| !self.instantiated.contains(&d.name.name)).collect();
        unused.sort_by_key(|d| d.name.span);
        for def in unused {
            self.diags.push(
                Diagnostic::warning("W0004", def.name.span, format!("block `{}` is never used", def.name.name))
                    .with_label("defined here but not instantiated")
                    .with_help("remove it, or instantiate it in a stage"),
            );
        }
    }

    fn error_at(&mut self, mut d: Diagnostic, ctx: &Ctx) {
        for (span, text) in &ctx.call_sites {
            d = d.with_secondary(*span, text.clone());
        }
        self.diags.push(d);
    }

    /// Registers a name; a duplicate is reported and replaced by a private unique name, so that
    /// the layers under a duplicated stage or label are not reported again.
    fn claim_name(&mut self, name: &str, span: Span, ctx: &Ctx) -> String {
        if let Some(&first) = self.names.get(name) {
            let d = Diagnostic::error("E0009", span, format!("the name `{name}` is used twice"))
                .with_label("second use")
                .with_secondary(first, "first used here")
                .with_help("names must be unique: rename the stage or the label");
            self.error_at(d, ctx);
            let unique = format!("{name}#{}", self.names.len());
            self.names.insert(unique.clone(), span);
            return unique;
        }
        self.names.insert(name.to_string(), span);
        name.to_string()
    }

    fn add_node(&mut self, name: String, op: Op, inputs: Vec<NodeId>, span: Span, ctx: &Ctx) -> NodeId {
        if self.nodes.len() >= MAX_LAYERS {
            if !self.too_large {
                self.too_large = true;
                let d =
                    Diagnostic::error("E0012", span, format!("the network expands to more than {MAX_LAYERS} layers"))
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
        id
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
                    "E0004",
                    r.span,
                    format!("a repetition count must be between 1 and {MAX_REPEAT}; found {n}"),
                )
                .with_label("out of range");
                self.error_at(d, ctx);
                None
            }
            Err(d) => {
                self.error_at(d, ctx);
                None
            }
        }
    }

    /// Names the `rep`-th copy of an item: by label (a root) or by position in `scope`.
    fn item_name(&mut self, item: &Item, kind: &str, rep: i64, repeated: bool, scope: &mut Scope) -> String {
        match &item.label {
            Some(l) if repeated => format!("{}.{}", l.name, rep + 1),
            Some(l) => {
                scope.pos += 1; // a labelled item still occupies its position
                l.name.clone()
            }
            None => scope.next_position(kind),
        }
    }

    fn expand_seq(&mut self, items: &[&'a Item], scope: &mut Scope, env: &Env, input: NodeId, ctx: &Ctx) -> NodeId {
        let mut current = input;
        let mut i = 0;
        while i < items.len() {
            if self.too_large {
                return current;
            }
            let item = items[i];
            if let Stmt::Branch { .. } = item.stmt {
                let run_end = items[i..]
                    .iter()
                    .position(|it| !matches!(it.stmt, Stmt::Branch { .. }))
                    .map_or(items.len(), |p| i + p);
                current = self.expand_branches(&items[i..run_end], scope, env, current, ctx);
                i = run_end;
                continue;
            }
            current = self.expand_item(item, scope, env, current, ctx);
            i += 1;
        }
        current
    }

    fn expand_item(&mut self, item: &'a Item, scope: &mut Scope, env: &Env, input: NodeId, ctx: &Ctx) -> NodeId {
        match &item.stmt {
            Stmt::Layer { op, args, repeat } => {
                if HEADER_KEYWORDS.contains(&op.name.as_str()) {
                    let d = Diagnostic::error("E0013", op.span, format!("`{}` belongs in the file header", op.name))
                        .with_label("not allowed inside a stage or block")
                        .with_help("move it to the top level, before the stages");
                    self.error_at(d, ctx);
                    return input;
                }
                let Some(count) = self.repeat_count(repeat, env, ctx) else {
                    return input;
                };
                let built = build_op(op, args, env);
                let mut current = input;
                for rep in 0..count {
                    if self.too_large {
                        break;
                    }
                    let name = self.item_name(item, &op.name, rep, repeat.is_some(), scope);
                    let op = match &built {
                        Ok(op) => op.clone(),
                        Err(ds) => {
                            if rep == 0 {
                                for d in ds.clone() {
                                    self.error_at(d, ctx);
                                }
                            }
                            Op::Invalid
                        }
                    };
                    current = self.add_node(name, op, vec![current], item.span, ctx);
                }
                current
            }
            Stmt::Call { callee, args, repeat } => {
                if self.bad_calls.contains(&callee.span) {
                    // Already reported; the block counts as used so no "unused" warning piles on.
                    self.instantiated.insert(callee.name.clone());
                    return self.add_node(scope.next_position(&callee.name), Op::Invalid, vec![input], item.span, ctx);
                }
                let Some(&def) = self.blocks.get(&callee.name) else {
                    return input;
                };
                if ctx.blocks.len() >= MAX_CALL_DEPTH || ctx.blocks.contains(&callee.name) {
                    let d = Diagnostic::error(
                        "E0007",
                        callee.span,
                        format!("block instances nest deeper than {MAX_CALL_DEPTH}"),
                    )
                    .with_label("too deep");
                    self.error_at(d, ctx);
                    return input;
                }
                self.instantiated.insert(callee.name.clone());
                let Some(count) = self.repeat_count(repeat, env, ctx) else {
                    return input;
                };
                let Some(inner_env) = self.bind_args(def, args, env, ctx) else {
                    return self.add_node(scope.next_position(&callee.name), Op::Invalid, vec![input], item.span, ctx);
                };
                let mut inner_ctx = ctx.clone();
                inner_ctx.call_sites.insert(0, (item.span, format!("in this instance of `{}`", callee.name)));
                inner_ctx.blocks.push(callee.name.clone());
                let body: Vec<&Item> = def.body.iter().collect();
                let mut current = input;
                for rep in 0..count {
                    if self.too_large {
                        break;
                    }
                    let mut name = self.item_name(item, &callee.name, rep, repeat.is_some(), scope);
                    if item.label.is_some() {
                        name = self.claim_name(&name, item.span, ctx);
                    }
                    let mut inner = Scope::named(name.clone());
                    let (out, items) =
                        self.framed(|e| e.expand_seq(&body, &mut inner, &inner_env, current, &inner_ctx));
                    current = out;
                    self.push_structure(Structure::Group {
                        name,
                        kind: GroupKind::Instance(callee.name.clone()),
                        items,
                    });
                }
                current
            }
            Stmt::Group { body, repeat } => {
                let Some(count) = self.repeat_count(repeat, env, ctx) else {
                    return input;
                };
                let body: Vec<&Item> = body.iter().collect();
                let mut current = input;
                for rep in 0..count {
                    if self.too_large {
                        break;
                    }
                    let mut name = self.item_name(item, "group", rep, repeat.is_some(), scope);
                    if item.label.is_some() {
                        name = self.claim_name(&name, item.span, ctx);
                    }
                    let mut inner = Scope::named(name.clone());
                    let (out, items) = self.framed(|e| e.expand_seq(&body, &mut inner, env, current, ctx));
                    current = out;
                    self.push_structure(Structure::Group { name, kind: GroupKind::Group, items });
                }
                current
            }
            Stmt::Stage { name, body } => {
                if !scope.top {
                    let d = Diagnostic::error("E0013", name.span, "stages are top-level groups and cannot nest")
                        .with_label("stage inside a stage or block")
                        .with_help("use `{ ... }` to group layers here");
                    self.error_at(d, ctx);
                    return input;
                }
                if let Some(l) = &item.label {
                    self.diags.push(Diagnostic::error(
                        "E0013",
                        l.span,
                        "a stage is named by `stage NAME`, not a label",
                    ));
                }
                let stage_name = self.claim_name(&name.name, name.span, ctx);
                self.stages.push(name.name.clone());
                let mut inner_ctx = ctx.clone();
                inner_ctx.stage = Some(self.stages.len() - 1);
                let body: Vec<&Item> = body.iter().collect();
                let mut inner = Scope::named(stage_name);
                scope.pos += 1;
                let (out, items) = self.framed(|e| e.expand_seq(&body, &mut inner, env, input, &inner_ctx));
                self.push_structure(Structure::Group { name: name.name.clone(), kind: GroupKind::Stage, items });
                out
            }
            Stmt::Residual { keyword, body, shortcut } => {
                if let Some(l) = &item.label {
                    self.diags.push(Diagnostic::error(
                        "E0013",
                        l.span,
                        "a residual cannot be labelled; label the block that holds it",
                    ));
                }
                let body: Vec<&Item> = body.iter().collect();
                let (body_out, body_items) = self.framed(|e| e.expand_seq(&body, scope, env, input, ctx));
                self.frames.push(Vec::new());
                let short_out = match shortcut {
                    Some(sc) => {
                        let mut sc_scope = scope.clone();
                        sc_scope.shortcut = true;
                        sc_scope.pos = scope.sc;
                        let mut sc_ctx = ctx.clone();
                        sc_ctx.off_main = true;
                        let sc: Vec<&Item> = sc.iter().collect();
                        let out = self.expand_seq(&sc, &mut sc_scope, env, input, &sc_ctx);
                        scope.sc = sc_scope.pos;
                        scope.branch = sc_scope.branch;
                        scope.cat = sc_scope.cat;
                        scope.add = sc_scope.add;
                        out
                    }
                    None => input,
                };
                let shortcut_items = self.frames.pop().unwrap_or_default();
                let name = scope.next_join("add");
                let join = self.add_node(name, Op::Add, vec![body_out, short_out], *keyword, ctx);
                self.wrap_join(join, |join| Structure::Residual { body: body_items, shortcut: shortcut_items, join });
                join
            }
            Stmt::Block(def) => {
                let d = Diagnostic::error("E0013", def.name.span, "blocks are defined at the top level of the file")
                    .with_label("block definition inside a stage or block")
                    .with_help("move this definition out, then instantiate it here");
                self.error_at(d, ctx);
                input
            }
            Stmt::Branch { .. } => unreachable!("branches are expanded in runs by expand_seq"),
        }
    }

    fn expand_branches(&mut self, run: &[&'a Item], scope: &mut Scope, env: &Env, input: NodeId, ctx: &Ctx) -> NodeId {
        let mut outputs = Vec::new();
        let mut branches = Vec::new();
        let mut span = run[0].span;
        for item in run {
            let Stmt::Branch { keyword, body } = &item.stmt else {
                continue;
            };
            span = span.to(*keyword);
            scope.branch += 1;
            let prefix = match &item.label {
                Some(l) => self.claim_name(&l.name, l.span, ctx),
                None => scope.join(&format!("b{}", scope.branch)),
            };
            let mut inner = Scope::named(prefix);
            let mut inner_ctx = ctx.clone();
            inner_ctx.off_main = true;
            let body: Vec<&Item> = body.iter().collect();
            let (out, items) = self.framed(|e| e.expand_seq(&body, &mut inner, env, input, &inner_ctx));
            outputs.push(out);
            branches.push(items);
        }
        let name = scope.next_join("cat");
        let keyword = match &run[0].stmt {
            Stmt::Branch { keyword, .. } => *keyword,
            _ => span,
        };
        let join = self.add_node(name, Op::Concat, outputs, keyword, ctx);
        self.wrap_join(join, |join| Structure::Branches { branches, join });
        join
    }

    fn bind_args(&mut self, def: &BlockDef, args: &[Expr], caller_env: &Env, ctx: &Ctx) -> Option<Env> {
        let mut env = Env::default();
        let mut ok = true;
        for (i, p) in def.params.iter().enumerate() {
            let value = match (args.get(i), &p.default) {
                (Some(a), _) => eval_expr(a, caller_env),
                (None, Some(d)) => eval_expr(d, &env),
                (None, None) => continue, // reported by check_calls
            };
            match value {
                Ok(v) => env.bind(&p.name.name, v),
                Err(d) => {
                    self.error_at(d, ctx);
                    ok = false;
                }
            }
        }
        ok.then_some(env)
    }
}

fn header_example(name: &str) -> &'static str {
    match name {
        "network" => "network vgg16",
        "input" => "input 3x224x224",
        "mean" => "mean 0.485 0.456 0.406",
        "std" => "std 0.229 0.224 0.225",
        "labels" => "labels \"imagenet_labels.txt\"",
        _ => "rule double-channels max 512",
    }
}
