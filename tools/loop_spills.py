#!/usr/bin/env python3
"""Finds register spills inside the JIT's reduction loops: the check behind `Stmt::Broadcast`'s
carried accumulators (see its doc in src/backend/jit/ir.rs).

For each model it compiles the kernels once (`cnnc bench --iters 1` with `CNNC_DUMP_CODE`, which
writes each kernel's raw machine code), disassembles them with `objdump`, and lists every
innermost loop (a backward `jmp` with no other backward `jmp` inside) holding 24 to 48 FMAs in
a multiple of 4, the 4 unrolled reduction steps (one per input channel of a block) of a
register tile, that moves a vector register to or from the stack. The Winograd F(4x4)
transforms' loops, which spill by design, hold 30.

Usage (from the project root; needs binutils' objdump):
    tools/loop_spills.py [--bin target/release/cnnc] MODEL [MODEL ...]
    tools/loop_spills.py resnet18 googlenet inception_v3

Weights: target/peers/MODEL.safetensors if it exists, else `cnnc bench`'s seeded ones (the
plan depends only on the shapes). Prints one line per model and one per loop that spills.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

LINE = re.compile(r"\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*\t(.*)")
JMP = re.compile(r"jmp\s+0x([0-9a-f]+)")


def instructions(path):
    out = subprocess.run(["objdump", "-D", "-b", "binary", "-mi386:x86-64", path],
                         capture_output=True, text=True, check=True).stdout
    return [(int(m.group(1), 16), m.group(2)) for m in map(LINE.match, out.splitlines()) if m]


def reduction_loops(ins):
    """(FMAs, vector stack moves, instructions) of each innermost loop of 24 to 48 FMAs, 4k."""
    loops = []
    for addr, text in ins:
        m = JMP.match(text)
        if not m or int(m.group(1), 16) >= addr:
            continue
        top = int(m.group(1), 16)
        body = [(a, t) for a, t in ins if top <= a <= addr]
        inner = not any((j := JMP.match(t)) and top <= int(j.group(1), 16) < a for a, t in body[:-1])
        fmas = sum("vfmadd" in t for _, t in body)
        if inner and 24 <= fmas <= 48 and fmas % 4 == 0:
            stack = sum("xmm" in t and "rsp" in t for _, t in body)
            loops.append((fmas, stack, len(body)))
    return loops


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--bin", default="target/release/cnnc")
    args = ap.parse_args()
    spilled = 0
    for model in args.models:
        with tempfile.TemporaryDirectory() as d:
            cmd = [args.bin, "bench", f"examples/{model}.cnn", "--iters", "1"]
            weights = f"target/peers/{model}.safetensors"
            if os.path.exists(weights):
                cmd += ["--weights", weights]
            subprocess.run(cmd, env=dict(os.environ, CNNC_DUMP_CODE=d), capture_output=True, check=True)
            total, bad = 0, []
            for path in sorted(glob.glob(os.path.join(d, "*.bin"))):
                for fmas, stack, length in reduction_loops(instructions(path)):
                    total += 1
                    if stack:
                        bad.append(f"  {os.path.basename(path)[:-4]}: {fmas} FMAs, "
                                   f"{stack} vector stack moves in {length} instructions")
        print(f"{model}: {total} reduction loops, {len(bad)} with vector stack moves")
        print("\n".join(bad)) if bad else None
        spilled += len(bad)
    sys.exit(1 if spilled else 0)


if __name__ == "__main__":
    main()
