"""`medground convert` / `medground inspect`: type policy, metadata from
config.json, embedded tokenizers, progress bar and summary, CLI exit codes,
and bounded memory while streaming. GGUF output is read back with llama.cpp's
`gguf` package; tokenizers embedded in it are loaded by tiktoken /
sentencepiece themselves."""

from __future__ import annotations

import json
import os
import re
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_path

gguf = pytest.importorskip("gguf")
from gguf.quants import quantize  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

import medground  # noqa: E402
from medground.checkpoint import Weights, choose_type, convert, inspect  # noqa: E402
from medground.checkpoint.sources import TensorInfo  # noqa: E402
from medground.errors import InvalidArgumentError  # noqa: E402

Q = gguf.GGMLQuantizationType
PYTHON_ENV = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parent.parent / "python"))


def bird_like_tensors(rng) -> dict[str, np.ndarray]:
    """Tensor names as Qwen-VL-Chat's checkpoint has them (tiny sizes)."""
    f = np.float32
    return {
        "transformer.wte.weight": rng.standard_normal((64, 64)).astype(f),
        "transformer.h.0.ln_1.weight": rng.standard_normal(64).astype(f),
        "transformer.h.0.attn.c_attn.weight": rng.standard_normal((192, 64)).astype(f),
        "transformer.h.0.attn.c_attn.bias": rng.standard_normal(192).astype(f),
        "transformer.h.0.mlp.w1.weight": rng.standard_normal((96, 64)).astype(f),
        "transformer.visual.positional_embedding": rng.standard_normal((256, 64)).astype(f),
        "transformer.visual.conv1.weight": rng.standard_normal((64, 3, 4, 4)).astype(f),
        "transformer.visual.ln_pre.weight": rng.standard_normal(64).astype(f),
        "transformer.visual.attn_pool.query": rng.standard_normal((16, 48)).astype(f),   # rows of 48
        "transformer.visual.attn_pool.ln_q.weight": rng.standard_normal((4, 256)).astype(f),
        "transformer.visual.proj": rng.standard_normal((8, 64)).astype(f),              # 512 < 1024
        "lm_head.weight": rng.standard_normal((64, 64)).astype(np.float16),
        "position_ids": np.arange(32, dtype=np.int64),
    }


# stored type under --type q8_0 / q4_0, derived by hand from the policy in convert.py:
# 1-D -> f32; < 1024 elements, 4-D, rows not a multiple of 32, or names of
# norms/biases/position tables -> f16; ints keep their type; else the target.
EXPECTED_QUANT = {
    "transformer.wte.weight": "Q", "transformer.h.0.ln_1.weight": "f32",
    "transformer.h.0.attn.c_attn.weight": "Q", "transformer.h.0.attn.c_attn.bias": "f32",
    "transformer.h.0.mlp.w1.weight": "Q", "transformer.visual.positional_embedding": "f16",
    "transformer.visual.conv1.weight": "f16", "transformer.visual.ln_pre.weight": "f32",
    "transformer.visual.attn_pool.query": "f16", "transformer.visual.attn_pool.ln_q.weight": "f16",
    "transformer.visual.proj": "f16", "lm_head.weight": "Q", "position_ids": "i64",
}


@pytest.fixture
def bird_folder(tmp_path):
    """A BiRD (Qwen-VL-Chat) folder: the real config.json, generation and
    tokenizer configs and qwen.tiktoken, with tiny safetensors shards."""
    real = shared_path("checkpoints", "qwen-vl-chat-int4")
    tiktoken_file = shared_path("tokenizers", "qwen.tiktoken")
    folder = tmp_path / "Qwen-VL-Chat"
    folder.mkdir()
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        shutil.copy(real / name, folder / name)
    os.symlink(tiktoken_file, folder / "qwen.tiktoken")
    tensors = bird_like_tensors(np.random.default_rng(0))
    names = list(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:6], "model-00002-of-00002.safetensors": names[6:]}
    weight_map = {}
    for shard, shard_names in shards.items():
        save_file({n: tensors[n] for n in shard_names}, folder / shard, metadata={"format": "pt"})
        weight_map.update({n: shard for n in shard_names})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 0},
                                                                      "weight_map": weight_map}))
    return folder, tensors


