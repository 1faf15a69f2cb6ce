"""medground.testing: the tiny random checkpoint has the real names and layouts."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

import medground
from medground import testing

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def test_shapes_match_the_reference_derivation():
    pytest.importorskip("torch")
    from reference import qwen_vl as ref

    config = testing.tiny_bird_config()
    assert config == ref.tiny_config(vocab_size=503)
    assert testing.bird_tensor_shapes(config) == ref.hf_tensor_shapes(config)


def test_checkpoint_reads_with_safetensors_and_loads(tmp_path):
    from safetensors.numpy import load_file

    folder = testing.tiny_bird_checkpoint(tmp_path / "tiny", seed=3)
    tensors = load_file(str(folder / "model.safetensors"))
    shapes = testing.bird_tensor_shapes(testing.tiny_bird_config())
    assert {k: v.shape for k, v in tensors.items()} == shapes
    assert abs(float(tensors["transformer.ln_f.weight"].mean()) - 1.0) < 0.1  # norms near 1
    model = medground.load(folder, threads=1)
    assert isinstance(model, medground.BiRD)
    image = np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    assert isinstance(model.chat(image, "hello", max_new_tokens=3), str)
