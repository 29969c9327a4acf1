//! The transforms of Winograd F(m x m, r x r): the matrices, their 1-D form as loop IR (those of
//! 6 points factored by hand), and the weight transform `G g G^T` with the packing the products
//! read.

use super::super::super::ir::*;
use super::ConvJob;
use super::winograd::WinoTile;

fn k(c: f32) -> FExpr {
    splat(fc(c))
}

/// A matrix by rows.
type Matrix = Vec<Vec<f64>>;

/// A 1-D transform as loop IR: values in, values out.
pub(super) type Transform<'a> = &'a dyn Fn(&[VarId], &[VarId]) -> Vec<Stmt>;

/// The points of the n-point transforms (n = 4, 6, 7, 8; the point at infinity is the last), the
/// scale of each finite point's row of `G`, and the sign of the point at infinity in `A^T`.
/// A finite point p's scale is 1 / prod_{q != p} (p - q) over the other finite points (up to
/// sign), so that its row of `B^T`, the inverse of the matrix of `s_p p^t`, has the leading
/// coefficient 1.
fn points(n: usize) -> (&'static [f64], &'static [f64], f64) {
    match n {
        4 => (&[0., 1., -1.], &[1., 0.5, 0.5], -1.0),
        6 => (&[0., 1., -1., 2., -2.], &[1. / 4., -1. / 6., -1. / 6., 1. / 24., 1. / 24.], 1.0),
        7 => (&[0., 1., -1., 0.5, -0.5, 2.], &[-2., -2. / 3., -2. / 9., 16. / 9., 16. / 15., 2. / 45.], 1.0),
        _ => (
            &[0., 1., -1., 2., -2., 0.5, -0.5],
            &[1., -2. / 9., -2. / 9., 1. / 90., 1. / 90., 32. / 45., 32. / 45.],
            1.0,
        ),
    }
}

/// The transforms of F(m, r) (and so of F(m x m, r x r)) for n = m + r - 1 = 4, 6, 7 or 8 points:
/// `B^T` (n x n), `G` (n x r), `A^T` (m x n). The points are 0, +-1 (n = 4), 0, +-1, +-2 (n = 6),
/// 0, +-1, +-1/2, 2 (n = 7: F(5, 3); of the six sets of 0, +-1, +-2, +-1/2 minus one point, the
/// one whose F(5x5, 3x3) over 64 channels of normal values erred least in f32, 5.5e-6 of the
/// largest output against 4.3e-6 for F(4x4) and 9.2e-6 for F(6x6)) and 0, +-1, +-2, +-1/2
/// (n = 8), with the point at infinity; `B^T` depends only on them, `G`
/// evaluates the kernel's polynomial at each point (`G[p][k] = s_p x_p^k`, the scales `s_p`
/// balancing `B^T`'s) and `A^T` the output's (`A^T[i][p] = x_p^i`). Checked against direct
/// correlation for every (m, r) the schedule uses (`tests::transforms_compute_correlations`).
pub(super) fn matrices(m: u64, r: u64) -> (Matrix, Matrix, Matrix) {
    let (m, r) = (m as usize, r as usize);
    let n = m + r - 1;
    if n == 1 {
        // An axis the kernel does not span: the identity.
        return (vec![vec![1.0]], vec![vec![1.0]], vec![vec![1.0]]);
    }
    let rows = |r: &[&[f64]]| r.iter().map(|x| x.to_vec()).collect::<Vec<_>>();
    let bt = match n {
        4 => rows(&[&[1., 0., -1., 0.], &[0., 1., 1., 0.], &[0., -1., 1., 0.], &[0., 1., 0., -1.]]),
        6 => rows(&[
            &[4., 0., -5., 0., 1., 0.],
            &[0., -4., -4., 1., 1., 0.],
            &[0., 4., -4., -1., 1., 0.],
            &[0., -2., -1., 2., 1., 0.],
            &[0., 2., -1., -2., 1., 0.],
            &[0., 4., 0., -5., 0., 1.],
        ]),
        7 => rows(&[
            &[-0.5, 0.25, 2.5, -1.25, -2., 1., 0.],
            &[0., 0.5, 0.25, -2.25, -1., 1., 0.],
            &[0., -0.5, 0.75, 1.75, -3., 1., 0.],
            &[0., 1., 1.5, -2., -1.5, 1., 0.],
            &[0., -1., 2.5, 0., -2.5, 1., 0.],
            &[0., 0.25, 0., -1.25, 0., 1., 0.],
            &[0., -0.5, 0.25, 2.5, -1.25, -2., 1.],
        ]),
        8 => rows(&[
            &[1., 0., -21. / 4., 0., 21. / 4., 0., -1., 0.],
            &[0., 1., 1., -17. / 4., -17. / 4., 1., 1., 0.],
            &[0., -1., 1., 17. / 4., -17. / 4., -1., 1., 0.],
            &[0., 0.5, 0.25, -2.5, -1.25, 2., 1., 0.],
            &[0., -0.5, 0.25, 2.5, -1.25, -2., 1., 0.],
            &[0., 2., 4., -2.5, -5., 0.5, 1., 0.],
            &[0., -2., 4., 2.5, -5., -0.5, 1., 0.],
            &[0., -1., 0., 21. / 4., 0., -21. / 4., 0., 1.],
        ]),
        _ => unreachable!("Winograd transforms of {n} points"),
    };
    let (xs, scales, infinity) = points(n);
    let mut g: Vec<Vec<f64>> =
        xs.iter().zip(scales).map(|(&x, &s)| (0..r).map(|k| s * x.powi(k as i32)).collect()).collect();
    g.push((0..r).map(|k| if k + 1 == r { 1.0 } else { 0.0 }).collect());
    let at = (0..m)
        .map(|i| {
            let mut row: Vec<f64> = xs.iter().map(|&x| x.powi(i as i32)).collect();
            row.push(if i + 1 == m { infinity } else { 0.0 });
            row
        })
        .collect();
    (bt, g, at)
}

