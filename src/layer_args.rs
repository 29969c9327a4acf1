//! The op catalogue: which positional arguments and options each layer accepts, and the
//! conversion of a parsed layer statement into a `graph::Op`. Unknown ops and options are
//! reported with the closest valid spelling.

use crate::ast::{Arg, ArgKind, Ident, Span};
use crate::diag::{Diagnostic, closest};
use crate::expr::{Env, eval_expr};
use crate::graph::{Conv, Fc, Lrn, Op, Pool, PoolKind};

/// The largest value accepted for any size in the language. Larger values are certainly
/// mistakes, and keeping every size below 2^31 lets the cost arithmetic stay comfortably in u64.
pub const MAX_SIZE: i64 = (1 << 31) - 1;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Dims(Vec<i64>),
    Float(f64),
    Str(String),
    Word(String),
    /// A bare name that is not a block parameter: an option keyword, `valid`, a network name.
    Name(String),
}

#[derive(Clone, Debug)]
pub struct ArgValue {
    pub value: Value,
    pub span: Span,
}

/// Evaluates the arguments of a statement in the current block environment. A bare name that is
/// an option of this op stays a name even if a block parameter has the same spelling: in
/// `lrn 5 k 2` inside `block conv_bn(c, k)`, `k` is LRN's option.
pub fn eval_args(args: &[Arg], env: &Env, is_option: impl Fn(&str) -> bool) -> Result<Vec<ArgValue>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
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
            Err(d) => errors.push(d),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Takes {
    Flag,
    Int,
    /// One integer for both dimensions, or `HxW`.
    Pair,
    Float,
    /// Like `Pair`, or the word `valid` (no padding).
    Pad,
}

struct OptSpec {
    name: &'static str,
    takes: Takes,
}

struct OpSpec {
    name: &'static str,
    positional: &'static [(&'static str, Takes)],
    /// How many of the positional arguments must be given.
    required: usize,
    options: &'static [OptSpec],
    example: &'static str,
}

const fn opt(name: &'static str, takes: Takes) -> OptSpec {
    OptSpec { name, takes }
}

const CONV_OPTIONS: &[OptSpec] = &[
    opt("stride", Takes::Pair),
    opt("pad", Takes::Pad),
    opt("groups", Takes::Int),
    opt("dilation", Takes::Pair),
    opt("bias", Takes::Flag),
    opt("nobias", Takes::Flag),
    opt("relu", Takes::Flag),
];
const POOL_OPTIONS: &[OptSpec] = &[opt("stride", Takes::Pair), opt("pad", Takes::Pair), opt("ceil", Takes::Flag)];
const FC_OPTIONS: &[OptSpec] = &[opt("bias", Takes::Flag), opt("nobias", Takes::Flag), opt("relu", Takes::Flag)];

const OPS: &[OpSpec] = &[
    OpSpec {
        name: "conv",
        positional: &[("kernel", Takes::Pair), ("output channels", Takes::Int)],
        required: 2,
        options: CONV_OPTIONS,
        example: "conv 3x3 64 stride 2 relu",
    },
    OpSpec {
        name: "maxpool",
        positional: &[("kernel", Takes::Pair)],
        required: 1,
        options: POOL_OPTIONS,
        example: "maxpool 3 stride 2 ceil",
    },
    OpSpec {
        name: "avgpool",
        positional: &[("kernel", Takes::Pair)],
        required: 1,
        options: POOL_OPTIONS,
        example: "avgpool 2",
    },
    OpSpec {
        name: "adaptive_avgpool",
        positional: &[("output size", Takes::Pair)],
        required: 1,
        options: &[],
        example: "adaptive_avgpool 7x7",
    },
    OpSpec { name: "gap", positional: &[], required: 0, options: &[], example: "gap" },
    OpSpec { name: "relu", positional: &[], required: 0, options: &[], example: "relu" },
    OpSpec { name: "bn", positional: &[], required: 0, options: &[opt("eps", Takes::Float)], example: "bn eps 0.001" },
    OpSpec {
        name: "lrn",
        positional: &[("size", Takes::Int)],
        required: 1,
        options: &[opt("alpha", Takes::Float), opt("beta", Takes::Float), opt("k", Takes::Float)],
        example: "lrn 5 alpha 0.0001 beta 0.75 k 2",
    },
    OpSpec {
        name: "dropout",
        positional: &[("probability", Takes::Float)],
        required: 0,
        options: &[],
        example: "dropout 0.5",
    },
    OpSpec { name: "flatten", positional: &[], required: 0, options: &[], example: "flatten" },
    OpSpec {
        name: "fc",
        positional: &[("output features", Takes::Int)],
        required: 1,
        options: FC_OPTIONS,
        example: "fc 4096 relu",
    },
    OpSpec { name: "softmax", positional: &[], required: 0, options: &[], example: "softmax" },
];

