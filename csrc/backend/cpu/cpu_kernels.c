/* Dot-product kernels for linear layers: one activation row against one
 * weight row, in f32/f16/bf16 (weights widened on the fly) and in GGUF
 * q8_0/q4_0 against activations quantized to q8_0 (the integer dot of
 * llama.cpp's ggml_vec_dot_q8_0_q8_0 / ggml_vec_dot_q4_0_q8_0).
 *
 * Each kernel exists as a plain scalar reference and as AVX2 and AVX-512
 * versions compiled with target attributes, so the library builds for the
 * baseline x86-64 and picks the widest set at run time. */
#include "cpu_internal.h"

#include <immintrin.h>
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

static void mg_axpby_scalar(float *y, float scale, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = y[i] * scale + a * x[i];
}

static const mg_cpu_kernels mg_kernels_scalar = {
    mg_dot_f32_scalar, mg_dot_f16_scalar, mg_dot_bf16_scalar, mg_dot_q8_0_scalar, mg_dot_q4_0_scalar,
    mg_axpby_scalar,
};

#if defined(__x86_64__)

/* -------------------------------------------------------------- AVX2 */

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

MG_AVX2 static float mg_dot_q8_0_avx2(const mg_block_q8_0 *x, const void *w_raw, int64_t n_blocks) {
    const mg_block_q8_0 *w = w_raw;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        const __m256 d = _mm256_set1_ps(mg_f16_to_f32(x[b].d) * mg_f16_to_f32(w[b].d));
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
        const __m256 d = _mm256_set1_ps(mg_f16_to_f32(x[b].d) * mg_f16_to_f32(w[b].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        acc = _mm256_fmadd_ps(d, mg_dot32_i8_avx2(qx, mg_unpack_q4_0_avx2(w[b].qs)), acc);
    }
    return mg_hsum256(acc);
}

MG_AVX2 static void mg_axpby_avx2(float *y, float scale, float a, const float *x, int64_t n) {
    const __m256 vs = _mm256_set1_ps(scale), va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(y + i), vs),
                                              _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] = y[i] * scale + a * x[i];
}

static const mg_cpu_kernels mg_kernels_avx2 = {
    mg_dot_f32_avx2, mg_dot_f16_avx2, mg_dot_bf16_avx2, mg_dot_q8_0_avx2, mg_dot_q4_0_avx2,
    mg_axpby_avx2,
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
        const __m256 d0 = _mm256_set1_ps(mg_f16_to_f32(x[b].d) * mg_f16_to_f32(w[b].d));
        const __m256 d1 = _mm256_set1_ps(mg_f16_to_f32(x[b + 1].d) * mg_f16_to_f32(w[b + 1].d));
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)x[b + 1].qs);
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)w[b + 1].qs);
        acc0 = _mm256_fmadd_ps(d0, mg_dot32_i8_vnni(x0, w0), acc0);
        acc1 = _mm256_fmadd_ps(d1, mg_dot32_i8_vnni(x1, w1), acc1);
    }
    for (; b < n_blocks; b++) {
        const __m256 d = _mm256_set1_ps(mg_f16_to_f32(x[b].d) * mg_f16_to_f32(w[b].d));
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
        const __m256 d0 = _mm256_set1_ps(mg_f16_to_f32(x[b].d) * mg_f16_to_f32(w[b].d));
        const __m256 d1 = _mm256_set1_ps(mg_f16_to_f32(x[b + 1].d) * mg_f16_to_f32(w[b + 1].d));
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)x[b + 1].qs);
        acc0 = _mm256_fmadd_ps(d0, mg_dot32_i8_vnni(x0, mg_unpack_q4_0_vnni(w[b].qs)), acc0);
        acc1 = _mm256_fmadd_ps(d1, mg_dot32_i8_vnni(x1, mg_unpack_q4_0_vnni(w[b + 1].qs)), acc1);
    }
    for (; b < n_blocks; b++) {
        const __m256 d = _mm256_set1_ps(mg_f16_to_f32(x[b].d) * mg_f16_to_f32(w[b].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        acc0 = _mm256_fmadd_ps(d, mg_dot32_i8_vnni(qx, mg_unpack_q4_0_vnni(w[b].qs)), acc0);
    }
    return mg_hsum256(_mm256_add_ps(acc0, acc1));
}

MG_AVX512 static void mg_axpby_avx512(float *y, float scale, float a, const float *x, int64_t n) {
    const __m512 vs = _mm512_set1_ps(scale), va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(y + i), vs),
                                              _mm512_mul_ps(va, _mm512_loadu_ps(x + i))));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 vy = _mm512_maskz_loadu_ps(m, y + i), vx = _mm512_maskz_loadu_ps(m, x + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_mul_ps(vy, vs), _mm512_mul_ps(va, vx)));
    }
}

static const mg_cpu_kernels mg_kernels_avx512 = {
    mg_dot_f32_avx512, mg_dot_f16_avx512, mg_dot_bf16_avx512, mg_dot_q8_0_avx2, mg_dot_q4_0_avx2,
    mg_axpby_avx512,
};
static const mg_cpu_kernels mg_kernels_avx512_vnni = {
    mg_dot_f32_avx512, mg_dot_f16_avx512, mg_dot_bf16_avx512, mg_dot_q8_0_vnni, mg_dot_q4_0_vnni,
    mg_axpby_avx512,
};

mg_cpu_isa mg_cpu_detect_isa(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return MG_ISA_SCALAR;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq"))
        return MG_ISA_AVX2;
    if (!__builtin_cpu_supports("avx512vnni")) return MG_ISA_AVX512;
    return MG_ISA_AVX512_VNNI;
}

const mg_cpu_kernels *mg_cpu_kernels_for(mg_cpu_isa isa) {
    switch (isa) {
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
