#!/usr/bin/env python3
"""Generate the PyTorch reference fixtures in tests/fixtures/ops/.

Usage: tools/make_fixtures.py [--cnnc PATH]
Needs: python3 -m pip install torch safetensors numpy

Each case is a small .cnn network and the equivalent PyTorch module, built side by side below.
For each case NAME the script writes:
- NAME.cnn: the network (its first line says it was generated here);
- NAME.safetensors: the module's random weights, converted by tools/torch2cnnc.py;
- NAME.input.npy: a float32 batch of 2 inputs;
- NAME.expected.npy: PyTorch's output for it (eval mode).
tests/pytorch_fixtures.rs runs every case on cnnc's backends and compares.
"""
import argparse
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "ops")


class Branches(nn.Module):
    """Inception-style branches concatenated along channels."""

    def __init__(self, *branches):
        super().__init__()
        self.b = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.b], 1)


class Residual(nn.Module):
    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + (self.shortcut(x) if self.shortcut is not None else x)


class Gate(nn.Module):
    """The input times a per-channel factor computed from it (squeeze-excitation)."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x * self.body(x)


class LayerScale(nn.Module):
    """ConvNeXt's learned per-channel multiplier, stored as [C, 1, 1]."""

    def __init__(self, c):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.ones(c, 1, 1))

    def forward(self, x):
        return self.layer_scale * x


class Split(nn.Module):
    """ShuffleNetV2's unit: the first `keep` channels pass, the rest go through `body`."""

    def __init__(self, keep, body):
        super().__init__()
        self.keep = keep
        self.body = body

    def forward(self, x):
        return torch.cat([x[:, : self.keep], self.body(x[:, self.keep :])], 1)


