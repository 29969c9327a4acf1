"""Type stubs of the native module `cnnc._cnnc` (the Rust half; `cnnc` wraps it)."""
from typing import List, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

class ModelErrors(Exception):
    """A model with errors: args are (rendered text, JSON list of diagnostics)."""

def check(source: str, name: str, shown: str, input: Optional[str] = None) -> Tuple[str, str]:
    """(`cnnc check --json`'s object as JSON text, the diagnostics rendered against `shown`)."""

def graph_svg(source: str, name: str, shown: str, input: Optional[str] = None, collapse: bool = False) -> str:
    """`cnnc graph`'s SVG; raises ModelErrors."""

def compare(models: List[Tuple[str, str, str]]) -> Tuple[str, str]:
    """`cnnc compare` of (source, name, shown): (table, JSON); raises ModelErrors."""

def format_source(source: str, shown: str) -> str:
    """`cnnc fmt`'s layout; raises ModelErrors on parse errors."""

class CompiledModel:
    def __init__(
        self,
        path: str,
        weights: Optional[str] = None,
        backend: str = "jit",
        threads: Optional[int] = None,
        input: Optional[str] = None,
    ) -> None: ...
    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Logits of a C-contiguous float32 batch [N, C, H, W]; releases the GIL."""
    def rank(
        self, x: npt.NDArray[np.float32], names: List[str], top: int
    ) -> List[Tuple[str, List[float], List[float], List[Tuple[int, float]], List[str]]]:
        """(name, logits, probs, [(class, prob)], warnings) per image, as `cnnc run --json`."""
    def preprocess_path(self, path: str) -> npt.NDArray[np.float32]: ...
    def preprocess_bytes(self, data: bytes, name: str) -> npt.NDArray[np.float32]: ...
    def params(self) -> List[Tuple[str, List[int], str]]: ...
    @property
    def input(self) -> Tuple[int, int, int]: ...
    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def weights(self) -> str: ...
    @property
    def warnings(self) -> List[str]: ...
