"""Shared fixtures of the Python package's tests: the repository, the cnnc binary (built by
`cargo build --release`, or $CNNC), and a scratch directory."""
import json
import os
import subprocess

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def examples():
    d = os.path.join(ROOT, "examples")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".cnn"))


@pytest.fixture(scope="session")
def cnnc_bin():
    path = os.environ.get("CNNC", os.path.join(ROOT, "target", "release", "cnnc"))
    if not os.path.exists(path):
        pytest.skip(f"the cnnc binary is not built ({path}); run cargo build --release")
    return path


@pytest.fixture(scope="session")
def cli(cnnc_bin):
    def run(*args, check=True):
        r = subprocess.run([cnnc_bin, *args], capture_output=True, text=True, cwd=ROOT)
        if check and r.returncode != 0:
            raise AssertionError(f"cnnc {' '.join(args)} failed:\n{r.stderr}")
        return r

    run.json = lambda *args: json.loads(run(*args).stdout)
    return run
