#!/usr/bin/env python3
"""Classify a folder of images with cnnc on Ray Data: one prediction per image, as JSON lines.

Usage:
  python examples/ray_batch.py MODEL.cnn IMAGES OUT [--weights W] [--workers N] [--batch B]
                               [--address ADDRESS] [--top K]

IMAGES is a folder (or a list of files) that `ray.data.read_images` can read: a local path, or
object storage such as `s3://bucket/images/`. OUT is a folder for the JSON-lines files (local or
`s3://bucket/predictions/`); each line holds `path`, and `top` ([{index, label, prob}, ...]) and
`logits` as JSON text (exact, not rounded by the writer). Each worker loads and compiles the model once (`cnnc.load` in the constructor of the
callable class given to `map_batches`) and then classifies batches of B images.

Without --address (or RAY_ADDRESS), Ray starts a local cluster with a CPU per worker and one for
reading; with
`--address ray://HEAD:10001` (or `auto` on a cluster node) it runs on that cluster, whose workers
need the package (`pip install ./python`) and read access to IMAGES and OUT.

Images are decoded by Ray (Pillow) and handed to cnnc as lossless PNGs, then preprocessed exactly
as `cnnc run` preprocesses files: PNG inputs give the predictions `cnnc run` gives, bit for bit.
(For JPEGs Pillow's decoder can differ from cnnc's by a rounding step in a few pixels.)

Needs: pip install "./python[ray]"
"""
import argparse
import io
import json
import os
import time

import numpy as np


class Classifier:
    """Loads the model once per worker; classifies each batch that `map_batches` hands it."""

    def __init__(self, model_path, weights, top):
        import cnnc

        # One thread per worker: Ray runs one worker per CPU.
        self.model = cnnc.load(model_path, weights=weights, threads=1)
        self.top = top

    def __call__(self, batch):
        from PIL import Image

        images = [Image.fromarray(np.asarray(a)) for a in batch["image"]]
        predictions = self.model.predict(images, top=self.top)
        return {
            "path": list(batch["path"]),
            "top": [json.dumps([{"index": t.index, "label": t.label, "prob": t.prob} for t in p.top]) for p in predictions],
            # As JSON text, so that the writer does not round them.
            "logits": [json.dumps(p.logits.tolist()) for p in predictions],
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("images")
    ap.add_argument("out")
    ap.add_argument("--weights", help="safetensors weights (default: the file beside the model)")
    ap.add_argument("--workers", type=int, default=2, help="model replicas (one CPU each)")
    ap.add_argument("--batch", type=int, default=64, help="images per batch")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="a Ray cluster (default: a local one)")
    a = ap.parse_args()

    import ray

    if a.address:
        ray.init(address=a.address)
    else:
        # One CPU per model replica, and one for reading and decoding the images.
        ray.init(num_cpus=a.workers + 1, include_dashboard=False, log_to_driver=False)
    model = os.path.abspath(a.model) if "://" not in a.model else a.model
    weights = os.path.abspath(a.weights) if a.weights else None
    started = time.perf_counter()
    ds = ray.data.read_images(a.images, include_paths=True)
    predictions = ds.map_batches(
        Classifier,
        fn_constructor_args=(model, weights, a.top),
        batch_size=a.batch,
        concurrency=a.workers,
        num_cpus=1,
    )
    predictions.write_json(a.out)
    seconds = time.perf_counter() - started
    count = sum(1 for _ in _lines(a.out)) if "://" not in a.out else None
    if count is not None:
        print(f"{count} images in {seconds:.2f} s ({count / seconds:.1f} images/s, {a.workers} worker(s)); wrote {a.out}")
    else:
        print(f"done in {seconds:.2f} s; wrote {a.out}")


def _lines(folder):
    """The JSON lines Ray wrote into `folder`."""
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json") or name.endswith(".jsonl"):
            with open(os.path.join(folder, name)) as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)


if __name__ == "__main__":
    main()
