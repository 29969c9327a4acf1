//! The layer graph: what the network computes, after blocks, repetitions and stages are expanded.
//! Nodes are stored in a topological order that is also the file order, which is the order of the
//! weight tensors (`cnnc params`) and the order torchvision lists its modules in.

use crate::ast::Span;

pub type NodeId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub kernel: [u64; 2],
    pub out_channels: u64,
    pub stride: [u64; 2],
    pub pad: [u64; 2],
    pub dilation: [u64; 2],
    pub groups: u64,
    pub bias: bool,
    pub relu: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel: [u64; 2],
    pub stride: [u64; 2],
    pub pad: [u64; 2],
    pub ceil: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fc {
    pub out: u64,
    pub bias: bool,
    pub relu: bool,
}

/// PyTorch's `LocalResponseNorm(size, alpha, beta, k)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Lrn {
    pub size: u64,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Input,
    Conv(Conv),
    Pool(Pool),
    AdaptiveAvgPool {
        out: [u64; 2],
    },
    /// Global average pooling: CxHxW -> Cx1x1 at any H, W.
    Gap,
    Relu,
    /// Eval-mode batch normalisation with running statistics.
    BatchNorm {
        eps: f64,
    },
    Lrn(Lrn),
    Dropout {
        p: f64,
    },
    Flatten,
    Fc(Fc),
    Softmax,
    /// Channel concatenation of the branch outputs, in branch order.
    Concat,
    /// Residual sum: inputs are [body, shortcut].
    Add,
    /// A statement that failed to elaborate (its error is already reported). Shape inference
    /// treats its output as unknown so that one mistake does not cascade into many; a network
    /// with an `Invalid` node never reaches the interpreter or the JIT.
    Invalid,
}

impl Op {
    /// The op's keyword in the language (and the `op` field of the JSON).
    pub fn keyword(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Conv(_) => "conv",
            Op::Pool(p) if p.kind == PoolKind::Max => "maxpool",
            Op::Pool(_) => "avgpool",
            Op::AdaptiveAvgPool { .. } => "adaptive_avgpool",
            Op::Gap => "gap",
            Op::Relu => "relu",
            Op::BatchNorm { .. } => "bn",
            Op::Lrn(_) => "lrn",
            Op::Dropout { .. } => "dropout",
            Op::Flatten => "flatten",
            Op::Fc(_) => "fc",
            Op::Softmax => "softmax",
            Op::Concat => "concat",
            Op::Add => "add",
            Op::Invalid => "invalid",
        }
    }

    /// A compact description for tables: `conv 3x3/2 64 +relu`.
    pub fn describe(&self) -> String {
        fn dims(d: [u64; 2]) -> String {
            if d[0] == d[1] { d[0].to_string() } else { format!("{}x{}", d[0], d[1]) }
        }
        fn kernel(d: [u64; 2]) -> String {
            format!("{}x{}", d[0], d[1])
        }
        match self {
            Op::Conv(c) => {
                let mut s = format!("conv {}", kernel(c.kernel));
                if c.stride != [1, 1] {
                    s += &format!("/{}", dims(c.stride));
                }
                s += &format!(" {}", c.out_channels);
                if c.groups != 1 {
                    s += &format!(" g{}", c.groups);
                }
                if c.dilation != [1, 1] {
                    s += &format!(" d{}", dims(c.dilation));
                }
                if c.relu {
                    s += " +relu";
                }
                s
            }
            Op::Pool(p) => {
                let mut s = format!("{} {}", self.keyword(), kernel(p.kernel));
                if p.stride != p.kernel {
                    s += &format!("/{}", dims(p.stride));
                }
                if p.ceil {
                    s += " ceil";
                }
                s
            }
            Op::AdaptiveAvgPool { out } => format!("adaptive_avgpool {}", kernel(*out)),
            Op::Lrn(l) => format!("lrn {}", l.size),
            Op::Dropout { p } => format!("dropout {p}"),
            Op::Fc(f) => format!("fc {}{}", f.out, if f.relu { " +relu" } else { "" }),
            other => other.keyword().to_string(),
        }
    }

    /// Conv and fc: the layers that count towards depth, MACs and most parameters.
    pub fn is_weighted_linear(&self) -> bool {
        matches!(self, Op::Conv(_) | Op::Fc(_))
    }
}

/// Where a node came from: its own source span, then the call sites of the blocks it was
/// instantiated through, innermost first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Origin {
    pub span: Span,
    pub call_sites: Vec<(Span, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The canonical name: `conv3.1`, `inception3a.b2.1.1`, `layer2.1.sc1`.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub origin: Origin,
    /// Index into `Network::stages`, if the node sits inside a stage.
    pub stage: Option<usize>,
    /// Inside a branch or a shortcut, rather than on the main path of its scope.
    pub off_main_path: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Input {
    pub c: u64,
    pub h: u64,
    pub w: u64,
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum DesignRule {
    /// VGG: the channel count doubles after each downsampling, up to `max`.
    DoubleChannels { max: Option<u64>, span: Span },
}

pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// How the layers were written: stages, block instances and groups around sequences, branches
/// side by side, residual bodies beside their shortcuts. Pictures are laid out from it.
#[derive(Clone, Debug, PartialEq)]
pub enum Structure {
    Node(NodeId),
    Group {
        name: String,
        kind: GroupKind,
        items: Vec<Structure>,
    },
    /// Branches run on the same input; `join` concatenates them.
    Branches {
        branches: Vec<Vec<Structure>>,
        join: NodeId,
    },
    /// `join` adds the body's result and the shortcut's (the input itself if `shortcut` is empty).
    Residual {
        body: Vec<Structure>,
        shortcut: Vec<Structure>,
        join: NodeId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupKind {
    Stage,
    /// An instance of the named block.
    Instance(String),
    /// A `{ ... }` group.
    Group,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub name: String,
    pub input: Input,
    pub input_span: Span,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub labels: Option<String>,
    pub rules: Vec<DesignRule>,
    pub stages: Vec<String>,
    pub nodes: Vec<Node>,
    /// The source's structure over `nodes` (top level first).
    pub structure: Vec<Structure>,
}

impl Network {
    /// The normalisation (mean, std) of input channel `c`; one value given applies to all.
    pub fn normalisation(&self, c: usize) -> (f64, f64) {
        let pick = |v: &[f64]| v.get(c).or(v.first()).copied().unwrap_or(0.0);
        (pick(&self.mean), pick(&self.std))
    }

    /// For each node, the nodes that read its output.
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut out = vec![Vec::new(); self.nodes.len()];
        for (id, n) in self.nodes.iter().enumerate() {
            for &i in &n.inputs {
                out[i].push(id);
            }
        }
        out
    }

    /// The network's output: the last node.
    pub fn output(&self) -> NodeId {
        self.nodes.len() - 1
    }
}
