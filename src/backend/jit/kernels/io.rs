//! Data movement: the caller's NCHW image into the blocked input storage, results back out, and
//! the copies of concatenation branches that could not be written in place. Views (flatten,
//! dropout) move nothing and form no kernel.

use super::super::compile::JitError;
use super::super::ir::*;
use super::super::lower::{Binding, Builder};
use super::super::schedule::streamed;
use super::channels::{Source, lower_interleave, move_kernel, push_channel_moves};
use super::{Lower, TensorView, ceil_div, finish, new_kernel, rows_tasks};
use crate::analysis::fusion::Group;
use crate::ops::{Concat, Dropout, Flatten, InputOp, Invalid};

impl Lower for InputOp {
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        let out = b.view(g.output)?;
        let lowered = lower_input("input", &out);
        let scheduled = if out.flat { lowered.clone() } else { schedule_input("input", &out) };
        let bindings = vec![Binding::Image, b.arena(g.output)?];
        b.push(b.name_of(g), g.nodes.clone(), lowered, scheduled, bindings, streamed(out.len()));
        Ok(())
    }
}

impl Lower for Concat {
    /// Branches written in place need nothing; the others are copied into their channel slice.
    /// A concatenation fused with its two-group shuffle interleaves its two inputs instead.
    fn lower(&self, b: &mut Builder, g: &Group) -> Result<(), JitError> {
        if g.nodes.len() > 1 {
            return lower_interleave(b, g);
        }
        let (name, out) = (b.name_of(g), b.view(g.output)?);
        let halo = match &out.layout {
            Layout::Blocked { halo, .. } => *halo,
            Layout::Flat { .. } => [0, 0],
        };
        let mut channel = b.channel_offset(g.output)?;
        for (k, &input) in g.inputs.iter().enumerate() {
            let branch = b.view(input)?;
            if b.is_concat_copy(g.output, k) {
                // The branch's channels of the concatenation: same layout, shifted.
                let (h, w) = if branch.flat { (1, 1) } else { (branch.h, branch.w) };
                let slice = TensorView {
                    layout: Layout::Blocked { c: branch.c, h, w, halo, channel_offset: channel },
                    ..branch.clone()
                };
                let copy_name = format!("{name}.copy{}", k + 1);
                let scheduled = lower_copy(&copy_name, &branch, &slice);
                let lowered = if branch.flat {
                    scheduled.clone()
                } else {
                    move_kernel(&copy_name, &branch, &slice, Source::Offset(0))
                };
                let bindings = vec![b.arena(input)?, b.arena(g.output)?];
                b.push(copy_name, vec![g.output], lowered, scheduled, bindings, streamed(branch.len()));
            }
            channel += b.channels(input);
        }
        Ok(())
    }
}

impl Lower for Flatten {
    fn lower(&self, _: &mut Builder, _: &Group) -> Result<(), JitError> {
        unreachable!("fusion: views form no group")
    }
}

impl Lower for Dropout {
    fn lower(&self, _: &mut Builder, _: &Group) -> Result<(), JitError> {
        unreachable!("fusion: views form no group")
    }
}

impl Lower for Invalid {
    fn lower(&self, _: &mut Builder, _: &Group) -> Result<(), JitError> {
        Err(JitError::Unsupported("the network failed to check".into()))
    }
}

/// Copies a map into a channel slice of another storage (a concatenation branch that could not
/// be written in place). `output.layout` carries the slice's channel offset. Maps go through the
/// channel mover; their lowered reference is the channel-by-channel `move_kernel`.
fn lower_copy(name: &str, input: &TensorView, output: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let mut k = new_kernel(name, vec![input.buffer("in", false), output.buffer("out", true)]);
    if input.flat || output.flat {
        let (t, f) = (vars.new_var("t"), vars.new_var("f"));
        let n = input.len() as i64;
        let copy = store(Ty::F32, 1, output.flat_index(iv(f)), load(Ty::F32, 0, input.flat_index(iv(f))));
        let body = vec![for_range(f, iv(t) * 256, (iv(t) * 256 + 256).min(ic(n)), vec![copy])];
        k.push_tasks(t, ceil_div(n, 256), body);
        k.var_names = vars.names;
        return k;
    }
    push_channel_moves(&mut k, &mut vars, input, output, 0);
    finish(k, vars, 1, output)
}

