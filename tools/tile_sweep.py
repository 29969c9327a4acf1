#!/usr/bin/env python3
"""Times one convolution under every register tile, against the tile the schedule picks.

For each shape (a one-layer network `input CINxHWxHW; conv KxK COUT; relu`), runs `cnnc bench
--threads 1 --json` once with the schedule's own tile and once per legal tile forced through
`CNNC_FORCE_TILE=ty,tx,v,rows_outer` (`v` blocks of 4 output channels by `ty x tx` pixels, 6 to
14 accumulators, within the registers the schedule allows), and reports each layer's fastest
run. `CNNC_ALGO=direct` keeps larger kernels on the tiled direct algorithm (not Winograd).
The task order is the one the schedule would choose for the tile (`rows_outer` given as 2).
This is how the 1x1 tiles of `schedule::pointwise_tile` were chosen (BENCHMARKS.md, the 29th).

Usage (from the project root, after `cargo build --release`):
  tools/tile_sweep.py SHAPES [--json OUT] [--bin target/release/cnnc]
SHAPES has one shape per line: `NAME CIN HW COUT [K]` (K = 1 by default; padding K // 2).
"""
import argparse
import json
import os
import subprocess
import tempfile

def bench(binary, cnn, tile, iters):
    # Register tiles are the direct kernel's: keep 3x3 layers from taking Winograd.
    env = dict(os.environ, CNNC_ALGO="direct")
    if tile:
        env["CNNC_FORCE_TILE"] = tile
    out = subprocess.run([binary, "bench", cnn, "--iters", str(iters), "--threads", "1", "--json"],
                         capture_output=True, text=True, env=env, check=True).stdout
    layer = next(l for l in json.loads(out)["layers"] if l["macs"] > 0)
    return layer["ms_min"]


def tiles(cout, hw):
    blocks = -(-cout // 4)
    for v in (1, 2, 3, 4):
        if blocks % v:
            continue
        for ty in (1, 2):
            if hw % ty:
                continue
            for tx in range(1, 15):
                acc = ty * tx * v
                if acc < 6 or (v == 1 and acc > 14) or (v > 1 and (acc > 12 or acc + v + 1 > 15)):
                    continue
                yield ty, tx, v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shapes")
    ap.add_argument("--json")
    ap.add_argument("--bin", default="target/release/cnnc")
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for line in open(a.shapes):
            if not line.split():
                continue
            name, cin, hw, cout, *rest = line.split()
            cin, hw, cout = int(cin), int(hw), int(cout)
            k = int(rest[0]) if rest else 1
            cnn = os.path.join(d, f"{name}.cnn")
            with open(cnn, "w") as f:
                f.write(f"network sweep\ninput {cin}x{hw}x{hw}\n"
                        f"stage s {{ conv {k}x{k} {cout} pad {k // 2}; relu }}\n")
            iters = max(20, min(300, int(2e9 / (cin * cout * hw * hw * k * k))))
            times = {"schedule": bench(a.bin, cnn, None, iters)}
            for ty, tx, v in tiles(cout, hw):
                tile = f"{ty},{tx},{v},2"
                times[tile] = bench(a.bin, cnn, tile, iters)
            best = min(times.values())
            ranked = sorted(times.items(), key=lambda t: t[1])[:4]
            print(f"{name} {cin}->{cout} {hw}x{hw} k{k}: schedule {times['schedule']:.3f} ms "
                  f"({times['schedule'] / best:.2f} x best); best " +
                  " ".join(f"{t} {ms:.3f}" for t, ms in ranked), flush=True)
            results[name] = {"shape": [cin, hw, cout, k], "ms": times}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