/// Statements that belong to the file header rather than the network body.
pub const HEADER_KEYWORDS: &[&str] = &["network", "input", "mean", "std", "labels", "rule"];
pub const STRUCTURE_KEYWORDS: &[&str] = &["stage", "block", "branch", "residual", "shortcut"];

pub fn op_names() -> impl Iterator<Item = &'static str> {
    OPS.iter().map(|s| s.name)
}

/// Words that block parameters and block names may not take: op names and the structural and
/// header keywords. (Option names such as `k` or `stride` are allowed; see `eval_args`.)
pub fn is_keyword(name: &str) -> bool {
    OPS.iter().any(|s| s.name == name) || HEADER_KEYWORDS.contains(&name) || STRUCTURE_KEYWORDS.contains(&name)
}

/// Positional and option values of one statement, checked against its spec.
struct Parsed {
    positional: Vec<ArgValue>,
    options: Vec<(&'static str, Option<ArgValue>, Span)>,
}

impl Parsed {
    fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _, _)| *n == name)
    }

    fn option(&self, name: &str) -> Option<&ArgValue> {
        self.options.iter().find(|(n, _, _)| *n == name).and_then(|(_, v, _)| v.as_ref())
    }

    fn option_span(&self, name: &str) -> Option<Span> {
        self.options.iter().find(|(n, _, _)| *n == name).map(|&(_, _, s)| s)
    }
}

