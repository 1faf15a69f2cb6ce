"""Meta information from names / tables / arguments, template records, statistics and overlays.

References are independent: meta fields written out by hand from the names in
../shared/data; boxes recomputed from the real mask PNGs with PIL + NumPy and
the grid rule in exact rationals; statistics recounted in Python from the
records; overlays decoded with PIL and compared pixel by pixel with the image.
"""

from __future__ import annotations

import io
import json
import math
import re
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from medground import data as md
from medground.data.build import image_stem, load_json_template

from conftest import shared_path


# ------------------------------------------------------------ meta

@pytest.mark.parametrize("name,expected", [
    ("ct_00--AbdomenCT1K--Case_00220--x_0359.png",
     ("ct", "AbdomenCT1K", "abdomen", "x", "AbdomenCT1K--Case_00220")),
    ("ct_00--CTSpine1K_Full--1.3.6.1.4.1.9328.50.4.0115--x_0352.png",
     ("ct", "CTSpine1K_Full", "spine", "x", "CTSpine1K_Full--1.3.6.1.4.1.9328.50.4.0115")),
    ("x_ray--Chest_Image_Pneum--1.2.276.0.7230010.3.1.4.8323329.2320.1517875172.159451--2d_none.png",
     ("x", "Chest_Image_Pneum", "chest", "2d",
      "Chest_Image_Pneum--1.2.276.0.7230010.3.1.4.8323329.2320.1517875172.159451")),
    ("dermoscopy_00--isic2018_task1--ISIC_0014156--2d_none.png",
     ("dermoscopy", "isic2018_task1", "skin", "2d", "isic2018_task1--ISIC_0014156")),
    ("ultrasound_00--ultrasound_nerve_segmentation--19_3--2d_none.png",
     ("ultrasound", "ultrasound_nerve_segmentation", "neck", "2d", "ultrasound_nerve_segmentation--19_3")),
    ("MIDRC-RICORD-1C-419639-001464-32013-0.png", ("", "", "", "", "MIDRC-RICORD-1C-419639-001464-32013-0")),
    ("09_MRI-FLAIR_brain.png", ("mr", "BiomedParse", "brain", "2d", "09_MRI-FLAIR_brain")),
    ("15_X-Ray_chest.png", ("x", "BiomedParse", "chest", "2d", "15_X-Ray_chest")),
    ("24_endoscope_colon.png", ("endoscopy", "BiomedParse", "colon", "2d", "24_endoscope_colon")),
    ("amos_0507_31.png", ("mr", "AMOS", "abdomen", "", "amos_0507")),
    ("amos_0004_75.png", ("ct", "AMOS", "abdomen", "", "amos_0004")),
    ("s0114_111.png", ("ct", "TotalSegmentator", "whole body", "", "s0114")),
])
def test_parse_name(name, expected):
    meta = md.parse_name(name)
    assert (meta["modality"], meta["dataset"], meta["region"], meta["orientation"], meta["case"]) == expected


def test_exported():
    import medground

    assert medground.data is md and "data" in medground.__all__
    assert md.__all__ and all(hasattr(md, name) for name in md.__all__)


def test_every_shared_image_name_parses():
    names = sorted(p.name for p in shared_path("images", "medplib-demo").glob("*.png"))
    assert len(names) == 9
    modalities = [md.parse_name(n)["modality"] for n in names]
    # by hand from the names: 1 MIDRC (unknown), 5 CT, dermoscopy, ultrasound, X-ray
    assert sorted(modalities) == sorted(["", "ct", "ct", "ct", "ct", "ct", "dermoscopy", "ultrasound", "x"])
    assert image_stem("a.b.png") == "a.b" and image_stem("x--1.2.3--2d_none") == "x--1.2.3--2d_none"


def test_mapping_table_and_arguments(tmp_path):
    table = {"modalities": {"ct": "ct"},
             "datasets": [{"pattern": r"^case\d+_", "dataset": "Mine", "modality": "pet", "region": "lung"}]}
    assert md.parse_name("case12_5.png", table)["modality"] == "pet"
    assert md.parse_name("case12_5.png", table)["region"] == "lung"
    assert md.parse_name("other.png", table)["modality"] == ""
    src = shared_path("images", "sam-med2d-demo")
    metas = md.scan_sam_med2d(src, meta_overrides={"modality": "mr", "region": "belly"})
    assert {(m.modality, m.region) for m in metas} == {("mr", "belly")}
    records = list(md.build_records(metas, tasks=["VG"]))
    assert {r["modality"] for r in records} == {"mr"}


