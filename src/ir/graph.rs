//! The layer graph: what the network computes, after blocks, repetitions and stages are expanded.
//! Nodes are stored in a topological order that is also the file order, which is the order of the
//! weight tensors (`cnnc params`) and the order torchvision lists its modules in.

use crate::front::ast::Span;
use crate::ops::Op;

/// A node's index in `Network::nodes`.
pub type NodeId = usize;

/// Where a node came from: its own source span, then the call sites of the blocks it was
/// instantiated through, innermost first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Origin {
    /// The statement's span.
    pub span: Span,
    /// The block instances it came through, innermost first, with a label for each.
    pub call_sites: Vec<(Span, String)>,
}

/// One layer of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The canonical name: `conv3.1`, `inception3a.b2.1.1`, `layer2.1.sc1`.
    pub name: String,
    pub(crate) op: Op,
    /// The nodes whose outputs it reads, in order (a residual sum: body, then shortcut).
    pub inputs: Vec<NodeId>,
    /// Where it was written.
    pub origin: Origin,
    /// Index into `Network::stages`, if the node sits inside a stage.
    pub stage: Option<usize>,
    /// Inside a branch or a shortcut, rather than on the main path of its scope.
    pub off_main_path: bool,
}

impl Node {
    /// The op's keyword in the language: `conv`, `maxpool`, `concat`.
    pub fn op_keyword(&self) -> &'static str {
        self.op.keyword()
    }

    /// A compact description of the op for tables: `conv 3x3/2 64 +relu`.
    pub fn op_description(&self) -> String {
        self.op.describe()
    }
}

/// The input shape of a network: channels, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Input {
    /// Channels.
    pub c: u64,
    /// Height.
    pub h: u64,
    /// Width.
    pub w: u64,
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

/// A design rule the file opts into.
#[derive(Clone, Debug, PartialEq)]
pub enum DesignRule {
    /// VGG: the channel count doubles after each downsampling, up to `max`.
    DoubleChannels {
        /// The cap.
        max: Option<u64>,
        /// Where the rule was declared.
        span: Span,
    },
}

/// ImageNet's per-channel mean, torchvision's default normalisation.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation.
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// How the layers were written: stages, block instances and groups around sequences, branches
/// side by side, residual bodies beside their shortcuts. Pictures are laid out from it.
#[derive(Clone, Debug, PartialEq)]
pub enum Structure {
    /// One layer.
    Node(NodeId),
    /// A stage, block instance or `{ ... }` group around a sequence.
    Group {
        /// Its name (the stage or instance name).
        name: String,
        /// Which kind of group.
        kind: GroupKind,
        /// Its items, in order.
        items: Vec<Structure>,
    },
    /// Branches run on the same input; `join` concatenates them.
    Branches {
        /// Each branch's items.
        branches: Vec<Vec<Structure>>,
        /// The concatenation.
        join: NodeId,
    },
    /// `join` adds the body's result and the shortcut's (the input itself if `shortcut` is empty).
    Residual {
        /// The residual body.
        body: Vec<Structure>,
        /// The projection, or nothing for the identity.
        shortcut: Vec<Structure>,
        /// The sum.
        join: NodeId,
    },
    /// `join` multiplies the input by the body's per-channel (C x 1 x 1) result.
    Gate {
        /// The gate's body (squeeze-excitation: gap, convs, sigmoid).
        body: Vec<Structure>,
        /// The product.
        join: NodeId,
    },
}

/// What a `Structure::Group` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// `stage NAME { ... }`.
    Stage,
    /// An instance of the named block.
    Instance(String),
    /// A `{ ... }` group.
    Group,
}

/// A network after elaboration: its header and its layers in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// `network NAME`, or the file stem.
    pub name: String,
    /// The declared input.
    pub input: Input,
    /// The span of the `input` line.
    pub input_span: Span,
    /// Input normalisation: one mean per channel, or one for all.
    pub mean: Vec<f64>,
    /// Input normalisation: one standard deviation per channel, or one for all.
    pub std: Vec<f64>,
    /// The `labels` file, relative to the `.cnn` file.
    pub labels: Option<String>,
    /// Design rules opted into.
    pub rules: Vec<DesignRule>,
    /// Stage names, in order.
    pub stages: Vec<String>,
    /// The layers, in topological (file) order; the input first, the output last.
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
