"""BiRD's language model (Qwen-7B) in medground beside llama.cpp (PyPI llama-cpp-python)
on the same weights at the same quantization.

llama.cpp has no Qwen-VL vision tower, so the comparison is the language model alone:
a text-only prompt of PROMPT_TOKENS token ids (prefill tokens/s), then DECODE_STEPS
greedy single-token steps (decode tokens/s), peak RSS (VmHWM), each engine in its own
process, the same thread count. Target: medground decode >= llama.cpp's tokens/s.

The llama.cpp file is written by :func:`write_llamacpp_gguf` from a medground BiRD GGUF:
architecture "qwen", tensors renamed to llama.cpp's names with gguf-py's own
``TensorNameMap`` for Qwen (``mlp.w1`` -> ``ffn_up``, ``mlp.w2`` -> ``ffn_gate``: Qwen computes
``c_proj(w1(x) * silu(w2(x)))`` and llama.cpp ``down(up(x) * silu(gate(x)))``), the tensor
bytes copied unchanged (medground's Q4_0/Q8_0/BF16 blocks are ggml's: the copy is
checked by dequantising both files with the ``gguf`` package in ``--check``), the vision
tower left out. Vocabulary: Qwen's real BPE (``../shared/data/tokenizers/qwen.tiktoken``)
as a GPT-2-style byte-level vocabulary (tokenizer.ggml.model "gpt2", pre "qwen2", tokens,
token types, merges re-derived from the ranks), then Qwen-VL's special tokens, then
``[PADn]`` up to the model's vocab_size; a model whose vocabulary is smaller than Qwen's
gets the first ranks. The benchmark feeds token ids, so the vocabulary only has to load
and match the output matrix.

Modes:
  (default)   quick: a quarter-width Qwen LM (1024 x 4 blocks, vocab 37984), q8_0 and q4_0,
              converted from random weights in a temp folder (about a minute).
  --check     correctness on a tiny model (q8_0): prefill logits and greedy tokens of llama.cpp
              and of medground against PyTorch (tests/reference/qwen_vl.py) run on the
              weights dequantised from the same file.
  --full      the real 9.66 B BiRD shape: the BiRD GGUFs given with --bird (or, without
              --bird, a q4_0 one written from streamed random weights; needs ~15 GB disk).

Standalone: ``python benchmarks/bench_llamacpp.py [--check] [--full [--bird F.gguf ...]]
[--threads N]``. Needs ``pip install -r requirements-bench.txt`` (``make bench`` does it);
prints "skipped" without it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pathlib
import shutil
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

PROMPT_TOKENS = 300
DECODE_STEPS = 32
TIKTOKEN = REPO.parent / "shared/data/tokenizers/qwen.tiktoken"


# --------------------------------------------------------------- vocabulary


def _byte_chars() -> list[str]:
    """GPT-2's reversible byte -> printable character table (the byte-level BPE
    convention llama.cpp's "gpt2" vocabularies use): printable Latin-1 bytes map
    to themselves, the other 68 bytes to U+0100.. in byte order."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def _split_by_ranks(ranks: dict[bytes, int], token: bytes, rank: int) -> tuple[bytes, bytes]:
    """The two parts whose merge made `token` (rank `rank`): BPE over its bytes
    using only merges of lower rank stops at exactly two parts."""
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, best_rank = -1, rank
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best, best_rank = i, r
        if best < 0:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    if len(parts) != 2:
        raise ValueError(f"token rank {rank} ({token!r}) is not one merge of two lower-rank tokens")
    return parts[0], parts[1]


