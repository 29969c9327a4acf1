//! Schedule decisions: the register tile and task order of each convolution, and whether a
//! kernel is worth splitting across threads. Kept apart from the kernels (Halide's
//! algorithm/schedule split) so that a decision can change without touching what is computed.
//!
//! The tile model (Zen3, 128-bit FMA: 2 per cycle, 4 cycles latency, 3 loads per cycle): one
//! reduction step issues `acc = TY*TX*V` FMAs and `V + TY*TX` loads, so it costs
//! `max(acc/2, loads/3, 4)` cycles, the last term being the latency of the FMA chain each
//! accumulator forms. A row of tiles also pays for its narrower remainder tile. Accumulators
//! plus weights plus one broadcast must fit in the 16 xmm registers. With V = 1 the
//! broadcast feeds one FMA, so Cranelift folds the load into `vbroadcastss mem`; with V > 1 it
//! needs a separate load and a shuffle, which competes with the FMAs for the FP pipes and is
//! charged as a full FP operation. 1x1 convolutions do not use the model: `pointwise_tile`
//! gives them fixed tiles that measured better.

use super::JitOptions;
use super::kernels::conv::{
    ConvJob, Tile, WinoTile, phase_channels, phase_kernel, plain_algorithms, split_kernels, tile_len, tiles_plane,
    winograd_forms, winograd_transform_exists,
};
use crate::ir::geometry::Shape;
use crate::ir::graph::{Network, NodeId};
use crate::ops::Op;
use std::collections::HashMap;

/// Bytes that comfortably stay in one core's L2 (Zen3: 512 KiB).
const L2_BYTES: u64 = 384 << 10;

fn step_cycles(ty: u64, tx: u64, v: u64) -> f64 {
    let acc = (ty * tx * v) as f64;
    // With V > 1 each broadcast is a load plus a shuffle on the FP pipes the FMAs use.
    // (Measured on VGG-16's 3x3 layers: 1x7 and 1x8 tiles with V = 1 ran 20-45% faster than
    // 1x6 with V = 2, although both keep 12 or fewer accumulators busy.)
    let shuffles = if v > 1 { (ty * tx) as f64 } else { 0.0 };
    ((acc + shuffles) / 2.0).max((v + ty * tx) as f64 / 3.0).max(4.0)
}

/// The cheapest legal tile for `job`, by the model above, unless `pointwise_tile` (1x1
/// convolutions) or `zen_direct_tile` gives one for `cores`.
pub(super) fn choose_tile(job: &ConvJob, cores: Cores) -> Tile {
    // Development switch for tuning: CNNC_FORCE_TILE=ty,tx,v,rows_outer (used when legal;
    // rows_outer 2 keeps the order `rows_outer` would choose).
    if let Some(mut t) = forced_tile(job) {
        t.broadcasts = broadcasts(job, t.v, cores);
        return t;
    }
    if let Some(mut tile) = pointwise_tile(job, cores).or_else(|| zen_direct_tile(job, cores)) {
        tile.rows_outer = rows_outer(job, tile);
        tile.broadcasts = broadcasts(job, tile.v, cores);
        return tile;
    }
    let cb_out = job.cout.div_ceil(4);
    let cb_out_g = if job.groups == 1 { cb_out } else { job.cout_g() / 4 };
    let (pky, pkx) = job.pool.map_or((1, 1), |(_, k)| (k[0], k[1]));
    let rows = job.oh / pky * pky;
    let cols = job.ow / pkx * pkx;
    // Reduction steps per tile: one per input channel and kernel tap.
    let steps = (job.cin_g() * job.kernel[0] * job.kernel[1]) as f64;
    let mut best: Option<(f64, Tile)> = None;
    for v in [4u64, 3, 2, 1] {
        if cb_out_g % v != 0 {
            continue;
        }
        for ty in [pky, 2 * pky] {
            if rows % ty != 0 {
                continue;
            }
            for tx in (pkx..=14).step_by(pkx as usize) {
                // Registers: with V = 1 each FMA writes into the register its input was
                // broadcast to, so acc + 1 weight + 1 broadcast <= 16 (seen in the disassembly
                // of 3x3 kernels: no spills at 14; 1x1 kernels did spill, see
                // `pointwise_tile`). With V > 1 the broadcast is reused and copied: stay at 12.
                let acc = ty * tx * v;
                if (v == 1 && acc > 14) || (v > 1 && (acc > 12 || acc + v + 1 > 15)) {
                    continue;
                }
                let full = cols / tx;
                let rem = cols % tx;
                // Each tile also loads its bias, runs the epilogue and stores: about 2 cycles
                // per accumulator, which matters when the reduction is short (3 input channels).
                let tile_cycles = |w: u64| steps * step_cycles(ty, w, v) + 2.0 * (ty * w * v) as f64;
                let per_row = full as f64 * tile_cycles(tx) + if rem > 0 { tile_cycles(rem) } else { 0.0 };
                let cost = (cb_out / v) as f64 * (rows / ty) as f64 * per_row;
                let tile = Tile { ty, tx, v, rows_outer: true, broadcasts: false };
                // Ties go to wider channel tiles (fewer re-reads of the input).
                if best.is_none_or(|(c, b)| cost < c * 0.999 || (cost <= c * 1.001 && v > b.v)) {
                    best = Some((cost, tile));
                }
            }
        }
    }
    let (_, mut tile) = best.unwrap_or((0.0, Tile { ty: pky, tx: pkx, v: 1, rows_outer: true, broadcasts: false }));
    tile.rows_outer = rows_outer(job, tile);
    tile.broadcasts = broadcasts(job, tile.v, cores);
    tile
}

/// Whether a register tile's input values are `Stmt::Broadcast`s: on Zen, in 1x1 convolutions
/// whose tiles feed each value to `v` > 1 FMAs (with one FMA the splat's load folds anyway).
/// The 1x1 inner loop then drops a `vmovss` and a shuffle per broadcast (in L1, one thread,
/// Zen 4, the loop of 2 x 2 pixels by 2 blocks: 51.0 to 54.7 GFLOP/s, against a 58.4 peak).
/// Zen 4, 2 threads, sums of each layer's minimum over 3 alternating rounds: the 1x1 layers of
/// GoogLeNet 7.81 to 7.37 ms, DenseNet-121 31.9 to 30.6, Inception-v3 28.1 to 26.8, ResNet-18
/// 0.46 to 0.44. Not for the direct tiles (12 accumulators, `zen_direct_tile`): their layers
/// took 1.10 to 1.18 times as long (ResNet-18, GoogLeNet, AlexNet).
fn broadcasts(job: &ConvJob, v: u64, cores: Cores) -> bool {
    cores == Cores::Zen && v > 1 && job.kernel == [1, 1]
}

/// The cores the schedule is tuned for. What measured best differs between AMD's Zen cores and
/// Intel's in four choices: the register tiles of 1x1 convolutions (`pointwise_tile`) and of
/// direct ones with taps (`zen_direct_tile`), Winograd's product tile, chunk size and loop
/// order (`choose_wino`), and the pixels a depthwise kernel computes together (`depthwise_pixels`);
/// everything else is chosen alike. The choice never changes results: every tile sums each
/// output in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cores {
    /// AMD Zen (measured on Zen 4).
    Zen,
    /// Intel's and every other vendor's (measured on Sapphire Rapids).
    Intel,
}

