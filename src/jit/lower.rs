//! Lowering of the fused network to kernels: storage layouts (blocks of 4 channels, a zero halo
//! as wide as the padding of the convolutions that read the storage), arena offsets, one job
//! per fusion group with its lowered and scheduled kernel, folded batch norm and packed weights.

use super::compile::JitError;
use super::conv::{self, ConvBufs, ConvJob, Tile};
use super::ir::*;
use super::ops::{self, AvgJob, EltJob, EltOp, LrnJob, PoolJob, SoftmaxJob, TensorView};
use super::schedule::{choose_tile, worth_parallel};
use crate::fusion::{Group, source_of};
use crate::geometry::Shape;
use crate::graph::{Network, NodeId, Op};
use crate::memplan::{MemoryPlan, kept_outputs, peak, plan_memory};
use crate::weights::Weights;

/// Where a kernel buffer points at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// Byte offset into the activation arena.
    Arena(u64),
    /// A packed parameter array.
    Param(usize),
    /// The caller's image, as a flat NCHW array.
    Image,
    /// Result array `k`.
    Result(usize),
    /// The kernel's own stack frame.
    Stack,
}

pub struct Step {
    /// The canonical name of the layer whose result this step produces.
    pub name: String,
    pub nodes: Vec<NodeId>,
    /// The algorithm's form, built only for `--dump lowered`.
    pub lowered: Option<Kernel>,
    pub scheduled: Kernel,
    pub bindings: Vec<Binding>,
    pub parallel: bool,
}

pub struct JitPlan {
    pub steps: Vec<Step>,
    pub params: Vec<Vec<f32>>,
    pub arena_bytes: u64,
    /// The checker's peak (unpadded sizes) and the same liveness peak over padded sizes.
    pub checker_peak_bytes: u64,
    pub padded_peak_bytes: u64,
    pub image_len: usize,
    /// (node, length) of each result: the network output, then the logits before a softmax.
    pub results: Vec<(NodeId, usize)>,
}

/// Vector stores keep 16-byte alignment; storages start on cache lines.
const ALIGN_BYTES: u64 = 64;

struct Layouts {
    /// Per storage: (channels, height, width) and halo.
    shape: Vec<(u64, u64, u64)>,
    halo: Vec<[u64; 2]>,
    offset: Vec<u64>,
}

fn shape3(s: Shape) -> (u64, u64, u64) {
    match s {
        Shape::Map { c, h, w } => (c, h, w),
        Shape::Flat { n } => (n, 1, 1),
    }
}