/// A separable 2-D transform `M_h x M_w^T` of nh x nw values, by `M_h` (rh rows, down each
/// column: `transforms[0]`, one column in, rh values out) then `M_w` (rw rows, along each row:
/// `transforms[1]`): columns into `tmp` (`tmp[i * nw + j]`, i < rh), then rows into
/// `out[i * nw + j]` (i < rh, j < rw), `after_row(i, row)` following each row. Column `j`'s
/// values are set into `col` by `load_col(j)` just before its transform, so that only one
/// column, the rh x nw intermediates and one row are live at a time (loading all n^2 values
/// first kept 64 vectors live for F(6x6) and spilled most of them). Along an axis of one point
/// the transform is a copy.
#[allow(clippy::too_many_arguments)]
pub(super) fn separable(
    transforms: [Transform; 2],
    load_col: &dyn Fn(usize) -> Vec<Stmt>,
    col: &[VarId],
    tmp: &[VarId],
    out: &[VarId],
    [nh, nw]: [usize; 2],
    [rh, rw]: [usize; 2],
    after_row: &mut dyn FnMut(usize, &[VarId]) -> Vec<Stmt>,
) -> Vec<Stmt> {
    let mut code = Vec::new();
    for j in 0..nw {
        let dst: Vec<VarId> = (0..rh).map(|i| tmp[i * nw + j]).collect();
        code.extend(load_col(j));
        code.extend(transforms[0](&col[..nh], &dst));
    }
    for i in 0..rh {
        let row: Vec<VarId> = (0..nw).map(|j| tmp[i * nw + j]).collect();
        let dst: Vec<VarId> = (0..rw).map(|j| out[i * nw + j]).collect();
        code.extend(transforms[1](&row, &dst));
        code.extend(after_row(i, &dst));
    }
    code
}

/// The temporaries `transform_1d` may use: a sum and a difference per pair of opposite points
/// (8 points: 3 pairs).
pub(super) const TRANSFORM_TEMPORARIES: usize = 8;

