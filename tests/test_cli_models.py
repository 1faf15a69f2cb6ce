"""The model commands of the CLI (ground, refer, chat, segment): same answers as
the Python API, --json output, one-line errors with the documented exit codes."""

from __future__ import annotations

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
from reference import sam_med2d as sam_ref  # noqa: E402
import predict_helpers  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=str(TESTS.parent / "python"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medground", *args], env=ENV, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    config = ref.tiny_config(vocab_size=503)
    folder = root / "bird"
    ref.save_checkpoint(folder, config, ref.random_state_dict(config, seed=9))
    predict_helpers.write_tiny_tiktoken(folder / "qwen.tiktoken")
    image = root / "ct.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
    from test_sam_med2d import SMALL

    sam = root / "sam-med2d_b.pth"
    torch.save({"model": sam_ref.build_sam_med2d(**SMALL, seed=0).state_dict()}, sam)
    return {"bird": folder, "image": image, "sam": sam}


def test_ground_refer_chat_match_the_api(files):
    model = medground.load(files["bird"])
    pixels = medground.image.load(str(files["image"]))
    done = cli("ground", "--model", str(files["bird"]), str(files["image"]), "the liver", "--json",
               "--max-new-tokens", "12")
    assert done.returncode == 0, done.stderr
    expected = [b.to_dict() for b in model.ground(pixels, "the liver", max_new_tokens=12)]
    assert json.loads(done.stdout) == expected
    done = cli("refer", "--model", str(files["bird"]), str(files["image"]), "--box", "4,5,30,40", "--json",
               "--max-new-tokens", "6")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == model.refer(pixels, [4, 5, 30, 40], max_new_tokens=6)
    done = cli("chat", "--model", str(files["bird"]), str(files["image"]), "What is this?", "--max-new-tokens", "6")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == model.chat(pixels, "What is this?", max_new_tokens=6)


def test_segment_with_sam_med2d_box(files, tmp_path):
    out = tmp_path / "mask.png"
    done = cli("segment", "--model", str(files["sam"]), str(files["image"]), "--box", "5,6,40,30",
               "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    sam = medground.SamMed2D(str(files["sam"]))
    sam.set_image(medground.image.load(str(files["image"])))
    masks, scores, _ = sam.predict(box=[5, 6, 40, 30])
    written = np.asarray(Image.open(out)) > 0
    np.testing.assert_array_equal(written, masks[0])
    assert summary["area"] == int(masks[0].sum()) and abs(summary["score"] - float(scores[0])) < 1e-6


def test_errors_are_one_line_with_exit_codes(files):
    done = cli("ground", "--model", str(files["sam"]), str(files["image"]), "the liver")
    assert done.returncode == 3 and "does not ground" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = cli("refer", "--model", str(files["bird"]), str(files["image"]), "--box", "1,2,3")
    assert done.returncode == 2 and "expected 4 numbers" in done.stderr
    done = cli("chat", "--model", str(files["bird"]) + "-missing", str(files["image"]), "hi")
    assert done.returncode == 3 and "no such file" in done.stderr
    done = cli("segment", "--model", str(files["sam"]), str(files["image"]))
    assert done.returncode == 3 and "--box" in done.stderr
    done = cli("chat", "--model", str(files["bird"]), str(files["image"]) + ".nope", "hi", "--debug")
    assert done.returncode == 3 and "Traceback" in done.stderr  # --debug shows it


def test_bench_reports_every_weight_type():
    done = cli("bench", "--repeats", "1", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["gemv"]) == {"f32", "bf16", "q8_0", "q4_0"} and set(result["gemm"]) == {"f32", "bf16"}
    assert result["read_bandwidth_gb_s"] > 0 and all(r["gb_s"] > 0 for r in result["gemv"].values())
    done = cli("bench", "--repeats", "0")
    assert done.returncode == 3 and "--repeats 0" in done.stderr


@pytest.mark.parametrize("command", ["ground", "refer", "segment", "chat", "demo", "evaluate", "predict",
                                     "convert", "inspect", "data", "bench"])
def test_every_command_has_help(command):
    done = cli(command, "--help")
    assert done.returncode == 0 and "usage:" in done.stdout
