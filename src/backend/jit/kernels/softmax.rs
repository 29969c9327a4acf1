//! Softmax over the features: of the whole vector (flat), or of each pixel's channels (map).
//! Max-subtracted for stability, as PyTorch does. A classifier's last layer: its lowered form is
//! its schedule.

use super::super::compile::JitError;
use super::super::ir::*;
use super::super::lower::Builder;
use super::{Lower, TensorView, append_halo_zeroing, new_kernel};
use crate::analysis::fusion::Group;
use crate::ops::Softmax;

impl Lower for Softmax {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let input = b.anchor_input(g, 0);
        let (name, output) = (b.name_of(g), b.view(g.output)?);
        let k = lower_softmax(&name, &b.view(input)?, &output);
        let bindings = vec![b.arena(input)?, b.arena(g.output)?];
        b.push(name, g.nodes.clone(), k.clone(), k, bindings, output.len() * 20);
        Ok(())
    }
}

fn lower_softmax(name: &str, input: &TensorView, output: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let (i, m, sum, e) = (vars.new_var("i"), vars.new_var("max"), vars.new_var("sum"), vars.new_var("e"));
    let mut k = new_kernel(name, vec![input.buffer("in", false), output.buffer("out", true)]);
    // `at(i)` addresses element i of the reduced axis for the current task.
    let (t, y, x) = (vars.new_var("t"), vars.new_var("y"), vars.new_var("x"));
    let (count, tasks, at_in, at_out): (i64, i64, Box<dyn Fn(IExpr) -> Index>, Box<dyn Fn(IExpr) -> Index>) =
        if input.flat {
            let (vin, vout) = (input.clone(), output.clone());
            (input.len() as i64, 1, Box::new(move |f| vin.flat_index(f)), Box::new(move |f| vout.flat_index(f)))
        } else {
            (
                input.c as i64,
                (input.h * input.w) as i64,
                Box::new(move |ch| act(ch, iv(y), iv(x))),
                Box::new(move |ch| act(ch, iv(y), iv(x))),
            )
        };
    let xval = load(Ty::F32, 0, at_in(iv(i)));
    let mut body = Vec::new();
    if !input.flat {
        body.push(let_int(y, iv(t).div(input.w as i64)));
        body.push(let_int(x, iv(t).rem(input.w as i64)));
    }
    body.extend([
        set(m, Ty::F32, fc(f32::NEG_INFINITY)),
        for_range(i, 0, count, vec![set(m, Ty::F32, bin(BinOp::Max, xval.clone(), fv(m)))]),
        set(sum, Ty::F32, fc(0.0)),
        for_range(
            i,
            0,
            count,
            vec![
                set(e, Ty::F32, FExpr::Un(UnOp::Exp, Box::new(bin(BinOp::Sub, xval, fv(m))))),
                store(Ty::F32, 1, at_out(iv(i)), fv(e)),
                set(sum, Ty::F32, bin(BinOp::Add, fv(sum), fv(e))),
            ],
        ),
        for_range(
            i,
            0,
            count,
            vec![store(Ty::F32, 1, at_out(iv(i)), bin(BinOp::Div, load(Ty::F32, 1, at_out(iv(i))), fv(sum)))],
        ),
    ]);
    k.push_tasks(t, tasks, body);
    k.var_names = vars.names;
    if !output.flat && input.layout != output.layout {
        append_halo_zeroing(&mut k, 1, output.c);
    }
    k
}
