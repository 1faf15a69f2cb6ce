"""BiRD (Qwen-VL-Chat architecture): ground phrases to boxes, refer to boxes, chat about an image.

    >>> from medground.models.bird import BiRD
    >>> bird = BiRD("Qwen-VL-Chat/")              # HF folder (.bin or safetensors), GGUF, PaddleMIX folder
    >>> bird.ground("ct.png", "liver")            # -> [Box(x1, y1, x2, y2, label='liver')] in image pixels
    >>> bird.refer("ct.png", (10, 20, 200, 220))  # -> 'liver'
    >>> bird.chat("ct.png", "What modality is this?")

Everything numeric runs in C (``medground._C.bird_*``): the ViT-bigG, the
resampler, the Qwen-7B decoder with its KV cache and the sampling loop. This
module builds Qwen-VL-Chat's ChatML prompts, maps boxes between image pixels
and the model's 0..1000 grid, and parses answers.

Conventions (documented choices where the sources leave them open):

- Prompt: ``<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n
  Picture 1: <img>…</img>\\n{query}<|im_end|>\\n<|im_start|>assistant\\n`` (Qwen-VL-Chat
  ``make_context``; the image span holds 256 ``<imgpad>`` ids that the image
  embeddings overwrite, so no file path is embedded).
- Grid -> pixels: ``x_px = x / 1000 * width`` (Qwen's ``draw_bbox_on_latest_picture``
  convention, without its int() truncation); pixels -> grid:
  ``floor(x_px / width * 1000)`` clamped to 0..999.
- The Med-GRIT-270k task wording is not public; :data:`TEMPLATES` holds our
  defaults and every method takes ``template=``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from .. import _C
from ..errors import FormatError, InvalidArgumentError, NotFoundError, ShapeError

# ------------------------------------------------------------- special tokens

# Qwen's special tokens in id order: id = <|endoftext|> + index (151643 in the
# real vocabulary, i.e. image_start_id - 214).
QWEN_SPECIALS = (
    ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    + [f"<|extra_{i}|>" for i in range(205)]
    + ["<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<img>", "</img>", "<imgpad>"]
)
_IMG_INDEX = QWEN_SPECIALS.index("<img>")  # 214

SYSTEM_PROMPT = "You are a helpful assistant."

TEMPLATES = {
    # VG: phrase -> box(es)
    "ground": "Please output the bounding box of <ref>{phrase}</ref> in the image.",
    # ROC: box -> class / object name
    "refer": "What is the object in <box>{box}</box>? Answer with its name.",
    # RC: box -> caption
    "caption": "Please describe the region <box>{box}</box> in detail.",
}

GRID = 1000


# ------------------------------------------------------------------ results


@dataclasses.dataclass(frozen=True)
class Box:
    """A box in original-image pixels (x right, y down); ``label`` is the
    phrase of the ``<ref>`` it follows (None when there was none)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


@dataclasses.dataclass
class ParsedAnswer:
    """Boxes found in an answer plus what was wrong with the rest."""

    boxes: list[Box]
    grid_boxes: list[tuple[float, float, float, float]]  # the same boxes in 0..1000 grid units (after fixes)
    problems: list[str]


# mg_bird_box.issues flags (include/medground.h)
_MALFORMED, _UNTERMINATED, _CLAMPED, _SWAPPED, _EMPTY, _NO_BOX = 1, 2, 4, 8, 16, 32


