"""`medground data check` on records built from the real demo data, then broken on purpose.

Records are built from ../shared/data/images/sam-med2d-demo (SA-Med2D layout,
`<image>_<label>_<instance>.png` masks, train/test tables) and biomedparse-demo
(`<stem>_<target>.png` masks). The clean records must give zero findings. Then
each defect class is put into ONE record (or one extra record) and the report
must contain exactly one finding: that record's index and id, the class's code.
Expected values are derived here from the records (Python), not from a saved
report.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from medground import data as md
from medground.data.check import report_from_json

from conftest import REPO, shared_path

DATASETS = ("sam-med2d", "biomedparse")


def _setup(kind: str, tmp: pathlib.Path, every: int = 1):
    """An image root of symlinks to the real files (plus an unreadable PNG and
    a byte copy of one image), and the records built from the real data
    (biomedparse: every ``every``-th image, to keep the many checks quick)."""
    if kind == "sam-med2d":
        src = shared_path("images", "sam-med2d-demo")
        metas = md.scan_sam_med2d(src)
        image_dir, mask_dir = "images", "masks"
    else:
        src = shared_path("images", "biomedparse-demo")
        metas = md.scan_biomedparse(src)[::every]
        image_dir, mask_dir = "demo", "demo_mask"
        for i, meta in enumerate(metas):  # a split per image for the leakage check
            meta.split = "train" if i % 2 == 0 else "test"
    root = tmp / kind
    (root / image_dir).mkdir(parents=True)
    for image in (src / image_dir).glob("*.png"):
        os.symlink(image.resolve(), root / image_dir / image.name)
    os.symlink((src / mask_dir).resolve(), root / mask_dir)
    (root / image_dir / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    records = list(md.build_records(metas, seed=3))
    first_image = records[0]["image"]
    shutil.copy(src / first_image, root / image_dir / "copy.png")
    return root, root / mask_dir, image_dir, records


@pytest.fixture(scope="module", params=DATASETS)
def dataset(request, tmp_path_factory):
    """sam-med2d-demo whole; biomedparse-demo every 3rd image (9 images: CT,
    MRI, X-ray, pathology, ultrasound, endoscopy) for the defect runs."""
    root, masks, image_dir, records = _setup(request.param, tmp_path_factory.mktemp("data"), every=3)
    return request.param, root, masks, image_dir, records


def _write(path: pathlib.Path, records: list, raw: dict | None = None) -> pathlib.Path:
    lines = [json.dumps(r) for r in records]
    for index, text in (raw or {}).items():
        lines[index] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def _found(report):
    return [(f.index, f.id, f.code) for f in report.findings]


def _check(tmp_path, dataset, records, raw=None):
    kind, root, masks, _, _ = dataset
    path = _write(tmp_path / f"{kind}.jsonl", records, raw)
    return md.check(path, images=root, masks=masks)


@pytest.mark.parametrize("kind", DATASETS)
def test_all_real_records_are_clean(tmp_path, kind):
    """Every record built from all of the real data checks clean."""
    root, masks, _, records = _setup(kind, tmp_path)
    report = md.check(_write(tmp_path / "all.jsonl", records), images=root, masks=masks)
    assert _found(report) == [], report.summary()
    assert len(records) == {"sam-med2d": 86, "biomedparse": 213}[kind]
    assert report.stats["boxes"]["checked_against_masks"] == report.stats["boxes"]["count"] > 0


def test_clean_records_have_no_findings(tmp_path, dataset):
    kind, root, masks, _, records = dataset
    report = _check(tmp_path, dataset, records)
    assert _found(report) == [], report.summary()
    assert report.n_records == len(records) and report.ok
    tasks = {r["task"] for r in records}
    assert tasks == {"VG", "ROC", "SEG"}
    # every VG and ROC box was compared with its mask (the ROC box through its answer)
    n_boxes = sum(len(re.findall(r"<box>", json.dumps(r))) for r in records)
    assert report.stats["boxes"]["count"] == n_boxes
    assert report.stats["boxes"]["checked_against_masks"] == n_boxes


# ------------------------------------------------------------ one defect each

def _index(records, task, predicate=lambda r: True):
    return next(i for i, r in enumerate(records) if r["task"] == task and predicate(r))


def _single_instance_vg(records):
    return _index(records, "VG", lambda r: r["conversations"][0][1].count("<box>") == 1)


def _edit_answer(record, fn):
    record["conversations"][0][1] = fn(record["conversations"][0][1])


_FIRST_BOX = re.compile(r"<box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>")


def _set_first_box(text, fn):
    m = _FIRST_BOX.search(text)
    x1, y1, x2, y2 = (int(v) for v in m.groups())
    return text[:m.start()] + "<box>({},{}),({},{})</box>".format(*fn(x1, y1, x2, y2)) + text[m.end():]


def _far_box(x1, y1, x2, y2):
    """A valid box on the opposite side of the image, IoU 0 with the original."""
    if x1 >= 500:
        return (10, y1, 60, y2)
    return (940, y1, 990, y2)


def _defects(records, image_dir):
    """(name, mutated records, raw line replacements, expected (index, id, code))."""
    out = []
    n = len(records)

    def mutate(i, fn):
        changed = copy.deepcopy(records)
        fn(changed[i])
        return changed

    vg = _single_instance_vg(records)
    seg = _index(records, "SEG")
    roc = _index(records, "ROC", lambda r: r["conversations"][0][0].count("<box>") == 1)
    later_vg = max(i for i, r in enumerate(records) if r["task"] == "VG")
    rid = lambda i: records[i]["id"]  # noqa: E731

    out.append(("malformed JSON line", records, {vg: json.dumps(records[vg])[:-7]}, (vg, "", "json_syntax")))
    out.append(("unknown role", mutate(seg, lambda r: r["conversations"][0].update({"from": "doctor"})),
                None, (seg, rid(seg), "unknown_role")))
    out.append(("bad turn order", mutate(seg, lambda r: r["conversations"].reverse()), None,
                (seg, rid(seg), "turn_order")))
    out.append(("unbalanced <ref>", mutate(vg, lambda r: _edit_answer(r, lambda t: t.replace("</ref>", ""))),
                None, (vg, rid(vg), "tag_unbalanced")))
    out.append(("unbalanced <box>", mutate(vg, lambda r: _edit_answer(r, lambda t: t.replace("</box>", "", 1))),
                None, (vg, rid(vg), "tag_unbalanced")))
    out.append(("coordinate outside 0..1000",
                mutate(vg, lambda r: _edit_answer(r, lambda t: _set_first_box(
                    t, lambda a, b, c, d: (a, b, 1001, d)))), None, (vg, rid(vg), "box_out_of_range")))
    out.append(("x1 > x2", mutate(vg, lambda r: _edit_answer(r, lambda t: _set_first_box(
        t, lambda a, b, c, d: (c, b, a, d)))), None, (vg, rid(vg), "box_inverted")))
    out.append(("zero-area box", mutate(vg, lambda r: _edit_answer(r, lambda t: _set_first_box(
        t, lambda a, b, c, d: (a, b, c, b)))), None, (vg, rid(vg), "box_zero_area")))
    out.append(("VG box disagrees with its mask", mutate(vg, lambda r: _edit_answer(
        r, lambda t: _set_first_box(t, _far_box))), None, (vg, rid(vg), "box_mask_mismatch")))

    def move_question_box(r):
        r["conversations"][0][0] = _set_first_box(r["conversations"][0][0], _far_box)

    out.append(("ROC box disagrees with its mask", mutate(roc, move_question_box), None,
                (roc, rid(roc), "box_mask_mismatch")))
    out.append(("missing image", mutate(later_vg, lambda r: r.update(image=f"{image_dir}/nothere.png")),
                None, (later_vg, rid(later_vg), "image_missing")))
    out.append(("unreadable image", mutate(later_vg, lambda r: r.update(image=f"{image_dir}/corrupt.png")),
                None, (later_vg, rid(later_vg), "image_unreadable")))
    size = {"width": records[0]["width"], "height": records[0]["height"]}  # copy.png's size
    out.append(("duplicate image", mutate(later_vg, lambda r: r.update(image=f"{image_dir}/copy.png", **size)),
                None, (later_vg, rid(later_vg), "duplicate_image")))
    out.append(("duplicate record", records + [records[seg]], None, (n, rid(seg), "duplicate_record")))
    out.append(("image size mismatch", mutate(later_vg, lambda r: r.update(width=r["width"] + 1)), None,
                (later_vg, rid(later_vg), "image_size_mismatch")))
    # label spelling variant: the most used label (>= 5 letters) gets a typo in its last VG record
    refs = [re.search(r"<ref>(.*?)</ref>", r["conversations"][0][1]).group(1)
            if r["task"] == "VG" else None for r in records]
    label = max((l for l in set(refs) if l and len(l) >= 5), key=lambda l: (refs.count(l), l))
    assert refs.count(label) >= 2
    typo = max(i for i, l in enumerate(refs) if l == label)
    out.append(("label spelling variant", mutate(typo, lambda r: _edit_answer(
        r, lambda t: t.replace(f"<ref>{label}</ref>", f"<ref>{label}{label[-1]}</ref>"))), None,
        (typo, rid(typo), "label_variant")))
    # leakage: the last record of the first image's case moves to the other split
    case_records = [i for i, r in enumerate(records) if r["image"] == records[0]["image"]]
    last = case_records[-1]
    other = "train" if records[last]["split"] == "test" else "test"
    out.append(("train/test leakage by case", mutate(last, lambda r: r.update(split=other)), None,
                (last, rid(last), "case_leakage")))
    return out


@pytest.mark.parametrize("defect", range(17), ids=lambda i: f"defect{i}")
def test_each_defect_is_reported_alone(tmp_path, dataset, defect):
    kind, root, masks, image_dir, records = dataset
    defects = _defects(records, image_dir)
    assert len(defects) == 17
    name, changed, raw, expected = defects[defect]
    report = _check(tmp_path, dataset, changed, raw)
    assert _found(report) == [expected], f"{kind}: {name}\n{report.summary()}"
    (finding,) = report.findings
    assert finding.line == expected[0] + 1  # JSONL: one record per line
    severity = "warning" if expected[2] in ("duplicate_image", "duplicate_record", "label_variant") else "error"
    assert finding.severity == severity and finding.message
    assert report.ok == (severity != "error")


def test_all_defects_together(tmp_path, dataset):
    """The defects that touch different records, all in one file: each is
    reported once, with its own record."""
    kind, root, masks, image_dir, records = dataset
    changed = copy.deepcopy(records)
    seg = _index(records, "SEG")
    vg = _single_instance_vg(records)
    changed[seg]["conversations"][0]["from"] = "doctor"
    _edit_answer(changed[vg], lambda t: _set_first_box(t, lambda a, b, c, d: (c, b, a, d)))
    later = max(i for i, r in enumerate(records) if r["task"] == "VG")
    changed[later]["image"] = f"{image_dir}/corrupt.png"
    dup = next(i for i in range(len(records)) if i not in (seg, vg, later))
    changed.append(records[dup])  # an exact copy of an untouched record
    report = _check(tmp_path, dataset, changed)
    assert sorted(_found(report)) == sorted([
        (seg, records[seg]["id"], "unknown_role"), (vg, records[vg]["id"], "box_inverted"),
        (later, records[later]["id"], "image_unreadable"),
        (len(records), records[dup]["id"], "duplicate_record")])


# ------------------------------------------------------------ more classes, by hand

def _pair(user, answer, **extra):
    record = {"id": extra.pop("id", "r"), "conversations": [[user, answer]]}
    record.update(extra)
    return record


def test_syntax_and_schema_classes(tmp_path):
    img = "Picture 1:<img>x.png</img>\n"
    records = [
        _pair(img + "q", "<ref>liver</ref><box>(1,2),(3,4)</box>", id="ok"),
        _pair(img + "q", "<ref> </ref><box>(1,2),(3,4)</box>", id="empty_ref"),
        _pair(img + "q", "<ref>liver</ref><box>(1,2),(3)</box>", id="box_syntax"),
        _pair(img + "q", "<ref>liver</ref><box>(1.5,2),(3,4)</box>", id="box_float"),
        _pair(img + "q", "</ref>", id="closes_nothing"),
        _pair("no image tag", "<ref>liver</ref><box>(1,2),(3,4)</box>", id="no_img"),
        {"id": "not_pairs", "conversations": [["only one"]]},
        {"id": "no_conv"},
        {"id": "human_last", "conversations": [{"from": "human", "value": "<image>\nq"}]},
        {"id": "seg", "image": "x.png", "conversations": [
            {"from": "human", "value": "<image>\nsegment"},
            {"from": "gpt", "value": "<SEG><mask>nothere.png</mask>"}]},
        [1, 2],
    ]
    report = md.check_records(records)
    assert _found(report) == [
        (1, "empty_ref", "ref_empty"), (2, "box_syntax", "box_syntax"), (3, "box_float", "box_syntax"),
        (4, "closes_nothing", "tag_unbalanced"), (5, "no_img", "image_tag_missing"),
        (6, "not_pairs", "schema"), (7, "no_conv", "schema"), (8, "human_last", "turn_order"),
        (10, "", "schema")]
    # with an image root, <mask> files are looked up (relative to it)
    (tmp_path / "x.png").write_bytes(open(shared_path("images", "sam-med2d-demo", "images",
                                                     "amos_0004_75.png"), "rb").read())
    from PIL import Image

    Image.new("L", (512, 512)).save(tmp_path / "empty.png")
    Image.new("L", (20, 10), 255).save(tmp_path / "small.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    seg = records[9]
    variants = []
    for name, mask in (("missing", "nothere.png"), ("empty", "empty.png"), ("small", "small.png"),
                       ("bad", "bad.png")):
        r = copy.deepcopy(seg)
        r["id"] = name
        r["conversations"][1]["value"] = f"Sure, <SEG>.<mask>{mask}</mask>"
        variants.append(r)
    report = md.check_records(variants, images=tmp_path)
    assert _found(report) == [(0, "missing", "mask_missing"), (1, "empty", "mask_empty"),
                              (2, "small", "image_size_mismatch"), (3, "bad", "mask_unreadable")]


def test_json_list_format_and_line_numbers(tmp_path):
    good = {"id": "a", "conversations": [["Picture 1:<img>a.png</img>\nq", "<ref>x</ref><box>(1,1),(5,5)</box>"]]}
    text = "[\n" + json.dumps(good) + ",\n" + json.dumps(good | {"id": "b"}) + "\n" + \
        json.dumps(good | {"id": "c"}) + ",\n  {\"id\": \"d\", \"conversations\": [[\"x\" \"y\"]]}\n]\n"
    path = tmp_path / "list.json"
    path.write_text(text)
    report = md.check(path)
    # missing comma before record 2 (line 4); record 3 (line 5) is malformed JSON
    assert [(f.index, f.code, f.line) for f in report.findings] == [
        (2, "json_syntax", 4), (3, "json_syntax", 5)]
    assert report.n_records == 4
    path.write_text("[\n" + json.dumps(good) + ",\n")
    assert [(f.code) for f in md.check(path).findings] == ["json_syntax"]
    path.write_text("")
    assert md.check(path).n_records == 0


def test_leakage_by_case_across_files(tmp_path):
    """The papers split by case: slices of one 3-D case in both splits is leakage,
    even when the slices differ (SA-Med2D names modality--dataset--case--slice)."""
    def rec(image, rid):
        return {"id": rid, "image": image, "conversations": [[f"<img>{image}</img>q", "a"]]}

    train = [rec("ct_00--AbdomenCT1K--Case_00220--x_0359.png", "t0"),
             rec("ct_00--AbdomenCT1K--Case_00221--x_0001.png", "t1"),
             rec("amos_0004_75.png", "t2")]
    test = [rec("ct_00--AbdomenCT1K--Case_00221--x_0100.png", "s0"),  # same case as t1
            rec("ct_00--AbdomenCT1K--Case_00222--x_0100.png", "s1"),
            rec("amos_0004_80.png", "s2"),                             # same case as t2
            rec("amos_0005_75.png", "s3")]
    _write(tmp_path / "train.jsonl", train)
    _write(tmp_path / "test.jsonl", test)
    report = md.check(tmp_path / "train.jsonl", test=tmp_path / "test.jsonl")
    assert sorted((os.path.basename(f.file), f.index, f.id, f.code) for f in report.findings) == [
        ("test.jsonl", 0, "s0", "case_leakage"), ("test.jsonl", 2, "s2", "case_leakage")]
    assert "AbdomenCT1K--Case_00221" in report.findings[0].message + report.findings[1].message


def test_label_variants_grouped(tmp_path):
    def rec(label, i):
        return _pair("Picture 1:<img>x.png</img>\nq", f"<ref>{label}</ref><box>(1,1),(5,5)</box>", id=f"r{i}")

    labels = ["liver"] * 4 + ["Liver", "livers", "spleen", "spleen", "splen", "vertebrae T9",
                              "vertebrae T8", "rib left 9", "rib right 9", "vertebrae C1",
                              "vertebrae T1", "vertebrae L1", "ileum", "ilium", "ulna", "ulnar"]
    report = md.check_records([rec(l, i) for i, l in enumerate(labels)])
    found = sorted((f.id, f.code, f.message.split('"')[1]) for f in report.findings)
    # Liver and livers are each reported once against liver; splen against spleen;
    # T8/T9, C1/T1/L1, left/right, ileum/ilium are different structures, not typos;
    # ulna/ulnar: too short for the one-edit rule
    assert found == [("r4", "label_variant", "Liver"), ("r5", "label_variant", "livers"),
                     ("r8", "label_variant", "splen")]


# ------------------------------------------------------------ CLI

class _Done:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(*args, capsys=None):
    """`medground data ARGS` in this process (the parser and exit codes of
    medground.cli.main); without capsys, as a real subprocess."""
    if capsys is None:
        env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
        return subprocess.run([sys.executable, "-m", "medground", "data", *map(str, args)],
                              capture_output=True, text=True, env=env, timeout=300)
    from medground import cli

    capsys.readouterr()
    try:
        code = cli.main(["data", *map(str, args)])
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return _Done(code, out.out, out.err)


def test_cli_build_check_stats(tmp_path, capsys):
    src = shared_path("images", "sam-med2d-demo")
    out = tmp_path / "sam.json"
    done = _cli("build", "--sam-med2d", src, "--out", out, "--seed", "3", "--meta", tmp_path / "meta.json",
                capsys=capsys)
    assert done.returncode == 0, done.stderr
    records = json.loads(out.read_text())
    # the CLI writes what the Python API builds (same seed -> same records)
    assert records == list(md.build_records(md.scan_sam_med2d(src), seed=3))
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert {m["image"] for m in meta} == {r["image"] for r in records}
    # split by the SA-Med2D tables into two files, check with --test
    train = [r for r in records if r["split"] == "train"]
    test = [r for r in records if r["split"] == "test"]
    for r in train + test:
        del r["split"]
    _write(tmp_path / "train.jsonl", train)
    _write(tmp_path / "test.jsonl", test)
    done = _cli("check", tmp_path / "train.jsonl", "--test", tmp_path / "test.jsonl", "--images", src,
                "--masks", src / "masks", "--json", tmp_path / "report.json", capsys=capsys)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"checked {len(records)} records in 2 file(s): 0 errors, 0 warnings" in done.stdout
    # the same slice in the train file too: exit 1, one finding in the report
    # (another question about it: not a duplicate record). A real subprocess: exit code 1.
    leak = copy.deepcopy(test[0])
    leak["conversations"][0][0] += " Answer briefly."
    _write(tmp_path / "train.jsonl", train + [leak])
    done = _cli("check", tmp_path / "train.jsonl", "--test", tmp_path / "test.jsonl", "--images", src,
                "--json", tmp_path / "report.json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    # reported on the first test record of the case (test.jsonl record 0)
    assert [(os.path.basename(f["file"]), f["index"], f["id"], f["code"]) for f in report["findings"]] == [
        ("test.jsonl", 0, test[0]["id"], "case_leakage")]
    assert "case_leakage=1" in done.stdout and "1 errors" in done.stdout
    # stats: per modality x task counts recomputed from the records here
    done = _cli("stats", out, "--json", tmp_path / "stats.json", capsys=capsys)
    assert done.returncode == 0, done.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    expected: dict = {}
    for r in records:
        expected.setdefault(r["modality"], {}).setdefault(r["task"], 0)
        expected[r["modality"]][r["task"]] += 1
    assert stats["modality_task"] == expected
    assert stats["turns"] == {"1": len(records)}
    assert "records per modality x task" in done.stdout


def test_cli_help_and_errors(tmp_path, capsys):
    for action in ("check", "build", "stats", "draw"):
        done = _cli(action, "--help", capsys=capsys)
        assert done.returncode == 0 and "usage" in done.stdout
    done = _cli("check", tmp_path / "none.jsonl", capsys=capsys)
    assert done.returncode == 3 and "none.jsonl" in done.stderr
    done = _cli("draw", tmp_path / "none.jsonl", "--images", tmp_path, "--out", tmp_path / "o.png",
                capsys=capsys)
    assert done.returncode == 3 and "none.jsonl" in done.stderr


# ------------------------------------------------------------ streaming

def test_stream_300k_records_with_progress(tmp_path, capfd):
    """300,000 records (JSONL, ~35 MB) over 30 images: streamed, every image
    header read once, progress reported in order up to the file size."""
    from PIL import Image

    for i in range(30):
        Image.new("L", (8, 6), i).save(tmp_path / f"img{i}_{i}.png")
    line = ('{"id": "r%d", "image": "img%d_%d.png", "width": 8, "height": 6, "conversations": '
            '[["Picture 1:<img>img.png</img>\\nWhere is the liver? %d", '
            '"<ref>liver</ref><box>(10,20),(300,400)</box>"]]}')
    n = 300_000
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(line % (r, r % 30, r % 30, r) for r in range(n)) + "\n")
    calls = []
    from medground import _C

    text = _C.data_check([(str(path), None, None)], str(tmp_path), None, 0.5, True, True,
                         lambda done, total: calls.append((done, total)))
    report = report_from_json(text)
    assert report.n_records == n and report.findings == []
    assert report.stats["images"]["distinct"] == 30
    assert report.stats["boxes"]["count"] == n
    size = path.stat().st_size
    assert len(calls) >= size // (1 << 20) and calls[-1] == (size, size)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    # the tqdm bar of the Python API
    report = md.check(path, images=tmp_path, progress=True)
    assert report.n_records == n
    err = capfd.readouterr().err
    assert "checking" in err and "100%" in err


def test_non_utf8_and_stray_brackets(tmp_path):
    """Bytes that are not UTF-8 are quoted as '?' in the report (which stays
    valid JSON); a stray '}' in a JSON list is reported and stepped over
    (found by fuzz/targets/fuzz_data.c: it used to loop forever)."""
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"id": "caf\xe9", "conversations": [["<img>x</img>", '
                     b'"<ref>f\xe9mur</ref><box>(1,1),(5,5)</box>"]]}\n{bad \xe9\xff\n')
    report = md.check(path)
    assert [(f.index, f.id, f.code) for f in report.findings] == [(1, "", "json_syntax")]
    assert report.stats["labels"] == {"f?mur": 1}
    assert "?" in report.findings[0].message
    path = tmp_path / "stray.json"
    good = '{"id": "a", "conversations": [["<img>a</img>", "b"]]}'
    path.write_text(f"[{good}}}, {good}]")
    report = md.check(path)
    assert [(f.index, f.code) for f in report.findings] == [(1, "json_syntax"), (1, "duplicate_record")]
    assert "found '}'" in report.findings[0].message
    path.write_text(f"[}} {good}]")
    assert [(f.index, f.code) for f in md.check(path).findings] == [(0, "json_syntax")]
    assert report.n_records == 2


def test_medplib_demo_names(tmp_path):
    """MeCoVQA-style records over the real MedPLIB demo slices: modality from
    the SA-Med2D names as BiRD's eval derives it (text before the first '_'),
    image headers read; the one real defect of that folder is found (the
    dermoscopy PNG is an empty file, 0 bytes, as shipped); a second record of
    a slice in the other split is leakage."""
    src = shared_path("images", "medplib-demo")
    names = sorted(p.name for p in src.glob("*.png"))
    records = [{"id": f"q{i}", "image": n, "split": "train",
                "conversations": [{"from": "human", "value": "<image>\nWhat modality is this?"},
                                  {"from": "gpt", "value": "An image."}]} for i, n in enumerate(names)]
    report = md.check_records(records, images=src)
    derm = next(i for i, n in enumerate(names) if n.startswith("dermoscopy"))
    assert (src / names[derm]).stat().st_size == 0
    assert [(f.index, f.id, f.code) for f in report.findings] == [(derm, f"q{derm}", "image_unreadable")]
    assert "empty (0 bytes)" in report.findings[0].message
    records = [r for i, r in enumerate(records) if i != derm]
    report = md.check_records(records, images=src)
    assert report.findings == []
    per_modality = {m: sum(t.values()) for m, t in report.stats["modality_task"].items()}
    # by hand from the 9 names: MIDRC-... has no '_' -> unknown; five ct_00--; x_ray -> "x"
    assert per_modality == {"unknown": 1, "ct": 5, "ultrasound": 1, "x": 1}
    assert report.stats["images"]["distinct"] == 8
    # CT_ORG volume-68 and volume-8 are different cases; AbdomenCT1K Case_00220 vs 00298 too
    moved = [dict(r, split="test") if "volume-8--" in r["image"] or "Case_00298" in r["image"] else r
             for r in records]
    assert md.check_records(moved, images=src).findings == []
    again = copy.deepcopy(records[1])
    again.update(id="again", split="test")
    again["conversations"][0]["value"] = "<image>\nWhich organ is this?"
    same_case = moved + [again]
    report = md.check_records(same_case, images=src)
    assert [(f.index, f.id, f.code) for f in report.findings] == [(8, "again", "case_leakage")]
