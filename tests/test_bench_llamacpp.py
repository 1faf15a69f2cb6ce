"""benchmarks/bench_llamacpp.py's converter (medground BiRD GGUF -> llama.cpp "qwen"
GGUF), checked against independent references: tiktoken for the vocabulary, the gguf
package for the written file, PyTorch (tests/reference/qwen_vl.py) for llama.cpp's
logits on the converted file (only when llama-cpp-python is installed: it is a
benchmark-only dependency, requirements-bench.txt)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, shared_path

sys.path.insert(0, str(REPO / "benchmarks"))


def _byte_table() -> dict[str, int]:
    # GPT-2 byte-level alphabet written out independently of the benchmark:
    # printable Latin-1 keeps its code point, the other bytes take U+0100 + n in order.
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(0x100 + n)] = b
            n += 1
    return table


def test_vocab_is_qwen_bpe():
    import tiktoken.load

    import bench_llamacpp as bl

    path = shared_path("tokenizers", "qwen.tiktoken")
    ranks = tiktoken.load.load_tiktoken_bpe(str(path))  # bytes -> rank, tiktoken's own reader
    tokens, types, merges = bl.qwen_vocab(151936, 151643)
    assert len(tokens) == len(types) == 151936
    back = _byte_table()
    by_rank = {r: b for b, r in ranks.items()}
    for i in (0, 32, 255, 256, 1000, 50000, 151642):
        assert bytes(back[c] for c in tokens[i]) == by_rank[i], i
    assert tokens[151643:151646] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert tokens[151643 + 214] == "<img>" and tokens[151643 + 216] == "<imgpad>"
    assert tokens[151860] == "[PAD151860]" and types[151860] == 5 and types[151643] == 3 and types[0] == 1
    # every token longer than one byte comes from exactly one merge of two lower-rank tokens
    assert len(merges) == 151643 - 256
    for merge in merges[:: 97]:
        left, right = (bytes(back[c] for c in part) for part in merge.split(" "))
        whole = left + right
        assert ranks[left] < ranks[whole] and ranks[right] < ranks[whole], merge


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    import bench_llamacpp as bl
    from reference import qwen_vl as ref

    shared_path("tokenizers", "qwen.tiktoken")
    work = tmp_path_factory.mktemp("llamacpp")
    cfg = ref.tiny_config()
    state = ref.random_state_dict(cfg, seed=0, scale=0.1)
    ref.save_checkpoint(work / "st", cfg, state)
    subprocess.run([sys.executable, "-m", "medground", "convert", str(work / "st"), str(work / "bird.gguf"),
                    "--type", "q8_0", "--no-progress"], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO / "python")))
    summary = bl.write_llamacpp_gguf(work / "bird.gguf", work / "qwen.gguf")
    return cfg, work, summary


def test_converted_file_has_llamacpp_names_and_same_bytes(converted):
    import gguf

    cfg, work, summary = converted
    src = {t.name: t for t in gguf.GGUFReader(str(work / "bird.gguf")).tensors}
    out = gguf.GGUFReader(str(work / "qwen.gguf"))
    dst = {t.name: t for t in out.tensors}
    assert out.fields["general.architecture"].contents() == "qwen"
    assert out.fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert out.fields["qwen.feed_forward_length"].contents() == 512  # llama.cpp halves it per branch
    assert out.fields["qwen.rope.dimension_count"].contents() == 64
    assert len(out.fields["tokenizer.ggml.tokens"].contents()) == cfg["vocab_size"]
    # Qwen: c_proj(w1(x) * silu(w2(x))); llama.cpp: ffn_down(ffn_up(x) * silu(ffn_gate(x)))
    pairs = {"token_embd.weight": "transformer.wte.weight", "output.weight": "lm_head.weight",
             "output_norm.weight": "transformer.ln_f.weight"}
    for i in range(cfg["num_hidden_layers"]):
        h = f"transformer.h.{i}."
        pairs.update({f"blk.{i}.attn_norm.weight": h + "ln_1.weight", f"blk.{i}.attn_qkv.weight": h + "attn.c_attn.weight",
                      f"blk.{i}.attn_qkv.bias": h + "attn.c_attn.bias", f"blk.{i}.attn_output.weight": h + "attn.c_proj.weight",
                      f"blk.{i}.ffn_norm.weight": h + "ln_2.weight", f"blk.{i}.ffn_up.weight": h + "mlp.w1.weight",
                      f"blk.{i}.ffn_gate.weight": h + "mlp.w2.weight", f"blk.{i}.ffn_down.weight": h + "mlp.c_proj.weight"})
    assert set(dst) == set(pairs)
    for new, old in pairs.items():
        assert dst[new].tensor_type == src[old].tensor_type, new
        assert list(dst[new].shape) == list(src[old].shape), new
        assert np.array_equal(np.asarray(dst[new].data).view(np.uint8), np.asarray(src[old].data).view(np.uint8)), new
    assert dst["blk.0.ffn_up.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0


def test_llamacpp_on_converted_file_matches_pytorch(converted):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is benchmark-only (pip install -r requirements-bench.txt)")
    import torch

    import bench_llamacpp as bl
    from reference import qwen_vl as ref

    cfg, work, _ = converted
    ids = bl.prompt_ids(cfg["visual"]["image_start_id"] - 214, 24)
    got = bl.run_llamacpp(str(work / "qwen.gguf"), ids, 4, 1, keep_logits=True)
    model = ref.load_model(cfg, ref.gguf_state_dict(work / "bird.gguf"))  # the file's own dequantised weights
    with torch.no_grad():
        logits, _, past = model.forward(ids)
    want = logits[-1].double().numpy()
    have = np.asarray(got["prefill_logits"], dtype=np.float64)
    assert np.corrcoef(have, want)[0, 1] > 0.995
    assert int(np.argmax(have)) == int(np.argmax(want))
