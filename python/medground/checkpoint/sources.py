"""One view over every checkpoint layout: a list of (name, dtype, shape) known
up front (GGUF needs every tensor info before any data) and a second pass
that yields the data one tensor at a time.

- safetensors files/folders and GGUF: the C reader (mmap, zero-copy);
- PyTorch .bin/.pth/.pt and Paddle .pdparams files or sharded folders: the
  restricted pickle readers, one shard at a time.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .. import _C
from ..errors import FormatError, NotFoundError
from .readers import iter_pickle_tensors, pickle_shards, read_pickle_checkpoint
from .unpickler import Tensor


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # medground dtype name: f32, bf16, q8_0, ...
    shape: tuple[int, ...]
    nbytes: int


# GGUF has no unsigned or bool tensor types: these widen losslessly.
_WIDEN = {"bool": np.int8, "u8": np.int16, "u16": np.int32}


class Source:
    """A checkpoint to read. ``format`` names the layout."""

    format: str
    folder: pathlib.Path  # where config.json / tokenizer files would sit

    def infos(self) -> list[TensorInfo]:
        raise NotImplementedError

    def metadata(self) -> dict[str, tuple[str, Any]]:
        """Metadata carried by the file itself: key -> (GGUF type name, value)."""
        return {}

    def write_into(self, writer, info: TensorInfo, tensor=None) -> None:
        raise NotImplementedError

    def iter_tensors(self) -> Iterator[tuple[TensorInfo, Any]]:
        for info in self.infos():
            yield info, None


class WeightsSource(Source):
    """safetensors file / folder / index, or GGUF, through the C reader."""

    def __init__(self, path: pathlib.Path):
        self.weights = _C.Weights(str(path))
        self.folder = path if path.is_dir() else path.parent
        meta_types = self.weights.metadata_types()
        self.format = "gguf" if "GGUF" == _magic(path) else "safetensors"
        self._meta_types = meta_types

    def infos(self) -> list[TensorInfo]:
        result = []
        for name in self.weights.names():
            dtype, shape, nbytes = self.weights.info(name)
            result.append(TensorInfo(name, dtype, tuple(shape), int(nbytes)))
        return result

    def metadata(self) -> dict[str, tuple[str, Any]]:
        if self.format != "gguf":
            return {}  # config.* keys are re-read from config.json by convert
        values = self.weights.metadata()
        arch = values.get("general.architecture")
        result = {}
        for key, value in values.items():
            # "config.X" keys of a GGUF are aliases of "<arch>.X" made at load time
            if isinstance(arch, str) and key.startswith("config.") and f"{arch}.{key[7:]}" in values:
                continue
            result[key] = (self._meta_types[key], value)
        return result

    def write_into(self, writer, info: TensorInfo, tensor=None) -> None:
        if info.dtype in _WIDEN:
            # GGUF has no unsigned/bool types: widen losslessly (small tensors)
            writer.write_tensor(info.name, self.weights[info.name].astype(_WIDEN[info.dtype]))
        else:
            writer.write_tensor_from(self.weights, info.name)

    def float32(self, name: str) -> np.ndarray:
        return self.weights.to_float32(name)


class PickleSource(Source):
    """PyTorch / Paddle pickle file or sharded folder (restricted unpickler)."""

    def __init__(self, path: pathlib.Path):
        if path.is_dir():
            shards = pickle_shards(path)
            if not shards:
                raise NotFoundError(f"{path}: no checkpoint (.safetensors, .gguf, .bin, .pth, .pdparams) in the folder")
            self.paths = shards
            self.folder = path
        else:
            self.paths = [path]
            self.folder = path.parent
        self._infos: list[TensorInfo] | None = None
        self.extra: dict[str, Any] = {}  # non-tensor leaves (epoch, step, ...) of every shard
        self.format = ""

    def infos(self) -> list[TensorInfo]:
        if self._infos is None:
            infos = []
            formats = set()
            for shard in self.paths:
                checkpoint = read_pickle_checkpoint(shard)
                self.extra.update(checkpoint.extra)
                formats.add(checkpoint.format)
                for name, tensor in checkpoint.tensors.items():
                    infos.append(TensorInfo(name, tensor.dtype, tensor.shape, tensor.nbytes))
                del checkpoint
            names = [i.name for i in infos]
            if len(set(names)) != len(names):
                seen = set()
                duplicate = next(n for n in names if n in seen or seen.add(n))
                raise FormatError(f"{self.folder}: tensor {duplicate} appears in two shards")
            self.format = "+".join(sorted(formats))
            self._infos = infos
        return self._infos

    def iter_tensors(self) -> Iterator[tuple[TensorInfo, Tensor]]:
        infos = {i.name: i for i in self.infos()}
        for name, tensor in iter_pickle_tensors(self.paths):
            yield infos[name], tensor

    def write_into(self, writer, info: TensorInfo, tensor: Tensor = None) -> None:
        array = tensor.array
        # GGUF has no unsigned/bool types: widen losslessly
        if tensor.dtype in _WIDEN:
            array = array.astype(_WIDEN[tensor.dtype])
        writer.write_tensor(info.name, array, source_dtype="bf16" if tensor.dtype == "bf16" else None)


def _magic(path: pathlib.Path) -> bytes | str:
    if path.is_dir():
        ggufs = list(path.glob("*.gguf"))
        if ggufs and not list(path.glob("*.safetensors")):
            return "GGUF"
        return ""
    with open(path, "rb") as f:
        return "GGUF" if f.read(4) == b"GGUF" else ""


def open_source(path: str | os.PathLike) -> Source:
    """The right reader for a file or folder."""
    path = pathlib.Path(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "model.safetensors.index.json").exists() or list(path.glob("*.safetensors")) or \
                list(path.glob("*.gguf")):
            return WeightsSource(path)
        return PickleSource(path)
    if path.name.endswith(".json"):
        if path.name.endswith(".safetensors.index.json"):
            return WeightsSource(path)
        return PickleSource(path.parent)
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: 8-byte header length (any low byte, even 0x80 or 'P') then '{'
    if head[:4] == b"GGUF" or (path.suffix == ".gguf" and head[8:9] != b"{"):
        return WeightsSource(path)
    if head[8:9] != b"{" and (head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in
                                                             (b"\x02", b"\x03", b"\x04", b"\x05"))):
        return PickleSource(path)
    if path.suffix in (".bin", ".pth", ".pt", ".pdparams", ".pkl") and head[8:9] != b"{":
        return PickleSource(path)  # protocol 0/1 pickles have no PROTO opcode
    return WeightsSource(path)  # safetensors (the C reader names the problem otherwise)


def load_config(folder: pathlib.Path) -> dict[str, Any] | None:
    path = folder / "config.json"
    if not path.exists():
        return None
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        raise FormatError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise FormatError(f"{path}: not a JSON object")
    return config
