//! The reference interpreter: the executable specification every fast path is compared against.
//! Obvious loops over ndarray tensors in f32, one op at a time, with PyTorch's semantics. Speed
//! is not a goal here; being evidently right is.

use crate::geometry::adaptive_window;
use crate::graph::{Conv, Fc, Lrn, Network, NodeId, Op, Pool, PoolKind};
use crate::weights::Weights;
use ndarray::{Array2, Array4, Axis, Zip};

/// A batch of feature maps (N, C, H, W) or of vectors (N, F).
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    Map(Array4<f32>),
    Flat(Array2<f32>),
}

impl Tensor {
    pub fn batch(&self) -> usize {
        match self {
            Tensor::Map(a) => a.dim().0,
            Tensor::Flat(a) => a.dim().0,
        }
    }

    /// Each image's values in C,H,W order: one row per batch element.
    pub fn to_rows(&self) -> Array2<f32> {
        match self {
            Tensor::Flat(a) => a.clone(),
            Tensor::Map(a) => {
                let (n, c, h, w) = a.dim();
                a.as_standard_layout().to_owned().into_shape_with_order((n, c * h * w)).expect("contiguous reshape")
            }
        }
    }

    fn map(&self, op: &str) -> &Array4<f32> {
        match self {
            Tensor::Map(a) => a,
            Tensor::Flat(_) => {
                panic!("{op} on a flat tensor: shape inference should have rejected this")
            }
        }
    }
}

/// Runs the network on `input` (N, C, H, W) and returns the outputs of the nodes in `keep`
/// (the network's output is the last node). Tensors are dropped after their last reader.
pub fn forward(net: &Network, weights: &Weights, input: Array4<f32>, keep: &[NodeId]) -> Vec<Tensor> {
    run(net, weights, input, keep, None)
}

/// The output of the network, adding each node's wall time (seconds) to `seconds`.
pub fn forward_timed(net: &Network, weights: &Weights, input: Array4<f32>, seconds: &mut [f64]) -> Tensor {
    run(net, weights, input, &[net.output()], Some(seconds)).remove(0)
}

