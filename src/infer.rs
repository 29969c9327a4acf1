//! Shape inference over the layer graph: one output shape per node, or `None` where an earlier
//! error makes the shape unknowable (which silences follow-on errors downstream).

use crate::diag::Diagnostic;
use crate::geometry::{GeomError, MAX_ELEMENTS, Shape, conv_out_len, pool_out_len};
use crate::graph::{Input, Network, Node, Op};

#[derive(Clone, Debug)]
pub struct Shapes {
    pub out: Vec<Option<Shape>>,
    /// For flat tensors that come from `flatten`: the map they were flattened from.
    pub unflat: Vec<Option<Shape>>,
}

impl Shapes {
    /// All shapes, when inference succeeded everywhere.
    pub fn complete(&self) -> Option<Vec<Shape>> {
        self.out.iter().copied().collect()
    }
}

/// Attaches the block call sites of `node` to a diagnostic about it.
pub fn at_node(mut d: Diagnostic, node: &Node) -> Diagnostic {
    for (span, text) in &node.origin.call_sites {
        d = d.with_secondary(*span, text.clone());
    }
    d
}

pub fn infer_shapes(net: &Network, input: Input) -> (Shapes, Vec<Diagnostic>) {
    let mut shapes = Shapes { out: Vec::with_capacity(net.nodes.len()), unflat: Vec::new() };
    let mut diags = Vec::new();
    for node in &net.nodes {
        let ins: Option<Vec<Shape>> = node.inputs.iter().map(|&i| shapes.out[i]).collect();
        let unflat_in = node.inputs.first().and_then(|&i| shapes.unflat[i]);
        let (out, unflat) = match ins {
            None => (None, None),
            Some(ins) => match infer_node(node, &ins, input) {
                Ok(s) => {
                    let unflat = match node.op {
                        Op::Flatten => match ins[0] {
                            m @ Shape::Map { .. } => Some(m),
                            Shape::Flat { .. } => unflat_in,
                        },
                        Op::Relu | Op::Dropout { .. } | Op::BatchNorm { .. } | Op::Softmax => unflat_in,
                        _ => None,
                    };
                    match s.elements() {
                        Some(n) if n <= MAX_ELEMENTS => (Some(s), unflat),
                        _ => {
                            diags.push(at_node(too_large(node, &s), node));
                            (None, None)
                        }
                    }
                }
                Err(d) => {
                    if let Some(d) = d {
                        diags.push(at_node(d, node));
                    }
                    (None, None)
                }
            },
        };
        shapes.out.push(out);
        shapes.unflat.push(unflat);
    }
    (shapes, diags)
}

fn too_large(node: &Node, s: &Shape) -> Diagnostic {
    Diagnostic::error(
        "E0108",
        node.origin.span,
        format!("{} would produce a {s} tensor, more than {MAX_ELEMENTS} values", node.op.keyword()),
    )
    .with_label("absurdly large")
}

fn needs_map(node: &Node, s: Shape) -> Result<(u64, u64, u64), Option<Diagnostic>> {
    match s {
        Shape::Map { c, h, w } => Ok((c, h, w)),
        Shape::Flat { n } => {
            let op = node.op.keyword();
            Err(Some(
                Diagnostic::error(
                    "E0103",
                    node.origin.span,
                    format!("{op} expects a CxHxW feature map but receives a flat vector of {n} values"),
                )
                .with_label(format!("{op} needs spatial input"))
                .with_help(format!("move `flatten` after the last spatial layer; {op} cannot follow flatten or fc")),
            ))
        }
    }
}

fn shrink_error(node: &Node, axis: &str, len: u64, e: GeomError) -> Diagnostic {
    let op = node.op.keyword();
    match e {
        GeomError::Shrinks { kernel, padded } => Diagnostic::error(
            "E0101",
            node.origin.span,
            format!(
                "{op} shrinks its input to nothing: the {axis} is {len} ({padded} with padding) but the kernel spans {kernel}"
            ),
        )
        .with_label(format!("output {axis} would be 0 or less"))
        .with_help("use a larger input, a smaller kernel or stride, or more padding"),
        GeomError::Overflow => Diagnostic::error("E0108", node.origin.span, format!("{op}: size arithmetic overflows"))
            .with_label("sizes too large"),
    }
}

