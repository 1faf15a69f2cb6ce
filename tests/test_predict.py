"""medground.predict on one process, local workers and a Dask LocalCluster, on a
small random-weight BiRD: identical outputs, a killed worker loses nothing,
--resume adds only what is missing, a corrupt image is reported and the rest
completes."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import medground

TESTS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
torch = pytest.importorskip("torch")
from reference import qwen_vl as ref  # noqa: E402
import predict_helpers  # noqa: E402

N_RECORDS = 10
GENERATION = {"max_new_tokens": 4}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    folder = root / "bird"
    # vocab 503 = the tiny tokenizer's 286 ranks + Qwen's 217 special tokens, so
    # every id the random model can emit decodes.
    config = ref.tiny_config(vocab_size=503)
    ref.save_checkpoint(folder, config, ref.random_state_dict(config, seed=5))
    predict_helpers.write_tiny_tiktoken(folder / "qwen.tiktoken")
    gguf = root / "bird.gguf"
    medground.convert(folder, gguf, type="f32")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    records = []
    for i in range(N_RECORDS):
        Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(images / f"ct_{i:02d}.png")
        records.append({"id": f"ct_{i:02d}", "conversations": [
            [f"Picture 1:<img>ct_{i:02d}.png</img>\nWhere is <ref>the liver</ref>?",
             "<ref>the liver</ref><box>(10,10),(500,500)</box>"]]})
    (images / "broken_00.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    records.append({"id": "broken_00", "conversations": [["Where is <ref>it</ref>?", "<ref>it</ref>"]]})
    path = root / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    env_path = os.pathsep.join([str(TESTS), str(TESTS.parent / "python"), os.environ.get("PYTHONPATH", "")])
    os.environ["PYTHONPATH"] = env_path  # worker processes import medground and predict_helpers
    return {"root": root, "gguf": gguf, "images": images, "records": path}


def _read(path: pathlib.Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"an id was written twice: {sorted(ids)}"
    return {r["id"]: r for r in rows}


@pytest.fixture(scope="module")
def single(setup):
    out = setup["root"] / "single.jsonl"
    summary = medground.predict(setup["records"], str(setup["gguf"]), "vg", out, image_root=str(setup["images"]),
                                progress=False, **GENERATION)
    assert summary.written == N_RECORDS + 1 and summary.failed == 1
    return _read(out)


def test_single_process_output(single):
    assert len(single) == N_RECORDS + 1
    good = [r for k, r in single.items() if k != "broken_00"]
    assert all(isinstance(r["response"], str) and "error" not in r for r in good)
    assert all(r["annotation"].startswith("<ref>the liver</ref>") for r in good)
    broken = single["broken_00"]
    assert broken["response"] is None and "broken_00.png" in broken["error"]
    # The output is what medground.evaluate reads (BiRD's field names).
    result = medground.evaluate([r for r in good], task="vg")
    assert int(result.table.loc["all", "records"]) == N_RECORDS


def test_local_workers_match_single(setup, single):
    out = setup["root"] / "workers.jsonl"
    medground.predict(setup["records"], str(setup["gguf"]), "vg", out, image_root=str(setup["images"]),
                      workers=2, threads_per_worker=1, chunk_size=3, progress=False, **GENERATION)
    assert _read(out) == single


def test_local_worker_killed_mid_run(setup, single):
    """A local worker process that dies loses only its in-flight chunk, which is re-run."""
    records = json.loads("[" + ",".join(setup["records"].read_text().split("\n")[:-1]) + "]")
    Image.open(setup["images"] / "ct_03.png").save(setup["images"] / "die_03.png")
    dying = dict(records[3], id="die_03")
    dying["conversations"] = [[records[3]["conversations"][0][0].replace("ct_03", "die_03"),
                               records[3]["conversations"][0][1]]]
    marker = setup["root"] / "died-local.txt"
    factory = functools.partial(predict_helpers.die_once_factory, str(setup["gguf"]), str(marker))
    out = setup["root"] / "local-killed.jsonl"
    medground.predict(records + [dying], factory, "vg", out, image_root=str(setup["images"]), workers=2,
                      threads_per_worker=1, chunk_size=2, progress=False, **GENERATION)
    assert marker.exists(), "the worker that should have died did not"
    got = _read(out)
    assert {k: v for k, v in got.items() if k != "die_03"} == single
    assert got["die_03"]["response"] == single["ct_03"]["response"]


def test_resume_adds_only_the_missing(setup, single):
    out = setup["root"] / "resume.jsonl"
    kept = list(single.values())[:4]
    # an interrupted run: four finished lines and one cut in the middle
    out.write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"id": "ct_0')
    summary = medground.predict(setup["records"], str(setup["gguf"]), "vg", out, image_root=str(setup["images"]),
                                resume=True, progress=False, **GENERATION)
    assert summary.skipped_existing == 4 and summary.written == N_RECORDS + 1 - 4
    assert out.read_text().endswith("\n")
    assert _read(out) == single  # every line whole: the cut line was dropped, its record redone


def test_dask_cluster_matches_and_survives_a_killed_worker(setup, single):
    distributed = pytest.importorskip("distributed")
    records = json.loads("[" + ",".join(setup["records"].read_text().split("\n")[:-1]) + "]")
    Image.open(setup["images"] / "ct_03.png").save(setup["images"] / "die_03.png")
    dying = dict(records[3], id="die_03")
    dying["conversations"] = [[records[3]["conversations"][0][0].replace("ct_03", "die_03"),
                               records[3]["conversations"][0][1]]]
    marker = setup["root"] / "died.txt"
    factory = functools.partial(predict_helpers.die_once_factory, str(setup["gguf"]), str(marker))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        out = setup["root"] / "dask.jsonl"
        medground.predict(setup["records"], str(setup["gguf"]), "vg", out, image_root=str(setup["images"]),
                          dask=client, chunk_size=2, progress=False, **GENERATION)
        assert _read(out) == single
        killed = setup["root"] / "dask-killed.jsonl"
        medground.predict(records + [dying], factory, "vg", killed, image_root=str(setup["images"]),
                          dask=client, chunk_size=2, retries=3, progress=False, **GENERATION)
    assert marker.exists(), "the worker that should have died did not"
    got = _read(killed)
    assert set(got) == set(single) | {"die_03"}
    assert {k: v for k, v in got.items() if k != "die_03"} == single
    assert got["die_03"]["response"] == single["ct_03"]["response"]  # same pixels, same answer


def test_cli_predict_then_evaluate(setup, single):
    out = setup["root"] / "cli.jsonl"
    env = dict(os.environ)
    completed = subprocess.run([sys.executable, "-m", "medground", "predict", str(setup["records"]),
                                "--model", str(setup["gguf"]), "--task", "vg", "-o", str(out),
                                "--images", str(setup["images"]), "--max-new-tokens", "4", "--json"],
                               env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["written"] == N_RECORDS + 1 and summary["failed"] == 1
    assert _read(out) == single


def test_bad_task_and_records(setup, tmp_path):
    with pytest.raises(medground.InvalidArgumentError, match="task"):
        medground.predict(setup["records"], str(setup["gguf"]), "nope", tmp_path / "x.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "conversations": [["q", "a"]]}\n{not json\n')
    with pytest.raises(medground.FormatError, match="2"):
        medground.predict(bad, str(setup["gguf"]), "vg", tmp_path / "y.jsonl")