impl Cores {
    /// This machine's cores by the CPUID vendor string ("AuthenticAMD" is Zen), unless
    /// `CNNC_CORES=zen` or `CNNC_CORES=intel` says otherwise (to measure one profile on the
    /// other's machine, and to keep the scheduled-IR snapshots independent of the host).
    pub fn host() -> Cores {
        static HOST: std::sync::LazyLock<Cores> =
            std::sync::LazyLock::new(|| match std::env::var("CNNC_CORES").ok().as_deref() {
                Some("zen") => Cores::Zen,
                Some("intel") => Cores::Intel,
                _ => detect(),
            });
        *HOST
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Cores {
    // CPUID leaf 0: the vendor string in EBX, EDX, ECX.
    #[allow(unused_unsafe)]
    let id = unsafe { std::arch::x86_64::__cpuid(0) };
    let vendor: Vec<u8> = [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
    if vendor == b"AuthenticAMD" { Cores::Zen } else { Cores::Intel }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Cores {
    Cores::Intel
}

/// The register tile of a 1x1 convolution (groups 1, no fused pool), by the cores:
///
/// - **Zen**: 8 accumulators, 2 x 2 pixels by 2 blocks of 4 output channels on maps of even
///   height, 1 x 4 pixels by 2 blocks on others, when the blocks come in pairs; else as on Intel.
///   Alone, one thread, Zen 4 (`tools/tile_sweep.py`, 12 shapes of ConvNeXt-T, Inception-v3,
///   DenseNet-121, RegNetY, EfficientNet-B0 and ShuffleNetV2): the Intel tiles took 1.04 to
///   1.31 times the best tile's time on these shapes, these 1.00 to 1.04. (The wider Intel
///   tiles keep 9 or 10 accumulators and a copy of each broadcast live, since Cranelift ties an
///   FMA's result to a multiplicand; why their steps run slower on Zen 4 was not pinned down.
///   Reloading the broadcast for each FMA instead of copying it was 5 to 20% slower still.)
/// - **Intel**: 1 x 3 pixels by 3 blocks when the blocks come in multiples of 3, else 1 x 5
///   pixels by 2 blocks when they come in pairs (1 x 4 on maps narrower than 10, where 5
///   leaves a 2-pixel tile in each 7-pixel row).
/// - Either, an odd prime block count (ShuffleNetV2's 116 channels are 29 blocks): 2 x 5
///   pixels by 1 block on maps of even height. For that case the model picks 1 x 14, which
///   spills; alone, one thread, 2 x 5 took 0.102 against 0.118 ms at 116 -> 116 channels,
///   14x14, 0.196 against 0.230 at 232 -> 116, 14x14, and the same at 116 -> 116, 28x28
///   (2 x 4, 2 x 6, 1 x 10 and 1 x 12 were no better than 2 x 5). In ShuffleNetV2 its fourteen
///   such layers went from 0.84-0.86 to 0.81-0.82 ms on 2 threads (sums of minima).
///
/// The model above prefers one block of 7 to 14 pixels, because it charges each reused
/// broadcast a shuffle on the FMA pipes, and misses what decides 1x1 layers: every
/// output-channel tile streams its whole input again (no taps reuse it from L1), so a tile that
/// feeds each broadcast pixel to 2 or 3 blocks cuts that traffic to a half or a third, and 9
/// or 10 accumulators leave Cranelift's allocator room where 14 spilled up to six of them per
/// reduction step (seen in the machine code of ConvNeXt's 384 -> 1536 layer). Measured alone
/// (one `conv 1x1` per network, `cnnc bench --threads 1`, every tile of 6 to 14 accumulators
/// forced with `CNNC_FORCE_TILE`) on 23 shapes of ConvNeXt-T, MobileNetV2, EfficientNet-B0,
/// GoogLeNet, ResNet-50, ShuffleNetV2 and RegNet, Sapphire Rapids: the Intel tiles took 1.00
/// to 1.11 times the best tile's time (46.8 ms in all, the best 45.6), the model's 1.00 to
/// 1.25 (51.0).
fn pointwise_tile(job: &ConvJob, cores: Cores) -> Option<Tile> {
    if job.kernel != [1, 1] || job.groups != 1 || job.pool.is_some() {
        return None;
    }
    let blocks = job.cout.div_ceil(4);
    let narrow = if job.ow < 10 { 4 } else { 5 };
    let (ty, tx, v) = if cores == Cores::Zen && blocks % 2 == 0 {
        if job.oh % 2 == 0 { (2, 2, 2) } else { (1, 4, 2) }
    } else if blocks % 3 == 0 {
        (1, 3, 3)
    } else if blocks % 2 == 0 {
        (1, narrow, 2)
    } else if job.oh % 2 == 0 {
        (2, narrow, 1)
    } else {
        return None;
    };
    Some(Tile { ty, tx, v, rows_outer: true, broadcasts: false })
}

/// The register tile of a direct convolution with taps on Zen: 2 blocks of 4 output channels by
/// 2 x 3 pixels on maps of even height, else by 1 x 6 (12 accumulators), for groups 1, no fused
/// pool, an even block count and maps at least 10 wide (on narrower ones the model's tile was
/// as fast as any then: see below for 7 to 9). The model charges a reused broadcast a shuffle
/// on the FMA pipes and so picks one block of 7 to 14 pixels, which Zen 4 ran slower: alone,
/// one thread, every tile of 6 to 14 accumulators forced on nine shapes (ResNet's 7x7 stem and
/// stride-2 3x3s, Inception-v3's 1x7 and 7x1, GoogLeNet's 5x5, DenseNet's 3x3 at 14x14 and
/// 7x7), the model's tiles took 1.07 to 1.15 times the best tile's time where the maps are 14
/// or more wide, these 1.00 to 1.02.
///
/// Maps 7 to 9 wide take 1 x 5 pixels by 2 blocks: their remainder of 2 to 4 columns keeps 8
/// accumulators busy since remainders split their lanes (`blocked::lane_splits`). Alone, 2
/// threads, minima of 3 rounds, against the model's 1 x 7 (or 1 x 8, 1 x 9) by one block:
/// ResNet-18's layer4 stride-2 layer (7x7 output) 1179 -> 1073 us, DenseNet-121's 128 -> 32 at
/// 7x7 37.5 -> 34.7, GoogLeNet's 48 -> 128 at 7x7 56.9 -> 51.8, 128 -> 64 at 8x8 101.7 ->
/// 96.6 and at 9x9 117.1 -> 112.6; at 6x6 51.2 -> 52.6, so narrower maps keep the model's.
fn zen_direct_tile(job: &ConvJob, cores: Cores) -> Option<Tile> {
    let eligible = cores == Cores::Zen
        && job.kernel != [1, 1]
        && job.groups == 1
        && job.pool.is_none()
        && job.cout.div_ceil(4) % 2 == 0
        && job.ow >= 7;
    let (ty, tx) = if job.ow < 10 {
        (1, 5)
    } else if job.oh % 2 == 0 {
        (2, 3)
    } else {
        (1, 6)
    };
    eligible.then_some(Tile { ty, tx, v: 2, rows_outer: true, broadcasts: false })
}

/// Neighbouring output pixels a depthwise kernel computes together (`depthwise::schedule`): 4
/// on Intel (6 was no better for 3x3 and 5x5 kernels on Sapphire Rapids, 10% faster for 7x7);
/// on Zen 6, or 8 for kernels 5 or more wide. Zen 4, 2 threads, sums of the depthwise layers'
/// minima in the networks for 2, 3, 4, 6 and 8 pixels: MobileNetV2 (3x3) 0.71, 0.62, 0.59,
/// 0.54, 0.62 ms; EfficientNet-B0 (3x3 and 5x5) 2.71, 2.37, 2.15, 2.04, 1.94; ConvNeXt-T (7x7)
/// 4.31, 3.37, 2.87, 2.56, 2.27.
pub(super) fn depthwise_pixels(job: &ConvJob, cores: Cores) -> usize {
    match cores {
        Cores::Intel => 4,
        Cores::Zen if job.kernel[1] >= 5 => 8,
        Cores::Zen => 6,
    }
}

/// Scratch bytes a Winograd task keeps (transformed input tiles and products) while its 36
/// products run, by the cores.
///
/// Intel: within one core's L2 (2 MiB on Sapphire Rapids): 1 MiB, or 2 MiB when the
/// transformed weights, which every chunk of tiles reads once, pass `WINO_BIG_WEIGHTS`
/// (VGG-16 in the network, 2 threads: 1 MiB ran its 64 to 256-channel layers 10-25% faster
/// than 1.5 or 2 MiB, 2 MiB its 512-channel ones 15-25% faster than 1 MiB).
///
/// Zen: 4 MiB, beyond Zen 4's 1 MiB L2 (its L3 is 32 MiB): fewer chunks, so the transformed
/// weights stream past fewer times. VGG-16 in the network, 2 threads, every layer's budget
/// forced (`CNNC_FORCE_WINO=2,4,KiB`): per-layer minima of its nine Winograd layers at 1, 2
/// and 3 MiB summed to 122 to 126 ms, at 4 MiB to 100, at 6 and 8 MiB to 96 to 98; the peak
/// resident set of `cnnc run` grows with it (634, 638, 642, 645, 655, 658 MB), and VGG-16 must
/// stay within 1.2 times its weights (649 MB), so 4 MiB.
const WINO_SCRATCH_BYTES: [u64; 2] = [1 << 20, 2 << 20];
const WINO_SCRATCH_BYTES_ZEN: u64 = 4 << 20;
const WINO_BIG_WEIGHTS: u64 = 16 << 20;
/// A layer whose transformed weights are at most `WINO_SMALL_WEIGHTS` (each chunk re-reads
/// them, from L2) and whose transformed input tiles exceed `WINO_CACHED_TILES` (the two cores'
/// L2) takes chunks of at most its weights' size in scratch, and at least
/// `WINO_SCRATCH_SMALL`, in an even number or at least 16 (so that 2 threads share them out
/// evenly), each transforming its own tiles: the 4 MiB budget's one chunk with a shared input
/// step wrote and re-read every tile through the last-level cache and kept a chunk's
/// products beyond L2. Zen 4, 2 threads, minima of 3 or 4 alternating rounds, layer and
/// input step together: the 7x7 stride-2 stems (phase form, 262 KB of weights) of GoogLeNet
/// 1.18 -> 0.97 ms, ResNet-18 1.27 -> 1.03, DenseNet-121 1.33 -> 1.06; DenseNet-121's
/// 3x3 layers at 56x56 (128 -> 32 channels, 590 KB) 0.78-0.82 -> 0.72-0.73 ms each (0.86
/// with 9 chunks, before the even count); Inception-v3's 147x147 layers 1.66 -> 1.36 and
/// 2.67 -> 2.37; VGG-16's conv1.3 (224x224, 64 channels) 13.5 -> 12.4. ResNet-18's layer1
/// (64 channels at 56x56, 1.8 MB of tiles) keeps the shared step: with chunks of 256 or 512
/// KiB it took 0.70-0.75 ms a layer against 0.66-0.70.
const WINO_SMALL_WEIGHTS: u64 = 1 << 20;
const WINO_CACHED_TILES: u64 = 2 << 20;
const WINO_SCRATCH_SMALL: u64 = 256 << 10;
/// The most bytes of products a task of a single-chunk layer holds for 2 parts of its output
/// channels rather than 4 (`choose_wino`): half of L2.
const WINO_HALVES_PRODUCTS: u64 = 512 << 10;
/// Transformed weights may take this percentage of the weights' memory beyond the weights' own
/// in a model compiled to run one image (`JitOptions::for_images(1)`: VGG-16, 55 MB, so that
/// the peak resident set of `cnnc run` on one image stays within 1.2 times the weights file;
/// 15% gave 1.2006 times; one image does not repay larger transforms, below)...
pub(super) const WINO_MEMORY_PERCENT_ONE_IMAGE: u32 = 10;
/// ... in a model that runs many images (the default): VGG-16's 3x3 layers then all take
/// F(4x4) or F(6x6) (180 MB beyond its 59 MB of 3x3 weights; with 10%, conv4.2 and 4.3 took
/// F(2x2) and conv5 stayed direct). Zen 4, `tools/ab.py` over 4 rounds, forward min / median:
/// 149.7 / 155.9 -> 121.1 / 124.7 ms; compile 97 -> 152 ms; `cnnc run` on one image 0.32 ->
/// 0.35 s with a peak resident set of 642 -> 764 MB (1.19 -> 1.41 times the file)...
pub(super) const WINO_MEMORY_PERCENT: u32 = 50;
/// ... or this much, if more: small networks. In a model for one image, 50 MiB: ResNet-18 (47
/// MB of weights) needs 50.3 MB for all its stride-1 3x3 layers at m = 2 and 4 and 0.2 MB
/// more for its stem's phase form; with 48 MiB one of layer4's layers stayed direct (2.56
/// against 1.47 ms)...
pub(super) const WINO_MEMORY_MIN_ONE_IMAGE: u64 = 50 << 20;
/// ... and in a model for many images, 128 MiB, so that ResNet-18 (114 MB) runs every layer
/// at its preferred m: layer4's three 7x7 layers at F(4x4) stream 38 MB of transformed
/// weights each from memory, and still beat F(2x2)'s 17 MB from the last-level cache (Zen 4,
/// 2 threads, minima of 3 alternating rounds: 1.07 to 1.13 ms against 1.36 to 1.37 each;
/// forward minimum of 8 rounds 17.60 -> 16.97 ms).
pub(super) const WINO_MEMORY_MIN: u64 = 128 << 20;
/// Convolutions with fewer multiply-accumulates stay direct (`JitOptions::winograd_min_macs`):
/// Winograd's fixed costs (an input-transform step of its own, edge tiles that compute pixels
/// nobody reads) outweigh its savings there, and each such layer costs two kernels to compile.
/// Measured in the networks, 2 threads, Winograd against direct: DenseNet-121's 25 3x3 layers
/// at 14x14 (7.2M MACs) 6.0 against 4.3 ms, its 16 at 7x7 (1.8M) 1.55 against 1.11, but its 13
/// at 28x28 (28.9M) 7.2 against 8.7 ms; GoogLeNet's 3x3 layers under 8M MACs 0.83 against 0.78
/// ms in all, and at 21.7M 0.28 against 0.50 ms.
pub(super) const WINO_MIN_MACS: u64 = 10_000_000;
/// The most transformed input tiles kept in the shared workspace.
const WINO_SHARED_BYTES: u64 = 16 << 20;

/// The Winograd schedule of `job`:
/// - 2 output blocks by 5 (or 4) tiles of accumulators, or 1 by 12 when the blocks are odd; 4
///   tiles rather than 5 when 5 would leave more of the last register tile empty, and always
///   on Zen (as its 1x1 tiles, 8 accumulators ran faster than 10 there: with 8 MiB of scratch
///   for every layer, Zen 4, 2 threads, sums of the Winograd layers' minima, 5 tiles then 4:
///   DenseNet-121 9.7 and 8.4 ms, ResNet-18 18.9 and 15.6 (its 7x7 layers lose most, since 5
///   pads their 16 tiles to 20), GoogLeNet 10.1 and 8.5). Cranelift
///   ties an FMA's result to a multiplicand, so each broadcast used twice is copied first: 10
///   accumulators + 2 weights + the broadcast and its copy fit the 16 registers, where 12
///   spilled two accumulators per step (seen in the machine code; 512 channels at 28x28: 16.4
///   against 21.1 ms, 256 at 56x56: 13.8 against 16.1);
/// - the fewest chunks of tiles whose scratch fits the budget above, since each chunk reads
///   all the transformed weights once (4 times the 3x3 weights: 38 MB for 512 channels), with
///   the output channels split in parts so that there are at least 4 tasks, or, for a layer in
///   one chunk whose products for half its output channels fit `WINO_HALVES_PRODUCTS`, in 2
///   (one per thread): fewer passes over the transformed tiles and fewer output transforms
///   per pass. Zen 4, 2 threads, per-layer minima of 4 to 6 alternating rounds, 4 parts then
///   2: GoogLeNet's inception 3x3 layers at 28x28 0.547 -> 0.511 ms, at 14x14 (4a, 4b, 4e)
///   0.339 -> 0.277, 0.366 -> 0.342, 0.700 -> 0.660, at 7x7 (5a) 0.288 -> 0.268; ResNet-18's
///   layer2 0.70-0.71 -> 0.66-0.68 and layer3 0.87-0.88 -> 0.82-0.83 each, layer4 (which
///   streams its weights from memory) unchanged; AlexNet's conv3 layers 0.05-0.07 ms each;
///   ResNet-18's layer1 (903 KB of products per half) kept 4 parts, and took 0.73-0.79 ms
///   a layer with 2, against 0.70-0.72;
/// - on Zen, the products' register tiles outside their channel tiles (`WinoTile::tiles_outer`).
///   Zen 4, 2 threads, sums of each layer's minimum over 3 or 4 alternating rounds, channel
///   tiles outside then register tiles outside (both with `[xi][kt]` weight panels): VGG-16's
///   Winograd layers 103.1 then 101.4 ms, Inception-v3's 15.8 then 15.3, DenseNet-121's 8.42
///   then 8.34, GoogLeNet's 7.50 both; with `[kt][xi]` panels, ResNet-18's layer3 1.26-1.27
///   then 1.11-1.15 ms each. Intel keeps channel tiles outside (not measured).
pub(super) fn choose_wino(job: &ConvJob, m: u64, cores: Cores) -> WinoTile {
    let kb = job.cout.div_ceil(4);
    let r = job.kernel;
    let n = |a: usize| tile_len(m, r[a]) + r[a] - 1;
    let xi = n(0) * n(1);
    let (ty, tx) = job.wino_tiles(m);
    let tiles = ty * tx;
    let padded = |t: u64| (tiles.div_ceil(t) * t) as f64;
    let tw = if cores == Cores::Zen || padded(4) * 1.04 < padded(5) { 4 } else { 5 };
    let weights = xi * 4 * job.cin * kb * 4;
    let budget = match cores {
        Cores::Zen => WINO_SCRATCH_BYTES_ZEN,
        Cores::Intel => WINO_SCRATCH_BYTES[usize::from(weights > WINO_BIG_WEIGHTS)],
    };
    // Small weights, many tiles: chunks whose scratch stays in L2 (`WINO_SMALL_WEIGHTS`).
    let all_tiles = xi * 4 * job.cin * tiles;
    let small = weights <= WINO_SMALL_WEIGHTS && all_tiles > WINO_CACHED_TILES;
    let budget = if small { budget.min(weights.max(WINO_SCRATCH_SMALL)) } else { budget };
    let (mut vb, mut tw, mut budget) = if kb % 2 == 0 { (2, tw, budget) } else { (1, 12, budget) };
    if let Some([v, t, kib]) = forced_wino()
        && v > 0
        && kb % v == 0
        && t > 0
    {
        (vb, tw, budget) = (v, t, kib << 10);
    }
    let kt = kb / vb;
    let products = |nt: u64, kpp: u64| xi * 4 * nt * kpp * vb * 4;
    let forced_tasks: Option<u64> = std::env::var("CNNC_WINO_TASKS").ok().and_then(|v| v.parse().ok());
    let split = |chunks: u64, nt: u64| {
        let kparts = match forced_tasks {
            Some(want) => want.div_ceil(chunks),
            None if chunks == 1 && products(nt, kt.div_ceil(2)) <= WINO_HALVES_PRODUCTS => 2,
            None => 4u64.div_ceil(chunks),
        }
        .clamp(1, kt);
        (kparts, kt.div_ceil(kparts))
    };
    let bytes = |nt: u64, kpp: u64| xi * 4 * nt * (job.cin + kpp * vb * 4);
    // The most tiles per chunk that fit, then as many per chunk as the chunks need.
    let most = tiles.div_ceil(tw) * tw;
    let fits = (1..=most / tw).rev().map(|n| n * tw).find(|&nt| {
        let chunks = tiles.div_ceil(nt);
        let (_, kpp) = split(chunks, nt);
        bytes(nt, kpp) <= budget && (!small || chunks % 2 == 0 || chunks >= 16)
    });
    let chunks = tiles.div_ceil(fits.unwrap_or(tw));
    let nt = tiles.div_ceil(chunks).div_ceil(tw) * tw;
    let (kparts, _) = split(tiles.div_ceil(nt), nt);
    // Several parts would each transform the same tiles: transform them once, in a step of
    // their own, when all the chunks' tiles fit the shared workspace.
    let shared = kparts > 1 && xi * 4 * tiles_plane(job.cin, nt) * tiles.div_ceil(nt) <= WINO_SHARED_BYTES;
    let tiles_outer = cores == Cores::Zen;
    let broadcasts = cores == Cores::Zen && vb > 1;
    WinoTile { m, r, vb, tx: tw, nt, kparts, shared, tiles_outer, broadcasts }
}

/// The tile sizes m that Winograd may take, smallest first.
const WINO_MS: [u64; 4] = [2, 4, 5, 6];
/// The share of F(4x4)'s products that another m must save to be preferred (square kernels):
/// more points cost more in the transforms.
const WINO_OTHER_M_GAIN: f64 = 0.15;

/// Which 3x3, 5x5, 1xk and kx1 (k = 3, 5, 7) stride-1 convolutions run Winograd, and with which
/// m, under a memory budget: transformed weights take (m + r - 1)^2 / r^2 times the memory of
/// the weights (4x for m = 4, r = 3; 8/7 for F(2, 7)), so the extra memory they need is allowed
/// up to `budget` bytes (`winograd_convs`). Layers are served largest
/// output first (most multiply-adds per weight); each takes its preferred m, else a smaller one
/// that fits and has a transform (`winograd_transform_exists`: 5x5 and 1x5 kernels take m = 4
/// or 2, 1x7 m = 2), else stays direct. Along one axis the preferred m is the one with the
/// fewest products per output, edge tiles counted. F(2, 7) on Inception-v3's 26 such layers (17x17,
/// 128 to 192 channels): 160 to 166 GFLOP/s effective at best, against 103 to 110 direct.
/// Square kernels prefer m = 4 unless m = 5 or 6 needs `WINO_OTHER_M_GAIN` fewer products,
/// counting edge tiles and the tiles that pad the last register tile of 4: m = 6 from about
/// 100x100 (VGG-16's 224 and 112: 6-12% faster than m = 4; at 56x56 it saves 9%, and ran
/// slower) and at 35x35 (24%), m = 5 at 10x10 and 20x20 (55% and 22%). Not at 14x14: F(5x5)'s
/// 9 tiles pad to 12 and need 2% more products than F(4x4)'s 16, and ran 4-10% slower
/// (GoogLeNet's inception4a-e and ResNet-18's layer3, Zen 4, minima of 3 alternating rounds,
/// before the padding was counted). Small maps take m = 4 too: at 7x7 and 8x8, 4x4 tiles
/// waste a third of their outputs, and their transformed weights may not stay in the
/// last-level cache from image to image, yet they ran
/// faster than m = 2 wherever measured (Zen 4, minima of 3 or 4 alternating rounds, m = 2 then
/// 4: GoogLeNet's inception5a/b 3x3 layers at 7x7 0.35 -> 0.28 and 0.48 -> 0.36 ms,
/// Inception-v3's mixed7.2 and 7.3 3x3 at 8x8 0.96 -> 0.81 and 0.97 -> 0.96 ms, ResNet-18's
/// layer4, 38 MB of transformed weights each, 1.36 -> 1.10 ms).
///
/// A layer takes its preferred m only if what the budget has left still covers the cheapest
/// transform of every layer after it; so a tight budget lowers m where it must rather than
/// leaving later layers direct (VGG-16's conv4 and conv5 in a model for one image: all F(2x2),
/// where taking F(4x4) first left conv5 direct).
/// `CNNC_WINO_M` forces m (for measurement).
fn winograd_plan(net: &Network, shapes: &[Shape], min_macs: u64, mut budget: u64) -> HashMap<NodeId, u64> {
    let forced: Option<u64> =
        std::env::var("CNNC_WINO_M").ok().and_then(|v| v.parse().ok()).filter(|m| WINO_MS.contains(m));
    let mut layers: Vec<(NodeId, [u64; 2], [u64; 2])> = Vec::new();
    let mut plan = HashMap::new();
    // A pool fused into a convolution's epilogue must tile its output tiles (`ConvJob::winograd`).
    let views = crate::analysis::fusion::Views::of(net, shapes);
    let groups = crate::analysis::fusion::fuse(net, shapes, &views);
    let pools: HashMap<NodeId, [u64; 2]> = groups
        .iter()
        .filter_map(|g| match (&net.nodes[g.anchor()].op, &net.nodes[g.output].op) {
            (Op::Conv(_), Op::Pool(p)) => Some((g.anchor(), p.kernel)),
            _ => None,
        })
        .collect();
    // A split strided convolution sums its phases through the residual sum of its epilogue,
    // which has room for one: none with a residual sum of its own, nor a pool.
    let unsplittable: std::collections::HashSet<NodeId> = groups
        .iter()
        .filter(|g| g.nodes.iter().any(|&n| matches!(net.nodes[n].op, Op::Add(_) | Op::Pool(_))))
        .map(|g| g.anchor())
        .collect();
    let mut splits: Vec<(NodeId, u64)> = Vec::new();
    let pool_fits = |id: NodeId, m: u64, r: [u64; 2]| {
        pools.get(&id).is_none_or(|k| (0..2).all(|a| k[a] <= 2 && tile_len(m, r[a]) % k[a] == 0))
    };
    let takes = |id: NodeId, m: u64, r: [u64; 2]| winograd_transform_exists(m, r) && pool_fits(id, m, r);
    for (id, node) in net.nodes.iter().enumerate() {
        let Op::Conv(c) = &node.op else { continue };
        let (Some(&input), Shape::Map { h: oh, w: ow, .. }) = (node.inputs.first(), shapes[id]) else { continue };
        let cin = shapes[input].channels();
        let r = c.kernel;
        let eligible = WINO_MS.iter().any(|&m| takes(id, m, r))
            && c.stride == [1, 1]
            && c.dilation == [1, 1]
            && c.groups == 1
            && c.pad[0] < r[0]
            && c.pad[1] < r[1]
            && cin % 4 == 0
            && cin >= 16
            && c.out_channels >= 16
            && oh >= 4
            && ow >= 4
            && [oh, ow, cin, c.out_channels, r[0], r[1]].into_iter().fold(1u64, u64::saturating_mul) >= min_macs;
        if eligible {
            layers.push((id, [oh, ow], r));
        } else if let Some(m) = phase_winograd(c, cin, [oh, ow], min_macs).filter(|&m| pool_fits(id, m, r)) {
            let extra = winograd_extra_bytes(net, shapes, id, m);
            if extra <= budget {
                budget -= extra;
                plan.insert(id, m);
            }
        } else if let Some(m) = split_winograd(c, cin, [oh, ow], min_macs).filter(|_| !unsplittable.contains(&id)) {
            splits.push((id, m));
        }
    }
    layers.sort_by_key(|&(id, [oh, ow], _)| (std::cmp::Reverse(oh * ow), id));
    let extra = |id: NodeId, m: u64| winograd_extra_bytes(net, shapes, id, m);
    let cheapest = |id: NodeId, r: [u64; 2]| {
        WINO_MS.into_iter().filter(|&m| takes(id, m, r)).map(|m| extra(id, m)).min().unwrap_or(0)
    };
    // What each layer needs at least, so that the layers before it leave it that much.
    let need: Vec<u64> = layers.iter().map(|&(id, _, r)| cheapest(id, r)).collect();
    for (i, &(id, [oh, ow], r)) in layers.iter().enumerate() {
        let after = need[i + 1..].iter().fold(0u64, |a, &b| a.saturating_add(b));
        // Products per output along an axis of `len` outputs, edge tiles counted.
        let cost = |m: u64, len: u64, k: u64| (m + k - 1) as f64 / len as f64 * len.div_ceil(m) as f64;
        let preferred = forced.unwrap_or(match r {
            // Along one axis: the fewest (Inception-v3's 1x3 on 8 columns: m = 4, 0.32 ms,
            // against 0.39 with m = 2 and 0.42 with m = 6).
            [1, k] | [k, 1] => {
                let len = if r[0] == 1 { ow } else { oh };
                [2, 4, 6]
                    .into_iter()
                    .filter(|&m| winograd_transform_exists(m, r))
                    .min_by(|&a, &b| cost(a, len, k).total_cmp(&cost(b, len, k)))
                    .unwrap_or(2)
            }
            // Square kernels: m = 4 unless another saves `WINO_OTHER_M_GAIN` of its products,
            // counting the tiles that pad the last register tile of 4.
            _ => {
                let products = |m: u64| {
                    let n = |a: usize| (m + r[a] - 1) as f64;
                    let tiles = oh.div_ceil(m) * ow.div_ceil(m);
                    (tiles.div_ceil(4) * 4) as f64 * n(0) * n(1)
                };
                WINO_MS
                    .into_iter()
                    .filter(|&m| m > 2 && winograd_transform_exists(m, r))
                    .filter(|&m| m == 4 || products(m) <= products(4) * (1.0 - WINO_OTHER_M_GAIN))
                    .min_by(|&a, &b| products(a).total_cmp(&products(b)))
                    .unwrap_or(4)
            }
        });
        let usable = |m: &u64| *m <= preferred && takes(id, *m, r);
        let chosen = WINO_MS
            .into_iter()
            .rev()
            .filter(usable)
            .find(|&m| extra(id, m).saturating_add(after) <= budget)
            .or_else(|| WINO_MS.into_iter().rev().filter(usable).find(|&m| extra(id, m) <= budget));
        if let Some(m) = chosen {
            budget -= extra(id, m);
            plan.insert(id, m);
        }
    }
    // Split strided convolutions last, in network order, from what the others left.
    for (id, m) in splits {
        let extra = extra(id, m);
        if extra <= budget {
            budget -= extra;
            plan.insert(id, m);
        }
    }
    plan
}

/// The convolutions that run Winograd and their tile size (`schedule::winograd_plan`), none
/// under `CNNC_ALGO=direct`; none with fewer than the options' `winograd_min_macs`
/// multiply-accumulates. Their memory budget is the options' percentage of the network's
/// weights, or their floor if more.
pub(super) fn winograd_convs(net: &Network, shapes: &[Shape], o: &JitOptions) -> HashMap<NodeId, u64> {
    if plain_algorithms() {
        return HashMap::new();
    }
    let params: u64 = crate::analysis::params::param_specs(net, shapes).iter().map(|p| p.elements() as u64).sum();
    let budget = (params * 4).saturating_mul(u64::from(o.winograd_memory_percent)) / 100;
    winograd_plan(net, shapes, o.winograd_min_macs, budget.max(o.winograd_memory_min))
}

/// Winograd's memory beyond the weights (for the memory budget, before anything is allocated):
/// the transformed weights' extra (`winograd_extra_bytes` of each layer that takes it), and an
/// allowance for the shared workspace (at most 16 MB) and the per-thread scratch (the larger
/// budget of either core profile, 4 MB, for up to 8 threads). Of the default options, whose
/// budget is the larger.
pub(super) fn winograd_bytes(net: &Network, shapes: &[Shape]) -> u64 {
    let plan = winograd_convs(net, shapes, &JitOptions::default());
    if plan.is_empty() {
        return 0;
    }
    let extra: u64 =
        plan.iter().map(|(&id, &m)| winograd_extra_bytes(net, shapes, id, m)).fold(0u64, u64::saturating_add);
    let scratch = WINO_SCRATCH_BYTES_ZEN.max(WINO_SCRATCH_BYTES[1]);
    extra.saturating_add(WINO_SHARED_BYTES + 8 * scratch)
}

/// The bytes by which the conv `id`'s transformed weights for F(m x m, r x r) exceed its r x r
/// weights: (n^2 - r^2) / r^2 times them, n = m + r - 1 (for 3x3 kernels 3 times them with
/// m = 4, 6.1 times with m = 6; for 5x5 ones 1.56 times with m = 4). A strided convolution's
/// are those of its phase form (`phase_kernel`: s^2 times the input blocks).
fn winograd_extra_bytes(net: &Network, shapes: &[Shape], id: NodeId, m: u64) -> u64 {
    let Op::Conv(c) = &net.nodes[id].op else { return 0 };
    let cin = net.nodes[id].inputs.first().map_or(0, |&i| shapes[i].channels());
    // Its own kernel, its phase form's over s^2 times the input blocks, or its phases' (each
    // with its own taps, over the input's channels).
    let (forms, s) = winograd_forms(c.kernel, c.stride, c.pad, c.dilation, m);
    let cin_r = if s > 1 && forms.len() == 1 { phase_channels(cin, s) } else { cin };
    let positions: u64 = forms.iter().map(|(r, _)| r.iter().map(|&r| tile_len(m, r) + r - 1).product::<u64>()).sum();
    let transformed = positions.saturating_mul(cin_r).saturating_mul(c.out_channels).saturating_mul(4);
    let weights = cin.saturating_mul(c.out_channels).saturating_mul(c.kernel[0] * c.kernel[1] * 4);
    transformed.saturating_sub(weights)
}

/// Products per output pixel and input channel pair of direct convolution over those of
/// Winograd over the phases, below which a strided convolution stays direct: Winograd's
/// products run at about 60% of the direct kernel's rate (ResNet-18's F(4x4, 3x3) layers, 238
/// GFLOP/s effective for 4 times fewer products, against 101 direct).
const PHASE_MIN_GAIN: f64 = 2.0;

/// The m with which a strided convolution runs Winograd over the phases of its input
/// (`ConvJob::phase_form`), if its phase form has a transform and saves at least
/// `PHASE_MIN_GAIN` of the products: 7x7 stride-2 stems (ResNet-18, GoogLeNet, DenseNet-121:
/// 4x4 over 4 phases of 3 channels in one block each, F(5x5, 4x4): 64 x 16 / 25 products per
/// output against 49 x 3) and AlexNet's 11x11 stride-4 conv1 (F(5x5, 4x4) over 16 phases).
/// Not 3x3 stride-2 kernels, whose 2x2 phase form saves 1.7 times at best, with F(7x7, 2x2)
/// on maps of 14 or 28 (whole tiles, in whole register tiles of 4); the transformed weights
/// take 28 times the direct ones, and streaming them undoes the saving at batch 1: ResNet-18's
/// layer2 and layer3 stride-2 convolutions (28x28 and 14x14 outputs) took 1.21 and 1.28 ms in
/// the network against 1.18 and 1.24 direct, though 0.71 and 0.81 against 1.10 and 1.08
/// alone, with their 8 and 34 MB of weights in the cache (Zen 4, 2 threads, minima of 2
/// alternating rounds). (The count takes every lane of the phase form's blocks, though the
/// products skip a 3-channel image's zero lanes: a conservative estimate.) Strided convolutions are served from the budget first, in
/// network order: their transformed weights are small (the stems': 0.2 MB).
fn phase_winograd(c: &crate::ops::Conv, cin: u64, [oh, ow]: [u64; 2], min_macs: u64) -> Option<u64> {
    let (r, _) = phase_kernel(c.kernel, c.stride, c.pad, c.dilation)?;
    let cin_r = phase_channels(cin, c.stride[0]);
    let macs = [oh, ow, cin, c.out_channels, c.kernel[0], c.kernel[1]].into_iter().fold(1u64, u64::saturating_mul);
    if c.groups != 1 || c.out_channels < 16 || oh < 4 || ow < 4 || macs < min_macs {
        return None;
    }
    // Products per output pixel and channel pair, edge tiles counted.
    let cost = |m: u64| {
        let axis = |len: u64, r: u64| (m + r - 1) as f64 * len.div_ceil(m) as f64 / len as f64;
        axis(oh, r[0]) * axis(ow, r[1]) * cin_r as f64
    };
    let direct = c.kernel[0].saturating_mul(c.kernel[1]).saturating_mul(cin) as f64;
    (2..=7)
        .filter(|&m| winograd_transform_exists(m, r))
        .min_by(|&a, &b| cost(a).total_cmp(&cost(b)))
        .filter(|&m| direct >= PHASE_MIN_GAIN * cost(m))
}

/// Products per output pixel and channel pair of direct convolution over those of its phases'
/// Winograd (`split_winograd`) below which a strided convolution stays direct. Inception-v3's
/// 3x3 stride-2 layers with 8x8 outputs need 1.29 (m = 3) to 1.44 (m = 5) times fewer, and
/// split ran faster in the network: 0.77 -> 0.62 to 0.65 ms and 0.47 -> 0.39 to 0.41 (Zen 4,
/// 2 threads, per-layer minima of 3 alternating rounds, its four steps and their input steps
/// together). ResNet-18's layer4 (7x7 outputs: 1.14 at best) stays direct.
const SPLIT_MIN_GAIN: f64 = 1.25;

/// The m with which a strided convolution runs Winograd over its phases one at a time, each
/// with its own taps (`split_kernels`: 3x3 stride-2 kernels, whose phase form would pad every
/// phase to 2x2), where its phase form has no transform: the m of 3, 5, 6 or 7 with the fewest
/// products per output, edge tiles and the tiles that pad the last register tile of 4
/// counted, if it saves `SPLIT_MIN_GAIN` of the direct products. `CNNC_SPLIT_M` forces m, or
/// with 0 keeps them direct (for measurement). Zen 4, 2 threads, per-layer minima of 3 or 4
/// alternating rounds: ResNet-18's layer2 and layer3 stride-2 layers 1.09 and 1.16 ms direct,
/// 0.79 and 0.79 with m = 7 (whole tiles at 28x28 and 14x14), 0.86 and 0.88 with m = 5, 0.93
/// and 0.90 with m = 3; Inception-v3's 288 -> 384 layer (17x17 outputs) 5.45 direct, 3.77
/// with m = 6, 3.79 with m = 3.
fn split_winograd(c: &crate::ops::Conv, cin: u64, [oh, ow]: [u64; 2], min_macs: u64) -> Option<u64> {
    let phases = split_kernels(c.kernel, c.stride, c.pad, c.dilation)?;
    let macs = [oh, ow, cin, c.out_channels, c.kernel[0], c.kernel[1]].into_iter().fold(1u64, u64::saturating_mul);
    let form = phase_kernel(c.kernel, c.stride, c.pad, c.dilation);
    let has_phase_form = |m: u64| form.is_some_and(|(r, _)| winograd_transform_exists(m, r));
    if c.groups != 1 || !cin.is_multiple_of(4) || cin < 16 || c.out_channels < 16 || oh < 4 || ow < 4 || macs < min_macs
    {
        return None;
    }
    let forced: Option<u64> = std::env::var("CNNC_SPLIT_M").ok().and_then(|v| v.parse().ok());
    // Products per output pixel and channel pair.
    let cost = |m: u64| {
        let products: u64 = phases
            .iter()
            .map(|p| {
                let tile = |a: usize| tile_len(m, p.kernel[a]);
                let tiles = oh.div_ceil(tile(0)) * ow.div_ceil(tile(1));
                let n: u64 = (0..2).map(|a| tile(a) + p.kernel[a] - 1).product();
                tiles.div_ceil(4) * 4 * n
            })
            .sum();
        products as f64 / (oh * ow) as f64
    };
    let direct = (c.kernel[0] * c.kernel[1]) as f64;
    let ms = [3u64, 5, 6, 7].into_iter().filter(|&m| !has_phase_form(m));
    match forced {
        Some(m) => ms.into_iter().find(|&x| x == m),
        None => ms.min_by(|&a, &b| cost(a).total_cmp(&cost(b))).filter(|&m| direct >= SPLIT_MIN_GAIN * cost(m)),
    }
}

/// Development switch for tuning: CNNC_FORCE_WINO=vb,tx,KiB of tiles per task.
fn forced_wino() -> Option<[u64; 3]> {
    let text = std::env::var("CNNC_FORCE_WINO").ok()?;
    let v: Vec<u64> = text.split(',').map(|x| x.trim().parse().ok()).collect::<Option<_>>()?;
    v.try_into().ok()
}

/// Task order by memory traffic beyond L2: rows outermost re-reads all weights once per row
/// tile unless they fit in L2; channel tiles outermost re-read the input once per tile unless
/// it fits.
fn rows_outer(job: &ConvJob, tile: Tile) -> bool {
    let weights = job.cout * job.cin_g() * job.kernel[0] * job.kernel[1] * 4;
    let input = job.cin * (job.h + 2 * job.pad[0]) * (job.w + 2 * job.pad[1]) * 4;
    let row_tiles = (job.oh / tile.ty).max(1);
    let oc_tiles = job.cout.div_ceil(4) / tile.v;
    let by_rows = input + if weights <= L2_BYTES { weights } else { weights * row_tiles };
    let by_channels = weights + if input <= L2_BYTES { input } else { input * oc_tiles };
    by_rows <= by_channels
}

/// Whether a kernel is worth splitting across threads: it has several tasks and enough work
/// (in multiply-accumulates, or their equivalent from `streamed`) to pay for waking the other
/// threads (~5 us).
pub(super) fn worth_parallel(tasks: i64, work: u64) -> bool {
    tasks >= 2 && work >= 100_000
}

/// Multiply-accumulates that take as long as streaming one value through a memory-bound pass
/// (read, a few vector operations, written): 0.46 ns per value against 0.04 ns per MAC on one
/// Zen 4 thread (a standalone bn + relu over 1024x7x7 values in L2: 23.2 us).
const MACS_PER_VALUE: u64 = 8;

/// The work of a pass that streams `values` through memory (copies, elementwise passes,
/// shuffles, fc weights), in multiply-accumulates for `worth_parallel`.
pub(super) fn streamed(values: u64) -> u64 {
    values.saturating_mul(MACS_PER_VALUE)
}

fn forced_tile(job: &ConvJob) -> Option<Tile> {
    let text = std::env::var("CNNC_FORCE_TILE").ok()?;
    let v: Vec<u64> = text.split(',').map(|x| x.trim().parse().ok()).collect::<Option<_>>()?;
    let &[ty, tx, vv, outer] = v.as_slice() else { return None };
    let (pky, pkx) = job.pool.map_or((1, 1), |(_, k)| (k[0], k[1]));
    let cb_out_g = if job.groups == 1 { job.cout.div_ceil(4) } else { job.cout_g() / 4 };
    let legal = ty > 0
        && tx > 0
        && vv > 0
        && cb_out_g % vv == 0
        && ty % pky == 0
        && tx % pkx == 0
        && (job.oh / pky * pky) % ty == 0;
    let mut tile = Tile { ty, tx, v: vv, rows_outer: outer == 1, broadcasts: false };
    if outer == 2 {
        tile.rows_outer = rows_outer(job, tile);
    }
    legal.then_some(tile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::jit::ir::Layout;

    /// Five 3x3 layers of 512 channels, two at 28x28 and three at 14x14, as in VGG-16's conv4
    /// and conv5 stages, planned below against VGG-16's 553 MB of weights.
    fn vgg_tail() -> (Network, Vec<Shape>) {
        let src = "network tail\ninput 512x28x28\nconv 3x3 512 pad 1\nconv 3x3 512 pad 1\nmaxpool 2\n\
                   conv 3x3 512 pad 1\nconv 3x3 512 pad 1\nconv 3x3 512 pad 1\n";
        let report = crate::analysis::check::check_source(src, "tail", None);
        let checked = report.checked.expect("a clean check");
        (checked.network, checked.shapes)
    }

    /// The plan's tile sizes, sorted, under the budget that `options` give `weights` bytes of
    /// weights.
    fn plan_of(net: &Network, shapes: &[Shape], weights: u64, options: JitOptions) -> Vec<u64> {
        let budget = (weights * u64::from(options.winograd_memory_percent) / 100).max(options.winograd_memory_min);
        let mut m: Vec<u64> = winograd_plan(net, shapes, WINO_MIN_MACS, budget).into_values().collect();
        m.sort_unstable();
        m
    }

    /// 3x3 stride-2 convolutions split by phase where that saves `SPLIT_MIN_GAIN` of the
    /// products: F(7x7, 2x2) and its one-axis forms at 28x28 and 14x14 (whole tiles); not at
    /// 7x7 (1.14 times fewer at best), nor one whose epilogue has a residual sum of its own.
    #[test]
    fn strided_3x3_convolutions_split_by_phase_where_that_saves_products() {
        let src = "network s\ninput 64x112x112\n\
                   residual { conv 3x3 64 stride 2 } shortcut { conv 1x1 64 stride 2 }\n\
                   conv 3x3 128 stride 2 nobias\nbn\nrelu\n\
                   conv 3x3 256 stride 2 nobias\nbn\nrelu\nconv 3x3 512 stride 2 relu\n";
        let report = crate::analysis::check::check_source(src, "s", None);
        let checked = report.checked.expect("a clean check");
        let (net, shapes) = (&checked.network, &checked.shapes);
        let plan = winograd_plan(net, shapes, WINO_MIN_MACS, u64::MAX / 4);
        let strided: Vec<Option<u64>> = (0..net.nodes.len())
            .filter(|&id| matches!(&net.nodes[id].op, Op::Conv(c) if c.stride == [2, 2] && c.kernel == [3, 3]))
            .map(|id| plan.get(&id).copied())
            .collect();
        assert_eq!(strided, [None, Some(7), Some(7), None]);
    }

    #[test]
    fn a_model_for_one_image_takes_the_smaller_winograd_budget() {
        let (net, shapes) = vgg_tail();
        let vgg_weights = 553_433_048;
        // Many images: every layer F(4x4) (142 MB beyond the 3x3 weights, within 50%).
        assert_eq!(plan_of(&net, &shapes, vgg_weights, JitOptions::default()), [4, 4, 4, 4, 4]);
        // One image: 55 MB. F(4x4) for the first 28x28 layer (28 MB) would leave too little
        // for F(2x2) in the other four (7 MB each), so all five take F(2x2).
        assert_eq!(plan_of(&net, &shapes, vgg_weights, JitOptions::for_images(1)), [2, 2, 2, 2, 2]);
        assert_eq!(JitOptions::for_images(1).winograd_memory_percent, WINO_MEMORY_PERCENT_ONE_IMAGE);
        assert_eq!(JitOptions::for_images(2), JitOptions::default());
    }

    #[test]
    fn small_networks_take_the_floor_and_small_maps_take_f4() {
        // ResNet-18's layer4: three 3x3 layers of 512 channels at 7x7, 28 MB beyond their
        // weights each with F(4x4), 7 MB with F(2x2); 28 MB of weights in all.
        let src = "network l4\ninput 512x7x7\nconv 3x3 512 pad 1\nconv 3x3 512 pad 1\nconv 3x3 512 pad 1\n";
        let checked = crate::analysis::check::check_source(src, "l4", None).checked.expect("a clean check");
        let (net, shapes) = (checked.network, checked.shapes);
        let weights = 3 * 512 * 512 * 9 * 4;
        assert_eq!(plan_of(&net, &shapes, weights, JitOptions::default()), [4, 4, 4]);
        // 50 MiB: F(4x4) for the first leaves room for F(2x2) in the others, and no more.
        assert_eq!(plan_of(&net, &shapes, weights, JitOptions::for_images(1)), [2, 2, 4]);
    }

    /// A 3x3 stride-1 convolution at `hw` x `hw`, padding 1, input and output blocked with a
    /// halo of 1.
    fn conv3x3(cin: u64, cout: u64, hw: u64) -> ConvJob {
        let blocked = |c| Layout::Blocked { c, h: hw, w: hw, halo: [1, 1], channel_offset: 0 };
        ConvJob {
            name: "c".into(),
            cin,
            h: hw,
            w: hw,
            cout,
            oh: hw,
            ow: hw,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
            epilogue: Vec::new(),
            pool: None,
            in_layout: blocked(cin),
            out_layout: blocked(cout),
            shortcut_layout: None,
            phases: 1,
            phase: None,
            lanes: 4,
        }
    }

    #[test]
    fn small_weights_over_many_tiles_take_chunks_that_stay_in_l2() {
        let scratch = |wt: &WinoTile, cin: u64, cout: u64| {
            let kpp = (cout / 4 / wt.vb).div_ceil(wt.kparts);
            36 * 4 * wt.nt * (cin + kpp * wt.vb * 4)
        };
        // DenseNet-121's 3x3 layers at 56x56: 590 KB of weights, 3.6 MB of tiles. 24 tiles
        // would fit 590 KB but leave 9 chunks; 20 leave 10.
        let wt = choose_wino(&conv3x3(128, 32, 56), 4, Cores::Zen);
        assert_eq!((wt.nt, wt.kparts, wt.shared), (20, 1, false));
        assert!(scratch(&wt, 128, 32) <= 36 * 4 * 128 * 32);
        // ResNet-18's layer1: 1.8 MB of tiles, which the two L2s hold: one chunk, the input
        // transformed once in a step of its own for the output-channel parts.
        let wt = choose_wino(&conv3x3(64, 64, 56), 4, Cores::Zen);
        assert_eq!((wt.nt, wt.shared), (196, true));
        // 9.4 MB of weights: few chunks, since each re-reads them.
        let wt = choose_wino(&conv3x3(256, 256, 56), 4, Cores::Zen);
        assert!(wt.nt >= 64, "{wt:?}");
    }

    #[test]
    fn one_chunk_splits_its_channels_in_two_where_half_the_products_fit_l2() {
        // GoogLeNet's inception4c (14x14, 128 -> 256): 16 tiles, 295 KB of products per half.
        let wt = choose_wino(&conv3x3(128, 256, 14), 4, Cores::Zen);
        assert_eq!((wt.nt, wt.kparts, wt.shared), (16, 2, true));
        // ResNet-18's layer1 (56x56, 64 -> 64): 903 KB per half, so 4 parts.
        let wt = choose_wino(&conv3x3(64, 64, 56), 4, Cores::Zen);
        assert_eq!((wt.nt, wt.kparts), (196, 4));
        // Several chunks take 4 tasks in all, as before.
        let wt = choose_wino(&conv3x3(256, 256, 56), 4, Cores::Zen);
        assert!(wt.kparts * 196u64.div_ceil(wt.nt) >= 4, "{wt:?}");
    }

    #[test]
    fn odd_maps_take_other_tiles_unless_a_fused_pool_needs_even_ones() {
        let plan = |src: &str| {
            let checked = crate::analysis::check::check_source(src, "p", None).checked.expect("a clean check");
            plan_of(&checked.network, &checked.shapes, 1 << 20, JitOptions::default())
        };
        // 10x10: 4 tiles of 5x5 against 9 of 4x4, padded to 12.
        assert_eq!(plan("network p\ninput 256x10x10\nconv 3x3 256 pad 1\n"), [5]);
        assert_eq!(plan("network p\ninput 256x10x10\nconv 3x3 256 pad 1 relu\nmaxpool 2\n"), [4]);
        // 14x14: F(5x5)'s 9 tiles pad to 12, 2% more products than F(4x4)'s 16.
        assert_eq!(plan("network p\ninput 256x14x14\nconv 3x3 256 pad 1\n"), [4]);
        // 28x28: F(5x5) needs as many products as F(4x4), and F(6x6) saves 9%: F(4x4).
        assert_eq!(plan("network p\ninput 64x28x28\nconv 3x3 64 pad 1\n"), [4]);
        // 35x35: F(6x6) saves 24%.
        assert_eq!(plan("network p\ninput 64x35x35\nconv 3x3 96 pad 1\n"), [6]);
        // A 3x3 pool fused (kernel = stride) leaves no tile that fits: direct.
        assert_eq!(plan("network p\ninput 64x30x30\nconv 3x3 64 pad 1\nmaxpool 3\n"), Vec::<u64>::new());
    }
}