def parse_boxes(text: str, width: Optional[float] = None, height: Optional[float] = None,
                grid: int = GRID) -> ParsedAnswer:
    """Every ``<ref>phrase</ref><box>(x1,y1),(x2,y2)</box>`` of a model answer
    (parsed in C: ``mg_bird_parse_boxes``).

    Several boxes may follow one ref (all get its label); a box without a ref
    has label None. Coordinates are on the 0..``grid`` grid and are mapped to
    pixels of a ``width`` x ``height`` image as ``v / grid * size`` (left in
    grid units when both are None). Never raises on model output: a malformed
    box (not four numbers) or an unterminated one (answer cut by
    max_new_tokens) is skipped; coordinates outside the grid are clamped and
    swapped corners reordered; each case is described in ``problems``. When
    the answer has no ``<box>`` tag at all, BiRD's fallback pattern
    ``(x1,y1),(x2,y2)`` is used.
    """
    if not isinstance(text, str):
        raise InvalidArgumentError(f"answer must be a str, got {type(text).__name__}")
    if (width is None) != (height is None):
        raise InvalidArgumentError("give both width and height, or neither")
    if width is not None and not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise InvalidArgumentError(f"image size {width} x {height} must be positive")
    data = text.encode("utf-8", "surrogatepass")
    entries = _C.bird_parse_boxes(data, float(width or 0), float(height or 0), float(grid))
    boxes: list[Box] = []
    grid_boxes: list[tuple[float, float, float, float]] = []
    problems: list[str] = []
    for valid, issues, pixels, grid_box, label_start, label_length, span_start, span_length in entries:
        snippet = data[span_start:span_start + span_length].decode("utf-8", "replace")
        label = data[label_start:label_start + label_length].decode("utf-8", "replace") if label_start >= 0 else None
        if issues & _UNTERMINATED:
            problems.append(f"unterminated box {snippet!r} (answer cut off?)")
        if issues & _MALFORMED:
            problems.append(f"malformed box {snippet!r}: expected (x1,y1),(x2,y2)")
        if issues & _NO_BOX:
            problems.append("a <ref> without any box")
        if not valid:
            continue
        if issues & _CLAMPED:
            problems.append(f"box {snippet!r} lies outside the 0..{grid} grid: clamped")
        if issues & _SWAPPED:
            problems.append(f"box {snippet!r} has swapped corners: reordered")
        if issues & _EMPTY:
            problems.append(f"box {snippet!r} is empty (zero width or height)")
        boxes.append(Box(*pixels, label))
        grid_boxes.append(tuple(grid_box))
    return ParsedAnswer(boxes, grid_boxes, problems)


def box_to_grid(box: Sequence[float], width: float, height: float, grid: int = GRID) -> tuple[int, int, int, int]:
    """Pixels (x1, y1, x2, y2) of a ``width`` x ``height`` image -> integer grid
    coordinates ``floor(v / size * grid)`` clamped to 0..grid-1 (Qwen's grid is
    [0, 1000))."""
    if len(box) != 4:
        raise InvalidArgumentError(f"box must be (x1, y1, x2, y2), got {len(box)} values")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InvalidArgumentError(f"box {tuple(box)} has a non-finite coordinate")
    if x2 < x1 or y2 < y1:
        raise InvalidArgumentError(f"box {tuple(box)}: x2 < x1 or y2 < y1")

    def cell(v: float, size: float) -> int:
        return int(min(max(math.floor(v / size * grid), 0), grid - 1))

    return cell(x1, width), cell(y1, height), cell(x2, width), cell(y2, height)


def format_box(grid_box: Sequence[int]) -> str:
    """``(x1,y1),(x2,y2)`` as Qwen-VL's from_list_format writes it."""
    x1, y1, x2, y2 = (int(v) for v in grid_box)
    return f"({x1},{y1}),({x2},{y2})"


def clean_answer(text: str) -> str:
    """BiRD's ``extract_information`` (regularization.py) applied to a raw
    answer, as the eval module does it (``mg_eval_bird_clean``): cut at
    ``.<|im_end|>`` (keeping the dot), drop ``<|im_end|>\n``, keep the text
    between the first two newlines when there are two, drop ``<|endoftext|>``,
    strip."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"answer must be a str, got {type(text).__name__}")
    return _C.eval_bird_clean([text])[0]


# --------------------------------------------------------------- checkpoints

_PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".pdparams")
_DIRECT_SUFFIXES = (".safetensors", ".gguf")


def flatten_config(config: dict, prefix: str = "config") -> dict[str, Any]:
    """config.json as the C loader's metadata keys ('config.visual.width': 1664)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            out.update(flatten_config(value, name))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
    return out


