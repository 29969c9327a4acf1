//! Lowering of the fused network to kernels: storage layouts (blocks of 4 channels, a zero halo
//! as wide as the padding of the convolutions that read the storage), arena offsets, one job
//! per fusion group with its lowered and scheduled kernel, folded batch norm and packed weights.

use super::JitOptions;
use super::compile::{JitError, Job, Jobs};
use super::ir::*;
use super::kernels::conv::{
    Tile, conv_blockable, conv_depthwise, plain_algorithms, tile_len, winograd_forms, winograd_halo,
};
use super::kernels::{Lower, TensorView, lower_output};
use super::schedule::{winograd_convs, worth_parallel};
use crate::analysis::fusion::Group;
use crate::analysis::memplan::{MemoryPlan, Placement, kept_outputs, peak, plan_memory};
use crate::io::weights::{TensorData, Weights};
use crate::ir::geometry::Shape;
use crate::ir::graph::{Network, NodeId};
use crate::ops::{Op, with_op};
use std::collections::HashMap;
use std::sync::Arc;

/// Where a kernel buffer points at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Binding {
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
    /// Byte offset into the calling thread's scratch memory (each thread has its own).
    Scratch(u64),
    /// Byte offset into the workspace all threads share (what one step of a layer leaves for
    /// the next).
    Workspace(u64),
}

pub(super) struct Step {
    /// The canonical name of the layer whose result this step produces.
    pub(super) name: String,
    pub(super) nodes: Vec<NodeId>,
    /// The algorithm's form, built only for `--dump lowered`.
    pub(super) lowered: Option<Kernel>,
    /// The scheduled kernel it runs: an index into `JitPlan::kernels`.
    pub(super) kernel: usize,
    pub(super) bindings: Vec<Binding>,
    pub(super) parallel: bool,
    /// The algorithm its kernel uses: `direct`, `gemm`, `gemv`, `depthwise` for convolutions
    /// and fc, the op's keyword for the rest.
    pub(super) algo: &'static str,
}

