//! A convolution fusion group as one kernel: the conv (or fc, or gap + fc), its folded batch
//! norm and bias, the rest of its epilogue, and the choice between the register-blocked form
//! (with packed weights) and the lowered form (grouped convolutions it cannot express).

use super::super::super::compile::JitError;
use super::super::super::ir::*;
use super::super::super::lower::{Binding, Builder};
use super::super::super::schedule::{choose_tile, choose_wino, depthwise_pixels, streamed};
use super::super::pool::{PoolJob, pool_kernel};
use super::super::{Lower, TensorView, bn_scale_shift};
use super::blocked::{packed_len, schedule, scheduled_task, scheduled_tasks};
use super::pack::{pack_weights, pad_bias};
use super::{ConvBufs, ConvJob, Epilogue, Tile, lower};
use super::{depthwise, gemv, winograd, winograd_transforms};
use crate::analysis::fusion::Group;
use crate::ir::graph::NodeId;
use crate::ops::{Conv, Fc, Op, PoolKind};

impl Lower for Conv {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        lower_group(b, g, None)
    }
}

impl Lower for Fc {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        lower_group(b, g, None)
    }
}

/// A convolution or fc group, or (with `gap_input`, the map gap reads) a gap + fc group.
pub(in super::super::super) fn lower_group(
    b: &mut Builder,
    g: &Group,
    gap_input: Option<TensorView>,
) -> Result<(), JitError> {
    let conv_node = if gap_input.is_some() { g.nodes[1] } else { g.anchor() };
    let name = b.name_of(g);
    let out = b.view(g.output)?;
    let input = match &gap_input {
        // The gap result lives in the kernel's stack frame as a (C, 1, 1) map.
        Some(map) => TensorView {
            c: map.c,
            h: 1,
            w: 1,
            flat: false,
            layout: Layout::Blocked { c: map.c, h: 1, w: 1, halo: [0, 0], channel_offset: 0 },
        },
        None => b.view(g.inputs[0])?,
    };
    let (mut job, has_bias) = conv_job(b, conv_node, &name, &input, &out);
    let node_name = b.node_name(conv_node).to_string();
    let data = b.take_data(&format!("{node_name}.weight"));
    let mut bias = if has_bias { b.tensor(&format!("{node_name}.bias")) } else { vec![0.0; job.cout as usize] };
    let start = if gap_input.is_some() { 2 } else { 1 };
    let (scale, shortcut) = absorb_epilogue(b, g, &g.nodes[start..], &mut job, &mut bias)?;
    // An fc layer reads its weights in place (no folded scale to apply to them).
    if gap_input.is_none() && scale.is_none() && job.gemv() && gemv::fits(&job, &input) && !plain_algorithms() {
        return gemv::lower_gemv(b, g, job, &input, data, bias, shortcut);
    }
    if let Some(m) = b.winograd_m(conv_node).filter(|_| gap_input.is_none()) {
        // A strided convolution runs Winograd over the phases of its input.
        let form = if job.stride == [1, 1] { Some(job.clone()) } else { job.phase_form() };
        if let Some(form) = form.filter(|f| f.winograd(m)) {
            return lower_winograd(b, g, &job, form, m, data, bias, scale, shortcut, Some(&job));
        }
        // Else over its phases one at a time, each with its own taps.
        if let Some(phases) = job.split_phases().filter(|p| p.iter().all(|j| j.winograd(m))) {
            return lower_split(b, g, &job, phases, m, data, bias, scale);
        }
    }
    let input_binding = match gap_input {
        Some(_) => Binding::Stack,
        None => match pool_first(b, g, &mut job, &input)? {
            Some(pooled) => pooled,
            None => b.arena(g.inputs[0])?,
        },
    };
    if gap_input.is_none() && !plain_algorithms() {
        flatten_pointwise(&mut job, b.cores());
    }
    // The kernel is a function of the job (name aside) and the gap's map: built once for all
    // the identical layers of a network.
    let key = format!("conv {:?} {:?}", ConvJob { name: String::new(), ..job.clone() }, gap_input);
    let lowered = b.keep_lowered().then(|| lower(&job));
    // The depthwise schedule, unless `CNNC_ALGO=direct` asks for the plain kernels.
    let depthwise = !job.blockable() && gap_input.is_none() && job.depthwise() && !plain_algorithms();
    let (kernel, tile) = match b.cached_kernel(&key) {
        Some(cached) => cached,
        None => {
            let tile = job.blockable().then(|| choose_tile(&job, b.cores()));
            let k = match (tile, &gap_input) {
                (Some(tile), Some(map)) => gap_fc_kernel(&job, tile, map, b.threads() as i64),
                (Some(tile), None) => schedule(&job, tile),
                (None, _) if depthwise => depthwise::schedule(&job, depthwise_pixels(&job, b.cores())),
                (None, _) => lowered.clone().unwrap_or_else(|| lower(&job)),
            };
            let kernel = b.add_kernel(k);
            b.cache_kernel(key, kernel, tile);
            (kernel, tile)
        }
    };
    let algo = match (tile, &gap_input) {
        _ if job.kernel == [job.h, job.w] && job.oh * job.ow == 1 => "gemv",
        (Some(_), _) if job.kernel == [1, 1] => "gemm",
        (Some(_), _) => "direct",
        (None, _) if depthwise => "depthwise",
        (None, _) => "direct",
    };
    let threads = b.threads();
    let packing = job.clone();
    let pack = move |weights: Vec<f32>| match tile {
        Some(tile) => pack_weights(&packing, tile, weights, scale.as_deref(), threads),
        None if depthwise => depthwise::pack_depthwise(&packing, &weights, scale.as_deref()),
        None => {
            // The lowered form reads PyTorch's layout; fold the scale into a copy.
            let per_out = weights.len() / packing.cout as usize;
            let mut folded = weights;
            if let Some(s) = &scale {
                for (i, w) in folded.iter_mut().enumerate() {
                    *w = (*w as f64 * s[i / per_out] as f64) as f32;
                }
            }
            folded
        }
    };
    let b_data = if tile.is_some() || depthwise { pad_bias(&job, &bias) } else { bias };
    let w_data = b.param_packed(move || pack(data.into_vec()));
    let mut bindings = vec![input_binding, w_data, b.param(b_data), b.arena(g.output)?];
    match shortcut {
        Some(s) => bindings.push(b.arena(s)?),
        None if gap_input.is_some() => bindings.push(Binding::Stack),
        None => {}
    }
    if gap_input.is_some() {
        bindings.push(b.arena(g.inputs[0])?);
    }
    let work = job.macs().max(streamed(out.len()));
    b.push_step(name, g.nodes.clone(), lowered, kernel, bindings, work);
    b.set_algorithm(algo);
    Ok(())
}

