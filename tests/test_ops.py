"""Backend ops (medground._C.op_*) against PyTorch / the gguf package.

References are computed independently: float64 PyTorch for GEMM-like ops (so
the tolerance measures our rounding alone), PyTorch f32 for element-wise
ops, F.scaled_dot_product_attention, F.conv2d, F.interpolate, and weights
dequantized by the gguf package. Tolerances are stated per op.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import medground
from medground import _C

torch = pytest.importorskip("torch")
F = torch.nn.functional
gguf = pytest.importorskip("gguf")

torch.set_num_threads(1)  # the machine has 2 cores shared by everyone

# f32 GEMM-like ops: |ours - exact| <= RTOL_F32 * sum_k |a_ik b_kj| elementwise,
# the classical dot-product error bound scale (unit roundoff 6e-8, times a
# margin for blocked summation orders).
RTOL_F32 = 1e-5


@pytest.fixture(params=[("onednn", 1), ("openblas", 2)], ids=["onednn-1t", "openblas-2t"])
def provider(request):
    blas, threads = request.param
    medground.set_num_threads(threads, blas=blas)
    yield blas
    medground.set_num_threads(0)


@pytest.fixture(params=[1, 2], ids=["1t", "2t"])
def threads(request):
    medground.set_num_threads(request.param)
    yield request.param
    medground.set_num_threads(0)


@pytest.fixture(params=["scalar", "avx2", "native"])
def isa(request):
    """Caps the kernels' instruction set (MG_CPU_ISA is read at context creation)."""
    if request.param == "native":
        os.environ.pop("MG_CPU_ISA", None)
    else:
        os.environ["MG_CPU_ISA"] = request.param
    medground.set_num_threads(2)
    yield request.param
    os.environ.pop("MG_CPU_ISA", None)
    medground.set_num_threads(0)


def f64(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def assert_gemm_close(ours, a, b_t, rtol=RTOL_F32):
    """ours ~ a @ b_t.T with the error bound rtol * (|a| @ |b_t|.T) (+ tiny floor)."""
    a64, b64 = f64(a), f64(b_t)
    exact = (a64 @ b64.T).numpy()
    bound = rtol * (a64.abs() @ b64.abs().T).numpy() + 1e-7
    err = np.abs(ours.astype(np.float64) - exact)
    assert ours.shape == exact.shape
    worst = np.max(err / bound)
    assert worst <= 1.0, f"max error {err.max():.3g} is {worst:.2f}x the bound"


def bf16_round(a):
    return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(torch.bfloat16).to(torch.float32).numpy()


def f16_round(a):
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def gguf_dequantized(a, dtype):
    qtype = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[dtype]
    a = np.ascontiguousarray(a, np.float32)
    return gguf.quants.dequantize(gguf.quants.quantize(a, qtype), qtype).reshape(a.shape)


# --------------------------------------------------------------------- linear


@pytest.mark.parametrize("M,K,N", [(1, 16, 8), (3, 17, 5), (17, 64, 33), (40, 1000, 1030), (5, 1024, 1)])
def test_linear_f32_matches_torch(provider, M, K, N, rng):
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    ours = _C.op_linear(x, w, b)
    assert_gemm_close(ours - b, x, w)
    # and against torch's own f32 nn.functional.linear
    ref = F.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.sqrt(K))


@pytest.mark.parametrize("M", [2, 33])
def test_linear_strided_views_and_batch_dims(provider, M, rng):
    base = rng.standard_normal((M, 3, 2 * 48)).astype(np.float32)
    x = base[:, :, ::2]  # inner stride 8 bytes: copied to contiguous scratch in C
    assert not x.flags.c_contiguous
    wbase = rng.standard_normal((2 * 20, 48)).astype(np.float32)
    w = wbase[::2]  # row stride twice the row length: used in place
    ours = _C.op_linear(x, w)
    assert ours.shape == (M, 3, 20)
    assert_gemm_close(ours.reshape(-1, 20), x.reshape(-1, 48), w)


@pytest.mark.parametrize("wdtype", ["f16", "bf16"])
@pytest.mark.parametrize("M", [1, 3, 8, 9, 40])
def test_linear_half_weights(provider, wdtype, M, rng):
    K, N = 160, 70
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    ours = _C.op_linear(x, w, weight_dtype=wdtype)
    w_rounded = bf16_round(w) if wdtype == "bf16" else f16_round(w)
    # Above 8 rows a native bf16 GEMM (oneDNN with AVX-512 BF16) also rounds the
    # activations to bf16 (as PyTorch's bf16 Linear does); every other path
    # keeps x in f32.
    native = _C.op_kernel_info()["native_bf16_gemm"]
    # Up to 8 rows, AVX-512 BF16 CPUs round them too, whatever the GEMM provider (the decode kernels are ours).
    rounded = native if M > 8 else rounds_bf16_decode()
    x_used = bf16_round(x) if (wdtype == "bf16" and rounded) else x
    assert_gemm_close(ours, x_used, w_rounded)


def rounds_bf16_decode():
    """AVX-512 BF16 CPUs run the bf16 decode linear (up to 8 rows) on vdpbf16ps, activations rounded to bf16."""
    return _C.op_kernel_info()["isa"] == "avx512_bf16"


@pytest.mark.parametrize("level", ["avx512", "avx512_vnni", "native"])
@pytest.mark.parametrize("M", [1, 2, 8])
def test_linear_bf16_decode_levels(level, M, rng, monkeypatch):
    """The bf16 decode rows: vdpbf16ps on bf16-rounded activations where the CPU has AVX-512 BF16, f32
    activations below that level (MG_CPU_ISA caps it); K and N off the 64-element and four-row steps."""
    if level != "native":
        monkeypatch.setenv("MG_CPU_ISA", level)
    medground.set_num_threads(2)
    try:
        K, N = 64 * 7 + 45, 4 * 9 + 3
        x = rng.standard_normal((M, K)).astype(np.float32)
        w = rng.standard_normal((N, K)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32)
        ours = _C.op_linear(x, w, b, weight_dtype="bf16")
        x_used = bf16_round(x) if rounds_bf16_decode() else x
        assert_gemm_close(ours - b, x_used, bf16_round(w))
        if not rounds_bf16_decode():
            # f32 activations: rounding them would be outside the bound
            assert np.abs((ours - b) - x @ bf16_round(w).T).max() < np.abs((ours - b) - bf16_round(x) @ bf16_round(w).T).max()
    finally:
        medground.set_num_threads(0)


def runs_int8_gemm():
    """AVX-512 VNNI CPUs run the q8_0/q4_0 linear beyond 2 rows as an int8 GEMM (cpu_qgemm.c) with the
    decode kernels' semantics (activations quantized to q8_0) instead of bf16 weight panels."""
    return _C.op_kernel_info()["isa"] in ("avx512_vnni", "avx512_bf16")