def _paddle_name(name: str) -> str:
    """PaddleMIX Qwen-VL parameter name -> the HF name (docs/architecture §1.5.3)."""
    rules = (
        ("visual.vit.", "transformer.visual."),
        ("visual.", "transformer.visual."),
        ("transformer.llm.", "transformer."),
        ("llm.", "transformer."),
    )
    for old, new in rules:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def _is_paddle_linear(hf_name: str, n_dims: int) -> bool:
    """Paddle stores Linear weights [in, out]: every 2-D matrix weight except the
    token table and the plain parameters (positional tables, queries, proj)."""
    if n_dims != 2 or hf_name == "transformer.wte.weight":
        return False
    return hf_name.endswith(".weight") or hf_name.endswith("in_proj_weight")


def _pickle_tensors(paths: list[pathlib.Path], paddle: bool) -> list[tuple[str, np.ndarray, str]]:
    from ..checkpoint.readers import iter_pickle_tensors

    out = []
    for name, tensor in iter_pickle_tensors(paths):
        array, dtype = tensor.array, tensor.dtype
        if paddle:
            name = _paddle_name(name)
            if dtype == "u16":
                # NumPy has no bfloat16: Paddle saves bf16 parameters as their
                # uint16 bit patterns (no Qwen-VL tensor is an unsigned integer)
                dtype = "bf16"
            if _is_paddle_linear(name, array.ndim):
                array = array.T  # a strided view; the C loader copies it once
        out.append((name, array, dtype))
    return out


def _load_config(folder: pathlib.Path) -> dict:
    for candidate in ("config.json",):
        path = folder / candidate
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError as error:
                raise FormatError(f"{path}: not JSON ({error})") from None
    raise NotFoundError(f"{folder}: no config.json next to the pickle checkpoint (needed for the hyper-parameters)")


def open_model(path: Union[str, os.PathLike], dtype: Optional[str] = None, strict: bool = False):
    """The C model handle for any supported checkpoint.

    safetensors (file, folder, sharded with index) and GGUF are mapped by the C
    reader; pickle checkpoints (HF ``pytorch_model*.bin``, PaddleMIX
    ``model_state*.pdparams``) are read with medground's restricted unpickler
    (nothing executed) and handed to C as borrowed arrays, Paddle names mapped
    to HF names and Paddle Linear weights transposed. ``dtype`` re-encodes every
    matrix ('f32', 'bf16', 'f16', 'q8_0', 'q4_0'); ``strict`` rejects tensors
    the model does not use.
    """
    p = pathlib.Path(os.fspath(path))
    if not p.exists():
        raise NotFoundError(f"{p}: no such file or folder")
    if p.is_dir():
        if any(p.glob("*.safetensors")) or (p / "model.safetensors.index.json").exists():
            return _C.bird_load(str(p), dtype, strict)
        from ..checkpoint.readers import pickle_shards

        shards = pickle_shards(p)
        if not shards:
            raise NotFoundError(f"{p}: no safetensors, .bin or .pdparams checkpoint in this folder")
        config = _load_config(p)
    else:
        suffix = p.suffix.lower()
        if suffix in _DIRECT_SUFFIXES:
            return _C.bird_load(str(p), dtype, strict)
        if suffix not in _PICKLE_SUFFIXES:
            raise FormatError(f"{p}: unknown checkpoint type (expected .safetensors, .gguf, .bin, .pth, .pdparams or a folder)")
        shards = [p]
        config = _load_config(p.parent)
    paddle = all(s.suffix.lower() == ".pdparams" for s in shards)
    tensors = _pickle_tensors(shards, paddle)
    return _C.bird_load_arrays(tensors, flatten_config(config), dtype, strict)


# ---------------------------------------------------------------- tokenizer


