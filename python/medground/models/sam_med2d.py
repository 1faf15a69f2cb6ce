"""SAM-Med2D as a standalone promptable segmenter (the ``SammedPredictor`` workflow).

    >>> from medground import SamMed2D
    >>> sam = SamMed2D("sam-med2d_b.pth")          # or a .safetensors / .gguf, or a dict
    >>> sam.set_image(rgb)                          # uint8 [H, W, 3] (or gray [H, W])
    >>> masks, scores, low_res = sam.predict(box=[x1, y1, x2, y2])

Everything numeric runs in C (``medground._C.sam_*``). Prompts are given in the
original image's pixel coordinates and scaled per axis to the model's square input,
as SAM-Med2D's predictor does (it resizes the image straight to 256 x 256 with
nearest-neighbour sampling, no padding).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .. import _C
from ..errors import InvalidArgumentError, ShapeError

ArrayLike = Union[np.ndarray, Sequence[float], Sequence[Sequence[float]]]
_PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".pdparams")


def _weights_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Any name -> tensor mapping as float32 NumPy arrays (torch tensors, our
    checkpoint reader's tensors and NumPy arrays are all accepted)."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in state_dict.items():
        if hasattr(value, "to_float32"):  # medground.checkpoint Tensor (bf16-aware)
            array = value.to_float32()
        elif hasattr(value, "detach"):  # torch.Tensor, without importing torch here
            array = value.detach().float().cpu().numpy()
        else:
            array = np.asarray(value)
        if array.dtype.kind == "f" and array.dtype != np.float32:
            array = array.astype(np.float32)
        arrays[str(name)] = np.ascontiguousarray(array)
    return arrays


class SamMed2D:
    """SAM-Med2D ViT-B (256 px, adapters) with its prompt encoder and mask decoder.

    ``weights`` is a checkpoint path (``sam-med2d_b.pth`` — read with medground's
    restricted unpickler, ``{"model": state_dict}`` unwrapped — or .safetensors /
    .gguf / a folder) or a mapping name -> tensor. ``prefix`` selects the SAM part of
    a bigger checkpoint (``"model.visual_model."`` in MedPLIB).
    """

    def __init__(self, weights: Union[str, os.PathLike, Mapping[str, Any]], prefix: str = "",
                 decoder_heads: int = 8):
        if isinstance(weights, (str, os.PathLike)):
            path = os.fspath(weights)
            if path.lower().endswith(_PICKLE_SUFFIXES):
                from ..checkpoint.readers import read_pickle_checkpoint

                weights = _weights_dict(read_pickle_checkpoint(path).tensors)
            else:
                weights = path
        else:
            weights = _weights_dict(weights)
        self._handle = _C.sam_create(weights, prefix, decoder_heads)
        self.info: dict = _C.sam_info(self._handle)
        self.image_size: int = self.info["image_size"]
        self._embedding: Optional[np.ndarray] = None
        self._original_size: Optional[tuple[int, int]] = None

    # ------------------------------------------------------------------ image
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """SammedPredictor's input: normalised, nearest-resized to S x S, [3, S, S] f32."""
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise InvalidArgumentError(f"image must be uint8 (got {image.dtype}); convert/window it first")
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
            raise ShapeError(f"image must be [H, W] or [H, W, 1|3], got shape {image.shape}")
        return _C.sam_preprocess(self._handle, np.ascontiguousarray(image))

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encodes an image (uint8 [H, W, 3] RGB, or gray [H, W]) once for many prompts."""
        image = np.asarray(image)
        if image_format not in ("RGB", "BGR"):
            raise InvalidArgumentError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if image_format == "BGR" and image.ndim == 3:
            image = image[..., ::-1]
        pixels = self.preprocess(image)
        self._embedding = _C.sam_encode_image(self._handle, pixels)
        self._original_size = (int(image.shape[0]), int(image.shape[1]))

    def set_embedding(self, embedding: np.ndarray, original_size: tuple[int, int]) -> None:
        """Uses an image embedding computed elsewhere ([C, G, G])."""
        self._embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        self._original_size = (int(original_size[0]), int(original_size[1]))

    @property
    def image_embedding(self) -> np.ndarray:
        if self._embedding is None:
            raise InvalidArgumentError("no image: call set_image(...) first")
        return self._embedding

    def dense_pe(self) -> np.ndarray:
        return _C.sam_dense_pe(self._handle)

    # ---------------------------------------------------------------- prompts
    def _scale(self) -> np.ndarray:
        height, width = self._original_size
        return np.array([self.image_size / width, self.image_size / height])

    def _check_inside(self, xy: np.ndarray, what: str) -> None:
        height, width = self._original_size
        for index, (x, y) in enumerate(xy):
            if not (np.isfinite(x) and np.isfinite(y)):
                raise InvalidArgumentError(f"{what} {index} is not finite: ({x}, {y})")
            if x < 0 or y < 0 or x > width or y > height:
                raise InvalidArgumentError(
                    f"{what} {index} ({x:g}, {y:g}) lies outside the {width}x{height} image")

    def encode_prompt(self, points: Optional[ArrayLike] = None, labels: Optional[ArrayLike] = None,
                      box: Optional[ArrayLike] = None, mask_input: Optional[np.ndarray] = None):
        """(sparse [n, C], dense [C, G, G]) for prompts in original-image pixels."""
        self.image_embedding  # raises when no image is set
        coords = None
        label_array = None
        if points is not None or labels is not None:
            if points is None or labels is None:
                raise InvalidArgumentError("points and labels must be given together")
            coords = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            label_array = np.asarray(labels).reshape(-1)
            if label_array.shape[0] != coords.shape[0]:
                raise ShapeError(f"{label_array.shape[0]} labels for {coords.shape[0]} points")
            if coords.shape[0] == 0:
                raise InvalidArgumentError("points is empty")
            self._check_inside(coords, "point")
            coords = (coords * self._scale()).astype(np.float32)
            label_array = label_array.astype(np.int32)
        box_array = None
        if box is not None:
            corners = np.asarray(box, dtype=np.float64).reshape(-1)
            if corners.shape[0] != 4:
                raise ShapeError(f"box must be (x1, y1, x2, y2), got {corners.shape[0]} numbers")
            self._check_inside(corners.reshape(2, 2), "box corner")
            if corners[2] <= corners[0] or corners[3] <= corners[1]:
                raise InvalidArgumentError(f"box {corners.tolist()} is empty (needs x2 > x1 and y2 > y1)")
            box_array = (corners.reshape(2, 2) * self._scale()).reshape(4).astype(np.float32)
        mask = None
        if mask_input is not None:
            mask = np.asarray(mask_input, dtype=np.float32)
            side = self.info["low_res_size"]
            if mask.shape not in ((side, side), (1, side, side)):
                raise ShapeError(f"mask_input must be [{side}, {side}] low-res logits, got {mask.shape}")
        return _C.sam_encode_prompt(self._handle, coords, label_array, box_array, mask)

    # --------------------------------------------------------------- predict
    def predict(self, points: Optional[ArrayLike] = None, labels: Optional[ArrayLike] = None,
                box: Optional[ArrayLike] = None, mask_input: Optional[np.ndarray] = None,
                multimask: bool = False, return_logits: bool = False):
        """Masks for one prompt set on the current image.

        Returns ``(masks, scores, low_res_logits)``: masks [n, H, W] (bool, logit > 0 —
        SAM-Med2D's sigmoid > 0.5 — or float logits with ``return_logits``), scores [n]
        the predicted IoU, low-res logits [n, 4G, 4G]; n = 3 with ``multimask`` (the
        candidates in model order; SammedPredictor keeps the best-scoring one), else 1.
        """
        sparse, dense = self.encode_prompt(points, labels, box, mask_input)
        low_res, scores = self.decode(sparse, dense, multimask)
        logits = self.upscale(low_res)
        masks = logits if return_logits else logits > 0.0
        return masks, scores, low_res

    def decode(self, sparse: Optional[np.ndarray], dense: Optional[np.ndarray] = None,
               multimask: bool = False):
        """Mask decoder on the current image with prompt embeddings given directly
        (e.g. MedPLIB's projected <SEG> state as one sparse token). dense defaults
        to the no-mask embedding. Returns (low_res [n, 4G, 4G], iou [n])."""
        if dense is None:
            _, dense = _C.sam_encode_prompt(self._handle, None, None, None, None)
        if sparse is not None:
            sparse = np.asarray(sparse, dtype=np.float32).reshape(-1, self.info["prompt_dim"])
        return _C.sam_decode(self._handle, self.image_embedding, sparse, dense, bool(multimask))

    def upscale(self, low_res: np.ndarray) -> np.ndarray:
        """SammedPredictor.postprocess_masks: bilinear to S x S, then to the image size."""
        if self._original_size is None:
            raise InvalidArgumentError("no image: call set_image(...) first")
        height, width = self._original_size
        return _C.sam_upscale_masks(self._handle, np.asarray(low_res, dtype=np.float32), height, width)
