"""``medground.load``: one entry point for every checkpoint users hold.

The model family is read from the checkpoint itself — GGUF
``general.architecture`` (written by ``medground convert``), else
``config.json`` and the tensor names (``convert.detect_architecture``) — so a
Qwen-VL-Chat / BiRD folder, a PaddleMIX BiRD, a MedPLIB release, a
``sam-med2d_b.pth`` or our GGUF all open with the same call.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Optional, Union

from . import _C
from .errors import InvalidArgumentError, NotFoundError, UnsupportedError

FAMILIES = ("bird", "medplib", "sam_med2d")


def _config_near(path: pathlib.Path) -> Optional[dict]:
    folder = path if path.is_dir() else path.parent
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8"))
    except ValueError:
        return None


def detect_family(path: Union[str, os.PathLike]) -> str:
    """'bird', 'medplib' or 'sam_med2d' for a checkpoint file or folder
    (:class:`~medground.UnsupportedError` when it is none of them)."""
    from .checkpoint import inspect
    from .checkpoint.convert import detect_architecture

    p = pathlib.Path(os.fspath(path))
    if not p.exists():
        raise NotFoundError(f"{p}: no such file or folder")
    info = inspect(p)
    arch = info.metadata.get("general.architecture")
    if isinstance(arch, (tuple, list)) and len(arch) == 2:  # (type, value) pairs
        arch = arch[1]
    if isinstance(arch, bytes):
        arch = arch.decode("utf-8", "replace")
    if arch not in FAMILIES:
        arch = detect_architecture([t.name for t in info.tensors], _config_near(p))
    if arch not in FAMILIES:
        raise UnsupportedError(
            f"{p}: not a BiRD / Qwen-VL, MedPLIB or SAM-Med2D checkpoint (its tensor names and "
            "config.json match none of them); pass family= to force one")
    return arch


def load(path: Union[str, os.PathLike], device: str = "cpu", dtype: Optional[str] = None,
         threads: Optional[int] = None, *, family: Optional[str] = None, **options: Any) -> Any:
    """Opens a checkpoint as a :class:`~medground.BiRD`, ``MedPLIB`` or
    :class:`~medground.SamMed2D`.

    ``path``: an HF folder (safetensors or ``pytorch_model*.bin`` shards), a
    PaddleMIX folder, a single file (``.safetensors``, ``.bin``, ``.pth``,
    ``.pdparams``) or a GGUF from ``medground convert``. ``device``: ``"cpu"``
    or ``"cuda"`` (an error when no GPU is usable). ``dtype``: re-encode the
    matrices at load (``"f32"``, ``"bf16"``, ``"f16"``, ``"q8_0"``, ``"q4_0"``;
    None keeps the stored types). ``threads``: CPU threads (None = all cores).
    ``family`` skips detection. Other keyword arguments go to the model class.
    """
    if device not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"device={device!r}: expected 'cpu' or 'cuda'")
    if threads is not None:
        if int(threads) < 0:
            raise InvalidArgumentError(f"threads={threads}: expected >= 0 (0 = all cores)")
        _C.set_num_threads(int(threads), None)
    _C.set_device(device)
    family = family or detect_family(path)
    if family == "bird":
        from .models.bird import BiRD

        return BiRD(path, dtype=dtype, **options)
    if family == "sam_med2d":
        from .models.sam_med2d import SamMed2D

        if dtype is not None:
            raise InvalidArgumentError("SAM-Med2D is loaded in its stored types; dtype= is not supported")
        return SamMed2D(path, **options)
    if family == "medplib":
        try:
            from .models.medplib import MedPLIB
        except ImportError:
            raise UnsupportedError(f"{path}: a MedPLIB checkpoint, and this build has no MedPLIB model") from None
        return MedPLIB(path, dtype=dtype, **options)
    raise InvalidArgumentError(f"family={family!r}: expected one of {', '.join(FAMILIES)}")


__all__ = ["FAMILIES", "detect_family", "load"]
