//! Running compiled kernels: a persistent thread pool, the activation arena, and the pointer
//! tables, all set up at compile time so that a forward pass allocates nothing.
//!
//! Each thread owns a contiguous share of a kernel's tasks and claims small chunks of it from a
//! counter of its own; when its share is done it claims from the others', so a thread the host
//! preempts does not hold the others up at the end of the kernel. Owning the same share from one
//! kernel to the next keeps a thread on the same part of the tensors, whose values are then in
//! its own cache rather than the other core's (a chain of 100 copies of 128x28x28 values: 14.6
//! against 9.8 us per kernel with one shared counter). Every task writes its own outputs and
//! reduces in a fixed order, so results do not depend on the number of threads or on which
//! thread ran which task.

use super::compile::{CodeModule, KernelFn};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A kernel call: entry point, pointer tables and task count. Plain addresses, so a job can be
/// handed to worker threads. Thread `i` (the caller is 0) reads the table `i * stride` pointers
/// after `table`: tables differ only in per-thread scratch.
#[derive(Clone, Copy, Debug, Default)]
struct Job {
    func: usize,
    table: usize,
    stride: usize,
    tasks: i64,
}

/// A counter on a cache line of its own (threads claim from different ones).
#[repr(align(64))]
struct Padded(AtomicU64);

struct Shared {
    generation: AtomicU64,
    /// Per thread, the next unclaimed task of its share of the current kernel's tasks.
    next: Vec<Padded>,
    remaining: AtomicUsize,
    stop: AtomicBool,
    job_func: AtomicUsize,
    job_table: AtomicUsize,
    job_stride: AtomicUsize,
    job_tasks: AtomicU64,
    threads: usize,
}

fn call(job: Job, thread: usize, begin: i64, end: i64) {
    if begin < end {
        // SAFETY: `func` is a kernel compiled with `kernel_signature`, `table` points at one
        // pointer table per thread of the pool (`thread` is below that count), and the task
        // range is within the kernel's task space.
        unsafe {
            let f: KernelFn = std::mem::transmute::<usize, KernelFn>(job.func);
            let table = (job.table as *const *mut f32).add(thread * job.stride);
            f(table, begin, end);
        }
    }
}

/// Thread `i`'s share of `tasks`: the `i`-th of `threads` contiguous runs.
fn share(tasks: u64, threads: usize, i: usize) -> (u64, u64) {
    (tasks * i as u64 / threads as u64, tasks * (i as u64 + 1) / threads as u64)
}

/// Claims and runs chunks of `job` on thread `thread` until none is left: first from its own
/// share (so that a thread keeps working on the same part of the tensors from one kernel to the
/// next, whose values are then in its own cache), then from the others' (so that a thread the
/// host preempts does not hold the rest up).
fn run_claimed(job: Job, next: &[Padded], threads: usize, thread: usize) {
    // About 8 chunks per thread: small enough to balance, large enough to amortise the claim.
    let tasks = job.tasks as u64;
    let chunk = (tasks / (threads as u64 * 8)).max(1);
    for i in (thread..threads).chain(0..thread) {
        let end = share(tasks, threads, i).1;
        loop {
            let begin = next[i].0.fetch_add(chunk, Ordering::Relaxed);
            if begin >= end {
                break;
            }
            call(job, thread, begin as i64, (begin + chunk).min(end) as i64);
        }
    }
}

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Workers spin this long for the next kernel before parking: long enough to span the gap
/// between two kernels of a forward pass, short enough not to burn a core between calls.
const SPIN: Duration = Duration::from_micros(200);

/// Each worker's stack (std's default for new threads, made explicit so that
/// `address_space_for` knows it): kernels keep at most a gathered fc input on it
/// (`gemv::MAX_STACK_GATHER`, 256 KiB).
pub(super) const WORKER_STACK: usize = 2 << 20;

/// Address space left free after the workers' stacks, for what the threads and the caller
/// allocate meanwhile.
const SPAWN_RESERVE: u64 = 64 << 20;

/// An error unless the address-space limit (`ulimit -v`, RLIMIT_AS) leaves room for `workers`
/// stacks and `SPAWN_RESERVE`. Without this check, starting threads into an exhausted address
/// space fails in one of std's small allocations around `pthread_create`, which aborts the
/// process, as often as in `pthread_create` itself, which is an error.
fn address_space_for(workers: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the struct it is given; sysconf reads a constant.
        let (got, page) = unsafe { (libc::getrlimit(libc::RLIMIT_AS, &mut limit), libc::sysconf(libc::_SC_PAGESIZE)) };
        if got != 0 || limit.rlim_cur == libc::RLIM_INFINITY || workers == 0 {
            return Ok(());
        }
        let page = page.max(4096) as u64;
        // The process's mapped size in pages: the first field of /proc/self/statm.
        let Some(pages) = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u64>().ok()))
        else {
            return Ok(());
        };
        let room = (limit.rlim_cur as u64).saturating_sub(pages * page);
        // A stack and its guard page per worker.
        let need = workers as u64 * (WORKER_STACK as u64 + page) + SPAWN_RESERVE;
        if need > room {
            return Err(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!(
                    "the address-space limit leaves {} MiB, and {workers} more threads need {} MiB",
                    room >> 20,
                    need >> 20
                ),
            ));
        }
    }
    Ok(())
}

