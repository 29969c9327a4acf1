//! Every diagnostic code, with its title and explanation: one table, so that a code is defined
//! once and `cnnc explain CODE` can print what it means (as `rustc --explain` does).

use serde::{Serialize, Serializer};
use std::fmt;

/// A diagnostic code. Errors are `E0xxx` (language and structure `E00xx`, shapes `E01xx`,
/// weights `E02xx`); warnings are `W0xxx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// E0001
    Syntax,
    /// E0002
    UnknownLayer,
    /// E0003
    UnknownParameter,
    /// E0004
    BadArgument,
    /// E0005
    Header,
    /// E0006
    UndefinedBlock,
    /// E0007
    RecursiveBlock,
    /// E0008
    BlockArity,
    /// E0009
    DuplicateName,
    /// E0010
    UnknownName,
    /// E0011
    Arithmetic,
    /// E0012
    TooManyLayers,
    /// E0013
    Misplaced,
    /// E0101
    Shrinks,
    /// E0102
    WeightsReshaped,
    /// E0103
    SpatialAfterFlat,
    /// E0104
    FcOnMap,
    /// E0105
    ConcatMismatch,
    /// E0106
    ResidualMismatch,
    /// E0107
    Groups,
    /// E0108
    TooLarge,
    /// E0109
    PoolPadding,
    /// E0110
    GateShape,
    /// E0111
    ShuffleGroups,
    /// E0112
    SliceRange,
    /// E0201
    WeightShape,
    /// E0301
    MemoryLimit,
    /// E0302
    ImageTooLarge,
    /// E0303
    FileTooLarge,
    /// W0001
    DoubleChannels,
    /// W0002
    PoolDropsRows,
    /// W0003
    KernelLargerThanInput,
    /// W0004
    UnusedBlock,
    /// W0005
    AfterSoftmax,
    /// W0006
    EvenKernelPadding,
    /// W0007
    EmptyResidual,
}

/// What a code means.
struct Info {
    code: Code,
    id: &'static str,
    title: &'static str,
    explanation: &'static str,
}

