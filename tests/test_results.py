"""Results that draw themselves (notebooks) and the batch forms of the model methods."""

from __future__ import annotations

import io
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image

import medground
from medground.models.medplib import Mask
from medground.results import Boxes

TESTS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
torch = pytest.importorskip("torch")
from reference import qwen_vl as ref  # noqa: E402
import predict_helpers  # noqa: E402


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_boxes_draw_over_their_image():
    image = np.full((40, 50, 3), 30, np.uint8)
    boxes = Boxes([medground.Box(5, 6, 25, 31, "liver")], image=image)
    drawn = _decode(boxes._repr_png_())
    assert drawn.shape == image.shape
    # the outline runs along the box edges: x = 5 for rows 6..30, y = 6 for columns 5..24
    assert (drawn[6:31, 5] != 30).any(axis=1).all() and (drawn[6, 5:25] != 30).any(axis=1).all()
    assert (drawn[15:25, 12:18] == 30).all()  # the inside is untouched (below the label)
    assert (drawn[35:, :] == 30).all() and (drawn[:, 30:] == 30).all()
    assert boxes.to_dicts() == [{"x1": 5, "y1": 6, "x2": 25, "y2": 31, "label": "liver"}]
    assert Boxes([medground.Box(1, 1, 2, 2)])._repr_png_() is None  # no image, nothing to show


def test_mask_draws_over_its_image():
    image = np.full((20, 24, 3), 200, np.uint8)
    array = np.zeros((20, 24), np.uint8)
    array[4:10, 6:15] = 1
    drawn = _decode(Mask(array, 0.9, True, "", image=image)._repr_png_())
    inside, outside = array.astype(bool), ~array.astype(bool)
    assert (drawn[inside] != 200).any(axis=1).all() and (drawn[outside] == 200).all()
    with pytest.raises(medground.InvalidArgumentError, match="no image"):
        Mask(array, 0.9, True, "").to_png()


@pytest.fixture(scope="module")
def bird(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bird")
    config = ref.tiny_config(vocab_size=503)
    ref.save_checkpoint(folder, config, ref.random_state_dict(config, seed=4))
    predict_helpers.write_tiny_tiktoken(folder / "qwen.tiktoken")
    return medground.load(folder, threads=1)


def test_batch_forms_equal_one_by_one(bird):
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (30 + 4 * i, 44, 3), dtype=np.uint8) for i in range(3)]
    one_by_one = [bird.chat(im, "What is shown?", max_new_tokens=5) for im in images]
    assert bird.chat(images, "What is shown?", max_new_tokens=5, progress=False) == one_by_one
    phrases = ["the liver", "the spleen", "a lesion"]
    grounded = bird.ground(images, phrases, max_new_tokens=8, progress=False)
    assert [list(b) for b in grounded] == [list(bird.ground(im, p, max_new_tokens=8)) for im, p in zip(images, phrases)]
    assert all(isinstance(b, Boxes) and b.image is im for b, im in zip(grounded, images))
    boxes = [[1, 2, 20, 25], [3, 3, 30, 30], [0, 0, 10, 10]]
    assert bird.refer(images, boxes, max_new_tokens=4, progress=False) == \
        [bird.refer(im, b, max_new_tokens=4) for im, b in zip(images, boxes)]
    with pytest.raises(medground.InvalidArgumentError, match="3 images but 2 prompts"):
        bird.ground(images, phrases[:2], progress=False)
    with pytest.raises(medground.InvalidArgumentError, match="history"):
        bird.chat(images, "hi", history=[("a", "b")], progress=False)


def test_generation_arguments_are_checked(bird):
    image = np.zeros((30, 30, 3), np.uint8)
    with pytest.raises(medground.InvalidArgumentError, match="max_new_tokens -1 out of range"):
        bird.chat(image, "hi", max_new_tokens=-1)
    from medground import _C

    handle = bird._model
    session = _C.bird_session_new(handle, 64)
    with pytest.raises(medground.InvalidArgumentError, match="bird_generate: callback must be callable"):
        _C.bird_generate(handle, session, [1, 2, 3], None, max_new_tokens=2, callback=5)