/// A 1x1 convolution reads and writes its maps as one row of H*W pixels when no halo separates
/// their rows (nor the shortcut's) and the register tile does not divide the map: the pixels of
/// a row and of the next lie side by side, and one long row leaves at most one short tile
/// where each row of the map left one. (Inception-v3's 17x17 layers: 4 tiles of 4 pixels and
/// a column left over per row, against 72 tiles and one pixel.) Only for inputs within a core's
/// L2.
fn flatten_pointwise(job: &mut ConvJob, cores: crate::backend::jit::schedule::Cores) {
    let no_halo = |l: &Layout| matches!(l, Layout::Blocked { halo: [0, 0], .. });
    let pointwise = job.kernel == [1, 1] && job.stride == [1, 1] && job.pad == [0, 0] && job.pool.is_none();
    if !pointwise
        || job.oh == 1
        || !job.blockable()
        || !no_halo(&job.in_layout)
        || !no_halo(&job.out_layout)
        || !job.shortcut_layout.as_ref().is_none_or(no_halo)
    {
        return;
    }
    let tile = choose_tile(job, cores);
    // One row is one task per channel tile, each reading the whole input: kept for inputs of
    // at most 1 MiB (2^18 values), the L2 of a Zen 4 core (Inception-v3's 17x17 layers, 0.87 MB, gain; its
    // 35x35 ones, 1.1 to 1.4 MB, ran 9% slower as one row).
    let fits = job.cin.saturating_mul(job.h).saturating_mul(job.w) <= 1 << 18;
    if (job.oh.is_multiple_of(tile.ty) && job.ow.is_multiple_of(tile.tx)) || !fits {
        return;
    }
    let flat = |l: &mut Layout| {
        if let Layout::Blocked { h, w, .. } = l {
            (*h, *w) = (1, *h * *w);
        }
    };
    flat(&mut job.in_layout);
    flat(&mut job.out_layout);
    if let Some(l) = &mut job.shortcut_layout {
        flat(l);
    }
    (job.h, job.w, job.oh, job.ow) = (1, job.h * job.w, 1, job.oh * job.ow);
}

