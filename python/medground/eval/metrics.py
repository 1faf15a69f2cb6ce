"""Thin wrappers over the C metrics (medground._C) with the papers' names.

All scores are fractions (BiRD's scripts print them so; MedPLIB multiplies
its VQA numbers by 100 before printing — multiply the table by 100 to
compare with its printout)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
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


# ---- SPICE (the official jar's scene graphs, C tuple F-score; never a substitute number) ----
#
# SPICE 1.0 (spice-1.0.jar, as pycocoevalcap runs it) parses every caption
# with Stanford CoreNLP 3.6.0 into a scene graph, turns the graphs into
# tuples (object), (object, attribute), (subject, relation, object) and
# scores candidate against reference tuples. The parse needs the jar and
# CoreNLP's models; the scoring is ours (csrc/eval/spice.c): the jar is run
# with -detailed, its tuples are read back and scored in C, and the jar's own
# per-image counts are checked against ours.

SPICE_CATEGORIES = ("All", "Object", "Attribute", "Relation", "Cardinality", "Color", "Size")
SPICE_FIELDS = ("tp", "fp", "fn", "pr", "re", "f")


@dataclass
class SpiceResult:
    """SPICE of n images. score: pycocoevalcap's corpus SPICE, the mean over
    images of the "All" f-score. per_image: [n, 7, 6] (SPICE_CATEGORIES x
    SPICE_FIELDS: tp, fp, fn, precision, recall, f; NaN for a category
    without reference tuples, as the jar reports it). corpus: [7, 6], the
    jar's printed macro average (summed tp/fp/fn, mean P/R/F over the images
    where they are not NaN). test_truth / ref_truth: per image, the jar's
    truth_value of each tuple (candidate matched / reference first-matched)."""
    score: float
    per_image: np.ndarray
    corpus: np.ndarray
    test_truth: list
    ref_truth: list

    def f(self, category: str = "All") -> np.ndarray:
        """Per-image f-score of one category."""
        return self.per_image[:, SPICE_CATEGORIES.index(category), 5]


@functools.lru_cache(maxsize=2)
def spice_synonyms(meteor_data: str | None = None):
    """A METEOR object holding Meteor's WordNet synonym tables (the same
    english.synsets / english.exceptions as inside the SPICE jar's
    lib/Meteor-1.5.jar), for SPICE's synset matching."""
    data = resources.meteor_data(meteor_data)
    if data.synsets is None or data.exceptions is None:
        raise FileNotFoundError(f"Meteor synonym tables (english.synsets, english.exceptions) not found in {data.source}")
    return _C.Meteor(data.function_words, data.prefixes, data.synsets, data.exceptions, None, True, None)


def _flatten_tuples(sets, what: str):
    from ..errors import FormatError
    elements: list[str] = []
    sizes: list[int] = []
    offsets = [0]
    for i, tuples in enumerate(sets):
        if isinstance(tuples, (str, bytes)):
            raise FormatError(f"SPICE {what} tuples of image {i}: expected a list of tuples, got a string")
        for j, t in enumerate(tuples):
            if isinstance(t, str) or not all(isinstance(x, str) for x in t):
                raise FormatError(f"SPICE {what} tuple {j} of image {i}: expected a list of 1 to 3 str, got {t!r}")
            if not 1 <= len(t) <= 3:
                raise FormatError(f"SPICE {what} tuple {j} of image {i}: {len(t)} elements (1 to 3 allowed): {list(t)!r}")
            elements.extend(t)
            sizes.append(len(t))
        offsets.append(len(sizes))
    return elements, np.asarray(sizes, dtype=np.int32), np.asarray(offsets, dtype=np.int64)


