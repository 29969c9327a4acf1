#!/usr/bin/env python3
"""Fits the approximations the JIT's src/backend/jit/mathfn.rs uses for GELU and for e^x, and
reports their errors when evaluated in f32 the way the JIT does.

GELU (`gelu_many`):

    erf(x / sqrt 2) / 2  ~  r(t) = t P(t^2) / Q(t^2),   t = x clamped to [-C, C], C = 4 sqrt 2
    gelu(x)             =  x (1/2 + r(t))

P has degree 5 and Q degree 5 in t^2 (Q(0) = 1). The fit runs Sanathanan-Koerner iterations
(weighted linear least squares, reweighted by 1/Q of the previous round) with Lawson weights
that drive the largest absolute errors down (towards minimax), on 10,001 points of [0, C],
in the scaled variable (t / C)^2 for conditioning. Then it evaluates the result in f32 with
the JIT's operation order (Horner by fused multiply-add, one division) on a dense grid of
[-12, 12] and the tails, against the exact GELU in f64.

Sigmoid and SiLU (`sigmoid_many`, `silu_many`), the same form:

    sigmoid(x) - 1/2  ~  r(t) = t P(t^2) / Q(t^2),   t = x clamped to [-L, L], L = 17
    sigmoid(x)        =  1/2 + r (r clamped to [-1/2, 1/2]),   silu(x) = x (1/2 + r)

P and Q of degree 4 in t^2, fitted as GELU's on [0, L]. At L, r is 1/2 in f32 (sigmoid(17) is
1 - 4e-8), so the tails are exact: silu(x) = 0 below -L, x above L. (GELU's r is 1/2 at C too.)
Only sigmoid clamps r, to stay within [0, 1]; inside [-L, L] r may pass 1/2 by an ulp, which
moves GELU and SiLU by less than their error, and the two instructions of the clamp were a
sixth of SiLU's cost in a 1x1 convolution's epilogue. Lower degrees do not pay: 3/3 errs by
1.9e-6 and loses the exact tails.

e^x (`exp_f32x4`): x = k ln 2 + r, |r| <= ln2 / 2, e^r by a degree-6 polynomial fitted the same
way (Lawson-weighted least squares towards minimax relative error on [-0.354, 0.354]), then
the whole of exp in f32 (clamp, Cody-Waite reduction, Horner, 2^k from the exponent bits) on 2
million points of [-87, 88] against e^x in f64.

Usage: tools/fit_mathfn.py        (prints the coefficients as f32 and the errors)
Needs: numpy
"""
from math import erf, sqrt

import numpy as np

C = 4.0 * sqrt(2.0)
DEG_P, DEG_Q = 5, 5


def fit(xs, ys, deg_p, deg_q, rounds=300, scale=None):
    C = globals()["C"] if scale is None else scale
    u = (xs / C) ** 2
    lawson = np.ones_like(xs)
    q_prev = np.ones_like(xs)
    best = None
    for it in range(rounds):
        a = np.hstack([xs[:, None] * u[:, None] ** np.arange(deg_p + 1),
                       -(ys[:, None] * u[:, None] ** np.arange(1, deg_q + 1))])
        w = np.sqrt(lawson) / np.abs(q_prev)
        sol, *_ = np.linalg.lstsq(a * w[:, None], ys * w, rcond=None)
        p = sol[:deg_p + 1]
        q = np.concatenate([[1.0], sol[deg_p + 1:]])
        qv = np.polyval(q[::-1], u)
        err = xs * np.polyval(p[::-1], u) / qv - ys
        worst = np.abs(err).max()
        if qv.min() > 0 and (best is None or worst < best[2]):
            best = (p, q, worst)
        q_prev = np.abs(qv) + 1e-3
        if it > 15:
            lawson = lawson * (np.abs(err) + 1e-18)
            lawson = lawson / lawson.sum()
    p, q, worst = best
    # Back from (t / C)^2 to t^2.
    return p * C ** (-2.0 * np.arange(len(p))), q * C ** (-2.0 * np.arange(len(q))), worst


def f32(v):
    return np.float32(v) if np.isscalar(v) else np.asarray(v, dtype=np.float32)


def fma(a, b, c):
    # f32 operands multiply exactly in f64; one rounding to f32 after the sum.
    return f32(np.float64(a) * np.float64(b) + np.float64(c))


L_SIGMOID = 17.0


def rational_f32(x, p, q, limit, clamp_r=False):
    """r = t P(t^2) / Q(t^2) in f32 as the JIT computes it, t = x clamped (and r, for sigmoid)."""
    t = np.minimum(np.maximum(x, f32(-limit)), f32(limit))
    s = f32(t * t)
    num = np.full_like(x, p[-1])
    for c in p[-2::-1]:
        num = fma(num, s, c)
    num = f32(num * t)
    den = np.full_like(x, q[-1])
    for c in q[-2::-1]:
        den = fma(den, s, c)
    r = f32(num / den)
    return np.minimum(np.maximum(r, f32(-0.5)), f32(0.5)) if clamp_r else r


def gelu_f32(x, p, q):
    x = f32(x)
    return fma(x, rational_f32(x, p, q, C), f32(x * f32(0.5)))


