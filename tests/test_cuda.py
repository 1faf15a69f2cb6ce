"""CUDA backend: always compiled when nvcc is present; parity with the CPU backend on a GPU.

Without a GPU the parity tests skip with the reason the library gives, so the
skip shows in the test summary.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import medground
from medground import _C

AVAILABLE, REASON = _C.cuda_status()
needs_gpu = pytest.mark.skipif(not AVAILABLE, reason=f"no usable GPU: {REASON}")


def test_cuda_backend_is_compiled_when_nvcc_exists():
    if not shutil.which("nvcc") or os.environ.get("MG_CUDA") == "0":
        pytest.skip("nvcc not found (or MG_CUDA=0): the CUDA backend is not built")
    assert _C.built_with_cuda()


def test_no_gpu_gives_a_clear_error():
    if AVAILABLE:
        pytest.skip("a GPU is present")
    with pytest.raises(medground.UnsupportedError, match="cuda"):
        _C.set_device("cuda")
    assert _C.get_device() == "cpu"


def _on(device, fn, *args, **kwargs):
    _C.set_device(device)
    try:
        return fn(*args, **kwargs)
    finally:
        _C.set_device("cpu")


@needs_gpu
@pytest.mark.parametrize("weight_dtype", ["f32", "q8_0", "q4_0"])
def test_linear_parity(weight_dtype, rng):
    x = rng.standard_normal((17, 256)).astype(np.float32)
    w = rng.standard_normal((96, 256)).astype(np.float32)
    b = rng.standard_normal(96).astype(np.float32)
    cpu = _C.op_linear(x, w, b, weight_dtype=weight_dtype)
    gpu = _on("cuda", _C.op_linear, x, w, b, weight_dtype=weight_dtype)
    np.testing.assert_allclose(gpu, cpu, rtol=2e-4, atol=2e-3)


@needs_gpu
def test_norm_activation_softmax_attention_parity(rng):
    x = rng.standard_normal((5, 7, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    for name, args in [
        ("op_layer_norm", (x, w, w, 1e-5)),
        ("op_rms_norm", (x, w, 1e-6)),
        ("op_activate", (x, 0)),
        ("op_softmax", (x,)),
    ]:
        fn = getattr(_C, name)
        np.testing.assert_allclose(_on("cuda", fn, *args), fn(*args), rtol=1e-4, atol=1e-5, err_msg=name)
    q = rng.standard_normal((9, 4, 32)).astype(np.float32)
    k = rng.standard_normal((12, 2, 32)).astype(np.float32)
    v = rng.standard_normal((12, 2, 32)).astype(np.float32)
    cpu = _C.op_attention(q, k, v, causal=True)
    gpu = _on("cuda", _C.op_attention, q, k, v, causal=True)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)
