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


def _drop_from_page_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages (a file just written) are not dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_through_2mb_mapping(path: str) -> float | None:
    """Fault every page of `path` in through a mapping advised MADV_HUGEPAGE (pages not cached yet are read
    ahead as 2 MB folios, as medground's loader does) and return the fraction of it the kernel mapped with
    2 MB entries (FilePmdMapped in smaps), or None where smaps does not say."""
    import mmap
    import re

    import numpy as np

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        view = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    try:
        if hasattr(mmap, "MADV_HUGEPAGE"):
            view.madvise(mmap.MADV_HUGEPAGE)
        pages = np.frombuffer(view, dtype=np.uint8)
        address = pages.__array_interface__["data"][0]
        for start in range(0, size, 1 << 28):  # one byte per 4 KB page, 256 MB at a time
            int(pages[start:start + (1 << 28):4096].sum())
        del pages
        blocks = _smaps_blocks()
    finally:
        view.close()
    for block in blocks:
        start = int(block.split("-", 1)[0], 16)
        if start == address:
            found = re.search(r"^FilePmdMapped:\s+(\d+) kB", block, re.M)
            return int(found.group(1)) * 1024 / size if found else None
    return None


def _smaps_blocks() -> list[str]:
    import re

    with open("/proc/self/smaps") as smaps:
        return re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", smaps.read())


def weights_2mb(path: str) -> float | None:
    """Of the pages of `path` (a file, or the files of a folder) this process has mapped, the fraction
    mapped with 2 MB page-table entries (FilePmdMapped over Rss of its mappings in smaps; None when it maps
    none or smaps does not say), for a result's record (memory_record): decode streams the weights, and reads 4 KB-mapped
    ones 8-18 % slower here. Weights quantized at load live in anonymous memory and are not counted."""
    import re

    real = os.path.realpath(path)
    inside = real.rstrip("/") + "/" if os.path.isdir(real) else None  # a folder: the files under it
    rss = pmd = 0
    for block in _smaps_blocks():
        head = block.split("\n", 1)[0].split()
        name = os.path.realpath(head[5]) if len(head) >= 6 and head[5].startswith("/") else None
        if name and (name == real or (inside and name.startswith(inside))):
            r = re.search(r"^Rss:\s+(\d+) kB", block, re.M)
            m = re.search(r"^FilePmdMapped:\s+(\d+) kB", block, re.M)
            if r and m:
                rss, pmd = rss + int(r.group(1)), pmd + int(m.group(1))
    return pmd / rss if rss else None


def memory_record(path: str) -> dict:
    """A child's memory figures for its result record: peak RSS and the weights' 2 MB-mapped share."""
    return dict(peak_rss_gb=peak_rss_gb(), weights_2mb=weights_2mb(path))


def mapped_2mb_note(r: dict) -> str:
    """A result's share of weight pages mapped with 2 MB entries, for its printed line ("" when unknown)."""
    return f"  weights 2 MB-mapped {r['weights_2mb']:.0%}" if r.get("weights_2mb") is not None else ""


# path -> fraction of the file the last read_into_page_cache saw mapped with 2 MB entries (None: unknown)
PAGE_CACHE_HUGE: dict[str, float | None] = {}


