#!/usr/bin/env python3
"""Independent reference for `cnnc check`: parameters and conv/fc MACs of torchvision models,
counted with forward hooks at batch 1. The totals table in tests/examples.rs was checked against
this script's output (torch 2.x, torchvision 0.2x).

Usage: tools/torchvision_costs.py [MODEL ...]   (default: the models that examples/ mirrors)
Needs: python3 -m pip install torch torchvision
"""
import sys
import torch
import torchvision.models as tvm

DEFAULT = [
    "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "googlenet", "resnet18",
    "mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x1_0", "regnet_y_400mf", "convnext_tiny",
    "densenet121", "inception_v3",
]
# Input sizes other than 224, and models built without their training-only auxiliary heads.
SIZE = {"inception_v3": 299}


def costs(name, size=224):
    kw = dict(weights=None)
    if name in ("googlenet", "inception_v3"):
        kw.update(aux_logits=False, init_weights=False)
    net = getattr(tvm, name)(**kw).eval()
    macs = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs[0] += out.numel() * k

    def fc_hook(m, inp, out):
        # Per output value: in_features. A Linear applied at every pixel (ConvNeXt's MLP) is
        # counted at every pixel, as a 1x1 convolution is.
        macs[0] += out.numel() * m.in_features

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(fc_hook)
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    params = sum(p.numel() for p in net.parameters())
    buffers = sum(b.numel() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked"))
    return params, buffers, macs[0]


if __name__ == "__main__":
    for name in sys.argv[1:] or DEFAULT:
        p, b, m = costs(name, SIZE.get(name, 224))
        print(f"{name:18} params={p:>12,} buffers={b:>9,} macs={m:>15,}")
