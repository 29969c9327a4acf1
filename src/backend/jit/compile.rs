//! Compiles loop-IR kernels to machine code with Cranelift. Functions are built and compiled on
//! worker threads (a `Context` per function) while the planner is still lowering later layers,
//! and the same workers pack weights; the resulting bytes are defined in one `JITModule` on the
//! calling thread, because a `JITModule` is `Send` but not `Sync`. Kernels call nothing, so
//! their code carries no relocations.

use super::codegen::{build_function, kernel_signature};
use super::ir::Kernel;
use crate::io::weights::TensorData;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{CompiledCode, Context};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use std::sync::{Arc, Mutex, mpsc};

/// `fn(buffers, task_begin, task_end)`.
pub type KernelFn = unsafe extern "C" fn(*const *mut f32, i64, i64);

/// Why the JIT cannot compile a network.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// Cranelift does not support this CPU.
    #[error("this CPU is not supported by Cranelift: {0}")]
    Host(String),
    /// Cranelift rejected a kernel: a bug in cnnc.
    #[error("internal error: Cranelift rejected kernel `{kernel}`: {message}")]
    Codegen {
        /// The kernel.
        kernel: String,
        /// Cranelift's message.
        message: String,
    },
    /// The network cannot be compiled (too large, or a form the JIT does not support).
    #[error("{0}")]
    Unsupported(String),
}

