//! Weights by canonical name: loading safetensors (f32 native; f16, bf16 and f64 converted),
//! validating them against the network's parameter list, seeded He initialisation, and writing.

use crate::analysis::params::ParamSpec;
use crate::ops::ParamKind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A tensor's f32 values: owned, or read in place from a memory-mapped safetensors file (f32
/// data, 4-byte aligned, on a little-endian machine), so that a 500 MB fully connected layer is
/// neither copied nor converted.
#[derive(Clone, Debug)]
pub struct TensorData(Repr);

#[derive(Clone, Debug)]
enum Repr {
    Owned(Vec<f32>),
    Mapped { map: Arc<memmap2::Mmap>, start: usize, len: usize },
}

impl TensorData {
    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        match &self.0 {
            Repr::Owned(v) => v,
            // SAFETY: `start` is 4-byte aligned and `start + 4 len` within the map (checked when
            // the tensor was mapped); the map lives as long as `self`; f32 has no invalid bit
            // patterns, and the host is little-endian as the file is.
            Repr::Mapped { map, start, len } => unsafe {
                std::slice::from_raw_parts(map.as_ptr().add(*start).cast::<f32>(), *len)
            },
        }
    }

    /// The values as an owned vector (a copy if they are mapped, whose pages are then released:
    /// see `release`).
    pub fn into_vec(self) -> Vec<f32> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Mapped { .. } => {
                let v = self.as_slice().to_vec();
                self.release();
                v
            }
        }
    }

    /// Lets the kernel drop the memory pages holding the values, if they are mapped from the
    /// file (whole pages only: a neighbouring tensor's first or last page stays). For a layer
    /// whose weights have been repacked: the map's pages otherwise stay in the resident set
    /// beside the packed copy until the process ends.
    pub fn release(self) {
        const PAGE: usize = 4096;
        if let Repr::Mapped { map, start, len } = &self.0 {
            let base = map.as_ptr() as usize;
            let first = (base + start).div_ceil(PAGE) * PAGE - base;
            let end = (base + start + 4 * len) / PAGE * PAGE - base;
            if end > first {
                // SAFETY: the map is a private, read-only mapping of a file nothing writes while
                // it is mapped (cnnc's writes replace files by renaming): dropped pages read back
                // with the same contents if anything touches them again. The range is within
                // the map and page-aligned (the map starts on a page; an error just means the
                // pages stay).
                let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, end - first) };
            }
        }
    }

    /// Whether the values are read in place from the weights file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Repr::Mapped { .. })
    }

    /// The f32 values of `bytes[start..start + 4 len]` of `map`, in place if aligned.
    fn mapped(map: &Arc<memmap2::Mmap>, start: usize, len: usize) -> TensorData {
        let aligned = (map.as_ptr() as usize + start) % 4 == 0 && cfg!(target_endian = "little");
        if aligned && start + 4 * len <= map.len() {
            TensorData(Repr::Mapped { map: Arc::clone(map), start, len })
        } else {
            let bytes = &map[start..start + 4 * len];
            TensorData(Repr::Owned(
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            ))
        }
    }
}

impl std::ops::Deref for TensorData {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        self.as_slice()
    }
}

impl From<Vec<f32>> for TensorData {
    fn from(v: Vec<f32>) -> TensorData {
        TensorData(Repr::Owned(v))
    }
}

/// Tensors by canonical name, each validated against its `ParamSpec`.
#[derive(Clone, Debug, Default)]
pub struct Weights {
    tensors: HashMap<String, TensorData>,
}

impl Weights {
    /// The data of a tensor that `param_specs` lists. Loading validated every such tensor, so
    /// a miss here is a bug in the caller, not a user error.
    pub fn get(&self, name: &str) -> &[f32] {
        self.tensors.get(name).unwrap_or_else(|| panic!("weights validated at load time lack `{name}`")).as_slice()
    }

