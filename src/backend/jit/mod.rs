//! The Cranelift JIT backend. Passes, each printable with `cnnc compile --dump`:
//!
//! 1. `fusion` (shared with the checker): layers that run as one loop nest;
//! 2. `lower`: per group, the algorithm as scalar loop nests over logical coordinates
//!    (`--dump lowered`), with storage layouts and arena offsets from `memplan`;
//! 3. `schedule`: register tiles, vectors, unrolled reductions, task splits
//!    (`--dump scheduled`);
//! 4. `codegen`: loop IR -> Cranelift IR (`--dump clif`), compiled by `compile`;
//! 5. `runtime`: the thread pool and the allocation-free forward pass.

mod codegen;
pub(crate) mod compile;
mod ir;
mod kernels;
mod lanes;
mod lower;
mod mathfn;
mod runtime;
mod schedule;

pub use compile::JitError;
pub use schedule::Cores;

use crate::io::weights::Weights;
use crate::ir::geometry::Shape;
use crate::ir::graph::Network;
use crate::ir::tensor::Tensor;
use compile::plan_and_compile;
use lower::{Binding, JitPlan, plan};
use ndarray::{Array2, Array4};
use runtime::{Aligned, Call, Executor, ThreadPool};
use std::time::Instant;

/// Timing and size facts about one step (kernel call) of a compiled model.
#[derive(Clone, Debug)]
pub struct StepInfo {
    /// The layer whose result the step produces.
    pub name: String,
    /// Its multiply-accumulates.
    pub macs: u64,
    /// Its task count.
    pub tasks: i64,
    /// Whether it runs on all threads.
    pub parallel: bool,
    /// Its algorithm: `direct`, `gemm`, `gemv`, `depthwise` (convolutions and fc), or the op's
    /// keyword.
    pub algo: &'static str,
}

/// The most threads a compiled model runs on (each is an OS thread, spinning between kernels).
pub const MAX_THREADS: usize = 256;

/// Returns the heap's free pages to the system, where the allocator can (glibc's
/// `malloc_trim`).
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it releases the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Schedule choices a caller may change; `JitOptions::default()` is what `cnnc` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitOptions {
    /// 3x3 convolutions with fewer multiply-accumulates per image than this run the direct
    /// kernel, not Winograd (10 million by default: below it Winograd's fixed costs outweigh
    /// its savings). 0 lets every eligible convolution take Winograd, as tests of its edge
    /// cases on small shapes need.
    pub winograd_min_macs: u64,
    /// The cores whose measured register tiles the schedule takes (`Cores::host()` by
    /// default). Results do not depend on it.
    pub cores: Cores,
    /// The memory Winograd's transformed weights may take beyond the weights' own, in percent
    /// of all the weights' memory: 50 by default, for a model that runs many images;
    /// `for_images(1)` gives 10, since one image does not repay larger transforms (VGG-16's
    /// `cnnc run` on one image: 0.32 s and 642 MB at 10%, 0.35 s and 764 MB at 50%). Results
    /// do not depend on it beyond Winograd's rounding.
    pub winograd_memory_percent: u32,
    /// ... or this many bytes, if more (for small networks): 128 MiB by default, 50 MiB from
    /// `for_images(1)`.
    pub winograd_memory_min: u64,
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions {
            winograd_min_macs: schedule::WINO_MIN_MACS,
            cores: Cores::host(),
            winograd_memory_percent: schedule::WINO_MEMORY_PERCENT,
            winograd_memory_min: schedule::WINO_MEMORY_MIN,
        }
    }
}

impl JitOptions {
    /// The default options for a model that will run `images` images: with one, the smaller
    /// Winograd memory budget.
    pub fn for_images(images: usize) -> JitOptions {
        if images > 1 {
            return JitOptions::default();
        }
        JitOptions {
            winograd_memory_percent: schedule::WINO_MEMORY_PERCENT_ONE_IMAGE,
            winograd_memory_min: schedule::WINO_MEMORY_MIN_ONE_IMAGE,
            ..JitOptions::default()
        }
    }
}

