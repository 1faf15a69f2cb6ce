"""Corrupt checkpoints: each is a typed error naming the file and the problem,
never a crash. The broken files are built by hand from the format specs
(safetensors README "Format", ggml docs/gguf.md, torch's zip layout) so the
tests do not depend on our writer."""

from __future__ import annotations

import collections
import io
import json
import pickle
import re
import struct
import zipfile

import numpy as np
import pytest

from medground.checkpoint import Weights, convert, inspect, read_pickle_checkpoint
from medground.errors import FormatError, MedgroundError, NotFoundError, UnsupportedError

# ------------------------------------------------------------- safetensors


def st_bytes(header, data: bytes = b"") -> bytes:
    text = header if isinstance(header, (str, bytes)) else json.dumps(header)
    text = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(text)) + text + data


def st_write(path, header, data: bytes = b""):
    path.write_bytes(st_bytes(header, data))
    return path


def open_error(path, error=FormatError):
    with pytest.raises(error) as info:
        Weights(str(path))
    message = str(info.value)
    assert str(path) in message, message
    return message


GOOD = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}}


def test_safetensors_good_baseline(tmp_path):
    w = Weights(str(st_write(tmp_path / "ok.safetensors", GOOD, bytes(range(24)))))
    assert sorted(w.names()) == ["a", "b"]
    assert w["b"].tolist() == [int.from_bytes(bytes(range(16, 24)), "little")]


