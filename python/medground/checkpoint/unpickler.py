"""A restricted unpickler for PyTorch and Paddle checkpoints.

``pickle.load`` runs whatever callable a file names (``posix.system``,
``builtins.eval``...). PyTorch checkpoints only need a handful of globals to
describe tensors; Paddle ``.pdparams`` files only need NumPy's array
reconstruction. :class:`RestrictedUnpickler` resolves exactly those and
raises :class:`medground.UnsafeError` for anything else, before it can be
called. Torch is never imported: storages become NumPy views of the file.
"""

from __future__ import annotations

import pickle
import struct
import types
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import FormatError, MedgroundError, UnsafeError, UnsupportedError

# torch storage class name -> (medground dtype name, numpy dtype holding the bytes).
# bf16 has no NumPy type: its 16-bit patterns are kept in uint16.
STORAGE_DTYPES: dict[str, tuple[str, np.dtype]] = {
    "FloatStorage": ("f32", np.dtype("<f4")),
    "DoubleStorage": ("f64", np.dtype("<f8")),
    "HalfStorage": ("f16", np.dtype("<f2")),
    "BFloat16Storage": ("bf16", np.dtype("<u2")),
    "LongStorage": ("i64", np.dtype("<i8")),
    "IntStorage": ("i32", np.dtype("<i4")),
    "ShortStorage": ("i16", np.dtype("<i2")),
    "CharStorage": ("i8", np.dtype("i1")),
    "ByteStorage": ("u8", np.dtype("u1")),
    "BoolStorage": ("bool", np.dtype("?")),
    "UntypedStorage": ("u8", np.dtype("u1")),
}


@dataclass(frozen=True)
class StorageType:
    """Stands in for ``torch.FloatStorage`` & co. inside the pickle."""

    name: str

    @property
    def dtype(self) -> str:
        return STORAGE_DTYPES[self.name][0]

    @property
    def numpy_dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name][1]


@dataclass
class Storage:
    """One torch storage: a flat NumPy array over the file's bytes (None
    until a legacy file's data section has been read)."""

    key: str
    dtype: str
    array: np.ndarray | None
    itemsize: int = 0

    def __post_init__(self):
        if not self.itemsize and self.array is not None:
            self.itemsize = self.array.itemsize


class Tensor:
    """A tensor read from a pickle checkpoint, without torch.

    ``array`` is a read-only NumPy view (of the mapped file for torch zip
    checkpoints); bf16 tensors hold their uint16 bit patterns, so use
    :meth:`to_float32` for values. A torch tensor is a view of a storage; the
    view is made (and bounds-checked) when ``array`` is first read, because
    legacy files store the bytes after the pickle that describes the views.
    """

    __slots__ = ("dtype", "_array", "_storage", "_view")

    def __init__(self, dtype: str, array: np.ndarray | None = None, storage: "Storage | None" = None,
                 view: tuple | None = None):
        self.dtype = dtype
        self._array = array
        self._storage = storage
        self._view = view

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = _view(self._storage, *self._view)
        return self._array

    @property
    def shape(self) -> tuple[int, ...]:
        if self._array is None and self._view is not None:
            return tuple(int(s) for s in self._view[1])
        return tuple(self.array.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.itemsize

    @property
    def itemsize(self) -> int:
        if self._array is None and self._storage is not None:
            return self._storage.itemsize
        return self.array.itemsize

    def to_float32(self) -> np.ndarray:
        if self.dtype == "bf16":
            # bf16 is the top half of an f32: widening is exact.
            return (self.array.astype(np.uint32) << 16).view(np.float32)
        return self.array.astype(np.float32)

    def __repr__(self) -> str:
        return f"Tensor({self.dtype}{list(self.shape)})"


def _view(storage: Storage, offset: int, size: tuple, stride: tuple) -> np.ndarray:
    """``storage.as_strided(size, stride, offset)`` with every bound checked."""
    try:
        offset = int(offset)
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
    except (TypeError, ValueError) as error:
        raise FormatError(f"storage {storage.key}: malformed tensor view ({error})") from None
    if len(size) != len(stride):
        raise FormatError(f"storage {storage.key}: view has {len(size)} sizes but {len(stride)} strides")
    if offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise FormatError(f"storage {storage.key}: negative offset, size or stride in a tensor view")
    base = storage.array
    if base is None:
        raise FormatError(f"storage {storage.key}: no data was found for it")
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= base.size:
            raise FormatError(
                f"storage {storage.key}: tensor view (offset {offset}, size {list(size)}, stride "
                f"{list(stride)}) reaches element {last} of a storage of {base.size}"
            )
    elif offset > base.size:
        raise FormatError(f"storage {storage.key}: offset {offset} past a storage of {base.size}")
    itemsize = base.itemsize
    return np.lib.stride_tricks.as_strided(
        base[offset:] if offset < base.size else base[:0],
        shape=size,
        strides=tuple(s * itemsize for s in stride),
        writeable=False,
    )


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, Storage):
        raise FormatError(f"_rebuild_tensor_v2: expected a storage, got {type(storage).__name__}")
    return Tensor(storage.dtype, storage=storage, view=(storage_offset, size, stride))


