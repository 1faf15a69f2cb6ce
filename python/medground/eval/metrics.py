"""Thin wrappers over the C metrics (medground._C) with the papers' names.

All scores are fractions (BiRD's scripts print them so; MedPLIB multiplies
its VQA numbers by 100 before printing — multiply the table by 100 to
compare with its printout)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from typing import Sequence

import numpy as np

from .. import _C
from . import resources

CAPTION_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr")


def bird_clean(responses: Sequence[str]) -> list[str]:
    """BiRD regularization.extract_information on each response."""
    return _C.eval_bird_clean(list(responses))


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer (CoreNLP 3.4.1 rules, lower-cased,
    punctuation tokens removed), C port. texts is one tokenize() call: the
    jar reads its captions joined by newlines, so the end of a caption sees
    the start of the next (tokenize per COCOEvalCap run to match it)."""
    return _C.eval_ptb_tokenize(list(texts))


def caption_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[dict, np.ndarray]:
    """BLEU-1..4, ROUGE-L, CIDEr-D of already tokenised text, as
    pycocoevalcap's scorers compute them. Returns (corpus dict, per-image [n, 6])."""
    corpus, per_image = _C.eval_caption(list(hyps), [list(r) for r in refs])
    return dict(zip(CAPTION_METRICS, corpus)), per_image


@functools.lru_cache(maxsize=2)
def _meteor_data(meteor_data: str | None):
    data = resources.meteor_data(meteor_data)
    paraphrases = resources.read_paraphrases(data.paraphrase_path) if data.paraphrase_path else None
    return data, paraphrases


def meteor_scorer(texts: Sequence[str] | None = None, meteor_data: str | None = None, paraphrase: bool = True):
    """A C METEOR 1.5 scorer; texts (optional) restricts the paraphrase
    table to entries whose words occur in them (same scores, less memory)."""
    data, paraphrases = _meteor_data(meteor_data)
    vocabulary = list(dict.fromkeys(texts)) if texts is not None else None  # distinct texts only
    return _C.Meteor(data.function_words, data.prefixes, data.synsets, data.exceptions,
                     paraphrases if paraphrase else None, True, vocabulary)


def meteor_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], meteor_data: str | None = None,
                  scorer=None) -> tuple[float, np.ndarray, str]:
    """(corpus METEOR, per-image scores, modules used)."""
    if scorer is None:
        texts = list(hyps) + [r for rs in refs for r in rs]
        scorer = meteor_scorer(texts, meteor_data)
    corpus, per_image, _stats = scorer.score(list(hyps), [list(r) for r in refs])
    return corpus, per_image, scorer.modules


def vqa_normalize(texts: Sequence[str]) -> list[str]:
    """MedPLIB glossary.normalize_word on lower-cased text."""
    return _C.eval_vqa_normalize(list(texts))


VQA_FIELDS = ("f1", "precision", "recall", "exact", "closed_hit", "bleu", "bleu_1", "bleu_2", "bleu_3")


def vqa_scores(predictions: Sequence[str], ground_truths: Sequence[str]) -> np.ndarray:
    """Per-question MedPLIB scores, columns VQA_FIELDS."""
    return _C.eval_vqa(list(predictions), list(ground_truths))


def sentence_bleu(references: Sequence[str], hypothesis: str, weights=(0.25, 0.25, 0.25, 0.25)) -> float:
    """NLTK sentence_bleu without smoothing on whitespace tokens."""
    return _C.eval_sentence_bleu(list(references), hypothesis, np.asarray(weights, dtype=np.float64))


