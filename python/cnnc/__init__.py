"""cnnc from Python: check `.cnn` networks, draw and compare them, and run them with the JIT.

    >>> import cnnc
    >>> report = cnnc.check("examples/vgg16.cnn")
    >>> report.totals["params"]
    138357544
    >>> model = cnnc.load("examples/digits.cnn")
    >>> model.predict(["examples/images/digit_3.png"])[0].top[0].label
    '3'

`cnnc.torch.build(path)` gives the same network as a `torch.nn.Module` for training (needs torch).
"""
from __future__ import annotations

import html
import io
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _cnnc
from ._cnnc import __version__

__all__ = [
    "CheckError",
    "Comparison",
    "Graph",
    "Model",
    "Param",
    "Prediction",
    "Report",
    "TopClass",
    "check",
    "compare",
    "format",
    "graph",
    "load",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]
InputSize = Union[str, Tuple[int, int, int], None]


class CheckError(Exception):
    """A network with errors. `str(e)` is the rendered diagnostics, as `cnnc check` prints them
    (code, file:line:col, the source line, a hint); `e.diagnostics` the same as plain data."""

    def __init__(self, rendered: str, diagnostics: List[Dict[str, Any]]):
        super().__init__(rendered)
        self.rendered = rendered
        self.diagnostics = diagnostics

    @property
    def line(self) -> Optional[int]:
        """The line of the first error (1-based)."""
        return self.diagnostics[0].get("line") if self.diagnostics else None

    @property
    def column(self) -> Optional[int]:
        """The column of the first error (1-based)."""
        return self.diagnostics[0].get("column") if self.diagnostics else None

    def __str__(self) -> str:
        return self.rendered


def _raise_model_errors(e: Exception) -> None:
    rendered, diagnostics = e.args
    raise CheckError(rendered, json.loads(diagnostics)) from None


def _input_arg(input: InputSize) -> Optional[str]:
    if input is None:
        return None
    if isinstance(input, str):
        return input
    c, h, w = (int(v) for v in input)
    return f"{c}x{h}x{w}"


def _source_of(path_or_source: Union[PathLike, str]) -> Tuple[str, str, str]:
    """(source, default network name, name shown in diagnostics)."""
    text = os.fspath(path_or_source)
    looks_like_path = isinstance(path_or_source, os.PathLike) or (
        "\n" not in text and (text.endswith(".cnn") or os.path.exists(text))
    )
    if looks_like_path:
        with open(text, encoding="utf-8") as f:
            source = f.read()
        stem = os.path.splitext(os.path.basename(text))[0]
        return source, stem, text
    return text, "network", "<source>"


def _html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    esc = lambda v: html.escape(str(v))  # noqa: E731
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    cap = f"<caption style='text-align:left'>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _thousands(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


class Report:
    """What `cnnc check` finds: per-layer figures, totals and diagnostics (warnings; errors
    raise `CheckError`). A notebook cell shows the per-layer table."""

    def __init__(self, data: Dict[str, Any]):
        self.data = data
        #: One dict per layer: name, op, description, attrs, stage, inputs, output, params,
        #: macs, flops, activation_bytes, receptive_field, ...
        self.layers: List[Dict[str, Any]] = data["layers"]
        #: Warnings, each with code, severity, message, line, column, help.
        self.diagnostics: List[Dict[str, Any]] = data["diagnostics"]
        #: params, buffers, macs, flops, depth, peak_activation_bytes, receptive_field, by_kind.
        self.totals: Dict[str, Any] = {
            "params": data["total_params"],
            "buffers": data["total_buffers"],
            "macs": data["total_macs"],
            "flops": data["total_flops"],
            "depth": data["depth"],
            "peak_activation_bytes": data["peak_activation_bytes"],
            "receptive_field": data["receptive_field"],
            "by_kind": data["by_kind"],
        }
        self.network: str = data["network"]
        self.input: Tuple[int, ...] = tuple(data["input"])
        self.output: Tuple[int, ...] = tuple(data["output"])

    def to_pandas(self):  # -> pandas.DataFrame
        """The per-layer figures as a DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.layers).set_index("name")

    def _repr_html_(self) -> str:
        rows = (
            (
                l["name"],
                l["description"],
                "x".join(map(str, l["output"])),
                _thousands(l["params"]),
                _thousands(l["macs"]),
                "/".join(map(str, l["receptive_field"])),
            )
            for l in self.layers
        )
        t = self.totals
        caption = (
            f"{self.network} · input {'x'.join(map(str, self.input))} · {t['params']:,} params · "
            f"{t['macs']:,} MACs · depth {t['depth']}"
        )
        table = _html_table(["layer", "op", "output", "params", "MACs", "RF"], rows, caption)
        warnings = "".join(
            f"<p>⚠ {html.escape(d['code'])} line {d.get('line')}: {html.escape(d['message'])}</p>"
            for d in self.diagnostics
        )
        return warnings + table

    def __repr__(self) -> str:
        t = self.totals
        return (
            f"<cnnc.Report {self.network}: {len(self.layers)} layers, {t['params']:,} params, "
            f"{t['macs']:,} MACs, {len(self.diagnostics)} warning(s)>"
        )


def check(path_or_source: Union[PathLike, str], input: InputSize = None) -> Report:
    """Checks a `.cnn` file (a path) or its text: shapes, costs, lints. Raises `CheckError`
    when it has errors. `input` ("3x320x320" or (3, 320, 320)) overrides the declared input."""
    source, name, shown = _source_of(path_or_source)
    data, rendered = _cnnc.check(source, name, shown, _input_arg(input))
    data = json.loads(data)
    errors = [d for d in data["diagnostics"] if d["severity"] == "error"]
    if errors or not data.get("ok", False):
        raise CheckError(rendered, errors or data["diagnostics"])
    return Report(data)


def format(path_or_source: Union[PathLike, str]) -> str:
    """The file in `cnnc fmt`'s canonical layout."""
    source, _, shown = _source_of(path_or_source)
    try:
        return _cnnc.format_source(source, shown)
    except _cnnc.ModelErrors as e:
        _raise_model_errors(e)
        raise


