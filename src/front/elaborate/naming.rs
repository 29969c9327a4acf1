//! Canonical names: the positional counters of a scope, the name of each copy of an item, and
//! the registry that keeps names unique.

use super::{Ctx, Elaborator};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::front::ast::{Item, Span};

#[derive(Clone)]
pub(super) struct Scope {
    pub(super) prefix: String,
    pub(super) top: bool,
    pub(super) shortcut: bool,
    pub(super) pos: u32,
    pub(super) branch: u32,
    pub(super) sc: u32,
    pub(super) cat: u32,
    pub(super) add: u32,
    pub(super) gate: u32,
}

impl Scope {
    pub(super) fn top() -> Scope {
        Scope { prefix: String::new(), top: true, shortcut: false, pos: 0, branch: 0, sc: 0, cat: 0, add: 0, gate: 0 }
    }

    pub(super) fn named(prefix: String) -> Scope {
        Scope { prefix, top: false, ..Scope::top() }
    }

    pub(super) fn join(&self, segment: &str) -> String {
        if self.prefix.is_empty() { segment.to_string() } else { format!("{}.{segment}", self.prefix) }
    }

    /// The name of the next positional item; `kind` names top-level items (`conv1`).
    pub(super) fn next_position(&mut self, kind: &str) -> String {
        self.pos += 1;
        if self.shortcut {
            self.join(&format!("sc{}", self.pos))
        } else if self.top {
            format!("{kind}{}", self.pos)
        } else {
            self.join(&self.pos.to_string())
        }
    }

    pub(super) fn next_join(&mut self, kind: &str) -> String {
        let counter = match kind {
            "cat" => &mut self.cat,
            "gate" => &mut self.gate,
            _ => &mut self.add,
        };
        *counter += 1;
        let n = *counter;
        if n == 1 { self.join(kind) } else { self.join(&format!("{kind}{n}")) }
    }
}

impl Elaborator<'_> {
    /// Names the `rep`-th copy of an item: by label (a root) or by position in `scope`.
    pub(super) fn item_name(&mut self, item: &Item, kind: &str, rep: i64, repeated: bool, scope: &mut Scope) -> String {
        match &item.label {
            Some(l) if repeated => format!("{}.{}", l.name, rep + 1),
            Some(l) => {
                scope.pos += 1; // a labelled item still occupies its position
                l.name.clone()
            }
            None => scope.next_position(kind),
        }
    }

    /// Registers a name; a duplicate is reported and replaced by a private unique name, so that
    /// the layers under a duplicated stage or label are not reported again.
    pub(super) fn claim_name(&mut self, name: &str, span: Span, ctx: &Ctx) -> String {
        if let Some(&first) = self.names.get(name) {
            let d = Diagnostic::error(Code::DuplicateName, span, format!("the name `{name}` is used twice"))
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
}
