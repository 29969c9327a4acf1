//! Channel moves: a sliced branch's channel range and the channel shuffle. Each output channel
//! is a copy of one input channel, `o -> source(o)`; one task per (channel group, row).
//! A slice starting on a block boundary copies whole blocks of 4 channels as vectors, and a
//! two-group shuffle builds each output vector from two loads and one lane shuffle; the rest
//! copy channel by channel.

use super::super::compile::JitError;
use super::super::ir::*;
use super::super::lower::Builder;
use super::{Lower, TensorView, ceil_div, finish, lanes, new_kernel, rows_tasks};
use crate::analysis::fusion::Group;
use crate::ops::{Shuffle, Slice};

/// Where output channel `o` comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
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
        let vector = self.start % 4 == 0;
        lower_move(b, g, Source::Offset(self.start), vector)
    }
}

impl Lower for Shuffle {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let c = b.channels(g.anchor()) as i64;
        let groups = self.groups as i64;
        if groups == 2 && c % 4 == 0 {
            let x = b.anchor_input(g, 0);
            let (input, output) = (b.view(x)?, b.view(g.output)?);
            let name = b.name_of(g);
            let lowered = move_kernel(&name, &input, &output, Source::Shuffle { groups, per_group: c / 2 }, Ty::F32);
            let scheduled = shuffle2_kernel(&name, &input, &output);
            let bindings = vec![b.arena(x)?, b.arena(g.output)?];
            b.push(name, g.nodes.clone(), lowered, scheduled, bindings, output.len());
            return Ok(());
        }
        lower_move(b, g, Source::Shuffle { groups, per_group: c / groups }, false)
    }
}

/// The shuffle of two groups of `p = C/2` channels (p even) over whole vectors. Output block
/// `ob` holds channels `2ob, p + 2ob, 2ob + 1, p + 2ob + 1`: two adjacent lanes of a first-half
/// block and two of a second-half one, so each output vector is one `Shuffle` of two loads.
/// Which lanes depends on the parity of `ob` (and `p mod 4`), so a task writes the pair of
/// output blocks `2q, 2q + 1`; when C/4 is odd the last block is a task range of its own.
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
    let (q, y, x) = (vars.new_var("q"), vars.new_var("y"), vars.new_var("x"));
    let w = output.w as i64;
    let body = vec![for_range(x, 0, w, vec![block(q, y, x, 0), block(q, y, x, 1)])];
    rows_tasks(&mut k, &mut vars, blocks / 2, output.h as i64, 0, q, y, body);
    if blocks % 2 == 1 {
        let (r, q_last) = (vars.new_var("r"), vars.new_var("q"));
        let body = vec![let_int(q_last, iv(r) + blocks / 2), for_range(x, 0, w, vec![block(q_last, y, x, 0)])];
        rows_tasks(&mut k, &mut vars, 1, output.h as i64, 0, r, y, body);
    }
    finish(k, vars, 1, output)
}

fn lower_move(b: &mut Builder, g: &Group, source: Source, vector: bool) -> Result<(), JitError> {
    let x = b.anchor_input(g, 0);
    let (input, output) = (b.view(x)?, b.view(g.output)?);
    let name = b.name_of(g);
    let lowered = move_kernel(&name, &input, &output, source, Ty::F32);
    let scheduled = move_kernel(&name, &input, &output, source, if vector { Ty::F32x4 } else { Ty::F32 });
    let bindings = vec![b.arena(x)?, b.arena(g.output)?];
    let work = output.len();
    b.push(name, g.nodes.clone(), lowered, scheduled, bindings, work);
    Ok(())
}

fn move_kernel(name: &str, input: &TensorView, output: &TensorView, source: Source, ty: Ty) -> Kernel {
    let mut vars = Vars::default();
    let mut k = new_kernel(name, vec![input.buffer("in", false), output.buffer("out", true)]);
    let (c, y, x) = (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"));
    let lanes = lanes(ty);
    let o = iv(c) * lanes;
    let value = load(ty, 0, act(source.of(o.clone()), iv(y), iv(x)));
    let body = vec![for_range(x, 0, output.w as i64, vec![store(ty, 1, act(o, iv(y), iv(x)), value)])];
    rows_tasks(&mut k, &mut vars, ceil_div(output.c as i64, lanes), output.h as i64, 0, c, y, body);
    finish(k, vars, 1, output)
}
