"""The CPU kernels against the machine's limits and PyTorch, in the same run.

* GEMV (decode: one token through four FFN-sized matrices stacked, 4 x 11008
  x 4096, so that even the q4_0 weight, 101 MB, is three times the 32 MB L3
  and repeated runs stream from DRAM as a real decode does): bytes of weight
  read per second, as a fraction of the measured read bandwidth (the
  decode roofline), for f32 / bf16 / q8_0 / q4_0 weights, 1 and all threads;
  beside it PyTorch's f32 / bf16 ``F.linear`` on the same shapes.
* GEMM (prefill / vision tower: 512 tokens x 4096 -> 4096): GFLOP/s as a
  fraction of PyTorch's measured f32 GEMM peak, f32 and bf16 weights.
* Attention (a ViT layer's non-causal self-attention, 1024 tokens x 16 heads
  x 64): ms and GFLOP/s beside PyTorch's ``scaled_dot_product_attention``.

Timings of ours come from ``_C.op_linear_timed`` (best of N inside C, the
weight converted once beforehand); PyTorch's from the best of N calls.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def torch_best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


WEIGHT_BITS = {"f32": 32, "bf16": 16, "q8_0": 8.5, "q4_0": 4.5}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="more repeats")
    args = parser.parse_args()
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    import machine
    import torch
    import torch.nn.functional as F

    import medground
    from medground import _C

    repeats = 20 if args.full else 6
    cores = __import__("os").cpu_count() or 1
    rng = np.random.default_rng(0)
    n_out, n_in = 4 * 11008, 4096
    weight = (rng.standard_normal((n_out, n_in), dtype=np.float32) * 0.02).astype(np.float32)
    x1 = rng.standard_normal((1, n_in)).astype(np.float32)
    x_prefill = rng.standard_normal((512, n_in)).astype(np.float32)
    w_square = weight[:4096]

    print(f"kernels: {_C.op_kernel_info()}")
    for threads in sorted({1, cores}):
        bandwidth = machine.bandwidth(threads, 1 << 24)["read_gb_s"]
        medground.set_num_threads(threads)
        torch.set_num_threads(threads)
        print(f"\n== {threads} thread(s): measured read bandwidth {bandwidth:.1f} GB/s")
        print(f"{'GEMV 1x4096 -> 4x11008':<26} {'ms':>8} {'GB/s':>8} {'of roofline':>12} {'tok/s 7B-equiv':>15}")
        for dtype in ("f32", "bf16", "q8_0", "q4_0"):
            _, seconds = _C.op_linear_timed(x1, weight, weight_dtype=dtype, repeats=repeats)
            gbytes = n_out * n_in * WEIGHT_BITS[dtype] / 8 / 1e9
            rate = gbytes / seconds
            # Qwen-7B reads ~7.1e9 weights per token: tokens/s if every matrix ran at this rate.
            tokens = rate / (7.1e9 * WEIGHT_BITS[dtype] / 8 / 1e9)
            print(f"  medground {dtype:<15} {seconds * 1e3:8.2f} {rate:8.1f} {rate / bandwidth:11.0%} {tokens:15.2f}")
        for dtype, torch_dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            w = torch.from_numpy(weight).to(torch_dtype)
            x = torch.from_numpy(x1).to(torch_dtype)
            seconds = torch_best(lambda: F.linear(x, w), repeats)
            rate = n_out * n_in * WEIGHT_BITS[dtype] / 8 / 1e9 / seconds
            print(f"  PyTorch {dtype:<17} {seconds * 1e3:8.2f} {rate:8.1f} {rate / bandwidth:11.0%}")
        peak = machine.gemm_gflops(1024, threads)
        print(f"{'GEMM 512x4096 -> 4096':<26} {'ms':>8} {'GFLOP/s':>8} {'of torch f32 peak':>18}  (peak {peak:.0f})")
        flops = 2 * 512 * 4096 * 4096
        for dtype in ("f32", "bf16"):
            _, seconds = _C.op_linear_timed(x_prefill, w_square, weight_dtype=dtype, repeats=max(2, repeats // 2))
            print(f"  medground {dtype:<15} {seconds * 1e3:8.1f} {flops / seconds / 1e9:8.0f} "
                  f"{flops / seconds / 1e9 / peak:17.0%}")
        for dtype, torch_dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            w = torch.from_numpy(w_square).to(torch_dtype)
            x = torch.from_numpy(x_prefill).to(torch_dtype)
            seconds = torch_best(lambda: F.linear(x, w), max(2, repeats // 2))
            print(f"  PyTorch {dtype:<17} {seconds * 1e3:8.1f} {flops / seconds / 1e9:8.0f} "
                  f"{flops / seconds / 1e9 / peak:17.0%}")
        print(f"{'attention 1024x16x64':<26} {'ms':>8} {'GFLOP/s':>8}")
        q, k, v = (rng.standard_normal((1024, 16, 64)).astype(np.float32) for _ in range(3))
        flops = 4 * 1024 * 1024 * 16 * 64
        seconds = torch_best(lambda: _C.op_attention(q, k, v), max(2, repeats // 2))
        print(f"  medground f32{'':<13} {seconds * 1e3:8.1f} {flops / seconds / 1e9:8.0f}")
        tq, tk, tv = (torch.from_numpy(a).permute(1, 0, 2).contiguous() for a in (q, k, v))
        seconds = torch_best(lambda: F.scaled_dot_product_attention(tq, tk, tv), max(2, repeats // 2))
        print(f"  PyTorch sdpa f32{'':<10} {seconds * 1e3:8.1f} {flops / seconds / 1e9:8.0f}")
    medground.set_num_threads(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
