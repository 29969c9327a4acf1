//! `conv K C`: 2-D convolution with stride, padding, dilation, groups, an optional bias and an
//! optional fused relu, as PyTorch's `Conv2d` (+ `ReLU`).

use super::args::{ArgValue, OpSpec, Parsed, Takes, Value, bias_flag, int_in_range, opt, pair};
use super::support::{dims, kernel, needs_map, one, product, shrink_error};
use super::{Activation, Category, Fusion, LayerOp, Op, ParamKind, Traits, WeightDecl, Window, weight};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::{Shape, conv_out_len, effective_kernel};
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::Array4;

pub(super) const SPECS: &[OpSpec] = &[OpSpec {
    name: "conv",
    positional: &[("kernel", Takes::Pair), ("output channels", Takes::Int)],
    required: 2,
    options: &[
        opt("stride", Takes::Pair),
        opt("pad", Takes::Pad),
        opt("groups", Takes::Int),
        opt("dilation", Takes::Pair),
        opt("bias", Takes::Flag),
        opt("nobias", Takes::Flag),
        opt("relu", Takes::Flag),
    ],
    example: "conv 3x3 64 stride 2 relu",
    build: build_conv,
}];

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Conv {
    pub(crate) kernel: [u64; 2],
    pub(crate) out_channels: u64,
    pub(crate) stride: [u64; 2],
    pub(crate) pad: [u64; 2],
    pub(crate) dilation: [u64; 2],
    pub(crate) groups: u64,
    pub(crate) bias: bool,
    pub(crate) relu: bool,
    /// Whether `pad` is the default floor(k/2) rather than written.
    pub(crate) pad_default: bool,
}

fn build_conv(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Option<Op> {
    let kernel = p.pos(0).and_then(|v| pair("kernel", "conv", v, 1, errors));
    let out_channels = p.pos(1).and_then(|v| int_in_range("output channels", "conv", v, 1, errors));
    let stride = p.option("stride").map_or(Some([1, 1]), |v| pair("stride", "conv", v, 1, errors));
    let dilation = p.option("dilation").map_or(Some([1, 1]), |v| pair("dilation", "conv", v, 1, errors));
    let groups = p.option("groups").map_or(Some(1), |v| int_in_range("groups", "conv", v, 1, errors));
    let bias = bias_flag(p, errors);
    let (kernel, out_channels, stride, dilation, groups) = (kernel?, out_channels?, stride?, dilation?, groups?);
    let pad = match p.option("pad") {
        Some(ArgValue { value: Value::Name(n), .. }) if n == "valid" => [0, 0],
        Some(v) => pair("padding", "conv", v, 0, errors)?,
        // floor(k/2) of the effective (dilated) kernel: "same" size at stride 1 for odd kernels.
        None => [0, 1].map(|i| (dilation[i] * (kernel[i] - 1) + 1) / 2),
    };
    let (relu, pad_default) = (p.flag("relu"), p.option("pad").is_none());
    Some(Op::Conv(Conv { kernel, out_channels, stride, pad, dilation, groups, bias, relu, pad_default }))
}

impl LayerOp for Conv {
    fn keyword(&self) -> &'static str {
        "conv"
    }

    fn describe(&self) -> String {
        let mut s = format!("conv {}", kernel(self.kernel));
        if self.stride != [1, 1] {
            s += &format!("/{}", dims(self.stride));
        }
        s += &format!(" {}", self.out_channels);
        if self.groups != 1 {
            s += &format!(" g{}", self.groups);
        }
        if self.dilation != [1, 1] {
            s += &format!(" d{}", dims(self.dilation));
        }
        if self.relu {
            s += " +relu";
        }
        s
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        let (ch, h, w) = needs_map(at, one(inputs, "conv"))?;
        if ch % self.groups != 0 || self.out_channels % self.groups != 0 {
            let which = if ch % self.groups != 0 {
                format!("the {ch} input channels")
            } else {
                format!("the {} output channels", self.out_channels)
            };
            return Err(Some(
                Diagnostic::error(
                    Code::Groups,
                    at.origin.span,
                    format!("conv groups {} does not divide {which}", self.groups),
                )
                .with_label("groups must divide both channel counts"),
            ));
        }
        let oh = conv_out_len(h, self.kernel[0], self.stride[0], self.pad[0], self.dilation[0])
            .map_err(|e| Some(shrink_error(at, "height", h, e)))?;
        let ow = conv_out_len(w, self.kernel[1], self.stride[1], self.pad[1], self.dilation[1])
            .map_err(|e| Some(shrink_error(at, "width", w, e)))?;
        Ok(Shape::Map { c: self.out_channels, h: oh, w: ow })
    }

    fn weights(&self, inputs: &[Shape]) -> Vec<WeightDecl> {
        let cin = one(inputs, "conv").channels() / self.groups;
        let mut w = vec![weight(ParamKind::Weight, vec![self.out_channels, cin, self.kernel[0], self.kernel[1]])];
        if self.bias {
            w.push(weight(ParamKind::Bias, vec![self.out_channels]));
        }
        w
    }

    fn macs(&self, inputs: &[Shape], output: Shape) -> Option<u64> {
        let cin = one(inputs, "conv").channels() / self.groups;
        let (oh, ow) = output.spatial();
        product(&[cin, self.kernel[0], self.kernel[1], self.out_channels, oh, ow])
    }

    fn window(&self, _: &[Shape]) -> Window {
        let extent = [0, 1].map(|a| effective_kernel(self.kernel[a], self.dilation[a]).unwrap_or(u64::MAX));
        Window::Kernel { extent, stride: self.stride }
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Anchor { spatial: true }
    }

    fn traits(&self) -> Traits {
        Traits {
            category: Category::Conv,
            in_place: false,
            view: false,
            activation: self.relu.then_some(Activation::Relu),
            factor: false,
        }
    }

    fn eval(&self, inputs: &[&Tensor], weights: &[&[f32]]) -> Tensor {
        let bias = self.bias.then(|| weights[1]);
        Tensor::Map(conv2d(inputs[0].map("conv"), weights[0], bias, self))
    }
}

