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


# ------------------------------------------------------------------------- 3. MoE
def _moe_blocks(tiny):
    return [layer.mlp for layer in tiny.lm.model.layers]


def test_expert_ffns_match_llama_mlp(tiny, model):
    x = torch.randn(9, 64, generator=torch.Generator().manual_seed(4))
    for layer, block in enumerate(_moe_blocks(tiny)):
        for e, mlp in enumerate(block.deepspeed_moe.experts.deepspeed_experts):
            with torch.no_grad():
                theirs = mlp(x).numpy()
            ours = _C.medplib_moe_expert(model, layer, e, x.numpy())
            assert rel_err(ours, theirs) <= 1e-5, (layer, e)


def test_router_choices_and_scaled_output(tiny, model):
    x = 3.0 * torch.randn(300, 64, generator=torch.Generator().manual_seed(8))
    for layer, block in enumerate(_moe_blocks(tiny)):
        probs, choice = block.route(x)
        ours_choice, ours_probs = _C.medplib_moe_route(model, layer, x.numpy())
        assert set(choice.tolist()) == {0, 1}  # both experts are exercised
        assert ours_choice.tolist() == choice.tolist()
        assert rel_err(ours_probs, probs) <= 1e-5
        with torch.no_grad():
            theirs = block(x).numpy()
            unscaled = torch.stack([block.deepspeed_moe.experts.deepspeed_experts[int(c)](x[i]) for i, c in
                                    enumerate(choice)]).numpy()
        ours = _C.medplib_moe_expert(model, layer, -1, x.numpy())
        assert rel_err(ours, theirs) <= 1e-5
        assert rel_err(ours, unscaled) > 1e-2  # the router probability scales the output


def test_expert_load_counts_follow_the_reference(tiny, model, image_pair):
    theirs_emb, _, ours_emb, _ = image_pair
    ids = _prompt()
    blocks = _moe_blocks(tiny)
    for block in blocks:
        block.routed.zero_()
    with torch.no_grad():
        tiny.lm(inputs_embeds=tiny.embed(ids, theirs_emb, None))
    _C.medplib_moe_reset(model)
    cache = _C.medplib_cache_new(model, 600)
    _C.medplib_forward(model, cache, np.array(ids, np.int32), ours_emb)
    routed, dropped = _C.medplib_moe_load(model)
    T = len(ids) - 1 + 576
    assert routed.shape == (2, 2) and routed.sum(axis=1).tolist() == [T, T]
    assert routed.tolist() == [b.routed.tolist() for b in blocks]
    assert dropped.tolist() == [0, 0]  # eval capacity factor 2 with 2 experts: capacity = T
    for layer, block in enumerate(blocks):
        experts, probs = _C.medplib_moe_last_routes(model, layer)
        assert experts.tolist() == block.last_choice.tolist()
        assert np.all(probs >= 0.5)  # top-1 of two experts
    _C.medplib_moe_reset(model)
    assert _C.medplib_moe_load(model)[0].sum() == 0


def test_capacity_factor_at_inference(tiny, folder):
    # Default (config eval_capacity_factor 2, 2 experts): capacity = T, nothing dropped.
    m2 = _C.medplib_load(folder, load_sam=False)
    assert [_C.medplib_moe_capacity(m2, t) for t in (1, 7, 600)] == [1, 7, 600]
    # config.json's moe.eval_capacity_factor is what inference uses.
    import json
    import shutil

    other = os.path.join(os.path.dirname(folder), "cf1")
    os.makedirs(other, exist_ok=True)
    shutil.copy(os.path.join(folder, "model.safetensors"), other)
    config = json.load(open(os.path.join(folder, "config.json")))
    config["moe"]["eval_capacity_factor"] = 1.0
    json.dump(config, open(os.path.join(other, "config.json"), "w"))
    m1 = _C.medplib_load(other, load_sam=False)
    assert _C.medplib_info(m1)["capacity_factor"] == 1.0 and _C.medplib_moe_capacity(m1, 7) == 4
    # A smaller factor drops the overflow tokens (zero FFN output), as DeepSpeed's top1gating.
    m = _C.medplib_load(folder, load_sam=False, capacity_factor=0.5)
    assert _C.medplib_moe_capacity(m, 10) == 3  # ceil(10 / 2 * 0.5)
    x = 3.0 * torch.randn(40, 64, generator=torch.Generator().manual_seed(9))
    block = _moe_blocks(tiny)[1]
    saved = block.capacity_factor
    block.capacity_factor = 0.5
    try:
        with torch.no_grad():
            theirs = block(x).numpy()
    finally:
        block.capacity_factor = saved
    ours = _C.medplib_moe_expert(m, 1, -1, x.numpy())
    assert rel_err(ours, theirs) <= 1e-5
    counts = np.bincount(block.last_choice.numpy(), minlength=2)
    _, dropped = _C.medplib_moe_load(m)
    assert dropped[1] == sum(max(c - 10, 0) for c in counts)  # capacity ceil(40 / 2 * 0.5) = 10
    assert dropped[1] > 0 and np.sum(np.all(ours == 0, axis=1)) == dropped[1]