    /// Removes and returns a tensor as an owned vector (the JIT packs weights in place, in
    /// the memory they were loaded into; mapped data is copied first).
    pub fn take(&mut self, name: &str) -> Vec<f32> {
        self.take_data(name).into_vec()
    }

    /// Removes and returns a tensor as it is held (mapped data stays mapped).
    pub fn take_data(&mut self, name: &str) -> TensorData {
        self.tensors.remove(name).unwrap_or_else(|| panic!("weights validated at load time lack `{name}`"))
    }

    /// Bytes of all the tensors, as f32.
    pub fn total_bytes(&self) -> u64 {
        self.tensors.values().map(|t| t.len() as u64 * 4).sum()
    }

    /// Adds or replaces a tensor.
    pub fn insert(&mut self, name: String, data: Vec<f32>) {
        self.tensors.insert(name, data.into());
    }
}

/// Why weights cannot be loaded or written. Every variant names the file (`path`).
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The weights file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// Not a valid safetensors file.
    #[error("{path} is not a valid safetensors file: {reason}")]
    Corrupt {
        /// The weights file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor of a dtype cnnc cannot read.
    #[error("{path}: tensor `{name}` has dtype {dtype}, which cnnc cannot read (it reads f32, f16, bf16 and f64)")]
    Dtype {
        /// The weights file.
        path: String,
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// Tensors the network needs are not in the file.
    #[error("{path} lacks {} tensor(s) this network needs: {}", names.len(), list(names))]
    Missing {
        /// The weights file.
        path: String,
        /// The missing tensors.
        names: Vec<String>,
    },
    /// A tensor has another shape than its layer needs.
    #[error("{path}: tensor `{name}` has shape {found:?} but the network needs {expected:?}")]
    Shape {
        /// The weights file.
        path: String,
        /// The tensor.
        name: String,
        /// Its shape in the file.
        found: Vec<usize>,
        /// The shape the layer needs.
        expected: Vec<usize>,
        /// The layer's node.
        node: usize,
    },
    /// A batch norm's running variance is negative: the square root of it is not a number.
    #[error("{path}: tensor `{name}` is a running variance but holds negative values")]
    NegativeVariance {
        /// The weights file.
        path: String,
        /// The tensor.
        name: String,
    },
    /// The file cannot be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The weights file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

fn list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = names.iter().take(SHOWN).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        s += &format!(" and {} more", names.len() - SHOWN);
    }
    s
}

/// Weights loaded from a file.
pub struct Loaded {
    /// The tensors the network needs, validated.
    pub weights: Weights,
    /// Tensors in the file that the network does not use (a warning, not an error); a batch
    /// norm's `num_batches_tracked`, which PyTorch saves beside its statistics, is not listed.
    pub unused: Vec<String>,
    /// Tensors holding NaN or infinite values, with how many (a warning).
    pub non_finite: Vec<(String, usize)>,
}

fn to_f32(view: &TensorView) -> Option<Vec<f32>> {
    let bytes = view.data();
    Some(match view.dtype() {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => return None,
    })
}

/// Loads and validates `path` against `specs`: every needed tensor present with its exact shape.
/// Returns every problem found, not just the first. The file is memory-mapped: f32 tensors are
/// used in place (their pages are read when first used and shared with the page cache), others
/// converted. The file must not change while the weights are in use.
pub fn load_safetensors(path: &Path, specs: &[ParamSpec]) -> Result<Loaded, Vec<WeightsError>> {
    let shown = path.display().to_string();
    let io = |source| vec![WeightsError::Io { path: shown.clone(), source }];
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read only; cnnc never writes the file, and documents that it must not
    // change while in use (as any program that maps its input).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    load_mapped(&Arc::new(map), &shown, specs)
}

/// Like `load_safetensors`, from the file's bytes; `shown` names the file in messages.
pub fn load_safetensors_bytes(bytes: &[u8], shown: &str, specs: &[ParamSpec]) -> Result<Loaded, Vec<WeightsError>> {
    load_from(bytes, None, shown, specs)
}