/// `out = matrix x` for one column or row: the hand-factored forms for `B^T` of 6 points (6 x 6)
/// and `A^T` of F(4, 3) (4 x 6), else `paired_1d` (`tmp` holds `TRANSFORM_TEMPORARIES`).
pub(super) fn transform_1d(matrix: &[Vec<f64>], x: &[VarId], out: &[VarId], tmp: &[VarId]) -> Vec<Stmt> {
    match (matrix.len(), matrix[0].len()) {
        (6, 6) => bt_1d(x, out, tmp),
        (4, 6) => at_1d(x, out, tmp),
        _ => paired_1d(matrix, x, out, tmp),
    }
}

/// Whether `b[k] = (-1)^k a[k]` for every k, with a nonzero `a[k]` at an even and at an odd k
/// (a pair of opposite points: their terms of even degree agree, those of odd degree differ
/// in sign).
fn opposite(a: &[f64], b: &[f64]) -> bool {
    let nonzero = |parity: usize| a.iter().enumerate().any(|(k, &v)| k % 2 == parity && v != 0.0);
    nonzero(0) && nonzero(1) && a.iter().zip(b).enumerate().all(|(k, (&u, &v))| v == if k % 2 == 0 { u } else { -u })
}

/// `out = matrix x`, sharing the work of opposite points (+-1, +-2, +-1/2):
/// - when columns j and j' are opposite (`A^T`: its column for point p holds p^i), each output
///   reads `x_j + x_j'` (even rows) or `x_j - x_j'` (odd rows), computed once;
/// - else, when rows i and i' are (`B^T` of 8 points), `out_i = E + O` and `out_i' = E - O`
///   with E and O the row's terms of even and odd index;
/// - the rest as plain sums (`linear`). F(5x5, 4x4)'s `A^T` (5 x 8): 18 instructions instead of 33.
fn paired_1d(matrix: &[Vec<f64>], x: &[VarId], out: &[VarId], tmp: &[VarId]) -> Vec<Stmt> {
    let (rows, cols) = (matrix.len(), matrix[0].len());
    let column = |j: usize| matrix.iter().map(|r| r[j]).collect::<Vec<f64>>();
    let pairs = |n: usize, line: &dyn Fn(usize) -> Vec<f64>| {
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for a in 0..n {
            let taken = |i: usize| pairs.iter().any(|&(p, q)| p == i || q == i);
            if taken(a) {
                continue;
            }
            if let Some(b) = (a + 1..n).find(|&b| !taken(b) && opposite(&line(a), &line(b))) {
                pairs.push((a, b));
            }
        }
        pairs.truncate(tmp.len() / 2);
        pairs
    };
    let col_pairs = pairs(cols, &column);
    if !col_pairs.is_empty() {
        let mut code = Vec::new();
        // Each pair's sum and difference, then each row from them and the unpaired columns.
        let mut terms: Vec<Vec<(f64, VarId)>> = vec![Vec::new(); rows];
        for (t, &(j, j2)) in col_pairs.iter().enumerate() {
            let (sum, diff) = (tmp[2 * t], tmp[2 * t + 1]);
            code.push(set(sum, Ty::F32x4, bin(BinOp::Add, fv(x[j]), fv(x[j2]))));
            code.push(set(diff, Ty::F32x4, bin(BinOp::Sub, fv(x[j]), fv(x[j2]))));
            for (i, row) in terms.iter_mut().enumerate() {
                row.push((matrix[i][j], if i % 2 == 0 { sum } else { diff }));
            }
        }
        let paired: Vec<usize> = col_pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        for (i, row) in terms.iter_mut().enumerate() {
            row.extend((0..cols).filter(|j| !paired.contains(j)).map(|j| (matrix[i][j], x[j])));
        }
        for (row, &o) in terms.iter().zip(out) {
            code.push(set(o, Ty::F32x4, linear(row)));
        }
        return code;
    }
    let row_pairs = pairs(rows, &|i| matrix[i].clone());
    let mut code = Vec::new();
    for &(i, i2) in &row_pairs {
        let half = |parity: usize| -> Vec<(f64, VarId)> {
            (0..cols).filter(|k| k % 2 == parity).map(|k| (matrix[i][k], x[k])).collect()
        };
        let (even, odd) = (tmp[0], tmp[1]);
        code.push(set(even, Ty::F32x4, linear(&half(0))));
        code.push(set(odd, Ty::F32x4, linear(&half(1))));
        code.push(set(out[i], Ty::F32x4, bin(BinOp::Add, fv(even), fv(odd))));
        code.push(set(out[i2], Ty::F32x4, bin(BinOp::Sub, fv(even), fv(odd))));
    }
    for (i, row) in matrix.iter().enumerate() {
        if !row_pairs.iter().any(|&(a, b)| a == i || b == i) {
            let terms: Vec<(f64, VarId)> = row.iter().copied().zip(x.iter().copied()).collect();
            code.push(set(out[i], Ty::F32x4, linear(&terms)));
        }
    }
    code
}

