//! Weight packing for the register-blocked form: `[tile][in block][ky][kx][lane][V][4]`, so the
//! `V` weight vectors a reduction step loads are adjacent; and the bias padded to whole blocks.

use super::{ConvJob, Tile};

/// Packs `[cout, cin_g, kh, kw]` weights for `tile` into `[tile][in block][ky][kx][lane][v][4]`,
/// zero where a channel does not exist, multiplying output channel `o` by `scale[o]` (a folded
/// batch norm).
///
/// When no padding is needed (whole blocks of input and output channels) a tile's packed data
/// is exactly as large as its source rows, so each tile is rewritten in place through a
/// per-thread scratch copy: VGG-16's 550 MB of weights need no new memory (fresh pages cost a
/// page fault per 4 KiB, most of the compile time). Tiles are shared out between `threads`.
pub(super) fn pack_weights(
    job: &ConvJob,
    tile: Tile,
    mut weights: Vec<f32>,
    scale: Option<&[f32]>,
    threads: usize,
) -> Vec<f32> {
    let (cin_g, cout) = (job.cin_g() as usize, job.cout as usize);
    let [kh, kw] = job.kernel.map(|k| k as usize);
    let cb_in = cin_g.div_ceil(4);
    let v = tile.v as usize;
    let tiles = cout.div_ceil(4) / v;
    let per_tile = cb_in * kh * kw * 4 * v * 4;
    let row = cin_g * kh * kw;
    // Writes the tile whose source rows are `src` (oc-major, `row` values each) into `dst`.
    // A blocked transpose: a slice of input channels at a time for every output channel of
    // the tile, so reads stream along rows and writes stay in a small window.
    let pack = |src: &[f32], first_oc: usize, dst: &mut [f32]| {
        const CI_CHUNK: usize = 32;
        for ci0 in (0..cin_g).step_by(CI_CHUNK) {
            for r in 0..src.len() / row {
                let (vv, j) = (r / 4, r % 4);
                let s = scale.map_or(1.0, |s| s[first_oc + r]);
                let src_row = &src[r * row..(r + 1) * row];
                for ci in ci0..(ci0 + CI_CHUNK).min(cin_g) {
                    let (icb, lane) = (ci / 4, ci % 4);
                    for ky in 0..kh {
                        for kx in 0..kw {
                            dst[((((icb * kh + ky) * kw + kx) * 4 + lane) * v + vv) * 4 + j] =
                                src_row[(ci * kh + ky) * kw + kx] * s;
                        }
                    }
                }
            }
        }
    };
    // Spawning threads costs more than packing a small layer.
    let threads = if weights.len() < 1 << 20 { 1 } else { threads.clamp(1, tiles.max(1)) };
    let chunk_tiles = tiles.div_ceil(threads).max(1);
    if cin_g % 4 == 0 && cout % (4 * v) == 0 {
        debug_assert_eq!(weights.len(), tiles * per_tile);
        let in_place = |c: usize, chunk: &mut [f32]| {
            let mut scratch = vec![0.0f32; per_tile];
            for (k, region) in chunk.chunks_mut(per_tile).enumerate() {
                scratch.copy_from_slice(region);
                pack(&scratch, (c * chunk_tiles + k) * 4 * v, region);
            }
        };
        for_each_chunk(&mut weights, chunk_tiles * per_tile, threads, &in_place);
        return weights;
    }
    let mut packed = vec![0.0f32; tiles * per_tile];
    let copy = |c: usize, chunk: &mut [f32]| {
        for (k, dst) in chunk.chunks_mut(per_tile).enumerate() {
            let first_oc = (c * chunk_tiles + k) * 4 * v;
            let last_oc = (first_oc + 4 * v).min(cout);
            pack(&weights[first_oc * row..last_oc * row], first_oc, dst);
        }
    };
    for_each_chunk(&mut packed, chunk_tiles * per_tile, threads, &copy);
    packed
}

/// Runs `f(index, chunk)` on each `chunk_len` chunk of `data`: on this thread when `threads` is
/// 1 (a thread spawn costs more than packing a small layer, and a network may have 100,000 of
/// them), else on this thread and up to `threads - 1` scoped ones.
pub(super) fn for_each_chunk(
    data: &mut [f32],
    chunk_len: usize,
    threads: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    crate::parallel::share_out(data.chunks_mut(chunk_len).enumerate(), threads, &|(c, chunk)| f(c, chunk));
}

/// Bias padded to whole blocks of 4 output channels.
pub(super) fn pad_bias(job: &ConvJob, bias: &[f32]) -> Vec<f32> {
    let mut padded = vec![0.0f32; job.cout.div_ceil(4) as usize * 4];
    padded[..bias.len()].copy_from_slice(bias);
    padded
}
