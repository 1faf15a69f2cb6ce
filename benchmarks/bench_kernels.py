"""The CPU kernels against the machine's limits and PyTorch, in the same run.

* GEMV (decode: one token through four FFN-sized matrices stacked, 4 x 11008
  x 4096, so that even the q4_0 weight, 101 MB, is three times the 32 MB L3
  and repeated runs stream from DRAM as a real decode does): bytes of weight
  read per second, as a fraction of the measured read bandwidth (the
  decode roofline), for f32 / bf16 / q8_0 / q4_0 weights, 1 and all threads;
  beside it PyTorch's f32 / bf16 ``F.linear`` on the same shapes.
* GEMM (prefill / vision tower: 512 tokens x 4096 -> 4096 and 1024 patches x
  1664 -> 8192, ViT-bigG's MLP): GFLOP/s of our linear with f32 / bf16 / q8_0 /
  q4_0 weights as a fraction of the measured peak of the GEMM dtype it runs
  in (f32 for f32 weights; bf16 for the others where oneDNN has a native
  bf16 matmul). The peak is oneDNN's own matmul on the same shapes, the best
  of plain and pre-reordered (blocked) weights (benchmarks/gemm_peak.c);
  beside it PyTorch's f32 / bf16 ``F.linear``.
* Int8 GEMM (q8_0 / q4_0 weights with AVX-512 VNNI: prefill of M = 256 / 512
  / 1024 tokens, K = 4096, N = 4096 and 11008): GOP/s of the int8 route
  beside the bf16-panel route it replaces (the same linear capped at
  MG_CPU_ISA=avx512: weight panels dequantised to bf16 into oneDNN's bf16
  matmul), oneDNN's bf16 peak and oneDNN's int8 (u8 x s8 -> s32, no
  per-block scaling) peak at the shape, as ratios.
* GELU (erf): ns per element, the scalar libm reference, the vector kernel
  (double-precision polynomial) and, under fpmath "bf16", the f32-arithmetic
  one the rounding vision towers take.
* Attention (a ViT layer's non-causal self-attention, 1024 tokens x 16 heads
  x 64 and x 104): ms and GFLOP/s with f32 and with bf16 products (fpmath
  "bf16"), beside PyTorch's ``scaled_dot_product_attention`` in f32 and bf16.
* Decode attention (one query over 340 cached positions x 32 heads x 128, 32
  layers' caches so that they stream from DRAM as in a decode step): ms per
  step with an f16 and an f32 cache, the cache's GB/s against the measured
  read bandwidth, beside PyTorch's SDPA on the f32 cache.

Timings of ours come from ``_C.op_linear_timed`` (best of N inside C, the
weight converted once beforehand); PyTorch's from the best of N calls.
"""

from __future__ import annotations

import argparse
import os
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
GEMM_SHAPES = ((512, 4096, 4096), (1024, 1664, 8192))  # M, K, N


def gemm_peak(m: int, n: int, k: int, dtype: str, threads: int, repeats: int = 3) -> float:
    """oneDNN's best matmul GFLOP/s at this shape (machine.gemm_peak, benchmarks/gemm_peak.c)."""
    import machine

    return machine.gemm_peak(m, n, k, dtype, threads, repeats)


QGEMM_SHAPES = [(m, 4096, n) for n in (4096, 11008) for m in (256, 512, 1024)]  # M, K, N


def qgemm_rows(threads: int, rng, repeats: int) -> None:
    """The int8 GEMM (native level, AVX-512 VNNI) against the bf16-panel route (MG_CPU_ISA=avx512) and
    oneDNN's bf16 peak, same shapes, same run."""
    import medground
    from medground import _C

    if _C.op_kernel_info()["isa"] not in ("avx512_vnni", "avx512_bf16"):
        panels = "bf16" if _C.op_kernel_info()["native_bf16_gemm"] else "f32"
        print(f"int8 GEMM: this CPU has no AVX-512 VNNI (the q8_0/q4_0 prefill runs dequantized {panels} panels)")
        return
    print(f"{'int8 GEMM (q8_0/q4_0)':<26} {'int8':>8} {'panels':>8} {'bf16 pk':>8} {'int8 pk':>8} {'int8/':>7} "
          f"{'int8/':>7} {'int8/':>7}")
    print(f"{'M x K -> N':<17}{'':<9} {'GOP/s':>8} {'GFLOP/s':>8} {'GFLOP/s':>8} {'GOP/s':>8} {'panels':>7} "
          f"{'bf16 pk':>7} {'int8 pk':>7}")
    for m, k, n in QGEMM_SHAPES:
        peak = gemm_peak(m, n, k, "bf16", threads)
        int8_peak = gemm_peak(m, n, k, "int8", threads)  # oneDNN u8 x s8 -> s32: no per-block scaling
        w = (rng.standard_normal((n, k), dtype=np.float32) * 0.02).astype(np.float32)
        x = rng.standard_normal((m, k)).astype(np.float32)
        flops = 2 * m * n * k
        for dtype in ("q8_0", "q4_0"):
            rates = {}
            for route, level in (("int8", None), ("panels", "avx512")):
                if level:
                    os.environ["MG_CPU_ISA"] = level
                medground.set_num_threads(threads)  # a new context reads MG_CPU_ISA
                try:
                    _, seconds = _C.op_linear_timed(x, w, weight_dtype=dtype, repeats=repeats)
                finally:
                    os.environ.pop("MG_CPU_ISA", None)
                rates[route] = flops / seconds / 1e9
            medground.set_num_threads(threads)
            print(f"  {m}x{k} -> {n} {dtype:<6} {rates['int8']:8.0f} {rates['panels']:8.0f} {peak:8.0f} "
                  f"{int8_peak:8.0f} {rates['int8'] / rates['panels']:6.2f}x {rates['int8'] / peak:6.2f}x "
                  f"{rates['int8'] / int8_peak:6.0%}")