class _TiktokenQwen:
    """Qwen-VL's tokenizer over ``qwen.tiktoken`` with the tiktoken package
    (fallback when medground's own tokenizer is not available)."""

    PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
               r"""\s+(?!\S)|\s+""")

    def __init__(self, path: Union[str, os.PathLike]):
        import base64
        import tiktoken

        ranks = {}
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    token, rank = line.split()
                    ranks[base64.b64decode(token)] = int(rank)
        base = len(ranks)
        self._enc = tiktoken.Encoding("qwen", pat_str=self.PATTERN, mergeable_ranks=ranks,
                                      special_tokens={t: base + i for i, t in enumerate(QWEN_SPECIALS)})

    def encode(self, text: str) -> list[int]:
        import unicodedata

        return self._enc.encode(unicodedata.normalize("NFC", text), allowed_special=set(), disallowed_special=())

    def decode(self, ids: Sequence[int]) -> str:
        return self._enc.decode([int(i) for i in ids], errors="replace")


class _PlainText:
    """medground.Tokenizer seen through BiRD's protocol: text runs are encoded
    with no special-token parsing and no <img> expansion (the prompt builder
    places every special id itself), decoded as is."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, allowed_special="none", expand_images=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))


def default_tokenizer(path: Union[str, os.PathLike]):
    """The Qwen tokenizer for the checkpoint at ``path``: medground's C
    tokenizer (``medground.Tokenizer.from_pretrained``) over ``qwen.tiktoken``
    beside the checkpoint or embedded in its GGUF; the tiktoken package when
    medground's is unavailable."""
    p = pathlib.Path(os.fspath(path))
    target = p if p.is_dir() or p.suffix.lower() == ".gguf" else p.parent
    try:
        from ..tokenizer import Tokenizer
    except ImportError:  # pragma: no cover - the tokenizer module ships with medground
        Tokenizer = None
    if Tokenizer is not None:
        try:
            tokenizer = Tokenizer.from_pretrained(target)
        except NotFoundError as error:
            raise NotFoundError(f"{path}: no Qwen tokenizer found ({error}); pass tokenizer=") from None
        if tokenizer.family != "qwen":
            raise FormatError(f"{target}: the tokenizer found is {tokenizer.family}, not Qwen's; pass tokenizer=")
        return _PlainText(tokenizer)
    folder = target if target.is_dir() else target.parent
    if not (folder / "qwen.tiktoken").is_file():
        raise NotFoundError(f"{path}: no qwen.tiktoken beside the checkpoint; pass tokenizer=")
    return _TiktokenQwen(folder / "qwen.tiktoken")


# ------------------------------------------------------------------ prompts

_TAGS = re.compile(r"(<ref>|</ref>|<box>|</box>|<quad>|</quad>)")
IMAGE = ("image",)  # marker segment: <img> + image_tokens x <imgpad> + </img>


class Answer(str):
    """A history answer (text); encode_segments swaps in the ids generated for it when known."""


def _content(text: str, with_image: bool) -> list:
    """A user content string as Qwen encodes it (``allowed_special=IMAGE_ST``):
    one tokenizer call per text run between image/box tags."""
    out: list = []
    if with_image:
        out += [["Picture 1: "], "<img>", IMAGE, "</img>"]
        text = "\n" + text
    for piece in _TAGS.split(text):
        if piece:
            out.append(piece if _TAGS.fullmatch(piece) else [piece])
    return out


def chatml_segments(query: str, history: Sequence[tuple[str, str]] = (), system: str = SYSTEM_PROMPT,
                    with_image: bool = True) -> list:
    """Qwen-VL-Chat's ``make_context`` (chat_format 'chatml') as segments:
    special-token names (str), text runs ([str], one tokenizer call each),
    :data:`IMAGE` for the 256 image positions, :class:`Answer` for a
    history answer. Rendered:
    ``<|im_start|>system\n{system}<|im_end|>`` then per history turn
    ``\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>``
    then ``\n<|im_start|>user\n{query}<|im_end|>\n<|im_start|>assistant\n``;
    the image (``Picture 1: <img>…</img>\n``) opens the first user turn."""
    nl = ["\n"]
    out: list = ["<|im_start|>", ["system"], nl, [system], "<|im_end|>"]
    turns = [(str(q), str(a)) for q, a in history] + [(str(query), None)]
    for i, (q, a) in enumerate(turns):
        out += [nl, "<|im_start|>", ["user"], nl] + _content(q, with_image and i == 0) + ["<|im_end|>", nl]
        out += ["<|im_start|>", ["assistant"], nl]
        if a is not None:
            out += [Answer(a), "<|im_end|>"]
    return out


