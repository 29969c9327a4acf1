//! `cnnc._cnnc`: the Rust half of the Python package. It exposes the library as plain data
//! (JSON text, strings, numpy arrays); `cnnc/__init__.py` turns that into the Pythonic API
//! (reports with `_repr_html_`, exceptions, pickling, PIL images).
//!
//! The forward pass releases the GIL. One model serves several Python threads: they take turns
//! on its compiled code (a mutex), each with the GIL released while it waits and runs.

use cnnc::{Backend, Limits, Model, RunError, Runner, check_source, parse_input_dims};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyMemoryError, PyValueError};
use pyo3::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

create_exception!(_cnnc, ModelErrors, PyException, "A model with errors: (rendered text, JSON list of diagnostics).");

/// The diagnostics of `source` rendered as `cnnc check` prints them, naming the file `shown`.
fn rendered(diagnostics: &[cnnc::Diagnostic], shown: &str, source: &str) -> String {
    diagnostics.iter().map(|d| d.render(shown, source, false)).collect()
}

fn diagnostics_json(diagnostics: &[cnnc::Diagnostic], source: &str) -> String {
    let index = cnnc::LineIndex::new(source);
    serde_json::to_string(&diagnostics.iter().map(|d| d.to_json(&index)).collect::<Vec<_>>()).unwrap_or_default()
}

fn input_dims(input: Option<&str>) -> PyResult<Option<cnnc::Input>> {
    input.map(parse_input_dims).transpose().map_err(PyValueError::new_err)
}

/// `cnnc check --json`'s object for `source` (named `name` when it has no `network` line), and
/// the diagnostics rendered against `shown`.
#[pyfunction]
#[pyo3(signature = (source, name, shown, input=None))]
fn check(source: &str, name: &str, shown: &str, input: Option<&str>) -> PyResult<(String, String)> {
    let report = check_source(source, name, input_dims(input)?);
    let json = cnnc::report_json(&report, source).to_string();
    Ok((json, rendered(&report.diagnostics, shown, source)))
}

/// `cnnc graph`'s SVG, or the rendered errors (as `ModelErrors`).
#[pyfunction]
#[pyo3(signature = (source, name, shown, input=None, collapse=false))]
fn graph_svg(source: &str, name: &str, shown: &str, input: Option<&str>, collapse: bool) -> PyResult<String> {
    let report = check_source(source, name, input_dims(input)?);
    match report.checked.as_ref().filter(|_| report.errors() == 0) {
        Some(c) => Ok(cnnc::graph_svg(&cnnc::layout_graph(c, collapse))),
        None => Err(model_errors(&report.diagnostics, shown, source)),
    }
}

fn model_errors(diagnostics: &[cnnc::Diagnostic], shown: &str, source: &str) -> PyErr {
    ModelErrors::new_err((rendered(diagnostics, shown, source), diagnostics_json(diagnostics, source)))
}

/// `cnnc compare` of (source, name, shown) triples: the table and its JSON.
#[pyfunction]
fn compare(models: Vec<(String, String, String)>) -> PyResult<(String, String)> {
    let mut summaries = Vec::new();
    for (source, name, shown) in &models {
        let report = check_source(source, name, None);
        match report.checked.as_ref().filter(|_| report.errors() == 0) {
            Some(c) => summaries.push(cnnc::summarize(c, shown)),
            None => return Err(model_errors(&report.diagnostics, shown, source)),
        }
    }
    Ok((cnnc::render_comparison(&summaries), cnnc::comparison_json(&summaries).to_string()))
}

/// `cnnc fmt`'s canonical layout of `source`.
#[pyfunction]
fn format_source(source: &str, shown: &str) -> PyResult<String> {
    cnnc::format_source(source).map_err(|d| model_errors(&d, shown, source))
}

