//! `cnnc fmt`: the canonical layout of a `.cnn` file.
//!
//! Rules (also in README.md):
//! - two spaces of indentation per level; single spaces between tokens; `a + b` and `a - b`
//!   spaced, `a*b`, `a/b` and `a%b` tight; `name(a, b)` for calls and blocks; `label: item`;
//! - a statement with a body (stage, block, branch, gate, group, residual, if) stays on one
//!   line, `stage conv1 { conv 3x3 64 relu x2; maxpool 2 }`, when its body holds only layers,
//!   calls and such one-line `if`s, carries no comment, and the line fits in 100 columns;
//!   otherwise its items go one per line, indented, and the closing brace on a line of its own;
//!   when one arm of an `if` takes several lines, all its arms do;
//! - `shortcut { ... }` follows the residual's closing brace on the same line if the line fits,
//!   else it starts the next line (and the same for `residual` after a `shortcut` written
//!   first); `else` follows the closing brace of its `if`;
//! - comments are kept: a comment on a line of its own stays above the statement it preceded
//!   (or before the closing brace), a trailing comment stays at the end of its statement's
//!   line; one blank line between statements is kept, several become one;
//! - numbers and strings are printed as written (`0.0001` stays `0.0001`).
//!
//! The output is idempotent and has the same meaning: the same layers, names and costs.

use crate::analysis::diag::Diagnostic;
use crate::front::ast::*;
use crate::front::parse::parse_file;

const WIDTH: usize = 100;

#[derive(Clone, Debug)]
struct Comment {
    start: usize,
    text: String,
    /// Code precedes it on its line.
    trailing: bool,
}

/// Every `#` comment outside strings, with its position.
fn comments(source: &str) -> Vec<Comment> {
    let mut out = Vec::new();
    let mut line_has_code = false;
    let mut in_string = false;
    let mut iter = source.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        match c {
            '\n' => {
                line_has_code = false;
                in_string = false;
            }
            '"' => {
                in_string = !in_string;
                line_has_code = true;
            }
            _ if in_string => {}
            '#' => {
                let end = source[i..].find('\n').map_or(source.len(), |e| i + e);
                out.push(Comment { start: i, text: source[i..end].trim_end().to_string(), trailing: line_has_code });
                while iter.peek().is_some_and(|&(j, _)| j < end) {
                    iter.next();
                }
            }
            c if !c.is_whitespace() => line_has_code = true,
            _ => {}
        }
    }
    out
}

struct Printer<'s> {
    source: &'s str,
    comments: Vec<Comment>,
    used: Vec<bool>,
    /// The next body is printed on several lines even if it would fit on one.
    force_multiline: bool,
}

/// Whether an item may share a one-line body: a layer, a call, or an `if` of such.
fn simple_item(i: &Item) -> bool {
    match &i.stmt {
        Stmt::Layer { .. } | Stmt::Call { .. } => true,
        Stmt::If { then, otherwise, .. } => {
            then.iter().all(simple_item) && otherwise.as_deref().unwrap_or(&[]).iter().all(simple_item)
        }
        _ => false,
    }
}

fn line_of(source: &str, pos: usize) -> usize {
    source[..pos.min(source.len())].matches('\n').count()
}

