"""Checkpoint readers and the GGUF writer against independent references.

References: PyTorch 2.13 (`torch.save` writes the files, the tensors it saved
are the expected values), the `safetensors` / `huggingface_hub` packages
(sharded HF folders exactly as HF writes them), and llama.cpp's `gguf`
package (GGUFReader reads our files, GGUFWriter writes files we read, and
gguf.quants.quantize is the reference for Q8_0/Q4_0 block bytes).
Nothing here compares against medground's own earlier output.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize, quantize  # noqa: E402

from medground.checkpoint import GGUFWriter, Weights, convert, inspect, read_pickle_checkpoint  # noqa: E402
from medground.errors import FormatError, UnsafeError, UnsupportedError  # noqa: E402

Q = gguf.GGMLQuantizationType


def bits(t: "torch.Tensor") -> np.ndarray:
    """A torch tensor as NumPy, bf16 as its uint16 bit patterns (how our
    readers expose bf16), strided views materialised by torch itself."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def f32_of(t: "torch.Tensor") -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def sample_state_dict() -> dict:
    """Every dtype a checkpoint carries, plus views and shared storages."""
    g = torch.Generator().manual_seed(7)
    base = torch.randn(6, 40, generator=g)
    sd = {
        "f32": base,
        "f16": torch.randn(5, 33, generator=g).half(),
        "bf16": (torch.randn(4, 64, generator=g) * 100).to(torch.bfloat16),
        "f64": torch.randn(3, 3, generator=g, dtype=torch.float64),
        "i64": torch.arange(-5, 12, dtype=torch.int64),
        "i32": torch.arange(10, dtype=torch.int32).reshape(2, 5) * -7,
        "i8": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        # views: storage offset, slicing strides, transposes, 3-D/4-D permutes
        "view.offset": base[2:5, 3:11],
        "view.step": base[::2, 1::3],
        "view.t": base.t(),
        "view.row": base[4],
        "conv": torch.randn(4, 3, 2, 2, generator=g).permute(0, 2, 3, 1),
        # shared storage: two names over the same bytes, one a slice of the other
        "shared.a": base,
        "shared.b": base[1:3],
    }
    sd["bf16.view"] = sd["bf16"][1:3, ::2]
    sd["f16.t"] = sd["f16"].t()
    return sd


def assert_matches(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for name, t in expected.items():
        array = got[name].array
        assert array.shape == tuple(t.shape), name
        np.testing.assert_array_equal(array, bits(t), err_msg=name)
        assert array.dtype == bits(t).dtype, name


# --------------------------------------------------------------- torch.save


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("wrapper", [None, "model", "state_dict"])
def test_torch_save_round_trip(tmp_path, zipfile, wrapper):
    sd = sample_state_dict()
    obj = sd if wrapper is None else {wrapper: sd, "epoch": 12, "best": 0.5, "arch": "vit_b"}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=zipfile)
    ckpt = read_pickle_checkpoint(path)
    assert ckpt.format == ("torch-zip" if zipfile else "torch-legacy")
    assert_matches(ckpt.tensors, sd)
    if wrapper:
        assert ckpt.extra == {"epoch": 12, "best": 0.5, "arch": "vit_b"}
    # shared storage stays shared (views of one buffer, no copies)
    a, b = ckpt.tensors["shared.a"].array, ckpt.tensors["shared.b"].array
    assert np.shares_memory(a, b)
    assert ckpt.tensors["bf16"].dtype == "bf16"
    np.testing.assert_array_equal(ckpt.tensors["bf16"].to_float32(), f32_of(sd["bf16"]))