@pytest.mark.parametrize("case, header, data, expect", [
    ("header-beyond-file", None, b"", "header length 1099511627776 runs past the end of the file"),
    ("offset-out-of-range", {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(12),
     "tensor a: data_offsets [0, 16] outside the data buffer of 12 bytes"),
    ("begin-after-end", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, bytes(8),
     "tensor a: data_offsets [8, 4] outside the data buffer"),
    ("overlap", {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                 "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24),
     "tensors a [0, 16) and b [8, 24) overlap"),
    ("span-vs-shape", {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, bytes(12),
     "tensor a: data_offsets span 12 bytes but shape x f32 needs 16"),
    ("wrong-dtype", {"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, bytes(4),
     'tensor a: dtype "F33" is not supported'),
    ("dtype-lowercase", {"a": {"dtype": "float32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4),
     'tensor a: dtype "float32" is not supported'),
    ("dtype-not-string", {"a": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}}, bytes(4),
     'tensor a: "dtype" is missing or not a string'),
    ("negative-shape", {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4),
     "tensor a: shape entry 0 is not a non-negative integer"),
    ("fractional-shape", {"a": {"dtype": "F32", "shape": [1, 2.5], "data_offsets": [0, 4]}}, bytes(4),
     "tensor a: shape entry 1 is not a non-negative integer"),
    ("string-shape", {"a": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}}, bytes(8),
     "tensor a: shape entry 0 is not a non-negative integer"),
    ("huge-shape", {"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, bytes(4),
     "tensor a: shape overflows the element count"),
    ("nan-shape", '{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}', bytes(4),
     "header is not valid JSON"),
    ("inf-offset", '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1e999]}}', bytes(4),
     'tensor a: "data_offsets" must be [begin, end] integers'),
    ("duplicate-name", '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                       '"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', bytes(8),
     "tensor a appears twice in the header"),
    ("not-object", "[1, 2]", b"", "header is not a JSON object"),
    ("not-json", "{\"a\": ", b"", "header is not valid JSON"),
    ("empty-name", {"": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4),
     "a tensor has an empty name"),
    ("metadata-not-string", {"__metadata__": {"k": 1}}, b"", '__metadata__ value of "k" is not a string'),
])
def test_safetensors_corrupt(tmp_path, case, header, data, expect):
    path = tmp_path / f"{case}.safetensors"
    if header is None:
        path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    else:
        st_write(path, header, data)
    error = UnsupportedError if "dtype" in case and "string" not in case else FormatError
    from medground.errors import DTypeError

    with pytest.raises((error, DTypeError)) as info:
        Weights(str(path))
    message = str(info.value)
    assert str(path) in message and expect in message, message
    # inspect and convert report the same problem
    with pytest.raises(MedgroundError, match=re.escape(expect)):
        inspect(path)


def test_safetensors_every_truncation(tmp_path):
    """Every prefix of a real file (safetensors package) fails cleanly."""
    from safetensors.numpy import save_file

    full = tmp_path / "full.safetensors"
    save_file({"w": np.arange(12, dtype=np.float32).reshape(3, 4), "i": np.arange(3, dtype=np.int64)}, full)
    data = full.read_bytes()
    header_length = struct.unpack("<Q", data[:8])[0]
    for n in range(len(data)):
        path = tmp_path / "cut.safetensors"
        path.write_bytes(data[:n])
        message = open_error(path)
        if n == 0:
            assert "empty" in message
        elif n < 8:
            assert "too short" in message
        elif n < 8 + header_length:
            assert "runs past the end of the file" in message
        else:
            assert "outside the data buffer" in message, message


def test_sharded_index_errors(tmp_path):
    st_write(tmp_path / "model-00001-of-00002.safetensors", {"a": {"dtype": "F32", "shape": [1],
                                                                     "data_offsets": [0, 4]}}, bytes(4))
    index = tmp_path / "model.safetensors.index.json"
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    index.write_text(json.dumps({"metadata": {"total_size": 8}, "weight_map": weight_map}))
    with pytest.raises(NotFoundError) as info:
        Weights(str(tmp_path))
    assert "shard model-00002-of-00002.safetensors (holding b, ...) is missing" in str(info.value)
    assert str(index) in str(info.value)
    with pytest.raises(NotFoundError, match="model-00002-of-00002.safetensors"):
        convert(tmp_path, tmp_path / "o.gguf", progress=False)

    # the shard exists but lacks a tensor the index promises
    st_write(tmp_path / "model-00002-of-00002.safetensors", {"c": {"dtype": "F32", "shape": [1],
                                                                     "data_offsets": [0, 4]}}, bytes(4))
    with pytest.raises(FormatError, match="tensor b is listed for shard model-00002-of-00002.safetensors but "
                                          "that shard lacks it"):
        Weights(str(tmp_path))
    # the same tensor in two shards
    st_write(tmp_path / "model-00002-of-00002.safetensors", {"a": {"dtype": "F32", "shape": [1],
                                                                     "data_offsets": [0, 4]}}, bytes(4))
    message = open_error(tmp_path)
    assert "tensor a appears twice" in message and "model-00002-of-00002.safetensors" in message
    # shard names may not leave the folder
    index.write_text(json.dumps({"weight_map": {"a": "../evil.safetensors"}}))
    with pytest.raises(FormatError, match=r'shard name "\.\./evil\.safetensors" \(for tensor a\) leaves the folder'):
        Weights(str(tmp_path))
    index.write_text("{not json")
    with pytest.raises(FormatError, match="model.safetensors.index.json: not valid JSON"):
        Weights(str(tmp_path))


def test_pickle_index_errors(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"a": torch.ones(2)}, tmp_path / "pytorch_model-00001-of-00002.bin")
    index = tmp_path / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "pytorch_model-00001-of-00002.bin",
                                                "b": "pytorch_model-00002-of-00002.bin"}}))
    with pytest.raises(NotFoundError, match="shard pytorch_model-00002-of-00002.bin \\(holding b, ...\\) is missing"):
        inspect(tmp_path)
    torch.save({"a": torch.zeros(2)}, tmp_path / "pytorch_model-00002-of-00002.bin")
    with pytest.raises(FormatError, match="tensor a appears in two shards"):
        inspect(tmp_path)
    with pytest.raises(FormatError, match="tensor a appears in two shards"):
        convert(tmp_path, tmp_path / "o.gguf", progress=False)
    assert not (tmp_path / "o.gguf").exists()


# -------------------------------------------------------------------- GGUF
# Hand-made GGUF v3 bytes (ggml docs/gguf.md), so each field can be broken.


def g_str(s: bytes | str) -> bytes:
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(s)) + s


def g_kv_u32(key, value) -> bytes:
    return g_str(key) + struct.pack("<II", 4, value)


def g_info(name, ne, ggml_type, offset) -> bytes:
    return g_str(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne) + \
        struct.pack("<IQ", ggml_type, offset)


def g_file(kvs: list[bytes], infos: list[bytes], data: bytes, alignment=32, version=3,
           n_tensors=None, n_kv=None) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(infos)
    body += bytes(-len(body) % alignment)
    return body + data


def good_gguf() -> bytes:
    # t0: f32 [2, 3] (ne = [3, 2]) at 0 (24 bytes); t1: i32 [4] at 32
    return g_file([g_kv_u32("general.alignment", 32)],
                  [g_info("t0", [3, 2], 0, 0), g_info("t1", [4], 26, 32)],
                  np.arange(6, dtype=np.float32).tobytes() + bytes(8) + np.arange(4, dtype=np.int32).tobytes())


