//! exp and ln on f32x4, generated as Cranelift instructions (Cranelift has no transcendental
//! instructions, and the JIT must not call Rust for compute). Softmax and LRN (through
//! `pow(x, b) = exp(b ln x)`) use them and tanh is built on exp; GELU, sigmoid and SiLU have
//! rational approximations of their own (`odd_rational`).
//!
//! exp: x = k ln2 + r with k = round(x / ln2), |r| <= ln2/2 (Cody-Waite split of ln2), e^r by a
//! degree-6 minimax polynomial (`tools/fit_mathfn.py`: relative error 8.8e-8 over the whole f32
//! range once evaluated in f32, as the degree-7 Taylor polynomial it replaced), 2^k built in the
//! exponent bits.
//! ln: x = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(t) with t = (m-1)/(m+1),
//! |t| < 0.172, summed to t^11 (error < 1e-9). Both stay within a few ulps of libm on the ranges
//! softmax and LRN use, far inside the 1e-4 tolerance the backends are held to.
//!
//! Their constants are read from one table (`TABLE`, each value in four lanes), whose address
//! the kernel holds in a register (`Consts`): a constant used once is then a memory operand of
//! the instruction that uses it, where a broadcast from Cranelift's constant pool is an
//! instruction of its own (17 of SiLU's 40 instructions per vector were such broadcasts).

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::types::{F32X4, I32, I32X4};
use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;

use super::ir::UnOp;

/// Every constant the functions below use (a value missing here still works, as a broadcast
/// from Cranelift's constant pool; `every_constant_is_in_the_table` checks there are none).
const VALUES: &[f32] = &[
    // exp: clamps, log2 e, the rounding constant, ln 2's two parts, the polynomial (the last
    // two coefficients are 1.0, below)
    88.0,
    -87.0,
    std::f32::consts::LOG2_E,
    12_583_039.0,
    -0.693_359_375,
    2.121_944_4e-4,
    EXP_C[0],
    EXP_C[1],
    EXP_C[2],
    EXP_C[3],
    EXP_C[4],
    1.0,
    // ln
    std::f32::consts::SQRT_2,
    0.5,
    1.0 / 11.0,
    1.0 / 9.0,
    1.0 / 7.0,
    1.0 / 5.0,
    1.0 / 3.0,
    2.0,
    std::f32::consts::LN_2,
    // tanh
    -2.0,
    // GELU (Q's first coefficient is 1.0, above)
    GELU_LIMIT,
    -GELU_LIMIT,
    GELU_P[0],
    GELU_P[1],
    GELU_P[2],
    GELU_P[3],
    GELU_P[4],
    GELU_P[5],
    GELU_Q[1],
    GELU_Q[2],
    GELU_Q[3],
    GELU_Q[4],
    GELU_Q[5],
    -0.5,
    // sigmoid and SiLU (Q's first coefficient is 1.0, above)
    SIGMOID_LIMIT,
    -SIGMOID_LIMIT,
    SIGMOID_P[0],
    SIGMOID_P[1],
    SIGMOID_P[2],
    SIGMOID_P[3],
    SIGMOID_P[4],
    SIGMOID_Q[1],
    SIGMOID_Q[2],
    SIGMOID_Q[3],
    SIGMOID_Q[4],
];

/// One constant in the four lanes of a vector, 16-byte aligned (an SSE memory operand must be).
#[repr(C, align(16))]
struct Row([f32; 4]);

/// `VALUES` as vectors, at an address fixed for the life of the process.
static TABLE: std::sync::LazyLock<Vec<Row>> =
    std::sync::LazyLock::new(|| VALUES.iter().map(|&v| Row([v; 4])).collect());

