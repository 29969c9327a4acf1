//! The `cnnc run` pipeline as a library: check the network at the inputs' size, load or make
//! weights, load the inputs as one batch, run a backend, and turn the output into predictions.

use crate::analysis::check::{Checked, check_source};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::analysis::params::{ParamSpec, param_specs};
use crate::backend::interp::forward;
use crate::backend::jit::{JitError, JitModel, JitOptions};
use crate::front::parse::MAX_SOURCE_BYTES;
use crate::io::budget::{Limits, Usage, check_budget};
use crate::io::files::{WriteError, read_limited};
use crate::io::input::{InputError, load_batch};
use crate::io::weights::{Weights, WeightsError, load_safetensors, random_weights};
use crate::ir::graph::{Input, Network};
use crate::ir::tensor::Tensor;
use crate::ops::Op;
use crate::report::table::human_bytes;
use ndarray::Array2;
use std::path::{Path, PathBuf};

/// Which backend runs the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The reference interpreter.
    Interp,
    /// The Cranelift JIT.
    Jit {
        /// Worker threads.
        threads: usize,
    },
}

/// The machine's hardware threads (the default for the JIT).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why a command that runs (or loads) a model failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The `.cnn` file has errors.
    #[error("{} has errors", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// Its text, to render the diagnostics against.
        source_text: String,
        /// Its diagnostics.
        diagnostics: Vec<Diagnostic>,
    },
    /// The weights file is missing tensors, corrupt, or of an unreadable dtype.
    #[error("{0}")]
    Weights(String),
    /// A weight tensor's shape is not the layer's: reported at the layer's source line.
    #[error("{}: {message}", path.display())]
    WeightShape {
        /// The model file.
        path: PathBuf,
        /// Its text.
        source_text: String,
        /// Every mismatch, a line each.
        message: String,
        /// The diagnostic at the first mismatched layer.
        diagnostic: Box<Diagnostic>,
    },
    /// An input cannot be used.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Running would need more memory than the limit (E0301).
    #[error("{0}")]
    MemoryLimit(String),
    /// A file is larger than cnnc reads, or never ends (a device or pipe) (E0303).
    #[error("{} is larger than {} (or is a device that never ends); cnnc does not read it", path.display(), human_bytes(*limit))]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// How much cnnc reads of such a file.
        limit: u64,
    },
    /// An output cannot be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The JIT failed.
    #[error("jit: {0}")]
    Jit(#[from] JitError),
}

impl RunError {
    /// The diagnostic code of a limit that was hit, if that is what this is.
    pub fn code(&self) -> Option<Code> {
        match self {
            RunError::MemoryLimit(_) => Some(Code::MemoryLimit),
            RunError::FileTooLarge { .. } => Some(Code::FileTooLarge),
            RunError::Input(InputError::TooManyPixels { .. }) => Some(Code::ImageTooLarge),
            RunError::Model { .. }
            | RunError::Weights(_)
            | RunError::WeightShape { .. }
            | RunError::Input(_)
            | RunError::Io { .. }
            | RunError::Write(_)
            | RunError::Jit(_) => None,
        }
    }
}

/// A checked network ready to run: the source it came from and the `Checked` result.
pub struct Model {
    /// The `.cnn` file.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// The network, its shapes and costs.
    pub checked: Checked,
}

impl Model {
    /// The layer graph.
    pub fn network(&self) -> &Network {
        &self.checked.network
    }

    /// The weight tensors it needs.
    pub fn params(&self) -> Vec<ParamSpec> {
        param_specs(&self.checked.network, &self.checked.shapes)
    }
}

/// Reads and checks a `.cnn` file, at `input` if given. Errors carry the rendered-ready
/// diagnostics; warnings are returned alongside the model.
pub fn load_model(path: &Path, input: Option<Input>) -> Result<(Model, Vec<Diagnostic>), RunError> {
    let bytes = read_limited(path, MAX_SOURCE_BYTES as u64)
        .map_err(|source| RunError::Io { path: path.to_path_buf(), source })?
        .ok_or_else(|| RunError::FileTooLarge { path: path.to_path_buf(), limit: MAX_SOURCE_BYTES as u64 })?;
    let source = String::from_utf8_lossy(&bytes).into_owned();
    let stem = path.file_stem().map_or("network".into(), |s| s.to_string_lossy().into_owned());
    let report = check_source(&source, &stem, input);
    let errors = report.errors();
    match report.checked {
        Some(checked) if errors == 0 => Ok((Model { path: path.to_path_buf(), source, checked }, report.diagnostics)),
        _ => Err(RunError::Model { path: path.to_path_buf(), source_text: source, diagnostics: report.diagnostics }),
    }
}

