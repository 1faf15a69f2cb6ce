"""``medground.inspect``: what a checkpoint holds (tensors, dtypes, shapes,
bytes, metadata) for every format medground reads, without loading data."""

from __future__ import annotations

import collections
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .sources import PickleSource, TensorInfo, WeightsSource, open_source


@dataclass
class CheckpointInfo:
    path: str
    format: str  # gguf, safetensors, torch-zip, torch-legacy, paddle
    tensors: list[TensorInfo]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def n_parameters(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (arrays become lists; long strings are summarised)."""
        return {
            "path": self.path,
            "format": self.format,
            "n_tensors": len(self.tensors),
            "n_bytes": self.n_bytes,
            "n_parameters": self.n_parameters,
            "tensors": [asdict(t) | {"shape": list(t.shape)} for t in self.tensors],
            "metadata": {k: _jsonable(v) for k, v in self.metadata.items()},
        }

    def format_table(self, max_rows: int | None = None) -> str:
        rows = self.tensors if max_rows is None else self.tensors[:max_rows]
        width = max([len(t.name) for t in rows] + [4])
        lines = [f"{self.path}: {self.format}, {len(self.tensors)} tensors, "
                 f"{self.n_parameters:,} parameters, {self.n_bytes / 1e6:.1f} MB"]
        counts = collections.Counter(t.dtype for t in self.tensors)
        lines.append("types: " + ", ".join(f"{n} {d}" for d, n in sorted(counts.items())))
        lines.append(f"{'name':<{width}}  {'dtype':<5}  {'shape':<22}  bytes")
        for t in rows:
            lines.append(f"{t.name:<{width}}  {t.dtype:<5}  {str(list(t.shape)):<22}  {t.nbytes}")
        if max_rows is not None and len(self.tensors) > max_rows:
            lines.append(f"... {len(self.tensors) - max_rows} more (use --all)")
        if self.metadata:
            lines.append("metadata:")
            for key, value in self.metadata.items():
                lines.append(f"  {key} = {_short(value)}")
        return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, (bytes, str)) and len(value) > 60:
        return f"<{type(value).__name__} of {len(value)}>"
    if isinstance(value, np.ndarray) and value.size > 8:
        return f"<{value.dtype} array of {value.size}>"
    if isinstance(value, list) and len(value) > 8:
        return f"<list of {len(value)}>"
    if isinstance(value, np.ndarray):
        return str(value.tolist())
    return repr(value) if isinstance(value, (str, bytes)) else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"<{value.dtype} array of {value.size}>"
    if isinstance(value, bytes):
        return f"<bytes of {len(value)}>"
    if isinstance(value, str) and len(value) > 1000:
        return f"<string of {len(value)}>"
    if isinstance(value, list):
        return [_jsonable(v) for v in value] if len(value) <= 64 else f"<list of {len(value)}>"
    return value


def inspect(path: str | os.PathLike) -> CheckpointInfo:
    """Tensors and metadata of a checkpoint (safetensors file/folder, GGUF,
    PyTorch .bin/.pth, Paddle .pdparams). Nothing is executed or copied."""
    source = open_source(path)
    tensors = source.infos()
    metadata: dict[str, Any] = {}
    if isinstance(source, WeightsSource):
        metadata = source.weights.metadata()
    elif isinstance(source, PickleSource):
        metadata = {f"pickle.{key}": value for key, value in source.extra.items()}
    return CheckpointInfo(os.fspath(path), source.format, tensors, metadata)