impl<'s> Printer<'s> {
    fn text(&self, span: Span) -> &'s str {
        self.source.get(span.start..span.end).unwrap_or("")
    }

    /// Own-line comments before `pos` not yet printed, and after `after`.
    fn take_leading(&mut self, after: usize, pos: usize) -> Vec<String> {
        let mut out = Vec::new();
        for (i, c) in self.comments.iter().enumerate() {
            if !self.used[i] && !c.trailing && c.start >= after && c.start < pos {
                self.used[i] = true;
                out.push(c.text.clone());
            }
        }
        out
    }

    /// A trailing comment on the line where `span` ends.
    fn take_trailing(&mut self, span: Span) -> Option<String> {
        let line = line_of(self.source, span.end.saturating_sub(1));
        for (i, c) in self.comments.iter().enumerate() {
            if !self.used[i] && c.trailing && c.start >= span.end && line_of(self.source, c.start) == line {
                self.used[i] = true;
                return Some(c.text.clone());
            }
        }
        None
    }

    /// Whether a comment not yet printed lies inside `span`.
    fn has_comment_within(&self, span: Span) -> bool {
        self.comments.iter().zip(&self.used).any(|(c, used)| !used && c.start > span.start && c.start < span.end)
    }

    /// A list in parentheses (block parameters, call arguments) from `open` (the `(`) to `close`
    /// (the `)`), one element per line when comments stand inside it, so that each comment
    /// stays beside the element it follows. `None` when there are no comments: one line.
    fn commented_list(&mut self, open: usize, close: usize, elems: &[(Span, String)], indent: usize) -> Option<String> {
        if !self.has_comment_within(Span::new(open, close)) {
            return None;
        }
        let pad = "  ".repeat(indent + 1);
        let mut out = String::from("(\n");
        let mut prev_end = open + 1;
        for (k, (span, text)) in elems.iter().enumerate() {
            for c in self.take_leading(prev_end, span.start) {
                out += &format!("{pad}{c}\n");
            }
            out += &format!("{pad}{text},");
            let next = elems.get(k + 1).map_or(close, |(s, _)| s.start);
            let line = line_of(self.source, span.end.saturating_sub(1));
            for (i, c) in self.comments.iter().enumerate() {
                if !self.used[i] && c.start >= span.end && c.start < next && line_of(self.source, c.start) == line {
                    self.used[i] = true;
                    out += &format!("  {}", c.text);
                }
            }
            out.push('\n');
            prev_end = span.end;
        }
        for c in self.take_leading(prev_end, close) {
            out += &format!("{pad}{c}\n");
        }
        Some(out + &"  ".repeat(indent) + ")")
    }

    /// The position of the `)` that closes the `(` at or after `from`, skipping comments.
    fn closing_paren(&self, from: usize) -> usize {
        self.closing(from, '(', ')')
    }

    /// The position of the `close` matching the first `open` at or after `from`, skipping
    /// comments and strings (the end of the source if there is none).
    fn closing(&self, from: usize, open: char, close: char) -> usize {
        let mut depth = 0usize;
        let (mut in_comment, mut in_string) = (false, false);
        for (i, c) in self.source[from..].char_indices() {
            match c {
                '\n' => (in_comment, in_string) = (false, false),
                _ if in_comment => {}
                '"' => in_string = !in_string,
                _ if in_string => {}
                '#' => in_comment = true,
                c if c == open => depth += 1,
                c if c == close && depth <= 1 => return from + i,
                c if c == close => depth -= 1,
                _ => {}
            }
        }
        self.source.len()
    }

    /// The span from `start` to just after the `}` closing the first body at or after `from`.
    fn through_body(&self, start: usize, from: usize) -> Span {
        Span::new(start, (self.closing(from, '{', '}') + 1).min(self.source.len()))
    }

    /// Whether a blank line separates `prev_end` from `start` in the source (comments aside).
    fn blank_between(&self, prev_end: usize, start: usize) -> bool {
        let gap = self.source.get(prev_end..start).unwrap_or("");
        let lines: Vec<&str> = gap.split('\n').collect();
        // Whole lines strictly between the previous statement's line and this one's.
        lines.len() > 2 && lines[1..lines.len() - 1].iter().any(|l| l.trim().is_empty())
    }

    fn items(&mut self, items: &[Item], indent: usize, body_start: usize, body_end: usize, out: &mut String) {
        let pad = "  ".repeat(indent);
        let mut prev_end = body_start;
        for (k, item) in items.iter().enumerate() {
            let leading = self.take_leading(prev_end, item.span.start);
            if k > 0 && self.blank_between(prev_end, item.span.start) {
                out.push('\n');
            }
            for c in leading {
                out.push_str(&format!("{pad}{c}\n"));
            }
            let text = self.item(item, indent);
            out.push_str(&pad);
            out.push_str(&text);
            if let Some(c) = self.take_trailing(item.span) {
                out.push_str(&format!("  {c}"));
            }
            out.push('\n');
            prev_end = item.span.end;
        }
        for c in self.take_leading(prev_end, body_end) {
            out.push_str(&format!("{pad}{c}\n"));
        }
    }

    /// The statement without indentation; multi-line forms contain newlines.
    fn item(&mut self, item: &Item, indent: usize) -> String {
        let label = item.label.as_ref().map_or(String::new(), |l| format!("{}: ", l.name));
        let stmt = match &item.stmt {
            Stmt::Layer { op, args, repeat } => {
                let mut s = op.name.clone();
                for a in args {
                    s.push(' ');
                    s.push_str(&self.arg(a));
                }
                s + &repeat_text(repeat)
            }
            Stmt::Call { callee, args, repeat } => {
                let (open, close) = (callee.span.end, self.closing_paren(callee.span.end));
                let elems: Vec<(Span, String)> = args.iter().map(|a| (a.span, expr_text(a))).collect();
                let list = self.commented_list(open, close, &elems, indent).unwrap_or_else(|| {
                    format!("({})", elems.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(", "))
                });
                format!("{}{list}{}", callee.name, repeat_text(repeat))
            }
            Stmt::Stage { name, body } => self.with_body(&format!("stage {}", name.name), body, item.span, indent, ""),
            Stmt::Block(def) => {
                let elems: Vec<(Span, String)> = def
                    .params
                    .iter()
                    .map(|p| match &p.default {
                        Some(d) => (p.name.span.to(d.span), format!("{} = {}", p.name.name, expr_text(d))),
                        None => (p.name.span, p.name.name.clone()),
                    })
                    .collect();
                let (open, close) = (def.name.span.end, self.closing_paren(def.name.span.end));
                let list = self.commented_list(open, close, &elems, indent).unwrap_or_else(|| {
                    format!("({})", elems.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(", "))
                });
                // The body's span starts after the parameters (a comment in them may hold a `{`).
                let span = Span::new(close.min(item.span.end), item.span.end);
                self.with_body(&format!("block {}{list}", def.name.name), &def.body, span, indent, "")
            }
            Stmt::Branch { body, range: None, .. } => self.with_body("branch", body, item.span, indent, ""),
            Stmt::Branch { body, range: Some((a, b)), .. } => {
                let head = format!("branch {}..{}", expr_text(a), expr_text(b));
                let span = Span::new(b.span.end, item.span.end);
                self.with_body(&head, body, span, indent, "")
            }
            Stmt::Gate { body, .. } => self.with_body("gate", body, item.span, indent, ""),
            Stmt::If { .. } => self.if_text(item, indent, false),
            Stmt::Group { body, repeat } => self.with_body("", body, item.span, indent, &repeat_text(repeat)),
            Stmt::Residual { body, shortcut, shortcut_first, .. } => {
                let first = self.through_body(item.span.start, item.span.start);
                let second = Span::new(first.end, item.span.end);
                let (first_kw, first_body, second_kw, second_body) = match (shortcut, *shortcut_first) {
                    (Some(sc), true) => ("shortcut", &sc[..], "residual", &body[..]),
                    (Some(sc), false) => ("residual", &body[..], "shortcut", &sc[..]),
                    (None, _) => return label + &self.with_body("residual", body, item.span, indent, ""),
                };
                let head = self.with_body(first_kw, first_body, first, indent, "");
                // A comment ending the first part's line stays there; the second part moves down.
                let comment = self.take_trailing(first);
                let tail = self.with_body(second_kw, second_body, second, indent, "");
                let pad = "  ".repeat(indent);
                // On the first part's line when it all fits, else on the next line.
                let last_line = head.rsplit('\n').next().unwrap_or("");
                let first_line = tail.split('\n').next().unwrap_or("");
                match comment {
                    Some(c) => format!("{head}  {c}\n{pad}{tail}"),
                    None if 2 * indent + label.len() + last_line.len() + 1 + first_line.len() <= WIDTH => {
                        format!("{head} {tail}")
                    }
                    None => format!("{head}\n{pad}{tail}"),
                }
            }
        };
        label + &stmt
    }

    /// `if COND { ... } else if ... { ... } else { ... }`, `else` on the closing brace's line.
    /// When one arm takes several lines, every arm does (`force` passes that down an `else if`).
    fn if_text(&mut self, item: &Item, indent: usize, force: bool) -> String {
        let Stmt::If { cond, then, otherwise, .. } = &item.stmt else { unreachable!("if_text of an if") };
        let head = format!("if {}", condition_text(cond));
        let then_span = self.through_body(cond.span.end, cond.span.end);
        self.force_multiline = force;
        let mut out = self.with_body(&head, then, then_span, indent, "");
        let multi = out.contains('\n');
        if let Some(other) = otherwise {
            let rest = Span::new(then_span.end, item.span.end);
            let else_if = match other.as_slice() {
                [inner @ Item { stmt: Stmt::If { .. }, .. }]
                    if !self.text(Span::new(rest.start, inner.span.start)).contains('{') =>
                {
                    Some(inner)
                }
                _ => None,
            };
            out += &match else_if {
                Some(inner) => format!(" else {}", self.if_text(inner, indent, multi)),
                None => {
                    self.force_multiline = multi;
                    format!(" {}", self.with_body("else", other, rest, indent, ""))
                }
            };
        }
        out
    }

    /// `head { ... } tail` on one line when the rules allow, else multi-line.
    fn with_body(&mut self, head: &str, body: &[Item], span: Span, indent: usize, tail: &str) -> String {
        let open = if head.is_empty() { "{".to_string() } else { format!("{head} {{") };
        if body.is_empty() && !self.has_comment_within(span) {
            return format!("{open} }}{tail}");
        }
        let forced = std::mem::take(&mut self.force_multiline);
        if !forced && body.iter().all(simple_item) && !self.has_comment_within(span) {
            let parts: Vec<String> = body.iter().map(|i| self.item(i, indent + 1)).collect();
            let line = format!("{open} {} }}{tail}", parts.join("; "));
            if 2 * indent + line.len() <= WIDTH && !line.contains('\n') {
                return line;
            }
        }
        let mut inner = String::new();
        let body_start = self.text(span).find('{').map_or(span.start, |o| span.start + o + 1);
        // A comment straight after the opening brace stays there (one after a nested opening
        // brace on the same line belongs to that one).
        let next_code = self.source[body_start..].find(|c: char| c != ' ' && c != '\t').map(|o| body_start + o);
        let brace_comment = next_code.is_some_and(|at| self.source[at..].starts_with('#'));
        let open = match brace_comment.then(|| self.take_trailing(Span::new(span.start, body_start))).flatten() {
            Some(c) => format!("{open}  {c}"),
            None => open,
        };
        self.items(body, indent + 1, body_start, span.end, &mut inner);
        format!("{open}\n{inner}{}}}{tail}", "  ".repeat(indent))
    }

    fn arg(&self, a: &Arg) -> String {
        match &a.kind {
            ArgKind::Dims(ds) => ds.iter().map(dim_text).collect::<Vec<_>>().join("x"),
            ArgKind::Expr(e) => expr_text(e),
            // Numbers, strings and words as written.
            ArgKind::Float(_) | ArgKind::Str(_) | ArgKind::Word(_) => self.text(a.span).to_string(),
        }
    }
}

