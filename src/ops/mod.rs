//! The op catalogue. Each op family lives in one file that holds everything about it: its
//! catalogue entry (arguments, options, example, builder), its struct, its shape rule, its weight
//! tensors (from which both the parameter count and the tensor list come), its MACs, its window
//! (receptive field), how it fuses, and its reference interpreter kernel.
//!
//! The passes never match on `Op` themselves: they call `LayerOp` methods through `Op::def`,
//! the one exhaustive match that every op is registered in. A new op is its file, a line in
//! `Op`, `with_op!` and `CATALOGUE` below, and its JIT kernel (`backend/jit/kernels`); the
//! compiler then points at anything it has not filled in.

/// The `weights` and `macs` of an op without weights: none, and no multiply-accumulates.
macro_rules! weightless {
    () => {
        fn weights(&self, _: &[crate::ir::geometry::Shape]) -> Vec<super::WeightDecl> {
            Vec::new()
        }

        fn macs(&self, _: &[crate::ir::geometry::Shape], _: crate::ir::geometry::Shape) -> Option<u64> {
            Some(0)
        }
    };
}

mod activation;
mod adaptive_pool;
mod args;
mod bn;
mod conv;
mod fc;
mod gate;
mod layernorm;
mod lrn;
mod pool;
mod scale;
mod shape;
mod shuffle;
mod slice;
mod softmax;
mod structure;
mod support;

pub(crate) use activation::Activation;
pub(crate) use adaptive_pool::{AdaptiveAvgPool, Gap};
pub(crate) use args::{ArgValue, MAX_SIZE, Value, eval_args, show};
pub(crate) use bn::BatchNorm;
pub(crate) use conv::Conv;
pub(crate) use fc::Fc;
pub(crate) use gate::GateMul;
pub(crate) use layernorm::LayerNorm;
pub(crate) use lrn::Lrn;
pub(crate) use pool::{Pool, PoolKind};
pub(crate) use scale::Scale;
pub(crate) use shape::{Dropout, Flatten};
pub(crate) use shuffle::Shuffle;
pub(crate) use slice::Slice;
pub(crate) use softmax::Softmax;
pub(crate) use structure::{Add, Concat, InputOp, Invalid};

use crate::analysis::codes::Code;
use crate::analysis::diag::{Diagnostic, closest};
use crate::front::ast::{Arg, Ident};
use crate::front::expr::Env;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use args::{OpSpec, split_args};
use serde::Serialize;

/// What a layer computes, with its resolved arguments.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    Input(InputOp),
    Conv(Conv),
    Pool(Pool),
    AdaptiveAvgPool(AdaptiveAvgPool),
    /// Global average pooling: CxHxW -> Cx1x1 at any H, W.
    Gap(Gap),
    /// An elementwise activation (`relu`).
    Activation(Activation),
    /// Eval-mode batch normalisation with running statistics.
    BatchNorm(BatchNorm),
    Lrn(Lrn),
    /// Layer normalisation over the channels of each pixel.
    LayerNorm(LayerNorm),
    /// A learned per-channel multiplier.
    Scale(Scale),
    /// Channel shuffle.
    Shuffle(Shuffle),
    /// Channels `start..end` of the input (a sliced branch).
    Slice(Slice),
    /// The input times a per-channel gate: inputs are [x, gate].
    GateMul(GateMul),
    Dropout(Dropout),
    Flatten(Flatten),
    Fc(Fc),
    Softmax(Softmax),
    /// Channel concatenation of the branch outputs, in branch order.
    Concat(Concat),
    /// Residual sum: inputs are [body, shortcut].
    Add(Add),
    /// A statement that failed to elaborate (its error is already reported). Shape inference
    /// treats its output as unknown so that one mistake does not cascade into many; a network
    /// with an `Invalid` node never reaches the interpreter or the JIT.
    Invalid(Invalid),
}

