"""medground.evaluate: hand-checked VG/ROC cases, BiRD's per-modality
averaging reproduced with a direct transcription of its scripts (from
../shared/docs/metrics.md §1), captioning per modality vs pycocoevalcap,
bad input, the CLI and the SPICE bridge's plumbing."""

from __future__ import annotations

import json
import random
import re
import shutil

import numpy as np
import pytest

import medground as mg
from medground.eval import BIRD_MODALITIES, metrics as M
from medground.eval.cli import add_arguments, run as cli_run

# ---- a transcription of BiRD's regularization + eval_{VG,RO}_score_modality -----


def bird_extract(resp: str) -> str:
    if ".<|im_end|>" in resp:
        resp = resp[:resp.index(".<|im_end|>")] + "."
    resp = resp.replace("<|im_end|>\n", "")
    m = re.search(r"\n(.*?)\n", resp, re.DOTALL)
    if m:
        resp = m.group(1)
    return resp.replace("<|endoftext|>", "").strip()


def box_iou(p, g):
    with np.errstate(all="ignore"):
        area_p = (p[2] - p[0]) * (p[3] - p[1])
        area_g = (g[2] - g[0]) * (g[3] - g[1])
        lt = np.maximum(p[:2], g[:2])
        rb = np.minimum(p[2:], g[2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[0] * wh[1]
        return inter / (area_p + area_g - inter)


def parse_boxes(texts):
    out = []
    for s in texts:
        try:
            v = np.array([float(x) for x in s.replace("(", "").replace(")", "").split(",")])
            out.append(v if len(v) == 4 else None)
        except ValueError:
            out.append(None)
    return out


def vg_script(records):
    tp = {m: 0 for m in BIRD_MODALITIES}
    n = {m: 0 for m in BIRD_MODALITIES}
    for r in records:
        mod = r["image"].split("_")[0]
        gt = parse_boxes(re.findall(r"<box>(.*?)</box>", r["annotation"]))
        if not gt:
            continue
        resp = bird_extract(r["response"])
        texts = re.findall(r"<box>(.*?)</box>", resp) or re.findall(r"\(\d+,\d+\),\(\d+,\d+\)", resp)
        preds = parse_boxes(texts)
        for g in gt:
            n[mod] += 1
            for p in preds:
                if p is not None and box_iou(p, g) > 0.5:
                    tp[mod] += 1
                    break
    scores = {m: tp[m] / (n[m] + 1e-8) for m in BIRD_MODALITIES}
    return scores, sum(scores.values()) / len(BIRD_MODALITIES)


def roc_script(records):
    correct = {m: 0 for m in BIRD_MODALITIES}
    count = {m: 0 for m in BIRD_MODALITIES}
    for r in records:
        mod = r["image"].split("_")[0]
        resp = bird_extract(r["response"]).lower()
        count[mod] += 1
        correct[mod] += all(w in resp for w in r["annotation"].lower().split(" "))
    scores = {m: correct[m] / count[m] if count[m] else 0 for m in BIRD_MODALITIES}
    return scores, sum(scores.values()) / len(BIRD_MODALITIES)


IMAGES = {"ct": "ct_00--AbdomenCT1K--Case_00220--x_0359.png", "mr": "mr_t1--BraTS--case_1--z_0040.png",
          "x": "x_ray--ChestX--img_1.png", "pet": "pet_00--a--b.png", "endoscopy": "endoscopy_00--k.png",
          "dermoscopy": "dermoscopy_00--isic.png", "fundus": "fundus_00--f.png", "ultrasound": "ultrasound_00--u.png"}


def _box(rng, jitter=None, base=None):
    if base is not None:
        x1, y1, x2, y2 = (int(v + rng.randint(-jitter, jitter)) for v in base)
        return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)
    x1, y1 = rng.randint(0, 800), rng.randint(0, 800)
    return x1, y1, x1 + rng.randint(5, 200), y1 + rng.randint(5, 200)


def crafted_vg(n=600, seed=5, modalities=("ct", "mr", "x", "fundus", "ultrasound")):
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        mod = rng.choice(modalities)
        gts = [_box(rng) for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))]  # 0: annotation without a box
        ann = "The lesion " + "".join(f"<box>({a},{b}),({c},{d})</box>" for a, b, c, d in gts)
        kind = rng.random()
        preds = [_box(rng, rng.choice([2, 20, 60]), g) for g in gts if rng.random() < 0.8] + \
                [_box(rng) for _ in range(rng.choice([0, 0, 1]))]
        body = "".join(f"<box>({a},{b}),({c},{d})</box>" for a, b, c, d in preds)
        if kind < 0.1:
            resp = "I cannot find it.<|im_end|>"                       # no box in the answer
        elif kind < 0.2:
            resp = " ".join(f"({a},{b}),({c},{d})" for a, b, c, d in preds) + "<|im_end|>"  # bare fallback
        elif kind < 0.3:
            resp = f"<ref>lesion</ref>{body}.<|im_end|>\n<|endoftext|>garbage <box>(0,0),(1000,1000)</box>"
        elif kind < 0.4:
            resp = f"intro\n<ref>x</ref>{body}\ntrailing <box>(0,0),(999,999)</box>"  # the \n..\n span rule
        elif kind < 0.45:
            resp = ""                                                      # empty prediction
        elif kind < 0.5:
            resp = body.replace(",", ";", 1) + "<|endoftext|>"             # a box that does not parse
        else:
            resp = body + "<|im_end|>\n<|endoftext|>"
        recs.append({"id": i, "image": IMAGES[mod], "question": "Where is it?", "annotation": ann, "response": resp})
    return recs


