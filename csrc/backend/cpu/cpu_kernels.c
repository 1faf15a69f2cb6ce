/* Dot-product kernels for linear layers: one activation row against one
 * weight row, in f32/f16/bf16 (weights widened on the fly) and in GGUF
 * q8_0/q4_0 against activations quantized to q8_0 (the integer dot of
 * llama.cpp's ggml_vec_dot_q8_0_q8_0 / ggml_vec_dot_q4_0_q8_0).
 *
 * Each kernel exists as a plain scalar reference and as AVX2 and AVX-512
 * versions compiled with target attributes, so the library builds for the
 * baseline x86-64 and picks the widest set at run time. */
#include "cpu_internal.h"
#include "cpu_vmath.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ scalar */

static float mg_bf16_bits_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Eight partial sums, like one SIMD register, so the reference does not
 * lose more precision than the vector kernels on long rows. */
#define MG_SCALAR_DOT(name, type, load)                                     \
    static float name(const float *x, const void *w_raw, int64_t n) {      \
        const type *w = w_raw;                                             \
        float acc[8] = {0};                                                \
        int64_t i = 0;                                                     \
        for (; i + 8 <= n; i += 8)                                         \
            for (int j = 0; j < 8; j++) acc[j] += x[i + j] * load(w[i + j]); \
        for (; i < n; i++) acc[0] += x[i] * load(w[i]);                    \
        return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])); \
    }

#define MG_LOAD_F32(v) (v)
MG_SCALAR_DOT(mg_dot_f32_scalar, float, MG_LOAD_F32)
MG_SCALAR_DOT(mg_dot_f16_scalar, uint16_t, mg_f16_to_f32)
MG_SCALAR_DOT(mg_dot_bf16_scalar, uint16_t, mg_bf16_bits_to_f32)

static float mg_dot_q8_0_scalar(const mg_block_q8_0 *x, const void *w_raw, int64_t n_blocks) {
    const mg_block_q8_0 *w = w_raw;
    float sum = 0.0f;
    for (int64_t b = 0; b < n_blocks; b++) {
        int32_t sumi = 0;
        for (int i = 0; i < MG_QK8_0; i++) sumi += (int32_t)x[b].qs[i] * (int32_t)w[b].qs[i];
        sum += (float)sumi * (mg_f16_to_f32(x[b].d) * mg_f16_to_f32(w[b].d));
    }
    return sum;
}

static float mg_dot_q4_0_scalar(const mg_block_q8_0 *x, const void *w_raw, int64_t n_blocks) {
    const mg_block_q4_0 *w = w_raw;
    float sum = 0.0f;
    for (int64_t b = 0; b < n_blocks; b++) {
        int32_t sumi = 0;
        for (int i = 0; i < MG_QK4_0 / 2; i++) {
            sumi += (int32_t)x[b].qs[i] * ((int32_t)(w[b].qs[i] & 0x0f) - 8);
            sumi += (int32_t)x[b].qs[i + 16] * ((int32_t)(w[b].qs[i] >> 4) - 8);
        }
        sum += (float)sumi * (mg_f16_to_f32(x[b].d) * mg_f16_to_f32(w[b].d));
    }
    return sum;
}

/* bf16 x bf16 rows: eight partial sums, as MG_SCALAR_DOT. */
static void mg_gemv_bf16_scalar(const uint16_t *x, int64_t n, const uint8_t *w_raw, int64_t row_stride,
                                int64_t n_rows, float *y) {
    for (int64_t r = 0; r < n_rows; r++) {
        const uint16_t *w = (const uint16_t *)(w_raw + r * row_stride);
        float acc[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += mg_bf16_bits_to_f32(x[i + j]) * mg_bf16_bits_to_f32(w[i + j]);
        for (; i < n; i++) acc[0] += mg_bf16_bits_to_f32(x[i]) * mg_bf16_bits_to_f32(w[i]);
        y[r] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
}

static void mg_axpby_scalar(float *y, float scale, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = y[i] * scale + a * x[i];
}

static void mg_axpby_f16_scalar(float *y, float scale, float a, const uint16_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = y[i] * scale + a * mg_f16_to_f32(x[i]);
}

/* Decode attention through a level's dot / axpby kernels, one head at a
 * time (y * 1 is exact, so axpby with scale 1 is acc += p v). */
#define MG_SCORES_VIA_DOT(name, dot)                                                                       \
    static void name(const uint8_t *q, int64_t q_stride, const uint8_t *k, int64_t k_stride, int64_t n_heads, \
                     int64_t group, int64_t d, float scale, float *out, int64_t out_stride) {               \
        for (int64_t h = 0; h < n_heads; h++)                                                              \
            out[h * out_stride] = dot((const float *)(q + h * q_stride), k + (h / group) * k_stride, d) * scale; \
    }
#define MG_ATTEND_VIA_AXPBY(name, axpby, T)                                                                \
    static void name(float *acc, int64_t acc_stride, const float *p, int64_t p_stride, const uint8_t *v,      \
                     int64_t v_key_stride, int64_t v_stride, int64_t n_keys, int64_t n_heads,                \
                     int64_t group, int64_t d) {                                                             \
        for (int64_t h = 0; h < n_heads; h++)                                                              \
            for (int64_t j = 0; j < n_keys; j++)                                                           \
                axpby(acc + h * acc_stride, 1.0f, p[h * p_stride + j],                                     \
                      (const T *)(v + j * v_key_stride + (h / group) * v_stride), d);                      \
    }

/* The f32 factors of the norms from their double statistics (as HF /
 * PyTorch: RMSNorm x * rsqrt(mean(x^2) + eps), the mean of squares rounded
 * to f32 first; LayerNorm's biased variance). */
static inline float mg_rms_inverse(double squares, int64_t n, float eps) {
    return (float)(1.0 / sqrt((double)(float)(squares / (double)n) + (double)eps));
}
static inline float mg_layer_norm_rstd(double squared_deviations, int64_t n, float eps) {
    return (float)(1.0 / sqrt(squared_deviations / (double)n + (double)eps));
}
/* o[i] = (x[i] - mean) * rstd, then * w[i], then + b[i] (each rounded), i in [begin, n). */
static inline void mg_layer_norm_apply_scalar(const float *x, int64_t begin, int64_t n, float mean,
                                              float rstd, const float *w, const float *b, float *o) {
    for (int64_t i = begin; i < n; i++) {
        float v = (x[i] - mean) * rstd;
        if (w) v *= w[i];
        if (b) v += b[i];
        o[i] = v;
    }
}

/* The norms' rows: the statistics in double, one rounding to f32 each. */
static void mg_norm_row_scalar(const float *x, int64_t n, const float *w, const float *b, float eps, bool rms,
                               float *o) {
    if (rms) {
        double squares = 0.0;
        for (int64_t i = 0; i < n; i++) squares += (double)x[i] * x[i];
        const float inv = mg_rms_inverse(squares, n, eps);
        for (int64_t i = 0; i < n; i++) {
            const float v = x[i] * inv;
            o[i] = w ? w[i] * v : v;
        }
        return;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    const double mean = sum / (double)n;
    double var = 0.0;
    for (int64_t i = 0; i < n; i++) var += ((double)x[i] - mean) * ((double)x[i] - mean);
    mg_layer_norm_apply_scalar(x, 0, n, (float)mean, mg_layer_norm_rstd(var, n, eps), w, b, o);
}

static float mg_exp_sum_scalar(float *s, int64_t n, float shift) {
    float l = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        s[i] = expf(s[i] - shift);
        l += s[i];
    }
    return l;
}

MG_SCORES_VIA_DOT(mg_scores_f32_scalar, mg_dot_f32_scalar)
MG_SCORES_VIA_DOT(mg_scores_f16_scalar, mg_dot_f16_scalar)
MG_ATTEND_VIA_AXPBY(mg_attend_f32_scalar, mg_axpby_scalar, float)
MG_ATTEND_VIA_AXPBY(mg_attend_f16_scalar, mg_axpby_f16_scalar, uint16_t)

/* Quantized GEMV through the per-row dot kernel (no prepared layout). */
static size_t mg_prep_none_bytes(int64_t n_blocks) {
    (void)n_blocks;
    return 0;
}
static void mg_prep_none(const mg_block_q8_0 *xq, int64_t n_blocks, void *prep) {
    (void)xq, (void)n_blocks, (void)prep;
}
#define MG_QGEMV_VIA_DOT(name, dot)                                                          \
    static void name(const void *prep, const mg_block_q8_0 *xq, int64_t n_blocks,            \
                     const uint8_t *w, int64_t row_stride, int64_t n_rows, float *y) {       \
        (void)prep;                                                                          \
        for (int64_t r = 0; r < n_rows; r++) y[r] = dot(xq, w + r * row_stride, n_blocks);   \
    }
MG_QGEMV_VIA_DOT(mg_rows_q8_0_scalar, mg_dot_q8_0_scalar)

/* The reference quantizer (n is a block multiple, so it cannot fail). */
static void mg_quantize_q8_0_ref(const float *x, mg_block_q8_0 *out, int64_t n) {
    (void)mg_quantize_row(MG_Q8_0, x, out, n);
}
MG_QGEMV_VIA_DOT(mg_rows_q4_0_scalar, mg_dot_q4_0_scalar)

/* Weight panels for the prefill GEMM. d * q is exact in f32 (an f16
 * scale times a small integer), so every ISA rounds the same value. */
static void mg_dequant_q8_0_f32_scalar(const void *w, float *out, int64_t n_blocks) {
    (void)mg_dequantize_row(MG_Q8_0, w, out, n_blocks * MG_QK8_0);
}
static void mg_dequant_q4_0_f32_scalar(const void *w, float *out, int64_t n_blocks) {
    (void)mg_dequantize_row(MG_Q4_0, w, out, n_blocks * MG_QK4_0);
}
static void mg_dequant_q8_0_bf16_scalar(const void *w, uint16_t *out, int64_t n_blocks) {
    const mg_block_q8_0 *b = w;
    for (int64_t k = 0; k < n_blocks; k++) {
        const float d = mg_f16_to_f32(b[k].d);
        for (int i = 0; i < MG_QK8_0; i++) out[k * MG_QK8_0 + i] = mg_f32_to_bf16(d * (float)b[k].qs[i]);
    }
}
static void mg_dequant_q4_0_bf16_scalar(const void *w, uint16_t *out, int64_t n_blocks) {
    const mg_block_q4_0 *b = w;
    for (int64_t k = 0; k < n_blocks; k++) {
        const float d = mg_f16_to_f32(b[k].d);
        for (int i = 0; i < MG_QK4_0 / 2; i++) {
            out[k * MG_QK4_0 + i] = mg_f32_to_bf16(d * (float)((b[k].qs[i] & 0x0f) - 8));
            out[k * MG_QK4_0 + i + 16] = mg_f32_to_bf16(d * (float)((b[k].qs[i] >> 4) - 8));
        }
    }
}
static void mg_f16_to_f32_scalar(const uint16_t *h, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = mg_f16_to_f32(h[i]);
}
static void mg_to_bf16_scalar(const float *x, uint16_t *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = mg_f32_to_bf16(x[i]);
}
static void mg_gelu_erf_scalar(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = mg_cpu_gelu_erf_ref(x[i]);
}

static void mg_sigmoid_mul_scalar(const float *x, float *y, int64_t n, float alpha) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-alpha * x[i]));
}

