"""medground.evaluate: the papers' metrics on prediction files, per modality
and averaged as the papers average."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .. import _C
from ..errors import FormatError, InvalidArgumentError
from . import metrics as M
from .records import (ANSWER_TYPE_FIELDS, BIRD_MODALITIES, GT_MASK_FIELDS, IMAGE_FIELDS, PRED_MASK_FIELDS,
                      PREDICTION_FIELDS, REFERENCE_FIELDS, Finding, Record, get_field, load_records,
                      record_id, record_modality, require_text)

TASKS = ("vg", "roc", "caption", "mia", "vqa", "seg")
CLOSED_TYPES = ("yes/no", "closed", "yes_no", "yesno")
OPEN_TYPES = ("open", "other", "number")

AVERAGE_RULES = {
    "vg": "BiRD eval_VG_score_modality.py: TP/(N+1e-8) per modality, unweighted mean over the 8 Med-GRIT "
          "modalities (a modality without GT boxes counts 0)",
    "roc": "BiRD eval_RO_score_modality.py: correct/records per modality, mean over the 8 modalities (empty = 0)",
    "caption": "BiRD eval_GC_score_modality.py: pycocoevalcap per modality (IDF per modality), each metric rounded "
               "to 6 decimals, mean over the modalities present",
    "mia": "BiRD eval_MII_score_modality.py: as caption; mBMR = (Bleu_4 + METEOR + ROUGE_L) / 3",
    "vqa": "MedPLIB cal_metric.py: mean over questions ('all' row); 'average' = macro over modalities "
           "(cal_metric_omniMedVQA.py)",
    "seg": "MedPLIB validate_seg: mDice/mIoU = mean over samples ('all' row); 'average' = macro over modalities",
}


@dataclass
class EvalResult:
    """Rows per modality, the papers' average row and a pooled 'all' row.

    table: pandas DataFrame (index: modalities, then 'average', 'all').
    findings: problems found in the input (malformed lines, missing boxes...).
    modules: what ran (METEOR modules, SPICE status, tokenizer)."""

    task: str
    rows: dict[str, dict[str, float]]
    average_rule: str
    findings: list[Finding] = field(default_factory=list)
    modules: dict[str, str] = field(default_factory=dict)
    n_records: int = 0
    source: str | None = None

    @property
    def table(self):
        import pandas as pd
        return pd.DataFrame.from_dict(self.rows, orient="index")

    @property
    def average(self) -> dict[str, float]:
        return dict(self.rows.get("average", {}))

    def to_dict(self) -> dict:
        def clean(v):
            if isinstance(v, (float, np.floating)):
                return None if math.isnan(float(v)) else float(v)
            if isinstance(v, np.integer):
                return int(v)
            return v
        return {
            "task": self.task,
            "source": self.source,
            "n_records": self.n_records,
            "average_rule": self.average_rule,
            "rows": {k: {m: clean(v) for m, v in row.items()} for k, row in self.rows.items()},
            "modules": dict(self.modules),
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __repr__(self) -> str:
        return f"EvalResult(task={self.task!r}, n_records={self.n_records}, average={self.average})"


def evaluate(records_or_path: Any, task: str = "vg", modality_average: bool = True, *,
             on_error: str = "raise", clean_response: bool = True, thresholds: Sequence[float] = (0.3, 0.5, 0.7),
             meteor: bool = True, meteor_data: str | None = None, spice: bool | None = None,
             answer_type: str | None = None, seg_root: str | None = None, mask_threshold: float | None = None,
             modalities: Sequence[str] | None = None, references: Any = None) -> EvalResult:
    """Scores prediction records (or a JSONL/JSON file) as the papers do.

    task: "vg" (Recall@0.5, BiRD), "roc" (BiRD recall + exact match),
    "caption" (referring captioning: BLEU/METEOR/ROUGE-L/CIDEr-D/SPICE),
    "mia" (medical image analysis: mBMR), "vqa" (MedPLIB/LLaVA-Med),
    "seg" (Dice/IoU).
    modality_average: add the papers' 'average' row (see EvalResult.average_rule).
    on_error: "raise" (default) or "report" (bad lines/records become
    findings, the rest are scored).
    modalities: the modality rows averaged (default BiRD's 8 for vg/roc).
    mask_threshold (seg): foreground = prediction > threshold for float
    masks (MedPLIB: 0.1 on sigmoid probabilities); integer masks: nonzero.
    references: optional separate ground-truth records (path or dicts)
    joined to the predictions by id (id / question_id); unmatched ids are
    errors (or findings with on_error="report")."""
    task = str(task).lower()
    if task not in TASKS:
        raise InvalidArgumentError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    records, findings, path = load_records(records_or_path, on_error)
    ctx = _Context(path, on_error, findings)
    if references is not None:
        records = _join_references(records, references, ctx)
    if task in ("vg", "roc"):
        rows, modules = _grounding(task, records, ctx, clean_response, thresholds, modality_average, modalities)
    elif task in ("caption", "mia"):
        rows, modules = _captioning(task, records, ctx, clean_response, meteor, meteor_data,
                                    (task == "caption") if spice is None else spice, modality_average)
    elif task == "vqa":
        rows, modules = _vqa(records, ctx, answer_type, modality_average)
    else:
        rows, modules = _seg(records, ctx, seg_root, modality_average, mask_threshold)
    return EvalResult(task, rows, AVERAGE_RULES[task] if modality_average else "none", findings, modules,
                      len(records), path)


class _Context:
    def __init__(self, path, on_error, findings):
        self.path, self.on_error, self.findings = path, on_error, findings

    def problem(self, record: Record, kind: str, message: str, error: Exception | None = None) -> None:
        """A bad record: raise (on_error='raise') or keep a finding."""
        if self.on_error == "raise":
            if error is not None:
                raise error
            where = f"{self.path}:{record.line}" if self.path else f"record {record.line}"
            raise FormatError(f"{where} (id {record_id(record)!r}): {message}")
        self.findings.append(Finding(kind, message, record.line, record_id(record)))

    def note(self, record: Record | None, kind: str, message: str) -> None:
        self.findings.append(Finding(kind, message, record.line if record else None,
                                     record_id(record) if record else None))

    def texts(self, records: list[Record], need_image: bool = True):
        """(kept records, predictions, references, modalities)."""
        kept, preds, refs, mods = [], [], [], []
        for r in records:
            try:
                pred = require_text(r, PREDICTION_FIELDS, "prediction", self.path)
                ref = require_text(r, REFERENCE_FIELDS, "reference", self.path)
                mod = record_modality(r, explicit_first=not need_image)
                if mod is None:
                    if need_image:
                        raise FormatError(f"{self.path or 'record'}:{r.line} (id {record_id(r)!r}): no image name "
                                          f"(looked for {', '.join(IMAGE_FIELDS)}) to take the modality from")
                    mod = ""
            except FormatError as error:
                self.problem(r, "missing_field", str(error), error)
                continue
            kept.append(r)
            preds.append(pred)
            refs.append(ref)
            mods.append(mod)
        self._check_ids(kept)
        return kept, preds, refs, mods

    def _check_ids(self, records: list[Record]) -> None:
        seen: dict[Any, int] = {}
        for r in records:
            rid = record_id(r)
            if rid is None or isinstance(rid, (dict, list)):
                continue
            if rid in seen:
                self.note(r, "duplicate_id", f"id {rid!r} also on line {seen[rid]} (scored twice, as the reference)")
            else:
                seen[rid] = r.line


def _join_references(records: list[Record], references: Any, ctx: _Context) -> list[Record]:
    refs, ref_findings, ref_path = load_records(references, ctx.on_error)
    ctx.findings.extend(ref_findings)
    by_id: dict[Any, Record] = {}
    for r in refs:
        rid = record_id(r)
        if rid is None:
            ctx.problem(r, "missing_id", f"reference record {ref_path or ''}:{r.line} has no id "
                                         "(id / question_id) to join on")
            continue
        by_id[str(rid)] = r
    joined, used = [], set()
    for r in records:
        rid = record_id(r)
        ref = by_id.get(str(rid)) if rid is not None else None
        if ref is None:
            ctx.problem(r, "unmatched_id", f"prediction id {rid!r} has no reference record")
            continue
        used.add(str(rid))
        data = dict(ref.data)
        data.update({k: v for k, v in r.data.items() if k not in REFERENCE_FIELDS or get_field(ref, (k,))[0] is None})
        for name in REFERENCE_FIELDS:  # the reference file's answer wins
            if name in ref.data:
                data[name] = ref.data[name]
        joined.append(Record(r.line, data))
    missing = [k for k in by_id if k not in used]
    if missing:
        ctx.note(None, "missing_prediction", f"{len(missing)} reference id(s) have no prediction "
                                             f"(first: {', '.join(missing[:5])}); they are not scored")
    if not joined:
        raise FormatError("no prediction id matches a reference id")
    return joined


def _modality_order(found: Sequence[str], fixed: Sequence[str] | None) -> list[str]:
    order = list(fixed) if fixed else []
    for m in found:
        if m not in order:
            order.append(m)
    return order


# ---- VG / ROC ---------------------------------------------------------------

def _grounding(task, records, ctx, clean, thresholds, modality_average, modalities):
    kept, preds, refs, mods = ctx.texts(records)
    fixed = list(modalities) if modalities is not None else list(BIRD_MODALITIES)
    for r, m in zip(kept, mods):
        if m not in fixed:
            ctx.note(r, "unknown_modality", f"modality {m!r} is not one of {', '.join(fixed)} "
                                            "(BiRD's script raises KeyError; kept as its own row, not averaged)")
    order = _modality_order(mods, fixed)
    rows: dict[str, dict[str, float]] = {}
    if task == "vg":
        th = np.asarray(sorted(set([float(t) for t in thresholds] + [0.5])), dtype=np.float64)
        out = _C.eval_vg(refs, preds, bool(clean), th) if kept else None
        n_gt = out["n_gt"] if kept else np.zeros(0, np.int32)
        for i, r in enumerate(kept):
            if n_gt[i] == 0:
                ctx.note(r, "annotation_without_box", "annotation has no <box>: record skipped, as the reference")
            elif out["n_gt_invalid"][i]:
                ctx.problem(r, "bad_gt_box", f"{out['n_gt_invalid'][i]} GT box(es) do not parse "
                                             "(the reference crashes)")
            elif out["n_pred"][i] == 0:
                ctx.note(r, "no_box_in_answer", "answer has no box: its GT boxes count as misses")
            if out is not None and out["n_pred_invalid"][i]:
                ctx.note(r, "bad_pred_box", f"{out['n_pred_invalid'][i]} predicted box(es) do not parse (IoU 0)")
        mods_arr = np.asarray(mods, dtype=object)
        t_names = [f"Recall@{t:g}" for t in th]
        for m in order + ["all"]:
            sel = np.ones(len(kept), bool) if m == "all" else (mods_arr == m)
            sel = sel & (n_gt > 0) if len(kept) else sel
            n_boxes = int(n_gt[sel].sum()) if len(kept) else 0
            row = {"records": int(sel.sum()), "gt_boxes": n_boxes}
            for k, name in enumerate(t_names):
                tp = int(out["hits"][sel, k].sum()) if len(kept) else 0
                row[name] = tp / (n_boxes + 1e-8)
            row["mean_iou"] = float(out["best_iou_sum"][sel].sum()) / n_boxes if n_boxes else 0.0
            row["no_box_in_answer"] = int((out["n_pred"][sel] == 0).sum()) if len(kept) else 0
            row["fallback_boxes"] = int(out["used_fallback"][sel].sum()) if len(kept) else 0
            row["unparsable_pred_boxes"] = int(out["n_pred_invalid"][sel].sum()) if len(kept) else 0
            row["skipped_no_gt_box"] = int(((mods_arr == m) if m != "all" else np.ones(len(kept), bool))
                                           [n_gt == 0].sum()) if len(kept) else 0
            rows[m] = row
        metric_names = t_names + ["mean_iou"]
    else:
        correct, exact = _C.eval_roc(refs, preds, bool(clean))
        mods_arr = np.asarray(mods, dtype=object)
        for m in order + ["all"]:
            sel = np.ones(len(kept), bool) if m == "all" else (mods_arr == m)
            n = int(sel.sum())
            rows[m] = {"records": n, "recall": int(correct[sel].sum()) / n if n else 0.0,
                       "exact_match": int(exact[sel].sum()) / n if n else 0.0}
        metric_names = ["recall", "exact_match"]
    if modality_average:
        avg = {k: sum(rows[m][k] for m in fixed if m in rows) for k in rows["all"] if k not in metric_names}
        for name in metric_names:
            avg[name] = float(np.mean([rows[m][name] if m in rows else 0.0 for m in fixed])) if fixed else float("nan")
        rows = {**{m: rows[m] for m in order}, "average": avg, "all": rows["all"]}
    return rows, {"response_cleaning": "BiRD regularization" if clean else "none"}


# ---- captioning (pycocoevalcap per modality) -----------------------------------

def _captioning(task, records, ctx, clean, use_meteor, meteor_data, use_spice, modality_average):
    kept, preds, refs, mods = ctx.texts(records)
    if not kept:
        raise FormatError(f"{ctx.path or 'records'}: no scorable records")
    if clean:
        preds = M.bird_clean(preds)
    present = set(mods)
    order = _modality_order(mods, [m for m in BIRD_MODALITIES if m in present])  # BiRD's order first
    mods_arr = np.asarray(mods, dtype=object)
    groups = {m: np.nonzero(mods_arr == m)[0] for m in order}
    groups["all"] = np.arange(len(kept))

    def tokenized(idx):
        # one PTBTokenizer call per COCOEvalCap run (per modality, as BiRD),
        # references and results separately: the jar reads each call's
        # captions joined by newlines, so a caption's end sees the next one
        return M.ptb_tokenize([preds[i] for i in idx]), M.ptb_tokenize([refs[i] for i in idx])

    tokens = {m: tokenized(idx) for m, idx in groups.items()}
    modules = {"tokenizer": "PTB (CoreNLP 3.4.1 rules, C port)",
               "response_cleaning": "BiRD regularization" if clean else "none"}
    scorer = None
    if use_meteor:
        try:
            scorer = M.meteor_scorer(tokens["all"][0] + tokens["all"][1], meteor_data)
            modules["METEOR"] = scorer.modules
        except (FileNotFoundError, OSError) as error:
            modules["METEOR"] = f"unavailable: {error}"
    if use_spice:
        ok, status = M.spice_status()
        modules["SPICE"] = status
    rows: dict[str, dict[str, float]] = {}
    for m in order + ["all"]:
        idx = groups[m]
        h = tokens[m][0]
        r = [[x] for x in tokens[m][1]]
        corpus, _ = M.caption_scores(h, r)
        row: dict[str, float] = {"records": int(len(idx)), **corpus}
        if scorer is not None:
            row["METEOR"] = scorer.score(h, r)[0]
        if use_spice:
            score = None
            if ok:
                score, _, status = M.spice_scores(h, r, meteor_data=meteor_data)
                modules["SPICE"] = status
            row["SPICE"] = float("nan") if score is None else score
        if "METEOR" in row:
            row["mBMR"] = (row["Bleu_4"] + row["METEOR"] + row["ROUGE_L"]) / 3
        rows[m] = row
    if modality_average:
        names = [k for k in rows["all"] if k != "records"]
        avg = {"records": len(kept)}
        for k in names:
            if k == "mBMR":
                continue
            avg[k] = float(np.mean([round(rows[m][k], 6) for m in order]))
        if "METEOR" in avg:
            avg["mBMR"] = (avg["Bleu_4"] + avg["METEOR"] + avg["ROUGE_L"]) / 3
        present = set(order)
        missing = [m for m in BIRD_MODALITIES if m not in present]
        if missing and any(m in BIRD_MODALITIES for m in present):
            ctx.note(None, "missing_modality", f"no records for {', '.join(missing)}: BiRD's script assumes all 8 "
                                               "modalities (it would fail); averaged over the modalities present")
        rows = {**{m: rows[m] for m in order}, "average": avg, "all": rows["all"]}
    return rows, modules


# ---- VQA (MedPLIB / LLaVA-Med) ---------------------------------------------------

def _vqa(records, ctx, answer_type, modality_average):
    kept, preds, refs, mods_in = ctx.texts(records, need_image=False)
    types, mods, keep2 = [], [], []
    for i, r in enumerate(kept):
        t = answer_type
        if t is None:
            _, t = get_field(r, ANSWER_TYPE_FIELDS)
        t = str(t).lower() if t is not None else None
        if t not in CLOSED_TYPES and t not in OPEN_TYPES:
            ctx.problem(r, "answer_type", f"answer_type {t!r} is not closed ({', '.join(CLOSED_TYPES)}) or open "
                                          f"({', '.join(OPEN_TYPES)}); pass answer_type= for a whole file")
            continue
        mods.append(mods_in[i])
        types.append("closed" if t in CLOSED_TYPES else "open")
        keep2.append(i)
    preds = [preds[i] for i in keep2]
    refs = [refs[i] for i in keep2]
    scores = M.vqa_scores(preds, refs) if preds else np.zeros((0, len(M.VQA_FIELDS)))
    col = {name: k for k, name in enumerate(M.VQA_FIELDS)}
    types_arr = np.asarray(types, dtype=object)
    mods_arr = np.asarray(mods, dtype=object)
    order = _modality_order([m for m in mods if m], None)
    rows: dict[str, dict[str, float]] = {}

    def row_for(sel):
        closed = sel & (types_arr == "closed")
        open_ = sel & (types_arr == "open")
        row = {"closed": int(closed.sum()), "open": int(open_.sum()),
               "closed_accuracy": float(scores[closed, col["closed_hit"]].mean()) if closed.any() else float("nan")}
        for name, key in (("open_recall", "recall"), ("open_precision", "precision"), ("open_f1", "f1"),
                          ("exact_match", "exact"), ("bleu", "bleu"), ("bleu_1", "bleu_1"), ("bleu_2", "bleu_2"),
                          ("bleu_3", "bleu_3")):
            row[name] = float(scores[open_, col[key]].mean()) if open_.any() else float("nan")
        return row

    for m in order:
        rows[m] = row_for(mods_arr == m)
    all_row = row_for(np.ones(len(types), bool))
    if modality_average and order:
        avg = {"closed": all_row["closed"], "open": all_row["open"]}
        for k in all_row:
            if k in ("closed", "open"):
                continue
            vals = [rows[m][k] for m in order if not math.isnan(rows[m][k])]
            avg[k] = float(np.mean(vals)) if vals else float("nan")
        rows["average"] = avg
    rows["all"] = all_row
    return rows, {"normalisation": "MedPLIB glossary.normalize_word", "bleu": "nltk sentence_bleu, no smoothing"}


# ---- segmentation -----------------------------------------------------------------

def _load_mask(value: Any, root: str | None, where: str) -> np.ndarray:
    if isinstance(value, dict) and "counts" in value and "size" in value:
        h, w = value["size"]
        counts = value["counts"]
        if isinstance(counts, list):
            mask = np.zeros(int(h) * int(w), np.uint8)
            pos, val = 0, 0
            for c in counts:
                mask[pos:pos + int(c)] = val
                pos += int(c)
                val ^= 1
            if pos != int(h) * int(w):
                raise FormatError(f"{where}: RLE counts sum to {pos}, mask is {h}x{w}")
            return mask.reshape((int(w), int(h))).T
        return M.rle_decode(counts, h, w)
    if isinstance(value, list):
        arr = np.asarray(value)
        if arr.ndim != 2:
            raise FormatError(f"{where}: mask list is {arr.ndim}-D, expected 2-D")
        return arr
    if isinstance(value, str):
        path = value if root is None or os.path.isabs(value) else os.path.join(root, value)
        if path.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            from .. import image as _image
            arr = _image.load(path, raw=True)
            if arr.ndim == 3:
                arr = arr[..., 0]
        if arr.ndim != 2:
            raise FormatError(f"{where}: mask {path} is not 2-D")
        return arr
    raise FormatError(f"{where}: mask must be a path, an RLE dict or a 2-D list, not {type(value).__name__}")


def _seg(records, ctx, root, modality_average, threshold):
    if root is None and ctx.path:
        root = os.path.dirname(os.path.abspath(ctx.path))
    per, mods = [], []
    for r in records:
        where = f"{ctx.path or 'record'}:{r.line}"
        pn, pv = get_field(r, PRED_MASK_FIELDS)
        gn, gv = get_field(r, GT_MASK_FIELDS)
        try:
            if pn is None or gn is None:
                raise FormatError(f"{where} (id {record_id(r)!r}): needs {PRED_MASK_FIELDS[0]} and {GT_MASK_FIELDS[0]}")
            s = M.mask_scores(_load_mask(pv, root, where), _load_mask(gv, root, where), threshold)
        except (FormatError, OSError, ValueError) as error:
            ctx.problem(r, "bad_mask", str(error), error if isinstance(error, FormatError) else
                        FormatError(f"{where}: {error}"))
            continue
        if s["union"] == 0:
            ctx.note(r, "empty_masks", "prediction and reference both empty: Dice = IoU = 1 (MedPLIB would crash)")
        mods.append(record_modality(r) or "")
        per.append(s)
    mods_arr = np.asarray(mods, dtype=object)
    order = _modality_order([m for m in mods if m], None)

    def row_for(sel):
        items = [p for p, k in zip(per, sel) if k]
        if not items:
            return {"records": 0, "dice": float("nan"), "iou": float("nan"), "medplib_dice": float("nan"),
                    "medplib_iou": float("nan")}
        return {"records": len(items), **{k: float(np.mean([p[k] for p in items]))
                                          for k in ("dice", "iou", "medplib_dice", "medplib_iou")}}

    rows = {m: row_for(mods_arr == m) for m in order}
    all_row = row_for(np.ones(len(per), bool))
    if modality_average and order:
        rows["average"] = {"records": all_row["records"],
                           **{k: float(np.mean([rows[m][k] for m in order])) for k in all_row if k != "records"}}
    rows["all"] = all_row
    return rows, {"dice": "2|P&G|/(|P|+|G|), empty/empty = 1; medplib_*: float32 IoU route, empty union = 0",
                  "resize": "prediction resized (nearest) to the reference size"}
