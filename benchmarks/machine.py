"""Measure this machine's limits in the same run as the benchmarks: memory
bandwidth (STREAM-like triad and read-only sum, 1 and all threads; the read is
the faster of a plain loop and one with software prefetch, see stream.c) and
peak f32 GEMM FLOP/s (PyTorch's and ours), so every result can be printed as a
ratio to the roofline."""

from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent


def peak_rss_gb() -> float:
    """This process's peak RSS in GB (VmHWM: per address space, unlike
    ru_maxrss, which a child inherits from its parent across exec)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e6  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def read_into_page_cache(path: str, evict: tuple[str, ...] | list[str] = ()) -> float:
    """Read a weights file once into the page cache (not this process's RSS), so that no engine's first
    forward times the disk, after asking the kernel to drop the files in `evict` from it: the full-size
    files of one run (35 GB) do not fit this machine's RAM together, and kswapd reclaiming them while a
    variant decodes slowed that decode by up to a third. Returns the seconds the read took."""
    for other in evict:
        if os.path.abspath(other) != os.path.abspath(path) and os.path.isfile(other):
            fd = os.open(other, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    t0 = time.perf_counter()
    buffer = bytearray(1 << 24)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buffer):
            pass
    return time.perf_counter() - t0


def bandwidth(threads: int, doubles: int = 1 << 25) -> dict:
    binary = pathlib.Path(tempfile.gettempdir()) / "medground_stream"
    if not binary.exists() or binary.stat().st_mtime < (HERE / "stream.c").stat().st_mtime:
        subprocess.run(["gcc", "-O3", "-march=native", "-fopenmp", str(HERE / "stream.c"), "-o", str(binary)],
                       check=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([str(binary), str(doubles), "5"], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)


def gemm_gflops(size: int = 1024, threads: int | None = None) -> float:
    import torch

    if threads:
        torch.set_num_threads(threads)
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def gemm_peak(m: int, n: int, k: int, dtype: str, threads: int, repeats: int = 3) -> float:
    """oneDNN's best matmul GFLOP/s (GOP/s for int8) at this shape, plain or pre-reordered weights
    (benchmarks/gemm_peak.c): dtype f32, bf16, or int8 (u8 x s8 -> s32, the vpdpbusd GEMM with no
    per-block scaling)."""
    binary = pathlib.Path(tempfile.gettempdir()) / "medground_gemm_peak"
    source = HERE / "gemm_peak.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["gcc", "-O2", str(source), "-ldnnl", "-o", str(binary)], check=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([str(binary), str(m), str(n), str(k), dtype, str(repeats)], check=True,
                         capture_output=True, text=True, env=env)
    result = json.loads(out.stdout)
    return max(result["plain_gflops"], result["blocked_gflops"])


def bracket_fractions(rates: list[float], probes: list[float]) -> list[float]:
    """Pass i's rate over the mean of the probes taken just before (probes[i]) and after (probes[i + 1])
    it: this VM's speed wanders within minutes, so a pass is set against the probes that bracket it."""
    if len(probes) != len(rates) + 1:
        raise ValueError(f"{len(rates)} passes need {len(rates) + 1} bracketing probes, not {len(probes)}")
    return [rate / (0.5 * (probes[i] + probes[i + 1])) for i, rate in enumerate(rates)]


# The GEMM a model's many-row linears (encode, prefill) run as, per weight type.
GEMM_DTYPE = {"f32": "f32", "bf16": "bf16", "f16": "bf16", "q8_0": "int8", "q4_0": "int8"}


def gemm_dtype(weight_dtype: str) -> str:
    """The dtype of oneDNN peak to set medground's encode / prefill against for these weights: int8 for
    q8_0 / q4_0 where the CPU has AVX-512 VNNI (the int8 GEMM), else bf16 (dequantized bf16 panels)."""
    from medground import _C

    chosen = GEMM_DTYPE[weight_dtype]
    if chosen == "int8" and _C.op_kernel_info()["isa"] not in ("avx512_vnni", "avx512_bf16"):
        return "bf16"
    return chosen


def gemm_peaks(shapes, threads: int, dtypes=("f32", "bf16", "int8")) -> dict:
    """Best oneDNN GFLOP/s per dtype over (M, K, N) shapes."""
    return {d: max(gemm_peak(m, n, k, d, threads) for m, k, n in shapes) for d in dtypes}


def describe(quick: bool = True) -> dict:
    cores = os.cpu_count() or 1
    doubles = 1 << (24 if quick else 26)
    info = {
        "cpu": _cpu_name(),
        "cores": cores,
        "bandwidth_1": bandwidth(1, doubles),
        "bandwidth_all": bandwidth(cores, doubles),
        "torch_gemm_gflops_1": gemm_gflops(1024 if quick else 2048, 1),
        "torch_gemm_gflops_all": gemm_gflops(1024 if quick else 2048, cores),
    }
    return info


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    print(json.dumps(describe(), indent=2))
