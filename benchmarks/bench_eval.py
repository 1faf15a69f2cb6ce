"""Evaluation benchmark (issue: evaluate; targets: the captioning suite
BLEU + METEOR + ROUGE-L + CIDEr-D >= 50x faster than pycocoevalcap on the same
30k records and < 10 s on one core; VG / ROC >= 1M records/s).

1. captioning: N synthetic BiRD-style records (default 30,000, Med-GRIT-Test30k
   size; radiology-style captions with punctuation, clitics, numbers,
   abbreviations). Ours: C PTB tokenisation + C BLEU/ROUGE-L/CIDEr-D + C
   METEOR 1.5 (exact, stem, synonym, paraphrase), timed as phases, with the
   one-time loading of Meteor's tables (gunzip + parse of the 270 MB
   paraphrase table) reported separately. pycocoevalcap: its PTBTokenizer jar,
   Bleu, Meteor jar (one process: start + paraphrase load + scoring), Rouge,
   Cider on the same tokenised records. By default pycocoevalcap runs on a
   subset (--pyco-n, default 10,000) and its time is EXTRAPOLATED linearly to
   N (the jars' start-up, measured on a one-record call, is counted once,
   not scaled); --full runs it on all N (the headline number: linear
   extrapolation from 3,000 records overstated pycocoevalcap's 30k time by
   ~30% in one run here, its per-record cost falls as the JVM warms up).
   The corpus scores of both on the subset are compared (they must agree).
   Ours is the best of --repeat runs (default 3; the first run also fills
   the paraphrase-table cache, see medground.eval.resources); pycocoevalcap
   runs once.
2. VG / ROC: mg_eval_vg / mg_eval_roc over N records (cleaning, box parsing,
   IoU at three thresholds), records/s, single thread.

Runs standalone: `python benchmarks/bench_eval.py` (~1 min), `--records N`,
`--pyco-n N`, `--full`, `--no-pycoco`. Prints a summary and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import shutil
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

import numpy as np  # noqa: E402

from medground import _C  # noqa: E402
from medground.eval import metrics as M  # noqa: E402

ORGANS = ["liver", "spleen", "left kidney", "right kidney", "pancreas", "gallbladder", "aorta", "lung", "heart",
          "brain", "stomach", "bladder", "prostate", "thyroid", "breast", "colon", "retina", "optic disc"]
FINDINGS = ["a hypodense lesion", "a 3.5 cm mass", "mild enlargement", "no abnormality", "a small nodule",
            "multiple cysts", "an ill-defined opacity", "a well-circumscribed tumour", "free fluid",
            "calcifications", "a fracture", "wall thickening of 4 mm", "increased uptake", "haemorrhage"]
MODS = ["ct", "mr", "x", "pet", "endoscopy", "dermoscopy", "fundus", "ultrasound"]
TEMPLATES = ["{mod} image of the {organ} shows {finding}.", "The {organ} isn't enlarged; there's {finding}.",
             "{finding} is seen in the {organ} (arrow).", "Axial view: {finding} in the {organ}, e.g. near the hilum.",
             "There is {finding} involving the {organ} -- see Fig. 2.", "No evidence of {finding} in the patient's {organ}."]


def _caption(rng: random.Random, mod: str) -> str:
    return rng.choice(TEMPLATES).format(mod=mod.upper(), organ=rng.choice(ORGANS), finding=rng.choice(FINDINGS)).capitalize()


def make_records(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    rng = random.Random(seed)
    hyps, refs, mods = [], [], []
    for _ in range(n):
        mod = rng.choice(MODS)
        ref = _caption(rng, mod)
        hyp = ref if rng.random() < 0.1 else _caption(rng, mod)
        if rng.random() < 0.3:
            words = hyp.split()
            words[rng.randrange(len(words))] = rng.choice(ORGANS)
            hyp = " ".join(words)
        hyps.append(hyp)
        refs.append(ref)
        mods.append(mod)
    return hyps, refs, mods


def ours(hyps: list[str], refs: list[str]) -> dict:
    t0 = time.perf_counter()
    h = M.ptb_tokenize(hyps)
    r = M.ptb_tokenize(refs)
    t1 = time.perf_counter()
    scores, _ = M.caption_scores(h, [[x] for x in r])
    t2 = time.perf_counter()
    M._meteor_data.cache_clear()
    scorer = M.meteor_scorer(h + r)
    t3 = time.perf_counter()
    meteor, _, modules = M.meteor_scores(h, [[x] for x in r], scorer=scorer)
    t4 = time.perf_counter()
    scores["METEOR"] = meteor
    return {"scores": scores, "modules": modules, "ptb_s": t1 - t0, "bleu_rouge_cider_s": t2 - t1,
            "meteor_load_s": t3 - t2, "meteor_score_s": t4 - t3, "total_s": t4 - t0,
            "total_without_load_s": (t4 - t0) - (t3 - t2)}


def pycoco(hyps: list[str], refs: list[str]) -> dict:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    tok = PTBTokenizer()
    t0 = time.perf_counter()
    tok.tokenize({0: [{"caption": "a b"}]})  # one JVM start, measured to not scale it
    ptb_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    gts = tok.tokenize({i: [{"caption": x}] for i, x in enumerate(refs)})
    res = tok.tokenize({i: [{"caption": x}] for i, x in enumerate(hyps)})
    t1 = time.perf_counter()
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    t2 = time.perf_counter()
    meteor_scorer = Meteor()
    meteor_scorer.compute_score({0: ["a b"]}, {0: ["a b"]})  # JVM start + table loading
    t_start = time.perf_counter()
    meteor, _ = meteor_scorer.compute_score(gts, res)
    t3 = time.perf_counter()
    del meteor_scorer
    scores = dict(zip(("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"), b))
    scores.update(ROUGE_L=rouge, CIDEr=cider, METEOR=meteor)
    return {"scores": scores, "ptb_s": t1 - t0, "ptb_jvm_start_s": ptb_start, "bleu_rouge_cider_s": t2 - t1,
            "meteor_start_s": t_start - t2,
            "meteor_s": t3 - t_start, "total_s": t3 - t0}


def bench_grounding(n: int) -> dict:
    rng = random.Random(1)
    ann, resp = [], []
    for _ in range(n):
        x, y = rng.randint(0, 800), rng.randint(0, 800)
        ann.append(f"The <ref>lesion</ref><box>({x},{y}),({x + 100},{y + 80})</box>")
        dx = rng.randint(-30, 30)
        resp.append(f"<ref>lesion</ref><box>({x + dx},{y}),({x + 100 + dx},{y + 80})</box><|im_end|>")
    th = np.array([0.3, 0.5, 0.7])
    best_vg = best_roc = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        _C.eval_vg(ann, resp, True, th)
        t1 = time.perf_counter()
        _C.eval_roc(ann, resp, True)
        t2 = time.perf_counter()
        best_vg, best_roc = min(best_vg, t1 - t0), min(best_roc, t2 - t1)
    return {"records": n, "vg_records_per_s": n / best_vg, "roc_records_per_s": n / best_roc}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=30000)
    parser.add_argument("--pyco-n", type=int, default=10000, help="records pycocoevalcap runs on (then extrapolated)")
    parser.add_argument("--full", action="store_true", help="run pycocoevalcap on all records (slow)")
    parser.add_argument("--no-pycoco", action="store_true")
    parser.add_argument("--grounding-records", type=int, default=300000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of our suite (best is reported)")
    args = parser.parse_args()
    _C.set_num_threads(1, None)
    hyps, refs, _ = make_records(args.records)
    out: dict = {"records": args.records}
    runs = [ours(hyps, refs) for _ in range(max(1, args.repeat))]
    o = min(runs, key=lambda r: r["total_s"])  # the machine may be shared: best of --repeat
    out["ours"] = o
    print(f"ours, {args.records} records, one thread, best of {len(runs)}: PTB {o['ptb_s']:.2f} s, BLEU+ROUGE-L+CIDEr-D "
          f"{o['bleu_rouge_cider_s']:.2f} s, METEOR load {o['meteor_load_s']:.2f} s + score {o['meteor_score_s']:.2f} s"
          f" = {o['total_s']:.2f} s ({o['total_without_load_s']:.2f} s without the one-time table load)")
    if not args.no_pycoco and shutil.which("java"):
        n = args.records if args.full else min(args.pyco_n, args.records)
        p = pycoco(hyps[:n], refs[:n])
        sub = ours(hyps[:n], refs[:n]) if n != args.records else o
        diff = max(abs(p["scores"][k] - sub["scores"][k]) for k in p["scores"])
        scale = args.records / n
        # jar start-up (JVM + paraphrase table) is paid once: not scaled
        ptb_var = max(p["ptb_s"] - 2 * p["ptb_jvm_start_s"], 0.0)  # two jar runs (refs, hyps)
        est = ((ptb_var + p["bleu_rouge_cider_s"] + p["meteor_s"]) * scale + 2 * p["ptb_jvm_start_s"]
               + p["meteor_start_s"])
        label = "measured" if n == args.records else f"EXTRAPOLATED from {n} records (x{scale:.1f}, jar start once)"
        out["pycocoevalcap"] = {**p, "records_run": n, "estimated_total_s": est, "estimate": label,
                                "max_abs_score_diff_vs_ours": diff}
        out["speedup"] = est / o["total_s"]
        out["speedup_without_load"] = est / o["total_without_load_s"]
        print(f"pycocoevalcap on {n} records: PTB jar {p['ptb_s']:.2f} s (JVM start {p['ptb_jvm_start_s']:.2f} s each), BLEU+ROUGE+CIDEr {p['bleu_rouge_cider_s']:.2f} s,"
              f" Meteor jar start {p['meteor_start_s']:.2f} s + {p['meteor_s']:.2f} s; for {args.records}: "
              f"{est:.1f} s ({label})")
        print(f"speed-up: {out['speedup']:.1f}x ({out['speedup_without_load']:.1f}x without our table load); "
              f"max |score difference| on the common records: {diff:.2e}")
    g = bench_grounding(args.grounding_records)
    out["grounding"] = g
    print(f"VG {g['vg_records_per_s'] / 1e6:.2f} M records/s, ROC {g['roc_records_per_s'] / 1e6:.2f} M records/s")
    out["targets_met"] = {"caption_under_10s": o["total_s"] < 10, "caption_50x": out.get("speedup", 0) >= 50,
                          "vg_1M_per_s": g["vg_records_per_s"] >= 1e6, "roc_1M_per_s": g["roc_records_per_s"] >= 1e6}
    print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
