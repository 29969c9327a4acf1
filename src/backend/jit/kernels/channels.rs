//! Channel moves: a sliced branch's channel range, the channel shuffle, and (`push_channel_moves`,
//! shared with the concatenation copies) a channel range copied at any offset. Each output
//! channel is a copy of one input channel, `o -> source(o)`; one task per (channel group, row).
//! Slices and copies move whole blocks of 4 channels as vectors (two loads and a lane shuffle
//! when source and destination are not aligned alike), a two-group shuffle builds each output
//! vector from two loads and one lane shuffle; the other shuffles copy channel by channel.

use super::super::compile::JitError;
use super::super::ir::*;
use super::super::lower::Builder;
use super::super::schedule::streamed;
use super::{Lower, TensorView, finish, new_kernel, rows_tasks};
use crate::analysis::fusion::Group;
use crate::ops::{Shuffle, Slice};

/// Where output channel `o` comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Source {
    /// `o + start`.
    Offset(i64),
    /// `(o % groups) * (c / groups) + o / groups`.
    Shuffle { groups: i64, per_group: i64 },
}

impl Source {
    fn of(self, o: IExpr) -> IExpr {
        match self {
            Source::Offset(start) => o + start,
            Source::Shuffle { groups, per_group } => o.clone().rem(groups) * per_group + o.div(groups),
        }
    }
}

impl Lower for Slice {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        lower_move(b, g, Source::Offset(self.start), &|name, input, output| {
            let mut vars = Vars::default();
            let mut k = new_kernel(name, vec![input.buffer("in", false), output.buffer("out", true)]);
            push_channel_moves(&mut k, &mut vars, input, output, self.start);
            finish(k, vars, 1, output)
        })
    }
}

impl Lower for Shuffle {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let c = b.channels(g.anchor()) as i64;
        let source = Source::Shuffle { groups: self.groups as i64, per_group: c / self.groups as i64 };
        if self.groups == 2 && c % 4 == 0 {
            lower_move(b, g, source, &shuffle2_kernel)
        } else {
            lower_move(b, g, source, &|name, input, output| move_kernel(name, input, output, source))
        }
    }
}

/// Pushes a channel move's step: `schedule` builds the kernel that runs, the channel-by-channel
/// `move_kernel` is its lowered reference.
fn lower_move(
    b: &mut Builder,
    g: &Group,
    source: Source,
    schedule: &dyn Fn(&str, &TensorView, &TensorView) -> Kernel,
) -> Result<(), JitError> {
    let x = b.anchor_input(g, 0);
    let (input, output) = (b.view(x)?, b.view(g.output)?);
    let name = b.name_of(g);
    let lowered = move_kernel(&name, &input, &output, source);
    let scheduled = schedule(&name, &input, &output);
    let bindings = vec![b.arena(x)?, b.arena(g.output)?];
    b.push(name, g.nodes.clone(), lowered, scheduled, bindings, streamed(output.len()));
    Ok(())
}

/// The shuffle of two groups of `p = C/2` channels (p even) over whole vectors. Output block
/// `ob` holds channels `2ob, p + 2ob, 2ob + 1, p + 2ob + 1`: two adjacent lanes of a first-half
/// block and two of a second-half one, so each output vector is one `Shuffle` of two loads.
/// Which lanes depends on the parity of `ob` (and `p mod 4`), so a task writes the pair of
/// output blocks `2q, 2q + 1` (`push_block_pairs`).
fn shuffle2_kernel(name: &str, input: &TensorView, output: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let mut k = new_kernel(name, vec![input.buffer("in", false), output.buffer("out", true)]);
    let (blocks, p) = (output.c as i64 / 4, output.c as i64 / 2);
    // Output block 2q + parity, at column x of row y.
    let block = |q: VarId, y: VarId, x: VarId, parity: i64| {
        // First half: channels 4q + 2 parity, + 1. Second half: channel 4q + s, s = p + 2 parity.
        let s = p + 2 * parity;
        let first = load(Ty::F32x4, 0, act(iv(q) * 4, iv(y), iv(x)));
        let second = load(Ty::F32x4, 0, act((iv(q) + s / 4) * 4, iv(y), iv(x)));
        let (a, b) = ((2 * parity) as u8, 4 + (s % 4) as u8);
        let value = FExpr::Shuffle(Box::new(first), Box::new(second), [a, b, a + 1, b + 1]);
        store(Ty::F32x4, 1, act((iv(q) * 2 + parity) * 4, iv(y), iv(x)), value)
    };
    push_block_pairs(&mut k, &mut vars, blocks, output, &block);
    finish(k, vars, 1, output)
}

