"""Masks -> objects, boxes and COCO run-length encodings (C underneath).

Box conventions (one place, used everywhere in medground.data):

* ``pixel``: inclusive pixel bounds ``(x_min, y_min, x_max, y_max)``.
* ``xywh``: COCO ``(x, y, w, h)`` with ``w = x_max - x_min + 1`` (pycocotools ``toBbox``).
* ``normalized``: the box's edges over the image size, ``(x_min/W, y_min/H,
  (x_max+1)/W, (y_max+1)/H)`` in [0, 1].
* ``grid``: the 0..1000 grid of ``<box>(x1,y1),(x2,y2)</box>`` (Qwen-VL / Med-GRIT);
  the rounding rule is documented at ``mg_box_to_grid`` in ``csrc/data/mask.c``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence, Union

import numpy as np

from .. import _C

MaskLike = Union[np.ndarray, str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class MaskObject:
    """One labelled region (or connected component) of a mask."""

    label: int
    area: int
    box: tuple[int, int, int, int]  # inclusive pixel bounds x_min, y_min, x_max, y_max
    centroid: tuple[float, float]  # (x, y): mean column, mean row
    width: int  # image size the object lives in
    height: int

    @property
    def xywh(self) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = self.box
        return (x0, y0, x1 - x0 + 1, y1 - y0 + 1)

    @property
    def normalized(self) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 / self.width, y0 / self.height, (x1 + 1) / self.width, (y1 + 1) / self.height)

    @property
    def grid(self) -> tuple[int, int, int, int]:
        return box_to_grid(self.box, self.width, self.height)


def _objects(mask: MaskLike, binary: bool, connectivity: int, min_area: int):
    if connectivity not in (0, 4, 8):
        raise ValueError(f"connectivity must be 0, 4 or 8, got {connectivity!r}")
    if isinstance(mask, (str, os.PathLike)):
        (labels, areas, boxes, centroids), (width, height) = _C.data_mask_objects_file(
            os.fspath(mask), bool(binary), int(connectivity), int(min_area))
    else:
        array = _plane(np.asarray(mask), binary)
        (labels, areas, boxes, centroids) = _C.data_mask_objects(
            array, bool(binary), int(connectivity), int(min_area))
        height, width = array.shape[:2]
    return labels, areas, boxes, centroids, width, height


def _plane(array: np.ndarray, binary: bool) -> np.ndarray:
    """[H, W, C] -> [H, W] the way mask files are read (mg_mask_objects_file):
    gray (+alpha) uses channel 0; RGB(A) must be gray (R == G == B) unless
    ``binary``, where any non-zero colour is foreground. Alpha is ignored."""
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        return array
    if array.shape[2] <= 2:
        return array[..., 0]
    rgb = array[..., :3]
    if binary:
        return np.any(rgb != 0, axis=2)
    differs = np.any(rgb != rgb[..., :1], axis=2)
    if differs.any():
        from ..errors import UnsupportedError

        y, x = (int(v[0]) for v in np.nonzero(differs))
        raise UnsupportedError(f"mask: colour-coded pixel (x={x}, y={y}) = {tuple(int(v) for v in rgb[y, x])}; "
                               "convert it to a gray label image first")
    return rgb[..., 0]


def mask_objects(mask: MaskLike, *, binary: bool = True, connectivity: int = 0,
                 min_area: int = 0) -> list[MaskObject]:
    """Objects of a mask (array [H, W] of u8/u16/bool/int, or a mask image file).

    ``binary``: every non-zero pixel is foreground (label 1); otherwise each
    distinct value is an object. ``connectivity`` 4 or 8 splits labels into
    connected components (ordered by label, then by first pixel in raster
    order, as ``scipy.ndimage.label``).
    """
    labels, areas, boxes, centroids, width, height = _objects(mask, binary, connectivity,
                                                              min_area)
    return [
        MaskObject(int(labels[i]), int(areas[i]), tuple(int(v) for v in boxes[i]),
                   (float(centroids[i, 0]), float(centroids[i, 1])), int(width), int(height))
        for i in range(len(labels))
    ]


def mask_to_boxes(mask: MaskLike, *, format: str = "pixel", binary: bool = True,
                  connectivity: int = 0, min_area: int = 0) -> np.ndarray:
    """Boxes [N, 4] of the objects of a mask in ``format`` ('pixel', 'xywh',
    'normalized' or 'grid'; see the module docstring)."""
    labels, areas, boxes, centroids, width, height = _objects(mask, binary, connectivity,
                                                              min_area)
    boxes = boxes.astype(np.int64)
    if format == "pixel":
        return boxes
    if format == "xywh":
        out = boxes.copy()
        out[:, 2:] = boxes[:, 2:] - boxes[:, :2] + 1
        return out
    if format == "normalized":
        scale = np.array([width, height, width, height], dtype=np.float64)
        edges = boxes.astype(np.float64)
        edges[:, 2:] += 1
        return edges / scale
    if format == "grid":
        return np.array([box_to_grid(tuple(int(v) for v in b), width, height) for b in boxes],
                        dtype=np.int64).reshape(-1, 4)
    raise ValueError(f"format must be 'pixel', 'xywh', 'normalized' or 'grid', got {format!r}")


def box_to_grid(box: Sequence[int], width: int, height: int) -> tuple[int, int, int, int]:
    """Inclusive pixel box -> the 0..1000 ``<box>`` grid (floor top-left, ceil bottom-right edge)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return tuple(_C.data_box_to_grid((x0, y0, x1, y1), int(width), int(height)))