fn repeat_text(r: &Option<Repeat>) -> String {
    match r {
        None => String::new(),
        Some(r) => match (&r.count.first.first, r.count.rest.is_empty() && r.count.first.rest.is_empty()) {
            (Factor::Int(n, _), true) => format!(" x{n}"),
            _ => format!(" x({})", expr_text(strip_parens(&r.count))),
        },
    }
}

/// `(e)` -> `e`, for contexts that add their own parentheses.
fn strip_parens(e: &Expr) -> &Expr {
    match (&e.first.first, e.rest.is_empty() && e.first.rest.is_empty()) {
        (Factor::Paren(inner), true) => inner,
        _ => e,
    }
}

/// A dimension: an integer, or a parenthesised expression.
fn dim_text(e: &Expr) -> String {
    match (&e.first.first, e.rest.is_empty() && e.first.rest.is_empty()) {
        (Factor::Int(n, _), true) => n.to_string(),
        _ => format!("({})", expr_text(strip_parens(e))),
    }
}

fn expr_text(e: &Expr) -> String {
    let mut s = term_text(&e.first);
    for (op, t) in &e.rest {
        s += if *op == AddOp::Add { " + " } else { " - " };
        s += &term_text(t);
    }
    s
}

fn term_text(t: &Term) -> String {
    let mut s = factor_text(&t.first);
    for (op, f) in &t.rest {
        s += match op {
            MulOp::Mul => "*",
            MulOp::Div => "/",
            MulOp::Rem => "%",
        };
        s += &factor_text(f);
    }
    s
}