static const mg_cpu_kernels mg_kernels_scalar = {
    mg_dot_f32_scalar, mg_dot_f16_scalar, mg_dot_bf16_scalar, mg_dot_q8_0_scalar, mg_dot_q4_0_scalar,
    mg_axpby_scalar,
    {mg_prep_none_bytes, mg_prep_none, mg_rows_q8_0_scalar},
    {mg_prep_none_bytes, mg_prep_none, mg_rows_q4_0_scalar},
    mg_gemv_bf16_scalar,
    mg_quantize_q8_0_ref,
    mg_dequant_q8_0_f32_scalar, mg_dequant_q4_0_f32_scalar,
    mg_dequant_q8_0_bf16_scalar, mg_dequant_q4_0_bf16_scalar,
    mg_f16_to_f32_scalar, mg_to_bf16_scalar, mg_gelu_erf_scalar, mg_gelu_erf_scalar, mg_sigmoid_mul_scalar,
    mg_axpby_f16_scalar,
    mg_scores_f32_scalar, mg_scores_f16_scalar, mg_attend_f32_scalar, mg_attend_f16_scalar,
    mg_exp_sum_scalar,
    mg_norm_row_scalar,
};

#if defined(__x86_64__)

/* -------------------------------------------------------------- AVX2 */

/* Software prefetch of the AVX2 q4_0 GEMV's rows into L2, this far ahead.
 * On a Zen 3 host (2 vCPUs, 16-19 GB/s read on two threads) a 56 MB q4_0
 * GEMV on two threads read 14-15 GB/s with none, 17-21 GB/s 2, 4 or 8 KiB
 * ahead (three rounds each, alternating processes; 0.5-1 KiB 14-16). */
#define MG_Q4_PREFETCH_BYTES_AVX2 4096

#define MG_AVX2 __attribute__((target("avx2,fma,f16c")))

MG_AVX2 static float mg_hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

MG_AVX2 static __m256 mg_load8_f32(const float *p) { return _mm256_loadu_ps(p); }
MG_AVX2 static __m256 mg_load8_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
MG_AVX2 static __m256 mg_load8_bf16(const uint16_t *p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

#define MG_AVX2_DOT(name, type, load8, load1)                                       \
    MG_AVX2 static float name(const float *x, const void *w_raw, int64_t n) {      \
        const type *w = w_raw;                                                     \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                 \
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();                 \
        int64_t i = 0;                                                             \
        for (; i + 32 <= n; i += 32) {                                             \
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8(w + i), a0);        \
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load8(w + i + 8), a1); \
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), load8(w + i + 16), a2); \
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), load8(w + i + 24), a3); \
        }                                                                          \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8(w + i), a0); \
        float sum = mg_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))); \
        for (; i < n; i++) sum += x[i] * load1(w[i]);                              \
        return sum;                                                                \
    }

MG_AVX2_DOT(mg_dot_f32_avx2, float, mg_load8_f32, MG_LOAD_F32)
MG_AVX2_DOT(mg_dot_f16_avx2, uint16_t, mg_load8_f16, mg_f16_to_f32)
MG_AVX2_DOT(mg_dot_bf16_avx2, uint16_t, mg_load8_bf16, mg_bf16_bits_to_f32)

/* Signed x signed int8 dot of 32 pairs as 8 int32 lanes as floats: maddubs
 * wants unsigned x signed, so move w's sign onto x (llama.cpp's trick). */
MG_AVX2 static __m256 mg_dot32_i8_avx2(__m256i x, __m256i w) {
    const __m256i ax = _mm256_sign_epi8(w, w);
    const __m256i sy = _mm256_sign_epi8(x, w);
    const __m256i dot16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(dot16, _mm256_set1_epi16(1)));
}

/* q4_0 nibbles as 32 signed bytes in element order: low nibbles are
 * elements 0..15, high nibbles 16..31, each minus 8. */
MG_AVX2 static __m256i mg_unpack_q4_0_avx2(const uint8_t *qs) {
    const __m128i packed = _mm_loadu_si128((const __m128i *)qs);
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(packed, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}

/* Product of two f16 scales with the F16C instruction (exact for every
 * finite half, like mg_f16_to_f32). */
MG_AVX2 static inline float mg_scale2_f16c(uint16_t a, uint16_t b) {
    return _cvtsh_ss(a) * _cvtsh_ss(b);
}

MG_AVX2 static float mg_dot_q8_0_avx2(const mg_block_q8_0 *x, const void *w_raw, int64_t n_blocks) {
    const mg_block_q8_0 *w = w_raw;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        const __m256 d = _mm256_set1_ps(mg_scale2_f16c(x[b].d, w[b].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i qw = _mm256_loadu_si256((const __m256i *)w[b].qs);
        acc = _mm256_fmadd_ps(d, mg_dot32_i8_avx2(qx, qw), acc);
    }
    return mg_hsum256(acc);
}

MG_AVX2 static float mg_dot_q4_0_avx2(const mg_block_q8_0 *x, const void *w_raw, int64_t n_blocks) {
    const mg_block_q4_0 *w = w_raw;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        const __m256 d = _mm256_set1_ps(mg_scale2_f16c(x[b].d, w[b].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        acc = _mm256_fmadd_ps(d, mg_dot32_i8_avx2(qx, mg_unpack_q4_0_avx2(w[b].qs)), acc);
    }
    return mg_hsum256(acc);
}

/* y = y * scale + a * x, x of type T (f32, or f16 from an f16 KV cache) widened by load8 / widen1. */
#define MG_AVX2_AXPBY(name, T, load8, widen1)                                                 \
    MG_AVX2 static void name(float *y, float scale, float a, const T *x, int64_t n) {         \
        const __m256 vs = _mm256_set1_ps(scale), va = _mm256_set1_ps(a);                      \
        int64_t i = 0;                                                                        \
        for (; i + 8 <= n; i += 8)                                                            \
            _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(y + i), vs),  \
                                                  _mm256_mul_ps(va, load8(x + i))));          \
        for (; i < n; i++) y[i] = y[i] * scale + a * widen1(x[i]);                            \
    }

static inline float mg_widen_f32(float x) { return x; }
MG_AVX2_AXPBY(mg_axpby_avx2, float, _mm256_loadu_ps, mg_widen_f32)
MG_AVX2_AXPBY(mg_axpby_f16_avx2, uint16_t, mg_load8_f16, mg_f16_to_f32)

MG_QGEMV_VIA_DOT(mg_rows_q8_0_avx2, mg_dot_q8_0_avx2)

/* ---- AVX2 q4_0 GEMV over many rows (the decode hot loop without VNNI)
 *
 * vpmaddubsw multiplies unsigned by signed bytes, and q4_0 nibbles are
 * unsigned already (0..15, value q - 8): so the weights go in as they are
 * and the activation's prepared layout carries, per block, the integer
 * correction -8 times each 4-element group's sum (the lanes vpmaddwd
 * leaves), added before the one conversion to float, and its scale as f32.
 * No sign juggling is left per block: one 16-byte broadcast load, a shift
 * and a mask unpack the nibbles (low ones to the low 128-bit lane, high
 * ones to the high lane, the element order of the activation's quants).
 * Every lane holds an exact integer, as in the scalar kernel. */
typedef struct mg_q4_prep_avx2 {
    int32_t corr[8]; /* lane j: -8 * (x[4j] + .. + x[4j + 3]) of the block */
} mg_q4_prep_avx2;

static size_t mg_prep_q4_0_avx2_bytes(int64_t n_blocks) {
    return (size_t)n_blocks * (sizeof(mg_q4_prep_avx2) + sizeof(float));
}
static void mg_prep_q4_0_avx2(const mg_block_q8_0 *xq, int64_t n_blocks, void *out) {
    mg_q4_prep_avx2 *g = out;
    float *d = (float *)(g + n_blocks);
    for (int64_t b = 0; b < n_blocks; b++) {
        for (int j = 0; j < 8; j++) {
            int32_t sum = 0;
            for (int t = 0; t < 4; t++) sum += xq[b].qs[4 * j + t];
            g[b].corr[j] = -8 * sum;
        }
        d[b] = mg_f16_to_f32(xq[b].d);
    }
}

/* One q4_0 block of a row against the activation's block b, added to acc. */
MG_AVX2 static inline __attribute__((always_inline)) __m256
mg_q4_0_avx2_block(const mg_block_q4_0 *w, const mg_block_q8_0 *x, const mg_q4_prep_avx2 *g, const float *d,
                   __m256i shifts, __m256i ones, __m256 acc) {
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->qs));
    const __m256i nibbles = _mm256_and_si256(_mm256_srlv_epi64(both, shifts), _mm256_set1_epi8(0x0f));
    const __m256i pairs = _mm256_maddubs_epi16(nibbles, _mm256_loadu_si256((const __m256i *)x->qs));
    const __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(pairs, ones), _mm256_loadu_si256((const __m256i *)g->corr));
    return _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(w->d) * *d), _mm256_cvtepi32_ps(dot), acc);
}

MG_AVX2 static void mg_rows_q4_0_avx2(const void *prep, const mg_block_q8_0 *xq, int64_t n_blocks,
                                      const uint8_t *w, int64_t row_stride, int64_t n_rows, float *y) {
    const mg_q4_prep_avx2 *g = prep;
    const float *d = (const float *)(g + n_blocks);
    const __m256i shifts = _mm256_set_epi64x(4, 4, 0, 0), ones = _mm256_set1_epi16(1);
    for (int64_t r = 0; r < n_rows; r++) {
        const mg_block_q4_0 *wr = (const mg_block_q4_0 *)(w + r * row_stride);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t b = 0;
        for (; b + 4 <= n_blocks; b += 4) {
            _mm_prefetch((const char *)(wr + b) + MG_Q4_PREFETCH_BYTES_AVX2, _MM_HINT_T2);
            a0 = mg_q4_0_avx2_block(wr + b, xq + b, g + b, d + b, shifts, ones, a0);
            a1 = mg_q4_0_avx2_block(wr + b + 1, xq + b + 1, g + b + 1, d + b + 1, shifts, ones, a1);
            a0 = mg_q4_0_avx2_block(wr + b + 2, xq + b + 2, g + b + 2, d + b + 2, shifts, ones, a0);
            a1 = mg_q4_0_avx2_block(wr + b + 3, xq + b + 3, g + b + 3, d + b + 3, shifts, ones, a1);
        }
        for (; b < n_blocks; b++) a0 = mg_q4_0_avx2_block(wr + b, xq + b, g + b, d + b, shifts, ones, a0);
        y[r] = mg_hsum256(_mm256_add_ps(a0, a1));
    }
}