fn run(
    net: &Network,
    weights: &Weights,
    input: Array4<f32>,
    keep: &[NodeId],
    mut seconds: Option<&mut [f64]>,
) -> Vec<Tensor> {
    let consumers = net.consumers();
    let last_use: Vec<NodeId> = (0..net.nodes.len()).map(|t| consumers[t].iter().copied().max().unwrap_or(t)).collect();
    let mut values: Vec<Option<Tensor>> = vec![None; net.nodes.len()];
    let mut input = Some(input);
    for (id, node) in net.nodes.iter().enumerate() {
        let started = seconds.is_some().then(std::time::Instant::now);
        let arg = |k: usize| values[node.inputs[k]].as_ref().expect("inputs are computed before use");
        let param = |kind: &str| weights.get(&format!("{}.{kind}", node.name));
        let out = match &node.op {
            Op::Input => Tensor::Map(input.take().expect("one input node")),
            Op::Conv(c) => {
                let b = c.bias.then(|| param("bias"));
                Tensor::Map(conv2d(arg(0).map("conv"), param("weight"), b, c))
            }
            Op::Pool(p) => Tensor::Map(pool2d(arg(0).map("pool"), p)),
            Op::AdaptiveAvgPool { out } => Tensor::Map(adaptive_avg_pool(arg(0).map("adaptive_avgpool"), *out)),
            Op::Gap => Tensor::Map(adaptive_avg_pool(arg(0).map("gap"), [1, 1])),
            Op::Relu => relu(arg(0).clone()),
            Op::BatchNorm { eps } => batch_norm(
                arg(0),
                [param("weight"), param("bias"), param("running_mean"), param("running_var")],
                *eps as f32,
            ),
            Op::Lrn(l) => Tensor::Map(lrn(arg(0).map("lrn"), l)),
            Op::Dropout { .. } => arg(0).clone(),
            Op::Flatten => Tensor::Flat(arg(0).to_rows()),
            Op::Fc(f) => {
                let Tensor::Flat(x) = arg(0) else {
                    panic!("fc on a feature map: shape inference should have rejected this")
                };
                Tensor::Flat(linear(x, param("weight"), f.bias.then(|| param("bias")), f))
            }
            Op::Softmax => softmax(arg(0)),
            Op::Concat => {
                concat(&node.inputs.iter().map(|&i| values[i].as_ref().expect("computed")).collect::<Vec<_>>())
            }
            Op::Add => add(arg(0), arg(1)),
            Op::Invalid => panic!("the interpreter was given a network that failed to check"),
        };
        values[id] = Some(out);
        if let (Some(s), Some(t)) = (seconds.as_deref_mut(), started) {
            s[id] += t.elapsed().as_secs_f64();
        }
        for &i in &node.inputs {
            if last_use[i] == id && !keep.contains(&i) {
                values[i] = None;
            }
        }
    }
    keep.iter().map(|&k| values[k].clone().expect("kept tensors stay alive")).collect()
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

/// Max and average pooling with PyTorch's window rules: windows start at `o*s - p`; in ceil mode
/// the output size comes from `geometry::pool_out_len`; max ignores padding; average divides by
/// the window clipped to the padded input (`count_include_pad=True`).
fn pool2d(x: &Array4<f32>, p: &Pool) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let oh =
        crate::geometry::pool_out_len(h as u64, p.kernel[0], p.stride[0], p.pad[0], p.ceil).expect("checked") as usize;
    let ow =
        crate::geometry::pool_out_len(w as u64, p.kernel[1], p.stride[1], p.pad[1], p.ceil).expect("checked") as usize;
    let (kh, kw) = (p.kernel[0] as isize, p.kernel[1] as isize);
    let (sh, sw) = (p.stride[0] as isize, p.stride[1] as isize);
    let (ph, pw) = (p.pad[0] as isize, p.pad[1] as isize);
    let (hi, wi) = (h as isize, w as isize);
    let mut out = Array4::<f32>::zeros((n, c, oh, ow));
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = oy as isize * sh - ph;
                    let x0 = ox as isize * sw - pw;
                    let (y1, x1) = ((y0 + kh).min(hi + ph), (x0 + kw).min(wi + pw));
                    let pool_size = ((y1 - y0) * (x1 - x0)) as f32;
                    let (ya, xa, yb, xb) = (y0.max(0), x0.max(0), y1.min(hi), x1.min(wi));
                    let value = match p.kind {
                        PoolKind::Max => {
                            let mut m = f32::NEG_INFINITY;
                            for y in ya..yb {
                                for xx in xa..xb {
                                    m = m.max(x[[b, ch, y as usize, xx as usize]]);
                                }
                            }
                            m
                        }
                        PoolKind::Avg => {
                            let mut s = 0.0;
                            for y in ya..yb {
                                for xx in xa..xb {
                                    s += x[[b, ch, y as usize, xx as usize]];
                                }
                            }
                            s / pool_size
                        }
                    };
                    out[[b, ch, oy, ox]] = value;
                }
            }
        }
    }
    out
}

fn adaptive_avg_pool(x: &Array4<f32>, size: [u64; 2]) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = (size[0] as usize, size[1] as usize);
    let mut out = Array4::<f32>::zeros((n, c, oh, ow));
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                let (y0, y1) = adaptive_window(oy as u64, h as u64, oh as u64);
                for ox in 0..ow {
                    let (x0, x1) = adaptive_window(ox as u64, w as u64, ow as u64);
                    let mut s = 0.0;
                    for y in y0..y1 {
                        for xx in x0..x1 {
                            s += x[[b, ch, y as usize, xx as usize]];
                        }
                    }
                    out[[b, ch, oy, ox]] = s / ((y1 - y0) * (x1 - x0)) as f32;
                }
            }
        }
    }
    out
}

fn relu(t: Tensor) -> Tensor {
    match t {
        Tensor::Map(a) => Tensor::Map(a.mapv(|v| v.max(0.0))),
        Tensor::Flat(a) => Tensor::Flat(a.mapv(|v| v.max(0.0))),
    }
}

