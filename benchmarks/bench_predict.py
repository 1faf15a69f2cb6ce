"""Batch inference scale-out: records/s with 1 and N local workers and over a
Dask LocalCluster with N workers, on a small random-weight BiRD (the same
model and records for every run).

Targets (issue 12): N local workers >= 0.8 x N times 1 worker while
N <= cores / threads-per-worker; the Dask path's per-record overhead over
the local path < 5 %. Printed as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "python"))


def build(root: pathlib.Path, n_records: int, width: int) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    import numpy as np
    from PIL import Image

    import medground
    import predict_helpers
    from reference import qwen_vl as ref

    config = ref.tiny_config(vocab_size=503)
    config["hidden_size"] = width
    config["intermediate_size"] = 2 * width
    config["visual"]["output_dim"] = width
    config["num_hidden_layers"] = 4
    folder = root / "bird"
    ref.save_checkpoint(folder, config, ref.random_state_dict(config, seed=1))
    predict_helpers.write_tiny_tiktoken(folder / "qwen.tiktoken")
    gguf = root / "bird.gguf"
    medground.convert(folder, gguf, type="f32", progress=False)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n_records):
        name = f"ct_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / name)
        lines.append(json.dumps({"id": f"r{i}", "image": name, "question": "Where is <ref>the liver</ref>?",
                                 "annotation": "<ref>the liver</ref><box>(1,1),(9,9)</box>"}))
    records = root / "records.jsonl"
    records.write_text("\n".join(lines) + "\n")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "tests"), str(HERE.parent / "python")])
    return gguf, images, records


def timed(label: str, fn) -> float:
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    print(f"  {label:<34} {seconds:7.2f} s")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="more records and a wider model")
    args = parser.parse_args()
    import medground

    workers = max(1, min(2, (os.cpu_count() or 1)))
    n_records = 128 if args.full else 48
    generation = {"max_new_tokens": 8}
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        gguf, images, records = build(root, n_records, 1024 if args.full else 512)
        common = dict(image_root=str(images), progress=False, threads_per_worker=1, chunk_size=4, **generation)
        print(f"{n_records} records, {workers} workers of 1 thread, max_new_tokens {generation['max_new_tokens']}")
        # Warm-up (page cache, imports) so the first timed run is not penalised.
        medground.predict(records, str(gguf), "vg", root / "warm.jsonl", **common)
        one = timed("1 process", lambda: medground.predict(records, str(gguf), "vg", root / "a.jsonl", **common))
        local = timed(f"{workers} local workers", lambda: medground.predict(
            records, str(gguf), "vg", root / "b.jsonl", workers=workers, **common))
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            medground.predict(records, str(gguf), "vg", root / "warm2.jsonl", dask=client, **common)
            dask = timed(f"Dask LocalCluster, {workers} workers", lambda: medground.predict(
                records, str(gguf), "vg", root / "c.jsonl", dask=client, **common))
    scaling = one / local
    print(f"scaling {workers} local workers / 1: {scaling:.2f}x (target >= {0.8 * workers:.1f}x)")
    print(f"Dask per-record overhead over local workers: {(dask - local) / local * 100:+.1f} % (target < 5 %)")
    print("note: each local run pays its process start-up (spawn + imports + model load) inside the timing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
