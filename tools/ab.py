#!/usr/bin/env python3
"""Times two (or more) cnnc binaries on one model, alternating, so that both see the same
minutes of a noisy host: the before/after figures in BENCHMARKS.md come from this.

Each round runs every binary once, in order:
    BIN bench examples/MODEL.cnn [--weights target/peers/MODEL.safetensors] --iters K --json
and records its compile time and forward-pass median. The summary gives, per binary, the
minimum and the median over the rounds of both.

Usage (from the project root):
    tools/ab.py MODEL BIN_A BIN_B [BIN ...] [--rounds 6] [--iters 40] [--threads 2]
    tools/ab.py shufflenet_v2_x1_0 /tmp/cnnc_before target/release/cnnc

Weights: target/peers/MODEL.safetensors if it exists (`../shared/bench/peers.py` writes it),
else `cnnc bench`'s seeded random weights. Only the standard library is needed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def run(binary, model, weights, iters, threads):
    cmd = [binary, "bench", f"examples/{model}.cnn", "--iters", str(iters), "--json"]
    if weights:
        cmd += ["--weights", weights]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        sys.exit(f"cannot run {binary}: {e}")
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr.strip()}")
    d = json.loads(out.stdout)
    return d["compile_ms"], d["forward_ms_median"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="an example's name, such as resnet18")
    ap.add_argument("binaries", nargs="+", help="two or more cnnc binaries")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if len(a.binaries) < 2:
        ap.error("give at least two binaries")
    if not os.path.exists(f"examples/{a.model}.cnn"):
        ap.error(f"examples/{a.model}.cnn not found (run from the project root)")
    weights = f"target/peers/{a.model}.safetensors"
    weights = weights if os.path.exists(weights) else None
    results = [[] for _ in a.binaries]
    for _ in range(a.rounds):
        for i, b in enumerate(a.binaries):
            results[i].append(run(b, a.model, weights, a.iters, a.threads))
    print(f"{a.model}: {a.rounds} alternating rounds, {a.iters} iterations each"
          f"{'' if weights else ' (random weights)'}; ms")
    print(f"{'binary':<32} {'compile min':>11} {'median':>8} {'forward min':>11} {'median':>8}")
    for b, v in zip(a.binaries, results):
        c = [x[0] for x in v]
        f = [x[1] for x in v]
        print(f"{b:<32} {min(c):>11.1f} {statistics.median(c):>8.1f} {min(f):>11.2f} {statistics.median(f):>8.2f}")


if __name__ == "__main__":
    main()
