"""The benchmarks' pass bookkeeping (benchmarks/bench_bird.py, machine.py): the faster pass counts, and
each pass is set against the probes taken just before and after it (read bandwidth around decode, the
GEMM peak around encode and prefill)."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import bench_bird as bb  # noqa: E402
import machine  # noqa: E402


def test_bracket_fractions_use_the_mean_of_the_probes_around_each_pass():
    assert machine.bracket_fractions([10.0, 20.0], [10.0, 30.0, 10.0]) == [0.5, 1.0]
    assert machine.bracket_fractions([], [7.0]) == []
    with pytest.raises(ValueError, match="2 passes need 3 bracketing probes, not 2"):
        machine.bracket_fractions([1.0, 2.0], [1.0, 2.0])


def test_timed_passes_probe_before_the_first_pass_and_after_every_pass():
    log, values = [], iter([100.0, 200.0, 300.0, 400.0])

    def probe():
        log.append("probe")
        return next(values)

    out = bb.timed_passes(lambda: log.append("pass"), 3, probe)
    assert log == ["probe", "pass", "probe", "pass", "probe", "pass", "probe"]
    assert out["peaks"] == [100.0, 200.0, 300.0, 400.0]
    assert len(out["seconds"]) == 3 and all(s >= 0 for s in out["seconds"])


def test_timed_passes_without_a_probe_dtype_take_no_probes(monkeypatch):
    monkeypatch.setitem(bb.PROBE, "dtype", None)
    calls = []
    out = bb.timed_passes(lambda: calls.append(1), 2, bb.peak_probe)
    assert calls == [1, 1] and out["peaks"] == []
    assert bb.timed_passes(lambda: None, 2)["peaks"] == []


def test_parts_result_keeps_every_pass_and_counts_the_faster():
    encode = {"seconds": [9.0, 8.0], "peaks": [1.0, 2.0, 3.0]}
    prefill = {"seconds": [4.0, 2.0], "peaks": []}
    r = bb.parts_result(encode, prefill, n_tokens=300)
    assert r["encode_s"] == 8.0 and r["encode_passes_s"] == [9.0, 8.0]
    assert r["encode_bracket_peaks"] == [1.0, 2.0, 3.0]
    assert r["prefill_tok_s"] == 150.0 and r["prefill_passes_s"] == [4.0, 2.0]
    assert r["prefill_bracket_peaks"] == []


def test_weights_2mb_reads_this_process_mappings_of_the_file_or_folder(tmp_path):
    import mmap

    import numpy as np

    path = tmp_path / "weights.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 255, 6 << 20, dtype=np.uint8).tobytes())
    assert machine.weights_2mb(str(path)) is None  # not mapped by this process
    with open(path, "rb") as f:
        view = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    pages = np.frombuffer(view, dtype=np.uint8)
    assert int(pages[::4096].astype(np.int64).sum()) >= 0  # every page faulted in
    file_share = machine.weights_2mb(str(path))
    folder_share = machine.weights_2mb(str(tmp_path))
    record = machine.memory_record(str(path))
    del pages
    view.close()
    assert file_share is not None and 0.0 <= file_share <= 1.0 and folder_share == file_share
    assert record["weights_2mb"] == file_share and record["peak_rss_gb"] > 0.0
    assert machine.mapped_2mb_note({"weights_2mb": file_share}).startswith("  weights 2 MB-mapped ")
    assert machine.mapped_2mb_note({"weights_2mb": None}) == ""


def test_read_into_page_cache_records_the_share_mapped_with_2mb_entries(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * (24 << 12))  # 6 MB
    seconds = machine.read_into_page_cache(str(path))
    share = machine.PAGE_CACHE_HUGE[str(path)]
    assert seconds >= 0.0 and (share is None or 0.0 <= share <= 1.0)
    assert path.read_bytes()[:512] == bytes(range(256)) * 2  # the file itself is untouched
