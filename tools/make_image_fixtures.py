#!/usr/bin/env python3
"""Generate tests/fixtures/images/: test pictures and torchvision's preprocessing of them.

Usage: tools/make_image_fixtures.py
Needs: python3 -m pip install torch torchvision pillow numpy

For each picture NAME (a smooth synthetic scene, saved as RGB PNG, greyscale PNG, RGBA PNG and
JPEG), NAME.expected.npy is torchvision's standard evaluation transform of it for a
network of input 3x112x112: Resize(128) (antialiased bilinear, on the PIL image),
CenterCrop(112), ToTensor,
Normalize(ImageNet mean and std). tests/preprocess.rs compares cnnc's preprocessing with it.
"""
import os

import numpy as np
from PIL import Image
from torchvision import transforms

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "images")


def scene(w, h):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 0.5 + 0.5 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = np.clip(((x - w / 2) ** 2 + (y - h / 2) ** 2) ** 0.5 / (0.6 * max(w, h)), 0, 1)
    b = (x + y) / (w + h)
    img = np.stack([r, g, b], axis=-1)
    img[h // 3 : h // 2, w // 4 : w // 3] = [1.0, 0.9, 0.1]  # a sharp-edged block
    return (img * 255).round().astype(np.uint8)


def main():
    os.makedirs(OUT, exist_ok=True)
    t = transforms.Compose([
        transforms.Resize(128),
        transforms.CenterCrop(112),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    rgb = Image.fromarray(scene(320, 240), "RGB")
    cases = {
        "landscape_rgb.png": rgb,
        "portrait_rgb.png": Image.fromarray(scene(180, 300), "RGB"),
        "landscape_grey.png": rgb.convert("L"),
        "landscape_rgba.png": rgb.convert("RGBA"),
        "landscape.jpg": rgb,
    }
    for name, img in cases.items():
        path = os.path.join(OUT, name)
        if name.endswith(".jpg"):
            img.save(path, quality=95)
            img = Image.open(path)
        else:
            img.save(path)
        expected = t(img.convert("RGB")).numpy().astype(np.float32)
        np.save(os.path.join(OUT, os.path.splitext(name)[0] + ".expected.npy"), expected)
        print(f"{name}: {img.size} -> {list(expected.shape)}")


if __name__ == "__main__":
    main()