class Graph:
    """`cnnc graph`'s picture; a notebook cell draws it."""

    def __init__(self, svg: str):
        self.svg = svg

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path: PathLike) -> None:
        """Writes the SVG to `path`."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.svg)


def graph(path_or_source: Union[PathLike, str], input: InputSize = None, collapse: bool = False) -> Graph:
    """The network's picture (block instances as single boxes with `collapse`)."""
    source, name, shown = _source_of(path_or_source)
    try:
        return Graph(_cnnc.graph_svg(source, name, shown, _input_arg(input), collapse))
    except _cnnc.ModelErrors as e:
        _raise_model_errors(e)
        raise


class Comparison:
    """`cnnc compare`'s table: one column per network, ratios to the first."""

    def __init__(self, text: str, data: Dict[str, Any]):
        self.text = text
        self.data = data
        self.networks: List[Dict[str, Any]] = data["networks"]

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        lines = [l for l in self.text.splitlines() if l and not set(l) <= {"-"}]
        rows = [re.split(r"\s{2,}", l.strip()) for l in lines[1:-1]]
        header = [""] + [n["network"] for n in self.networks]
        return _html_table(header, rows, lines[-1] if lines else "")


def compare(*models: Union[PathLike, str]) -> Comparison:
    """Compares networks side by side: params (by kind), MACs, memory, depth, receptive field."""
    if not models:
        raise ValueError("compare needs at least one network")
    triples = [_source_of(m) for m in models]
    try:
        text, data = _cnnc.compare([(s, n, shown) for s, n, shown in triples])
    except _cnnc.ModelErrors as e:
        _raise_model_errors(e)
        raise
    return Comparison(text, json.loads(data))


@dataclass(frozen=True)
class Param:
    """A weight tensor the network needs."""

    name: str
    shape: Tuple[int, ...]
    kind: str


@dataclass(frozen=True)
class TopClass:
    """One of an image's top classes."""

    index: int
    label: Optional[str]
    prob: float


@dataclass(frozen=True)
class Prediction:
    """What `cnnc run` says about one image."""

    input: str
    top: List[TopClass]
    logits: np.ndarray = field(repr=False)
    probs: np.ndarray = field(repr=False)
    warnings: List[str] = field(default_factory=list)


def _labels(model: "_cnnc.CompiledModel", outputs: int) -> Optional[List[str]]:
    m = re.search(r'^\s*labels\s+"([^"\n]*)"', model.source, re.M)
    if not m:
        return None
    path = os.path.join(os.path.dirname(model.path), m.group(1))
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            labels = [l.strip() for l in f if l.strip()]
    except OSError:
        return None
    return labels if len(labels) == outputs else None


