"""Tiny random checkpoints with the real tensor names and layouts, to try the
API (and test code that uses it) without a 20 GB download.

The answers of a random model are noise; everything else — loading, image
preprocessing, prompts, generation, box parsing, drawing — runs exactly as
with real weights. ``medground.load`` opens the folder like any Qwen-VL-Chat
checkpoint.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
from typing import Union

import numpy as np

# 256 single bytes + 30 merges: Qwen-VL's 217 special tokens then start at
# id 286, so a vocabulary of 503 holds them all.
_MERGES = [b"th", b"he", b"in", b"er", b"an", b"re", b"on", b"at", b"en", b"nd", b"ti", b"es", b"or",
           b"te", b"of", b"ed", b"is", b"it", b"al", b"ar", b"st", b"to", b"nt", b"ng", b"se", b"ha",
           b"as", b"ou", b"io", b"le"]


def tiny_bird_config() -> dict:
    """config.json of the real Qwen-VL schema with widths and depths shrunk."""
    return {
        "architectures": ["QWenLMHeadModel"], "model_type": "qwen",
        "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "kv_channels": 64,
        "intermediate_size": 512, "layer_norm_epsilon": 1e-6, "vocab_size": 503,
        "rotary_emb_base": 10000, "rotary_pct": 1.0, "seq_length": 2048, "max_position_embeddings": 8192,
        "use_dynamic_ntk": True, "use_logn_attn": True, "no_bias": True, "tie_word_embeddings": False,
        "visual": {"heads": 4, "image_size": 112, "image_start_id": 500, "layers": 2, "mlp_ratio": 2.0,
                   "output_dim": 256, "patch_size": 14, "width": 64},
    }


def bird_tensor_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Hugging Face Qwen-VL checkpoint for ``config``, with its shape."""
    c, v = config, config["visual"]
    hidden, ff = c["hidden_size"], c["intermediate_size"] // 2
    qkv = 3 * c["num_attention_heads"] * c["kv_channels"]
    width, mlp, out = v["width"], int(v["width"] * v["mlp_ratio"]), v["output_dim"]
    shapes = {"transformer.wte.weight": (c["vocab_size"], hidden), "transformer.ln_f.weight": (hidden,),
              "lm_head.weight": (c["vocab_size"], hidden)}
    for n in range(c["num_hidden_layers"]):
        p = f"transformer.h.{n}."
        shapes.update({p + "ln_1.weight": (hidden,), p + "ln_2.weight": (hidden,),
                       p + "attn.c_attn.weight": (qkv, hidden), p + "attn.c_attn.bias": (qkv,),
                       p + "attn.c_proj.weight": (hidden, qkv // 3), p + "mlp.w1.weight": (ff, hidden),
                       p + "mlp.w2.weight": (ff, hidden), p + "mlp.c_proj.weight": (hidden, ff)})
    p = "transformer.visual."
    shapes.update({p + "conv1.weight": (width, 3, v["patch_size"], v["patch_size"]),
                   p + "positional_embedding": (256, width), p + "ln_pre.weight": (width,),
                   p + "ln_pre.bias": (width,)})
    for n in range(v["layers"]):
        b = f"{p}transformer.resblocks.{n}."
        shapes.update({b + "ln_1.weight": (width,), b + "ln_1.bias": (width,), b + "ln_2.weight": (width,),
                       b + "ln_2.bias": (width,), b + "attn.in_proj.weight": (3 * width, width),
                       b + "attn.in_proj.bias": (3 * width,), b + "attn.out_proj.weight": (width, width),
                       b + "attn.out_proj.bias": (width,), b + "mlp.c_fc.weight": (mlp, width),
                       b + "mlp.c_fc.bias": (mlp,), b + "mlp.c_proj.weight": (width, mlp),
                       b + "mlp.c_proj.bias": (width,)})
    a = p + "attn_pool."
    shapes.update({a + "query": (256, out), a + "pos_embed": (256, out), a + "kv_proj.weight": (out, width),
                   a + "attn.in_proj_weight": (3 * out, out), a + "attn.in_proj_bias": (3 * out,),
                   a + "attn.out_proj.weight": (out, out), a + "attn.out_proj.bias": (out,),
                   a + "ln_q.weight": (out,), a + "ln_q.bias": (out,), a + "ln_kv.weight": (out,),
                   a + "ln_kv.bias": (out,), p + "ln_post.weight": (out,), p + "ln_post.bias": (out,),
                   p + "proj": (out, out)})
    return shapes


def write_safetensors(path: Union[str, os.PathLike], tensors: dict[str, np.ndarray]) -> None:
    """A .safetensors file (8-byte little-endian header size, JSON header, raw data)."""
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little") + text)
        for blob in blobs:
            handle.write(blob)


def tiny_bird_checkpoint(folder: Union[str, os.PathLike], seed: int = 0) -> pathlib.Path:
    """Writes a random tiny BiRD / Qwen-VL-Chat folder (config.json,
    model.safetensors, qwen.tiktoken) and returns its path."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_bird_config()
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in bird_tensor_shapes(config).items():
        if len(shape) == 1 and name.endswith(".weight") and name.split(".")[-2].startswith("ln_"):
            tensors[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif name.endswith(("wte.weight", "query", "positional_embedding", "pos_embed")):
            tensors[name] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
        else:
            tensors[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    write_safetensors(folder / "model.safetensors", tensors)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    lines = [base64.b64encode(bytes([b])).decode() + f" {b}" for b in range(256)]
    lines += [base64.b64encode(m).decode() + f" {256 + i}" for i, m in enumerate(_MERGES)]
    (folder / "qwen.tiktoken").write_text("\n".join(lines) + "\n")
    return folder


__all__ = ["bird_tensor_shapes", "tiny_bird_checkpoint", "tiny_bird_config", "write_safetensors"]
