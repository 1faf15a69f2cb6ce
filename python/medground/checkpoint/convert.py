"""``medground.convert``: any checkpoint a user downloads -> one self-contained GGUF.

Streaming: tensor infos are collected first (GGUF puts them before the data),
then each tensor is converted and written on its own, so peak memory is one
tensor (plus, for Paddle pickles, the shard being read). Quantization is done
in C by GGUF's reference quantizers.

Type policy (as llama.cpp's converters): integer tensors keep their type;
1-D tensors (norms, biases) stay f32; with a q8_0/q4_0 target, tensors that
are small (< 1024 elements), 4-D (convolutions), have rows not a multiple of
32, or are norms/biases/position tables/embeddings of positions/GPTQ group
scales stay in f16. Already-quantized tensors are never re-quantized.
"""

from __future__ import annotations

import collections
import os
import pathlib
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _C
from ..errors import InvalidArgumentError, UnsupportedError
from .sources import Source, TensorInfo, load_config, open_source

TARGET_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")
FLOAT_TYPES = {"f32", "f16", "bf16", "f64", "q8_0", "q4_0"}
# Kept unquantized whatever the target: normalisation, biases, position tables.
_KEEP_PATTERN = re.compile(
    r"(norm|(^|\.)ln_|\.ln\b|layernorm|layrnorm|bias$|positional_embedding|pos_embed|position_embedding|"
    r"rel_pos|class_embedding|inv_freq|\.scales$)", re.IGNORECASE)  # .scales: GPTQ group scales

# Files embedded verbatim so one GGUF is enough to run the model.
TOKENIZER_FILES = {
    "qwen.tiktoken": ("medground.tokenizer.qwen_tiktoken", "string"),
    "tokenizer.model": ("medground.tokenizer.sentencepiece_model", "bytes"),
    "tokenizer.json": ("medground.tokenizer.tokenizer_json", "string"),
    "tokenizer_config.json": ("medground.tokenizer.tokenizer_config_json", "string"),
    "special_tokens_map.json": ("medground.tokenizer.special_tokens_map_json", "string"),
    "added_tokens.json": ("medground.tokenizer.added_tokens_json", "string"),
    "generation_config.json": ("medground.generation_config_json", "string"),
}


@dataclass
class ConvertSummary:
    """What convert wrote."""

    path: str
    architecture: str
    n_tensors: int
    bytes_in: int
    bytes_out: int
    seconds: float
    types: dict[str, int] = field(default_factory=dict)  # stored dtype -> tensor count
    embedded: list[str] = field(default_factory=list)  # metadata keys of embedded files
    skipped: list[str] = field(default_factory=list)  # zero-size tensors (no data; GGUF sizes are positive)

    def __str__(self) -> str:
        types = ", ".join(f"{count} {dtype}" for dtype, count in sorted(self.types.items()))
        rate = self.bytes_in / self.seconds / 1e6 if self.seconds > 0 else 0.0
        lines = [
            f"wrote {self.path}",
            f"  architecture {self.architecture}; {self.n_tensors} tensors ({types})",
            f"  {self.bytes_in / 1e6:.1f} MB in -> {self.bytes_out / 1e6:.1f} MB out in {self.seconds:.1f} s "
            f"({rate:.0f} MB/s)",
        ]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} zero-size tensor(s): " + ", ".join(self.skipped[:5]) +
                         (" ..." if len(self.skipped) > 5 else ""))
        if self.embedded:
            lines.append("  embedded: " + ", ".join(self.embedded))
        return "\n".join(lines)


def detect_architecture(names: list[str], config: dict | None) -> str:
    """bird (Qwen-VL), medplib (LLaVA + MoE + SAM) or sam_med2d, from config or names."""
    if config:
        model_type = str(config.get("model_type", "")).lower()
        if model_type == "qwen" and "visual" in config:
            return "bird"
        if "medplib" in model_type or "moe" in config and "mm_projector_type" in config:
            return "medplib"
    joined = set(names)
    if any(n.startswith(("transformer.visual.", "visual.vit.", "visual.attn_pool.")) for n in joined) or \
            any(".attn.c_attn." in n for n in joined):
        return "bird"
    if any("mm_projector" in n or "deepspeed_moe" in n or n.startswith("model.visual_model.") for n in joined):
        return "medplib"
    if any(n.startswith(("image_encoder.", "mask_decoder.")) for n in joined):
        return "sam_med2d"
    return "generic"


def choose_type(info: TensorInfo, target: str) -> str:
    """The stored type of one tensor under the policy in the module docstring."""
    if info.dtype not in FLOAT_TYPES:
        return {"bool": "i8", "u8": "i16", "u16": "i32"}.get(info.dtype, info.dtype)
    if info.dtype in ("q8_0", "q4_0") and target in ("q8_0", "q4_0"):
        return info.dtype  # already quantized: never re-quantize
    if len(info.shape) <= 1:
        return "f32"
    if target in ("q8_0", "q4_0"):
        numel = int(np.prod(info.shape))
        if numel < 1024 or info.shape[-1] % 32 != 0 or len(info.shape) == 4 or _KEEP_PATTERN.search(info.name):
            return "f16"
    return target