def _mask_box(path):
    pixels = np.asarray(Image.open(path))
    gray = pixels if pixels.ndim == 2 else pixels[..., 0]
    ys, xs = np.nonzero(gray)
    return (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), gray.shape[1], gray.shape[0], len(xs)


def _grid(box, w, h):
    x0, y0, x1, y1 = box
    return (math.floor(Fraction(1000 * x0, w)), math.floor(Fraction(1000 * y0, h)),
            math.ceil(Fraction(1000 * (x1 + 1), w)), math.ceil(Fraction(1000 * (y1 + 1), h)))


def test_sam_med2d_meta_matches_masks():
    src = shared_path("images", "sam-med2d-demo")
    metas = md.scan_sam_med2d(src)
    tables = {**{k: "train" for k in json.loads((src / "image2label_train.json").read_text())},
              **{v: "test" for v in json.loads((src / "label2image_test.json").read_text()).values()}}
    assert {m.image: m.split for m in metas} == {k.split("/", 1)[1]: v for k, v in tables.items()}
    n_masks = 0
    for meta in metas:
        assert (meta.width, meta.height) == Image.open(src / meta.image).size
        for obj in meta.objects:
            for mask, pixel, grid, area in zip(obj.masks, obj.pixel_boxes, obj.grid_boxes, obj.areas):
                assert re.fullmatch(re.escape(meta.stem) + "_" + obj.label.replace(" ", "_") + r"_\d{3}\.png",
                                    mask.split("/")[-1])
                box, w, h, n = _mask_box(src / mask)
                assert (w, h) == (meta.width, meta.height)
                assert tuple(pixel) == box and area == n and tuple(grid) == _grid(box, w, h)
                n_masks += 1
    # every one of the 30 masks, as 28 objects (hip left / right have 2 instances);
    # amos_0507_31 has no masks and is in neither table
    assert n_masks == 30 and sum(len(m.objects) for m in metas) == 28
    assert "images/amos_0507_31.png" not in {m.image for m in metas}
    hip = next(o for m in metas for o in m.objects if o.label == "hip left")
    assert len(hip.masks) == 2


def test_biomedparse_meta_matches_masks():
    src = shared_path("images", "biomedparse-demo")
    metas = md.scan_biomedparse(src)
    assert len(metas) == 27 and sum(len(m.objects) for m in metas) == 71
    for meta in metas[::4]:
        for obj in meta.objects:
            (mask,) = obj.masks
            assert mask == f"demo_mask/{meta.stem}_{obj.label.replace(' ', '+')}.png"
            box, w, h, n = _mask_box(src / mask)
            assert tuple(obj.pixel_boxes[0]) == box and obj.areas[0] == n
            assert tuple(obj.grid_boxes[0]) == _grid(box, w, h)


# ------------------------------------------------------------ templates

def _write_templates(directory, **overrides):
    for name in ("grounding.json", "referring.json", "segmentation.json", "datasets.json"):
        data = load_json_template(name)
        data.update(overrides.get(name, {}))
        (directory / name).write_text(json.dumps(data))


def test_template_records(tmp_path):
    src = shared_path("images", "sam-med2d-demo")
    metas = md.scan_sam_med2d(src)
    _write_templates(tmp_path, **{
        "grounding.json": {"questions": ["Where is the {label}?"], "answers": ["{answer}"]},
        "referring.json": {"questions": ["What is in {box}?"], "answers": ["It is {label}."]},
        "segmentation.json": {"questions": ["Please segment the {label} in this image."],
                              "answers": ["<SEG><mask>{mask}</mask>"]}})
    records = list(md.build_records(metas, template_dir=tmp_path))
    by_task = {t: [r for r in records if r["task"] == t] for t in ("VG", "ROC", "SEG")}
    n_objects = sum(len(m.objects) for m in metas)
    n_instances = sum(len(o.masks) for m in metas for o in m.objects)
    assert len(by_task["VG"]) == len(by_task["SEG"]) == n_objects
    assert len(by_task["ROC"]) == n_instances  # one ROC record per instance box
    meta = metas[0]
    obj = meta.objects[0]
    vg = by_task["VG"][0]
    boxes = "".join("<box>({},{}),({},{})</box>".format(*b) for b in obj.grid_boxes)
    assert vg["conversations"] == [[f"Picture 1:<img>{meta.image}</img>\nWhere is the {obj.label}?",
                                    f"<ref>{obj.label}</ref>{boxes}"]]
    assert vg["id"] == meta.stem and vg["image"] == meta.image
    assert (vg["width"], vg["height"]) == (meta.width, meta.height)
    roc = by_task["ROC"][0]
    assert roc["conversations"][0][1] == f"It is {obj.label}."
    seg = by_task["SEG"][0]
    assert seg["conversations"] == [
        {"from": "human", "value": f"<image>\nPlease segment the {obj.label} in this image."},
        {"from": "gpt", "value": f"<SEG><mask>{obj.masks[0]}</mask>"}]
    # the hand-made wording still checks clean (ROC answers are no bare label now: not mask-checked)
    report = md.check_records(records, images=src, masks=src / "masks")
    assert report.findings == []