/* ------------------------------------------ exact GELU, vector kernels
 *
 * GELU(x) = x Phi(x) evaluated in double, where the f32 input's x^2 is
 * exact: Phi(x) = e R(|x|) for x < 0 and 1 - e R(|x|) otherwise, with
 * e = exp(-x^2 / 2) and R(t) = erfc(t / sqrt 2) exp(t^2 / 2) / 2, a smooth
 * function (0.5 at 0, ~1 / (t sqrt(2 pi)) for large t) fitted once, with
 * a reweighted least-squares (near minimax) fit against mpmath, as a
 * degree-12 polynomial in w = 1 / (1 + t / 4): relative error below 1e-10
 * for 0 <= t <= 14.6 (beyond it x Phi(x) underflows f32 or Phi(x) rounds
 * to 1). No cancellation anywhere (1 - e R >= 0.5), so the only f32
 * rounding is the last one: within 1 ulp of the exact value, where the
 * f32 reference that computes 1 + erf loses every digit below x ~ -5. */
static const double mg_gelu_r[13] = {
    1.316078840324364e-06,
    0.099698349269224579,
    0.10020531897087565,
    0.090010737353695677,
    0.098003265031064074,
    0.0069869632411175692,
    0.17428433740445715,
    -0.18569313095124707,
    0.22529637885404014,
    -0.13024117292858922,
    0.0084416206303302536,
    0.017862962901607542,
    -0.0048569459025197236,
};
/* Past x^2 / 2 = 200 (|x| = 20) e R is below 1e-88: taken as 0, so x Phi(x)
 * is x or -0 as in the libm reference (and NaN for x = -inf, like it). */
#define MG_GELU_H_MAX 200.0
/* exp in double: exp(f) for |f| <= ln2 / 2 as its Taylor sum to f^11/11!
 * (error ~6e-15), after n = round(z / ln 2), f = z - n ln 2 (Cody-Waite). */
#define MG_LN2_HI 6.93147180369123816490e-01
#define MG_LN2_LO 1.90821492927058770002e-10
static const double mg_exp_taylor[12] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
                                         1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800};

/* -------- AVX2 weight panels, bf16 rounding and GELU (see the scalar ones) */

/* Eight f32 to bf16, round to nearest even, NaN quieted: mg_f32_to_bf16. */
MG_AVX2 static __m256i mg_bf16_bits8_avx2(__m256 v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)),
                                           _mm256_set1_epi32(0x7f800000));
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(rounded, quiet, nan); /* 32-bit lanes holding 16-bit values */
}
/* Sixteen f32 (a, b) to bf16 at out. */
MG_AVX2 static void mg_store_bf16x16_avx2(uint16_t *out, __m256 a, __m256 b) {
    const __m256i packed = _mm256_packus_epi32(mg_bf16_bits8_avx2(a), mg_bf16_bits8_avx2(b));
    _mm256_storeu_si256((__m256i *)out, _mm256_permute4x64_epi64(packed, 0xd8));
}

/* The 32 values of a q8_0 block as four vectors of eight. */
MG_AVX2 static void mg_q8_0_values_avx2(const mg_block_q8_0 *b, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d));
    for (int j = 0; j < 4; j++)
        v[j] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + 8 * j)))));
}
MG_AVX2 static void mg_q4_0_values_avx2(const mg_block_q4_0 *b, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d));
    const __m128i packed = _mm_loadu_si128((const __m128i *)b->qs), mask = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(packed, mask), hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    const __m256i eight = _mm256_set1_epi32(8);
    const __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int j = 0; j < 4; j++)
        v[j] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(part[j]), eight)));
}

#define MG_DEQUANT_AVX2(name, block, values, type, store4)                          \
    MG_AVX2 static void name(const void *w, type *out, int64_t n_blocks) {       \
        const block *b = w;                                                       \
        for (int64_t k = 0; k < n_blocks; k++) {                                  \
            __m256 v[4];                                                          \
            values(b + k, v);                                                     \
            store4(out + 32 * k, v);                                              \
        }                                                                         \
    }
MG_AVX2 static inline void mg_store4_f32_avx2(float *out, const __m256 v[4]) {
    for (int j = 0; j < 4; j++) _mm256_storeu_ps(out + 8 * j, v[j]);
}
MG_AVX2 static inline void mg_store4_bf16_avx2(uint16_t *out, const __m256 v[4]) {
    mg_store_bf16x16_avx2(out, v[0], v[1]);
    mg_store_bf16x16_avx2(out + 16, v[2], v[3]);
}
MG_DEQUANT_AVX2(mg_dequant_q8_0_f32_avx2, mg_block_q8_0, mg_q8_0_values_avx2, float, mg_store4_f32_avx2)
MG_DEQUANT_AVX2(mg_dequant_q4_0_f32_avx2, mg_block_q4_0, mg_q4_0_values_avx2, float, mg_store4_f32_avx2)
MG_DEQUANT_AVX2(mg_dequant_q8_0_bf16_avx2, mg_block_q8_0, mg_q8_0_values_avx2, uint16_t, mg_store4_bf16_avx2)
MG_DEQUANT_AVX2(mg_dequant_q4_0_bf16_avx2, mg_block_q4_0, mg_q4_0_values_avx2, uint16_t, mg_store4_bf16_avx2)

MG_AVX2 static void mg_f16_to_f32_avx2(const uint16_t *h, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) out[i] = _cvtsh_ss(h[i]);
}

MG_AVX2 static void mg_to_bf16_avx2(const float *x, uint16_t *out, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) mg_store_bf16x16_avx2(out + i, _mm256_loadu_ps(x + i), _mm256_loadu_ps(x + i + 8));
    for (; i < n; i++) out[i] = mg_f32_to_bf16(x[i]);
}

MG_AVX2 static __m256d mg_gelu_pd_avx2(__m256d x) {
    const __m256d one = _mm256_set1_pd(1.0);
    const __m256d t = _mm256_andnot_pd(_mm256_set1_pd(-0.0), x);
    const __m256d w = _mm256_div_pd(one, _mm256_fmadd_pd(t, _mm256_set1_pd(0.25), one));
    __m256d r = _mm256_set1_pd(mg_gelu_r[12]);
    for (int k = 11; k >= 0; k--) r = _mm256_fmadd_pd(r, w, _mm256_set1_pd(mg_gelu_r[k]));
    const __m256d h = _mm256_mul_pd(_mm256_mul_pd(x, x), _mm256_set1_pd(0.5));
    const __m256d live = _mm256_cmp_pd(h, _mm256_set1_pd(MG_GELU_H_MAX), _CMP_LT_OQ);
    const __m256d z = _mm256_sub_pd(_mm256_setzero_pd(), _mm256_min_pd(h, _mm256_set1_pd(MG_GELU_H_MAX)));
    const __m256d n = _mm256_round_pd(_mm256_mul_pd(z, _mm256_set1_pd(1.4426950408889634)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d f = _mm256_fnmadd_pd(n, _mm256_set1_pd(MG_LN2_HI), z);
    f = _mm256_fnmadd_pd(n, _mm256_set1_pd(MG_LN2_LO), f);
    __m256d p = _mm256_set1_pd(mg_exp_taylor[11]);
    for (int k = 10; k >= 0; k--) p = _mm256_fmadd_pd(p, f, _mm256_set1_pd(mg_exp_taylor[k]));
    /* 2^n for n in [-289, 0]: the biased exponent, a normal double */
    const __m256i e_bits = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n)), _mm256_set1_epi64x(1023)), 52);
    const __m256d er = _mm256_and_pd(live, _mm256_mul_pd(_mm256_mul_pd(p, _mm256_castsi256_pd(e_bits)), r));
    const __m256d negative = _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_LT_OQ);
    return _mm256_mul_pd(x, _mm256_blendv_pd(_mm256_sub_pd(one, er), er, negative));
}

MG_AVX2 static __m256 mg_gelu8_avx2(__m256 v) {
    const __m128 lo = _mm256_cvtpd_ps(mg_gelu_pd_avx2(_mm256_cvtps_pd(_mm256_castps256_ps128(v))));
    const __m128 hi = _mm256_cvtpd_ps(mg_gelu_pd_avx2(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
    return _mm256_set_m128(hi, lo);
}

MG_AVX2 static void mg_gelu_erf_avx2(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, mg_gelu8_avx2(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float buf[8] = {0};
        memcpy(buf, x + i, (size_t)(n - i) * 4);
        _mm256_storeu_ps(buf, mg_gelu8_avx2(_mm256_loadu_ps(buf)));
        memcpy(y + i, buf, (size_t)(n - i) * 4);
    }
}

MG_SCORES_VIA_DOT(mg_scores_f32_avx2, mg_dot_f32_avx2)
MG_SCORES_VIA_DOT(mg_scores_f16_avx2, mg_dot_f16_avx2)
MG_ATTEND_VIA_AXPBY(mg_attend_f32_avx2, mg_axpby_avx2, float)
MG_ATTEND_VIA_AXPBY(mg_attend_f16_avx2, mg_axpby_f16_avx2, uint16_t)

/* The norms' rows: the double sums in four 4-lane accumulators (another
 * order than the scalar entry's, the same to ~1e-16 before the f32
 * roundings), the f32 pass 8 lanes at a time with the scalar entry's
 * operations. */
MG_AVX2 static double mg_hsum256d(__m256d v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
/* sum of (x[i] - shift)^2 (square) or of x[i] (!square) over i < n. */
MG_AVX2 static double mg_row_sum_avx2(const float *x, int64_t n, double shift, bool square) {
    const __m256d vs = _mm256_set1_pd(shift);
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 4; j++) {
            const __m256d v = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * j)), vs);
            a[j] = square ? _mm256_fmadd_pd(v, v, a[j]) : _mm256_add_pd(a[j], v);
        }
    double total = mg_hsum256d(_mm256_add_pd(_mm256_add_pd(a[0], a[1]), _mm256_add_pd(a[2], a[3])));
    for (; i < n; i++) {
        const double v = (double)x[i] - shift;
        total += square ? v * v : v;
    }
    return total;
}
MG_AVX2 static void mg_norm_row_avx2(const float *x, int64_t n, const float *w, const float *b, float eps,
                                     bool rms, float *o) {
    int64_t i = 0;
    if (rms) {
        const float inv = mg_rms_inverse(mg_row_sum_avx2(x, n, 0.0, true), n, eps);
        const __m256 vi = _mm256_set1_ps(inv);
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vi);
            _mm256_storeu_ps(o + i, w ? _mm256_mul_ps(_mm256_loadu_ps(w + i), v) : v);
        }
        for (; i < n; i++) {
            const float v = x[i] * inv;
            o[i] = w ? w[i] * v : v;
        }
        return;
    }
    const double mean = mg_row_sum_avx2(x, n, 0.0, false) / (double)n;
    const float rstd = mg_layer_norm_rstd(mg_row_sum_avx2(x, n, mean, true), n, eps), fmean = (float)mean;
    const __m256 vm = _mm256_set1_ps(fmean), vr = _mm256_set1_ps(rstd);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
        if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(o + i, v);
    }
    mg_layer_norm_apply_scalar(x, i, n, fmean, rstd, w, b, o);
}

