"""medground — biomedical refer-and-ground models (BiRD, MedPLIB) on CPU and GPU.

Load a checkpoint, ground phrases to boxes, refer to regions, segment, chat,
evaluate prediction files as the papers do, and check grounding datasets.
Everything heavy runs in the C library (``medground._C``).
"""

from __future__ import annotations

from ._version import __version__
from . import _C
from .errors import (
    DTypeError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    MedgroundError,
    MedgroundIOError,
    NotFoundError,
    OutOfMemoryError,
    ShapeError,
    UnsafeError,
    UnsupportedError,
)
from .checkpoint import convert, inspect
from .api import detect_family, load
from . import image, results, testing
from .predict import predict
from .models.sam_med2d import SamMed2D
from .models.bird import BiRD, Box
from .models.medplib import MedPLIB
from .eval import evaluate
from .tokenizer import Tokenizer
from . import data  # dataset tools: medground.data.check, build_records, mask_objects, ...


def set_num_threads(n_threads: int = 0, blas: str | None = None) -> None:
    """Threads (0 = all cores) and GEMM provider ('onednn' or 'openblas') for medground's work."""
    _C.set_num_threads(int(n_threads), blas)


def get_num_threads() -> int:
    """Threads medground uses."""
    return _C.get_num_threads()


def set_fpmath(mode: str = "auto") -> None:
    """Where f32 work may take its products in bf16 (sums stay f32), like
    ``torch.set_float32_matmul_precision``: ``"auto"`` (the default: a ViT
    vision tower whose weights are bf16/q8_0/q4_0 runs its attention with
    bf16 products, about twice as fast on CPUs with AVX-512 BF16, and its
    erf GELU in f32 arithmetic on AVX-512 CPUs, within 8 ulp instead of 1,
    twice as fast; f32 and f16 towers, SAM and the language models stay
    f32), ``"strict"`` (f32 and the double-precision GELU everywhere) or
    ``"bf16"`` (every attention of 8 or more query rows, every GELU).
    ``"default"`` re-reads the ``MG_FPMATH`` environment variable."""
    _C.set_fpmath(str(mode))


def get_fpmath() -> str:
    """The precision mode in force: ``"auto"``, ``"strict"`` or ``"bf16"``."""
    return _C.get_fpmath()


__all__ = [
    "load",
    "detect_family",
    "predict",
    "convert",
    "inspect",
    "SamMed2D",
    "BiRD",
    "Box",
    "MedPLIB",
    "evaluate",
    "Tokenizer",
    "data",
    "__version__",
    "set_num_threads",
    "get_num_threads",
    "set_fpmath",
    "get_fpmath",
    "MedgroundError",
    "InvalidArgumentError",
    "FormatError",
    "ShapeError",
    "DTypeError",
    "MedgroundIOError",
    "OutOfMemoryError",
    "NotFoundError",
    "UnsupportedError",
    "UnsafeError",
    "InternalError",
]