/// The largest pooled map `pool_first` writes to the shared workspace: within the memory
/// budget's allowance for JIT code and scratch (`io::budget`, 32 MiB), so that no input size
/// makes it allocate what the budget did not count. DenseNet-121's largest is 0.8 MB.
const POOL_FIRST_MAX_BYTES: u64 = 8 << 20;

/// A 1x1 convolution whose epilogue is affine (bias, folded batch norm or layer scale, no
/// activation or sum) before a non-overlapping average pool commutes with the pool: both are
/// linear, and every window is whole. So the input is pooled first, in a step of its own into
/// the shared workspace, and the convolution runs on the pooled map: k_h k_w times fewer
/// multiply-accumulates (DenseNet's transitions: `bn; relu; conv 1x1; avgpool 2` over 56x56,
/// 28x28 and 14x14 maps). The sums are taken in another order than the interpreter's, as in
/// Winograd. Rewrites `job` to the pooled convolution and returns the binding of its input
/// (nothing is rewritten when the pooled map exceeds `POOL_FIRST_MAX_BYTES`).
fn pool_first(b: &mut Builder, g: &Group, job: &mut ConvJob, input: &TensorView) -> Result<Option<Binding>, JitError> {
    let Some((PoolKind::Avg, kernel)) = job.pool else { return Ok(None) };
    let pointwise = job.kernel == [1, 1] && job.stride == [1, 1] && job.pad == [0, 0];
    if !pointwise || !job.epilogue.is_empty() || input.flat || kernel[0] * kernel[1] < 2 || plain_algorithms() {
        return Ok(None);
    }
    let (h, w) = (job.h / kernel[0], job.w / kernel[1]);
    let layout = Layout::Blocked { c: job.cin, h, w, halo: [0, 0], channel_offset: 0 };
    let pooled = TensorView { c: job.cin, h, w, flat: false, layout: layout.clone() };
    let elements = pooled.buffer("pooled", true).elements();
    if elements.saturating_mul(4) > POOL_FIRST_MAX_BYTES {
        return Ok(None);
    }
    let pool = PoolJob {
        name: format!("{}/pool", job.name),
        kind: PoolKind::Avg,
        kernel,
        stride: kernel,
        pad: [0, 0],
        input: input.clone(),
        output: pooled.clone(),
    };
    let workspace = b.workspace(elements);
    let work = (pooled.len() * kernel[0] * kernel[1]).max(streamed(input.len()));
    let bindings = vec![b.arena(g.inputs[0])?, workspace];
    b.push(
        pool.name.clone(),
        g.nodes.clone(),
        pool_kernel(&pool, Ty::F32),
        pool_kernel(&pool, Ty::F32x4),
        bindings,
        work,
    );
    b.set_algorithm("avgpool");
    (job.h, job.w, job.oh, job.ow, job.pool, job.in_layout) = (h, w, h, w, None, layout);
    Ok(Some(workspace))
}

