//! exp and ln on f32x4, generated as Cranelift instructions (Cranelift has no transcendental
//! instructions, and the JIT must not call Rust for compute). Softmax and LRN (through
//! `pow(x, b) = exp(b ln x)`) use them, sigmoid and tanh are built on exp, and GELU has a
//! rational approximation of its own.
//!
//! exp: x = k ln2 + r with k = round(x / ln2), |r| <= ln2/2 (Cody-Waite split of ln2), e^r by a
//! degree-6 minimax polynomial (`tools/fit_mathfn.py`: relative error 8.8e-8 over the whole f32
//! range once evaluated in f32, as the degree-7 Taylor polynomial it replaced), 2^k built in the
//! exponent bits.
//! ln: x = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(t) with t = (m-1)/(m+1),
//! |t| < 0.172, summed to t^11 (error < 1e-9). Both stay within a few ulps of libm on the ranges
//! softmax and LRN use, far inside the 1e-4 tolerance the backends are held to.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::types::{F32X4, I32, I32X4};
use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;

fn splat_f(b: &mut FunctionBuilder, v: f32) -> Value {
    let c = b.ins().f32const(v);
    b.ins().splat(F32X4, c)
}

fn splat_i(b: &mut FunctionBuilder, v: i32) -> Value {
    let c = b.ins().iconst(I32, v as i64);
    b.ins().splat(I32X4, c)
}

/// `c0 x^n + c1 x^(n-1) + ... + cn` by Horner's rule, coefficients highest degree first: one
/// fused multiply-add per coefficient after the first.
fn horner(b: &mut FunctionBuilder, x: Value, high_first: impl IntoIterator<Item = f32>) -> Value {
    let mut coeffs = high_first.into_iter();
    let first = coeffs.next().expect("a polynomial has a coefficient");
    let mut p = splat_f(b, first);
    for c in coeffs {
        let cv = splat_f(b, c);
        p = b.ins().fma(p, x, cv);
    }
    p
}

fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// `if p < q { x } else { y }` on f32 or f32x4, in the compare-and-select form Cranelift's x64
/// backend matches to one `minps`/`maxps` (`minss`/`maxss`), where its `fmin`/`fmax` take eight
/// instructions for IEEE NaN and signed-zero rules. When the compare fails (a NaN), `y` comes out.
pub(super) fn select_less(b: &mut FunctionBuilder, p: Value, q: Value, x: Value, y: Value) -> Value {
    let c = b.ins().fcmp(FloatCC::LessThan, p, q);
    if b.func.dfg.value_type(x) == F32X4 {
        let mask = b.ins().bitcast(F32X4, little(), c);
        b.ins().bitselect(mask, x, y)
    } else {
        b.ins().select(c, x, y)
    }
}

pub fn exp_f32x4(b: &mut FunctionBuilder, x: Value) -> Value {
    exp_signed(b, x, false)
}

/// e^-x, for sigmoid and SiLU: bit for bit `exp_f32x4` of `0 - x`, without the negation. Each
/// step is the negated step of e^(-x)'s (x clamped to [-88, 87]; x * -log2 e; s = x + k ln2 =
/// -r), and the polynomial is evaluated at s with its odd coefficients negated, which gives
/// Horner's partial sums exactly negated or equal (fma(a, s, -c) = -fma(a, -s, c)).
pub fn exp_neg_f32x4(b: &mut FunctionBuilder, x: Value) -> Value {
    exp_signed(b, x, true)
}

/// e^x, or e^-x with `negate`.
fn exp_signed(b: &mut FunctionBuilder, x: Value, negate: bool) -> Value {
    let sign = if negate { -1.0 } else { 1.0 };
    // e^x overflows f32 above 88.72 and is 0 below -103.97; clamp so 2^k stays representable.
    let hi = splat_f(b, if negate { 87.0 } else { 88.0 });
    let lo = splat_f(b, if negate { -88.0 } else { -87.0 });
    // hi < x ? hi : x, then x < lo ? lo : x: a NaN x comes through both.
    let x = select_less(b, hi, x, hi, x);
    let x = select_less(b, x, lo, lo, x);
    let log2e = splat_f(b, sign * std::f32::consts::LOG2_E);
    let t = b.ins().fmul(x, log2e);
    // k = round(t): adding 1.5 * 2^23 leaves k (rounded to nearest even, as `nearest` does) in
    // the sum's low mantissa bits, and subtracting it again gives k exactly. The magic number
    // carries the exponent bias too (1.5 * 2^23 + 127 is still exact), so the sum's low 9 bits
    // are already k + 127, the biased exponent of 2^k for the clamped range.
    let magic = splat_f(b, 12_583_039.0);
    let shifted = b.ins().fadd(t, magic);
    let k = b.ins().fsub(shifted, magic);
    // r = x - k ln2 (negated: s = x + k ln2 = -r), with ln2 split into a high part exact in
    // f32 and a low correction.
    let ln2_hi = splat_f(b, -sign * 0.693_359_375);
    let ln2_lo = splat_f(b, sign * 2.121_944_4e-4);
    let r = b.ins().fma(k, ln2_hi, x);
    let r = b.ins().fma(k, ln2_lo, r);
    // e^r by Horner, highest degree first (degree 6; at s = -r the odd powers change sign).
    const C: [f32; 7] = [1.383_472_8e-3, 8.376_481e-3, 4.166_835_5e-2, 1.666_640_0e-1, 4.999_999_1e-1, 1.0, 1.0];
    let p = horner(b, r, C.iter().enumerate().map(|(i, &c)| if negate && i % 2 == 1 { -c } else { c }));
    // 2^k: shifting the sum's bits left by 23 keeps exactly those 9 low bits, in the exponent
    // field, with a zero sign and mantissa.
    let ki = b.ins().bitcast(I32X4, little(), shifted);
    let e = b.ins().ishl_imm_s(ki, 23);
    let scale = b.ins().bitcast(F32X4, little(), e);
    b.ins().fmul(p, scale)
}

