"""`make demo` (``medground demo``) end to end, and the CLI's shared behaviour.

The demo's data are real: Debian's mricron-data (Colin27 MRI + AAL atlas),
which `make deps` installs; the test skips with that reason when absent.
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medground import demo

REPO = pathlib.Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(REPO / "python"))


def _needs_mricron() -> None:
    if not (demo.MRICRON / "ch2.nii.gz").exists():
        pytest.skip(f"{demo.MRICRON} is missing (Debian mricron-data; make deps installs it)")


def test_nifti_reader_against_a_file_written_here(tmp_path):
    # A NIfTI-1 file laid out by hand from the standard (348-byte header,
    # dim[] at 40, datatype at 70, vox_offset at 108, x fastest).
    volume = np.arange(4 * 3 * 2, dtype=np.int16).reshape(2, 3, 4) * 7 - 50  # [z, y, x]
    header = bytearray(352)
    header[0:4] = (348).to_bytes(4, "little")
    header[40:56] = np.array([3, 4, 3, 2, 1, 1, 1, 1], "<i2").tobytes()
    header[70:72] = (4).to_bytes(2, "little")  # DT_INT16
    header[72:74] = (16).to_bytes(2, "little")
    header[108:112] = np.array([352.0], "<f4").tobytes()
    header[344:348] = b"n+1\0"
    path = tmp_path / "v.nii.gz"
    path.write_bytes(gzip.compress(bytes(header) + volume.astype("<i2").tobytes()))
    np.testing.assert_array_equal(demo.read_nifti(path), volume)
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"\0" * 400)
    with pytest.raises(ValueError, match="sizeof_hdr"):
        demo.read_nifti(bad)


def test_baseline_response_moves_boxes_and_keeps_text():
    import random

    annotation = "<ref>liver</ref><box>(100,200),(300,400)</box>"
    moved = demo.baseline_response(annotation, random.Random(0))
    assert moved.startswith("<ref>liver</ref><box>(") and moved != annotation
    coords = [int(v) for v in moved.replace("<ref>liver</ref><box>(", "").replace("),(", ",")
              .replace(")</box>", "").split(",")]
    x1, y1, x2, y2 = coords
    assert (x2 - x1, y2 - y1) == (200, 200)  # shifted, not resized
    assert 30 <= abs(x1 - 100) <= 60 and 30 <= abs(y1 - 200) <= 60  # 0.15..0.3 of the size


def test_demo_end_to_end(tmp_path):
    _needs_mricron()
    out = tmp_path / "demo"
    completed = subprocess.run([sys.executable, "-m", "medground", "demo", "--out", str(out)],
                               env=ENV, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    text = completed.stdout
    for step in ("[1]", "[2]", "[3]", "[4]", "[5]", "done:"):
        assert step in text
    # Records built from the real atlas: each slice's regions as VG/ROC/SEG.
    records = [json.loads(line) for line in (out / "records-0-colin27-aal.jsonl").read_text().splitlines()]
    assert {r["task"] for r in records} == {"VG", "ROC", "SEG"}
    assert len(records) == 3 * 6 * 3  # 3 slices x 6 regions x 3 tasks (one instance each)
    # Every VG box is the bounding box of its mask on the 0..1000 grid.
    root = out / "colin27-aal"
    for record in [r for r in records if r["task"] == "VG"][:6]:
        answer = record["conversations"][0][1]
        label = answer.split("<ref>")[1].split("</ref>")[0].replace(" ", "_")
        stem = pathlib.Path(record["image"]).stem
        mask = np.asarray(Image.open(root / "masks" / f"{stem}_{label}_000.png")) > 0
        ys, xs = np.nonzero(mask)
        h, w = mask.shape
        box = answer.split("<box>(")[1].split(")</box>")[0].replace("),(", ",")
        x1, y1, x2, y2 = (int(v) for v in box.split(","))
        # the papers' rule is a rounding of pixel / size * 1000: allow one grid step
        assert abs(x1 - xs.min() / w * 1000) <= 1.0 + 1000 / w
        assert abs(y2 - (ys.max() + 1) / h * 1000) <= 1.0 + 1000 / h
    report = json.loads((out / "check-0-colin27-aal.json").read_text())
    assert report["n_records"] == len(records)
    assert report["counts"].get("error", 0) == 0
    overlays = sorted((out / "overlays").glob("*.png"))
    # The overlays decode, and show the slice at its size (181 x 217 MNI voxels).
    assert len([p for p in overlays if p.name.startswith("mr_00")]) == 3
    assert {Image.open(p).size for p in overlays if p.name.startswith("mr_00")} == {(181, 217)}
    predictions = [json.loads(line) for line in (out / "predictions-vg.jsonl").read_text().splitlines()]
    assert predictions and all({"id", "image", "annotation", "response"} <= set(p) for p in predictions)


def test_cli_help_and_unknown_command():
    completed = subprocess.run([sys.executable, "-m", "medground", "--help"], env=ENV,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0
    for command in ("demo", "data", "convert", "inspect"):
        assert command in completed.stdout
    completed = subprocess.run([sys.executable, "-m", "medground", "no-such-command"], env=ENV,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and "invalid choice" in completed.stderr
    completed = subprocess.run([sys.executable, "-m", "medground", "demo", "--help"], env=ENV,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and "--model" in completed.stdout


def test_demo_with_models(tmp_path):
    """MODEL= runs the model over the same records: BiRD grounds and refers, SAM-Med2D segments."""
    _needs_mricron()
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(REPO / "tests"))
    from reference import sam_med2d as sam_ref
    from test_sam_med2d import SMALL

    from medground import testing

    bird = testing.tiny_bird_checkpoint(tmp_path / "bird")
    sam = tmp_path / "sam-med2d_b.pth"
    torch.save({"model": sam_ref.build_sam_med2d(**SMALL, seed=0).state_dict()}, sam)
    for model, tasks in ((bird, {"vg", "roc"}), (sam, {"seg"})):
        out = tmp_path / f"demo-{model.name}"
        done = subprocess.run([sys.executable, "-m", "medground", "demo", "--out", str(out), "--model", str(model),
                               "--slices", "80", "--regions", "2"],
                              env=ENV, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        written = {p.stem.split("-", 1)[1] for p in out.glob("predictions-*.jsonl")}
        assert written == tasks
        for task in tasks:
            rows = [json.loads(l) for l in (out / f"predictions-{task}.jsonl").read_text().splitlines()]
            assert rows and f"{task}: {len(rows)} predictions" in done.stdout