#[cfg(test)]
thread_local! {
    static MISSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The functions' builder and the register holding `TABLE`'s address.
pub struct Consts<'a, 'b> {
    pub b: &'a mut FunctionBuilder<'b>,
    table: Value,
}

impl<'a, 'b> Consts<'a, 'b> {
    /// `table` must be `table_address()`, defined where it dominates every use.
    pub fn new(b: &'a mut FunctionBuilder<'b>, table: Value) -> Self {
        Consts { b, table }
    }

    /// `v` in every lane: a load from the table, emitted here so that Cranelift can fold it
    /// into its one user (a load with a single use, nothing with side effects in between).
    fn splat(&mut self, v: f32) -> Value {
        match VALUES.iter().position(|t| t.to_bits() == v.to_bits()) {
            Some(row) => {
                let flags = MemFlagsData::new().with_notrap().with_readonly().with_aligned();
                self.b.ins().load(F32X4, flags, self.table, (row * 16) as i32)
            }
            None => {
                #[cfg(test)]
                MISSES.with(|n| n.set(n.get() + 1));
                let c = self.b.ins().f32const(v);
                self.b.ins().splat(F32X4, c)
            }
        }
    }
}

/// The address of the constants' table, for the kernel to hold in a register.
pub fn table_address() -> i64 {
    TABLE.as_ptr() as i64
}

fn splat_i(b: &mut FunctionBuilder, v: i32) -> Value {
    let c = b.ins().iconst(I32, v as i64);
    b.ins().splat(I32X4, c)
}

/// `c0 x^n + c1 x^(n-1) + ... + cn` by Horner's rule, coefficients highest degree first: one
/// fused multiply-add per coefficient after the first.
fn horner(m: &mut Consts, x: Value, high_first: impl IntoIterator<Item = f32>) -> Value {
    let mut coeffs = high_first.into_iter();
    let first = coeffs.next().expect("a polynomial has a coefficient");
    let mut p = m.splat(first);
    for c in coeffs {
        let cv = m.splat(c);
        p = m.b.ins().fma(p, x, cv);
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

/// e^r on [-ln2/2, ln2/2], highest degree first (degree 6, `tools/fit_mathfn.py`).
const EXP_C: [f32; 7] = [1.383_472_8e-3, 8.376_481e-3, 4.166_835_5e-2, 1.666_640_0e-1, 4.999_999_1e-1, 1.0, 1.0];

pub fn exp_f32x4(m: &mut Consts, x: Value) -> Value {
    // e^x overflows f32 above 88.72 and is 0 below -103.97; clamp so 2^k stays representable.
    let hi = m.splat(88.0);
    let lo = m.splat(-87.0);
    // hi < x ? hi : x, then x < lo ? lo : x: a NaN x comes through both.
    let x = select_less(m.b, hi, x, hi, x);
    let x = select_less(m.b, x, lo, lo, x);
    let log2e = m.splat(std::f32::consts::LOG2_E);
    let t = m.b.ins().fmul(x, log2e);
    // k = round(t): adding 1.5 * 2^23 leaves k (rounded to nearest even, as `nearest` does) in
    // the sum's low mantissa bits, and subtracting it again gives k exactly. The magic number
    // carries the exponent bias too (1.5 * 2^23 + 127 is still exact), so the sum's low 9 bits
    // are already k + 127, the biased exponent of 2^k for the clamped range. (Loaded once per
    // use, so that each load folds into its instruction.)
    let magic = m.splat(12_583_039.0);
    let shifted = m.b.ins().fadd(t, magic);
    let magic = m.splat(12_583_039.0);
    let k = m.b.ins().fsub(shifted, magic);
    // r = x - k ln2, with ln2 split into a high part exact in f32 and a low correction.
    let ln2_hi = m.splat(-0.693_359_375);
    let r = m.b.ins().fma(k, ln2_hi, x);
    let ln2_lo = m.splat(2.121_944_4e-4);
    let r = m.b.ins().fma(k, ln2_lo, r);
    // e^r by Horner.
    let p = horner(m, r, EXP_C.iter().copied());
    // 2^k: shifting the sum's bits left by 23 keeps exactly those 9 low bits, in the exponent
    // field, with a zero sign and mantissa.
    let ki = m.b.ins().bitcast(I32X4, little(), shifted);
    let e = m.b.ins().ishl_imm_s(ki, 23);
    let scale = m.b.ins().bitcast(F32X4, little(), e);
    m.b.ins().fmul(p, scale)
}

pub fn ln_f32x4(m: &mut Consts, x: Value) -> Value {
    let b = &mut *m.b;
    let bits = b.ins().bitcast(I32X4, little(), x);
    // Exponent and mantissa in [1, 2).
    let e = b.ins().ushr_imm_s(bits, 23);
    let bias = splat_i(b, 127);
    let e = b.ins().isub(e, bias);
    let mant_mask = splat_i(b, 0x007f_ffff);
    let one_bits = splat_i(b, 0x3f80_0000);
    let mm = b.ins().band(bits, mant_mask);
    let mm = b.ins().bor(mm, one_bits);
    let mm = b.ins().bitcast(F32X4, little(), mm);
    let mut ef = b.ins().fcvt_from_sint(F32X4, e);
    // Bring the mantissa into [sqrt(1/2), sqrt(2)): halve it (and bump the exponent) above
    // sqrt(2).
    let sqrt2 = m.splat(std::f32::consts::SQRT_2);
    let big = m.b.ins().fcmp(FloatCC::GreaterThan, mm, sqrt2);
    let half = m.splat(0.5);
    let m_half = m.b.ins().fmul(mm, half);
    let mm = m.b.ins().bitselect(big, m_half, mm);
    let one = m.splat(1.0);
    let ef_plus = m.b.ins().fadd(ef, one);
    ef = m.b.ins().bitselect(big, ef_plus, ef);
    // ln m = 2 (t + t^3/3 + ... + t^11/11), t = (m - 1) / (m + 1).
    let one = m.splat(1.0);
    let num = m.b.ins().fsub(mm, one);
    let one = m.splat(1.0);
    let den = m.b.ins().fadd(mm, one);
    let t = m.b.ins().fdiv(num, den);
    let t2 = m.b.ins().fmul(t, t);
    let p = horner(m, t2, [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0]);
    let lnm = m.b.ins().fmul(p, t);
    let two = m.splat(2.0);
    let lnm = m.b.ins().fmul(lnm, two);
    let ln2 = m.splat(std::f32::consts::LN_2);
    m.b.ins().fma(ef, ln2, lnm)
}

/// tanh x = (1 - e^(-2x)) / (1 + e^(-2x)), through `exp_f32x4` (whose clamp gives -1 and 1 in
/// the tails). The absolute error stays below 1e-7.
pub fn tanh_f32x4(m: &mut Consts, x: Value) -> Value {
    let m2 = m.splat(-2.0);
    let t = m.b.ins().fmul(x, m2);
    let e = exp_f32x4(m, t);
    let one = m.splat(1.0);
    let num = m.b.ins().fsub(one, e);
    let one = m.splat(1.0);
    let den = m.b.ins().fadd(one, e);
    m.b.ins().fdiv(num, den)
}

const GELU_P: [f32; 6] = [3.989_422e-1, 3.469_262e-2, 4.725_925_2e-3, 1.769_416_8e-4, 6.364_909e-6, 2.181_873_7e-8];
const GELU_Q: [f32; 6] = [1.0, 2.536_270_6e-1, 2.911_932e-2, 1.930_574_4e-3, 7.602_377e-5, 1.171_271_8e-6];
const GELU_LIMIT: f32 = 5.656_854;

/// GELU, `x/2 (1 + erf(x / sqrt 2))`, of each of `xs`, as `x (1/2 + r(t))` with `t` = x
/// clamped to [-4 sqrt 2, 4 sqrt 2] (where erf(t / sqrt 2) is 1 - 1.6e-8, 1 in f32) and
/// `r(t) = t P(t^2) / Q(t^2)`, a rational approximation of erf(t / sqrt 2) / 2 of degree 11/10,
/// which is exactly ±1/2 at ±4 sqrt 2, so that both tails come out exact (0, and x). One
/// division, no exponential: about 18 arithmetic instructions per vector where erf through
/// `exp_f32x4` took about 45.
///
/// The coefficients are a minimax fit in f64 (Lawson-weighted Sanathanan-Koerner iterations on
/// 10,001 points of [0, 4 sqrt 2], `tools/fit_mathfn.py`): fit error 2.1e-8; evaluated in f32 as
/// below, |error| <= 2.0e-7 max(1, |x|) over [-12, 12], checked in `tests/jit.rs`.
pub fn gelu_many(m: &mut Consts, xs: &[Value]) -> Vec<Value> {
    let r = odd_rational(m, xs, GELU_LIMIT, &GELU_P, &GELU_Q);
    times_half_plus(m, xs, &r)
}

/// `x (1/2 + r)`, as one fused multiply-add, for each pair of `xs` and `rs`.
fn times_half_plus(m: &mut Consts, xs: &[Value], rs: &[Value]) -> Vec<Value> {
    let half_x: Vec<Value> = xs
        .iter()
        .map(|&x| {
            let half = m.splat(0.5);
            m.b.ins().fmul(x, half)
        })
        .collect();
    (xs.iter().zip(rs).zip(half_x)).map(|((&x, &r), hx)| m.b.ins().fma(x, r, hx)).collect()
}

/// `c0 x^n + c1 x^(n-1) + ... + cn` by Horner's rule for each of `xs`, one step for all of them
/// before the next (`many`).
fn horner_many(m: &mut Consts, xs: &[Value], high_first: &[f32]) -> Vec<Value> {
    let (&first, rest) = high_first.split_first().expect("a polynomial has a coefficient");
    let mut p: Vec<Value> = xs.iter().map(|_| m.splat(first)).collect();
    for &c in rest {
        for (pi, &x) in p.iter_mut().zip(xs) {
            let cv = m.splat(c);
            *pi = m.b.ins().fma(*pi, x, cv);
        }
    }
    p
}

/// `hi < x ? hi : x`, then `t < lo ? lo : t` (a NaN comes through both), for each of `xs`.
fn clamp_many(m: &mut Consts, xs: &[Value], lo: f32, hi: f32) -> Vec<Value> {
    let t: Vec<Value> = xs
        .iter()
        .map(|&x| {
            let h = m.splat(hi);
            select_less(m.b, h, x, h, x)
        })
        .collect();
    t.iter()
        .map(|&t| {
            let l = m.splat(lo);
            select_less(m.b, t, l, l, t)
        })
        .collect()
}

/// `r = t P(t^2) / Q(t^2)`, t = x clamped to [-limit, limit] (coefficients lowest degree
/// first): GELU's and the logistic function's shared form. r(±limit) is ±1/2 exactly in f32, so
/// `x (1/2 + r)` is exactly 0 and x in the tails; inside, r may pass 1/2 by an ulp (only the
/// logistic function itself clamps it, to stay within [0, 1]). Each of `xs`, interleaved.
fn odd_rational(m: &mut Consts, xs: &[Value], limit: f32, p: &[f32], q: &[f32]) -> Vec<Value> {
    let t = clamp_many(m, xs, -limit, limit);
    let s: Vec<Value> = t.iter().map(|&t| m.b.ins().fmul(t, t)).collect();
    let p_high: Vec<f32> = p.iter().rev().copied().collect();
    let q_high: Vec<f32> = q.iter().rev().copied().collect();
    let num = horner_many(m, &s, &p_high);
    let num: Vec<Value> = num.iter().zip(&t).map(|(&n, &t)| m.b.ins().fmul(n, t)).collect();
    let den = horner_many(m, &s, &q_high);
    num.iter().zip(&den).map(|(&n, &d)| m.b.ins().fdiv(n, d)).collect()
}

const SIGMOID_P: [f32; 5] = [2.499_999_9e-1, 8.378_878e-3, 5.509_091_4e-5, 8.250_611e-8, 1.376_879_4e-11];
const SIGMOID_Q: [f32; 5] = [1.0, 1.168_487_9e-1, 1.624_445_8e-3, 5.212_014_5e-6, 3.153_756_6e-9];
const SIGMOID_LIMIT: f32 = 17.0;

/// The logistic function `1 / (1 + e^-x)` of each of `xs`, as `1/2 + r(t)`, with `t` = x
/// clamped to [-17, 17] (where sigmoid is 1 - 4e-8, 1 in f32) and `r(t) = t P(t^2) / Q(t^2)`
/// a rational approximation of sigmoid(t) - 1/2 of degree 9/8, clamped to [-1/2, 1/2] (so
/// that sigmoid stays within [0, 1]): `r(17)` is 1/2 in f32, so the tails are exact. The fit
/// (`tools/fit_mathfn.py`, as GELU's on [0, 17]) errs by 5.3e-9; evaluated in f32 as below,
/// |error| <= 1.6e-7 (checked in `tests/jit.rs`). About 17 instructions and one division per
/// vector, against 23 and a dependency chain half again as long for `x / (1 + e^-x)` through
/// exp, which it replaced (EfficientNet-B0's layers 11.85 -> 11.35 ms).
pub fn sigmoid_many(m: &mut Consts, xs: &[Value]) -> Vec<Value> {
    let r = odd_rational(m, xs, SIGMOID_LIMIT, &SIGMOID_P, &SIGMOID_Q);
    let r = clamp_many(m, &r, -0.5, 0.5);
    r.iter()
        .map(|&r| {
            let half = m.splat(0.5);
            m.b.ins().fadd(half, r)
        })
        .collect()
}

/// SiLU, `x sigmoid(x)`, of each of `xs`, as `x (1/2 + r(t))` with `sigmoid_many`'s r (not
/// clamped to 1/2: `odd_rational`): |error| <= 2.4e-7 max(1, |x|); exactly 0 below -17 and x
/// above 17. Without the clamp on r, EfficientNet-B0's 16 -> 96 expansion at 112x112 (conv, bn,
/// SiLU) took 0.708 ms against 0.847.
pub fn silu_many(m: &mut Consts, xs: &[Value]) -> Vec<Value> {
    let r = odd_rational(m, xs, SIGMOID_LIMIT, &SIGMOID_P, &SIGMOID_Q);
    times_half_plus(m, xs, &r)
}

/// One function of several vectors, emitted step by step across them: each step (a clamp, a
/// Horner step, the division) for every vector before the next step. Cranelift schedules no
/// instructions, so this is the order the CPU sees: two vectors' chains of about 40 cycles
/// overlap. The gain is small, since an epilogue of these functions is bound by its number of
/// instructions on the FMA ports more than by latency (Estrin's scheme, two instructions more
/// for a chain 8 cycles shorter, was slower). The code generator passes two vectors at a time
/// (`CNNC_MATH_GROUP`): in the 16 -> 96 expansion above, 0.917 ms one at a time, 0.888 two,
/// 0.916 three, 0.950 four (whose temporaries no longer fit the 16 registers beside the tile's
/// accumulators). Exp, ln and tanh (and sqrt, one instruction) go one vector after another.
pub fn many(m: &mut Consts, f: UnOp, xs: &[Value]) -> Vec<Value> {
    match f {
        UnOp::Gelu => gelu_many(m, xs),
        UnOp::Sigmoid => sigmoid_many(m, xs),
        UnOp::Silu => silu_many(m, xs),
        UnOp::Exp => xs.iter().map(|&x| exp_f32x4(m, x)).collect(),
        UnOp::Ln => xs.iter().map(|&x| ln_f32x4(m, x)).collect(),
        UnOp::Tanh => xs.iter().map(|&x| tanh_f32x4(m, x)).collect(),
        UnOp::Sqrt => xs.iter().map(|&x| m.b.ins().sqrt(x)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cranelift_codegen::ir::types::I64;
    use cranelift_codegen::ir::{AbiParam, Function, Signature, UserFuncName};
    use cranelift_codegen::isa::CallConv;
    use cranelift_frontend::FunctionBuilderContext;

    /// Every function's constants come from the table (none falls back to a broadcast).
    #[test]
    fn every_constant_is_in_the_table() {
        let mut sig = Signature::new(CallConv::SystemV);
        sig.params.push(AbiParam::new(I64));
        let mut func = Function::with_name_signature(UserFuncName::user(0, 0), sig);
        let mut fctx = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let table = b.ins().iconst(I64, table_address());
        let before = MISSES.with(|n| n.get());
        let mut m = Consts::new(&mut b, table);
        let x = m.splat(0.25);
        for f in [UnOp::Exp, UnOp::Ln, UnOp::Tanh, UnOp::Gelu, UnOp::Sigmoid, UnOp::Silu] {
            many(&mut m, f, &[x, x]);
        }
        assert_eq!(MISSES.with(|n| n.get()), before + 1, "only the test's own 0.25 misses");
    }
}