def sigmoid_section():
    xs = np.linspace(0.0, L_SIGMOID, 20001)
    p, q, worst = fit(xs, 1 / (1 + np.exp(-xs)) - 0.5, 4, 4, scale=L_SIGMOID)
    p32 = [f32(c) for c in p]
    q32 = [f32(c) for c in q]
    print(f"sigmoid: max |error| of the fit {worst:.3g} on [0, {L_SIGMOID}]")
    print("P:", ", ".join(f"{float(c):.8e}" for c in p32))
    print("Q:", ", ".join(f"{float(c):.8e}" for c in q32))
    grid = np.concatenate([np.linspace(-30, 30, 600001),
                           [-1e30, -100, -L_SIGMOID, L_SIGMOID, 100, 1e30, 0.0, 1e-30, -1e-30]]).astype(np.float32)
    r = rational_f32(grid, p32, q32, L_SIGMOID)
    with np.errstate(over="ignore"):
        exact = 1 / (1 + np.exp(-grid.astype(np.float64)))
    sig = f32(f32(0.5) + rational_f32(grid, p32, q32, L_SIGMOID, clamp_r=True)).astype(np.float64)
    silu = fma(grid, r, f32(grid * f32(0.5))).astype(np.float64)
    print(f"f32 evaluation: sigmoid max |error| {np.abs(sig - exact).max():.3g}, "
          f"silu max |error| / max(1, |x|) {(np.abs(silu - grid * exact) / np.maximum(1, np.abs(grid))).max():.3g}")
    print(f"r(L) = {float(rational_f32(np.array([L_SIGMOID], dtype=np.float32), p32, q32, L_SIGMOID)[0])!r}")


def fit_exp(deg, rounds=200):
    half = np.log(2.0) / 2 * 1.02
    r = np.linspace(-half, half, 20001)
    y = np.exp(r)
    a = r[:, None] ** np.arange(deg + 1)
    lawson = np.ones_like(r)
    best = None
    for _ in range(rounds):
        w = np.sqrt(lawson) / y
        c, *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
        err = (a @ c) / y - 1
        if best is None or np.abs(err).max() < best[1]:
            best = (c, np.abs(err).max())
        lawson = lawson * (np.abs(err) + 1e-20)
        lawson = lawson / lawson.sum()
    return best


def exp_f32(x, coef):
    x = np.maximum(np.minimum(f32(x), f32(88.0)), f32(-87.0))
    t = f32(x * f32(np.log2(np.e)))
    magic = f32(1.5 * 2 ** 23 + 127)  # exact; leaves k + 127 in the sum's low bits
    shifted = f32(t + magic)
    k = f32(shifted - magic)
    r = fma(k, f32(-0.693359375), x)
    r = fma(k, f32(2.1219444e-4), r)
    p = np.full_like(x, coef[-1])
    for c in coef[-2::-1]:
        p = fma(p, r, c)
    scale = ((shifted.view(np.uint32) << np.uint32(23)) & np.uint32(0xFFFFFFFF)).astype(np.uint32).view(np.float32)
    return f32(p * scale)


def main():
    coef, worst = fit_exp(6)
    c32 = [f32(c) for c in coef]
    print(f"exp: degree-6 fit, max relative error of e^r {worst:.3g}")
    print("coefficients (degree 0 first):", ", ".join(f"{float(c):.8e}" for c in c32))
    xs = np.linspace(-87.0, 88.0, 2000001).astype(np.float32)
    rel = np.abs(exp_f32(xs, c32).astype(np.float64) / np.exp(xs.astype(np.float64)) - 1)
    print(f"f32 evaluation: max relative error {rel.max():.3g} at x = {xs[rel.argmax()]}")
    print()
    xs = np.linspace(0.0, C, 10001)
    ys = np.array([erf(x / sqrt(2.0)) for x in xs])
    p, q, worst = fit(xs, ys, DEG_P, DEG_Q)
    p32 = [f32(0.5 * c) for c in p]  # the 1/2 of gelu folded into P
    q32 = [f32(c) for c in q]
    print(f"gelu: max |erf error| of the fit {worst:.3g} on [0, {C:.6f}]")
    print("P:", ", ".join(f"{float(c):.8e}" for c in p32))
    print("Q:", ", ".join(f"{float(c):.8e}" for c in q32))
    grid = np.concatenate([np.linspace(-12, 12, 400001),
                           [-1e30, -100, -7, -C, C, 7, 100, 1e30, 0.0, 1e-30, -1e-30]]).astype(np.float32)
    exact = np.array([0.5 * float(v) * (1 + erf(float(v) / sqrt(2.0))) for v in grid])
    got = gelu_f32(grid, p32, q32).astype(np.float64)
    rel = np.abs(got - exact) / np.maximum(1.0, np.abs(grid))
    print(f"f32 evaluation: max |error| / max(1, |x|) = {rel.max():.3g} at x = {grid[rel.argmax()]}")
    for v in [-1e30, -100.0, 100.0]:
        print(f"gelu({v:g}) = {float(gelu_f32(np.array([v], dtype=np.float32), p32, q32)[0]):g}")
    print()
    sigmoid_section()


if __name__ == "__main__":
    main()
