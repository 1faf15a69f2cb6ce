"""Dataset tools benchmark (issue: dataset tools; targets: `medground data check`
>= 50k records/s on one core with images stat-only, mask -> boxes >= 200 MP/s).

1. check throughput: N synthetic records (default 300,000) as JSONL — Med-GRIT
   VG / ROC pairs and MeCoVQA-G (LLaVA dicts with <mask>) — over a few thousand
   tiny PNG images and masks (the checker reads image headers only and decodes
   each <mask> file once, to find empty masks; every file is cached). Timed: the whole `medground.data.check`
   call (streaming parse, every per-record check, duplicate/leakage/label
   passes, JSON report) on one thread.
2. mask -> boxes: `mask_objects` on a 4096 x 4096 uint8 mask with ~300 blobs
   (organ-like: mostly background) and on 50 % random noise (the worst case:
   runs of ~2 pixels), per label, binary, and per 8-connected component, in
   megapixels/s.

Runs standalone (`python benchmarks/bench_data.py`, ~10 s); `--records N`,
`--images N`, `--size S` change the sizes; `--full` is accepted (same sizes).
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
sys.path.insert(0, str(HERE.parent / "python"))

import numpy as np  # noqa: E402

from medground import data as md  # noqa: E402

LABELS = ["liver", "spleen", "aorta", "left kidney", "right kidney", "pancreas", "stomach",
          "gallbladder", "inferior vena cava", "esophagus"]
MODALITIES = ["ct", "mr", "x_ray", "ultrasound", "endoscopy", "fundus", "dermoscopy", "pet"]


def _tiny_png(path: pathlib.Path, width: int, height: int, key: int, mask: bool = False) -> None:
    """A small gray PNG: distinct bytes per key (no duplicate-image findings);
    masks get a foreground rectangle (no empty-mask findings)."""
    from PIL import Image

    image = Image.new("L", (width, height))
    image.putpixel((0, 0), key % 256)
    image.putpixel((1, 0), key // 256 % 256)
    if mask:
        image.paste(255, (8 + key % 16, 6, 40, 30))
    image.save(path)


def write_dataset(root: pathlib.Path, n_records: int, n_images: int) -> pathlib.Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = []
    for i in range(n_images):
        modality = MODALITIES[i % len(MODALITIES)]
        name = f"{modality}_00--Synth{i % 7}--case_{i // 20:05d}--z_{i % 20:04d}"
        _tiny_png(root / "images" / f"{name}.png", 64, 48, i)
        _tiny_png(root / "masks" / f"{name}_{LABELS[i % len(LABELS)].replace(' ', '_')}.png", 64, 48, i,
                  mask=True)
        names.append(name)
    rng = np.random.default_rng(0)
    path = root / "records.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for r in range(n_records):
            i = int(rng.integers(n_images))
            name = names[i]
            label = LABELS[i % len(LABELS)]
            x0, y0 = (int(v) for v in rng.integers(0, 500, size=2))
            x1, y1 = x0 + int(rng.integers(5, 400)), y0 + int(rng.integers(5, 400))
            box = f"<box>({x0},{y0}),({x1},{y1})</box>"
            kind = r % 3
            if kind == 0:
                conv = [[f"Picture 1:<img>images/{name}.png</img>\nWhere is the {label}? ({r})",
                         f"The {label} is here: <ref>{label}</ref>{box}"]]
                record = {"id": name, "image": f"images/{name}.png", "conversations": conv}
            elif kind == 1:
                conv = [[f"Picture 1:<img>images/{name}.png</img>\nWhat is in {box}? ({r})", label]]
                record = {"id": name, "image": f"images/{name}.png", "conversations": conv}
            else:
                mask = f"masks/{name}_{label.replace(' ', '_')}.png"
                conv = [{"from": "human", "value": f"<image>\nPlease segment the {label}. ({r})"},
                        {"from": "gpt", "value": f"Sure, it is <SEG>.<mask>{mask}</mask>"}]
                record = {"id": f"{name}-{r}", "image": f"images/{name}.png", "conversations": conv}
            record.update(width=64, height=48)
            handle.write(json.dumps(record) + "\n")
    return path


def bench_check(n_records: int, n_images: int) -> dict:
    os.environ.setdefault("MG_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="mg_bench_data_") as tmp:
        root = pathlib.Path(tmp)
        started = time.perf_counter()
        path = write_dataset(root, n_records, n_images)
        made = time.perf_counter() - started
        size_mb = path.stat().st_size / 1e6
        best = None
        for _ in range(2):
            started = time.perf_counter()
            report = md.check(path, images=root)
            elapsed = time.perf_counter() - started
            best = elapsed if best is None else min(best, elapsed)
        assert report.n_records == n_records, report.n_records
        assert not report.findings, report.summary(5)
    rate = n_records / best
    print(f"check: {n_records} records ({size_mb:.0f} MB JSONL, {n_images} images (header only) + "
          f"masks) in {best:.2f} s = {rate / 1e3:.0f}k records/s, {size_mb / best:.0f} MB/s "
          f"(target >= 50k records/s; data written in {made:.1f} s)")
    return {"records": n_records, "seconds": best, "records_per_s": rate}


def bench_mask(size: int) -> dict:
    rng = np.random.default_rng(0)
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.ogrid[:size, :size]
    for _ in range(300):
        cy, cx = (int(v) for v in rng.integers(0, size, size=2))
        r = int(rng.integers(5, size // 30))
        y0, y1, x0, x1 = max(cy - r, 0), min(cy + r + 1, size), max(cx - r, 0), min(cx + r + 1, size)
        disk = (yy[y0:y1] - cy) ** 2 + (xx[:, x0:x1] - cx) ** 2 <= r * r
        mask[y0:y1, x0:x1][disk] = int(rng.integers(1, 256))
    noise = (rng.random((size, size)) < 0.5).astype(np.uint8)  # worst case: runs of ~2 px
    megapixels = size * size / 1e6
    out = {}
    for mask_name, array in (("blobs", mask), ("noise", noise)):
        for name, kwargs in (("labels", dict(binary=False, connectivity=0)),
                             ("binary", dict(binary=True, connectivity=0)),
                             ("components-8", dict(binary=True, connectivity=8))):
            if mask_name == "noise" and name == "labels":
                continue
            n = len(md.mask_objects(array, **kwargs))
            best = min(_timed(lambda: md.mask_objects(array, **kwargs)) for _ in range(3))
            out[f"{mask_name}/{name}"] = megapixels / best
            print(f"mask->boxes {mask_name:5s} {name:13s}: {size}x{size} ({n} objects) in "
                  f"{best * 1e3:.1f} ms = {megapixels / best:.0f} MP/s (target >= 200 MP/s)")
    return out


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=4096, help="mask side for mask -> boxes")
    parser.add_argument("--full", action="store_true", help="accepted for run_all.py (same sizes)")
    args = parser.parse_args()
    check = bench_check(args.records, args.images)
    masks = bench_mask(args.size)
    ok = check["records_per_s"] >= 50_000 and min(masks.values()) >= 200
    print(json.dumps({"check": check, "mask_mp_per_s": masks, "targets_met": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
