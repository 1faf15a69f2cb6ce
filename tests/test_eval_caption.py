"""Captioning metrics against PyPI pycocoevalcap itself: its PTBTokenizer
(stanford-corenlp-3.4.1.jar), BLEU/ROUGE-L/CIDEr-D (pure Python) and its
bundled Meteor 1.5 jar with the paraphrase table it ships. Each jar runs
once on the whole corpus (module-scoped fixtures)."""

from __future__ import annotations

import inspect
import random
import re
import shutil

import numpy as np
import pytest

from medground.eval import metrics as M

pycoco = pytest.importorskip("pycocoevalcap")
from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java (default-jre-headless) not installed")

# Radiology-style captions written for these tests (real-text style: the
# punctuation, clitics, numbers and abbreviations captions contain).
REAL = [
    "Axial CT image of the abdomen shows a 3.5 cm hypodense lesion in the right lobe of the liver.",
    "Chest X-ray: no acute cardiopulmonary abnormality.",
    "The left kidney is enlarged, with mild hydronephrosis (arrow).",
    "MRI T2-weighted image shows a well-defined hyperintense mass [arrowhead] in the pituitary.",
    "There's a small pleural effusion on the right; the heart size is normal.",
    "Endoscopy shows an ulcer in the gastric antrum, approx. 1 cm in size.",
    "Dermoscopy: a pigmented lesion with irregular borders, e.g. an atypical naevus.",
    "Fundus photograph of the left eye shows drusen near the macula.",
    "Ultrasound of the gallbladder shows multiple stones and wall thickening of 4 mm.",
    "PET/CT shows increased FDG uptake in the mediastinal lymph nodes.",
    "The patient's spleen isn't enlarged, and it doesn't show focal lesions.",
    "A 2-3 mm nodule is seen in the left upper lobe (Fig. 2).",
    "\"Ground-glass\" opacities are noted bilaterally, worse on the right.",
    "No evidence of fracture... soft tissues are unremarkable!",
    "Sagittal view: the spinal cord can't be assessed due to motion artefact.",
    "Coronal image shows the liver, spleen & both kidneys; no free fluid.",
    "The tumour measures 45x32 mm -- larger than on the prior study of 12/03/2019.",
    "Is there a mass? Yes, in the right breast at 10 o'clock.",
    "Dr. Smith's note: the colour Doppler shows flow within the lesion.",
    "Brain MRI (FLAIR) shows periventricular white-matter hyperintensities.",
]


def _stdlib_sentences(n: int = 400) -> list[str]:
    """Real English sentences from the standard library's docstrings."""
    import collections, json, argparse, logging, textwrap, pathlib, csv, email, unittest  # noqa: E401
    out: list[str] = []
    for module in (collections, json, argparse, logging, textwrap, pathlib, csv, email, unittest, random, re):
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) if callable(obj) or inspect.ismodule(obj) else None
            if not doc:
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", doc.replace("\n", " ")):
                if 3 <= len(sentence.split()) <= 40 and sentence not in out:
                    out.append(sentence)
    return out[:n]


WORDS = ("the a an of in on with and left right lower upper lobe lung liver kidney kidneys spleen heart brain mass "
         "lesion lesions nodule nodules tumor tumour opacity effusion fracture enlarged small large mild severe no "
         "evidence shows showing seen image scan ct mri x-ray ultrasound chest abdomen axial coronal view there is "
         "are 3.5 cm 2 mm 10 patient's don't it's can't hypodense lesion, region. (arrow) [note] grey colour "
         "haemorrhage big huge tiny car automobile vehicle kid child happy glad walks walked walking ran running run "
         "U.S. e.g. i.e. dr. well-defined t2-weighted 1,000 50% & / : ; ! ? -- ... \" ' isn't won't").split(" ")