def render_segments(segments: list, image_text: str = "") -> str:
    """The text a segment list stands for (``image_text`` inside <img>…</img>)."""
    parts = []
    for seg in segments:
        if seg is IMAGE:
            parts.append(image_text)
        elif isinstance(seg, list):
            parts.append(seg[0])
        else:
            parts.append(str(seg))
    return "".join(parts)


def encode_segments(tokenizer, segments: list, special: dict[str, int], image_tokens: int = 256,
                    known: Optional[dict[str, list[int]]] = None) -> list[int]:
    ids: list[int] = []
    for seg in segments:
        if seg is IMAGE:
            ids += [special["<imgpad>"]] * image_tokens
        elif isinstance(seg, Answer):
            if known and str(seg) in known:
                ids += known[str(seg)]
            else:
                for piece in _TAGS.split(str(seg)):
                    if piece:
                        ids += [special[piece]] if _TAGS.fullmatch(piece) else [int(i) for i in tokenizer.encode(piece)]
        elif isinstance(seg, list):
            ids += [int(i) for i in tokenizer.encode(seg[0])]
        else:
            ids.append(special[seg])
    return ids


# --------------------------------------------------------------------- model

ImageLike = Any  # path, PIL image, uint8 ndarray [H, W(, C)]


def _image_key(image: Any) -> Any:
    """Identity of an image for memoising its embeddings: a file by path, size
    and modification time; an array by shape, dtype and a digest of its bytes
    (never by id(), which Python reuses)."""
    import hashlib

    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            st = os.stat(path)
        except OSError:
            return ("path", path, None)
        return ("path", os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if isinstance(image, np.ndarray):
        data = np.ascontiguousarray(image)
        return ("array", data.shape, data.dtype.str, hashlib.blake2b(data.tobytes(), digest_size=16).digest())
    return ("object", id(image), object())  # unknown kind: never equal, always re-encoded


class BiRD:
    """BiRD / Qwen-VL-Chat.

    ``checkpoint``: HF folder (``pytorch_model*.bin`` or safetensors), a
    ``.safetensors`` / ``.gguf`` file (``medground convert``), a PaddleMIX
    folder (``model_state*.pdparams``), or a handle from ``_C.bird_load*``.
    ``context``: positions of the conversation's KV cache (prompt + answers;
    f32 K and V, 1 MiB per position at full size). ``tokenizer``: any object with ``encode(str) -> list[int]`` (plain text,
    no special-token parsing) and ``decode(list[int]) -> str``; by default
    ``qwen.tiktoken`` beside the checkpoint. Special-token ids follow Qwen's
    layout from the checkpoint's ``image_start_id``.
    """

    def __init__(self, checkpoint: Any, tokenizer: Any = None, dtype: Optional[str] = None,
                 strict: bool = False, context: int = 2048, system: str = SYSTEM_PROMPT,
                 templates: Optional[dict[str, str]] = None):
        if isinstance(checkpoint, (str, os.PathLike)):
            self._model = open_model(checkpoint, dtype=dtype, strict=strict)
            if tokenizer is None:
                tokenizer = default_tokenizer(checkpoint)
        else:
            self._model = checkpoint
            if tokenizer is None:
                raise InvalidArgumentError("pass tokenizer= with a model handle")
        if not (hasattr(tokenizer, "encode") and hasattr(tokenizer, "decode")):
            raise InvalidArgumentError("tokenizer needs encode(str) -> ids and decode(ids) -> str")
        if type(tokenizer).__name__ == "Tokenizer" and hasattr(tokenizer, "family"):
            tokenizer = _PlainText(tokenizer)  # medground.Tokenizer: plain-text runs
        self.tokenizer = tokenizer
        self.info = _C.bird_info(self._model)
        base = self.info["image_start_id"] - _IMG_INDEX
        if base < 0 or base + len(QWEN_SPECIALS) > self.info["vocab_size"]:
            raise FormatError(
                f"image_start_id {self.info['image_start_id']}: Qwen's {len(QWEN_SPECIALS)} special tokens "
                f"(<|endoftext|> = image_start_id - {_IMG_INDEX}) do not fit a vocabulary of {self.info['vocab_size']}")
        self.special = {name: base + i for i, name in enumerate(QWEN_SPECIALS)}
        inner = getattr(tokenizer, "tokenizer", tokenizer)
        n_vocab = getattr(inner, "vocab_size", None)
        if isinstance(n_vocab, int) and n_vocab > self.info["vocab_size"]:
            raise FormatError(f"the tokenizer has {n_vocab} ids but the checkpoint's vocabulary (transformer.wte.weight) "
                              f"has {self.info['vocab_size']} rows: tokenizer and checkpoint do not belong together")
        if hasattr(inner, "token_to_id"):
            try:
                img = inner.token_to_id("<img>")
            except Exception:  # noqa: BLE001 - a tokenizer without Qwen's specials
                img = None
            if img is not None and img != self.info["image_start_id"]:
                raise FormatError(f"the tokenizer's <img> is id {img} but config visual.image_start_id is "
                                  f"{self.info['image_start_id']}")
        self._special_ids = set(self.special.values())
        self.system = system
        self.templates = dict(TEMPLATES, **(templates or {}))
        self.context = int(context)
        self._session = _C.bird_session_new(self._model, self.context)
        self._image_key: Any = None
        self._image_embeddings: Optional[np.ndarray] = None
        self._image_size: tuple[int, int] = (0, 0)
        self._answer_ids: dict[str, list[int]] = {}  # answer text -> the ids generated for it (cache reuse)
        self.last_raw = ""
        self.last_problems: list[str] = []

    # -- images
    def encode_image(self, image: ImageLike) -> np.ndarray:
        """Preprocess (PIL bicubic squash to the model's size, CLIP normalisation)
        and run the ViT + resampler: [image_tokens, hidden] float32. The last
        image is memoised (same path, or same array object)."""
        from ..image import preprocess_qwen

        if not isinstance(image, (str, os.PathLike, np.ndarray)) and hasattr(image, "mode"):
            image = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB", "RGBA") else image)
        key = _image_key(image)
        if self._image_embeddings is not None and key == self._image_key:
            return self._image_embeddings
        pixels, geometry = preprocess_qwen(image, size=self.info["image_size"])
        self._image_embeddings = _C.bird_encode_image(self._model, pixels)
        self._image_size = (geometry.original_width, geometry.original_height)
        self._image_key = key
        return self._image_embeddings

    def set_image_embeddings(self, embeddings: np.ndarray, width: int, height: int) -> None:
        """Use precomputed embeddings (e.g. from ``_C.bird_encode_image``) for an image of width x height."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        want = (self.info["image_tokens"], self.info["hidden_size"])
        if embeddings.shape != want:
            raise ShapeError(f"image embeddings must be {list(want)}, got {list(embeddings.shape)}")
        self._image_embeddings = embeddings
        self._image_size = (int(width), int(height))
        self._image_key = object()

    # -- prompts
    def build_prompt(self, query: str, history: Sequence[tuple[str, str]] = (), with_image: bool = True) -> list[int]:
        """Token ids of Qwen-VL-Chat's ChatML context (see :func:`chatml_segments`);
        answers of earlier turns use the ids generated for them when known."""
        segments = chatml_segments(query, history, self.system, with_image)
        return encode_segments(self.tokenizer, segments, self.special, self.info["image_tokens"],
                               known=self._answer_ids)

    # -- generation
    def generate(self, ids: Sequence[int], max_new_tokens: int = 80, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 stop: Optional[Iterable[Union[int, str]]] = None,
                 stream: Optional[Callable[[str], Any]] = None, use_image: bool = True) -> list[int]:
        """Generated ids (stop token included when one ended the answer).
        ``stop``: ids or special-token strings (default <|endoftext|>,
        <|im_end|>, <|im_start|>). ``stream(text_piece)`` gets the decoded text
        as it grows (return False to stop). The session's KV cache is reused
        for the prefix shared with the previous call."""
        if stop is None:
            stop = ["<|endoftext|>", "<|im_end|>", "<|im_start|>"]
        stop_ids = []
        for item in stop:
            if isinstance(item, str):
                if item not in self.special:
                    raise InvalidArgumentError(f"stop token {item!r} is not a Qwen special token")
                stop_ids.append(self.special[item])
            else:
                stop_ids.append(int(item))
        callback = None
        if stream is not None:
            if not callable(stream):
                raise InvalidArgumentError("stream must be callable")
            generated: list[int] = []
            emitted = [0]

            stop_set = set(stop_ids)

            def callback(token: int):
                if token in stop_set:  # the answer ends here; the stop token is not text
                    return True
                generated.append(token)
                text = self._decode(generated)
                if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for more bytes
                    return True
                piece, emitted[0] = text[emitted[0]:], len(text)
                if piece:
                    return stream(piece) is not False
                return True

        images = None
        if use_image and self.special["<img>"] in ids:
            if self._image_embeddings is None:
                raise InvalidArgumentError("the prompt has an image span but no image was encoded")
            images = self._image_embeddings
        out = _C.bird_generate(self._model, self._session, np.asarray(ids, dtype=np.int32), images,
                               max_new_tokens=int(max_new_tokens), do_sample=bool(do_sample),
                               temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                               seed=int(seed), stop_tokens=stop_ids, callback=callback)
        if stream is not None:  # flush a tail held back as an incomplete UTF-8 sequence
            text = self._decode(generated)
            if len(text) > emitted[0]:
                stream(text[emitted[0]:])
        return out

    def _decode(self, ids: Sequence[int]) -> str:
        """Text of ids with the special tokens written out (as Qwen's decode with
        skip_special_tokens=False); bytes of plain tokens via the tokenizer."""
        out, run = [], []
        names = {v: k for k, v in self.special.items()}
        for i in ids:
            if i in self._special_ids:
                if run:
                    out.append(self.tokenizer.decode(run))
                    run = []
                out.append(names[i])
            else:
                run.append(int(i))
        if run:
            out.append(self.tokenizer.decode(run))
        return "".join(out)

    def _answer(self, ids: list[int], stop_ids: set[int]) -> str:
        body = ids[:-1] if ids and ids[-1] in stop_ids else ids
        text = self._decode(body)
        for key in {text, text.strip()}:
            self._answer_ids[key] = list(body)
        while len(self._answer_ids) > 64:
            self._answer_ids.pop(next(iter(self._answer_ids)))
        return text

    def ask(self, image: Optional[ImageLike], query: str, history: Sequence[tuple[str, str]] = (),
            max_new_tokens: int = 80, **options) -> str:
        """One answer to ``query`` (ChatML with the system prompt, the image as
        Picture 1), raw text with tags kept and the stop token removed."""
        if image is not None:
            self.encode_image(image)
        history = list(history)
        ids = self.build_prompt(query, history, with_image=image is not None)
        # As make_context does with max_window_size: drop the oldest turns
        # until prompt + answer fit the session (the image moves to the first
        # turn kept).
        while len(ids) + max_new_tokens > self.context and history:
            history.pop(0)
            ids = self.build_prompt(query, history, with_image=image is not None)
        if len(ids) + max_new_tokens > self.context:
            raise InvalidArgumentError(f"the prompt ({len(ids)} tokens) plus max_new_tokens {max_new_tokens} exceed "
                                       f"the context of {self.context} positions (BiRD(context=...))")
        stop_ids = set(self._stop_ids(options.get("stop")))
        out = self.generate(ids, max_new_tokens=max_new_tokens, use_image=image is not None, **options)
        self.last_raw = self._decode(out)
        return self._answer(out, stop_ids)

    def _stop_ids(self, stop) -> list[int]:
        if stop is None:
            stop = ["<|endoftext|>", "<|im_end|>", "<|im_start|>"]
        return [self.special[s] if isinstance(s, str) else int(s) for s in stop]

    # -- tasks
    def ground(self, image: ImageLike, phrase: str, template: Optional[str] = None,
               max_new_tokens: int = 80, progress: bool = True, **options) -> "Boxes":
        """Boxes (original-image pixels) for ``phrase``, as a :class:`~medground.results.Boxes`
        list that draws itself over the image in notebooks. Problems with the
        answer's boxes are in ``self.last_problems``. A list of images (and one
        phrase, or one phrase per image) gives a list of answers, with a progress bar."""
        from ..results import Boxes, is_batch, run_batch

        if is_batch(image):
            return run_batch(self.ground, image, phrase, "ground", progress, template=template,
                             max_new_tokens=max_new_tokens, **options)
        if not isinstance(phrase, str) or not phrase.strip():
            raise InvalidArgumentError("phrase must be a non-empty string")
        query = (template or self.templates["ground"]).format(phrase=phrase)
        answer = self.ask(image, query, max_new_tokens=max_new_tokens, **options)
        width, height = self._image_size
        parsed = parse_boxes(answer, width, height)
        self.last_problems = parsed.problems
        return Boxes([b if b.label is not None else dataclasses.replace(b, label=phrase) for b in parsed.boxes],
                     image=image)

    def refer(self, image: ImageLike, box: Sequence[float], template: Optional[str] = None,
              task: str = "refer", max_new_tokens: int = 80, progress: bool = True, **options) -> str:
        """What is in ``box`` (x1, y1, x2, y2 in original-image pixels):
        task 'refer' (ROC: a class name) or 'caption' (RC: a description).
        A list of images with a list of boxes (one per image) gives a list of answers."""
        from ..results import is_batch, run_batch

        if is_batch(image):
            return run_batch(self.refer, image, box, "refer", progress, per_image_arguments=True,
                             template=template, task=task, max_new_tokens=max_new_tokens, **options)
        if task not in ("refer", "caption"):
            raise InvalidArgumentError(f"task {task!r}: expected 'refer' or 'caption'")
        self.encode_image(image)
        width, height = self._image_size
        grid = box_to_grid(box, width, height)
        query = (template or self.templates[task]).format(box=format_box(grid))
        return self.ask(image, query, max_new_tokens=max_new_tokens, **options).strip()

    def chat(self, image: Optional[ImageLike], text: str, history: Optional[Sequence[tuple[str, str]]] = None,
             max_new_tokens: int = 100, progress: bool = True, **options) -> str:
        """Free-form answer (MIA). ``history``: earlier (query, answer) turns of
        this conversation about the same image; their KV cache is reused.
        A list of images (one question, or one per image) gives a list of answers."""
        from ..results import is_batch, run_batch

        if is_batch(image):
            if history:
                raise InvalidArgumentError("chat() over a list of images takes no history")
            return run_batch(self.chat, image, text, "chat", progress, max_new_tokens=max_new_tokens, **options)
        if not isinstance(text, str):
            raise InvalidArgumentError("text must be a str")
        turns = [(str(q), str(a)) for q, a in (history or [])]
        return self.ask(image, text, turns, max_new_tokens=max_new_tokens, **options).strip()

    @property
    def cached_tokens(self) -> int:
        """Positions the conversation's KV cache holds."""
        return _C.bird_session_length(self._session)


__all__ = ["BiRD", "Box", "chatml_segments", "encode_segments", "render_segments", "ParsedAnswer", "parse_boxes", "box_to_grid", "format_box", "clean_answer",
           "open_model", "flatten_config", "default_tokenizer", "QWEN_SPECIALS", "TEMPLATES", "SYSTEM_PROMPT"]