def mask_scores(pred: np.ndarray, gt: np.ndarray, threshold: float | None = None) -> dict:
    """Dice/IoU of two masks; the prediction is resized (nearest) to the
    reference size first. Empty vs empty: 1. Binary / integer masks:
    nonzero = foreground. A float prediction (probabilities or logits) needs
    threshold: foreground = pred > threshold (MedPLIB: sigmoid > 0.1, i.e.
    0.1 on probabilities or log(1/9) on logits)."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.ndim != 2 or gt.ndim != 2:
        from ..errors import ShapeError
        raise ShapeError(f"masks must be 2-D, got {pred.shape} and {gt.shape}")
    if threshold is not None:
        pred = pred > threshold
    elif pred.dtype.kind == "f" and not np.isin(pred, (0.0, 1.0)).all():
        from ..errors import InvalidArgumentError
        raise InvalidArgumentError("prediction mask has non-binary float values: pass a threshold "
                                   "(MedPLIB: 0.1 on sigmoid probabilities)")
    pred = (pred != 0).astype(np.uint8)
    gt = (gt != 0).astype(np.uint8)
    if pred.shape != gt.shape:
        pred = _C.eval_mask_resize_nearest(pred, gt.shape[0], gt.shape[1])
    return _C.eval_mask_compare(pred, gt)


def rle_decode(counts: str | bytes, height: int, width: int) -> np.ndarray:
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return _C.eval_rle_decode(counts, int(height), int(width))


def rle_encode(mask: np.ndarray) -> bytes:
    return _C.eval_rle_encode(np.asfortranarray((np.asarray(mask) != 0).astype(np.uint8)))


# ---- SPICE bridge (the official jar; never a substitute number) ---------

def spice_status() -> tuple[bool, str]:
    """(available, reason). SPICE needs java, spice-1.0.jar and Stanford
    CoreNLP 3.6.0 (jar + models) in the jar's lib/ folder."""
    java = resources.java()
    if java is None:
        return False, "SPICE unavailable: no java on PATH"
    jar = resources.spice_jar()
    if jar is None:
        return False, "SPICE unavailable: spice-1.0.jar not found (install pycocoevalcap or set MEDGROUND_SPICE_JAR)"
    lib = jar.parent / "lib"
    for name in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"):
        if not (lib / name).exists():
            return False, f"SPICE unavailable: {lib / name} missing (Stanford CoreNLP 3.6.0 cannot be downloaded here)"
    return True, f"SPICE from {jar}"


def spice_input(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[dict]:
    """The JSON pycocoevalcap's Spice wrapper writes for the jar."""
    return [{"image_id": i, "test": h, "refs": list(r)} for i, (h, r) in enumerate(zip(hyps, refs))]


def spice_parse(output: list[dict], n_images: int) -> tuple[float, np.ndarray]:
    """Mean over images of scores['All']['f'] (as pycocoevalcap), per image."""
    by_id = {int(item["image_id"]): float(item["scores"]["All"]["f"]) for item in output}
    if len(by_id) != n_images or set(by_id) != set(range(n_images)):
        from ..errors import FormatError
        raise FormatError(f"SPICE output has {len(by_id)} images, expected {n_images}")
    per_image = np.array([by_id[i] for i in range(n_images)], dtype=np.float64)
    return float(np.mean(per_image)), per_image


def spice_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], timeout: float | None = None):
    """Runs the SPICE jar as pycocoevalcap does. Returns (score, per_image,
    status); score is None with the reason in status when unavailable."""
    ok, status = spice_status()
    if not ok:
        return None, None, status
    jar = resources.spice_jar()
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in.json")
        out = os.path.join(tmp, "out.json")
        with open(inp, "w") as f:
            json.dump(spice_input(hyps, refs), f)
        cmd = [shutil.which("java") or "java", "-jar", "-Xmx8G", str(jar), inp, "-cache",
               os.path.join(tmp, "cache"), "-out", out, "-subset", "-silent"]
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
        if proc.returncode != 0 or not os.path.exists(out):
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            return None, None, f"SPICE unavailable: the jar failed (exit {proc.returncode}): {tail[0]}"
        with open(out) as f:
            score, per_image = spice_parse(json.load(f), len(hyps))
    return score, per_image, status