def qwen_vocab(n_vocab: int, eot_id: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) for a vocabulary of n_vocab ids whose
    <|endoftext|> is eot_id: Qwen's BPE ranks below eot_id, Qwen-VL's special
    tokens from eot_id on, [PADn] after them."""
    from gguf.constants import TokenType

    from medground.models.bird import QWEN_SPECIALS

    chars = _byte_chars()
    ranks: dict[bytes, int] = {}
    for line in TIKTOKEN.read_text().splitlines():
        if line:
            b64, rank = line.split()
            ranks[base64.b64decode(b64)] = int(rank)
    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    if eot_id > len(by_rank):
        raise ValueError(f"<|endoftext|> id {eot_id} lies beyond Qwen's {len(by_rank)} BPE ranks")
    tokens, types, merges = [], [], []
    for token, rank in by_rank[:eot_id]:
        if rank != len(tokens):
            raise ValueError(f"{TIKTOKEN}: ranks are not 0..n-1 (rank {rank} at line {len(tokens) + 1})")
        tokens.append("".join(chars[b] for b in token))
        types.append(int(TokenType.NORMAL))
        if len(token) > 1:
            left, right = _split_by_ranks(ranks, token, rank)
            merges.append("".join(chars[b] for b in left) + " " + "".join(chars[b] for b in right))
    for name in QWEN_SPECIALS:
        if len(tokens) < n_vocab:
            tokens.append(name)
            types.append(int(TokenType.CONTROL))
    while len(tokens) < n_vocab:
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(int(TokenType.UNUSED))
    return tokens, types, merges


# ------------------------------------------------------------- conversion


def _field(reader, key: str):
    """A metadata value; config.json keys are looked up under both prefixes
    medground writes them with ('bird.' from medground convert, 'config.'
    from bench_bird.write_full_gguf)."""
    keys = [key] if not key.startswith("config.") else ["bird." + key[7:], key]
    for k in keys:
        if k in reader.fields:
            return reader.fields[k].contents()
    raise KeyError(f"no metadata key {' or '.join(map(repr, keys))}")


def write_llamacpp_gguf(src: pathlib.Path, dst: pathlib.Path) -> dict:
    """llama.cpp "qwen" GGUF of the language model of medground BiRD GGUF `src`
    (same tensor bytes; vision tower left out). Returns a summary."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(src))
    if _field(reader, "general.architecture") != "bird":
        raise ValueError(f"{src}: general.architecture is not 'bird'")
    cfg = {k: _field(reader, f"config.{k}") for k in
           ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
            "layer_norm_epsilon", "rotary_emb_base", "max_position_embeddings", "kv_channels")}
    image_start = _field(reader, "config.visual.image_start_id")
    h, n_layer, n_head = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    if cfg["kv_channels"] * n_head != h:
        raise ValueError(f"{src}: kv_channels x heads != hidden_size (llama.cpp's qwen assumes it)")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN, n_layer)
    lm = [t for t in reader.tensors if not t.name.startswith("transformer.visual.")]
    types = {t.tensor_type for t in lm if len(t.shape) == 2}
    file_type = {gguf.GGMLQuantizationType.Q4_0: gguf.LlamaFileType.MOSTLY_Q4_0,
                 gguf.GGMLQuantizationType.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
                 gguf.GGMLQuantizationType.BF16: gguf.LlamaFileType.MOSTLY_BF16,
                 gguf.GGMLQuantizationType.F16: gguf.LlamaFileType.MOSTLY_F16,
                 gguf.GGMLQuantizationType.F32: gguf.LlamaFileType.ALL_F32}[max(types, key=lambda t: sum(
                     int(np.prod(x.shape)) for x in lm if x.tensor_type == t))]

    tmp = pathlib.Path(str(dst) + ".partial")
    writer = gguf.GGUFWriter(str(tmp), arch="qwen")
    writer.add_name("BiRD language model (medground GGUF " + src.name + ")")
    writer.add_context_length(int(cfg["max_position_embeddings"]))
    writer.add_embedding_length(int(h))
    writer.add_feed_forward_length(int(cfg["intermediate_size"]))  # llama.cpp's qwen halves it per branch
    writer.add_block_count(int(n_layer))
    writer.add_head_count(int(n_head))
    writer.add_head_count_kv(int(n_head))
    writer.add_rope_dimension_count(int(cfg["kv_channels"]))
    writer.add_rope_freq_base(float(cfg["rotary_emb_base"]))
    writer.add_layer_norm_rms_eps(float(cfg["layer_norm_epsilon"]))
    writer.add_file_type(int(file_type))
    eot = int(image_start) - 214  # <|endoftext|> (python/medground/models/bird.py QWEN_SPECIALS)
    tokens, token_types, merges = qwen_vocab(int(cfg["vocab_size"]), eot)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(eot)
    writer.add_eos_token_id(eot)
    writer.add_add_bos_token(False)
    mapped = {}
    for t in lm:
        new = names.get_name(t.name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError(f"{src}: tensor {t.name!r} has no llama.cpp qwen name")
        mapped[new] = t
        # t.data: f32/f16 as numbers, every other type as raw bytes [rows, row bytes]
        writer.add_tensor(new, t.data, raw_dtype=t.tensor_type)
    need = {"token_embd.weight", "output_norm.weight", "output.weight"}
    need |= {f"blk.{i}.{n}" for i in range(n_layer) for n in (
        "attn_norm.weight", "attn_qkv.weight", "attn_qkv.bias", "attn_output.weight", "ffn_norm.weight",
        "ffn_up.weight", "ffn_gate.weight", "ffn_down.weight")}
    if need - set(mapped):
        raise ValueError(f"{src}: missing {sorted(need - set(mapped))[:5]}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)
    return dict(n_vocab=len(tokens), merges=len(merges), tensors=len(mapped), file_type=file_type.name,
                bytes=dst.stat().st_size)


# ---------------------------------------------------------------- engines


def prompt_ids(n_vocab_text: int, n: int = PROMPT_TOKENS) -> list[int]:
    import numpy as np

    return [int(x) for x in np.random.default_rng(0).integers(0, n_vocab_text, n)]


def run_llamacpp(path: str, ids: list[int], steps: int, threads: int, n_ctx: int = 512,
                 keep_logits: bool = False, repeats: int = 1) -> dict:
    """llama.cpp through llama-cpp-python's C API: one llama_decode over the
    prompt (n_batch = n_ubatch = 512), then `steps` single-token decodes;
    `repeats` times from an empty KV cache, the best rate of each reported."""
    import numpy as np

    import llama_cpp as L

    L.llama_backend_init()  # llama.cpp logs to stderr, which spawn() keeps only for errors
    mp = L.llama_model_default_params()
    mp.use_mmap = True
    t0 = time.perf_counter()
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    cp = L.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx, 512, 512
    cp.n_threads, cp.n_threads_batch = threads, threads
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise RuntimeError("llama.cpp could not create a context")
    load_s = time.perf_counter() - t0
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    batch = L.llama_batch_init(512, 0, 1)

    def decode(tokens: list[int], pos0: int) -> np.ndarray:
        batch.n_tokens = len(tokens)
        for i, tok in enumerate(tokens):
            batch.token[i] = tok
            batch.pos[i] = pos0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == len(tokens) - 1
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, len(tokens) - 1), shape=(n_vocab,)).copy()

    prefill, dec = [], []
    for _ in range(repeats):
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        t0 = time.perf_counter()
        logits = decode(ids, 0)
        prefill.append(len(ids) / (time.perf_counter() - t0))
        first = logits
        tokens = [int(np.argmax(logits))]
        t0 = time.perf_counter()
        for step in range(steps):
            logits = decode([tokens[-1]], len(ids) + step)
            tokens.append(int(np.argmax(logits)))
        dec.append(steps / (time.perf_counter() - t0))
    out = dict(load_s=load_s, prefill_tok_s=max(prefill), decode_tok_s=max(dec), prefill_runs=prefill,
               decode_runs=dec, **machine.memory_record(path), tokens=tokens, n_vocab=n_vocab,
               version=L.__version__, system_info=L.llama_print_system_info().decode())
    if keep_logits:
        out["prefill_logits"] = first.tolist()
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    return out


