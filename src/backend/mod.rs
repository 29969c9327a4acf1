//! The backends that run a checked network: the reference interpreter (the specification) and
//! the Cranelift JIT (fused loop nests, checked against the interpreter).

pub(crate) mod interp;
pub(crate) mod jit;