fn infer_node(node: &Node, ins: &[Shape], input: Input) -> Result<Shape, Option<Diagnostic>> {
    let first = ins.first().copied();
    match &node.op {
        Op::Input => Ok(Shape::Map { c: input.c, h: input.h, w: input.w }),
        Op::Invalid => Err(None),
        Op::Conv(c) => {
            let (ch, h, w) = needs_map(node, first.expect("conv has one input"))?;
            if ch % c.groups != 0 || c.out_channels % c.groups != 0 {
                let which = if ch % c.groups != 0 {
                    format!("the {ch} input channels")
                } else {
                    format!("the {} output channels", c.out_channels)
                };
                return Err(Some(
                    Diagnostic::error(
                        "E0107",
                        node.origin.span,
                        format!("conv groups {} does not divide {which}", c.groups),
                    )
                    .with_label("groups must divide both channel counts"),
                ));
            }
            let oh = conv_out_len(h, c.kernel[0], c.stride[0], c.pad[0], c.dilation[0])
                .map_err(|e| Some(shrink_error(node, "height", h, e)))?;
            let ow = conv_out_len(w, c.kernel[1], c.stride[1], c.pad[1], c.dilation[1])
                .map_err(|e| Some(shrink_error(node, "width", w, e)))?;
            Ok(Shape::Map { c: c.out_channels, h: oh, w: ow })
        }
        Op::Pool(p) => {
            let (ch, h, w) = needs_map(node, first.expect("pool has one input"))?;
            for axis in 0..2 {
                if p.pad[axis] * 2 > p.kernel[axis] {
                    return Err(Some(
                        Diagnostic::error(
                            "E0109",
                            node.origin.span,
                            format!(
                                "{} padding {} is more than half the kernel {}",
                                node.op.keyword(),
                                p.pad[axis],
                                p.kernel[axis]
                            ),
                        )
                        .with_label("PyTorch rejects this padding")
                        .with_help("pooling padding must be at most kernel / 2"),
                    ));
                }
            }
            let oh = pool_out_len(h, p.kernel[0], p.stride[0], p.pad[0], p.ceil)
                .map_err(|e| Some(shrink_error(node, "height", h, e)))?;
            let ow = pool_out_len(w, p.kernel[1], p.stride[1], p.pad[1], p.ceil)
                .map_err(|e| Some(shrink_error(node, "width", w, e)))?;
            Ok(Shape::Map { c: ch, h: oh, w: ow })
        }
        Op::AdaptiveAvgPool { out } => {
            let (ch, _, _) = needs_map(node, first.expect("pool has one input"))?;
            Ok(Shape::Map { c: ch, h: out[0], w: out[1] })
        }
        Op::Gap => {
            let (ch, _, _) = needs_map(node, first.expect("gap has one input"))?;
            Ok(Shape::Map { c: ch, h: 1, w: 1 })
        }
        Op::Lrn(_) => {
            needs_map(node, first.expect("lrn has one input"))?;
            Ok(first.expect("checked"))
        }
        Op::Relu | Op::BatchNorm { .. } | Op::Dropout { .. } | Op::Softmax => Ok(first.expect("one input")),
        Op::Flatten => {
            let s = first.expect("flatten has one input");
            Ok(Shape::Flat { n: s.elements().ok_or(None)? })
        }
        Op::Fc(fc) => match first.expect("fc has one input") {
            Shape::Flat { .. } => Ok(Shape::Flat { n: fc.out }),
            s @ Shape::Map { .. } => Err(Some(
                Diagnostic::error(
                    "E0104",
                    node.origin.span,
                    format!("fc expects a flat vector but receives a {s} feature map"),
                )
                .with_label("input is not flat")
                .with_help("insert `flatten` before fc"),
            )),
        },
        Op::Concat => concat_shape(node, ins),
        Op::Add => {
            let (body, short) = (ins[0], ins[1]);
            if body == short {
                return Ok(body);
            }
            let mut d = Diagnostic::error(
                "E0106",
                node.origin.span,
                format!("residual sum needs equal shapes, but the body gives {body} and the shortcut gives {short}"),
            )
            .with_label("shapes differ");
            if let (Shape::Map { c, h, .. }, Shape::Map { h: sh, .. }) = (body, short) {
                let stride = if h > 0 && sh % h == 0 { sh / h } else { 1 };
                let stride = if stride > 1 { format!(" stride {stride}") } else { String::new() };
                d = d.with_help(format!("add a projection: `shortcut {{ conv 1x1 {c}{stride} nobias; bn }}`"));
            }
            Err(Some(d))
        }
    }
}