# Lines written to probe the PTBLexer rules (quotes, brackets, clitics, URLs,
# e-mails, SGML, smileys, fractions, phone numbers, symbols, file names...).
PTB_RULE_CASES = [
    'The CT scan (axial view) shows a 3.5 cm mass [arrow] in the left lobe.',
    "Don't worry, it's fine; can't say. He won't go. I'm here. You're, we've, they'll, she'd",
    'U.S. e.g. i.e. Dr. Smith, Mr. Jones etc. al. vs. Fig. 2 figs. No. 5',
    'well-defined T2-weighted x-ray X-Ray 1,000 50% $5 #3 & a/b 3/4 1/2-inch 12/25/2010 a*b ** "quoted" \'single\'',
    'grey colour haemorrhage oedema centre fibre tumours tumour behaviour favourite colours anaemia leukaemia oestrogen',
    'Wait... what?! Yes!! No?? --- - -- a--b a-b c++ <tag> {brace} x=y a+b @user me@x.com http://x.com www.google.com',
    "patient's doctors' o'clock isn't 'tis 'til cannot gonna gotta wanna lemme gimme",
    '3.5cm 10mm 2x2 1st 2nd 3rd 4th. 5.0. end.',
    'multiple spaces   here\ttab',
    'café naïve — – “fancy” ‘q’ … été',
    'A.B.C. a.b. A. B. N.Y. U.K. I. am',
    'ca. fig. figs. prop. nos. art. bldg. pp. op. approx. cf. est. ext. sq. ft. no. ph. tel. vol. p. pg. jan. mon. inc. co. jr. ave. st. gen. rev. mt. corp. dept. univ. calif. mass. wash.',
    'A.B x U.S end U.S.',
    'a -5 b 2-3 cm 3.5-cm 1,000-mile 555-123-4567 (555) 123-4567 2 1/2 inch ½ ¼',
    'AT&T a_b __init__ @@ ## #hash ***  *a* ..... ...... . . . .. a..b',
    "'90s '90 rock'n'roll y'all O'Brien d'Artagnan l'amour rock 'n' roll",
    'word., word.; word.: hello.,',
    '“Hi,” she said. ‘Yes’ «oui» „low‟ ‚x‛',
    '3x 10x12 3x3x3 1.5x 0.5mm² 37°C 5×5 ±2 µm ≥3 →',
    'e.g., i.e., etc., Dr. al., U.S.,',
    "he's HE'S SHE'LL don't DON'T Don't can't CAN'T isn't aren't wouldn't ain't y'know",
    'www.example.org/path http://ex.com/a?b=c, test@mail.com foo.com',
    '&amp; &lt; &gt; &quot; &apos; &mdash;',
    'x.y.z a.b.c.d 1.2.3 v1.2',
    'a/b/c a/b/c/d and/or 3/4/5 12/25 1/2/2010 m/s km/h',
    'soft\xadhyphen',
    'fig.2 fig. 2 no.5 No. 5 ca. 5 pp. 3 art. 3 op. 3 prop. 3 figs. 2 nos. 2 Mr. Smith Mass. 3 vol. 2 no. x Fig. A',
    "A.B, x a.b. U.S., 'tis 'twas 'Tis gonna Gonna gonnax cannotx wanna",
    '“” ‘’ \'\'\' "" `` ``x x\'\' \' x \'sa \'s',
    "end's",
    'x++ c++ C++ ab++ a+ g++ c# C# f#',
    '@user1 @ user #tag1 #1 # tag a@b @@x ##x #a-b @a.b @a_b',
    'pre-op non-small post-contrast',
    'a@b, x@y.z q@w.com. a@b.c.',
    "specify ``(',', ':')`` to",
    "(':') x",
    "':' y",
    "a ':' b",
    'x w.',
    'a Dr.',
    'a vs.',
    'a U.S.',
    'a etc.',
    'a w. b',
    'a w.)',
    'a w.,',
    'a Jan.',
    'a cf.',
    ':) x :( x :D x :P :-) ;) =( x=(1) :o) :Dx',
    'last w.',
    'a La. x',
    'a Pa. x',
    'a Del. x',
    'a Tex. x',
    'a Ct. x',
    'a CT. x',
    'the CT.',
    '3.x 3.X 10.x 3.5.x 3.y 3.xy 3.x1 a.3 v.2 1.a 2.b 2.0b 1.2a x3.y',
    '<a@b.com> <a@b> <ab> a <b@c.d>, <x.y@z.com>.',
    '▁ ─ █ ✅ ❌ ❤️ ★ ☆ ♥ ⬆ ⭐ ⌘ ⎯',
    '[pytorch.org] [www.x.com] (www.x.com) [a.com/x]',
    'a <b@c.com> d',
    '1.txt x',
    'a1.txt x',
    '400px.png x',
    'logo_400px.png x',
    '"1.txt", x',
    '0.11.x.',
    '0.12.x, x',
    'v2.txt',
]