fn load_mapped(map: &Arc<memmap2::Mmap>, shown: &str, specs: &[ParamSpec]) -> Result<Loaded, Vec<WeightsError>> {
    load_from(map, Some(map), shown, specs)
}

/// Validates the tensors of `bytes` against `specs`; with `map` (whose bytes `bytes` are), f32
/// tensors stay in place.
fn load_from(
    bytes: &[u8],
    map: Option<&Arc<memmap2::Mmap>>,
    shown: &str,
    specs: &[ParamSpec],
) -> Result<Loaded, Vec<WeightsError>> {
    let shown = shown.to_string();
    let corrupt = |reason: String| vec![WeightsError::Corrupt { path: shown.clone(), reason }];
    if let Some(name) = duplicate_tensor_name(bytes) {
        return Err(corrupt(format!("the header names tensor `{name}` twice")));
    }
    let file = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut errors = Vec::new();
    let mut weights = Weights::default();
    let mut missing = Vec::new();
    let mut non_finite = Vec::new();
    for spec in specs {
        let view = match file.tensor(&spec.name) {
            Ok(v) => v,
            Err(_) => {
                missing.push(spec.name.clone());
                continue;
            }
        };
        if view.shape() != spec.shape.as_slice() {
            errors.push(WeightsError::Shape {
                path: shown.clone(),
                name: spec.name.clone(),
                found: view.shape().to_vec(),
                expected: spec.shape.clone(),
                node: spec.node,
            });
            continue;
        }
        let data = match map {
            Some(map) if view.dtype() == Dtype::F32 => {
                let start = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
                Some(TensorData::mapped(map, start, view.data().len() / 4))
            }
            _ => to_f32(&view).map(TensorData::from),
        };
        match data {
            Some(data) => {
                if spec.kind == ParamKind::RunningVar && data.iter().any(|&v| v < 0.0) {
                    errors.push(WeightsError::NegativeVariance { path: shown.clone(), name: spec.name.clone() });
                }
                weights.tensors.insert(spec.name.clone(), data);
            }
            None => errors.push(WeightsError::Dtype {
                path: shown.clone(),
                name: spec.name.clone(),
                dtype: format!("{:?}", view.dtype()),
            }),
        }
    }
    for (spec, bad) in specs.iter().zip(count_non_finite(specs, &weights)) {
        if bad > 0 {
            non_finite.push((spec.name.clone(), bad));
        }
    }
    if !missing.is_empty() {
        errors.insert(0, WeightsError::Missing { path: shown.clone(), names: missing });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let needed: std::collections::HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    // PyTorch's batch norm counts its training steps; a state dict saved as it is carries the
    // count beside the statistics, which inference does not use.
    let bn_counter = |n: &str| {
        n.strip_suffix(".num_batches_tracked")
            .is_some_and(|layer| needed.contains(format!("{layer}.running_mean").as_str()))
    };
    let mut unused: Vec<String> =
        file.names().into_iter().filter(|n| !needed.contains(n) && !bn_counter(n)).map(String::from).collect();
    unused.sort();
    Ok(Loaded { weights, unused, non_finite })
}

/// Per spec, how many of its loaded values are NaN or infinite (0 if it was not loaded). Large
/// files are read on all cores: this pass is the first to touch every page of the map (VGG-16's
/// 553 MB took 150 to 280 ms on one thread).
fn count_non_finite(specs: &[ParamSpec], weights: &Weights) -> Vec<usize> {
    const CHUNK: usize = 1 << 20;
    let chunks: Vec<(usize, &[f32])> = specs
        .iter()
        .enumerate()
        .filter_map(|(k, spec)| Some((k, weights.tensors.get(&spec.name)?.as_slice())))
        .flat_map(|(k, data)| data.chunks(CHUNK).map(move |c| (k, c)))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(chunks.len());
    let bad: Vec<AtomicUsize> = specs.iter().map(|_| AtomicUsize::new(0)).collect();
    crate::parallel::share_out(chunks.into_iter(), threads, &|(k, c): (usize, &[f32])| {
        bad[k].fetch_add(c.iter().filter(|v| !v.is_finite()).count(), Ordering::Relaxed);
    });
    bad.into_iter().map(AtomicUsize::into_inner).collect()
}

/// The first tensor name the header of a safetensors file gives twice, if any. (The
/// safetensors crate reads the header into a map, where the second silently wins.)
fn duplicate_tensor_name(bytes: &[u8]) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut duplicate = None;
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if !seen.insert(key.clone()) && duplicate.is_none() {
                    duplicate = Some(key);
                }
            }
            Ok(duplicate)
        }
    }
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..8usize.checked_add(usize::try_from(len).ok()?)?)?;
    serde_json::Deserializer::from_slice(header).deserialize_map(Keys).ok().flatten()
}

