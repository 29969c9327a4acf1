//! Block definitions and calls: duplicate and reserved names, parameter lists, undefined
//! blocks, argument counts, recursion, unused blocks, and binding a call's arguments.

use super::{Ctx, Elaborator};
use crate::analysis::codes::Code;
use crate::analysis::diag::{Diagnostic, did_you_mean};
use crate::front::ast::*;
use crate::front::expr::{BlockInput, Env, eval_expr};
use crate::ops::{is_keyword, op_names};
use std::collections::HashMap;

impl<'a> Elaborator<'a> {
    pub(super) fn collect_blocks(&mut self, file: &'a File) {
        for item in &file.items {
            let Stmt::Block(def) = &item.stmt else {
                continue;
            };
            if let Some(label) = &item.label {
                self.diags.push(Diagnostic::error(
                    Code::Misplaced,
                    label.span,
                    "a block definition cannot have a label",
                ));
            }
            if let Some(prev) = self.blocks.get(&def.name.name) {
                self.diags.push(
                    Diagnostic::error(
                        Code::DuplicateName,
                        def.name.span,
                        format!("block `{}` is defined twice", def.name.name),
                    )
                    .with_label("second definition")
                    .with_secondary(prev.name.span, "first defined here"),
                );
                continue;
            }
            if op_names().any(|o| o == def.name.name) || is_keyword(&def.name.name) {
                self.diags.push(
                    Diagnostic::error(
                        Code::DuplicateName,
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
                            Code::DuplicateName,
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
                            Code::DuplicateName,
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
                            Code::BlockArity,
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
    pub(super) fn check_calls(&mut self, file: &'a File) {
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
                    Stmt::Stage { body, .. }
                    | Stmt::Branch { body, .. }
                    | Stmt::Group { body, .. }
                    | Stmt::Gate { body, .. } => walk(body, caller, edges, calls),
                    Stmt::Residual { body, shortcut, .. } => {
                        walk(body, caller, edges, calls);
                        if let Some(s) = shortcut {
                            walk(s, caller, edges, calls);
                        }
                    }
                    Stmt::If { then, otherwise, .. } => {
                        walk(then, caller, edges, calls);
                        if let Some(o) = otherwise {
                            walk(o, caller, edges, calls);
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
                let mut d =
                    Diagnostic::error(Code::UndefinedBlock, callee.span, format!("no block named `{}`", callee.name))
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
                        Code::BlockArity,
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
                        Diagnostic::error(
                            Code::RecursiveBlock,
                            callee.span,
                            format!("block `{target}` instantiates itself"),
                        )
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

    pub(super) fn lint_unused_blocks(&mut self) {
        let mut unused: Vec<_> = self.blocks.values().filter(|d| !self.instantiated.contains(&d.name.name)).collect();
        unused.sort_by_key(|d| d.name.span);
        for def in unused {
            self.diags.push(
                Diagnostic::warning(
                    Code::UnusedBlock,
                    def.name.span,
                    format!("block `{}` is never used", def.name.name),
                )
                .with_label("defined here but not instantiated")
                .with_help("remove it, or instantiate it in a stage"),
            );
        }
    }

    /// The environment of an instance of `def`: its parameters bound to `args` (evaluated in the
    /// caller's environment) or their defaults, and `in.?` to `input`.
    pub(super) fn bind_args(
        &mut self,
        def: &BlockDef,
        args: &[Expr],
        caller_env: &Env,
        input: BlockInput,
        ctx: &Ctx,
    ) -> Option<Env> {
        let mut env = Env::default();
        env.input = input;
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
                    self.report(d, ctx);
                    ok = false;
                }
            }
        }
        ok.then_some(env)
    }
}
