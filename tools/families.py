#!/usr/bin/env python3
"""PyTorch agreement for the modern families (MobileNetV2, EfficientNet, ShuffleNetV2, RegNetY,
ConvNeXt), with random batch-norm statistics so that folding and epilogues are exercised.

Usage:
  tools/families.py agree [MODEL ...] [--cnnc PATH]
      Full-size torchvision models against examples/MODEL.cnn (any model with an example, e.g.
      densenet121 and inception_v3 too): seeded random weights, BN statistics, layer-norm affines
      and layer scales; one normalised input of the example's size. Converts
      the state dict with tools/torch2cnnc.py, runs `cnnc run --json` on both backends (the JIT
      on one image, then on two copies of it, which compiles for many images) and prints
      max|diff| / std(logits). Nothing is written to the repository (files go to target/families).
  tools/families.py fixtures [--cnnc PATH]
      Writes tests/fixtures/families/: for each family a tiny torchvision model of the same class
      (a few narrow blocks, 10 classes) and NAME.cnn made of examples/NAME.cnn's blocks with the
      tiny model's stages; NAME.safetensors (converted by tools/torch2cnnc.py), NAME.input.npy (2
      inputs) and NAME.expected.npy (PyTorch's logits). tests/pytorch_fixtures.rs checks them.

Needs: python3 -m pip install torch torchvision safetensors numpy
"""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision.models as tvm
from torchvision.models import convnext, efficientnet, regnet

import make_fixtures  # noqa: E402 (tools/ is on the path when a tool runs)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# Constructor arguments for models whose examples leave out a training-only part.
CONSTRUCT = {"inception_v3": {"aux_logits": False, "init_weights": False}}
FAMILIES = ["mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x1_0", "regnet_y_400mf", "convnext_tiny"]


def randomise(net, gen):
    """Non-trivial weights, statistics and affines everywhere (tools/make_fixtures.py's), and
    layer scales: torchvision starts them at 1e-6, which would hide the blocks' layers."""
    make_fixtures.randomise(net, gen)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, convnext.CNBlock):
                m.layer_scale.uniform_(0.1, 0.5, generator=gen)


def tiny(name):
    """A small model of the family's own torchvision class, and the stages that describe it."""
    if name == "mobilenet_v2":
        # (torchvision rounds channels to multiples of 8, and fixes the stem at 32 and the last
        # conv at 1280.)
        setting = [[1, 8, 1, 1], [6, 16, 2, 2], [6, 24, 2, 2]]
        net = tvm.MobileNetV2(num_classes=10, inverted_residual_setting=setting)
        stages = ("stage features {\n  conv_bn(32, 3, 2)\n  ir(8, 1, 1)\n  ir(16, 2); ir(16)\n"
                  "  ir(24, 2); ir(24)\n  conv_bn(1280)\n}\nstage classifier { gap; flatten; dropout 0.2; fc 10 }\n")
    elif name == "efficientnet_b0":
        conf = efficientnet.MBConvConfig
        setting = [conf(1, 3, 1, 16, 8, 1, width_mult=1.0, depth_mult=1.0),
                   conf(6, 5, 2, 8, 16, 2, width_mult=1.0, depth_mult=1.0),
                   conf(4, 3, 2, 16, 24, 1, width_mult=1.0, depth_mult=1.0)]
        net = efficientnet.EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=64)
        stages = ("stage features {\n  conv_bn(16, 3, 2)\n  mb(8, 3, 1, 1)\n  mb(16, 5, 2); mb(16, 5)\n"
                  "  mb(24, 3, 2, 4)\n  conv_bn(64)\n}\nstage classifier { gap; flatten; dropout 0.2; fc 10 }\n")
    elif name == "shufflenet_v2_x1_0":
        net = tvm.ShuffleNetV2([2, 2, 1], [8, 12, 20, 28, 40], num_classes=10)
        stages = ("stage stem { conv 3x3 8 stride 2 nobias; bn; relu; maxpool 3 stride 2 pad 1 }\n"
                  "stage stage2 { unit(12, 2); unit(12) }\nstage stage3 { unit(20, 2); unit(20) }\n"
                  "stage stage4 { unit(28, 2) }\nstage head { conv 1x1 40 nobias; bn; relu; gap; flatten; fc 10 }\n")
    elif name == "regnet_y_400mf":
        params = regnet.BlockParams([1, 2, 1], [16, 24, 32], [8, 8, 8], [1.0, 1.0, 1.0], [2, 2, 2], 0.25)
        net = regnet.RegNet(params, num_classes=10, stem_width=16)
        stages = ("stage stem { conv 3x3 16 stride 2 nobias; bn; relu }\nstage block1 { y(16, 2) }\n"
                  "stage block2 { y(24, 2); y(24) }\nstage block3 { y(32, 2) }\nstage head { gap; flatten; fc 10 }\n")
    elif name == "convnext_tiny":
        setting = [convnext.CNBlockConfig(16, 24, 2), convnext.CNBlockConfig(24, None, 1)]
        net = convnext.ConvNeXt(setting, num_classes=10)
        stages = ("stage stem { conv 4x4 16 stride 4 pad 0; layernorm eps 1e-6 }\nstage stage1 { cn(16) x2 }\n"
                  "stage stage2 { down(24); cn(24) }\nstage head { gap; layernorm eps 1e-6; flatten; fc 10 }\n")
    else:
        raise SystemExit(f"unknown family {name}")
    return net.eval(), stages


