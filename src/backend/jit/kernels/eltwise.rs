//! Elementwise kernels: activations, batch norm (as a per-channel affine map) and the residual
//! sum, when they run on their own rather than in a convolution's epilogue. Maps are processed a
//! vector of 4 channels per pixel; flat tensors (which may live in a map's storage) element by
//! element in flatten order.

use super::super::compile::JitError;
use super::super::ir::*;
use super::super::lower::Builder;
use super::super::schedule::streamed;
use super::{Lower, TensorView, append_halo_zeroing, ceil_div, lanes, new_kernel, rows_tasks, splat_if};
use crate::analysis::fusion::Group;
use crate::ops::{Activation, Add, BatchNorm, GateMul, Op, Scale};

#[derive(Clone, Debug, PartialEq)]
enum EltOp {
    Activation(Activation),
    /// `x * scale + shift` per channel (map) or per feature (flat), from buffer 2 (scales) and
    /// 3 (shifts).
    Affine,
    /// `x + y`; `y` is buffer 2.
    Add,
    /// `x * g[c]`: the gate `g` (buffer 2) is a `C x 1 x 1` map.
    Gate,
}

#[derive(Clone, Debug, PartialEq)]
struct EltJob {
    name: String,
    op: EltOp,
    input: TensorView,
    other: Option<TensorView>,
    output: TensorView,
    /// Length of the scale and shift buffers of `Affine`.
    params: u64,
    /// The activations the group absorbed after the op (`fusion::fuse`), applied in order.
    then: Vec<Activation>,
}

impl Lower for Activation {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let input = b.anchor_input(g, 0);
        let job = EltJob {
            name: b.name_of(g),
            op: EltOp::Activation(*self),
            input: b.view(input)?,
            other: None,
            output: b.view(g.output)?,
            params: 0,
            then: absorbed_activations(b, g),
        };
        let bindings = vec![b.arena(input)?, b.arena(g.output)?];
        push(b, g, job, bindings);
        Ok(())
    }
}

impl Lower for Add {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let (x, y) = (b.anchor_input(g, 0), b.anchor_input(g, 1));
        let (input, other) = (b.view(x)?, b.view(y)?);
        let name = b.name_of(g);
        if other.flat != input.flat || other.layout_shape() != input.layout_shape() {
            return Err(JitError::Unsupported(format!("{name}: a sum of tensors stored in differently shaped maps")));
        }
        let job = EltJob {
            name,
            op: EltOp::Add,
            input,
            other: Some(other),
            output: b.view(g.output)?,
            params: 0,
            then: absorbed_activations(b, g),
        };
        let bindings = vec![b.arena(x)?, b.arena(g.output)?, b.arena(y)?];
        push(b, g, job, bindings);
        Ok(())
    }
}

impl Lower for GateMul {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let (x, gate) = (b.anchor_input(g, 0), b.anchor_input(g, 1));
        let job = EltJob {
            name: b.name_of(g),
            op: EltOp::Gate,
            input: b.view(x)?,
            other: Some(b.view(gate)?),
            output: b.view(g.output)?,
            params: 0,
            then: absorbed_activations(b, g),
        };
        let bindings = vec![b.arena(x)?, b.arena(g.output)?, b.arena(gate)?];
        push(b, g, job, bindings);
        Ok(())
    }
}

impl Lower for BatchNorm {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let (scale, shift) = bn_scale_shift(b, g.anchor(), self.eps);
        lower_affine(b, g, scale, shift)
    }
}

/// A layer scale on its own (not after a convolution): an affine map without shift.
impl Lower for Scale {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let scale = b.tensor(&format!("{}.weight", b.node_name(g.anchor())));
        let shift = vec![0.0; scale.len()];
        lower_affine(b, g, scale, shift)
    }
}

