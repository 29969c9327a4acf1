//! The `cnnc` command line: clap definitions and dispatch. Each command lives in `cli/`.
//! Exit codes: 0 success, 1 errors in the model or its inputs, 2 usage errors (and, for
//! `check`, I/O errors).

mod cli;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cli::{ColorChoice, UsageError, report_run};
use cnnc::{Backend, parse_input_dims};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cnnc", version, about = "A compiler for a compact language that describes convolutional networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The resource limits of commands that allocate (README, "Limits").
#[derive(Args, Clone, Copy)]
struct LimitArgs {
    /// Memory for weights, activations and JIT code, such as 16G or 512M (default: 8 GiB, or
    /// three quarters of the machine's memory if less).
    #[arg(long, value_name = "SIZE", value_parser = cnnc::parse_size)]
    max_memory: Option<u64>,
    /// Refuse images with more pixels than this before decoding them (default: 50000000).
    #[arg(long, value_name = "PIXELS", value_parser = clap::value_parser!(u64).range(1..))]
    max_pixels: Option<u64>,
}

impl LimitArgs {
    fn limits(self) -> cnnc::Limits {
        let default = cnnc::Limits::default();
        cnnc::Limits {
            max_memory_bytes: self.max_memory.unwrap_or(default.max_memory_bytes),
            max_pixels: self.max_pixels.unwrap_or(default.max_pixels),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum DumpPass {
    /// Scalar loop nests per fused layer, over logical coordinates.
    Lowered,
    /// After scheduling: register tiles, vectors, unrolled reductions, parallel tasks.
    Scheduled,
    /// Cranelift IR of every kernel.
    Clif,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    /// Cranelift-compiled loop nests (the default).
    Jit,
    /// The ndarray reference interpreter.
    Interp,
}

#[derive(Subcommand)]
enum Command {
    /// Parse, infer every shape, lint, and print per-layer costs.
    Check {
        /// The .cnn file.
        model: PathBuf,
        /// Check at this input size instead of the declared one (CxHxW).
        #[arg(long, value_name = "CxHxW")]
        input: Option<String>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Treat warnings as errors (exit 1).
        #[arg(long)]
        deny_warnings: bool,
        #[arg(long, value_enum, default_value = "auto")]
        color: ColorChoice,
    },
    /// Run the network on images (PNG, JPEG) or .npy tensors and print the top classes.
    Run {
        model: PathBuf,
        /// Images or float32 .npy tensors ([C,H,W] or [N,C,H,W]); together they form one batch.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Weights by canonical name (default: <model>.safetensors beside the .cnn file).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// How many classes to print per input.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Class names, one per line (default: the `labels` file named in the .cnn header).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Print a JSON list with one object per input.
        #[arg(long)]
        json: bool,
        /// Images per batch (inputs are loaded and run this many at a time).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
        batch: u64,
        #[arg(long, value_enum, default_value = "jit")]
        backend: BackendArg,
        #[arg(long, value_enum, default_value = "auto")]
        color: ColorChoice,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Time the forward pass: per-layer ms and GFLOP/s, compile time, median and minimum.
    Bench {
        model: PathBuf,
        /// Weights (default: <model>.safetensors beside the .cnn file, else seeded random ones).
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        iters: u64,
        /// Images per forward pass: the median and throughput are over whole batches.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
        batch: u64,
        /// Threads for the JIT (default: all hardware threads; at most 256).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=cnnc::MAX_THREADS as u64))]
        threads: Option<u64>,
        #[arg(long, value_enum, default_value = "jit")]
        backend: BackendArg,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Print the JIT's IR after a pass: the lowered loop nests, the scheduled ones, or Cranelift IR.
    Compile {
        model: PathBuf,
        #[arg(long, value_enum, default_value = "scheduled")]
        dump: DumpPass,
        #[arg(long)]
        weights: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Print the file in canonical layout (or check or rewrite it in place).
    Fmt {
        model: PathBuf,
        /// Exit 1 if the file is not already formatted; print nothing else.
        #[arg(long, conflicts_with = "write")]
        check: bool,
        /// Rewrite the file in place.
        #[arg(long)]
        write: bool,
    },
    /// Picture a convolution's filters (the first one by default) and find dead filters.
    Kernels {
        model: PathBuf,
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
        /// The convolution to show (its canonical name).
        #[arg(long)]
        layer: Option<String>,
        /// Replace the output if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Compare networks side by side: params, MACs, memory, depth, receptive field.
    Compare {
        /// Two or more .cnn files; ratios are relative to the first.
        #[arg(required = true, num_args = 2..)]
        models: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Draw the network: SVG (written natively) or Graphviz DOT, by the output's extension.
    Graph {
        model: PathBuf,
        /// model.svg or model.dot
        #[arg(short, long)]
        output: PathBuf,
        /// Show each block instance as a single node.
        #[arg(long)]
        collapse: bool,
        /// Draw the network at this input size (CxHxW).
        #[arg(long, value_name = "CxHxW")]
        input: Option<String>,
        /// Replace the output if it exists.
        #[arg(long)]
        force: bool,
    },
    /// List every weight tensor: canonical name, shape and kind, in file order.
    Params {
        model: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Explain a diagnostic code, as `rustc --explain` does (`cnnc explain E0105`).
    Explain {
        /// The code, for example E0105.
        code: String,
    },
    /// Write a seeded He initialisation of the network's weights.
    Init {
        model: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Replace the output if it exists (never a .cnn file).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

fn main() -> ExitCode {
    // Behave like other Unix tools when the reader of stdout goes away (`cnnc params | head`):
    // end quietly instead of panicking on a failed print.
    // A file-size limit (`ulimit -f`) should fail a write with an error cnnc reports and cleans
    // up after, not kill the process half-way.
    // SAFETY: setting signal dispositions at startup, before any threads exist.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { model, input, json, deny_warnings, color } => {
            cli::check::cmd_check(&model, input, json, deny_warnings, color)
        }
        Command::Run { model, inputs, weights, top, labels, json, batch, backend, color, limits } => {
            let backend = match backend {
                BackendArg::Interp => Backend::Interp,
                BackendArg::Jit => Backend::Jit { threads: cnnc::default_threads() },
            };
            let limits = limits.limits();
            let options = cli::run::RunOptions { top, labels, json, batch: batch as usize, backend, limits };
            Ok(report_run(cli::run::cmd_run(&model, &inputs, weights.as_deref(), &options), color))
        }
        Command::Bench { model, weights, iters, batch, threads, backend, json, limits } => {
            let backend = match backend {
                BackendArg::Interp => Backend::Interp,
                BackendArg::Jit => Backend::Jit { threads: threads.map_or_else(cnnc::default_threads, |t| t as usize) },
            };
            let options = cnnc::BenchOptions { iters: iters as usize, batch: batch as usize };
            let run = cli::bench::cmd_bench(&model, weights.as_deref(), options, backend, json, &limits.limits());
            Ok(report_run(run, ColorChoice::Auto))
        }
        Command::Compile { model, dump, weights, limits } => Ok(report_run(
            cli::compile::cmd_compile(&model, dump, weights.as_deref(), &limits.limits()),
            ColorChoice::Auto,
        )),
        Command::Fmt { model, check, write } => cli::fmt::cmd_fmt(&model, check, write),
        Command::Kernels { model, weights, output, layer, force, limits } => Ok(report_run(
            cli::kernels::cmd_kernels(&model, weights.as_deref(), &output, layer.as_deref(), force, &limits.limits()),
            ColorChoice::Auto,
        )),
        Command::Compare { models, json } => {
            Ok(report_run(cli::compare::cmd_compare(&models, json), ColorChoice::Auto))
        }
        Command::Graph { model, output, collapse, input, force } => {
            match input.map(|s| parse_input_dims(&s)).transpose() {
                Ok(input) => {
                    Ok(report_run(cli::graph::cmd_graph(&model, &output, collapse, input, force), ColorChoice::Auto))
                }
                Err(e) => Err(UsageError(e)),
            }
        }
        Command::Params { model, json } => Ok(report_run(cli::params::cmd_params(&model, json), ColorChoice::Auto)),
        Command::Explain { code } => cli::explain::cmd_explain(&code),
        Command::Init { model, output, seed, force, limits } => {
            Ok(report_run(cli::params::cmd_init(&model, &output, seed, force, &limits.limits()), ColorChoice::Auto))
        }
    };
    match result {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}