# Abbreviation handling (the jar's lists are case-sensitive for some):
# sentence-final and mid-sentence, lower and capitalised.
ABBREVIATIONS = ("ct CT mr MRI pt dr Dr vol fig Fig figs no No ca approx inc mg ml cm mm hr min sec yr mo dept co "
                 "ltd jr sr st ave mr Mr mrs ms prof gen col lt rev vs cf est ext sq ph tel etc al seq bldg mass Mass "
                 "la La pa Pa del Del tex Tex ill Ill wash Wash miss Miss ore Ore ark Ark jan Jan dec Dec fri Fri "
                 "corp univ e.g i.e a.m p.m U.S u.s T T2 x X").split()


def _abbreviation_sentences() -> list[str]:
    out = []
    for w in ABBREVIATIONS:
        out += [f"Seen on {w}. Next image", f"findings on {w}.", f"{w}. 2 lesions", f"({w}.)"]
    return out


def _corpus() -> tuple[list[str], list[list[str]]]:
    rng = random.Random(2024)
    real = REAL + PTB_RULE_CASES + _abbreviation_sentences() + _stdlib_sentences()
    hyps, refs = [], []
    for i in range(1200):  # generated pairs: edits of a reference, unrelated text, identical text
        ref = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 18)))
        r = rng.random()
        if r < 0.4:
            w = ref.split(" ")
            for _ in range(rng.randint(0, 3)):
                w[rng.randrange(len(w))] = rng.choice(WORDS)
            hyp = " ".join(w)
        elif r < 0.45:
            hyp = ref
        else:
            hyp = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 18)))
        extra = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))) for _ in range(rng.choice([0, 0, 1, 2]))]
        hyps.append(hyp)
        refs.append([ref] + extra)
    for i, ref in enumerate(real):  # real-text pairs: a sentence vs an edited copy or another sentence
        w = ref.split()
        if i % 3 == 0:
            hyp = real[(i * 7 + 3) % len(real)]
        else:
            k = rng.randrange(len(w))
            hyp = " ".join(w[:k] + w[k + 1:] if rng.random() < 0.5 else w[:k] + [rng.choice(WORDS)] + w[k:])
        hyps.append(hyp)
        refs.append([ref])
    # empty predictions and ones PTB empties (only punctuation)
    for hyp, ref in (("", "the liver is enlarged"), ("...", "a small nodule"), ("(!) --", "no acute findings"),
                     ("liver", "")):
        hyps.append(hyp)
        refs.append([ref])
    return hyps, refs


@pytest.fixture(scope="module")
def corpus():
    hyps, refs = _corpus()
    assert len(hyps) >= 1500
    return hyps, refs


@pytest.fixture(scope="module")
def jar_tokenized(corpus):
    """pycocoevalcap's PTBTokenizer (one java run for hyps and refs)."""
    if shutil.which("java") is None:
        pytest.skip("java not installed")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    hyps, refs = corpus
    texts = hyps + [r for rs in refs for r in rs]
    out = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    tok = [out[i][0] for i in range(len(texts))]
    it = iter(tok[len(hyps):])
    return tok[:len(hyps)], [[next(it) for _ in rs] for rs in refs]


def _ours_tokenized(hyps, refs):
    """Our tokenizer on the same single call the jar fixture makes."""
    texts = hyps + [r for rs in refs for r in rs]
    tok = M.ptb_tokenize(texts)
    it = iter(tok[len(hyps):])
    return tok[:len(hyps)], [[next(it) for _ in rs] for rs in refs]


@needs_java
def test_ptb_tokenizer_matches_corenlp_jar(corpus, jar_tokenized):
    hyps, refs = corpus
    ours_h, ours_r = _ours_tokenized(hyps, refs)
    jar_h, jar_r = jar_tokenized
    bad = [(hyps[i], jar_h[i], ours_h[i]) for i in range(len(hyps)) if jar_h[i] != ours_h[i]]
    bad += [(refs[i], jar_r[i], ours_r[i]) for i in range(len(refs)) if jar_r[i] != ours_r[i]]
    assert not bad, f"{len(bad)} texts differ, first: {bad[:3]}"
    # the corpus exercises the rules that matter (not only plain words)
    joined = " ".join(jar_h + [r for rs in jar_r for r in rs])
    for token in ("'s", "n't", "-lrb-", "-lsb-", "3.5", "x-ray", "e.g.", "dr.", "1,000"):
        assert f" {token} " in f" {joined} ", token