def test_lora_experts_merged_at_load(tiny, tmp_path):
    import json

    from safetensors.torch import save_file

    from medground.errors import InvalidArgumentError, NotFoundError

    tensors = tiny.state_dict_release()
    tensors = {k: v for k, v in tensors.items() if not k.startswith("model.visual_model.")}
    gen = torch.Generator().manual_seed(12)
    r, alpha = 4, 8.0
    merged = {}
    for key in [k for k in tensors if ".deepspeed_experts." in k]:
        base = key[: -len(".weight")]
        w0 = tensors.pop(key)
        a = torch.randn(r, w0.shape[1], generator=gen) / w0.shape[1] ** 0.5
        b = torch.randn(w0.shape[0], r, generator=gen) / r
        tensors[base + ".base_layer.weight"] = w0
        tensors[base + ".lora_A.weight"] = a.contiguous()
        tensors[base + ".lora_B.weight"] = b.contiguous()
        merged[key] = ref.lora_merge(w0, a, b, alpha, r)
    config = tiny.config_json()
    folder = tmp_path / "lora"
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidArgumentError, match="lora_scale"):
        _C.medplib_load(str(folder), load_sam=False)
    m = _C.medplib_load(str(folder), load_sam=False, lora_scale=alpha / r)
    config.update(lora_alpha=alpha, lora_r=r)
    (folder / "config.json").write_text(json.dumps(config))
    m_cfg = _C.medplib_load(str(folder), load_sam=False)
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(13))
    from transformers.models.llama.modeling_llama import LlamaMLP

    for layer in range(2):
        for e in range(2):
            mlp = LlamaMLP(tiny.llama_config)
            prefix = f"model.layers.{layer}.mlp.deepspeed_moe.experts.deepspeed_experts.{e}."
            with torch.no_grad():
                for p in ("gate_proj", "up_proj", "down_proj"):
                    getattr(mlp, p).weight.copy_(merged[prefix + p + ".weight"])
                theirs = mlp(x).numpy()
            assert rel_err(_C.medplib_moe_expert(m, layer, e, x.numpy()), theirs) <= 1e-5
            assert rel_err(_C.medplib_moe_expert(m_cfg, layer, e, x.numpy()), theirs) <= 1e-5
    # half a LoRA pair is an error naming the tensor
    del tensors["model.layers.0.mlp.deepspeed_moe.experts.deepspeed_experts.0.up_proj.lora_B.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(NotFoundError, match="deepspeed_experts.0.up_proj"):
        _C.medplib_load(str(folder), load_sam=False)


# ------------------------------------------------------------------ 4. region prompts
def _blob_mask(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    mask = ((yy - h * 0.45) / (h * 0.2)) ** 2 + ((xx - w * 0.4) / (w * 0.25)) ** 2 < 1
    mask |= ((yy - h * 0.85) ** 2 + (xx - w * 0.85) ** 2) < (min(h, w) * 0.06) ** 2  # a second, smaller part
    mask &= rng.random((h, w)) > 0.02  # ragged edge
    return (mask * rng.integers(1, 255)).astype(np.uint8)


@pytest.mark.parametrize("shape,largest", [((200, 300), True), ((200, 300), False), ((512, 384), True),
                                           ((37, 90), False)])
def test_grid_mask_matches_dataset_preparation(shape, largest):
    mask = _blob_mask(*shape, seed=shape[0])
    ours = _C.medplib_region_grid_mask(mask, 336, 14, largest)
    theirs = ref.grid_mask_from_mask(mask, 336, 14, largest)
    assert ours.shape == (24, 24) and ours.sum() > 0
    assert np.array_equal(ours, theirs)


def test_region_sampler_matches_grid_sample():
    gen = torch.Generator().manual_seed(21)
    feats = torch.randn(576, 40, generator=gen)
    grid = (torch.rand(24, 24, generator=gen) > 0.7).numpy().astype(np.uint8)
    grid[23, 23] = grid[0, 0] = grid[23, 0] = 1  # corners exercise the borders
    fmap = feats.t().reshape(1, 40, 24, 24)
    ours, n = _C.medplib_region_sample(feats.numpy(), 24, grid, 512)
    assert n == grid.sum()
    assert rel_err(ours, ref.sample_region(fmap, grid)) <= 1e-5
    # More cells than max_points: an evenly spaced subset (the reference draws a random one).
    full = np.ones((24, 24), np.uint8)
    ours, n = _C.medplib_region_sample(feats.numpy(), 24, full, 100)
    picks = [k * 576 // 100 for k in range(100)]
    subset = np.zeros(576, np.uint8)
    subset[picks] = 1
    assert n == 100 and rel_err(ours, ref.sample_region(fmap, subset.reshape(24, 24))) <= 1e-5


def test_region_feature_and_region_row_in_prompt(tiny, model, image_pair):
    theirs_emb, theirs_feat, ours_emb, ours_feat = image_pair
    grid = ref.grid_mask_from_mask(_blob_mask(300, 300, 5))
    theirs = tiny.region_feature(theirs_feat, grid)
    ours, n = _C.medplib_region_feature(model, ours_feat, grid)
    assert n == grid.sum() and ours.shape == (64,)
    assert rel_err(ours, theirs) <= 1e-4
    ids = _prompt() + [32003, ref.REGION_TOKEN, 32004, 1724, 29901]
    with torch.no_grad():
        full = tiny.lm(inputs_embeds=tiny.embed(ids, theirs_emb, theirs[None])).logits[0, -1].numpy()
    cache = _C.medplib_cache_new(model, 700)
    logits, _ = _C.medplib_forward(model, cache, np.array(ids, np.int32), ours_emb, ours[None])
    assert rel_err(logits[0], full) <= 1e-4


# -------------------------------------------------------------- bf16 (the release's dtype)
@pytest.fixture(scope="module")
def bf16_pair(tmp_path_factory):
    tiny = ref.TinyMedPLIB(sam_kwargs=SAM_SMALL, seed=6)
    with torch.no_grad():  # the reference runs in f32 on the bf16-rounded weights
        for p in tiny.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return tiny, tiny.save(str(tmp_path_factory.mktemp("bf16")), dtype=torch.bfloat16)


def test_bf16_checkpoint_read_exactly(bf16_pair, pixels):
    """bf16 safetensors converted to f32 at load: f32 agreement with the rounded reference."""
    tiny, folder = bf16_pair
    m = _C.medplib_load(folder, dtype="f32", load_sam=False)
    theirs_emb, _ = tiny.encode_image(pixels)
    ours_emb, _ = _C.medplib_encode_image(m, pixels.numpy())
    assert rel_err(ours_emb, theirs_emb) <= 1e-4
    ids = _prompt()
    tokens, ref_logits, _ = tiny.greedy(ids, image=theirs_emb, max_new_tokens=6, stop=())
    cache = _C.medplib_cache_new(m, 700)
    logits, _ = _C.medplib_forward(m, cache, np.array(ids, np.int32), ours_emb)
    assert rel_err(logits[0], ref_logits[0]) <= 1e-4
    assert _C.medplib_generate(m, np.array(ids, np.int32), ours_emb, max_new_tokens=6)[0] == tokens


def test_bf16_weights_kept_native(bf16_pair, pixels):
    """Kept in bf16, every GEMM rounds its activations to bf16 as PyTorch's bf16 Linear does
    (f32 accumulation): errors of a few bf16 ulps (2^-8 = 0.4 %) per layer; bound 2 %."""
    tiny, folder = bf16_pair
    m = _C.medplib_load(folder, load_sam=False)
    theirs_emb, _ = tiny.encode_image(pixels)
    ours_emb, _ = _C.medplib_encode_image(m, pixels.numpy())
    assert rel_err(ours_emb, theirs_emb) <= 2e-2
    ids = _prompt()
    with torch.no_grad():
        full = tiny.lm(inputs_embeds=tiny.embed(ids, theirs_emb, None)).logits[0, -1].numpy()
    cache = _C.medplib_cache_new(m, 700)
    logits, _ = _C.medplib_forward(m, cache, np.array(ids, np.int32), ours_emb)
    assert rel_err(logits[0], full) <= 2e-2


# ------------------------------------------------------------------------ bad input (C)
def test_placeholder_errors(model, image_pair):
    from medground import errors

    _, _, emb, _ = image_pair
    cache = _C.medplib_cache_new(model, 1300)
    with pytest.raises(errors.ShapeError, match="region placeholders"):
        _C.medplib_forward(model, cache, np.array([1, 32003, -300, 32004], np.int32))
    with pytest.raises(errors.InvalidArgumentError, match="one image per prompt"):
        _C.medplib_forward(model, cache, np.array([1, -200, -200], np.int32), emb)
    with pytest.raises(errors.ShapeError, match="image embeddings"):
        _C.medplib_forward(model, cache, np.array([1, -200], np.int32))
    with pytest.raises(errors.InvalidArgumentError, match="outside the vocabulary"):
        _C.medplib_forward(model, cache, np.array([1, 40000], np.int32))
    with pytest.raises(errors.InvalidArgumentError, match="-7 at position 1"):
        _C.medplib_generate(model, np.array([1, -7], np.int32))
    with pytest.raises(errors.InvalidArgumentError, match="empty"):
        _C.medplib_region_sample(np.zeros((576, 8), np.float32), 24, np.zeros((24, 24), np.uint8))
    with pytest.raises(errors.InvalidArgumentError, match="empty"):
        _C.medplib_region_grid_mask(np.zeros((30, 40), np.uint8), 336, 14, True)
    with pytest.raises(errors.InvalidArgumentError, match="must lie in the 256-px SAM input"):
        _C.medplib_postprocess(np.zeros((64, 64), np.float32), 256, 300, 40, 30, 30, True, 0.1)
    assert _C.medplib_forward(model, cache, np.array([1, 450], np.int32))[0].shape == (1, 32267)


def test_reference_crop_rows_by_hand():
    """postprocess_masks on a 64-row map for resized heights h': pad = 64 - h', top = pad // 2,
    rows [top, top + h') with Python slicing. h' = 65: top = -1 -> rows [63, 64): one row;
    h' = 150: top = -43 -> [21, 64); h' = 40: top = 12 -> [12, 52); h' = 256: [0, 64)."""
    rows = np.repeat(((np.arange(64) - 40) / 10.0).astype(np.float32)[:, None], 64, axis=1)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    _, probs = _C.medplib_postprocess(rows, 256, 65, 256, 7, 5, True, 0.1)
    assert np.allclose(probs, sig((63 - 40) / 10.0), atol=1e-6)
    for h, (r0, r1) in {150: (21, 64), 40: (12, 52), 256: (0, 64)}.items():
        _, probs = _C.medplib_postprocess(rows, 256, h, 256, r1 - r0, 3, True, 0.1)
        assert np.allclose(probs[:, 0], sig((np.arange(r0, r1) - 40) / 10.0), atol=1e-6), h


# ----------------------------------------------- the release's layout at full size (no data)
def _flatten(prefix, value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value
    return out


def test_full_size_release_layout_loads_strictly():
    """MedPLIB-7b-2e's tensor names and shapes (architecture.md §2.8: LLaMA-7B with 2 experts in
    all 32 layers, vocabulary 32267, CLIP ViT-L/14-336 with post_layernorm, SAM-Med2D ViT-B with
    adapters) built on torch's meta device and loaded metadata-only by the C loader, strict: every
    tensor is used, every shape and hyper-parameter is derived as for the real file."""
    with torch.device("meta"):
        full = ref.TinyMedPLIB(vocab_size=32267, hidden=4096, ffn=11008, layers=32, heads=32, clip_width=1024,
                               clip_layers=24, clip_heads=16, clip_mlp=4096, sam_kwargs={})
    tensors = full.state_dict_release()
    specs = [(k, "f32", list(v.shape)) for k, v in tensors.items()]
    assert len(specs) > 1000
    shapes = dict((k, tuple(s)) for k, _, s in specs)
    assert shapes["model.layers.31.mlp.deepspeed_moe.experts.deepspeed_experts.1.down_proj.weight"] == (4096, 11008)
    assert shapes[ref.CLIP_PREFIX + "embeddings.position_embedding.weight"] == (577, 1024)
    assert shapes["model.visual_model.image_encoder.blocks.5.attn.rel_pos_h"] == (31, 64)
    config = full.config_json()
    config["vision_config"] = {}  # CLIP-L's 16 heads follow from width / 64
    info = _C.medplib_check_tensors(specs, _flatten("config", config, {}), strict=True)
    assert info["clip_layers_run"] == 23 and info["image_tokens"] == 576 and info["clip_grid"] == 24
    assert info["hidden_size"] == 4096 and info["n_layers"] == 32 and info["vocab_size"] == 32267
    assert info["n_experts"] == 2 and info["seg_dim"] == 256 and info["sam_image_size"] == 256
    from medground import errors

    with pytest.raises(errors.FormatError, match="model.extra"):
        _C.medplib_check_tensors(specs + [("model.extra", "f32", [3])], _flatten("config", config, {}), strict=True)
    bad = [s if s[0] != "model.layers.7.mlp.deepspeed_moe.gate.wg.weight" else (s[0], "f32", [3, 4096])
           for s in specs]
    with pytest.raises(errors.ShapeError, match="layers.7.mlp.deepspeed_moe.gate.wg.weight"):
        _C.medplib_check_tensors(bad, _flatten("config", config, {}), strict=True)


def test_unmerged_peft_stage_checkpoint(tiny, image_pair, tmp_path):
    """A stage-IV-style checkpoint before merge_and_unload: peft names (base_model.model.*,
    <Linear>.base_layer.weight + lora_A/lora_B) with LoRA on q_proj, v_proj and every expert's
    gate/up/down, alpha / r from config.json; vs the reference with peft's merge applied."""
    import copy
    import json

    from safetensors.torch import save_file

    merged_model = copy.deepcopy(tiny)
    params = dict(merged_model.lm.named_parameters())
    r, alpha = 8, 16.0
    gen = torch.Generator().manual_seed(31)
    tensors = {}
    for key, value in tiny.state_dict_release().items():
        lora_target = any(part in key for part in ("self_attn.q_proj", "self_attn.v_proj", "deepspeed_experts"))
        if key.startswith("model.layers.") and key.endswith(".weight") and lora_target:
            base = key[: -len(".weight")]
            a = torch.randn(r, value.shape[1], generator=gen) / value.shape[1] ** 0.5
            b = torch.randn(value.shape[0], r, generator=gen) / r
            tensors["base_model.model." + base + ".base_layer.weight"] = value
            tensors["base_model.model." + base + ".lora_A.default.weight"] = a.contiguous()
            tensors["base_model.model." + base + ".lora_B.default.weight"] = b.contiguous()
            with torch.no_grad():
                params[key].copy_(ref.lora_merge(value, a, b, alpha, r))
        else:
            tensors["base_model.model." + key if key.startswith("model.layers.") else key] = value
    folder = tmp_path / "stage4"
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    config = tiny.config_json() | {"lora_alpha": alpha, "lora_r": r}
    (folder / "config.json").write_text(json.dumps(config))
    m = _C.medplib_load(str(folder), load_sam=False, strict=True)
    theirs_emb, _, ours_emb, _ = image_pair
    ids = _prompt()
    tokens, ref_logits, _ = merged_model.greedy(ids, image=theirs_emb, max_new_tokens=5, stop=())
    with torch.no_grad():
        unmerged = tiny.lm(inputs_embeds=tiny.embed(ids, theirs_emb, None)).logits[0, -1].numpy()
    cache = _C.medplib_cache_new(m, 700)
    logits, _ = _C.medplib_forward(m, cache, np.array(ids, np.int32), ours_emb)
    assert rel_err(logits[0], ref_logits[0]) <= 1e-4
    assert rel_err(logits[0], unmerged) > 1e-3  # the LoRA updates matter
    assert _C.medplib_generate(m, np.array(ids, np.int32), ours_emb, max_new_tokens=5)[0] == tokens
