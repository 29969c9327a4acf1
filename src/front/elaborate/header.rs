//! The file header: `network`, `input`, `mean`, `std`, `labels` and `rule` lines.

use super::Elaborator;
use crate::analysis::codes::Code;
use crate::analysis::diag::{Diagnostic, did_you_mean};
use crate::front::ast::*;
use crate::front::expr::Env;
use crate::ir::graph::*;
use crate::ops::{ArgValue, HEADER_KEYWORDS, MAX_SIZE, Value, eval_args, show};
use std::collections::HashMap;

pub(super) struct Header {
    pub(super) name: String,
    pub(super) input: Input,
    pub(super) input_span: Span,
    pub(super) mean: Vec<f64>,
    pub(super) std: Vec<f64>,
    pub(super) labels: Option<String>,
    pub(super) rules: Vec<DesignRule>,
    pub(super) has_input: bool,
}

pub(super) fn is_header(item: &Item) -> bool {
    matches!(&item.stmt, Stmt::Layer { op, .. } if HEADER_KEYWORDS.contains(&op.name.as_str()))
}

impl Elaborator<'_> {
    pub(super) fn header(&mut self, file: &File, default_name: &str) -> Header {
        let mut h = Header {
            name: default_name.to_string(),
            input: Input { c: 0, h: 0, w: 0 },
            input_span: Span::new(0, 0),
            mean: Vec::new(),
            std: Vec::new(),
            labels: None,
            rules: Vec::new(),
            has_input: false,
        };
        let mut seen: HashMap<String, Span> = HashMap::new();
        for item in file.items.iter().filter(|i| is_header(i)) {
            let Stmt::Layer { op, args, repeat } = &item.stmt else {
                continue;
            };
            if let Some(r) = repeat {
                self.diags.push(Diagnostic::error(Code::Header, r.span, format!("`{}` cannot be repeated", op.name)));
            }
            if let Some(first) = seen.get(&op.name).filter(|_| op.name != "rule") {
                self.diags.push(
                    Diagnostic::error(Code::Header, op.span, format!("`{}` is given twice", op.name))
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
            self.header_line(item, op, &values, &mut h);
        }
        self.check_input_and_normalisation(&mut h, &seen);
        h
    }

    /// One header line, already evaluated.
    fn header_line(&mut self, item: &Item, op: &Ident, values: &[ArgValue], h: &mut Header) {
        let mut bad = |msg: String, span: Span, example: &str| {
            self.diags.push(
                Diagnostic::error(Code::Header, span, msg)
                    .with_label("here")
                    .with_help(format!("for example: `{example}`")),
            );
        };
        match (op.name.as_str(), values) {
            ("network", [v]) => match &v.value {
                Value::Name(n) | Value::Word(n) | Value::Str(n) => h.name = n.clone(),
                _ => bad(format!("`network` takes a name; found {}", show(&v.value)), v.span, "network vgg16"),
            },
            ("input", [v]) => match &v.value {
                Value::Dims(d) if d.len() == 3 && d.iter().all(|&x| (1..=MAX_SIZE).contains(&x)) => {
                    h.input = Input { c: d[0] as u64, h: d[1] as u64, w: d[2] as u64 };
                    h.input_span = item.span;
                    h.has_input = true;
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
                        bad(format!("std values must be positive; found {}", v.1), v.0.span, "std 0.229 0.224 0.225");
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
            ("rule", [first, rest @ ..]) => self.rule(first, rest, h),
            (name, _) => bad(format!("`{name}` has the wrong number of arguments"), op.span, header_example(name)),
        }
    }

    /// A missing `input` line, and `mean`/`std`: defaults, or one value per channel or one for all.
    fn check_input_and_normalisation(&mut self, h: &mut Header, seen: &HashMap<String, Span>) {
        if !h.has_input {
            self.diags.push(
                Diagnostic::error(Code::Header, Span::new(0, 0), "the network has no `input` line")
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
                        Code::Header,
                        span,
                        format!("`{which}` gives {} values but the input has {channels} channels", values.len()),
                    )
                    .with_label("one value per input channel, or one for all"),
                );
            }
        }
    }

    fn rule(&mut self, first: &ArgValue, rest: &[ArgValue], h: &mut Header) {
        let name = match &first.value {
            Value::Word(w) | Value::Name(w) => w.as_str(),
            _ => "",
        };
        if name != "double-channels" {
            let mut d =
                Diagnostic::error(Code::Header, first.span, format!("unknown design rule {}", show(&first.value)))
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
                            Code::Header,
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
                        Code::Header,
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