/// `x * scale + shift` per channel (feature), as one elementwise kernel.
fn lower_affine(b: &mut Builder, g: &Group, scale: Vec<f32>, shift: Vec<f32>) -> Result<(), JitError> {
    let x = b.anchor_input(g, 0);
    let input = b.view(x)?;
    let len = if input.flat { scale.len() } else { scale.len().div_ceil(4) * 4 };
    let pad = |mut v: Vec<f32>| {
        v.resize(len, 0.0);
        v
    };
    let job = EltJob {
        name: b.name_of(g),
        op: EltOp::Affine,
        input,
        other: None,
        output: b.view(g.output)?,
        params: len as u64,
        then: absorbed_activations(b, g),
    };
    let (scale, shift) = (b.param(pad(scale)), b.param(pad(shift)));
    let bindings = vec![b.arena(x)?, b.arena(g.output)?, scale, shift];
    push(b, g, job, bindings);
    Ok(())
}

/// The activations after the group's anchor (an elementwise group absorbs only those).
fn absorbed_activations(b: &Builder, g: &Group) -> Vec<Activation> {
    g.nodes[1..]
        .iter()
        .map(|&m| match &b.net().nodes[m].op {
            Op::Activation(a) => *a,
            other => unreachable!("fusion: {} does not fuse into an elementwise layer", other.keyword()),
        })
        .collect()
}

fn push(b: &mut Builder, g: &Group, job: EltJob, bindings: Vec<super::super::lower::Binding>) {
    let work = streamed(job.output.len());
    // Flat tensors (which may live in a map's storage) are addressed element by element.
    // In place (the output in the input's storage) the halo is the input's, already zero; a
    // fresh storage of the same layout still needs its halo zeroed.
    let in_place = bindings[0] == bindings[1];
    let scheduled = elementwise_kernel(&job, if job.input.flat { Ty::F32 } else { Ty::F32x4 }, in_place);
    b.push(job.name.clone(), g.nodes.clone(), elementwise_kernel(&job, Ty::F32, in_place), scheduled, bindings, work);
}

/// Eval-mode batch norm of node `bn` as `x * scale + shift`: scale = gamma / sqrt(var + eps),
/// shift = beta - mean * scale (computed in f64).
pub(in super::super) fn bn_scale_shift(b: &Builder, bn: crate::ir::graph::NodeId, eps: f64) -> (Vec<f32>, Vec<f32>) {
    let name = b.node_name(bn);
    let g = b.tensor(&format!("{name}.weight"));
    let be = b.tensor(&format!("{name}.bias"));
    let m = b.tensor(&format!("{name}.running_mean"));
    let v = b.tensor(&format!("{name}.running_var"));
    let scale: Vec<f64> = g.iter().zip(&v).map(|(&g, &v)| g as f64 / (v as f64 + eps).sqrt()).collect();
    let shift = be.iter().zip(&m).zip(&scale).map(|((&b, &m), &s)| (b as f64 - m as f64 * s) as f32).collect();
    (scale.iter().map(|&s| s as f32).collect(), shift)
}

/// The activation on a scalar or vector value, as the kernels compute it.
/// Functions that use `x` twice repeat its expression (an epilogue's `x` is a variable or one
/// load).
pub(in super::super) fn activation_expr(act: Activation, x: FExpr, ty: Ty) -> FExpr {
    let k = |v: f32| splat_if(ty, fc(v));
    let un = |op: UnOp, v: FExpr| FExpr::Un(op, Box::new(v));
    let relu6 = |v: FExpr| bin(BinOp::Min, bin(BinOp::Max, v, k(0.0)), k(6.0));
    match act {
        Activation::Relu => bin(BinOp::Max, x, k(0.0)),
        Activation::Relu6 => relu6(x),
        Activation::Sigmoid => un(UnOp::Sigmoid, x),
        Activation::Silu => un(UnOp::Silu, x),
        Activation::HardSwish => {
            bin(BinOp::Mul, x.clone(), bin(BinOp::Mul, relu6(bin(BinOp::Add, x, k(3.0))), k(1.0 / 6.0)))
        }
        Activation::HardSigmoid => bin(BinOp::Mul, relu6(bin(BinOp::Add, x, k(3.0))), k(1.0 / 6.0)),
        Activation::Gelu => un(UnOp::Gelu, x),
        Activation::GeluTanh => {
            // x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            let x2 = bin(BinOp::Mul, x.clone(), x.clone());
            let cube_term = fma(bin(BinOp::Mul, x2, k(0.044_715)), x.clone(), x.clone());
            let inner = bin(BinOp::Mul, cube_term, k((2.0 / std::f64::consts::PI).sqrt() as f32));
            let half_x = bin(BinOp::Mul, x, k(0.5));
            fma(half_x.clone(), un(UnOp::Tanh, inner), half_x)
        }
        Activation::Tanh => un(UnOp::Tanh, x),
        // max(x, 0) + slope min(x, 0), as the interpreter computes it.
        Activation::LeakyRelu(slope) => fma(bin(BinOp::Min, x.clone(), k(0.0)), k(slope), bin(BinOp::Max, x, k(0.0))),
    }
}

