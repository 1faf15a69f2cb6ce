"""Dataset checks (C: ``csrc/data/check.c``) and their report.

Each finding has the file, the line where its record starts, the record's
0-based position and "id", a stable ``code``, a ``severity`` and a message.
Codes: json_syntax, schema, unknown_role, turn_order, image_tag_missing,
tag_unbalanced, box_syntax, ref_empty, box_out_of_range, box_inverted,
box_zero_area, box_mask_mismatch, image_missing, image_unreadable,
image_size_mismatch, mask_missing, mask_unreadable, mask_empty, duplicate_record
(warning), duplicate_image (warning), label_variant (warning), case_leakage.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional, Sequence, Union

from .. import _C

PathLike = Union[str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class Finding:
    file: str
    line: int
    index: int
    id: str
    code: str
    severity: str
    message: str

    def __str__(self) -> str:
        where = f"{os.path.basename(self.file)}:{self.line}" if self.line else os.path.basename(self.file)
        record = f" record {self.index}" if self.index >= 0 else ""
        ident = f" (id {self.id})" if self.id else ""
        return f"{where}:{record}{ident} {self.severity} [{self.code}] {self.message}"


@dataclasses.dataclass
class CheckReport:
    """Result of :func:`check`: findings plus statistics (``stats``)."""

    files: list[str]
    n_records: int
    counts: dict[str, int]
    findings: list[Finding]
    stats: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.counts.get("error", 0) == 0

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "n_records": self.n_records, "counts": self.counts,
                "findings": [dataclasses.asdict(f) for f in self.findings], "stats": self.stats}

    def to_json(self, path: Optional[PathLike] = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        return text

    def summary(self, max_findings: int = 50) -> str:
        """Human-readable summary: counts, the first findings, per-code totals."""
        lines = [f"checked {self.n_records} records in {len(self.files)} file(s): "
                 f"{self.counts.get('error', 0)} errors, {self.counts.get('warning', 0)} warnings"]
        by_code: dict[str, int] = {}
        for finding in self.findings:
            by_code[finding.code] = by_code.get(finding.code, 0) + 1
        if by_code:
            lines.append("by code: " + ", ".join(f"{k}={v}" for k, v in sorted(by_code.items())))
        for finding in self.findings[:max_findings]:
            lines.append("  " + str(finding))
        if len(self.findings) > max_findings:
            lines.append(f"  ... {len(self.findings) - max_findings} more (see the JSON report)")
        lines.append(format_stats(self.stats))
        return "\n".join(lines)


def format_stats(stats: dict[str, Any]) -> str:
    """Tables of counts per modality x task, turns and box sizes."""
    lines = []
    table = stats.get("modality_task", {})
    tasks = sorted({t for per in table.values() for t in per})
    if tasks:
        width = max(10, *(len(m) for m in table))
        lines.append("records per modality x task:")
        lines.append("  " + "modality".ljust(width) + "".join(t.rjust(16) for t in tasks) + "total".rjust(9))
        for modality in sorted(table):
            row = table[modality]
            lines.append("  " + modality.ljust(width) + "".join(str(row.get(t, 0)).rjust(16) for t in tasks)
                         + str(sum(row.values())).rjust(9))
    turns = stats.get("turns", {})
    if turns:
        lines.append("turns per record: " + ", ".join(f"{k}: {v}" for k, v in turns.items()))
    boxes = stats.get("boxes", {})
    if boxes.get("count"):
        edges = boxes["area_fraction_upper_edges"]
        counts = boxes["area_fraction_counts"]
        lower = [0.0] + edges[:-1]
        hist = ", ".join(f"[{lo:g},{hi:g}): {c}" for lo, hi, c in zip(lower, edges, counts) if c)
        lines.append(f"boxes: {boxes['count']} (mean {boxes['mean_width']:.0f} x "
                     f"{boxes['mean_height']:.0f} on the 0..1000 grid); area fraction {hist}")
    return "\n".join(lines)


def check(files: Union[PathLike, Sequence[PathLike]], *, images: Optional[PathLike] = None,
          masks: Optional[PathLike] = None, test: Union[None, PathLike, Sequence[PathLike]] = None,
          min_iou: float = 0.5, label_variants: bool = True, duplicates: bool = True,
          progress: bool = False) -> CheckReport:
    """Checks Med-GRIT / MeCoVQA record files (JSON list or JSONL, streamed).

    ``images``: root the records' image paths are relative to (None skips the
    image checks); ``masks``: mask folder for the box-vs-mask IoU check and for
    ``<mask>`` paths. Files in ``files`` are the "train" split and files in
    ``test`` the "test" split for the case-leakage check (a record's own
    "split" field wins). ``progress`` shows a tqdm bar over the bytes read.
    """
    def as_list(value):
        if value is None:
            return []
        if isinstance(value, (str, os.PathLike, bytes)):
            return [value]
        return list(value)

    train_files, test_files = as_list(files), as_list(test)
    inputs = [(os.fspath(p), "train" if test_files else None, None) for p in train_files]
    inputs += [(os.fspath(p), "test", None) for p in test_files]
    for name, _, _ in inputs:
        if not os.path.isfile(name):
            raise FileNotFoundError(f"{name}: no such record file")
    for label, directory in (("images", images), ("masks", masks)):
        if directory is not None and not os.path.isdir(directory):
            raise NotADirectoryError(f"--{label} {directory}: not a directory")
    bar = None
    callback = None
    if progress:
        from tqdm import tqdm

        total = sum(os.path.getsize(name) for name, _, _ in inputs)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="checking")
        state = {"base": 0, "last": 0}

        def callback(done: int, file_total: int) -> None:
            position = state["base"] + done
            bar.update(position - state["last"])
            state["last"] = position
            if done >= file_total:
                state["base"] += file_total

    try:
        text = _C.data_check(inputs, None if images is None else os.fspath(images),
                             None if masks is None else os.fspath(masks), float(min_iou),
                             bool(label_variants), bool(duplicates), callback)
    finally:
        if bar is not None:
            bar.close()
    return report_from_json(text)


def check_records(records: Sequence[dict[str, Any]], **kwargs: Any) -> CheckReport:
    """Checks in-memory records (serialised as JSON Lines, then the same C path)."""
    blob = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode("utf-8")
    images, masks = kwargs.pop("images", None), kwargs.pop("masks", None)
    text = _C.data_check([("<records>", None, blob)],
                         None if images is None else os.fspath(images),
                         None if masks is None else os.fspath(masks),
                         float(kwargs.pop("min_iou", 0.5)), bool(kwargs.pop("label_variants", True)),
                         bool(kwargs.pop("duplicates", True)), None)
    if kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")
    return report_from_json(text)


def report_from_json(text: str) -> CheckReport:
    data = json.loads(text)
    findings = [Finding(f["file"], int(f["line"]), int(f["index"]), f["id"], f["code"],
                        f["severity"], f["message"]) for f in data["findings"]]
    return CheckReport(data["files"], int(data["n_records"]),
                       {k: int(v) for k, v in data["counts"].items()}, findings, data["stats"])


def stats(files: Union[PathLike, Sequence[PathLike]], **kwargs: Any) -> dict[str, Any]:
    """Statistics only (counts per modality x task, turns, box sizes, labels)."""
    return check(files, **kwargs).stats
