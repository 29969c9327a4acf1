//! The `cnnc` command line. Exit codes: 0 success, 1 errors in the model or its inputs, 2 usage
//! errors (and, for `check`, I/O errors).

use clap::{Parser, Subcommand, ValueEnum};
use cnnc::check::{check_source, parse_input_dims};
use cnnc::diag::Diagnostic;
use cnnc::run::{Backend, Model, RunError, WeightsSource};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cnnc", version, about = "A compiler for a compact language that describes convolutional networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, ValueEnum)]
enum DumpPass {
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
    },
    /// Time the forward pass: per-layer ms and GFLOP/s, compile time, median and minimum.
    Bench {
        model: PathBuf,
        /// Weights (default: <model>.safetensors beside the .cnn file, else seeded random ones).
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Threads for the JIT (default: all hardware threads).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, value_enum, default_value = "jit")]
        backend: BackendArg,
        #[arg(long)]
        json: bool,
    },
    /// Print the JIT's IR after a pass: the lowered loop nests, the scheduled ones, or Cranelift IR.
    Compile {
        model: PathBuf,
        #[arg(long, value_enum, default_value = "scheduled")]
        dump: DumpPass,
        #[arg(long)]
        weights: Option<PathBuf>,
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
    },
    /// List every weight tensor: canonical name, shape and kind, in file order.
    Params {
        model: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Write a seeded He initialisation of the network's weights.
    Init {
        model: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// A failure that is not about the model: a missing file, a bad flag value.
struct UsageError(String);

fn main() -> ExitCode {
    // Behave like other Unix tools when the reader of stdout goes away (`cnnc params | head`):
    // end quietly instead of panicking on a failed print.
    // SAFETY: setting a signal disposition to SIG_DFL at startup, before any threads exist.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { model, input, json, deny_warnings, color } => {
            cmd_check(&model, input, json, deny_warnings, color)
        }
        Command::Run { model, inputs, weights, top, labels, json, batch, backend, color } => {
            let backend = match backend {
                BackendArg::Interp => Backend::Interp,
                BackendArg::Jit => Backend::Jit { threads: cnnc::run::default_threads() },
            };
            let options = RunOptions { top, labels, json, batch: batch as usize, backend };
            Ok(report_run(cmd_run(&model, &inputs, weights.as_deref(), &options), color))
        }
        Command::Bench { model, weights, iters, threads, backend, json } => {
            let backend = match backend {
                BackendArg::Interp => Backend::Interp,
                BackendArg::Jit => Backend::Jit { threads: threads.unwrap_or_else(cnnc::run::default_threads) },
            };
            Ok(report_run(cmd_bench(&model, weights.as_deref(), iters, backend, json), ColorChoice::Auto))
        }
        Command::Compile { model, dump, weights } => {
            Ok(report_run(cmd_compile(&model, dump, weights.as_deref()), ColorChoice::Auto))
        }
        Command::Fmt { model, check, write } => cmd_fmt(&model, check, write),
        Command::Kernels { model, weights, output, layer } => {
            Ok(report_run(cmd_kernels(&model, weights.as_deref(), &output, layer.as_deref()), ColorChoice::Auto))
        }
        Command::Compare { models, json } => Ok(report_run(cmd_compare(&models, json), ColorChoice::Auto)),
        Command::Graph { model, output, collapse, input } => match input.map(|s| parse_input_dims(&s)).transpose() {
            Ok(input) => Ok(report_run(cmd_graph(&model, &output, collapse, input), ColorChoice::Auto)),
            Err(e) => Err(UsageError(e)),
        },
        Command::Params { model, json } => Ok(report_run(cmd_params(&model, json), ColorChoice::Auto)),
        Command::Init { model, output, seed } => Ok(report_run(cmd_init(&model, &output, seed), ColorChoice::Auto)),
    };
    match result {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn read_source(path: &Path) -> Result<Result<String, Diagnostic>, UsageError> {
    let bytes = std::fs::read(path).map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    Ok(String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Diagnostic::error("E0001", cnnc::ast::Span::new(at, at), format!("the file is not valid UTF-8 (byte {at})"))
    }))
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

fn print_diagnostics(path: &Path, source: &str, diagnostics: &[Diagnostic], color: bool) {
    let shown = path.display().to_string();
    for d in diagnostics {
        eprint!("{}", d.render(&shown, source, color));
    }
}

fn cmd_check(
    model: &Path,
    input: Option<String>,
    json: bool,
    deny_warnings: bool,
    color: ColorChoice,
) -> Result<ExitCode, UsageError> {
    let input = input.map(|s| parse_input_dims(&s)).transpose().map_err(UsageError)?;
    let display_name = model.display().to_string();
    let source = match read_source(model)? {
        Ok(s) => s,
        Err(d) => {
            eprint!("{}", d.render(&display_name, "", use_color(color)));
            return Ok(ExitCode::from(1));
        }
    };
    let stem = model.file_stem().map_or("network".into(), |s| s.to_string_lossy().into_owned());
    let report = check_source(&source, &stem, input);
    let failed = report.errors() > 0 || (deny_warnings && report.warnings() > 0);
    if json {
        let value = cnnc::report::to_json(&report, &source);
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        print_diagnostics(model, &source, &report.diagnostics, use_color(color));
        if let Some(checked) = &report.checked.as_ref().filter(|_| report.errors() == 0) {
            print!("{}", cnnc::report::render_table(checked));
        }
        let (e, w) = (report.errors(), report.warnings());
        if e > 0 || w > 0 {
            let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            eprintln!("{}: {}, {}", display_name, plural(e, "error"), plural(w, "warning"));
        }
    }
    Ok(ExitCode::from(u8::from(failed)))
}

/// Prints a run-time error (model diagnostics rendered against the source) and maps it to exit 1.
fn report_run(result: Result<(), RunError>, color: ColorChoice) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Model { path, source_text, diagnostics }) => {
            print_diagnostics(&path, &source_text, &diagnostics, use_color(color));
            eprintln!("error: {} has errors; see `cnnc check`", path.display());
            ExitCode::from(1)
        }
        Err(RunError::WeightShape { path, source_text, diagnostic, .. }) => {
            print_diagnostics(&path, &source_text, &[*diagnostic], use_color(color));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn load_model(path: &Path, input: Option<cnnc::graph::Input>) -> Result<Model, RunError> {
    let (model, warnings) = cnnc::run::load_model(path, input)?;
    if !warnings.is_empty() {
        print_diagnostics(path, &model.source, &warnings, use_color(ColorChoice::Auto));
    }
    Ok(model)
}

struct RunOptions {
    top: usize,
    labels: Option<PathBuf>,
    json: bool,
    batch: usize,
    backend: Backend,
}

fn cmd_run(model_path: &Path, inputs: &[PathBuf], weights: Option<&Path>, o: &RunOptions) -> Result<(), RunError> {
    // A model declared at one size can run .npy inputs of another when its weights allow it.
    let declared = load_model(model_path, None)?;
    let override_input = cnnc::run::npy_input_override(inputs, declared.network().input);
    let model = match override_input {
        Some(input) => load_model(model_path, Some(input))?,
        None => declared,
    };
    let (weights, source, warnings) = cnnc::run::resolve_weights(&model, weights)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    if let WeightsSource::Random { seed } = source {
        eprintln!(
            "warning: no weights given and {} does not exist: using a random He initialisation (seed {seed}); the predictions are meaningless",
            model_path.with_extension("safetensors").display()
        );
    }
    let outputs = model.checked.shapes.last().and_then(|s| s.elements()).unwrap_or(0) as usize;
    let label_path = o
        .labels
        .clone()
        .or_else(|| model.network().labels.as_ref().map(|l| model_path.parent().unwrap_or(Path::new(".")).join(l)));
    let labels = match &label_path {
        Some(p) => {
            let l = cnnc::run::read_labels(p, outputs)?;
            if l.is_none() {
                eprintln!(
                    "warning: {} does not hold one label per output ({outputs}); showing class indices",
                    p.display()
                );
            }
            l
        }
        None => None,
    };
    let label_of = |k: usize| labels.as_ref().map(|l| l[k].clone());
    let started = std::time::Instant::now();
    let mut runner = cnnc::run::Runner::new(&model, weights, o.backend)?;
    // A progress bar only for a person watching: stdout and stderr on a terminal, no --json.
    let interactive = !o.json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let bar = if interactive && inputs.len() > 1 {
        let bar = indicatif::ProgressBar::new(inputs.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut json_items = Vec::new();
    let mut images = 0usize;
    for chunk in inputs.chunks(o.batch) {
        let predictions = runner.predict(chunk, o.top)?;
        images += predictions.len();
        for p in &predictions {
            if o.json {
                json_items.push(serde_json::json!({
                    "input": p.input,
                    "logits": p.logits,
                    "probs": p.probs,
                    "top": p.top.iter().map(|&(k, prob)| serde_json::json!({"index": k, "label": label_of(k), "prob": prob})).collect::<Vec<_>>(),
                }));
            } else {
                let mut text = format!("{}\n", p.input);
                for (rank, &(k, prob)) in p.top.iter().enumerate() {
                    let label = label_of(k).unwrap_or_default();
                    text += &format!("  {:>2}. {k:>5}  {:<32} {:>7.3}%\n", rank + 1, label, prob * 100.0);
                }
                bar.suspend(|| print!("{text}"));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if o.json {
        println!("{}", serde_json::to_string_pretty(&json_items).unwrap_or_default());
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{images} image{} in {seconds:.2} s ({:.1} images/s, {})",
        if images == 1 { "" } else { "s" },
        images as f64 / seconds.max(1e-9),
        match o.backend {
            Backend::Interp => "interpreter".to_string(),
            Backend::Jit { threads } =>
                format!("jit, {threads} thread{}, compile included", if threads == 1 { "" } else { "s" }),
        }
    );
    Ok(())
}

fn cmd_params(model_path: &Path, json: bool) -> Result<(), RunError> {
    let model = load_model(model_path, None)?;
    let specs = model.params();
    if json {
        // One tensor per line: easy to read and to diff.
        let lines: Vec<String> =
            specs.iter().map(|s| format!("  {}", serde_json::to_string(s).unwrap_or_default())).collect();
        println!("[\n{}\n]", lines.join(",\n"));
        return Ok(());
    }
    let width = specs.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
    println!("{:<width$}  {:<20}  {:<12}  {:>12}", "name", "shape", "kind", "values");
    for s in &specs {
        let shape = s.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        println!(
            "{:<width$}  {:<20}  {:<12}  {:>12}",
            s.name,
            shape,
            s.kind.suffix(),
            cnnc::report::thousands(s.elements() as u64)
        );
    }
    let total: usize = specs.iter().map(|s| s.elements()).sum();
    println!("{} tensors, {} values", specs.len(), cnnc::report::thousands(total as u64));
    Ok(())
}

fn cmd_init(model_path: &Path, output: &Path, seed: u64) -> Result<(), RunError> {
    let model = load_model(model_path, None)?;
    let specs = model.params();
    let bytes = specs.iter().map(|s| s.elements() as u64 * 4).sum::<u64>();
    if bytes > cnnc::run::DEFAULT_MEMORY_LIMIT_BYTES {
        return Err(RunError::Weights(format!(
            "{} needs {} of weights, more than the {} limit",
            model_path.display(),
            cnnc::report::human_bytes(bytes),
            cnnc::report::human_bytes(cnnc::run::DEFAULT_MEMORY_LIMIT_BYTES)
        )));
    }
    let weights = cnnc::weights::random_weights(&specs, seed);
    // One key: safetensors writes metadata in hash-map order, and the same seed must give the
    // same file byte for byte.
    let metadata = HashMap::from([(
        "generator".to_string(),
        format!("cnnc init --seed {seed} for network {} (He normal, fan-in)", model.network().name),
    )]);
    cnnc::weights::save_safetensors(output, &specs, &weights, metadata)
        .map_err(|e| RunError::Weights(e.to_string()))?;
    eprintln!("wrote {} tensors ({}) to {}", specs.len(), cnnc::report::human_bytes(bytes), output.display());
    Ok(())
}

fn cmd_bench(
    model_path: &Path,
    weights: Option<&Path>,
    iters: usize,
    backend: Backend,
    json: bool,
) -> Result<(), RunError> {
    let model = load_model(model_path, None)?;
    let (weights, source, _) = cnnc::run::resolve_weights(&model, weights)?;
    if let WeightsSource::Random { seed } = source {
        eprintln!("note: timing with random He-initialised weights (seed {seed})");
    }
    let report = cnnc::bench::bench(&model, weights, iters, backend)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json()).unwrap_or_default());
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

fn cmd_compile(model_path: &Path, pass: DumpPass, weights: Option<&Path>) -> Result<(), RunError> {
    let model = load_model(model_path, None)?;
    let (weights, _, _) = cnnc::run::resolve_weights(&model, weights)?;
    let pass = match pass {
        DumpPass::Lowered => "lowered",
        DumpPass::Scheduled => "scheduled",
        DumpPass::Clif => "clif",
    };
    print!("{}", cnnc::jit::dump(model.network(), &model.checked.shapes, weights, pass)?);
    Ok(())
}

fn cmd_graph(
    model_path: &Path,
    output: &Path,
    collapse: bool,
    input: Option<cnnc::graph::Input>,
) -> Result<(), RunError> {
    let model = load_model(model_path, input)?;
    let text = match output.extension().and_then(|e| e.to_str()) {
        Some("svg") => cnnc::draw::svg(&cnnc::draw::layout(&model.checked, collapse)),
        Some("dot") => cnnc::draw::dot(&model.checked, collapse),
        _ => return Err(RunError::Weights(format!("{}: the output must end in .svg or .dot", output.display()))),
    };
    std::fs::write(output, text).map_err(|source| RunError::Io { path: output.to_path_buf(), source })?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

fn cmd_compare(models: &[PathBuf], json: bool) -> Result<(), RunError> {
    let mut summaries = Vec::new();
    for path in models {
        let model = load_model(path, None)?;
        summaries.push(cnnc::compare::summarize(&model.checked, &path.display().to_string()));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&cnnc::compare::to_json(&summaries)).unwrap_or_default());
    } else {
        print!("{}", cnnc::compare::render(&summaries));
    }
    Ok(())
}

fn cmd_kernels(model_path: &Path, weights: Option<&Path>, output: &Path, layer: Option<&str>) -> Result<(), RunError> {
    let model = load_model(model_path, None)?;
    let (weights, source, _) = cnnc::run::resolve_weights(&model, weights)?;
    if let WeightsSource::Random { seed } = source {
        eprintln!("warning: no weights found: showing a random He initialisation (seed {seed})");
    }
    let net = model.network();
    let id = cnnc::kernels::find_conv(net, layer).map_err(RunError::Weights)?;
    let name = net.nodes[id].name.clone();
    let spec = model.params().into_iter().find(|p| p.node == id).expect("a conv has a weight tensor");
    let shape = [spec.shape[0], spec.shape[1], spec.shape[2], spec.shape[3]];
    let filters = cnnc::kernels::Filters { layer: name.clone(), shape, data: weights.get(&spec.name) };
    let dead = cnnc::kernels::dead_filters(&filters);
    let picture = cnnc::kernels::render(&filters, &dead);
    picture.image.save(output).map_err(|e| RunError::Weights(format!("cannot write {}: {e}", output.display())))?;
    println!(
        "{name}: {} filters of {}x{}x{}; wrote {} ({}x{} pixels)",
        shape[0],
        shape[1],
        shape[2],
        shape[3],
        output.display(),
        picture.image.width(),
        picture.image.height()
    );
    if picture.shown_filters < shape[0] || (shape[1] != 3 && picture.shown_channels < shape[1]) {
        println!(
            "(showing the first {} filters and {} channels of each)",
            picture.shown_filters, picture.shown_channels
        );
    }
    match dead.len() {
        0 => println!("no dead filters"),
        n => println!(
            "{n} dead filter{} (norm below {} of the median): {}",
            if n == 1 { "" } else { "s" },
            cnnc::kernels::DEAD_FRACTION,
            dead.iter().map(|o| format!("{name}[{o}]")).collect::<Vec<_>>().join(", ")
        ),
    }
    Ok(())
}

fn cmd_fmt(model: &Path, check: bool, write: bool) -> Result<ExitCode, UsageError> {
    let shown = model.display().to_string();
    let source = match read_source(model)? {
        Ok(s) => s,
        Err(d) => {
            eprint!("{}", d.render(&shown, "", use_color(ColorChoice::Auto)));
            return Ok(ExitCode::from(1));
        }
    };
    let formatted = match cnnc::fmt::format_source(&source) {
        Ok(f) => f,
        Err(diags) => {
            print_diagnostics(model, &source, &diags, use_color(ColorChoice::Auto));
            return Ok(ExitCode::from(1));
        }
    };
    if check {
        if formatted != source {
            eprintln!("{shown} is not formatted (run `cnnc fmt --write {shown}`)");
            return Ok(ExitCode::from(1));
        }
    } else if write {
        if formatted != source {
            std::fs::write(model, &formatted).map_err(|e| UsageError(format!("cannot write {shown}: {e}")))?;
        }
    } else {
        print!("{formatted}");
    }
    Ok(ExitCode::SUCCESS)
}