fn concat_shape(node: &Node, ins: &[Shape]) -> Result<Shape, Option<Diagnostic>> {
    let listing =
        || ins.iter().enumerate().map(|(i, s)| format!("b{} gives {s}", i + 1)).collect::<Vec<_>>().join(", ");
    match ins[0] {
        Shape::Map { h, w, .. } => {
            let mut c = 0u64;
            for s in ins {
                match *s {
                    Shape::Map { c: bc, h: bh, w: bw } if bh == h && bw == w => {
                        c = c.checked_add(bc).ok_or(None)?;
                    }
                    _ => {
                        return Err(Some(
                            Diagnostic::error(
                                "E0105",
                                node.origin.span,
                                format!("concatenated branches must agree on height and width: {}", listing()),
                            )
                            .with_label("branch outputs differ in size")
                            .with_help(
                                "give every branch the same stride and padding (pools in branches often need `pad 1`)",
                            ),
                        ));
                    }
                }
            }
            Ok(Shape::Map { c, h, w })
        }
        Shape::Flat { .. } => {
            let mut n = 0u64;
            for s in ins {
                match *s {
                    Shape::Flat { n: bn } => n = n.checked_add(bn).ok_or(None)?,
                    _ => {
                        return Err(Some(
                            Diagnostic::error(
                                "E0105",
                                node.origin.span,
                                format!("concatenated branches must all be maps or all be vectors: {}", listing()),
                            )
                            .with_label("mixed branch outputs"),
                        ));
                    }
                }
            }
            Ok(Shape::Flat { n })
        }
    }
}

/// Weights are sized by the declared input. Under `--input`, a layer whose weights would change
/// shape cannot use them: an fc whose input length changes, or a conv or bn whose input channels
/// change. Each is reported naming both sizes.
pub fn check_fc_inputs(net: &Network, declared: &Shapes, actual: &Shapes) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for node in &net.nodes {
        let Some(&src) = node.inputs.first() else {
            continue;
        };
        let (Some(exp), Some(got)) = (declared.out[src], actual.out[src]) else {
            continue;
        };
        let d = match node.op {
            Op::Fc(_) if exp != got => {
                let describe = |s: Shape, unflat: Option<Shape>, what: &str| match unflat {
                    Some(m) => format!("{}{what} ({m})", s.channels()),
                    None => format!("{}{what}", s.channels()),
                };
                Diagnostic::error(
                    "E0102",
                    node.origin.span,
                    format!(
                        "fc expects {} but receives {}",
                        describe(exp, declared.unflat[src], " inputs"),
                        describe(got, actual.unflat[src], "")
                    ),
                )
                .with_label(format!("sized for the declared input {}", net.input))
                .with_help("put `gap` (or `adaptive_avgpool`) before flatten so the network accepts any input size")
            }
            Op::Conv(_) | Op::BatchNorm { .. } if exp.channels() != got.channels() => Diagnostic::error(
                "E0102",
                node.origin.span,
                format!(
                    "{} expects {} input channels but receives {}",
                    node.op.keyword(),
                    exp.channels(),
                    got.channels()
                ),
            )
            .with_label(format!("sized for the declared input {}", net.input))
            .with_help("`--input` may change the height and width, not the channels"),
            _ => continue,
        };
        diags.push(at_node(d, node));
    }
    diags
}
