//! One memory policy for every command: weights, activations, JIT code and scratch are added up
//! from the checked network before anything is allocated, and a request beyond the limit is
//! refused with E0301, naming what is too big and by how much.

use crate::analysis::check::Checked;
use crate::analysis::params::param_specs;
use crate::backend::jit;
use crate::ir::geometry::Shape;
use crate::report::table::human_bytes;

/// The default memory limit: 8 GiB, or three quarters of the machine's memory if that is less.
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 8 << 30;
/// Images with more pixels than this are refused before they are decoded.
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;

/// The resource limits a command runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of weights, activations, JIT code and scratch (`--max-memory`).
    pub max_memory_bytes: u64,
    /// Pixels (width x height) an image may have (`--max-pixels`).
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_memory_bytes: default_memory_limit(), max_pixels: DEFAULT_MAX_PIXELS }
    }
}

/// 8 GiB, or three quarters of physical memory on a smaller machine.
pub fn default_memory_limit() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGE_SIZE)) };
    let physical = if pages > 0 && page > 0 { (pages as u64).saturating_mul(page as u64) } else { u64::MAX };
    DEFAULT_MEMORY_LIMIT_BYTES.min(physical / 4 * 3)
}

/// Parses a size such as `16G`, `512M`, `4096K` or a plain number of bytes (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let scale: u64 = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("`{text}` is not a size (for example 16G, 512M or 1073741824)")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{text}` is not a size (for example 16G, 512M or 1073741824)"))
}

/// What a command will allocate, by kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryNeed {
    /// Weights as f32, plus the file they are read from and packing scratch.
    pub weights: u64,
    /// The largest weight tensor and its f32 bytes.
    pub largest_tensor: Option<(String, u64)>,
    /// Activations: the JIT's arena, or the interpreter's live tensors times the batch.
    pub activations: u64,
    /// The input batch and the outputs.
    pub io: u64,
    /// An allowance for the JIT's code and loop IR.
    pub code: u64,
}

impl MemoryNeed {
    /// The sum.
    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.activations).saturating_add(self.io).saturating_add(self.code)
    }

    /// E0301's message when the total exceeds `limit`, naming the largest part.
    pub fn refusal(&self, limit: u64) -> Option<String> {
        let total = self.total();
        if total <= limit {
            return None;
        }
        let mut parts = vec![format!("weights {}", human_bytes(self.weights))];
        if let Some((name, bytes)) = &self.largest_tensor {
            parts[0] += &format!(" (the largest, `{name}`, is {})", human_bytes(*bytes));
        }
        parts.push(format!("activations {}", human_bytes(self.activations)));
        if self.io > 0 {
            parts.push(format!("inputs and outputs {}", human_bytes(self.io)));
        }
        if self.code > 0 {
            parts.push(format!("JIT code and scratch about {}", human_bytes(self.code)));
        }
        Some(format!(
            "this needs {}, {} more than the {} memory limit: {}; raise the limit with --max-memory",
            human_bytes(total),
            human_bytes(total - limit),
            human_bytes(limit),
            parts.join(", ")
        ))
    }
}

/// How the network will run, for the estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Weights only (`cnnc init`, `cnnc kernels`).
    WeightsOnly,
    /// The interpreter on batches of `batch` images.
    Interp {
        /// Images per batch.
        batch: u64,
    },
    /// The JIT on batches of `batch` images with `threads` threads: one image through its
    /// arena, or with two or more threads and at least as many images, one image per thread,
    /// each on an arena of its own (`JitModel::run_batch`).
    Jit {
        /// Images per batch.
        batch: u64,
        /// Threads of the forward pass.
        threads: u64,
    },
}