/// Consumes `weights`: conv and fc weights are packed in the memory they were loaded into.
/// `keep_lowered` keeps each step's lowered kernel (for dumps).
pub fn plan(
    net: &Network,
    shapes: &[Shape],
    weights: Weights,
    threads: usize,
    keep_lowered: bool,
) -> Result<JitPlan, JitError> {
    let mp = plan_memory(net, shapes);
    // Which storages a register-blocked conv reads with padding: they need a halo.
    let mut halo = vec![[0u64; 2]; mp.storages.len()];
    for g in &mp.groups {
        if let Op::Conv(c) = &net.nodes[g.anchor()].op {
            let p = placement(&mp, g.inputs[0])?;
            let blockable = c.groups == 1
                || (shapes[g.inputs[0]].channels() / c.groups % 4 == 0 && c.out_channels / c.groups % 4 == 0);
            if blockable {
                for a in 0..2 {
                    halo[p.storage][a] = halo[p.storage][a].max(c.pad[a]);
                }
            }
        }
    }
    let shape: Vec<_> = mp.storages.iter().map(|s| shape3(shapes[s.creator])).collect();
    let padded: Vec<u64> = (0..mp.storages.len())
        .map(|s| {
            let (c, h, w) = shape[s];
            c.div_ceil(4) * 4 * (h + 2 * halo[s][0]) * (w + 2 * halo[s][1]) * 4
        })
        .collect();
    let live: Vec<usize> = (0..mp.storages.len()).filter(|&s| !mp.storages[s].merged).collect();
    let (offset, arena_bytes) = assign_offsets(&mp, &live, &padded);
    let padded_peak_bytes = peak(
        live.iter()
            .map(|&s| (padded[s].div_ceil(ALIGN_BYTES) * ALIGN_BYTES, mp.storages[s].first, mp.storages[s].last)),
        mp.groups.len(),
    );
    let layouts = Layouts { shape, halo, offset };
    let mut b = Builder {
        threads,
        keep_lowered,
        net,
        shapes,
        weights,
        mp: &mp,
        layouts: &layouts,
        steps: Vec::new(),
        params: Vec::new(),
    };
    for g in &mp.groups {
        let t = std::time::Instant::now();
        b.group(g)?;
        if std::env::var_os("CNNC_TIME_COMPILE").is_some() {
            eprintln!("  group {:<20} {:>8.1} ms", net.nodes[g.output].name, t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut results = Vec::new();
    let last = net.output();
    let mut kept = vec![last];
    if net.nodes[last].op == Op::Softmax {
        kept.push(net.nodes[last].inputs[0]);
    }
    debug_assert_eq!(kept.iter().map(|&k| source_of(net, k)).collect::<Vec<_>>(), kept_outputs(net));
    for (k, &node) in kept.iter().enumerate() {
        let view = b.view(node)?;
        let len = view.len() as usize;
        let kernel = ops::lower_output(&format!("result{k}"), &view);
        b.push(
            format!("result{k}"),
            vec![node],
            kernel.clone(),
            kernel,
            vec![b.arena(node)?, Binding::Result(k)],
            len as u64,
        );
        results.push((node, len));
    }
    // The input node's shape is the one checked (it differs from the header under `--input`).
    let image_len = shapes[0].elements().unwrap_or(0) as usize;
    Ok(JitPlan {
        steps: b.steps,
        params: b.params,
        arena_bytes,
        checker_peak_bytes: mp.peak_bytes,
        padded_peak_bytes,
        image_len,
        results,
    })
}

fn placement(mp: &MemoryPlan, node: NodeId) -> Result<crate::memplan::Placement, JitError> {
    mp.placement[node].ok_or_else(|| JitError::Unsupported(format!("internal error: node {node} has no storage")))
}

/// Places storages in the arena: each at the lowest offset that overlaps no storage live at
/// the same time, in one of several orders (by size, by first use, by lifetime); the smallest
/// arena wins. Returns byte offsets and the arena size.
fn assign_offsets(mp: &MemoryPlan, live: &[usize], bytes: &[u64]) -> (Vec<u64>, u64) {
    let size = |s: usize| bytes[s].div_ceil(ALIGN_BYTES) * ALIGN_BYTES;
    let span = |s: usize| (mp.storages[s].last - mp.storages[s].first) as u64 + 1;
    let orders: [&dyn Fn(usize) -> (u64, u64, u64); 4] = [
        &|s| (u64::MAX - size(s), mp.storages[s].first as u64, 0),
        &|s| (mp.storages[s].first as u64, u64::MAX - size(s), 0),
        &|s| (u64::MAX - span(s), u64::MAX - size(s), 0),
        &|s| (u64::MAX - size(s).saturating_mul(span(s)), mp.storages[s].first as u64, 0),
    ];
    let mut best: Option<(Vec<u64>, u64)> = None;
    for key in orders {
        let mut order: Vec<usize> = live.to_vec();
        order.sort_by_key(|&s| key(s));
        let mut offset = vec![0u64; mp.storages.len()];
        let mut placed: Vec<usize> = Vec::new();
        let mut arena = 0u64;
        for s in order {
            let (f, l) = (mp.storages[s].first, mp.storages[s].last);
            let mut busy: Vec<(u64, u64)> = placed
                .iter()
                .filter(|&&o| mp.storages[o].first <= l && f <= mp.storages[o].last)
                .map(|&o| (offset[o], offset[o] + size(o)))
                .collect();
            busy.sort();
            let mut at = 0u64;
            for (start, end) in busy {
                if at + size(s) <= start {
                    break;
                }
                at = at.max(end);
            }
            offset[s] = at;
            arena = arena.max(at + size(s));
            placed.push(s);
        }
        if best.as_ref().is_none_or(|(_, a)| arena < *a) {
            best = Some((offset, arena));
        }
    }
    best.unwrap_or((vec![0; mp.storages.len()], 0))
}

struct Builder<'a> {
    threads: usize,
    keep_lowered: bool,
    net: &'a Network,
    shapes: &'a [Shape],
    weights: Weights,
    mp: &'a MemoryPlan,
    layouts: &'a Layouts,
    steps: Vec<Step>,
    params: Vec<Vec<f32>>,
}

impl Builder<'_> {
    /// The tensor produced by `node` (or the view `node` is), as kernels address it.
    fn view(&self, node: NodeId) -> Result<TensorView, JitError> {
        let p = placement(self.mp, node)?;
        let (sc, sh, sw) = self.layouts.shape[p.storage];
        let halo = self.layouts.halo[p.storage];
        Ok(match self.shapes[node] {
            Shape::Map { c, h, w } => TensorView {
                c,
                h,
                w,
                flat: false,
                layout: Layout::Blocked { c, h, w, halo, channel_offset: p.channel_offset },
            },
            Shape::Flat { n } => {
                // A flat tensor lives in the storage of the map it was flattened from (or in an
                // (n, 1, 1) storage of its own); it is addressed through that map's layout.
                let c = if sh * sw == 1 { n } else { sc };
                TensorView {
                    c: n,
                    h: 1,
                    w: 1,
                    flat: true,
                    layout: Layout::Blocked { c, h: sh, w: sw, halo, channel_offset: p.channel_offset },
                }
            }
        })
    }

    fn arena(&self, node: NodeId) -> Result<Binding, JitError> {
        let p = placement(self.mp, node)?;
        Ok(Binding::Arena(self.layouts.offset[p.storage]))
    }

    fn param(&mut self, data: Vec<f32>) -> Binding {
        self.params.push(data);
        Binding::Param(self.params.len() - 1)
    }

    fn push(
        &mut self,
        name: String,
        nodes: Vec<NodeId>,
        lowered: Kernel,
        scheduled: Kernel,
        bindings: Vec<Binding>,
        work: u64,
    ) {
        let parallel = worth_parallel(scheduled.tasks, work.max(scheduled.macs));
        let lowered = self.keep_lowered.then_some(lowered);
        self.steps.push(Step { name, nodes, lowered, scheduled, bindings, parallel });
    }

    fn tensor(&self, name: &str) -> Vec<f32> {
        self.weights.get(name).to_vec()
    }

    fn group(&mut self, g: &Group) -> Result<(), JitError> {
        let net = self.net;
        // Operands are read through the anchor's own inputs: a flatten view keeps its flat
        // shape (the group's `inputs` are the storage-owning sources).
        let anchor = &net.nodes[g.anchor()];
        let name = net.nodes[g.output].name.clone();
        let out = self.view(g.output)?;
        let work = out.len();
        match &anchor.op {
            Op::Input => {
                let k = ops::lower_input("input", &out);
                self.push(name, g.nodes.clone(), k.clone(), k, vec![Binding::Image, self.arena(g.output)?], work);
            }
            Op::Conv(_) | Op::Fc(_) => self.conv_group(g, None)?,
            Op::Gap if g.nodes.len() > 1 => {
                let input = self.view(anchor.inputs[0])?;
                self.conv_group(g, Some(input))?;
            }
            Op::Gap | Op::AdaptiveAvgPool { .. } => {
                let job = AvgJob { name: name.clone(), input: self.view(anchor.inputs[0])?, output: out };
                let b = vec![self.arena(anchor.inputs[0])?, self.arena(g.output)?];
                self.push(name, g.nodes.clone(), ops::lower_adaptive(&job), ops::schedule_adaptive(&job), b, work);
            }
            Op::Pool(p) => {
                let job = PoolJob {
                    name: name.clone(),
                    kind: p.kind,
                    kernel: p.kernel,
                    stride: p.stride,
                    pad: p.pad,
                    input: self.view(anchor.inputs[0])?,
                    output: out,
                };
                let b = vec![self.arena(anchor.inputs[0])?, self.arena(g.output)?];
                self.push(
                    name,
                    g.nodes.clone(),
                    ops::lower_pool(&job),
                    ops::schedule_pool(&job),
                    b,
                    work * p.kernel[0] * p.kernel[1],
                );
            }
            Op::Relu | Op::Add => {
                let input = self.view(anchor.inputs[0])?;
                let other = if anchor.op == Op::Add { Some(self.view(anchor.inputs[1])?) } else { None };
                if let Some(o) = &other {
                    if o.flat != input.flat || o.layout_shape() != input.layout_shape() {
                        return Err(JitError::Unsupported(format!(
                            "{name}: a sum of tensors stored in differently shaped maps"
                        )));
                    }
                }
                let op = if anchor.op == Op::Add { EltOp::Add { relu: false } } else { EltOp::Relu };
                let job = EltJob { name: name.clone(), op, input, other, output: out, params: 0 };
                let mut b = vec![self.arena(anchor.inputs[0])?, self.arena(g.output)?];
                if anchor.op == Op::Add {
                    b.push(self.arena(anchor.inputs[1])?);
                }
                self.push(
                    name,
                    g.nodes.clone(),
                    ops::lower_elementwise(&job),
                    ops::schedule_elementwise(&job),
                    b,
                    work,
                );
            }
            Op::BatchNorm { eps } => {
                let input = self.view(anchor.inputs[0])?;
                let (scale, shift) = bn_scale_shift(self, &anchor.name, *eps);
                let len = if input.flat { scale.len() } else { scale.len().div_ceil(4) * 4 };
                let pad = |mut v: Vec<f32>| {
                    v.resize(len, 0.0);
                    v
                };
                let job = EltJob {
                    name: name.clone(),
                    op: EltOp::Affine,
                    input,
                    other: None,
                    output: out,
                    params: len as u64,
                };
                let (sb, hb) = (self.param(pad(scale)), self.param(pad(shift)));
                let b = vec![self.arena(anchor.inputs[0])?, self.arena(g.output)?, sb, hb];
                self.push(
                    name,
                    g.nodes.clone(),
                    ops::lower_elementwise(&job),
                    ops::schedule_elementwise(&job),
                    b,
                    work,
                );
            }
            Op::Lrn(l) => {
                let job = LrnJob {
                    name: name.clone(),
                    size: l.size,
                    alpha: l.alpha,
                    beta: l.beta,
                    k: l.k,
                    input: self.view(anchor.inputs[0])?,
                    output: out,
                };
                let k = ops::lower_lrn(&job);
                let b = vec![self.arena(anchor.inputs[0])?, self.arena(g.output)?];
                self.push(name, g.nodes.clone(), k.clone(), k, b, work * l.size * 8);
            }
            Op::Softmax => {
                let job = SoftmaxJob { name: name.clone(), input: self.view(anchor.inputs[0])?, output: out };
                let k = ops::lower_softmax(&job);
                let b = vec![self.arena(anchor.inputs[0])?, self.arena(g.output)?];
                self.push(name, g.nodes.clone(), k.clone(), k, b, work * 20);
            }
            Op::Concat => {
                let place = placement(self.mp, g.output)?;
                let mut channel = place.channel_offset;
                for (k, &input) in g.inputs.iter().enumerate() {
                    let branch = self.view(input)?;
                    if self.mp.concat_copies.contains(&(g.output, k)) {
                        // The branch's channels of the concatenation: same layout, shifted.
                        let halo = match &out.layout {
                            Layout::Blocked { halo, .. } => *halo,
                            Layout::Flat { .. } => [0, 0],
                        };
                        let slice = if branch.flat {
                            TensorView {
                                layout: Layout::Blocked { c: branch.c, h: 1, w: 1, halo, channel_offset: channel },
                                ..branch.clone()
                            }
                        } else {
                            TensorView {
                                layout: Layout::Blocked {
                                    c: branch.c,
                                    h: branch.h,
                                    w: branch.w,
                                    halo,
                                    channel_offset: channel,
                                },
                                ..branch.clone()
                            }
                        };
                        let copy_name = format!("{name}.copy{}", k + 1);
                        let kernel = ops::lower_copy(&copy_name, &branch, &slice);
                        let b = vec![self.arena(input)?, self.arena(g.output)?];
                        self.push(copy_name, vec![g.output], kernel.clone(), kernel, b, branch.len());
                    }
                    channel += self.shapes[input].channels();
                }
            }
            Op::Flatten | Op::Dropout { .. } => unreachable!("views form no group"),
            Op::Invalid => return Err(JitError::Unsupported("the network failed to check".into())),
        }
        Ok(())
    }

    /// A convolution or fc group, or (with `gap_input`) a gap + fc group.
    fn conv_group(&mut self, g: &Group, gap_input: Option<TensorView>) -> Result<(), JitError> {
        let net = self.net;
        let conv_node = if gap_input.is_some() { g.nodes[1] } else { g.anchor() };
        let node = &net.nodes[conv_node];
        let name = net.nodes[g.output].name.clone();
        let out = self.view(g.output)?;
        let input = match &gap_input {
            // The gap result lives in the kernel's stack frame as a (C, 1, 1) map.
            Some(map) => TensorView {
                c: map.c,
                h: 1,
                w: 1,
                flat: false,
                layout: Layout::Blocked { c: map.c, h: 1, w: 1, halo: [0, 0], channel_offset: 0 },
            },
            None => self.view(g.inputs[0])?,
        };
        let (in_c, in_h, in_w) = match &input.layout {
            _ if !input.flat => (input.c, input.h, input.w),
            Layout::Blocked { c, h, w, .. } => (*c, *h, *w),
            Layout::Flat { len } => (*len, 1, 1),
        };
        let mut job = match &node.op {
            Op::Conv(c) => {
                let (_, oh, ow) = shape3(self.shapes[conv_node]);
                ConvJob {
                    name: name.clone(),
                    cin: in_c,
                    h: in_h,
                    w: in_w,
                    cout: c.out_channels,
                    oh,
                    ow,
                    kernel: c.kernel,
                    stride: c.stride,
                    pad: c.pad,
                    dilation: c.dilation,
                    groups: c.groups,
                    relu1: c.relu,
                    residual: false,
                    relu2: false,
                    pool: None,
                    in_layout: input.layout.clone(),
                    out_layout: out.layout.clone(),
                    shortcut_layout: None,
                }
            }
            // fc over a flattened (C, H, W) map is a convolution whose kernel covers the map:
            // its [out, C*H*W] weights are already [out, C, H, W].
            Op::Fc(f) => ConvJob {
                name: name.clone(),
                cin: in_c,
                h: in_h,
                w: in_w,
                cout: f.out,
                oh: 1,
                ow: 1,
                kernel: [in_h, in_w],
                stride: [1, 1],
                pad: [0, 0],
                dilation: [1, 1],
                groups: 1,
                relu1: f.relu,
                residual: false,
                relu2: false,
                pool: None,
                in_layout: input.layout.clone(),
                out_layout: out.layout.clone(),
                shortcut_layout: None,
            },
            other => unreachable!("conv group anchored on {other:?}"),
        };
        let weights = self.weights.take(&format!("{}.weight", node.name));
        let has_bias = match &node.op {
            Op::Conv(c) => c.bias,
            Op::Fc(f) => f.bias,
            _ => false,
        };
        let mut bias =
            if has_bias { self.tensor(&format!("{}.bias", node.name)) } else { vec![0.0; job.cout as usize] };
        // A folded batch norm scales each output channel's weights; applied while packing.
        let mut scale: Option<Vec<f32>> = None;
        let mut shortcut = None;
        let start = if gap_input.is_some() { 2 } else { 1 };
        for &m in &g.nodes[start..] {
            match &net.nodes[m].op {
                Op::BatchNorm { eps } => {
                    let (sc, shift) = bn_scale_shift(self, &net.nodes[m].name, *eps);
                    for (o, b) in bias.iter_mut().enumerate() {
                        *b = (*b as f64 * sc[o] as f64 + shift[o] as f64) as f32;
                    }
                    scale = Some(sc);
                }
                Op::Relu if job.residual => job.relu2 = true,
                Op::Relu => job.relu1 = true,
                Op::Add => {
                    job.residual = true;
                    let s = *g.inputs.last().expect("the shortcut is an input");
                    let v = self.view(s)?;
                    job.shortcut_layout = Some(v.layout.clone());
                    shortcut = Some(s);
                }
                Op::Pool(p) => {
                    job.pool = Some((p.kind, p.kernel));
                    job.out_layout = out.layout.clone();
                }
                other => unreachable!("unexpected fused op {other:?}"),
            }
        }
        let blockable = job.blockable();
        let lowered = if self.keep_lowered || !blockable { conv::lower(&job) } else { Kernel::default() };
        let (scheduled, w_data, b_data) = if blockable {
            let tile = choose_tile(&job);
            let packed = conv::pack_weights(&job, tile, weights, scale.as_deref(), self.threads);
            let k = match &gap_input {
                Some(map) => gap_fc_kernel(&job, tile, map),
                None => conv::schedule(&job, tile),
            };
            (k, packed, conv::pad_bias(&job, &bias))
        } else {
            // The lowered form reads PyTorch's layout; fold the scale into a copy.
            let per_out = weights.len() / job.cout as usize;
            let mut folded = weights;
            if let Some(s) = &scale {
                for (i, w) in folded.iter_mut().enumerate() {
                    *w = (*w as f64 * s[i / per_out] as f64) as f32;
                }
            }
            (lowered.clone(), folded, bias)
        };
        let input_binding = if gap_input.is_some() { Binding::Stack } else { self.arena(g.inputs[0])? };
        let mut bindings = vec![input_binding, self.param(w_data), self.param(b_data), self.arena(g.output)?];
        match shortcut {
            Some(s) => bindings.push(self.arena(s)?),
            None if gap_input.is_some() => bindings.push(Binding::Stack),
            None => {}
        }
        if gap_input.is_some() {
            bindings.push(self.arena(g.inputs[0])?);
        }
        let work = job.macs().max(out.len());
        self.push(name, g.nodes.clone(), lowered, scheduled, bindings, work);
        Ok(())
    }
}

impl TensorView {
    /// The shape of the storage map the tensor is addressed through.
    fn layout_shape(&self) -> (u64, u64, u64) {
        match &self.layout {
            Layout::Blocked { c, h, w, .. } => (*c, *h, *w),
            Layout::Flat { len } => (*len, 1, 1),
        }
    }
}

/// Eval-mode batch norm as `x * scale + shift`: scale = gamma / sqrt(var + eps),
/// shift = beta - mean * scale (computed in f64).
fn bn_scale_shift(b: &Builder, name: &str, eps: f64) -> (Vec<f32>, Vec<f32>) {
    let g = b.tensor(&format!("{name}.weight"));
    let be = b.tensor(&format!("{name}.bias"));
    let m = b.tensor(&format!("{name}.running_mean"));
    let v = b.tensor(&format!("{name}.running_var"));
    let scale: Vec<f64> = g.iter().zip(&v).map(|(&g, &v)| g as f64 / (v as f64 + eps).sqrt()).collect();
    let shift = be.iter().zip(&m).zip(&scale).map(|((&b, &m), &s)| (b as f64 - m as f64 * s) as f32).collect();
    (scale.iter().map(|&s| s as f32).collect(), shift)
}

/// gap then fc in one serial task: the pooled vector goes to a stack buffer (buffer 0, the
/// conv's input), then the fc's register-blocked tasks run over it.
fn gap_fc_kernel(job: &ConvJob, tile: Tile, map: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let (t, cb, y, x, acc, t2) = (
        vars.new_var("t"),
        vars.new_var("cb"),
        vars.new_var("y"),
        vars.new_var("x"),
        vars.new_var("acc"),
        vars.new_var("task"),
    );
    let map_buf: BufId = 5;
    let (h, w) = (map.h as i64, map.w as i64);
    let gap = Stmt::For {
        var: cb,
        start: ic(0),
        end: ic(map.c.div_ceil(4) as i64),
        body: vec![
            Stmt::Set { var: acc, ty: Ty::F32x4, value: splat(fc(0.0)) },
            Stmt::For {
                var: y,
                start: ic(0),
                end: ic(h),
                body: vec![Stmt::For {
                    var: x,
                    start: ic(0),
                    end: ic(w),
                    body: vec![Stmt::Set {
                        var: acc,
                        ty: Ty::F32x4,
                        value: bin(
                            BinOp::Add,
                            fv(acc),
                            FExpr::Load(Ty::F32x4, map_buf, Index::Act([iv(cb) * 4, iv(y), iv(x)])),
                        ),
                    }],
                }],
            },
            Stmt::Store {
                ty: Ty::F32x4,
                buf: 0,
                index: Index::Act([iv(cb) * 4, ic(0), ic(0)]),
                value: bin(BinOp::Mul, fv(acc), splat(fc(1.0 / (h * w) as f32))),
            },
        ],
    };
    let bufs = ConvBufs { input: 0, w: 1, bias: 2, out: 3, shortcut: 4 };
    let fc_task = conv::scheduled_task(job, tile, bufs, &mut vars, t2);
    let body = vec![gap, Stmt::For { var: t2, start: ic(0), end: ic(conv::scheduled_tasks(job, tile)), body: fc_task }];
    let mut buffers = vec![
        Buffer { stack: true, ..Buffer::new("pooled", job.in_layout.clone(), true) },
        Buffer::new("w", Layout::Flat { len: conv::packed_len(job, tile) }, false),
        Buffer::new("bias", Layout::Flat { len: job.cout.div_ceil(4) * 4 }, false),
        Buffer::new("out", job.out_layout.clone(), true),
    ];
    buffers.push(match &job.shortcut_layout {
        Some(l) => Buffer::new("shortcut", l.clone(), false),
        None => Buffer { stack: true, ..Buffer::new("unused", Layout::Flat { len: 4 }, false) },
    });
    buffers.push(Buffer::new("map", map.layout.clone(), false));
    let mut k = Kernel {
        name: job.name.clone(),
        buffers,
        body: Vec::new(),
        var_names: Vec::new(),
        tasks: 0,
        macs: job.macs() + map.len(),
    };
    k.push_tasks(t, 1, body);
    k.var_names = vars.names;
    k
}
