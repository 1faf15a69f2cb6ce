"""Image input: decoding, DICOM windowing and the models' preprocessing.

Every pixel loop runs in C (``csrc/image``); this module only normalises
arguments. The resize reproduces PIL's ``Image.resize`` exactly, so the
pipelines give the pixels BiRD (Qwen-VL) and MedPLIB were trained on:

* :func:`preprocess_qwen` — PIL BICUBIC squash to 448x448, /255, CLIP mean/std.
* :func:`preprocess_clip336` — MedPLIB's CLIP branch: longest side to 336 with
  PIL BILINEAR, centre pad with (122, 116, 104), /255, CLIP mean/std.
* :func:`preprocess_sam` — MedPLIB's SAM-Med2D branch: longest side to 256
  with PIL BILINEAR, ImageNet mean/std on 0..255, centre pad with 0.

Conversions to 8-bit RGB follow PIL's ``convert('RGB')``: gray is replicated,
alpha dropped; 16-bit one-channel images saturate (``min(v, 255)``, PIL's
``I;16`` -> ``L``) and 16-bit colour images keep the high byte (how PIL
unpacks 16-bit RGB PNGs). Use ``window=`` to map a 16-bit or float image to
8 bits by intensity instead.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Union

import numpy as np

from . import _C
from .errors import DTypeError, FormatError, InvalidArgumentError

#: CT window presets (center, width) in Hounsfield units (Radiopaedia's
#: standard values).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (50.0, 400.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
}

BILINEAR = 2  # PIL.Image.Resampling.BILINEAR
BICUBIC = 3  # PIL.Image.Resampling.BICUBIC
_METHODS = {"bilinear": BILINEAR, "bicubic": BICUBIC}

Window = Union[None, str, tuple[float, float]]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where the original image lies in a preprocessed tensor.

    Original pixel ``(x, y)`` lands at ``(x * scale_x + pad_left, y * scale_y + pad_top)``.
    """

    original_width: int
    original_height: int
    resized_width: int
    resized_height: int
    scale_x: float
    scale_y: float
    pad_left: int
    pad_top: int
    output_width: int
    output_height: int

    def to_original(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Maps model-input coordinates back to original-image coordinates."""
        return (np.asarray(x) - self.pad_left) / self.scale_x, (np.asarray(y) - self.pad_top) / self.scale_y

    def to_model(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Maps original-image coordinates into the model input."""
        return np.asarray(x) * self.scale_x + self.pad_left, np.asarray(y) * self.scale_y + self.pad_top


def info(path: Union[str, os.PathLike, bytes]) -> tuple[int, int, int]:
    """(width, height, channels) from a PNG/JPEG/BMP/PGM/PPM header, without decoding."""
    return _C.image_info(os.fspath(path) if not isinstance(path, (bytes, bytearray, memoryview)) else path)


def _is_dicom(path: str) -> bool:
    if path.lower().endswith((".dcm", ".dicom")):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _first(value: Any) -> float:
    if isinstance(value, (str, bytes, int, float)):
        return float(value)
    return float(value[0])


def _window_bounds(window: Window, values: np.ndarray, slope: float, intercept: float,
                   dataset: Any = None) -> tuple[float, float]:
    """(lower, upper) in rescaled units for mg_image_window."""
    if window is None or window == "minmax":
        lo, hi = float(np.min(values)), float(np.max(values))
        a, b = lo * slope + intercept, hi * slope + intercept
        lower, upper = min(a, b), max(a, b)
        if not np.isfinite(lower) or not np.isfinite(upper):
            raise InvalidArgumentError("min-max window: the image contains NaN or infinite values")
        return lower, (upper if upper > lower else lower + 1.0)
    if isinstance(window, str):
        if window == "dicom":
            if dataset is None or "WindowCenter" not in dataset or "WindowWidth" not in dataset:
                raise InvalidArgumentError("window='dicom': the file has no WindowCenter/WindowWidth")
            # Multi-valued: the first window is the default (PS3.3 C.11.2.1.2).
            center, width = _first(dataset.WindowCenter), _first(dataset.WindowWidth)
        elif window in WINDOW_PRESETS:
            center, width = WINDOW_PRESETS[window]
        else:
            raise InvalidArgumentError(
                f"window={window!r}: expected one of {sorted(WINDOW_PRESETS)}, 'dicom', 'minmax' "
                "or (center, width)")
    else:
        try:
            center, width = (float(v) for v in window)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"window={window!r}: expected (center, width)") from None
    if not width >= 1.0:
        raise InvalidArgumentError(f"window width {width}: must be >= 1 (DICOM PS3.3 C.11.2.1.2)")
    # DICOM linear VOI function: x <= c - 0.5 - (w-1)/2 -> 0, x > c - 0.5 + (w-1)/2 -> 255.
    return center - 0.5 - (width - 1.0) / 2.0, center - 0.5 + (width - 1.0) / 2.0