def run_medground(path: str, ids: list[int], steps: int, threads: int, keep_logits: bool = False,
                  repeats: int = 1) -> dict:
    """medground's BiRD language model on a text-only prompt (bench_bird.run_medground
    without the image): the vision tower is in the file but never run. `repeats`
    as in run_llamacpp (a fresh KV cache each time)."""
    import numpy as np

    import medground
    from medground import _C
    from medground.models.bird import open_model

    medground.set_num_threads(threads)
    t0 = time.perf_counter()
    handle = open_model(path)
    load_s = time.perf_counter() - t0
    prefill, dec = [], []
    for _ in range(repeats):
        cache = _C.bird_kv_cache_new(handle, len(ids) + steps + 1)
        t0 = time.perf_counter()
        logits, _ = _C.bird_forward(handle, cache, ids)
        prefill.append(len(ids) / (time.perf_counter() - t0))
        first = np.asarray(logits[0], dtype=np.float32)
        tokens = [int(np.argmax(logits[0]))]
        t0 = time.perf_counter()
        for _ in range(steps):
            logits, _ = _C.bird_forward(handle, cache, [tokens[-1]])
            tokens.append(int(np.argmax(logits[0])))
        dec.append(steps / (time.perf_counter() - t0))
        del cache
    out = dict(load_s=load_s, prefill_tok_s=max(prefill), decode_tok_s=max(dec), prefill_runs=prefill,
               decode_runs=dec, **machine.memory_record(path), tokens=tokens)
    if keep_logits:
        out["prefill_logits"] = first.tolist()
    return out


