"""BiRD checkpoint formats beyond HF float: GPTQ int4 (Qwen-VL-Chat-Int4) and
PaddleMIX (.pdparams). Each is checked against a dequantisation / layout
conversion written here, then end to end against the PyTorch reference."""

from __future__ import annotations

import json
import os
import pickle
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from reference import qwen_vl as ref  # noqa: E402

import medground  # noqa: E402
from medground import _C  # noqa: E402
from medground.models.bird import open_model  # noqa: E402

CFG = ref.tiny_config()
torch.set_num_threads(1)  # tiny models: threads only add contention


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread (the pool's wake-ups cost more than the work on a loaded machine)."""
    before = medground.get_num_threads()
    medground.set_num_threads(1)
    yield
    medground.set_num_threads(before)
LLM_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.w1", "mlp.w2", "mlp.c_proj")
GROUP = 128


def rel_err(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def prompt() -> list[int]:
    return [287] + list(b"user\nPicture 1: ") + [500] + [502] * 256 + [501] + list(b"\nWhere?") + [288, 287]


def pixels() -> np.ndarray:
    return torch.randn(3, 112, 112, generator=torch.Generator().manual_seed(11)).numpy()


# ------------------------------------------------------------------ GPTQ


def pack_gptq(rng, weight: np.ndarray, shuffled: bool):
    """AutoGPTQ's 4-bit layout for a torch-layout weight [out, in] (written
    here, independent of the reference's packer): g_idx the group of each input
    row (shuffled rows = desc_act checkpoints), per (group, output) an f16 scale
    and an integer zero z in 7..9 stored as z - 1, q = clip(round(w / s) + z,
    0, 15). qweight int32 [in/8, out]: row i's value sits in word i // 8 at bits
    4 (i % 8); qzeros int32 [groups, out/8] likewise along the outputs."""
    out_f, in_f = weight.shape
    groups = in_f // GROUP
    g_idx = np.arange(in_f, dtype=np.int32) // GROUP
    if shuffled:
        g_idx = rng.permutation(g_idx).astype(np.int32)
    w = weight.T.astype(np.float64)  # [in, out]
    amax = np.stack([np.abs(w[g_idx == g]).max(axis=0) for g in range(groups)])  # [groups, out]
    scales = np.maximum(amax / 7.0, 1e-6).astype(np.float16)
    zero = rng.integers(7, 10, size=(groups, out_f), dtype=np.int64)
    q = np.clip(np.round(w / scales.astype(np.float64)[g_idx]) + zero[g_idx], 0, 15).astype(np.uint32)
    qweight = np.zeros((in_f // 8, out_f), np.uint32)
    for j in range(8):
        qweight |= q[j::8] << np.uint32(4 * j)
    qzeros = np.zeros((groups, out_f // 8), np.uint32)
    stored = (zero - 1).astype(np.uint32)
    for j in range(8):
        qzeros |= stored[:, j::8] << np.uint32(4 * j)
    return {"qweight": qweight.view(np.int32), "qzeros": qzeros.view(np.int32), "scales": scales, "g_idx": g_idx}


def dequant_gptq(t) -> np.ndarray:
    """W[o, i] = scales[g, o] * (q[i, o] - (stored_zero[g, o] + 1)), g = g_idx[i]
    (AutoGPTQ v1 zero offset), unpacked bit by bit."""
    qweight, qzeros = t["qweight"].view(np.uint32), t["qzeros"].view(np.uint32)
    in_f, out_f = qweight.shape[0] * 8, qweight.shape[1]
    q = np.empty((in_f, out_f), np.float64)
    for i in range(in_f):
        q[i] = (qweight[i // 8] >> np.uint32(4 * (i % 8))) & 0xF
    z = np.empty((qzeros.shape[0], out_f), np.float64)
    for o in range(out_f):
        z[:, o] = ((qzeros[:, o // 8] >> np.uint32(4 * (o % 8))) & 0xF) + 1
    g = t["g_idx"].astype(np.int64)
    return (t["scales"].astype(np.float64)[g] * (q - z[g])).T.astype(np.float32)


def test_own_packer_agrees_with_reference_packer():
    w = torch.randn(64, 256) * 0.1
    tensors, dequant = ref.gptq_pack(w, GROUP)
    mine = dequant_gptq({k: v.numpy() for k, v in tensors.items()})
    assert np.array_equal(mine, dequant.numpy())


@pytest.fixture(scope="module")
def gptq(tmp_path_factory):
    """A tiny Qwen-VL-Chat-Int4: LLM block linears in GPTQ (c_attn with its
    real f16 bias, the others with GPTQ's zero f16 bias placeholder, as in the
    real index), everything else f16 like the real file."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(8)
    state = ref.random_state_dict(CFG, seed=1)
    tensors, deq = {}, {}
    for name, value in state.items():
        tensors[name] = value.numpy().astype(np.float16)
        deq[name] = torch.from_numpy(tensors[name].astype(np.float32))
    for n in range(CFG["num_hidden_layers"]):
        for part in LLM_LINEARS:
            base = f"transformer.h.{n}.{part}"
            out_f = state[base + ".weight"].shape[0]
            packed = pack_gptq(rng, state[base + ".weight"].numpy(), shuffled=(n == 1))
            del tensors[base + ".weight"]
            tensors.update({f"{base}.{k}": v for k, v in packed.items()})
            # stored f16 after dequantisation (GPTQ models are f16 models)
            deq[base + ".weight"] = torch.from_numpy(dequant_gptq(packed)).half().float()
            if part != "attn.c_attn":
                tensors[base + ".bias"] = np.zeros(out_f, np.float16)
    folder = tmp_path_factory.mktemp("int4")
    save_file(tensors, str(folder / "model.safetensors"))
    cfg = dict(CFG, quantization_config={"bits": 4, "group_size": GROUP, "sym": True, "desc_act": True,
                                         "quant_method": "gptq"})
    (folder / "config.json").write_text(json.dumps(cfg))
    names = set(tensors)
    return folder, deq, names


def test_gptq_names_are_the_real_layout(gptq):
    folder, _, names = gptq
    assert names == set(ref.hf_tensor_shapes(CFG | {"quantization_config": {"group_size": GROUP}}, gptq=True))


def test_gptq_checkpoint_matches_dequantised_reference(gptq):
    folder, deq, _ = gptq
    model = ref.load_model(CFG, deq)
    ids = prompt()
    r_feat, r_emb = model.encode_image(torch.from_numpy(pixels()))
    r_logits, r_hidden, _ = model.forward(ids, None, r_emb)
    r_tokens, r_steps = model.greedy(ids, r_emb, max_new_tokens=20)
    assert len(set(r_tokens)) >= 5

    handle = open_model(folder, strict=True)  # dequantised to f32 at load
    emb = _C.bird_encode_image(handle, pixels())
    assert rel_err(emb, r_emb) <= 1e-4
    cache = _C.bird_kv_cache_new(handle, 400)
    logits, hidden = _C.bird_forward(handle, cache, ids, emb, all_logits=True, layer_hidden=True)
    assert rel_err(hidden, r_hidden) <= 1e-4
    assert rel_err(logits, r_logits) <= 1e-4
    steps = [logits[-1]]
    for token in r_tokens[:-1]:
        steps.append(_C.bird_forward(handle, cache, [token])[0][0])
    assert rel_err(np.stack(steps), r_steps) <= 1e-4
    assert _C.bird_generate(handle, _C.bird_session_new(handle, 400), ids, emb, max_new_tokens=20) == r_tokens


def test_gptq_bad_tensors_are_named(gptq, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder, _, _ = gptq
    tensors = load_file(str(folder / "model.safetensors"))
    cfg = (folder / "config.json").read_text()

    def attempt(changed, name):
        (tmp_path / "model.safetensors").unlink(missing_ok=True)
        save_file(changed, str(tmp_path / "model.safetensors"))
        (tmp_path / "config.json").write_text(cfg)
        with pytest.raises(medground.MedgroundError, match=name.replace(".", r"\.")):
            open_model(tmp_path)

    base = "transformer.h.0.mlp.w1"
    attempt({k: v for k, v in tensors.items() if k != base + ".qzeros"}, base + ".qzeros")
    attempt({k: v for k, v in tensors.items() if k != base + ".g_idx"}, base + ".g_idx")
    attempt(dict(tensors, **{base + ".qweight": tensors[base + ".qweight"][:-1].copy()}), base + ".qweight")
    attempt(dict(tensors, **{base + ".bias": np.ones_like(tensors[base + ".bias"])}), base + ".bias")  # w1 has none
    bad = tensors[base + ".g_idx"].copy()
    bad[5] = 99
    attempt(dict(tensors, **{base + ".g_idx": bad}), base + ".g_idx")
    attempt(dict(tensors, **{base + ".qweight": tensors[base + ".qweight"].astype(np.float32)}), base + ".qweight")


# ---------------------------------------------------------------- Paddle


def to_paddle(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """HF names/layout -> PaddleMIX's (docs §1.5.3): visual.vit.* for the ViT,
    visual.{attn_pool, ln_post, proj}, transformer.llm.* for the LM; every
    Linear weight (incl. the resampler's in_proj_weight and lm_head) stored
    [in, out]; plain parameters (position tables, queries, proj) unchanged."""
    out = {}
    for name, value in state.items():
        array = value.numpy()
        if name.startswith("transformer.visual."):
            rest = name[len("transformer.visual."):]
            vit = rest.startswith(("conv1", "positional_embedding", "ln_pre", "transformer."))
            new = ("visual.vit." if vit else "visual.") + rest
        elif name.startswith("transformer."):
            new = "transformer.llm." + name[len("transformer."):]
        else:
            new = name
        linear = array.ndim == 2 and (name.endswith(".weight") or name.endswith("in_proj_weight")) and \
            name != "transformer.wte.weight"
        out[new] = np.ascontiguousarray(array.T) if linear else array
    return out


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_paddle_checkpoint_matches_reference(tmp_path, dtype):
    state = ref.random_state_dict(CFG, seed=3)
    paddle = to_paddle(state)
    tol = 1e-4
    if dtype == "bf16":  # Paddle's bf16 on disk: uint16 bit patterns of the bfloat16 values
        state = {k: v.bfloat16().float() for k, v in state.items()}
        paddle = {k: (np.ascontiguousarray(v).view(np.uint32) >> 16).astype(np.uint16) for k, v in
                  to_paddle(state).items()}
        tol = 3e-2  # bf16 activations in the C GEMMs (see test_bird.py TOL)
    assert paddle["visual.attn_pool.attn.in_proj_weight"].shape == (256, 768)
    assert paddle["transformer.llm.h.0.attn.c_attn.weight"].shape == (256, 768)  # [in, out]
    assert paddle["lm_head.weight"].shape == (256, 512)
    names = list(paddle)
    half = len(names) // 2
    shards = {"model_state-00001-of-00002.pdparams": names[:half],
              "model_state-00002-of-00002.pdparams": names[half:]}
    for file, part in shards.items():
        with open(tmp_path / file, "wb") as f:
            pickle.dump({k: paddle[k] for k in part}, f, protocol=4)
    (tmp_path / "model_state.pdparams.index.json").write_text(json.dumps(
        {"weight_map": {k: f for f, part in shards.items() for k in part}}))
    (tmp_path / "config.json").write_text(json.dumps(CFG))

    model = ref.load_model(CFG, state)
    ids = prompt()
    _, r_emb = model.encode_image(torch.from_numpy(pixels()))
    r_logits = model.forward(ids, None, r_emb)[0]
    r_tokens, _ = model.greedy(ids, r_emb, max_new_tokens=12)
    handle = open_model(tmp_path, strict=True)
    emb = _C.bird_encode_image(handle, pixels())
    assert rel_err(emb, r_emb) <= tol
    logits, _ = _C.bird_forward(handle, _C.bird_kv_cache_new(handle, 400), ids, emb, all_logits=True)
    assert rel_err(logits, r_logits) <= tol
    if dtype == "f32":
        assert _C.bird_generate(handle, _C.bird_session_new(handle, 400), ids, emb, max_new_tokens=12) == r_tokens


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "model_state.pdparams", "wb") as f:
        pickle.dump({"lm_head.weight": Evil()}, f)
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    with pytest.raises(medground.UnsafeError):
        open_model(tmp_path)


def test_gptq_checkpoint_through_gguf(gptq, tmp_path):
    """medground convert keeps the GPTQ integer tensors (and f16 scales) as they
    are, so the GGUF loads to the same model as the safetensors folder."""
    folder, deq, _ = gptq
    out = tmp_path / "int4.gguf"
    medground.convert(folder, out, type="f16", progress=False)
    ids = prompt()
    direct = open_model(folder, strict=True)
    via = open_model(out, strict=True)
    emb = _C.bird_encode_image(direct, pixels())
    a = _C.bird_forward(direct, _C.bird_kv_cache_new(direct, 400), ids, emb, all_logits=True)[0]
    b = _C.bird_forward(via, _C.bird_kv_cache_new(via, 400), ids, _C.bird_encode_image(via, pixels()),
                        all_logits=True)[0]
    assert rel_err(b, a) <= 1e-6  # the f16 file holds the same values; GPTQ tensors copied verbatim
