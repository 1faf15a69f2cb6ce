"""SPICE: the C tuple F-score (csrc/eval/spice.c) and the jar bridge.

The official jar (spice-1.0.jar, as pycocoevalcap runs it) cannot parse
captions here: its Stanford CoreNLP 3.6.0 models cannot be downloaded. So:
  - hand-checked cases (values worked out in the comments);
  - a crafted file in the jar's -detailed output format, whose own
    truth_values and scores our parse + C scoring must reproduce;
  - the jar's own scoring classes (SemanticConcept/SemanticTuple/TupleSet/
    TupleFilter/Evaluation + Meteor's SynonymDictionary, from the jar and its
    lib/) run by a small Java driver (tests/reference/spice) on random tuple
    sets: every count, P/R/F bit for bit and every truth_value must agree;
  - the bridge's plumbing end to end with a stand-in `java` that answers as
    the jar would, and every "unavailable" reason.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

import medground as mg
from medground import _C
from medground.eval import metrics as M
from medground.eval import resources

from conftest import SHARED_DATA

REPO = pathlib.Path(__file__).resolve().parent.parent
CATS = M.SPICE_CATEGORIES
A, O, AT, R, CARD, COL, SIZE = range(7)
TP, FP, FN, PR, RE, F = range(6)


@pytest.fixture(scope="module")
def synonyms():
    """Meteor's synonym tables: ../shared/data/meteor, else pycocoevalcap's jar."""
    folder = SHARED_DATA / "meteor"
    try:
        return M.spice_synonyms(str(folder) if (folder / "english.synsets").exists() else None)
    except FileNotFoundError as error:
        pytest.skip(f"Meteor synonym tables not available: {error}")


def score(test, refs, synonyms, use_synsets=True):
    return M.spice_tuple_scores(test, refs, use_synsets=use_synsets, synonyms=synonyms)


# ---- hand-checked cases ----------------------------------------------------

def test_synonym_matches_by_hand(synonyms):
    # WordNet (Meteor's english.synsets): car.n.01 = {car, auto, automobile,
    # machine, motorcar}; sofa.n.01 = {sofa, couch, lounge}; man and woman
    # share no synset.
    test = [[["car"], ["car", "red"], ["car", "on", "sofa"], ["man"]]]
    refs = [[["automobile"], ["automobile", "red"], ["auto", "on", "couch"], ["woman"]]]
    r = score(test, refs, synonyms)
    p = r.per_image[0]
    # All: car~automobile, (car,red)~(automobile,red), (car,on,sofa)~(auto,on,couch),
    # man misses: tp 3 of 4 candidates, 4 references -> P = R = 3/4, F = 3/4.
    assert p[A].tolist() == [3, 1, 1, 0.75, 0.75, 0.75]
    # Object: car hits, man misses: 1 of 2 / 1 of 2 -> 0.5, 0.5, F 0.5
    assert p[O].tolist() == [1, 1, 1, 0.5, 0.5, 0.5]
    # Attribute, Relation, Color ("red" is one of the jar's colours): 1 of 1
    for q in (AT, R, COL):
        assert p[q].tolist() == [1, 0, 0, 1.0, 1.0, 1.0]
    # Cardinality / Size: no reference tuples of the category -> NaN (the jar's allowNan)
    for q in (CARD, SIZE):
        assert p[q][:3].tolist() == [0, 0, 0] and np.isnan(p[q][3:]).all()
    assert r.test_truth == [[True, True, True, False]] and r.ref_truth == [[True, True, True, False]]
    assert r.score == 0.75
    # -noSynsets: concepts must be equal; nothing is -> All 0 of 4, F = 0;
    # Color has a reference, so it is 0 (not NaN).
    e = score(test, refs, None, use_synsets=False).per_image[0]
    assert e[A].tolist() == [0, 4, 4, 0.0, 0.0, 0.0]
    assert e[COL].tolist() == [0, 1, 1, 0.0, 0.0, 0.0]


def test_merged_concepts_and_exact_words(synonyms):
    # A merged concept "person/man" shares the word "man" with the reference;
    # "lesion" vs "lesion" is an exact word match (with and without synsets).
    test = [[["person/man"], ["lesion", "large"]]]
    refs = [[["man"], ["lesion", "large"], ["liver"]]]
    r = score(test, refs, synonyms)
    # tp 2 of 2 candidates, 3 references: P = 1, R = 2/3, F = 2*(2/3)/(5/3) = 0.8
    assert r.per_image[0, A].tolist() == [2, 0, 1, 1.0, 2 / 3, 2 * (1.0 * (2 / 3)) / (1.0 + 2 / 3)]
    # "large" is one of the jar's size adjectives: Size 1 of 1
    assert r.per_image[0, SIZE].tolist() == [1, 0, 0, 1.0, 1.0, 1.0]
    # exact: "person/man" != "man" (concept sets differ); the attribute tuple is equal: tp 1
    e = score(test, refs, None, use_synsets=False)
    assert e.per_image[0, A, :3].tolist() == [1, 1, 2]


def test_duplicates_counted_as_the_jar_counts(synonyms):
    # The jar counts true positives on the candidate side: two identical
    # candidates both match the one reference: tp 2, fp 0, fn = 1 - 2 = -1,
    # P = 2/2 = 1, R = 2/1 = 2, F = 2*1*2/(1+2) = 4/3.
    r = score([[["dog"], ["dog"]]], [[["dog"]]], synonyms)
    assert r.per_image[0, A].tolist() == [2, 0, -1, 1.0, 2.0, 2 * (1.0 * 2.0) / (1.0 + 2.0)]
    assert r.test_truth == [[True, True]] and r.ref_truth == [[True]]
    # Two identical references, one candidate: tp 1, fn 1, P 1, R 1/2, F = 2/3;
    # the first reference in the jar's (stable) sorted order takes the match.
    r = score([[["dog"]]], [[["dog"], ["dog"]]], synonyms)
    assert r.per_image[0, A].tolist() == [1, 0, 1, 1.0, 0.5, 2 * 0.5 / 1.5]
    assert r.ref_truth == [[True, False]]


def test_empty_sets(synonyms):
    r = score([[], [["dog"]], []], [[], [], [["dog"]]], synonyms)
    # nothing vs nothing: "All" is 0, 0, 0 (never NaN); every category NaN
    assert r.per_image[0, A].tolist() == [0, 0, 0, 0.0, 0.0, 0.0]
    assert np.isnan(r.per_image[0, 1:, 3:]).all()
    # a candidate, no references: fp 1, and P stays 0 (the jar computes P only when references exist)
    assert r.per_image[1, A].tolist() == [0, 1, 0, 0.0, 0.0, 0.0]
    assert np.isnan(r.per_image[1, O, 3:]).all()
    # no candidates, one reference: fn 1, P = R = F = 0 (also for Object, which has a reference)
    assert r.per_image[2, A].tolist() == [0, 0, 1, 0.0, 0.0, 0.0]
    assert r.per_image[2, O].tolist() == [0, 0, 1, 0.0, 0.0, 0.0]
    assert r.score == 0.0
    assert r.corpus[A].tolist() == [0, 1, 1, 0.0, 0.0, 0.0]
    assert np.isnan(r.corpus[CARD, 3:]).all()  # no image has a cardinality reference
    empty = score([], [], synonyms)
    assert empty.per_image.shape == (0, 7, 6) and np.isnan(empty.score)


def test_corpus_is_the_mean_of_image_f(synonyms):
    # image 0: F 0.75 (as above); image 1: (dog) vs (dog),(cat): P 1, R 1/2, F 2/3
    test = [[["car"], ["car", "red"], ["car", "on", "sofa"], ["man"]], [["dog"]]]
    refs = [[["automobile"], ["automobile", "red"], ["auto", "on", "couch"], ["woman"]], [["dog"], ["cat"]]]
    r = score(test, refs, synonyms)
    # pycocoevalcap: np.mean of the per-image "All" f-scores = (0.75 + 2/3) / 2
    assert r.score == float(np.mean([0.75, 2 * 0.5 / 1.5]))
    # the jar's printed macro average: summed tp/fp/fn, mean P and R
    assert r.corpus[A, :3].tolist() == [4, 1, 2]
    assert r.corpus[A, PR] == (0.75 + 1.0) / 2 and r.corpus[A, RE] == (0.75 + 0.5) / 2
    # Color: only image 0 has a colour reference (image 1's is NaN and left out)
    assert r.corpus[COL, 3:].tolist() == [1.0, 1.0, 1.0]


def test_reference_truth_follows_java_sort_order(synonyms):
    # The candidate "car" matches both "automobile" (synonym) and "car"; the
    # jar takes the first reference in its sorted order ("automobile" <
    # "car"), so only that one gets truth_value true, wherever it is listed.
    r = score([[["car"]]], [[["car"], ["automobile"]]], synonyms)
    assert r.ref_truth == [[False, True]] and r.per_image[0, A, TP] == 1
    # Java compares UTF-16 code units: U+1F600 (surrogates D83D DE00) sorts
    # before U+FF21, unlike code point / UTF-8 byte order. The merged candidate
    # shares a word with both references.
    r = score([[["\uff21/\U0001F600"]]], [[["\uff21"], ["\U0001F600"]]], synonyms)
    assert r.ref_truth == [[False, True]]


def test_bad_input_is_reported(synonyms):
    with pytest.raises(mg.FormatError, match="tuple 0 of image 1: 4 elements"):
        score([[], [["a", "b", "c", "d"]]], [[], []], synonyms)
    with pytest.raises(mg.FormatError, match="expected a list of tuples"):
        score(["dog"], [[]], synonyms)
    with pytest.raises(mg.ShapeError):
        score([[]], [], synonyms)
    # the C checks behind the binding
    z = np.zeros(1, np.int64)
    with pytest.raises(mg.InvalidArgumentError, match="1 to 3"):
        _C.eval_spice(synonyms, ["a"], np.array([0], np.int32), np.array([0, 1]), [], np.zeros(0, np.int32),
                      np.zeros(2, np.int64), True)
    with pytest.raises(mg.InvalidArgumentError, match="decrease"):
        _C.eval_spice(None, ["a"], np.array([1], np.int32), np.array([0, 1, 0]), [], np.zeros(0, np.int32),
                      np.zeros(3, np.int64), False)
    with pytest.raises(mg.ShapeError):
        _C.eval_spice(None, [], np.zeros(0, np.int32), np.array([0, 5]), [], np.zeros(0, np.int32),
                      np.array([0, 0]), False)
    with pytest.raises(mg.InvalidArgumentError, match="synonym tables"):
        _C.eval_spice(None, [], np.zeros(0, np.int32), z, [], np.zeros(0, np.int32), z, True)


# ---- the jar's -detailed format ---------------------------------------------

# Written by hand in the layout spice-1.0.jar writes with -out F -detailed
# -subset (SpiceStats.toJSONArray, pretty-printed): per image its scores
# (NaN as null), then the candidate and reference tuples, truth_value first
# then by concept. Image 7: candidates (car) (car, red) (man), references
# (automobile) (automobile, red) (woman): tp 2 of 3, fn 1 -> P = R = F = 2/3.
# Image 8: no candidate tuple, one reference.
DETAILED = """[
  {
    "image_id": 7,
    "scores": {
      "All": {"tp": 2, "fp": 1, "fn": 1, "f": 0.6666666666666666, "pr": 0.6666666666666666,
              "re": 0.6666666666666666, "numImages": 1},
      "Object": {"tp": 1, "fp": 1, "fn": 1, "f": 0.5, "pr": 0.5, "re": 0.5, "numImages": 1},
      "Attribute": {"tp": 1, "fp": 0, "fn": 0, "f": 1.0, "pr": 1.0, "re": 1.0, "numImages": 1},
      "Relation": {"tp": 0, "fp": 0, "fn": 0, "f": null, "pr": null, "re": null, "numImages": 1},
      "Color": {"tp": 1, "fp": 0, "fn": 0, "f": 1.0, "pr": 1.0, "re": 1.0, "numImages": 1},
      "Cardinality": {"tp": 0, "fp": 0, "fn": 0, "f": null, "pr": null, "re": null, "numImages": 1},
      "Size": {"tp": 0, "fp": 0, "fn": 0, "f": null, "pr": null, "re": null, "numImages": 1}
    },
    "test_tuples": [
      {"tuple": ["car"], "truth_value": true},
      {"tuple": ["car", "red"], "truth_value": true},
      {"tuple": ["man"], "truth_value": false}
    ],
    "ref_tuples": [
      {"tuple": ["automobile"], "truth_value": true},
      {"tuple": ["automobile", "red"], "truth_value": true},
      {"tuple": ["woman"], "truth_value": false}
    ]
  },
  {
    "image_id": 8,
    "scores": {
      "All": {"tp": 0, "fp": 0, "fn": 1, "f": 0.0, "pr": 0.0, "re": 0.0, "numImages": 1},
      "Object": {"tp": 0, "fp": 0, "fn": 1, "f": 0.0, "pr": 0.0, "re": 0.0, "numImages": 1}
    },
    "test_tuples": [],
    "ref_tuples": [{"tuple": ["lesion"], "truth_value": false}]
  }
]"""


def test_detailed_file_parsed_and_rescored(synonyms, tmp_path):
    path = tmp_path / "out.json"
    path.write_text(DETAILED)
    d = M.spice_parse_detailed(json.loads(path.read_text()))
    assert d.image_ids == [7, 8]
    assert d.test_tuples[0] == [["car"], ["car", "red"], ["man"]] and d.ref_tuples[1] == [["lesion"]]
    assert np.isnan(d.scores[0]["Relation"]["f"])  # null -> NaN, as pycocoevalcap's float_convert
    r = M.spice_tuple_scores(d.test_tuples, d.ref_tuples, synonyms=synonyms)
    # the file's own counts: tp = candidates with truth_value true
    for i in range(2):
        assert r.per_image[i, A, TP] == sum(d.test_truth[i]) == d.scores[i]["All"]["tp"]
        assert r.per_image[i, A, FN] == len(d.ref_tuples[i]) - sum(d.test_truth[i]) == d.scores[i]["All"]["fn"]
    assert M.spice_compare(r, d) == []
    assert r.score == np.mean([2 / 3, 0.0])
    # a wrong number in the file is found
    bad = json.loads(DETAILED)
    bad[0]["scores"]["All"]["f"] = 0.5
    bad[1]["ref_tuples"][0]["truth_value"] = True
    problems = M.spice_compare(r, M.spice_parse_detailed(bad))
    assert problems == ["image 7: All f ours 0.6666666666666666, jar 0.5", "image 8: truth values differ"]
    # malformed files name the image and the field
    no_tuples = json.loads(DETAILED)
    del no_tuples[1]["test_tuples"]
    with pytest.raises(mg.FormatError, match="image 8: no 'test_tuples' .*-detailed"):
        M.spice_parse_detailed(no_tuples)
    broken = json.loads(DETAILED)
    broken[0]["ref_tuples"][2] = {"tuple": "woman", "truth_value": False}
    with pytest.raises(mg.FormatError, match=r"image 7: ref_tuples\[2\]"):
        M.spice_parse_detailed(broken)
    with pytest.raises(mg.FormatError):
        M.spice_parse_detailed({"image_id": 1})


# ---- the jar's own scoring classes --------------------------------------------

def _spice_dir():
    jar = resources.spice_jar()
    if jar is None or not (jar.parent / "lib" / "Meteor-1.5.jar").exists():
        pytest.skip("spice-1.0.jar with lib/Meteor-1.5.jar not installed (pycocoevalcap)")
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip("no javac/java: the jar's scoring classes cannot be driven")
    return jar


@pytest.fixture(scope="module")
def java_reference(tmp_path_factory):
    jar = _spice_dir()
    out = tmp_path_factory.mktemp("spice_java")
    cp = f"{jar}{os.pathsep}{jar.parent / 'lib' / '*'}"
    src = REPO / "tests" / "reference" / "spice"
    subprocess.run(["javac", "-nowarn", "-d", str(out / "stub"), str(src / "stub/edu/stanford/nlp/ling/IndexedWord.java")],
                   check=True, capture_output=True)
    subprocess.run(["javac", "-nowarn", "-cp", f"{cp}{os.pathsep}{out / 'stub'}", "-d", str(out / "classes"),
                    str(src / "MgSpiceReference.java")], check=True, capture_output=True)

    def run(images, use_synsets=True):
        inp, res = out / "in.json", out / "out.json"
        inp.write_text(json.dumps(images))
        cmd = ["java", "-cp", f"{out / 'classes'}{os.pathsep}{cp}", "edu.anu.spice.MgSpiceReference", str(inp), str(res)]
        subprocess.run(cmd + ([] if use_synsets else ["noSynsets"]), check=True, capture_output=True, timeout=120)
        return json.loads(res.read_text())
    return run


NOUNS = ["dog", "puppy", "canine", "car", "automobile", "auto", "machine", "sofa", "couch", "lounge", "man", "person",
         "woman", "lady", "child", "kid", "table", "grass", "field", "lesion", "tumor", "tumour", "mass", "lung", "liver",
         "kidney", "scan", "caf\u00e9", "\uff21", "\U0001F600", "dogs", "men", "women", "masses"]
ATTRS = ["black", "dark", "red", "white", "large", "big", "small", "little", "two", "2", "one", "left", "right",
         "bright", "enlarged", "grey", "gray", "huge", "tiny", "three"]
RELS = ["on", "in", "near", "next to", "in front of", "sit on", "ride", "have", "with", "above", "over", "Beside",
        "be near", "along"]


def _random_images(rng: random.Random, n: int):
    def concept(pool):
        k = 1 if rng.random() < 0.8 else 2
        return rng.sample(pool, k)

    def tup():
        kind = rng.choice((1, 1, 2, 2, 3))
        if kind == 1:
            return [concept(NOUNS)]
        if kind == 2:
            return [concept(NOUNS), concept(ATTRS)]
        return [concept(NOUNS), concept(RELS), concept(NOUNS)]

    images = []
    for i in range(n):
        pool = [tup() for _ in range(rng.randint(1, 12))]  # a small pool: overlaps and repeats
        test = [rng.choice(pool) if rng.random() < 0.5 else tup() for _ in range(rng.randint(0, 7))]
        refs = [rng.choice(pool) for _ in range(rng.randint(0, 12))]
        images.append({"image_id": i, "test": test, "refs": refs})
    return images


@pytest.mark.parametrize("use_synsets", [True, False])
def test_agrees_with_the_jar_scoring_classes(java_reference, synonyms, use_synsets):
    images = _random_images(random.Random(5 if use_synsets else 6), 600)
    detailed = M.spice_parse_detailed(java_reference(images, use_synsets))
    assert detailed.image_ids == list(range(600))
    r = M.spice_tuple_scores(detailed.test_tuples, detailed.ref_tuples, use_synsets=use_synsets, synonyms=synonyms)
    assert M.spice_compare(r, detailed) == []
    # the comparison covered real work: matches, misses, NaN categories, merged concepts
    n_test = sum(len(t) for t in detailed.test_tuples)
    n_hit = sum(sum(t) for t in detailed.test_truth)
    assert n_test > 1500 and 0.2 * n_test < n_hit < 0.95 * n_test
    assert any("/" in c for ts in detailed.ref_tuples for t in ts for c in t)
    assert np.isnan(r.per_image[:, CARD, F]).any() and (r.per_image[:, CARD, F] > 0).any()
    if use_synsets:  # some candidates match a reference only through WordNet
        exact = M.spice_tuple_scores(detailed.test_tuples, detailed.ref_tuples, use_synsets=False)
        assert exact.per_image[:, A, TP].sum() < r.per_image[:, A, TP].sum()
    # the order tuples are listed in does not matter (the jar's sort is redone)
    rng = random.Random(7)
    perms = [(rng.sample(range(len(t)), len(t)), rng.sample(range(len(f)), len(f)))
             for t, f in zip(detailed.test_tuples, detailed.ref_tuples)]
    shuffled = M.spice_tuple_scores([[t[k] for k in pt] for t, (pt, _) in zip(detailed.test_tuples, perms)],
                                    [[f[k] for k in pr] for f, (_, pr) in zip(detailed.ref_tuples, perms)],
                                    use_synsets=use_synsets, synonyms=synonyms)
    assert np.array_equal(shuffled.per_image, r.per_image, equal_nan=True)
    # (among identical reference tuples the first listed takes the match: compare per distinct tuple)
    def truth_counts(tuples, truth):
        return sorted((repr(t), v) for t, v in zip(tuples, truth))
    for f, (_, pr), rt, st in zip(detailed.ref_tuples, perms, r.ref_truth, shuffled.ref_truth):
        assert truth_counts(f, rt) == truth_counts([f[k] for k in pr], st)


def _wordnet_vocabulary(rng: random.Random, n_groups: int):
    """Groups of words that share a synset, drawn from Meteor's own tables,
    with regular inflections and the irregular forms of english.exceptions
    (so getStemSynSets' morphology and exception paths are exercised)."""
    data = resources.meteor_data(str(SHARED_DATA / "meteor") if (SHARED_DATA / "meteor").exists() else None)
    lines = data.synsets.split("\n")
    by_synset: dict[str, list[str]] = {}
    words = lines[0::2]
    for w, ids in zip(words, lines[1::2]):
        for s in ids.split()[:2]:
            by_synset.setdefault(s, []).append(w)
    shared = [ws for ws in by_synset.values() if 2 <= len(ws) <= 8]
    exc = data.exceptions.split("\n")
    irregular = [f for forms in exc[1::2] for f in forms.split()]
    groups = []
    for ws in rng.sample(shared, n_groups):
        g = rng.sample(ws, min(3, len(ws)))
        w = rng.choice(g)
        g += [w + rng.choice(["s", "es", "ing", "ed", "er", "est"]), w.replace("_", " ")]
        g.append(rng.choice(irregular))
        groups.append(g)
    return groups


def test_agrees_with_the_jar_on_wordnet_words(java_reference, synonyms):
    rng = random.Random(11)
    groups = _wordnet_vocabulary(rng, 400)
    images = []
    for i in range(500):
        local = rng.sample(groups, 2)  # few groups per image: synonym hits are likely
        pick = lambda: [rng.choice(rng.choice(local))]  # noqa: E731
        def tup():
            kind = rng.choice((1, 2, 3))
            return [pick() for _ in range(kind)]
        images.append({"image_id": i, "test": [tup() for _ in range(rng.randint(0, 8))],
                       "refs": [tup() for _ in range(rng.randint(1, 10))]})
    detailed = M.spice_parse_detailed(java_reference(images))
    r = M.spice_tuple_scores(detailed.test_tuples, detailed.ref_tuples, synonyms=synonyms)
    assert M.spice_compare(r, detailed) == []
    exact = M.spice_tuple_scores(detailed.test_tuples, detailed.ref_tuples, use_synsets=False)
    n_syn, n_exact = r.per_image[:, A, TP].sum(), exact.per_image[:, A, TP].sum()
    assert n_syn > 2 * n_exact and n_syn > n_exact + 300, (n_syn, n_exact)  # many matches only through WordNet


# ---- the bridge: a stand-in java answering as the jar, and "unavailable" ----------

FAKE_JAVA = r'''#!{python}
import json, sys
args = sys.argv[1:]
if args == ["-version"]:
    sys.stderr.write('java version "{version}"\n'); sys.exit(0)
assert "-detailed" in args and "-subset" in args and "-silent" in args, args
inp = json.load(open(args[args.index("-jar") + 3]))  # java -jar -Xmx8G JAR INPUT ...
out = args[args.index("-out") + 1]
detailed = json.loads(open({detailed!r}).read())
assert [x["image_id"] for x in inp] == list(range(len(detailed)))
for x, d in zip(inp, detailed):
    d["image_id"] = x["image_id"]
json.dump(detailed, open(out, "w"), indent=2)
'''


def _fake_spice(tmp_path, monkeypatch, detailed, version="1.8.0_101"):
    jar_dir = tmp_path / "spice"
    (jar_dir / "lib").mkdir(parents=True, exist_ok=True)
    for name in ("spice-1.0.jar", "lib/stanford-corenlp-3.6.0.jar", "lib/stanford-corenlp-3.6.0-models.jar"):
        (jar_dir / name).write_bytes(b"")
    det = tmp_path / "detailed.json"
    det.write_text(json.dumps(detailed))
    java = tmp_path / "java"
    java.write_text(FAKE_JAVA.format(python=sys.executable, version=version, detailed=str(det)))
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("MEDGROUND_SPICE_JAR", str(jar_dir / "spice-1.0.jar"))
    monkeypatch.setenv("MEDGROUND_SPICE_JAVA", str(java))
    resources.java_major_version.cache_clear()


def test_bridge_runs_the_jar_and_scores_in_c(synonyms, tmp_path, monkeypatch):
    detailed = json.loads(DETAILED)
    _fake_spice(tmp_path, monkeypatch, detailed)
    ok, status = M.spice_status()
    assert ok and "Java 8" in status, status
    score, per_image, status = M.spice_scores(["a red car and a man", "nothing"], [["an automobile"], ["a lesion"]])
    assert score == np.mean([2 / 3, 0.0]) and per_image.tolist() == [2 / 3, 0.0]
    # the jar's own numbers disagreeing with ours: no number, and the status says why
    detailed[0]["scores"]["All"]["tp"] = 3
    _fake_spice(tmp_path, monkeypatch, detailed)
    score, per_image, status = M.spice_scores(["a", "b"], [["c"], ["d"]])
    assert score is None and per_image is None and "disagree" in status and "All tp" in status


def test_unavailable_reasons(tmp_path, monkeypatch):
    # Java 15+ has no Nashorn: the jar cannot write its -out file
    _fake_spice(tmp_path, monkeypatch, json.loads(DETAILED), version="17.0.15")
    ok, status = M.spice_status()
    assert not ok and "Java 17" in status and "Nashorn" in status
    assert M.spice_scores(["a"], [["a"]]) == (None, None, status)
    # missing CoreNLP models (the state of this machine with pycocoevalcap's jar)
    (tmp_path / "spice" / "lib" / "stanford-corenlp-3.6.0-models.jar").unlink()
    ok, status = M.spice_status()
    assert not ok and "stanford-corenlp-3.6.0-models.jar missing" in status
    # no jar; no java
    monkeypatch.setenv("MEDGROUND_SPICE_JAR", str(tmp_path / "none.jar"))
    assert "missing" in M.spice_status()[1]
    monkeypatch.delenv("MEDGROUND_SPICE_JAVA")
    monkeypatch.setattr(M.resources, "java", lambda: None)
    assert M.spice_scores(["a"], [["a"]]) == (None, None, "SPICE unavailable: no java on PATH")
    # evaluate(): SPICE is NaN and the modules say why
    r = mg.evaluate([{"id": 0, "image": "ct_00--AbdomenCT1K--Case_00220--x_0359.png", "annotation": "a lesion",
                      "response": "a lesion"}], task="caption", meteor=False)
    assert np.isnan(r.table.loc["ct", "SPICE"]) and r.modules["SPICE"] == "SPICE unavailable: no java on PATH"


def test_real_install_says_why_unavailable():
    # pycocoevalcap ships the jar without Stanford CoreNLP 3.6.0 (its
    # get_stanford_models() downloads it); here that cannot happen.
    ok, status = M.spice_status()
    if ok:
        pytest.skip(f"SPICE is available here: {status}")
    assert status.startswith("SPICE unavailable: ") and len(status) > 30