@pytest.mark.parametrize("target", ["q8_0", "q4_0"])
def test_convert_type_policy_and_blocks(bird_folder, tmp_path, target):
    folder, tensors = bird_folder
    out = tmp_path / f"bird-{target}.gguf"
    summary = convert(folder, out, type=target, progress=False)
    reader = gguf.GGUFReader(out)
    got = {t.name: t for t in reader.tensors}
    assert sorted(got) == sorted(tensors)
    qtype = {"q8_0": Q.Q8_0, "q4_0": Q.Q4_0}[target]
    ggml = {"Q": qtype, "f32": Q.F32, "f16": Q.F16, "i64": Q.I64}
    for name, value in tensors.items():
        expected = EXPECTED_QUANT[name]
        assert got[name].tensor_type == ggml[expected], name
        assert [int(s) for s in got[name].shape] == list(reversed(value.shape)), name
        data = np.asarray(got[name].data)
        if expected == "Q":
            np.testing.assert_array_equal(data, quantize(value.astype(np.float32), qtype), err_msg=name)
        elif expected == "f16":
            np.testing.assert_array_equal(data, value.astype(np.float16), err_msg=name)
        else:
            np.testing.assert_array_equal(data, value.astype(data.dtype), err_msg=name)
    counts = {}
    for expected in EXPECTED_QUANT.values():
        key = target if expected == "Q" else expected
        counts[key] = counts.get(key, 0) + 1
    assert summary.types == counts
    assert summary.n_tensors == len(tensors) and summary.architecture == "bird"
    assert summary.bytes_in == sum(v.nbytes for v in tensors.values())
    assert summary.bytes_out == out.stat().st_size
    text = str(summary)
    assert f"wrote {out}" in text and "architecture bird; 13 tensors" in text
    assert "medground.tokenizer.qwen_tiktoken" in text


def test_choose_type_policy_table():
    cases = [
        (("model.layers.0.mlp.up_proj.weight", "bf16", (128, 64)), {"f32": "f32", "f16": "f16", "bf16": "bf16",
                                                                    "q8_0": "q8_0", "q4_0": "q4_0"}),
        (("model.norm.weight", "bf16", (64,)), {t: "f32" for t in ("f32", "f16", "bf16", "q8_0", "q4_0")}),
        (("x.bias", "f16", (64, 64)), {"f16": "f16", "q8_0": "f16", "q4_0": "f16", "f32": "f32"}),
        (("vision.pos_embed", "f32", (1, 64, 64)), {"q8_0": "f16", "bf16": "bf16"}),
        (("rel_pos_h", "f32", (127, 64)), {"q4_0": "f16"}),
        (("small", "f32", (16, 32)), {"q8_0": "f16", "f16": "f16"}),
        (("conv", "f32", (64, 64, 3, 3)), {"q8_0": "f16", "bf16": "bf16"}),
        (("odd_rows", "f32", (64, 100)), {"q4_0": "f16"}),
        (("ids", "i64", (4, 4)), {"q8_0": "i64", "f16": "i64"}),
        (("mask", "bool", (4,)), {"q8_0": "i8"}),
        (("bytes", "u8", (4,)), {"f32": "i16"}),
        (("already", "q4_0", (64, 64)), {"q8_0": "q4_0", "f32": "f32"}),
        # GPTQ (Qwen-VL-Chat-Int4): packed ints keep their type, group scales stay f16
        (("transformer.h.0.attn.c_attn.qweight", "i32", (512, 12288)), {"q8_0": "i32"}),
        (("transformer.h.0.attn.c_attn.scales", "f16", (32, 12288)), {"q8_0": "f16", "q4_0": "f16", "f16": "f16"}),
    ]
    for (name, dtype, shape), expected in cases:
        info = TensorInfo(name, dtype, shape, 0)
        for target, stored in expected.items():
            assert choose_type(info, target) == stored, (name, target)


