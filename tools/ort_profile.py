#!/usr/bin/env python3
"""ONNX Runtime's time per node for a model `../shared/bench/peers.py` exported, to set against
`cnnc bench MODEL --json`'s per-layer times: which layers ORT runs faster, and by how much.

Runs target/peers/MODEL.onnx on ORT's CPU provider with 2 intra-op threads (as peers.py does)
and profiling on, over `--runs` seeded random inputs after one warm-up, and prints each node's
fastest kernel time in microseconds, then the sums by op type.

Usage (from the project root, with onnxruntime and numpy installed):
    tools/ort_profile.py googlenet [--runs 20] [--size 224]
"""
import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--size", type=int, default=None, help="input side (default 299 for inception_v3, else 224)")
    a = ap.parse_args()
    size = a.size or (299 if a.model == "inception_v3" else 224)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), a.model)
    s = ort.InferenceSession(f"target/peers/{a.model}.onnx", so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    name = s.get_inputs()[0].name
    for _ in range(a.runs + 1):
        s.run(None, {name: x})
    with open(s.end_profiling()) as f:
        events = json.load(f)
    times = collections.defaultdict(list)
    ops = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            times[node].append(e["dur"])
            ops[node] = e["args"].get("op_name", "?")
    by_op = collections.Counter()
    for node, t in times.items():
        print(f"{node:64s} {ops[node]:18s} {min(t):8d}")
        by_op[ops[node]] += min(t)
    print()
    for op, t in by_op.most_common():
        print(f"{op:18s} {t:8d}")
    print(f"{'total':18s} {sum(by_op.values()):8d}  (us, sum of each node's fastest run)")


if __name__ == "__main__":
    main()
