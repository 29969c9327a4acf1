//! Channel moves: a sliced branch's channel range and the channel shuffle. Each output channel
//! is a copy of one input channel, `o -> source(o)`; one task per (channel group, row).
//! A slice starting on a block boundary copies whole blocks of 4 channels as vectors; the rest
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
        lower_move(b, g, Source::Shuffle { groups, per_group: c / groups }, false)
    }
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