def test_convert_metadata_from_config_and_embedded_tokenizer(bird_folder, tmp_path):
    tiktoken = pytest.importorskip("tiktoken")
    folder, _ = bird_folder
    out = tmp_path / "bird.gguf"
    convert(folder, out, type="f16", progress=False)
    config = json.loads((folder / "config.json").read_text())
    fields = gguf.GGUFReader(out).fields
    vt = gguf.GGUFValueType
    assert fields["general.architecture"].contents() == "bird"
    assert fields["bird.hidden_size"].contents() == config["hidden_size"] == 4096
    assert fields["bird.hidden_size"].types == [vt.INT64]
    assert fields["bird.num_hidden_layers"].contents() == 32
    assert fields["bird.layer_norm_epsilon"].contents() == 1e-6
    assert fields["bird.layer_norm_epsilon"].types == [vt.FLOAT64]
    assert fields["bird.visual.width"].contents() == 1664 and fields["bird.visual.mlp_ratio"].contents() == 4.9231
    assert fields["bird.use_logn_attn"].contents() is True and fields["bird.use_logn_attn"].types == [vt.BOOL]
    assert fields["bird.architectures"].contents() == ["QWenLMHeadModel"]
    assert fields["bird.quantization_config.bits"].contents() == 4
    assert "bird.onnx_safe" not in fields  # null values are skipped
    assert fields["medground.convert.type"].contents() == "f16"
    assert fields["medground.convert.source_format"].contents() == "safetensors"
    # the tokenizer file is embedded byte for byte, and tiktoken reads it back
    embedded = bytes(fields["medground.tokenizer.qwen_tiktoken"].parts[-1])
    assert embedded == (folder / "qwen.tiktoken").read_bytes()
    (tmp_path / "back.tiktoken").write_bytes(embedded)
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(tmp_path / "back.tiktoken"))
    assert len(ranks) == 151643 and ranks[b"!"] == 0
    gen = json.loads(bytes(fields["medground.generation_config_json"].parts[-1]))
    assert gen == json.loads((folder / "generation_config.json").read_text())
    # our reader exposes the hyper-parameters as config.* too
    meta = Weights(str(out)).metadata()
    assert meta["config.hidden_size"] == 4096 and meta["config.visual.patch_size"] == 14
    assert meta["medground.tokenizer.qwen_tiktoken"].encode() == embedded


def test_convert_llava_folder_embeds_sentencepiece(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    torch = pytest.importorskip("torch")
    model_file = shared_path("tokenizers", "llama.tokenizer.model")
    folder = tmp_path / "medplib"
    folder.mkdir()
    shutil.copy(model_file, folder / "tokenizer.model")
    (folder / "config.json").write_text(json.dumps({"model_type": "llava_llama", "hidden_size": 64,
                                                     "mm_projector_type": "mlp2x_gelu", "moe": {"num_experts": 4}}))
    torch.save({"model.mm_projector.0.weight": torch.randn(64, 64), "model.norm.weight": torch.ones(64)},
               folder / "pytorch_model.bin")
    summary = convert(folder, tmp_path / "m.gguf", type="q8_0", progress=False)
    assert summary.architecture == "medplib"
    # (gguf.GGUFReader takes ~15 s on a 500 KB u8 array — one part per
    # element — so this file is read back with our reader; the sentencepiece
    # library itself checks the bytes, and array[u8] -> GGUFReader is covered
    # by test_our_gguf_writer_read_by_gguf_package)
    w = Weights(str(tmp_path / "m.gguf"))
    meta, types = w.metadata(), w.metadata_types()
    assert meta["medplib.hidden_size"] == 64 and meta["medplib.moe.num_experts"] == 4
    assert types["medground.tokenizer.sentencepiece_model"] == "array[u8]"
    blob = meta["medground.tokenizer.sentencepiece_model"].tobytes()
    assert blob == model_file.read_bytes()
    reference = spm.SentencePieceProcessor(model_file=str(model_file))
    embedded = spm.SentencePieceProcessor(model_proto=blob)
    text = "A CT scan of the left kidney."
    assert embedded.encode(text) == reference.encode(text) and embedded.vocab_size() == 32000


def test_detect_architecture_from_names(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"model": {"image_encoder.patch_embed.proj.weight": torch.randn(8, 3, 4, 4),
                          "mask_decoder.iou_token.weight": torch.randn(1, 8)}, "epoch": 1}, tmp_path / "sam.pth")
    summary = convert(tmp_path / "sam.pth", tmp_path / "sam.gguf", progress=False)
    assert summary.architecture == "sam_med2d"
    assert gguf.GGUFReader(tmp_path / "sam.gguf").fields["general.architecture"].contents() == "sam_med2d"


def test_convert_progress_bar_and_arguments(bird_folder, tmp_path, capsys):
    folder, tensors = bird_folder
    convert(folder, tmp_path / "p.gguf", type="f32", progress="always")
    err = capsys.readouterr().err
    assert "convert" in err and "100%" in err
    convert(folder, tmp_path / "q.gguf", type="f32", progress=False)
    assert capsys.readouterr().err == ""
    with pytest.raises(InvalidArgumentError, match="type 'q5_k'"):
        convert(folder, tmp_path / "x.gguf", type="q5_k")
    src = tmp_path / "p.gguf"
    with pytest.raises(InvalidArgumentError, match="would overwrite the input"):
        convert(src, src, progress=False)
    assert medground.convert is convert and medground.inspect is inspect


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "medground", *map(str, args)], capture_output=True, text=True,
                          env=PYTHON_ENV, timeout=120)