/// Direct convolution, PyTorch's `conv2d`: weight [out, in/groups, kh, kw], zero padding.
fn conv2d(x: &Array4<f32>, weight: &[f32], bias: Option<&[f32]>, c: &Conv) -> Array4<f32> {
    let (n, cin, h, w) = x.dim();
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let (kh, kw) = (c.kernel[0] as usize, c.kernel[1] as usize);
    let (sh, sw) = (c.stride[0] as usize, c.stride[1] as usize);
    let (ph, pw) = (c.pad[0] as isize, c.pad[1] as isize);
    let (dh, dw) = (c.dilation[0] as usize, c.dilation[1] as usize);
    let groups = c.groups as usize;
    let cout = c.out_channels as usize;
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    let oh = (h + 2 * ph as usize - dh * (kh - 1) - 1) / sh + 1;
    let ow = (w + 2 * pw as usize - dw * (kw - 1) - 1) / sw + 1;
    let mut out = Array4::<f32>::zeros((n, cout, oh, ow));
    for b in 0..n {
        for oc in 0..cout {
            let g = oc / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |b| b[oc]);
                    for ic in 0..cin_g {
                        let plane = ((b * cin + g * cin_g + ic) * h) * w;
                        for ky in 0..kh {
                            let iy = (oy * sh + ky * dh) as isize - ph;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * sw + kx * dw) as isize - pw;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let wv = weight[((oc * cin_g + ic) * kh + ky) * kw + kx];
                                acc += wv * xs[plane + iy as usize * w + ix as usize];
                            }
                        }
                    }
                    out[[b, oc, oy, ox]] = if c.relu { acc.max(0.0) } else { acc };
                }
            }
        }
    }
    out
}