/// The caller's NCHW image (flat buffer 0) into the blocked input storage; padding channels of
/// the last block are written as zeros.
fn lower_input(name: &str, output: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let (c, y, x) = (vars.new_var("c"), vars.new_var("y"), vars.new_var("x"));
    let (ch, h, w) = (output.c as i64, output.h as i64, output.w as i64);
    let mut k = new_kernel(
        name,
        vec![Buffer::new("image", Layout::Flat { len: output.len() }, false), output.buffer("out", true)],
    );
    let pixel = load(Ty::F32, 0, Index::Flat(iv(c) * (h * w) + iv(y) * w + iv(x)));
    let body = vec![for_range(x, 0, w, vec![store(Ty::F32, 1, act(iv(c), iv(y), iv(x)), pixel)])];
    rows_tasks(&mut k, &mut vars, ch, h, 0, c, y, body);
    let padded = ceil_div(ch, 4) * 4;
    if padded > ch {
        // The padding lanes: (c - ch) runs over 0..padded-ch.
        let (t, p) = (vars.new_var("t"), vars.new_var("p"));
        let body = vec![
            let_int(p, iv(t).div(h) + ch),
            let_int(y, iv(t).rem(h)),
            for_range(x, 0, w, vec![store(Ty::F32, 1, act(iv(p), iv(y), iv(x)), fc(0.0))]),
        ];
        k.push_tasks(t, (padded - ch) * h, body);
    }
    finish(k, vars, 1, output)
}

/// `lower_input` four pixels at a time: per block of 4 channels and row, each channel's four
/// pixels are one vector load (a zero vector past the last channel), a 4x4 transpose by lane
/// shuffles turns them into four pixels' blocks, and those are four vector stores. Columns past
/// the last multiple of 4 go value by value.
fn schedule_input(name: &str, output: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let (cb, y, q) = (vars.new_var("cb"), vars.new_var("y"), vars.new_var("q"));
    let rows: Vec<VarId> = (0..4).map(|_| vars.new_var("r")).collect();
    let pairs: Vec<VarId> = (0..4).map(|_| vars.new_var("t")).collect();
    let (ch, h, w) = (output.c as i64, output.h as i64, output.w as i64);
    let mut k = new_kernel(
        name,
        vec![Buffer::new("image", Layout::Flat { len: output.len() }, false), output.buffer("out", true)],
    );
    let pixel_at = |c: IExpr, x: IExpr| Index::Flat(c * (h * w) + iv(y) * w + x);
    // Blocks whose four channels are all real, then the last block's `lanes` real channels.
    let body = |lanes: i64| -> Vec<Stmt> {
        let c = |l: i64| iv(cb) * 4 + l;
        let mut quad: Vec<Stmt> = (0..4)
            .map(|l| {
                let v = if l < lanes { load(Ty::F32x4, 0, pixel_at(c(l), iv(q) * 4)) } else { splat(fc(0.0)) };
                set(rows[l as usize], Ty::F32x4, v)
            })
            .collect();
        // (c0 p0, c1 p0, c0 p1, c1 p1), (c0 p2, c1 p2, c0 p3, c1 p3), the same for c2 and c3.
        let shuffle = |a: VarId, b: VarId, m: [u8; 4]| FExpr::Shuffle(Box::new(fv(a)), Box::new(fv(b)), m);
        for (i, &(a, b)) in [(0, 1), (2, 3)].iter().enumerate() {
            quad.push(set(pairs[2 * i], Ty::F32x4, shuffle(rows[a], rows[b], [0, 4, 1, 5])));
            quad.push(set(pairs[2 * i + 1], Ty::F32x4, shuffle(rows[a], rows[b], [2, 6, 3, 7])));
        }
        for p in 0..4usize {
            let (lo, hi) = (pairs[p / 2], pairs[2 + p / 2]);
            let m = if p % 2 == 0 { [0, 1, 4, 5] } else { [2, 3, 6, 7] };
            quad.push(store(Ty::F32x4, 1, act(c(0), iv(y), iv(q) * 4 + p as i64), shuffle(lo, hi, m)));
        }
        let mut code = vec![for_range(q, 0, w / 4, quad)];
        for x in w / 4 * 4..w {
            for l in 0..4 {
                let v = if l < lanes { load(Ty::F32, 0, pixel_at(c(l), ic(x))) } else { fc(0.0) };
                code.push(store(Ty::F32, 1, act(c(l), iv(y), ic(x)), v));
            }
        }
        code
    };
    let (full, lanes) = (ch / 4, ch % 4);
    rows_tasks(&mut k, &mut vars, full, h, 0, cb, y, body(4));
    if lanes > 0 {
        let t = vars.new_var("t");
        let mut last = vec![let_int(cb, ic(full)), let_int(y, iv(t))];
        last.extend(body(lanes));
        k.push_tasks(t, h, last);
    }
    finish(k, vars, 1, output)
}

