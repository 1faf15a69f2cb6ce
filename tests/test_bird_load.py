"""BiRD checkpoint loading: every tensor of the real Qwen-VL-Chat index is
consumed by the C loader at full size (metadata-only), and bad checkpoints
fail with typed errors that name the culprit."""

from __future__ import annotations

import json
import os
import re
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from conftest import shared_path  # noqa: E402
from reference import qwen_vl as ref  # noqa: E402

import medground  # noqa: E402
from medground import _C  # noqa: E402
from medground.models.bird import flatten_config  # noqa: E402

GPTQ_PARTS = ("qweight", "qzeros", "scales", "g_idx")


def real_checkpoint():
    folder = shared_path("checkpoints", "qwen-vl-chat-int4")
    config = json.loads((folder / "config.json").read_text())
    names = list(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"])
    return config, names


def gptq_to_linear(names: list[str], config: dict) -> set[str]:
    """GPTQ tensor groups -> the Linear they quantise: <base>.{qweight, qzeros,
    scales, g_idx} -> <base>.weight; <base>.bias kept only where the fp16 model
    has a bias (c_attn: Qwen's only biased LM linear; no_bias covers the rest)."""
    bases = {n.rsplit(".", 1)[0] for n in names if n.rsplit(".", 1)[1] in GPTQ_PARTS}
    out = set()
    for n in names:
        base, leaf = n.rsplit(".", 1)
        if base in bases:
            if leaf == "qweight":
                out.add(base + ".weight")
            elif leaf == "bias" and base.endswith("attn.c_attn"):
                out.add(n)
        else:
            out.add(n)
    return out


def full_specs(config: dict) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(n, "f32", s) for n, s in ref.hf_tensor_shapes(config).items()]


def test_real_index_names_are_the_architecture():
    config, names = real_checkpoint()
    assert len(names) == 1461
    # The GPTQ listing derived from config.json is exactly the real index.
    assert set(ref.hf_tensor_shapes(config, gptq=True)) == set(names)
    # Mapped to plain Linears, it is exactly the fp16 model's list.
    assert gptq_to_linear(names, config) == set(ref.hf_tensor_shapes(config))


def test_loader_consumes_every_real_tensor_at_full_size():
    """mg_bird_load over a zero-backed full-size table (9.6 B parameters, f32,
    nothing committed): strict mode fails on any tensor the loader does not
    look up, and every shape is checked against config.json."""
    config, names = real_checkpoint()
    plain = dict(config)
    plain.pop("quantization_config")
    specs = full_specs(plain)
    assert len(specs) == len(gptq_to_linear(names, config))
    assert sum(int(np.prod(s)) for _, _, s in specs) == 9_656_935_168  # docs §0, derived independently
    _C.bird_check_tensors(specs, flatten_config(plain), strict=True)


@pytest.mark.parametrize("drop", ["transformer.h.31.mlp.w2.weight", "transformer.visual.attn_pool.pos_embed",
                                  "transformer.visual.transformer.resblocks.47.attn.in_proj.bias", "lm_head.weight",
                                  "transformer.visual.proj"])
def test_full_size_missing_tensor_is_named(drop):
    config, _ = real_checkpoint()
    config = {k: v for k, v in config.items() if k != "quantization_config"}
    specs = [s for s in full_specs(config) if s[0] != drop]
    with pytest.raises(medground.NotFoundError, match=re.escape(drop)):
        _C.bird_check_tensors(specs, flatten_config(config))


def test_full_size_extra_and_reshaped_tensors_are_named():
    config, _ = real_checkpoint()
    config = {k: v for k, v in config.items() if k != "quantization_config"}
    specs = full_specs(config) + [("transformer.h.0.attn.rotary_emb.inv_freq", "f32", (64,))]
    with pytest.raises(medground.FormatError, match=r"transformer\.h\.0\.attn\.rotary_emb\.inv_freq"):
        _C.bird_check_tensors(specs, flatten_config(config), strict=True)
    _C.bird_check_tensors(specs, flatten_config(config), strict=False)  # tolerated when not strict
    bad = [(n, d, (s[1], s[0]) if n == "transformer.h.3.mlp.c_proj.weight" else s) for n, d, s in full_specs(config)]
    with pytest.raises(medground.ShapeError, match=r"transformer\.h\.3\.mlp\.c_proj\.weight.*\[4096, 11008\]"):
        _C.bird_check_tensors(bad, flatten_config(config))


# ------------------------------------------------------- bad tiny checkpoints