fn split_args(spec: &OpSpec, op: &Ident, args: Vec<ArgValue>, env: &Env, errors: &mut Vec<Diagnostic>) -> Parsed {
    let mut parsed = Parsed { positional: Vec::new(), options: Vec::new() };
    let mut iter = args.into_iter().peekable();
    while let Some(arg) = iter.next() {
        if let Value::Name(name) = &arg.value {
            if let Some(o) = spec.options.iter().find(|o| o.name == name) {
                if parsed.options.iter().any(|(n, _, _)| *n == o.name) {
                    errors.push(
                        Diagnostic::error("E0004", arg.span, format!("`{}` is given twice", o.name))
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
                                Diagnostic::error("E0004", arg.span, format!("`{}` needs a value", o.name))
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
                Diagnostic::error("E0004", arg.span, format!("{} takes {expected}; this one is extra", spec.name))
                    .with_label("unexpected argument")
                    .with_help(format!("for example: `{}`", spec.example)),
            );
        }
    }
    if parsed.positional.len() < spec.required {
        let missing = spec.positional[parsed.positional.len()].0;
        errors.push(
            Diagnostic::error("E0004", op.span, format!("{} needs its {missing}", spec.name))
                .with_label(format!("missing {missing}"))
                .with_help(format!("for example: `{}`", spec.example)),
        );
    }
    parsed
}

fn unknown_option(spec: &OpSpec, op: &Ident, name: &str, span: Span, env: &Env) -> Diagnostic {
    let mut d = Diagnostic::error("E0003", span, format!("unknown parameter `{name}` for {}", op.name))
        .with_label("not a parameter of this op");
    let candidates = spec.options.iter().map(|o| o.name).chain(env.names());
    if let Some(c) = closest(name, candidates) {
        d = d.with_help(format!("did you mean `{c}`?"));
    } else if OPS.iter().any(|s| s.name == name) {
        d = d.with_help("separate layers with `;` or a new line");
    } else if spec.options.is_empty() {
        d = d.with_help(format!("{} takes no options", spec.name));
    } else {
        let all: Vec<_> = spec.options.iter().map(|o| format!("`{}`", o.name)).collect();
        d = d.with_help(format!("{} accepts {}", spec.name, all.join(", ")));
    }
    d
}

fn int_in_range(what: &str, op: &str, v: &ArgValue, min: i64, errors: &mut Vec<Diagnostic>) -> Option<u64> {
    let ints: Vec<i64> = match &v.value {
        Value::Int(i) => vec![*i],
        _ => {
            errors.push(
                Diagnostic::error("E0004", v.span, format!("{op} {what} must be an integer; found {}", show(&v.value)))
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
                Diagnostic::error("E0004", span, format!("{op} {what} must be {bound}; found {x}"))
                    .with_label("out of range"),
            );
            return None;
        }
    }
    Some(vals.iter().map(|&x| x as u64).collect())
}

fn pair(what: &str, op: &str, v: &ArgValue, min: i64, errors: &mut Vec<Diagnostic>) -> Option<[u64; 2]> {
    let vals = match &v.value {
        Value::Int(i) => vec![*i, *i],
        Value::Dims(d) if d.len() == 2 => d.clone(),
        other => {
            errors.push(
                Diagnostic::error(
                    "E0004",
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

fn float(what: &str, op: &str, v: &ArgValue, errors: &mut Vec<Diagnostic>) -> Option<f64> {
    match v.value {
        Value::Float(f) => Some(f),
        Value::Int(i) => Some(i as f64),
        ref other => {
            errors.push(
                Diagnostic::error("E0004", v.span, format!("{op} {what} must be a number; found {}", show(other)))
                    .with_label("expected a number"),
            );
            None
        }
    }
}

pub fn show(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Dims(d) => d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x"),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => format!("\"{s}\""),
        Value::Word(w) | Value::Name(w) => format!("`{w}`"),
    }
}

/// Converts `op args...` into an `Op`, or the diagnostics that explain why it cannot.
pub fn build_op(op: &Ident, args: &[Arg], env: &Env) -> Result<Op, Vec<Diagnostic>> {
    let Some(spec) = OPS.iter().find(|s| s.name == op.name) else {
        return Err(vec![unknown_op(op)]);
    };
    let values = eval_args(args, env, |n| spec.options.iter().any(|o| o.name == n))?;
    let mut errors = Vec::new();
    let p = split_args(spec, op, values, env, &mut errors);
    let name = spec.name;
    let pos = |i: usize| p.positional.get(i);
    let built = match name {
        "conv" => conv(&p, op, &mut errors),
        "maxpool" | "avgpool" => {
            let kind = if name == "maxpool" { PoolKind::Max } else { PoolKind::Avg };
            let kernel = pos(0).and_then(|v| pair("kernel", name, v, 1, &mut errors));
            let stride = p.option("stride").and_then(|v| pair("stride", name, v, 1, &mut errors));
            let pad = p.option("pad").and_then(|v| pair("padding", name, v, 0, &mut errors));
            kernel.map(|kernel| {
                Op::Pool(Pool {
                    kind,
                    kernel,
                    stride: stride.unwrap_or(kernel),
                    pad: pad.unwrap_or([0, 0]),
                    ceil: p.flag("ceil"),
                })
            })
        }
        "adaptive_avgpool" => {
            pos(0).and_then(|v| pair("output size", name, v, 1, &mut errors)).map(|out| Op::AdaptiveAvgPool { out })
        }
        "gap" => Some(Op::Gap),
        "relu" => Some(Op::Relu),
        "flatten" => Some(Op::Flatten),
        "softmax" => Some(Op::Softmax),
        "bn" => {
            let eps = match p.option("eps") {
                Some(v) => float("eps", name, v, &mut errors).filter(|&e| positive(e, "eps", v.span, &mut errors)),
                None => Some(1e-5),
            };
            eps.map(|eps| Op::BatchNorm { eps })
        }
        "lrn" => {
            let size = pos(0).and_then(|v| int_in_range("size", name, v, 1, &mut errors));
            let get = |key: &str, default: f64, errors: &mut Vec<Diagnostic>| match p.option(key) {
                Some(v) => float(key, name, v, errors),
                None => Some(default),
            };
            // PyTorch's LocalResponseNorm defaults.
            let alpha = get("alpha", 1e-4, &mut errors);
            let beta = get("beta", 0.75, &mut errors);
            let k = get("k", 1.0, &mut errors);
            match (size, alpha, beta, k) {
                (Some(size), Some(alpha), Some(beta), Some(k)) => Some(Op::Lrn(Lrn { size, alpha, beta, k })),
                _ => None,
            }
        }
        "dropout" => {
            let prob = match pos(0) {
                Some(v) => float("probability", name, v, &mut errors).filter(|&x| {
                    let ok = (0.0..1.0).contains(&x);
                    if !ok {
                        errors.push(
                            Diagnostic::error(
                                "E0004",
                                v.span,
                                format!("dropout probability must be in [0, 1); found {x}"),
                            )
                            .with_label("out of range"),
                        );
                    }
                    ok
                }),
                None => Some(0.5),
            };
            prob.map(|p| Op::Dropout { p })
        }
        "fc" => {
            let out = pos(0).and_then(|v| int_in_range("output features", name, v, 1, &mut errors));
            let bias = bias_flag(&p, &mut errors);
            out.map(|out| Op::Fc(Fc { out, bias, relu: p.flag("relu") }))
        }
        other => unreachable!("op catalogue entry without a builder: {other}"),
    };
    match built {
        Some(op) if errors.is_empty() => Ok(op),
        _ => Err(errors),
    }
}

fn positive(x: f64, what: &str, span: Span, errors: &mut Vec<Diagnostic>) -> bool {
    if x > 0.0 {
        return true;
    }
    errors.push(
        Diagnostic::error("E0004", span, format!("{what} must be positive; found {x}")).with_label("out of range"),
    );
    false
}

fn bias_flag(p: &Parsed, errors: &mut Vec<Diagnostic>) -> bool {
    if p.flag("bias") && p.flag("nobias") {
        let span = p.option_span("nobias").unwrap_or_default();
        errors.push(
            Diagnostic::error("E0004", span, "`bias` and `nobias` contradict each other").with_label("remove one"),
        );
    }
    !p.flag("nobias")
}

fn conv(p: &Parsed, _op: &Ident, errors: &mut Vec<Diagnostic>) -> Option<Op> {
    let kernel = p.positional.first().and_then(|v| pair("kernel", "conv", v, 1, errors));
    let out_channels = p.positional.get(1).and_then(|v| int_in_range("output channels", "conv", v, 1, errors));
    let stride = p.option("stride").map_or(Some([1, 1]), |v| pair("stride", "conv", v, 1, errors));
    let dilation = p.option("dilation").map_or(Some([1, 1]), |v| pair("dilation", "conv", v, 1, errors));
    let groups = p.option("groups").map_or(Some(1), |v| int_in_range("groups", "conv", v, 1, errors));
    let bias = bias_flag(p, errors);
    let (kernel, out_channels, stride, dilation, groups) = (kernel?, out_channels?, stride?, dilation?, groups?);
    let pad = match p.option("pad") {
        Some(ArgValue { value: Value::Name(n), .. }) if n == "valid" => [0, 0],
        Some(v) => pair("padding", "conv", v, 0, errors)?,
        // floor(k/2) of the effective (dilated) kernel: "same" size at stride 1 for odd kernels.
        None => [0, 1].map(|i| (dilation[i] * (kernel[i] - 1) + 1) / 2),
    };
    Some(Op::Conv(Conv { kernel, out_channels, stride, pad, dilation, groups, bias, relu: p.flag("relu") }))
}

pub fn unknown_op(op: &Ident) -> Diagnostic {
    let mut d = Diagnostic::error("E0002", op.span, format!("unknown layer `{}`", op.name)).with_label("not a layer");
    if let Some(c) = closest(&op.name, op_names()) {
        d = d.with_help(format!("did you mean `{c}`?"));
    } else if STRUCTURE_KEYWORDS.contains(&op.name.as_str()) {
        d = d.with_help(format!("`{}` needs a `{{ ... }}` body", op.name));
    } else {
        d = d.with_note(format!("the layers are: {}", op_names().collect::<Vec<_>>().join(", ")));
    }
    d
}
