"""Writes the seed corpora of the checkpoint fuzz targets (run once; the
files are kept in the repo): fuzz/corpus/safetensors/ and fuzz/corpus/gguf/.

Seeds are tiny valid files from independent writers (the `safetensors` and
`gguf` packages) plus hand-made edge cases from the format specs, so the
fuzzer starts from every header feature: all dtypes, metadata, zero-size and
misaligned tensors, every GGUF value type, arrays, alignments, v2 files and
quantized blocks.

    PYTHONPATH=python .venv/bin/python fuzz/gen_corpus.py
"""

from __future__ import annotations

import json
import pathlib
import struct

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"


def safetensors_seeds(out: pathlib.Path) -> None:
    from safetensors.numpy import save

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    (out / "all_dtypes.safetensors").write_bytes(save({
        "f32": rng.standard_normal((2, 3)).astype(np.float32), "f16": np.ones(4, np.float16),
        "f64": np.zeros((1, 2), np.float64), "i64": np.arange(3, dtype=np.int64), "i32": np.arange(2, dtype=np.int32),
        "i16": np.arange(2, dtype=np.int16), "i8": np.arange(2, dtype=np.int8), "u8": np.arange(3, dtype=np.uint8),
        "u16": np.arange(2, dtype=np.uint16), "bool": np.array([True, False]),
    }, metadata={"format": "pt", "note": "seed"}))
    (out / "five_d.safetensors").write_bytes(save({"v": np.zeros((1, 1, 2, 1, 2), np.float32)}))

    def raw(name: str, header: dict | str, data: bytes) -> None:
        text = (header if isinstance(header, str) else json.dumps(header)).encode()
        (out / name).write_bytes(struct.pack("<Q", len(text)) + text + data)

    raw("bf16.safetensors", {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, bytes(range(8)))
    raw("misaligned.safetensors", {"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                                   "b": {"dtype": "F32", "shape": [1], "data_offsets": [1, 5]}}, bytes(5))
    raw("empty_tensor.safetensors", {"e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
                                     "s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}, bytes(4))
    raw("metadata_only.safetensors", {"__metadata__": {"k": "v"}}, b"")
    raw("gap.safetensors", {"a": {"dtype": "I8", "shape": [2], "data_offsets": [4, 6]}}, bytes(8))
    (out / "config.json").write_bytes(json.dumps({
        "model_type": "qwen", "hidden_size": 64, "layer_norm_epsilon": 1e-6, "use_cache": True, "onnx_safe": None,
        "architectures": ["QWenLMHeadModel"], "visual": {"width": 32, "mean": [0.5, 0.25]}, "list": [{"a": 1}],
    }).encode())


def gguf_seeds(out: pathlib.Path) -> None:
    import gguf
    from gguf.quants import quantize

    out.mkdir(parents=True, exist_ok=True)
    Q = gguf.GGMLQuantizationType
    V = gguf.GGUFValueType
    rng = np.random.default_rng(1)

    def write(name: str, alignment: int | None, fill) -> None:
        writer = gguf.GGUFWriter(out / name, arch="bird")
        if alignment:
            writer.add_custom_alignment(alignment)
        fill(writer)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    def every_value(writer) -> None:
        for key, value, vtype in [("u8", 1, V.UINT8), ("i8", -1, V.INT8), ("u16", 2, V.UINT16), ("i16", -2, V.INT16),
                                  ("u32", 3, V.UINT32), ("i32", -3, V.INT32), ("u64", 4, V.UINT64),
                                  ("i64", -4, V.INT64), ("f32", 0.5, V.FLOAT32), ("f64", 0.25, V.FLOAT64),
                                  ("bool", True, V.BOOL), ("str", "s", V.STRING)]:
            writer.add_key_value(f"bird.{key}", value, vtype)
        writer.add_array("bird.ints", [1, 2])
        writer.add_array("bird.strs", ["a", "bc"])
        writer.add_tensor("f32", rng.standard_normal((2, 3)).astype(np.float32))

    def quantized(writer) -> None:
        x = rng.standard_normal((2, 32)).astype(np.float32)
        writer.add_tensor("q8", quantize(x, Q.Q8_0), raw_dtype=Q.Q8_0)
        writer.add_tensor("q4", quantize(x, Q.Q4_0), raw_dtype=Q.Q4_0)
        writer.add_tensor("bf16", quantize(x[:1, :4], Q.BF16), raw_dtype=Q.BF16)
        writer.add_tensor("f16", x[:1, :5].astype(np.float16))
        writer.add_tensor("i32", np.arange(3, dtype=np.int32))

    write("every_value.gguf", None, every_value)
    write("quantized.gguf", None, quantized)
    write("align1.gguf", 1, quantized)
    write("align64.gguf", 64, lambda w: w.add_tensor("t", np.arange(4, dtype=np.float32)))
    write("empty.gguf", None, lambda w: None)
    # GGUF v2 (same layout as v3 for little-endian files)
    data = bytearray((out / "align64.gguf").read_bytes())
    data[4:8] = struct.pack("<I", 2)
    (out / "v2.gguf").write_bytes(bytes(data))


if __name__ == "__main__":
    safetensors_seeds(ROOT / "safetensors")
    gguf_seeds(ROOT / "gguf")
    for folder in ("safetensors", "gguf"):
        files = sorted((ROOT / folder).iterdir())
        print(f"{folder}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")