/// A run-time error as the Python exception a user expects.
fn run_error(e: RunError) -> PyErr {
    match e {
        RunError::Model { path, source_text, diagnostics } => {
            model_errors(&diagnostics, &path.display().to_string(), &source_text)
        }
        RunError::WeightShape { path, source_text, diagnostic, .. } => {
            model_errors(&[*diagnostic], &path.display().to_string(), &source_text)
        }
        RunError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(format!("{}: {source}", path.display()))
        }
        RunError::MemoryLimit(_) => PyMemoryError::new_err(e.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// A checked model with its weights, compiled (JIT) or ready to interpret.
#[pyclass(module = "cnnc._cnnc", frozen)]
struct CompiledModel {
    model: Arc<Model>,
    runner: Mutex<Runner<'static>>,
    /// The weights file used, if any ("" for a random initialisation).
    weights: String,
    warnings: Vec<String>,
}

#[pymethods]
impl CompiledModel {
    #[new]
    #[pyo3(signature = (path, weights=None, backend="jit", threads=None, input=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        weights: Option<PathBuf>,
        backend: &str,
        threads: Option<usize>,
        input: Option<&str>,
    ) -> PyResult<CompiledModel> {
        let input = input_dims(input)?;
        let backend = match backend {
            "jit" => Backend::Jit { threads: threads.unwrap_or_else(cnnc::default_threads).max(1) },
            "interp" | "interpreter" => Backend::Interp,
            other => {
                return Err(PyValueError::new_err(format!("backend must be \"jit\" or \"interp\", not {other:?}")));
            }
        };
        py.detach(|| load(&path, weights.as_deref(), backend, input)).map_err(run_error)
    }

    /// The logits of a batch: `x` is a C-contiguous float32 array [N, C, H, W].
    fn __call__<'py>(&self, py: Python<'py>, x: PyReadonlyArrayDyn<'py, f32>) -> PyResult<Bound<'py, PyAny>> {
        let batch = self.batch(&x)?;
        let (rows, width) = py.detach(|| {
            let mut runner = self.runner.lock().unwrap_or_else(|p| p.into_inner());
            let (logits, _) = runner.run(batch);
            let rows = logits.to_rows();
            let width = rows.dim().1;
            (rows.into_iter().collect::<Vec<f32>>(), width)
        });
        let n = if width == 0 { 0 } else { rows.len() / width };
        Ok(PyArray1::from_vec(py, rows).reshape([n, width])?.into_any())
    }

    /// Runs preprocessed images (`x` as for `__call__`, named by `names`) and ranks the classes:
    /// a list of (name, logits, probs, [(class, prob)...], warnings), as `cnnc run --json`.
    #[allow(clippy::type_complexity)]
    fn rank(
        &self,
        py: Python<'_>,
        x: PyReadonlyArrayDyn<'_, f32>,
        names: Vec<String>,
        top: usize,
    ) -> PyResult<Vec<(String, Vec<f32>, Vec<f32>, Vec<(usize, f32)>, Vec<String>)>> {
        let batch = self.batch(&x)?;
        let predictions = py.detach(|| {
            let mut runner = self.runner.lock().unwrap_or_else(|p| p.into_inner());
            runner.rank(batch, &names, top)
        });
        Ok(predictions.into_iter().map(|p| (p.input, p.logits, p.probs, p.top, p.warnings)).collect())
    }

    /// An image file preprocessed as `cnnc run` does: float32 [1, C, H, W] (or an .npy's batch).
    fn preprocess_path<'py>(&self, py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
        let net = self.model.network();
        let loaded = py.detach(|| cnnc::load_input(&path, net));
        let a = loaded.map_err(|e| match &e {
            cnnc::InputError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                PyFileNotFoundError::new_err(e.to_string())
            }
            _ => PyValueError::new_err(e.to_string()),
        })?;
        to_numpy(py, a)
    }

    /// An encoded image (PNG, JPEG) held in memory, preprocessed as `cnnc run` does.
    fn preprocess_bytes<'py>(&self, py: Python<'py>, data: Vec<u8>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let net = self.model.network();
        let a = py
            .detach(|| cnnc::load_image_bytes(&data, name, net, &Limits::default()))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        to_numpy(py, a)
    }

    /// The weight tensors: (canonical name, shape, kind).
    fn params(&self) -> Vec<(String, Vec<usize>, String)> {
        self.model.params().into_iter().map(|p| (p.name, p.shape, p.kind.suffix().to_string())).collect()
    }

    /// The input the model was compiled for: (C, H, W).
    #[getter]
    fn input(&self) -> (u64, u64, u64) {
        let i = self.model.checked.input;
        (i.c, i.h, i.w)
    }

    #[getter]
    fn name(&self) -> String {
        self.model.network().name.clone()
    }

    #[getter]
    fn source(&self) -> String {
        self.model.source.clone()
    }

    #[getter]
    fn path(&self) -> String {
        self.model.path.display().to_string()
    }

    /// The weights file used ("" when none was found and a random initialisation was used).
    #[getter]
    fn weights(&self) -> String {
        self.weights.clone()
    }

    /// Warnings met while loading (unused tensors, non-finite values, random weights).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

impl CompiledModel {
    /// `x` as the batch the model takes, or a clear error.
    fn batch(&self, x: &PyReadonlyArrayDyn<'_, f32>) -> PyResult<ndarray::Array4<f32>> {
        let (c, h, w) = self.input();
        let shape = x.shape().to_vec();
        let fits = shape.len() == 4 && shape[1..] == [c as usize, h as usize, w as usize];
        if !fits {
            return Err(PyValueError::new_err(format!(
                "{} takes float32 arrays of shape [N, {c}, {h}, {w}] (or [{c}, {h}, {w}]); got {shape:?}",
                self.name()
            )));
        }
        let data = x.as_slice().map_err(|e| PyValueError::new_err(format!("the array is not contiguous: {e}")))?;
        ndarray::Array4::from_shape_vec((shape[0], shape[1], shape[2], shape[3]), data.to_vec())
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }
}

fn to_numpy<'py>(py: Python<'py>, a: ndarray::Array4<f32>) -> PyResult<Bound<'py, PyAny>> {
    let (n, c, h, w) = a.dim();
    let data: Vec<f32> = a.into_iter().collect();
    Ok(PyArray1::from_vec(py, data).reshape([n, c, h, w])?.into_any())
}

fn load(
    path: &Path,
    weights: Option<&Path>,
    backend: Backend,
    input: Option<cnnc::Input>,
) -> Result<CompiledModel, RunError> {
    let (model, warnings) = cnnc::load_model(path, input)?;
    let mut notes: Vec<String> =
        warnings.iter().map(|d| d.render(&path.display().to_string(), &model.source, false)).collect();
    let limits = Limits::default();
    let (loaded, source, weight_warnings) = cnnc::resolve_weights(&model, weights, cnnc::usage(backend, 1), &limits)?;
    notes.extend(weight_warnings);
    let weights = match source {
        cnnc::WeightsSource::Random { seed } => {
            notes.push(format!(
                "no weights given and {} does not exist: using a random He initialisation (seed {seed})",
                model.path.with_extension("safetensors").display()
            ));
            String::new()
        }
        cnnc::WeightsSource::File(p) => p.display().to_string(),
    };
    let model = Arc::new(model);
    let runner = Runner::shared(Arc::clone(&model), loaded, backend, limits)?;
    Ok(CompiledModel { model, runner: Mutex::new(runner), weights, warnings: notes })
}

#[pymodule]
fn _cnnc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(graph_svg, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_function(wrap_pyfunction!(format_source, m)?)?;
    m.add_class::<CompiledModel>()?;
    m.add("ModelErrors", m.py().get_type::<ModelErrors>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
