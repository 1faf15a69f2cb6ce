"""``medground data check|build|stats|draw``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import build as build_module
from .check import check, format_stats
from .draw import draw_record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("check", help="check record files (JSON list or JSONL); exit 1 on errors")
    p.add_argument("files", nargs="+", help="record files (the train split when --test is given)")
    p.add_argument("--images", help="root the records' image paths are relative to")
    p.add_argument("--masks", help="mask folder: box-vs-mask IoU check and <mask> paths")
    p.add_argument("--test", nargs="*", default=[], help="test-split files for the leakage check")
    p.add_argument("--json", dest="json_report", help="write the machine-readable report here")
    p.add_argument("--min-iou", type=float, default=0.5, help="box-vs-mask IoU threshold (0.5)")
    p.add_argument("--no-label-variants", action="store_true", help="skip label spelling checks")
    p.add_argument("--no-duplicates", action="store_true", help="skip duplicate record/image checks")
    p.add_argument("--max-findings", type=int, default=50, help="findings printed (all go to --json)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")

    p = sub.add_parser("build", help="build VG / ROC / SEG records from images and masks")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sam-med2d", help="SA-Med2D folder (images/, masks/, image2label_train.json)")
    src.add_argument("--biomedparse", help="BiomedParse folder (demo/, demo_mask/)")
    p.add_argument("--out", required=True, help="output .json (list) or .jsonl")
    p.add_argument("--tasks", default="VG,ROC,SEG", help="comma-separated subset of VG,ROC,SEG")
    p.add_argument("--seed", type=int, default=0, help="template RNG seed")
    p.add_argument("--templates", help="folder with grounding/referring/segmentation/datasets.json")
    p.add_argument("--modality", help="override the modality of every image")
    p.add_argument("--region", help="override the scanned region of every image")
    p.add_argument("--split", help="override the split of every image")
    p.add_argument("--meta", help="also write the per-image meta information (JSON) here")

    p = sub.add_parser("stats", help="counts per modality x task, turns, box sizes, labels")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", dest="json_report", help="write the statistics as JSON here")

    p = sub.add_parser("draw", help="draw a record's boxes and masks over its image (PNG)")
    p.add_argument("file", help="record file")
    p.add_argument("--index", type=int, default=0, help="record position in the file (0-based)")
    p.add_argument("--images", required=True, help="image root")
    p.add_argument("--masks", help="mask root for <mask> paths")
    p.add_argument("--out", required=True, help="output PNG")


def _load_records(path: str) -> list:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run(args: argparse.Namespace) -> int:
    command = args.data_command
    if command == "check":
        report = check(args.files, images=args.images, masks=args.masks, test=args.test or None,
                       min_iou=args.min_iou, label_variants=not args.no_label_variants,
                       duplicates=not args.no_duplicates, progress=args.progress)
        if args.json_report:
            report.to_json(args.json_report)
        print(report.summary(max_findings=args.max_findings))
        return 0 if report.ok else 1
    if command == "build":
        table_dir = args.templates
        table = build_module.load_json_template("datasets.json", table_dir)
        overrides = {k: v for k, v in (("modality", args.modality), ("region", args.region),
                                       ("split", args.split)) if v}
        if args.sam_med2d:
            metas = build_module.scan_sam_med2d(args.sam_med2d, table=table,
                                                meta_overrides=overrides)
        else:
            metas = build_module.scan_biomedparse(args.biomedparse, table=table,
                                                  meta_overrides=overrides)
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        count = build_module.write_records(
            build_module.build_records(metas, tasks=tasks, seed=args.seed, template_dir=table_dir),
            args.out)
        if args.meta:
            import dataclasses

            with open(args.meta, "w", encoding="utf-8") as handle:
                json.dump([dataclasses.asdict(m) for m in metas], handle, indent=1)
        n_objects = sum(len(m.objects) for m in metas)
        print(f"wrote {count} records for {len(metas)} images / {n_objects} objects to {args.out}")
        return 0
    if command == "stats":
        report = check(args.files, label_variants=False)
        if args.json_report:
            with open(args.json_report, "w", encoding="utf-8") as handle:
                json.dump(report.stats, handle, indent=2)
        print(f"{report.n_records} records")
        print(format_stats(report.stats))
        labels = report.stats.get("labels", {})
        if labels:
            top = sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
            print("labels: " + ", ".join(f"{k} ({v})" for k, v in top)
                  + (f", ... {len(labels) - 20} more" if len(labels) > 20 else ""))
        return 0
    if command == "draw":
        records = _load_records(args.file)
        if not 0 <= args.index < len(records):
            raise ValueError(f"--index {args.index}: {args.file} has {len(records)} records")
        draw_record(records[args.index], args.images, args.masks).to_png(args.out)
        print(f"wrote {args.out}")
        return 0
    print(f"unknown data action {command!r}", file=sys.stderr)
    return 2
