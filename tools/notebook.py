#!/usr/bin/env python3
"""Write a Jupyter notebook from a Python script in the percent format (`# %%` code cells,
`# %% [markdown]` cells whose lines are `# ` comments).

Usage: tools/notebook.py SCRIPT.py [-o NOTEBOOK.ipynb]   (default: the script's name, .ipynb)

examples/notebooks/train_digits.ipynb is written from train_digits.py this way, and
tests/python/test_examples.py checks that the two hold the same cells.
"""
import argparse
import json
import os


def cells(text):
    """[(kind, source)] of a percent-format script."""
    out = []
    for chunk in text.split("# %%")[1:]:
        header, _, body = chunk.partition("\n")
        if header.strip() == "[markdown]":
            lines = [l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.strip("\n").splitlines()]
            out.append(("markdown", "\n".join(lines)))
        else:
            out.append(("code", body.strip("\n")))
    return out


def notebook(text):
    def cell(kind, source):
        c = {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
        if kind == "code":
            c.update(execution_count=None, outputs=[])
        return c

    return {
        "cells": [cell(k, s) for k, s in cells(text)],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("script")
    ap.add_argument("-o", "--output")
    a = ap.parse_args()
    out = a.output or os.path.splitext(a.script)[0] + ".ipynb"
    with open(a.script) as f:
        nb = notebook(f.read())
    with open(out, "w") as f:
        json.dump(nb, f, indent=1)
        f.write("\n")
    print(f"wrote {out} ({len(nb['cells'])} cells)")


if __name__ == "__main__":
    main()
