//! `cnnc bench`: forward-pass timing of a backend on a seeded random input. The plain forward
//! path is timed as a whole (median and minimum over the iterations); per-layer times come from
//! separate iterations of a timed variant that reads the clock around each kernel, so that the
//! plain path carries no instrumentation.

use crate::backend::interp::forward_timed;
use crate::backend::jit::JitModel;
use crate::io::run::{Backend, Model, RunError};
use crate::io::weights::Weights;
use crate::report::table::thousands;
use ndarray::Array4;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde_json::json;
use std::time::Instant;

/// One step's time.
pub struct LayerTime {
    /// The layer (fused group) name.
    pub name: String,
    /// Mean over the timed iterations.
    pub ms: f64,
    /// Fastest timed iteration: the steadier figure on a shared machine.
    pub ms_min: f64,
    /// Its multiply-accumulates.
    pub macs: u64,
    /// Its algorithm (`direct`, `gemm`, `gemv`, `depthwise`, or the op's keyword).
    pub algo: String,
}

/// How `cnnc bench` times.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// Timed forward passes.
    pub iters: usize,
    /// Images per forward pass.
    pub batch: usize,
}

/// What `cnnc bench` measured.
pub struct BenchReport {
    /// The network's name.
    pub network: String,
    /// `jit` or `interp`.
    pub backend: &'static str,
    /// Threads used.
    pub threads: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Images per forward pass.
    pub batch: usize,
    /// Compile time (0 for the interpreter).
    pub compile_ms: f64,
    /// Each timed forward pass.
    pub forward_ms: Vec<f64>,
    /// Per-layer times.
    pub layers: Vec<LayerTime>,
    /// MACs per image.
    pub total_macs: u64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() { 0.0 } else { s[s.len() / 2] }
}

fn gflops(macs: u64, ms: f64) -> f64 {
    if ms > 0.0 { 2.0 * macs as f64 / ms / 1e6 } else { 0.0 }
}

impl BenchReport {
    /// The median forward time.
    pub fn median_ms(&self) -> f64 {
        median(&self.forward_ms)
    }

    /// Images per second at the median forward time.
    pub fn images_per_second(&self) -> f64 {
        let ms = self.median_ms();
        if ms > 0.0 { self.batch as f64 * 1e3 / ms } else { 0.0 }
    }

    /// The fastest forward time.
    pub fn min_ms(&self) -> f64 {
        self.forward_ms.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The JSON of `cnnc bench --json`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "network": self.network,
            "backend": self.backend,
            "threads": self.threads,
            "iters": self.iters,
            "batch": self.batch,
            "images_per_second": self.images_per_second(),
            "compile_ms": self.compile_ms,
            "forward_ms_median": self.median_ms(),
            "forward_ms_min": self.min_ms(),
            "gflops": gflops(self.total_macs.saturating_mul(self.batch as u64), self.median_ms()),
            "macs": self.total_macs,
            "layers": self.layers.iter().map(|l| json!({
                "name": l.name,
                "ms": l.ms,
                "ms_min": l.ms_min,
                "gflops": gflops(l.macs, l.ms),
                "gflops_best": gflops(l.macs, l.ms_min),
                "macs": l.macs,
                "algo": l.algo,
            })).collect::<Vec<_>>(),
        })
    }

    /// The table of `cnnc bench`.
    pub fn render(&self) -> String {
        let width = self.layers.iter().map(|l| l.name.len()).max().unwrap_or(5).max(5);
        let mut out = format!(
            "{}  backend {}  threads {}  iters {}  batch {}\n\n",
            self.network, self.backend, self.threads, self.iters, self.batch
        );
        out += &format!(
            "{:<width$}  {:<9}  {:>9}  {:>8}  {:>9}  {:>8}  {:>15}\n",
            "layer", "algorithm", "ms", "GFLOP/s", "min ms", "best", "MACs"
        );
        for l in &self.layers {
            let g = |ms: f64| if l.macs > 0 { format!("{:.1}", gflops(l.macs, ms)) } else { "-".into() };
            out += &format!(
                "{:<width$}  {:<9}  {:>9.3}  {:>8}  {:>9.3}  {:>8}  {:>15}\n",
                l.name,
                l.algo,
                l.ms,
                g(l.ms),
                l.ms_min,
                g(l.ms_min),
                thousands(l.macs)
            );
        }
        let layer_sum: f64 = self.layers.iter().map(|l| l.ms).sum();
        out += &format!("{:<width$}  {:<9}  {:>9.3}  (sum of the timed variant's layers)\n\n", "", "", layer_sum);
        out += &format!("compile          {:>9.1} ms\n", self.compile_ms);
        out += &format!("forward median   {:>9.3} ms\n", self.median_ms());
        out += &format!("forward min      {:>9.3} ms\n", self.min_ms());
        out += &format!(
            "throughput       {:>9.1} GFLOP/s  ({} MACs per image), {:.1} images/s\n",
            gflops(self.total_macs.saturating_mul(self.batch as u64), self.median_ms()),
            thousands(self.total_macs),
            self.images_per_second()
        );
        out
    }
}