/* SiLU / QuickGELU and the softmax's exponentials with mg_exp256; a
 * ragged end goes through an 8-float buffer, so every element takes the
 * vector formula. */
MG_AVX2 static void mg_sigmoid_mul_avx2(const float *x, float *y, int64_t n, float alpha) {
    const __m256 a = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, mg_sigmoid_mul256(_mm256_loadu_ps(x + i), a));
    if (i < n) {
        float buf[8] = {0};
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(buf, mg_sigmoid_mul256(_mm256_loadu_ps(buf), a));
        memcpy(y + i, buf, (size_t)(n - i) * sizeof(float));
    }
}

MG_AVX2 static float mg_exp_sum_avx2(float *s, int64_t n, float shift) {
    const __m256 vs = _mm256_set1_ps(shift);
    __m256 l = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = mg_exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), vs));
        _mm256_storeu_ps(s + i, e);
        l = _mm256_add_ps(l, e);
    }
    float sum = mg_hsum256(l);
    if (i < n) {
        float buf[8];
        for (int j = 0; j < 8; j++) buf[j] = i + j < n ? s[i + j] : -INFINITY; /* e^-inf = 0 */
        _mm256_storeu_ps(buf, mg_exp256(_mm256_sub_ps(_mm256_loadu_ps(buf), vs)));
        for (int64_t j = 0; i + j < n; j++) {
            s[i + j] = buf[j];
            sum += buf[j];
        }
    }
    return sum;
}

static const mg_cpu_kernels mg_kernels_avx2 = {
    mg_dot_f32_avx2, mg_dot_f16_avx2, mg_dot_bf16_avx2, mg_dot_q8_0_avx2, mg_dot_q4_0_avx2,
    mg_axpby_avx2,
    {mg_prep_none_bytes, mg_prep_none, mg_rows_q8_0_avx2},
    {mg_prep_q4_0_avx2_bytes, mg_prep_q4_0_avx2, mg_rows_q4_0_avx2},
    mg_gemv_bf16_scalar,
    mg_quantize_q8_0_ref,
    mg_dequant_q8_0_f32_avx2, mg_dequant_q4_0_f32_avx2,
    mg_dequant_q8_0_bf16_avx2, mg_dequant_q4_0_bf16_avx2,
    mg_f16_to_f32_avx2, mg_to_bf16_avx2, mg_gelu_erf_avx2, mg_gelu_erf_avx2, mg_sigmoid_mul_avx2,
    mg_axpby_f16_avx2,
    mg_scores_f32_avx2, mg_scores_f16_avx2, mg_attend_f32_avx2, mg_attend_f16_avx2,
    mg_exp_sum_avx2,
    mg_norm_row_avx2,
};

/* ----------------------------------------------------------- AVX-512 */

#define MG_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define MG_AVX512_VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

MG_AVX512 static __m512 mg_load16_f32(const float *p) { return _mm512_loadu_ps(p); }
MG_AVX512 static __m512 mg_load16_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
MG_AVX512 static __m512 mg_load16_bf16(const uint16_t *p) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
MG_AVX512 static __m512 mg_masked16_f32(__mmask16 m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
MG_AVX512 static __m512 mg_masked16_f16(__mmask16 m, const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
MG_AVX512 static __m512 mg_masked16_bf16(__mmask16 m, const uint16_t *p) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

#define MG_AVX512_DOT(name, type, load16, masked16)                                      \
    MG_AVX512 static float name(const float *x, const void *w_raw, int64_t n) {      \
        const type *w = w_raw;                                                       \
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();                   \
        __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();                   \
        int64_t i = 0;                                                               \
        for (; i + 64 <= n; i += 64) {                                               \
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load16(w + i), a0);         \
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), load16(w + i + 16), a1); \
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), load16(w + i + 32), a2); \
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), load16(w + i + 48), a3); \
        }                                                                            \
        for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load16(w + i), a0); \
        if (i < n) {                                                                 \
            const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                    \
            a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), masked16(m, w + i), a1); \
        }                                                                            \
        return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
    }

MG_AVX512_DOT(mg_dot_f32_avx512, float, mg_load16_f32, mg_masked16_f32)
MG_AVX512_DOT(mg_dot_f16_avx512, uint16_t, mg_load16_f16, mg_masked16_f16)
MG_AVX512_DOT(mg_dot_bf16_avx512, uint16_t, mg_load16_bf16, mg_masked16_bf16)

/* With VNNI one vpdpbusd replaces maddubs + madd. Two accumulators over
 * alternate blocks hide the FMA latency. */
MG_AVX512_VNNI static __m256 mg_dot32_i8_vnni(__m256i x, __m256i w) {
    const __m256i ax = _mm256_sign_epi8(w, w);
    const __m256i sy = _mm256_sign_epi8(x, w);
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy));
}

MG_AVX512_VNNI static __m256i mg_unpack_q4_0_vnni(const uint8_t *qs) {
    const __m128i packed = _mm_loadu_si128((const __m128i *)qs);
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(packed, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}

MG_AVX512_VNNI static float mg_dot_q8_0_vnni(const mg_block_q8_0 *x, const void *w_raw,
                                             int64_t n_blocks) {
    const mg_block_q8_0 *w = w_raw;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= n_blocks; b += 2) {
        const __m256 d0 = _mm256_set1_ps(mg_scale2_f16c(x[b].d, w[b].d));
        const __m256 d1 = _mm256_set1_ps(mg_scale2_f16c(x[b + 1].d, w[b + 1].d));
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)x[b + 1].qs);
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)w[b + 1].qs);
        acc0 = _mm256_fmadd_ps(d0, mg_dot32_i8_vnni(x0, w0), acc0);
        acc1 = _mm256_fmadd_ps(d1, mg_dot32_i8_vnni(x1, w1), acc1);
    }
    for (; b < n_blocks; b++) {
        const __m256 d = _mm256_set1_ps(mg_scale2_f16c(x[b].d, w[b].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i qw = _mm256_loadu_si256((const __m256i *)w[b].qs);
        acc0 = _mm256_fmadd_ps(d, mg_dot32_i8_vnni(qx, qw), acc0);
    }
    return mg_hsum256(_mm256_add_ps(acc0, acc1));
}

MG_AVX512_VNNI static float mg_dot_q4_0_vnni(const mg_block_q8_0 *x, const void *w_raw,
                                             int64_t n_blocks) {
    const mg_block_q4_0 *w = w_raw;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= n_blocks; b += 2) {
        const __m256 d0 = _mm256_set1_ps(mg_scale2_f16c(x[b].d, w[b].d));
        const __m256 d1 = _mm256_set1_ps(mg_scale2_f16c(x[b + 1].d, w[b + 1].d));
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)x[b + 1].qs);
        acc0 = _mm256_fmadd_ps(d0, mg_dot32_i8_vnni(x0, mg_unpack_q4_0_vnni(w[b].qs)), acc0);
        acc1 = _mm256_fmadd_ps(d1, mg_dot32_i8_vnni(x1, mg_unpack_q4_0_vnni(w[b + 1].qs)), acc1);
    }
    for (; b < n_blocks; b++) {
        const __m256 d = _mm256_set1_ps(mg_scale2_f16c(x[b].d, w[b].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        acc0 = _mm256_fmadd_ps(d, mg_dot32_i8_vnni(qx, mg_unpack_q4_0_vnni(w[b].qs)), acc0);
    }
    return mg_hsum256(_mm256_add_ps(acc0, acc1));
}

/* y = y * scale + a * x with x of type T widened by load16 / masked16:
 * f32 and f16 (an f16 KV cache) compute alike. */
#define MG_AVX512_AXPBY(name, T, load16, masked16)                                                     \
    MG_AVX512 static void name(float *y, float scale, float a, const T *x, int64_t n) {                \
        const __m512 vs = _mm512_set1_ps(scale), va = _mm512_set1_ps(a);                               \
        int64_t i = 0;                                                                                 \
        for (; i + 16 <= n; i += 16)                                                                   \
            _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(y + i), vs),           \
                                                  _mm512_mul_ps(va, load16(x + i))));                  \
        if (i < n) {                                                                                   \
            const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                      \
            __m512 vy = _mm512_maskz_loadu_ps(m, y + i), vx = masked16(m, x + i);                      \
            _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_mul_ps(vy, vs), _mm512_mul_ps(va, vx))); \
        }                                                                                              \
    }

MG_AVX512_AXPBY(mg_axpby_avx512, float, mg_load16_f32, mg_masked16_f32)
MG_AVX512_AXPBY(mg_axpby_f16_avx512, uint16_t, mg_load16_f16, mg_masked16_f16)

/* Lane h of the result: the sum of v[h]'s 16 lanes (a transposing tree:
 * 45 shuffles and adds for 16 sums where 16 reduce_add would take ~130). */
