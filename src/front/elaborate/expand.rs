//! Expansion of the body: layers, block instances, groups, stages, residuals and branches,
//! each copy of a repeated item in turn, into nodes and the structure that pictures follow.

use super::naming::Scope;
use super::{Ctx, Elaborator, MAX_CALL_DEPTH};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::front::ast::*;
use crate::front::expr::Env;
use crate::ir::graph::*;
use crate::ops::{Add, Concat, HEADER_KEYWORDS, Invalid, Op, build_op};

impl<'a> Elaborator<'a> {
    pub(super) fn expand_seq(
        &mut self,
        items: &[&'a Item],
        scope: &mut Scope,
        env: &Env,
        input: NodeId,
        ctx: &Ctx,
    ) -> NodeId {
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
            Stmt::Layer { op, args, repeat } => self.expand_layer(item, op, args, repeat, scope, env, input, ctx),
            Stmt::Call { callee, args, repeat } => self.expand_call(item, callee, args, repeat, scope, env, input, ctx),
            Stmt::Group { body, repeat } => self.expand_group(item, body, repeat, scope, env, input, ctx),
            Stmt::Stage { name, body } => self.expand_stage(item, name, body, scope, env, input, ctx),
            Stmt::Residual { keyword, body, shortcut } => {
                self.expand_residual(item, *keyword, body, shortcut.as_deref(), scope, env, input, ctx)
            }
            Stmt::Block(def) => {
                let d = Diagnostic::error(
                    Code::Misplaced,
                    def.name.span,
                    "blocks are defined at the top level of the file",
                )
                .with_label("block definition inside a stage or block")
                .with_help("move this definition out, then instantiate it here");
                self.error_at(d, ctx);
                input
            }
            Stmt::Branch { .. } => unreachable!("branches are expanded in runs by expand_seq"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn expand_layer(
        &mut self,
        item: &Item,
        op: &Ident,
        args: &[Arg],
        repeat: &Option<Repeat>,
        scope: &mut Scope,
        env: &Env,
        input: NodeId,
        ctx: &Ctx,
    ) -> NodeId {
        if HEADER_KEYWORDS.contains(&op.name.as_str()) {
            let d = Diagnostic::error(Code::Misplaced, op.span, format!("`{}` belongs in the file header", op.name))
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
                    Op::Invalid(Invalid)
                }
            };
            current = self.add_node(name, op, vec![current], item.span, ctx);
        }
        current
    }

    #[allow(clippy::too_many_arguments)]
    fn expand_call(
        &mut self,
        item: &Item,
        callee: &Ident,
        args: &[Expr],
        repeat: &Option<Repeat>,
        scope: &mut Scope,
        env: &Env,
        input: NodeId,
        ctx: &Ctx,
    ) -> NodeId {
        if self.bad_calls.contains(&callee.span) {
            // Already reported; the block counts as used so no "unused" warning piles on.
            self.instantiated.insert(callee.name.clone());
            return self.add_node(scope.next_position(&callee.name), Op::Invalid(Invalid), vec![input], item.span, ctx);
        }
        let Some(&def) = self.blocks.get(&callee.name) else {
            return input;
        };
        if ctx.blocks.len() >= MAX_CALL_DEPTH || ctx.blocks.contains(&callee.name) {
            let d = Diagnostic::error(
                Code::RecursiveBlock,
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
            return self.add_node(scope.next_position(&callee.name), Op::Invalid(Invalid), vec![input], item.span, ctx);
        };
        let mut inner_ctx = ctx.clone();
        inner_ctx.call_sites.insert(0, (item.span, format!("in this instance of `{}`", callee.name)));
        inner_ctx.blocks.push(callee.name.clone());
        let body: Vec<&Item> = def.body.iter().collect();
        let kind = GroupKind::Instance(callee.name.clone());
        self.expand_copies(
            item,
            &callee.name,
            kind,
            &body,
            count,
            repeat.is_some(),
            scope,
            &inner_env,
            input,
            &inner_ctx,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn expand_group(
        &mut self,
        item: &Item,
        body: &'a [Item],
        repeat: &Option<Repeat>,
        scope: &mut Scope,
        env: &Env,
        input: NodeId,
        ctx: &Ctx,
    ) -> NodeId {
        let Some(count) = self.repeat_count(repeat, env, ctx) else {
            return input;
        };
        let body: Vec<&Item> = body.iter().collect();
        self.expand_copies(item, "group", GroupKind::Group, &body, count, repeat.is_some(), scope, env, input, ctx)
    }

    /// `count` copies of a block body or `{ ... }` group, each a named scope of its own.
    #[allow(clippy::too_many_arguments)]
    fn expand_copies(
        &mut self,
        item: &Item,
        kind_name: &str,
        kind: GroupKind,
        body: &[&'a Item],
        count: i64,
        repeated: bool,
        scope: &mut Scope,
        env: &Env,
        input: NodeId,
        ctx: &Ctx,
    ) -> NodeId {
        let mut current = input;
        for rep in 0..count {
            if self.too_large {
                break;
            }
            let mut name = self.item_name(item, kind_name, rep, repeated, scope);
            if item.label.is_some() {
                name = self.claim_name(&name, item.span, ctx);
            }
            let mut inner = Scope::named(name.clone());
            let (out, items) = self.framed(|e| e.expand_seq(body, &mut inner, env, current, ctx));
            current = out;
            self.push_structure(Structure::Group { name, kind: kind.clone(), items });
        }
        current
    }

    #[allow(clippy::too_many_arguments)]
    fn expand_stage(
        &mut self,
        item: &Item,
        name: &Ident,
        body: &'a [Item],
        scope: &mut Scope,
        env: &Env,
        input: NodeId,
        ctx: &Ctx,
    ) -> NodeId {
        if !scope.top {
            let d = Diagnostic::error(Code::Misplaced, name.span, "stages are top-level groups and cannot nest")
                .with_label("stage inside a stage or block")
                .with_help("use `{ ... }` to group layers here");
            self.error_at(d, ctx);
            return input;
        }
        if let Some(l) = &item.label {
            self.diags.push(Diagnostic::error(
                Code::Misplaced,
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

    #[allow(clippy::too_many_arguments)]
    fn expand_residual(
        &mut self,
        item: &Item,
        keyword: Span,
        body: &'a [Item],
        shortcut: Option<&'a [Item]>,
        scope: &mut Scope,
        env: &Env,
        input: NodeId,
        ctx: &Ctx,
    ) -> NodeId {
        if let Some(l) = &item.label {
            self.diags.push(Diagnostic::error(
                Code::Misplaced,
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
        let join = self.add_node(name, Op::Add(Add), vec![body_out, short_out], keyword, ctx);
        self.wrap_join(join, |join| Structure::Residual { body: body_items, shortcut: shortcut_items, join });
        join
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
        let join = self.add_node(name, Op::Concat(Concat), outputs, keyword, ctx);
        self.wrap_join(join, |join| Structure::Branches { branches, join });
        join
    }
}
