"""BiRD / Qwen-VL speed and memory: medground (f32, bf16, q8_0, q4_0) vs PyTorch eager f32,
on the same random weights, in the same run.

Measured per variant, each in its own process (so peak RSS is that variant's):
image encode (ViT + resampler, 448 px, 1024 patches), prefill tokens/s (ChatML prompt
with one image, 256 image rows), decode tokens/s (greedy, KV cache), peak RSS; and for
medground the decode roofline: bytes of LM weights read per token / measured read
bandwidth (benchmarks/machine.py), reported as the fraction reached, against the run's
best probe and against the probes taken just before and after each decode pass. Encode and
prefill count the faster of two passes; their GFLOP/s are set against oneDNN's GEMM peak of
the dtype their linears run in, measured at the start of the run and, at full size, also
just before and after each pass.

Default: a quarter-width model (ViT 416 wide x 4 blocks, LM 1024 wide x 4 blocks,
vocabulary 37984) that runs in a few minutes. `--full`: the real 9.6 B-parameter shape,
written once as GGUF files (bf16/q8_0/q4_0) from streamed random tensors (`--gguf-dir`
keeps and reuses them); PyTorch f32 cannot run there (38.6 GB of f32 weights do not fit
24 GiB), so PyTorch eager runs in bf16 on the bf16 file's memory-mapped pages (the
reference model built on the meta device and given those tensors). Full size also times
an end-to-end ground() on a real image (medground.BiRD from a fresh load vs the same
pipeline in PyTorch: preprocessing, encode, prefill of the same ChatML ids, 24 greedy
steps). Needs ~35 GB disk and about an hour on 2 cores.

Standalone: `python benchmarks/bench_bird.py [--full] [--threads N]`.
"""

from __future__ import annotations

import argparse
import json
import math
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

DECODE_STEPS = 32
DECODE_PASSES = 2  # decode tokens/s: the faster of two passes of DECODE_STEPS (another process can take a core)
# Image encode and prefill: the faster of two passes. At full size oneDNN's GEMM peak of the dtype the
# linears run in is re-probed just before and after each pass, as the bandwidth is around decode: this VM's
# speed wanders within minutes, so a pass is also set against the peaks that bracket it.
ENCODE_PASSES = 2
PREFILL_PASSES = 2


def quarter_config() -> dict:
    from reference import qwen_vl as ref

    cfg = ref.tiny_config(vocab_size=37984, image_start_id=37984 - 3)
    cfg.update(hidden_size=1024, num_hidden_layers=4, num_attention_heads=8, kv_channels=128,
               intermediate_size=5504)
    cfg["visual"].update(width=416, heads=4, layers=4, mlp_ratio=4.9231, image_size=448, output_dim=1024)
    return cfg


def full_config() -> dict:
    cfg = json.loads((REPO.parent / "shared/data/checkpoints/qwen-vl-chat-int4/config.json").read_text())
    cfg.pop("quantization_config", None)
    return cfg


def prompt(cfg: dict) -> list[int]:
    img = cfg["visual"]["image_start_id"]
    return [1] * 20 + [img] + [img + 2] * 256 + [img + 1] + [2] * 30


def lm_matrix_elements(cfg: dict) -> int:
    """Elements of every matrix one decode step reads (LM blocks + lm_head)."""
    h, ff = cfg["hidden_size"], cfg["intermediate_size"] // 2
    per_layer = 3 * h * h + h * h + 3 * h * ff
    return cfg["num_hidden_layers"] * per_layer + cfg["vocab_size"] * h


