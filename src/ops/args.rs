//! Layer arguments: evaluating them in a block's environment, splitting them into positional
//! arguments and options by an op's `OpSpec`, and the typed accessors op builders use. Unknown
//! options are reported with the closest valid spelling.

use super::Op;
use crate::analysis::codes::Code;
use crate::analysis::diag::{Diagnostic, closest};
use crate::front::ast::{Arg, ArgKind, Ident, Span};
use crate::front::expr::{Env, eval_expr};

/// The largest value accepted for any size in the language. Larger values are certainly
/// mistakes, and keeping every size below 2^31 lets the cost arithmetic stay comfortably in u64.
pub(crate) const MAX_SIZE: i64 = (1 << 31) - 1;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    Dims(Vec<i64>),
    Float(f64),
    Str(String),
    Word(String),
    /// A bare name that is not a block parameter: an option keyword, `valid`, a network name.
    Name(String),
}

#[derive(Clone, Debug)]
pub(crate) struct ArgValue {
    pub(crate) value: Value,
    pub(crate) span: Span,
}

/// Evaluates the arguments of a statement in the current block environment. A bare name that is
/// an option of this op stays a name even if a block parameter has the same spelling: in
/// `lrn 5 k 2` inside `block conv_bn(c, k)`, `k` is LRN's option.
pub(crate) fn eval_args(
    args: &[Arg],
    env: &Env,
    is_option: impl Fn(&str) -> bool,
) -> Result<Vec<ArgValue>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut failed = false;
    for arg in args {
        let value = match &arg.kind {
            ArgKind::Float(f) => Ok(Value::Float(*f)),
            ArgKind::Str(s) => Ok(Value::Str(s.clone())),
            ArgKind::Word(w) => Ok(Value::Word(w.clone())),
            ArgKind::Dims(ds) => ds.iter().map(|e| eval_expr(e, env)).collect::<Result<_, _>>().map(Value::Dims),
            ArgKind::Expr(e) => match e.as_ident() {
                Some(id) if env.get(&id.name).is_none() || is_option(&id.name) => Ok(Value::Name(id.name.clone())),
                _ => eval_expr(e, env).map(Value::Int),
            },
        };
        match value {
            Ok(value) => out.push(ArgValue { value, span: arg.span }),
            // No diagnostic: the value depends on an error reported elsewhere.
            Err(d) => {
                failed = true;
                errors.extend(d);
            }
        }
    }
    if failed { Err(errors) } else { Ok(out) }
}

/// What an option or positional argument takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Takes {
    /// Nothing: the option is a flag.
    Flag,
    Int,
    /// One integer for both dimensions, or `HxW`.
    Pair,
    Float,
    /// Like `Pair`, or the word `valid` (no padding).
    Pad,
}

pub(crate) struct OptSpec {
    pub(crate) name: &'static str,
    pub(crate) takes: Takes,
}

/// An op's entry in the catalogue: its keyword, arguments, options, an example for help lines,
/// and the builder that turns checked arguments into an `Op`.
pub(crate) struct OpSpec {
    pub(crate) name: &'static str,
    pub(crate) positional: &'static [(&'static str, Takes)],
    /// How many of the positional arguments must be given.
    pub(crate) required: usize,
    pub(crate) options: &'static [OptSpec],
    pub(crate) example: &'static str,
    /// `None` when an argument was wrong (its diagnostic is in `errors`).
    pub(crate) build: fn(&Parsed, &mut Vec<Diagnostic>) -> Option<Op>,
}

pub(crate) const fn opt(name: &'static str, takes: Takes) -> OptSpec {
    OptSpec { name, takes }
}

/// Positional and option values of one statement, checked against its spec.
pub(crate) struct Parsed {
    pub(crate) positional: Vec<ArgValue>,
    options: Vec<(&'static str, Option<ArgValue>, Span)>,
}

impl Parsed {
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _, _)| *n == name)
    }

    pub(crate) fn option(&self, name: &str) -> Option<&ArgValue> {
        self.options.iter().find(|(n, _, _)| *n == name).and_then(|(_, v, _)| v.as_ref())
    }

    fn option_span(&self, name: &str) -> Option<Span> {
        self.options.iter().find(|(n, _, _)| *n == name).map(|&(_, _, s)| s)
    }

    /// Positional argument `i`, if given.
    pub(crate) fn pos(&self, i: usize) -> Option<&ArgValue> {
        self.positional.get(i)
    }
}