_ARRAY_DTYPES = (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64)


def _check_pixels(pixels: np.ndarray) -> None:
    """Refuses what no image can be before any arithmetic touches it."""
    if pixels.dtype.type not in _ARRAY_DTYPES:
        raise DTypeError(f"image array of dtype {pixels.dtype}: expected one of "
                         + ", ".join(np.dtype(t).name for t in _ARRAY_DTYPES))


def _to_rgb(pixels: np.ndarray, window: Window, slope: float = 1.0, intercept: float = 0.0,
            dataset: Any = None, invert: bool = False) -> np.ndarray:
    _check_pixels(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    needs_window = window is not None or pixels.dtype not in (np.uint8, np.uint16) \
        or slope != 1.0 or intercept != 0.0
    if needs_window:
        if pixels.ndim == 3 and pixels.shape[2] in (2, 4):
            pixels = pixels[:, :, : pixels.shape[2] - 1]  # drop alpha before windowing
        lower, upper = _window_bounds(window, pixels, slope, intercept, dataset)
        pixels = _C.image_window(pixels, float(slope), float(intercept), lower, upper)
        if invert:
            pixels = np.subtract(255, pixels, dtype=np.uint8)
    return _C.image_to_rgb8(pixels)


def _load_dicom(path: str, window: Window, frame: int, raw: bool) -> np.ndarray:
    try:
        import pydicom
    except ImportError as e:  # pragma: no cover - pydicom is a dependency
        raise FormatError(f"{path}: reading DICOM needs pydicom ({e})") from None
    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except Exception as e:  # pydicom raises many types for bad files
        raise FormatError(f"{path}: unreadable DICOM ({type(e).__name__}: {e})") from None
    samples = int(getattr(dataset, "SamplesPerPixel", 1))
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    if frames > 1:
        if not 0 <= frame < frames:
            raise InvalidArgumentError(f"{path}: frame {frame} out of range (file has {frames})")
        pixels = pixels[frame]
    if raw:
        return pixels
    if samples != 1:
        return _to_rgb(np.ascontiguousarray(pixels), window)
    slope = float(getattr(dataset, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(dataset, "RescaleIntercept", 0.0) or 0.0)
    invert = str(getattr(dataset, "PhotometricInterpretation", "")) == "MONOCHROME1"
    return _to_rgb(pixels, window, slope, intercept, dataset, invert)


def _pil_to_array(image: Any) -> np.ndarray:
    mode = image.mode
    if mode in ("P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGBA" if "transparency" in image.info or mode == "PA" else "RGB")
    elif mode in ("I;16L", "I;16B", "I;16N"):
        image = image.convert("I;16")
    return np.asarray(image)


def load(src: Any, window: Window = None, *, raw: bool = False, frame: int = 0) -> np.ndarray:
    """Loads an image as uint8 RGB ``[H, W, 3]``.

    ``src``: a path (PNG/JPEG/BMP/PGM/PPM decoded by stb_image in C; DICOM via
    pydicom), file bytes, a PIL image, or a NumPy array (uint8, uint16, int16,
    int32, float32, float64; ``[H, W]`` or ``[H, W, C]``, C <= 4) which is read
    in place when aligned and native-endian.

    ``window``: ``None`` keeps 8-bit data and converts 16-bit as PIL does
    (see the module doc); other dtypes and DICOM get a min-max window.
    ``"lung"``, ``"mediastinum"``, ``"abdomen"``, ``"brain"``, ``"bone"``
    (CT presets, HU), ``"dicom"`` (the file's own WindowCenter/Width),
    ``"minmax"`` or ``(center, width)`` apply the DICOM linear VOI window to
    the rescaled values (RescaleSlope/Intercept for DICOM).

    ``raw=True`` returns the decoded samples unconverted (uint8/uint16
    ``[H, W, C]`` for files, the stored pixel array for DICOM).
    """
    if isinstance(src, np.ndarray):
        if raw:
            return src
        return _to_rgb(src, window)
    if isinstance(src, (bytes, bytearray, memoryview)):
        pixels = _C.image_load(src)
        return pixels if raw else _to_rgb(pixels, window)
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if _is_dicom(path):
            return _load_dicom(path, window, frame, raw)
        pixels = _C.image_load(path)
        return pixels if raw else _to_rgb(pixels, window)
    if hasattr(src, "mode") and hasattr(src, "size") and hasattr(src, "convert"):
        pixels = _pil_to_array(src)
        return pixels if raw else _to_rgb(pixels, window)
    if hasattr(src, "__array__"):
        return load(np.asarray(src), window, raw=raw)
    raise DTypeError(f"image source of type {type(src).__name__}: expected a path, bytes, a PIL image "
                     "or a NumPy array")


def resize(image: np.ndarray, size: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """PIL-identical ``Image.resize((w, h), BICUBIC|BILINEAR)`` of a uint8 or float32 array.

    uint8 matches PIL modes L/RGB (channels resampled independently; RGBA is
    not premultiplied); float32 matches PIL mode F.
    """
    if method not in _METHODS:
        raise InvalidArgumentError(f"method={method!r}: expected 'bicubic' or 'bilinear'")
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"size={size!r}: expected (width, height)") from None
    return _C.image_resize(image, width, height, _METHODS[method])


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centered ``(width, height)`` crop; top/left offsets floored (HF's rule)."""
    width, height = (int(v) for v in size)
    return _C.image_center_crop(image, height, width)


def pad(image: np.ndarray, size: tuple[int, int], value: Any = 0, centered: bool = True) -> np.ndarray:
    """Pads to ``(width, height)`` with a per-channel ``value``, centered (floored) or top-left."""
    width, height = (int(v) for v in size)
    channels = 1 if image.ndim == 2 else image.shape[2]
    values = [value] * channels if np.isscalar(value) else list(value)
    return _C.image_pad(image, height, width, values, bool(centered))


def normalize(image: np.ndarray, mean: Any, std: Any, divisor: float = 255.0) -> np.ndarray:
    """``(image / divisor - mean) / std`` as float32 ``[C, H, W]`` (torchvision order of operations)."""
    return _C.image_normalize(image, float(divisor), [float(v) for v in mean], [float(v) for v in std])


def _preprocess(src: Any, kind: str, size: int, window: Window) -> tuple[np.ndarray, Geometry]:
    if isinstance(src, np.ndarray) and src.dtype == np.uint8 and window is None:
        pixels = src  # the C pipeline converts gray/RGBA itself, without a copy here
    else:
        pixels = load(src, window)
    tensor, geometry = _C.image_preprocess(pixels, kind, int(size))
    return tensor, Geometry(**geometry)


def preprocess_qwen(src: Any, size: int = 448, window: Window = None) -> tuple[np.ndarray, Geometry]:
    """Qwen-VL/BiRD input: float32 ``[3, size, size]`` and its :class:`Geometry`."""
    return _preprocess(src, "qwen", size, window)


def preprocess_clip336(src: Any, size: int = 336, window: Window = None) -> tuple[np.ndarray, Geometry]:
    """MedPLIB CLIP ViT-L/14-336 input: float32 ``[3, size, size]`` and its :class:`Geometry`."""
    return _preprocess(src, "clip_pad", size, window)


def preprocess_sam(src: Any, size: int = 256, window: Window = None) -> tuple[np.ndarray, Geometry]:
    """MedPLIB SAM-Med2D input: float32 ``[3, size, size]`` and its :class:`Geometry`."""
    return _preprocess(src, "sam", size, window)


__all__ = [
    "WINDOW_PRESETS",
    "Geometry",
    "info",
    "load",
    "resize",
    "center_crop",
    "pad",
    "normalize",
    "preprocess_qwen",
    "preprocess_clip336",
    "preprocess_sam",
]