/// A strided convolution group as the Winograd convolutions of its phases
/// (`ConvJob::split_phases`), in turn into the group's output: each phase's weights are its
/// taps of the direct ones, `[out, in, r_h, r_w]`; only the last adds the bias. The steps' names
/// are the phases' (`name/phase01`); the last step carries the direct form for dumps.
#[allow(clippy::too_many_arguments)]
fn lower_split(
    b: &mut Builder,
    g: &Group,
    direct: &ConvJob,
    phases: Vec<ConvJob>,
    m: u64,
    data: crate::io::weights::TensorData,
    bias: Vec<f32>,
    scale: Option<Vec<f32>>,
) -> Result<(), JitError> {
    let taps: Vec<Vec<f32>> =
        phases.iter().map(|p| winograd_transforms::split_weights(direct, p, data.as_slice())).collect();
    data.release();
    let last = phases.len() - 1;
    for (i, (job, weights)) in phases.into_iter().zip(taps).enumerate() {
        let bias = if i == last { bias.clone() } else { vec![0.0; bias.len()] };
        let shortcut = (i > 0).then_some(g.output);
        let lowered = (i == last).then_some(direct);
        lower_winograd(b, g, &job.clone(), job, m, weights.into(), bias, scale.clone(), shortcut, lowered)?;
    }
    Ok(())
}

/// A convolution group through the Winograd schedule: `job`, which is `direct` or its phase
/// form (`ConvJob::winograd`), or a phase of a split one (`lower_split`, `direct` the phase's
/// job then). The step keeps `lowered`'s lowered form for dumps.
#[allow(clippy::too_many_arguments)]
fn lower_winograd(
    b: &mut Builder,
    g: &Group,
    direct: &ConvJob,
    job: ConvJob,
    m: u64,
    data: crate::io::weights::TensorData,
    bias: Vec<f32>,
    scale: Option<Vec<f32>>,
    shortcut: Option<NodeId>,
    lowered: Option<&ConvJob>,
) -> Result<(), JitError> {
    let wt = choose_wino(&job, m, b.cores());
    // The direct kernel's size and channels too: two strided convolutions may share a phase
    // form, but not their multiply-accumulates.
    let key = format!(
        "winograd {:?} {} {:?} {wt:?}",
        direct.kernel,
        direct.cin,
        ConvJob { name: String::new(), ..job.clone() }
    );
    let lowered = lowered.filter(|_| b.keep_lowered()).map(lower);
    let kernel_for = |b: &mut Builder, key: String, build: &dyn Fn() -> Kernel| match b.cached_kernel(&key) {
        Some((kernel, _)) => kernel,
        None => {
            let kernel = b.add_kernel(build());
            b.cache_kernel(key, kernel, None);
            kernel
        }
    };
    let (packing, threads) = (job.clone(), b.threads());
    let direct_job = direct.clone();
    let packed = b.param_packed(move || {
        let packed = if packing.phases == 1 || packing.phase.is_some() {
            winograd_transforms::pack_winograd(&packing, wt, data.as_slice(), scale.as_deref(), threads)
        } else {
            let phased = winograd_transforms::phase_weights(&direct_job, &packing, data.as_slice());
            winograd_transforms::pack_winograd(&packing, wt, &phased, scale.as_deref(), threads)
        };
        data.release();
        packed
    });
    let [tiles_len, products_len] = winograd::wino_scratch(&job, wt);
    let (tiles, products) = if wt.shared {
        // The input transform first, as a step of its own, into the shared workspace.
        let kernel = kernel_for(b, format!("{key} input"), &|| winograd::input_schedule(&job, wt));
        let tiles = b.workspace(tiles_len);
        let work = streamed(tiles_len);
        b.push_step(
            format!("{}/in", job.name),
            g.nodes.clone(),
            None,
            kernel,
            vec![b.arena(g.inputs[0])?, tiles],
            work,
        );
        b.set_algorithm("winograd");
        (tiles, b.scratch(&[products_len])[0])
    } else {
        let scratch = b.scratch(&[tiles_len, products_len]);
        (scratch[0], scratch[1])
    };
    // Its multiply-accumulates are the direct convolution's (a phase form has zero taps).
    let kernel = kernel_for(b, key, &|| Kernel { macs: direct.macs(), ..winograd::schedule(&job, wt) });
    let mut bindings = vec![b.arena(g.inputs[0])?, packed, b.param(pad_bias(&job, &bias)), b.arena(g.output)?];
    if let Some(s) = shortcut {
        bindings.push(b.arena(s)?);
    }
    bindings.extend([tiles, products]);
    b.push_step(job.name.clone(), g.nodes.clone(), lowered, kernel, bindings, direct.macs());
    b.set_algorithm("winograd");
    Ok(())
}

