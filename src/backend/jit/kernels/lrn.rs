//! Local response normalisation: a scalar nest per pixel over its channel window, with
//! `x^beta = exp(beta * ln x)` from `mathfn`. It is cheap next to the convolutions around it,
//! so its lowered form is its schedule.

use super::super::compile::JitError;
use super::super::ir::*;
use super::super::lower::Builder;
use super::{Lower, TensorView, finish, new_kernel, rows_tasks};
use crate::analysis::fusion::Group;
use crate::ops::Lrn;

impl Lower for Lrn {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let input = b.anchor_input(g, 0);
        let (name, output) = (b.name_of(g), b.view(g.output)?);
        let k = lower_lrn(&name, self, &b.view(input)?, &output);
        let bindings = vec![b.arena(input)?, b.arena(g.output)?];
        b.push(name, g.nodes.clone(), k.clone(), k, bindings, output.len() * self.size * 8);
        Ok(())
    }
}

/// `b_c = a_c / (k + alpha/n * sum_{c'} a_{c'}^2)^beta`, with `x^beta = exp(beta * ln x)`.
fn lower_lrn(name: &str, l: &Lrn, input: &TensorView, output: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let (c, y, x, cc, sum) =
        (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"), vars.new_var("cc"), vars.new_var("sum"));
    let (n, channels) = (l.size as i64, input.c as i64);
    let (before, after) = (n / 2, (n - 1) / 2);
    let a = load(Ty::F32, 0, act(iv(cc), iv(y), iv(x)));
    let base = fma(fv(sum), fc((l.alpha / l.size as f64) as f32), fc(l.k as f32));
    let div = FExpr::Un(UnOp::Exp, Box::new(bin(BinOp::Mul, fc(l.beta as f32), FExpr::Un(UnOp::Ln, Box::new(base)))));
    let pixel = vec![
        set(sum, Ty::F32, fc(0.0)),
        for_range(
            cc,
            (iv(c) + (-before)).max(ic(0)),
            (iv(c) + (after + 1)).min(ic(channels)),
            vec![set(sum, Ty::F32, fma(a.clone(), a, fv(sum)))],
        ),
        store(Ty::F32, 1, act(iv(c), iv(y), iv(x)), bin(BinOp::Div, load(Ty::F32, 0, act(iv(c), iv(y), iv(x))), div)),
    ];
    let mut k = new_kernel(name, vec![input.buffer("in", false), output.buffer("out", true)]);
    let row = vec![for_range(x, 0, input.w as i64, pixel)];
    rows_tasks(&mut k, &mut vars, channels, input.h as i64, 0, c, y, row);
    finish(k, vars, 1, output)
}