MG_AVX512 static __m512 mg_sum16x16(const __m512 v[16]) {
    __m512 s[8], t[4];
    for (int i = 0; i < 8; i++) /* per 128-bit lane: a0+a2, b0+b2, a1+a3, b1+b3 */
        s[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; i++) { /* per 128-bit lane: that lane's sums of v[4i .. 4i+3] */
        const __m512d x = _mm512_castps_pd(s[2 * i]), y = _mm512_castps_pd(s[2 * i + 1]);
        t[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    const __m512 u01 = _mm512_add_ps(_mm512_shuffle_f32x4(t[0], t[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_f32x4(t[0], t[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 u23 = _mm512_add_ps(_mm512_shuffle_f32x4(t[2], t[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_f32x4(t[2], t[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(u01, u23, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(u01, u23, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Scores, 16 heads a step: one accumulator per head over d (16 lanes a
 * step, the tail masked), then one tree for the 16 sums. */
#define MG_AVX512_SCORES(name, T, load16, masked16)                                                           \
    MG_AVX512 static void name(const uint8_t *q, int64_t q_stride, const uint8_t *k, int64_t k_stride,          \
                               int64_t n_heads, int64_t group, int64_t d, float scale, float *out,              \
                               int64_t out_stride) {                                                            \
        const int64_t full = d / 16 * 16;                                                                       \
        const __mmask16 tail = (__mmask16)((1u << (d - full)) - 1);                                            \
        for (int64_t h0 = 0; h0 < n_heads; h0 += 16) {                                                          \
            const int64_t n = n_heads - h0 < 16 ? n_heads - h0 : 16;                                            \
            __m512 acc[16];                                                                                     \
            for (int i = 0; i < 16; i++) {                                                                      \
                __m512 a = _mm512_setzero_ps();                                                                 \
                if (i < n) {                                                                                    \
                    const float *qh = (const float *)(q + (h0 + i) * q_stride);                                 \
                    const T *kh = (const T *)(k + ((h0 + i) / group) * k_stride);                               \
                    for (int64_t e = 0; e < full; e += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(qh + e), load16(kh + e), a); \
                    if (tail) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, qh + full), masked16(tail, kh + full), a); \
                }                                                                                               \
                acc[i] = a;                                                                                     \
            }                                                                                                   \
            float lane[16];                                                                                     \
            _mm512_storeu_ps(lane, _mm512_mul_ps(mg_sum16x16(acc), _mm512_set1_ps(scale)));                     \
            for (int64_t i = 0; i < n; i++) out[(h0 + i) * out_stride] = lane[i];                               \
        }                                                                                                       \
    }
MG_AVX512_SCORES(mg_scores_f32_avx512, float, mg_load16_f32, mg_masked16_f32)
MG_AVX512_SCORES(mg_scores_f16_avx512, uint16_t, mg_load16_f16, mg_masked16_f16)

MG_AVX512 static float mg_exp_sum_avx512(float *s, int64_t n, float shift) {
    const __m512 vs = _mm512_set1_ps(shift);
    __m512 l = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 e = mg_exp512(_mm512_sub_ps(_mm512_loadu_ps(s + i), vs));
        _mm512_storeu_ps(s + i, e);
        l = _mm512_add_ps(l, e);
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = _mm512_maskz_mov_ps(m, mg_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vs)));
        _mm512_mask_storeu_ps(s + i, m, e);
        l = _mm512_add_ps(l, e);
    }
    return _mm512_reduce_add_ps(l);
}

/* Values: per head and 64 columns, the accumulator stays in registers
 * over the call's keys (axpby per key loaded and stored it for each one,
 * and multiplied it by 1); acc + p v with the product rounded, as axpby.
 * Whole 64-column runs load unmasked (masked f16 loads cost ~2 % here). */
#define MG_AVX512_ATTEND(name, T, load16, masked16)                                                  \
    MG_AVX512 static void name(float *acc, int64_t acc_stride, const float *p, int64_t p_stride,      \
                               const uint8_t *v, int64_t v_key_stride, int64_t v_stride,               \
                               int64_t n_keys, int64_t n_heads, int64_t group, int64_t d) {           \
        for (int64_t h = 0; h < n_heads; h++) {                                                       \
            float *y = acc + h * acc_stride;                                                          \
            const float *ph = p + h * p_stride;                                                       \
            const uint8_t *vh = v + (h / group) * v_stride;                                           \
            for (int64_t i = 0; i < d; i += 64) {                                                     \
                __mmask16 m[4];                                                                       \
                __m512 a[4];                                                                          \
                for (int c = 0; c < 4; c++) {                                                         \
                    const int64_t left = d - i - 16 * c;                                              \
                    m[c] = left >= 16 ? (__mmask16)0xffff                                             \
                                      : left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0;      \
                    a[c] = _mm512_maskz_loadu_ps(m[c], y + i + 16 * c);                               \
                }                                                                                     \
                const bool whole = d - i >= 64;                                                       \
                for (int64_t j = 0; j < n_keys; j++) {                                                \
                    const __m512 pj = _mm512_set1_ps(ph[j]);                                          \
                    const T *x = (const T *)(vh + j * v_key_stride) + i;                              \
                    if (whole)                                                                        \
                        for (int c = 0; c < 4; c++)                                                   \
                            a[c] = _mm512_add_ps(a[c], _mm512_mul_ps(pj, load16(x + 16 * c)));        \
                    else                                                                              \
                        for (int c = 0; c < 4; c++)                                                   \
                            a[c] = _mm512_add_ps(a[c], _mm512_mul_ps(pj, masked16(m[c], x + 16 * c))); \
                }                                                                                     \
                for (int c = 0; c < 4; c++) _mm512_mask_storeu_ps(y + i + 16 * c, m[c], a[c]);        \
            }                                                                                         \
        }                                                                                             \
    }
MG_AVX512_ATTEND(mg_attend_f32_avx512, float, mg_load16_f32, mg_masked16_f32)
MG_AVX512_ATTEND(mg_attend_f16_avx512, uint16_t, mg_load16_f16, mg_masked16_f16)

/* ---- VNNI GEMV over many rows (the decode hot loop)
 *
 * Each step covers a whole 64-byte vector of weights: four q4_0 blocks (72
 * bytes) or two q8_0 blocks (68 bytes). One 64-byte load plus a small one
 * of the rest feed a word permute that gathers the quants into place and a
 * second that gathers the f16 scales, whose products with the activation's
 * scales (in 128 bits) one shuffle spreads over their lanes, so no scalar
 * work is left per block. vpdpbusd multiplies unsigned by signed bytes: q4_0
 * nibbles are unsigned already (0..15, value q - 8), q8_0 quants become
 * unsigned by adding 128 (xor 0x80); the activation's prepared layout
 * carries the matching integer correction (-8 or -128 times its block sum,
 * spread over the block's lanes) as the accumulator's start, so each lane
 * holds an exact integer before the one conversion to float. */

/* The lanes of one step: dword j of every 128-bit lane belongs to q4_0
 * block j (of 4), dword i to q8_0 block i % 2 (of 2), so the activation's
 * per-block scale and correction are one broadcast load each. */
typedef struct mg_q4_prep {
    int8_t lo[64];   /* byte 16m + 4j + t: element 4m + t of block j */
    int8_t hi[64];   /* element 16 + 4m + t */
    int32_t corr[4]; /* block j: -2 * its sum (4 lanes a block: -8 * sum) */
    float d[4];      /* block j: scale */
    uint8_t pad[32]; /* keeps lo/hi 64-byte aligned */
} mg_q4_prep;

typedef struct mg_q8_prep {
    int8_t qs[64];   /* byte 8m + 4k + t: element 4m + t of block k */
    int32_t corr[2]; /* block k: -16 * its sum (8 lanes a block: -128 * sum) */
    float d[2];
    uint8_t pad[48];
} mg_q8_prep;

static int32_t mg_block_sum(const mg_block_q8_0 *b) {
    int32_t sum = 0;
    for (int i = 0; i < MG_QK8_0; i++) sum += b->qs[i];
    return sum;
}

static size_t mg_prep_q4_0_bytes(int64_t n_blocks) { return (size_t)(n_blocks / 4) * sizeof(mg_q4_prep); }
static void mg_prep_q4_0(const mg_block_q8_0 *xq, int64_t n_blocks, void *out) {
    mg_q4_prep *g = out;
    for (int64_t i = 0; i < n_blocks / 4; i++) {
        for (int j = 0; j < 4; j++) {
            const mg_block_q8_0 *b = xq + 4 * i + j;
            for (int m = 0; m < 4; m++) {
                memcpy(g[i].lo + 16 * m + 4 * j, b->qs + 4 * m, 4);
                memcpy(g[i].hi + 16 * m + 4 * j, b->qs + 16 + 4 * m, 4);
            }
            g[i].corr[j] = -2 * mg_block_sum(b);
            g[i].d[j] = mg_f16_to_f32(b->d);
        }
    }
}

static size_t mg_prep_q8_0_bytes(int64_t n_blocks) { return (size_t)(n_blocks / 2) * sizeof(mg_q8_prep); }
static void mg_prep_q8_0(const mg_block_q8_0 *xq, int64_t n_blocks, void *out) {
    mg_q8_prep *g = out;
    for (int64_t i = 0; i < n_blocks / 2; i++) {
        for (int k = 0; k < 2; k++) {
            const mg_block_q8_0 *b = xq + 2 * i + k;
            for (int m = 0; m < 8; m++) memcpy(g[i].qs + 8 * m + 4 * k, b->qs + 4 * m, 4);
            g[i].corr[k] = -16 * mg_block_sum(b);
            g[i].d[k] = mg_f16_to_f32(b->d);
        }
    }
}

#define MG_INLINE static inline __attribute__((always_inline))
/* Software prefetch of the q4_0 loop into L2 (hint T2): the hardware
 * prefetchers alone left the one-row loop at ~12 GB/s from DRAM on Zen 4,
 * T0 (into L1) at ~19, T2 2 KiB ahead at ~24 GB/s on one thread. With two
 * rows' streams a thread (mg_q4_0_vnni_groups2), 1 KiB ahead read more on
 * Zen 4: full-size q4_0 decode on 2 threads 7.1 against 6.3 tok/s (medians
 * of 9 passes in alternating processes), one thread's 101 MB GEMV 19-22
 * against 14-15 GB/s; 0.5 and 1.5 KiB were no better. A Zen 5 host (CPU
 * family 26, 45-58 GB/s read on 2 threads) keeps more bytes in flight, and
 * there 4 KiB reads more: full-size q4_0 decode on one thread 131-156
 * against 151-174 ms a step (6 passes each), on two a median of 95 against
 * 113 ms (9 passes each; 3 KiB 100 ms), the 101 MB GEMV on one thread
 * 28-39 against 24-29 GB/s. Past a row's end (rows are 2.3-6.2 KiB) they
 * land in the rows its stream takes next.
 * q8_0, reading twice the bytes per block, streams at the full rate
 * without any (slower with it on Zen 4; 1-4 KiB no better on Zen 5). */
#define MG_Q4_PREFETCH_BYTES 4096

/* Word indices (vpermt2w / vpermw): the quants of four q4_0 blocks out of
 * their 72 bytes (A = bytes 0..63, B = 64..71) into the lane order above,
 * and their f16 scales, block j in dword j of every 128-bit lane. */
static const uint16_t mg_q4_quant_words[32] = {1, 2, 10, 11, 19, 20, 28, 29, 3, 4, 12, 13, 21, 22, 30, 31,
                                               5, 6, 14, 15, 23, 24, 32, 33, 7, 8, 16, 17, 25, 26, 34, 35};
static const uint16_t mg_q4_scale_words[32] = {0, 9, 18, 27, 0, 9, 18, 27, 0, 9, 18, 27, 0, 9, 18, 27};
/* Two q8_0 blocks out of 68 bytes (B = bytes 64..67); block k in dword i
 * with i % 2 == k. */
static const uint16_t mg_q8_quant_words[32] = {1, 2, 18, 19, 3, 4, 20, 21, 5, 6, 22, 23, 7, 8, 24, 25,
                                               9, 10, 26, 27, 11, 12, 28, 29, 13, 14, 30, 31, 15, 16, 32, 33};
static const uint16_t mg_q8_scale_words[32] = {0, 17, 0, 17, 0, 17, 0, 17, 0, 17, 0, 17, 0, 17, 0, 17};

/* One row's group of four q4_0 blocks (72 bytes at p) against the
 * activation's prepared group (its quants xlo / xhi, corrections, scales),
 * added to acc. */
MG_AVX512_VNNI MG_INLINE __m512 mg_q4_0_vnni_row(const uint8_t *p, __m512i qidx, __m512i sidx, __m512i corr,
                                                 __m128 dx, __m512i xlo, __m512i xhi, __m512 acc) {
    const __m512i nibble = _mm512_set1_epi8(0x0f);
    __m512i a = _mm512_loadu_si512(p);
    /* One load of a for both permutes (a folded second load would split a
     * cache line again). */
    __asm__("" : "+v"(a));
    const __m512i b = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(p + 64)));
    const __m512i q = _mm512_permutex2var_epi16(a, qidx, b);
    /* the four scales and their products in 128 bits, then spread to the
     * lanes: vcvtph2ps on 16 lanes takes two cycles of a pipe on Zen 4 */
    const __m128 dw = _mm_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi16(sidx, a)));
    const __m512 scale = _mm512_broadcast_f32x4(_mm_mul_ps(dx, dw));
    const __m512i lo = _mm512_and_si512(q, nibble);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), nibble);
    const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, lo, xlo), hi, xhi);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc);
}

/* One group of four q4_0 blocks (72 bytes at p) against its prepared
 * activation, added to acc. */
MG_AVX512_VNNI MG_INLINE __m512 mg_q4_0_vnni_group(const mg_q4_prep *g, const uint8_t *p, __m512i qidx,
                                                   __m512i sidx, __m512 acc) {
    const __m512i corr = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)g->corr));
    const __m128 dx = _mm_load_ps(g->d);
    return mg_q4_0_vnni_row(p, qidx, sidx, corr, dx, _mm512_load_si512(g->lo), _mm512_load_si512(g->hi), acc);
}

