#!/usr/bin/env python3
"""Convert a PyTorch state dict to cnnc's safetensors weights.

Usage: tools/torch2cnnc.py STATE_DICT.pth MODEL.cnn -o OUT.safetensors [--cnnc PATH]

Tensors are mapped by position: the state dict's order (skipping BN's `num_batches_tracked`)
against `cnnc params MODEL.cnn --json`, which lists the network's tensors in layer order with, per
layer, PyTorch's order (conv/fc: weight, bias; bn: weight, bias, running_mean, running_var). The
.cnn file must therefore list its layers in the module order of the PyTorch model; the examples
for torchvision's models do. Every shape is checked, and any mismatch fails with both names.

Needs: python3 -m pip install torch safetensors
"""
import argparse
import json
import os
import shutil
import subprocess
import sys


def cnnc_binary(explicit):
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    for build in ("release", "debug"):
        candidate = os.path.join(here, "..", "target", build, "cnnc")
        if os.path.exists(candidate):
            return candidate
    found = shutil.which("cnnc")
    if not found:
        sys.exit("error: cannot find the cnnc binary; build it (cargo build --release) or pass --cnnc")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("state_dict")
    ap.add_argument("model")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--cnnc", help="path to the cnnc binary (default: target/release/cnnc)")
    a = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    state = torch.load(a.state_dict, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        sys.exit(f"error: {a.state_dict} holds a {type(state).__name__}, not a state dict")
    source = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]

    listed = subprocess.run([cnnc_binary(a.cnnc), "params", a.model, "--json"], capture_output=True, text=True)
    if listed.returncode != 0:
        sys.exit(f"error: cnnc params {a.model} failed:\n{listed.stderr}")
    target = json.loads(listed.stdout)

    if len(source) != len(target):
        sys.exit(
            f"error: {a.state_dict} has {len(source)} tensors (without num_batches_tracked) "
            f"but {a.model} needs {len(target)}"
        )
    out = {}
    for (sname, tensor), spec in zip(source, target):
        if list(tensor.shape) != spec["shape"]:
            sys.exit(
                f"error: shape mismatch: {a.state_dict} `{sname}` is {list(tensor.shape)} "
                f"but {a.model} `{spec['name']}` ({spec['kind']}) needs {spec['shape']}"
            )
        out[spec["name"]] = tensor.detach().to(torch.float32).contiguous()
    save_file(out, a.output, metadata={"source": os.path.basename(a.state_dict), "converter": "tools/torch2cnnc.py"})
    print(f"wrote {len(out)} tensors to {a.output}")


if __name__ == "__main__":
    main()