/// A network compiled by Cranelift into fused loop nests, with its arena, packed weights and
/// thread pool: ready to run images without allocating.
pub struct JitModel {
    executor: Executor,
    // The memory the pointer tables point into; kept alive (and never reallocated) here.
    arena: Aligned,
    /// Per-thread scratch and the shared workspace.
    _scratch: (Vec<Aligned>, Aligned),
    _params: Vec<crate::io::weights::TensorData>,
    image: Aligned,
    results: Vec<Aligned>,
    result_shapes: Vec<Shape>,
    /// What the lanes of a batch need (`lanes`), until the first batch builds them; none in
    /// bounds-checked mode.
    lane_plan: Option<lanes::LanePlan>,
    lanes: Option<lanes::Lanes>,
    /// Each step, in execution order.
    pub steps: Vec<StepInfo>,
    /// Wall time of `compile`, in milliseconds.
    pub compile_ms: f64,
    /// Distinct kernels compiled (identical ones are compiled once).
    pub kernels_compiled: usize,
    /// The activation arena, in bytes.
    pub arena_bytes: u64,
    /// The checker's peak of live activations (unpadded).
    pub checker_peak_bytes: u64,
    /// The same liveness peak over padded layouts: what the arena must hold.
    pub padded_peak_bytes: u64,
}

// SAFETY: the raw pointers a JitModel holds (its calls' and its lanes' pointer tables) point into
// heap memory the JitModel itself owns (arenas, packed parameters, image and result buffers,
// the lanes' own) and into its own compiled code, none of which moves or is freed while it
// lives; its worker threads only touch that memory during a forward pass (`run_image`,
// `run_batch`), which takes `&mut self`. Moving the whole model to another
// thread (a Python binding's mutex, a server's worker) therefore moves every owner together.
unsafe impl Send for JitModel {}

/// The network's output and, before a trailing softmax, its logits.
pub struct JitOutputs {
    /// The last layer's output.
    pub output: Tensor,
    /// The input of a trailing softmax, if the network ends in one.
    pub logits: Option<Tensor>,
}

impl JitModel {
    /// Lowers, schedules and compiles `net` for its input shape (the shapes of a clean check).
    /// Consumes `weights`: they are packed in place.
    pub fn compile(net: &Network, shapes: &[Shape], weights: Weights, threads: usize) -> Result<JitModel, JitError> {
        JitModel::compile_with(net, shapes, weights, threads, JitOptions::default())
    }