pub(super) struct JitPlan {
    pub(super) steps: Vec<Step>,
    /// The distinct scheduled kernels: steps that compute the same thing (VGG's repeated
    /// layers, a thousand identical blocks) share one, compiled once.
    pub(super) kernels: Vec<Arc<Kernel>>,
    /// Packed parameters; with a job queue, the ones packed by jobs are empty until the jobs
    /// have run.
    pub(super) params: Vec<TensorData>,
    pub(super) arena_bytes: u64,
    /// Scratch memory each thread needs: the most any step binds.
    pub(super) scratch_bytes: u64,
    /// The shared workspace: the most any step binds.
    pub(super) workspace_bytes: u64,
    /// The checker's peak (unpadded sizes) and the same liveness peak over padded sizes.
    pub(super) checker_peak_bytes: u64,
    pub(super) padded_peak_bytes: u64,
    pub(super) image_len: usize,
    /// (node, length) of each result: the network output, then the logits before a softmax.
    pub(super) results: Vec<(NodeId, usize)>,
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
/// `keep_lowered` keeps each step's lowered kernel (for dumps). With `jobs`, each new unique
/// kernel is sent there to be compiled and the large weight arrays to be packed, while
/// planning goes on; without, weights are packed here.
pub(super) fn plan(
    net: &Network,
    shapes: &[Shape],
    weights: Weights,
    threads: usize,
    keep_lowered: bool,
    jobs: Option<Jobs>,
    options: JitOptions,
) -> Result<JitPlan, JitError> {
    let mp = plan_memory(net, shapes);
    let winograd = winograd_convs(net, shapes, &options);
    let (layouts, arena_bytes, padded_peak_bytes) = layout_storages(net, shapes, &mp, &winograd)?;
    let mut b = Builder {
        winograd: winograd.clone(),
        threads,
        cores: options.cores,
        keep_lowered,
        net,
        shapes,
        weights,
        mp: &mp,
        layouts: &layouts,
        steps: Vec::new(),
        params: Vec::new(),
        kernels: Vec::new(),
        by_hash: HashMap::new(),
        kernel_cache: HashMap::new(),
        jobs,
        scratch_bytes: 0,
        workspace_bytes: 0,
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
    if matches!(net.nodes[last].op, Op::Softmax(_)) {
        kept.push(net.nodes[last].inputs[0]);
    }
    debug_assert_eq!(
        kept.iter().map(|&k| mp.views.source_of(net, k)).collect::<Vec<_>>(),
        kept_outputs(net, &mp.views)
    );
    for (k, &node) in kept.iter().enumerate() {
        let view = b.view(node)?;
        let len = view.len() as usize;
        let kernel = lower_output(&format!("result{k}"), &view);
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
        kernels: b.kernels,
        params: b.params,
        arena_bytes,
        scratch_bytes: b.scratch_bytes,
        workspace_bytes: b.workspace_bytes,
        checker_peak_bytes: mp.peak_bytes,
        padded_peak_bytes,
        image_len,
        results,
    })
}

/// The activation arena the JIT will allocate for `net` with the default options, in bytes (for
/// the memory budget, before anything is allocated).
pub(super) fn arena_bytes(net: &Network, shapes: &[Shape]) -> Result<u64, JitError> {
    let mp = plan_memory(net, shapes);
    let o = JitOptions::default();
    Ok(layout_storages(net, shapes, &mp, &winograd_convs(net, shapes, &o))?.1)
}

/// Storage layouts (shapes; halos as wide as the padding of the register-blocked convolutions
/// that read them, and wide enough that a Winograd convolution's last input tiles lie inside;
/// arena offsets), the arena size and the liveness peak over padded sizes.
fn layout_storages(
    net: &Network,
    shapes: &[Shape],
    mp: &MemoryPlan,
    winograd: &HashMap<NodeId, u64>,
) -> Result<(Layouts, u64, u64), JitError> {
    let mut halo = vec![[0u64; 2]; mp.storages.len()];
    for g in &mp.groups {
        if let Op::Conv(c) = &net.nodes[g.anchor()].op {
            let p = placement(mp, g.inputs[0])?;
            let cin = shapes[g.inputs[0]].channels();
            let depthwise = conv_depthwise(c.kernel, c.groups, cin, c.out_channels) && !plain_algorithms();
            if conv_blockable(c.kernel, c.groups, cin, c.out_channels) || depthwise {
                for a in 0..2 {
                    halo[p.storage][a] = halo[p.storage][a].max(c.pad[a]);
                }
            }
            if let Some(&m) = winograd.get(&g.anchor()) {
                let input = shapes[net.nodes[g.anchor()].inputs[0]];
                let (_, h, w) = shape3(input);
                let (_, oh, ow) = shape3(shapes[g.anchor()]);
                // A strided convolution runs Winograd over its phases.
                let (forms, s) = winograd_forms(c.kernel, c.stride, c.pad, c.dilation, m);
                for (r, pad) in forms {
                    for (a, (len, out)) in [(h, oh), (w, ow)].into_iter().enumerate() {
                        let need = winograd_halo(tile_len(m, r[a]), r[a], len, out, pad[a], s);
                        halo[p.storage][a] = halo[p.storage][a].max(need);
                    }
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
    let padded_peak_bytes = peak(
        live.iter()
            .map(|&s| (padded[s].div_ceil(ALIGN_BYTES) * ALIGN_BYTES, mp.storages[s].first, mp.storages[s].last)),
        mp.groups.len(),
    );
    let (offset, arena_bytes) = assign_offsets(mp, &live, &padded, padded_peak_bytes);
    Ok((Layouts { shape, halo, offset }, arena_bytes, padded_peak_bytes))
}

fn placement(mp: &MemoryPlan, node: NodeId) -> Result<Placement, JitError> {
    mp.placement[node].ok_or_else(|| JitError::Unsupported(format!("internal error: node {node} has no storage")))
}

/// Places storages in the arena: each at the lowest offset that overlaps no storage live at
/// the same time, in one of several orders (by size, by first use, by lifetime); or, in order
/// of first use, at offset 0 when that is free and else as high as it fits under `peak` (the
/// liveness peak, which no placement beats), so that a chain's neighbours take alternate ends
/// (AlexNet with F(6x6) forced: a 278,784-byte storage between two that left a 271,872-byte
/// gap took 17% above the peak by lowest offsets alone). The smallest arena wins. Returns byte
/// offsets and the arena size.
fn assign_offsets(mp: &MemoryPlan, live: &[usize], bytes: &[u64], peak: u64) -> (Vec<u64>, u64) {
    let size = |s: usize| bytes[s].div_ceil(ALIGN_BYTES) * ALIGN_BYTES;
    let span = |s: usize| (mp.storages[s].last - mp.storages[s].first) as u64 + 1;
    let orders: [&dyn Fn(usize) -> (u64, u64, u64); 4] = [
        &|s| (u64::MAX - size(s), mp.storages[s].first as u64, 0),
        &|s| (mp.storages[s].first as u64, u64::MAX - size(s), 0),
        &|s| (u64::MAX - span(s), u64::MAX - size(s), 0),
        &|s| (u64::MAX - size(s).saturating_mul(span(s)), mp.storages[s].first as u64, 0),
    ];
    let by_first: &dyn Fn(usize) -> (u64, u64, u64) = &|s| (mp.storages[s].first as u64, s as u64, 0);
    let mut best: Option<(Vec<u64>, u64)> = None;
    for (key, two_ended) in orders.into_iter().map(|k| (k, false)).chain([(by_first, true)]) {
        let mut order: Vec<usize> = live.to_vec();
        order.sort_by_key(|&s| key(s));
        let mut offset = vec![0u64; mp.storages.len()];
        // The placed storages live at each step: a storage's neighbours in time are found
        // without scanning every placed storage (networks of 100,000 layers stay linear).
        let mut live_at: Vec<Vec<usize>> = vec![Vec::new(); mp.groups.len() + 1];
        let mut arena = 0u64;
        for s in order {
            let (f, l) = (mp.storages[s].first, mp.storages[s].last.min(mp.groups.len()));
            let mut overlapping: Vec<usize> = live_at[f..=l].iter().flatten().copied().collect();
            overlapping.sort_unstable();
            overlapping.dedup();
            let mut busy: Vec<(u64, u64)> = overlapping.iter().map(|&o| (offset[o], offset[o] + size(o))).collect();
            busy.sort();
            let free = |at: u64| busy.iter().all(|&(start, end)| at + size(s) <= start || end <= at);
            let mut at = 0u64;
            for &(start, end) in &busy {
                if at + size(s) <= start {
                    break;
                }
                at = at.max(end);
            }
            if two_ended && at > 0 && busy.len() <= 64 {
                // The highest free offset under the peak: just below it, or just below a
                // placed storage (quadratic in the overlapping storages, so only for few).
                let below = |top: u64| top.checked_sub(size(s)).filter(|&o| o <= peak.saturating_sub(size(s)));
                let high =
                    busy.iter().filter_map(|&(start, _)| below(start)).chain(below(peak)).filter(|&o| free(o)).max();
                at = high.unwrap_or(at);
            }
            offset[s] = at;
            arena = arena.max(at + size(s));
            for step in &mut live_at[f..=l] {
                step.push(s);
            }
        }
        if best.as_ref().is_none_or(|(_, a)| arena < *a) {
            best = Some((offset, arena));
        }
    }
    best.unwrap_or((vec![0; mp.storages.len()], 0))
}

pub(super) struct Builder<'a> {
    /// The convolutions that run Winograd, with their tile size.
    winograd: HashMap<NodeId, u64>,
    threads: usize,
    cores: super::schedule::Cores,
    keep_lowered: bool,
    net: &'a Network,
    shapes: &'a [Shape],
    weights: Weights,
    mp: &'a MemoryPlan,
    layouts: &'a Layouts,
    steps: Vec<Step>,
    params: Vec<TensorData>,
    kernels: Vec<Arc<Kernel>>,
    /// Unique kernels by `Kernel::structure_hash`.
    by_hash: HashMap<u64, Vec<usize>>,
    /// Kernels by a key of what they compute, so that a kernel seen before is not built again
    /// (building a register-blocked kernel costs about a millisecond).
    kernel_cache: HashMap<String, (usize, Option<Tile>)>,
    /// Where new kernels and packing go, if they are done off this thread.
    jobs: Option<Jobs>,
    scratch_bytes: u64,
    workspace_bytes: u64,
}

impl Builder<'_> {
    pub(super) fn net(&self) -> &Network {
        self.net
    }

    /// The checked batch-1 shape of `node`'s output.
    pub(super) fn shape(&self, node: NodeId) -> Shape {
        self.shapes[node]
    }

    pub(super) fn node_name(&self, node: NodeId) -> &str {
        &self.net.nodes[node].name
    }

    /// The name of the layer whose result a group produces: its kernel's name.
    pub(super) fn name_of(&self, g: &Group) -> String {
        self.net.nodes[g.output].name.clone()
    }

    /// Input `k` of the group's anchor. Operands are read through the anchor's own inputs: a
    /// flatten view keeps its flat shape (the group's `inputs` are the storage-owning sources).
    pub(super) fn anchor_input(&self, g: &Group, k: usize) -> NodeId {
        self.net.nodes[g.anchor()].inputs[k]
    }

    pub(super) fn channels(&self, node: NodeId) -> u64 {
        self.shapes[node].channels()
    }

    pub(super) fn keep_lowered(&self) -> bool {
        self.keep_lowered
    }

    pub(super) fn threads(&self) -> usize {
        self.threads
    }

    pub(super) fn cores(&self) -> super::schedule::Cores {
        self.cores
    }

    /// The tensor produced by `node` (or the view `node` is), as kernels address it.
    pub(super) fn view(&self, node: NodeId) -> Result<TensorView, JitError> {
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

    /// The channel offset of `node`'s tensor in its storage (a concatenation slice).
    pub(super) fn channel_offset(&self, node: NodeId) -> Result<u64, JitError> {
        Ok(placement(self.mp, node)?.channel_offset)
    }

    /// Whether branch `k` of the concatenation `node` is copied in (not written in place).
    pub(super) fn is_concat_copy(&self, node: NodeId, k: usize) -> bool {
        self.mp.concat_copies.contains(&(node, k))
    }

    pub(super) fn arena(&self, node: NodeId) -> Result<Binding, JitError> {
        let p = placement(self.mp, node)?;
        Ok(Binding::Arena(self.layouts.offset[p.storage]))
    }

    pub(super) fn param(&mut self, data: Vec<f32>) -> Binding {
        self.param_data(data.into())
    }

    /// A parameter array as it is held: weights mapped from the file stay there.
    pub(super) fn param_data(&mut self, data: TensorData) -> Binding {
        self.params.push(data);
        Binding::Param(self.params.len() - 1)
    }

    /// A parameter array that `pack` builds: on a worker while planning goes on, if there is
    /// a job queue.
    pub(super) fn param_packed(&mut self, pack: impl FnOnce() -> Vec<f32> + Send + 'static) -> Binding {
        let i = self.params.len();
        self.params.push(Vec::new().into());
        let job = Job::Pack(i, Box::new(move || pack().into()));
        let unsent = match &self.jobs {
            Some(jobs) => jobs.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(Job::Pack(_, pack)) = unsent {
            self.params[i] = pack();
        }
        Binding::Param(i)
    }

    /// Adds a step: `work` (values touched or MACs) decides whether it is worth running on
    /// several threads.
    pub(super) fn push(
        &mut self,
        name: String,
        nodes: Vec<NodeId>,
        lowered: Kernel,
        scheduled: Kernel,
        bindings: Vec<Binding>,
        work: u64,
    ) {
        let kernel = self.add_kernel(scheduled);
        self.push_step(name, nodes, Some(lowered), kernel, bindings, work);
    }

    /// Adds a step running the unique kernel `kernel` (from `add_kernel` or the cache).
    pub(super) fn push_step(
        &mut self,
        name: String,
        nodes: Vec<NodeId>,
        lowered: Option<Kernel>,
        kernel: usize,
        bindings: Vec<Binding>,
        work: u64,
    ) {
        let k = &self.kernels[kernel];
        let parallel = worth_parallel(k.tasks, work.max(k.macs));
        let lowered = if self.keep_lowered { lowered } else { None };
        let algo = nodes.first().map_or("copy", |&n| self.net.nodes[n].op.keyword());
        self.steps.push(Step { name, nodes, lowered, kernel, bindings, parallel, algo });
    }

    /// Names the algorithm of the step just added.
    pub(super) fn set_algorithm(&mut self, algo: &'static str) {
        if let Some(step) = self.steps.last_mut() {
            step.algo = algo;
        }
    }

    /// The index of `k` among the unique kernels, adding it if no identical one is there.
    pub(super) fn add_kernel(&mut self, k: Kernel) -> usize {
        let candidates = self.by_hash.entry(k.structure_hash()).or_default();
        if let Some(&i) = candidates.iter().find(|&&i| self.kernels[i].same_code(&k)) {
            return i;
        }
        let (i, k) = (self.kernels.len(), Arc::new(k));
        self.kernels.push(k.clone());
        candidates.push(i);
        if let Some(jobs) = &self.jobs {
            // The queue closes only when planning has ended; a kernel it did not take would be
            // missing from the module, which `link` reports.
            let _ = jobs.send(Job::Compile(i, k));
        }
        i
    }

    /// A kernel built before under `key` (the description of what it computes), with the
    /// convolution tile it was built for.
    pub(super) fn cached_kernel(&self, key: &str) -> Option<(usize, Option<Tile>)> {
        self.kernel_cache.get(key).copied()
    }

    pub(super) fn cache_kernel(&mut self, key: String, kernel: usize, tile: Option<Tile>) {
        self.kernel_cache.insert(key, (kernel, tile));
    }

    /// Per-thread scratch buffers of `lens` f32 elements for one step, one after the other
    /// (each on a cache line); steps run one at a time, so every step's start at offset 0.
    pub(super) fn scratch(&mut self, lens: &[u64]) -> Vec<Binding> {
        let mut at = 0u64;
        let bindings = lens
            .iter()
            .map(|&len| {
                let b = Binding::Scratch(at);
                at += (len * 4).div_ceil(ALIGN_BYTES) * ALIGN_BYTES;
                b
            })
            .collect();
        self.scratch_bytes = self.scratch_bytes.max(at);
        bindings
    }

    /// The Winograd tile size of the convolution `node`, if it takes that schedule.
    pub(super) fn winograd_m(&self, node: NodeId) -> Option<u64> {
        self.winograd.get(&node).copied()
    }

    /// A shared workspace buffer of `len` f32 elements (at offset 0: what one step leaves there
    /// is read by the next one only).
    pub(super) fn workspace(&mut self, len: u64) -> Binding {
        self.workspace_bytes = self.workspace_bytes.max(len * 4);
        Binding::Workspace(0)
    }

    /// A copy of a weight tensor.
    pub(super) fn tensor(&self, name: &str) -> Vec<f32> {
        self.weights.get(name).to_vec()
    }

    /// A weight tensor, taken out of the loaded weights as it is held (mapped or owned).
    pub(super) fn take_data(&mut self, name: &str) -> TensorData {
        self.weights.take_data(name)
    }

    /// Lowers one fusion group through its anchor's `Lower`.
    fn group(&mut self, g: &Group) -> Result<(), JitError> {
        let op = &self.net.nodes[g.anchor()].op;
        with_op!(op, o => Lower::lower(o, self, g))
    }
}
