"""Checkpoints: read what users download, convert it to GGUF, never execute a pickle.

- :func:`convert` — any checkpoint (HF folder with safetensors or .bin shards,
  single .safetensors/.bin/.pth/.pdparams file, GGUF) -> one self-contained GGUF.
- :func:`inspect` — tensors, dtypes, shapes, bytes and metadata of any of them.
- :class:`Weights` — a safetensors file/folder or GGUF opened zero-copy by the
  C reader (``w[name]`` is a read-only NumPy view of the mapping).
- :func:`read_pickle_checkpoint` — PyTorch zip/legacy and Paddle pickles via a
  restricted unpickler (no torch import; unknown globals raise UnsafeError).
"""

from __future__ import annotations

from .._C import GGUFWriter, Weights
from .convert import ConvertSummary, choose_type, convert, detect_architecture
from .inspect import CheckpointInfo, inspect
from .readers import PickleCheckpoint, read_pickle_checkpoint
from .sources import TensorInfo
from .unpickler import RestrictedUnpickler, Tensor

__all__ = [
    "CheckpointInfo",
    "ConvertSummary",
    "GGUFWriter",
    "PickleCheckpoint",
    "RestrictedUnpickler",
    "Tensor",
    "TensorInfo",
    "Weights",
    "choose_type",
    "convert",
    "detect_architecture",
    "inspect",
    "read_pickle_checkpoint",
]