    /// `compile` with schedule options.
    pub fn compile_with(
        net: &Network,
        shapes: &[Shape],
        weights: Weights,
        threads: usize,
        options: JitOptions,
    ) -> Result<JitModel, JitError> {
        if threads > MAX_THREADS {
            return Err(JitError::Unsupported(format!(
                "{threads} threads asked for; the JIT runs on at most {MAX_THREADS}"
            )));
        }
        let start = Instant::now();
        let checked = checked_mode();
        let (mut p, code, packed) =
            plan_and_compile(threads, checked, |jobs| plan(net, shapes, weights, threads, false, Some(jobs), options))?;
        if code.functions.len() != p.kernels.len() {
            return Err(JitError::Unsupported(format!(
                "internal error: {} kernels planned, {} compiled",
                p.kernels.len(),
                code.functions.len()
            )));
        }
        for (i, data) in packed {
            p.params[i] = data;
        }
        let infos = step_infos(&p);
        let unique = std::mem::take(&mut p.kernels);
        // Per step, its kernel's buffers (name, bytes), for the bounds-checked mode's checks.
        let step_buffers: Vec<Vec<(String, u64)>> = p
            .steps
            .iter()
            .map(|s| unique[s.kernel].buffers.iter().map(|b| (b.name.clone(), b.elements() * 4)).collect())
            .collect();
        let kernels_compiled = unique.len();
        // Freeing the IR trees takes a while; it need not delay the caller. Then the heap's
        // free pages go back to the system: glibc keeps what planning and compiling freed
        // (VGG-16: 3 to 5 MB of the peak resident set of `cnnc run`).
        std::thread::spawn(move || {
            drop(unique);
            release_free_heap();
        });
        if std::env::var_os("CNNC_TIME_COMPILE").is_some() {
            eprintln!("planned and compiled {} kernels in {:?}", kernels_compiled, start.elapsed());
        }
        let JitPlan {
            steps,
            params,
            arena_bytes,
            scratch_bytes,
            workspace_bytes,
            checker_peak_bytes,
            padded_peak_bytes,
            image_len,
            results,
            ..
        } = p;
        let threads = threads.max(1);
        let mut arena = Aligned::zeroed((arena_bytes / 4) as usize);
        // Each thread's scratch (the Winograd kernels' transformed tiles).
        let mut scratch: Vec<Aligned> = (0..threads).map(|_| Aligned::zeroed((scratch_bytes / 4) as usize)).collect();
        // Packed parameters are used where they were built (no copy): vector offsets are
        // multiples of 16 bytes, and the allocator's 16-byte alignment keeps loads within lines.
        let mut image = Aligned::zeroed(image_len);
        let mut result_bufs: Vec<Aligned> = results.iter().map(|&(_, len)| Aligned::zeroed(len)).collect();
        let arena_ptr = arena.ptr();
        let scratch_ptrs: Vec<*mut f32> = scratch.iter_mut().map(Aligned::ptr).collect();
        let mut workspace = Aligned::zeroed((workspace_bytes / 4) as usize);
        let workspace_ptr = workspace.ptr();
        let (image_ptr, result_ptrs): (_, Vec<_>) = (image.ptr(), result_bufs.iter_mut().map(Aligned::ptr).collect());
        let param_ptrs: Vec<*mut f32> = params.iter().map(|p| p.as_ptr().cast_mut()).collect();
        let memory = Memory {
            arena: arena_ptr,
            scratch: &scratch_ptrs,
            workspace: workspace_ptr,
            params: &param_ptrs,
            image: image_ptr,
            results: &result_ptrs,
        };
        let pointer = |b: &Binding, thread: usize| memory.pointer(b, thread);
        let mut slots = vec![[0u64; 2]; if checked { steps.len() } else { 0 }];
        if checked {
            for (s, (info, buffers)) in steps.iter().zip(infos.iter().zip(&step_buffers)) {
                let sizes = [arena_bytes, scratch_bytes, workspace_bytes];
                check_bindings(&info.name, &s.bindings, buffers, sizes, &params);
            }
        }
        let lane_plan = (!checked && threads > 1).then(|| lanes::LanePlan {
            steps: steps
                .iter()
                .zip(&infos)
                .zip(&step_buffers)
                .map(|((s, info), buffers)| lanes::LaneStep {
                    func: code.functions[s.kernel],
                    tasks: info.tasks,
                    bindings: s.bindings.clone(),
                    buffers: buffers.len(),
                })
                .collect(),
            arena_bytes,
            scratch_bytes,
            workspace_bytes,
            image_len,
            result_lens: results.iter().map(|&(_, len)| len).collect(),
            params: param_ptrs.clone(),
        });
        let calls = steps
            .iter()
            .zip(&infos)
            .zip(slots.iter_mut().map(Some).chain(std::iter::repeat_with(|| None)))
            .zip(&step_buffers)
            .map(|(((s, info), slot), buffers)| {
                let slot = slot.map(|x| x.as_mut_ptr().cast());
                let table = pointer_tables(&s.bindings, buffers.len(), threads, &pointer, slot);
                let stride = table.len() / threads;
                Call { func: code.functions[s.kernel], table, stride, tasks: info.tasks, parallel: s.parallel }
            })
            .collect();
        let checks = checked.then(|| runtime::BoundsChecks {
            slots,
            kernels: infos.iter().zip(step_buffers).map(|(info, b)| (info.name.clone(), b)).collect(),
        });

        let result_shapes = results.iter().map(|&(n, _)| shapes[n]).collect();
        let pool = ThreadPool::new(threads)
            .map_err(|e| JitError::Unsupported(format!("cannot start {threads} threads for the forward pass: {e}")))?;
        Ok(JitModel {
            executor: Executor { _code: code, calls, pool, checks },
            arena,
            _scratch: (scratch, workspace),
            _params: params,
            image,
            results: result_bufs,
            result_shapes,
            lane_plan,
            lanes: None,
            steps: infos,
            compile_ms: start.elapsed().as_secs_f64() * 1e3,
            kernels_compiled,
            arena_bytes,
            checker_peak_bytes,
            padded_peak_bytes,
        })
    }