/// Whether `CNNC_ALGO=direct` forces the plain kernels (register-blocked direct convolution,
/// and the scalar form where that does not apply), for comparison with the special ones.
pub(in super::super::super) fn plain_algorithms() -> bool {
    std::env::var("CNNC_ALGO").is_ok_and(|v| v == "direct")
}

/// The job of the conv or fc at `node`, before its epilogue, and whether it has a bias. An fc
/// over a flattened (C, H, W) map is a convolution whose kernel covers the map: its
/// [out, C*H*W] weights are already [out, C, H, W].
fn conv_job(b: &Builder, node: NodeId, name: &str, input: &TensorView, out: &TensorView) -> (ConvJob, bool) {
    let (cin, h, w) = if input.flat { input.layout_shape() } else { (input.c, input.h, input.w) };
    let (_, oh, ow) = match b.shape(node) {
        crate::ir::geometry::Shape::Map { c, h, w } => (c, h, w),
        crate::ir::geometry::Shape::Flat { n } => (n, 1, 1),
    };
    let mut job = ConvJob {
        name: name.to_string(),
        cin,
        h,
        w,
        cout: 0,
        oh,
        ow,
        kernel: [h, w],
        stride: [1, 1],
        pad: [0, 0],
        dilation: [1, 1],
        groups: 1,
        epilogue: Vec::new(),
        pool: None,
        in_layout: input.layout.clone(),
        out_layout: out.layout.clone(),
        shortcut_layout: None,
        phases: 1,
        phase: None,
        lanes: 4,
    };
    let (bias, relu) = match &b.net().nodes[node].op {
        Op::Conv(c) => {
            (job.cout, job.kernel, job.stride, job.pad) = (c.out_channels, c.kernel, c.stride, c.pad);
            (job.dilation, job.groups) = (c.dilation, c.groups);
            (c.bias, c.relu)
        }
        Op::Fc(f) => {
            job.cout = f.out;
            (f.bias, f.relu)
        }
        other @ (Op::Input(_)
        | Op::Pool(_)
        | Op::AdaptiveAvgPool(_)
        | Op::Gap(_)
        | Op::Activation(_)
        | Op::BatchNorm(_)
        | Op::Lrn(_)
        | Op::LayerNorm(_)
        | Op::Scale(_)
        | Op::Shuffle(_)
        | Op::Slice(_)
        | Op::GateMul(_)
        | Op::Dropout(_)
        | Op::Flatten(_)
        | Op::Softmax(_)
        | Op::Concat(_)
        | Op::Add(_)
        | Op::Invalid(_)) => {
            unreachable!("fusion: a convolution group is anchored on conv or fc, not {}", other.keyword())
        }
    };
    if relu {
        job.epilogue.push(Epilogue::Activation(crate::ops::Activation::Relu));
    }
    (job, bias)
}

