//! Batches run one image per thread. With two or more threads and at least as many images, each
//! thread runs whole images through the network on its own "lane": its own activation arena,
//! scratch, workspace, image and result buffers (thread 0's lane is the model's own). No thread
//! waits for another between kernels, and each core keeps its image's activations in its own
//! caches. The kernels are the ones `run_image` calls, each run with all its tasks on the lane's
//! thread; results never depend on the thread count, so each image's results are bitwise those
//! of `run_image`.
//!
//! The lanes beyond the first are allocated by the first batch that uses them and kept.

use super::compile::KernelFn;
use super::lower::Binding;
use super::runtime::Aligned;

/// A step as a lane runs it: its kernel, task count, bindings and buffer count.
pub(super) struct LaneStep {
    pub(super) func: KernelFn,
    pub(super) tasks: i64,
    pub(super) bindings: Vec<Binding>,
    pub(super) buffers: usize,
}

/// What building a lane needs: the steps, the sizes of the per-image memory, and where the
/// packed parameters (shared by all lanes) are.
pub(super) struct LanePlan {
    pub(super) steps: Vec<LaneStep>,
    pub(super) arena_bytes: u64,
    pub(super) scratch_bytes: u64,
    pub(super) workspace_bytes: u64,
    pub(super) image_len: usize,
    pub(super) result_lens: Vec<usize>,
    pub(super) params: Vec<*mut f32>,
}

/// A lane's memory beyond the first: owned here, never reallocated.
struct LaneMemory {
    _buffers: [Aligned; 3],
    _image: Aligned,
    _results: Vec<Aligned>,
    _tables: Vec<Vec<*mut f32>>,
}

/// Where a lane's thread finds everything for a batch: per step, its pointer table; the
/// lane's image and result buffers; and, set by each batch, the batch and the outputs.
struct LaneRef {
    steps: *const LaneStep,
    tables: Vec<*const *mut f32>,
    image: *mut f32,
    image_len: usize,
    results: Vec<(*const f32, usize)>,
    batch: *const f32,
    outputs: Vec<*mut f32>,
}

/// The lanes of a model: `refs[i]` is thread i's.
pub(super) struct Lanes {
    plan: LanePlan,
    _memory: Vec<LaneMemory>,
    refs: Vec<LaneRef>,
    /// `refs[i]`'s address at entry i: the "pointer table" the pool hands thread i.
    entries: Vec<*mut f32>,
}

/// The model's own lane (thread 0's): its steps' tables for thread 0, image and results.
pub(super) struct FirstLane {
    pub(super) tables: Vec<*const *mut f32>,
    pub(super) image: *mut f32,
    pub(super) results: Vec<*const f32>,
}

impl Lanes {
    /// `threads` lanes: the first is the model's own, the others are allocated here.
    pub(super) fn new(plan: LanePlan, first: FirstLane, threads: usize) -> Lanes {
        let mut memory = Vec::new();
        let mut refs = Vec::new();
        let steps = plan.steps.as_ptr();
        let results_of = |ptrs: &[*const f32]| -> Vec<(*const f32, usize)> {
            ptrs.iter().copied().zip(plan.result_lens.iter().copied()).collect()
        };
        refs.push(LaneRef {
            steps,
            tables: first.tables,
            image: first.image,
            image_len: plan.image_len,
            results: results_of(&first.results),
            batch: std::ptr::null(),
            outputs: vec![std::ptr::null_mut(); plan.result_lens.len()],
        });
        for _ in 1..threads {
            let mut buffers = [plan.arena_bytes, plan.scratch_bytes, plan.workspace_bytes]
                .map(|bytes| Aligned::zeroed((bytes / 4) as usize));
            let [arena, scratch, workspace] = buffers.each_mut().map(|b| b.ptr());
            let mut image = Aligned::zeroed(plan.image_len);
            let mut results: Vec<Aligned> = plan.result_lens.iter().map(|&l| Aligned::zeroed(l)).collect();
            let (image_ptr, result_ptrs): (*mut f32, Vec<*mut f32>) =
                (image.ptr(), results.iter_mut().map(Aligned::ptr).collect());
            // This lane's buffers have the sizes the offsets were assigned within.
            let bound = super::Memory {
                arena,
                scratch: &[scratch],
                workspace,
                params: &plan.params,
                image: image_ptr,
                results: &result_ptrs,
            };
            let pointer = |b: &Binding, thread: usize| bound.pointer(b, thread);
            let tables: Vec<Vec<*mut f32>> =
                plan.steps.iter().map(|s| super::pointer_tables(&s.bindings, s.buffers, 1, &pointer, None)).collect();
            refs.push(LaneRef {
                steps,
                tables: tables.iter().map(|t| t.as_ptr()).collect(),
                image: image_ptr,
                image_len: plan.image_len,
                results: results_of(&result_ptrs.iter().map(|&p| p.cast_const()).collect::<Vec<_>>()),
                batch: std::ptr::null(),
                outputs: vec![std::ptr::null_mut(); plan.result_lens.len()],
            });
            memory.push(LaneMemory { _buffers: buffers, _image: image, _results: results, _tables: tables });
        }
        let entries = refs.iter().map(|r| std::ptr::from_ref(r).cast_mut().cast::<f32>()).collect();
        Lanes { plan, _memory: memory, refs, entries }
    }

    /// How many lanes there are.
    pub(super) fn count(&self) -> usize {
        self.refs.len()
    }

    /// Points every lane at `batch` (images of `image_len` values) and `outputs` (per result,
    /// room for every image's); returns the entry table and the entry function for the pool.
    pub(super) fn prepare(&mut self, batch: &[f32], outputs: &mut [&mut [f32]]) -> (&[*mut f32], KernelFn) {
        let images = batch.len() / self.plan.image_len.max(1);
        for (out, &len) in outputs.iter().zip(&self.plan.result_lens) {
            assert!(out.len() >= images * len, "room for every image's results");
        }
        for r in &mut self.refs {
            r.batch = batch.as_ptr();
            for (o, out) in r.outputs.iter_mut().zip(outputs.iter_mut()) {
                *o = out.as_mut_ptr();
            }
        }
        (&self.entries, lane_entry)
    }
}

/// Runs images `begin..end` of the batch on the calling thread's lane (`*table` is its
/// `LaneRef`): the image into the lane's image buffer, every step with all its tasks, the
/// results out to the image's place in the outputs.
unsafe extern "C" fn lane_entry(table: *const *mut f32, begin: i64, end: i64) {
    // SAFETY: the pool hands each thread its entry of `Lanes::entries`, a `LaneRef` that
    // `prepare` pointed at a live batch and outputs for this call; lanes do not share memory
    // they write, and each image's outputs are its own.
    unsafe {
        let lane = &*(*table).cast_const().cast::<LaneRef>();
        for i in begin.max(0) as usize..end.max(0) as usize {
            std::ptr::copy_nonoverlapping(lane.batch.add(i * lane.image_len), lane.image, lane.image_len);
            for (s, &t) in lane.tables.iter().enumerate() {
                let step = &*lane.steps.add(s);
                (step.func)(t, 0, step.tasks);
            }
            for (&(src, len), &out) in lane.results.iter().zip(&lane.outputs) {
                std::ptr::copy_nonoverlapping(src, out.add(i * len), len);
            }
        }
    }
}