/// The table every code is described by, in code order (checked by a test).
const TABLE: &[Info] = &[
    Info {
        code: Code::Syntax,
        id: "E0001",
        title: "syntax error",
        explanation: "The file does not follow the grammar of the language: a missing `}` or `)`, a stray \
character, or a statement the parser cannot read. It is also raised for a file that is not UTF-8, \
larger than 1 MiB, or whose braces and parentheses nest deeper than 64 levels.

    stage conv1 { conv 3x3 64 relu x2     # the `}` is missing

Close every brace, and separate statements with new lines or `;`.",
    },
    Info {
        code: Code::UnknownLayer,
        id: "E0002",
        title: "unknown layer",
        explanation: "A statement names a layer kind that does not exist. The closest spelling is suggested.

    stage features { conv 3x3 16 relu; maxpol 2 }    # maxpol -> maxpool

`cnnc check` lists the layer kinds when no spelling is close.",
    },
    Info {
        code: Code::UnknownParameter,
        id: "E0003",
        title: "unknown parameter of a layer",
        explanation: "A layer is given an option it does not take.

    conv 3x3 64 strid 2      # did you mean `stride`?

Each layer's options are listed in README.md's language reference.",
    },
    Info {
        code: Code::BadArgument,
        id: "E0004",
        title: "missing, extra or out-of-range argument",
        explanation: "A layer lacks a required argument, has one too many, gives an option twice or without \
its value, or gives a value outside its range (sizes from 1 to 2^31-1, a dropout probability in \
[0, 1), a positive eps, a repetition count from 1 to 10,000).

    conv 3x3           # conv needs its output channels: `conv 3x3 64`",
    },
    Info {
        code: Code::Header,
        id: "E0005",
        title: "header problem",
        explanation: "The file header is wrong: `input CxHxW` is missing, a header line is given twice, a rule \
is unknown, or `mean`/`std` give neither one value nor one per input channel.

    network vgg16
    input 3x224x224
    mean 0.485 0.456        # two values for three channels",
    },
    Info {
        code: Code::UndefinedBlock,
        id: "E0006",
        title: "undefined block",
        explanation: "A block is instantiated that no `block NAME(...) { ... }` defines. The closest block name \
is suggested; a layer written with parentheses (`conv(3)`) is pointed out.",
    },
    Info {
        code: Code::RecursiveBlock,
        id: "E0007",
        title: "recursive block",
        explanation: "A block instantiates itself, directly or through other blocks, or block instances nest \
deeper than 64. A network is finite: repeat a block with `x3` instead.

    block b(c) { conv 3x3 c; b(c) }     # b calls b",
    },
    Info {
        code: Code::BlockArity,
        id: "E0008",
        title: "wrong number of block arguments",
        explanation: "A block is called with more arguments than it has parameters, or fewer than its \
parameters without defaults. Parameters with defaults must come last.

    block conv_bn(c, k = 3) { conv k c; bn; relu }
    stage s { conv_bn(64, 3, 1) }       # conv_bn takes 1 to 2 arguments",
    },
    Info {
        code: Code::DuplicateName,
        id: "E0009",
        title: "duplicate name",
        explanation: "Two stages, labels, blocks or parameters share a name, or a keyword is used as a name. \
Canonical layer names must be unique, because they name the weight tensors.",
    },
    Info {
        code: Code::UnknownName,
        id: "E0010",
        title: "unknown name in an expression",
        explanation: "An expression uses a name that is not a parameter of the enclosing block.

    block b(c) { conv 3x3 2*ch }      # ch -> c",
    },
    Info {
        code: Code::Arithmetic,
        id: "E0011",
        title: "integer overflow or division by zero",
        explanation: "Block arithmetic is checked: a result beyond 64 bits, or a division or remainder by \
zero, is an error rather than a wrong size.",
    },
    Info {
        code: Code::TooManyLayers,
        id: "E0012",
        title: "the network expands to more than 100,000 layers",
        explanation: "Repetitions and blocks expanded to more layers than any real network has. Check the \
repetition counts.",
    },
    Info {
        code: Code::Misplaced,
        id: "E0013",
        title: "statement in the wrong place",
        explanation: "A header line inside a stage, a stage inside a stage or block, a block defined inside \
another, or a label where none is allowed.",
    },
    Info {
        code: Code::Shrinks,
        id: "E0101",
        title: "the input shrinks to nothing",
        explanation: "A convolution or pooling kernel is larger than its padded input, so the output would \
have no rows or columns. Use a larger input, a smaller kernel or stride, or more padding.",
    },
    Info {
        code: Code::WeightsReshaped,
        id: "E0102",
        title: "a layer's weights would change shape under --input",
        explanation: "Weights are sized for the declared input. At another input size (`--input`, or an .npy \
input of another size), a layer whose weights depend on the size cannot use them: typically an fc \
after flatten, whose input length changes with the feature map. Put `gap` (or `adaptive_avgpool`) \
before flatten so the network accepts any size. Channels can never change.",
    },
    Info {
        code: Code::SpatialAfterFlat,
        id: "E0103",
        title: "a spatial op after flatten or fc",
        explanation: "conv, pooling, lrn and gap need a CxHxW feature map, but receive a flat vector. Move \
`flatten` after the last spatial layer.",
    },
    Info {
        code: Code::FcOnMap,
        id: "E0104",
        title: "fc on a feature map without flatten",
        explanation: "fc takes a flat vector. Insert `flatten` (or `gap; flatten`) before it.",
    },
    Info {
        code: Code::ConcatMismatch,
        id: "E0105",
        title: "concatenated branches differ in height or width",
        explanation: "Consecutive `branch { ... }` statements are concatenated along channels, so every \
branch must produce the same height and width (or all be flat vectors). Pools inside branches \
usually need `stride 1 pad 1`.

    branch { conv 1x1 64 }
    branch { maxpool 3 stride 2 }     # halves the size: the branches disagree",
    },
    Info {
        code: Code::ResidualMismatch,
        id: "E0106",
        title: "residual body and shortcut differ in shape",
        explanation: "A residual sum adds two tensors of one shape. When the body changes the channels or \
the stride, project the input with a shortcut:

    residual { conv 3x3 128 stride 2 nobias; bn; relu; conv 3x3 128 nobias; bn }
    shortcut { conv 1x1 128 stride 2 nobias; bn }",
    },
    Info {
        code: Code::Groups,
        id: "E0107",
        title: "conv groups do not divide the channel counts",
        explanation: "A grouped convolution splits its input and output channels into `groups` equal parts, \
so `groups` must divide both.",
    },
    Info {
        code: Code::TooLarge,
        id: "E0108",
        title: "a tensor or cost too large to represent",
        explanation: "A tensor would hold more than 2^40 values, or a cost would overflow a 64-bit counter. \
Such sizes are certainly mistakes.",
    },
    Info {
        code: Code::PoolPadding,
        id: "E0109",
        title: "pooling padding larger than half the kernel",
        explanation: "PyTorch rejects pooling whose padding exceeds half its kernel: such windows could lie \
entirely in the padding.",
    },
    Info {
        code: Code::GateShape,
        id: "E0110",
        title: "a gate's body does not give one value per channel",
        explanation: "`gate { ... }` multiplies its input, C x H x W, by what its body computes from it, which \
must be C x 1 x 1: one factor per channel. Squeeze-excitation pools, reduces and restores the \
channels:

    gate { gap; conv 1x1 in.c/4 relu; conv 1x1 in.c; sigmoid }

A body that forgets `gap` keeps the height and width; one that ends with the wrong channel count \
cannot be matched to the input's channels.",
    },
    Info {
        code: Code::ShuffleGroups,
        id: "E0111",
        title: "channel shuffle with groups that do not divide the channels",
        explanation: "`shuffle G` splits the channels into G groups of C/G and interleaves them, so G must \
divide the channel count.",
    },
    Info {
        code: Code::SliceRange,
        id: "E0112",
        title: "a branch's channel range does not fit its input",
        explanation: "`branch A..B { ... }` reads channels A to B-1 of its input: it needs 0 <= A < B <= C. \
ShuffleNetV2 splits its input in halves:

    branch 0..in.c/2 { }
    branch in.c/2..in.c { conv 1x1 in.c/2 nobias; bn; relu }",
    },
    Info {
        code: Code::WeightShape,
        id: "E0201",
        title: "a weight tensor has the wrong shape",
        explanation: "The weights file holds a tensor under a layer's name whose shape is not the one the \
network needs at that layer. The weights are probably for another network, another version of \
this file, or another input size. `cnnc params MODEL.cnn` lists the shapes it expects.",
    },
    Info {
        code: Code::MemoryLimit,
        id: "E0301",
        title: "the run would need more memory than the limit",
        explanation: "Before anything is allocated, cnnc adds up what a command needs: the weights (as f32, plus \
the file they are read from), the activations (the JIT's arena, or the interpreter's live tensors \
times the batch), the inputs and outputs, and an allowance for the JIT's code. Beyond the limit \
(8 GiB, or three quarters of the machine's memory if less) it refuses, naming the largest part. \
Raise the limit with `--max-memory 16G`, or run smaller batches with `--batch`.",
    },
    Info {
        code: Code::ImageTooLarge,
        id: "E0302",
        title: "an image has more pixels than the limit",
        explanation: "An image's size is read from its header and refused before decoding when it has more \
pixels than the limit (50 million by default): a small file can describe an enormous picture. \
Raise the limit with `--max-pixels`.",
    },
    Info {
        code: Code::FileTooLarge,
        id: "E0303",
        title: "a file is larger than cnnc reads",
        explanation: "A model source (1 MiB), a labels file (16 MiB) or another input is larger than cnnc reads, \
or is a device or pipe that never ends (`/dev/zero`). Weights must be regular files.",
    },
    Info {
        code: Code::DoubleChannels,
        id: "W0001",
        title: "the double-channels rule is broken",
        explanation: "With `rule double-channels` in the header, convolutions at one resolution share a \
channel count, and the first convolution after each downsampling doubles it (capped at `max`), as \
in VGG. Branches are exempt.",
    },
    Info {
        code: Code::PoolDropsRows,
        id: "W0002",
        title: "pooling ignores trailing rows or columns",
        explanation: "The pooling windows stop before the end of the input, so its last rows or columns never \
reach the output. Use `ceil` mode, padding, or an input size the stride divides.",
    },
    Info {
        code: Code::KernelLargerThanInput,
        id: "W0003",
        title: "a kernel larger than its input",
        explanation: "A kernel is larger than its unpadded input: most of each window reads padding.",
    },
    Info {
        code: Code::UnusedBlock,
        id: "W0004",
        title: "a block that is never used",
        explanation: "A block is defined but never instantiated. Remove it, or use it in a stage.",
    },
    Info {
        code: Code::AfterSoftmax,
        id: "W0005",
        title: "a layer after softmax",
        explanation: "A layer reads softmax's probabilities. Softmax belongs at the very end of a classifier.",
    },
    Info {
        code: Code::EvenKernelPadding,
        id: "W0006",
        title: "an even kernel with the default padding",
        explanation: "A convolution's default padding is floor(k/2), which keeps the size for odd kernels. With \
an even kernel it adds a row and a column: `conv 4x4 96 stride 4` on 224 gives 57x57, where \
PyTorch's default (padding 0) gives 56x56. Say which you mean: `pad 0` as in ConvNeXt's stem, or \
`pad 2` to keep the default.",
    },
    Info {
        code: Code::EmptyResidual,
        id: "W0007",
        title: "an empty residual doubles its input",
        explanation: "`residual { }` with no layers (and no shortcut layers) adds its input to itself: the \
result is twice the input. An empty `branch { }` is the identity; an empty residual is almost \
certainly a mistake.",
    },
];

impl Code {
    fn info(self) -> &'static Info {
        let info = &TABLE[self as usize];
        debug_assert_eq!(info.code, self, "codes: TABLE is in declaration order");
        info
    }

    /// The code as printed: `E0105`.
    pub fn as_str(self) -> &'static str {
        self.info().id
    }

    /// A one-line title: `concatenated branches differ in height or width`.
    pub fn title(self) -> &'static str {
        self.info().title
    }

    /// What the code means, with an example and the usual fix.
    pub fn explanation(self) -> &'static str {
        self.info().explanation
    }

    /// The code spelled `E0105` (any case), if there is one.
    pub fn parse(text: &str) -> Option<Code> {
        TABLE.iter().find(|i| i.id.eq_ignore_ascii_case(text.trim())).map(|i| i.code)
    }

    /// Every code, in order.
    pub fn all() -> impl Iterator<Item = Code> {
        TABLE.iter().map(|i| i.code)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_declaration_order_and_codes_are_unique() {
        for (i, info) in TABLE.iter().enumerate() {
            assert_eq!(info.code as usize, i, "{} is out of place", info.id);
            assert_eq!(Code::parse(info.id), Some(info.code));
        }
        let mut ids: Vec<_> = TABLE.iter().map(|i| i.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), TABLE.len());
    }
}