def g_write(tmp_path, name, data):
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(data)
    return path


def test_gguf_good_baseline(tmp_path):
    path = g_write(tmp_path, "ok", good_gguf())
    w = Weights(str(path))
    np.testing.assert_array_equal(w["t0"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(w["t1"], np.arange(4, dtype=np.int32))
    import gguf

    assert [t.name for t in gguf.GGUFReader(path).tensors] == ["t0", "t1"]  # the reference agrees it is valid


F32 = np.arange(8, dtype=np.float32).tobytes()


@pytest.mark.parametrize("case, data, error, expect", [
    ("bad-magic", b"GGUX" + bytes(20), FormatError, "not a GGUF file (bad magic)"),
    ("version-4", g_file([], [], b"", version=4), UnsupportedError, "GGUF version 4 is not supported"),
    ("tensor-count-huge", g_file([], [], b"", n_tensors=2**60), FormatError, "tensor count 1152921504606846976 "
                                                                               "cannot fit"),
    ("kv-count-huge", g_file([], [], b"", n_kv=2**40), FormatError, "metadata count 1099511627776 cannot fit"),
    ("key-length-huge", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**62) + bytes(40),
     FormatError, "string length 4611686018427387904 runs past the end"),
    ("offset-beyond", g_file([], [g_info("t", [8], 0, 64)], F32), FormatError,
     "tensor t: bytes [64, +32) run past the end of the data section (32 bytes)"),
    ("overlap", g_file([], [g_info("a", [8], 0, 0), g_info("b", [8], 0, 0)], F32), FormatError,
     "tensors a and b overlap"),
    ("unaligned", g_file([], [g_info("t", [4], 0, 4)], F32 + bytes(32)), FormatError,
     "tensor t: offset 4 is not a multiple of the alignment 32"),
    ("unknown-type", g_file([], [g_info("t", [4], 99, 0)], F32), UnsupportedError, "tensor t: ggml type 99"),
    ("q4_k-unsupported", g_file([], [g_info("t", [256], 12, 0)], bytes(144)), UnsupportedError,
     "tensor t: ggml type 12 is not supported"),
    ("five-dims", g_file([], [g_info("t", [1, 1, 1, 1, 2], 0, 0)], F32), FormatError,
     "tensor t: 5 dimensions (GGUF allows at most 4)"),
    ("huge-dims", g_file([], [g_info("t", [2**40, 2**40], 0, 0)], F32), FormatError,
     "tensor t: dimension 1 = 1099511627776 overflows"),
    ("q8-partial-block", g_file([], [g_info("t", [40], 8, 0)], bytes(68)), FormatError,
     "tensor t: rows of 40 elements are not whole q8_0 blocks of 32"),
    ("duplicate-tensor", g_file([], [g_info("t", [4], 0, 0), g_info("t", [4], 0, 32)], F32 + bytes(32)),
     FormatError, "tensor t appears twice"),
    ("duplicate-key", g_file([g_kv_u32("k", 1), g_kv_u32("k", 2)], [], b""), FormatError,
     "metadata key k appears twice"),
    ("bad-value-type", g_file([g_str("k") + struct.pack("<I", 13)], [], b""), FormatError,
     "metadata key k: unknown value type 13"),
    ("alignment-not-pow2", g_file([g_kv_u32("general.alignment", 24)], [], b""), FormatError,
     "general.alignment 24 is not a power of two"),
    ("alignment-wrong-type", g_file([g_str("general.alignment") + struct.pack("<Iq", 11, 32)], [], b""),
     FormatError, "general.alignment must be a u32"),
    ("nested-array", g_file([g_str("k") + struct.pack("<IIQ", 9, 9, 1)], [], b""), UnsupportedError,
     "metadata key k: arrays of arrays are not supported"),
    ("string-array-huge", g_file([g_str("k") + struct.pack("<IIQ", 9, 8, 2**40)], [], b""), FormatError,
     "metadata key k: 1099511627776 strings cannot fit"),
    ("empty-key", g_file([g_str("") + struct.pack("<II", 4, 1)], [], b""), FormatError, "metadata key #0 is empty"),
    ("nul-in-name", g_file([], [g_info("a\0b", [8], 0, 0)], F32), FormatError, "tensor info #0 contains a NUL"),
])
def test_gguf_corrupt(tmp_path, case, data, error, expect):
    path = g_write(tmp_path, case, data)
    message = open_error(path, error)
    assert expect in message, message


def test_gguf_every_truncation(tmp_path):
    data = good_gguf()
    for n in range(len(data)):
        path = g_write(tmp_path, "cut", data[:n])
        message = open_error(path)
        assert ("empty" in message if n == 0 else
                any(s in message for s in ("too short", "truncated", "runs past", "past the end", "cannot fit"))), \
            (n, message)


def test_gguf_every_truncation_of_our_writer_output(tmp_path):
    """Every prefix of a GGUF with every metadata kind written by convert."""
    from medground.checkpoint import GGUFWriter

    path = tmp_path / "full.gguf"
    w = GGUFWriter(str(path))
    w.add_string("general.architecture", "bird")
    w.add_string_array("tok", ["a", "bc"])
    w.add_array("arr", np.array([1.5, 2.5], np.float32))
    w.add_float("f", 2.0, "f64")
    w.add_tensor_info("q", "q8_0", [1, 32])
    w.write_tensor("q", np.ones((1, 32), np.float32))
    w.finish()
    data = path.read_bytes()
    import gguf

    (tensor,) = gguf.GGUFReader(path).tensors
    end = tensor.data_offset + tensor.n_bytes  # after this only the alignment padding follows
    assert end < len(data)
    for n in range(end):
        cut = g_write(tmp_path, "cut", data[:n])
        with pytest.raises(FormatError):
            Weights(str(cut))


# ----------------------------------------------------------------- pickles


class _FakeStorage:
    def __init__(self, storage_type, key, numel):
        self.pid = ("storage", storage_type, key, "cpu", numel)


class _FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        import torch

        return torch._utils._rebuild_tensor_v2, self.args


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _FakeStorage) else None


