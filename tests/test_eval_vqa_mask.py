"""MedPLIB / LLaVA-Med VQA metrics vs a direct Python transcription of the
rules in ../shared/docs/metrics.md §2.1 plus nltk's sentence_bleu; Dice/IoU
vs NumPy; RLE vs pycocotools."""

from __future__ import annotations

import collections
import random
import re
import warnings

import numpy as np
import pytest

import medground as mg
from medground.eval import metrics as M

# ---- independent transcription of MedPLIB glossary.normalize_word + metrics ----

PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
              "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
CONTRACTIONS = {"dont": "don't", "isnt": "isn't", "cant": "can't", "wont": "won't", "thats": "that's",
                "whats": "what's", "oclock": "o'clock", "youre": "you're", "im": "im", "Im": "I'm"}


def ref_normalize(text: str) -> str:
    text = text.lower()
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = PERIOD_STRIP.sub("", out, re.UNICODE)  # re.UNICODE (32) lands in the count slot: <= 32 periods
    words = []
    for w in out.lower().split():
        w = MANUAL_MAP.get(w, w)
        if w not in ARTICLES:
            words.append(w)
    words = [CONTRACTIONS.get(w, w) for w in words]
    return " ".join(words).replace(",", "")


def ref_bag(s: str) -> dict:
    bag = collections.defaultdict(int)
    for w in s.lower().strip().split():
        bag[w] += 1
    return bag


def ref_f1(pred: str, gt: str):
    c, r = ref_bag(ref_normalize(pred)), ref_bag(ref_normalize(gt))
    tp = fp = fn = 0
    for w in set(c) | set(r):
        if w in c and w in r:
            tp += c[w]
        elif w in c:
            fp += c[w]
        else:
            fn += r[w]
    if not c or not r or tp == 0:
        return 0.0, 0.0, 0.0
    p, rec = tp / (tp + fp), tp / (tp + fn)
    return 2 * p * rec / (p + rec), p, rec


def ref_exact(pred: str, gt: str) -> float:
    c, r = ref_bag(ref_normalize(pred)), ref_bag(ref_normalize(gt))
    total = sum(c.values())
    return sum(1 for w in r if w in c) / total if total else 0.0


@pytest.mark.parametrize("pred, gt, norm_pred, norm_gt, f1pr, exact, closed", [
    # the worked table of metrics.md §2.1 (values from running MedPLIB's functions)
    ("The liver.", "liver", "liver", "liver", (1, 1, 1), 1, True),
    ("the liver and the liver", "liver", "liver and liver", "liver", (0.8, 2 / 3, 1.0), 1 / 3, False),
    ("Yes, it is.", "yes", "yes it is", "yes", (0.5, 1 / 3, 1.0), 1 / 3, False),
    ("left kidney", "the left kidney is enlarged", "left kidney", "left kidney is enlarged", (2 / 3, 1.0, 0.5), 1.0, False),
    ("CT", "computed tomography (CT)", "ct", "computed tomography ct", (0.5, 1.0, 1 / 3), 1.0, False),
    ("x-ray", "X-ray", "x ray", "x ray", (1, 1, 1), 1, True),
    ("3.5 cm", "3.5cm", "3.5 cm", "3.5cm", (0, 0, 0), 0, False),
    ("two lesions", "2 lesions", "2 lesions", "2 lesions", (1, 1, 1), 1, True),
])
def test_vqa_worked_table(pred, gt, norm_pred, norm_gt, f1pr, exact, closed):
    assert M.vqa_normalize([pred, gt]) == [norm_pred, norm_gt]
    row = M.vqa_scores([pred], [gt])[0]
    f = dict(zip(M.VQA_FIELDS, row))
    assert (f["f1"], f["precision"], f["recall"]) == pytest.approx(f1pr, abs=1e-12)
    assert f["exact"] == pytest.approx(exact, abs=1e-12)
    assert bool(f["closed_hit"]) is closed


def test_vqa_period_cap():
    # 40 periods not followed by a digit: re.sub's count slot holds re.UNICODE
    # (32), so 8 periods survive (metrics.md §2.1, verified on the repo code)
    text = "a" + "." * 40
    assert M.vqa_normalize([text]) == [ref_normalize(text)] == ["a" + "." * 8]


def _vqa_corpus(n=1500, seed=7):
    rng = random.Random(seed)
    words = ("yes no the a liver kidney left right lesion mass 3.5 cm 2 two none CT MRI x-ray x ray , . ? ! ( ) "
             "- / ; dont isnt oclock enlarged is are of in 1,000 10 ten an Ödem NIÑO Ωμέγα ДА Ђак Łódź left\u00a0lobe 3\u2009cm").split(" ")
    pairs = []
    for _ in range(n):
        gt = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.3:
            pred = gt
        else:
            pred = " ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
        if rng.random() < 0.3:
            pred = pred.capitalize() + rng.choice([".", "", "!", " ."])
        pairs.append((pred, gt))
    return pairs


