//! Conditionals and misplaced statements met while expanding a sequence: `if` arms chosen by
//! their conditions (the other arm's blocks still count as used), and a `shortcut` away from
//! any residual.

use super::{Ctx, Elaborator};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::front::ast::*;
use crate::front::expr::{Env, eval_condition};

impl<'a> Elaborator<'a> {
    /// The items of `items` with each `if` replaced by the items of the arm its condition
    /// chooses (an `if` whose condition has no value stays, to become an invalid node). Blocks
    /// instantiated only in the other arm count as used.
    pub(super) fn choose(&mut self, items: &[&'a Item], env: &Env, ctx: &Ctx) -> Vec<&'a Item> {
        let mut out = Vec::with_capacity(items.len());
        for &item in items {
            let Stmt::If { cond, then, otherwise, .. } = &item.stmt else {
                out.push(item);
                continue;
            };
            if let Some(l) = &item.label {
                let d = Diagnostic::error(Code::Misplaced, l.span, "an `if` cannot be labelled")
                    .with_label("label on a conditional")
                    .with_help("label the layers or blocks inside it");
                self.error_at(d, ctx);
            }
            let other = otherwise.as_deref().unwrap_or(&[]);
            match eval_condition(cond, env) {
                Ok(holds) => {
                    let (taken, skipped) = if holds { (&then[..], other) } else { (other, &then[..]) };
                    self.mark_called(skipped);
                    let taken: Vec<&Item> = taken.iter().collect();
                    out.extend(self.choose(&taken, env, ctx));
                }
                Err(d) => {
                    self.report(d, ctx);
                    self.mark_called(then);
                    self.mark_called(other);
                    out.push(item);
                }
            }
        }
        out
    }

    /// Counts the blocks instantiated in `items` as used (an arm an `if` did not take).
    fn mark_called(&mut self, items: &[Item]) {
        for item in items {
            match &item.stmt {
                Stmt::Call { callee, .. } => {
                    self.instantiated.insert(callee.name.clone());
                }
                Stmt::Stage { body, .. }
                | Stmt::Branch { body, .. }
                | Stmt::Gate { body, .. }
                | Stmt::Group { body, .. }
                | Stmt::Block(BlockDef { body, .. }) => self.mark_called(body),
                Stmt::Residual { body, shortcut, .. } => {
                    self.mark_called(body);
                    self.mark_called(shortcut.as_deref().unwrap_or(&[]));
                }
                Stmt::If { then, otherwise, .. } => {
                    self.mark_called(then);
                    self.mark_called(otherwise.as_deref().unwrap_or(&[]));
                }
                Stmt::Layer { .. } => {}
            }
        }
    }
}