class Permuted(nn.Module):
    """A channels-last module applied at every pixel (LayerNorm(C), Linear(C, O))."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ProjectionFirst(nn.Module):
    """A residual whose projection is registered before its body (RegNet)."""

    def __init__(self, proj, body):
        super().__init__()
        self.proj = proj
        self.body = body

    def forward(self, x):
        return self.proj(x) + self.body(x)


S = nn.Sequential


def conv_bn(cin, cout, k=3, s=1):
    return S(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU())


CONV_BN_BLOCK = "block conv_bn(c, k = 3, s = 1) { conv k c stride s nobias; bn eps 0.001; relu }\n"

# name: (input CxHxW, .cnn body, PyTorch module)
CASES = {
    # conv: kernels, strides, padding, groups, dilation, bias, fused relu, odd channel counts
    "conv3x3": ("3x9x11", "conv 3x3 5", nn.Conv2d(3, 5, 3, padding=1)),
    "conv_stride2": ("3x9x11", "conv 3x3 6 stride 2", nn.Conv2d(3, 6, 3, 2, 1)),
    "conv_pad_valid": ("3x9x11", "conv 3x3 4 pad valid", nn.Conv2d(3, 4, 3)),
    "conv_pad2": ("2x7x7", "conv 3x3 3 pad 2", nn.Conv2d(2, 3, 3, padding=2)),
    "conv_rect": ("3x9x11", "conv 5x3 7 stride 2x1 pad 2x1", nn.Conv2d(3, 7, (5, 3), (2, 1), (2, 1))),
    "conv_11x11_s4": ("3x31x31", "conv 11x11 8 stride 4 pad 2 relu", S(nn.Conv2d(3, 8, 11, 4, 2), nn.ReLU())),
    "conv_1x1": ("13x5x6", "conv 1x1 9", nn.Conv2d(13, 9, 1)),
    "conv_groups": ("6x8x8", "conv 3x3 9 groups 3", nn.Conv2d(6, 9, 3, padding=1, groups=3)),
    "conv_depthwise": ("5x8x7", "conv 3x3 5 groups 5 nobias", nn.Conv2d(5, 5, 3, padding=1, groups=5, bias=False)),
    "conv_dilation": ("3x12x12", "conv 3x3 4 dilation 2", nn.Conv2d(3, 4, 3, padding=2, dilation=2)),
    "conv_dilation_stride": ("3x13x12", "conv 3x3 4 dilation 2x1 stride 2 pad 1", nn.Conv2d(3, 4, 3, 2, 1, dilation=(2, 1))),
    "conv_nobias_relu": ("4x6x6", "conv 3x3 5 nobias relu", S(nn.Conv2d(4, 5, 3, padding=1, bias=False), nn.ReLU())),
    "conv_7x7_s2": ("3x17x17", "conv 7x7 6 stride 2", nn.Conv2d(3, 6, 7, 2, 3)),
    "conv_even_kernel": ("3x8x8", "conv 2x2 4", nn.Conv2d(3, 4, 2, padding=1)),
    # max and average pooling: strides, padding, ceil mode and its last-window rule
    "maxpool2": ("3x8x9", "maxpool 2", nn.MaxPool2d(2)),
    "maxpool3s2": ("3x13x13", "maxpool 3 stride 2", nn.MaxPool2d(3, 2)),
    "maxpool3s2_ceil": ("3x14x14", "maxpool 3 stride 2 ceil", nn.MaxPool2d(3, 2, ceil_mode=True)),
    "maxpool3s1p1_ceil": ("3x7x7", "maxpool 3 stride 1 pad 1 ceil", nn.MaxPool2d(3, 1, 1, ceil_mode=True)),
    "maxpool3s2p1": ("2x12x11", "maxpool 3 stride 2 pad 1", nn.MaxPool2d(3, 2, 1)),
    "maxpool_last_window": ("2x5x5", "maxpool 2 stride 2 pad 1 ceil", nn.MaxPool2d(2, 2, 1, ceil_mode=True)),
    "maxpool_rect": ("2x9x8", "maxpool 3x2 stride 2x1", nn.MaxPool2d((3, 2), (2, 1))),
    "avgpool2": ("3x8x8", "avgpool 2", nn.AvgPool2d(2)),
    "avgpool3s2p1": ("3x9x10", "avgpool 3 stride 2 pad 1", nn.AvgPool2d(3, 2, 1)),
    "avgpool_ceil": ("3x8x8", "avgpool 3 stride 2 ceil", nn.AvgPool2d(3, 2, ceil_mode=True)),
    "avgpool_ceil_pad": ("2x10x9", "avgpool 3 stride 2 pad 1 ceil", nn.AvgPool2d(3, 2, 1, ceil_mode=True)),
    "avgpool7s1": ("4x7x7", "avgpool 7 stride 1", nn.AvgPool2d(7, 1)),
    # adaptive pooling: shrinking unevenly, growing, identity; global average pooling
    "adaptive_7to3": ("3x7x7", "adaptive_avgpool 3x3", nn.AdaptiveAvgPool2d(3)),
    "adaptive_5to7": ("3x5x5", "adaptive_avgpool 7x7", nn.AdaptiveAvgPool2d(7)),
    "adaptive_rect": ("2x10x9", "adaptive_avgpool 4x2", nn.AdaptiveAvgPool2d((4, 2))),
    "adaptive_identity": ("2x6x6", "adaptive_avgpool 6", nn.AdaptiveAvgPool2d(6)),
    "gap": ("5x7x6", "gap", nn.AdaptiveAvgPool2d(1)),
    # normalisation and activations
    "relu": ("3x5x5", "relu", nn.ReLU()),
    "bn": ("6x5x4", "bn", nn.BatchNorm2d(6)),
    "bn_eps": ("6x5x4", "bn eps 0.001", nn.BatchNorm2d(6, eps=1e-3)),
    "bn_flat": ("3x4x4", "flatten; bn", S(nn.Flatten(), nn.BatchNorm1d(48))),
    "lrn5": ("7x5x5", "lrn 5 alpha 0.0001 beta 0.75 k 2", nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)),
    "lrn_default": ("6x4x4", "lrn 3", nn.LocalResponseNorm(3)),
    "lrn_even_strong": ("9x3x3", "lrn 4 alpha 0.5 beta 0.6 k 1", nn.LocalResponseNorm(4, 0.5, 0.6, 1.0)),
    "dropout": ("3x4x4", "dropout 0.5", nn.Dropout(0.5)),
    "flatten_fc": ("3x4x5", "flatten; fc 7", S(nn.Flatten(), nn.Linear(60, 7))),
    "fc_nobias_relu": ("2x3x3", "flatten; fc 5 nobias relu", S(nn.Flatten(), nn.Linear(18, 5, bias=False), nn.ReLU())),
    "softmax": ("3x2x2", "flatten; fc 6; softmax", S(nn.Flatten(), nn.Linear(12, 6), nn.Softmax(1))),
    "softmax_map": ("4x3x3", "softmax", nn.Softmax(1)),
    # structure: concatenation and residual sums
    "concat": (
        "4x6x6",
        "branch { conv 1x1 3 } branch { conv 3x3 5 relu } branch { maxpool 3 stride 1 pad 1 }",
        Branches(nn.Conv2d(4, 3, 1), S(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU()), nn.MaxPool2d(3, 1, 1)),
    ),
    "residual_identity": (
        "4x6x6",
        "residual { conv 3x3 4 nobias; bn; relu; conv 3x3 4 nobias; bn }; relu",
        S(Residual(S(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                     nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))), nn.ReLU()),
    ),
    "residual_projection": (
        "4x7x7",
        "residual { conv 3x3 6 stride 2 nobias; bn; relu; conv 3x3 6 nobias; bn } shortcut { conv 1x1 6 stride 2 nobias; bn }; relu",
        S(Residual(S(nn.Conv2d(4, 6, 3, 2, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                     nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)),
                   S(nn.Conv2d(4, 6, 1, 2, bias=False), nn.BatchNorm2d(6))), nn.ReLU()),
    ),
    # small networks
    "net_vgg": (
        "3x16x16",
        "stage conv1 { conv 3x3 8 relu x2; maxpool 2 }\nstage conv2 { conv 3x3 16 relu x2; maxpool 2 }\n"
        "stage head { flatten; fc 32 relu; dropout 0.5; fc 10; softmax }",
        S(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
          nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10), nn.Softmax(1)),
    ),
    "net_inception": (
        "3x23x23",
        CONV_BN_BLOCK
        + "block inception(c1, r3, c3, pp) {\n  branch { conv_bn(c1, 1) }\n  branch { conv_bn(r3, 1); conv_bn(c3) }\n"
        "  branch { maxpool 3 stride 1 pad 1 ceil; conv_bn(pp, 1) }\n}\n"
        "stage stem { conv_bn(8, 7, 2); maxpool 3 stride 2 ceil; lrn 5 alpha 0.0001 beta 0.75 }\n"
        "stage mixed { a: inception(4, 6, 5, 3); b: inception(6, 4, 7, 5); maxpool 2 stride 2 ceil }\n"
        "stage head { gap; flatten; dropout 0.2; fc 10 }",
        S(conv_bn(3, 8, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(5, 1e-4, 0.75),
          Branches(conv_bn(8, 4, 1), S(conv_bn(8, 6, 1), conv_bn(6, 5)), S(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_bn(8, 3, 1))),
          Branches(conv_bn(12, 6, 1), S(conv_bn(12, 4, 1), conv_bn(4, 7)), S(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_bn(12, 5, 1))),
          nn.MaxPool2d(2, 2, ceil_mode=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(18, 10)),
    ),
    "net_resnet": (
        "3x19x19",
        "block basic(c) { residual { conv 3x3 c nobias; bn; relu; conv 3x3 c nobias; bn }; relu }\n"
        "block down(c) { residual { conv 3x3 c stride 2 nobias; bn; relu; conv 3x3 c nobias; bn } "
        "shortcut { conv 1x1 c stride 2 nobias; bn }; relu }\n"
        "stage stem { conv 5x5 6 stride 2 nobias; bn; relu; maxpool 3 stride 2 pad 1 }\n"
        "stage layer1 { basic(6) x2 }\nstage layer2 { down(10); basic(10) }\n"
        "stage head { gap; flatten; fc 7 }",
        S(nn.Conv2d(3, 6, 5, 2, 2, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
          *[S(Residual(S(nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6))), nn.ReLU()) for _ in range(2)],
          S(Residual(S(nn.Conv2d(6, 10, 3, 2, 1, bias=False), nn.BatchNorm2d(10), nn.ReLU(),
                       nn.Conv2d(10, 10, 3, padding=1, bias=False), nn.BatchNorm2d(10)),
                     S(nn.Conv2d(6, 10, 1, 2, bias=False), nn.BatchNorm2d(10))), nn.ReLU()),
          S(Residual(S(nn.Conv2d(10, 10, 3, padding=1, bias=False), nn.BatchNorm2d(10), nn.ReLU(),
                       nn.Conv2d(10, 10, 3, padding=1, bias=False), nn.BatchNorm2d(10))), nn.ReLU()),
          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(10, 7)),
    ),
    # the modern families' layers: activations on their own and fused into a conv
    "relu6": ("3x5x5", "conv 3x3 4; relu6", S(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU6())),
    "sigmoid": ("3x5x5", "sigmoid", nn.Sigmoid()),
    "silu": ("3x5x5", "conv 3x3 5; silu", S(nn.Conv2d(3, 5, 3, padding=1), nn.SiLU())),
    "swish_map": ("6x4x3", "swish", nn.SiLU()),
    "hardswish": ("3x5x5", "conv 3x3 5; hardswish", S(nn.Conv2d(3, 5, 3, padding=1), nn.Hardswish())),
    "hardsigmoid": ("3x5x5", "conv 3x3 5; hardsigmoid", S(nn.Conv2d(3, 5, 3, padding=1), nn.Hardsigmoid())),
    "gelu": ("3x5x5", "conv 3x3 6; gelu", S(nn.Conv2d(3, 6, 3, padding=1), nn.GELU())),
    "gelu_tanh": ("3x5x5", "gelu tanh", nn.GELU(approximate="tanh")),
    "tanh": ("3x5x5", "conv 3x3 4; tanh", S(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh())),
    "leaky_relu": ("3x5x5", "conv 3x3 4; leaky_relu 0.2", S(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2))),
    "leaky_relu_default": ("3x5x5", "leaky_relu", nn.LeakyReLU()),
    # squeeze-excitation gates, layer scale, channel split and shuffle, layer norm, per-pixel Linear
    "gate_se": (
        "8x6x6",
        "conv 3x3 8 relu; gate { gap; conv 1x1 2; silu; conv 1x1 8; sigmoid }",
        S(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
          Gate(S(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 2, 1), nn.SiLU(), nn.Conv2d(2, 8, 1), nn.Sigmoid()))),
    ),
    "scale": ("5x4x4", "conv 3x3 5; scale", S(nn.Conv2d(5, 5, 3, padding=1), LayerScale(5))),
    "shuffle": ("12x3x4", "shuffle 3", nn.ChannelShuffle(3)),
    "split_shuffle": (
        "10x5x5",
        "branch 0..4 { }; branch 4..10 { conv 1x1 6 nobias; bn; relu }; shuffle 2",
        S(Split(4, S(nn.Conv2d(6, 6, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU())), nn.ChannelShuffle(2)),
    ),
    "layernorm2d": ("6x4x5", "layernorm eps 1e-6", Permuted(nn.LayerNorm(6, eps=1e-6))),
    "layernorm_flat": ("3x2x2", "flatten; layernorm", S(nn.Flatten(), nn.LayerNorm(12))),
    "pixel_linear": ("5x3x4", "conv 1x1 7", Permuted(nn.Linear(5, 7))),
    "projection_first": (
        "4x6x6",
        "shortcut { conv 1x1 6 stride 2 nobias; bn } residual { conv 3x3 6 stride 2 nobias; bn; relu6 }",
        ProjectionFirst(S(nn.Conv2d(4, 6, 1, 2, bias=False), nn.BatchNorm2d(6)),
                        S(nn.Conv2d(4, 6, 3, 2, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU6())),
    ),
}


def randomise(module, gen):
    """Non-trivial weights everywhere, including BN's affine parameters and running statistics."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0, 1.0 / np.sqrt(m.weight[0].numel()), generator=gen)
                if m.bias is not None:
                    m.bias.normal_(0, 0.2, generator=gen)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.2, generator=gen)
                m.running_mean.normal_(0, 0.3, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
            elif isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.2, generator=gen)
            elif isinstance(m, LayerScale):
                m.layer_scale.uniform_(0.5, 1.5, generator=gen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnc", help="path to the cnnc binary (default: target/release/cnnc)")
    a = ap.parse_args()
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    gen = torch.Generator().manual_seed(1234)
    for name, (shape, body, module) in CASES.items():
        c, h, w = (int(v) for v in shape.split("x"))
        cnn = os.path.join(OUT, name + ".cnn")
        with open(cnn, "w") as f:
            f.write(f"# generated by tools/make_fixtures.py: PyTorch's output is {name}.expected.npy\n")
            f.write(f"network {name}\ninput {shape}\n{body}\n")
        module.eval()
        randomise(module, gen)
        x = torch.randn(2, c, h, w, generator=gen)
        with torch.no_grad():
            y = module(x)
        np.save(os.path.join(OUT, name + ".input.npy"), x.numpy().astype(np.float32))
        np.save(os.path.join(OUT, name + ".expected.npy"), y.numpy().astype(np.float32))
        state = module.state_dict()
        if state:
            pth = os.path.join(OUT, name + ".pth")
            torch.save(state, pth)
            cmd = [sys.executable, os.path.join(ROOT, "tools", "torch2cnnc.py"), pth, cnn,
                   "-o", os.path.join(OUT, name + ".safetensors")]
            if a.cnnc:
                cmd += ["--cnnc", a.cnnc]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            os.remove(pth)
        print(f"{name:24} input {list(x.shape)} -> output {list(y.shape)}")


if __name__ == "__main__":
    main()
