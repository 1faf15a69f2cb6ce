"""`medground evaluate PRED.jsonl --task vg|roc|caption|mia|vqa|seg [--json|--csv]`."""

from __future__ import annotations

import argparse
import math
import sys

from .core import TASKS, evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", help="prediction file (JSONL or JSON list)")
    parser.add_argument("--task", required=True, choices=TASKS, help="which paper metric")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the whole result as JSON")
    fmt.add_argument("--csv", action="store_true", help="print the table as CSV")
    parser.add_argument("--no-modality-average", action="store_true", help="omit the papers' average row")
    parser.add_argument("--skip-bad-lines", action="store_true",
                        help="report malformed lines / records and score the rest (default: fail)")
    parser.add_argument("--no-clean", action="store_true", help="do not apply BiRD's response post-processing")
    parser.add_argument("--answer-type", default=None, help="VQA: answer type of the whole file (closed/open)")
    parser.add_argument("--meteor-data", default=None, help="folder with Meteor's english.* files")
    parser.add_argument("--no-meteor", action="store_true", help="captioning: skip METEOR")
    parser.add_argument("--no-spice", action="store_true", help="captioning: skip SPICE")
    parser.add_argument("--mask-root", default=None, help="seg: folder mask paths are relative to")
    parser.add_argument("--mask-threshold", type=float, default=None,
                        help="seg: foreground = prediction > T for float masks (MedPLIB: 0.1 on probabilities)")


def _format_value(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6f}"
    return str(v)


def run(args: argparse.Namespace) -> int:
    result = evaluate(args.predictions, task=args.task, modality_average=not args.no_modality_average,
                      on_error="report" if args.skip_bad_lines else "raise", clean_response=not args.no_clean,
                      meteor=not args.no_meteor, meteor_data=args.meteor_data,
                      spice=False if args.no_spice else None, answer_type=args.answer_type, seg_root=args.mask_root,
                      mask_threshold=args.mask_threshold)
    if args.json:
        print(result.to_json(indent=2))
        return 0
    table = result.table
    if args.csv:
        sys.stdout.write(table.to_csv(float_format="%.6f"))
        return 0
    rows = [[""] + [str(c) for c in table.columns]]
    for name, row in zip(table.index, table.astype(object).itertuples(index=False)):  # keeps int columns int
        rows.append([str(name)] + [_format_value(v) for v in row])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print(f"\n{result.n_records} records; average: {result.average_rule}")
    for k, v in result.modules.items():
        print(f"{k}: {v}")
    if result.findings:
        kinds: dict[str, int] = {}
        for f in result.findings:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        print("findings: " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())), file=sys.stderr)
        for f in result.findings[:20]:
            where = f"line {f.line}: " if f.line is not None else ""
            print(f"  {where}{f.kind}: {f.message}", file=sys.stderr)
    return 0
