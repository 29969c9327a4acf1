"""The Python examples: the notebook holds the script's cells; the training script runs end to
end (short, with torch); the Ray example gives exactly `cnnc run`'s predictions (with ray)."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
import notebook  # noqa: E402


def test_the_notebook_holds_the_scripts_cells():
    script = os.path.join(ROOT, "examples", "notebooks", "train_digits.py")
    with open(script) as f:
        expected = notebook.notebook(f.read())
    with open(os.path.join(ROOT, "examples", "notebooks", "train_digits.ipynb")) as f:
        got = json.load(f)
    assert [(c["cell_type"], "".join(c["source"])) for c in got["cells"]] == [
        (c["cell_type"], "".join(c["source"])) for c in expected["cells"]
    ], "run tools/notebook.py examples/notebooks/train_digits.py"


def test_the_training_script_runs(cnnc_bin):
    for module in ("torch", "sklearn", "matplotlib", "safetensors", "PIL"):
        pytest.importorskip(module)
    env = dict(os.environ, CNNC_QUICK="1", CNNC=cnnc_bin, MPLBACKEND="Agg")
    plot = os.path.join(ROOT, "examples", "notebooks", "train_digits_sweep.png")
    saved = open(plot, "rb").read() if os.path.exists(plot) else None
    try:
        r = subprocess.run([sys.executable, "examples/notebooks/train_digits.py"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "cnnc run: " in r.stdout
    finally:
        # The committed plot is the full sweep's, not this short run's.
        if saved is not None:
            open(plot, "wb").write(saved)


def test_ray_example_gives_the_predictions_of_cnnc_run(cli, tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("PIL")
    images = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "digits_heldout", "*.png")))[:64]
    folder = tmp_path / "images"
    folder.mkdir()
    for f in images:
        shutil.copy(f, folder)
    out = tmp_path / "predictions"
    r = subprocess.run([sys.executable, "examples/ray_batch.py", "examples/digits.cnn", str(folder), str(out),
                        "--workers", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    expected = {os.path.basename(p["input"]): p for p in cli.json("run", "examples/digits.cnn", *map(str, sorted(folder.iterdir())), "--json")}
    got = [json.loads(l) for f in sorted(out.iterdir()) for l in open(f) if l.strip()]
    assert len(got) == 64
    for p in got:
        e = expected[os.path.basename(p["path"])]
        assert json.loads(p["top"]) == e["top"]
        assert json.loads(p["logits"]) == e["logits"]
