//! `cnnc run`: the top classes of each input, in batches, with a progress bar on terminals.

use super::load_model;
use cnnc::{Backend, Limits, RunError, WeightsSource};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub(crate) struct RunOptions {
    pub(crate) top: usize,
    pub(crate) labels: Option<PathBuf>,
    pub(crate) json: bool,
    pub(crate) batch: usize,
    pub(crate) backend: Backend,
    pub(crate) limits: Limits,
}

/// Class names from `--labels` or the header's `labels` file, if they fit the output.
fn labels(model: &cnnc::Model, model_path: &Path, o: &RunOptions) -> Result<Option<Vec<String>>, RunError> {
    let outputs = model.checked.shapes.last().and_then(|s| s.elements()).unwrap_or(0) as usize;
    let header_labels =
        || model.network().labels.as_ref().map(|l| model_path.parent().unwrap_or(Path::new(".")).join(l));
    let Some(path) = o.labels.clone().or_else(header_labels) else { return Ok(None) };
    let labels = cnnc::read_labels(&path, outputs)?;
    if labels.is_none() {
        eprintln!("warning: {} does not hold one label per output ({outputs}); showing class indices", path.display());
    }
    Ok(labels)
}

pub(crate) fn cmd_run(
    model_path: &Path,
    inputs: &[PathBuf],
    weights: Option<&Path>,
    o: &RunOptions,
) -> Result<(), RunError> {
    // A model declared at one size can run .npy inputs of another when its weights allow it.
    let declared = load_model(model_path, None)?;
    let override_input = cnnc::npy_input_override(inputs, declared.network().input);
    let model = match override_input {
        Some((input, path)) => {
            let d = declared.network().input;
            eprintln!(
                "note: {} holds {}x{} inputs; running {} at {}x{} instead of its declared {}x{}",
                path.display(),
                input.h,
                input.w,
                model_path.display(),
                input.h,
                input.w,
                d.h,
                d.w
            );
            load_model(model_path, Some(input))?
        }
        None => declared,
    };
    let usage = cnnc::usage(o.backend, o.batch.min(inputs.len()));
    let (weights, source, warnings) = cnnc::resolve_weights(&model, weights, usage, &o.limits)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    if let WeightsSource::Random { seed } = source {
        eprintln!(
            "warning: no weights given and {} does not exist: using a random He initialisation (seed {seed}); the predictions are meaningless",
            model_path.with_extension("safetensors").display()
        );
    }
    let labels = labels(&model, model_path, o)?;
    let label_of = |k: usize| labels.as_ref().map(|l| l[k].clone());
    let started = std::time::Instant::now();
    let mut runner = cnnc::Runner::for_images(&model, weights, o.backend, o.limits, inputs.len())?;
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
            for w in &p.warnings {
                bar.suspend(|| eprintln!("warning: {w}"));
            }
            if o.json {
                json_items.push(serde_json::json!({
                    "input": p.input,
                    "logits": p.logits,
                    "probs": p.probs,
                    "warnings": p.warnings,
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