def _as_batch(x: Any, shape: Tuple[int, int, int]) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"expected a float array (float32 preferred), got dtype {a.dtype}")
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or tuple(a.shape[1:]) != tuple(shape):
        c, h, w = shape
        raise ValueError(f"expected an array of shape [N, {c}, {h}, {w}] or [{c}, {h}, {w}], got {list(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.float32)


class Model:
    """A network with its weights, compiled by the JIT (or run by the interpreter).

    `model(x)` gives the logits of a float32 array [N, C, H, W] (or [C, H, W]);
    `model.predict(images)` ranks the classes of image files or PIL images, preprocessed as
    `cnnc run` does. The forward pass releases the GIL; one model may be called from several
    threads. A model pickles as its paths and options and compiles again where it is loaded.
    """

    def __init__(
        self,
        path: PathLike,
        weights: Optional[PathLike] = None,
        backend: str = "jit",
        threads: Optional[int] = None,
        input: InputSize = None,
    ):
        self._args = (os.fspath(path), None if weights is None else os.fspath(weights), backend, threads, input)
        try:
            self._m = _cnnc.CompiledModel(
                os.fspath(path), None if weights is None else os.fspath(weights), backend, threads, _input_arg(input)
            )
        except _cnnc.ModelErrors as e:
            _raise_model_errors(e)
            raise
        self.labels: Optional[List[str]] = None
        self._outputs: Optional[int] = None

    @property
    def input(self) -> Tuple[int, int, int]:
        """The input size it was compiled for, (C, H, W)."""
        return self._m.input

    @property
    def name(self) -> str:
        return self._m.name

    @property
    def path(self) -> str:
        return self._m.path

    @property
    def weights(self) -> Optional[str]:
        """The weights file in use; None for the random initialisation used when there is none."""
        return self._m.weights or None

    @property
    def warnings(self) -> List[str]:
        """What loading warned about: unused tensors, non-finite values, random weights."""
        return list(self._m.warnings)

    def __call__(self, x: Any) -> np.ndarray:
        """The logits (the input of a trailing softmax, if any), one row per image."""
        return self._m(_as_batch(x, self.input))

    def predict(self, images: Union[Any, Sequence[Any]], top: int = 5) -> List[Prediction]:
        """The `top` classes of each image: paths (PNG, JPEG, .npy) or PIL images."""
        if isinstance(images, (str, os.PathLike)) or _is_pil(images):
            images = [images]
        arrays, names = [], []
        for i, img in enumerate(images):
            if isinstance(img, (str, os.PathLike)):
                a = self._m.preprocess_path(os.fspath(img))
                base = os.fspath(img)
                names += [base] if a.shape[0] == 1 else [f"{base}[{k}]" for k in range(a.shape[0])]
            elif _is_pil(img):
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                a = self._m.preprocess_bytes(buf.getvalue(), f"<image {i}>")
                names.append(f"<image {i}>")
            else:
                raise TypeError(f"predict takes image paths or PIL images, not {type(img).__name__}")
            arrays.append(a)
        if not arrays:
            return []
        batch = np.ascontiguousarray(np.concatenate(arrays), dtype=np.float32)
        if batch.shape[1:] != tuple(self.input):
            raise ValueError(f"{names[0]} has shape {list(batch.shape[1:])}; {self.name} takes {list(self.input)}")
        ranked = self._m.rank(batch, names, top)
        if self._outputs is None:
            self._outputs = len(ranked[0][1]) if ranked else 0
            self.labels = _labels(self._m, self._outputs)
        label = (lambda k: self.labels[k]) if self.labels else (lambda k: None)
        return [
            Prediction(
                input=name,
                top=[TopClass(k, label(k), p) for k, p in tops],
                logits=np.asarray(logits, dtype=np.float32),
                probs=np.asarray(probs, dtype=np.float32),
                warnings=list(warnings),
            )
            for name, logits, probs, tops, warnings in ranked
        ]

    def params(self) -> List[Param]:
        """The weight tensors, in layer order, with their canonical names."""
        return [Param(n, tuple(s), k) for n, s, k in self._m.params()]

    def __reduce__(self):
        return (load, self._args)

    def __repr__(self) -> str:
        c, h, w = self.input
        return f"<cnnc.Model {self.name} {c}x{h}x{w} ({self._args[2]}), weights {self.weights or 'random'}>"


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.") and hasattr(x, "save")


def load(
    path: PathLike,
    weights: Optional[PathLike] = None,
    backend: str = "jit",
    threads: Optional[int] = None,
    input: InputSize = None,
) -> Model:
    """Loads a `.cnn` file with its weights (`weights`, or the `.safetensors` beside it, or a
    seeded random initialisation) and compiles it. `backend` is "jit" or "interp"."""
    return Model(path, weights, backend, threads, input)
