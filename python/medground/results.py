"""Results that draw themselves: a list of boxes or a mask together with the
image they belong to. In Jupyter they display as the image with the answer
drawn over it (``_repr_png_``); ``.show()`` opens it elsewhere, ``.to_png()``
gives the PNG bytes (or writes a file)."""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Union


def _rgb(source: Any):
    from .image import load

    return load(source)


class Boxes(list):
    """``model.ground(...)``'s answer: a list of :class:`~medground.Box` that
    also remembers its image, so it can be drawn."""

    def __init__(self, boxes: Iterable[Any] = (), image: Any = None):
        super().__init__(boxes)
        self.image = image

    def to_dicts(self) -> list[dict]:
        return [box.to_dict() for box in self]

    def overlay(self):
        from .data.draw import Overlay

        if self.image is None:
            raise ValueError("these boxes carry no image to draw on")
        overlay = Overlay(_rgb(self.image))
        for box in self:
            overlay.add_box((box.x1, box.y1, box.x2, box.y2), box.label or "", grid=False)
        return overlay

    def to_png(self, path: Optional[Union[str, os.PathLike]] = None) -> bytes:
        return self.overlay().to_png(path)

    def _repr_png_(self) -> Optional[bytes]:
        return None if self.image is None else self.to_png()

    def show(self) -> None:
        """Opens the drawing with PIL's viewer (outside notebooks)."""
        self.overlay().image.show()


def mask_overlay(array: Any, image: Any, label: str = ""):
    """An :class:`~medground.data.Overlay` of ``image`` with ``array`` (H x W, nonzero inside) tinted."""
    from .data.draw import Overlay

    overlay = Overlay(_rgb(image))
    overlay.add_mask(array)
    return overlay


__all__ = ["Boxes", "mask_overlay"]


def is_batch(images: Any) -> bool:
    """A list/tuple of images (paths, arrays, PIL images) asks for the batch form."""
    return isinstance(images, (list, tuple))


def run_batch(method: Any, images: Any, arguments: Any, what: str, progress: bool = True,
              per_image_arguments: bool = False, **options: Any) -> list:
    """``[method(image, argument, **options)]`` over ``images`` with a progress bar.
    ``arguments`` is one value for every image, or (``per_image_arguments``, or a
    list/tuple as long as ``images`` of strings) one per image."""
    from tqdm.auto import tqdm

    from .errors import InvalidArgumentError

    images = list(images)
    many = per_image_arguments or (isinstance(arguments, (list, tuple)) and
                                   all(isinstance(a, str) for a in arguments))
    if many:
        arguments = list(arguments)
        if len(arguments) != len(images):
            raise InvalidArgumentError(f"{what}: {len(images)} images but {len(arguments)} prompts")
    else:
        arguments = [arguments] * len(images)
    results = []
    for image, argument in tqdm(list(zip(images, arguments)), desc=what, unit="image", disable=not progress):
        results.append(method(image, argument, **options))
    return results


__all__ += ["is_batch", "run_batch"]
