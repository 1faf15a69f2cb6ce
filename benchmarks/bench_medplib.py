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
that runs in a few minutes on 2 cores. `--full`: the real shape (LLaMA-7B with 2 experts,
CLIP-L, SAM-Med2D ViT-B, ~11.7 B parameters: ~47 GB f32 / 23 GB bf16 of weights, plus as much
again for PyTorch) — not runnable on the development machines; the flag only sets the sizes.

Standalone: `python benchmarks/bench_medplib.py [--full] [--threads N]`; needs
../shared/data/tokenizers/llama.tokenizer.model.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests"))

DECODE_STEPS = 16
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


def peak_rss_gb() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


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
                peak_rss_gb=peak_rss_gb())


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


def child(args) -> int:
    cfg = json.loads(args.config)
    if args.variant == "torch-f32":
        result = run_torch(cfg, args.threads)
    elif args.variant == "moe-vs-dense":
        moe, dense = args.path.split(os.pathsep)
        result = run_moe_vs_dense(moe, dense, args.threads)
    else:
        result = run_medground(args.path, args.variant.split("-", 1)[1], args.threads)
    print("RESULT " + json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the real MedPLIB-7b-2e shape (needs ~100 GB RAM)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--only", help="run only the variants whose name contains this (e.g. moe)")
    args = parser.parse_args()
    if args.variant:
        return child(args)

    import torch

    cfg = sizes(args.full)
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
