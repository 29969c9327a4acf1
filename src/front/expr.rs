//! Evaluates the integer arithmetic of block arguments (`2*c`, `(c + 1) / 2`) with overflow and
//! division checks. Variables are the parameters of the block being instantiated.

use crate::analysis::codes::Code;
use crate::analysis::diag::{Diagnostic, did_you_mean};
use crate::front::ast::{AddOp, Expr, Factor, MulOp, Span, Term};

/// The parameters bound in the current block instance.
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: Vec<(String, i64)>,
}

impl Env {
    pub fn bind(&mut self, name: &str, value: i64) {
        self.vars.push((name.to_string(), value));
    }

    pub fn get(&self, name: &str) -> Option<i64> {
        self.vars.iter().rev().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(n, _)| n.as_str())
    }
}

pub fn eval_expr(expr: &Expr, env: &Env) -> Result<i64, Diagnostic> {
    let mut acc = eval_term(&expr.first, env)?;
    for (op, term) in &expr.rest {
        let rhs = eval_term(term, env)?;
        let result = match op {
            AddOp::Add => acc.checked_add(rhs),
            AddOp::Sub => acc.checked_sub(rhs),
        };
        acc = result.ok_or_else(|| overflow(expr.span))?;
    }
    Ok(acc)
}

fn eval_term(term: &Term, env: &Env) -> Result<i64, Diagnostic> {
    let mut acc = eval_factor(&term.first, env)?;
    for (op, factor) in &term.rest {
        let rhs = eval_factor(factor, env)?;
        if rhs == 0 && *op != MulOp::Mul {
            return Err(Diagnostic::error(Code::Arithmetic, factor_span(factor), "division by zero")
                .with_label("this evaluates to 0"));
        }
        let result = match op {
            MulOp::Mul => acc.checked_mul(rhs),
            MulOp::Div => acc.checked_div_euclid(rhs),
            MulOp::Rem => acc.checked_rem_euclid(rhs),
        };
        acc = result.ok_or_else(|| overflow(factor_span(factor)))?;
    }
    Ok(acc)
}

fn eval_factor(factor: &Factor, env: &Env) -> Result<i64, Diagnostic> {
    match factor {
        Factor::Int(v, _) => Ok(*v),
        Factor::Paren(e) => eval_expr(e, env),
        Factor::Var(id) => env.get(&id.name).ok_or_else(|| {
            let mut d = Diagnostic::error(Code::UnknownName, id.span, format!("unknown name `{}`", id.name))
                .with_label("not a parameter of the enclosing block");
            if let Some(help) = did_you_mean(&id.name, env.names()) {
                d = d.with_help(help);
            }
            d
        }),
    }
}

fn factor_span(factor: &Factor) -> Span {
    match factor {
        Factor::Int(_, s) => *s,
        Factor::Var(id) => id.span,
        Factor::Paren(e) => e.span,
    }
}

fn overflow(span: Span) -> Diagnostic {
    Diagnostic::error(Code::Arithmetic, span, "integer overflow in this expression")
        .with_label("the result does not fit in 64 bits")
}