/// A tensor into the caller's flat array (buffer 1), in C, H, W order. Maps are copied a row
/// per task so that no address needs a division by a non-constant-power-of-two.
pub(in super::super) fn lower_output(name: &str, input: &TensorView) -> Kernel {
    let mut vars = Vars::default();
    let n = input.len() as i64;
    let mut k =
        new_kernel(name, vec![input.buffer("in", false), Buffer::new("result", Layout::Flat { len: n as u64 }, true)]);
    if input.flat {
        let (t, f) = (vars.new_var("t"), vars.new_var("f"));
        let copy = store(Ty::F32, 1, Index::Flat(iv(f)), load(Ty::F32, 0, input.flat_index(iv(f))));
        let body = vec![for_range(f, iv(t) * 1024, (iv(t) * 1024 + 1024).min(ic(n)), vec![copy])];
        k.push_tasks(t, ceil_div(n, 1024), body);
    } else {
        // A task is a row of one block of 4 channels: each pixel's block is loaded as one
        // vector and its lanes stored to the rows of their channels.
        let (ch, h, w) = (input.c as i64, input.h as i64, input.w as i64);
        let row = |vars: &mut Vars, lanes: i64, cb: VarId, y: VarId| -> Vec<Stmt> {
            let (x, px) = (vars.new_var("x"), vars.new_var("px"));
            let mut body = vec![set(px, Ty::F32x4, load(Ty::F32x4, 0, act(iv(cb) * 4, iv(y), iv(x))))];
            for lane in 0..lanes {
                let at = Index::Flat((iv(cb) * 4 + lane) * (h * w) + iv(y) * w + iv(x));
                body.push(store(Ty::F32, 1, at, FExpr::Lane(Box::new(fv(px)), lane as u8)));
            }
            vec![for_range(x, 0, w, body)]
        };
        let (cb, y) = (vars.new_var("cb"), vars.new_var("y"));
        let body = row(&mut vars, 4, cb, y);
        rows_tasks(&mut k, &mut vars, ch / 4, h, 0, cb, y, body);
        if ch % 4 != 0 {
            // The last, partial block: its real lanes only.
            let (t, y) = (vars.new_var("t"), vars.new_var("y"));
            let cb = vars.new_var("cb");
            let mut body = vec![let_int(cb, ic(ch / 4)), let_int(y, iv(t))];
            body.extend(row(&mut vars, ch % 4, cb, y));
            k.push_tasks(t, h, body);
        }
    }
    k.var_names = vars.names;
    k
}
