"""MedPLIB in C against PyTorch: transformers' CLIPVisionModel / LlamaForCausalLM / LlamaMLP,
segment-anything (SAM-Med2D), and tests/reference/medplib.py for the pieces no library has
(DeepSpeed top-1 MoE at inference, LoRA experts, the region sampler, <SEG> post-processing).

Small random models with the release's key names (model.vision_tower.vision_tower.vision_model.*,
model.layers.N.mlp.deepspeed_moe.*, ...) and real geometry where it matters (CLIP 336 px / 14 px
patches = 24x24 grid, 577 positions, select layer -2; vocabulary 32267 so the MedPLIB tokenizer
works; SAM-Med2D 256 px); widths and depths are tiny.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from reference import medplib as ref  # noqa: E402

from medground import _C  # noqa: E402

SAM_SMALL = dict(embed_dim=64, depth=2, num_heads=4, global_attn_indexes=(1,), out_chans=32, mask_in_chans=8,
                 decoder_mlp_dim=64, iou_head_hidden=32)


def rel_err(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return ref.TinyMedPLIB(sam_kwargs=SAM_SMALL, seed=3)


@pytest.fixture(scope="module")
def folder(tiny, tmp_path_factory):
    return tiny.save(str(tmp_path_factory.mktemp("medplib")))


@pytest.fixture(scope="module")
def model(folder):
    return _C.medplib_load(folder)


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(3, 336, 336, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def image_pair(tiny, model, pixels):
    theirs_emb, theirs_feat = tiny.encode_image(pixels)
    ours_emb, ours_feat = _C.medplib_encode_image(model, pixels.numpy())
    return theirs_emb, theirs_feat, ours_emb, ours_feat


# ----------------------------------------------------------------- 1. CLIP + projector
def test_info_from_config_and_shapes(model):
    info = _C.medplib_info(model)
    assert info["clip_image_size"] == 336 and info["clip_patch_size"] == 14 and info["clip_grid"] == 24
    assert info["clip_width"] == 32 and info["image_tokens"] == 576
    assert info["clip_layers_run"] == 2  # 3-layer tower, mm_vision_select_layer -2
    assert info["hidden_size"] == 64 and info["n_layers"] == 2 and info["vocab_size"] == 32267
    assert info["n_experts"] == 2 and info["capacity_factor"] == 2.0
    assert info["has_region_adapter"] and info["seg_dim"] == 32
    assert info["sam_image_size"] == 256 and info["sam_low_res"] == 64


def test_clip_select_layer_and_projector(tiny, pixels, image_pair):
    theirs_emb, theirs_feat, ours_emb, ours_feat = image_pair
    assert ours_feat.shape == (576, 32) and ours_emb.shape == (576, 64)
    assert rel_err(ours_feat, theirs_feat) <= 1e-4
    assert rel_err(ours_emb, theirs_emb) <= 1e-4
    # The selection matters: the last layer's output and the class row are different.
    with torch.no_grad():
        out = tiny.clip(pixel_values=pixels[None], output_hidden_states=True)
    assert rel_err(ours_feat, out.hidden_states[-1][0, 1:]) > 1e-2
    assert rel_err(ours_feat, out.hidden_states[-2][0, :-1]) > 1e-2


# ---------------------------------------------------------------- 2. LLaMA (MoE) decoder
def _prompt():
    rng = np.random.default_rng(11)
    head = [1] + rng.integers(3, 32000, 6).tolist() + [32265]
    tail = [32266] + rng.integers(3, 32000, 5).tolist()
    return head + [ref.IMAGE_TOKEN] + tail


def test_prefill_and_decode_logits_match_transformers(tiny, model, image_pair):
    theirs_emb, _, ours_emb, _ = image_pair
    ids = _prompt()
    tokens, ref_logits, _ = tiny.greedy(ids, image=theirs_emb, max_new_tokens=21, stop=())
    assert len(tokens) == 21
    with torch.no_grad():
        full = tiny.lm(inputs_embeds=tiny.embed(ids, theirs_emb, None)).logits[0].numpy()
    cache = _C.medplib_cache_new(model, 700)
    logits, hidden = _C.medplib_forward(model, cache, np.array(ids, np.int32), ours_emb, all_logits=True)
    assert logits.shape == (len(ids) - 1 + 576, 32267)
    assert rel_err(logits, full) <= 1e-4
    ours_tokens = [int(np.argmax(logits[-1]))]
    for step in range(20):
        step_logits, _ = _C.medplib_forward(model, cache, np.array([ours_tokens[-1]], np.int32))
        assert rel_err(step_logits[0], ref_logits[step + 1]) <= 1e-4, f"decode step {step}"
        ours_tokens.append(int(np.argmax(step_logits[0])))
    assert ours_tokens == tokens
    generated, seg, seg_index = _C.medplib_generate(model, np.array(ids, np.int32), ours_emb, max_new_tokens=21)
    assert generated == tokens and seg is None and seg_index == -1


def test_dense_checkpoint_runs_llama_mlp(tmp_path):
    dense = ref.TinyMedPLIB(n_experts=0, sam_kwargs=SAM_SMALL, seed=5)
    m = _C.medplib_load(dense.save(str(tmp_path / "dense")), load_sam=False)
    assert _C.medplib_info(m)["n_experts"] == 0
    ids = [1, 450, 3, 32265, ref.IMAGE_TOKEN, 32266, 910, 29901]
    image = torch.randn(576, 64, generator=torch.Generator().manual_seed(2))
    tokens, ref_logits, _ = dense.greedy(ids, image=image, max_new_tokens=8, stop=())
    generated, _, _ = _C.medplib_generate(m, np.array(ids, np.int32), image.numpy(), max_new_tokens=8)
    assert generated == tokens
    cache = _C.medplib_cache_new(m, 600)
    logits, _ = _C.medplib_forward(m, cache, np.array(ids, np.int32), image.numpy())
    assert rel_err(logits[0], ref_logits[0]) <= 1e-4
    with pytest.raises(Exception, match="dense FFN"):
        _C.medplib_moe_load(m)