    /// The threads the forward pass runs on.
    pub fn threads(&self) -> usize {
        self.executor.pool.threads()
    }

    /// Runs one image (C*H*W values, NCHW order). Allocates nothing.
    pub fn run_image(&mut self, image: &[f32]) {
        self.image.slice_mut().copy_from_slice(image);
        self.executor.run();
    }

    /// Runs one image and adds each step's wall time (seconds) to `seconds`.
    pub fn run_image_timed(&mut self, image: &[f32], seconds: &mut [f64]) {
        self.image.slice_mut().copy_from_slice(image);
        self.executor.run_timed(seconds);
    }

    /// The network's results for the last image `run_image` ran: output, then logits if any (a
    /// batch on lanes writes its results to the caller's buffers instead).
    pub fn result(&self, k: usize) -> &[f32] {
        self.results[k].slice()
    }

    /// How many results the network has: its output, then its logits if any.
    pub fn results(&self) -> usize {
        self.results.len()
    }

    /// The values of result `k` for one image.
    pub fn result_len(&self, k: usize) -> usize {
        self.results[k].slice().len()
    }

    /// Runs the images of `batch` (whole images of C*H*W values, NCHW order), writing image
    /// i's result k to `outputs[k][i * len_k..]`. With two or more threads and at least as many
    /// images, each thread runs whole images on a lane of its own (`lanes`); the results are
    /// bitwise those of `run_image`. The first such batch allocates the lanes; later ones
    /// allocate nothing.
    pub fn run_batch(&mut self, batch: &[f32], outputs: &mut [&mut [f32]]) {
        let image_len = self.image.slice().len();
        let images = batch.len() / image_len.max(1);
        let threads = self.threads();
        if images < threads.max(2) || (self.lanes.is_none() && self.lane_plan.is_none()) {
            for i in 0..images {
                self.run_image(&batch[i * image_len..(i + 1) * image_len]);
                for (k, out) in outputs.iter_mut().enumerate() {
                    let r = self.results[k].slice();
                    out[i * r.len()..(i + 1) * r.len()].copy_from_slice(r);
                }
            }
            return;
        }
        if self.lanes.is_none() {
            let plan = self.lane_plan.take().expect("a lane plan until the lanes are built");
            let first = lanes::FirstLane {
                tables: self.executor.calls.iter().map(|c| c.table.as_ptr()).collect(),
                image: self.image.ptr(),
                results: self.results.iter_mut().map(|r| r.ptr().cast_const()).collect(),
            };
            self.lanes = Some(lanes::Lanes::new(plan, first, threads));
        }
        let lanes = self.lanes.as_mut().expect("built above");
        debug_assert_eq!(lanes.count(), threads);
        let (entries, entry) = lanes.prepare(&batch[..images * image_len], outputs);
        self.executor.pool.run_each(entry, entries, images as i64);
    }