/// Eval-mode batch norm: `(x - mean) / sqrt(var + eps) * gamma + beta` per channel (feature).
fn batch_norm(t: &Tensor, [gamma, beta, mean, var]: [&[f32]; 4], eps: f32) -> Tensor {
    let f = |c: usize, v: f32| (v - mean[c]) / (var[c] + eps).sqrt() * gamma[c] + beta[c];
    match t {
        Tensor::Map(a) => {
            let mut out = a.clone();
            for (c, mut plane) in out.axis_iter_mut(Axis(1)).enumerate() {
                plane.mapv_inplace(|v| f(c, v));
            }
            Tensor::Map(out)
        }
        Tensor::Flat(a) => {
            let mut out = a.clone();
            for (c, mut col) in out.axis_iter_mut(Axis(1)).enumerate() {
                col.mapv_inplace(|v| f(c, v));
            }
            Tensor::Flat(out)
        }
    }
}

/// `torch.nn.LocalResponseNorm`: `b_c = a_c / (k + alpha/n * sum a_{c'}^2)^beta` over the
/// channels `c - n/2 ..= c + (n-1)/2` (zero beyond the edges; always divided by n).
fn lrn(x: &Array4<f32>, l: &Lrn) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let size = l.size as isize;
    let (before, after) = (size / 2, (size - 1) / 2);
    let (alpha, beta, k) = (l.alpha as f32, l.beta as f32, l.k as f32);
    let mut out = Array4::<f32>::zeros((n, c, h, w));
    for b in 0..n {
        for ch in 0..c as isize {
            for y in 0..h {
                for xx in 0..w {
                    let mut sum = 0.0;
                    for cc in (ch - before).max(0)..=(ch + after).min(c as isize - 1) {
                        let v = x[[b, cc as usize, y, xx]];
                        sum += v * v;
                    }
                    let div = (k + alpha * sum / size as f32).powf(beta);
                    out[[b, ch as usize, y, xx]] = x[[b, ch as usize, y, xx]] / div;
                }
            }
        }
    }
    out
}

/// `torch.nn.Linear`: weight [out, in], y = x W^T + b.
fn linear(x: &Array2<f32>, weight: &[f32], bias: Option<&[f32]>, f: &Fc) -> Array2<f32> {
    let (n, inp) = x.dim();
    let out_f = f.out as usize;
    let mut out = Array2::<f32>::zeros((n, out_f));
    for b in 0..n {
        for o in 0..out_f {
            let mut acc = bias.map_or(0.0, |b| b[o]);
            for i in 0..inp {
                acc += weight[o * inp + i] * x[[b, i]];
            }
            out[[b, o]] = if f.relu { acc.max(0.0) } else { acc };
        }
    }
    out
}

/// Softmax over the features (dim 1): of each vector, or of each pixel's channels.
fn softmax(t: &Tensor) -> Tensor {
    fn normalise(mut lane: ndarray::ArrayViewMut1<f32>) {
        let m = lane.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        lane.mapv_inplace(|v| (v - m).exp());
        let s = lane.sum();
        lane.mapv_inplace(|v| v / s);
    }
    match t {
        Tensor::Flat(a) => {
            let mut out = a.clone();
            out.rows_mut().into_iter().for_each(normalise);
            Tensor::Flat(out)
        }
        Tensor::Map(a) => {
            let mut out = a.clone();
            out.lanes_mut(Axis(1)).into_iter().for_each(normalise);
            Tensor::Map(out)
        }
    }
}

fn concat(parts: &[&Tensor]) -> Tensor {
    match parts[0] {
        Tensor::Map(_) => {
            let views: Vec<_> = parts.iter().map(|t| t.map("concat").view()).collect();
            Tensor::Map(ndarray::concatenate(Axis(1), &views).expect("branch shapes were checked"))
        }
        Tensor::Flat(_) => {
            let views: Vec<_> = parts
                .iter()
                .map(|t| match t {
                    Tensor::Flat(a) => a.view(),
                    Tensor::Map(_) => {
                        panic!("mixed concat: shape inference should have rejected this")
                    }
                })
                .collect();
            Tensor::Flat(ndarray::concatenate(Axis(1), &views).expect("branch shapes were checked"))
        }
    }
}

fn add(a: &Tensor, b: &Tensor) -> Tensor {
    match (a, b) {
        (Tensor::Map(x), Tensor::Map(y)) => Tensor::Map(Zip::from(x).and(y).map_collect(|p, q| p + q)),
        (Tensor::Flat(x), Tensor::Flat(y)) => Tensor::Flat(Zip::from(x).and(y).map_collect(|p, q| p + q)),
        _ => {
            panic!("residual sum of a map and a vector: shape inference should have rejected this")
        }
    }
}