/* One row's two q8_0 blocks (68 bytes at p) against the activation's
 * prepared pair (quants xq, corrections corr, scales dx = d0 d1 d0 d1). */
MG_AVX512_VNNI MG_INLINE __m512 mg_q8_0_vnni_row(const uint8_t *p, __m512i qidx, __m512i sidx, __m512i corr,
                                                 __m128 dx, __m512i xq, __m512 acc) {
    int32_t rest;
    memcpy(&rest, p + 64, 4);
    __m512i a = _mm512_loadu_si512(p);
    __asm__("" : "+v"(a));
    const __m512i q = _mm512_permutex2var_epi16(a, qidx, _mm512_castsi128_si512(_mm_cvtsi32_si128(rest)));
    /* scales d0 d1 d0 d1 and their products in 128 bits, as for q4_0 */
    const __m128 dw = _mm_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi16(sidx, a)));
    const __m512 scale = _mm512_broadcast_f32x4(_mm_mul_ps(dx, dw));
    const __m512i sum = _mm512_dpbusd_epi32(corr, _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80)), xq);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc);
}

/* The activation's corrections and scales of a q8_0 pair, spread. */
#define MG_Q8_PREP_LOADS(g, corr, dx)                                                                 \
    int64_t corr2_, d2_;                                                                              \
    memcpy(&corr2_, (g)->corr, 8);                                                                    \
    memcpy(&d2_, (g)->d, 8);                                                                          \
    const __m512i corr = _mm512_set1_epi64(corr2_);                                                   \
    const __m128 dx = _mm_castsi128_ps(_mm_set1_epi64x(d2_))

/* Two q8_0 blocks (68 bytes at p). */
MG_AVX512_VNNI MG_INLINE __m512 mg_q8_0_vnni_group(const mg_q8_prep *g, const uint8_t *p, __m512i qidx,
                                                   __m512i sidx, __m512 acc) {
    MG_Q8_PREP_LOADS(g, corr, dx);
    return mg_q8_0_vnni_row(p, qidx, sidx, corr, dx, _mm512_load_si512(g->qs), acc);
}

/* Two groups (144 bytes) of a q4_0 row, MG_Q4_PREFETCH_BYTES ahead; q8_0 none. */
MG_INLINE void mg_q4_0_prefetch(const uint8_t *p) {
    _mm_prefetch((const char *)p + MG_Q4_PREFETCH_BYTES, _MM_HINT_T2);
    _mm_prefetch((const char *)p + MG_Q4_PREFETCH_BYTES + 72, _MM_HINT_T2);
}
MG_INLINE void mg_no_prefetch(const uint8_t *p) { (void)p; }

/* One row over n_groups groups: the groups' part of the dot. Two
 * accumulators, so consecutive groups do not wait on one FMA chain. */
MG_AVX512_VNNI static float mg_q4_0_vnni_groups(const mg_q4_prep *g, int64_t n_groups, const uint8_t *w) {
    const __m512i qidx = _mm512_loadu_si512(mg_q4_quant_words), sidx = _mm512_loadu_si512(mg_q4_scale_words);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= n_groups; i += 2) {
        const uint8_t *p = w + i * 72;
        mg_q4_0_prefetch(p);
        acc0 = mg_q4_0_vnni_group(g + i, p, qidx, sidx, acc0);
        acc1 = mg_q4_0_vnni_group(g + i + 1, p + 72, qidx, sidx, acc1);
    }
    if (i < n_groups) acc0 = mg_q4_0_vnni_group(g + i, w + i * 72, qidx, sidx, acc0);
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

MG_AVX512_VNNI static float mg_q8_0_vnni_groups(const mg_q8_prep *g, int64_t n_groups, const uint8_t *w) {
    const __m512i qidx = _mm512_loadu_si512(mg_q8_quant_words), sidx = _mm512_loadu_si512(mg_q8_scale_words);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= n_groups; i += 2) {
        acc0 = mg_q8_0_vnni_group(g + i, w + i * 68, qidx, sidx, acc0);
        acc1 = mg_q8_0_vnni_group(g + i + 1, w + i * 68 + 68, qidx, sidx, acc1);
    }
    if (i < n_groups) acc0 = mg_q8_0_vnni_group(g + i, w + i * 68, qidx, sidx, acc0);
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* Two rows at once (w0, w1) over n_groups groups, sharing each group's
 * activation loads (q4_0: two 64-byte vectors and two broadcasts, q8_0: one
 * vector and two broadcasts): from cache on one thread q4_0 ~31 -> 32.5
 * (28 -> 30 before the 128-bit scales), q8_0 39.8 -> 42.6 GB/s. Each row's
 * sums are those of the one-row loop (mg_q4_0_vnni_groups /
 * mg_q8_0_vnni_groups) in its order, so the same bits. The caller pairs rows half a run apart, so each row of a pair
 * continues its own sequential stream and its prefetch stays in it:
 * adjacent pairs read DRAM at half the rate (1 thread, 9 against ~20 GB/s;
 * the first row's prefetch landed in the second). */
#define MG_VNNI_GROUPS2(name, prep_t, bytes, quant_words, scale_words, pair, prefetch)             \
    MG_AVX512_VNNI static void name(const prep_t *g, int64_t n_groups, const uint8_t *w0,            \
                                    const uint8_t *w1, float out[2]) {                               \
        const __m512i qidx = _mm512_loadu_si512(quant_words), sidx = _mm512_loadu_si512(scale_words); \
        __m512 a00 = _mm512_setzero_ps(), a01 = _mm512_setzero_ps();                                  \
        __m512 a10 = _mm512_setzero_ps(), a11 = _mm512_setzero_ps();                                  \
        int64_t i = 0;                                                                                \
        for (; i + 2 <= n_groups; i += 2) {                                                           \
            prefetch(w0 + i * (bytes));                                                               \
            prefetch(w1 + i * (bytes));                                                               \
            pair(g + i, w0 + i * (bytes), w1 + i * (bytes), qidx, sidx, &a00, &a10);                  \
            pair(g + i + 1, w0 + (i + 1) * (bytes), w1 + (i + 1) * (bytes), qidx, sidx, &a01, &a11);  \
        }                                                                                             \
        if (i < n_groups) pair(g + i, w0 + i * (bytes), w1 + i * (bytes), qidx, sidx, &a00, &a10);    \
        out[0] = _mm512_reduce_add_ps(_mm512_add_ps(a00, a01));                                       \
        out[1] = _mm512_reduce_add_ps(_mm512_add_ps(a10, a11));                                       \
    }

/* One group of each row of a pair against the activation's group loaded once. */
MG_AVX512_VNNI MG_INLINE void mg_q4_0_vnni_pair(const mg_q4_prep *g, const uint8_t *p0, const uint8_t *p1,
                                                __m512i qidx, __m512i sidx, __m512 *acc0, __m512 *acc1) {
    const __m512i corr = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)g->corr));
    const __m128 dx = _mm_load_ps(g->d);
    const __m512i xlo = _mm512_load_si512(g->lo), xhi = _mm512_load_si512(g->hi);
    *acc0 = mg_q4_0_vnni_row(p0, qidx, sidx, corr, dx, xlo, xhi, *acc0);
    *acc1 = mg_q4_0_vnni_row(p1, qidx, sidx, corr, dx, xlo, xhi, *acc1);
}

MG_AVX512_VNNI MG_INLINE void mg_q8_0_vnni_pair(const mg_q8_prep *g, const uint8_t *p0, const uint8_t *p1,
                                                __m512i qidx, __m512i sidx, __m512 *acc0, __m512 *acc1) {
    MG_Q8_PREP_LOADS(g, corr, dx);
    const __m512i xq = _mm512_load_si512(g->qs);
    *acc0 = mg_q8_0_vnni_row(p0, qidx, sidx, corr, dx, xq, *acc0);
    *acc1 = mg_q8_0_vnni_row(p1, qidx, sidx, corr, dx, xq, *acc1);
}