/// `sum c v` over the terms, skipping zeros (a coefficient of 1 or -1 is an add or a subtract).
fn linear(terms: &[(f64, VarId)]) -> FExpr {
    let mut e: Option<FExpr> = None;
    for &(c, v) in terms {
        let c = c as f32;
        if c == 0.0 {
            continue;
        }
        e = Some(match (e.take(), c) {
            (None, 1.0) => fv(v),
            (None, c) => bin(BinOp::Mul, fv(v), k(c)),
            (Some(a), 1.0) => bin(BinOp::Add, a, fv(v)),
            (Some(a), -1.0) => bin(BinOp::Sub, a, fv(v)),
            (Some(a), c) => fma(fv(v), k(c), a),
        });
    }
    e.unwrap_or_else(|| k(0.0))
}

/// `out[i] = (B^T d)[i]` for a column of 6 points (`tmp` holds 4 temporaries).
fn bt_1d(d: &[VarId], out: &[VarId], tmp: &[VarId]) -> Vec<Stmt> {
    let f = |v: VarId| fv(v);
    vec![
        // a = d4 - 4 d2, b = d3 - 4 d1; c = d4 - d2, e = 2 (d3 - d1).
        set(tmp[0], Ty::F32x4, fma(f(d[2]), k(-4.0), f(d[4]))),
        set(tmp[1], Ty::F32x4, fma(f(d[1]), k(-4.0), f(d[3]))),
        set(tmp[2], Ty::F32x4, bin(BinOp::Sub, f(d[4]), f(d[2]))),
        set(tmp[3], Ty::F32x4, bin(BinOp::Mul, bin(BinOp::Sub, f(d[3]), f(d[1])), k(2.0))),
        set(out[0], Ty::F32x4, fma(f(d[0]), k(4.0), fma(f(d[2]), k(-5.0), f(d[4])))),
        set(out[5], Ty::F32x4, fma(f(d[1]), k(4.0), fma(f(d[3]), k(-5.0), f(d[5])))),
        set(out[1], Ty::F32x4, bin(BinOp::Add, f(tmp[0]), f(tmp[1]))),
        set(out[2], Ty::F32x4, bin(BinOp::Sub, f(tmp[0]), f(tmp[1]))),
        set(out[3], Ty::F32x4, bin(BinOp::Add, f(tmp[2]), f(tmp[3]))),
        set(out[4], Ty::F32x4, bin(BinOp::Sub, f(tmp[2]), f(tmp[3]))),
    ]
}