/// Evaluates `$body` with `$o` bound to the op's struct: the one exhaustive match over `Op`
/// through which passes and backends reach an op's own code (a trait method each).
macro_rules! with_op {
    ($op:expr, $o:ident => $body:expr) => {
        match $op {
            $crate::ops::Op::Input($o) => $body,
            $crate::ops::Op::Conv($o) => $body,
            $crate::ops::Op::Pool($o) => $body,
            $crate::ops::Op::AdaptiveAvgPool($o) => $body,
            $crate::ops::Op::Gap($o) => $body,
            $crate::ops::Op::Activation($o) => $body,
            $crate::ops::Op::BatchNorm($o) => $body,
            $crate::ops::Op::Lrn($o) => $body,
            $crate::ops::Op::LayerNorm($o) => $body,
            $crate::ops::Op::Scale($o) => $body,
            $crate::ops::Op::Shuffle($o) => $body,
            $crate::ops::Op::Slice($o) => $body,
            $crate::ops::Op::GateMul($o) => $body,
            $crate::ops::Op::Dropout($o) => $body,
            $crate::ops::Op::Flatten($o) => $body,
            $crate::ops::Op::Fc($o) => $body,
            $crate::ops::Op::Softmax($o) => $body,
            $crate::ops::Op::Concat($o) => $body,
            $crate::ops::Op::Add($o) => $body,
            $crate::ops::Op::Invalid($o) => $body,
        }
    };
}
pub(crate) use with_op;

/// The catalogue, in the order the layers are listed to users.
const CATALOGUE: &[&[OpSpec]] = &[
    conv::SPECS,
    pool::SPECS,
    adaptive_pool::SPECS,
    activation::SPECS,
    bn::SPECS,
    layernorm::SPECS,
    scale::SPECS,
    lrn::SPECS,
    shuffle::SPECS,
    shape::SPECS,
    fc::SPECS,
    softmax::SPECS,
];

/// The kind of a weight tensor, in PyTorch's naming: the suffix of its canonical name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// Conv and fc weights; BN's and layer norm's gamma; the layer scale.
    Weight,
    /// Biases; BN's beta.
    Bias,
    /// BN's running mean (a buffer, not a parameter).
    RunningMean,
    /// BN's running variance (a buffer, not a parameter).
    RunningVar,
}

impl ParamKind {
    /// The name suffix: `weight`, `bias`, `running_mean`, `running_var`.
    pub fn suffix(self) -> &'static str {
        match self {
            ParamKind::Weight => "weight",
            ParamKind::Bias => "bias",
            ParamKind::RunningMean => "running_mean",
            ParamKind::RunningVar => "running_var",
        }
    }
}

/// One weight tensor an op needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WeightDecl {
    pub(crate) kind: ParamKind,
    pub(crate) shape: Vec<u64>,
}

pub(crate) fn weight(kind: ParamKind, shape: Vec<u64>) -> WeightDecl {
    WeightDecl { kind, shape }
}

/// The input window one output value reads, for receptive fields and the kernel-size lint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Window {
    /// One position (or the channels of one pixel).
    Point,
    /// `extent` rows and columns (a dilated kernel's effective size), moved by `stride`.
    Kernel { extent: [u64; 2], stride: [u64; 2] },
}

/// How an op joins a fused loop nest (`analysis::fusion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fusion {
    /// conv (`spatial`) or fc: starts a group whose epilogue can absorb what follows.
    Anchor { spatial: bool },
    /// gap: starts a group that can absorb a following fc.
    GlobalPool,
    /// bn, scale: folded into the anchor's weights when it follows the anchor directly.
    Fold,
    /// An elementwise activation, applied in the epilogue.
    Activation,
    /// The residual sum: the other operand is read in the epilogue.
    Sum,
    /// A pool that tiles its input exactly, which a conv epilogue reduces in registers.
    Pool,
    /// Runs as a loop nest of its own (views run as none: see `is_view`).
    Alone,
}

/// What kind of layer it is, for pictures and totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Category {
    Input,
    Conv,
    Fc,
    Pool,
    /// Concatenation and residual sums.
    Join,
    Other,
}

/// Facts about an op that do not depend on shapes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Traits {
    pub(crate) category: Category,
    /// Whether, run on its own, it may overwrite its input with its output.
    pub(crate) in_place: bool,
    /// Whether it only relabels its input: no work and no storage (flatten, dropout).
    pub(crate) view: bool,
    /// The non-linearity it applies, if any (a conv's fused relu counts).
    pub(crate) activation: Option<Activation>,
    /// Whether its second input is a factor computed from the first (a gate): the papers leave
    /// the factor's layers out of the network's depth.
    pub(crate) factor: bool,
}

/// Everything the passes need to know about an op. Every op implements all of it: the compiler
/// lists what a new op has not yet said.
pub(crate) trait LayerOp {
    /// The op's keyword in the language (and the `op` field of the JSON).
    fn keyword(&self) -> &'static str;

