"""MedPLIB speed and memory: medground (f32, bf16) vs PyTorch eager f32 on the same random
weights, in the same run, plus the MoE's cost against a dense model of the same active size.

Measured per variant, each in its own process (so peak RSS is that variant's):
segment() latency end to end (CLIP-336 + projector, SAM-Med2D encoder, greedy generation of
DECODE_STEPS tokens with <SEG> steered to appear, text_hidden_fcs, mask decoder, post-processing)
and its parts (image encode, prefill tokens/s, decode tokens/s), peak RSS.
MoE vs dense (medground only): the same decoder shape with 2 experts (top-1) and with one
dense FFN — prefill and decode time; the target is MoE <= 1.1x dense.

Default: a reduced model (LLaMA 1024 wide x 4 layers, FFN 2752, vocabulary 32267; CLIP 256
wide x 6 layers at the real 336 px / 14 px geometry; SAM-Med2D 384 wide x 4 blocks at 256 px)
that runs in a few minutes on 2 cores.

`--full`: the real MedPLIB-7b-2e shape (LLaMA-7B with 2 experts per layer and a router,
CLIP ViT-L/14-336, mlp2x_gelu projector, region adapter, text_hidden_fcs, SAM-Med2D ViT-B
with adapters; 11.69 B parameters), written straight into GGUF files tensor by tensor from
random values rounded to bf16 (one tensor in memory at a time): exactly the names, types,
order and metadata `medground convert` gives a one-file bf16 safetensors release (config
flattened as medplib.*, tokenizer.model and added_tokens.json embedded), plus a dense twin
(one FFN per layer, no router: the MoE's active size). Per weight type (`--types`, default
q4_0 q8_0; bf16 runs the dense twin only unless `--bf16-moe`), each variant in its own
process (under `--lock FILE` with flock): load, CLIP and SAM-Med2D encode, prefill and decode
of the segment prompt (MoE and dense; prefill also as a fraction of oneDNN's GEMM peak of the
dtype its linears run in, probed just before and after it; decode as a fraction of the bandwidth
roofline, benchmarks/machine.py re-probed before each variant; each variant's file read into the page cache
first, the other's dropped from it), then lm_head[<SEG>] is set in the file
to 2x the row of the first greedy token and segment() is timed end to end (best of 2).
PyTorch eager runs only from a bf16 file (parameters are views of its memory map): the MoE's
weights are 46.7 GB in f32 and 23.4 GB in bf16, more than a 24 GiB machine holds next to
anything else (and a prefill touches both experts, so a mapped file would page every pass),
so at full size it runs the dense twin; the reduced default run is the MoE comparison.
Needs ~21 GB of disk at once (q8_0) and ~1 h on 2 cores. `--gguf`: the same procedure at
the reduced size (~2 min).

Standalone: `python benchmarks/bench_medplib.py [--full | --gguf] [--threads N] [--lock FILE]
[--types q4_0 q8_0] [--work DIR]`; needs ../shared/data/tokenizers/llama.tokenizer.model.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

import machine  # noqa: E402
from machine import peak_rss_gb  # noqa: E402

DECODE_STEPS = 16
# (M, K, N) shapes of oneDNN's peak the prefill is set against (dtype: machine.gemm_dtype of the weights):
# the 626-row prefill's MLP and attention projections.
PEAK_SHAPES = ((626, 4096, 11008), (626, 4096, 4096))
SEG = 32000
QUESTION = "Please segment the liver in this image."


def sizes(full: bool) -> dict:
    if full:
        return dict(hidden=4096, ffn=11008, layers=32, heads=32, clip_width=1024, clip_layers=24, clip_heads=16,
                    clip_mlp=4096, sam=dict(embed_dim=768, depth=12, num_heads=12))
    return dict(hidden=1024, ffn=2752, layers=4, heads=8, clip_width=256, clip_layers=6, clip_heads=4,
                clip_mlp=1024, sam=dict(embed_dim=384, depth=4, num_heads=6, global_attn_indexes=(1, 3)))


def build(cfg: dict, n_experts: int, seed: int = 0):
    from reference import medplib as ref

    return ref.TinyMedPLIB(hidden=cfg["hidden"], ffn=cfg["ffn"], layers=cfg["layers"], heads=cfg["heads"],
                           clip_width=cfg["clip_width"], clip_layers=cfg["clip_layers"],
                           clip_heads=cfg["clip_heads"], clip_mlp=cfg["clip_mlp"], n_experts=n_experts,
                           sam_kwargs=cfg["sam"], seed=seed)


def test_image():
    import numpy as np

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    image[60:180, 100:220] = 180
    return image


def tokenizer():
    from medground.tokenizer import Tokenizer

    return Tokenizer.from_pretrained(REPO.parent / "shared" / "data" / "tokenizers" / "llama.tokenizer.model",
                                     medplib=True)


def steer_seg(model, ids, image) -> None:
    """lm_head[<SEG>] = 2 lm_head[first greedy token], so <SEG> is generated first."""
    import torch

    from medground.image import preprocess_clip336

    pixels, _ = preprocess_clip336(image)
    emb, _ = model.encode_image(torch.from_numpy(pixels))
    tokens, _, _ = model.greedy(ids, image=emb, max_new_tokens=1)
    with torch.no_grad():
        model.lm.lm_head.weight[SEG] = 2.0 * model.lm.lm_head.weight[tokens[0]]


# ------------------------------------------------------------------ children
def run_medground(path: str, dtype: str, threads: int) -> dict:
    import numpy as np

    import medground
    from medground import _C
    from medground.models.medplib import MedPLIB

    medground.set_num_threads(threads)
    image = test_image()
    t0 = time.perf_counter()
    model = MedPLIB(path, tokenizer(), dtype=None if dtype == "file" else dtype)
    load_s = time.perf_counter() - t0
    model.segment(image, "liver", max_new_tokens=2)  # warm-up (arenas, thread pool)
    t0 = time.perf_counter()
    mask = model.segment(image, "liver", max_new_tokens=DECODE_STEPS)
    segment_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state = model.encode_image(image)
    encode_s = time.perf_counter() - t0
    ids = np.asarray(model.prompt_ids(QUESTION), np.int32)
    cache = _C.medplib_cache_new(model._handle, 1024)
    t0 = time.perf_counter()
    logits, _ = _C.medplib_forward(model._handle, cache, ids, state.embeddings)
    prefill_s = time.perf_counter() - t0
    token = np.asarray([int(np.argmax(logits[0]))], np.int32)
    t0 = time.perf_counter()
    for _ in range(DECODE_STEPS):
        logits, _ = _C.medplib_forward(model._handle, cache, token)
        token[0] = int(np.argmax(logits[0]))
    decode_s = time.perf_counter() - t0
    n_prefill = len(ids) - 1 + model.info["image_tokens"]
    return dict(load_s=load_s, segment_s=segment_s, found=mask.found, encode_s=encode_s,
                prefill_tok_s=n_prefill / prefill_s, decode_tok_s=DECODE_STEPS / decode_s,
                **machine.memory_record(path))


def run_torch(cfg: dict, threads: int) -> dict:
    import numpy as np
    import torch

    from medground.image import preprocess_clip336, preprocess_sam
    from medground.models.medplib import MedPLIB  # prompt building only
    from reference import medplib as ref

    torch.set_num_threads(threads)
    image = test_image()
    t0 = time.perf_counter()
    model = build(cfg, 2)
    ids = MedPLIB.prompt_ids(_PromptOnly(tokenizer()), QUESTION)
    steer_seg(model, ids, image)
    load_s = time.perf_counter() - t0

    def segment(steps: int):
        pixels, _ = preprocess_clip336(image)
        emb, _ = model.encode_image(torch.from_numpy(pixels))
        tokens, _, hidden = model.greedy(ids, image=emb, max_new_tokens=steps)
        k = tokens.index(SEG) if SEG in tokens else len(tokens) - 1
        prompt = model.seg_prompt(hidden[k])
        sam_pixels, g = preprocess_sam(image)
        low_res, _ = model.decode_mask(torch.from_numpy(sam_pixels), prompt)
        probs = torch.sigmoid(ref.postprocess_correct(low_res, (g.resized_height, g.resized_width), image.shape[:2]))
        return (probs > 0.1).numpy().astype(np.uint8), SEG in tokens

    segment(2)
    t0 = time.perf_counter()
    _, found = segment(DECODE_STEPS)
    segment_s = time.perf_counter() - t0
    pixels, _ = preprocess_clip336(image)
    t0 = time.perf_counter()
    emb, _ = model.encode_image(torch.from_numpy(pixels))
    encode_s = time.perf_counter() - t0
    with torch.no_grad():
        embeds = model.embed(ids, emb, None)
        t0 = time.perf_counter()
        out = model.lm(inputs_embeds=embeds, use_cache=True)
        prefill_s = time.perf_counter() - t0
        cache = out.past_key_values
        token = int(torch.argmax(out.logits[0, -1]))
        t0 = time.perf_counter()
        for _ in range(DECODE_STEPS):
            step = model.lm.model.embed_tokens.weight[token][None, None]
            out = model.lm(inputs_embeds=step, cache=cache, use_cache=True)
            cache = out.past_key_values
            token = int(torch.argmax(out.logits[0, -1]))
        decode_s = time.perf_counter() - t0
    return dict(load_s=load_s, segment_s=segment_s, found=found, encode_s=encode_s,
                prefill_tok_s=embeds.shape[1] / prefill_s, decode_tok_s=DECODE_STEPS / decode_s,
                peak_rss_gb=peak_rss_gb())


class _PromptOnly:
    """Enough of MedPLIB for prompt_ids() without a model."""

    def __init__(self, tok):
        from medground.models.medplib import SYSTEM_PROMPTS

        self.tokenizer = tok
        self.system = SYSTEM_PROMPTS["train"]
        self.region_ids = (tok.token_to_id("<region>"), tok.token_to_id("</region>"))

    def prompt_text(self, question):
        from medground.models.medplib import MedPLIB

        return MedPLIB.prompt_text(self, question)


def run_moe_vs_dense(moe_path: str, dense_path: str, threads: int, repeats: int = 5) -> dict:
    import numpy as np

    import medground
    from medground import _C

    medground.set_num_threads(threads)
    models = {name: _C.medplib_load(path, load_sam=False) for name, path in (("moe", moe_path), ("dense", dense_path))}
    info = _C.medplib_info(models["moe"])
    image = np.random.default_rng(1).standard_normal((info["image_tokens"], info["hidden_size"])).astype(np.float32)
    ids = np.asarray([1] + list(range(400, 440)) + [32265, -200, 32266] + list(range(500, 520)), np.int32)
    out = {name: dict(prefill_s=1e9, decode_s=1e9) for name in models}
    for _ in range(repeats):  # interleaved, best of `repeats`: a shared machine's noise hits both alike
        for name, m in models.items():
            cache = _C.medplib_cache_new(m, 1024)
            t0 = time.perf_counter()
            _C.medplib_forward(m, cache, ids, image)
            out[name]["prefill_s"] = min(out[name]["prefill_s"], time.perf_counter() - t0)
            t0 = time.perf_counter()
            for t in range(DECODE_STEPS):
                _C.medplib_forward(m, cache, np.asarray([600 + t], np.int32))
            out[name]["decode_s"] = min(out[name]["decode_s"], time.perf_counter() - t0)
    out["prefill_ratio"] = out["moe"]["prefill_s"] / out["dense"]["prefill_s"]
    out["decode_ratio"] = out["moe"]["decode_s"] / out["dense"]["decode_s"]
    return out


# ------------------------------------------------------------- full size (GGUF)
ADDED_TOKENS = (["<SEG>", "<ref>", "</ref>", "<region>", "</region>", "<sr>", "</sr>", "<mask>", "</mask>"] +
                [f"<gen_{i}>" for i in range(1, 257)] + ["<im_start>", "<im_end>"])  # ids 32000.. (§2.10)
BYTES_PER_ELEMENT = {"f32": 4.0, "bf16": 2.0, "f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


def release_layout(cfg: dict, n_experts: int) -> tuple[dict, dict]:
    """(tensor name -> shape, config.json) of the release at these sizes: the reference's
    state_dict_release() names, built on the meta device (nothing allocated)."""
    import torch

    with torch.device("meta"):
        model = build(cfg, n_experts)
    shapes = {name: tuple(int(d) for d in t.shape) for name, t in model.state_dict_release().items()}
    config = model.config_json()
    # Fields of the release config beyond what the loader reads (architecture.md §2.1, derived).
    config.update(mm_vision_tower="openai/clip-vit-large-patch14-336", image_aspect_ratio="pad",
                  out_dim=int(shapes["model.text_hidden_fcs.0.2.weight"][0]), train_mask_decoder=True,
                  max_sample_point=512, region_geo_sampler=False, hidden_act="silu", tie_word_embeddings=False,
                  torch_dtype="bfloat16", transformers_version="4.31.0")
    if n_experts:
        config["moe"].update(moe_mode="dense", moe_layers_idx=list(range(cfg["layers"])), use_residual=False,
                             ep_size=1, router_aux_loss_coef=0.0)
    else:  # the dense twin: a LLaVA-style LLaMA with one FFN per layer
        config.update(architectures=["LlavaLlamaForCausalLM"], model_type="llava_llama")
        config["moe"] = {"moe_enable": False}
    return shapes, config


def random_tensor(rng, name: str, shape: tuple) -> "np.ndarray":
    """Random values scaled as the reference's init (1/sqrt(fan-in), norms near 1), rounded to
    bf16 (the release's dtype) so every weight type is made from the same bf16 weights."""
    import math

    import numpy as np

    a = rng.standard_normal(shape, dtype=np.float32)
    if len(shape) >= 2:
        a *= 1.0 / math.sqrt(math.prod(shape[1:]))
        if name == "model.embed_tokens.weight":
            a *= 0.5 * math.sqrt(shape[1])
        elif name == "lm_head.weight":
            a *= 3.0
    elif name.endswith("weight") and ("norm" in name or "layrnorm" in name):
        a *= 0.1
        a += 1.0
    else:
        a *= 0.1
    bits = a.view(np.uint32)  # round to nearest even bf16, in place
    bits += 0x7FFF + ((bits >> 16) & 1)
    bits &= 0xFFFF0000
    return a


def write_release_gguf(path: str, cfg: dict, n_experts: int, dtype: str, seed: int = 0) -> dict:
    """What `medground convert <release folder> out.gguf --type dtype` writes for a bf16
    safetensors release with these shapes: the same metadata (in convert's order), tensor
    names and per-tensor types (convert.choose_type), with random values, streamed."""
    import math

    import numpy as np

    from medground import _C
    from medground.checkpoint.convert import _flatten, _write_metadata, choose_type
    from medground.checkpoint.sources import TensorInfo

    start = time.perf_counter()
    shapes, config = release_layout(cfg, n_experts)
    shapes = dict(sorted(shapes.items()))  # convert's order for a one-file bf16 safetensors release
    metadata = {"general.architecture": ("string", "medplib"),
                "general.name": ("string", "MedPLIB-7b-2e" if n_experts else "MedPLIB-7b-dense"),
                "medground.convert.type": ("string", dtype),
                "medground.convert.source_format": ("string", "safetensors")}
    _flatten("medplib", config, metadata)
    spm = (REPO.parent / "shared" / "data" / "tokenizers" / "llama.tokenizer.model").read_bytes()
    metadata["medground.tokenizer.sentencepiece_model"] = ("array[u8]", np.frombuffer(spm, dtype=np.uint8))
    added = {token: 32000 + i for i, token in enumerate(ADDED_TOKENS)}
    metadata["medground.tokenizer.added_tokens_json"] = ("string", json.dumps(added).encode())
    rng = np.random.default_rng(seed)
    partial = path + ".partial"
    writer = _C.GGUFWriter(partial)
    types: dict[str, int] = {}
    try:
        _write_metadata(writer, metadata)
        for name, shape in shapes.items():
            stored = choose_type(TensorInfo(name=name, dtype="bf16", shape=shape, nbytes=2 * math.prod(shape)), dtype)
            types[stored] = types.get(stored, 0) + 1
            writer.add_tensor_info(name, stored, list(shape))
        for name, shape in shapes.items():
            writer.write_tensor(name, random_tensor(rng, name, shape))
        writer.finish()
    finally:
        writer.close()
    os.replace(partial, path)
    return dict(write_s=time.perf_counter() - start, bytes=os.path.getsize(path), types=types,
                params=sum(math.prod(s) for s in shapes.values()))


def steer_seg_gguf(path: str, token: int) -> None:
    """lm_head[<SEG>] := 2 lm_head[token] inside the file (each q4_0/q8_0 block's f16 scale
    doubled, or the bf16/f16/f32 row doubled: exact), so greedy decoding of the prompt whose
    first greedy token was `token` now starts with <SEG>, as steer_seg() does for the reduced model."""
    import numpy as np
    from gguf import GGUFReader

    reader = GGUFReader(path)
    info = next(t for t in reader.tensors if t.name == "lm_head.weight")
    kind, rows, offset, n_bytes = info.tensor_type.name, int(info.shape[-1]), int(info.data_offset), int(info.n_bytes)
    del reader, info
    row_bytes = n_bytes // rows
    with open(path, "r+b") as f:
        f.seek(offset + token * row_bytes)
        row = np.frombuffer(f.read(row_bytes), dtype=np.uint8).copy()
        if kind in ("Q4_0", "Q8_0"):
            blocks = row.reshape(-1, 18 if kind == "Q4_0" else 34)
            scale = blocks[:, :2].copy().view(np.float16)
            blocks[:, :2] = (scale * np.float16(2)).view(np.uint8)
        elif kind == "BF16":
            values = (row.view(np.uint16).astype(np.uint32) << 16).view(np.float32) * np.float32(2)
            row = (values.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        elif kind in ("F16", "F32"):
            values = row.view(np.float16 if kind == "F16" else np.float32)
            row = (values * values.dtype.type(2)).view(np.uint8)
        else:
            raise ValueError(f"{path}: lm_head.weight is {kind}")
        f.seek(offset + SEG * row_bytes)
        f.write(row.tobytes())


def _short_forward(model) -> None:
    """Warm-up: the system prompt alone through the LLM (pages in every LLM weight, starts the
    thread pool) without a full 600-token prefill."""
    import numpy as np

    from medground import _C

    ids = model.prompt_ids(QUESTION)
    head = np.asarray(ids[: ids.index(-200)], np.int32)
    _C.medplib_forward(model._handle, _C.medplib_cache_new(model._handle, 256), head)


def run_gguf_parts(path: str, threads: int, gemm: str | None = None) -> dict:
    """Load, CLIP / SAM-Med2D encode (cold and warm), prefill of the segment prompt, decode. With gemm
    (a dtype), oneDNN's GEMM peak of that dtype is probed just before and after the prefill."""
    import numpy as np

    import medground
    from medground import _C
    from medground.image import preprocess_clip336, preprocess_sam
    from medground.models.medplib import MedPLIB

    medground.set_num_threads(threads)
    image = test_image()
    t0 = time.perf_counter()
    model = MedPLIB(path)  # tokenizer from the GGUF, as for a `medground convert` output
    load_s = time.perf_counter() - t0
    h = model._handle
    pixels, _ = preprocess_clip336(image, model.info["clip_image_size"])
    sam_pixels, _ = preprocess_sam(image, model.info["sam_image_size"])
    out = dict(load_s=load_s)
    for key, fn in (("clip", lambda: _C.medplib_encode_image(h, pixels)),
                    ("sam", lambda: _C.medplib_sam_encode(h, sam_pixels))):
        for run in ("cold", "warm"):
            t0 = time.perf_counter()
            result = fn()
            out[f"{key}_{run}_s"] = time.perf_counter() - t0
        if key == "clip":
            emb = result[0]
    _short_forward(model)
    ids = np.asarray(model.prompt_ids(QUESTION), np.int32)
    n_prefill = len(ids) - 1 + model.info["image_tokens"]
    cache = _C.medplib_cache_new(h, n_prefill + DECODE_STEPS + 8)

    def peak() -> float:
        return machine.gemm_peaks(PEAK_SHAPES, threads, dtypes=(gemm,))[gemm]

    peaks = [peak()] if gemm else []
    t0 = time.perf_counter()
    logits, _ = _C.medplib_forward(h, cache, ids, emb)
    prefill_s = time.perf_counter() - t0
    if gemm:
        peaks.append(peak())
        out.update(gemm_dtype=gemm, prefill_bracket_peaks=peaks)
    first = int(np.argmax(logits[0]))
    token = np.asarray([first], np.int32)
    t0 = time.perf_counter()
    for _ in range(DECODE_STEPS):
        logits, _ = _C.medplib_forward(h, cache, token)
        token[0] = int(np.argmax(logits[0]))
    decode_s = time.perf_counter() - t0
    out.update(n_prefill=n_prefill, prefill_s=prefill_s, prefill_tok_s=n_prefill / prefill_s,
               decode_s=decode_s, decode_tok_s=DECODE_STEPS / decode_s, first_token=first,
               finite=bool(np.isfinite(logits).all()), **machine.memory_record(path))
    return out


def run_gguf_segment(path: str, threads: int) -> dict:
    """segment() end to end (CLIP, SAM-Med2D, prefill, DECODE_STEPS greedy steps, mask)."""
    import medground
    from medground import _C
    from medground.image import preprocess_sam
    from medground.models.medplib import MedPLIB

    medground.set_num_threads(threads)
    image = test_image()
    t0 = time.perf_counter()
    model = MedPLIB(path)
    load_s = time.perf_counter() - t0
    model.encode_image(image)  # warm-up of every part but the 600-token prefill
    _C.medplib_sam_encode(model._handle, preprocess_sam(image, model.info["sam_image_size"])[0])
    _short_forward(model)
    runs = []
    for _ in range(2):  # best of 2: a shared machine's noise
        t0 = time.perf_counter()
        mask = model.segment(image, "liver", max_new_tokens=DECODE_STEPS)
        runs.append(time.perf_counter() - t0)
    return dict(load_s=load_s, segment_s=min(runs), segment_runs_s=runs, found=mask.found, text=mask.text[:80],
                mask_pixels=int(mask.array.sum()), **machine.memory_record(path))


def torch_from_gguf(path: str, cfg: dict, n_experts: int):
    """The PyTorch reference model (tests/reference/medplib.py) in bf16 whose parameters are
    views of a bf16 GGUF's memory map (file-backed pages, no copy; 1-D f32 tensors cast)."""
    import numpy as np
    import torch
    from gguf import GGUFReader
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from reference import sam_med2d as sam_ref

    with torch.device("meta"):
        model = build(cfg, n_experts)
    reader = GGUFReader(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    parts = {"lm": {}, "clip": {}, "mm_projector": {}, "region_fea_adapter": {}, "text_hidden_fcs": {}, "sam": {}}
    prefixes = (("model.vision_tower.vision_tower.", "clip"), ("model.mm_projector.", "mm_projector"),
                ("model.region_fea_adapter.", "region_fea_adapter"), ("model.text_hidden_fcs.", "text_hidden_fcs"),
                ("model.visual_model.", "sam"))
    for t in reader.tensors:
        shape = tuple(reversed([int(d) for d in t.shape]))
        raw = mm[int(t.data_offset): int(t.data_offset) + int(t.n_bytes)]
        kind = t.tensor_type.name
        if kind == "BF16":
            value = torch.from_numpy(raw.view(np.uint16).reshape(shape)).view(torch.bfloat16)
        elif kind in ("F32", "F16"):
            value = torch.from_numpy(raw.view(np.float32 if kind == "F32" else np.float16).reshape(shape))
            value = value.to(torch.bfloat16)
        else:
            raise ValueError(f"{path}: tensor {t.name} is {kind}; PyTorch runs the bf16 file")
        part, key = "lm", t.name
        for prefix, name in prefixes:
            if t.name.startswith(prefix):
                part, key = name, t.name[len(prefix):]
        parts[part][key] = value
    for name, state in parts.items():
        module = getattr(model, name)
        own = set(module.state_dict())
        if name == "clip" and not any(k.startswith("vision_model.") for k in own):  # see state_dict_release()
            state = {k[len("vision_model."):] if k.startswith("vision_model.") else k: v for k, v in state.items()}
        missing, unexpected = module.load_state_dict(state, strict=False, assign=True)
        assert not unexpected, unexpected
    # buffers that are not in a checkpoint, made for real now
    model.lm.model.rotary_emb = LlamaRotaryEmbedding(config=model.llama_config)
    for module in model.clip.modules():
        buffer = module._buffers.get("position_ids")
        if buffer is not None and buffer.is_meta:
            module._buffers["position_ids"] = torch.arange(buffer.shape[-1]).expand(buffer.shape)
    model.sam.register_buffer("pixel_mean", torch.tensor(sam_ref.PIXEL_MEAN).view(-1, 1, 1), False)
    model.sam.register_buffer("pixel_std", torch.tensor(sam_ref.PIXEL_STD).view(-1, 1, 1), False)
    for layer in model.lm.model.layers:
        if hasattr(layer.mlp, "routed"):
            layer.mlp.routed = torch.zeros(n_experts, dtype=torch.int64)
    left = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    assert not left, left[:5]
    model.to(torch.bfloat16)
    # the prompt encoder and mask decoder (4 M parameters) stay f32: segment-anything builds
    # their positional encodings in f32
    model.sam.prompt_encoder.float()
    model.sam.mask_decoder.float()
    return model, reader


def run_torch_gguf(path: str, cfg: dict, n_experts: int, threads: int) -> dict:
    """PyTorch eager bf16 on the weights of a bf16 GGUF: the parts and segment() as medground's."""
    import numpy as np
    import torch

    from medground.image import preprocess_clip336, preprocess_sam
    from reference import medplib as ref

    torch.set_num_threads(threads)
    image = test_image()
    t0 = time.perf_counter()
    model, _ = torch_from_gguf(path, cfg, n_experts)
    load_s = time.perf_counter() - t0
    tok = tokenizer()
    ids = _PromptOnly(tok)
    from medground.models.medplib import MedPLIB

    ids = MedPLIB.prompt_ids(ids, QUESTION)
    pixels, _ = preprocess_clip336(image)
    sam_pixels, g = preprocess_sam(image)
    sam_in = torch.from_numpy(sam_pixels).to(torch.bfloat16)
    out = dict(load_s=load_s)

    def segment():
        emb, _ = model.encode_image(torch.from_numpy(pixels))
        tokens, _, hidden = model.greedy(ids, image=emb, max_new_tokens=DECODE_STEPS)
        k = tokens.index(SEG) if SEG in tokens else len(tokens) - 1
        prompt = model.seg_prompt(hidden[k])
        sam = model.sam
        embedding = sam.image_encoder(sam_in[None]).float()
        _, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
        low_res, _ = sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=prompt.float()[None, None],
                                      dense_prompt_embeddings=dense, multimask_output=False)
        probs = torch.sigmoid(ref.postprocess_correct(low_res[0, 0].float(), (g.resized_height, g.resized_width),
                                                      image.shape[:2]))
        return (probs > 0.1).numpy(), SEG in tokens

    runs = []
    with torch.no_grad():
        # the first segment() is also the warm-up of every shape (oneDNN builds its kernels per shape)
        t0 = time.perf_counter()
        mask, found = segment()
        runs.append(time.perf_counter() - t0)
        for run in ("cold", "warm"):
            t0 = time.perf_counter()
            emb, _ = model.encode_image(torch.from_numpy(pixels))
            out[f"clip_{run}_s"] = time.perf_counter() - t0
        for run in ("cold", "warm"):
            t0 = time.perf_counter()
            model.sam.image_encoder(sam_in[None])
            out[f"sam_{run}_s"] = time.perf_counter() - t0
        embeds = model.embed(ids, emb, None)
        t0 = time.perf_counter()
        res = model.lm(inputs_embeds=embeds, use_cache=True)
        prefill_s = time.perf_counter() - t0
        cache = res.past_key_values
        token = int(torch.argmax(res.logits[0, -1]))
        first = token
        t0 = time.perf_counter()
        for _ in range(DECODE_STEPS):
            step = model.lm.model.embed_tokens.weight[token][None, None]
            res = model.lm(inputs_embeds=step, cache=cache, use_cache=True)
            cache = res.past_key_values
            token = int(torch.argmax(res.logits[0, -1]))
        decode_s = time.perf_counter() - t0
        del cache, res
        t0 = time.perf_counter()
        mask, found = segment()
        runs.append(time.perf_counter() - t0)
    segment_s = min(runs)
    tokens = [SEG] if found else []
    n = embeds.shape[1]
    out.update(n_prefill=n, prefill_s=prefill_s, prefill_tok_s=n / prefill_s, decode_s=decode_s,
               decode_tok_s=DECODE_STEPS / decode_s, first_token=first, segment_s=segment_s, segment_runs_s=runs,
               found=SEG in tokens,
               mask_pixels=int(mask.sum()), **machine.memory_record(path))
    return out


def decode_bytes_per_token(cfg: dict, dtype: str) -> float:
    """LLM matrix bytes one decode step reads: attention, one FFN (expert) per layer, lm_head."""
    D, F, L, V = cfg["hidden"], cfg["ffn"], cfg["layers"], 32267
    return (L * (4 * D * D + 3 * D * F) + V * D) * BYTES_PER_ELEMENT[dtype]


def prefill_flops(cfg: dict, n: int) -> float:
    """Matrix FLOPs of a prefill of n positions (one expert per token; logits of the last only)."""
    D, F, L, V = cfg["hidden"], cfg["ffn"], cfg["layers"], 32267
    return 2.0 * n * L * (4 * D * D + 3 * D * F) + 2.0 * L * n * n * D + 2.0 * V * D


def run_child(variant: str, path: str, cfg: dict, threads: int, lock: str | None, extra: dict | None = None):
    command = [sys.executable, __file__, "--variant", variant, "--path", path, "--config",
               json.dumps(dict(cfg, **(extra or {}))), "--threads", str(threads)]
    if lock:
        command = ["flock", lock] + command
    done = subprocess.run(command, capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if done.returncode or line is None:
        print(f"{variant} {os.path.basename(path)}: failed (rc {done.returncode})\n{done.stderr[-3000:]}", flush=True)
        return None
    return json.loads(line[7:])


def main_gguf(args, cfg: dict) -> int:
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_medplib_gguf_"))
    work.mkdir(parents=True, exist_ok=True)
    size = "full" if args.full else "reduced"
    bw = run_child("bandwidth", "-", cfg, args.threads, args.lock)
    bandwidth = bw["read_gb_s"] if bw else float("nan")
    print(f"model: {size} {json.dumps(cfg)}; {args.threads} threads; {DECODE_STEPS} decode steps; "
          f"read bandwidth {bandwidth:.1f} GB/s; files in {work}", flush=True)
    out_file = HERE / "out" / f"bench_medplib_{size}.json"
    results: dict = json.loads(out_file.read_text()) if args.keep_results and out_file.exists() else {}
    results.update(bandwidth_gb_s=bandwidth, config=cfg)
    for dtype in args.types:
        entry: dict = {}
        kinds = ["moe", "dense"]
        if dtype == "bf16" and args.full and not args.bf16_moe:
            kinds = ["dense"]  # 23.4 GB of bf16 MoE weights: more than this machine's RAM next to anything else
            print("bf16 moe: skipped (11.69 B x 2 B = 23.4 GB of weights > the RAM left on a 24 GiB machine); "
                  "the dense twin (7.4 B, 14.8 GB) runs, with PyTorch eager bf16 on the same file", flush=True)
        files = {kind: str(work / f"medplib_{size}_{kind}_{dtype}.gguf") for kind in kinds}
        for kind, path in files.items():
            if not os.path.exists(path):
                written = run_child("gguf-write", path, cfg, args.threads, args.lock,
                                    dict(n_experts=2 if kind == "moe" else 0, dtype=dtype))
                if written is None:
                    return 1
                entry[f"{kind}_write"] = written
                print(f"{dtype} {kind}: wrote {written['bytes'] / 1e9:.2f} GB ({written['params'] / 1e9:.2f} B "
                      f"parameters; {written['types']}) in {written['write_s']:.0f} s", flush=True)
            entry[f"{kind}_bytes"] = os.path.getsize(path)
        for kind, path in files.items():
            probe = run_child("bandwidth", "-", cfg, args.threads, args.lock)  # re-probed before each variant:
            if probe:  # the best probe of the run is the roofline
                results.setdefault("bandwidth_probes_gb_s", []).append(probe["read_gb_s"])
                bandwidth = max(bandwidth if bandwidth == bandwidth else 0.0, probe["read_gb_s"])
                results["bandwidth_gb_s"] = bandwidth
            # this variant's file read once into the page cache, the run's other files dropped from it
            # (as bench_bird does): a variant that ran on a half-evicted file timed the disk
            entry[f"{kind}_cache_read_s"] = machine.read_into_page_cache(path, evict=list(files.values()))
            parts = run_child("gguf-parts", path, cfg, args.threads, args.lock,
                              dict(gemm=machine.gemm_dtype(dtype)) if args.full else None)
            if parts is None:
                return 1
            parts["bandwidth_probe_gb_s"] = probe["read_gb_s"] if probe else None
            roofline = bandwidth * 1e9 / decode_bytes_per_token(cfg, dtype)
            parts["decode_roofline_tok_s"] = roofline
            parts["decode_roofline_fraction"] = parts["decode_tok_s"] / roofline
            parts["prefill_gflop_s"] = prefill_flops(cfg, parts["n_prefill"]) / parts["prefill_s"] / 1e9
            peak_note = ""
            if parts.get("prefill_bracket_peaks"):  # the prefill against the mean of the peaks around it
                b = parts["prefill_bracket_peaks"]
                parts["prefill_peak_fraction"] = machine.bracket_fractions([parts["prefill_gflop_s"]], b)[0]
                peak_note = (f", {100 * parts['prefill_peak_fraction']:.0f}% of the {parts['gemm_dtype']} GEMM "
                             f"peaks around it ({b[0]:.0f}, {b[1]:.0f})")
            entry[kind] = parts
            print(f"{dtype} {kind:5s} load {parts['load_s']:.2f} s  CLIP {parts['clip_cold_s']:.2f}/"
                  f"{parts['clip_warm_s']:.2f} s  SAM {parts['sam_cold_s']:.2f}/{parts['sam_warm_s']:.2f} s (cold/warm)  "
                  f"prefill {parts['n_prefill']} tok {parts['prefill_s']:.1f} s = {parts['prefill_tok_s']:.1f} tok/s "
                  f"({parts['prefill_gflop_s']:.0f} GFLOP/s{peak_note})  decode {parts['decode_tok_s']:.2f} tok/s "
                  f"({100 * parts['decode_roofline_fraction']:.0f}% of {roofline:.2f})  "
                  f"peak RSS {parts['peak_rss_gb']:.2f} GB", flush=True)
            steer_seg_gguf(path, parts["first_token"])
            seg = run_child("gguf-segment", path, cfg, args.threads, args.lock)
            if seg is not None:
                entry[f"{kind}_segment"] = seg
                print(f"{dtype} {kind:5s} segment() {seg['segment_s']:.1f} s (<SEG> found: {seg['found']}, "
                      f"{seg['mask_pixels']} mask pixels)  load {seg['load_s']:.2f} s  peak RSS {seg['peak_rss_gb']:.2f} GB",
                      flush=True)
            if dtype == "bf16":
                pt = run_child("torch-bf16-gguf", path, cfg, args.threads, args.lock,
                               dict(n_experts=2 if kind == "moe" else 0))
                if pt is not None:
                    entry[f"{kind}_torch"] = pt
                    print(f"{dtype} {kind:5s} PyTorch eager bf16: load {pt['load_s']:.1f} s  CLIP {pt['clip_warm_s']:.2f} s  "
                          f"SAM {pt['sam_warm_s']:.2f} s  prefill {pt['prefill_tok_s']:.1f} tok/s  decode "
                          f"{pt['decode_tok_s']:.2f} tok/s  segment {pt['segment_s']:.1f} s (<SEG> found: {pt['found']})  "
                          f"peak RSS {pt['peak_rss_gb']:.2f} GB", flush=True)
                    if seg is not None:
                        print(f"{dtype} {kind:5s} medground / PyTorch: segment {pt['segment_s'] / seg['segment_s']:.2f}x "
                              f"faster, prefill {parts['prefill_tok_s'] / pt['prefill_tok_s']:.2f}x, decode "
                              f"{parts['decode_tok_s'] / pt['decode_tok_s']:.2f}x, peak RSS "
                              f"{seg['peak_rss_gb'] / pt['peak_rss_gb']:.2f}x", flush=True)
        if "moe" in entry and "dense" in entry:
            entry["prefill_ratio"] = entry["moe"]["prefill_s"] / entry["dense"]["prefill_s"]
            entry["decode_ratio"] = entry["moe"]["decode_s"] / entry["dense"]["decode_s"]
            print(f"{dtype} MoE (2 experts, top-1) / dense of the same active size: prefill "
                  f"{entry['prefill_ratio']:.3f}x, decode {entry['decode_ratio']:.3f}x (target <= 1.1x)", flush=True)
        results[dtype] = entry
        if not args.keep:
            for path in files.values():
                os.remove(path)
        (HERE / "out").mkdir(exist_ok=True)
        out_file.write_text(json.dumps(results, indent=2))
    return 0


def child(args) -> int:
    cfg = json.loads(args.config)
    if args.variant == "torch-f32":
        result = run_torch(cfg, args.threads)
    elif args.variant == "bandwidth":
        import machine

        result = machine.bandwidth(args.threads, 1 << 24)
    elif args.variant == "gguf-write":
        result = write_release_gguf(args.path, cfg, cfg["n_experts"], cfg["dtype"])
    elif args.variant == "gguf-parts":
        result = run_gguf_parts(args.path, args.threads, cfg.get("gemm"))
    elif args.variant == "gguf-segment":
        result = run_gguf_segment(args.path, args.threads)
    elif args.variant == "torch-bf16-gguf":
        result = run_torch_gguf(args.path, cfg, cfg["n_experts"], args.threads)
    elif args.variant == "moe-vs-dense":
        moe, dense = args.path.split(os.pathsep)
        result = run_moe_vs_dense(moe, dense, args.threads)
    else:
        result = run_medground(args.path, args.variant.split("-", 1)[1], args.threads)
    print("RESULT " + json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the real MedPLIB-7b-2e shape, from streamed GGUF files")
    parser.add_argument("--gguf", action="store_true", help="the --full procedure at the reduced size")
    parser.add_argument("--types", nargs="+", default=["q4_0", "q8_0"], help="weight types for --full / --gguf")
    parser.add_argument("--lock", help="run every child under `flock LOCK` (e.g. /work/notes/bench.lock)")
    parser.add_argument("--work", help="folder for the GGUF files (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the GGUF files")
    parser.add_argument("--keep-results", action="store_true", help="add to the JSON of an earlier run")
    parser.add_argument("--bf16-moe", action="store_true", help="--full with bf16: run the MoE too (23.4 GB)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--only", help="run only the variants whose name contains this (e.g. moe)")
    args = parser.parse_args()
    if args.variant:
        return child(args)

    cfg = sizes(args.full)
    if args.full or args.gguf:
        return main_gguf(args, cfg)
    import torch

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench_medplib_"))
    torch.set_num_threads(args.threads)
    from medground.models.medplib import MedPLIB

    model = build(cfg, 2)
    ids = MedPLIB.prompt_ids(_PromptOnly(tokenizer()), QUESTION)
    steer_seg(model, ids, test_image())
    model.save(str(work / "moe"))
    del model
    build(cfg, 0).save(str(work / "dense"))
    print(f"model: {'full' if args.full else 'reduced'} {json.dumps(cfg)}; {args.threads} threads; "
          f"{DECODE_STEPS} decode steps")
    runs = [("torch-f32", str(work / "moe")), ("medground-file", str(work / "moe")),
            ("medground-bf16", str(work / "moe")), ("moe-vs-dense", f"{work / 'moe'}{os.pathsep}{work / 'dense'}")]
    results = {}
    runs = [r for r in runs if not args.only or args.only in r[0]]
    for variant, path in runs:
        command = [sys.executable, __file__, "--variant", variant, "--path", path, "--config", json.dumps(cfg),
                   "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        if done.returncode or line is None:
            print(f"{variant}: failed\n{done.stderr[-2000:]}")
            continue
        r = json.loads(line[7:])
        results[variant] = r
        if variant == "moe-vs-dense":
            print(f"MoE (2 experts, top-1) / dense of the same active size: prefill {r['prefill_ratio']:.3f}x, "
                  f"decode {r['decode_ratio']:.3f}x (target <= 1.1x)")
        else:
            print(f"{variant:15s} segment {r['segment_s']:.2f} s (SEG found: {r['found']})  encode {r['encode_s']:.3f} s"
                  f"  prefill {r['prefill_tok_s']:8.1f} tok/s  decode {r['decode_tok_s']:7.2f} tok/s"
                  f"  peak RSS {r['peak_rss_gb']:.2f} GB")
    base = results.get("torch-f32")
    for key in ("medground-file", "medground-bf16"):
        if base and key in results:
            r = results[key]
            print(f"ratio {key} / torch-f32: segment {base['segment_s'] / r['segment_s']:.2f}x faster, "
                  f"peak RSS {r['peak_rss_gb'] / base['peak_rss_gb']:.2f}x")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "bench_medplib.json").write_text(json.dumps(results, indent=2))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
