//! Evaluates the integer arithmetic of block arguments (`2*c`, `(c + 1) / 2`, `in.c * e`) with
//! overflow and division checks, and the conditions of `if`. Variables are the parameters of the
//! block being instantiated; `in.c`, `in.h` and `in.w` are the sizes of its input.

use crate::analysis::codes::Code;
use crate::analysis::diag::{Diagnostic, did_you_mean};
use crate::front::ast::{AddOp, CmpOp, Condition, Expr, Factor, MulOp, Span, Term};

/// Why an expression has no value: a diagnostic to report, or `None` when the value depends on
/// something already reported (the shape of a block's input after an error upstream).
pub(crate) type EvalError = Option<Diagnostic>;

/// What `in.c`, `in.h` and `in.w` refer to where an expression is evaluated.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) enum BlockInput {
    /// Outside any block body: `in.?` is an error.
    #[default]
    Outside,
    /// Inside a block whose input's shape is unknown (an earlier error).
    Unknown,
    /// Inside a block whose input is `c x h x w` (a vector of n is `n x 1 x 1`).
    Known([u64; 3]),
}

/// The parameters bound in the current block instance, and its input.
#[derive(Clone, Debug, Default)]
pub(crate) struct Env {
    vars: Vec<(String, i64)>,
    pub(crate) input: BlockInput,
}

impl Env {
    pub(crate) fn bind(&mut self, name: &str, value: i64) {
        self.vars.push((name.to_string(), value));
    }

    pub(crate) fn get(&self, name: &str) -> Option<i64> {
        self.vars.iter().rev().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(n, _)| n.as_str())
    }
}

pub(crate) fn eval_expr(expr: &Expr, env: &Env) -> Result<i64, EvalError> {
    let mut acc = eval_term(&expr.first, env)?;
    for (op, term) in &expr.rest {
        let rhs = eval_term(term, env)?;
        let result = match op {
            AddOp::Add => acc.checked_add(rhs),
            AddOp::Sub => acc.checked_sub(rhs),
        };
        acc = result.ok_or_else(|| Some(overflow(expr.span)))?;
    }
    Ok(acc)
}

fn eval_term(term: &Term, env: &Env) -> Result<i64, EvalError> {
    let mut acc = eval_factor(&term.first, env)?;
    for (op, factor) in &term.rest {
        let rhs = eval_factor(factor, env)?;
        if rhs == 0 && *op != MulOp::Mul {
            return Err(Some(
                Diagnostic::error(Code::Arithmetic, factor_span(factor), "division by zero")
                    .with_label("this evaluates to 0"),
            ));
        }
        let result = match op {
            MulOp::Mul => acc.checked_mul(rhs),
            MulOp::Div => acc.checked_div_euclid(rhs),
            MulOp::Rem => acc.checked_rem_euclid(rhs),
        };
        acc = result.ok_or_else(|| Some(overflow(factor_span(factor))))?;
    }
    Ok(acc)
}

fn eval_factor(factor: &Factor, env: &Env) -> Result<i64, EvalError> {
    match factor {
        Factor::Int(v, _) => Ok(*v),
        Factor::Paren(e) => eval_expr(e, env),
        Factor::Var(id) => env.get(&id.name).ok_or_else(|| {
            let mut d = Diagnostic::error(Code::UnknownName, id.span, format!("unknown name `{}`", id.name))
                .with_label("not a parameter of the enclosing block");
            if let Some(help) = did_you_mean(&id.name, env.names()) {
                d = d.with_help(help);
            }
            Some(d)
        }),
        Factor::Input(dim, span) => match env.input {
            BlockInput::Known(chw) => Ok(chw[*dim as usize] as i64),
            BlockInput::Unknown => Err(None),
            BlockInput::Outside => Err(Some(
                Diagnostic::error(
                    Code::UnknownName,
                    *span,
                    format!("`in.{}` is only known inside a block", dim.letter()),
                )
                .with_label("outside any block body")
                .with_help("`in.c`, `in.h` and `in.w` are the sizes of a block instance's input"),
            )),
        },
    }
}

/// Whether `cond` holds: any of its conjunctions has all its comparisons true.
pub(crate) fn eval_condition(cond: &Condition, env: &Env) -> Result<bool, EvalError> {
    let mut result = false;
    for conjunction in &cond.any {
        let mut all = true;
        for c in conjunction {
            let lhs = eval_expr(&c.lhs, env)?;
            all &= match &c.rhs {
                None => lhs != 0,
                Some((op, rhs)) => {
                    let rhs = eval_expr(rhs, env)?;
                    match op {
                        CmpOp::Eq => lhs == rhs,
                        CmpOp::Ne => lhs != rhs,
                        CmpOp::Lt => lhs < rhs,
                        CmpOp::Le => lhs <= rhs,
                        CmpOp::Gt => lhs > rhs,
                        CmpOp::Ge => lhs >= rhs,
                    }
                }
            };
        }
        result |= all;
    }
    Ok(result)
}

fn factor_span(factor: &Factor) -> Span {
    match factor {
        Factor::Int(_, s) | Factor::Input(_, s) => *s,
        Factor::Var(id) => id.span,
        Factor::Paren(e) => e.span,
    }
}

fn overflow(span: Span) -> Diagnostic {
    Diagnostic::error(Code::Arithmetic, span, "integer overflow in this expression")
        .with_label("the result does not fit in 64 bits")
}
