//! Source text -> `ast::File`, through the pest grammar in `grammar/cnn.pest`. Bounds what a
//! hostile file can cost before pest sees it: size, nesting depth and the parser's call budget.

use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::front::ast::*;
use pest::Parser;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest_derive::Parser;
use std::num::NonZeroUsize;

#[derive(Parser)]
#[grammar = "../grammar/cnn.pest"]
struct CnnParser;

/// A `.cnn` file describing any published network is a few kilobytes; this is generous.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Braces and parentheses nest at most this deep, which bounds every recursion downstream.
pub const MAX_NESTING: usize = 64;
/// pest's call budget per byte of source. Well-formed files need about 14 calls a byte (the
/// GoogLeNet example: 20,000 for 1,486 bytes; 850 KB of repeated GoogLeNet: under 20 million),
/// so the budget is generous and still bounds the time any input can take: parsing in pest
/// backtracks, and a crafted file could otherwise make it retry work exponentially often.
const PEST_CALLS_PER_BYTE: usize = 32;
const PEST_MIN_CALLS: usize = 100_000;

pub fn parse_file(source: &str) -> Result<File, Vec<Diagnostic>> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(vec![Diagnostic::error(
            Code::Syntax,
            Span::new(0, 0),
            format!("the file is {} bytes; a .cnn file may be at most {MAX_SOURCE_BYTES} bytes", source.len()),
        )]);
    }
    check_nesting(source)?;
    pest::set_call_limit(NonZeroUsize::new(PEST_MIN_CALLS + PEST_CALLS_PER_BYTE * source.len()));
    let mut pairs = CnnParser::parse(Rule::file, source).map_err(|e| vec![syntax_error(source, e)])?;
    let mut builder = Builder { errors: Vec::new() };
    let file_pair = pairs.next().expect("grammar: `file` always yields one pair");
    let items = builder.items(file_pair.into_inner());
    if builder.errors.is_empty() { Ok(File { items }) } else { Err(builder.errors) }
}

fn check_nesting(source: &str) -> Result<(), Vec<Diagnostic>> {
    let mut depth = 0usize;
    let mut in_comment = false;
    let mut in_string = false;
    for (i, c) in source.char_indices() {
        match c {
            // A lone `\r` ends a line for pest's NEWLINE too.
            '\n' | '\r' => {
                in_comment = false;
                in_string = false;
            }
            _ if in_comment => {}
            '"' => in_string = !in_string,
            _ if in_string => {}
            '#' => in_comment = true,
            '{' | '(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(vec![
                        Diagnostic::error(
                            Code::Syntax,
                            Span::new(i, i + 1),
                            format!("braces and parentheses nest deeper than {MAX_NESTING} levels"),
                        )
                        .with_label("too deep"),
                    ]);
                }
            }
            '}' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn describe_rule(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::item | Rule::statement | Rule::layer | Rule::label => "a statement",
        Rule::op_name | Rule::callee | Rule::ident => "a name",
        Rule::body => "`{`",
        Rule::expr | Rule::term | Rule::paren_expr | Rule::call_args => "an expression",
        Rule::int | Rule::dim_int | Rule::repeat_int => "an integer",
        Rule::dims => "dimensions like `3x3`",
        Rule::float => "a number",
        Rule::string | Rule::string_body => "a quoted string",
        Rule::params | Rule::param => "a parameter name",
        Rule::repeat => "a repetition like `x2`",
        Rule::add_op | Rule::mul_op => "an operator",
        Rule::kw_shortcut => "`shortcut`",
        Rule::kw_residual => "`residual`",
        Rule::kw_else => "`else`",
        Rule::condition | Rule::conjunction | Rule::comparison => "a condition",
        Rule::cmp_op => "a comparison",
        Rule::channel_range => "a channel range like `0..c/2`",
        _ => "something else",
    }
}

fn syntax_error(source: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found = match source[pos..].chars().next() {
        None => "end of file".to_string(),
        Some('\n') | Some('\r') => "end of line".to_string(),
        Some(c) => format!("`{c}`"),
    };
    let end = pos + source[pos..].chars().next().map_or(0, char::len_utf8);
    let mut expected: Vec<&str> = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => positives.iter().map(|r| describe_rule(*r)).collect(),
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    expected.sort();
    expected.dedup();
    let message = match (&e.variant, expected.as_slice()) {
        (ErrorVariant::CustomError { message }, _) if message == "call limit reached" => {
            "the parser gave up here: the file's structure takes too long to parse (unclosed braces?)".to_string()
        }
        (ErrorVariant::CustomError { message }, _) => message.clone(),
        (_, []) => format!("syntax error: unexpected {found}"),
        (_, [one]) => format!("syntax error: expected {one}, found {found}"),
        (_, many) => format!("syntax error: expected one of {}, found {found}", many.join(", ")),
    };
    let mut d = Diagnostic::error(Code::Syntax, Span::new(pos, end), message).with_label("unexpected here");
    if found == "end of file" {
        if let Some(open) = unclosed_brace(source) {
            d = d
                .with_secondary(Span::new(open, open + 1), "this `{` is never closed")
                .with_help("add the missing `}`");
        }
    }
    d
}

