"""MedPLIB (LLaVA-1.5 + MoE LLaMA + SAM-Med2D): VQA, region VQA and pixel grounding.

    >>> from medground.models.medplib import MedPLIB
    >>> m = MedPLIB("MedPLIB-7b-2e/")                    # HF folder: safetensors + config.json + tokenizer.model
    >>> m.chat("ct.png", "What modality is this?")
    >>> m.refer("ct.png", Region(box=(40, 60, 120, 150)), "What is in <region></region>?")
    >>> mask = m.segment("ct.png", "liver")              # Mask(array HxW uint8, score, found, text)
    >>> m.expert_load()                                   # tokens per layer and expert (Figure 5)

Everything numeric runs in C (``medground._C.medplib_*``): CLIP ViT-L/14-336, the projector,
the region sampler, the LLaMA decoder with its MoE FFN, the <SEG> projector, SAM-Med2D and
the mask post-processing. This module builds the prompt (docs/architecture.md §2.10-2.11),
turns region inputs into the 24x24 patch-grid mask and wraps the results.

Conventions:

- Prompt (``conv_templates["llava_v1"]``, the training/demo wording):
  ``{system} USER: <im_start><image><im_end>\\n{question} ASSISTANT:``; ``system="eval"``
  selects the wording of MedPLIB's ``vqa_infer.py`` ("user" instead of "human").
  The text is split on ``<image>`` (chunk 0 keeps its BOS, chunk 1 has none) and id -200
  inserted; id -300 is inserted between every adjacent ``<region>``, ``</region>`` pair.
- Generation: greedy, stop at ``</s>``; the answer is the decode of the new ids with
  ``skip_special_tokens=True`` (added tokens such as ``<SEG>`` kept), stripped.
- Regions: a free-shape mask (uint8/bool ``[H, W]``, >= 1 inside) goes through MedPLIB's
  dataset preparation (resize-longest 336, center pad, nearest to 24x24, largest
  component); a box ``(x1, y1, x2, y2)`` in image pixels becomes the mask of the pixels
  whose centres lie inside it; points ``[(x, y), ...]`` mark the grid cells they fall in
  (a one-pixel mask would vanish in the bilinear resize).
- Masks: the <SEG> hidden state -> SAM-Med2D -> 64x64 logits -> SAM-Med2D's correct crop
  (``reference_crop=True``: MedPLIB's ``postprocess_masks``, which mis-crops non-square
  images, §2.12) -> ``sigmoid > 0.1``. No <SEG> in the answer: an empty mask with
  ``found=False`` (MedPLIB would fall back to another hidden state; ``fallback=True``
  reproduces that: the second-to-last position of the sequence).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from .. import _C
from ..errors import InvalidArgumentError, NotFoundError, ShapeError

IMAGE_TOKEN = -200
REGION_TOKEN = -300

SYSTEM_PROMPTS = {
    "train": ("A chat between a curious human and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the human's questions."),
    "eval": ("A chat between a curious user and an artificial intelligence assistant. "
             "The assistant gives helpful, detailed, and polite answers to the user's questions."),
}

TEMPLATES = {
    "segment": "Please segment the {phrase} in this image.",
    "refer": "What is shown in <region></region>?",
    "caption": "Please describe <region></region> in detail.",
}


@dataclasses.dataclass
class Region:
    """A region prompt: exactly one of a box, points or a free-shape mask, in image pixels."""

    box: Optional[Sequence[float]] = None
    points: Optional[Sequence[Sequence[float]]] = None
    mask: Optional[np.ndarray] = None


@dataclasses.dataclass
class Mask:
    """segment() result: ``array`` uint8 [H, W] (1 inside), ``score`` the IoU head's
    prediction, ``found`` whether the answer contained <SEG>, ``text`` the answer."""

    array: np.ndarray
    score: float
    found: bool
    text: str
    probs: Optional[np.ndarray] = None
    image: Any = dataclasses.field(default=None, repr=False, compare=False)  # what it was segmented from

    def overlay(self):
        """An :class:`~medground.data.Overlay` of the image with the mask tinted."""
        from ..results import mask_overlay

        if self.image is None:
            raise InvalidArgumentError("this mask carries no image to draw on")
        return mask_overlay(self.array, self.image)

    def to_png(self, path=None) -> bytes:
        return self.overlay().to_png(path)

    def _repr_png_(self) -> Optional[bytes]:
        return None if self.image is None else self.to_png()

    def show(self) -> None:
        """Opens the drawing with PIL's viewer (outside notebooks)."""
        self.overlay().image.show()

    def to_dict(self) -> dict:
        """JSON-able: the mask as a COCO RLE under ``pred_mask`` (what medground.evaluate's
        seg task reads), plus score, found and the answer text."""
        from ..data import rle_encode

        rle = rle_encode(np.ascontiguousarray(self.array))
        if isinstance(rle["counts"], bytes):  # the COCO JSON form is a str
            rle["counts"] = rle["counts"].decode("ascii")
        return {"pred_mask": rle, "score": self.score, "found": self.found, "text": self.text}