/// Where the weights come from, for the message printed to the user.
pub enum WeightsSource {
    /// A safetensors file.
    File(PathBuf),
    /// A seeded He initialisation (no file given or found).
    Random {
        /// The seed.
        seed: u64,
    },
}

/// Loads `--weights`, else `<model>.safetensors` beside the `.cnn` file, else seeded He
/// initialisation, after checking that running the model as `usage` fits in `limits` (the file
/// read into memory included). Returns the weights, their source and warnings (unused tensors,
/// non-finite values).
pub fn resolve_weights(
    model: &Model,
    explicit: Option<&Path>,
    usage: Usage,
    limits: &Limits,
) -> Result<(Weights, WeightsSource, Vec<String>), RunError> {
    let beside = model.path.with_extension("safetensors");
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if beside.exists() => beside,
        None => {
            check_budget(&model.checked, usage, 0, limits).map_err(RunError::MemoryLimit)?;
            return Ok((random_weights(&model.params(), 0), WeightsSource::Random { seed: 0 }, Vec::new()));
        }
    };
    let meta = std::fs::metadata(&path).map_err(|source| RunError::Io { path: path.clone(), source })?;
    if !meta.is_file() {
        return Err(RunError::Weights(format!(
            "{} is not a regular file; weights are read from files",
            path.display()
        )));
    }
    check_budget(&model.checked, usage, meta.len(), limits).map_err(RunError::MemoryLimit)?;
    let specs = model.params();
    match load_safetensors(&path, &specs) {
        Ok(loaded) => {
            let mut warnings = Vec::new();
            if !loaded.unused.is_empty() {
                warnings.push(format!(
                    "{}: {} tensor(s) are not used by {}: {}",
                    path.display(),
                    loaded.unused.len(),
                    model.network().name,
                    loaded.unused.iter().take(8).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ));
            }
            for (name, count) in &loaded.non_finite {
                warnings.push(format!(
                    "{}: tensor `{name}` holds {count} NaN or infinite value(s); the outputs will be too",
                    path.display()
                ));
            }
            Ok((loaded.weights, WeightsSource::File(path), warnings))
        }
        Err(errors) => Err(weights_error(model, errors)),
    }
}

fn weights_error(model: &Model, errors: Vec<WeightsError>) -> RunError {
    // A shape mismatch points at the layer's line in the .cnn file; report the first such.
    if let Some(WeightsError::Shape { node, .. }) = errors.iter().find(|e| matches!(e, WeightsError::Shape { .. })) {
        let n = &model.network().nodes[*node];
        let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let mut d = Diagnostic::error(Code::WeightShape, n.origin.span, all[0].clone())
            .with_label(format!("{} is defined here", n.name));
        for extra in all.iter().skip(1) {
            d = d.with_note(extra.clone());
        }
        d = d.with_help("are these weights for another network or another input size?");
        let d = crate::analysis::infer::at_node(d, n);
        return RunError::WeightShape {
            path: model.path.clone(),
            source_text: model.source.clone(),
            message: all.join("\n"),
            diagnostic: Box::new(d),
        };
    }
    RunError::Weights(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
}

/// One row of output per input image.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// The input's name: its path, with `[k]` for the images of a batched .npy.
    pub input: String,
    /// The logits (the input of a trailing softmax, if any).
    pub logits: Vec<f32>,
    /// The class probabilities.
    pub probs: Vec<f32>,
    /// (class index, probability), best first.
    pub top: Vec<(usize, f32)>,
    /// What makes this prediction doubtful (NaN or infinite input values).
    pub warnings: Vec<String>,
}

/// A model ready to run batches: the JIT compiled once, or the interpreter with its weights.
pub struct Runner<'m> {
    model: ModelRef<'m>,
    limits: Limits,
    engine: Engine,
}

/// The model a runner serves: borrowed (the command line) or shared (a long-lived handle, as the
/// Python package keeps).
enum ModelRef<'m> {
    Borrowed(&'m Model),
    Shared(std::sync::Arc<Model>),
}

impl std::ops::Deref for ModelRef<'_> {
    type Target = Model;
    fn deref(&self) -> &Model {
        match self {
            ModelRef::Borrowed(m) => m,
            ModelRef::Shared(m) => m,
        }
    }
}