def test_vg_hand_cases():
    recs = [
        # IoU of (100,100,200,200) and (110,110,210,210): inter 90*90 = 8100,
        # union 2*10000 - 8100 = 11900 -> 0.6807 > 0.5: hit at 0.3 and 0.5, miss at 0.7
        {"id": 0, "image": IMAGES["ct"], "annotation": "<box>(100,100),(200,200)</box>",
         "response": "<box>(110,110),(210,210)</box><|im_end|>"},
        # exactly IoU 0.5 is NOT a hit (strict >): (0,0,100,100) vs (0,0,100,50): 5000/10000
        {"id": 1, "image": IMAGES["ct"], "annotation": "<box>(0,0),(100,100)</box>",
         "response": "<box>(0,0),(100,50)</box>"},
        # annotation without a box: skipped, not in the denominator
        {"id": 2, "image": IMAGES["mr"], "annotation": "no box", "response": "<box>(1,1),(2,2)</box>"},
        # two GT boxes, bare "(d,d),(d,d)" answer matching only the first
        {"id": 3, "image": IMAGES["x"], "annotation": "<box>(0,0),(10,10)</box><box>(20,20),(30,30)</box>",
         "response": "(0,0),(10,10)"},
    ]
    r = mg.evaluate(recs, task="vg")
    t = r.table
    # ct: 1 hit of 2 boxes; x: 1 of 2; mr: 0 boxes -> 0; others 0
    assert t.loc["ct", "Recall@0.5"] == pytest.approx(1 / (2 + 1e-8), abs=1e-15)
    assert t.loc["ct", "Recall@0.3"] == pytest.approx(2 / (2 + 1e-8), abs=1e-15)  # 0.5 > 0.3
    assert t.loc["ct", "Recall@0.7"] == 0.0
    assert t.loc["x", "Recall@0.5"] == pytest.approx(1 / (2 + 1e-8), abs=1e-15)
    assert t.loc["mr", "gt_boxes"] == 0 and t.loc["mr", "Recall@0.5"] == 0.0
    # average over the 8 modalities: (0.5 + 0.5) / 8 = 0.125 (up to the 1e-8)
    assert r.average["Recall@0.5"] == pytest.approx(0.125, abs=1e-8)
    # mean IoU (ct): (8100/11900 + 0.5) / 2
    assert t.loc["ct", "mean_iou"] == pytest.approx((8100 / 11900 + 0.5) / 2, abs=1e-12)
    kinds = {f.kind for f in r.findings}
    assert "annotation_without_box" in kinds
    assert t.loc["x", "fallback_boxes"] == 1