def _flatten(prefix: str, value: Any, out: dict[str, tuple[str, Any]]) -> None:
    """config.json -> GGUF typed values under prefix (nested keys joined by '.')."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, bool):
        out[prefix] = ("bool", value)
    elif isinstance(value, int):
        out[prefix] = ("i64", value) if -2**63 <= value < 2**63 else ("f64", float(value))
    elif isinstance(value, float):
        out[prefix] = ("f64", value)
    elif isinstance(value, str):
        out[prefix] = ("string", value)
    elif isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            out[prefix] = ("array[string]", value)
        elif all(isinstance(v, (int, float)) for v in value):
            if all(isinstance(v, int) and -2**63 <= v < 2**63 for v in value):
                out[prefix] = ("array[i64]", np.asarray(value, dtype=np.int64))
            else:
                out[prefix] = ("array[f64]", np.asarray(value, dtype=np.float64))


def _write_metadata(writer, metadata: dict[str, tuple[str, Any]]) -> None:
    for key, (type_name, value) in metadata.items():
        if type_name == "string":
            writer.add_string(key, value)
        elif type_name in ("f32", "f64"):
            writer.add_float(key, float(value), type_name)
        elif type_name.startswith("array["):
            element = type_name[6:-1]
            if element == "string":
                writer.add_string_array(key, list(value))
            else:
                writer.add_array(key, np.asarray(value))
        else:
            writer.add_int(key, int(value), type_name)


def _progress(total_bytes: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc="convert", file=sys.stderr,
                disable=not sys.stderr.isatty() and enabled != "always")


def convert(src: str | os.PathLike, out_gguf: str | os.PathLike, type: str = "f16", arch: str | None = None,
            progress: bool | str = True) -> ConvertSummary:
    """Convert a checkpoint (HF folder with safetensors or .bin shards + index,
    single .safetensors/.bin/.pth/.pdparams file, or GGUF) into one GGUF.

    type: target for float weights ('f32', 'f16', 'bf16', 'q8_0', 'q4_0').
    arch: 'bird', 'medplib', 'sam_med2d' (default: detected from config/names).
    """
    if type not in TARGET_TYPES:
        raise InvalidArgumentError(f"type {type!r}: expected one of {', '.join(TARGET_TYPES)}")
    start = time.perf_counter()
    out_path = pathlib.Path(out_gguf)
    source: Source = open_source(src)
    if out_path.exists() and pathlib.Path(src).exists() and out_path.resolve() == pathlib.Path(src).resolve():
        raise InvalidArgumentError(f"{out_path}: the output would overwrite the input")
    infos = source.infos()
    # zero-size tensors carry no weights and GGUF sizes are positive: the C
    # readers skip them in safetensors/GGUF files, convert skips them here too
    skipped = [i.name for i in infos if 0 in i.shape]
    infos = [i for i in infos if 0 not in i.shape]
    config = load_config(source.folder)
    source_meta = source.metadata()
    if arch is None:
        arch = source_meta.get("general.architecture", (None, None))[1] or \
            detect_architecture([i.name for i in infos], config)

    metadata: dict[str, tuple[str, Any]] = dict(source_meta)
    metadata["general.architecture"] = ("string", arch)
    metadata.setdefault("general.name", ("string", pathlib.Path(src).resolve().name))
    metadata["medground.convert.type"] = ("string", type)
    metadata["medground.convert.source_format"] = ("string", source.format or "unknown")
    if config is not None:
        _flatten(arch, config, metadata)
    embedded = []
    for file_name, (key, kind) in TOKENIZER_FILES.items():
        path = source.folder / file_name
        if path.is_file() and key not in metadata:
            data = path.read_bytes()
            if kind == "string":
                metadata[key] = ("string", data)  # verbatim bytes (UTF-8 text)
            else:
                metadata[key] = ("array[u8]", np.frombuffer(data, dtype=np.uint8))
            embedded.append(key)

    stored = [choose_type(info, type) for info in infos]
    tmp_path = out_path.with_name(out_path.name + ".partial")
    writer = _C.GGUFWriter(str(tmp_path))
    types: collections.Counter[str] = collections.Counter()
    bytes_in = 0
    bar = _progress(sum(i.nbytes for i in infos), progress)
    try:
        _write_metadata(writer, metadata)
        for info, dtype in zip(infos, stored):
            if len(info.shape) > 4:
                raise UnsupportedError(f"{src}: tensor {info.name}: {len(info.shape)} dimensions {list(info.shape)} "
                                       "(GGUF and medground hold at most 4)")
            writer.add_tensor_info(info.name, dtype, list(info.shape))
        stored_by_name = dict(zip((i.name for i in infos), stored))
        for info, tensor in source.iter_tensors():
            if 0 in info.shape:
                continue
            source.write_into(writer, info, tensor)
            types[stored_by_name[info.name]] += 1
            bytes_in += info.nbytes
            if bar is not None:
                bar.update(info.nbytes)
        writer.finish()
    finally:
        writer.close()  # deletes the partial file unless finish() succeeded
        if bar is not None:
            bar.close()
    os.replace(tmp_path, out_path)
    return ConvertSummary(
        path=str(out_path),
        architecture=arch,
        n_tensors=len(infos),
        bytes_in=bytes_in,
        bytes_out=out_path.stat().st_size,
        seconds=time.perf_counter() - start,
        types=dict(types),
        embedded=embedded,
        skipped=skipped,
    )