def torch_zip(path, obj, storages: dict[str, bytes], extra_members=()):
    """A torch zip checkpoint (archive/data.pkl + archive/data/<key>)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
        for name, data in extra_members:
            archive.writestr(name, data)
    return path


def test_crafted_torch_zip_is_read(tmp_path):
    """The hand-made layout is what torch writes: torch.load agrees."""
    torch = pytest.importorskip("torch")
    import torch as _torch

    storage = _FakeStorage(_torch.FloatStorage, "0", 6)
    path = torch_zip(tmp_path / "ok.pt", {"w": _FakeTensor(storage, 1, (2, 2), (1, 2))},
                     {"0": np.arange(6, dtype=np.float32).tobytes()})
    expected = torch.load(path, weights_only=True)["w"].numpy()
    np.testing.assert_array_equal(read_pickle_checkpoint(path).tensors["w"].array, expected)


@pytest.mark.parametrize("case, offset, size, stride, numel, data, expect", [
    ("view-past-storage", 4, (2, 2), (2, 1), 6, bytes(24), "reaches element 7 of a storage of 6"),
    ("negative-stride", 0, (2,), (-1,), 6, bytes(24), "negative offset, size or stride"),
    ("negative-size", 0, (-2,), (1,), 6, bytes(24), "negative offset, size or stride"),
    ("rank-mismatch", 0, (2, 2), (1,), 6, bytes(24), "view has 2 sizes but 1 strides"),
    ("numel-beyond-bytes", 0, (2,), (1,), 100, bytes(24), "header says 100 elements, the file holds 6"),
    ("partial-element", 0, (2,), (1,), 2, bytes(10), "10 bytes is not a whole number of FloatStorage elements"),
    ("nan-size", 0, (float("nan"),), (1,), 6, bytes(24), "malformed tensor view"),
])
def test_crafted_torch_zip_corrupt(tmp_path, case, offset, size, stride, numel, data, expect):
    pytest.importorskip("torch")
    import torch

    storage = _FakeStorage(torch.FloatStorage, "0", numel)
    path = torch_zip(tmp_path / f"{case}.pt", {"w": _FakeTensor(storage, offset, size, stride)}, {"0": data})
    with pytest.raises(FormatError) as info:
        read_pickle_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and expect in message, message


def test_torch_zip_structure_errors(tmp_path):
    pytest.importorskip("torch")
    import torch

    storage = _FakeStorage(torch.FloatStorage, "7", 2)
    path = torch_zip(tmp_path / "missing.pt", {"w": _FakeTensor(storage, 0, (2,), (1,))}, {})
    with pytest.raises(FormatError, match="storage 7 is referenced but archive/data/7 is missing"):
        read_pickle_checkpoint(path)
    path = tmp_path / "two.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/data.pkl", pickle.dumps({}))
        archive.writestr("b/data.pkl", pickle.dumps({}))
    with pytest.raises(FormatError, match="expected one <prefix>/data.pkl in the zip, found 2"):
        read_pickle_checkpoint(path)
    path = torch_zip(tmp_path / "badtype.pt", {"w": _FakeTensor(_FakeStorage("FloatStorage", "0", 2), 0, (2,), (1,))},
                     {"0": bytes(8)})
    with pytest.raises(FormatError, match="is not a storage class"):
        read_pickle_checkpoint(path)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_torch_file_every_truncation(tmp_path, zipped):
    torch = pytest.importorskip("torch")
    full = tmp_path / "full.pt"
    torch.save({"w": torch.arange(6, dtype=torch.float32), "b": torch.ones(2, dtype=torch.bfloat16)}, full,
               _use_new_zipfile_serialization=zipped)
    data = full.read_bytes()
    step = max(1, len(data) // 150)  # ~150 cut points spread over the file
    for n in list(range(0, len(data), step)) + [len(data) - 1]:
        path = tmp_path / "cut.pt"
        path.write_bytes(data[:n])
        with pytest.raises(MedgroundError) as info:
            read_pickle_checkpoint(path)
        assert str(path) in str(info.value), (n, str(info.value))
        assert not isinstance(info.value, UnsupportedError) or "big-endian" not in str(info.value)


@pytest.mark.parametrize("header_length", [0x80, 0x4B50, 0x180], ids=["0x80", "PK", "0x180"])
def test_safetensors_header_length_looks_like_pickle_or_zip(tmp_path, header_length):
    """Regression: the sniffer took a header length whose low byte is 0x80
    (pickle PROTO) or 'PK' (zip) for a pickle and refused real files."""
    text = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})
    text += " " * (header_length - len(text))  # the format allows trailing spaces in the header
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", header_length) + text.encode() + np.array([1.5, -2], np.float32).tobytes())
    assert path.read_bytes()[:1] == b"\x80" or path.read_bytes()[:2] == b"PK"
    assert Weights(str(path))["a"].tolist() == [1.5, -2.0]
    assert inspect(path).format == "safetensors"
    convert(path, tmp_path / "x.gguf", type="f32", progress=False)
    assert Weights(str(tmp_path / "x.gguf"))["a"].tolist() == [1.5, -2.0]


def test_real_qwen_vl_index_without_shards():
    """The real Qwen-VL-Chat-Int4 model.safetensors.index.json (shards not
    downloaded): both readers name the index, the first missing shard and a
    tensor it holds."""
    from conftest import shared_path

    folder = shared_path("checkpoints", "qwen-vl-chat-int4")
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    first_shard = next(iter(weight_map.values()))
    for call in (lambda: Weights(str(folder)), lambda: inspect(folder)):
        with pytest.raises(NotFoundError) as info:
            call()
        message = str(info.value)
        assert "model.safetensors.index.json" in message and f"shard {first_shard} (holding " in message
        holder = message.split("(holding ")[1].split(",")[0]
        assert weight_map[holder] == first_shard


def test_pickle_name_collisions_and_rank(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"a.b": torch.zeros(1), "a": {"b": torch.ones(1)}}, tmp_path / "d.pt")
    with pytest.raises(FormatError, match=r"d\.pt: two tensors are named a\.b"):
        read_pickle_checkpoint(tmp_path / "d.pt")
    torch.save({"conv3d.weight": torch.zeros(2, 2, 2, 2, 2)}, tmp_path / "5d.pt")
    assert inspect(tmp_path / "5d.pt").tensors[0].shape == (2, 2, 2, 2, 2)  # inspect lists it
    with pytest.raises(UnsupportedError, match=r"5d\.pt: tensor conv3d\.weight: 5 dimensions \[2, 2, 2, 2, 2\]"):
        convert(tmp_path / "5d.pt", tmp_path / "5d.gguf", progress=False)
    assert not (tmp_path / "5d.gguf").exists() and not (tmp_path / "5d.gguf.partial").exists()


def test_big_endian_gguf_is_named(tmp_path):
    import gguf

    writer = gguf.GGUFWriter(tmp_path / "be.gguf", arch="x", endianess=gguf.GGUFEndian.BIG)
    writer.add_tensor("t", np.arange(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    message = open_error(tmp_path / "be.gguf", UnsupportedError)
    assert "a big-endian GGUF file" in message