def decode_attention_rows(threads: int, rng, repeats: int) -> None:
    """One decode step's attention: 32 layers, each one query over its own 340-position cache (32 heads x
    128), f16 and f32 caches; the caches (178 / 357 MB) stream from DRAM, as in a real step."""
    import time

    import machine
    import torch
    import torch.nn.functional as F

    from medground import _C

    layers, positions, heads, dim = 32, 340, 32, 128
    q = rng.standard_normal((1, heads, dim)).astype(np.float32)
    caches = [(rng.standard_normal((positions, heads, dim)).astype(np.float16),
               rng.standard_normal((positions, heads, dim)).astype(np.float16)) for _ in range(layers)]
    bandwidth = machine.bandwidth(threads, 1 << 24)["read_gb_s"]
    print(f"{f'decode attention {positions} x {heads} x {dim}, {layers} layers':<40} {'ms':>8} {'GB/s':>8} "
          f"{'of read bw':>10}  (read bandwidth {bandwidth:.1f} GB/s)")

    def step_seconds(run) -> float:
        best = float("inf")
        for _ in range(repeats + 1):
            started = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - started)
        return best

    for label, pairs in (("f16 cache", caches), ("f32 cache", [(k.astype(np.float32), v.astype(np.float32))
                                                                for k, v in caches])):
        seconds = step_seconds(lambda: [_C.op_attention(q, k, v) for k, v in pairs])
        gb = sum(k.nbytes + v.nbytes for k, v in pairs) / 1e9
        print(f"  medground {label:<29} {seconds * 1e3:8.2f} {gb / seconds:8.1f} {gb / seconds / bandwidth:10.0%}")
        if label == "f32 cache":
            # PyTorch's own cache layout, [1, heads, positions, dim], contiguous
            tq = torch.from_numpy(q).permute(1, 0, 2).unsqueeze(0).contiguous()
            tpairs = [tuple(torch.from_numpy(a).permute(1, 0, 2).unsqueeze(0).contiguous() for a in (k, v))
                      for k, v in pairs]
            seconds = step_seconds(lambda: [F.scaled_dot_product_attention(tq, k, v) for k, v in tpairs])
            print(f"  PyTorch sdpa {label:<26} {seconds * 1e3:8.2f} {gb / seconds:8.1f} {gb / seconds / bandwidth:10.0%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="more repeats")
    parser.add_argument("--only", choices=("gemv", "gemm", "qgemm", "attention"), help="one section (GEMM includes GELU)")
    parser.add_argument("--threads", type=int, help="this thread count only (default: 1 and all cores)")
    args = parser.parse_args()
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    import machine
    import torch
    import torch.nn.functional as F

    import medground
    from medground import _C

    repeats = 20 if args.full else 6
    cores = os.cpu_count() or 1
    rng = np.random.default_rng(0)
    n_out, n_in = 4 * 11008, 4096
    if args.only in (None, "gemv"):
        weight = (rng.standard_normal((n_out, n_in), dtype=np.float32) * 0.02).astype(np.float32)
        x1 = rng.standard_normal((1, n_in)).astype(np.float32)

    print(f"kernels: {_C.op_kernel_info()}")
    for threads in [args.threads] if args.threads else sorted({1, cores}):
        medground.set_num_threads(threads)
        torch.set_num_threads(threads)
        if args.only in (None, "gemv"):
            bandwidth = machine.bandwidth(threads, 1 << 24)["read_gb_s"]
            print(f"\n== {threads} thread(s): measured read bandwidth {bandwidth:.1f} GB/s")
        else:
            print(f"\n== {threads} thread(s)")
        if args.only in (None, "gemv"):
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
        if args.only in (None, "gemm"):
            native_bf16 = _C.op_kernel_info()["native_bf16_gemm"]
            peaks = machine.gemm_peaks(GEMM_SHAPES, threads, dtypes=("f32", "bf16"))
            print(f"GEMM peak (oneDNN matmul, best of {len(GEMM_SHAPES)} shapes): f32 {machine.peak_text(peaks['f32'])} "
                  f"GFLOP/s, bf16 {machine.peak_text(peaks['bf16'])} GFLOP/s")
            for m, k, n in GEMM_SHAPES:
                flops = 2 * m * n * k
                w_gemm = (rng.standard_normal((n, k), dtype=np.float32) * 0.02).astype(np.float32)
                x_gemm = rng.standard_normal((m, k)).astype(np.float32)
                print(f"{f'GEMM {m}x{k} -> {n}':<26} {'ms':>8} {'GFLOP/s':>8} {'of peak':>8}")
                for dtype in ("f32", "bf16", "q8_0", "q4_0"):
                    _, seconds = _C.op_linear_timed(x_gemm, w_gemm, weight_dtype=dtype, repeats=max(2, repeats // 2))
                    runs_in = "bf16" if dtype != "f32" and native_bf16 else "f32"
                    rate = flops / seconds / 1e9
                    print(f"  medground {dtype:<15} {seconds * 1e3:8.1f} {rate:8.0f} {machine.of_peak(rate, peaks[runs_in]):>8}"
                          f"  (of the {runs_in} peak)")
                for dtype, torch_dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
                    w = torch.from_numpy(w_gemm).to(torch_dtype)
                    x = torch.from_numpy(x_gemm).to(torch_dtype)
                    seconds = torch_best(lambda: F.linear(x, w), max(2, repeats // 2))
                    rate = flops / seconds / 1e9
                    print(f"  PyTorch {dtype:<17} {seconds * 1e3:8.1f} {rate:8.0f} {machine.of_peak(rate, peaks[dtype]):>8}")
            gelu_x = (rng.standard_normal((1024, 2048)) * 3).astype(np.float32)
            print(f"{'GELU (erf) 1024 x 2048':<26} {'ns/elem':>8}")
            for level in ("scalar", None):
                if level:
                    os.environ["MG_CPU_ISA"] = level
                medground.set_num_threads(threads)  # a new context reads MG_CPU_ISA
                name = _C.op_kernel_info()["isa"]
                seconds = torch_best(lambda: _C.op_activate(gelu_x, "gelu"), max(2, repeats // 2))
                os.environ.pop("MG_CPU_ISA", None)
                print(f"  medground {name:<15} {seconds / gelu_x.size * 1e9:8.2f}")
            medground.set_num_threads(threads)
            medground.set_fpmath("bf16")
            seconds = torch_best(lambda: _C.op_activate(gelu_x, "gelu"), max(2, repeats // 2))
            medground.set_fpmath("default")
            print(f"  medground {'f32 arithmetic':<15} {seconds / gelu_x.size * 1e9:8.2f}  (fpmath bf16)")
            tx = torch.from_numpy(gelu_x)
            seconds = torch_best(lambda: F.gelu(tx), max(2, repeats // 2))
            print(f"  PyTorch f32 gelu{'':<10} {seconds / gelu_x.size * 1e9:8.2f}")
        if args.only in (None, "qgemm"):
            qgemm_rows(threads, rng, repeats=3 if args.full else 2)
        if args.only in (None, "attention"):
            for tokens, heads, dim in ((1024, 16, 64), (1024, 16, 104)):  # a CLIP-like and the ViT-bigG layer
                print(f"{f'attention {tokens}x{heads}x{dim}':<26} {'ms':>8} {'GFLOP/s':>8}")
                q, k, v = (rng.standard_normal((tokens, heads, dim)).astype(np.float32) for _ in range(3))
                flops = 4 * tokens * tokens * heads * dim
                for mode, label in (("strict", "f32"), ("bf16", "bf16 products")):
                    medground.set_fpmath(mode)
                    seconds = torch_best(lambda: _C.op_attention(q, k, v), max(2, repeats // 2))
                    print(f"  medground {label:<15} {seconds * 1e3:8.1f} {flops / seconds / 1e9:8.0f}")
                medground.set_fpmath("default")
                for torch_dtype, label in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
                    tq, tk, tv = (torch.from_numpy(a).permute(1, 0, 2).contiguous().to(torch_dtype) for a in (q, k, v))
                    seconds = torch_best(lambda: F.scaled_dot_product_attention(tq, tk, tv), max(2, repeats // 2))
                    print(f"  PyTorch sdpa {label:<12} {seconds * 1e3:8.1f} {flops / seconds / 1e9:8.0f}")
            decode_attention_rows(threads, rng, max(2, repeats // 2))
    medground.set_num_threads(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
