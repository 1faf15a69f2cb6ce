"""medground.load: the family comes from the checkpoint, every format opens with one call."""

from __future__ import annotations

import sys
import pathlib

import numpy as np
import pytest

import medground

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
torch = pytest.importorskip("torch")
from reference import qwen_vl as ref  # noqa: E402
from reference import sam_med2d as sam_ref  # noqa: E402

CFG = ref.tiny_config()


class ByteTokenizer:
    """Bytes as ids 0..255 (the tiny model's vocabulary has no real tokenizer)."""

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def bird_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bird")
    state = ref.random_state_dict(CFG, seed=3)
    ref.save_checkpoint(folder, CFG, state)
    return folder, state


def test_load_bird_folder_and_gguf(bird_folder, tmp_path):
    folder, state = bird_folder
    assert medground.detect_family(folder) == "bird"
    model = medground.load(folder, tokenizer=ByteTokenizer())
    assert isinstance(model, medground.BiRD)
    gguf = tmp_path / "bird.gguf"
    medground.convert(folder, gguf, type="f32")
    assert medground.detect_family(gguf) == "bird"
    from_gguf = medground.load(gguf, tokenizer=ByteTokenizer(), threads=1)
    assert isinstance(from_gguf, medground.BiRD)
    # Same weights, same answer: the two loads are the same model.
    image = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    a = model.chat(image, "hello", max_new_tokens=6)
    b = from_gguf.chat(image, "hello", max_new_tokens=6)
    assert a == b
    medground.set_num_threads(0)


def test_load_sam_med2d_pth(tmp_path):
    from test_sam_med2d import SMALL

    sam = sam_ref.build_sam_med2d(**SMALL, seed=0)
    path = tmp_path / "sam-med2d_b.pth"
    torch.save({"model": sam.state_dict()}, path)
    assert medground.detect_family(path) == "sam_med2d"
    model = medground.load(path)
    assert isinstance(model, medground.SamMed2D)
    with pytest.raises(medground.InvalidArgumentError, match="dtype"):
        medground.load(path, dtype="q8_0")


def test_load_errors(tmp_path):
    with pytest.raises(medground.NotFoundError, match="nowhere"):
        medground.load(tmp_path / "nowhere")
    from safetensors.numpy import save_file

    other = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": np.zeros((4, 3, 3, 3), np.float32)}, str(other))
    with pytest.raises(medground.UnsupportedError, match="not a BiRD"):
        medground.load(other)
    with pytest.raises(medground.InvalidArgumentError, match="device"):
        medground.load(other, device="tpu")
    with pytest.raises(medground.InvalidArgumentError, match="family"):
        medground.load(other, family="gpt")