    /// Runs a batch (N, C, H, W) with `run_batch`.
    pub fn forward(&mut self, batch: &Array4<f32>) -> JitOutputs {
        let n = batch.dim().0;
        let per_image: Vec<usize> = self.results.iter().map(|r| r.slice().len()).collect();
        let mut collected: Vec<Vec<f32>> = per_image.iter().map(|&l| vec![0.0; l * n]).collect();
        let batch = batch.as_standard_layout();
        let data = batch.as_slice().expect("standard layout");
        let mut outputs: Vec<&mut [f32]> = collected.iter_mut().map(|v| v.as_mut_slice()).collect();
        self.run_batch(data, &mut outputs);
        let mut tensors: Vec<Tensor> = collected
            .into_iter()
            .zip(&self.result_shapes)
            .map(|(data, shape)| match *shape {
                Shape::Map { c, h, w } => Tensor::Map(
                    Array4::from_shape_vec((n, c as usize, h as usize, w as usize), data)
                        .expect("result sizes match shapes"),
                ),
                Shape::Flat { n: f } => {
                    Tensor::Flat(Array2::from_shape_vec((n, f as usize), data).expect("result sizes match shapes"))
                }
            })
            .collect();
        let logits = if tensors.len() > 1 { tensors.pop() } else { None };
        JitOutputs { output: tensors.remove(0), logits }
    }

    /// The activation arena, as the last forward pass left it.
    pub fn arena(&self) -> &[f32] {
        self.arena.slice()
    }
}

/// Whether `CNNC_JIT_CHECKED` asks for bounds-checked code: every load and store compares its
/// address with its buffer first, and an access outside it stops the run with the kernel's name.
fn checked_mode() -> bool {
    std::env::var_os("CNNC_JIT_CHECKED").is_some_and(|v| !v.is_empty() && v != "0")
}

/// What `cnnc bench` and dumps show of each step.
fn step_infos(p: &JitPlan) -> Vec<StepInfo> {
    p.steps
        .iter()
        .map(|s| StepInfo {
            name: s.name.clone(),
            macs: p.kernels[s.kernel].macs,
            tasks: p.kernels[s.kernel].tasks,
            parallel: s.parallel,
            algo: s.algo,
        })
        .collect()
}

/// Where a step's bindings point: the memory of the model (or of a lane), with per-thread
/// scratch.
struct Memory<'a> {
    arena: *mut f32,
    scratch: &'a [*mut f32],
    workspace: *mut f32,
    params: &'a [*mut f32],
    image: *mut f32,
    results: &'a [*mut f32],
}

impl Memory<'_> {
    fn pointer(&self, b: &Binding, thread: usize) -> *mut f32 {
        match *b {
            // SAFETY: offsets were assigned within the arena's (scratch's, workspace's) size,
            // which the memory's buffers have.
            Binding::Arena(off) => unsafe { self.arena.add((off / 4) as usize) },
            Binding::Scratch(off) => unsafe { self.scratch[thread].add((off / 4) as usize) },
            Binding::Workspace(off) => unsafe { self.workspace.add((off / 4) as usize) },
            Binding::Param(i) => self.params[i],
            Binding::Image => self.image,
            Binding::Result(i) => self.results[i],
            Binding::Stack => std::ptr::null_mut(),
        }
    }
}

/// A step's pointer tables, one per thread (`pointer` resolves a binding on a thread): each the
/// address of the math functions' constants, one entry per buffer of the kernel (null for the
/// stack buffers after the bound ones), then the bounds-checked mode's error slot if there is
/// one, where the kernel looks for it.
fn pointer_tables(
    bindings: &[Binding],
    buffers: usize,
    threads: usize,
    pointer: &dyn Fn(&Binding, usize) -> *mut f32,
    slot: Option<*mut f32>,
) -> Vec<*mut f32> {
    debug_assert!(bindings.len() <= buffers, "a binding per buffer at most");
    let mut table = Vec::new();
    for thread in 0..threads {
        table.push(mathfn::table_address() as *mut f32);
        table.extend(bindings.iter().map(|b| pointer(b, thread)));
        table.extend((bindings.len()..buffers).map(|_| std::ptr::null_mut::<f32>()));
        table.extend(slot);
    }
    table
}