/// The innermost `{` left open at the end of the file, ignoring comments and strings.
fn unclosed_brace(source: &str) -> Option<usize> {
    let mut open = Vec::new();
    let (mut in_comment, mut in_string) = (false, false);
    for (i, c) in source.char_indices() {
        match c {
            '\n' | '\r' => (in_comment, in_string) = (false, false),
            _ if in_comment => {}
            '"' => in_string = !in_string,
            _ if in_string => {}
            '#' => in_comment = true,
            '{' => open.push(i),
            '}' => {
                open.pop();
            }
            _ => {}
        }
    }
    open.pop()
}

struct Builder {
    errors: Vec<Diagnostic>,
}

/// The pair's span without the trailing blanks and comment pest's implicit whitespace leaves in
/// it, so that underlines stop at the last character of the construct (and a trailing comment
/// belongs to no statement).
fn span_of(p: &Pair<Rule>) -> Span {
    let start = p.as_span().start();
    Span::new(start, start + code_len(p.as_str()))
}

/// Length of `text` without trailing blanks and a trailing `#` comment on its last line.
fn code_len(text: &str) -> usize {
    let line_start = text.rfind('\n').map_or(0, |i| i + 1);
    let mut in_string = false;
    let mut end = text.len();
    for (i, c) in text[line_start..].char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => {
                end = line_start + i;
                break;
            }
            _ => {}
        }
    }
    text[..end].trim_end_matches([' ', '\t']).len()
}