pub(crate) fn split_args(
    spec: &OpSpec,
    op: &Ident,
    args: Vec<ArgValue>,
    env: &Env,
    errors: &mut Vec<Diagnostic>,
) -> Parsed {
    let mut parsed = Parsed { positional: Vec::new(), options: Vec::new() };
    let mut iter = args.into_iter().peekable();
    while let Some(arg) = iter.next() {
        if let Value::Name(name) = &arg.value {
            if let Some(o) = spec.options.iter().find(|o| o.name == name) {
                if parsed.options.iter().any(|(n, _, _)| *n == o.name) {
                    errors.push(
                        Diagnostic::error(Code::BadArgument, arg.span, format!("`{}` is given twice", o.name))
                            .with_label("repeated option"),
                    );
                }
                let value = if o.takes == Takes::Flag {
                    None
                } else {
                    match iter.peek() {
                        Some(v) if !matches!(&v.value, Value::Name(n) if spec.options.iter().any(|o| o.name == n)) => {
                            iter.next()
                        }
                        _ => {
                            errors.push(
                                Diagnostic::error(Code::BadArgument, arg.span, format!("`{}` needs a value", o.name))
                                    .with_label("no value follows")
                                    .with_help(format!("for example: `{}`", spec.example)),
                            );
                            None
                        }
                    }
                };
                parsed.options.push((o.name, value, arg.span));
                continue;
            }
            errors.push(unknown_option(spec, op, name, arg.span, env));
            // `strid 2`: the value most likely belongs to the misspelt option; skip it rather than
            // also reporting it as an extra positional argument.
            if parsed.positional.len() >= spec.positional.len()
                && iter.peek().is_some_and(|v| !matches!(v.value, Value::Name(_)))
            {
                iter.next();
            }
            continue;
        }
        if parsed.positional.len() < spec.positional.len() {
            parsed.positional.push(arg);
        } else {
            let expected = match spec.positional.len() {
                0 => "no positional arguments".to_string(),
                1 => format!("1 positional argument ({})", spec.positional[0].0),
                n => format!(
                    "{n} positional arguments ({})",
                    spec.positional.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                ),
            };
            errors.push(
                Diagnostic::error(
                    Code::BadArgument,
                    arg.span,
                    format!("{} takes {expected}; this one is extra", spec.name),
                )
                .with_label("unexpected argument")
                .with_help(format!("for example: `{}`", spec.example)),
            );
        }
    }
    if parsed.positional.len() < spec.required {
        let missing = spec.positional[parsed.positional.len()].0;
        errors.push(
            Diagnostic::error(Code::BadArgument, op.span, format!("{} needs its {missing}", spec.name))
                .with_label(format!("missing {missing}"))
                .with_help(format!("for example: `{}`", spec.example)),
        );
    }
    parsed
}

fn unknown_option(spec: &OpSpec, op: &Ident, name: &str, span: Span, env: &Env) -> Diagnostic {
    let mut d = Diagnostic::error(Code::UnknownParameter, span, format!("unknown parameter `{name}` for {}", op.name))
        .with_label("not a parameter of this op");
    let candidates = spec.options.iter().map(|o| o.name).chain(env.names());
    if let Some(c) = closest(name, candidates) {
        d = d.with_help(format!("did you mean `{c}`?"));
    } else if super::op_names().any(|o| o == name) {
        d = d.with_help("separate layers with `;` or a new line");
    } else if spec.options.is_empty() {
        d = d.with_help(format!("{} takes no options", spec.name));
    } else {
        let all: Vec<_> = spec.options.iter().map(|o| format!("`{}`", o.name)).collect();
        d = d.with_help(format!("{} accepts {}", spec.name, all.join(", ")));
    }
    d
}

pub(crate) fn int_in_range(what: &str, op: &str, v: &ArgValue, min: i64, errors: &mut Vec<Diagnostic>) -> Option<u64> {
    let ints: Vec<i64> = match &v.value {
        Value::Int(i) => vec![*i],
        _ => {
            errors.push(
                Diagnostic::error(
                    Code::BadArgument,
                    v.span,
                    format!("{op} {what} must be an integer; found {}", show(&v.value)),
                )
                .with_label("expected an integer"),
            );
            return None;
        }
    };
    check_range(what, op, &ints, v.span, min, errors).map(|r| r[0])
}

fn check_range(
    what: &str,
    op: &str,
    vals: &[i64],
    span: Span,
    min: i64,
    errors: &mut Vec<Diagnostic>,
) -> Option<Vec<u64>> {
    for &x in vals {
        if x < min || x > MAX_SIZE {
            let bound = if x < min { format!("at least {min}") } else { format!("at most {MAX_SIZE}") };
            errors.push(
                Diagnostic::error(Code::BadArgument, span, format!("{op} {what} must be {bound}; found {x}"))
                    .with_label("out of range"),
            );
            return None;
        }
    }
    Some(vals.iter().map(|&x| x as u64).collect())
}

pub(crate) fn pair(what: &str, op: &str, v: &ArgValue, min: i64, errors: &mut Vec<Diagnostic>) -> Option<[u64; 2]> {
    let vals = match &v.value {
        Value::Int(i) => vec![*i, *i],
        Value::Dims(d) if d.len() == 2 => d.clone(),
        other => {
            errors.push(
                Diagnostic::error(
                    Code::BadArgument,
                    v.span,
                    format!("{op} {what} must be an integer or HxW; found {}", show(other)),
                )
                .with_label("expected `3` or `3x3`"),
            );
            return None;
        }
    };
    check_range(what, op, &vals, v.span, min, errors).map(|r| [r[0], r[1]])
}

pub(crate) fn float(what: &str, op: &str, v: &ArgValue, errors: &mut Vec<Diagnostic>) -> Option<f64> {
    match v.value {
        Value::Float(f) => Some(f),
        Value::Int(i) => Some(i as f64),
        ref other => {
            errors.push(
                Diagnostic::error(
                    Code::BadArgument,
                    v.span,
                    format!("{op} {what} must be a number; found {}", show(other)),
                )
                .with_label("expected a number"),
            );
            None
        }
    }
}

pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Dims(d) => d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x"),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => format!("\"{s}\""),
        Value::Word(w) | Value::Name(w) => format!("`{w}`"),
    }
}

pub(crate) fn positive(x: f64, what: &str, span: Span, errors: &mut Vec<Diagnostic>) -> bool {
    if x > 0.0 {
        return true;
    }
    errors.push(
        Diagnostic::error(Code::BadArgument, span, format!("{what} must be positive; found {x}"))
            .with_label("out of range"),
    );
    false
}

pub(crate) fn bias_flag(p: &Parsed, errors: &mut Vec<Diagnostic>) -> bool {
    if p.flag("bias") && p.flag("nobias") {
        let span = p.option_span("nobias").unwrap_or_default();
        errors.push(
            Diagnostic::error(Code::BadArgument, span, "`bias` and `nobias` contradict each other")
                .with_label("remove one"),
        );
    }
    !p.flag("nobias")
}