MG_VNNI_GROUPS2(mg_q4_0_vnni_groups2, mg_q4_prep, 72, mg_q4_quant_words, mg_q4_scale_words, mg_q4_0_vnni_pair,
                mg_q4_0_prefetch)
MG_VNNI_GROUPS2(mg_q8_0_vnni_groups2, mg_q8_prep, 68, mg_q8_quant_words, mg_q8_scale_words, mg_q8_0_vnni_pair,
                mg_no_prefetch)

/* A run of rows: pairs r, r + half (two streams a thread), the odd last
 * row alone, and each row's blocks past its last whole group. */
#define MG_VNNI_ROWS(name, groups1, groups2, dot, block_t, per_group)                                 \
    MG_AVX512_VNNI static void name(const void *prep, const mg_block_q8_0 *xq, int64_t n_blocks,        \
                                    const uint8_t *w, int64_t row_stride, int64_t n_rows, float *y) {   \
        const int64_t n_groups = n_blocks / (per_group), done = n_groups * (per_group);               \
        const int64_t half = n_rows / 2;                                                              \
        for (int64_t r = 0; r < half; r++) {                                                          \
            const uint8_t *w0 = w + r * row_stride, *w1 = w + (r + half) * row_stride;                \
            float two[2];                                                                             \
            groups2(prep, n_groups, w0, w1, two);                                                     \
            y[r] = two[0];                                                                            \
            y[r + half] = two[1];                                                                     \
            if (done < n_blocks) {                                                                    \
                y[r] += dot(xq + done, (const block_t *)w0 + done, n_blocks - done);                  \
                y[r + half] += dot(xq + done, (const block_t *)w1 + done, n_blocks - done);           \
            }                                                                                         \
        }                                                                                             \
        for (int64_t r = 2 * half; r < n_rows; r++) {                                                 \
            const uint8_t *wr = w + r * row_stride;                                                   \
            y[r] = groups1(prep, n_groups, wr);                                                       \
            if (done < n_blocks) y[r] += dot(xq + done, (const block_t *)wr + done, n_blocks - done); \
        }                                                                                             \
    }
MG_VNNI_ROWS(mg_rows_q4_0_vnni, mg_q4_0_vnni_groups, mg_q4_0_vnni_groups2, mg_dot_q4_0_vnni, mg_block_q4_0, 4)
MG_VNNI_ROWS(mg_rows_q8_0_vnni, mg_q8_0_vnni_groups, mg_q8_0_vnni_groups2, mg_dot_q8_0_vnni, mg_block_q8_0, 2)

/* ---- AVX-512 BF16 GEMV over many bf16 rows (the bf16 decode hot loop)
 *
 * x is bf16 already, so one vdpbf16ps takes 32 weights (a 64-byte load)
 * against 32 activations: a third of the instructions of widening each
 * weight to f32 for an FMA. Four rows at a time share each activation
 * load. (Software prefetch, which the q4_0 loop needs, did not pay here:
 * 2 threads, Zen 4, 3.2 GB of Qwen-7B layers from the page cache, 35-36
 * GB/s with or without, against 28-33 GB/s for the f32-activation dots.) */
#define MG_AVX512_BF16 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c")))

MG_AVX512_BF16 MG_INLINE __m512bh mg_bh32(const uint16_t *p) { return (__m512bh)_mm512_loadu_si512(p); }
MG_AVX512_BF16 MG_INLINE __m512bh mg_bh32_masked(__mmask32 m, const uint16_t *p) {
    return (__m512bh)_mm512_maskz_loadu_epi16(m, p);
}

MG_AVX512_BF16 static float mg_dot_bf16_bh(const uint16_t *x, const uint16_t *w, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_dpbf16_ps(a0, mg_bh32(x + i), mg_bh32(w + i));
        a1 = _mm512_dpbf16_ps(a1, mg_bh32(x + i + 32), mg_bh32(w + i + 32));
    }
    for (; i + 32 <= n; i += 32) a0 = _mm512_dpbf16_ps(a0, mg_bh32(x + i), mg_bh32(w + i));
    if (i < n) {
        const __mmask32 m = (__mmask32)((1u << (n - i)) - 1);
        a1 = _mm512_dpbf16_ps(a1, mg_bh32_masked(m, x + i), mg_bh32_masked(m, w + i));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

MG_AVX512_BF16 static void mg_gemv_bf16_avx512bf16(const uint16_t *x, int64_t n, const uint8_t *w_raw,
                                                   int64_t row_stride, int64_t n_rows, float *y) {
    int64_t r = 0;
    for (; r + 4 <= n_rows; r += 4) {
        const uint16_t *w0 = (const uint16_t *)(w_raw + r * row_stride);
        const uint16_t *w1 = (const uint16_t *)(w_raw + (r + 1) * row_stride);
        const uint16_t *w2 = (const uint16_t *)(w_raw + (r + 2) * row_stride);
        const uint16_t *w3 = (const uint16_t *)(w_raw + (r + 3) * row_stride);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps(), b2 = _mm512_setzero_ps(), b3 = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 64 <= n; i += 64) {
            const __m512bh x0 = mg_bh32(x + i), x1 = mg_bh32(x + i + 32);
            a0 = _mm512_dpbf16_ps(a0, x0, mg_bh32(w0 + i));
            a1 = _mm512_dpbf16_ps(a1, x0, mg_bh32(w1 + i));
            a2 = _mm512_dpbf16_ps(a2, x0, mg_bh32(w2 + i));
            a3 = _mm512_dpbf16_ps(a3, x0, mg_bh32(w3 + i));
            b0 = _mm512_dpbf16_ps(b0, x1, mg_bh32(w0 + i + 32));
            b1 = _mm512_dpbf16_ps(b1, x1, mg_bh32(w1 + i + 32));
            b2 = _mm512_dpbf16_ps(b2, x1, mg_bh32(w2 + i + 32));
            b3 = _mm512_dpbf16_ps(b3, x1, mg_bh32(w3 + i + 32));
        }
        for (; i < n; i += 32) {
            /* Tails: whole 32s, then the rest zero-masked (beyond a row's
             * end nothing is read). */
            const __mmask32 m = n - i >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (n - i)) - 1);
            const __m512bh x0 = mg_bh32_masked(m, x + i);
            a0 = _mm512_dpbf16_ps(a0, x0, mg_bh32_masked(m, w0 + i));
            a1 = _mm512_dpbf16_ps(a1, x0, mg_bh32_masked(m, w1 + i));
            a2 = _mm512_dpbf16_ps(a2, x0, mg_bh32_masked(m, w2 + i));
            a3 = _mm512_dpbf16_ps(a3, x0, mg_bh32_masked(m, w3 + i));
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, b0));
        y[r + 1] = _mm512_reduce_add_ps(_mm512_add_ps(a1, b1));
        y[r + 2] = _mm512_reduce_add_ps(_mm512_add_ps(a2, b2));
        y[r + 3] = _mm512_reduce_add_ps(_mm512_add_ps(a3, b3));
    }
    for (; r < n_rows; r++) y[r] = mg_dot_bf16_bh(x, (const uint16_t *)(w_raw + r * row_stride), n);
}

/* q8_0 activation quantization, bit for bit mg_quantize_block_q8_0:
 * d = amax / 127 (stored as f16, round to nearest even like F16C),
 * q = roundf(x / d) with ties away from zero (trunc, then +-1 where the
 * exact remainder is at least one half). */
MG_AVX512 static void mg_quantize_q8_0_avx512(const float *x, mg_block_q8_0 *out, int64_t n) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512 sign_mask = _mm512_castsi512_ps(_mm512_set1_epi32((int)0x80000000u));
    for (int64_t b = 0; b < n / MG_QK8_0; b++) {
        const __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        out[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        const __m512 vid = _mm512_set1_ps(id);
        __m128i q[2];
        for (int h = 0; h < 2; h++) {
            const __m512 v = _mm512_mul_ps(h ? v1 : v0, vid);
            const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
            const __mmask16 up = _mm512_cmp_ps_mask(frac, half, _CMP_GE_OQ);
            const __m512 step = _mm512_or_ps(one, _mm512_and_ps(v, sign_mask));
            const __m512 r = _mm512_mask_add_ps(t, up, t, step);
            q[h] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(r));
        }
        _mm_storeu_si128((__m128i *)out[b].qs, q[0]);
        _mm_storeu_si128((__m128i *)(out[b].qs + 16), q[1]);
    }
}

MG_QGEMV_VIA_DOT(mg_rows_q8_0_avx512, mg_dot_q8_0_avx2)
MG_QGEMV_VIA_DOT(mg_rows_q4_0_avx512, mg_dot_q4_0_avx2)

/* ------ AVX-512 weight panels, bf16 rounding and GELU (see the scalar ones) */

MG_AVX512 static __m256i mg_bf16_bits16_avx512(__m512 v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet));
}

MG_AVX512 static void mg_q8_0_values_avx512(const mg_block_q8_0 *b, __m512 v[2]) {
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(b->d));
    for (int j = 0; j < 2; j++)
        v[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + 16 * j)))));
}
MG_AVX512 static void mg_q4_0_values_avx512(const mg_block_q4_0 *b, __m512 v[2]) {
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(b->d));
    const __m128i packed = _mm_loadu_si128((const __m128i *)b->qs), mask = _mm_set1_epi8(0x0f);
    const __m128i part[2] = {_mm_and_si128(packed, mask), _mm_and_si128(_mm_srli_epi16(packed, 4), mask)};
    for (int j = 0; j < 2; j++)
        v[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(part[j]), _mm512_set1_epi32(8))));
}
MG_AVX512 static inline void mg_store2_f32_avx512(float *out, const __m512 v[2]) {
    _mm512_storeu_ps(out, v[0]);
    _mm512_storeu_ps(out + 16, v[1]);
}
MG_AVX512 static inline void mg_store2_bf16_avx512(uint16_t *out, const __m512 v[2]) {
    _mm256_storeu_si256((__m256i *)out, mg_bf16_bits16_avx512(v[0]));
    _mm256_storeu_si256((__m256i *)(out + 16), mg_bf16_bits16_avx512(v[1]));
}
#define MG_DEQUANT_AVX512(name, block, values, type, store2)                        \
    MG_AVX512 static void name(const void *w, type *out, int64_t n_blocks) {     \
        const block *b = w;                                                       \
        for (int64_t k = 0; k < n_blocks; k++) {                                  \
            __m512 v[2];                                                          \
            values(b + k, v);                                                     \
            store2(out + 32 * k, v);                                              \
        }                                                                         \
    }