/// `out[i] = (A^T m)[i]` for a column of 6 points, 4 results (F(4, 3); `tmp` holds 4 temporaries).
fn at_1d(m: &[VarId], out: &[VarId], tmp: &[VarId]) -> Vec<Stmt> {
    let f = |v: VarId| fv(v);
    vec![
        set(tmp[0], Ty::F32x4, bin(BinOp::Add, f(m[1]), f(m[2]))),
        set(tmp[1], Ty::F32x4, bin(BinOp::Sub, f(m[1]), f(m[2]))),
        set(tmp[2], Ty::F32x4, bin(BinOp::Add, f(m[3]), f(m[4]))),
        set(tmp[3], Ty::F32x4, bin(BinOp::Sub, f(m[3]), f(m[4]))),
        set(out[0], Ty::F32x4, bin(BinOp::Add, bin(BinOp::Add, f(m[0]), f(tmp[0])), f(tmp[2]))),
        set(out[1], Ty::F32x4, fma(f(tmp[3]), k(2.0), f(tmp[1]))),
        set(out[2], Ty::F32x4, fma(f(tmp[2]), k(4.0), f(tmp[0]))),
        set(out[3], Ty::F32x4, bin(BinOp::Add, fma(f(tmp[3]), k(8.0), f(tmp[1])), f(m[5]))),
    ]
}

/// `G_h g G_w^T` for rh x rw kernels `g` (row-major; `G_h` is nh x rh, `G_w` nw x rw), in f64:
/// the nh x nw transformed kernel, row-major. The matrices are copied into fixed arrays once,
/// and the square shapes the schedule uses have loops of constant length (GoogLeNet's compile
/// packs 17 million taps' worth).
struct KernelTransform {
    gh: [[f64; 8]; 8],
    gw: [[f64; 8]; 8],
    dims: [usize; 4],
}

impl KernelTransform {
    fn new(gh: &[Vec<f64>], gw: &[Vec<f64>]) -> KernelTransform {
        let fixed = |m: &[Vec<f64>]| {
            let mut a = [[0.0f64; 8]; 8];
            for (row, src) in a.iter_mut().zip(m) {
                row[..src.len()].copy_from_slice(src);
            }
            a
        };
        KernelTransform { gh: fixed(gh), gw: fixed(gw), dims: [gh.len(), gw.len(), gh[0].len(), gw[0].len()] }
    }

    fn apply(&self, g: &[f32], out: &mut [f64]) {
        match self.dims {
            [4, 4, 3, 3] => self.fixed::<4, 4, 3, 3>(g, out),
            [6, 6, 3, 3] => self.fixed::<6, 6, 3, 3>(g, out),
            [7, 7, 3, 3] => self.fixed::<7, 7, 3, 3>(g, out),
            [8, 8, 3, 3] => self.fixed::<8, 8, 3, 3>(g, out),
            [8, 8, 4, 4] => self.fixed::<8, 8, 4, 4>(g, out),
            [6, 6, 5, 5] => self.fixed::<6, 6, 5, 5>(g, out),
            [8, 8, 5, 5] => self.fixed::<8, 8, 5, 5>(g, out),
            [nh, nw, rh, rw] => self.general(nh, nw, rh, rw, g, out),
        }
    }

    /// t = G_h g (nh x rw), then out = t G_w^T (nh x nw); sums from -0.0, as `Iterator::sum`.
    fn general(&self, nh: usize, nw: usize, rh: usize, rw: usize, g: &[f32], out: &mut [f64]) {
        let mut t = [[0.0f64; 8]; 8];
        for i in 0..nh {
            for j in 0..rw {
                t[i][j] = (0..rh).map(|k| self.gh[i][k] * g[k * rw + j] as f64).sum();
            }
        }
        for i in 0..nh {
            for j in 0..nw {
                out[i * nw + j] = (0..rw).map(|k| t[i][k] * self.gw[j][k]).sum();
            }
        }
    }

    /// `general` with constant dimensions: the same sums in the same order.
    fn fixed<const NH: usize, const NW: usize, const RH: usize, const RW: usize>(&self, g: &[f32], out: &mut [f64]) {
        let (g, out) = (&g[..RH * RW], &mut out[..NH * NW]);
        let mut t = [[0.0f64; RW]; NH];
        for i in 0..NH {
            for j in 0..RW {
                let mut s = -0.0f64;
                for k in 0..RH {
                    s += self.gh[i][k] * g[k * RW + j] as f64;
                }
                t[i][j] = s;
            }
        }
        for i in 0..NH {
            for j in 0..NW {
                let mut s = -0.0f64;
                for k in 0..RW {
                    s += t[i][k] * self.gw[j][k];
                }
                out[i * NW + j] = s;
            }
        }
    }
}

