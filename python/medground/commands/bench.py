"""``medground bench``: this machine's limits and medground's kernels against them.

A quick, self-contained measurement (no PyTorch needed): memory read
bandwidth (NumPy reduction over a buffer larger than the caches), then one
decode-sized GEMV per weight type as bytes/s against that bandwidth (the
decode roofline), and a prefill-sized GEMM in GFLOP/s. The full suite against
PyTorch, llama.cpp and the full-size models is ``make bench`` in a checkout.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

WEIGHT_BITS = {"f32": 32, "bf16": 16, "q8_0": 8.5, "q4_0": 4.5}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0, help="threads (0 = all cores)")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def read_bandwidth(megabytes: int = 512, repeats: int = 3) -> float:
    """GB/s of a vectorised sum over ``megabytes`` of float64 (one thread, NumPy)."""
    buffer = np.ones(megabytes * (1 << 20) // 8)
    buffer.sum()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        buffer.sum()
        best = min(best, time.perf_counter() - started)
    return buffer.nbytes / best / 1e9


def run(args: argparse.Namespace) -> int:
    import json

    from .. import _C, set_num_threads
    from ..errors import InvalidArgumentError

    if args.repeats < 1:
        raise InvalidArgumentError(f"--repeats {args.repeats}: expected >= 1")
    set_num_threads(args.threads)
    info = _C.op_kernel_info()
    bandwidth = read_bandwidth()
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((11008, 4096)) * 0.02).astype(np.float32)
    x = rng.standard_normal((1, 4096)).astype(np.float32)
    results = {"kernels": info, "read_bandwidth_gb_s": round(bandwidth, 2), "gemv": {}, "gemm": {}}
    for dtype, bits in WEIGHT_BITS.items():
        _, seconds = _C.op_linear_timed(x, weight, weight_dtype=dtype, repeats=args.repeats)
        rate = weight.size * bits / 8 / 1e9 / seconds
        results["gemv"][dtype] = {"ms": round(seconds * 1e3, 3), "gb_s": round(rate, 2),
                                  "of_bandwidth": round(rate / bandwidth, 3)}
    prefill = rng.standard_normal((256, 4096)).astype(np.float32)
    for dtype in ("f32", "bf16"):
        _, seconds = _C.op_linear_timed(prefill, weight[:4096], weight_dtype=dtype, repeats=max(1, args.repeats // 2))
        results["gemm"][dtype] = {"ms": round(seconds * 1e3, 2),
                                  "gflop_s": round(2 * 256 * 4096 * 4096 / seconds / 1e9, 1)}
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"kernels: {info['isa']}, native bf16 GEMM: {info['native_bf16_gemm']}, "
          f"{info['threads']} threads, GEMM by {info['blas']}")
    print(f"memory read bandwidth (NumPy, 1 thread): {bandwidth:.1f} GB/s")
    print("decode GEMV 1x4096 -> 11008:")
    for dtype, row in results["gemv"].items():
        print(f"  {dtype:<5} {row['ms']:8.2f} ms  {row['gb_s']:6.1f} GB/s  {row['of_bandwidth']:5.0%} of bandwidth")
    print("prefill GEMM 256x4096 -> 4096:")
    for dtype, row in results["gemm"].items():
        print(f"  {dtype:<5} {row['ms']:8.1f} ms  {row['gflop_s']:6.0f} GFLOP/s")
    print("the full suite (PyTorch, llama.cpp, full-size models): make bench")
    return 0
