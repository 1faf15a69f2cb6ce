"""Core: version, errors, dtype conversions and GGUF block quantizers vs the gguf package."""

from __future__ import annotations

import re

import numpy as np
import pytest

import medground
from medground import _C


def test_version_is_single_sourced():
    header = (pytest.importorskip("pathlib").Path(__file__).parent.parent / "include" / "medground.h").read_text()
    c_version = re.search(r'#define MG_VERSION_STRING "([^"]+)"', header).group(1)
    assert medground.__version__ == c_version == _C.__version__


def test_error_classes_are_builtin_compatible():
    assert issubclass(medground.ShapeError, ValueError)
    assert issubclass(medground.FormatError, ValueError)
    assert issubclass(medground.DTypeError, TypeError)
    assert issubclass(medground.MedgroundIOError, OSError)
    with pytest.raises(medground.ShapeError, match="not a whole number of q8_0 blocks"):
        _C.quantize(np.zeros((2, 33), np.float32), "q8_0")
    with pytest.raises(medground.DTypeError, match="unknown dtype 'q9'"):
        _C.quantize(np.zeros((2, 32), np.float32), "q9")


def test_bf16_and_f16_rounding_match_torch(rng):
    torch = pytest.importorskip("torch")
    values = np.concatenate([
        rng.standard_normal(10000).astype(np.float32) * 1000,
        np.array([0.0, -0.0, 1e-8, 6e-5, 65504, 65519, 65520, 1e38, np.inf, -np.inf], np.float32),
        rng.standard_normal(1000).astype(np.float32) * 1e-6,
    ])
    ours = _C.f32_to_bf16_bits(values)
    ref = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, ref)
    ours16 = _C.f32_to_f16_bits(values)
    ref16 = values.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(ours16, ref16)


@pytest.mark.parametrize("dtype", ["q8_0", "q4_0"])
@pytest.mark.parametrize("shape", [(1, 32), (3, 64), (17, 4096)])
def test_quantizers_are_byte_identical_to_gguf(dtype, shape, rng):
    gguf = pytest.importorskip("gguf")
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block
    qtype = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[dtype]
    reference = gguf.quants.quantize(x, qtype)
    ours = _C.quantize(x, dtype)
    np.testing.assert_array_equal(ours, reference.reshape(ours.shape))
    back = _C.dequantize(ours, dtype, shape[1])
    np.testing.assert_array_equal(back, gguf.quants.dequantize(reference, qtype).reshape(back.shape))


def test_thread_count_is_settable():
    medground.set_num_threads(1)
    assert medground.get_num_threads() == 1
    medground.set_num_threads(0)
    assert medground.get_num_threads() == _C.cpu_count()
    with pytest.raises(medground.InvalidArgumentError):
        medground.set_num_threads(2, blas="mkl")
