//! Layer norm over the channels of each pixel (or the features of a vector): the mean, then the
//! variance around it (two passes, as the interpreter), then `(x - mean) / sqrt(var + eps) *
//! weight + bias`. One task per row; along a pixel's channels, whole blocks of 4 as vectors
//! (lanes summed at the end), the remainder one by one. Vectors never read a block's padding.

use super::super::compile::JitError;
use super::super::ir::*;
use super::super::lower::Builder;
use super::super::schedule::streamed;
use super::{Lower, TensorView, finish, new_kernel};
use crate::analysis::fusion::Group;
use crate::ops::LayerNorm;

impl Lower for LayerNorm {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let x = b.anchor_input(g, 0);
        let (input, output) = (b.view(x)?, b.view(g.output)?);
        let node = b.node_name(g.anchor()).to_string();
        let c = input.c as usize;
        let padded = |mut v: Vec<f32>| {
            v.resize(c.div_ceil(4) * 4, 0.0);
            v
        };
        let (w, bias) = (padded(b.tensor(&format!("{node}.weight"))), padded(b.tensor(&format!("{node}.bias"))));
        let name = b.name_of(g);
        let lowered = layernorm_kernel(&name, &input, &output, self.eps, false);
        let scheduled = layernorm_kernel(&name, &input, &output, self.eps, !input.flat);
        let bindings = vec![b.arena(x)?, b.arena(g.output)?, b.param(w), b.param(bias)];
        let work = streamed(output.len());
        b.push(name, g.nodes.clone(), lowered, scheduled, bindings, work);
        Ok(())
    }
}

fn layernorm_kernel(name: &str, input: &TensorView, output: &TensorView, eps: f64, vector: bool) -> Kernel {
    let c = input.c as i64;
    let params = Layout::Flat { len: (c as u64).div_ceil(4) * 4 };
    let buffers = vec![
        input.buffer("in", false),
        output.buffer("out", true),
        Buffer::new("weight", params.clone(), false),
        Buffer::new("bias", params, false),
    ];
    let mut k = new_kernel(name, buffers);
    let mut vars = Vars::default();
    let (t, y, x, ch) = (vars.new_var("t"), vars.new_var("y"), vars.new_var("x"), vars.new_var("ch"));
    let (mean, var, acc, inv) = (vars.new_var("mean"), vars.new_var("var"), vars.new_var("acc"), vars.new_var("inv"));
    let flat = input.flat;
    let at_in = |c: IExpr| if flat { input.flat_index(c) } else { act(c, iv(y), iv(x)) };
    let at_out = |c: IExpr| if flat { output.flat_index(c) } else { act(c, iv(y), iv(x)) };
    let blocks = if vector { c / 4 } else { 0 };
    let rest = blocks * 4;
    // sum over the channels of f(value at channel) into the scalar `into`.
    let reduce = |into: VarId, f: &dyn Fn(FExpr, Ty) -> FExpr| -> Vec<Stmt> {
        let mut s = Vec::new();
        if blocks > 0 {
            s.push(set(acc, Ty::F32x4, splat(fc(0.0))));
            let v = f(load(Ty::F32x4, 0, at_in(iv(ch) * 4)), Ty::F32x4);
            s.push(for_range(ch, 0, blocks, vec![set(acc, Ty::F32x4, bin(BinOp::Add, fv(acc), v))]));
            let lanes = (1..4)
                .fold(FExpr::Lane(Box::new(fv(acc)), 0), |a, l| bin(BinOp::Add, a, FExpr::Lane(Box::new(fv(acc)), l)));
            s.push(set(into, Ty::F32, lanes));
        } else {
            s.push(set(into, Ty::F32, fc(0.0)));
        }
        let v = f(load(Ty::F32, 0, at_in(iv(ch))), Ty::F32);
        s.push(for_range(ch, rest, c, vec![set(into, Ty::F32, bin(BinOp::Add, fv(into), v))]));
        s
    };
    let inv_c = fc(1.0 / c as f32);
    let mut pixel = reduce(mean, &|v, _| v);
    pixel.push(set(mean, Ty::F32, bin(BinOp::Mul, fv(mean), inv_c.clone())));
    let centred = |v: FExpr, ty: Ty| bin(BinOp::Sub, v, if ty == Ty::F32x4 { splat(fv(mean)) } else { fv(mean) });
    pixel.extend(reduce(var, &|v, ty| {
        let d = centred(v, ty);
        bin(BinOp::Mul, d.clone(), d)
    }));
    let denom = FExpr::Un(UnOp::Sqrt, Box::new(fma(fv(var), inv_c, fc(eps as f32))));
    pixel.push(set(inv, Ty::F32, bin(BinOp::Div, fc(1.0), denom)));
    let normalised = |ty: Ty, at: IExpr| {
        let scale = if ty == Ty::F32x4 { splat(fv(inv)) } else { fv(inv) };
        let norm = bin(BinOp::Mul, centred(load(ty, 0, at_in(at.clone())), ty), scale);
        fma(norm, load(ty, 2, Index::Flat(at.clone())), load(ty, 3, Index::Flat(at)))
    };
    if blocks > 0 {
        let v = normalised(Ty::F32x4, iv(ch) * 4);
        pixel.push(for_range(ch, 0, blocks, vec![store(Ty::F32x4, 1, at_out(iv(ch) * 4), v)]));
    }
    pixel.push(for_range(ch, rest, c, vec![store(Ty::F32, 1, at_out(iv(ch)), normalised(Ty::F32, iv(ch)))]));
    if flat {
        k.push_tasks(t, 1, pixel);
    } else {
        let row = vec![let_int(y, iv(t)), for_range(x, 0, input.w as i64, pixel)];
        k.push_tasks(t, input.h as i64, row);
    }
    finish(k, vars, 1, output)
}