/// Packs `[cout, cin, r, r]` weights (output channel `o` times `scale[o]`) into
/// `[xi][channel tile][in block][lane][vb][4]`, zero for padded output channels. Channel tiles
/// are shared out between `threads`.
pub(super) fn pack_winograd(
    job: &ConvJob,
    wt: WinoTile,
    weights: &[f32],
    scale: Option<&[f32]>,
    threads: usize,
) -> Vec<f32> {
    let (cin, cout, vb) = (job.cin as usize, job.cout as usize, wt.vb as usize);
    let [gh, gw] = [0, 1].map(|a| matrices(wt.tile(a), wt.r[a]).1);
    let transform = KernelTransform::new(&gh, &gw);
    let taps = (wt.r[0] * wt.r[1]) as usize;
    let xis = wt.xi() as usize;
    let row = 16 * vb;
    let panel = cin / 4 * row;
    let tiles = cout.div_ceil(4) / vb;
    let mut packed = vec![0.0f32; xis * panel * tiles];
    // One input block (4 channels) of a channel tile at a time: its 4 x 4vb kernels are
    // transformed into `u` (`[xi][lane][vb][4]`, the order of a panel's row), then each
    // position's 16vb values are copied to their panel. Output channels past `cout` stay zero.
    let pack_tile = |kt: usize, mut panels: Vec<&mut [f32]>| {
        let mut u = vec![0.0f32; xis * row];
        let mut one = [0.0f64; 64];
        let channels = (4 * vb).min(cout - kt * 4 * vb);
        for cb in 0..cin / 4 {
            for oo in 0..channels {
                let o = kt * 4 * vb + oo;
                let s = scale.map_or(1.0, |s| s[o] as f64);
                for lane in 0..4 {
                    let c = cb * 4 + lane;
                    transform.apply(&weights[(o * cin + c) * taps..(o * cin + c + 1) * taps], &mut one);
                    for (xi, &y) in one[..xis].iter().enumerate() {
                        u[xi * row + lane * 4 * vb + oo] = (y * s) as f32;
                    }
                }
            }
            for (values, dst) in u.chunks_exact(row).zip(panels.iter_mut()) {
                dst[cb * row..(cb + 1) * row].copy_from_slice(values);
            }
        }
    };
    // Each channel tile's panels, one per position, `[xi][kt]` in memory: the products read a
    // position's panels one channel tile after the other.
    let mut by_tile: Vec<Vec<&mut [f32]>> = (0..tiles).map(|_| Vec::with_capacity(xis)).collect();
    for (i, p) in packed.chunks_mut(panel).enumerate() {
        by_tile[i % tiles].push(p);
    }
    let threads = if weights.len() < 1 << 16 { 1 } else { threads.clamp(1, tiles.max(1)) };
    crate::parallel::share_out(by_tile.into_iter().enumerate(), threads, &|(kt, panels)| pack_tile(kt, panels));
    packed
}