def test_torch_module_state_dict_parameters_and_nesting(tmp_path):
    """A real nn.Module state dict (OrderedDict with _metadata), Parameters
    saved directly, and nested dicts/lists flattened with '.'."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4), torch.nn.Conv2d(2, 3, 3))
    param = torch.nn.Parameter(torch.randn(2, 3).to(torch.bfloat16))
    obj = {"state_dict": model.state_dict(), "extra_param": param}
    torch.save(obj, tmp_path / "m.pt")
    # not only tensors at top level -> the dict is flattened, wrapper included
    ckpt = read_pickle_checkpoint(tmp_path / "m.pt")
    expected = {f"state_dict.{k}": v for k, v in model.state_dict().items()}
    expected["extra_param"] = param
    assert_matches(ckpt.tensors, expected)

    nested = {"layers": [{"w": torch.ones(2)}, {"w": torch.zeros(3)}], "head": {"b": torch.arange(4)}}
    torch.save(nested, tmp_path / "n.pt")
    ckpt = read_pickle_checkpoint(tmp_path / "n.pt")
    assert_matches(ckpt.tensors, {"layers.0.w": nested["layers"][0]["w"], "layers.1.w": nested["layers"][1]["w"],
                                  "head.b": nested["head"]["b"]})


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_torch_save_convert_to_gguf_bit_exact(tmp_path, zipfile):
    """.pth -> GGUF (f32 target): every float tensor is the exact f32 value
    torch holds; ints are kept; the gguf package agrees on names/types/shapes."""
    sd = sample_state_dict()
    del sd["scalar"]
    torch.save({"model": sd}, tmp_path / "c.pth", _use_new_zipfile_serialization=zipfile)
    summary = convert(tmp_path / "c.pth", tmp_path / "c.gguf", type="f32", progress=False)
    assert summary.n_tensors == len(sd)
    w = Weights(str(tmp_path / "c.gguf"))
    reader = gguf.GGUFReader(tmp_path / "c.gguf")
    by_name = {t.name: t for t in reader.tensors}
    assert list(by_name) == list(sd)
    widened = {torch.bool: (np.int8, Q.I8), torch.uint8: (np.int16, Q.I16)}
    for name, t in sd.items():
        info = w.info(name)
        assert info[1] == tuple(t.shape), name
        rt = by_name[name]
        # GGUF stores ne[] innermost first: the reader's shape is reversed
        assert [int(s) for s in rt.shape] == list(reversed(t.shape)), name
        assert tuple(rt.data.shape) == tuple(t.shape), name
        if t.dtype.is_floating_point:
            assert rt.tensor_type == Q.F32, name
            np.testing.assert_array_equal(w[name], f32_of(t), err_msg=name)
            np.testing.assert_array_equal(np.asarray(rt.data), f32_of(t), err_msg=name)
        elif t.dtype in widened:
            numpy_type, ggml_type = widened[t.dtype]
            assert rt.tensor_type == ggml_type, name
            np.testing.assert_array_equal(w[name], t.numpy().astype(numpy_type), err_msg=name)
        else:
            np.testing.assert_array_equal(w[name], t.numpy(), err_msg=name)
            np.testing.assert_array_equal(np.asarray(rt.data), t.numpy(), err_msg=name)


def test_torch_save_convert_keeps_bf16_and_f16_bits(tmp_path):
    """bf16 target on bf16 data and f16 target on f16 data are byte copies."""
    g = torch.Generator().manual_seed(3)
    sd = {"a.weight": (torch.randn(64, 96, generator=g) * 7).to(torch.bfloat16),
          "b.weight": torch.randn(32, 64, generator=g).half()}
    torch.save(sd, tmp_path / "p.bin")
    convert(tmp_path / "p.bin", tmp_path / "bf.gguf", type="bf16", progress=False)
    convert(tmp_path / "p.bin", tmp_path / "h.gguf", type="f16", progress=False)
    bf = {t.name: t for t in gguf.GGUFReader(tmp_path / "bf.gguf").tensors}
    h = {t.name: t for t in gguf.GGUFReader(tmp_path / "h.gguf").tensors}
    assert bf["a.weight"].tensor_type == Q.BF16 and h["b.weight"].tensor_type == Q.F16
    np.testing.assert_array_equal(np.asarray(bf["a.weight"].data).view(np.uint16), bits(sd["a.weight"]))
    np.testing.assert_array_equal(np.asarray(h["b.weight"].data).view(np.uint16), bits(sd["b.weight"]).view(np.uint16))
    # cross conversions round like torch does (round to nearest even)
    np.testing.assert_array_equal(np.asarray(h["a.weight"].data), bits(sd["a.weight"].half()))
    np.testing.assert_array_equal(np.asarray(bf["b.weight"].data).view(np.uint16),
                                  bits(sd["b.weight"].to(torch.bfloat16)))


# --------------------------------------------------------------- safetensors


def hf_state_dict() -> dict:
    g = torch.Generator().manual_seed(11)
    sd = {}
    for i in range(3):
        sd[f"model.layers.{i}.self_attn.q_proj.weight"] = torch.randn(64, 64, generator=g).to(torch.bfloat16)
        sd[f"model.layers.{i}.mlp.up_proj.weight"] = torch.randn(128, 64, generator=g).half()
        sd[f"model.layers.{i}.input_layernorm.weight"] = torch.randn(64, generator=g)
    sd["model.embed_tokens.weight"] = torch.randn(100, 64, generator=g)
    sd["position_ids"] = torch.arange(16, dtype=torch.int64)
    sd["mask"] = torch.tensor([True, False])
    sd["tokens_u8"] = torch.arange(7, dtype=torch.uint8)
    sd["i32"] = torch.tensor([-3, 7], dtype=torch.int32)
    return sd


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_hf_sharded_folder(tmp_path, safe):
    """huggingface_hub.save_torch_state_dict writes the shards and the
    model.safetensors.index.json / pytorch_model.bin.index.json as HF does."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    sd = hf_state_dict()
    huggingface_hub.save_torch_state_dict(sd, tmp_path, max_shard_size="40KB", safe_serialization=safe)
    index = tmp_path / ("model.safetensors.index.json" if safe else "pytorch_model.bin.index.json")
    weight_map = json.loads(index.read_text())["weight_map"]
    assert len(set(weight_map.values())) >= 3  # really sharded
    info = inspect(tmp_path)
    assert sorted(t.name for t in info.tensors) == sorted(sd)
    names = {"bool": "bool", "uint8": "u8", "int32": "i32", "int64": "i64", "float32": "f32",
             "float16": "f16", "bfloat16": "bf16"}
    for t in info.tensors:
        assert t.dtype == names[str(sd[t.name].dtype).split(".")[1]], t.name
        assert t.shape == tuple(sd[t.name].shape)
        assert t.nbytes == sd[t.name].numel() * sd[t.name].element_size()
    if safe:
        w = Weights(str(tmp_path))
        assert sorted(w.names()) == sorted(sd)
        for name, t in sd.items():
            np.testing.assert_array_equal(w[name], bits(t), err_msg=name)
            assert not w[name].flags.writeable
        assert Weights(str(index)).names() == w.names()
    out = tmp_path / "out.gguf"
    convert(tmp_path, out, type="f32", progress=False)
    w = Weights(str(out))
    for name, t in sd.items():
        if t.dtype.is_floating_point:
            np.testing.assert_array_equal(w[name], f32_of(t), err_msg=name)
        else:
            np.testing.assert_array_equal(w[name], t.numpy().astype(w[name].dtype), err_msg=name)


