#!/usr/bin/env python3
"""How fast cnnc could possibly be on this machine, against ONNX Runtime and issue 10's targets.

For each model, a lower bound on cnnc's batch-1 forward time, granting more than any schedule
could reach:
  - every convolution runs at the machine's 128-bit FMA peak on all threads (the widest vector
    Cranelift emits), counting 2 FLOP per multiply-accumulate;
  - Winograd layers need only 1/5.06 of their direct multiply-accumulates (F(6x6, 3x3), the
    largest reduction cnnc has, for every one of them; transforms free);
  - fully connected layers (`gemv`) only stream their weights once, at the machine's copy
    bandwidth (memcpy's read + written figure, as generous as it gets for a read-only stream);
  - pooling, normalisation, activations, shuffles and copies take no time at all.
A second bound (`Strassen` column) grants one more thing cnnc does not do: every `gemm` layer
(1x1 convolutions, the layers that have no Winograd form) through one level of Strassen's
algorithm, 7 products of half size for 8, with its additions free: 7/8 of their
multiply-accumulates.
Divided by ONNX Runtime's time from a `peers.py` sitting, the bound is the best ratio cnnc could
reach without wider vectors; where it exceeds the issue's target, the target cannot be met on
this host by scheduling alone.

Usage (from the project root, after `cargo build --release`):
  tools/bounds.py --gflops G --gbs B --peers PEERS_OUTPUT [MODEL ...]
G and B are the all-thread `128` and `copy` figures of tools/peaks.py; PEERS_OUTPUT is the saved
output of ../shared/bench/peers.py (its `model {'cnnc': .., 'ort': ..}` lines). Layer MACs and
algorithms come from `cnnc bench --json` on examples/MODEL.cnn (with target/peers/MODEL.safetensors
when present, so that the schedule is the one peers.py timed).
"""
import argparse
import ast
import json
import os
import subprocess

TARGETS = {"vgg16": 0.8, "googlenet": 1.0, "resnet18": 1.0, "alexnet": 1.0,
           "mobilenet_v2": 1.2, "efficientnet_b0": 1.2}
WINOGRAD_REDUCTION = 9 * 36 / 64  # F(6x6, 3x3): 9 MACs per output against (6+2)^2 / 6^2


def peers_times(path):
    times = {}
    for line in open(path):
        name, _, rest = line.partition(" ")
        if rest.startswith("{"):
            times[name] = ast.literal_eval(rest.strip())
    return times


def layers(binary, model):
    cmd = [binary, "bench", f"examples/{model}.cnn", "--iters", "1", "--json"]
    weights = f"target/peers/{model}.safetensors"
    if os.path.exists(weights):
        cmd += ["--weights", weights]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["layers"]


def bound_ms(model_layers, gflops, gbs, strassen=False):
    compute = memory = 0.0
    for layer in model_layers:
        macs = layer["macs"]
        if strassen and layer["algo"] == "gemm":
            macs = macs * 7 / 8
        if layer["algo"] == "gemv":
            memory += macs * 4 / (gbs * 1e9)
        elif layer["algo"] == "winograd":
            compute += 2 * macs / WINOGRAD_REDUCTION / (gflops * 1e9)
        else:
            compute += 2 * macs / (gflops * 1e9)
    return 1e3 * (compute + memory)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gflops", type=float, required=True, help="128-bit FMA peak, all threads")
    ap.add_argument("--gbs", type=float, required=True, help="copy bandwidth, all threads")
    ap.add_argument("--peers", required=True, help="saved output of peers.py")
    ap.add_argument("--bin", default="target/release/cnnc")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    times = peers_times(a.peers)
    models = a.models or list(times)
    print("| model | ORT ms | cnnc ms | bound ms | bound/ORT | Strassen bound/ORT | target | cnnc/bound |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m in models:
        t = times[m]
        ls = layers(a.bin, m)
        b = bound_ms(ls, a.gflops, a.gbs)
        bs = bound_ms(ls, a.gflops, a.gbs, strassen=True)
        target = TARGETS.get(m, 1.5)

        def ratio(x):
            return f"{x / t['ort']:.2f}" + ("" if x / t["ort"] <= target else " (above)")

        print(f"| {m} | {t['ort']:.1f} | {t['cnnc']:.1f} | {b:.1f} | {ratio(b)} | {ratio(bs)} | "
              f"{target} | {t['cnnc'] / b:.2f} |")


if __name__ == "__main__":
    main()
