//! Loads and stores, checked in bounds-checked mode (`CNNC_JIT_CHECKED`): the address is
//! compared with its buffer's extent; an access outside it is skipped (a load gives 0) and its
//! buffer and offset written to the kernel's error slot, which the runtime reports.

use super::{Gen, flags};
use crate::backend::jit::ir::BufId;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32X4, I64};
use cranelift_codegen::ir::{InstBuilder, Type, Value};

impl Gen<'_, '_> {
    /// A load of `ty` at `p + off` in `buf`; checked in bounds-checked mode.
    pub(super) fn raw_load(&mut self, buf: BufId, ty: Type, p: Value, off: i32) -> Value {
        let Some(in_bounds) = self.bounds_check(buf, p, off, ty.bytes()) else {
            return self.b.ins().load(ty, flags(), p, off);
        };
        let (ok, bad, join) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        let result = self.b.append_block_param(join, ty);
        self.b.ins().brif(in_bounds, ok, &[], bad, &[]);
        self.b.seal_block(ok);
        self.b.seal_block(bad);
        self.b.switch_to_block(ok);
        let v = self.b.ins().load(ty, flags(), p, off);
        self.b.ins().jump(join, &[v.into()]);
        self.b.switch_to_block(bad);
        self.record_out_of_bounds(buf, p, off);
        let zero = self.b.ins().f32const(0.0);
        let zero = if ty == F32X4 { self.b.ins().splat(F32X4, zero) } else { zero };
        self.b.ins().jump(join, &[zero.into()]);
        self.b.seal_block(join);
        self.b.switch_to_block(join);
        result
    }

    /// A store of `value` at `p + off` in `buf`; checked in bounds-checked mode.
    pub(super) fn raw_store(&mut self, buf: BufId, value: Value, p: Value, off: i32) {
        let bytes = self.b.func.dfg.value_type(value).bytes();
        let Some(in_bounds) = self.bounds_check(buf, p, off, bytes) else {
            self.b.ins().store(flags(), value, p, off);
            return;
        };
        let (ok, bad, join) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().brif(in_bounds, ok, &[], bad, &[]);
        self.b.seal_block(ok);
        self.b.seal_block(bad);
        self.b.switch_to_block(ok);
        self.b.ins().store(flags(), value, p, off);
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(bad);
        self.record_out_of_bounds(buf, p, off);
        self.b.ins().jump(join, &[]);
        self.b.seal_block(join);
        self.b.switch_to_block(join);
    }

    /// In bounds-checked mode, whether `bytes` at `p + off` lie inside `buf`.
    fn bounds_check(&mut self, buf: BufId, p: Value, off: i32, bytes: u32) -> Option<Value> {
        self.check_slot?;
        let addr = self.b.ins().iadd_imm_s(p, off as i64);
        let lo = self.buf_ptr(buf);
        let len = (self.k.buffers[buf].elements() * 4) as i64;
        let hi = self.b.ins().iadd_imm_s(lo, len - bytes as i64);
        let above = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, addr, lo);
        let below = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, addr, hi);
        Some(self.b.ins().band(above, below))
    }

    /// Writes `[buf + 1, byte offset]` into the error slot.
    fn record_out_of_bounds(&mut self, buf: BufId, p: Value, off: i32) {
        let slot = self.check_slot.expect("bounds-checked mode");
        let addr = self.b.ins().iadd_imm_s(p, off as i64);
        let lo = self.buf_ptr(buf);
        let offset = self.b.ins().isub(addr, lo);
        let id = self.b.ins().iconst(I64, buf as i64 + 1);
        self.b.ins().store(flags(), id, slot, 0);
        self.b.ins().store(flags(), offset, slot, 8);
    }
}