def test_seeded_and_text_generator():
    src = shared_path("images", "biomedparse-demo")
    metas = md.scan_biomedparse(src)
    a = list(md.build_records(metas, seed=1))
    assert a == list(md.build_records(metas, seed=1))
    b = list(md.build_records(metas, seed=2))
    assert a != b and [r["id"] for r in a] == [r["id"] for r in b]
    calls = []

    def generator(task, meta, obj, question, answer):
        calls.append(task)
        if task == "VG":
            return question.upper(), answer
        return None

    c = list(md.build_records(metas, seed=1, tasks=["VG", "SEG"], text_generator=generator))
    assert calls.count("VG") == calls.count("SEG") == 71
    vg_a = [r for r in a if r["task"] == "VG"]
    vg_c = [r for r in c if r["task"] == "VG"]
    assert vg_c[0]["conversations"][0][0].endswith(vg_a[0]["conversations"][0][0].split("\n", 1)[1].upper())
    with pytest.raises(ValueError, match="unknown task"):
        list(md.build_records(metas, tasks=["QA"]))


def test_bad_template_dir(tmp_path):
    _write_templates(tmp_path, **{"grounding.json": {"questions": []}})
    with pytest.raises(ValueError, match="non-empty 'questions'"):
        list(md.build_records([], template_dir=tmp_path))


# ------------------------------------------------------------ statistics

def test_stats_recounted(tmp_path):
    src = shared_path("images", "biomedparse-demo")
    records = list(md.build_records(md.scan_biomedparse(src), seed=0))
    records[0] = dict(records[0], conversations=records[0]["conversations"] * 3)  # a 3-turn record
    path = tmp_path / "r.json"
    md.write_records(records, path)
    stats = md.stats(path)
    table: dict = {}
    for r in records:
        table.setdefault(r["modality"], {}).setdefault(r["task"], 0)
        table[r["modality"]][r["task"]] += 1
    assert stats["modality_task"] == table
    assert stats["turns"] == {"1": len(records) - 1, "3": 1}
    boxes = [tuple(int(v) for v in m.groups()) for r in records
             for m in re.finditer(r"<box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>", json.dumps(r))]
    assert stats["boxes"]["count"] == len(boxes)
    assert stats["boxes"]["mean_width"] == pytest.approx(np.mean([b[2] - b[0] for b in boxes]))
    assert stats["boxes"]["mean_height"] == pytest.approx(np.mean([b[3] - b[1] for b in boxes]))
    edges = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.01]
    hist = [0] * len(edges)
    for x0, y0, x1, y1 in boxes:
        area = (x1 - x0) * (y1 - y0) / 1e6
        hist[next(i for i, e in enumerate(edges) if area < e or i == len(edges) - 1)] += 1
    assert stats["boxes"]["area_fraction_counts"] == hist
    refs = [m.group(1) for r in records for m in re.finditer(r"<ref>(.*?)</ref>", json.dumps(r))]
    assert stats["labels"] == {l: refs.count(l) for l in set(refs)}
    text = md.format_stats(stats)
    assert "records per modality x task" in text and "turns per record" in text


# ------------------------------------------------------------ overlays