impl Builder {
    fn items<'i>(&mut self, pairs: impl Iterator<Item = Pair<'i, Rule>>) -> Vec<Item> {
        pairs.filter(|p| p.as_rule() == Rule::item).map(|p| self.item(p)).collect()
    }

    fn body(&mut self, pair: Pair<Rule>) -> Vec<Item> {
        self.items(pair.into_inner())
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Ident { name: pair.as_str().to_string(), span: span_of(&pair) }
    }

    fn item(&mut self, pair: Pair<Rule>) -> Item {
        let span = span_of(&pair);
        let mut label = None;
        let mut stmt = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::label => label = Some(self.ident(p)),
                _ => stmt = Some(self.statement(p)),
            }
        }
        Item { label, stmt: stmt.expect("grammar: an item holds a statement"), span }
    }

    /// `shortcut { ... } residual { ... }`, or a shortcut with no residual: an error.
    fn shortcut_first(&mut self, mut inner: pest::iterators::Pairs<Rule>) -> Stmt {
        let shortcut_keyword = span_of(&inner.next().expect("grammar: shortcut keyword"));
        let shortcut = self.body(inner.next().expect("grammar: shortcut body"));
        let Some(residual_keyword) = inner.next() else {
            self.errors.push(
                Diagnostic::error(
                    Code::Misplaced,
                    shortcut_keyword,
                    "`shortcut` must come right after a `residual { ... }`",
                )
                .with_label("no residual before this shortcut")
                .with_help(
                    "write `residual { ... } shortcut { ... }`, or `shortcut { ... } residual { ... }` \
                         when the projection's weights come first",
                ),
            );
            return Stmt::Group { body: shortcut, repeat: None };
        };
        let keyword = span_of(&residual_keyword);
        let body = self.body(inner.next().expect("grammar: residual body"));
        Stmt::Residual { keyword, body, shortcut: Some(shortcut), shortcut_first: true }
    }

    fn statement(&mut self, pair: Pair<Rule>) -> Stmt {
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        match rule {
            Rule::stage => {
                inner.next(); // keyword
                let name = self.ident(inner.next().expect("grammar: stage name"));
                let body = self.body(inner.next().expect("grammar: stage body"));
                Stmt::Stage { name, body }
            }
            Rule::block_def => {
                inner.next();
                let name = self.ident(inner.next().expect("grammar: block name"));
                let mut params = Vec::new();
                let mut body = Vec::new();
                for p in inner {
                    match p.as_rule() {
                        Rule::params => {
                            for param in p.into_inner() {
                                let mut parts = param.into_inner();
                                let name = self.ident(parts.next().expect("grammar: param name"));
                                let default = parts.next().map(|e| self.expr(e));
                                params.push(Param { name, default });
                            }
                        }
                        Rule::body => body = self.body(p),
                        _ => {}
                    }
                }
                Stmt::Block(BlockDef { name, params, body })
            }
            Rule::branch => {
                let keyword = span_of(&inner.next().expect("grammar: branch keyword"));
                let mut next = inner.next().expect("grammar: branch body");
                let mut range = None;
                if next.as_rule() == Rule::channel_range {
                    let mut ends = next.into_inner();
                    let lo = self.expr(ends.next().expect("grammar: range start"));
                    let hi = self.expr(ends.next().expect("grammar: range end"));
                    range = Some((lo, hi));
                    next = inner.next().expect("grammar: branch body");
                }
                Stmt::Branch { keyword, range, body: self.body(next) }
            }
            Rule::gate => {
                let keyword = span_of(&inner.next().expect("grammar: gate keyword"));
                Stmt::Gate { keyword, body: self.body(inner.next().expect("grammar: gate body")) }
            }
            Rule::residual => {
                let keyword = span_of(&inner.next().expect("grammar: residual keyword"));
                let body = self.body(inner.next().expect("grammar: residual body"));
                let shortcut = inner.find(|p| p.as_rule() == Rule::body).map(|p| self.body(p));
                Stmt::Residual { keyword, body, shortcut, shortcut_first: false }
            }
            Rule::shortcut_first => self.shortcut_first(inner),
            Rule::if_stmt => self.if_stmt(inner),
            Rule::group => {
                let body = self.body(inner.next().expect("grammar: group body"));
                let repeat = inner.next().map(|p| self.repeat(p));
                Stmt::Group { body, repeat }
            }
            Rule::call => {
                let callee = self.ident(inner.next().expect("grammar: callee"));
                let mut args = Vec::new();
                let mut repeat = None;
                for p in inner {
                    match p.as_rule() {
                        Rule::call_args => args = p.into_inner().map(|e| self.expr(e)).collect(),
                        Rule::repeat => repeat = Some(self.repeat(p)),
                        _ => {}
                    }
                }
                Stmt::Call { callee, args, repeat }
            }
            Rule::layer => {
                let op = self.ident(inner.next().expect("grammar: op name"));
                let mut args = Vec::new();
                let mut repeat = None;
                for p in inner {
                    if p.as_rule() == Rule::repeat {
                        repeat = Some(self.repeat(p));
                    } else {
                        args.push(self.arg(p));
                    }
                }
                Stmt::Layer { op, args, repeat }
            }
            other => unreachable!("grammar: unexpected statement rule {other:?}"),
        }
    }

    /// `if COND { } else { }`; `else if` nests as the else body's only item.
    fn if_stmt(&mut self, mut inner: pest::iterators::Pairs<Rule>) -> Stmt {
        let keyword = span_of(&inner.next().expect("grammar: if keyword"));
        let cond = self.condition(inner.next().expect("grammar: condition"));
        let then = self.body(inner.next().expect("grammar: if body"));
        let otherwise = match (inner.next(), inner.next()) {
            (Some(_else), Some(p)) if p.as_rule() == Rule::if_stmt => {
                let span = span_of(&p);
                Some(vec![Item { label: None, stmt: self.if_stmt(p.into_inner()), span }])
            }
            (Some(_else), Some(p)) => Some(self.body(p)),
            _ => None,
        };
        Stmt::If { keyword, cond, then, otherwise }
    }

    fn condition(&mut self, pair: Pair<Rule>) -> Condition {
        let span = span_of(&pair);
        let any = pair
            .into_inner()
            .map(|conj| {
                conj.into_inner()
                    .map(|cmp| {
                        let mut parts = cmp.into_inner();
                        let lhs = self.expr(parts.next().expect("grammar: comparison"));
                        let rhs = parts.next().map(|op| {
                            let op = match op.as_str() {
                                "==" => CmpOp::Eq,
                                "!=" => CmpOp::Ne,
                                "<" => CmpOp::Lt,
                                "<=" => CmpOp::Le,
                                ">" => CmpOp::Gt,
                                _ => CmpOp::Ge,
                            };
                            (op, self.expr(parts.next().expect("grammar: comparison rhs")))
                        });
                        Comparison { lhs, rhs }
                    })
                    .collect()
            })
            .collect();
        Condition { any, span }
    }

    fn repeat(&mut self, pair: Pair<Rule>) -> Repeat {
        let span = span_of(&pair);
        let inner = pair.into_inner().next().expect("grammar: repeat count");
        let count = match inner.as_rule() {
            Rule::repeat_int => self.int_expr(&inner),
            _ => self.paren(inner),
        };
        Repeat { count, span }
    }

    fn arg(&mut self, pair: Pair<Rule>) -> Arg {
        let span = span_of(&pair);
        let kind = match pair.as_rule() {
            Rule::dims => ArgKind::Dims(
                pair.into_inner()
                    .map(|p| match p.as_rule() {
                        Rule::dim_int => self.int_expr(&p),
                        _ => self.paren(p),
                    })
                    .collect(),
            ),
            Rule::float => match pair.as_str().parse::<f64>() {
                Ok(v) if v.is_finite() => ArgKind::Float(v),
                _ => {
                    self.errors.push(
                        Diagnostic::error(
                            Code::BadArgument,
                            span,
                            format!("`{}` is not a finite number", pair.as_str()),
                        )
                        .with_label("out of range"),
                    );
                    ArgKind::Float(0.0)
                }
            },
            Rule::string => ArgKind::Str(pair.into_inner().next().map_or(String::new(), |p| p.as_str().to_string())),
            Rule::word => ArgKind::Word(pair.as_str().to_string()),
            Rule::expr => ArgKind::Expr(self.expr(pair)),
            other => unreachable!("grammar: unexpected argument rule {other:?}"),
        };
        Arg { kind, span }
    }

    /// `( expr )`: the parentheses are kept as a factor so the span covers them.
    fn paren(&mut self, pair: Pair<Rule>) -> Expr {
        let span = span_of(&pair);
        let inner = self.expr(pair.into_inner().next().expect("grammar: parenthesised expression"));
        Expr { first: Term { first: Factor::Paren(Box::new(inner)), rest: Vec::new() }, rest: Vec::new(), span }
    }

    fn int_value(&mut self, pair: &Pair<Rule>) -> i64 {
        match pair.as_str().parse::<i64>() {
            Ok(v) => v,
            Err(_) => {
                self.errors.push(
                    Diagnostic::error(
                        Code::BadArgument,
                        span_of(pair),
                        format!("the integer {} is too large", pair.as_str()),
                    )
                    .with_label("does not fit in 64 bits"),
                );
                0
            }
        }
    }

    fn int_expr(&mut self, pair: &Pair<Rule>) -> Expr {
        let span = span_of(pair);
        let value = self.int_value(pair);
        Expr { first: Term { first: Factor::Int(value, span), rest: Vec::new() }, rest: Vec::new(), span }
    }

    fn expr(&mut self, pair: Pair<Rule>) -> Expr {
        let span = span_of(&pair);
        let mut inner = pair.into_inner();
        let first = self.term(inner.next().expect("grammar: expression term"));
        let mut rest = Vec::new();
        while let (Some(op), Some(term)) = (inner.next(), inner.next()) {
            let op = if op.as_str() == "+" { AddOp::Add } else { AddOp::Sub };
            rest.push((op, self.term(term)));
        }
        Expr { first, rest, span }
    }

    fn term(&mut self, pair: Pair<Rule>) -> Term {
        let mut inner = pair.into_inner();
        let first = self.factor(inner.next().expect("grammar: term factor"));
        let mut rest = Vec::new();
        while let (Some(op), Some(factor)) = (inner.next(), inner.next()) {
            let op = match op.as_str() {
                "*" => MulOp::Mul,
                "/" => MulOp::Div,
                _ => MulOp::Rem,
            };
            rest.push((op, self.factor(factor)));
        }
        Term { first, rest }
    }

    fn factor(&mut self, pair: Pair<Rule>) -> Factor {
        match pair.as_rule() {
            Rule::int => Factor::Int(self.int_value(&pair), span_of(&pair)),
            Rule::ident => Factor::Var(self.ident(pair)),
            Rule::in_ref => {
                let dim = match pair.as_str().as_bytes().last() {
                    Some(b'c') => InputDim::C,
                    Some(b'h') => InputDim::H,
                    _ => InputDim::W,
                };
                Factor::Input(dim, span_of(&pair))
            }
            _ => Factor::Paren(Box::new(self.expr(pair.into_inner().next().expect("grammar: paren")))),
        }
    }
}