CFG = ref.tiny_config()
torch.set_num_threads(1)  # tiny models: threads only add contention


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread (the pool's wake-ups cost more than the work on a loaded machine)."""
    before = medground.get_num_threads()
    medground.set_num_threads(1)
    yield
    medground.set_num_threads(before)


@pytest.fixture(scope="module")
def state():
    return {k: v.numpy() for k, v in ref.random_state_dict(CFG, seed=4).items()}


def load(state, config=CFG, strict=False, drop=(), replace=None):
    replace = replace or {}
    tensors = [(k, replace.get(k, v), "f32") for k, v in state.items() if k not in drop]
    tensors += [(k, v, "f32") for k, v in replace.items() if k not in state]
    return _C.bird_load_arrays(tensors, flatten_config(config), None, strict)


def test_tiny_loads(state):
    info = _C.bird_info(load(state, strict=True))
    assert info["vocab_size"] == 512 and info["image_tokens"] == 256 and info["vit_width"] == 64


@pytest.mark.parametrize("name", ["transformer.h.1.mlp.w2.weight", "transformer.visual.conv1.weight",
                                  "transformer.visual.attn_pool.attn.in_proj_bias", "transformer.ln_f.weight"])
def test_missing_tensor(state, name):
    with pytest.raises(medground.NotFoundError, match=re.escape(name)):
        load(state, drop=[name])


def test_wrong_shapes(state):
    name = "transformer.h.0.attn.c_attn.weight"
    with pytest.raises(medground.ShapeError, match=re.escape(name) + r".*\[768, 256\].*\[256, 768\]"):
        load(state, replace={name: np.ascontiguousarray(state[name].T)})
    name = "transformer.visual.transformer.resblocks.1.attn.in_proj.weight"
    with pytest.raises(medground.ShapeError, match=re.escape(name)):
        load(state, replace={name: state[name][:-1]})
    name = "transformer.visual.positional_embedding"  # not a square grid
    with pytest.raises(medground.ShapeError, match=re.escape(name)):
        load(state, replace={name: state[name][:200]})


def test_config_mismatches(state):
    cfg = json.loads(json.dumps(CFG))
    cfg["vocab_size"] = 600
    with pytest.raises(medground.ShapeError, match=r"transformer\.wte\.weight.*\[600, 256\].*\[512, 256\]"):
        load(state, cfg)
    cfg = json.loads(json.dumps(CFG))
    cfg["visual"]["width"] = 32
    with pytest.raises(medground.ShapeError, match=r"transformer\.visual\.conv1\.weight"):
        load(state, cfg)
    cfg = json.loads(json.dumps(CFG))
    cfg["visual"]["output_dim"] = 128
    with pytest.raises(medground.ShapeError, match=r"transformer\.visual\.proj.*output_dim"):
        load(state, cfg)
    cfg = json.loads(json.dumps(CFG))
    cfg["visual"]["image_start_id"] = 511  # no room for </img> and <imgpad>
    with pytest.raises(medground.FormatError, match="image_start_id"):
        load(state, cfg)
    cfg = json.loads(json.dumps(CFG))
    del cfg["kv_channels"]
    with pytest.raises(medground.NotFoundError, match=r"config\.kv_channels"):
        load(state, cfg)


def test_extra_tensor_strict(state):
    extra = {"transformer.visual.extra.weight": np.zeros((4,), np.float32)}
    with pytest.raises(medground.FormatError, match=r"transformer\.visual\.extra\.weight"):
        load(state, strict=True, replace=extra)
    load(state, strict=False, replace=extra)


def test_bad_runtime_inputs(state):
    handle = load(state)
    with pytest.raises(medground.ShapeError, match=r"\[3, 112, 112\]"):
        _C.bird_encode_image(handle, np.zeros((3, 64, 64), np.float32))
    emb = _C.bird_encode_image(handle, np.zeros((3, 112, 112), np.float32))
    cache = _C.bird_kv_cache_new(handle, 400)
    with pytest.raises(medground.InvalidArgumentError, match="encloses 10 positions"):
        _C.bird_forward(handle, cache, [1, 500] + [502] * 10 + [501], emb)
    with pytest.raises(medground.InvalidArgumentError, match="never closed"):
        _C.bird_forward(handle, cache, [1, 500, 502], emb)
    with pytest.raises(medground.InvalidArgumentError, match="no image_embeddings"):
        _C.bird_forward(handle, cache, [1, 500] + [502] * 256 + [501])
    with pytest.raises(medground.InvalidArgumentError, match="token 9999"):
        _C.bird_forward(handle, cache, [1, 9999])
    with pytest.raises(medground.InvalidArgumentError, match="capacity"):
        _C.bird_forward(handle, cache, [1] * 401)
    session = _C.bird_session_new(handle, 300)
    with pytest.raises(medground.ShapeError, match="image embeddings"):
        _C.bird_generate(handle, session, [1, 500] + [502] * 256 + [501], emb[:10], max_new_tokens=2)
    with pytest.raises(medground.InvalidArgumentError, match="capacity"):
        _C.bird_generate(handle, session, [1] * 290, None, max_new_tokens=20)
    with pytest.raises(medground.InvalidArgumentError, match="top_p"):
        _C.bird_generate(handle, session, [1, 2], None, max_new_tokens=2, do_sample=True, top_p=0.0)
    with pytest.raises(medground.InvalidArgumentError, match="temperature"):
        _C.bird_generate(handle, session, [1, 2], None, max_new_tokens=2, do_sample=True, temperature=0.0)
    # the session survives errors
    assert len(_C.bird_generate(handle, session, [1, 2], None, max_new_tokens=2)) == 2


def test_bad_arrays_rejected(state):
    with pytest.raises(medground.DTypeError, match="transformer.ln_f.weight"):
        _C.bird_load_arrays([("transformer.ln_f.weight", np.zeros(256, np.float64), "f32")], {})
    with pytest.raises(medground.InvalidArgumentError, match="tuples"):
        _C.bird_load_arrays([("x",)], {})
    with pytest.raises(medground.NotFoundError):
        load({k: v for k, v in state.items() if not k.startswith("transformer.visual")})