    /// A compact description for tables: `conv 3x3/2 64 +relu`.
    fn describe(&self) -> String {
        self.keyword().to_string()
    }

    /// The output shape for `inputs` (the declared `input` for the input node), or the
    /// diagnostic that explains why there is none (`None`: an error was reported upstream).
    fn infer(&self, at: &Node, inputs: &[Shape], input: Input) -> Result<Shape, Option<Diagnostic>>;

    /// The weight tensors, in PyTorch's order. Parameter counts come from this list too.
    fn weights(&self, inputs: &[Shape]) -> Vec<WeightDecl>;

    /// Multiply-accumulates at batch 1 (conv and fc; 0 for the rest, as torchvision counts),
    /// `None` on overflow.
    fn macs(&self, inputs: &[Shape], output: Shape) -> Option<u64>;

    /// The input window of one output value.
    fn window(&self, inputs: &[Shape]) -> Window;

    /// How it joins a fused loop nest.
    fn fusion(&self, inputs: &[Shape]) -> Fusion;

    /// What it is, whatever the shapes.
    fn traits(&self) -> Traits;

    /// The reference kernel: `inputs` in node order (the image for the input node), `weights`
    /// in the order of `weights()`.
    fn eval(&self, inputs: &[&Tensor], weights: &[&[f32]]) -> Tensor;
}

impl Op {
    /// The op's own rules.
    pub(crate) fn def(&self) -> &dyn LayerOp {
        with_op!(self, o => o as &dyn LayerOp)
    }

    pub(crate) fn keyword(&self) -> &'static str {
        self.def().keyword()
    }

    pub(crate) fn describe(&self) -> String {
        self.def().describe()
    }

    /// Conv and fc: the layers that count towards depth and MACs.
    pub(crate) fn is_weighted_linear(&self) -> bool {
        matches!(self.def().traits().category, Category::Conv | Category::Fc)
    }
}

/// Statements that belong to the file header rather than the network body.
pub(crate) const HEADER_KEYWORDS: &[&str] = &["network", "input", "mean", "std", "labels", "rule"];
pub(crate) const STRUCTURE_KEYWORDS: &[&str] =
    &["stage", "block", "branch", "residual", "shortcut", "gate", "if", "else", "in"];

fn specs() -> impl Iterator<Item = &'static OpSpec> {
    CATALOGUE.iter().flat_map(|family| family.iter())
}

/// The layer keywords, in catalogue order.
pub(crate) fn op_names() -> impl Iterator<Item = &'static str> {
    specs().map(|s| s.name)
}

/// Words that block parameters and block names may not take: op names and the structural and
/// header keywords. (Option names such as `k` or `stride` are allowed; see `eval_args`.)
pub(crate) fn is_keyword(name: &str) -> bool {
    op_names().any(|o| o == name) || HEADER_KEYWORDS.contains(&name) || STRUCTURE_KEYWORDS.contains(&name)
}

/// Converts `op args...` into an `Op`, or the diagnostics that explain why it cannot.
pub(crate) fn build_op(op: &Ident, args: &[Arg], env: &Env) -> Result<Op, Vec<Diagnostic>> {
    let Some(spec) = specs().find(|s| s.name == op.name) else {
        return Err(vec![unknown_op(op)]);
    };
    let values = eval_args(args, env, |n| spec.options.iter().any(|o| o.name == n))?;
    let mut errors = Vec::new();
    let parsed = split_args(spec, op, values, env, &mut errors);
    match (spec.build)(&parsed, &mut errors) {
        Some(op) if errors.is_empty() => Ok(op),
        _ => Err(errors),
    }
}

pub(crate) fn unknown_op(op: &Ident) -> Diagnostic {
    let mut d = Diagnostic::error(Code::UnknownLayer, op.span, format!("unknown layer `{}`", op.name))
        .with_label("not a layer");
    if let Some(c) = closest(&op.name, op_names()) {
        d = d.with_help(format!("did you mean `{c}`?"));
    } else if STRUCTURE_KEYWORDS.contains(&op.name.as_str()) {
        d = d.with_help(format!("`{}` needs a `{{ ... }}` body", op.name));
    } else {
        d = d.with_note(format!("the layers are: {}", op_names().collect::<Vec<_>>().join(", ")));
    }
    d
}
