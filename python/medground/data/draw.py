"""Pictures of records: boxes and masks drawn over the image (PIL).

:class:`Overlay` renders to PNG and shows itself in notebooks
(``_repr_png_``). Boxes may be given on the 0..1000 grid (as in records) or
in pixels; grid boxes map back to pixels as Qwen-VL does (g / 1000 * size).
"""

from __future__ import annotations

import io
import math
import os
import re
from typing import Any, Optional, Sequence, Union

import numpy as np

from .. import _C
from .masks import grid_to_pixels, load_mask

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]

_BOX = re.compile(r"(?:<ref>(.*?)</ref>)?((?:<box>\(\s*-?\d+\s*,\s*-?\d+\s*\)\s*,\s*\(\s*-?\d+\s*,\s*-?\d+\s*\)</box>)+)")
_COORDS = re.compile(r"<box>\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)\s*,\s*\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)</box>")
_MASK = re.compile(r"<(?:mask|region)>(.*?)</(?:mask|region)>")


class Overlay:
    """An image with boxes and masks drawn on it."""

    def __init__(self, image: Any):
        from PIL import Image

        if isinstance(image, (str, os.PathLike)):
            pixels = _C.image_load(os.fspath(image))
        else:
            pixels = np.asarray(image)
        if pixels.dtype != np.uint8:
            scale = float(pixels.max()) or 1.0
            pixels = (pixels.astype(np.float64) * (255.0 / scale)).astype(np.uint8)
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[..., 0]
        if pixels.ndim == 3 and pixels.shape[2] == 2:
            pixels = pixels[..., 0]
        self.image = Image.fromarray(pixels).convert("RGB")
        self._count = 0

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def _color(self, color: Optional[tuple[int, int, int]]) -> tuple[int, int, int]:
        if color is None:
            color = PALETTE[self._count % len(PALETTE)]
            self._count += 1
        return color

    def add_mask(self, mask: Any, color: Optional[tuple[int, int, int]] = None,
                 alpha: float = 0.45) -> "Overlay":
        from PIL import Image

        array = load_mask(mask) if isinstance(mask, (str, os.PathLike)) else np.asarray(mask)
        if array.ndim == 3:
            array = array[..., 0]
        if array.shape[::-1] != self.image.size:
            raise ValueError(f"mask is {array.shape[1]}x{array.shape[0]} but the image is "
                             f"{self.image.size[0]}x{self.image.size[1]}")
        color = self._color(color)
        layer = Image.new("RGB", self.image.size, color)
        alpha_mask = Image.fromarray(((array != 0) * int(255 * alpha)).astype(np.uint8))
        self.image.paste(layer, (0, 0), alpha_mask)
        return self

    def add_box(self, box: Sequence[float], label: str = "", *, grid: bool = True,
                color: Optional[tuple[int, int, int]] = None, width: int = 2) -> "Overlay":
        from PIL import ImageDraw

        if grid:
            x0, y0, x1, y1 = grid_to_pixels(box, *self.image.size)
        else:
            x0, y0, x1, y1 = (float(v) for v in box)
        # edges -> the smallest pixel rectangle that holds them: first pixel
        # floor(x0), last pixel ceil(x1) - 1 (inclusive), clipped to the image
        w, h = self.image.size
        left, top = min(max(math.floor(x0), 0), w - 1), min(max(math.floor(y0), 0), h - 1)
        right = min(max(math.ceil(x1) - 1, left), w - 1)
        bottom = min(max(math.ceil(y1) - 1, top), h - 1)
        color = self._color(color)
        draw = ImageDraw.Draw(self.image)
        draw.rectangle([left, top, right, bottom], outline=color, width=width)
        if label:
            draw.text((left + 2, max(0, top - 12)), label, fill=color)
        return self

    def add_text_boxes(self, text: str) -> "Overlay":
        """Draws every ``<ref>…</ref><box>…</box>`` span (and bare ``<box>``) of a record text."""
        for match in _BOX.finditer(text):
            label = match.group(1) or ""
            color = self._color(None)
            for coords in _COORDS.finditer(match.group(2)):
                self.add_box([int(v) for v in coords.groups()], label, color=color)
        return self

    def to_png(self, path: Optional[Union[str, os.PathLike]] = None) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        data = buffer.getvalue()
        if path is not None:
            with open(path, "wb") as handle:
                handle.write(data)
        return data

    def _repr_png_(self) -> bytes:
        return self.to_png()


def draw_record(record: dict[str, Any], images: Union[str, os.PathLike],
                masks: Optional[Union[str, os.PathLike]] = None) -> Overlay:
    """Overlay of a record's image with its boxes and ``<mask>``/``<region>`` masks."""
    name = record.get("image") or f"{record.get('id', '')}.png"
    overlay = Overlay(os.path.join(images, name))
    texts = []
    for turn in record.get("conversations", []):
        if isinstance(turn, list):
            texts.extend(t for t in turn if isinstance(t, str))
        elif isinstance(turn, dict) and isinstance(turn.get("value"), str):
            texts.append(turn["value"])
    for text in texts:  # masks first so that boxes stay visible on top
        for match in _MASK.finditer(text):
            for root in ([masks] if masks else []) + [images]:
                path = os.path.join(root, match.group(1))
                if os.path.exists(path):
                    overlay.add_mask(path)
                    break
    for text in texts:
        overlay.add_text_boxes(text)
    return overlay
