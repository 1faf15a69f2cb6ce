"""Reading prediction records (BiRD JSONL, LLaVA-Med / MedPLIB answer files).

A record is a dict. Field names vary between the papers' scripts, so each
role (prediction, reference, image, id, answer type, masks) is looked up
under several names, first match wins:

* BiRD ``infer.py``: ``id``, ``image``, ``question``, ``annotation`` (GT),
  ``response`` (model output, chat tokens kept).
* LLaVA-Med / MedPLIB ``validate_vqa``: ``question_id``, ``image_path``,
  ``prompt``, ``gt``, ``text`` (model output), ``answer_type``.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import FormatError, InvalidArgumentError

PREDICTION_FIELDS = ("response", "text", "prediction", "pred", "answer", "output")
REFERENCE_FIELDS = ("annotation", "gt", "gt_answer", "ground_truth", "reference", "gpt4_answer", "label")
IMAGE_FIELDS = ("image", "image_path", "img", "image_name", "file_name")
ID_FIELDS = ("id", "question_id", "image_id")
ANSWER_TYPE_FIELDS = ("answer_type", "type", "question_type")
MODALITY_FIELDS = ("modality", "modality_type")  # an explicit modality wins over the image name
PRED_MASK_FIELDS = ("pred_mask", "prediction_mask", "pred_mask_path", "mask_pred")
GT_MASK_FIELDS = ("gt_mask", "mask", "gt_mask_path", "mask_gt", "label_mask")

# BiRD eval_*_score_modality.py: the 8 modality keys of Med-GRIT-270k.
BIRD_MODALITIES = ("ct", "mr", "x", "pet", "endoscopy", "dermoscopy", "fundus", "ultrasound")


@dataclass
class Finding:
    """Something wrong with one record or line (kept in the result)."""

    kind: str
    message: str
    line: int | None = None
    record_id: Any = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "line": self.line, "id": self.record_id}


@dataclass
class Record:
    line: int | None  # 1-based line (JSONL) or position (list input)
    data: dict
    findings: list[Finding] = field(default_factory=list)


def modality_of(image: str) -> str:
    """BiRD's rule: file name up to the first '_' (``x_ray--…`` -> ``x``)."""
    name = os.path.basename(str(image).replace("\\", "/"))
    return name.split("_")[0]


def record_modality(record: "Record", explicit_first: bool = True) -> str | None:
    """The record's modality. explicit_first (VQA, masks): an explicit
    modality field (e.g. OmniMedVQA's modality_type) wins over the image
    name; otherwise (BiRD's tasks, as its scripts) the image name decides and
    the field is only a fallback. None when neither exists."""
    explicit = next((record.data[n] for n in MODALITY_FIELDS
                     if isinstance(record.data.get(n), str) and record.data[n]), None)
    if explicit is not None and explicit_first:
        return explicit
    for name in IMAGE_FIELDS:
        value = record.data.get(name)
        if isinstance(value, str):
            return modality_of(value)
    return explicit


def _where(path: str | None, line: int | None) -> str:
    if path is None:
        return f"record {line}" if line is not None else "record"
    return f"{path}:{line}" if line is not None else path


def load_records(source: Any, on_error: str = "raise") -> tuple[list[Record], list[Finding], str | None]:
    """Records from a JSONL/JSON path or an iterable of dicts.

    on_error="raise": a malformed line raises FormatError naming every bad
    line; "report": bad lines become findings and the rest are scored.
    Returns (records, findings, path)."""
    if on_error not in ("raise", "report"):
        raise InvalidArgumentError(f"on_error must be 'raise' or 'report', not {on_error!r}")
    findings: list[Finding] = []
    records: list[Record] = []
    path: str | None = None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        p = pathlib.Path(path)
        if not p.exists():
            raise FileNotFoundError(f"{path}: no such prediction file")
        raw = p.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise FormatError(f"{path}: not UTF-8 ({error})") from None
        if not text.strip():
            raise FormatError(f"{path}: empty prediction file (no records)")
        stripped = text.lstrip()
        if stripped.startswith("[") and not path.endswith(".jsonl"):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as error:
                raise FormatError(f"{path}:{error.lineno}: malformed JSON ({error.msg})") from None
            for i, item in enumerate(items, 1):
                _add(records, findings, item, i, path)
        else:
            bad: list[str] = []
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as error:
                    msg = f"malformed JSON ({error.msg} at column {error.colno})"
                    findings.append(Finding("malformed_line", msg, number))
                    bad.append(f"{path}:{number}: {msg}")
                    continue
                _add(records, findings, item, number, path)
            if bad and on_error == "raise":
                more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
                raise FormatError("; ".join(bad[:5]) + more + " — pass on_error='report' to score the other lines")
    else:
        try:
            items = list(source)
        except TypeError:
            raise InvalidArgumentError(
                f"records must be a path or an iterable of dicts, not {type(source).__name__}") from None
        for i, item in enumerate(items, 1):
            _add(records, findings, item, i, None)
    not_dicts = [f for f in findings if f.kind == "not_an_object"]
    if not_dicts and on_error == "raise":
        f = not_dicts[0]
        raise FormatError(f"{_where(path, f.line)}: {f.message}")
    if not records:
        raise FormatError(f"{path or 'records'}: no records to evaluate")
    return records, findings, path


def _add(records: list[Record], findings: list[Finding], item: Any, line: int, path: str | None) -> None:
    if not isinstance(item, dict):
        findings.append(Finding("not_an_object", f"expected a JSON object, got {type(item).__name__}", line))
        return
    records.append(Record(line, item))


def get_field(record: Record, names: Iterable[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in record.data:
            return name, record.data[name]
    return None, None


def record_id(record: Record) -> Any:
    _, value = get_field(record, ID_FIELDS)
    return value


def require_text(record: Record, names: tuple[str, ...], role: str, path: str | None) -> str:
    """The record's string for a role, or FormatError naming line and fields."""
    name, value = get_field(record, names)
    if name is None:
        raise FormatError(f"{_where(path, record.line)} (id {record_id(record)!r}): no {role} field "
                          f"(looked for {', '.join(names)})")
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        raise FormatError(f"{_where(path, record.line)} (id {record_id(record)!r}): {role} field {name!r} is NaN")
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value[0]
    if not isinstance(value, str):
        raise FormatError(f"{_where(path, record.line)} (id {record_id(record)!r}): {role} field {name!r} "
                          f"is {type(value).__name__}, expected a string")
    return value