/// The weights of the strided convolution `direct` (PyTorch's `[out, in, kh, kw]`) as those of
/// its phase form `phased` (`ConvJob::phase_form`): `[out, s^2 B 4, r_h, r_w]`, tap (ky, kx)
/// at input channel `(p B + c / 4) 4 + c % 4` of phase p = (py, px) and position (ty, tx), where
/// `ky - pad = s (ty - pad') + py`; the phase form's other taps, and the channels past the
/// input's, are zero.
pub(super) fn phase_weights(direct: &ConvJob, phased: &ConvJob, weights: &[f32]) -> Vec<f32> {
    let s = phased.phases as i64;
    let (cin, cout, cin2) = (direct.cin as usize, direct.cout as usize, phased.cin as usize);
    let [kh, kw] = direct.kernel.map(|k| k as usize);
    let [rh, rw] = phased.kernel.map(|k| k as usize);
    let blocks = cin2 / 4 / (s * s) as usize;
    // Along an axis: tap k's phase and position in the phase form.
    let place = |k: usize, a: usize| {
        let d = k as i64 - direct.pad[a] as i64;
        (d.rem_euclid(s) as usize, (d.div_euclid(s) + phased.pad[a] as i64) as usize)
    };
    let mut out = vec![0.0f32; cout * cin2 * rh * rw];
    for o in 0..cout {
        for c in 0..cin {
            for ky in 0..kh {
                let (py, ty) = place(ky, 0);
                for kx in 0..kw {
                    let (px, tx) = place(kx, 1);
                    let c2 = ((py * s as usize + px) * blocks + c / 4) * 4 + c % 4;
                    out[((o * cin2 + c2) * rh + ty) * rw + tx] = weights[((o * cin + c) * kh + ky) * kw + kx];
                }
            }
        }
    }
    out
}

/// The taps of phase job `phase` (`ConvJob::split_phases`) of the strided convolution
/// `direct` (PyTorch's `[out, in, kh, kw]`), as its own `[out, in, r_h, r_w]`: tap (ty, tx) is
/// the direct kernel's (ky, kx) with `ky = pad + s (ty - pad') + py` (`pad'` the phase's
/// padding), and likewise along x.
pub(super) fn split_weights(direct: &ConvJob, phase: &ConvJob, weights: &[f32]) -> Vec<f32> {
    let s = phase.phases as usize;
    let [py, px] = phase.phase.expect("a phase of a split convolution").map(|p| p as usize);
    let (cin, cout) = (direct.cin as usize, direct.cout as usize);
    let [kh, kw] = direct.kernel.map(|k| k as usize);
    let [rh, rw] = phase.kernel.map(|k| k as usize);
    // The direct tap of phase tap t along axis a.
    let tap = |t: usize, a: usize, p: usize| direct.pad[a] as usize + s * t + p - s * phase.pad[a] as usize;
    let mut out = Vec::with_capacity(cout * cin * rh * rw);
    for o in 0..cout {
        for c in 0..cin {
            for ty in 0..rh {
                for tx in 0..rw {
                    let (ky, kx) = (tap(ty, 0, py), tap(tx, 1, px));
                    out.push(weights[((o * cin + c) * kh + ky) * kw + kx]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::matrices;

    /// `A^T [(G g) . (B^T d)]` is the correlation of `d` (n values) with `g` (r taps), for every
    /// (m, r) the schedule takes, on pseudo-random values.
    #[test]
    fn transforms_compute_correlations() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 2001) as f64 / 1000.0 - 1.0
        };
        for (m, r) in [
            (2, 3),
            (4, 3),
            (5, 3),
            (6, 3),
            (2, 5),
            (4, 5),
            (2, 7),
            (3, 4),
            (5, 4),
            (3, 2),
            (5, 2),
            (6, 2),
            (7, 2),
            (1, 1),
        ] {
            let (bt, g, at) = matrices(m, r);
            let n = (m + r - 1) as usize;
            assert_eq!((bt.len(), g.len(), at.len()), (n, n, m as usize));
            for _ in 0..4 {
                let d: Vec<f64> = (0..n).map(|_| next()).collect();
                let k: Vec<f64> = (0..r).map(|_| next()).collect();
                let u: Vec<f64> = g.iter().map(|row| row.iter().zip(&k).map(|(a, b)| a * b).sum()).collect();
                let v: Vec<f64> = bt.iter().map(|row| row.iter().zip(&d).map(|(a, b)| a * b).sum()).collect();
                for (i, row) in at.iter().enumerate() {
                    let y: f64 = row.iter().zip(u.iter().zip(&v)).map(|(a, (u, v))| a * u * v).sum();
                    let direct: f64 = (0..r as usize).map(|t| d[i + t] * k[t]).sum();
                    assert!((y - direct).abs() < 1e-12, "F({m}, {r}) output {i}: {y} against {direct}");
                }
            }
        }
    }
}