impl ThreadPool {
    /// Starts `threads - 1` workers (the caller is the first thread); if one cannot start (a
    /// process limit), the ones started are stopped and the error returned.
    pub fn new(threads: usize) -> std::io::Result<ThreadPool> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            next: (0..threads).map(|_| Padded(AtomicU64::new(0))).collect(),
            remaining: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            job_func: AtomicUsize::new(0),
            job_table: AtomicUsize::new(0),
            job_stride: AtomicUsize::new(0),
            job_tasks: AtomicU64::new(0),
            threads,
        });
        address_space_for(threads - 1)?;
        // Dropped on an error: `Drop` stops and joins the workers started so far.
        let mut pool = ThreadPool { shared: shared.clone(), workers: Vec::with_capacity(threads - 1) };
        for index in 1..threads {
            let shared = shared.clone();
            let worker = std::thread::Builder::new()
                .name(format!("cnnc-worker-{index}"))
                .stack_size(WORKER_STACK)
                .spawn(move || worker(&shared, index))?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Calls `func` on every thread with task ranges of `tasks` claimed as a kernel's are,
    /// thread i receiving `entries[i..]` as its table (one entry per thread).
    pub(super) fn run_each(&self, func: KernelFn, entries: &[*mut f32], tasks: i64) {
        assert_eq!(entries.len(), self.shared.threads, "an entry per thread");
        let job = Job { func: func as usize, table: entries.as_ptr() as usize, stride: 1, tasks };
        self.run(job, true);
    }

    /// Runs all tasks of a kernel, split across the pool (or on this thread alone).
    fn run(&self, job: Job, parallel: bool) {
        let n = self.shared.threads;
        if !parallel || n == 1 {
            call(job, 0, 0, job.tasks);
            return;
        }
        let s = &self.shared;
        s.job_func.store(job.func, Ordering::Relaxed);
        s.job_table.store(job.table, Ordering::Relaxed);
        s.job_stride.store(job.stride, Ordering::Relaxed);
        s.job_tasks.store(job.tasks as u64, Ordering::Relaxed);
        for (i, next) in s.next.iter().enumerate() {
            next.0.store(share(job.tasks as u64, n, i).0, Ordering::Relaxed);
        }
        s.remaining.store(n - 1, Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::Release);
        for w in &self.workers {
            w.thread().unpark();
        }
        run_claimed(job, &s.next, n, 0);
        while s.remaining.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
    }
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let started = Instant::now();
        let generation = loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen || s.stop.load(Ordering::Relaxed) {
                break g;
            }
            if started.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::park_timeout(Duration::from_millis(50));
            }
        };
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        seen = generation;
        let job = Job {
            func: s.job_func.load(Ordering::Relaxed),
            table: s.job_table.load(Ordering::Relaxed),
            stride: s.job_stride.load(Ordering::Relaxed),
            tasks: s.job_tasks.load(Ordering::Relaxed) as i64,
        };
        run_claimed(job, &s.next, s.threads, index);
        s.remaining.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in &self.workers {
            w.thread().unpark();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// f32 memory aligned to 64 bytes.
pub struct Aligned {
    storage: Vec<f32>,
    start: usize,
    len: usize,
}

impl Aligned {
    pub fn zeroed(len: usize) -> Aligned {
        let storage = vec![0.0f32; len + 16];
        let start = storage.as_ptr().align_offset(64).min(15);
        Aligned { storage, start, len }
    }

    pub fn ptr(&mut self) -> *mut f32 {
        self.storage[self.start..].as_mut_ptr()
    }

    pub fn slice(&self) -> &[f32] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn slice_mut(&mut self) -> &mut [f32] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// One kernel call of the forward pass.
pub struct Call {
    pub func: KernelFn,
    /// One pointer table per thread of the pool, `stride` pointers each, one after the other;
    /// the address of a thread's table is what the kernel receives on that thread.
    pub table: Vec<*mut f32>,
    pub stride: usize,
    pub tasks: i64,
    pub parallel: bool,
}

impl Call {
    fn job(&self) -> Job {
        Job { func: self.func as usize, table: self.table.as_ptr() as usize, stride: self.stride, tasks: self.tasks }
    }
}

/// The bounds-checked mode's error slots (`[buffer + 1, byte offset]` per step, written by
/// the kernel on an access outside its buffer) and, per step, the kernel and buffer names.
pub struct BoundsChecks {
    pub slots: Vec<[u64; 2]>,
    pub kernels: Vec<(String, Vec<(String, u64)>)>,
}

/// Executes calls in order. Owns the code (so the function pointers stay valid).
pub struct Executor {
    pub _code: CodeModule,
    pub calls: Vec<Call>,
    pub pool: ThreadPool,
    pub checks: Option<BoundsChecks>,
}

impl Executor {
    pub fn run(&self) {
        for (i, c) in self.calls.iter().enumerate() {
            self.pool.run(c.job(), c.parallel);
            self.check(i);
        }
    }

    /// Like `run`, recording the wall time of each call in seconds.
    pub fn run_timed(&self, seconds: &mut [f64]) {
        for (i, (c, s)) in self.calls.iter().zip(seconds.iter_mut()).enumerate() {
            let t = Instant::now();
            self.pool.run(c.job(), c.parallel);
            *s += t.elapsed().as_secs_f64();
            self.check(i);
        }
    }

    /// In bounds-checked mode, stops with the kernel's name if call `i` reached outside a buffer.
    fn check(&self, i: usize) {
        let Some(checks) = &self.checks else { return };
        // SAFETY: the slot was written, if at all, by the call that has returned (the pool's
        // run waits for every worker), and nothing else writes it.
        let [buffer, offset] = unsafe { std::ptr::read_volatile(&checks.slots[i]) };
        if buffer != 0 {
            let (kernel, buffers) = &checks.kernels[i];
            let (name, bytes) = &buffers[(buffer - 1) as usize];
            panic!(
                "JIT bounds check: kernel `{kernel}` accessed buffer `{name}` at byte offset {} (it holds {bytes} bytes)",
                offset as i64
            );
        }
    }
}
