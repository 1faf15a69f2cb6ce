"""Readers for pickle checkpoints: PyTorch zip (``torch.save`` since 1.6),
PyTorch legacy (``_use_new_zipfile_serialization=False``) and Paddle
``.pdparams``. All go through :class:`RestrictedUnpickler`; none imports torch.

Torch zip checkpoints store each storage uncompressed as ``<prefix>/data/<key>``;
we map the file once and hand out NumPy views of those byte ranges, so opening
a 2 GB shard costs no memory until a tensor is touched.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import pathlib
import re
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..errors import FormatError, MedgroundIOError, NotFoundError, UnsupportedError
from ..errors import MedgroundError
from .unpickler import STORAGE_DTYPES, RestrictedUnpickler, Storage, StorageType, Tensor, check_no_objects, with_label

STORAGE_NUMPY = {dtype: numpy_dtype for dtype, numpy_dtype in STORAGE_DTYPES.values()}

# First object of a legacy torch file (torch/serialization.py MAGIC_NUMBER).
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# Keys under which training scripts wrap the state dict (SAM-Med2D: "model").
WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict", "net")

NUMPY_TO_DTYPE = {
    np.dtype("float32"): "f32", np.dtype("float16"): "f16", np.dtype("float64"): "f64",
    np.dtype("int64"): "i64", np.dtype("int32"): "i32", np.dtype("int16"): "i16",
    np.dtype("int8"): "i8", np.dtype("uint8"): "u8", np.dtype("uint16"): "u16", np.dtype("bool"): "bool",
}


@dataclass
class PickleCheckpoint:
    """Tensors of one pickle file, by dotted name, in file order."""

    path: str
    format: str  # "torch-zip", "torch-legacy", "paddle"
    tensors: dict[str, Tensor]
    extra: dict[str, Any] = field(default_factory=dict)  # non-tensor leaves (epoch, ...)
    _keepalive: list = field(default_factory=list, repr=False)


def _map(path: str) -> mmap.mmap:
    try:
        with open(path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except ValueError:
        raise FormatError(f"{path}: the file is empty") from None
    except OSError as error:
        raise MedgroundIOError(f"{path}: cannot map: {error}") from None


class _MappedFile(io.RawIOBase):
    """A read-only file over an mmap with its own position (several readers
    of one mapping never disturb each other); reads copy only what is read."""

    def __init__(self, mapped: mmap.mmap):
        super().__init__()
        self._mapped = mapped
        self._view = memoryview(mapped)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._mapped)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        chunk = self._view[self._pos:self._pos + len(buffer)]
        n = len(chunk)
        memoryview(buffer).cast("B")[:n] = chunk
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        end = len(self._mapped) if size is None or size < 0 else min(len(self._mapped), self._pos + size)
        data = self._mapped[self._pos:end] if end > self._pos else b""
        self._pos = max(self._pos, end)
        return data

    def readline(self, size: int = -1) -> bytes:
        end = self._mapped.find(b"\n", self._pos)
        end = len(self._mapped) if end < 0 else end + 1
        if size is not None and size >= 0:
            end = min(end, self._pos + size)
        return self.read(end - self._pos)

    def close(self) -> None:
        self._view.release()
        super().close()


def _zip_member_offset(mapped: mmap.mmap, info: zipfile.ZipInfo, path: str) -> int:
    """Start of a stored member's bytes (after its local header)."""
    start = info.header_offset
    header = mapped[start:start + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise FormatError(f"{path}: zip member {info.filename}: bad local header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    offset = start + 30 + name_length + extra_length
    if offset + info.file_size > len(mapped):
        raise FormatError(f"{path}: zip member {info.filename} runs past the end of the file")
    return offset


def _storage_array(buffer, offset: int, n_bytes: int, storage_type: StorageType, key: str, numel,
                   label: str) -> Storage:
    itemsize = storage_type.numpy_dtype.itemsize
    if n_bytes % itemsize:
        raise FormatError(f"{label}: storage {key}: {n_bytes} bytes is not a whole number of {storage_type.name} "
                          f"elements")
    count = n_bytes // itemsize
    if isinstance(numel, int) and numel > count:
        raise FormatError(f"{label}: storage {key}: header says {numel} elements, the file holds {count}")
    array = np.frombuffer(buffer, dtype=storage_type.numpy_dtype, count=count, offset=offset)
    return Storage(key, storage_type.dtype, array)


def read_torch_zip(path: str) -> PickleCheckpoint:
    mapped = _map(path)
    try:
        # the mmap itself is the file object: io.BytesIO(mapped) would copy
        # the whole checkpoint into memory
        archive = zipfile.ZipFile(_MappedFile(mapped))  # reads the directory only
    except zipfile.BadZipFile as error:
        raise FormatError(f"{path}: not a valid zip checkpoint ({error})") from None
    pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise FormatError(f"{path}: expected one <prefix>/data.pkl in the zip, found {len(pickles)}")
    prefix = pickles[0][: -len("data.pkl")]
    members = {info.filename: info for info in archive.infolist()}
    byteorder = members.get(prefix + "byteorder")
    if byteorder is not None and archive.read(byteorder).strip() not in (b"little", b""):
        raise UnsupportedError(f"{path}: big-endian checkpoints are not supported")

    def load_storage(storage_type: StorageType, key: str, numel) -> Storage:
        info = members.get(f"{prefix}data/{key}")
        if info is None:
            raise FormatError(f"{path}: storage {key} is referenced but {prefix}data/{key} is missing")
        if info.compress_type == zipfile.ZIP_STORED:
            offset = _zip_member_offset(mapped, info, path)
            return _storage_array(mapped, offset, info.file_size, storage_type, key, numel, path)
        data = archive.read(info)  # compressed (unusual): decompress this storage only
        return _storage_array(data, 0, len(data), storage_type, key, numel, path)

    with archive.open(pickles[0]) as f:
        obj = RestrictedUnpickler(f, load_storage=load_storage, label=path).load()
    tensors, extra = flatten_state_dict(obj, path)
    _materialise(tensors, path)
    return PickleCheckpoint(path, "torch-zip", tensors, extra, [mapped])


def _materialise(tensors: dict[str, Tensor], path: str) -> None:
    """Make (and bounds-check) every view now, naming file and tensor on error."""
    for name, tensor in tensors.items():
        try:
            tensor.array  # noqa: B018
        except MedgroundError as error:
            raise with_label(error, f"{path}: tensor {name}") from None


def _read_legacy_storages(f, mapped, path, storages: dict[str, Storage]) -> None:
    """After the main pickle: a pickled list of storage keys, then for each
    key an int64 element count and the raw bytes (torch legacy _save)."""
    keys = RestrictedUnpickler(f, label=path).load()
    if not isinstance(keys, list):
        raise FormatError(f"{path}: legacy storage key list is missing")
    position = f.tell()
    for key in keys:
        key = str(key)
        if position + 8 > len(mapped):
            raise FormatError(f"{path}: storage {key}: truncated element count")
        (count,) = struct.unpack("<q", mapped[position:position + 8])
        position += 8
        storage = storages.get(key)
        if storage is None:
            raise FormatError(f"{path}: storage {key} is in the key list but no tensor uses it")
        n_bytes = count * storage.itemsize
        if count < 0 or position + n_bytes > len(mapped):
            raise FormatError(f"{path}: storage {key}: {count} elements run past the end of the file")
        storage.array = np.frombuffer(mapped, dtype=STORAGE_NUMPY[storage.dtype], count=count, offset=position)
        position += n_bytes


def read_pickle_file(path: str) -> PickleCheckpoint:
    """A non-zip pickle: legacy torch (starts with the torch magic number) or
    a Paddle/NumPy state dict."""
    mapped = _map(path)
    f = _MappedFile(mapped)  # no copy (io.BytesIO would copy the whole file)
    # A legacy torch file starts with the pickled magic number (PROTO n,
    # maybe a FRAME, LONG1 of 10 bytes); only then is the first pickle read
    # here, so a Paddle pickle is unpickled once, with the NumPy-only list.
    if re.match(rb"\x80[\x02-\x05](\x95.{8})?\x8a\x0a", bytes(mapped[:16]), re.DOTALL):
        first = RestrictedUnpickler(f, label=path, load_storage=None).load()
    else:
        first = None
    if isinstance(first, int) and first == TORCH_LEGACY_MAGIC:
        protocol = RestrictedUnpickler(f, label=path).load()
        if protocol != 1001:
            raise UnsupportedError(f"{path}: legacy torch protocol {protocol} (1001 expected)")
        RestrictedUnpickler(f, label=path).load()  # sys_info: endianness and type sizes
        storages: dict[str, Storage] = {}

        # The views are described before the bytes appear: storages start
        # empty and are filled from the data section after the pickle.
        def load_storage(storage_type: StorageType, key: str, numel) -> Storage:
            storages[key] = Storage(key, storage_type.dtype, None, storage_type.numpy_dtype.itemsize)
            return storages[key]

        obj = RestrictedUnpickler(f, load_storage=load_storage, label=path).load()
        tensors, extra = flatten_state_dict(obj, path)
        _read_legacy_storages(f, mapped, path, storages)
        _materialise(tensors, path)
        return PickleCheckpoint(path, "torch-legacy", tensors, extra, [mapped])
    # Paddle: the pickle is the state dict itself, of NumPy arrays.
    f.seek(0)
    obj = RestrictedUnpickler(f, numpy_only=True, label=path).load()
    tensors, extra = flatten_state_dict(obj, path)
    return PickleCheckpoint(path, "paddle", tensors, extra, [mapped])


def flatten_state_dict(obj: Any, label: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state dict inside a checkpoint: unwraps {"model": sd} /
    {"state_dict": sd} wrappers and flattens nested dicts/lists with '.'."""
    if isinstance(obj, dict):
        has_tensor_values = any(isinstance(v, (Tensor, np.ndarray)) for v in obj.values())
        if not has_tensor_values:
            for key in WRAPPER_KEYS:
                if isinstance(obj.get(key), dict):
                    inner, extra = flatten_state_dict(obj[key], label)
                    extra.update({k: v for k, v in obj.items() if k != key and _is_plain(v)})
                    return inner, extra
    tensors: dict[str, Tensor] = {}
    extra: dict[str, Any] = {}

    def add(name: str, tensor: Tensor) -> None:
        if name in tensors:  # e.g. {"a.b": t, "a": {"b": u}}: both flatten to "a.b"
            raise FormatError(f"{label}: two tensors are named {name} once nested keys are joined with '.'")
        tensors[name] = tensor

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Tensor):
            add(prefix, value)
        elif isinstance(value, np.ndarray):
            check_no_objects(value, label)
            dtype = NUMPY_TO_DTYPE.get(value.dtype.newbyteorder("=") if value.dtype.byteorder == ">" else value.dtype)
            if dtype is None:
                raise UnsupportedError(f"{label}: tensor {prefix}: NumPy dtype {value.dtype} is not supported")
            if value.dtype.byteorder == ">":
                value = value.astype(value.dtype.newbyteorder("<"))
            value.setflags(write=False)
            add(prefix, Tensor(dtype, value))
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, (Tensor, np.ndarray, dict)) for v in value):
            for index, item in enumerate(value):
                visit(f"{prefix}.{index}" if prefix else str(index), item)
        elif _is_plain(value):
            extra[prefix] = value

    visit("", obj)
    return tensors, extra


def _is_plain(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def read_pickle_checkpoint(path: str | os.PathLike) -> PickleCheckpoint:
    """Any single pickle checkpoint file (.bin, .pth, .pt, .pdparams)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise NotFoundError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        return read_torch_zip(path)
    return read_pickle_file(path)


def pickle_shards(folder: pathlib.Path) -> list[pathlib.Path] | None:
    """Shard files of a pickle checkpoint folder (via its index when present),
    or None when the folder holds no pickle checkpoint."""
    for index_name in ("pytorch_model.bin.index.json", "model_state.pdparams.index.json"):
        index = folder / index_name
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError) as error:
                raise FormatError(f"{index}: not a checkpoint index ({error})") from None
            shards: list[str] = []
            for name, shard in weight_map.items():
                if not isinstance(shard, str) or "/" in shard or shard.startswith(".."):
                    raise FormatError(f"{index}: bad shard name {shard!r} for tensor {name}")
                if shard not in shards:
                    shards.append(shard)
            for shard in shards:
                if not (folder / shard).exists():
                    example = next(n for n, s in weight_map.items() if s == shard)
                    raise NotFoundError(f"{index}: shard {shard} (holding {example}, ...) is missing from {folder}")
            return [folder / s for s in shards]
    for pattern in ("pytorch_model*.bin", "model_state*.pdparams", "*.pth", "*.pt", "*.bin", "*.pdparams"):
        found = sorted(folder.glob(pattern))
        if found:
            return found
    return None


def iter_pickle_tensors(paths: list[pathlib.Path]) -> Iterator[tuple[str, Tensor]]:
    """Tensors of several shards, one shard mapped at a time."""
    seen: set[str] = set()
    for path in paths:
        checkpoint = read_pickle_checkpoint(path)
        for name, tensor in checkpoint.tensors.items():
            if name in seen:
                raise FormatError(f"{path}: tensor {name} appears in two shards")
            seen.add(name)
            yield name, tensor
        del checkpoint
