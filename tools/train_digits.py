#!/usr/bin/env python3
"""Train examples/digits.cnn on scikit-learn's handwritten digits, with PyTorch.

Usage: tools/train_digits.py [--epochs N]
Needs: pip install "./python[torch]" scikit-learn pillow (the cnnc package with its PyTorch bridge)

The 1797 8x8 images (values 0..16) are upsampled to 32x32 with bilinear interpolation and
quantised to 8 bits, so that a PNG holds exactly what the network was trained on. A fixed seed
splits them 80/20 into training and held-out sets. The PyTorch model is digits.cnn itself, built
by `cnnc.torch.build`; its state dict carries cnnc's canonical names and is saved with safetensors
as it is (no conversion). Writes:

- examples/digits.safetensors: the trained weights;
- examples/images/digit_K.png: the first held-out image of each class K;
- tests/fixtures/digits_heldout/NNN_K.png: every held-out image (K is its true label);
- tests/fixtures/digits_heldout.json: PyTorch's logits and predictions for each of them.

The input normalisation (mean, std) is read from digits.cnn's header, so the file stays the
single source of truth.
"""
import argparse
import json
import os
import re
import sys

import cnnc.torch
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from sklearn.datasets import load_digits

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SEED = 0


def header_value(text, key):
    m = re.search(rf"^{key}\s+([0-9.eE+-]+)", text, re.M)
    if not m:
        sys.exit(f"error: digits.cnn has no `{key}` line")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=40)
    a = ap.parse_args()

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    cnn_path = os.path.join(ROOT, "examples", "digits.cnn")
    cnn = open(cnn_path).read()
    mean, std = header_value(cnn, "mean"), header_value(cnn, "std")

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    up = F.interpolate(x, size=32, mode="bilinear", align_corners=False)
    u8 = (up * 255).round().clamp(0, 255).to(torch.uint8)
    labels = torch.tensor(digits.target)

    # Exactly what cnnc does with a PNG: u8 / 255 in f32, then (v - mean) / std in f64, to f32.
    def normalise(images_u8):
        return ((images_u8.to(torch.float32) / 255.0).to(torch.float64) - mean).div(std).to(torch.float32)

    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SEED))
    n_train = int(0.8 * len(order))
    train_idx, held_idx = order[:n_train], order[n_train:]
    xtr, ytr = normalise(u8[train_idx]), labels[train_idx]
    xho, yho = normalise(u8[held_idx]), labels[held_idx]

    model = cnnc.torch.build(cnn_path)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs)
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(ytr))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            # Light augmentation: shift by up to 2 pixels.
            dx, dy = np.random.randint(-2, 3, size=2)
            xb = torch.roll(xtr[b], shifts=(int(dy), int(dx)), dims=(2, 3))
            loss = F.cross_entropy(model(xb), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xho).argmax(1) == yho).float().mean().item()
        print(f"epoch {epoch + 1:2d}  loss {loss.item():.4f}  held-out accuracy {acc:.4f}")

    model.eval()
    with torch.no_grad():
        logits = model(xho)
    preds = logits.argmax(1)
    accuracy = (preds == yho).float().mean().item()
    print(f"final held-out accuracy {accuracy:.4f} on {len(yho)} images")

    # Weights: the state dict as it is; its names are the canonical ones.
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(ROOT, "examples", "digits.safetensors"), metadata={"trained_by": "tools/train_digits.py"})

    img_dir = os.path.join(ROOT, "examples", "images")
    held_dir = os.path.join(ROOT, "tests", "fixtures", "digits_heldout")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(held_dir, exist_ok=True)
    for f in os.listdir(held_dir):
        os.remove(os.path.join(held_dir, f))
    records = []
    shown = set()
    for i, idx in enumerate(held_idx.tolist()):
        label = int(labels[idx])
        pixels = u8[idx, 0].numpy()
        name = f"{i:03d}_{label}.png"
        Image.fromarray(pixels, mode="L").save(os.path.join(held_dir, name))
        if label not in shown:
            shown.add(label)
            Image.fromarray(pixels, mode="L").save(os.path.join(img_dir, f"digit_{label}.png"))
            if int(preds[i]) != label:
                print(f"note: digit_{label}.png is misclassified by PyTorch as {int(preds[i])}")
        records.append({
            "file": name,
            "label": label,
            "torch_prediction": int(preds[i]),
            "torch_logits": [round(float(v), 6) for v in logits[i]],
        })
    fixture = {
        "generated_by": "tools/train_digits.py (PyTorch %s, seed %d, %d epochs)" % (torch.__version__, SEED, a.epochs),
        "normalisation": {"mean": mean, "std": std},
        "accuracy": accuracy,
        "images": records,
    }
    with open(os.path.join(ROOT, "tests", "fixtures", "digits_heldout.json"), "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"wrote {len(records)} held-out images and PyTorch's predictions")


if __name__ == "__main__":
    main()