def test_safetensors_package_file_and_metadata(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(5)
    tensors = {"b": rng.standard_normal((3, 4)).astype(np.float32), "a": np.arange(6, dtype=np.int64),
               "c": rng.standard_normal((1, 2, 2, 2, 3)).astype(np.float16)}
    save_file(tensors, tmp_path / "x.safetensors", metadata={"format": "pt", "note": "hi"})
    w = Weights(str(tmp_path / "x.safetensors"))
    assert sorted(w.names()) == ["a", "b", "c"]
    for name, value in tensors.items():
        np.testing.assert_array_equal(w[name], value.reshape(value.shape[1:]) if name == "c" else value)
    assert w.info("c")[1] == (2, 2, 2, 3)  # a leading 1 of a 5-D shape is dropped (medground is <= 4-D)
    assert w.metadata()["safetensors.format"] == "pt"
    assert w.metadata()["safetensors.note"] == "hi"
    save_file({"video": np.zeros((2, 2, 2, 2, 2), np.float32)}, tmp_path / "5d.safetensors")
    with pytest.raises(UnsupportedError, match=r"5d.safetensors: tensor video: 5 dimensions"):
        Weights(str(tmp_path / "5d.safetensors"))


# --------------------------------------------------------------------- GGUF


def write_reference_gguf(path, alignment: int | None = None):
    """A GGUF written by llama.cpp's own writer: every metadata value type,
    arrays, optional custom alignment, and f32/f16/bf16/q8_0/q4_0/int tensors."""
    rng = np.random.default_rng(21)
    writer = gguf.GGUFWriter(path, arch="bird")
    if alignment:
        writer.add_custom_alignment(alignment)
    values = {
        "t.u8": (np.uint8(200), gguf.GGUFValueType.UINT8), "t.i8": (-100, gguf.GGUFValueType.INT8),
        "t.u16": (60000, gguf.GGUFValueType.UINT16), "t.i16": (-30000, gguf.GGUFValueType.INT16),
        "t.u32": (4000000000, gguf.GGUFValueType.UINT32), "t.i32": (-2000000000, gguf.GGUFValueType.INT32),
        "t.u64": (2**63 + 5, gguf.GGUFValueType.UINT64), "t.i64": (-(2**62), gguf.GGUFValueType.INT64),
        "t.f32": (0.1, gguf.GGUFValueType.FLOAT32), "t.f64": (0.1, gguf.GGUFValueType.FLOAT64),
        "t.bool": (True, gguf.GGUFValueType.BOOL), "t.string": ("héllo wörld", gguf.GGUFValueType.STRING),
    }
    for key, (value, vtype) in values.items():
        writer.add_key_value(key, value, vtype)
    writer.add_array("t.arr_i32", [1, -2, 3])
    writer.add_array("t.arr_f32", [0.5, 1.5])
    writer.add_array("t.arr_str", ["a", "", "ünï"])
    writer.add_key_value("t.arr_u8", [1, 2, 255], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT8)
    writer.add_uint32("bird.block_count", 2)
    tensors = {
        "w.f32": rng.standard_normal((3, 5)).astype(np.float32),
        "w.f16": rng.standard_normal((2, 3, 4)).astype(np.float16),
        "w.i32": np.arange(12, dtype=np.int32).reshape(3, 4),
        "w.i8": np.array([-3, 4], dtype=np.int8),
        "w.f64": rng.standard_normal(5),
    }
    raw = {
        "w.bf16": (rng.standard_normal((4, 8)).astype(np.float32), Q.BF16),
        "w.q8": (rng.standard_normal((3, 64)).astype(np.float32) * 4, Q.Q8_0),
        "w.q4": (rng.standard_normal((2, 2, 96)).astype(np.float32), Q.Q4_0),
    }
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    for name, (value, qtype) in raw.items():
        writer.add_tensor(name, quantize(value, qtype), raw_dtype=qtype)  # byte shape in
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return values, tensors, raw


@pytest.mark.parametrize("alignment", [None, 64, 1])
def test_read_gguf_written_by_gguf_package(tmp_path, alignment):
    path = tmp_path / "ref.gguf"
    values, tensors, raw = write_reference_gguf(path, alignment)
    w = Weights(str(path))
    meta, types = w.metadata(), w.metadata_types()
    assert meta["general.architecture"] == "bird"
    for key, (value, vtype) in values.items():
        assert types[key] == {"UINT8": "u8", "INT8": "i8", "UINT16": "u16", "INT16": "i16", "UINT32": "u32",
                              "INT32": "i32", "UINT64": "u64", "INT64": "i64", "FLOAT32": "f32",
                              "FLOAT64": "f64", "BOOL": "bool", "STRING": "string"}[vtype.name], key
        if vtype == gguf.GGUFValueType.FLOAT32:
            assert meta[key] == float(np.float32(value))
        else:
            assert meta[key] == value, key
    assert meta["t.arr_i32"].tolist() == [1, -2, 3] and types["t.arr_i32"] == "array[i32]"
    assert meta["t.arr_f32"].tolist() == [0.5, 1.5] and types["t.arr_f32"] == "array[f32]"
    assert meta["t.arr_str"] == ["a", "", "ünï"] and types["t.arr_str"] == "array[string]"
    assert meta["t.arr_u8"].tolist() == [1, 2, 255] and types["t.arr_u8"] == "array[u8]"
    if alignment:
        assert meta["general.alignment"] == alignment
    assert meta["config.block_count"] == 2  # "<arch>.X" is also "config.X"
    for name, value in tensors.items():
        np.testing.assert_array_equal(w[name], value)
        assert w.info(name)[1] == value.shape
    for name, (value, qtype) in raw.items():
        blocks = quantize(value, qtype)
        dtype, shape, nbytes = w.info(name)
        assert dtype == qtype.name.lower() and shape == value.shape and nbytes == blocks.nbytes
        np.testing.assert_array_equal(w[name].reshape(-1).view(np.uint8), blocks.reshape(-1).view(np.uint8))
        np.testing.assert_array_equal(w.to_float32(name), dequantize(blocks, qtype).reshape(value.shape))


def test_our_gguf_writer_read_by_gguf_package(tmp_path):
    """GGUFWriter (ours) -> gguf.GGUFReader: same tensors, types, logical
    shapes (ne reversed), block bytes equal to gguf.quants.quantize, and
    every metadata type round-trips with the type we asked for."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((6, 128)) * 3).astype(np.float32)
    x[0, :32] = 0.0            # an all-zero block (scale 0)
    x[1, :32] = -5.0           # constant negative block
    x[2, 40] = 1e4             # one huge outlier
    x[3, :32] = np.linspace(-1, 1, 32)  # ties at +-0.5 quant steps
    ints = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    path = tmp_path / "ours.gguf"
    w = GGUFWriter(str(path))
    w.add_string("general.architecture", "medplib")
    w.add_int("general.alignment", 64, "u32")
    for t in ("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "bool"):
        w.add_int(f"m.{t}", 1 if t == "bool" else 100, t)
    w.add_int("m.i64neg", -(2**40), "i64")
    w.add_float("m.f32", 0.25, "f32")
    w.add_float("m.f64", 1 / 3, "f64")
    w.add_string("m.str", "ünicode")
    w.add_string("m.bytes", b"\x00\x01raw")
    w.add_array("m.arr", np.array([3, 1, 2], dtype=np.int64))
    w.add_array("m.blob", np.frombuffer(b"\x00\xffbinary", dtype=np.uint8))
    w.add_array("m.arr_f32", np.array([1.5, -2], dtype=np.float32))
    w.add_string_array("m.strs", ["x", "yy", ""])
    decl = [("q8", "q8_0", x.shape), ("q4", "q4_0", x.shape), ("f16", "f16", x.shape), ("bf16", "bf16", x.shape),
            ("f32", "f32", (2, 3, 128)), ("ints", "i32", ints.shape)]
    for name, dtype, shape in decl:
        w.add_tensor_info(name, dtype, list(shape))
    w.write_tensor("q8", x)
    w.write_tensor("q4", x)
    w.write_tensor("f16", x)
    w.write_tensor("bf16", x)
    w.write_tensor("f32", x.reshape(2, 3, 128))
    w.write_tensor("ints", ints)
    w.finish()

    reader = gguf.GGUFReader(path)
    t = {r.name: r for r in reader.tensors}
    assert list(t) == [d[0] for d in decl]
    expected_types = {"q8": Q.Q8_0, "q4": Q.Q4_0, "f16": Q.F16, "bf16": Q.BF16, "f32": Q.F32, "ints": Q.I32}
    for name, dtype, shape in decl:
        assert t[name].tensor_type == expected_types[name]
        assert [int(s) for s in t[name].shape] == list(reversed(shape)), name
        assert t[name].data_offset % 64 == 0
    np.testing.assert_array_equal(np.asarray(t["q8"].data), quantize(x, Q.Q8_0))
    np.testing.assert_array_equal(np.asarray(t["q4"].data), quantize(x, Q.Q4_0))
    np.testing.assert_array_equal(np.asarray(t["f16"].data).view(np.uint16), x.astype(np.float16).view(np.uint16))
    np.testing.assert_array_equal(np.asarray(t["bf16"].data).reshape(-1).view(np.uint16),
                                  quantize(x, Q.BF16).reshape(-1).view(np.uint16))
    np.testing.assert_array_equal(np.asarray(t["f32"].data), x.reshape(2, 3, 128))
    np.testing.assert_array_equal(np.asarray(t["ints"].data), ints)

    fields = reader.fields
    vt = gguf.GGUFValueType
    expect = {"u8": vt.UINT8, "i8": vt.INT8, "u16": vt.UINT16, "i16": vt.INT16, "u32": vt.UINT32, "i32": vt.INT32,
              "u64": vt.UINT64, "i64": vt.INT64, "bool": vt.BOOL}
    for name, vtype in expect.items():
        f = fields[f"m.{name}"]
        assert f.types == [vtype], name
        assert f.contents() == (True if name == "bool" else 100), name
    assert fields["m.i64neg"].contents() == -(2**40)
    assert fields["m.f32"].types == [vt.FLOAT32] and fields["m.f32"].contents() == 0.25
    assert fields["m.f64"].types == [vt.FLOAT64] and fields["m.f64"].contents() == 1 / 3
    assert fields["m.str"].contents() == "ünicode"
    assert bytes(fields["m.bytes"].parts[-1]) == b"\x00\x01raw"
    assert fields["m.arr"].types == [vt.ARRAY, vt.INT64] and fields["m.arr"].contents() == [3, 1, 2]
    assert fields["m.blob"].types == [vt.ARRAY, vt.UINT8] and bytes(fields["m.blob"].contents()) == b"\x00\xffbinary"
    assert fields["m.arr_f32"].contents() == [1.5, -2.0]
    assert fields["m.strs"].types == [vt.ARRAY, vt.STRING] and fields["m.strs"].contents() == ["x", "yy", ""]
    assert fields["general.alignment"].contents() == 64
    assert fields["general.architecture"].contents() == "medplib"


def test_gguf_round_trip_through_convert(tmp_path):
    """A GGUF written by the gguf package, converted by us (f32 target):
    unquantized tensors bit-exact, quantized blocks never re-quantized,
    metadata carried over with its types."""
    src = tmp_path / "src.gguf"
    values, tensors, raw = write_reference_gguf(src)
    convert(src, tmp_path / "dst.gguf", type="q8_0", progress=False)
    reader = gguf.GGUFReader(tmp_path / "dst.gguf")
    t = {r.name: r for r in reader.tensors}
    np.testing.assert_array_equal(np.asarray(t["w.q4"].data).reshape(-1), quantize(raw["w.q4"][0], Q.Q4_0).reshape(-1))
    np.testing.assert_array_equal(np.asarray(t["w.q8"].data), quantize(raw["w.q8"][0], Q.Q8_0))
    assert t["w.q4"].tensor_type == Q.Q4_0
    np.testing.assert_array_equal(np.asarray(t["w.i32"].data), tensors["w.i32"])
    for key, (value, vtype) in values.items():
        assert reader.fields[key].types == [vtype], key
    assert reader.fields["t.arr_str"].contents() == ["a", "", "ünï"]
    assert reader.fields["general.architecture"].contents() == "bird"
    assert "config.block_count" not in reader.fields  # load-time alias, not re-written


# ---------------------------------------------------------- unsafe pickles


class _Payload:
    """Pickles as a call of `func(*args)` — what a malicious checkpoint does."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    import builtins

    command = f"touch {marker}"
    return {
        "os.system": (os.system, (command,)),
        "builtins.eval": (builtins.eval, (f"open({str(marker)!r}, 'w').close()",)),
        "builtins.exec": (builtins.exec, (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess.check_call": (subprocess.check_call, (["touch", str(marker)],)),
        "subprocess.Popen": (subprocess.Popen, (["touch", str(marker)],)),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "builtins.exec", "subprocess.check_call",
                                  "subprocess.Popen"])
@pytest.mark.parametrize("container", ["zip", "legacy", "plain-pickle"])
def test_malicious_pickle_runs_nothing(tmp_path, kind, container):
    marker = tmp_path / "pwned"
    func, args = _payloads(marker)[kind]
    state = {"weight": torch.ones(2), "evil": _Payload(func, args)}
    path = tmp_path / "pytorch_model.bin"
    if container == "plain-pickle":
        path.write_bytes(pickle.dumps(state["evil"], protocol=2))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=container == "zip")
    # protocol 2 (torch.save's) writes Python 2 names: __builtin__, commands
    module = {"os.system": ("posix", "os"), "builtins.eval": ("builtins", "__builtin__"),
              "builtins.exec": ("builtins", "__builtin__"), "subprocess.check_call": ("subprocess", "commands"),
              "subprocess.Popen": ("subprocess", "commands")}[kind]
    name = kind.split(".")[1]
    for call in (lambda: read_pickle_checkpoint(path), lambda: inspect(path),
                 lambda: convert(path, tmp_path / "o.gguf", progress=False)):
        with pytest.raises(UnsafeError) as error:
            call()
        message = str(error.value)
        assert str(path) in message
        assert any(f"'{m}.{name}'" in message for m in module), message
        assert not marker.exists()
    assert not (tmp_path / "o.gguf").exists() and not (tmp_path / "o.gguf.partial").exists()
    if container != "plain-pickle":
        # Control: the payload is real — the unrestricted loader runs it.
        # (subprocess.Popen returns before `touch` finishes: wait for it.)
        try:
            result = torch.load(path, weights_only=False)
            if isinstance(result.get("evil"), subprocess.Popen):
                result["evil"].wait()
        except Exception:
            pass
        assert marker.exists(), "the control load did not run the payload"


def test_unsafe_pickle_smuggling_variants(tmp_path):
    """Globals reached other ways (protocol-0 GLOBAL/INST, STACK_GLOBAL,
    copyreg extension codes, whole nn.Module pickles) are refused too."""
    marker = tmp_path / "pwned"
    cases = {
        "inst": f"(S'touch {marker}'\nios\nsystem\n.".encode(),
        "global-reduce": f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(),
        "stack-global": pickle.dumps(_Payload(os.system, (f"touch {marker}",)), protocol=4),
        "getattr": b"cbuiltins\ngetattr\n(cos\n\nS'system'\ntR.",
    }
    for label, data in cases.items():
        path = tmp_path / f"{label}.bin"
        path.write_bytes(data)
        with pytest.raises(UnsafeError, match="refusing to load global"):
            read_pickle_checkpoint(path)
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module class
    with pytest.raises(UnsafeError, match="torch.nn.modules.linear.Linear"):
        read_pickle_checkpoint(tmp_path / "module.pt")
    # copyreg extension registry: EXT1 resolves through find_class as well
    import copyreg

    module = os.system.__module__  # posix
    copyreg.add_extension(module, "system", 0xF1)
    try:
        data = pickle.dumps(_Payload(os.system, (f"touch {marker}",)), protocol=2)
        assert b"\x82\xf1" in data  # EXT1 0xf1
        (tmp_path / "ext.bin").write_bytes(data)
        with pytest.raises(UnsafeError, match=f"'{module}.system'"):
            read_pickle_checkpoint(tmp_path / "ext.bin")
    finally:
        copyreg.remove_extension(module, "system", 0xF1)
    assert not marker.exists()


# -------------------------------------------------------------- Paddle / NumPy


def paddle_state_dict():
    rng = np.random.default_rng(9)
    return {
        "linear_0.w_0": rng.standard_normal((4, 3)).astype(np.float32),
        "linear_0.b_0": rng.standard_normal(3).astype(np.float32),
        "emb.w_0": rng.standard_normal((5, 2)).astype(np.float16),
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
        "big_endian": np.arange(4, dtype=">f4"),
        "flag": np.array([True, False]),
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_paddle_pdparams(tmp_path, protocol):
    """paddle.save pickles {name: ndarray} (+ a name-mapping dict); protocol
    5 stores arrays through numpy's _frombuffer."""
    sd = paddle_state_dict()
    obj = dict(sd)
    obj["StructuredToParameterName@@"] = {k: k + "_param" for k in sd}
    path = tmp_path / "model.pdparams"
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    ckpt = read_pickle_checkpoint(path)
    assert ckpt.format == "paddle"
    assert list(ckpt.tensors) == list(sd)
    for name, value in sd.items():
        np.testing.assert_array_equal(ckpt.tensors[name].array, value)
    assert ckpt.tensors["big_endian"].array.dtype == np.dtype("<f4")
    out = tmp_path / "p.gguf"
    convert(path, out, type="f32", progress=False)
    w = Weights(str(out))
    for name, value in sd.items():
        np.testing.assert_array_equal(w[name], value.astype(w[name].dtype), err_msg=name)


def test_paddle_refuses_torch_globals_and_objects(tmp_path):
    """A Paddle pickle gets only NumPy's reconstruct globals: no torch
    storage classes, no object arrays (which could carry any object)."""
    path = tmp_path / "obj.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"x": np.array([1, "a"], dtype=object)}, f, protocol=2)
    with pytest.raises(UnsafeError):
        read_pickle_checkpoint(path)
    path = tmp_path / "torchish.pdparams"
    path.write_bytes(b"\x80\x02ctorch\nFloatStorage\n.")
    with pytest.raises(UnsafeError, match="torch.FloatStorage"):
        read_pickle_checkpoint(path)
    # numpy globals beyond the array constructors stay refused
    path = tmp_path / "np.pdparams"
    path.write_bytes(b"\x80\x02cnumpy\nload\n.")
    with pytest.raises(UnsafeError, match="numpy.load"):
        read_pickle_checkpoint(path)


def test_pickle_reader_never_imports_torch(tmp_path):
    sd = {"w": torch.ones(3, 2)}
    torch.save(sd, tmp_path / "a.pt")
    code = ("import sys; from medground.checkpoint import read_pickle_checkpoint as r; "
            f"c = r({str(tmp_path / 'a.pt')!r}); assert c.tensors['w'].array.sum() == 6; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "python"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def _special_floats(rng) -> np.ndarray:
    """Rounding edge cases: f16/bf16 ties, subnormals, overflow, inf, NaN,
    signed zeros, then random values; > 1 M elements so the writer's chunked
    conversion runs over a chunk boundary with a ragged tail."""
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, 1e6, -1e6,
                        2**-24, 2**-25, 2**-25 * 1.0001, 3 * 2**-26, 6e-8, 1e-45, -1e-40, 1 + 2**-11,
                        1 + 3 * 2**-11, 1 + 2**-8, 1 + 3 * 2**-8, 3.4e38, -3.4e38], np.float32)
    bits = np.array([0x7F800001, 0xFFC00001, 0x7FFFFFFF, 0x3F808000, 0x3F818000, 0x3F80FFFF, 0x00000001,
                     0x80000001, 0x33000000, 0x33000001, 0x477FF000], np.uint32).view(np.float32)
    body = (rng.standard_normal((1 << 20) + 37) * 10).astype(np.float32)
    return np.concatenate([special, bits, body])


def test_writer_float_conversions_exact(tmp_path):
    """f32 -> f16 / bf16 and f16 / bf16 -> f32 through the writer equal
    NumPy's IEEE conversion and gguf-py's bf16 quantizer bit for bit (NaN
    payloads aside: any NaN must stay NaN)."""
    x = _special_floats(np.random.default_rng(8))
    n = x.size
    with np.errstate(all="ignore"):
        f16 = x.astype(np.float16)
    bf16 = quantize(x, Q.BF16).view(np.uint16)
    path = tmp_path / "conv.gguf"
    w = GGUFWriter(str(path))
    for name, dtype in [("to_f16", "f16"), ("to_bf16", "bf16"), ("f16_to_f32", "f32"), ("bf16_to_f32", "f32"),
                        ("f16_to_bf16", "bf16"), ("bf16_to_f16", "f16")]:
        w.add_tensor_info(name, dtype, [n])
    w.write_tensor("to_f16", x)
    w.write_tensor("to_bf16", x)
    w.write_tensor("f16_to_f32", f16)
    w.write_tensor("bf16_to_f32", bf16, source_dtype="bf16")
    w.write_tensor("f16_to_bf16", f16)
    w.write_tensor("bf16_to_f16", bf16, source_dtype="bf16")
    w.finish()
    r = Weights(str(path))
    bf16_as_f32 = (bf16.astype(np.uint32) << 16).view(np.float32)
    with np.errstate(all="ignore"):
        expected = {"to_f16": f16, "to_bf16": bf16, "f16_to_f32": f16.astype(np.float32),
                    "bf16_to_f32": bf16_as_f32, "f16_to_bf16": quantize(f16.astype(np.float32), Q.BF16).view(np.uint16),
                    "bf16_to_f16": bf16_as_f32.astype(np.float16)}
    for name, want in expected.items():
        got = r[name]
        if name in ("to_bf16", "f16_to_bf16"):
            np.testing.assert_array_equal(got, want, err_msg=name)  # gguf-py's NaN rule too
            continue
        got_values = got.astype(np.float32)
        want_values = want.astype(np.float32)
        nan = np.isnan(want_values)
        np.testing.assert_array_equal(np.isnan(got_values), nan, err_msg=name)
        np.testing.assert_array_equal(got[~nan].view(np.uint16 if got.dtype == np.float16 else np.uint32),
                                      want[~nan].view(np.uint16 if want.dtype == np.float16 else np.uint32),
                                      err_msg=name)


def test_unsupported_torch_dtypes_are_named(tmp_path):
    """complex / float8 storages are not unsafe, just unsupported: say so."""
    torch.save({"c": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "c.pt")
    with pytest.raises(UnsupportedError, match=r"c\.pt: tensors stored as torch\.ComplexFloatStorage"):
        read_pickle_checkpoint(tmp_path / "c.pt")
    torch.save({"f8": torch.zeros(2, dtype=torch.float8_e4m3fn)}, tmp_path / "f8.pt")
    with pytest.raises(UnsupportedError, match=r"f8\.pt: tensors of dtype torch\.float8_e4m3fn are not supported"):
        read_pickle_checkpoint(tmp_path / "f8.pt")


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_torch_uint16_through_rebuild_tensor_v3(tmp_path, zipfile):
    """torch >= 2.3 saves uint16 (a "new" dtype) via _rebuild_tensor_v3 over
    an untyped byte storage; views with offsets must still land right."""
    base = torch.arange(0, 60000, 1000, dtype=torch.int32).to(torch.uint16).reshape(6, 10)
    sd = {"u16": base, "u16.view": base[1:4, ::3], "dtype_value": torch.float16}
    torch.save(sd, tmp_path / "u.pt", _use_new_zipfile_serialization=zipfile)
    ckpt = read_pickle_checkpoint(tmp_path / "u.pt")
    for name in ("u16", "u16.view"):
        assert ckpt.tensors[name].dtype == "u16"
        np.testing.assert_array_equal(ckpt.tensors[name].array, sd[name].numpy())
    convert(tmp_path / "u.pt", tmp_path / "u.gguf", progress=False)
    np.testing.assert_array_equal(Weights(str(tmp_path / "u.gguf"))["u16"], base.numpy().astype(np.int32))


def test_pickle_cannot_mutate_allowed_objects(tmp_path):
    """BUILD (set state) on an allowed function or stand-in is refused, so a
    file cannot change how later files load (e.g. a function's defaults)."""
    from medground.checkpoint import unpickler

    before = unpickler._rebuild_tensor_v2.__defaults__
    cases = {
        # GLOBAL torch._utils._rebuild_tensor_v2; state (None, {"__defaults__": (1,)}); BUILD
        "function": b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b.",
        "storage-type": b"\x80\x02ctorch\nFloatStorage\n}X\x04\x00\x00\x00nameX\x03\x00\x00\x00bads\x86b."
                        .replace(b"\x86b", b"b"),
    }
    import zipfile

    for label, data in cases.items():
        path = tmp_path / f"{label}.bin"  # a torch zip, so torch globals are allowed
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", data)
        with pytest.raises(UnsafeError, match="refusing to set state"):
            read_pickle_checkpoint(path)
    assert unpickler._rebuild_tensor_v2.__defaults__ == before


def test_large_byte_copies_and_padding(tmp_path):
    """Tensors >= 1 MB are copied with write() straight from the source
    mapping (in 8 MB pieces); small ones and the alignment padding go through
    stdio. Interleave both and check every byte and offset with gguf-py."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(2)
    tensors = {"a.big": rng.standard_normal((3000, 1001)).astype(np.float32),   # 12 MB: two 8 MB pieces
               "b.small": rng.standard_normal((3, 5)).astype(np.float32),
               "c.big16": rng.standard_normal((1024, 700)).astype(np.float16),  # 1.4 MB, odd size vs 32
               "d.tail": np.arange(7, dtype=np.int32)}
    save_file(tensors, tmp_path / "m.safetensors")
    convert(tmp_path / "m.safetensors", tmp_path / "m.gguf", type="f32", progress=False)
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    got = {t.name: t for t in reader.tensors}
    assert got["c.big16"].tensor_type == Q.F32
    for name, value in tensors.items():
        assert got[name].data_offset % 32 == 0
        np.testing.assert_array_equal(np.asarray(got[name].data), value.astype(np.asarray(got[name].data).dtype),
                                      err_msg=name)
    convert(tmp_path / "m.safetensors", tmp_path / "h.gguf", type="f16", progress=False)
    got = {t.name: t for t in gguf.GGUFReader(tmp_path / "h.gguf").tensors}
    np.testing.assert_array_equal(np.asarray(got["c.big16"].data), tensors["c.big16"])  # f16 -> f16: byte copy


@pytest.mark.parametrize("target", ["q8_0", "q4_0"])
def test_strided_torch_views_quantize_like_gguf_py(tmp_path, target):
    """Transposed / offset / bf16 views in a .pth are quantized block by block
    exactly as gguf.quants.quantize does on torch's contiguous copy."""
    base = torch.randn(96, 64, generator=torch.Generator().manual_seed(5))
    sd = {"t.weight": base.t(), "v.weight": base[1:65, :], "bf.weight": base.t().to(torch.bfloat16),
          "h.weight": base[::2].half()}
    torch.save(sd, tmp_path / "v.pt")
    convert(tmp_path / "v.pt", tmp_path / "v.gguf", type=target, progress=False)
    qtype = {"q8_0": Q.Q8_0, "q4_0": Q.Q4_0}[target]
    got = {t.name: t for t in gguf.GGUFReader(tmp_path / "v.gguf").tensors}
    for name, t in sd.items():
        assert got[name].tensor_type == qtype, name
        np.testing.assert_array_equal(np.asarray(got[name].data), quantize(f32_of(t), qtype), err_msg=name)


def test_a_fresh_gguf_lies_in_the_page_cache_as_2mb_folios(tmp_path):
    """The writer's write() calls cover whole 8 MB at multiples of 8 MB, so a model loaded from the fresh
    file maps it with 2 MB pages. The same tensors written at their own offsets (the old writer) left 30 %
    of this file in smaller folios."""
    from conftest import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    import machine

    control = tmp_path / "control.bin"  # what this kernel and filesystem do with aligned 8 MB writes
    block = np.random.default_rng(1).integers(0, 255, 8 << 20, dtype=np.uint8).tobytes()
    with open(control, "wb", buffering=0) as f:
        for _ in range(8):
            f.write(block)
    share = machine.read_through_2mb_mapping(str(control))
    if share is None or share < 0.9:
        pytest.skip(f"this kernel or filesystem does not map page cache folios with 2 MB pages ({share})")
    path = tmp_path / "fresh.gguf"
    rng = np.random.default_rng(0)
    tensors = [rng.standard_normal((1000 + 37 * i, 4096), dtype=np.float32) for i in range(6)]
    with GGUFWriter(str(path)) as writer:
        writer.add_string("general.name", "folios")
        for i, t in enumerate(tensors):
            writer.add_tensor_info(f"t{i}", "f32", t.shape)
        for i, t in enumerate(tensors):
            writer.write_tensor(f"t{i}", t)
        writer.finish()
    assert machine.read_through_2mb_mapping(str(path)) > 0.97
    weights = Weights(str(path))
    for i, t in enumerate(tensors):
        np.testing.assert_array_equal(weights[f"t{i}"], t)