def grid_to_pixels(box: Sequence[int], width: int, height: int) -> tuple[float, float, float, float]:
    """0..1000 grid box -> pixel edges (x1, y1, x2, y2) as Qwen-VL maps them back (g/1000*size)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0 / 1000 * width, y0 / 1000 * height, x1 / 1000 * width, y1 / 1000 * height)


# ------------------------------------------------------------------ RLE

def _rle_parts(rle: dict[str, Any]) -> tuple[np.ndarray, int, int]:
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"RLE must be {{'size': [h, w], 'counts': ...}}, got {rle!r:.80}") from error
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if isinstance(counts, (bytes, bytearray)):
        counts = _C.data_rle_from_string(bytes(counts), height, width)
    return np.asarray(counts), height, width


def rle_encode(mask: np.ndarray, *, compressed: bool = True) -> dict[str, Any]:
    """COCO RLE of a 2-D mask (non-zero = foreground), as ``pycocotools.mask.encode``:
    ``{'size': [h, w], 'counts': bytes}``; ``compressed=False`` gives the counts list
    (the COCO JSON form for iscrowd annotations). A stack [H, W, N] gives a list of
    N RLEs, as pycocotools does."""
    array = np.asarray(mask)
    if array.ndim == 3:
        # pycocotools.mask.encode: [H, W, N] -> one RLE per mask, as a list
        return [rle_encode(array[:, :, i], compressed=compressed) for i in range(array.shape[2])]
    height, width, counts = _C.data_rle_encode(array)
    if compressed:
        return {"size": [int(height), int(width)],
                "counts": _C.data_rle_to_string(counts, height, width)}
    return {"size": [int(height), int(width)], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """uint8 [H, W] mask (0/1) of a COCO RLE (compressed string/bytes or counts list)."""
    counts, height, width = _rle_parts(rle)
    return _C.data_rle_decode(counts, height, width)


def rle_area(rle: dict[str, Any]) -> int:
    """Foreground pixels of a COCO RLE (pycocotools ``area``)."""
    counts, height, width = _rle_parts(rle)
    return int(_C.data_rle_stats(counts, height, width)[0])


def rle_to_bbox(rle: dict[str, Any]) -> tuple[float, float, float, float]:
    """COCO box (x, y, w, h) of a COCO RLE (pycocotools ``toBbox``)."""
    counts, height, width = _rle_parts(rle)
    return tuple(_C.data_rle_stats(counts, height, width)[1])


def load_mask(path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
    """A mask image file as a 2-D array (first channel; decoded in C)."""
    pixels = _C.image_load(os.fspath(path))
    return pixels[..., 0] if pixels.ndim == 3 else pixels


def dicom_seg_masks(path: Union[str, "os.PathLike[str]"]) -> dict[str, np.ndarray]:
    """Masks of a DICOM Segmentation object, by segment label: each value is a
    bool array [frames, rows, cols] of the frames that belong to the segment
    (per-frame ReferencedSegmentNumber). pydicom decodes the pixel data."""
    try:
        import pydicom
    except ImportError as error:  # the optional "dicom" extra
        raise ImportError("reading DICOM SEG needs pydicom: pip install 'medground[dicom]'") from error

    dataset = pydicom.dcmread(os.fspath(path))
    if getattr(dataset, "SOPClassUID", None) != "1.2.840.10008.5.1.4.1.1.66.4":
        raise ValueError(f"{path}: not a DICOM Segmentation Storage object "
                         f"(SOPClassUID {getattr(dataset, 'SOPClassUID', None)})")
    pixels = dataset.pixel_array
    if pixels.ndim == 2:
        pixels = pixels[None]
    labels = {int(item.SegmentNumber): str(getattr(item, "SegmentLabel", item.SegmentNumber))
              for item in dataset.SegmentSequence}
    frames: dict[str, list[np.ndarray]] = {}
    per_frame = getattr(dataset, "PerFrameFunctionalGroupsSequence", None)
    for index in range(pixels.shape[0]):
        if per_frame is not None:
            number = int(per_frame[index].SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        else:
            number = next(iter(labels))
        frames.setdefault(labels.get(number, str(number)), []).append(pixels[index] > 0)
    return {label: np.stack(items) for label, items in frames.items()}