def test_cli_convert_and_inspect(bird_folder, tmp_path):
    folder, tensors = bird_folder
    out = tmp_path / "cli.gguf"
    result = run_cli("convert", folder, out, "--type", "q4_0")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout and "architecture bird" in result.stdout
    assert "q4_0" in result.stdout and "100%" in result.stderr  # tqdm bar on stderr
    assert {t.name for t in gguf.GGUFReader(out).tensors} == set(tensors)

    result = run_cli("inspect", out)
    assert result.returncode == 0, result.stderr
    assert f"{out}: gguf, 13 tensors" in result.stdout
    assert re.search(r"transformer\.h\.0\.attn\.c_attn\.weight +q4_0 +\[192, 64\]", result.stdout)
    assert "general.architecture = 'bird'" in result.stdout

    result = run_cli("inspect", "--json", folder)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "safetensors" and info["n_tensors"] == 13
    by_name = {t["name"]: t for t in info["tensors"]}
    assert by_name["transformer.visual.conv1.weight"]["shape"] == [64, 3, 4, 4]
    assert by_name["lm_head.weight"]["dtype"] == "f16" and by_name["lm_head.weight"]["nbytes"] == 64 * 64 * 2
    assert info["n_parameters"] == sum(v.size for v in tensors.values())

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10" + bytes(7) + b"{}")
    result = run_cli("inspect", bad)
    assert result.returncode == 3 and "bad.safetensors: header length 16 runs past the end" in result.stderr
    result = run_cli("convert", folder, tmp_path / "y.gguf", "--type", "q9")
    assert result.returncode == 2


def test_inspect_every_format(tmp_path):
    torch = pytest.importorskip("torch")
    import pickle

    sd = {"w": torch.randn(4, 3), "b": torch.zeros(3, dtype=torch.bfloat16)}
    torch.save(sd, tmp_path / "a.pth")
    torch.save(sd, tmp_path / "b.pth", _use_new_zipfile_serialization=False)
    with open(tmp_path / "c.pdparams", "wb") as f:
        pickle.dump({k: v.float().numpy() for k, v in sd.items()}, f, protocol=4)
    save_file({k: v.float().numpy() for k, v in sd.items()}, tmp_path / "d.safetensors")
    convert(tmp_path / "a.pth", tmp_path / "e.gguf", type="f16", progress=False)
    expected = {"a.pth": ("torch-zip", "bf16"), "b.pth": ("torch-legacy", "bf16"), "c.pdparams": ("paddle", "f32"),
                "d.safetensors": ("safetensors", "f32"), "e.gguf": ("gguf", "f32")}
    for name, (fmt, b_dtype) in expected.items():
        info = inspect(tmp_path / name)
        assert info.format == fmt, name
        tensors = {t.name: t for t in info.tensors}
        assert tensors["w"].shape == (4, 3) and tensors["b"].shape == (3,), name
        assert tensors["b"].dtype == b_dtype, name
        assert info.n_parameters == 15
    assert inspect(tmp_path / "e.gguf").metadata["medground.convert.source_format"] == "torch-zip"
    torch.save({"model": sd, "epoch": 7, "lr": 1e-4}, tmp_path / "f.pth")
    info = inspect(tmp_path / "f.pth")
    assert info.metadata == {"pickle.epoch": 7, "pickle.lr": 1e-4}
    assert "pickle.epoch = 7" in info.format_table()


MEMORY_PROBE = r"""
import sys, threading, time, json
sys.path.insert(0, sys.argv[1])
from medground.checkpoint import convert

def anon_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])

peak = [0]
stop = False
def sample():
    while not stop:
        peak[0] = max(peak[0], anon_kb())
        time.sleep(0.0005)

import tracemalloc
base = anon_kb()
thread = threading.Thread(target=sample)
thread.start()
tracemalloc.start()  # exact peak of Python/NumPy allocations (C buffers: RssAnon samples)
convert(sys.argv[2], sys.argv[3], type=sys.argv[4], progress=False)
traced_peak = tracemalloc.get_traced_memory()[1]
stop = True
thread.join()
print(json.dumps({"base_kb": base, "peak_kb": max(peak[0], anon_kb()), "traced_peak_kb": traced_peak // 1024}))
"""