MG_DEQUANT_AVX512(mg_dequant_q8_0_f32_avx512, mg_block_q8_0, mg_q8_0_values_avx512, float, mg_store2_f32_avx512)
MG_DEQUANT_AVX512(mg_dequant_q4_0_f32_avx512, mg_block_q4_0, mg_q4_0_values_avx512, float, mg_store2_f32_avx512)
MG_DEQUANT_AVX512(mg_dequant_q8_0_bf16_avx512, mg_block_q8_0, mg_q8_0_values_avx512, uint16_t, mg_store2_bf16_avx512)
MG_DEQUANT_AVX512(mg_dequant_q4_0_bf16_avx512, mg_block_q4_0, mg_q4_0_values_avx512, uint16_t, mg_store2_bf16_avx512)

MG_AVX512 static void mg_to_bf16_avx512(const float *x, uint16_t *out, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(out + i), mg_bf16_bits16_avx512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(out + i, m, mg_bf16_bits16_avx512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

MG_AVX512 static __m512d mg_gelu_pd_avx512(__m512d x) {
    const __m512d one = _mm512_set1_pd(1.0);
    const __m512d t = _mm512_abs_pd(x);
    const __m512d w = _mm512_div_pd(one, _mm512_fmadd_pd(t, _mm512_set1_pd(0.25), one));
    __m512d r = _mm512_set1_pd(mg_gelu_r[12]);
    for (int k = 11; k >= 0; k--) r = _mm512_fmadd_pd(r, w, _mm512_set1_pd(mg_gelu_r[k]));
    const __m512d h = _mm512_mul_pd(_mm512_mul_pd(x, x), _mm512_set1_pd(0.5));
    const __mmask8 live = _mm512_cmp_pd_mask(h, _mm512_set1_pd(MG_GELU_H_MAX), _CMP_LT_OQ);
    const __m512d z = _mm512_sub_pd(_mm512_setzero_pd(), _mm512_min_pd(h, _mm512_set1_pd(MG_GELU_H_MAX)));
    const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(z, _mm512_set1_pd(1.4426950408889634)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d f = _mm512_fnmadd_pd(n, _mm512_set1_pd(MG_LN2_HI), z);
    f = _mm512_fnmadd_pd(n, _mm512_set1_pd(MG_LN2_LO), f);
    __m512d p = _mm512_set1_pd(mg_exp_taylor[11]);
    for (int k = 10; k >= 0; k--) p = _mm512_fmadd_pd(p, f, _mm512_set1_pd(mg_exp_taylor[k]));
    const __m512d er = _mm512_maskz_mul_pd(live, _mm512_scalef_pd(p, n), r);
    const __mmask8 negative = _mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_LT_OQ);
    return _mm512_mul_pd(x, _mm512_mask_blend_pd(negative, _mm512_sub_pd(one, er), er));
}

MG_AVX512 static __m512 mg_gelu16_avx512(__m512 v) {
    const __m256 lo = _mm512_cvtpd_ps(mg_gelu_pd_avx512(_mm512_cvtps_pd(_mm512_castps512_ps256(v))));
    const __m256 hi = _mm512_cvtpd_ps(mg_gelu_pd_avx512(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1))));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

/* y[i] = f(x[i]) over n floats, 16 a step and the tail masked. */
#define MG_AVX512_MAP(name, f16x)                                                              \
    MG_AVX512 static void name(const float *x, float *y, int64_t n) {                          \
        int64_t i = 0;                                                                         \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f16x(_mm512_loadu_ps(x + i)));    \
        if (i < n) {                                                                           \
            const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                              \
            _mm512_mask_storeu_ps(y + i, m, f16x(_mm512_maskz_loadu_ps(m, x + i)));            \
        }                                                                                      \
    }
MG_AVX512_MAP(mg_gelu_erf_avx512, mg_gelu16_avx512)
MG_AVX512_MAP(mg_gelu_f32_avx512, mg_gelu_f32_512)

MG_AVX512 static void mg_sigmoid_mul_avx512(const float *x, float *y, int64_t n, float alpha) {
    const __m512 a = _mm512_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, mg_sigmoid_mul512(_mm512_loadu_ps(x + i), a));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, mg_sigmoid_mul512(_mm512_maskz_loadu_ps(m, x + i), a));
    }
}

/* The norms' rows as the AVX2 entry, 8 doubles / 16 floats a step, the
 * tails masked (masked-off lanes add zeros). */
MG_AVX512 static double mg_row_sum_avx512(const float *x, int64_t n, double shift, bool square) {
    const __m512d vs = _mm512_set1_pd(shift);
    __m512d a[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 4; j++) {
            const __m512d v = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8 * j)), vs);
            a[j] = square ? _mm512_fmadd_pd(v, v, a[j]) : _mm512_add_pd(a[j], v);
        }
    for (; i < n; i += 8) {
        const __mmask8 m = n - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - i)) - 1);
        const __m512d v = _mm512_maskz_sub_pd(m, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x + i)), vs);
        a[0] = square ? _mm512_fmadd_pd(v, v, a[0]) : _mm512_add_pd(a[0], v);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a[0], a[1]), _mm512_add_pd(a[2], a[3])));
}
MG_AVX512 static void mg_norm_row_avx512(const float *x, int64_t n, const float *w, const float *b, float eps,
                                         bool rms, float *o) {
    if (rms) {
        const __m512 vi = _mm512_set1_ps(mg_rms_inverse(mg_row_sum_avx512(x, n, 0.0, true), n, eps));
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
            const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vi);
            _mm512_mask_storeu_ps(o + i, m, w ? _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i), v) : v);
        }
        return;
    }
    const double mean = mg_row_sum_avx512(x, n, 0.0, false) / (double)n;
    const __m512 vm = _mm512_set1_ps((float)mean);
    const __m512 vr = _mm512_set1_ps(mg_layer_norm_rstd(mg_row_sum_avx512(x, n, mean, true), n, eps));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
        if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
        if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i));
        _mm512_mask_storeu_ps(o + i, m, v);
    }
}

static const mg_cpu_kernels mg_kernels_avx512 = {
    mg_dot_f32_avx512, mg_dot_f16_avx512, mg_dot_bf16_avx512, mg_dot_q8_0_avx2, mg_dot_q4_0_avx2,
    mg_axpby_avx512,
    {mg_prep_none_bytes, mg_prep_none, mg_rows_q8_0_avx512},
    {mg_prep_none_bytes, mg_prep_none, mg_rows_q4_0_avx512},
    mg_gemv_bf16_scalar,
    mg_quantize_q8_0_ref,
    mg_dequant_q8_0_f32_avx512, mg_dequant_q4_0_f32_avx512,
    mg_dequant_q8_0_bf16_avx512, mg_dequant_q4_0_bf16_avx512,
    mg_f16_to_f32_avx2, mg_to_bf16_avx512, mg_gelu_erf_avx512, mg_gelu_f32_avx512, mg_sigmoid_mul_avx512,
    mg_axpby_f16_avx512,
    mg_scores_f32_avx512, mg_scores_f16_avx512, mg_attend_f32_avx512, mg_attend_f16_avx512,
    mg_exp_sum_avx512,
    mg_norm_row_avx512,
};
static const mg_cpu_kernels mg_kernels_avx512_vnni = {
    mg_dot_f32_avx512, mg_dot_f16_avx512, mg_dot_bf16_avx512, mg_dot_q8_0_vnni, mg_dot_q4_0_vnni,
    mg_axpby_avx512,
    {mg_prep_q8_0_bytes, mg_prep_q8_0, mg_rows_q8_0_vnni},
    {mg_prep_q4_0_bytes, mg_prep_q4_0, mg_rows_q4_0_vnni},
    mg_gemv_bf16_scalar,
    mg_quantize_q8_0_avx512,
    mg_dequant_q8_0_f32_avx512, mg_dequant_q4_0_f32_avx512,
    mg_dequant_q8_0_bf16_avx512, mg_dequant_q4_0_bf16_avx512,
    mg_f16_to_f32_avx2, mg_to_bf16_avx512, mg_gelu_erf_avx512, mg_gelu_f32_avx512, mg_sigmoid_mul_avx512,
    mg_axpby_f16_avx512,
    mg_scores_f32_avx512, mg_scores_f16_avx512, mg_attend_f32_avx512, mg_attend_f16_avx512,
    mg_exp_sum_avx512,
    mg_norm_row_avx512,
};

static const mg_cpu_kernels mg_kernels_avx512_bf16 = {
    mg_dot_f32_avx512, mg_dot_f16_avx512, mg_dot_bf16_avx512, mg_dot_q8_0_vnni, mg_dot_q4_0_vnni,
    mg_axpby_avx512,
    {mg_prep_q8_0_bytes, mg_prep_q8_0, mg_rows_q8_0_vnni},
    {mg_prep_q4_0_bytes, mg_prep_q4_0, mg_rows_q4_0_vnni},
    mg_gemv_bf16_avx512bf16,
    mg_quantize_q8_0_avx512,
    mg_dequant_q8_0_f32_avx512, mg_dequant_q4_0_f32_avx512,
    mg_dequant_q8_0_bf16_avx512, mg_dequant_q4_0_bf16_avx512,
    mg_f16_to_f32_avx2, mg_to_bf16_avx512, mg_gelu_erf_avx512, mg_gelu_f32_avx512, mg_sigmoid_mul_avx512,
    mg_axpby_f16_avx512,
    mg_scores_f32_avx512, mg_scores_f16_avx512, mg_attend_f32_avx512, mg_attend_f16_avx512,
    mg_exp_sum_avx512,
    mg_norm_row_avx512,
};

mg_cpu_isa mg_cpu_detect_isa(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return MG_ISA_SCALAR;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq"))
        return MG_ISA_AVX2;
    if (!__builtin_cpu_supports("avx512vnni")) return MG_ISA_AVX512;
    if (!__builtin_cpu_supports("avx512bf16")) return MG_ISA_AVX512_VNNI;
    return MG_ISA_AVX512_BF16;
}

const mg_cpu_kernels *mg_cpu_kernels_for(mg_cpu_isa isa) {
    switch (isa) {
    case MG_ISA_AVX512_BF16: return &mg_kernels_avx512_bf16;
    case MG_ISA_AVX512_VNNI: return &mg_kernels_avx512_vnni;
    case MG_ISA_AVX512: return &mg_kernels_avx512;
    case MG_ISA_AVX2: return &mg_kernels_avx2;
    case MG_ISA_SCALAR: break;
    }
    return &mg_kernels_scalar;
}

#else /* not x86-64: the scalar kernels only */

mg_cpu_isa mg_cpu_detect_isa(void) { return MG_ISA_SCALAR; }
const mg_cpu_kernels *mg_cpu_kernels_for(mg_cpu_isa isa) {
    (void)isa;
    return &mg_kernels_scalar;
}

#endif