/// In bounds-checked mode, that every buffer a step binds lies inside what it is bound to: the
/// arena, or its parameter array (an internal error otherwise).
fn check_bindings(
    name: &str,
    bindings: &[Binding],
    buffers: &[(String, u64)],
    [arena, scratch, workspace]: [u64; 3],
    params: &[crate::io::weights::TensorData],
) {
    for (b, (buf, bytes)) in bindings.iter().zip(buffers) {
        let room = match *b {
            Binding::Arena(off) => arena.saturating_sub(off),
            Binding::Scratch(off) => scratch.saturating_sub(off),
            Binding::Workspace(off) => workspace.saturating_sub(off),
            Binding::Param(i) => params[i].len() as u64 * 4,
            Binding::Image | Binding::Result(_) | Binding::Stack => continue,
        };
        assert!(bytes <= &room, "JIT bounds check: kernel `{name}` binds buffer `{buf}` of {bytes} bytes to {room}");
    }
}

/// The activation arena the JIT would allocate for `net`, in bytes.
pub(crate) fn arena_bytes(net: &Network, shapes: &[Shape]) -> Result<u64, JitError> {
    lower::arena_bytes(net, shapes)
}

/// Memory the JIT adds to the weights beyond one packed copy: Winograd's transformed weights
/// beyond the weights' own size, and room for its scratch and workspace.
pub(crate) fn winograd_bytes(net: &Network, shapes: &[Shape]) -> u64 {
    schedule::winograd_bytes(net, shapes)
}

/// The IR of every step after a pass, for `cnnc compile --dump`.
pub(crate) fn dump(net: &Network, shapes: &[Shape], weights: Weights, pass: &str) -> Result<String, JitError> {
    let p = plan(net, shapes, weights, 1, pass == "lowered", None, JitOptions::default())?;
    let mut out = String::new();
    for s in &p.steps {
        let text = match pass {
            "lowered" => s.lowered.as_ref().map_or_else(String::new, |k| k.to_string()),
            // A shared kernel is shown under the name of each step that runs it.
            "scheduled" => ir::Kernel { name: s.name.clone(), ..(*p.kernels[s.kernel]).clone() }.to_string(),
            "clif" => compile::clif_text(&p.kernels[s.kernel])?,
            other => return Err(JitError::Unsupported(format!("unknown pass `{other}`"))),
        };
        out += &format!(
            "# step {} ({}){}\n{text}\n",
            s.name,
            s.nodes.iter().map(|&n| net.nodes[n].op.keyword()).collect::<Vec<_>>().join(" + "),
            if s.parallel { ", parallel" } else { "" }
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::compile::compile_all;
    use super::ir::*;
    use super::runtime::{BoundsChecks, Call, Executor, ThreadPool};

    /// A kernel that stores one element past the end of its 4-element buffer.
    fn off_by_one() -> Kernel {
        let mut vars = Vars::default();
        let (t, i) = (vars.new_var("t"), vars.new_var("i"));
        let body = vec![for_range(i, 0, 5, vec![store(Ty::F32, 0, Index::Flat(iv(i)), fc(1.0))])];
        let mut k = Kernel {
            name: "off_by_one".into(),
            buffers: vec![Buffer::new("out", Layout::Flat { len: 4 }, true)],
            ..Kernel::default()
        };
        k.push_tasks(t, 1, body);
        k.var_names = vars.names;
        k
    }

    #[test]
    #[should_panic(expected = "kernel `off_by_one` accessed buffer `out` at byte offset 16 (it holds 16 bytes)")]
    fn the_checked_mode_stops_an_out_of_bounds_store_and_names_the_kernel() {
        let code = compile_all(&[off_by_one()], 1, true).unwrap();
        let mut memory = [0.0f32; 8];
        let mut slots = vec![[0u64; 2]];
        let table = vec![super::mathfn::table_address() as *mut f32, memory.as_mut_ptr(), slots[0].as_mut_ptr().cast()];
        let call = Call { func: code.functions[0], table, stride: 3, tasks: 1, parallel: false };
        let checks = BoundsChecks { slots, kernels: vec![("off_by_one".into(), vec![("out".into(), 16)])] };
        let executor =
            Executor { _code: code, calls: vec![call], pool: ThreadPool::new(1).unwrap(), checks: Some(checks) };
        executor.run();
        // The store was skipped: the element past the buffer is untouched.
        assert_eq!(memory[4], 0.0);
    }
}