@dataclasses.dataclass
class _Image:
    embeddings: np.ndarray
    clip_features: np.ndarray
    geometry: Any
    source: Any
    sam: Optional[tuple] = None  # (SAM-Med2D embedding, its geometry), computed once


def _as_region(region: Any) -> Region:
    if isinstance(region, Region):
        return region
    if isinstance(region, dict):
        return Region(**region)
    if isinstance(region, np.ndarray) and region.ndim == 2:
        return Region(mask=region)
    if isinstance(region, (list, tuple)) and len(region) == 4 and all(np.isscalar(v) for v in region):
        return Region(box=region)
    raise InvalidArgumentError("region must be a Region, a dict, a 2-D mask array or a box (x1, y1, x2, y2)")


class MedPLIB:
    """A MedPLIB checkpoint (the release Huangxs/MedPLIB-7b-2e, or a stage/dense one).

    ``path``: a folder with ``*.safetensors`` (+ index) and ``config.json``, or a GGUF.
    ``tokenizer``: a :class:`medground.Tokenizer` (default: ``tokenizer.model`` in the
    folder, with MedPLIB's added tokens). ``dtype`` re-encodes every matrix ("f32", "bf16",
    "q8_0", ...); ``capacity_factor`` overrides ``config.moe.eval_capacity_factor``;
    ``lora_scale`` (alpha / r) is needed for unmerged LoRA experts without lora_alpha/lora_r
    in config.json; ``load_sam=False`` skips SAM-Med2D (no segment()).
    """

    def __init__(self, path: Union[str, os.PathLike], tokenizer=None, *, dtype: Optional[str] = None,
                 strict: bool = False, load_sam: bool = True, capacity_factor: float = 0.0,
                 lora_scale: float = 0.0, system: str = "train", max_region_points: int = 512):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise NotFoundError(f"{path}: no such file or folder")
        if system not in SYSTEM_PROMPTS:
            raise InvalidArgumentError(f"system={system!r}: expected one of {sorted(SYSTEM_PROMPTS)}")
        self._handle = _C.medplib_load(path, dtype, bool(strict), bool(load_sam), float(capacity_factor),
                                       float(lora_scale))
        self.info: dict = _C.medplib_info(self._handle)
        if tokenizer is None:
            from ..tokenizer import Tokenizer

            folder = pathlib.Path(path) if os.path.isdir(path) else pathlib.Path(path).parent
            candidate = folder / "tokenizer.model"
            if path.lower().endswith(".gguf"):  # `medground convert` embeds tokenizer.model
                tokenizer = Tokenizer.from_pretrained(path, medplib=True)
            elif candidate.exists():
                tokenizer = Tokenizer.from_pretrained(candidate, medplib=True)
            else:
                raise NotFoundError(f"{folder}: no tokenizer.model; pass tokenizer=medground.Tokenizer(...)")
        self.tokenizer = tokenizer
        if len(tokenizer) != self.info["vocab_size"]:
            raise InvalidArgumentError(
                f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {self.info['vocab_size']}")
        self.system = SYSTEM_PROMPTS[system]
        self.max_region_points = int(max_region_points)
        self.seg_id = tokenizer.token_to_id("<SEG>")
        self.region_ids = (tokenizer.token_to_id("<region>"), tokenizer.token_to_id("</region>"))
        self.eos_id = tokenizer.eos_id

    # ------------------------------------------------------------------ prompt
    def prompt_text(self, question: str) -> str:
        question = question.replace("<image>", "").strip()
        return f"{self.system} USER: <im_start><image><im_end>\n{question} ASSISTANT:"

    def prompt_ids(self, question: str) -> list[int]:
        """Token ids with -200 for the image and -300 inside each <region></region>."""
        text = self.prompt_text(question)
        head, tail = text.split("<image>")
        ids = self.tokenizer.encode(head) + [IMAGE_TOKEN] + self.tokenizer.encode(tail, add_bos=False)
        out: list[int] = []
        for i, t in enumerate(ids):
            out.append(t)
            if t == self.region_ids[0] and i + 1 < len(ids) and ids[i + 1] == self.region_ids[1]:
                out.append(REGION_TOKEN)
        return out

    # ------------------------------------------------------------------- image
    def encode_image(self, image: Any) -> _Image:
        """CLIP-336 preprocessing (resize-longest, center pad (122, 116, 104)) and encoding.
        The result can be passed as ``image`` to chat / refer / segment to reuse the work
        (segment also keeps the SAM-Med2D embedding there)."""
        from ..image import preprocess_clip336

        if isinstance(image, _Image):
            return image
        pixels, geometry = preprocess_clip336(image, self.info["clip_image_size"])
        embeddings, clip = _C.medplib_encode_image(self._handle, pixels)
        return _Image(embeddings, clip, geometry, image)

    def region_grid(self, region: Any, geometry) -> np.ndarray:
        """The 24x24 patch-grid mask of a region (see the module doc)."""
        region = _as_region(region)
        given = [v is not None for v in (region.box, region.points, region.mask)]
        if sum(given) != 1:
            raise InvalidArgumentError("a region needs exactly one of box=, points= or mask= (got "
                                       f"{sum(given)}); points without a box are given as points=[(x, y), ...]")
        W, H = geometry.original_width, geometry.original_height
        size, patch = self.info["clip_image_size"], self.info["clip_patch_size"]
        if region.mask is not None:
            mask = np.asarray(region.mask)
            if mask.ndim != 2:
                raise ShapeError(f"region mask must be [H, W], got shape {mask.shape}")
            if mask.shape != (H, W):
                raise ShapeError(f"region mask is {mask.shape[1]}x{mask.shape[0]} but the image is {W}x{H}")
            if mask.dtype == bool:
                mask = mask.astype(np.uint8)
            if mask.dtype != np.uint8:
                raise InvalidArgumentError(f"region mask must be uint8 or bool, got {mask.dtype}")
            return _C.medplib_region_grid_mask(np.ascontiguousarray(mask), size, patch, True)
        if region.box is not None:
            box = np.asarray(region.box, dtype=np.float64).reshape(-1)
            if box.size != 4 or not np.all(np.isfinite(box)):
                raise InvalidArgumentError(f"box must be 4 finite numbers (x1, y1, x2, y2), got {region.box!r}")
            x1, y1, x2, y2 = box
            if x2 <= x1 or y2 <= y1:
                raise InvalidArgumentError(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is empty (needs x2 > x1, y2 > y1)")
            if x1 < 0 or y1 < 0 or x2 > W or y2 > H:
                raise InvalidArgumentError(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {W}x{H} image")
            xs, ys = np.arange(W) + 0.5, np.arange(H) + 0.5
            mask = ((ys[:, None] >= y1) & (ys[:, None] <= y2) & (xs[None] >= x1) & (xs[None] <= x2)).astype(np.uint8)
            if not mask.any():
                raise InvalidArgumentError(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) contains no pixel centre")
            return _C.medplib_region_grid_mask(mask, size, patch, False)
        points = np.asarray(region.points, dtype=np.float64)
        if points.size == 0:
            raise InvalidArgumentError("region points= is empty: give at least one (x, y)")
        points = points.reshape(-1, 2) if points.ndim == 1 and points.size == 2 else points
        if points.ndim != 2 or points.shape[1] != 2:
            raise ShapeError(f"region points must be [(x, y), ...], got shape {points.shape}")
        g = size // patch
        grid = np.zeros((g, g), np.uint8)
        for i, (x, y) in enumerate(points):
            if not (np.isfinite(x) and np.isfinite(y)):
                raise InvalidArgumentError(f"region point {i} is not finite: ({x}, {y})")
            if x < 0 or y < 0 or x > W or y > H:
                raise InvalidArgumentError(f"region point {i} ({x:g}, {y:g}) lies outside the {W}x{H} image")
            px = x * geometry.scale_x + geometry.pad_left
            py = y * geometry.scale_y + geometry.pad_top
            grid[min(int(py // patch), g - 1), min(int(px // patch), g - 1)] = 1
        return grid

    def region_embedding(self, image: Any, region: Any) -> np.ndarray:
        state = self.encode_image(image)
        grid = self.region_grid(region, state.geometry)
        row, _ = _C.medplib_region_feature(self._handle, state.clip_features, grid, self.max_region_points)
        return row

    # -------------------------------------------------------------- generation
    def _generate(self, state: _Image, ids: list[int], regions: Optional[np.ndarray], max_new_tokens: int,
                  stream: Optional[Callable[[str], Any]]):
        callback = None
        if stream is not None:
            decoder = self.tokenizer.stream(skip_special_tokens=True)

            def callback(token: int):
                piece = decoder.push(token)
                if piece:
                    stream(piece)
        new, seg, seg_index = _C.medplib_generate(
            self._handle, np.asarray(ids, np.int32), state.embeddings, regions, int(max_new_tokens),
            np.asarray([self.eos_id], np.int32), int(self.seg_id), callback=callback)
        text_ids = [t for t in new if t != self.eos_id]
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True).strip()
        return text, new, seg, seg_index

    def chat(self, image: Any, text: str, *, max_new_tokens: int = 512,
             stream: Optional[Callable[[str], Any]] = None, progress: bool = True) -> str:
        """VQA: the answer to ``text`` about ``image`` (path, array, PIL image).
        A list of images (one question, or one per image) gives a list of answers."""
        from ..results import is_batch, run_batch

        if is_batch(image):
            return run_batch(self.chat, image, text, "chat", progress, max_new_tokens=max_new_tokens)
        if "<region>" in text:
            raise InvalidArgumentError("chat(): the question has <region>; use refer(image, region, question)")
        return self._generate(self.encode_image(image), self.prompt_ids(text), None, max_new_tokens, stream)[0]

    def refer(self, image: Any, region: Any, question: Optional[str] = None, *, task: str = "refer",
              max_new_tokens: int = 512, stream: Optional[Callable[[str], Any]] = None) -> str:
        """Region VQA: ``question`` (default :data:`TEMPLATES` [task], task "refer" or
        "caption") about ``region`` (a :class:`Region`, a box, or a mask). The question must
        hold one ``<region></region>`` (appended when missing)."""
        if not self.info["has_region_adapter"]:
            raise NotFoundError("this checkpoint has no region_fea_adapter: region prompts are unavailable")
        if task not in ("refer", "caption"):
            raise InvalidArgumentError(f"task={task!r}: expected 'refer' or 'caption'")
        question = TEMPLATES[task] if question is None else question
        if "<region></region>" not in question:
            question = question.rstrip() + " <region></region>"
        if question.count("<region></region>") != 1:
            raise InvalidArgumentError("refer(): the question must contain exactly one <region></region>")
        state = self.encode_image(image)
        row = self.region_embedding(state, region)
        ids = self.prompt_ids(question)
        if REGION_TOKEN not in ids:
            raise InvalidArgumentError("refer(): <region></region> did not tokenize to the region tokens")
        return self._generate(state, ids, row[None], max_new_tokens, stream)[0]

    def segment(self, image: Any, phrase: str, *, template: Optional[str] = None, max_new_tokens: int = 512,
                reference_crop: bool = False, threshold: float = 0.1, fallback: bool = False,
                progress: bool = True) -> Mask:
        """Pixel grounding: Mask(array HxW uint8, score, found, text) for ``phrase``; it
        draws itself over the image in notebooks. A list of images (one phrase, or one
        per image) gives a list of masks, with a progress bar.

        ``phrase`` is wrapped in ``template`` (default :data:`TEMPLATES` ["segment"]); a
        whole question (several words ending in '.', '?' or '!', e.g. a MeCoVQA-G record's)
        is used as it is unless a template is given."""
        from ..results import is_batch, run_batch

        if is_batch(image):
            return run_batch(self.segment, image, phrase, "segment", progress, template=template,
                             max_new_tokens=max_new_tokens, reference_crop=reference_crop,
                             threshold=threshold, fallback=fallback)
        if self.info["sam_image_size"] == 0:
            raise NotFoundError("no SAM-Med2D model was loaded (load_sam=False or no model.visual_model.*)")
        if self.info["seg_dim"] == 0:
            raise NotFoundError("this checkpoint has no text_hidden_fcs: segmentation is unavailable")
        if not isinstance(phrase, str) or not phrase.strip():
            raise InvalidArgumentError("segment(): phrase must be a non-empty string")
        sentence = phrase.rstrip().endswith((".", "?", "!")) and len(phrase.split()) > 2
        question = phrase if template is None and sentence else (template or TEMPLATES["segment"]).format(phrase=phrase)
        state = self.encode_image(image)
        ids = self.prompt_ids(question)
        text, new, seg, seg_index = self._generate(state, ids, None, max_new_tokens, None)
        geometry = state.geometry
        H, W = geometry.original_height, geometry.original_width
        if seg is None and not fallback:
            return Mask(np.zeros((H, W), np.uint8), 0.0, False, text, image=state.source)
        if seg is None:
            # MedPLIB: no <SEG> -> the second-to-last hidden position of prompt + answer.
            seg = self._hidden_at(state, ids, new, -2)
        return self._mask_from_hidden(state, seg, text, seg is not None and seg_index >= 0, reference_crop,
                                      threshold)

    def _hidden_at(self, state: _Image, ids: list[int], new: list[int], index: int) -> np.ndarray:
        seq = list(ids) + list(new[:-1])
        cache = _C.medplib_cache_new(self._handle, len(seq) + self.info["image_tokens"])
        _, hidden = _C.medplib_forward(self._handle, cache, np.asarray(seq, np.int32), state.embeddings)
        return hidden[index]

    def mask_from_seg_hidden(self, image: Any, seg_hidden: np.ndarray, *, reference_crop: bool = False,
                             threshold: float = 0.1) -> Mask:
        """The mask for a given <SEG> hidden state (text_hidden_fcs -> SAM-Med2D)."""
        return self._mask_from_hidden(self.encode_image(image), np.asarray(seg_hidden, np.float32), "", True,
                                      reference_crop, threshold)

    def _mask_from_hidden(self, state: _Image, seg: np.ndarray, text: str, found: bool, reference_crop: bool,
                          threshold: float) -> Mask:
        from ..image import preprocess_sam

        if state.sam is None:
            sam_pixels, sam_geometry = preprocess_sam(state.source, self.info["sam_image_size"])
            state.sam = (_C.medplib_sam_encode(self._handle, sam_pixels), sam_geometry)
        embedding, sam_geometry = state.sam
        prompt = _C.medplib_seg_prompt(self._handle, np.ascontiguousarray(seg, np.float32))
        low_res, score = _C.medplib_decode_mask(self._handle, embedding, prompt)
        H, W = sam_geometry.original_height, sam_geometry.original_width
        mask, probs = _C.medplib_postprocess(low_res[0], self.info["sam_image_size"], sam_geometry.resized_height,
                                             sam_geometry.resized_width, H, W, bool(reference_crop), float(threshold))
        return Mask(mask, float(score), found, text, probs, image=state.source)

    # -------------------------------------------------------------------- MoE
    def expert_load(self) -> np.ndarray:
        """Tokens routed per layer and expert since load / reset: int64 [n_layers, n_experts]
        (expert 0 = grounding, 1 = VQA in the release)."""
        return _C.medplib_moe_load(self._handle)[0]

    def dropped_tokens(self) -> np.ndarray:
        """Tokens dropped for capacity per layer (0 at MedPLIB's eval capacity factor)."""
        return _C.medplib_moe_load(self._handle)[1]

    def reset_expert_load(self) -> None:
        _C.medplib_moe_reset(self._handle)


__all__ = ["MedPLIB", "Mask", "Region", "TEMPLATES", "SYSTEM_PROMPTS", "IMAGE_TOKEN", "REGION_TOKEN"]