fn elementwise_kernel(e: &EltJob, ty: Ty, in_place: bool) -> Kernel {
    let mut vars = Vars::default();
    let mut buffers = vec![e.input.buffer("in", false), e.output.buffer("out", true)];
    match &e.op {
        EltOp::Affine => {
            buffers.push(Buffer::new("scale", Layout::Flat { len: e.params }, false));
            buffers.push(Buffer::new("shift", Layout::Flat { len: e.params }, false));
        }
        EltOp::Add => buffers.push(e.other.as_ref().expect("add has two operands").buffer("other", false)),
        EltOp::Gate => buffers.push(e.other.as_ref().expect("a gate has two operands").buffer("gate", false)),
        EltOp::Activation(_) => {}
    }
    let mut k = new_kernel(&e.name, buffers);
    let apply = |x: FExpr, other: FExpr, param: IExpr| -> FExpr {
        match &e.op {
            EltOp::Activation(a) => activation_expr(*a, x, ty),
            EltOp::Affine => fma(x, load(ty, 2, Index::Flat(param.clone())), load(ty, 3, Index::Flat(param))),
            EltOp::Add => bin(BinOp::Add, x, other),
            EltOp::Gate => bin(BinOp::Mul, x, other),
        }
    };
    // The absorbed activations, each on a variable holding the value before it (an activation
    // may use its operand twice).
    let stages: Vec<VarId> = e.then.iter().map(|_| vars.new_var("v")).collect();
    let store_through = |value: FExpr, vty: Ty, index: Index| -> Vec<Stmt> {
        let mut code = Vec::new();
        let mut value = value;
        for (&a, &v) in e.then.iter().zip(&stages) {
            code.push(set(v, vty, value));
            value = activation_expr(a, fv(v), vty);
        }
        code.push(store(vty, 1, index, value));
        code
    };
    if e.input.flat {
        // One loop over the features in flatten order; scale/shift are per feature.
        let (t, f) = (vars.new_var("t"), vars.new_var("f"));
        let n = e.input.len() as i64;
        let other = e.other.as_ref().map_or(fc(0.0), |o| load(Ty::F32, 2, o.flat_index(iv(f))));
        let value = apply(load(Ty::F32, 0, e.input.flat_index(iv(f))), other, iv(f));
        let body = vec![for_range(
            f,
            iv(t) * 64,
            (iv(t) * 64 + 64).min(ic(n)),
            store_through(value, Ty::F32, e.output.flat_index(iv(f))),
        )];
        k.push_tasks(t, ceil_div(n, 64), body);
        k.var_names = vars.names;
        return k;
    }
    let (c, y, x) = (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"));
    let lanes = lanes(ty);
    let ch = iv(c) * lanes;
    let index = act(ch.clone(), iv(y), iv(x));
    let other = match (&e.op, &e.other) {
        (EltOp::Gate, _) => load(ty, 2, act(ch.clone(), ic(0), ic(0))),
        (_, Some(_)) => load(ty, 2, index.clone()),
        (_, None) => fc(0.0),
    };
    let value = apply(load(ty, 0, index.clone()), other, ch);
    let body = vec![for_range(x, 0, e.input.w as i64, store_through(value, ty, index))];
    rows_tasks(&mut k, &mut vars, ceil_div(e.input.c as i64, lanes), e.input.h as i64, 0, c, y, body);
    // In place, the halo is the input's and already zero.
    k.var_names = vars.names;
    if !in_place {
        append_halo_zeroing(&mut k, 1, e.output.c);
    }
    k
}