# Hand-checked PTB cases (jar output verified once; rules in csrc/eval/ptb.c)
@pytest.mark.parametrize("text, expected", [
    ("Don't worry, it's fine.", "do n't worry it 's fine"),          # clitics split, ',' '.' removed
    ("The CT (axial) shows a mass [arrow].", "the ct -lrb- axial -rrb- shows a mass -lsb- arrow -rsb-"),
    ("3.5cm vs. 10mm; 1,000 cells", "3.5 cm vs. 10mm 1,000 cells"),  # NUMBER longest, then the letters
    ("He can't -- won't.", "he ca n't wo n't"),
    ("cannot gonna 'tis", "can not gon na 't is"),                   # assimilations split
    ("“quoted” 'single'", "quoted single"),                          # quotes -> `` '' ` ' -> removed
    ("grey colour tumour", "grey colour tumour"),                    # no Americanize in 3.4.1
])
def test_ptb_hand_cases(text, expected):
    assert M.ptb_tokenize([text]) == [expected]


def _pycoco_scores(hyps, refs):
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    bleu, bleu_img = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_img = Rouge().compute_score(gts, res)
    cider, cider_img = Cider().compute_score(gts, res)
    return list(bleu) + [rouge, cider], np.column_stack([np.array(bleu_img).T, rouge_img, cider_img])


def test_bleu_rouge_cider_match_pycocoevalcap_on_tokenized(corpus):
    """Our scorers vs pycocoevalcap's on the same (lower-cased, split) text:
    corpus and per-image values to 1e-9."""
    hyps, refs = corpus
    h = [" ".join(x.lower().split()) for x in hyps]
    r = [[" ".join(x.lower().split()) for x in rs] for rs in refs]
    ref_corpus, ref_img = _pycoco_scores(h, r)
    ours, ours_img = M.caption_scores(h, r)
    np.testing.assert_allclose(list(ours.values()), ref_corpus, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours_img, ref_img, rtol=0, atol=1e-9)


@needs_java
def test_full_pipeline_matches_pycocoevalcap(corpus, jar_tokenized):
    """Raw text: pycocoevalcap (jar PTB + scorers) vs ours (C PTB + C scorers)."""
    hyps, refs = corpus
    jar_h, jar_r = jar_tokenized
    ref_corpus, _ = _pycoco_scores(jar_h, jar_r)
    ours_h, ours_r = _ours_tokenized(hyps, refs)
    ours, _ = M.caption_scores(ours_h, ours_r)
    np.testing.assert_allclose(list(ours.values()), ref_corpus, rtol=0, atol=1e-9)
    # per modality-sized subsets too (IDF depends on the subset)
    for lo, hi in ((0, 7), (100, 400), (1200, len(hyps))):
        ref_sub, _ = _pycoco_scores(jar_h[lo:hi], jar_r[lo:hi])
        ours_sub, _ = M.caption_scores(ours_h[lo:hi], ours_r[lo:hi])
        np.testing.assert_allclose(list(ours_sub.values()), ref_sub, rtol=0, atol=1e-9)


