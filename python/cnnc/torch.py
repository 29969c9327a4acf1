"""The bridge to PyTorch: a `.cnn` network as a `torch.nn.Module`, for training.

    >>> import cnnc.torch
    >>> net = cnnc.torch.build("examples/digits.cnn")
    >>> [k for k in net.state_dict()][:2]
    ['conv1.1.1.weight', 'conv1.1.2.weight']

The module computes what cnnc computes, layer for layer, with PyTorch's own layers where there is
one (`Conv2d`, `BatchNorm2d`, `Linear`, `MaxPool2d`, ...). Its parameters and buffers carry cnnc's
canonical names, so a state dict saved with `safetensors.torch.save_file(net.state_dict(), path)`
loads into `cnnc run` and `cnnc.load` directly (batch norm's `num_batches_tracked` is ignored).
Dropout and batch norm follow `train()` and `eval()` as usual.

Needs torch (`pip install cnnc[torch]`).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import InputSize, PathLike, Report, check

__all__ = ["Network", "build"]

ACTIVATIONS = {
    "relu": F.relu,
    "relu6": F.relu6,
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
    "hard_swish": F.hardswish,
    "hard_sigmoid": F.hardsigmoid,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
}


# The activation layers' keywords (their `attrs` say which function: `gelu_tanh`, `leaky_relu`).
ACTIVATION_OPS = {"relu", "relu6", "sigmoid", "silu", "hardswish", "hardsigmoid", "gelu", "tanh", "leaky_relu"}


class _Scope(nn.Module):
    """A name segment of the canonical names (`conv1` in `conv1.1.weight`)."""


class LayerNorm(nn.Module):
    """Layer norm over the channels of each pixel (or the features of a vector)."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return F.layer_norm(x, x.shape[1:], self.weight, self.bias, self.eps)
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class Scale(nn.Module):
    """A learned per-channel multiplier (layer scale)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape)


def _activation(attrs: Any):
    if isinstance(attrs, dict) and "leaky_relu" in attrs:
        slope = float(attrs["leaky_relu"])
        return lambda x: F.leaky_relu(x, slope)
    return ACTIVATIONS[attrs]


def _place(root: nn.Module, name: str, module: nn.Module) -> None:
    """Registers `module` at the dotted path `name`, creating scopes on the way."""
    parts = name.split(".")
    node = root
    for part in parts[:-1]:
        child = node._modules.get(part)
        if child is None:
            child = _Scope()
            node.add_module(part, child)
        node = child
    existing = node._modules.get(parts[-1])
    if existing is not None:
        # A scope made for deeper names: the layer takes over its children.
        for k, v in existing._modules.items():
            module.add_module(k, v)
    node.add_module(parts[-1], module)


class Network(nn.Module):
    """A checked `.cnn` network as a PyTorch module; `forward` takes [N, C, H, W]."""

    def __init__(self, report: Report):
        super().__init__()
        self.report = report
        self.network_name = report.network
        shapes = {l["name"]: l["output"] for l in report.layers}
        self._layers: List[Dict[str, Any]] = []
        self._modules_by_name: Dict[str, nn.Module] = {}
        for l in report.layers:
            ins = [shapes[i] for i in l["inputs"]]
            module = self._module(l, ins)
            if module is not None:
                _place(self, l["name"], module)
                self._modules_by_name[l["name"]] = module
            self._layers.append(l)

    @staticmethod
    def _module(l: Dict[str, Any], ins: List[List[int]]) -> Optional[nn.Module]:
        op, a = l["op"], l["attrs"]
        if op == "conv":
            return nn.Conv2d(
                ins[0][0], a["out_channels"], tuple(a["kernel"]), tuple(a["stride"]), tuple(a["pad"]),
                tuple(a["dilation"]), a["groups"], bias=a["bias"],
            )
        if op == "fc":
            return nn.Linear(math.prod(ins[0]), a["out"], bias=a["bias"])
        if op == "bn":
            cls = nn.BatchNorm1d if len(ins[0]) == 1 else nn.BatchNorm2d
            return cls(ins[0][0], eps=a["eps"])
        if op == "layernorm":
            return LayerNorm(ins[0][0], a["eps"])
        if op == "scale":
            return Scale(ins[0][0])
        return None

    def _apply_layer(self, l: Dict[str, Any], xs: List[torch.Tensor]) -> torch.Tensor:
        op, a, x = l["op"], l["attrs"], xs[0] if xs else None
        m = self._modules_by_name.get(l["name"])
        if op in ("conv", "fc"):
            if op == "fc" and x.dim() != 2:
                x = torch.flatten(x, 1)
            y = m(x)
            return F.relu(y) if a["relu"] else y
        if op in ("bn", "layernorm", "scale"):
            return m(x)
        if op in ("maxpool", "avgpool"):
            k, s, p, ceil = tuple(a["kernel"]), tuple(a["stride"]), tuple(a["pad"]), a["ceil"]
            if a["kind"] == "max":
                return F.max_pool2d(x, k, s, p, ceil_mode=ceil)
            return F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=True)
        if op == "adaptive_avgpool":
            return F.adaptive_avg_pool2d(x, tuple(a["out"]))
        if op == "gap":
            return F.adaptive_avg_pool2d(x, 1)
        if op == "lrn":
            return F.local_response_norm(x, a["size"], a["alpha"], a["beta"], a["k"])
        if op == "dropout":
            return F.dropout(x, a["p"], self.training)
        if op == "flatten":
            return torch.flatten(x, 1)
        if op == "softmax":
            return F.softmax(x, dim=1)
        if op == "concat":
            return torch.cat(xs, 1)
        if op == "add":
            return xs[0] + xs[1]
        if op == "gate":
            return xs[0] * xs[1]
        if op == "slice":
            return x[:, a["start"] : a["end"]]
        if op == "shuffle":
            n, c, h, w = x.shape
            g = a["groups"]
            return x.view(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)
        if op in ACTIVATION_OPS:
            return _activation(a)(x)
        raise NotImplementedError(f"cnnc.torch: no PyTorch form for `{op}` ({l['name']})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output (after a trailing softmax, if it has one)."""
        return self._run(x, self._layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The input of a trailing softmax (the output itself if there is none): what
        `cnnc.Model` returns and what `nn.CrossEntropyLoss` takes."""
        layers = self._layers
        if layers and layers[-1]["op"] == "softmax":
            layers = layers[:-1]
        return self._run(x, layers)

    def _run(self, x: torch.Tensor, layers: List[Dict[str, Any]]) -> torch.Tensor:
        outputs: Dict[str, torch.Tensor] = {}
        last = x
        for l in layers:
            if l["op"] == "input":
                last = x
            else:
                last = self._apply_layer(l, [outputs[i] for i in l["inputs"]])
            outputs[l["name"]] = last
        return last

    def extra_repr(self) -> str:
        t = self.report.totals
        return f"cnnc network {self.network_name!r}: {len(self._layers)} layers, {t['params']:,} params"


def build(path_or_source: Union[PathLike, str], input: InputSize = None) -> Network:
    """The network of a `.cnn` file (or its text) as a `torch.nn.Module`, with PyTorch's default
    initialisation. Raises `cnnc.CheckError` if the file has errors."""
    return Network(check(path_or_source, input))