enum Engine {
    Interp(Weights),
    Jit(Box<JitModel>),
}

impl Runner<'static> {
    /// A runner that shares ownership of its model (for handles that outlive any borrow).
    pub fn shared(
        model: std::sync::Arc<Model>,
        weights: Weights,
        backend: Backend,
        limits: Limits,
    ) -> Result<Runner<'static>, RunError> {
        Runner::with(ModelRef::Shared(model), weights, backend, limits, JitOptions::default())
    }
}

impl<'m> Runner<'m> {
    /// Compiles (for the JIT) or prepares the model, after checking one image fits in `limits`.
    pub fn new(model: &'m Model, weights: Weights, backend: Backend, limits: Limits) -> Result<Runner<'m>, RunError> {
        Runner::with(ModelRef::Borrowed(model), weights, backend, limits, JitOptions::default())
    }

    /// As `new`, for a runner that will run `images` images in all: the JIT then spends memory
    /// on faster kernels only where they repay it (`JitOptions::for_images`).
    pub fn for_images(
        model: &'m Model,
        weights: Weights,
        backend: Backend,
        limits: Limits,
        images: usize,
    ) -> Result<Runner<'m>, RunError> {
        Runner::with(ModelRef::Borrowed(model), weights, backend, limits, JitOptions::for_images(images))
    }

    fn with(
        model: ModelRef<'m>,
        weights: Weights,
        backend: Backend,
        limits: Limits,
        options: JitOptions,
    ) -> Result<Runner<'m>, RunError> {
        check_budget(&model.checked, usage(backend, 1), 0, &limits).map_err(RunError::MemoryLimit)?;
        let engine = match backend {
            Backend::Interp => Engine::Interp(weights),
            Backend::Jit { threads } => Engine::Jit(Box::new(JitModel::compile_with(
                model.network(),
                &model.checked.shapes,
                weights,
                threads,
                options,
            )?)),
        };
        Ok(Runner { model, limits, engine })
    }

    /// The model the runner serves.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The backend's memory use for batches of `batch` images.
    fn usage(&self, batch: usize) -> Usage {
        match &self.engine {
            Engine::Interp(_) => Usage::Interp { batch: batch as u64 },
            Engine::Jit(model) => Usage::Jit { batch: batch as u64, threads: model.threads() as u64 },
        }
    }

    /// (logits, output) of a batch; the logits are the input of a trailing softmax, if any.
    pub fn run(&mut self, batch: ndarray::Array4<f32>) -> (Tensor, Tensor) {
        match &mut self.engine {
            Engine::Interp(weights) => {
                let net = self.model.network();
                let last = net.output();
                let logits_node =
                    if matches!(net.nodes[last].op, Op::Softmax(_)) { net.nodes[last].inputs[0] } else { last };
                let mut outputs = forward(net, weights, batch, &[logits_node, last]);
                let output = outputs.pop().expect("two outputs");
                (outputs.pop().expect("two outputs"), output)
            }
            Engine::Jit(jit) => {
                let out = jit.forward(&batch);
                let logits = out.logits.unwrap_or_else(|| out.output.clone());
                (logits, out.output)
            }
        }
    }

    /// Loads `inputs` as one batch, runs it and ranks the classes of each image.
    pub fn predict(&mut self, inputs: &[PathBuf], top_k: usize) -> Result<Vec<Prediction>, RunError> {
        let model = &*self.model;
        // Each input is at least one image: refuse a plan that cannot fit before decoding anything.
        let budget = |n: usize| check_budget(&model.checked, self.usage(n), 0, &self.limits);
        budget(inputs.len()).map_err(RunError::MemoryLimit)?;
        let paths: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        let (batch, counts) = load_batch(&paths, model.network(), &self.limits)?;
        budget(batch.dim().0).map_err(RunError::MemoryLimit)?;
        let names = input_names(inputs, &counts);
        Ok(self.rank(batch, &names, top_k))
    }

    /// Runs a preprocessed batch and ranks the classes of each image; `names[i]` names image
    /// `i` in the predictions and warnings.
    pub fn rank(&mut self, batch: ndarray::Array4<f32>, names: &[String], top_k: usize) -> Vec<Prediction> {
        let n = batch.dim().0;
        let net = self.model.network();
        let softmax_last = matches!(net.nodes[net.output()].op, Op::Softmax(_));
        // NaN or infinite inputs give outputs that look like predictions: say so.
        let non_finite: Vec<usize> =
            batch.outer_iter().map(|image| image.iter().filter(|v| !v.is_finite()).count()).collect();
        let (logits, output) = self.run(batch);
        let logits = logits.to_rows();
        let probs = if softmax_last { output.to_rows() } else { softmax_rows(&logits) };
        (0..n)
            .map(|i| {
                let name = names.get(i).cloned().unwrap_or_else(|| format!("[{i}]"));
                let p = probs.row(i).to_vec();
                let mut order: Vec<usize> = (0..p.len()).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
                Prediction {
                    logits: logits.row(i).to_vec(),
                    top: order.iter().take(top_k).map(|&k| (k, p[k])).collect(),
                    probs: p,
                    warnings: match non_finite[i] {
                        0 => Vec::new(),
                        bad => {
                            vec![format!("{name} holds {bad} NaN or infinite value(s); its prediction is meaningless")]
                        }
                    },
                    input: name,
                }
            })
            .collect()
    }
}