BYTES_PER_ELEMENT = {"f32": 4.0, "bf16": 2.0, "f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


def encode_flops(cfg: dict) -> float:
    """Multiply-adds x 2 of one image encode: ViT (patch embedding, every block's linears and
    attention) and the 256-query resampler (kv_proj, its attention and projections)."""
    v = cfg["visual"]
    width, layers, patch = v["width"], v["layers"], v["patch_size"]
    mlp, out, tokens = int(width * v["mlp_ratio"]), v["output_dim"], (v["image_size"] // patch) ** 2
    vit = 2 * tokens * 3 * patch * patch * width
    vit += layers * (2 * tokens * (4 * width * width + 2 * width * mlp) + 4 * tokens * tokens * width)
    queries = 256
    resampler = 2 * tokens * width * out + 2 * (queries + 2 * tokens) * out * out  # kv_proj, q / k / v
    resampler += 4 * queries * tokens * out + 2 * 2 * queries * out * out  # attention, out_proj + proj
    return float(vit + resampler)


def prefill_flops(cfg: dict, n_tokens: int) -> float:
    """Multiply-adds x 2 of a prefill of n_tokens: every block's linears for every row, causal attention
    (query i sees i + 1 keys), lm_head for the last row only."""
    h, ff, layers = cfg["hidden_size"], cfg["intermediate_size"] // 2, cfg["num_hidden_layers"]
    linears = layers * 2 * n_tokens * (4 * h * h + 3 * h * ff)
    attention = layers * 2 * 2 * h * n_tokens * (n_tokens + 1) / 2
    return float(linears + attention + 2 * cfg["vocab_size"] * h)


# Shapes whose oneDNN peak is taken (M, K, N): a prefill's MLP and the ViT-bigG MLP; the dtype is
# machine.gemm_dtype of the weights.
PEAK_SHAPES = ((308, 4096, 11008), (1024, 1664, 8192))


# ------------------------------------------------------------------ children


def run_medground(path: str, dtype: str, cfg: dict, threads: int) -> dict:
    import numpy as np

    import medground
    from medground import _C
    from medground.models.bird import open_model

    medground.set_num_threads(threads)
    t0 = time.perf_counter()
    handle = open_model(path, dtype=None if dtype == "file" else dtype)
    load_s = time.perf_counter() - t0
    size = cfg["visual"]["image_size"]
    pixels = np.random.default_rng(0).standard_normal((3, size, size)).astype(np.float32)
    emb = _C.bird_encode_image(handle, pixels)  # warm-up (arena growth)
    encode = timed_passes(lambda: _C.bird_encode_image(handle, pixels), ENCODE_PASSES, peak_probe)
    ids = prompt(cfg)
    state = {}

    def prefill():
        state["cache"] = _C.bird_kv_cache_new(handle, len(ids) + DECODE_PASSES * DECODE_STEPS + 1)
        state["logits"], _ = _C.bird_forward(handle, state["cache"], ids, emb)

    prefill_passes = timed_passes(prefill, PREFILL_PASSES, peak_probe)
    cache, token = state["cache"], int(np.argmax(state["logits"][0]))
    # The read bandwidth re-probed just before and after every pass: this VM's bandwidth wanders by a third
    # within minutes, so a pass is also set against the probes that bracket it (not only the run's best).
    passes, probes = [], [machine.bandwidth(threads, 1 << 24)["read_gb_s"]]
    for _ in range(DECODE_PASSES):  # the cache grows by 32 a pass: attention is a tiny part of a step
        t0 = time.perf_counter()
        for _ in range(DECODE_STEPS):
            logits, _ = _C.bird_forward(handle, cache, [token])
            token = int(np.argmax(logits[0]))
        passes.append(DECODE_STEPS / (time.perf_counter() - t0))
        probes.append(machine.bandwidth(threads, 1 << 24)["read_gb_s"])
    return dict(load_s=load_s, **parts_result(encode, prefill_passes, len(ids)),
                decode_tok_s=max(passes), decode_passes_tok_s=passes, decode_bracket_probes_gb_s=probes,
                **machine.memory_record(path))


def timed_passes(fn, n: int, probe=None) -> dict:
    """n timed calls of fn; with probe (a GEMM peak measurement), probed before the first call and after
    every one."""
    first = probe() if probe else None
    seconds, peaks = [], [] if first is None else [first]
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
        if peaks:
            peaks.append(probe())
    return dict(seconds=seconds, peaks=peaks)


def parts_result(encode: dict, prefill: dict, n_tokens: int) -> dict:
    """A child's encode / prefill passes: the faster of each, every pass, and the bracketing peaks."""
    return dict(encode_s=min(encode["seconds"]), encode_passes_s=encode["seconds"],
                encode_bracket_peaks=encode["peaks"], prefill_tok_s=n_tokens / min(prefill["seconds"]),
                prefill_passes_s=prefill["seconds"], prefill_bracket_peaks=prefill["peaks"])


def peak_probe() -> float | None:
    """oneDNN's peak (best of PEAK_SHAPES) of the GEMM dtype this child's linears run in, when the parent
    asked for bracketing probes (full size)."""
    if not PROBE["dtype"]:
        return None
    return machine.gemm_peaks(PEAK_SHAPES, PROBE["threads"], dtypes=(PROBE["dtype"],))[PROBE["dtype"]]


PROBE = {"dtype": None, "threads": 1}  # set by child() from --gemm-dtype


def run_torch(path: str, cfg: dict, threads: int) -> dict:
    import torch
    from safetensors.torch import load_file

    from reference import qwen_vl as ref

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = ref.load_model(cfg, load_file(str(pathlib.Path(path) / "model.safetensors")))
    load_s = time.perf_counter() - t0
    size = cfg["visual"]["image_size"]
    pixels = torch.randn(3, size, size, generator=torch.Generator().manual_seed(0))
    model.encode_image(pixels)  # warm-up (oneDNN builds its kernels per shape)
    return dict(load_s=load_s, **time_torch_parts(model, cfg, pixels), **machine.memory_record(path))


def time_torch_parts(model, cfg: dict, pixels) -> dict:
    """PyTorch reference: image encode, prefill of prompt(cfg), DECODE_PASSES x DECODE_STEPS greedy steps (as
    run_medground)."""
    import torch

    state = {}

    def encode():
        state["emb"] = model.encode_image(pixels)[1]

    encode_passes = timed_passes(encode, ENCODE_PASSES, peak_probe)
    ids = prompt(cfg)

    def prefill():
        state["logits"], _, state["past"] = model.forward(ids, None, state["emb"])

    prefill_passes = timed_passes(prefill, PREFILL_PASSES, peak_probe)
    logits, past = state["logits"], state["past"]
    token = int(torch.argmax(logits[-1]))
    passes = []
    for _ in range(DECODE_PASSES):
        t0 = time.perf_counter()
        for _ in range(DECODE_STEPS):
            logits, _, past = model.forward([token], past)
            token = int(torch.argmax(logits[-1]))
        passes.append(DECODE_STEPS / (time.perf_counter() - t0))
    return dict(**parts_result(encode_passes, prefill_passes, len(ids)), decode_tok_s=max(passes),
                decode_passes_tok_s=passes)


def torch_state_from_gguf(path: str, dtype=None) -> dict:
    """The tensors of one of our bf16 GGUFs as torch tensors viewing the file's
    pages (read with the `gguf` package's memory map, no copy for bf16 data; the
    few f32 norms/biases are cast to `dtype`, bf16 by default)."""
    import warnings

    import numpy as np
    import torch
    from gguf import GGUFReader

    dtype = dtype or torch.bfloat16
    reader = GGUFReader(path)
    state = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that the mapped pages are read-only; nothing writes them
        for t in reader.tensors:
            shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists dims fastest first
            raw = reader.data[t.data_offset:t.data_offset + t.n_bytes]
            if t.tensor_type.name == "BF16":
                tensor = torch.from_numpy(raw.view(np.int16).reshape(shape)).view(torch.bfloat16)
            elif t.tensor_type.name == "F32":
                tensor = torch.from_numpy(raw.view(np.float32).reshape(shape))
            else:
                raise ValueError(f"{path}: tensor {t.name} is {t.tensor_type.name}; PyTorch runs the bf16 file")
            state[t.name] = tensor if tensor.dtype == dtype else tensor.to(dtype)
    return state


def torch_model_from_gguf(path: str, cfg: dict):
    """The PyTorch reference built on the meta device and given the mapped
    weights (assign=True), so PyTorch, like medground, reads the file's pages."""
    import torch

    from reference import qwen_vl as ref

    with torch.device("meta"):
        model = ref.QwenVL(cfg).to(torch.bfloat16)
    model.load_state_dict(torch_state_from_gguf(path), strict=True, assign=True)
    return model.eval()


GROUND_PHRASE = "the liver"
NEXT_PHRASE = "the left kidney"  # a second phrase on the same image: the image and the shared prompt prefix stay cached
GROUND_TOKENS = 24  # a grounding answer: <ref>phrase</ref><box>(x1,y1),(x2,y2)</box><|im_end|>


def ground_image() -> str:
    folder = REPO.parent / "shared/data/images/sam-med2d-demo/images"
    return str(sorted(folder.iterdir())[0])


def qwen_tokenizer():
    """medground's Qwen tokenizer over ../shared/data's qwen.tiktoken (read at load)."""
    from medground.tokenizer import Tokenizer

    with tempfile.TemporaryDirectory(prefix="bench_bird_tok_") as folder:
        (pathlib.Path(folder) / "qwen.tiktoken").symlink_to(REPO.parent / "shared/data/tokenizers/qwen.tiktoken")
        return Tokenizer.from_pretrained(folder)


def run_medground_ground(path: str, threads: int) -> dict:
    """End to end: medground.BiRD(...).ground(image file, phrase) from a fresh load."""
    import medground
    from medground.models.bird import BiRD

    medground.set_num_threads(threads)
    t0 = time.perf_counter()
    model = BiRD(path, tokenizer=qwen_tokenizer())
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.ground(ground_image(), GROUND_PHRASE, max_new_tokens=GROUND_TOKENS, progress=False)
    ground_s = time.perf_counter() - t0
    first = model.build_prompt(model.templates["ground"].format(phrase=GROUND_PHRASE))
    # The next phrase: its prompt shares the system turn and the image with the first, so only the rest is
    # prefilled (a dataset check grounds many phrases per image this way).
    t0 = time.perf_counter()
    model.ground(ground_image(), NEXT_PHRASE, max_new_tokens=GROUND_TOKENS, progress=False)
    next_s = time.perf_counter() - t0
    following = model.build_prompt(model.templates["ground"].format(phrase=NEXT_PHRASE))
    shared = next((i for i, (a, b) in enumerate(zip(first, following)) if a != b), min(len(first), len(following)))
    return dict(load_s=load_s, ground_s=ground_s, prompt_tokens=len(first), next_phrase_s=next_s,
                next_phrase_new_tokens=len(following) - shared, **machine.memory_record(path))


def run_torch_full(path: str, cfg: dict, threads: int) -> dict:
    """PyTorch eager bf16 on the mapped weights of our bf16 GGUF: one cold
    ground() pipeline (medground's PIL-equivalent preprocessing, encode,
    prefill of the same ChatML ids medground builds, GROUND_TOKENS greedy
    steps), then the parts again warm, as run_medground measures them."""
    import numpy as np
    import torch

    from medground.image import preprocess_qwen

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = torch_model_from_gguf(path, cfg)
    load_s = time.perf_counter() - t0
    ids = ground_prompt_ids(path)
    t0 = time.perf_counter()
    pixels, _ = preprocess_qwen(ground_image(), size=cfg["visual"]["image_size"])
    _, emb = model.encode_image(torch.from_numpy(pixels))
    model.greedy(ids, emb, max_new_tokens=GROUND_TOKENS)  # prefill + GROUND_TOKENS - 1 cached steps
    ground_s = time.perf_counter() - t0
    size = cfg["visual"]["image_size"]
    pixels = torch.from_numpy(np.random.default_rng(0).standard_normal((3, size, size)).astype(np.float32))
    return dict(load_s=load_s, ground_s=ground_s, **time_torch_parts(model, cfg, pixels), **machine.memory_record(path))


def ground_prompt_ids(path: str) -> list[int]:
    """The ChatML ids medground's ground() sends for GROUND_PHRASE (the model is
    only opened — a memory map, no weight page read — to build them)."""
    from medground.models.bird import BiRD

    model = BiRD(path, tokenizer=qwen_tokenizer())
    ids = model.build_prompt(model.templates["ground"].format(phrase=GROUND_PHRASE))
    del model
    return ids


# ------------------------------------------------------------ checkpoints


def write_quarter(folder: pathlib.Path, cfg: dict) -> None:
    from reference import qwen_vl as ref

    ref.save_checkpoint(folder, cfg, ref.random_state_dict(cfg, seed=0, scale=0.02))


def write_full_gguf(path: pathlib.Path, cfg: dict, dtype: str) -> None:
    """A full-size random GGUF written tensor by tensor (one f32 tensor in memory at a time)."""
    import numpy as np

    from medground import _C
    from medground.checkpoint.convert import choose_type
    from medground.checkpoint.sources import TensorInfo
    from medground.models.bird import flatten_config
    from reference import qwen_vl as ref

    shapes = ref.hf_tensor_shapes(cfg)
    rng = np.random.default_rng(0)
    writer = _C.GGUFWriter(str(path) + ".partial")
    try:
        writer.add_string("general.architecture", "bird")
        for key, value in flatten_config(cfg).items():
            if isinstance(value, bool) or isinstance(value, int):
                writer.add_int(key, int(value))
            elif isinstance(value, float):
                writer.add_float(key, value)
            else:
                writer.add_string(key, value)
        types = {}
        for name, shape in shapes.items():
            info = TensorInfo(name=name, dtype="f32", shape=tuple(shape), nbytes=4 * math.prod(shape))
            types[name] = choose_type(info, dtype)
            writer.add_tensor_info(name, types[name], list(shape))
        for name, shape in shapes.items():
            array = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                array += 1.0
            writer.write_tensor(name, array)
        writer.finish()
    finally:
        writer.close()
    os.replace(str(path) + ".partial", path)


# ------------------------------------------------------------------- parent


def child(args) -> int:
    cfg = json.loads(args.config)
    PROBE.update(dtype=args.gemm_dtype, threads=args.threads)
    if args.variant == "torch-f32":
        result = run_torch(args.path, cfg, args.threads)
    elif args.variant == "torch-bf16":
        result = run_torch_full(args.path, cfg, args.threads)
    elif args.variant == "medground-ground":
        result = run_medground_ground(args.path, args.threads)
    else:
        result = run_medground(args.path, args.variant.split("-", 1)[1], cfg, args.threads)
    print("RESULT " + json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the real 9.6 B-parameter shape (hours)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--gguf-dir", help="with --full: a folder holding (or to receive) bird_{bf16,q8_0,q4_0}.gguf; "
                        "existing files are reused")
    parser.add_argument("--types", default="bf16,q8_0,q4_0", help="with --full: weight types to run")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--gemm-dtype", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return child(args)

    cfg = full_config() if args.full else quarter_config()
    bandwidth = machine.bandwidth(args.threads, 1 << 24)["read_gb_s"]
    work = pathlib.Path(args.gguf_dir) if args.full and args.gguf_dir else pathlib.Path(
        tempfile.mkdtemp(prefix="bench_bird_"))
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    if args.full:
        for dtype in args.types.split(","):
            path = work / f"bird_{dtype}.gguf"
            if not path.exists():
                write_full_gguf(path, cfg, dtype)
            if dtype == "bf16":  # PyTorch eager bf16 on the same mapped weights (f32 would need 38.6 GB)
                runs.append(("torch-bf16", dtype, str(path)))
            runs.append(("medground-file", dtype, str(path)))
            runs.append(("medground-ground", dtype, str(path)))
    else:
        write_quarter(work / "st", cfg)
        runs.append(("torch-f32", "f32", str(work / "st")))
        for dtype in ("f32", "bf16", "q8_0", "q4_0"):
            runs.append((f"medground-{dtype}", dtype, str(work / "st")))
    n_params = lm_matrix_elements(cfg)
    peaks = machine.gemm_peaks(PEAK_SHAPES, args.threads)
    enc_flops, pre_flops = encode_flops(cfg), prefill_flops(cfg, len(prompt(cfg)))
    print(f"model: {'full' if args.full else 'quarter'}; LM matrix elements per decode step {n_params / 1e6:.0f} M; "
          f"{args.threads} threads; read bandwidth {bandwidth:.1f} GB/s; prompt {len(prompt(cfg))} tokens; "
          f"{DECODE_STEPS} decode steps")
    # PyTorch's bf16 runs are set against the bf16 peak, or the f32 one where oneDNN has no bf16 matmul here
    torch_bf16_gemm = "bf16" if peaks["bf16"] else "f32"
    print(f"oneDNN GEMM peak (best of {len(PEAK_SHAPES)} shapes): f32 {machine.peak_text(peaks['f32'])}, bf16 "
          f"{machine.peak_text(peaks['bf16'])} GFLOP/s, int8 {machine.peak_text(peaks['int8'])} GOP/s; "
          f"work: encode {enc_flops / 1e12:.2f} TFLOP, "
          f"prefill {pre_flops / 1e12:.2f} TFLOP")
    results = {}
    probes = [bandwidth]
    for variant, dtype, path in runs:
        if args.full:
            machine.read_into_page_cache(path, evict=[p for _, _, p in runs])
            # re-measured before every variant: the roofline uses the best probe of the run, so a
            # probe that read low (another process on the machine) cannot inflate the fractions
            probes.append(machine.bandwidth(args.threads, 1 << 24)["read_gb_s"])
            bandwidth = max(probes)
        command = [sys.executable, __file__, "--variant", variant, "--path", path, "--config", json.dumps(cfg),
                   "--threads", str(args.threads)]
        if args.full and variant != "medground-ground":
            command += ["--gemm-dtype", torch_bf16_gemm if variant.startswith("torch-bf16") else machine.gemm_dtype(dtype)]
        done = subprocess.run(command, capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        if done.returncode or line is None:
            print(f"{variant} ({dtype}): failed\n{done.stderr[-2000:]}")
            continue
        r = json.loads(line[7:])
        results[f"{variant}:{dtype}"] = r
        if variant == "medground-ground":
            print(f"{variant:16s} {dtype:5s} ground() {r['ground_s']:.1f} s ({r['prompt_tokens']} prompt tokens, "
                  f"{GROUND_TOKENS} new)  peak RSS {r['peak_rss_gb']:.2f} GB  load {r['load_s']:.1f} s"
                  f"{machine.mapped_2mb_note(r)}")
            print(f"{'':22s} the next phrase on the same image: {r['next_phrase_s']:.2f} s "
                  f"({r['next_phrase_new_tokens']} prompt tokens past the cached prefix, {GROUND_TOKENS} new)")
            continue
        bytes_per_token = n_params * BYTES_PER_ELEMENT[dtype]
        roofline = bandwidth * 1e9 / bytes_per_token
        r["decode_roofline_fraction"] = r["decode_tok_s"] / roofline
        r["bandwidth_gb_s"] = bandwidth
        bracket = ""
        if "decode_bracket_probes_gb_s" in r:  # each pass against the mean of the probes just before and after it
            b = r["decode_bracket_probes_gb_s"]
            r["decode_bracket_fractions"] = machine.bracket_fractions(
                [tok * bytes_per_token / 1e9 for tok in r["decode_passes_tok_s"]], b)  # GB/s read
            bracket = (f"; passes against their bracketing probes: "
                       f"{', '.join(f'{100 * f:.0f}%' for f in r['decode_bracket_fractions'])} "
                       f"(probes {', '.join(f'{v:.1f}' for v in b)} GB/s)")
        gemm = torch_bf16_gemm if variant.startswith("torch-bf16") else machine.gemm_dtype(dtype)
        r["encode_gflops"] = enc_flops / r["encode_s"] / 1e9
        r["prefill_gflops"] = pre_flops * r["prefill_tok_s"] / len(prompt(cfg)) / 1e9
        r["gemm_dtype"], r["gemm_peak_gflops"] = gemm, peaks[gemm]
        extra = f"  ground() {r['ground_s']:.1f} s" if "ground_s" in r else ""
        print(f"{variant:16s} {dtype:5s} encode {r['encode_s']:.3f} s  prefill {r['prefill_tok_s']:8.1f} tok/s  "
              f"decode {r['decode_tok_s']:7.2f} tok/s ({100 * r['decode_roofline_fraction']:.0f}% of "
              f"{roofline:.1f} tok/s roofline at {bandwidth:.1f} GB/s{bracket})  peak RSS {r['peak_rss_gb']:.2f} GB  "
              f"load {r['load_s']:.1f} s{extra}{machine.mapped_2mb_note(r)}")
        print(f"{'':22s} encode {r['encode_gflops']:.0f} / prefill {r['prefill_gflops']:.0f} GFLOP/s: "
              f"{machine.of_peak(r['encode_gflops'], peaks[gemm])} / {machine.of_peak(r['prefill_gflops'], peaks[gemm])} "
              f"of the {gemm} GEMM peak")
        for part, flops in (("encode", enc_flops), ("prefill", pre_flops)):
            b = r.get(f"{part}_bracket_peaks") or []
            if len(b) == len(r[f"{part}_passes_s"]) + 1:  # each pass against the mean of the peaks around it
                r[f"{part}_bracket_fractions"] = machine.bracket_fractions(
                    [flops / s / 1e9 for s in r[f"{part}_passes_s"]], b)  # GFLOP/s
                print(f"{'':22s} {part} passes {', '.join(f'{s:.2f}' for s in r[f'{part}_passes_s'])} s against "
                      f"their bracketing {gemm} peaks: "
                      f"{', '.join(f'{100 * f:.0f}%' for f in r[f'{part}_bracket_fractions'])} "
                      f"(peaks {', '.join(f'{v:.0f}' for v in b)})")
    base_key = "torch-bf16:bf16" if args.full else "torch-f32:f32"
    base = results.get(base_key)
    if base:
        for key, r in results.items():
            if key.startswith("medground-ground") and "ground_s" in base:
                print(f"ratio {key} / {base_key}: ground() {base['ground_s'] / r['ground_s']:.2f}x faster, "
                      f"peak RSS {r['peak_rss_gb'] / base['peak_rss_gb']:.2f}x")
            elif key.startswith("medground"):
                print(f"ratio {key} / {base_key}: encode {base['encode_s'] / r['encode_s']:.2f}x faster, "
                      f"prefill {r['prefill_tok_s'] / base['prefill_tok_s']:.2f}x, "
                      f"decode {r['decode_tok_s'] / base['decode_tok_s']:.2f}x, "
                      f"peak RSS {r['peak_rss_gb'] / base['peak_rss_gb']:.2f}x")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "bench_bird.json").write_text(json.dumps({"bandwidth_gb_s": bandwidth, "bandwidth_probes_gb_s": probes,
                                                              "gemm_peak_gflops": peaks, "threads": args.threads,
                                                              "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
