"""Checkpoint benchmark (issue 3; targets: open+mmap a multi-GB GGUF in
< 50 ms; convert throughput >= 70 % of `cp` of the same bytes for unquantized
output). Results are printed as ratios.

1. open: a 4 GB GGUF (``--gguf-gb``) with 291 tensors laid out like a 7B
   LLaMA/Qwen decoder (32 layers x 9 + 3), written *sparsely*: the header is
   built by hand from the GGUF spec and the file is extended with truncate(),
   so it costs no disk and no time to make. Opening parses the header, checks
   every offset and maps the file; no data page is touched. Timed: our C
   reader (`medground.checkpoint.Weights`) vs llama.cpp's Python reader
   (`gguf.GGUFReader`, a peer, not a target), best of 5.
2. convert: a 256 MB bf16 safetensors file (``--convert-mb``) -> GGUF as bf16
   (byte copy), f16 and f32 (conversion) and q8_0 (quantization), vs `cp` of
   the same file on the same filesystem; the page cache is warmed first,
   every output is removed between runs, and cp/convert runs are interleaved
   (best of 4 each). Ratio = cp seconds / convert seconds (1.0 = as fast as
   cp; f32 output is twice the bytes, q8_0 about half).

Standalone and quick: `python benchmarks/bench_checkpoint.py` (~10-20 s);
`--full` uses an 8 GB GGUF and a 1 GB convert input.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

import numpy as np  # noqa: E402

F16, Q8_0 = 1, 8  # ggml type ids (ggml docs/gguf.md)


def gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def decoder_shapes(scale: float) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, shape, ggml type) of a 7B LLaMA-style decoder, widths x sqrt(scale)."""
    def width(n: int) -> int:
        return max(32, int(n * scale ** 0.5) // 32 * 32)

    h, f, v, layers = width(4096), width(11008), width(32000), 32
    shapes = [("token_embd.weight", (v, h), F16)]
    for i in range(layers):
        shapes += [(f"blk.{i}.attn_norm.weight", (h,), 0), (f"blk.{i}.attn_q.weight", (h, h), F16),
                   (f"blk.{i}.attn_k.weight", (h, h), F16), (f"blk.{i}.attn_v.weight", (h, h), F16),
                   (f"blk.{i}.attn_output.weight", (h, h), F16), (f"blk.{i}.ffn_norm.weight", (h,), 0),
                   (f"blk.{i}.ffn_gate.weight", (f, h), Q8_0), (f"blk.{i}.ffn_up.weight", (f, h), Q8_0),
                   (f"blk.{i}.ffn_down.weight", (h, f), Q8_0)]
    return shapes + [("output_norm.weight", (h,), 0), ("output.weight", (v, h), F16)]


def tensor_bytes(shape, ggml_type) -> int:
    n = int(np.prod(shape))
    return n * 4 if ggml_type == 0 else n * 2 if ggml_type == F16 else n // 32 * 34


def sparse_gguf(path: pathlib.Path, target_bytes: int) -> tuple[int, int]:
    """A 7B-decoder-shaped GGUF of about target_bytes; returns (tensors, size)."""
    low, high = 1e-4, 100.0
    for _ in range(40):  # bisect the width scale to the requested size
        mid = (low * high) ** 0.5
        total = sum(tensor_bytes(shape, t) for _, shape, t in decoder_shapes(mid))
        low, high = (mid, high) if total < target_bytes else (low, mid)
    shapes = decoder_shapes(low)
    alignment = 32
    kvs = [gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama"),
           gguf_string("general.alignment") + struct.pack("<II", 4, alignment)]
    infos, offset = [], 0
    for name, shape, ggml_type in shapes:
        ne = list(reversed(shape))
        infos.append(gguf_string(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne) +
                     struct.pack("<IQ", ggml_type, offset))
        offset += -(-tensor_bytes(shape, ggml_type) // alignment) * alignment
    header = b"GGUF" + struct.pack("<IQQ", 3, len(shapes), len(kvs)) + b"".join(kvs) + b"".join(infos)
    header += bytes(-len(header) % alignment)
    with open(path, "wb") as out:
        out.write(header)
        out.truncate(len(header) + offset)  # sparse: no data written
    return len(shapes), len(header) + offset


def best_of(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_open(folder: pathlib.Path, gigabytes: float) -> dict:
    from medground.checkpoint import Weights

    path = folder / "sparse.gguf"
    n_tensors, size = sparse_gguf(path, int(gigabytes * 2**30))

    def ours():
        w = Weights(str(path))
        assert len(w) == n_tensors
        del w

    ours_s = best_of(ours)
    result = {"file_gb": round(size / 2**30, 2), "tensors": n_tensors, "medground_open_ms": round(ours_s * 1e3, 3),
              "target_ms": 50.0, "ratio_target_over_ours": round(0.050 / ours_s, 1)}
    try:
        import gguf

        peer_s = best_of(lambda: gguf.GGUFReader(path), repeat=3)
        result["gguf_py_open_ms"] = round(peer_s * 1e3, 3)
        result["ratio_gguf_py_over_ours"] = round(peer_s / ours_s, 1)
    except ImportError:
        pass
    path.unlink()
    return result


def bench_convert(folder: pathlib.Path, megabytes: int, repeat: int = 4) -> dict:
    from medground.checkpoint import convert

    rng = np.random.default_rng(0)
    n_tensors = 16
    rows = max(32, megabytes * 2**20 // n_tensors // 2 // 4096)
    # bf16 bit patterns of N(0,1) values (random halves of f32s: finite)
    src = folder / "model.safetensors"
    header, blobs, offset = {}, [], 0
    for i in range(n_tensors):
        f32 = rng.standard_normal((rows, 4096), dtype=np.float32)
        blob = (f32.view(np.uint32) >> 16).astype(np.uint16).tobytes()  # bf16 bits: top halves
        header[f"model.layers.{i}.mlp.weight"] = {"dtype": "BF16", "shape": [rows, 4096],
                                                 "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(src, "wb") as f:  # the safetensors layout, written directly
        f.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            f.write(blob)
    del blobs
    size = src.stat().st_size
    src.read_bytes()  # warm the page cache for both sides

    def cp():
        subprocess.run(["cp", str(src), str(folder / "copy.bin")], check=True)
        (folder / "copy.bin").unlink()

    def converter(target):
        def run():
            out = folder / f"out-{target}.gguf"
            convert(src, out, type=target, progress=False)
            out.unlink()
        return run

    # interleaved rounds, best of each: a busy shared machine slows both alike
    jobs = {"cp": cp, **{t: converter(t) for t in ("bf16", "f16", "f32", "q8_0")}}
    best = {name: float("inf") for name in jobs}
    for _ in range(repeat):
        for name, job in jobs.items():
            t0 = time.perf_counter()
            job()
            best[name] = min(best[name], time.perf_counter() - t0)
    cp_s = best["cp"]
    result = {"input_mb": round(size / 2**20, 1), "cp_s": round(cp_s, 4),
              "cp_mb_per_s": round(size / 2**20 / cp_s, 0)}
    for target in ("bf16", "f16", "f32", "q8_0"):
        result[f"{target}_s"] = round(best[target], 4)
        result[f"{target}_ratio_vs_cp"] = round(cp_s / best[target], 2)
    result["target_unquantized_ratio"] = 0.7
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="8 GB GGUF, 1 GB convert input")
    parser.add_argument("--gguf-gb", type=float, default=None, help="size of the sparse GGUF (default 4)")
    parser.add_argument("--convert-mb", type=int, default=None, help="size of the convert input (default 256)")
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    gigabytes = args.gguf_gb or (8.0 if args.full else 4.0)
    megabytes = args.convert_mb or (1024 if args.full else 256)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="mg_bench_ckpt_", dir=args.dir))
    try:
        results = {"open": bench_open(folder, gigabytes), "convert": bench_convert(folder, megabytes)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(results, indent=2))
    o, c = results["open"], results["convert"]
    print(f"open {o['file_gb']} GB GGUF ({o['tensors']} tensors): {o['medground_open_ms']} ms "
          f"(target 50 ms: {o['ratio_target_over_ours']}x headroom"
          + (f"; gguf-py {o['gguf_py_open_ms']} ms = {o['ratio_gguf_py_over_ours']}x slower)" if "gguf_py_open_ms" in o
             else ")"))
    print(f"convert {c['input_mb']} MB bf16 safetensors vs cp ({c['cp_mb_per_s']:.0f} MB/s): "
          + ", ".join(f"{t} {c[f'{t}_ratio_vs_cp']:.2f}x" for t in ("bf16", "f16", "f32", "q8_0"))
          + " (target >= 0.70x for unquantized)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