/// `n` seeded standard-normal images of the model's input shape.
pub(crate) fn random_images(model: &Model, n: usize, seed: u64) -> Array4<f32> {
    let i = model.network().input;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0).expect("unit normal");
    Array4::from_shape_fn((n, i.c as usize, i.h as usize, i.w as usize), |_| normal.sample(&mut rng))
}

/// Compiles (for the JIT) and times `iters` forward passes of `batch` seeded random images;
/// per-layer times are of one image. The caller has checked the memory budget
/// (`resolve_weights` does).
pub fn bench(
    model: &Model,
    weights: Weights,
    options: BenchOptions,
    backend: Backend,
) -> Result<BenchReport, RunError> {
    let batch = options.batch.max(1);
    let images = random_images(model, batch, 0);
    let image = images.slice(ndarray::s![0..1, .., .., ..]).to_owned();
    let net = model.network();
    let total_macs = model.checked.totals.macs;
    let iters = options.iters.max(1);
    match backend {
        Backend::Jit { threads } => {
            let mut jit = JitModel::compile(net, &model.checked.shapes, weights, threads)?;
            let data = image.as_slice().expect("standard layout").to_vec();
            let all = images.as_slice().expect("standard layout");
            let image_len = data.len();
            for _ in 0..2 {
                jit.run_image(&data);
            }
            // A batch runs as `cnnc run` runs it (`JitModel::run_batch`: one image per thread);
            // its first run allocates the lanes.
            let mut results: Vec<Vec<f32>> = (0..jit.results()).map(|k| vec![0.0; jit.result_len(k) * batch]).collect();
            let mut outputs: Vec<&mut [f32]> = results.iter_mut().map(|v| v.as_mut_slice()).collect();
            if batch > 1 {
                jit.run_batch(&all[..batch * image_len], &mut outputs);
            }
            let mut forward_ms = Vec::with_capacity(iters);
            for _ in 0..iters {
                let t = Instant::now();
                jit.run_batch(&all[..batch * image_len], &mut outputs);
                forward_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let mut seconds = vec![0.0; jit.steps.len()];
            let mut fastest = vec![f64::INFINITY; jit.steps.len()];
            let mut once = vec![0.0; jit.steps.len()];
            for _ in 0..iters {
                once.iter_mut().for_each(|s| *s = 0.0);
                jit.run_image_timed(&data, &mut once);
                for ((total, best), &t) in seconds.iter_mut().zip(&mut fastest).zip(&once) {
                    *total += t;
                    *best = best.min(t);
                }
            }
            let layers = jit
                .steps
                .iter()
                .zip(seconds.iter().zip(&fastest))
                .map(|(s, (&sec, &best))| LayerTime {
                    name: s.name.clone(),
                    ms: sec * 1e3 / iters as f64,
                    ms_min: best * 1e3,
                    macs: s.macs,
                    algo: s.algo.to_string(),
                })
                .collect();
            Ok(BenchReport {
                network: net.name.clone(),
                backend: "jit",
                threads: jit.threads(),
                iters,
                batch,
                compile_ms: jit.compile_ms,
                forward_ms,
                layers,
                total_macs,
            })
        }
        Backend::Interp => {
            let mut forward_ms = Vec::with_capacity(iters);
            let mut seconds = vec![0.0; net.nodes.len()];
            for _ in 0..iters {
                let t = Instant::now();
                let _ = forward_timed(net, &weights, images.clone(), &mut seconds);
                forward_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let layers = net
                .nodes
                .iter()
                .zip(&model.checked.costs)
                .zip(&seconds)
                .map(|((n, c), &sec)| LayerTime {
                    name: n.name.clone(),
                    ms: sec * 1e3 / iters as f64,
                    ms_min: sec * 1e3 / iters as f64,
                    macs: c.macs,
                    algo: n.op.keyword().to_string(),
                })
                .collect();
            Ok(BenchReport {
                network: net.name.clone(),
                backend: "interp",
                threads: 1,
                iters,
                batch,
                compile_ms: 0.0,
                forward_ms,
                layers,
                total_macs,
            })
        }
    }
}