/// Tasks writing output blocks `2q` and `2q + 1` of every pixel with `block(q, y, x, parity)`,
/// one task per pair and row; when `blocks` is odd, the last block is a task range of its own.
fn push_block_pairs(
    k: &mut Kernel,
    vars: &mut Vars,
    blocks: i64,
    output: &TensorView,
    block: &dyn Fn(VarId, VarId, VarId, i64) -> Stmt,
) {
    let (q, y, x) = (vars.new_var("q"), vars.new_var("y"), vars.new_var("x"));
    let (h, w) = (output.h as i64, output.w as i64);
    let body = vec![for_range(x, 0, w, vec![block(q, y, x, 0), block(q, y, x, 1)])];
    rows_tasks(k, vars, blocks / 2, h, 0, q, y, body);
    if blocks % 2 == 1 {
        let (r, q_last) = (vars.new_var("r"), vars.new_var("q"));
        let body = vec![let_int(q_last, iv(r) + blocks / 2), for_range(x, 0, w, vec![block(q_last, y, x, 0)])];
        rows_tasks(k, vars, 1, h, 0, r, y, body);
    }
}

/// A concatenation of two maps of `p` channels each, shuffled in two groups (one fusion group):
/// output channel `2i` is channel `i` of the first input, `2i + 1` channel `i` of the second.
/// With both inputs on block boundaries and `p` even, each output vector is one lane shuffle of
/// a block of each input (the two-group shuffle's scheme with the halves in two storages); else
/// channel by channel, which is also the lowered form.
pub(in super::super) fn lower_interleave(b: &mut Builder, g: &Group) -> Result<(), JitError> {
    let (first, second) = (b.view(b.anchor_input(g, 0))?, b.view(b.anchor_input(g, 1))?);
    let output = b.view(g.output)?;
    let name = b.name_of(g);
    let buffers = || vec![first.buffer("a", false), second.buffer("b", false), output.buffer("out", true)];
    let lowered = {
        let mut vars = Vars::default();
        let mut k = new_kernel(&name, buffers());
        let (c, y, x) = (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"));
        let (i, odd) = (iv(c).div(2), iv(c).rem(2));
        let at = |buf: BufId| load(Ty::F32, buf, act(i.clone(), iv(y), iv(x)));
        let value = FExpr::Select(Cond::InRange(odd, ic(0), ic(1)), Box::new(at(0)), Box::new(at(1)));
        let body = vec![for_range(x, 0, output.w as i64, vec![store(Ty::F32, 2, act(iv(c), iv(y), iv(x)), value)])];
        rows_tasks(&mut k, &mut vars, output.c as i64, output.h as i64, 0, c, y, body);
        finish(k, vars, 2, &output)
    };
    let aligned =
        |v: &TensorView| matches!(v.layout, Layout::Blocked { channel_offset, .. } if channel_offset % 4 == 0);
    let scheduled = if aligned(&first) && aligned(&second) && first.c % 2 == 0 {
        let mut vars = Vars::default();
        let mut k = new_kernel(&name, buffers());
        let blocks = output.c.div_ceil(4) as i64;
        // Output block 2q + parity: lanes 2 parity and 2 parity + 1 of block q of each input.
        let block = |q: VarId, y: VarId, x: VarId, parity: i64| {
            let a = load(Ty::F32x4, 0, act(iv(q) * 4, iv(y), iv(x)));
            let s = load(Ty::F32x4, 1, act(iv(q) * 4, iv(y), iv(x)));
            let l = (2 * parity) as u8;
            let value = FExpr::Shuffle(Box::new(a), Box::new(s), [l, l + 4, l + 1, l + 5]);
            store(Ty::F32x4, 2, act((iv(q) * 2 + parity) * 4, iv(y), iv(x)), value)
        };
        push_block_pairs(&mut k, &mut vars, blocks, &output, &block);
        finish(k, vars, 2, &output)
    } else {
        lowered.clone()
    };
    let bindings = vec![b.arena(g.inputs[0])?, b.arena(g.inputs[1])?, b.arena(g.output)?];
    b.push(name, g.nodes.clone(), lowered, scheduled, bindings, streamed(output.len()));
    b.set_algorithm("shuffle");
    Ok(())
}

/// Tasks writing `out[c] = in[c + delta]` for every channel `c` of `output` (view channels, at
/// every row and column): whole blocks of the output's storage as vectors (one load when the
/// source channels start on a block of the input's storage too, else the two blocks they
/// straddle and a lane shuffle), the channels of partial blocks one by one, so that lanes
/// belonging to a neighbouring tensor (a concatenation's other branches) are never written.
pub(super) fn push_channel_moves(k: &mut Kernel, vars: &mut Vars, input: &TensorView, output: &TensorView, delta: i64) {
    let (c, y, x) = (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"));
    let (h, w, n) = (output.h as i64, output.w as i64, output.c as i64);
    let placed = |v: &TensorView| match v.layout {
        Layout::Blocked { channel_offset, .. } => Some(channel_offset as i64),
        Layout::Flat { .. } => None,
    };
    // Output channels c0 + 4m .. c0 + 4m + 3 (m < vectors) fill whole storage blocks; their
    // source starts at input storage channel a0 + 4m, lane `shift` of its block.
    let (mut c0, mut vectors, mut shift, mut src0) = (0, 0, 0, 0);
    if let (Some(io), Some(oo)) = (placed(input), placed(output)) {
        c0 = (4 - oo % 4) % 4;
        let a0 = io + c0 + delta;
        shift = a0 % 4;
        src0 = a0 - shift - io;
        // Every lane of a vector is a real source channel, so both blocks it reads hold real
        // channels of the input (the second one its lane 3): nothing past the input is read.
        vectors = ((n - c0) / 4).max(0);
        c0 = c0.min(n);
    }
    let at = |c: IExpr| act(c, iv(y), iv(x));
    let value = if shift == 0 {
        load(Ty::F32x4, 0, at(iv(c) * 4 + src0))
    } else {
        let (a, b) = (load(Ty::F32x4, 0, at(iv(c) * 4 + src0)), load(Ty::F32x4, 0, at(iv(c) * 4 + (src0 + 4))));
        let l = shift as u8;
        FExpr::Shuffle(Box::new(a), Box::new(b), [l, l + 1, l + 2, l + 3])
    };
    let body = vec![for_range(x, 0, w, vec![store(Ty::F32x4, 1, at(iv(c) * 4 + c0), value)])];
    rows_tasks(k, vars, vectors, h, 0, c, y, body);
    // The channels before the vectors and after them, one by one.
    let one = |c: IExpr| store(Ty::F32, 1, at(c.clone()), load(Ty::F32, 0, at(c + delta)));
    let (r, tail) = (vars.new_var("r"), c0 + 4 * vectors);
    let body = vec![for_range(x, 0, w, vec![one(iv(r))])];
    rows_tasks(k, vars, c0, h, 0, r, y, body);
    let body = vec![let_int(c, iv(r) + tail), for_range(x, 0, w, vec![one(iv(c))])];
    rows_tasks(k, vars, n - tail, h, 0, r, y, body);
}

/// Channel by channel: output channel `o` from input channel `source.of(o)`.
pub(super) fn move_kernel(name: &str, input: &TensorView, output: &TensorView, source: Source) -> Kernel {
    let mut vars = Vars::default();
    let mut k = new_kernel(name, vec![input.buffer("in", false), output.buffer("out", true)]);
    let (c, y, x) = (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"));
    let value = load(Ty::F32, 0, act(source.of(iv(c)), iv(y), iv(x)));
    let body = vec![for_range(x, 0, output.w as i64, vec![store(Ty::F32, 1, act(iv(c), iv(y), iv(x)), value)])];
    rows_tasks(&mut k, &mut vars, output.c as i64, output.h as i64, 0, c, y, body);
    finish(k, vars, 1, output)
}