pub(crate) fn host_isa() -> Result<OwnedTargetIsa, JitError> {
    let mut flags = settings::builder();
    // The loop IR is already scheduled (hoisted, unrolled, register-blocked): Cranelift's
    // mid-end optimisations would cost compile time for little gain.
    flags.set("opt_level", "none").map_err(|e| JitError::Host(e.to_string()))?;
    flags
        .set("enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })
        .map_err(|e| JitError::Host(e.to_string()))?;
    let isa_builder = cranelift_native::builder().map_err(|e| JitError::Host(e.to_string()))?;
    isa_builder.finish(settings::Flags::new(flags)).map_err(|e| JitError::Host(e.to_string()))
}

struct Compiled {
    name: String,
    bytes: Vec<u8>,
    alignment: u64,
}

fn compile_one(isa: &dyn TargetIsa, k: &Kernel, checked: bool) -> Result<Compiled, JitError> {
    let started = std::time::Instant::now();
    let mut fctx = FunctionBuilderContext::new();
    let func = build_function(k, isa, &mut fctx, checked);
    let built = started.elapsed();
    let code = codegen_function(isa, func)
        .map_err(|e| JitError::Codegen { kernel: k.name.clone(), message: format!("{e:?}") })?;
    if !code.buffer.relocs().is_empty() {
        return Err(JitError::Codegen { kernel: k.name.clone(), message: "unexpected relocations".into() });
    }
    if let Some(dir) = std::env::var_os("CNNC_DUMP_CODE") {
        // Raw machine code, for `objdump -D -b binary -mi386:x86-64`.
        let _ = std::fs::write(
            std::path::Path::new(&dir).join(format!("{}.bin", k.name.replace('/', "_"))),
            code.code_buffer(),
        );
    }
    if std::env::var_os("CNNC_TIME_COMPILE").is_some() {
        eprintln!(
            "  {:<24} {:>8.1} ms  {:>7} bytes  (IR {:.1} ms)",
            k.name,
            started.elapsed().as_secs_f64() * 1e3,
            code.code_buffer().len(),
            built.as_secs_f64() * 1e3
        );
    }
    let alignment = (code.buffer.alignment as u64).max(isa.function_alignment().minimum as u64).max(16);
    Ok(Compiled { name: k.name.clone(), bytes: code.code_buffer().to_vec(), alignment })
}

/// Machine code for `func`: Cranelift's `Context::compile` less its `remove_constant_phis`
/// pass. That pass replaces a block parameter by the value every predecessor passes, which
/// would undo `Stmt::Broadcast` (a broadcast passed to the next block as its one parameter,
/// so that its load folds into `vbroadcastss [mem]`). The code generator's other block
/// parameters come from `cranelift_frontend`, which already resolves a variable to its one
/// value where every predecessor agrees; without the pass, the machine code of kernels
/// without broadcasts was byte-identical in the examples (`CNNC_DUMP_CODE`).
fn codegen_function(isa: &dyn TargetIsa, func: cranelift_codegen::ir::Function) -> Result<CompiledCode, String> {
    let mut ctx = Context::for_function(func);
    // The verifier runs when `enable_verifier` is set (debug builds), as in `Context::compile`.
    ctx.verify_if(isa).map_err(|e| format!("{e:?}"))?;
    ctx.compute_cfg();
    ctx.compute_domtree();
    ctx.eliminate_unreachable_code(isa).map_err(|e| format!("{e:?}"))?;
    ctx.func.dfg.resolve_all_aliases();
    let mut regalloc = regalloc2::Ctx::default();
    let stencil = isa
        .compile_function(&ctx.func, &ctx.domtree, &mut regalloc, false, &mut ControlPlane::default())
        .map_err(|e| format!("{e:?}"))?;
    Ok(stencil.apply_params(&ctx.func.params))
}

/// Cranelift IR text of a kernel, for `--dump clif`.
pub(crate) fn clif_text(k: &Kernel) -> Result<String, JitError> {
    let isa = host_isa()?;
    let mut fctx = FunctionBuilderContext::new();
    Ok(build_function(k, &*isa, &mut fctx, false).display().to_string())
}

pub struct CodeModule {
    /// Owns the executable memory the function pointers point into.
    _module: JITModule,
    pub functions: Vec<KernelFn>,
}

// SAFETY: the module is only read after finalisation (it owns immutable executable memory), and
// the function pointers are plain addresses into it.
unsafe impl Sync for CodeModule {}

/// Work the planner hands out as it goes: compiling a kernel (by its index among the unique
/// kernels), or packing a parameter array (by its index among the parameters).
pub(super) enum Job {
    Compile(usize, Arc<Kernel>),
    Pack(usize, Box<dyn FnOnce() -> TensorData + Send>),
}

/// Where the planner sends jobs.
pub(super) type Jobs = mpsc::Sender<Job>;

/// Packed parameter arrays with their indices.
pub(super) type Packed = Vec<(usize, TensorData)>;

#[derive(Default)]
struct Done {
    compiled: Vec<(usize, Result<Compiled, JitError>)>,
    packed: Packed,
}

/// Takes jobs until the queue is empty and its sender gone.
fn work(queue: &Mutex<mpsc::Receiver<Job>>, isa: &dyn TargetIsa, checked: bool) -> Done {
    let mut done = Done::default();
    loop {
        let job = match queue.lock().map(|q| q.recv()) {
            Ok(Ok(job)) => job,
            _ => break,
        };
        match job {
            Job::Compile(i, k) => done.compiled.push((i, compile_one(isa, &k, checked))),
            Job::Pack(i, pack) => {
                let started = std::time::Instant::now();
                done.packed.push((i, pack()));
                if std::env::var_os("CNNC_TIME_COMPILE").is_some() {
                    eprintln!("  pack {i:<19} {:>8.1} ms", started.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
    done
}

/// Runs `plan` on this thread while `threads - 1` workers (at most one per core besides this
/// thread) compile the kernels and pack the
/// parameters it sends (so planning, packing and compiling overlap); when `plan` returns (and
/// drops its sender), this thread joins the workers until the queue is empty. Returns what
/// `plan` returned, the kernels' entry points in index order, and the packed parameters with
/// their indices. With `checked`, every load and store checks its address first
/// (`CNNC_JIT_CHECKED`).
pub(super) fn plan_and_compile<T>(
    threads: usize,
    checked: bool,
    plan: impl FnOnce(Jobs) -> Result<T, JitError>,
) -> Result<(T, CodeModule, Packed), JitError> {
    let isa: Arc<dyn TargetIsa> = host_isa()?;
    let (sender, receiver) = mpsc::channel();
    let queue = Mutex::new(receiver);
    let (planned, done) = std::thread::scope(|scope| {
        // No more workers than cores (more would only compete); one that cannot start (a
        // process limit) leaves its share to the others.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers: Vec<_> = (1..threads.clamp(1, cores))
            .filter_map(|_| {
                let (isa, queue) = (isa.clone(), &queue);
                std::thread::Builder::new().spawn_scoped(scope, move || work(queue, &*isa, checked)).ok()
            })
            .collect();
        let started = std::time::Instant::now();
        let planned = plan(sender);
        let planning = started.elapsed();
        let mut done = work(&queue, &*isa, checked);
        if std::env::var_os("CNNC_TIME_COMPILE").is_some() {
            eprintln!("planning {planning:?}, then compiling and packing {:?}", started.elapsed() - planning);
        }
        for w in workers {
            let d = w.join().expect("compiler thread panicked");
            done.compiled.extend(d.compiled);
            done.packed.extend(d.packed);
        }
        (planned, done)
    });
    let planned = planned?;
    let mut compiled = done.compiled;
    compiled.sort_by_key(|(i, _)| *i);
    if compiled.iter().enumerate().any(|(k, (i, _))| *i != k) {
        return Err(JitError::Unsupported("internal error: a kernel was compiled twice or not at all".into()));
    }
    let code = link(&isa, compiled.into_iter().map(|(_, c)| c))?;
    Ok((planned, code, done.packed))
}

/// Compiles `kernels` using up to `threads` threads and returns their entry points, in order.
#[cfg(test)]
pub(crate) fn compile_all(kernels: &[Kernel], threads: usize, checked: bool) -> Result<CodeModule, JitError> {
    let send = |jobs: Jobs| {
        for (i, k) in kernels.iter().enumerate() {
            jobs.send(Job::Compile(i, Arc::new(k.clone()))).expect("the queue is open");
        }
        Ok(())
    };
    Ok(plan_and_compile(threads, checked, send)?.1)
}

/// Defines the compiled kernels (in index order) in one module and finalises it.
fn link(
    isa: &Arc<dyn TargetIsa>,
    compiled: impl Iterator<Item = Result<Compiled, JitError>>,
) -> Result<CodeModule, JitError> {
    let builder = JITBuilder::with_isa(isa.clone(), cranelift_module::default_libcall_names());
    let mut module = JITModule::new(builder);
    let sig = kernel_signature(isa.default_call_conv());
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for (i, r) in compiled.enumerate() {
        let c = r?;
        names.push((c.name.clone(), c.bytes.len()));
        let error =
            |e: cranelift_module::ModuleError| JitError::Codegen { kernel: c.name.clone(), message: e.to_string() };
        let id = module.declare_function(&format!("k{i}"), Linkage::Local, &sig).map_err(error)?;
        module.define_function_bytes(id, c.alignment, &c.bytes, &[]).map_err(error)?;
        ids.push(id);
    }
    module.finalize_definitions().map_err(|e| JitError::Codegen { kernel: "module".into(), message: e.to_string() })?;
    let functions = ids
        .into_iter()
        .map(|id| {
            let p = module.get_finalized_function(id);
            // SAFETY: the pointer is the entry of a function compiled with `kernel_signature`.
            unsafe { std::mem::transmute::<*const u8, KernelFn>(p) }
        })
        .collect::<Vec<KernelFn>>();
    if std::env::var_os("CNNC_PERF_MAP").is_some() {
        write_perf_map(&functions, &names);
    }
    Ok(CodeModule { _module: module, functions })
}

/// Development aid (`CNNC_PERF_MAP=1`): names the kernels' code for `perf report` in
/// `/tmp/perf-<pid>.map`, the file perf reads for code it finds no symbols for. Best effort:
/// a file that cannot be written is skipped.
fn write_perf_map(functions: &[KernelFn], names: &[(String, usize)]) {
    use std::io::Write;
    let path = format!("/tmp/perf-{}.map", std::process::id());
    let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) else { return };
    for (f, (name, len)) in functions.iter().zip(names) {
        let _ = writeln!(file, "{:x} {len:x} {name}", *f as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::{compile_one, host_isa};
    use crate::backend::jit::ir::*;

    /// Broadcasts of `in[0]` and `in[1]`, each feeding two FMAs; as `Stmt::Broadcast`s with
    /// `broadcast`, else as `Set`s of splats.
    fn two_by_two(broadcasts: bool) -> Kernel {
        let mut vars = Vars::default();
        let t = vars.new_var("t");
        let (x, w0, w1) = (vars.new_var("x"), vars.new_var("w"), vars.new_var("w"));
        let accs = [vars.new_var("acc"), vars.new_var("acc")];
        let mut body: Vec<Stmt> = (accs.iter().enumerate())
            .map(|(i, &a)| set(a, Ty::F32x4, load(Ty::F32x4, 2, Index::Flat((4 * i as i64).into()))))
            .collect();
        body.push(set(w0, Ty::F32x4, load(Ty::F32x4, 1, Index::Flat(0.into()))));
        body.push(set(w1, Ty::F32x4, load(Ty::F32x4, 1, Index::Flat(4.into()))));
        for i in 0..2 {
            let at = Index::Flat(i.into());
            body.push(if broadcasts {
                broadcast(x, 0, at, &accs)
            } else {
                set(x, Ty::F32x4, splat(load(Ty::F32, 0, at)))
            });
            for (&a, &w) in accs.iter().zip(&[w0, w1]) {
                body.push(set(a, Ty::F32x4, fma(fv(x), fv(w), fv(a))));
            }
        }
        for (i, &a) in accs.iter().enumerate() {
            body.push(store(Ty::F32x4, 2, Index::Flat((4 * i as i64).into()), fv(a)));
        }
        let mut k = Kernel {
            name: "two_by_two".into(),
            buffers: vec![
                Buffer::new("in", Layout::Flat { len: 2 }, false),
                Buffer::new("w", Layout::Flat { len: 8 }, false),
                Buffer::new("out", Layout::Flat { len: 8 }, true),
            ],
            ..Kernel::default()
        };
        k.push_tasks(t, 1, body);
        k.var_names = vars.names;
        k
    }

    /// `vbroadcastss xmm, m32` and `vbroadcastss xmm, xmm` (VEX.128.66.0F38.W0 18 /r) in `code`.
    fn broadcasts_by_operand(code: &[u8]) -> (usize, usize) {
        let (mut memory, mut register) = (0, 0);
        for w in code.windows(5) {
            if w[0] == 0xC4 && w[1] & 0x1F == 0x02 && w[2] == 0x79 && w[3] == 0x18 {
                if w[4] >> 6 == 3 { register += 1 } else { memory += 1 }
            }
        }
        (memory, register)
    }

    /// A `Stmt::Broadcast` used by two FMAs is one `vbroadcastss` from memory; the same splat
    /// as a `Set` is a scalar load and a register `vbroadcastss`.
    #[test]
    fn a_broadcast_statement_loads_with_vbroadcastss_from_memory() {
        if !std::arch::is_x86_feature_detected!("avx2") || !std::arch::is_x86_feature_detected!("fma") {
            return; // the register form needs AVX2; the kernels need FMA
        }
        let isa = host_isa().unwrap();
        let folded = compile_one(&*isa, &two_by_two(true), false).unwrap();
        assert_eq!(broadcasts_by_operand(&folded.bytes), (2, 0));
        let plain = compile_one(&*isa, &two_by_two(false), false).unwrap();
        assert_eq!(broadcasts_by_operand(&plain.bytes), (0, 2));
    }
}