/// What running `c` as `usage` will allocate. `file_bytes` is the size of a weights file read
/// into memory (0 for generated weights).
pub fn memory_need(c: &Checked, usage: Usage, file_bytes: u64) -> MemoryNeed {
    let specs = param_specs(&c.network, &c.shapes);
    let bytes = |n: usize| (n as u64).saturating_mul(4);
    let f32_bytes = specs.iter().fold(0u64, |a, s| a.saturating_add(bytes(s.elements())));
    let largest = specs.iter().max_by_key(|s| s.elements()).map(|s| (s.name.clone(), bytes(s.elements())));
    let image = c.shapes[0].elements().unwrap_or(u64::MAX).saturating_mul(4);
    let output = c.shapes.last().and_then(|s| s.elements()).unwrap_or(u64::MAX).saturating_mul(4);
    let per_image_io = image.saturating_add(output.saturating_mul(3));
    let mut need = MemoryNeed {
        weights: f32_bytes.saturating_add(file_bytes),
        largest_tensor: largest.clone(),
        ..MemoryNeed::default()
    };
    match usage {
        Usage::WeightsOnly => {}
        Usage::Interp { batch } => {
            need.activations = interpreter_peak_bytes(c).saturating_mul(batch);
            need.io = per_image_io.saturating_mul(batch);
        }
        Usage::Jit { batch, threads } => {
            // Packing copies at most one tensor at a time; Winograd's transformed weights are
            // larger than the weights (within a budget), and it has scratch.
            need.weights = need
                .weights
                .saturating_add(largest.map_or(0, |(_, b)| b))
                .saturating_add(jit::winograd_bytes(&c.network, &c.shapes));
            // Each lane beyond the first has its arena, scratch (4 MiB at most), workspace (16
            // MiB at most), image and results.
            let arena = jit::arena_bytes(&c.network, &c.shapes).unwrap_or(c.peak_activation_bytes);
            let lanes = if threads > 1 && batch >= threads { threads } else { 1 };
            let lane = arena.saturating_add(20 << 20).saturating_add(per_image_io);
            need.activations = arena.saturating_add(lane.saturating_mul(lanes - 1));
            need.io = per_image_io.saturating_mul(batch);
            // Measured: about 1.4 KB per step on a 100,000-layer network, a few MiB of code and
            // IR for the largest kernels; the allowance is generous.
            need.code = (32u64 << 20).saturating_add((c.network.nodes.len() as u64).saturating_mul(4 << 10));
        }
    }
    need
}

/// The interpreter keeps each tensor until its last reader has run: the largest sum of live
/// tensors at batch 1, the output being computed included.
fn interpreter_peak_bytes(c: &Checked) -> u64 {
    let net = &c.network;
    let consumers = net.consumers();
    let size = |s: &Shape| s.elements().unwrap_or(u64::MAX).saturating_mul(4);
    let mut frees: Vec<u64> = vec![0; net.nodes.len() + 1];
    let (mut live, mut peak) = (0u64, 0u64);
    for (id, shape) in c.shapes.iter().enumerate() {
        live = live.saturating_add(size(shape));
        peak = peak.max(live);
        let last = consumers[id].iter().copied().max().unwrap_or(net.nodes.len());
        frees[last] = frees[last].saturating_add(size(shape));
        live = live.saturating_sub(frees[id]);
    }
    peak
}

/// E0301 when running `c` as `usage` would exceed `limits`.
pub fn check_budget(c: &Checked, usage: Usage, file_bytes: u64, limits: &Limits) -> Result<(), String> {
    match memory_need(c, usage, file_bytes).refusal(limits.max_memory_bytes) {
        Some(message) => Err(message),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("16G"), Ok(16 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4096KiB"), Ok(4 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999T").is_err());
    }

    #[test]
    fn a_batch_on_lanes_counts_an_arena_per_thread() {
        let src = "network n\ninput 16x32x32\nconv 3x3 32 pad 1\nrelu\nconv 3x3 32 pad 1\n";
        let c = crate::analysis::check::check_source(src, "n", None).checked.expect("a clean check");
        let arena = crate::backend::jit::arena_bytes(&c.network, &c.shapes).expect("an arena");
        let acts = |batch, threads| memory_need(&c, Usage::Jit { batch, threads }, 0).activations;
        assert_eq!(acts(1, 2), arena);
        assert_eq!(acts(16, 1), arena);
        // Fewer images than threads run one at a time: one arena.
        assert_eq!(acts(2, 3), arena);
        // Per lane beyond the first: its arena, 20 MiB of scratch and workspace, and what one
        // image's input and outputs take (the input, 16x32x32, and three times the output,
        // 32x32x32, in f32).
        let lane = arena + (20 << 20) + (16 + 3 * 32) * 32 * 32 * 4;
        assert_eq!(acts(2, 2), arena + lane);
        assert_eq!(acts(16, 4), arena + 3 * lane);
    }
}