def read_into_page_cache(path: str, evict: tuple[str, ...] | list[str] = ()) -> float:
    """Read a weights file once into the page cache (not this process's RSS), so that no engine's first
    forward times the disk, after asking the kernel to drop the files in `evict` from it: the full-size
    files of one run (35 GB) do not fit this machine's RAM together, and kswapd reclaiming them while a
    variant decodes slowed that decode by up to a third. The file is read through a huge-page mapping;
    when the cache already held it in small folios (read with small reads, say), so that under nine
    tenths of it maps with 2 MB entries, it is dropped and read again: decode from 4 KB-mapped weights
    ran 8-18 % slower here. The share mapped with 2 MB entries is left in PAGE_CACHE_HUGE[path].
    Returns the seconds the read took."""
    for other in evict:
        if os.path.abspath(other) != os.path.abspath(path) and os.path.isfile(other):
            fd = os.open(other, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    t0 = time.perf_counter()
    huge = read_through_2mb_mapping(path)
    if huge is not None and huge < 0.9:
        _drop_from_page_cache(path)
        huge = read_through_2mb_mapping(path)
    PAGE_CACHE_HUGE[path] = huge
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


def gemm_peak(m: int, n: int, k: int, dtype: str, threads: int, repeats: int = 3) -> float | None:
    """oneDNN's best matmul GFLOP/s (GOP/s for int8) at this shape, plain or pre-reordered weights
    (benchmarks/gemm_peak.c): dtype f32, bf16, or int8 (u8 x s8 -> s32, the vpdpbusd GEMM with no
    per-block scaling). None where this CPU's oneDNN has no matmul of the dtype (bf16 below AVX-512)."""
    binary = pathlib.Path(tempfile.gettempdir()) / "medground_gemm_peak"
    source = HERE / "gemm_peak.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["gcc", "-O2", str(source), "-ldnnl", "-o", str(binary)], check=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([str(binary), str(m), str(n), str(k), dtype, str(repeats)], check=True,
                         capture_output=True, text=True, env=env)
    result = json.loads(out.stdout)
    if result.get("unsupported"):
        return None
    return max(result["plain_gflops"], result["blocked_gflops"])


def bracket_fractions(rates: list[float], probes: list[float]) -> list[float]:
    """Pass i's rate over the mean of the probes taken just before (probes[i]) and after (probes[i + 1])
    it: this VM's speed wanders within minutes, so a pass is set against the probes that bracket it."""
    if len(probes) != len(rates) + 1:
        raise ValueError(f"{len(rates)} passes need {len(rates) + 1} bracketing probes, not {len(probes)}")
    return [rate / (0.5 * (probes[i] + probes[i + 1])) for i, rate in enumerate(rates)]


# The GEMM a model's many-row linears (encode, prefill) run as, per weight type, on a CPU with AVX-512
# VNNI and BF16 (f16 weights always go to f32 panels).
GEMM_DTYPE = {"f32": "f32", "bf16": "bf16", "f16": "f32", "q8_0": "int8", "q4_0": "int8"}


def gemm_dtype(weight_dtype: str) -> str:
    """The dtype of oneDNN peak to set medground's encode / prefill against for these weights, as
    mg_linear chooses: int8 for q8_0 / q4_0 where the CPU has AVX-512 VNNI (the int8 GEMM), else bf16
    where it has a native bf16 GEMM (bf16 weights, dequantized bf16 panels), else f32 (f32 panels)."""
    from medground import _C

    info = _C.op_kernel_info()
    chosen = GEMM_DTYPE[weight_dtype]
    if chosen == "int8" and info["isa"] not in ("avx512_vnni", "avx512_bf16"):
        chosen = "bf16"
    if chosen == "bf16" and not info["native_bf16_gemm"]:
        chosen = "f32"
    return chosen


def gemm_peaks(shapes, threads: int, dtypes=("f32", "bf16", "int8")) -> dict:
    """Best oneDNN GFLOP/s per dtype over (M, K, N) shapes; None for a dtype this CPU's oneDNN lacks."""
    peaks = {}
    for d in dtypes:
        rates = [gemm_peak(m, n, k, d, threads) for m, k, n in shapes]
        peaks[d] = None if None in rates else max(rates)
    return peaks


def of_peak(rate: float, peak: float | None) -> str:
    """rate as a percentage of peak, or n/a where the peak could not be measured."""
    return "n/a" if not peak else f"{rate / peak:.0%}"


def peak_text(peak: float | None) -> str:
    return "n/a (no oneDNN kernel on this CPU)" if peak is None else f"{peak:.0f}"


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