@dataclass(frozen=True)
class TorchDtype:
    """Stands in for ``torch.uint16`` & co. (``_rebuild_tensor_v3`` names the
    dtype of an untyped storage; checkpoints may also hold dtypes as values)."""

    name: str


# torch dtypes saved through _rebuild_tensor_v3 that we can read, as
# (medground dtype, little-endian NumPy dtype).
_V3_DTYPES = {"uint16": ("u16", np.dtype("<u2"))}
_TORCH_DTYPE_NAMES = (
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long", "int32", "int",
    "int16", "short", "int8", "uint8", "bool", "complex64", "complex128", "uint16", "uint32", "uint64",
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
)


class _RetypedStorage:
    """An untyped (byte) storage read as another element type, lazily: a
    legacy file's bytes arrive after the pickle that describes the view."""

    def __init__(self, base: Storage, dtype: str, numpy_dtype: np.dtype):
        self.base, self.key, self.dtype, self._numpy = base, base.key, dtype, numpy_dtype
        self.itemsize = numpy_dtype.itemsize

    @property
    def array(self) -> np.ndarray | None:
        raw = self.base.array
        if raw is None:
            return None
        return raw[: raw.size // self.itemsize * self.itemsize].view(self._numpy)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       dtype=None, metadata=None):
    if not isinstance(storage, Storage) or not isinstance(dtype, TorchDtype):
        raise FormatError("_rebuild_tensor_v3: expected an untyped storage and a torch dtype")
    if dtype.name not in _V3_DTYPES:
        raise UnsupportedError(f"tensors of dtype torch.{dtype.name} are not supported")
    medground_dtype, numpy_dtype = _V3_DTYPES[dtype.name]
    retyped = _RetypedStorage(storage, medground_dtype, numpy_dtype)
    return Tensor(medground_dtype, storage=retyped, view=(storage_offset, size, stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, Tensor):
        raise FormatError(f"_rebuild_parameter: expected a tensor, got {type(data).__name__}")
    return data


def _ordered_dict(*args):
    import collections

    return collections.OrderedDict(*args)


def _numpy_reconstruct():
    from numpy._core import multiarray

    return multiarray._reconstruct


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (Python 2
    compatibility: ``encode(str, 'latin1')``); nothing else is accepted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeError(f"_codecs.encode is only allowed as encode(str, 'latin1'), got encoding {encoding!r}")
    return text.encode("latin1")


def _frombuffer(buffer, dtype, shape, order):
    """NumPy's protocol-5 array constructor (``numpy._core.numeric._frombuffer``),
    reimplemented with checks: a plain dtype, a tuple shape, C or F order."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafeError("refusing an object-dtype array in a pickle")
    if order not in ("C", "F") or not isinstance(shape, tuple):
        raise FormatError(f"malformed protocol-5 NumPy array (order {order!r}, shape {shape!r})")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _numpy_scalar():
    from numpy._core import multiarray

    return multiarray.scalar


# (module, name) -> factory of the object find_class returns. Factories keep
# NumPy internals out of import time.
_TORCH_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): lambda: _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): lambda: _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): lambda: _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): lambda: _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: _rebuild_parameter,
    ("collections", "OrderedDict"): lambda: _ordered_dict,
}
for _name in STORAGE_DTYPES:
    _TORCH_GLOBALS[("torch", _name)] = (lambda n=_name: StorageType(n))
_TORCH_GLOBALS[("torch.storage", "UntypedStorage")] = lambda: StorageType("UntypedStorage")
for _name in _TORCH_DTYPE_NAMES:
    _TORCH_GLOBALS[("torch", _name)] = (lambda n=_name: TorchDtype(n))

_NUMPY_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.numeric", "_frombuffer"): lambda: _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): lambda: _frombuffer,
    ("_codecs", "encode"): lambda: _latin1_encode,
    ("collections", "OrderedDict"): lambda: _ordered_dict,
}


def _refuse_state(self, state):
    raise UnsafeError(f"refusing to set state on {type(self).__name__} (a pickle may only call allowed constructors)")


class _Guarded:
    """An allowed function as the pickle sees it: callable, but BUILD on it
    (``__setstate__``) is refused."""

    __slots__ = ("_function",)

    def __init__(self, function):
        self._function = function

    def __call__(self, *args, **kwargs):
        return self._function(*args, **kwargs)

    __setstate__ = _refuse_state


StorageType.__setstate__ = _refuse_state
TorchDtype.__setstate__ = _refuse_state


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only an allow-list of globals.

    ``load_storage(storage_type, key, numel) -> Storage`` is called for every
    torch persistent id; ``numpy_only`` selects the Paddle allow-list.
    """

    def __init__(self, file, *, load_storage=None, numpy_only: bool = False, label: str = "pickle"):
        super().__init__(file)
        self._load_storage = load_storage
        self._allowed = _NUMPY_GLOBALS if numpy_only else {**_TORCH_GLOBALS, **_NUMPY_GLOBALS}
        self._label = label
        self._storages: dict[str, Storage] = {}

    def load(self):
        """Unpickle; any failure is a typed medground error naming the file."""
        try:
            return super().load()
        except MedgroundError as error:
            raise with_label(error, self._label) from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                OverflowError, RecursionError, struct.error, UnicodeDecodeError) as error:
            raise FormatError(f"{self._label}: corrupt or truncated pickle ({type(error).__name__}: "
                              f"{str(error)[:200]})") from None

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        factory = self._allowed.get((module, name))
        if factory is None and module == "torch" and name.endswith("Storage") and self._load_storage is not None:
            # float8 / complex / quantized storages: harmless, just not supported
            raise UnsupportedError(f"{self._label}: tensors stored as torch.{name} are not supported "
                                   f"({', '.join(sorted(STORAGE_DTYPES))} are)")
        if factory is None:
            raise UnsafeError(
                f"{self._label}: refusing to load global '{module}.{name}' (not a tensor or array "
                "constructor; medground never executes code from checkpoints)"
            )
        obj = factory()
        # a pickle may BUILD (set state on) any object it names: our own
        # functions are handed out behind a guard so a file cannot rewrite
        # their defaults or attributes for later loads
        return _Guarded(obj) if isinstance(obj, types.FunctionType) else obj

    def persistent_load(self, pid):
        if self._load_storage is None:
            raise UnsafeError(f"{self._label}: unexpected persistent id in a NumPy pickle")
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise FormatError(f"{self._label}: unknown persistent id {str(pid)[:80]!r}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
        if not isinstance(storage_type, StorageType):
            raise FormatError(f"{self._label}: storage {key}: type {storage_type!r} is not a storage class")
        if len(pid) > 5 and pid[5] is not None:
            # legacy (pre-1.6) view_metadata: (view_key, offset, size)
            raise UnsupportedError(f"{self._label}: storage {key}: legacy storage views are not supported")
        storage = self._storages.get(key)
        if storage is None:
            storage = self._load_storage(storage_type, key, numel)
            self._storages[key] = storage
        elif storage.dtype != storage_type.dtype:
            raise UnsupportedError(f"{self._label}: storage {key} is used as {storage.dtype} and "
                                   f"{storage_type.dtype}")
        return storage


def with_label(error: MedgroundError, label: str) -> MedgroundError:
    """The same error type with the file name in front (once)."""
    message = str(error)
    if message.startswith(label):
        return error
    return type(error)(f"{label}: {message}")


def check_no_objects(value: Any, label: str) -> None:
    """Object arrays could smuggle arbitrary Python objects; refuse them."""
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise UnsafeError(f"{label}: refusing an object-dtype array")