def run_torch(path: str, ids: list[int], steps: int, cfg: dict) -> dict:
    """PyTorch reference (tests/reference/qwen_vl.py) on the weights dequantised
    from `path` by the gguf package."""
    import torch

    from reference import qwen_vl as ref

    model = ref.load_model(cfg, ref.gguf_state_dict(path))
    with torch.no_grad():
        logits, _, past = model.forward(ids)
        first = logits[-1].float()
        tokens = [int(torch.argmax(first))]
        for _ in range(steps):
            logits, _, past = model.forward([tokens[-1]], past)
            tokens.append(int(torch.argmax(logits[-1])))
    return dict(tokens=tokens, prefill_logits=first.tolist())


# ------------------------------------------------------------------ driver


SNAPSHOT: str | None = None  # folder holding a copy of python/medground (with _C) for every child
RUN_FILES: list[str] = []  # the weights files of this run, dropped from the page cache while another one runs


def snapshot_medground(work: pathlib.Path) -> dict:
    """Copy python/medground (the built extension included) so that every child
    of this run uses the same build even if the tree is rebuilt meanwhile;
    returns what was copied (commit, uncommitted C changes, extension mtime)."""
    global SNAPSHOT
    dst = work / "medground_snapshot"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(REPO / "python" / "medground", dst / "medground", ignore=shutil.ignore_patterns("__pycache__"))
    SNAPSHOT = str(dst)
    git = lambda *a: subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout.strip()
    ext = next((REPO / "python" / "medground").glob("_C*.so"), None)
    return dict(commit=git("rev-parse", "--short", "HEAD"),
                uncommitted_c_files=len(git("status", "--porcelain", "csrc", "include").splitlines()),
                extension_mtime=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ext.stat().st_mtime)) if ext else None)


def spawn(engine: str, path: str, ids: list[int], steps: int, threads: int, keep_logits: bool = False,
          cfg: dict | None = None, warm: bool = False, repeats: int = 1) -> dict:
    # medground maps tensors lazily, llama.cpp reads (or repacks) them at load: both start from a page
    # cache holding this file and not the run's others
    warm_s = machine.read_into_page_cache(path, evict=RUN_FILES) if warm else None
    spec = dict(engine=engine, path=path, ids=ids, steps=steps, threads=threads, keep_logits=keep_logits, cfg=cfg,
                repeats=repeats, pythonpath=SNAPSHOT)
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"{engine} on {path} failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(line[7:])
    result["warm_read_s"] = warm_s
    return result


def child(spec: dict) -> int:
    if spec.get("pythonpath"):
        sys.path.insert(0, spec["pythonpath"])  # the medground build snapshotted at the start of the run
    if spec["engine"] == "llama.cpp":
        r = run_llamacpp(spec["path"], spec["ids"], spec["steps"], spec["threads"], keep_logits=spec["keep_logits"],
                         repeats=spec["repeats"])
    elif spec["engine"] == "medground":
        r = run_medground(spec["path"], spec["ids"], spec["steps"], spec["threads"], keep_logits=spec["keep_logits"],
                          repeats=spec["repeats"])
    else:
        r = run_torch(spec["path"], spec["ids"], spec["steps"], spec["cfg"])
    print("RESULT " + json.dumps(r))
    return 0


def compare(a: list[float], b: list[float], k: int = 10) -> dict:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    top_a, top_b = set(np.argsort(-a)[:k]), set(np.argsort(-b)[:k])
    return dict(corr=float(np.corrcoef(a, b)[0, 1]), max_abs=float(np.max(np.abs(a - b))),
                top_overlap=len(top_a & top_b) / k, argmax_equal=bool(np.argmax(a) == np.argmax(b)))


def convert_hf(folder: pathlib.Path, out: pathlib.Path, dtype: str) -> None:
    subprocess.run([sys.executable, "-m", "medground", "convert", str(folder), str(out), "--type", dtype,
                    "--no-progress"], check=True, env=dict(os.environ, PYTHONPATH=str(REPO / "python")),
                   capture_output=True)


def check_copy(bird: pathlib.Path, llama: pathlib.Path, names: tuple[str, ...]) -> float:
    """Max |difference| between the gguf package's dequantisation of a few
    tensors of both files (0 when the bytes were copied and read alike)."""
    import gguf
    import numpy as np
    from gguf.quants import dequantize

    a = {t.name: t for t in gguf.GGUFReader(str(bird)).tensors}
    b = {t.name: t for t in gguf.GGUFReader(str(llama)).tensors}
    worst = 0.0
    for src, dst in names:
        x, y = dequantize(a[src].data, a[src].tensor_type), dequantize(b[dst].data, b[dst].tensor_type)
        if list(a[src].shape) != list(b[dst].shape) or x.shape != y.shape:
            raise AssertionError(f"{src} -> {dst}: shape {list(a[src].shape)} vs {list(b[dst].shape)}")
        worst = max(worst, float(np.max(np.abs(x - y))))
    return worst