def spice_tuple_scores(test_tuples, ref_tuples, use_synsets: bool = True, meteor_data: str | None = None,
                       synonyms=None) -> SpiceResult:
    """SPICE 1.0's scoring of scene-graph tuples (the jar's -detailed
    "tuple" lists): test_tuples[i] / ref_tuples[i] are image i's candidate
    and reference tuples, each a list of 1-3 concepts (a merged concept's
    words joined by '/', as the jar prints them). use_synsets=False is the
    jar's -noSynsets (exact concepts). Synonyms come from Meteor's tables
    (meteor_data as for METEOR, or a ready spice_synonyms() object)."""
    from ..errors import ShapeError
    test_tuples, ref_tuples = list(test_tuples), list(ref_tuples)
    if len(test_tuples) != len(ref_tuples):
        raise ShapeError(f"SPICE: {len(test_tuples)} candidate tuple sets but {len(ref_tuples)} reference sets")
    if use_synsets and synonyms is None:
        synonyms = spice_synonyms(meteor_data)
    te, ts, to = _flatten_tuples(test_tuples, "candidate")
    re_, rs, ro = _flatten_tuples(ref_tuples, "reference")
    per, corpus, tt, rt = _C.eval_spice(synonyms if use_synsets else None, te, ts, to, re_, rs, ro, use_synsets)
    tt = [tt[to[i]:to[i + 1]].tolist() for i in range(len(test_tuples))]
    rt = [rt[ro[i]:ro[i + 1]].tolist() for i in range(len(ref_tuples))]
    score = float(np.mean(per[:, 0, 5])) if len(per) else float("nan")
    return SpiceResult(score, per, corpus, tt, rt)


def spice_status() -> tuple[bool, str]:
    """(available, reason). SPICE needs java (8 to 14: the jar writes its
    -out file through the Nashorn JavaScript engine, removed in Java 15;
    MEDGROUND_SPICE_JAVA may name another java), spice-1.0.jar with Stanford
    CoreNLP 3.6.0 (jar + models) in its lib/ folder, and Meteor's synonym
    tables for the scoring."""
    java = resources.spice_java()
    if java is None:
        return False, "SPICE unavailable: no java on PATH"
    jar = resources.spice_jar()
    if jar is None:
        return False, "SPICE unavailable: spice-1.0.jar not found (install pycocoevalcap or set MEDGROUND_SPICE_JAR)"
    lib = jar.parent / "lib"
    for name in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"):
        if not (lib / name).exists():
            return False, f"SPICE unavailable: {lib / name} missing (Stanford CoreNLP 3.6.0 cannot be downloaded here)"
    major = resources.java_major_version(java)
    if major is None:
        return False, f"SPICE unavailable: could not read the version of {java}"
    if major >= 15:
        return False, (f"SPICE unavailable: {java} is Java {major}; spice-1.0.jar writes its output through the "
                       "Nashorn JavaScript engine, removed in Java 15 (set MEDGROUND_SPICE_JAVA to a Java 8-14 java)")
    try:
        spice_synonyms()
    except (FileNotFoundError, OSError) as error:
        return False, f"SPICE unavailable: {error}"
    return True, f"SPICE from {jar} (scene graphs by the jar, Java {major}; tuple F-score in C)"