@needs_java
def test_ptb_context_crosses_captions_as_in_the_jar():
    """pycocoevalcap feeds one call's captions to the jar joined by '\n':
    a sentence-final "w." before a capitalised "The" loses its period, and
    "figs." keeps it before a number, even across captions."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    lines = ["on w.", "The x", "on w.", "the x", "on figs.", "2 x", "on figs.", "x", "last w."]
    jar = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(lines)})
    ours = M.ptb_tokenize(lines)
    assert ours == [jar[i][0] for i in range(len(lines))]
    assert ours[:4] == ["on w", "the x", "on w.", "the x"] and ours[4] == "on figs." and ours[6] == "on figs"


@pytest.fixture(scope="module")
def jar_meteor(jar_tokenized):
    from pycocoevalcap.meteor.meteor import Meteor
    jar_h, jar_r = jar_tokenized
    gts = {i: list(r) for i, r in enumerate(jar_r)}
    res = {i: [h] for i, h in enumerate(jar_h)}
    m = Meteor()
    try:
        score, scores = m.compute_score(gts, res)
    finally:
        del m
    return score, np.asarray(scores, dtype=np.float64)


@needs_java
def test_meteor_matches_meteor_1_5_jar(jar_tokenized, jar_meteor):
    """C METEOR (exact, stem, synonym, paraphrase; beam quirks; corpus
    aggregation) vs pycocoevalcap's meteor-1.5.jar on PTB-tokenised text:
    the jar prints full doubles; we agree to 1e-12."""
    jar_h, jar_r = jar_tokenized
    corpus, per_image, modules = M.meteor_scores(jar_h, jar_r)
    assert modules == "exact stem synonym paraphrase"
    score, scores = jar_meteor
    assert abs(corpus - score) < 1e-12
    diff = np.abs(per_image - scores)
    assert diff.max() < 1e-12, f"{int((diff > 1e-12).sum())} segments differ"


def test_meteor_hand_case():
    # metrics.md §9: "the cat was sat on the mat" vs "the cat sat on the mat":
    # P = 3/3.25 (weighted), R = 1, Fmean = 0.98765..., 2 chunks over 6 matched
    # words -> frag 1/3, Pen = 0.6 * (1/3)^0.2 = 0.48165 -> 0.5119556177223324
    corpus, per, _ = M.meteor_scores(["the cat was sat on the mat"], [["the cat sat on the mat"]])
    assert per[0] == pytest.approx(0.5119556177223324, abs=1e-15)
    assert corpus == pytest.approx(0.5119556177223324, abs=1e-15)


def test_caption_hand_cases():
    # one image, hyp "a b c d", ref "a b c e": 1-grams 3/4, 2-grams 2/3,
    # 3-grams 1/2, 4-grams 0/1 (+1e-15 epsilons); lengths equal -> no BP.
    s, _ = M.caption_scores(["a b c d"], [["a b c e"]])
    assert s["Bleu_1"] == pytest.approx(0.75, abs=1e-9)
    assert s["Bleu_2"] == pytest.approx((0.75 * 2 / 3) ** 0.5, abs=1e-9)
    assert s["Bleu_3"] == pytest.approx((0.75 * 2 / 3 * 0.5) ** (1 / 3), abs=1e-9)
    # ROUGE-L: LCS 3, P = R = 3/4 -> F = 0.75 for any beta
    assert s["ROUGE_L"] == pytest.approx(0.75, abs=1e-12)
    # CIDEr-D with one image: IDF log(1) - log(1) = 0 -> every vector is 0 -> 0
    assert s["CIDEr"] == 0.0
    # brevity penalty: hyp "a b" vs ref "a b c d": p1 = p2 = 1, ratio 1/2 -> exp(1 - 2)
    s, _ = M.caption_scores(["a b"], [["a b c d"]])
    assert s["Bleu_1"] == pytest.approx(np.exp(-1), abs=1e-9)
    # ROUGE-L: P = 1, R = 1/2 -> (1 + 1.44) * 0.5 / (0.5 + 1.44) = 0.628866
    assert s["ROUGE_L"] == pytest.approx(2.44 * 0.5 / 1.94, abs=1e-12)


def test_meteor_published_anchors_and_modules():
    # Published Meteor 1.5 values for the NLTK guide/action example: the COCO
    # jar with its paraphrase table gives 0.44736091739438233
    # (huggingface/evaluate#115, voidful/TFkit#7); Meteor 1.5 built from source
    # with exact+stem+synonym only gives 0.4122414329113501 (metrics.md §9).
    hyp = "It is a guide to action which ensures that the military always obeys the commands of the party"
    ref = "It is a guide to action that ensures that the military will forever heed Party commands"
    full = M.meteor_scorer([hyp, ref])
    assert full.modules == "exact stem synonym paraphrase"
    assert full.score([hyp], [[ref]])[0] == 0.44736091739438233
    no_para = M.meteor_scorer([hyp, ref], paraphrase=False)
    assert no_para.modules == "exact stem synonym"
    assert no_para.score([hyp], [[ref]])[0] == 0.4122414329113501


def test_meteor_data_folder_and_missing_data(tmp_path):
    from conftest import shared_path
    hyp, ref = ["the kidneys are enlarged"], [["the kidney is big"]]
    folder = shared_path("meteor")  # Meteor's own english.* tables (same bytes as inside the jar)
    a = M.meteor_scores(hyp, ref, meteor_data=str(folder))
    b = M.meteor_scores(hyp, ref)
    assert a[0] == b[0] and a[2] == b[2]
    import medground as mg
    recs = [{"id": 0, "image": "ct_1.png", "annotation": "a b c", "response": "a b"}]
    r = mg.evaluate(recs, task="mia", meteor_data=str(tmp_path))  # an empty folder: no tables
    assert r.modules["METEOR"].startswith("unavailable") and "METEOR" not in r.rows["ct"]