def test_vg_reproduces_bird_script_on_crafted_file(tmp_path):
    recs = crafted_vg()
    path = tmp_path / "vg.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    scores, final = vg_script(recs)
    r = mg.evaluate(path, task="vg", on_error="report")
    for m in BIRD_MODALITIES:
        assert r.table.loc[m, "Recall@0.5"] == scores[m], m   # same formula, exact
    assert r.average["Recall@0.5"] == pytest.approx(final, abs=1e-15)
    kinds = {f.kind for f in r.findings}
    assert {"annotation_without_box", "no_box_in_answer", "bad_pred_box"} <= kinds
    assert r.table.loc["pet", "records"] == 0 and r.average["Recall@0.5"] < r.table.loc["all", "Recall@0.5"]
    bad = sum(1 for f in r.findings if f.kind == "bad_pred_box")
    # findings cover every record; the rows only those with a GT box
    assert 0 < r.table.loc["all", "unparsable_pred_boxes"] <= bad


def test_roc_hand_and_script(tmp_path):
    recs = [
        {"id": 0, "image": IMAGES["ct"], "annotation": "Left kidney", "response": "The kidneys on the LEFT.<|im_end|>"},
        {"id": 1, "image": IMAGES["ct"], "annotation": "liver", "response": "spleen"},
        {"id": 2, "image": IMAGES["mr"], "annotation": "brain  stem", "response": "brainstem"},  # '' token matches
        {"id": 3, "image": IMAGES["x"], "annotation": "lung", "response": "lung."},
    ]
    r = mg.evaluate(recs, task="roc")
    t = r.table
    # ct 1/2 (substring rule: "kidney" in "kidneys"), mr 1/1, x 1/1 -> (0.5 + 1 + 1) / 8
    assert t.loc["ct", "recall"] == 0.5 and t.loc["mr", "recall"] == 1.0
    assert r.average["recall"] == pytest.approx(2.5 / 8)
    # strict exact match: only "lung" == "lung." (final '.' dropped)
    assert t.loc["x", "exact_match"] == 1.0 and t.loc["ct", "exact_match"] == 0.0
    rng = random.Random(3)
    words = "left right kidney kidneys liver lung upper lobe the of Ödem ÖDEM Łódź ΑΒΓ αβγ ДА да".split()
    many = [{"id": i, "image": IMAGES[rng.choice(list(IMAGES))], "annotation": " ".join(rng.sample(words, 2)),
             "response": " ".join(rng.sample(words, rng.randint(0, 5))) + rng.choice(["", ".<|im_end|>", "\n"])}
            for i in range(500)]
    scores, final = roc_script(many)
    r = mg.evaluate(many, task="roc")
    for m in BIRD_MODALITIES:
        assert r.table.loc[m, "recall"] == pytest.approx(scores[m], abs=1e-15)
    assert r.average["recall"] == pytest.approx(final, abs=1e-15)


def test_bird_clean_matches_transcription():
    rng = random.Random(11)
    parts = ["a", "b.", ".<|im_end|>", "<|im_end|>\n", "\n", "<|endoftext|>", " ", "\t", "x\ny"]
    texts = ["".join(rng.choice(parts) for _ in range(rng.randint(0, 8))) for _ in range(2000)]
    assert M.bird_clean(texts) == [bird_extract(t) for t in texts]


@pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")
def test_mia_caption_per_modality_reproduces_pycocoevalcap():
    """BiRD GC/MII: COCOEvalCap per modality (PTB jar, BLEU, METEOR jar,
    ROUGE-L, CIDEr-D with that modality's IDF), rounded to 6 decimals, mean
    over modalities; mBMR = mean(Bleu_4, METEOR, ROUGE_L)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    rng = random.Random(9)
    words = ("the a left right kidney liver lesion mass small large shows image ct scan of in with no evidence "
             "enlarged, normal. (arrow) patient's isn't").split()
    recs = []
    for i in range(90):
        mod = ["ct", "mr", "x"][i % 3]
        ann = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))).capitalize() + "."
        resp = " ".join(rng.choice(words) for _ in range(rng.randint(2, 12))) + ".<|im_end|>"
        recs.append({"id": i, "image": IMAGES[mod], "annotation": ann, "response": resp})
    r = mg.evaluate(recs, task="mia", spice=False)
    tok = PTBTokenizer()
    meteor = Meteor()
    per = {}
    try:
        for mod in ("ct", "mr", "x"):
            sel = [x for x in recs if x["image"].startswith(mod + "_")]
            gts = tok.tokenize({k: [{"caption": x["annotation"]}] for k, x in enumerate(sel)})
            res = tok.tokenize({k: [{"caption": bird_extract(x["response"])}] for k, x in enumerate(sel)})
            b, _ = Bleu(4).compute_score(gts, res, verbose=0)
            row = dict(zip(("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"), b))
            row["METEOR"], _ = meteor.compute_score(gts, res)
            row["ROUGE_L"], _ = Rouge().compute_score(gts, res)
            row["CIDEr"], _ = Cider().compute_score(gts, res)
            per[mod] = row
    finally:
        del meteor
    for mod, row in per.items():
        for k, v in row.items():
            assert r.table.loc[mod, k] == pytest.approx(v, abs=1e-9), (mod, k)
    for k in per["ct"]:
        assert r.average[k] == pytest.approx(np.mean([round(per[m][k], 6) for m in per]), abs=1e-9), k
    want = np.mean([np.mean([round(per[m][k], 6) for m in per]) for k in ("Bleu_4", "METEOR", "ROUGE_L")])
    assert r.average["mBMR"] == pytest.approx(want, abs=1e-9)
    assert r.modules["METEOR"] == "exact stem synonym paraphrase"
    assert any(f.kind == "missing_modality" for f in r.findings)


# ---- bad input -------------------------------------------------------------------

def _write(tmp_path, lines, name="pred.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_malformed_jsonl_line_numbers(tmp_path):
    good = json.dumps({"id": 0, "image": IMAGES["ct"], "annotation": "<box>(0,0),(10,10)</box>",
                       "response": "<box>(0,0),(10,10)</box>"})
    p = _write(tmp_path, [good, '{"id": 1, "image": ', good.replace('"id": 0', '"id": 2'), "not json"])
    with pytest.raises(mg.FormatError, match=r"pred\.jsonl:2: malformed JSON.*pred\.jsonl:4"):
        mg.evaluate(p, task="vg")
    r = mg.evaluate(p, task="vg", on_error="report")
    assert [f.line for f in r.findings if f.kind == "malformed_line"] == [2, 4]
    assert r.table.loc["ct", "gt_boxes"] == 2 and r.table.loc["ct", "Recall@0.5"] == pytest.approx(1.0)


def test_missing_fields_nan_empty(tmp_path):
    with pytest.raises(mg.FormatError, match=r"record 1 .*no prediction field"):
        mg.evaluate([{"id": 7, "image": IMAGES["ct"], "annotation": "x"}], task="roc")
    with pytest.raises(mg.FormatError, match="no reference field"):
        mg.evaluate([{"id": 7, "image": IMAGES["ct"], "response": "x"}], task="roc")
    with pytest.raises(mg.FormatError, match="no image name"):
        mg.evaluate([{"id": 7, "annotation": "x", "response": "x"}], task="roc")
    with pytest.raises(mg.FormatError, match="is NaN"):
        mg.evaluate([{"id": 7, "image": IMAGES["ct"], "annotation": "x", "response": float("nan")}], task="roc")
    with pytest.raises(mg.FormatError, match="empty prediction file"):
        mg.evaluate(_write(tmp_path, [""], "empty.jsonl"), task="vg")
    with pytest.raises(mg.FormatError, match="no records"):
        mg.evaluate([], task="vg")
    with pytest.raises(FileNotFoundError):
        mg.evaluate(tmp_path / "absent.jsonl", task="vg")
    with pytest.raises(mg.InvalidArgumentError, match="task must be"):
        mg.evaluate([{"id": 1}], task="bleu")
    # report mode: bad records become findings, the rest is scored
    recs = [{"id": 1, "image": IMAGES["ct"], "annotation": "lung", "response": "lung"}, {"id": 2, "image": IMAGES["ct"]}]
    r = mg.evaluate(recs, task="roc", on_error="report")
    assert r.table.loc["ct", "records"] == 1 and [f.kind for f in r.findings] == ["missing_field"]


def test_nan_boxes_never_hit():
    recs = [
        # a NaN coordinate in the answer: IoU NaN, never > 0.5 (numpy semantics)
        {"id": 0, "image": IMAGES["ct"], "annotation": "<box>(0,0),(10,10)</box>", "response": "<box>(nan,0),(10,10)</box>"},
        # a GT box that does not parse: the reference crashes -> typed error naming the record
        {"id": 1, "image": IMAGES["ct"], "annotation": "<box>(a,b),(c,d)</box>", "response": "<box>(0,0),(1,1)</box>"},
    ]
    with pytest.raises(mg.FormatError, match=r"id 1.*do not parse"):
        mg.evaluate(recs, task="vg")
    r = mg.evaluate(recs, task="vg", on_error="report")
    assert r.table.loc["ct", "Recall@0.5"] == 0.0
    assert "bad_gt_box" in {f.kind for f in r.findings}


def test_references_joined_by_id_and_mismatched_ids(tmp_path):
    preds = [{"question_id": i, "text": t, "image_path": "images/ct_1.png"} for i, t in enumerate(["yes", "no", "yes"])]
    refs = [{"question_id": i, "gt": g, "answer_type": "closed"} for i, g in enumerate(["yes", "yes", "yes", "no"])]
    r = mg.evaluate(preds, task="vqa", references=refs)
    assert r.table.loc["all", "closed_accuracy"] == pytest.approx(2 / 3)
    assert any(f.kind == "missing_prediction" for f in r.findings)
    bad = preds + [{"question_id": 99, "text": "yes"}]
    with pytest.raises(mg.FormatError, match="99.*no reference"):
        mg.evaluate(bad, task="vqa", references=refs)
    r = mg.evaluate(bad, task="vqa", references=refs, on_error="report")
    assert r.table.loc["all", "closed"] == 3 and any(f.kind == "unmatched_id" for f in r.findings)
    dup = preds + [preds[0]]
    r = mg.evaluate(dup, task="vqa", answer_type="closed", references=None if False else refs)
    assert any(f.kind == "duplicate_id" for f in r.findings)


# ---- result formats and CLI ------------------------------------------------------

def test_result_dict_json_table():
    r = mg.evaluate(crafted_vg(50), task="vg", on_error="report")
    d = json.loads(r.to_json())
    assert d["task"] == "vg" and "average" in d["rows"] and set(BIRD_MODALITIES) <= set(d["rows"])
    assert list(r.table.index[-2:]) == ["average", "all"]
    r2 = mg.evaluate(crafted_vg(50), task="vg", on_error="report", modality_average=False)
    assert "average" not in r2.rows


def _cli(argv, capsys):
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(argv)
    code = cli_run(args)
    return code, capsys.readouterr()


def test_cli_text_json_csv(tmp_path, capsys):
    recs = crafted_vg(80)
    p = _write(tmp_path, [json.dumps(x) for x in recs])
    code, out = _cli([str(p), "--task", "vg", "--skip-bad-lines"], capsys)
    assert code == 0 and "average" in out.out and "Recall@0.5" in out.out
    code, out = _cli([str(p), "--task", "vg", "--json", "--skip-bad-lines"], capsys)
    d = json.loads(out.out)
    want = mg.evaluate(recs, task="vg", on_error="report").average["Recall@0.5"]
    assert d["rows"]["average"]["Recall@0.5"] == pytest.approx(want)
    code, out = _cli([str(p), "--task", "roc", "--csv"], capsys)
    assert out.out.splitlines()[0].startswith(",records,recall")
    # through the real entry point: a bad file gives exit code 3 and one line
    from medground.cli import main
    bad = _write(tmp_path, ["{oops"], "bad.jsonl")
    assert main(["evaluate", str(bad), "--task", "vg"]) == 3
    assert "malformed JSON" in capsys.readouterr().err


# ---- SPICE bridge: plumbing only (CoreNLP 3.6.0 models are not obtainable here) ---

def test_spice_plumbing(monkeypatch, tmp_path):
    inp = M.spice_input(["a dog"], [["a dog runs", "the dog"]])
    assert inp == [{"image_id": 0, "test": "a dog", "refs": ["a dog runs", "the dog"]}]
    out = [{"image_id": 1, "scores": {"All": {"f": 0.5}}}, {"image_id": 0, "scores": {"All": {"f": 0.25}}}]
    score, per = M.spice_parse(out, 2)
    assert score == pytest.approx(0.375) and per.tolist() == [0.25, 0.5]
    with pytest.raises(mg.FormatError):
        M.spice_parse(out[:1], 2)
    ok, status = M.spice_status()
    if not ok:
        assert status.startswith("SPICE unavailable")
        r = mg.evaluate([{"id": 0, "image": IMAGES["ct"], "annotation": "a lesion", "response": "a lesion"}],
                        task="caption", meteor=False)
        assert np.isnan(r.table.loc["ct", "SPICE"]) and r.modules["SPICE"].startswith("SPICE unavailable")
    monkeypatch.setenv("MEDGROUND_SPICE_JAR", str(tmp_path / "none.jar"))
    monkeypatch.setattr(M.resources, "java", lambda: "/usr/bin/java")
    ok, status = M.spice_status()
    assert not ok and "missing" in status
    monkeypatch.setattr(M.resources, "java", lambda: None)
    assert M.spice_scores(["a"], [["a"]]) == (None, None, "SPICE unavailable: no java on PATH")


def test_random_text_never_crashes():
    """Arbitrary Unicode / control characters / unbalanced tags through every
    text entry point: results, never a crash (NUL-free: Python str -> C)."""
    rng = random.Random(42)
    alphabet = list("abcXYZ019 .,;:!?'\"`()[]{}<>/\\|@#$%^&*-_=+~\t\n\r") + \
        ["\u00a0", "\u2019", "\u201c", "\u2026", "\u00e9", "\u03b1", "\u4e2d", "\U0001F600", "\ufffd", "\u00ad",
         "<box>", "</box>", "<|im_end|>", "<|endoftext|>", "&amp;", "n't", "'s", "cannot", "U.S.", "(1,2),(3,4)"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    texts.append("a" * 5000 + "." * 300 + "<" * 300)  # long runs
    assert len(M.ptb_tokenize(texts)) == len(texts)
    assert len(M.bird_clean(texts)) == len(texts)
    assert len(M.vqa_normalize(texts)) == len(texts)
    for t in texts[:500]:
        mg._C.eval_extract_boxes(t, True)
    out = mg._C.eval_vg(texts, texts[::-1], True, np.array([0.5]))
    assert out["hits"].shape == (len(texts), 1)
    mg._C.eval_roc(texts, texts[::-1], True)
    M.vqa_scores(texts[:1000], texts[1000:2000])
    M.caption_scores(M.ptb_tokenize(texts[:500]), [[x] for x in M.ptb_tokenize(texts[500:1000])])
    scorer = M.meteor_scorer(texts[:300])
    for t in texts[:300]:
        scorer.normalize(t)
    scorer.score(texts[:150], [[x] for x in texts[150:300]])