def spice_input(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[dict]:
    """The JSON pycocoevalcap's Spice wrapper writes for the jar."""
    return [{"image_id": i, "test": h, "refs": list(r)} for i, (h, r) in enumerate(zip(hyps, refs))]


def spice_parse(output: list[dict], n_images: int) -> tuple[float, np.ndarray]:
    """The jar's own numbers: mean over images of scores['All']['f'] (as
    pycocoevalcap), per image."""
    by_id = {int(item["image_id"]): float(item["scores"]["All"]["f"]) for item in output}
    if len(by_id) != n_images or set(by_id) != set(range(n_images)):
        from ..errors import FormatError
        raise FormatError(f"SPICE output has {len(by_id)} images, expected {n_images}")
    per_image = np.array([by_id[i] for i in range(n_images)], dtype=np.float64)
    return float(np.mean(per_image)), per_image


@dataclass
class SpiceDetailed:
    """The jar's -detailed output: per image its id, tuples (lists of str),
    truth_values and the jar's own scores (category -> field -> value, NaN
    where the jar wrote null)."""
    image_ids: list
    test_tuples: list
    ref_tuples: list
    test_truth: list
    ref_truth: list
    scores: list


def spice_parse_detailed(output) -> SpiceDetailed:
    """Reads the JSON array the jar writes with -out FILE -detailed: per image
    {"image_id", "scores": {category: {tp, fp, fn, f, pr, re, ...}},
    "test_tuples" / "ref_tuples": [{"tuple": [concept, ...], "truth_value": bool}]}."""
    from ..errors import FormatError
    if not isinstance(output, list):
        raise FormatError(f"SPICE output: expected a JSON array, got {type(output).__name__}")
    d = SpiceDetailed([], [], [], [], [], [])
    for k, item in enumerate(output):
        if not isinstance(item, dict) or "image_id" not in item:
            raise FormatError(f"SPICE output item {k}: not an object with image_id")
        image = item["image_id"]
        for key in ("test_tuples", "ref_tuples", "scores"):
            if key not in item:
                raise FormatError(f"SPICE output, image {image!r}: no {key!r} (run the jar with -detailed)")
        sides = []
        for key in ("test_tuples", "ref_tuples"):
            tuples, truth = [], []
            if not isinstance(item[key], list):
                raise FormatError(f"SPICE output, image {image!r}: {key} is not a list")
            for j, t in enumerate(item[key]):
                if not isinstance(t, dict) or not isinstance(t.get("tuple"), list) or \
                        not isinstance(t.get("truth_value"), bool):
                    raise FormatError(f"SPICE output, image {image!r}: {key}[{j}] is not "
                                      "{\"tuple\": [str, ...], \"truth_value\": bool}")
                tuples.append([str(x) for x in t["tuple"]])
                truth.append(t["truth_value"])
            sides.append((tuples, truth))
        scores = {}
        if not isinstance(item["scores"], dict):
            raise FormatError(f"SPICE output, image {image!r}: scores is not an object")
        for cat, fields in item["scores"].items():
            if not isinstance(fields, dict):
                raise FormatError(f"SPICE output, image {image!r}: scores[{cat!r}] is not an object")
            scores[cat] = {f: (float("nan") if v is None else float(v)) for f, v in fields.items()}
        d.image_ids.append(image)
        d.test_tuples.append(sides[0][0])
        d.test_truth.append(sides[0][1])
        d.ref_tuples.append(sides[1][0])
        d.ref_truth.append(sides[1][1])
        d.scores.append(scores)
    return d


def spice_compare(result: SpiceResult, detailed: SpiceDetailed) -> list[str]:
    """Where our scores / truth values differ from the jar's own (empty when
    they agree): tp, fp, fn exactly and P/R/F bit for bit, per category the
    jar reported."""
    problems = []
    for i, image in enumerate(detailed.image_ids):
        if result.test_truth[i] != detailed.test_truth[i] or result.ref_truth[i] != detailed.ref_truth[i]:
            problems.append(f"image {image!r}: truth values differ")
        for q, cat in enumerate(SPICE_CATEGORIES):
            jar = detailed.scores[i].get(cat)
            if jar is None:
                continue
            for k, field in enumerate(SPICE_FIELDS):
                if field not in jar:
                    continue
                ours, theirs = float(result.per_image[i, q, k]), jar[field]
                if not (ours == theirs or (np.isnan(ours) and np.isnan(theirs))):
                    problems.append(f"image {image!r}: {cat} {field} ours {ours!r}, jar {theirs!r}")
    return problems


def spice_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], timeout: float | None = None,
                 meteor_data: str | None = None):
    """SPICE of hypotheses vs references: the jar (called as pycocoevalcap
    does, plus -detailed) builds the scene graphs, the C code scores their
    tuples. Returns (score, per-image "All" f, status); score is None with
    the reason in status when SPICE is unavailable (or when our scoring
    disagrees with the jar's own, which the status then describes)."""
    ok, status = spice_status()
    if not ok:
        return None, None, status
    jar = resources.spice_jar()
    java = resources.spice_java()
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in.json")
        out = os.path.join(tmp, "out.json")
        with open(inp, "w") as f:
            json.dump(spice_input(hyps, refs), f, indent=2)
        cmd = [java, "-jar", "-Xmx8G", str(jar), inp, "-cache", os.path.join(tmp, "cache"), "-out", out,
               "-subset", "-silent", "-detailed"]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=str(jar.parent))
        except subprocess.TimeoutExpired:
            return None, None, f"SPICE unavailable: the jar ran past {timeout} s"
        if proc.returncode != 0 or not os.path.exists(out) or os.path.getsize(out) == 0:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            return None, None, f"SPICE unavailable: the jar failed (exit {proc.returncode}): {tail[0]}"
        with open(out) as f:
            detailed = spice_parse_detailed(json.load(f))
    if detailed.image_ids != list(range(len(hyps))):
        from ..errors import FormatError
        raise FormatError(f"SPICE output has images {detailed.image_ids[:5]}..., expected 0..{len(hyps) - 1}")
    result = spice_tuple_scores(detailed.test_tuples, detailed.ref_tuples, meteor_data=meteor_data)
    problems = spice_compare(result, detailed)
    if problems:
        return None, None, (f"SPICE unavailable: medground's tuple scores disagree with the jar's on "
                            f"{len(problems)} values (first: {problems[0]}); please report this")
    return result.score, result.f("All"), status
