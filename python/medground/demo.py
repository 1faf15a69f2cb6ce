"""``medground demo`` (``make demo``): the main job end to end on real images.

1. Real data: axial slices of the Colin27 brain MRI (``ch2``) with the AAL
   atlas regions as masks, from Debian's ``mricron-data`` (``make deps``
   installs it), written in the SA-Med2D layout Med-GRIT-270k and MeCoVQA
   were built from; plus the real CT/MR slices and organ masks of
   ``../shared/data/images/sam-med2d-demo`` when that folder is present.
2. Grounding records (VG, ROC, SEG) built from the masks with the editable
   templates, then checked (every check of ``medground data check``).
3. Overlays of boxes and masks drawn as PNG.
4. A BiRD-format prediction file evaluated per modality as the paper does.
   Without a model the predictions are a *synthetic baseline* (each
   reference box shifted by a fixed fraction of its size, stated in the
   output) so the evaluator has something to score; with ``--model PATH``
   (``make demo MODEL=PATH``) the model grounds every phrase itself.

It prints what it did and where the files are.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import random
import re
import struct
import sys
from typing import Any, Optional

import numpy as np

MRICRON = pathlib.Path("/usr/share/mricron/templates")
REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED_SAM_DEMO = REPO.parent / "shared" / "data" / "images" / "sam-med2d-demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="build/demo", help="output folder (default build/demo)")
    parser.add_argument("--model", default=os.environ.get("MODEL") or None,
                        help="a BiRD / Qwen-VL checkpoint (or GGUF) to ground the phrases with")
    parser.add_argument("--slices", default="50,70,90", help="axial slice indices of the MRI")
    parser.add_argument("--regions", type=int, default=6, help="atlas regions per slice")
    parser.add_argument("--seed", type=int, default=0, help="template choice seed")


# ------------------------------------------------------------------ NIfTI-1

def read_nifti(path: pathlib.Path) -> np.ndarray:
    """A NIfTI-1 volume (``.nii`` / ``.nii.gz``) as ``[z, y, x]`` (its stored order)."""
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 352:
        raise ValueError(f"{path}: {len(raw)} bytes is too short for a NIfTI-1 file")
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    if struct.unpack(endian + "i", raw[:4])[0] != 348:
        raise ValueError(f"{path}: not a NIfTI-1 file (sizeof_hdr is not 348)")
    dims = struct.unpack(endian + "8h", raw[40:56])
    datatype = struct.unpack(endian + "h", raw[70:72])[0]
    offset = int(struct.unpack(endian + "f", raw[108:112])[0])
    types = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2"}
    if datatype not in types or dims[0] < 3:
        raise ValueError(f"{path}: unsupported NIfTI datatype {datatype} / {dims[0]} dimensions")
    shape = (dims[3], dims[2], dims[1])
    count = shape[0] * shape[1] * shape[2]
    data = np.frombuffer(raw, dtype=endian + types[datatype], count=count, offset=offset)
    return data.reshape(shape)


def _aal_names() -> dict[int, str]:
    names = {}
    for line in (MRICRON / "aal.nii.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            side = {"L": "left", "R": "right"}.get(parts[1].rsplit("_", 1)[-1], "")
            base = parts[1].rsplit("_", 1)[0] if side else parts[1]
            words = re.sub(r"([a-z])([A-Z])", r"\1 \2", base.replace("_", " ")).lower()
            names[int(parts[0])] = (words + (" " + side if side else "")).strip()
    return names


def write_mri_dataset(root: pathlib.Path, slices: list[int], regions: int) -> int:
    """Axial Colin27 slices + AAL region masks in the SA-Med2D layout; returns the image count."""
    from PIL import Image

    volume = read_nifti(MRICRON / "ch2.nii.gz")
    atlas = read_nifti(MRICRON / "aal.nii.gz")
    if volume.shape != atlas.shape:
        raise ValueError(f"ch2 {volume.shape} and aal {atlas.shape} are not on one grid")
    names = _aal_names()
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    written = 0
    for z in slices:
        if not 0 <= z < volume.shape[0]:
            raise ValueError(f"slice {z} outside 0..{volume.shape[0] - 1}")
        # Rows from anterior (top) to posterior, as radiology displays axial slices.
        image = np.ascontiguousarray(np.flipud(volume[z]))
        labels = np.ascontiguousarray(np.flipud(atlas[z]))
        stem = f"mr_00--MNI_Colin27--ch2--z_{z:04d}"
        Image.fromarray(image).save(root / "images" / f"{stem}.png")
        values, counts = np.unique(labels[labels > 0], return_counts=True)
        for value in values[np.argsort(-counts)][:regions]:
            label = names.get(int(value), f"region {int(value)}").replace(" ", "_")
            mask = np.where(labels == value, 255, 0).astype(np.uint8)
            Image.fromarray(mask).save(root / "masks" / f"{stem}_{label}_000.png")
        written += 1
    return written


# --------------------------------------------------------------- predictions

_BOX = re.compile(r"<box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>")


def baseline_response(annotation: str, rng: random.Random, shift: float = 0.3) -> str:
    """The reference answer with every box moved diagonally by s = 0.5..1 x
    ``shift`` of its width and height. A box moved by s in both axes keeps
    IoU (1-s)^2 / (2 - (1-s)^2): 0.57 at s = 0.15, 0.32 at s = 0.3, so part
    of the boxes fall below the 0.5 threshold — a stand-in model whose
    Recall@0.5 is known to be imperfect."""
    def move(match: re.Match) -> str:
        x1, y1, x2, y2 = (int(v) for v in match.groups())
        dx = int(round((x2 - x1) * shift * rng.choice((-1, 1)) * rng.uniform(0.5, 1.0)))
        dy = int(round((y2 - y1) * shift * rng.choice((-1, 1)) * rng.uniform(0.5, 1.0)))
        clamp = lambda v: max(0, min(1000, v))  # noqa: E731
        return f"<box>({clamp(x1 + dx)},{clamp(y1 + dy)}),({clamp(x2 + dx)},{clamp(y2 + dy)})</box>"
    return _BOX.sub(move, annotation)


def _grid_to_pixels(box: tuple, width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1 / 1000 * width, y1 / 1000 * height, x2 / 1000 * width, y2 / 1000 * height]


def _pixels_to_grid_text(boxes: Any, width: int, height: int) -> str:
    return "".join("<box>({},{}),({},{})</box>".format(
        int(round(b.x1 / width * 1000)), int(round(b.y1 / height * 1000)),
        int(round(b.x2 / width * 1000)), int(round(b.y2 / height * 1000))) for b in boxes)


def predictions_for(records: list[dict[str, Any]], model: Any, root: pathlib.Path,
                    seed: int) -> dict[str, list[dict[str, Any]]]:
    """Prediction records per task, in the format medground.evaluate reads.

    Without a model: VG only, from the synthetic baseline. With one: VG
    (``ground``) and ROC (``refer``) for BiRD-like models; SEG (``segment``
    with the phrase for MedPLIB, the reference box as the prompt for
    SAM-Med2D)."""
    rng = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        task, image = record.get("task"), str(root / record["image"])
        width, height = record["width"], record["height"]
        if task in ("VG", "ROC"):
            question, answer = record["conversations"][0]
        if task == "VG" and (model is None or hasattr(model, "ground")):
            if model is None:
                response = baseline_response(answer, rng)
            else:
                phrase = re.search(r"<ref>(.*?)</ref>", answer).group(1)
                response = f"<ref>{phrase}</ref>" + _pixels_to_grid_text(model.ground(image, phrase), width, height)
            out.setdefault("vg", []).append({"id": record["id"], "image": record["image"], "question": question,
                                             "annotation": answer, "response": response})
        elif task == "ROC" and model is not None and hasattr(model, "ground") and hasattr(model, "refer"):
            box = tuple(int(v) for v in _BOX.search(question).groups())
            response = model.refer(image, _grid_to_pixels(box, width, height))
            out.setdefault("roc", []).append({"id": record["id"], "image": record["image"], "question": question,
                                              "annotation": answer, "response": response})
        elif task == "SEG" and model is not None:
            human, gpt = record["conversations"][0]["value"], record["conversations"][1]["value"]
            gt_mask = str(root / re.search(r"<mask>(.*?)</mask>", gpt).group(1))
            if hasattr(model, "segment"):
                pred_mask = model.segment(image, human.replace("<image>\n", "")).to_dict()["pred_mask"]
            elif hasattr(model, "set_image"):
                from .data import load_mask, mask_to_boxes, rle_encode
                from .image import load

                x1, y1, x2, y2 = mask_to_boxes(load_mask(gt_mask))[0]  # inclusive pixel box -> edges
                model.set_image(load(image))
                masks, _, _ = model.predict(box=[x1, y1, x2 + 1, y2 + 1])
                pred_mask = rle_encode(np.ascontiguousarray(masks[0]))
                if isinstance(pred_mask["counts"], bytes):
                    pred_mask["counts"] = pred_mask["counts"].decode("ascii")
            else:
                continue
            out.setdefault("seg", []).append({"id": record["id"], "image": record["image"],
                                              "pred_mask": pred_mask, "gt_mask": gt_mask})
    return out


# ----------------------------------------------------------------------- run

def _step(number: int, text: str) -> None:
    print(f"\n[{number}] {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    from . import data as mdata

    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    roots: list[pathlib.Path] = []

    _step(1, "real images and masks")
    if (MRICRON / "ch2.nii.gz").exists() and (MRICRON / "aal.nii.gz").exists():
        mri_root = out / "colin27-aal"
        slices = [int(s) for s in str(args.slices).split(",") if s.strip()]
        n = write_mri_dataset(mri_root, slices, args.regions)
        print(f"    {n} axial slices of the Colin27 T1 MRI with AAL atlas regions as masks "
              f"({MRICRON}, Debian mricron-data) -> {mri_root}")
        roots.append(mri_root)
    else:
        print(f"    {MRICRON} is missing (apt-get install mricron-data, or run make deps)")
    if SHARED_SAM_DEMO.exists():
        print(f"    SA-Med2D demo CT/MR slices with organ masks: {SHARED_SAM_DEMO}")
        roots.append(SHARED_SAM_DEMO)
    if not roots:
        print("medground demo: no real image data found", file=sys.stderr)
        return 3

    _step(2, "grounding records from the masks (Med-GRIT VG / ROC, MeCoVQA-G SEG templates)")
    all_records: list[tuple[pathlib.Path, list[dict[str, Any]]]] = []
    for index, root in enumerate(roots):
        metas = mdata.scan_sam_med2d(root)
        records = list(mdata.build_records(metas, seed=args.seed))
        path = out / f"records-{index}-{root.name}.jsonl"
        mdata.write_records(records, path)
        objects = sum(len(m.objects) for m in metas)
        print(f"    {root.name}: {len(metas)} images, {objects} objects -> {len(records)} records: {path}")
        all_records.append((root, records))

    _step(3, "checking the records (syntax, coordinates, boxes vs masks, images, leakage)")
    failed = False
    for index, (root, records) in enumerate(all_records):
        path = out / f"records-{index}-{root.name}.jsonl"
        report = mdata.check(path, images=root)
        report_path = out / f"check-{index}-{root.name}.json"
        report.to_json(report_path)
        print("    " + report.summary(max_findings=10).replace("\n", "\n    "))
        print(f"    JSON report: {report_path}")
        failed |= not report.ok

    _step(4, "overlays of boxes and masks")
    pictures = out / "overlays"
    pictures.mkdir(exist_ok=True)
    for root, records in all_records:
        shown = [r for r in records if r.get("task") == "VG"][:3]
        for record in shown:
            overlay = mdata.draw_record(record, root)
            label = re.search(r"<ref>(.*?)</ref>", record["conversations"][0][1]).group(1)
            target = pictures / f"{record['id']}--{label.replace(' ', '_')}.png"
            overlay.to_png(target)
            print(f"    {target}")

    _step(5, "predictions evaluated as the papers do (per modality)")
    model = None
    if args.model:
        from . import load

        model = load(args.model)
        print(f"    model: {args.model} ({type(model).__name__}): "
              + {"BiRD": "grounding (VG) and referring classification (ROC)",
                 "MedPLIB": "pixel grounding (SEG)",
                 "SamMed2D": "masks from the reference boxes (SEG)"}.get(type(model).__name__, ""))
    else:
        print("    no --model / MODEL=: predictions are a synthetic baseline (reference boxes "
              "shifted by 15-30% of their size), to show the evaluator")
    by_task: dict[str, list[dict[str, Any]]] = {}
    for root, records in all_records:
        for task, rows in predictions_for(records, model, root, args.seed).items():
            by_task.setdefault(task, []).extend(rows)
    from . import evaluate

    for task, rows in by_task.items():
        prediction_path = out / f"predictions-{task}.jsonl"
        with open(prediction_path, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"    {task}: {len(rows)} predictions: {prediction_path}")
        result = evaluate(str(prediction_path), task=task)
        table = result.table
        text = table.to_string() if hasattr(table, "to_string") else str(table)
        print("    " + text.replace("\n", "\n    "))
        if getattr(result, "average_rule", ""):
            print(f"    average row: {result.average_rule}")
    print(f"\ndone: everything is under {out}")
    return 1 if failed else 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="medground demo", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