def blocks_of(example):
    """examples/NAME.cnn without its header and stages: the block definitions."""
    text = open(os.path.join(ROOT, "examples", example + ".cnn")).read()
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("block "))
    end = next(i for i, l in enumerate(lines) if l.startswith("stage "))
    return "\n".join(lines[start:end]).rstrip() + "\n\n"


def convert(pth, cnn, out, cnnc):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "torch2cnnc.py"), pth, cnn, "-o", out]
    if cnnc:
        cmd += ["--cnnc", cnnc]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def cnnc_logits(cnnc, cnn, weights, npy, backend, copies=1):
    """Logits of `cnnc run` on `copies` copies of the input (with more than one, the JIT compiles
    for many images: a larger Winograd memory budget, so other algorithms in large networks)."""
    r = subprocess.run([cnnc, "run", cnn, *[npy] * copies, "--weights", weights, "--json", "--backend", backend],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cnnc run failed:\n{r.stderr}")
    return np.array([p["logits"] for p in json.loads(r.stdout)], dtype=np.float64)


def agree(models, cnnc):
    out = os.path.join(ROOT, "target", "families")
    os.makedirs(out, exist_ok=True)
    print(f"{'model':20} {'interpreter':>12} {'JIT':>12} {'JIT, 2 images':>14}   "
          "max|diff| / std(logits), random BN statistics")
    for name in models:
        torch.manual_seed(0)
        net = getattr(tvm, name)(weights=None, **CONSTRUCT.get(name, {})).eval()
        randomise(net, torch.Generator().manual_seed(1))
        cnn_text = open(os.path.join(ROOT, "examples", name + ".cnn")).read()
        size = [int(d) for d in re.search(r"^input (\d+)x(\d+)x(\d+)", cnn_text, re.M).groups()]
        x = torch.randn(1, *size, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            ref = net(x)[0].double().numpy()
        p = lambda ext: os.path.join(out, name + ext)
        torch.save(net.state_dict(), p(".pth"))
        np.save(p("_input.npy"), x[0].numpy())
        convert(p(".pth"), os.path.join(ROOT, "examples", name + ".cnn"), p(".safetensors"), cnnc)
        cnn = os.path.join(ROOT, "examples", name + ".cnn")
        rel = [np.abs(cnnc_logits(cnnc, cnn, p(".safetensors"), p("_input.npy"), b, n)[0] - ref).max() / ref.std()
               for b, n in (("interp", 1), ("jit", 1), ("jit", 2))]
        print(f"{name:20} {rel[0]:12.1e} {rel[1]:12.1e} {rel[2]:14.1e}")


def fixtures(cnnc):
    out = os.path.join(ROOT, "tests", "fixtures", "families")
    os.makedirs(out, exist_ok=True)
    for name in FAMILIES:
        torch.manual_seed(0)
        net, stages = tiny(name)
        randomise(net, torch.Generator().manual_seed(1))
        size = 64
        cnn = os.path.join(out, name + ".cnn")
        with open(cnn, "w") as f:
            f.write(f"# generated by tools/families.py fixtures: a tiny torchvision {type(net).__name__} with the\n"
                    f"# blocks of examples/{name}.cnn; PyTorch's logits are {name}.expected.npy\n")
            f.write(f"network {name}_tiny\ninput 3x{size}x{size}\n\n")
            f.write(blocks_of(name))
            f.write(stages)
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            y = net(x)
        np.save(os.path.join(out, name + ".input.npy"), x.numpy().astype(np.float32))
        np.save(os.path.join(out, name + ".expected.npy"), y.numpy().astype(np.float32))
        pth = os.path.join(out, name + ".pth")
        torch.save(net.state_dict(), pth)
        convert(pth, cnn, os.path.join(out, name + ".safetensors"), cnnc)
        os.remove(pth)
        params = sum(p.numel() for p in net.parameters())
        print(f"{name:20} {params:>8,} params, logits {list(y.shape)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["agree", "fixtures"])
    ap.add_argument("models", nargs="*", default=FAMILIES)
    ap.add_argument("--cnnc", default=os.path.join(ROOT, "target", "release", "cnnc"))
    a = ap.parse_args()
    if a.mode == "agree":
        agree(a.models, a.cnnc)
    else:
        fixtures(a.cnnc)


if __name__ == "__main__":
    main()