/// Seeded He (Kaiming normal, fan-in) initialisation: conv and fc weights ~ N(0, 2 / fan_in),
/// biases 0, BN the identity (gamma 1, beta 0, mean 0, var 1).
pub fn random_weights(specs: &[ParamSpec], seed: u64) -> Weights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut weights = Weights::default();
    for spec in specs {
        let n = spec.elements();
        let data = match spec.kind {
            ParamKind::Weight if spec.shape.len() >= 2 => {
                let fan_in: usize = spec.shape[1..].iter().product();
                let std = (2.0 / fan_in.max(1) as f64).sqrt();
                let normal = Normal::new(0.0, std).expect("a positive standard deviation");
                (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
            }
            ParamKind::Weight | ParamKind::RunningVar => vec![1.0; n],
            ParamKind::Bias | ParamKind::RunningMean => vec![0.0; n],
        };
        weights.insert(spec.name.clone(), data);
    }
    weights
}

/// The tensors of `specs` as an f32 safetensors file, with `metadata` in the header.
pub fn safetensors_bytes(
    specs: &[ParamSpec],
    weights: &Weights,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, WeightsError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = specs
        .iter()
        .map(|s| (s.name.clone(), weights.get(&s.name).iter().flat_map(|v| v.to_le_bytes()).collect(), s.shape.clone()))
        .collect();
    let views: Result<Vec<_>, _> = bytes
        .iter()
        .map(|(name, data, shape)| TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.clone(), v)))
        .collect();
    let error = |e: safetensors::SafeTensorError| WeightsError::Write { path: "weights".into(), reason: e.to_string() };
    safetensors::serialize(views.map_err(error)?, Some(metadata)).map_err(error)
}

/// Writes the tensors of `specs` as f32 safetensors, with `metadata` in the header, replacing
/// `path` safely (a temporary file renamed over it).
pub fn save_safetensors(
    path: &Path,
    specs: &[ParamSpec],
    weights: &Weights,
    metadata: HashMap<String, String>,
) -> Result<(), WeightsError> {
    let bytes = safetensors_bytes(specs, weights, metadata)?;
    crate::io::files::write_atomic(path, &bytes, true, false)
        .map_err(|e| WeightsError::Write { path: path.display().to_string(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_counted_per_tensor_across_chunks_and_threads() {
        let spec =
            |name: &str, n: usize| ParamSpec { name: name.into(), shape: vec![n], kind: ParamKind::Weight, node: 0 };
        let specs = [spec("big", 3 << 20), spec("absent", 4), spec("small", 5)];
        let mut weights = Weights::default();
        let mut big = vec![0.5f32; 3 << 20];
        // One in the first chunk, two on either side of a chunk boundary, one in the last.
        for (i, v) in
            [(0, f32::NAN), ((1 << 20) - 1, f32::INFINITY), (1 << 20, f32::NEG_INFINITY), ((3 << 20) - 1, f32::NAN)]
        {
            big[i] = v;
        }
        weights.insert("big".into(), big);
        weights.insert("small".into(), vec![1.0, f32::NAN, 2.0, 3.0, 4.0]);
        assert_eq!(count_non_finite(&specs, &weights), vec![4, 0, 1]);
    }
}