fn condition_text(c: &Condition) -> String {
    let comparison = |c: &Comparison| match &c.rhs {
        Some((op, rhs)) => format!("{} {} {}", expr_text(&c.lhs), op.symbol(), expr_text(rhs)),
        None => expr_text(&c.lhs),
    };
    c.any.iter().map(|all| all.iter().map(comparison).collect::<Vec<_>>().join(" && ")).collect::<Vec<_>>().join(" || ")
}

fn factor_text(f: &Factor) -> String {
    match f {
        Factor::Int(n, _) => n.to_string(),
        Factor::Input(dim, _) => format!("in.{}", dim.letter()),
        Factor::Var(id) => id.name.clone(),
        Factor::Paren(e) => format!("({})", expr_text(e)),
    }
}

/// Formats a whole file, or returns the parse errors. Line endings become `\n`: a lone `\r`
/// ends a line for the parser, so it must end comments here too.
pub fn format_source(source: &str) -> Result<String, Vec<Diagnostic>> {
    let normalised = source.replace("\r\n", "\n").replace('\r', "\n");
    let source = normalised.as_str();
    let file = parse_file(source)?;
    let comments = comments(source);
    let used = vec![false; comments.len()];
    let mut p = Printer { source, comments, used, force_multiline: false };
    let mut out = String::new();
    p.items(&file.items, 0, 0, source.len(), &mut out);
    // Anything left (a comment the rules above could not place) goes at the end, not lost.
    for (i, c) in p.comments.iter().enumerate() {
        if !p.used[i] {
            out.push_str(&c.text);
            out.push('\n');
        }
    }
    Ok(out)
}