def test_draw_vg_record_box_pixels(tmp_path):
    src = shared_path("images", "sam-med2d-demo")
    records = list(md.build_records(md.scan_sam_med2d(src), tasks=["VG"]))
    record = next(r for r in records if r["conversations"][0][1].count("<box>") == 1)
    overlay = md.draw_record(record, src)
    png = overlay.to_png(tmp_path / "vg.png")
    drawn = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "vg.png").convert("RGB")), drawn)
    original = np.asarray(Image.open(src / record["image"]).convert("RGB")).astype(int)
    h, w = original.shape[:2]
    g = [int(v) for v in re.search(r"<box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>",
                                   record["conversations"][0][1]).groups()]
    # the grid box maps back to pixel edges g/1000*size; drawn on the pixels that hold them
    left, top = math.floor(g[0] * w / 1000), math.floor(g[1] * h / 1000)
    right, bottom = math.ceil(g[2] * w / 1000) - 1, math.ceil(g[3] * h / 1000) - 1
    color = np.array(md.draw.PALETTE[0])
    changed = np.any(drawn != original, axis=2)
    ys, xs = np.nonzero(changed)
    label_rows = ys < top  # the label text sits above the box
    assert (xs[~label_rows].min(), ys[~label_rows].min(), xs[~label_rows].max(), ys[~label_rows].max()) == (
        left, top, right, bottom)
    for y in range(top, bottom + 1):
        assert (drawn[y, left] == color).all() and (drawn[y, right] == color).all()
    for x in range(left, right + 1):
        assert (drawn[top, x] == color).all() and (drawn[bottom, x] == color).all()
    inner = drawn[top + 2:bottom - 1, left + 2:right - 1]
    assert np.array_equal(inner, original[top + 2:bottom - 1, left + 2:right - 1])
    assert overlay._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_seg_record_mask_tint():
    src = shared_path("images", "sam-med2d-demo")
    records = list(md.build_records(md.scan_sam_med2d(src), tasks=["SEG"]))
    record = records[0]
    drawn = np.asarray(Image.open(io.BytesIO(md.draw_record(record, src).to_png())).convert("RGB")).astype(int)
    original = np.asarray(Image.open(src / record["image"]).convert("RGB")).astype(int)
    mask_path = re.search(r"<mask>(.*?)</mask>", record["conversations"][1]["value"]).group(1)
    mask = np.asarray(Image.open(src / mask_path))
    mask = (mask if mask.ndim == 2 else mask[..., 0]) > 0
    assert np.array_equal(drawn[~mask], original[~mask])
    alpha = int(255 * 0.45) / 255
    blended = np.array(md.draw.PALETTE[0]) * alpha + original[mask] * (1 - alpha)
    assert np.abs(drawn[mask] - blended).max() <= 1


def test_cli_draw(tmp_path, capsys):
    from medground import cli

    src = shared_path("images", "sam-med2d-demo")
    path = tmp_path / "r.jsonl"
    md.write_records(md.build_records(md.scan_sam_med2d(src), tasks=["VG", "SEG"]), path)
    assert cli.main(["data", "draw", str(path), "--index", "2", "--images", str(src),
                     "--out", str(tmp_path / "o.png")]) == 0
    assert Image.open(tmp_path / "o.png").size == (512, 512)
    assert cli.main(["data", "draw", str(path), "--index", "999", "--images", str(src),
                     "--out", str(tmp_path / "o.png")]) == 3
    assert "--index 999" in capsys.readouterr().err


def test_cli_build_biomedparse_with_overrides(tmp_path, capsys):
    from medground import cli

    src = shared_path("images", "biomedparse-demo")
    out = tmp_path / "b.jsonl"
    assert cli.main(["data", "build", "--biomedparse", str(src), "--out", str(out), "--tasks", "VG,SEG",
                     "--modality", "ct", "--region", "body", "--split", "test", "--seed", "5"]) == 0
    assert "wrote 142 records for 27 images / 71 objects" in capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 142 and {r["task"] for r in records} == {"VG", "SEG"}
    assert {(r["modality"], r["split"]) for r in records} == {("ct", "test")}
    assert cli.main(["data", "build", "--biomedparse", str(src), "--out", str(out), "--tasks", "QA"]) == 3
    assert "unknown task" in capsys.readouterr().err


def test_sam_med2d_tables_that_leak(tmp_path):
    """An image listed in both SA-Med2D tables gives one meta per split, so the
    leak stays visible: the checker reports it (once, on the test side)."""
    import os

    src = shared_path("images", "sam-med2d-demo")
    for name in ("images", "masks"):
        os.symlink((src / name).resolve(), tmp_path / name)
    train = json.loads((src / "image2label_train.json").read_text())
    test = json.loads((src / "label2image_test.json").read_text())
    test["data_demo/masks/amos_0006_90_liver_000.png"] = "data_demo/images/amos_0006_90.png"
    (tmp_path / "image2label_train.json").write_text(json.dumps(train))
    (tmp_path / "label2image_test.json").write_text(json.dumps(test))
    metas = md.scan_sam_med2d(tmp_path)
    both = [m for m in metas if m.image == "images/amos_0006_90.png"]
    assert [(m.split, [o.label for o in m.objects]) for m in both] == [
        ("test", ["liver"]), ("train", ["aorta", "inferior vena cava", "liver", "spleen"])]
    records = list(md.build_records(metas, tasks=["VG"]))
    # (duplicates off: the two liver questions may draw the same template)
    report = md.check_records(records, images=tmp_path, masks=tmp_path / "masks", duplicates=False)
    assert [(f.code, f.id) for f in report.findings] == [("case_leakage", "amos_0006_90")]