/// Applies the fused nodes after the conv: folds batch norm into `bias` (returning the weights'
/// per-channel scale), and records activations, the residual sum (returning the shortcut's
/// node) and the pool in `job`.
fn absorb_epilogue(
    b: &Builder,
    g: &Group,
    fused: &[NodeId],
    job: &mut ConvJob,
    bias: &mut [f32],
) -> Result<(Option<Vec<f32>>, Option<NodeId>), JitError> {
    let (mut scale, mut shortcut) = (None, None);
    for &m in fused {
        match &b.net().nodes[m].op {
            Op::BatchNorm(bn) => {
                let (sc, shift) = bn_scale_shift(b, m, bn.eps);
                for (o, v) in bias.iter_mut().enumerate() {
                    *v = (*v as f64 * sc[o] as f64 + shift[o] as f64) as f32;
                }
                scale = Some(sc);
            }
            Op::Scale(_) => {
                // A layer scale multiplies the weights and the bias.
                let sc = b.tensor(&format!("{}.weight", b.node_name(m)));
                for (o, v) in bias.iter_mut().enumerate() {
                    *v = (*v as f64 * sc[o] as f64) as f32;
                }
                scale = Some(sc);
            }
            Op::Activation(a) => {
                // Applying an idempotent activation twice in a row changes nothing.
                if job.epilogue.last() != Some(&Epilogue::Activation(*a)) || !a.idempotent() {
                    job.epilogue.push(Epilogue::Activation(*a));
                }
            }
            Op::Add(_) => {
                job.epilogue.push(Epilogue::Residual);
                let s = *g.inputs.last().expect("the shortcut is an input");
                job.shortcut_layout = Some(b.view(s)?.layout);
                shortcut = Some(s);
            }
            Op::Pool(p) => job.pool = Some((p.kind, p.kernel)),
            other @ (Op::Input(_)
            | Op::Conv(_)
            | Op::AdaptiveAvgPool(_)
            | Op::Gap(_)
            | Op::Lrn(_)
            | Op::LayerNorm(_)
            | Op::Shuffle(_)
            | Op::Slice(_)
            | Op::GateMul(_)
            | Op::Dropout(_)
            | Op::Flatten(_)
            | Op::Fc(_)
            | Op::Softmax(_)
            | Op::Concat(_)
            | Op::Invalid(_)) => unreachable!("fusion: {} does not fuse into a convolution", other.keyword()),
        }
    }
    Ok((scale, shortcut))
}

/// gap then fc in up to `parts` tasks: each pools the map into a stack buffer (buffer 0, the
/// conv's input), then runs its share of the fc's register-blocked tasks over it. The pooling is
/// repeated per part (MobileNetV2: 62,720 adds against 1.28 M multiply-adds), so that the fc's
/// weights stream on all threads; each output is still computed by one task, in one order.
fn gap_fc_kernel(job: &ConvJob, tile: Tile, map: &TensorView, parts: i64) -> Kernel {
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
    let sum = set(acc, Ty::F32x4, bin(BinOp::Add, fv(acc), load(Ty::F32x4, map_buf, act(iv(cb) * 4, iv(y), iv(x)))));
    let mean = bin(BinOp::Mul, fv(acc), splat(fc(1.0 / (h * w) as f32)));
    let gap = for_range(
        cb,
        0,
        map.c.div_ceil(4) as i64,
        vec![
            set(acc, Ty::F32x4, splat(fc(0.0))),
            for_2d(y, (ic(0), ic(h)), x, (ic(0), ic(w)), vec![sum]),
            store(Ty::F32x4, 0, act(iv(cb) * 4, ic(0), ic(0)), mean),
        ],
    );
    let bufs = ConvBufs { input: 0, w: 1, bias: 2, out: 3, shortcut: 4 };
    let fc_task = scheduled_task(job, tile, bufs, &mut vars, t2);
    let fc_tasks = scheduled_tasks(job, tile);
    let parts = parts.clamp(1, fc_tasks.max(1));
    let per = (fc_tasks + parts - 1) / parts;
    let body = vec![gap, for_range(t2, iv(t) * per, (iv(t) * per + per).min(ic(fc_tasks)), fc_task)];
    let mut buffers = vec![
        Buffer { stack: true, ..Buffer::new("pooled", job.in_layout.clone(), true) },
        Buffer::new("w", Layout::Flat { len: packed_len(job, tile) }, false),
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
    k.push_tasks(t, parts, body);
    k.var_names = vars.names;
    k
}