def test_vqa_matches_transcription_and_nltk():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    pairs = _vqa_corpus()
    preds, gts = [p for p, _ in pairs], [g for _, g in pairs]
    scores = M.vqa_scores(preds, gts)
    col = {k: i for i, k in enumerate(M.VQA_FIELDS)}
    norm = M.vqa_normalize(preds + gts)
    assert norm == [ref_normalize(t) for t in preds + gts]
    weights = {"bleu": (0.25, 0.25, 0.25, 0.25), "bleu_1": (1, 0, 0, 0), "bleu_2": (0, 1, 0, 0), "bleu_3": (0, 0, 1, 0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about zero n-gram overlaps
        for i, (p, g) in enumerate(pairs):
            f1, pr, rc = ref_f1(p, g)
            assert scores[i, col["f1"]] == pytest.approx(f1, abs=1e-12), (p, g)
            assert scores[i, col["precision"]] == pytest.approx(pr, abs=1e-12)
            assert scores[i, col["recall"]] == pytest.approx(rc, abs=1e-12)
            assert scores[i, col["exact"]] == pytest.approx(ref_exact(p, g), abs=1e-12)
            assert scores[i, col["closed_hit"]] == float(ref_normalize(p) == ref_normalize(g))
            np_, ng = ref_normalize(p), ref_normalize(g)
            for name, w in weights.items():
                want = nltk_bleu.sentence_bleu([ng.split()], np_.split(), weights=w)
                got = scores[i, col[name]]
                assert got == pytest.approx(want, rel=1e-12, abs=1e-300), (name, p, g, got, want)


def test_sentence_bleu_hand_case():
    # hyp = ref = "liver": p1 = 1, p2..p4 have no n-grams -> nltk substitutes
    # sys.float_info.min; exp(0.25 * (log 1 + 3 log(2.2e-308))) = 1.8e-231
    v = M.sentence_bleu(["liver"], "liver")
    assert v == pytest.approx(np.exp(0.75 * np.log(np.finfo(float).tiny)), rel=1e-12)
    # "a b c d" vs itself: every precision 1, BP 1 -> 1
    assert M.sentence_bleu(["a b c d"], "a b c d") == pytest.approx(1.0, abs=1e-15)


def test_vqa_evaluate_closed_open_split():
    recs = [
        {"question_id": 0, "text": "Yes.", "gt": "yes", "answer_type": "closed", "image_path": "images/ct_1.png"},
        {"question_id": 1, "text": "No", "gt": "yes", "answer_type": "yes/no", "image_path": "images/mr_1.png"},
        {"question_id": 2, "text": "the left kidney", "gt": "left kidney is enlarged", "answer_type": "open",
         "image_path": "images/ct_2.png"},
    ]
    r = mg.evaluate(recs, task="vqa")
    t = r.table
    # closed: 1 of 2 hits; open: one question, P = 1, R = 2/4
    assert t.loc["all", "closed_accuracy"] == 0.5
    assert t.loc["all", "open_recall"] == pytest.approx(0.5)
    assert t.loc["all", "open_precision"] == pytest.approx(1.0)
    # per modality (OmniMedVQA macro): ct closed 1/1, mr 0/1 -> average 0.5
    assert t.loc["ct", "closed_accuracy"] == 1.0 and t.loc["mr", "closed_accuracy"] == 0.0
    assert t.loc["average", "closed_accuracy"] == 0.5
    with pytest.raises(mg.FormatError, match="answer_type"):
        mg.evaluate([{"question_id": 0, "text": "x", "gt": "y"}], task="vqa")
    r = mg.evaluate([{"question_id": 0, "text": "x", "gt": "x"}], task="vqa", answer_type="closed")
    assert r.table.loc["all", "closed_accuracy"] == 1.0


# ---- masks --------------------------------------------------------------------

def _np_scores(p, g):
    p, g = p != 0, g != 0
    inter, union = int((p & g).sum()), int((p | g).sum())
    iou = inter / union if union else 1.0
    denom = int(p.sum()) + int(g.sum())
    dice = 2 * inter / denom if denom else 1.0
    iou32 = np.float32(inter) / np.float32(union) if union else np.float32(0)
    return iou, dice, float(iou32), 2 * float(iou32) / (1 + float(iou32))


def test_dice_iou_match_numpy(rng):
    for trial in range(200):
        h, w = rng.integers(1, 40, size=2)
        density = rng.random()
        p = (rng.random((h, w)) < density).astype(np.uint8) * rng.integers(1, 255)
        g = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        if trial % 17 == 0:
            p[:] = 0
        if trial % 23 == 0:
            p[:] = 0
            g[:] = 0
        s = M.mask_scores(p, g)
        iou, dice, miou, mdice = _np_scores(p, g)
        assert s["iou"] == pytest.approx(iou, abs=1e-15)
        assert s["dice"] == pytest.approx(dice, abs=1e-15)
        assert s["medplib_iou"] == miou
        assert s["medplib_dice"] == pytest.approx(mdice, abs=1e-15)


def test_mask_hand_case():
    # P = 2 pixels, G = 3 pixels, overlap 1: IoU = 1/4, Dice = 2/5
    p = np.array([[1, 1, 0], [0, 0, 0]], np.uint8)
    g = np.array([[0, 1, 1], [0, 1, 0]], np.uint8)
    s = M.mask_scores(p, g)
    assert (s["intersection"], s["union"], s["iou"], s["dice"]) == (1, 4, 0.25, 0.4)


def test_prediction_resized_nearest_to_reference(rng):
    torch = pytest.importorskip("torch")
    small = (rng.random((8, 12)) < 0.5).astype(np.uint8)
    want = torch.nn.functional.interpolate(torch.from_numpy(small)[None, None].float(), size=(20, 30),
                                           mode="nearest")[0, 0].numpy().astype(np.uint8)
    got = mg._C.eval_mask_resize_nearest(small, 20, 30)
    np.testing.assert_array_equal(got, want)
    g = (rng.random((20, 30)) < 0.5).astype(np.uint8)
    assert M.mask_scores(small, g)["dice"] == pytest.approx(_np_scores(want, g)[1], abs=1e-15)


def test_rle_matches_pycocotools(rng):
    mask_util = pytest.importorskip("pycocotools.mask")
    for _ in range(100):
        h, w = rng.integers(1, 50, size=2)
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        rle = mask_util.encode(np.asfortranarray(m))
        assert M.rle_encode(m) == rle["counts"]
        np.testing.assert_array_equal(M.rle_decode(rle["counts"], h, w), m)
    with pytest.raises(mg.MedgroundError):
        M.rle_decode("not-rle!!", 4, 4)


def test_seg_evaluate_png_npy_rle(tmp_path, rng):
    from PIL import Image
    mask_util = pytest.importorskip("pycocotools.mask")
    g = (rng.random((16, 16)) < 0.4).astype(np.uint8)
    p = g.copy()
    p[:4] = 1 - p[:4]
    Image.fromarray(g * 255).save(tmp_path / "gt.png")
    np.save(tmp_path / "pred.npy", p)
    rle = mask_util.encode(np.asfortranarray(p))
    recs = [
        {"id": 0, "image": "ct_1.png", "pred_mask": "pred.npy", "gt_mask": "gt.png"},
        {"id": 1, "image": "mr_1.png", "pred_mask": {"size": [16, 16], "counts": rle["counts"].decode()},
         "gt_mask": g.tolist()},
        {"id": 2, "image": "mr_2.png", "pred_mask": p[::2, ::2].tolist(), "gt_mask": g.tolist()},  # resized
    ]
    path = tmp_path / "seg.jsonl"
    import json
    path.write_text("\n".join(json.dumps(r) for r in recs))
    r = mg.evaluate(path, task="seg")
    d = _np_scores(p, g)[1]
    small = mg._C.eval_mask_resize_nearest(np.ascontiguousarray(p[::2, ::2]), 16, 16)
    d2 = _np_scores(small, g)[1]
    assert r.table.loc["ct", "dice"] == pytest.approx(d)
    assert r.table.loc["mr", "dice"] == pytest.approx((d + d2) / 2)
    assert r.table.loc["all", "dice"] == pytest.approx((2 * d + d2) / 3)  # MedPLIB: mean over samples
    assert r.table.loc["average", "dice"] == pytest.approx((d + (d + d2) / 2) / 2)  # macro over modalities
    with pytest.raises(mg.FormatError, match="needs pred_mask"):
        mg.evaluate([{"id": 0, "image": "ct_1.png", "gt_mask": g.tolist()}], task="seg")


def test_vqa_explicit_modality_field_wins():
    # OmniMedVQA: modality from its QA JSON (modality_type), macro over modalities
    recs = [{"question_id": i, "text": p, "gt": "A", "answer_type": "closed", "image_path": f"Images/x/{i}.png",
             "modality_type": m} for i, (p, m) in enumerate([("A", "CT"), ("B", "CT"), ("A", "MR")])]
    t = mg.evaluate(recs, task="vqa").table
    assert t.loc["CT", "closed_accuracy"] == 0.5 and t.loc["MR", "closed_accuracy"] == 1.0
    assert t.loc["average", "closed_accuracy"] == 0.75 and t.loc["all", "closed_accuracy"] == pytest.approx(2 / 3)


def test_float_prediction_needs_threshold(rng):
    probs = rng.random((8, 8))
    g = (rng.random((8, 8)) < 0.5).astype(np.uint8)
    with pytest.raises(mg.InvalidArgumentError, match="threshold"):
        M.mask_scores(probs, g)
    # MedPLIB: sigmoid > 0.1 on probabilities
    assert M.mask_scores(probs, g, 0.1)["dice"] == pytest.approx(_np_scores(probs > 0.1, g)[1], abs=1e-15)
    recs = [{"id": 0, "image": "ct_1.png", "pred_mask": probs.tolist(), "gt_mask": g.tolist()}]
    r = mg.evaluate(recs, task="seg", mask_threshold=0.1)
    assert r.table.loc["ct", "dice"] == pytest.approx(_np_scores(probs > 0.1, g)[1], abs=1e-15)
    with pytest.raises(mg.MedgroundError, match="threshold"):
        mg.evaluate(recs, task="seg")