@pytest.mark.parametrize("source, target", [("safetensors", "q8_0"), ("torch", "f16")])
def test_convert_streams_with_bounded_memory(tmp_path, source, target):
    """16 tensors of 4 MB (64 MB): peak anonymous memory during convert
    stays near one tensor, far below the model (mapped file pages are not
    anonymous memory, so RssAnon counts only what convert allocates)."""
    n_tensors, rows, cols = 16, 1024, 1024
    rng = np.random.default_rng(1)
    block = rng.standard_normal((rows, cols)).astype(np.float32)
    if source == "safetensors":
        src = tmp_path / "big.safetensors"
        save_file({f"layer.{i}.weight": block for i in range(n_tensors)}, src)
    else:
        torch = pytest.importorskip("torch")
        src = tmp_path / "big.pth"
        torch.save({f"layer.{i}.weight": torch.from_numpy(block).clone().bfloat16() if i % 2 else
                    torch.from_numpy(block).clone() for i in range(n_tensors)}, src)
    (tmp_path / "probe.py").write_text(MEMORY_PROBE)
    result = subprocess.run([sys.executable, str(tmp_path / "probe.py"), PYTHON_ENV["PYTHONPATH"], str(src),
                             str(tmp_path / "out.gguf"), target], capture_output=True, text=True, timeout=120,
                            env=PYTHON_ENV, check=True)
    memory = json.loads(result.stdout.strip().splitlines()[-1])
    grown_mb = (memory["peak_kb"] - memory["base_kb"]) / 1024
    tensor_mb = rows * cols * 4 / 2**20
    assert memory["traced_peak_kb"] / 1024 < 2 * tensor_mb, f"{memory}: Python/NumPy peak above two tensors"
    # C buffers are a few MB, but glibc keeps freed heap up to its (dynamic)
    # trim threshold, so allow 6 tensors: holding the model would be 16.
    assert grown_mb < 6 * tensor_mb, f"{memory}: convert grew anonymous memory by {grown_mb:.1f} MB (one tensor: 4 MB)"
    assert Weights(str(tmp_path / "out.gguf")).info("layer.15.weight")[0] == target


def test_config_json_odd_values(tmp_path):
    """Hyper-parameters the writer cannot type directly: ints beyond int64
    (scalar and in lists) become f64, mixed lists and nulls are skipped."""
    folder = tmp_path / "odd"
    folder.mkdir()
    save_file({"w": np.ones((2, 2), np.float32)}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({
        "huge": 2**70, "huge_list": [1, 2**70], "mixed": [1, "a"], "flags": [True, False], "none": None,
        "nested": {"deep": {"x": 1.5}}, "empty": [], "objects": [{"a": 1}]}))
    convert(folder, tmp_path / "o.gguf", progress=False)
    fields = gguf.GGUFReader(tmp_path / "o.gguf").fields
    assert fields["generic.huge"].types == [gguf.GGUFValueType.FLOAT64] and fields["generic.huge"].contents() == 2.0**70
    assert fields["generic.huge_list"].contents() == [1.0, 2.0**70]
    assert fields["generic.flags"].contents() == [1, 0]
    assert fields["generic.nested.deep.x"].contents() == 1.5
    for skipped in ("mixed", "none", "empty", "objects"):
        assert f"generic.{skipped}" not in fields
    # the C reader flattens the same config.json next to the safetensors file
    meta = Weights(str(folder)).metadata()
    assert meta["config.nested.deep.x"] == 1.5 and "config.mixed" not in meta


def test_zero_size_tensors_are_skipped_consistently(tmp_path):
    """A zero-size tensor has no weights and GGUF sizes must be positive: the
    C readers skip it in safetensors files, and convert skips it for pickles
    too (it used to fail with a ShapeError), saying so in the summary."""
    torch = pytest.importorskip("torch")
    torch.save({"empty": torch.zeros(0, 3), "w": torch.ones(2, 2)}, tmp_path / "e.pt")
    save_file({"empty": np.zeros((0, 3), np.float32), "w": np.ones((2, 2), np.float32)}, tmp_path / "e.safetensors")
    for src in ("e.pt", "e.safetensors"):
        summary = convert(tmp_path / src, tmp_path / "e.gguf", type="f32", progress=False)
        assert [t.name for t in gguf.GGUFReader(tmp_path / "e.gguf").tensors] == ["w"], src
        assert summary.n_tensors == 1
    summary = convert(tmp_path / "e.pt", tmp_path / "e.gguf", progress=False)
    assert summary.skipped == ["empty"] and "skipped 1 zero-size tensor(s): empty" in str(summary)