def check(threads: int) -> int:
    """Tiny model, q8_0: llama.cpp and medground against PyTorch on the same dequantised weights."""
    from reference import qwen_vl as ref

    cfg = ref.tiny_config()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench_llamacpp_check_"))
    ref.save_checkpoint(work / "st", cfg, ref.random_state_dict(cfg, seed=0, scale=0.1))
    convert_hf(work / "st", work / "bird.gguf", "q8_0")
    summary = write_llamacpp_gguf(work / "bird.gguf", work / "qwen.gguf")
    diff = check_copy(work / "bird.gguf", work / "qwen.gguf", (
        ("transformer.wte.weight", "token_embd.weight"), ("lm_head.weight", "output.weight"),
        ("transformer.h.1.mlp.w1.weight", "blk.1.ffn_up.weight"),
        ("transformer.h.1.mlp.w2.weight", "blk.1.ffn_gate.weight"),
        ("transformer.h.0.attn.c_attn.bias", "blk.0.attn_qkv.bias")))
    eot = cfg["visual"]["image_start_id"] - 214
    ids = prompt_ids(eot, 40)
    steps = 8
    t = spawn("torch", str(work / "bird.gguf"), ids, steps, threads, cfg=cfg)
    m = spawn("medground", str(work / "bird.gguf"), ids, steps, threads, keep_logits=True)
    l = spawn("llama.cpp", str(work / "qwen.gguf"), ids, steps, threads, keep_logits=True)
    print(f"tiny model (hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} blocks, vocab {cfg['vocab_size']}), "
          f"q8_0; llama.cpp file: {summary}; copied tensors dequantise alike: max |diff| {diff}")
    print(f"prompt {len(ids)} ids, {steps} greedy steps")
    for name, r in (("medground", m), ("llama.cpp", l)):
        c = compare(r["prefill_logits"], t["prefill_logits"])
        same = sum(x == y for x, y in zip(r["tokens"], t["tokens"]))
        print(f"{name:10s} vs torch: logits corr {c['corr']:.6f}  max |diff| {c['max_abs']:.4f}  top-10 overlap "
              f"{c['top_overlap']:.1f}  greedy tokens equal {same}/{len(t['tokens'])}")
    c = compare(m["prefill_logits"], l["prefill_logits"])
    print(f"medground vs llama.cpp: logits corr {c['corr']:.6f}  max |diff| {c['max_abs']:.4f}  "
          f"top-10 overlap {c['top_overlap']:.1f}")
    print(f"tokens torch     {t['tokens']}\ntokens medground {m['tokens']}\ntokens llama.cpp {l['tokens']}")
    ok = c["corr"] > 0.99 and compare(l["prefill_logits"], t["prefill_logits"])["corr"] > 0.99
    print("check:", "ok" if ok else "FAILED")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def bench(birds: list[tuple[str, pathlib.Path]], threads_list: list[int], work: pathlib.Path, keep: bool,
          repeats: int = 1) -> dict:
    import gguf

    results = {}
    RUN_FILES[:] = [str(bird) for _, bird in birds]
    for label, bird in birds:
        reader = gguf.GGUFReader(str(bird))
        eot = int(_field(reader, "config.visual.image_start_id")) - 214
        del reader
        qwen = work / (bird.stem + ".llamacpp.gguf")
        t0 = time.perf_counter()
        summary = write_llamacpp_gguf(bird, qwen)
        RUN_FILES.append(str(qwen))
        print(f"{label}: wrote {qwen.name} ({summary['bytes'] / 1e9:.2f} GB, {summary['tensors']} tensors, "
              f"{summary['file_type']}, vocab {summary['n_vocab']}) in {time.perf_counter() - t0:.0f} s", flush=True)
        ids = prompt_ids(eot)
        try:
            for threads in threads_list:
                rows = {}
                for engine, path in (("llama.cpp", qwen), ("medground", bird)):
                    r = spawn(engine, str(path), ids, DECODE_STEPS, threads, keep_logits=True, warm=True, repeats=repeats)
                    rows[engine] = r
                    print(f"  {label:5s} {threads}T {engine:10s} prefill {r['prefill_tok_s']:8.2f} tok/s  "
                          f"decode {r['decode_tok_s']:6.2f} tok/s  peak RSS {r['peak_rss_gb']:.2f} GB  "
                          f"load {r['load_s']:.1f} s{machine.mapped_2mb_note(r)}", flush=True)
                a, b = rows["medground"], rows["llama.cpp"]
                print(f"  {label:5s} {threads}T medground / llama.cpp: prefill {a['prefill_tok_s'] / b['prefill_tok_s']:.2f}x"
                      f"  decode {a['decode_tok_s'] / b['decode_tok_s']:.2f}x  peak RSS "
                      f"{a['peak_rss_gb'] / b['peak_rss_gb']:.2f}x", flush=True)
                c = compare(a["prefill_logits"], b["prefill_logits"])
                same = sum(x == y for x, y in zip(a["tokens"], b["tokens"]))
                print(f"  {label:5s} {threads}T agreement: prefill logits corr {c['corr']:.5f}, top-10 overlap "
                      f"{c['top_overlap']:.1f}, greedy tokens equal {same}/{len(a['tokens'])} (random weights: "
                      f"near-tied logits)", flush=True)
                rows["agreement"] = dict(c, greedy_equal=same, greedy_len=len(a["tokens"]))
                for r in (a, b):
                    r.pop("tokens", None)
                    r.pop("prefill_logits", None)
                results[f"{label}:{threads}"] = rows
        finally:
            if not keep:
                qwen.unlink(missing_ok=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the real 9.66 B BiRD shape")
    parser.add_argument("--bird", nargs="*", default=[], help="medground BiRD GGUF(s) to compare (with --full)")
    parser.add_argument("--check", action="store_true", help="tiny-model correctness check only")
    parser.add_argument("--threads", type=int, nargs="*", default=[min(2, os.cpu_count() or 1)])
    parser.add_argument("--work", help="folder for the llama.cpp GGUFs (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the llama.cpp GGUFs")
    parser.add_argument("--repeats", type=int, default=1,
                        help="prefill + decode passes per engine (fresh KV cache each); the best is reported")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    try:
        import llama_cpp
    except ImportError:
        print("skipped: llama-cpp-python is not installed (pip install -r requirements-bench.txt)")
        return 0
    if not TIKTOKEN.exists():
        print(f"skipped: {TIKTOKEN} (Qwen's vocabulary) is absent")
        return 0
    print(f"llama-cpp-python {llama_cpp.__version__}; {llama_cpp.llama_print_system_info().decode().strip()}")
    if args.check:
        return check(args.threads[0])
    work = pathlib.Path(args.work) if args.work else pathlib.Path(tempfile.mkdtemp(prefix="bench_llamacpp_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.full:
        birds = [(p.stem.replace("bird_", ""), p) for p in map(pathlib.Path, args.bird)]
        if not birds:
            import bench_bird

            path = work / "bird_q4_0.gguf"
            bench_bird.write_full_gguf(path, bench_bird.full_config(), "q4_0")
            birds = [("q4_0", path)]
    else:
        import bench_bird
        from reference import qwen_vl as ref

        cfg = bench_bird.quarter_config()
        ref.save_checkpoint(work / "st", cfg, ref.random_state_dict(cfg, seed=0, scale=0.02))
        birds = []
        for dtype in ("q8_0", "q4_0"):
            convert_hf(work / "st", work / f"bird_{dtype}.gguf", dtype)
            birds.append((dtype, work / f"bird_{dtype}.gguf"))
    build = snapshot_medground(work)
    print(f"medground build: {build}")
    print(f"{'full' if args.full else 'quarter-width'} BiRD LM; prompt {PROMPT_TOKENS} token ids, "
          f"{DECODE_STEPS} decode steps; threads {args.threads}; best of {args.repeats}")
    results = bench(birds, args.threads, work, args.keep, args.repeats)
    (HERE / "out").mkdir(exist_ok=True)
    out = HERE / "out" / f"bench_llamacpp{'_full' if args.full else ''}.json"
    old = json.loads(out.read_text()).get("results", {}) if out.exists() else {}
    for r in results.values():
        r["medground_build"] = build
    out.write_text(json.dumps(dict(llama_cpp_python=llama_cpp.__version__, prompt_tokens=PROMPT_TOKENS,
                                   decode_steps=DECODE_STEPS, results={**old, **results}), indent=2))
    if not args.work and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