@pytest.mark.parametrize("qdtype", ["q8_0", "q4_0"])
@pytest.mark.parametrize("M", [1, 3, 5, 16, 17, 33])
def test_linear_quantized_matches_gguf_dequantized(provider, qdtype, M, rng):
    K, N = 256, 67
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    ours = _C.op_linear(x, w, b, weight_dtype=qdtype) - b
    w_deq = gguf_dequantized(w, qdtype)
    if M > 16 and not runs_int8_gemm():
        if provider == "onednn" and _C.op_kernel_info()["native_bf16_gemm"]:
            # Prefill path with a native bf16 GEMM: weight panels are the
            # dequantized values rounded to bf16, activations rounded to bf16.
            assert_gemm_close(ours, bf16_round(x), bf16_round(w_deq))
        else:
            # Otherwise exact dequantized weights through the f32 GEMM.
            assert_gemm_close(ours, x, w_deq)
        return
    # Decode path, up to 16 rows (llama.cpp's vec_dot_q*_q8_0), and with AVX-512 VNNI the int8 GEMM
    # beyond 2 rows, whatever the BLAS provider: activations are quantized to
    # q8_0 blocks too, then integer dots are scaled by d_x * d_w. Against
    # x and w both dequantized by gguf this is exact up to f32 rounding:
    x_deq = gguf_dequantized(x, "q8_0")
    assert_gemm_close(ours, x_deq, w_deq, rtol=2e-5)
    # Against unquantized activations, the difference is the activation
    # quantization error: per element at most d_x/2 = amax(block)/254 (plus the
    # f16 rounding of d_x, relative 2^-11), so per output at most
    # sum_blocks amax_b/254 * sum_{i in b} |w_i| + 2^-11 * sum |x_i w_i|.
    amax = np.abs(x.reshape(M, K // 32, 32)).max(axis=2)  # [M, blocks]
    wsum = np.abs(w_deq.reshape(N, K // 32, 32)).sum(axis=2)  # [N, blocks]
    bound = (amax / 254.0) @ wsum.T + 2.0**-11 * (np.abs(x) @ np.abs(w_deq).T) + 1e-4
    exact = (f64(x) @ f64(w_deq).T).numpy()
    assert np.all(np.abs(ours - exact) <= bound)


@pytest.mark.parametrize("qdtype", ["f32", "bf16", "f16", "q8_0", "q4_0"])
def test_linear_kernel_isa_levels_agree_with_reference(isa, qdtype, rng):
    """The scalar reference, AVX2 and AVX-512(/VNNI) kernels on the decode path."""
    M, K, N = 2, 32 * 37, 45  # K not a multiple of 64: exercises the vector tails
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    ours = _C.op_linear(x, w, weight_dtype=qdtype)
    if qdtype in ("q8_0", "q4_0"):
        assert_gemm_close(ours, gguf_dequantized(x, "q8_0"), gguf_dequantized(w, qdtype), rtol=2e-5)
    else:
        w_used = {"f32": w, "bf16": bf16_round(w), "f16": f16_round(w)}[qdtype]
        x_used = bf16_round(x) if qdtype == "bf16" and rounds_bf16_decode() else x
        assert_gemm_close(ours, x_used, w_used)


@pytest.mark.parametrize("qdtype", ["q8_0", "q4_0"])
@pytest.mark.parametrize("n_blocks", [1, 2, 3, 4, 5, 7, 8, 9, 130])
def test_linear_quantized_decode_tails_rows_and_threads(isa, qdtype, n_blocks, rng):
    """The many-row decode kernels: block counts around their 2- and 4-block
    steps (tails), runs of rows longer than one L2 run (32) split across two
    threads, several activation rows and a bias (2 rows; and 4, which go to the int8 GEMM where the
    CPU has AVX-512 VNNI)."""
    K, N = 32 * n_blocks, 101
    for M in (2, 4):
        x = rng.standard_normal((M, K)).astype(np.float32) * 3.0
        w = rng.standard_normal((N, K)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32)
        ours = _C.op_linear(x, w, b, weight_dtype=qdtype) - b
        assert_gemm_close(ours, gguf_dequantized(x, "q8_0"), gguf_dequantized(w, qdtype), rtol=2e-5)


@pytest.mark.parametrize("qdtype", ["q8_0", "q4_0"])
def test_linear_quantized_decode_row_independent_of_its_neighbours(isa, qdtype, rng):
    """A weight row's output is the same bits whichever rows share its call: the VNNI q4_0 / q8_0 rows run
    in pairs half a run apart (an odd count leaves one alone), each row's sums in the one-row order. Block
    counts on and off the 4-block group (a tail per row), 1 and 2 activation rows, 2 threads."""
    for n_blocks in (8, 9, 130):
        K, N = 32 * n_blocks, 37
        for M in (1, 2):
            x = rng.standard_normal((M, K)).astype(np.float32)
            w = rng.standard_normal((N, K)).astype(np.float32)
            together = _C.op_linear(x, w, weight_dtype=qdtype)
            alone = np.concatenate([_C.op_linear(x, w[n : n + 1], weight_dtype=qdtype) for n in range(N)], axis=1)
            np.testing.assert_array_equal(together.view(np.uint32), alone.view(np.uint32))
            # and the rows' values are the dot products (not, say, a neighbour's)
            assert_gemm_close(together, gguf_dequantized(x, "q8_0"), gguf_dequantized(w, qdtype), rtol=2e-5)


@pytest.mark.parametrize("qdtype", ["q8_0", "q4_0"])
def test_linear_quantized_prefill_panels_every_isa(qdtype, rng):
    """The prefill path's weight panels (vector dequantization to bf16 or
    f32, and bf16 activations) are bit for bit the scalar reference's at
    every ISA level up to AVX-512 (MG_CPU_ISA caps it), on a shape with
    several panels and a ragged last one, and within the bound of their
    rounding model. With AVX-512 VNNI the same shape runs the int8 GEMM
    (4 K pieces of 128 blocks, a ragged last column tile): activations
    quantized to q8_0, against gguf-dequantized x and w. Scales span f16
    subnormal to large, so the rounding to bf16 is exercised across
    exponents."""
    M, K, N = 40, 32 * 512, 1100  # > 16 rows: the GEMM path; 32 MiB panels of bf16 rows: 1024 + 76 rows
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    w *= np.float32(2.0) ** rng.integers(-30, 8, size=(N, 1)).astype(np.float32)
    w_deq = gguf_dequantized(w, qdtype)
    outs = {}
    try:
        for level in ("scalar", "avx2", "avx512", "native"):
            os.environ["MG_CPU_ISA"] = level
            medground.set_num_threads(2)
            outs[level] = _C.op_linear(x, w, weight_dtype=qdtype)
            int8 = runs_int8_gemm()
    finally:
        os.environ.pop("MG_CPU_ISA", None)
        medground.set_num_threads(0)
    np.testing.assert_array_equal(outs["avx2"], outs["scalar"])
    np.testing.assert_array_equal(outs["avx512"], outs["scalar"])
    if _C.op_kernel_info()["native_bf16_gemm"]:
        assert_gemm_close(outs["avx512"], bf16_round(x), bf16_round(w_deq))
        # and the rounding is really there (f32 rounding alone stays below ~1e-7)
        exact = (f64(x) @ f64(w_deq).T).numpy()
        scale = (np.abs(x) @ np.abs(w_deq).T).astype(np.float64)
        live = scale > 0
        assert np.max(np.abs(outs["avx512"] - exact)[live] / scale[live]) > 1e-5
    else:
        assert_gemm_close(outs["avx512"], x, w_deq)
    if int8:
        assert_gemm_close(outs["native"], gguf_dequantized(x, "q8_0"), w_deq, rtol=2e-5)
    else:
        np.testing.assert_array_equal(outs["native"], outs["scalar"])


def test_linear_quantized_decode_extreme_quants(isa, rng):
    """Saturated blocks: activations at +-127 and weights at q8_0 -127 / q4_0
    0 and 15, where the unsigned-offset corrections are largest."""
    K, N = 32 * 6, 9
    x = np.where(rng.random((2, K)) < 0.5, -1.0, 1.0).astype(np.float32)
    w = np.where(rng.random((N, K)) < 0.5, -1.0, 1.0).astype(np.float32)
    w[:, :32] = 1.0
    w[:, 32:64] = -1.0
    for qdtype in ("q8_0", "q4_0"):
        ours = _C.op_linear(x, w, weight_dtype=qdtype)
        assert_gemm_close(ours, gguf_dequantized(x, "q8_0"), gguf_dequantized(w, qdtype), rtol=2e-5)


def test_linear_quantized_activation_rounding_ties(isa):
    """Activations quantized on the fly round x / d half away from zero, as
    the gguf package (and ggml) do: blocks with amax 127 (d = 1) and exact
    halves; an error of one quantum would be ~1, far outside the bound."""
    K = 64
    halves = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5], np.float32)
    x = np.tile(halves, (2, K // 8))
    x[:, ::32] = 127.0
    x[1] *= 1.0 - 2.0**-20  # just below each tie: rounds the other way for 0.5
    w = np.eye(K, dtype=np.float32)[:40] + 0.25
    for qdtype in ("q8_0", "q4_0"):
        ours = _C.op_linear(x, w, weight_dtype=qdtype)
        assert_gemm_close(ours, gguf_dequantized(x, "q8_0"), gguf_dequantized(w, qdtype), rtol=2e-5)


def test_linear_errors_name_the_culprit(rng):
    x = np.zeros((3, 17), np.float32)
    with pytest.raises(medground.ShapeError, match=r"mg_linear: x f32\[3, 17\] and weight f32\[8, 16\]: inner dimensions differ"):
        _C.op_linear(x, np.zeros((8, 16), np.float32))
    with pytest.raises(medground.DTypeError, match=r"mg_linear: x f64\[3, 16\] must be f32"):
        _C.op_linear(np.zeros((3, 16)), np.zeros((8, 16), np.float32))
    with pytest.raises(medground.ShapeError, match=r"op_linear: x: array has 5 dimensions"):
        _C.op_linear(np.zeros((1, 1, 1, 3, 16), np.float32), np.zeros((8, 16), np.float32))
    with pytest.raises(medground.ShapeError, match=r"bias f32\[7\] should have 8 entries"):
        _C.op_linear(np.zeros((3, 16), np.float32), np.zeros((8, 16), np.float32), np.zeros(7, np.float32))
    with pytest.raises(medground.ShapeError, match=r"weight f32\[8, 16\] must have contiguous rows"):
        _C.op_linear(np.zeros((3, 16), np.float32), np.zeros((16, 8), np.float32).T)
    with pytest.raises(medground.ShapeError, match="not a multiple of the q8_0 block"):
        _C.op_linear(np.zeros((3, 48), np.float32), np.zeros((8, 48), np.float32), weight_dtype="q8_0")
    with pytest.raises(medground.DTypeError, match=r"weight i32\[8, 16\] must be f32, f16, bf16, q8_0 or q4_0"):
        _C.op_linear(np.zeros((3, 16), np.float32), np.zeros((8, 16), np.int32))


# --------------------------------------------------------------------- matmul


@pytest.mark.parametrize(
    "a_shape,b_shape,transpose_b",
    [((3, 17), (17, 5), False), ((4, 7, 33), (4, 5, 33), True), ((1, 9, 16), (3, 16, 11), False),
     ((3, 9, 16), (16, 11), False), ((64, 64), (70, 64), True)],
)
def test_matmul_matches_torch(provider, a_shape, b_shape, transpose_b, rng):
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    ours = _C.op_matmul(a, b, transpose_b=transpose_b)
    ta, tb = f64(a), f64(b)
    if transpose_b:
        tb = tb.transpose(-1, -2)
    exact = torch.matmul(ta, tb).numpy()
    bound = RTOL_F32 * torch.matmul(ta.abs(), tb.abs()).numpy() + 1e-7
    assert ours.shape == exact.shape
    assert np.all(np.abs(ours - exact) <= bound)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_matmul_strided_and_bf16(provider, dtype, rng):
    # q @ k^T of one head taken out of a fused [T, 3, H, D] array: strided views.
    qkv = rng.standard_normal((20, 3, 4, 16)).astype(np.float32)
    q = qkv[:, 0].transpose(1, 0, 2)  # [H, T, D], not contiguous
    k = qkv[:, 1].transpose(1, 0, 2)
    ours = _C.op_matmul(q, k, transpose_b=True, dtype=dtype)
    if dtype == "bf16":
        q, k = bf16_round(q), bf16_round(k)
    exact = torch.matmul(f64(q), f64(k).transpose(-1, -2)).numpy()
    bound = RTOL_F32 * torch.matmul(f64(q).abs(), f64(k).abs().transpose(-1, -2)).numpy() + 1e-7
    assert np.all(np.abs(ours - exact) <= bound)


def test_matmul_errors():
    with pytest.raises(medground.ShapeError, match=r"mg_matmul: a f32\[3, 4\] and b f32\[5, 6\]: inner dimensions differ"):
        _C.op_matmul(np.zeros((3, 4), np.float32), np.zeros((5, 6), np.float32))
    with pytest.raises(medground.ShapeError, match="batch sizes"):
        _C.op_matmul(np.zeros((2, 3, 4), np.float32), np.zeros((3, 4, 6), np.float32))
    with pytest.raises(medground.ShapeError, match="must be 2-D or 3-D"):
        _C.op_matmul(np.zeros(4, np.float32), np.zeros((4, 6), np.float32))


# -------------------------------------------------------------- element-wise


@pytest.mark.parametrize(
    "a_shape,b_shape",
    [((3, 17), (17,)), ((2, 3, 17), (3, 1)), ((5, 1000), (1, 1000)), ((2, 3, 4, 5), (1, 3, 1, 5)), ((7,), (1,))],
)
def test_add_mul_broadcast_exact(threads, a_shape, b_shape, rng):
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    # one f32 rounding per element: results are bit-identical to torch
    np.testing.assert_array_equal(_C.op_add(a, b), (torch.from_numpy(a) + torch.from_numpy(b)).numpy())
    np.testing.assert_array_equal(_C.op_mul(a, b), (torch.from_numpy(a) * torch.from_numpy(b)).numpy())
    np.testing.assert_array_equal(_C.op_scale(a, 0.37), (torch.from_numpy(a) * 0.37).numpy())


def test_elementwise_strided_inputs(rng):
    a = rng.standard_normal((6, 40)).astype(np.float32)[::2, 1::3]
    b = rng.standard_normal((40, 6)).astype(np.float32).T[::2, 1::3][0]
    np.testing.assert_array_equal(_C.op_add(a, b), a + b)
    np.testing.assert_array_equal(_C.op_mul(a, b), a * b)
    np.testing.assert_array_equal(_C.op_scale(a, -2.0), a * np.float32(-2.0))


def test_gelu_exact_every_isa(isa, rng):
    """The erf GELU against SciPy's float64 x * ndtr(x) (no cancellation)
    over a dense sweep of its whole f32 range, at every kernel level: the
    scalar libm reference within 4 ulp, the vector kernels (double-precision
    polynomial) within 1 ulp; NaN, infinities and zeros as the reference;
    tails (lengths not a multiple of the vector width) and strided views
    agree with contiguous rows bit for bit."""
    special = pytest.importorskip("scipy.special")
    x = np.concatenate([
        np.linspace(-15.0, 10.0, 250_001),          # step 1e-4: the deep negative tail to underflow
        -np.logspace(-40, 1.2, 20_001), np.logspace(-40, 1.2, 20_001),  # subnormal to 16
        rng.standard_normal(20_000) * 3,
        [0.0, -0.0, 20.0, -20.0, 80.0, -80.0, 1e30, -1e30, 3.4e38, -3.4e38],
    ]).astype(np.float32)
    ours = _C.op_activate(x, "gelu")
    xd = x.astype(np.float64)
    exact32 = (xd * special.ndtr(xd)).astype(np.float32)
    ulps = np.abs(ours.astype(np.float64) - exact32) / np.spacing(np.abs(exact32)).astype(np.float64)
    level = _C.op_kernel_info()["isa"]
    limit = 4 if level == "scalar" else 1
    assert ulps.max() <= limit, f"{level}: {ulps.max()} ulp at x={x[np.argmax(ulps)]}"
    assert np.all(ours[x <= -20] == 0) and np.all(np.signbit(ours[x <= -20]))
    np.testing.assert_array_equal(ours[x >= 20], x[x >= 20])
    special_x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    got = _C.op_activate(special_x, "gelu")
    ref = np.array([_C.op_activate(np.array([v], np.float32), "gelu")[0] for v in special_x])
    assert np.isnan(got[0]) and got[1] == np.inf and np.isnan(got[2])  # -inf * 0, as 0.5 x (1 + erf x/sqrt2)
    assert got[3] == 0 and not np.signbit(got[3]) and got[4] == 0 and np.signbit(got[4])
    np.testing.assert_array_equal(got, ref)
    for n in (1, 7, 15, 17, 33):
        np.testing.assert_array_equal(_C.op_activate(x[:n], "gelu"), ours[:n])
    np.testing.assert_array_equal(_C.op_activate(x[: 3 * 1001].reshape(3, 1001)[:, ::7], "gelu"),
                                  ours[: 3 * 1001].reshape(3, 1001)[:, ::7])


@pytest.mark.parametrize("isa", ["scalar", "avx2", "native"], indirect=True)
def test_gelu_f32_under_fpmath_bf16(isa, rng):
    """fpmath "bf16" (and a tower that rounds its activations under "auto")
    takes the GELU evaluated in f32 arithmetic where the CPU has AVX-512:
    within 8 ulp of SciPy's float64 x * ndtr(x) where |gelu| >= 1e-37 and
    within 1e-37 below (the same sweep as above); special values as the
    exact kernel. Without AVX-512 both modes run the same kernel."""
    special = pytest.importorskip("scipy.special")
    x = np.concatenate([
        np.linspace(-15.0, 10.0, 250_001), -np.logspace(-40, 1.2, 20_001), np.logspace(-40, 1.2, 20_001),
        rng.standard_normal(20_000) * 3, [0.0, -0.0, 20.0, -20.0, 80.0, -80.0, 1e30, -1e30, 3.4e38, -3.4e38],
        [np.nan, np.inf, -np.inf],
    ]).astype(np.float32)
    try:
        medground.set_fpmath("strict")
        exact_kernel = _C.op_activate(x, "gelu")
        medground.set_fpmath("bf16")
        ours = _C.op_activate(x, "gelu")
        for n in (1, 7, 17, 33):
            np.testing.assert_array_equal(_C.op_activate(x[:n], "gelu"), ours[:n])
    finally:
        medground.set_fpmath("default")
    level = _C.op_kernel_info()["isa"]
    if level in ("scalar", "avx2"):
        np.testing.assert_array_equal(ours, exact_kernel)
        return
    finite = np.isfinite(x)
    xd = x[finite].astype(np.float64)
    exact = xd * special.ndtr(xd)
    got = ours[finite].astype(np.float64)
    big = np.abs(exact) >= 1e-37
    ulps = np.abs(got[big] - exact[big]) / np.spacing(np.abs(exact[big]).astype(np.float32)).astype(np.float64)
    assert 0 < ulps.max() <= 8, f"{ulps.max()} ulp at x={xd[big][np.argmax(ulps)]}"
    assert np.abs(got[~big] - exact[~big]).max() <= 1e-37
    assert not np.array_equal(ours[finite], exact_kernel[finite])  # the f32 kernel did run
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(exact_kernel))
    assert np.array_equal(np.signbit(ours[x <= -20]), np.signbit(exact_kernel[x <= -20]))
    assert ours[x == np.inf][0] == np.inf


def test_add_errors():
    with pytest.raises(medground.ShapeError, match=r"mg_add: b f32\[4\] does not broadcast to f32\[3, 5\]"):
        _C.op_add(np.zeros((3, 5), np.float32), np.zeros(4, np.float32))
    with pytest.raises(medground.DTypeError, match=r"mg_mul: b i64\[5\] must be f32"):
        _C.op_mul(np.zeros((3, 5), np.float32), np.zeros(5, np.int64))


ACTIVATIONS = {
    "gelu": lambda t: F.gelu(t),
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "quick_gelu": lambda t: t * torch.sigmoid(1.702 * t),  # CLIP's QuickGELU
    "silu": lambda t: F.silu(t),
    "relu": lambda t: F.relu(t),
}


@pytest.mark.parametrize("kind", sorted(ACTIVATIONS))
def test_activations_match_torch(threads, kind, rng):
    x = np.concatenate([rng.standard_normal(3000).astype(np.float32) * 4,
                        np.array([0.0, -0.0, 1e-6, -1e-6, 20.0, -20.0, 80.0, -80.0], np.float32)])
    x = x.reshape(2, -1)
    ours = _C.op_activate(x, kind)
    ref = ACTIVATIONS[kind](torch.from_numpy(x)).numpy()
    if kind.startswith("gelu"):
        # PyTorch's f32 GELUs compute 1 + erf / 1 + tanh and so lose every
        # digit for x below about -5 (absolute error up to ~1.2e-6 here);
        # ours avoid the cancellation. Against PyTorch: that absolute bound.
        # Against the exact value (SciPy's ndtr / expit in float64, which
        # have no cancellation either): within 4 ulp everywhere.
        special = pytest.importorskip("scipy.special")
        xd = x.astype(np.float64)
        if kind == "gelu":
            exact = xd * special.ndtr(xd)
        else:
            exact = xd * special.expit(2 * np.sqrt(2 / np.pi) * (xd + 0.044715 * xd**3))
        exact32 = exact.astype(np.float32)
        ulps = np.abs(ours.astype(np.float64) - exact32) / np.spacing(np.abs(exact32))
        assert ulps.max() <= 4, f"{kind}: {ulps.max()} ulp from the exact value at x={x.flat[np.argmax(ulps)]}"
        np.testing.assert_allclose(ours, ref, rtol=2e-6, atol=2e-6)
        np.testing.assert_array_equal(_C.op_activate(x[:, ::3], kind), ours[:, ::3])
        return
    # libm exp versus SLEEF: a few ulp apart
    np.testing.assert_allclose(ours, ref, rtol=2e-6, atol=1e-7)
    # strided view
    np.testing.assert_allclose(_C.op_activate(x[:, ::3], kind), ref[:, ::3], rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("kind,alpha", [("silu", 1.0), ("quick_gelu", 1.702)])
def test_sigmoid_activations_every_isa_within_ulps_of_exact(isa, kind, alpha, rng):
    """SiLU / QuickGELU = x / (1 + e^(-alpha x)): the scalar (libm) entry and the
    AVX-512 one (vector exp, a division) within 4 ulp of float64's value over
    the f32 range; below 1e-30 in magnitude (where e^(-alpha x) overflows and
    libm, PyTorch and ours give a signed zero), absolutely."""
    special = pytest.importorskip("scipy.special")
    x = np.concatenate([rng.standard_normal(4001).astype(np.float32) * 6,
                        np.linspace(-120, 120, 2001, dtype=np.float32),
                        np.array([0.0, -0.0, 1e-30, -1e-30, 3e38, -3e38, -88.0, -89.0, -52.0, -53.0], np.float32)])
    ours = _C.op_activate(x, kind)
    t = (np.float32(alpha) * x).astype(np.float64)  # alpha x rounded to f32, as every f32 QuickGELU has it
    exact = (x.astype(np.float64) * special.expit(t)).astype(np.float32)
    tiny = np.abs(exact) < 1e-30
    assert np.all(np.abs(ours[tiny]) <= 1e-30)
    ulps = np.abs(ours[~tiny].astype(np.float64) - exact[~tiny]) / np.spacing(np.abs(exact[~tiny]))
    assert ulps.max() <= 4, f"{kind}: {ulps.max()} ulp at x={x[~tiny][np.argmax(ulps)]}"


def test_activation_error():
    with pytest.raises(medground.InvalidArgumentError, match="unknown activation 'gelu2'"):
        _C.op_activate(np.zeros(3, np.float32), "gelu2")


# ---------------------------------------------------------------------- norms


@pytest.mark.parametrize("shape", [(1, 3), (17, 1000), (2, 3, 4096)])
def test_layer_norm_matches_torch(threads, shape, rng):
    x = (rng.standard_normal(shape) * 3 + 5).astype(np.float32)
    n = shape[-1]
    w = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    ref = F.layer_norm(torch.from_numpy(x), (n,), torch.from_numpy(w), torch.from_numpy(b), 1e-6).numpy()
    # normalised values are O(1): 1e-5 is ~100 ulp, covering torch's f32 moments
    np.testing.assert_allclose(_C.op_layer_norm(x, w, b, eps=1e-6), ref, rtol=1e-5, atol=1e-5)
    ref0 = F.layer_norm(torch.from_numpy(x), (n,), eps=1e-5).numpy()
    np.testing.assert_allclose(_C.op_layer_norm(x), ref0, rtol=1e-5, atol=1e-5)
    # f16 weights (converted in C) and a strided input
    xs = np.repeat(x, 2, axis=-1)[..., ::2]
    w16 = w.astype(np.float16)
    ref16 = F.layer_norm(torch.from_numpy(x), (n,), torch.from_numpy(w16.astype(np.float32)), None, 1e-6).numpy()
    np.testing.assert_allclose(_C.op_layer_norm(xs, w16, None, eps=1e-6), ref16, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 4), (9, 4096), (2, 3, 17)])
def test_rms_norm_matches_hf_formula(threads, shape, rng):
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    w = rng.standard_normal(shape[-1]).astype(np.float32)
    t = torch.from_numpy(x)
    variance = t.pow(2).mean(-1, keepdim=True)  # HF LlamaRMSNorm / Qwen RMSNorm
    ref = (torch.from_numpy(w) * (t * torch.rsqrt(variance + 1e-6))).numpy()
    np.testing.assert_allclose(_C.op_rms_norm(x, w, eps=1e-6), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_C.op_rms_norm(x.T.copy().T, w, eps=1e-6), ref, rtol=1e-5, atol=1e-6)


def test_norm_errors():
    with pytest.raises(medground.ShapeError, match=r"mg_layer_norm: weight f32\[5\] should have 4 entries"):
        _C.op_layer_norm(np.zeros((3, 4), np.float32), np.zeros(5, np.float32))
    with pytest.raises(medground.DTypeError, match=r"mg_rms_norm: weight i32\[4\] must be f32, f16 or bf16"):
        _C.op_rms_norm(np.zeros((3, 4), np.float32), np.zeros(4, np.int32))


# -------------------------------------------------------------------- softmax


def bottom_right_causal(tq, tk):
    """Additive mask: query i sees keys j <= i + (tk - tq)."""
    i = torch.arange(tq)[:, None]
    j = torch.arange(tk)[None, :]
    return torch.where(j <= i + (tk - tq), 0.0, float("-inf"))


@pytest.mark.parametrize("shape", [(1, 5), (3, 17, 17), (2, 4, 7, 1030)])
def test_softmax_matches_torch(threads, shape, rng):
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    np.testing.assert_allclose(_C.op_softmax(x), torch.softmax(torch.from_numpy(x), -1).numpy(), rtol=1e-5, atol=1e-7)
    mask = np.where(rng.random(shape[-1]) < 0.3, -np.inf, rng.standard_normal(shape[-1])).astype(np.float32)
    mask[0] = 0.0
    ref = torch.softmax(torch.from_numpy(x) + torch.from_numpy(mask), -1).numpy()
    np.testing.assert_allclose(_C.op_softmax(x, mask), ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("tq,tk", [(5, 5), (3, 9), (1, 20)])
def test_softmax_causal_offset(tq, tk, rng):
    x = rng.standard_normal((2, tq, tk)).astype(np.float32)
    ref = torch.softmax(torch.from_numpy(x) + bottom_right_causal(tq, tk), -1).numpy()
    ours = _C.op_softmax(x, causal=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.sum(-1), 1.0, rtol=1e-6)


def test_softmax_row_with_nothing_visible_is_zero():
    # Tq > Tk: the first query sees no key (PyTorch gives NaN; we give zeros).
    ours = _C.op_softmax(np.zeros((3, 2), np.float32), causal=True)
    np.testing.assert_array_equal(ours, [[0, 0], [1, 0], [0.5, 0.5]])


# ----------------------------------------------------------------------- rope


def hf_rope(x, positions, inv_freq, rotary_dim):
    """HF LLaMA/Qwen rotate-half RoPE in f32 on x[T, H, D] (partial: first rotary_dim dims)."""
    t = torch.from_numpy(x)
    freqs = torch.from_numpy(positions).float()[:, None] * torch.from_numpy(inv_freq)[None, :]
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    rot, rest = t[..., :rotary_dim], t[..., rotary_dim:]
    half = rotary_dim // 2
    rotated = torch.cat([-rot[..., half:], rot[..., :half]], -1)
    return torch.cat([rot * cos + rotated * sin, rest], -1).numpy()


@pytest.mark.parametrize("T,H,D,rotary_dim", [(1, 1, 4, 4), (17, 3, 128, 128), (9, 2, 64, 32), (1030, 2, 8, 6)])
def test_rope_matches_hf(threads, T, H, D, rotary_dim, rng):
    x = rng.standard_normal((T, H, D)).astype(np.float32)
    positions = (rng.permutation(4 * T)[:T] + 3).astype(np.int32)
    inv_freq = (1.0 / (10000 ** (np.arange(0, rotary_dim, 2, dtype=np.float32) / rotary_dim))).astype(np.float32)
    ref = hf_rope(x, positions, inv_freq, rotary_dim)
    # cos/sin of the same f32 angles: glibc vs SLEEF differ by ~1 ulp
    np.testing.assert_allclose(_C.op_rope(x, positions, inv_freq, rotary_dim), ref, rtol=1e-5, atol=2e-6)


def test_rope_in_place_on_a_fused_qkv_view(rng):
    T, H, D = 6, 2, 16
    qkv = rng.standard_normal((T, 3 * H * D)).astype(np.float32)
    original = qkv.copy()
    k = qkv[:, H * D:2 * H * D].reshape(T, H, D)  # a strided view into qkv
    assert not k.flags.c_contiguous and np.shares_memory(k, qkv)
    positions = np.arange(T, dtype=np.int32)
    inv_freq = (1.0 / (10000 ** (np.arange(0, D, 2) / D))).astype(np.float32)
    _C.op_rope(k, positions, inv_freq, D, inplace=True)
    ref = hf_rope(original[:, H * D:2 * H * D].reshape(T, H, D).copy(), positions, inv_freq, D)
    np.testing.assert_allclose(qkv[:, H * D:2 * H * D].reshape(T, H, D), ref, rtol=1e-5, atol=2e-6)
    np.testing.assert_array_equal(qkv[:, :H * D], original[:, :H * D])  # q untouched
    np.testing.assert_array_equal(qkv[:, 2 * H * D:], original[:, 2 * H * D:])  # v untouched


def test_rope_errors():
    x = np.zeros((4, 2, 8), np.float32)
    with pytest.raises(medground.InvalidArgumentError, match="rotary_dim 5 must be even"):
        _C.op_rope(x, np.arange(4), np.ones(4, np.float32), 5)
    with pytest.raises(medground.ShapeError, match="3 positions for 4 tokens"):
        _C.op_rope(x, np.arange(3), np.ones(4, np.float32), 8)
    with pytest.raises(medground.ShapeError, match=r"mg_rope: x f32\[4, 16\] must be \[tokens, heads, head_dim\]"):
        _C.op_rope(np.zeros((4, 16), np.float32), np.arange(4), np.ones(8, np.float32), 8)


# ------------------------------------------------------------------ attention


def sdpa(q, k, v, mask=None):
    """torch SDPA on [T, H, D] layouts (GQA by repeating kv heads)."""
    tq, hq, _ = q.shape
    hk = k.shape[1]
    tq_ = torch.from_numpy(np.ascontiguousarray(q)).permute(1, 0, 2)
    tk_ = torch.from_numpy(np.ascontiguousarray(k)).permute(1, 0, 2).repeat_interleave(hq // hk, 0)
    tv_ = torch.from_numpy(np.ascontiguousarray(v)).permute(1, 0, 2).repeat_interleave(hq // hk, 0)
    out = F.scaled_dot_product_attention(tq_, tk_, tv_, attn_mask=mask)
    return out.permute(1, 0, 2).numpy()


@pytest.mark.parametrize(
    "tq,tk,hq,hkv,d,dv",
    [(1, 1, 1, 1, 4, 4), (17, 17, 4, 4, 64, 64), (1, 300, 8, 2, 128, 128), (20, 1030, 2, 1, 104, 40),
     (33, 70, 6, 3, 16, 24),
     # tiled P V in chunks of 64 columns then 3 / 1 / 2 vectors of 16 (ViT-bigG's head dim 104)
     (40, 90, 2, 2, 104, 104), (12, 20, 2, 1, 8, 80), (70, 140, 1, 1, 48, 160)],
)
def test_attention_matches_sdpa(threads, tq, tk, hq, hkv, d, dv, rng):
    q = rng.standard_normal((tq, hq, d)).astype(np.float32)
    k = rng.standard_normal((tk, hkv, d)).astype(np.float32)
    v = rng.standard_normal((tk, hkv, dv)).astype(np.float32)
    ours = _C.op_attention(q, k, v)
    # outputs are convex mixtures of O(1) values: 2e-6 absolute is ~30 ulp
    np.testing.assert_allclose(ours, sdpa(q, k, v), rtol=1e-5, atol=2e-6)
    causal = _C.op_attention(q, k, v, causal=True)
    np.testing.assert_allclose(causal, sdpa(q, k, v, bottom_right_causal(tq, tk)), rtol=1e-5, atol=2e-6)


def test_attention_mask_scale_and_strided_views(threads, rng):
    T, H, D = 40, 4, 32
    qkv = rng.standard_normal((T, 3, H, D)).astype(np.float32)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # strided views of a fused projection
    mask = np.where(rng.random((H, 1, T)) < 0.2, -np.inf, rng.standard_normal((H, 1, T))).astype(np.float32)
    mask[:, :, 0] = 0.0
    ours = _C.op_attention(q, k, v, mask=mask, scale=0.3)
    tq_, tk_, tv_ = (torch.from_numpy(np.ascontiguousarray(a)).permute(1, 0, 2) for a in (q, k, v))
    ref = F.scaled_dot_product_attention(tq_, tk_, tv_, attn_mask=torch.from_numpy(mask), scale=0.3)
    np.testing.assert_allclose(ours, ref.permute(1, 0, 2).numpy(), rtol=1e-5, atol=2e-6)
    # a [Tq, Tk] mask plus causal, inner-strided q (copied in C)
    mask2 = rng.standard_normal((T, T)).astype(np.float32)
    q2 = np.repeat(q, 2, axis=-1)[..., ::2]
    ours2 = _C.op_attention(q2, k, v, mask=mask2, causal=True)
    ref2 = sdpa(q, k, v, torch.from_numpy(mask2) + bottom_right_causal(T, T))
    np.testing.assert_allclose(ours2, ref2, rtol=1e-5, atol=2e-6)


def masked_blocks_case(rng):
    """q, k, v [150, 3, 40 | 24] and a mask hiding whole 64-key blocks from
    some rows (their first blocks, so the running max starts late)."""
    T, H, D = 150, 3, 40
    q = rng.standard_normal((T, H, D)).astype(np.float32)
    k = rng.standard_normal((T, H, D)).astype(np.float32)
    v = rng.standard_normal((T, H, 24)).astype(np.float32)
    mask = np.zeros((H, T, T), np.float32)
    mask[:, :50, :128] = -np.inf  # rows 0..49 see only keys 128..149
    mask[1, 60:, 64:] = -np.inf
    return q, k, v, mask


def test_attention_tiles_masked_blocks_and_rows_seeing_nothing(threads, rng):
    """The tiled path (>= 8 query rows): a mask hiding whole 64-key blocks
    from some rows (their first blocks, so the running max starts late),
    and causal with more queries than
    keys, where the first rows see no key at all and stay zero."""
    q, k, v, mask = masked_blocks_case(rng)
    ours = _C.op_attention(q, k, v, mask=mask)
    np.testing.assert_allclose(ours, sdpa(q, k, v, torch.from_numpy(mask)), rtol=1e-5, atol=2e-6)
    tq, tk = 40, 10
    causal = _C.op_attention(q[:tq], k[:tk], v[:tk], causal=True)
    ref = sdpa(q[:tq], k[:tk], v[:tk], bottom_right_causal(tq, tk))
    seen = tq - tk  # rows 0..29 see nothing
    assert np.all(causal[:seen] == 0.0)
    np.testing.assert_allclose(causal[seen:], ref[seen:], rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("tq,tk,hq,hkv,d,dv", [(8, 8, 1, 1, 16, 8), (13, 75, 2, 1, 41, 41), (40, 90, 2, 2, 104, 104),
                                             (130, 200, 1, 1, 64, 160), (70, 70, 3, 3, 40, 24)])
def test_attention_tiles_every_isa(isa, tq, tk, hq, hkv, d, dv, rng):
    """The tiled path of each ISA level (AVX2: 6-row score and P V blocks of
    16 keys / columns, masked last columns; AVX-512: 4 rows x 64): rows off
    the 6- and 4-row steps, head dims off 8 and 16, a block of 64 keys cut
    short, causal, and a mask hiding keys (-inf) with a row seeing none."""
    q = rng.standard_normal((tq, hq, d)).astype(np.float32)
    k = rng.standard_normal((tk, hkv, d)).astype(np.float32)
    v = rng.standard_normal((tk, hkv, dv)).astype(np.float32)
    np.testing.assert_allclose(_C.op_attention(q, k, v), sdpa(q, k, v), rtol=1e-5, atol=2e-6)
    causal = _C.op_attention(q, k, v, causal=True)
    np.testing.assert_allclose(causal, sdpa(q, k, v, bottom_right_causal(tq, tk)), rtol=1e-5, atol=2e-6)
    mask = np.where(rng.random((hq, tq, tk)) < 0.3, -np.inf, rng.standard_normal((hq, tq, tk))).astype(np.float32)
    mask[:, 0, :] = -np.inf  # row 0 sees no key: zeros
    mask[:, 1:, 0] = 0.0
    ours = _C.op_attention(q, k, v, mask=mask)
    assert np.all(ours[0] == 0.0)
    np.testing.assert_allclose(ours[1:], sdpa(q, k, v, torch.from_numpy(mask))[1:], rtol=1e-5, atol=2e-6)


def test_attention_one_query_over_key_chunks(threads, rng):
    """Decode (one query row): keys split into chunks of 256 run on both
    threads and are merged; scores shifted so the running max moves across
    chunks (a late chunk holds the largest scores)."""
    tk, hq, hkv, d = 1030, 8, 2, 64
    q = rng.standard_normal((1, hq, d)).astype(np.float32)
    k = rng.standard_normal((tk, hkv, d)).astype(np.float32)
    k[700:760] += 0.5 * q.reshape(hkv, hq // hkv, d).mean(axis=1)  # larger scores in chunk 2
    v = rng.standard_normal((tk, hkv, 48)).astype(np.float32)
    np.testing.assert_allclose(_C.op_attention(q, k, v), sdpa(q, k, v), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(_C.op_attention(q, k, v, causal=True), sdpa(q, k, v), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("tq,tk,causal,masked", [(1, 1030, True, False), (1, 37, False, False), (1, 70, False, True),
                                                (9, 80, True, False), (70, 70, False, True)])
def test_attention_f16_kv_is_the_f32_path_on_widened_values(isa, tq, tk, causal, masked, rng):
    """An f16 K/V (the half-precision KV cache): the decode path (one query,
    no mask) reads it in place with f16 dot / axpby kernels, every other path
    on widened copies; either way bit for bit the f32 path on the widened
    values, at every ISA level, also for K/V with an inner stride."""
    hq, hkv, d = 8, 2, 40
    q = rng.standard_normal((tq, hq, d)).astype(np.float32)
    k16 = rng.standard_normal((tk, hkv, d)).astype(np.float16)
    v16 = rng.standard_normal((tk, hkv, 24)).astype(np.float16)
    mask = rng.standard_normal((hq, tq, tk)).astype(np.float32) if masked else None
    ours = _C.op_attention(q, k16, v16, mask=mask, causal=causal)
    wide = _C.op_attention(q, k16.astype(np.float32), v16.astype(np.float32), mask=mask, causal=causal)
    np.testing.assert_array_equal(ours, wide)
    ref = attention_f64(q, k16, v16, 1.0 / np.sqrt(d), causal=causal, mask=mask)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=2e-6)
    strided_k = np.repeat(k16, 2, axis=-1)[..., ::2]  # inner stride 4 bytes: copied to f32
    np.testing.assert_array_equal(_C.op_attention(q, strided_k, v16, mask=mask, causal=causal), wide)


def test_attention_errors():
    q = np.zeros((3, 4, 8), np.float32)
    with pytest.raises(medground.ShapeError, match=r"q f32\[3, 4, 8\] has 4 heads, not a multiple of the 3 heads"):
        _C.op_attention(q, np.zeros((5, 3, 8), np.float32), np.zeros((5, 3, 8), np.float32))
    with pytest.raises(medground.ShapeError, match="head dimensions differ"):
        _C.op_attention(q, np.zeros((5, 2, 7), np.float32), np.zeros((5, 2, 8), np.float32))
    with pytest.raises(medground.ShapeError, match=r"mask f32\[2, 5\] does not broadcast to f32\[4, 3, 5\]"):
        _C.op_attention(q, np.zeros((5, 2, 8), np.float32), np.zeros((5, 2, 8), np.float32), mask=np.zeros((2, 5), np.float32))
    with pytest.raises(medground.DTypeError, match=r"k f32\[5, 2, 8\] and v f16\[5, 2, 8\] must have one dtype"):
        _C.op_attention(q, np.zeros((5, 2, 8), np.float32), np.zeros((5, 2, 8), np.float16))
    with pytest.raises(medground.DTypeError, match=r"q f16\[3, 4, 8\] must be f32"):
        _C.op_attention(q.astype(np.float16), np.zeros((5, 2, 8), np.float16), np.zeros((5, 2, 8), np.float16))
    with pytest.raises(medground.DTypeError, match=r"k f64\[5, 2, 8\] must be f32 or f16"):
        _C.op_attention(q, np.zeros((5, 2, 8)), np.zeros((5, 2, 8)))


@pytest.fixture
def fpmath_bf16(threads):
    medground.set_fpmath("bf16")
    yield
    medground.set_fpmath("default")


def bf16_attention_operands(a):
    """What fpmath "bf16" makes of an attention operand: rounded to bf16 where
    the vdpbf16ps kernel runs; below AVX-512 BF16 the mode keeps the f32 path,
    whose operands are the inputs themselves."""
    return bf16_round(a) if _C.op_kernel_info()["isa"] == "avx512_bf16" else np.asarray(a, np.float32)


def attention_f64(q, k, v, scale, causal=False, mask=None):
    """Exact attention (f64) on [T, H, D] layouts, GQA by repeated kv heads;
    rows that see no key are zero (as ours)."""
    tq, hq, _ = q.shape
    tk, hk, _ = v.shape
    qq = q.astype(np.float64).transpose(1, 0, 2)
    kk = np.repeat(k.astype(np.float64).transpose(1, 0, 2), hq // hk, 0)
    vv = np.repeat(v.astype(np.float64).transpose(1, 0, 2), hq // hk, 0)
    s = qq @ kk.transpose(0, 2, 1) * scale
    if mask is not None:
        s = s + mask
    if causal:
        seen = np.arange(tk)[None, :] <= np.arange(tq)[:, None] + (tk - tq)
        s = np.where(seen[None], s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    total = p.sum(-1, keepdims=True)
    return ((p @ vv) / np.where(total > 0, total, 1.0)).transpose(1, 0, 2)


@pytest.mark.parametrize(
    "tq,tk,hq,hkv,d,dv,causal",
    [(1025, 1025, 2, 2, 104, 104, False),  # ViT-bigG at 448 px: 17 key blocks, the last of one key
     (40, 90, 2, 2, 104, 104, True), (33, 71, 6, 3, 41, 24, False),  # odd head dim, odd key count, GQA
     (8, 8, 1, 1, 16, 16, False), (150, 150, 3, 3, 40, 24, True), (20, 131, 2, 1, 64, 160, True)],
)
def test_attention_bf16_products(fpmath_bf16, tq, tk, hq, hkv, d, dv, causal, rng):
    """fpmath "bf16": scale*q, k, p and v are rounded to bf16 and their products
    summed in f32. Against exact attention on the rounded q, k, v, what remains
    is the rounding of p (2^-9 relative per weight): at most 2^-8 of max |v|,
    and a mean error far below it; the f32 path (strict) differs by the rounding
    of q, k and v too, so the bf16 kernel must differ from it where it runs."""
    q = rng.standard_normal((tq, hq, d)).astype(np.float32)
    k = rng.standard_normal((tk, hkv, d)).astype(np.float32)
    v = rng.standard_normal((tk, hkv, dv)).astype(np.float32)
    scale = np.float32(1.0 / np.sqrt(d))
    ours = _C.op_attention(q, k, v, causal=causal)
    r = bf16_attention_operands
    exact = attention_f64(r(q * scale), r(k), r(v), 1.0, causal)
    err = np.abs(ours - exact)
    assert err.max() <= 2.0**-8 * np.abs(v).max()
    assert err.mean() <= 5e-4
    medground.set_fpmath("strict")
    strict = _C.op_attention(q, k, v, causal=causal)
    np.testing.assert_allclose(strict, attention_f64(q, k, v, float(scale), causal), rtol=1e-5, atol=2e-6)
    if _C.op_kernel_info()["isa"] == "avx512_bf16":
        assert np.abs(ours - strict).max() > 1e-4, "the bf16 kernel did not run"
    else:  # no vdpbf16ps: "bf16" changes nothing
        np.testing.assert_array_equal(ours, strict)


def test_attention_bf16_mask_and_rows_seeing_nothing(fpmath_bf16, rng):
    q, k, v, mask = masked_blocks_case(rng)
    T, D = q.shape[0], q.shape[2]
    mask[2] += rng.standard_normal((T, T)).astype(np.float32)
    ours = _C.op_attention(q, k, v, mask=mask, scale=0.3)
    r = bf16_attention_operands
    exact = attention_f64(r(q * np.float32(0.3)), r(k), r(v), 1.0, mask=mask)
    assert np.abs(ours - exact).max() <= 2.0**-8 * np.abs(v).max()
    tq, tk = 40, 10
    causal = _C.op_attention(q[:tq], k[:tk], v[:tk], causal=True)
    assert np.all(causal[: tq - tk] == 0.0)  # these rows see no key
    exact = attention_f64(r(q[:tq] / np.sqrt(np.float32(D))), r(k[:tk]), r(v[:tk]), 1.0, causal=True)
    assert np.abs(causal - exact).max() <= 2.0**-8 * np.abs(v).max()


def test_attention_bf16_mode_below_avx512_bf16_is_the_f32_path(monkeypatch, rng):
    """Capped below AVX-512 BF16 (MG_CPU_ISA), "bf16" keeps f32 products."""
    q = rng.standard_normal((70, 2, 40)).astype(np.float32)
    monkeypatch.setenv("MG_CPU_ISA", "avx512_vnni")
    try:
        medground.set_num_threads(2)
        medground.set_fpmath("bf16")
        capped = _C.op_attention(q, q, q, causal=True)
        medground.set_fpmath("strict")
        np.testing.assert_array_equal(capped, _C.op_attention(q, q, q, causal=True))
    finally:
        monkeypatch.delenv("MG_CPU_ISA")
        medground.set_fpmath("default")
        medground.set_num_threads(0)


def test_cpu_isa_names_and_unknown_value(monkeypatch):
    """MG_CPU_ISA takes the level names op_kernel_info reports; a typo is an
    error at context creation (not silently the CPU's own level)."""
    native = _C.op_kernel_info()["isa"]
    try:
        monkeypatch.setenv("MG_CPU_ISA", native)
        medground.set_num_threads(1)
        assert _C.op_kernel_info()["isa"] == native
        monkeypatch.setenv("MG_CPU_ISA", "avx512bf16")
        with pytest.raises(medground.InvalidArgumentError,
                           match="MG_CPU_ISA=avx512bf16: expected native, scalar, avx2, avx512, avx512_vnni or avx512_bf16"):
            medground.set_num_threads(1)
    finally:
        monkeypatch.delenv("MG_CPU_ISA", raising=False)
        medground.set_num_threads(0)


def test_fpmath_modes_and_errors(monkeypatch):
    assert medground.get_fpmath() == "auto"
    q = np.random.default_rng(0).standard_normal((16, 2, 8)).astype(np.float32)
    auto = _C.op_attention(q, q, q)  # no model says "rounded weights": f32 products
    try:
        medground.set_fpmath("strict")
        assert medground.get_fpmath() == "strict"
        np.testing.assert_array_equal(_C.op_attention(q, q, q), auto)
        medground.set_num_threads(1)  # a new shared context keeps the mode
        assert medground.get_fpmath() == "strict"
        with pytest.raises(medground.InvalidArgumentError, match="fpmath 'fast': expected 'auto', 'strict', 'bf16'"):
            medground.set_fpmath("fast")
        monkeypatch.setenv("MG_FPMATH", "bf16")
        medground.set_fpmath("default")
        assert medground.get_fpmath() == "bf16"
        monkeypatch.setenv("MG_FPMATH", "fast")
        with pytest.raises(medground.InvalidArgumentError, match="MG_FPMATH=fast: expected 'auto', 'strict' or 'bf16'"):
            medground.set_fpmath("default")
    finally:
        monkeypatch.delenv("MG_FPMATH", raising=False)
        medground.set_fpmath("default")
        medground.set_num_threads(0)
    assert medground.get_fpmath() == "auto"


# ---------------------------------------------------------------- patch embed


@pytest.mark.parametrize("C,H,W,P,O", [(3, 28, 28, 14, 16), (3, 33, 47, 16, 40), (1, 8, 8, 8, 3)])
def test_patch_embed_matches_conv2d(provider, C, H, W, P, O, rng):
    image = rng.standard_normal((C, H, W)).astype(np.float32)
    weight = (rng.standard_normal((O, C, P, P)) * 0.1).astype(np.float32)
    bias = rng.standard_normal(O).astype(np.float32)
    ours = _C.op_patch_embed(image, weight, bias)
    ref = F.conv2d(torch.from_numpy(image)[None].double(), torch.from_numpy(weight).double(),
                   torch.from_numpy(bias).double(), stride=P)
    ref = ref[0].flatten(1).T.numpy()  # [(H/P)*(W/P), O]
    # same bound as GEMM, scaled by the sum of |image * weight| per output
    bound_scale = F.conv2d(torch.from_numpy(np.abs(image))[None].double(),
                           torch.from_numpy(np.abs(weight)).double(), stride=P)[0].flatten(1).T.numpy()
    assert ours.shape == ref.shape
    assert np.all(np.abs(ours - ref) <= RTOL_F32 * bound_scale + 1e-6)


def test_patch_embed_channels_last_view_and_q8_weights(rng):
    C, H, W, P, O = 3, 32, 48, 16, 20
    hwc = rng.standard_normal((H, W, C)).astype(np.float32)
    image = hwc.transpose(2, 0, 1)  # channels-first view of an HWC buffer
    weight = (rng.standard_normal((O, C, P, P)) * 0.1).astype(np.float32)
    ref = F.conv2d(torch.from_numpy(np.ascontiguousarray(image))[None].double(),
                   torch.from_numpy(weight).double(), stride=P)[0].flatten(1).T.numpy()
    np.testing.assert_allclose(_C.op_patch_embed(image, weight), ref, rtol=1e-5, atol=1e-5)
    # q8_0 weights (C*P*P = 768 is whole blocks): 6 patches -> decode kernels,
    # with activations in q8_0 too; compare against gguf-dequantized both.
    w_deq = gguf_dequantized(weight.reshape(O, -1), "q8_0").reshape(weight.shape)
    ours = _C.op_patch_embed(image, weight, weight_dtype="q8_0")
    patches = torch.from_numpy(np.ascontiguousarray(image)).unfold(1, P, P).unfold(2, P, P)  # C, gh, gw, P, P
    patches = patches.permute(1, 2, 0, 3, 4).reshape(-1, C * P * P).numpy()
    assert_gemm_close(ours, gguf_dequantized(patches, "q8_0"), w_deq.reshape(O, -1), rtol=2e-5)


def test_patch_embed_errors():
    with pytest.raises(medground.ShapeError, match=r"image f32\[3, 8, 8\] has 3 channels but weight f32\[4, 1, 4, 4\] expects 1"):
        _C.op_patch_embed(np.zeros((3, 8, 8), np.float32), np.zeros((4, 1, 4, 4), np.float32))
    with pytest.raises(medground.ShapeError, match="smaller than one 16x16 patch"):
        _C.op_patch_embed(np.zeros((3, 8, 8), np.float32), np.zeros((4, 3, 16, 16), np.float32))


# ---------------------------------------------------------------- interpolate


def _bicubic_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Tap indices [n_out, 4] and weights of PyTorch's bicubic along one axis, in float64."""
    a = -0.75
    real = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    index = np.minimum(np.floor(real).astype(np.int64), n_in - 1)
    t = np.clip(real - index, 0.0, 1.0)

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
    taps = np.clip(index[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
    return taps, weights


def _bicubic_float64(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    ty, wy = _bicubic_axis(x.shape[1], out_h)
    tx, wx = _bicubic_axis(x.shape[2], out_w)
    rows = np.einsum("chwk,wk->chw", x[:, :, tx], wx)  # [C, H, out_w]
    return np.einsum("cokw,ok->cow", rows[:, ty, :], wy)


@pytest.mark.parametrize("in_hw,out_hw", [((16, 16), (32, 32)), ((7, 5), (13, 3)), ((32, 32), (17, 45)),
                                          ((1, 1), (3, 2)), ((24, 24), (24, 24))])
def test_interpolate_bicubic_matches_torch(threads, in_hw, out_hw, rng):
    x = rng.standard_normal((3, *in_hw)).astype(np.float32)
    ours = _C.op_interpolate(x, out_hw, "bicubic")
    ref = F.interpolate(torch.from_numpy(x)[None], size=out_hw, mode="bicubic", align_corners=False)[0].numpy()
    # ATen's f32 kernel and ours sum the 16 taps in f32 in different orders;
    # on N(0, 1) inputs both land up to ~8e-6 from the float64 evaluation of
    # the same formula (cubic convolution A = -0.75, half-pixel centres,
    # clamped borders), computed here independently. Ours must stay within
    # twice ATen's distance from it (+1e-6), and within 1e-5 of ATen.
    exact = _bicubic_float64(x.astype(np.float64), *out_hw)
    ours_error, aten_error = np.abs(ours - exact).max(), np.abs(ref - exact).max()
    assert ours_error <= 2 * aten_error + 1e-6, (ours_error, aten_error)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    # a strided (HWC-transposed) input gives the same result
    strided = np.ascontiguousarray(x.transpose(1, 2, 0)).transpose(2, 0, 1)
    np.testing.assert_array_equal(_C.op_interpolate(strided, out_hw, "bicubic"), ours)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("in_hw,out_hw", [((16, 16), (32, 32)), ((7, 5), (13, 3)), ((64, 64), (256, 200)), ((5, 9), (1, 1))])
def test_interpolate_bilinear_matches_torch(align_corners, in_hw, out_hw, rng):
    x = rng.standard_normal((2, *in_hw)).astype(np.float32)
    ours = _C.op_interpolate(x, out_hw, "bilinear", align_corners)
    ref = F.interpolate(torch.from_numpy(x)[None], size=out_hw, mode="bilinear", align_corners=align_corners)[0].numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_interpolate_errors():
    with pytest.raises(medground.ShapeError, match=r"mg_interpolate_bicubic: x f32\[4, 4\] must be \[channels, height, width\]"):
        _C.op_interpolate(np.zeros((4, 4), np.float32), (8, 8), "bicubic")
    with pytest.raises(medground.InvalidArgumentError, match="mode 'nearest'"):
        _C.op_interpolate(np.zeros((1, 4, 4), np.float32), (8, 8), "nearest")


def test_linear_timed_matches_linear(rng):
    x = rng.standard_normal((3, 64)).astype(np.float32)
    w = rng.standard_normal((40, 64)).astype(np.float32)
    for dtype in ("f32", "q8_0"):
        y, seconds = _C.op_linear_timed(x, w, weight_dtype=dtype, repeats=3)
        np.testing.assert_array_equal(y, _C.op_linear(x, w, weight_dtype=dtype))
        assert 0 < seconds < 10
    with pytest.raises(medground.InvalidArgumentError, match="repeats 0"):
        _C.op_linear_timed(x, w, repeats=0)
    with pytest.raises(medground.InvalidArgumentError, match="repeats 2"):
        _C.op_linear(x, w, repeats=2)
