"""MedPLIB from a `medground convert --type q8_0` GGUF whose SAM-Med2D has 256-wide prompts (the
release's width): convert quantizes mask_decoder.mask_tokens [4, 256] (1024 elements, rows of
256), which the SAM loader must dequantize rather than reject. Checked against the PyTorch
reference (segment-anything's mask decoder) run on the weights the gguf package dequantizes from
the same file."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from conftest import shared_path  # noqa: E402
from reference import medplib as ref  # noqa: E402

import medground  # noqa: E402
from medground import _C  # noqa: E402
from medground.image import preprocess_sam  # noqa: E402
from medground.models.medplib import MedPLIB  # noqa: E402

SAM_256 = dict(embed_dim=64, depth=2, num_heads=4, global_attn_indexes=(1,), out_chans=256, mask_in_chans=8,
               decoder_mlp_dim=64, iou_head_hidden=32)
ADDED = (["<SEG>", "<ref>", "</ref>", "<region>", "</region>", "<sr>", "</sr>", "<mask>", "</mask>"] +
         [f"<gen_{i}>" for i in range(1, 257)] + ["<im_start>", "<im_end>"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    torch.set_num_threads(1)
    tiny = ref.TinyMedPLIB(sam_kwargs=SAM_256, seed=5)
    folder = tmp_path_factory.mktemp("mpq")
    tiny.save(str(folder / "st"))
    shutil.copy(shared_path("tokenizers", "llama.tokenizer.model"), folder / "st" / "tokenizer.model")
    (folder / "st" / "added_tokens.json").write_text(json.dumps({t: 32000 + i for i, t in enumerate(ADDED)}))
    out = folder / "medplib_q8_0.gguf"
    medground.convert(str(folder / "st"), str(out), type="q8_0", progress=False)
    return tiny, str(out)


def test_quantized_mask_tokens_load_and_match_reference(converted):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    tiny, path = converted
    reader = GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    prefix = "model.visual_model."
    assert tensors[prefix + "mask_decoder.mask_tokens.weight"].tensor_type.name == "Q8_0"  # the case under test
    model = MedPLIB(path)  # used to fail: "SAM: tensor ... must be a float type, got q8_0"
    assert model.info["seg_dim"] == 256 and model.info["sam_image_size"] == 256

    # the reference on exactly the stored weights (dequantized by the gguf package)
    state = tiny.sam.state_dict()
    with torch.no_grad():
        for name, value in state.items():
            if prefix + name in tensors:
                t = tensors[prefix + name]
                array = dequantize(t.data, t.tensor_type).reshape(value.shape)
                value.copy_(torch.from_numpy(np.array(array, dtype=np.float32)))
    image = np.random.default_rng(2).integers(0, 255, (100, 140, 3), dtype=np.uint8)
    pixels, _ = preprocess_sam(image, 256)
    prompt = np.random.default_rng(3).standard_normal(256).astype(np.float32)
    expected, expected_iou = tiny.decode_mask(torch.from_numpy(pixels), torch.from_numpy(prompt))

    embedding = _C.medplib_sam_encode(model._handle, pixels)
    low_res, iou = _C.medplib_decode_mask(model._handle, embedding, prompt)
    got = np.asarray(low_res).reshape(expected.shape)
    want = expected.numpy()
    # q8_0 weight matrices: medground may quantize activations to 8 bits in its quantized
    # matrix products (measured here: max error 1.8 %, mean 0.4 % of the logit range,
    # correlation 0.99989); a wrong or zeroed mask token is off by O(range)
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() < 0.05 * scale, (np.abs(got - want).max(), scale)
    assert np.abs(got - want).mean() < 0.01 * scale
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999
    assert abs(iou - expected_iou) < 0.02 * max(1.0, abs(expected_iou))