/// Runs a batch on a backend under the default limits; returns (logits, output), the logits
/// being the input of a trailing softmax (or the output itself).
pub fn run_backend(
    model: &Model,
    weights: Weights,
    batch: ndarray::Array4<f32>,
    backend: Backend,
) -> Result<(Tensor, Tensor), RunError> {
    Ok(Runner::new(model, weights, backend, Limits::default())?.run(batch))
}

/// The memory use of `backend` on batches of `batch` images.
pub fn usage(backend: Backend, batch: usize) -> Usage {
    match backend {
        Backend::Interp => Usage::Interp { batch: batch as u64 },
        Backend::Jit { threads } => Usage::Jit { batch: batch as u64, threads: threads as u64 },
    }
}

/// Names each batch element: the path, with `[k]` for the images of a .npy holding several.
fn input_names(inputs: &[PathBuf], counts: &[usize]) -> Vec<String> {
    let mut names = Vec::new();
    for (path, &count) in inputs.iter().zip(counts) {
        let shown = path.display();
        if count == 1 {
            names.push(shown.to_string());
        } else {
            names.extend((0..count).map(|k| format!("{shown}[{k}]")));
        }
    }
    names
}

pub(crate) fn softmax_rows(x: &Array2<f32>) -> Array2<f32> {
    let mut out = x.clone();
    for mut row in out.rows_mut() {
        let m = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    out
}

/// Labels files beyond this are refused unread: 16 MiB holds a million class names.
pub const MAX_LABELS_BYTES: u64 = 16 << 20;

/// Class names, one per line. `None` when the file does not have one per output.
pub fn read_labels(path: &Path, outputs: usize) -> Result<Option<Vec<String>>, RunError> {
    let bytes = read_limited(path, MAX_LABELS_BYTES)
        .map_err(|source| RunError::Io { path: path.to_path_buf(), source })?
        .ok_or_else(|| RunError::FileTooLarge { path: path.to_path_buf(), limit: MAX_LABELS_BYTES })?;
    let text = String::from_utf8_lossy(&bytes);
    let labels: Vec<String> = text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    Ok((labels.len() == outputs).then_some(labels))
}

/// The input size a batch of `.npy` files asks for, if it differs from the declared one, and the
/// file that asks (the first `.npy`); images are always resized to the declared size. Callers
/// should say so: the network then runs at a size the file does not declare.
pub fn npy_input_override(inputs: &[PathBuf], declared: Input) -> Option<(Input, PathBuf)> {
    let first = inputs.iter().find(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")))?;
    let mut file = std::fs::File::open(first).ok()?;
    let len = file.metadata().ok()?.len();
    let header = crate::io::input::npy_header(&mut file, len).ok()?;
    let (h, w) = match header.shape.as_slice() {
        [_, h, w] | [_, _, h, w] => (*h as u64, *w as u64),
        _ => return None,
    };
    ((h, w) != (declared.h, declared.w) && h > 0 && w > 0).then(|| (Input { c: declared.c, h, w }, first.clone()))
}

/// The output of the last layer as a Tensor, for callers comparing backends.
pub fn forward_output(
    model: &Model,
    weights: Weights,
    batch: ndarray::Array4<f32>,
    backend: Backend,
) -> Result<Tensor, RunError> {
    run_backend(model, weights, batch, backend).map(|(_, output)| output)
}