pub fn ln_f32x4(b: &mut FunctionBuilder, x: Value) -> Value {
    let bits = b.ins().bitcast(I32X4, little(), x);
    // Exponent and mantissa in [1, 2).
    let e = b.ins().ushr_imm_s(bits, 23);
    let bias = splat_i(b, 127);
    let e = b.ins().isub(e, bias);
    let mant_mask = splat_i(b, 0x007f_ffff);
    let one_bits = splat_i(b, 0x3f80_0000);
    let m = b.ins().band(bits, mant_mask);
    let m = b.ins().bor(m, one_bits);
    let m = b.ins().bitcast(F32X4, little(), m);
    let mut ef = b.ins().fcvt_from_sint(F32X4, e);
    // Bring m into [sqrt(1/2), sqrt(2)): halve it (and bump the exponent) above sqrt(2).
    let sqrt2 = splat_f(b, std::f32::consts::SQRT_2);
    let big = b.ins().fcmp(FloatCC::GreaterThan, m, sqrt2);
    let half = splat_f(b, 0.5);
    let one = splat_f(b, 1.0);
    let m_half = b.ins().fmul(m, half);
    let m = b.ins().bitselect(big, m_half, m);
    let ef_plus = b.ins().fadd(ef, one);
    ef = b.ins().bitselect(big, ef_plus, ef);
    // ln m = 2 (t + t^3/3 + ... + t^11/11), t = (m - 1) / (m + 1).
    let num = b.ins().fsub(m, one);
    let den = b.ins().fadd(m, one);
    let t = b.ins().fdiv(num, den);
    let t2 = b.ins().fmul(t, t);
    let p = horner(b, t2, [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0]);
    let two = splat_f(b, 2.0);
    let lnm = b.ins().fmul(p, t);
    let lnm = b.ins().fmul(lnm, two);
    let ln2 = splat_f(b, std::f32::consts::LN_2);
    b.ins().fma(ef, ln2, lnm)
}

/// tanh x = (1 - e^(-2x)) / (1 + e^(-2x)), through `exp_f32x4` (whose clamp gives -1 and 1 in
/// the tails). The absolute error stays below 1e-7.
pub fn tanh_f32x4(b: &mut FunctionBuilder, x: Value) -> Value {
    let m2 = splat_f(b, -2.0);
    let t = b.ins().fmul(x, m2);
    let e = exp_f32x4(b, t);
    let one = splat_f(b, 1.0);
    let num = b.ins().fsub(one, e);
    let den = b.ins().fadd(one, e);
    b.ins().fdiv(num, den)
}

/// GELU, `x/2 (1 + erf(x / sqrt 2))`, as `x (1/2 + r(t))` with `t` = x clamped to
/// [-4 sqrt 2, 4 sqrt 2] (where erf(t / sqrt 2) is 1 - 1.6e-8, 1 in f32) and
/// `r(t) = t P(t^2) / Q(t^2)`, a rational approximation of erf(t / sqrt 2) / 2 of degree 11/10,
/// clamped to [-1/2, 1/2] so that both tails come out exact (0, and x). One division, no
/// exponential: about 20 arithmetic instructions per vector (36 with the constants' loads)
/// where erf through `exp_f32x4` took about 45 (60).
///
/// The coefficients are a minimax fit in f64 (Lawson-weighted Sanathanan-Koerner iterations on
/// 10,001 points of [0, 4 sqrt 2], `tools/fit_mathfn.py`): fit error 2.1e-8; evaluated in f32 as
/// below, |error| <= 1.8e-7 max(1, |x|) over [-12, 12], checked in `tests/jit.rs`.
pub fn gelu_f32x4(b: &mut FunctionBuilder, x: Value) -> Value {
    const P: [f32; 6] = [3.989_422e-1, 3.469_262e-2, 4.725_925_2e-3, 1.769_416_8e-4, 6.364_909e-6, 2.181_873_7e-8];
    const Q: [f32; 6] = [1.0, 2.536_270_6e-1, 2.911_932e-2, 1.930_574_4e-3, 7.602_377e-5, 1.171_271_8e-6];
    const LIMIT: f32 = 5.656_854;
    let hi = splat_f(b, LIMIT);
    let lo = splat_f(b, -LIMIT);
    // hi < x ? hi : x, then t < lo ? lo : t: a NaN x comes through both (and out as NaN).
    let t = select_less(b, hi, x, hi, x);
    let t = select_less(b, t, lo, lo, t);
    let s = b.ins().fmul(t, t);
    let num = horner(b, s, P.iter().rev().copied());
    let num = b.ins().fmul(num, t);
    let den = horner(b, s, Q.iter().rev().copied());
    let r = b.ins().fdiv(num, den);
    let half = splat_f(b, 0.5);
    let neg_half = splat_f(b, -0.5);
    let r = select_less(b, half, r, half, r);
    let r = select_less(b, r, neg_half, neg_half, r);
    let half_x = b.ins().fmul(x, half);
    b.ins().fma(x, r, half_x)
}
