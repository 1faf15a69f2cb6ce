/* Vector math shared by the CPU kernels (AVX-512, and AVX2 + FMA). Each
 * function is inlined into its caller, whose target must include AVX-512
 * F/BW/VL/DQ (MG_VMATH_AVX512) or AVX2 and FMA (MG_VMATH_AVX2). */
#ifndef MG_CPU_VMATH_H
#define MG_CPU_VMATH_H

#if defined(__x86_64__)
#include <immintrin.h>

#define MG_VMATH_AVX512 \
    static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

/* 2^n e^r for |r| <= ~0.7: the degree-6 polynomial of Cephes expf and
 * 2^n through scalef. */
MG_VMATH_AVX512 __m512 mg_exp_reduced512(__m512 r, __m512 n) {
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

/* e^x for x <= 88.7, about 1 ulp (Cephes expf: Cody-Waite reduction by
 * ln 2, degree-6 polynomial, 2^n through scalef); exactly 0 below -87.3
 * (so masked -inf scores vanish) and for -inf; e^88.7 above 88.7. */
MG_VMATH_AVX512 __m512 mg_exp512(__m512 x) {
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    return _mm512_maskz_mov_ps(live, mg_exp_reduced512(r, n));
}

/* e^(hi + lo) for a large hi in [-100, 0] given with a small correction lo
 * (|lo| <= 2) that the f32 sum would round away: the reduction subtracts
 * n ln 2 from hi alone (exact), then adds lo. 0 where hi + lo < -87.3. */
MG_VMATH_AVX512 __m512 mg_exp_sum512(__m512 hi, __m512 lo) {
    const __m512 s = _mm512_add_ps(hi, lo);
    const __mmask16 live = _mm512_cmp_ps_mask(s, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(s, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), hi);
    r = _mm512_add_ps(_mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r), lo);
    return _mm512_maskz_mov_ps(live, mg_exp_reduced512(r, n));
}

/* x Phi(x), the erf GELU, in f32 arithmetic: erfc(|x| / sqrt 2) as
 * t e^(-x^2 / 2 + P(t)), t = 1 / (1 + |x| / (2 sqrt 2)), P the degree-9
 * Chebyshev fit of Numerical Recipes' erfcc (relative error below 1.2e-7
 * for every argument), with -x^2 / 2 carried exactly as hi + lo into the
 * exponential; Phi = 1 - erfc / 2 for x >= 0, erfc / 2 below, so neither
 * side cancels. Within 8 ulp of the exact value where |gelu| >= 1e-37
 * (tests state the bound; 6.4 ulp the worst of a 2M-point sweep), at most
 * 1e-37 off below (0 from x < -13.2); ~2x the double-precision kernel. */
MG_VMATH_AVX512 __m512 mg_gelu_f32_512(__m512 x) {
    const __m512 a = _mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(14.0f)); /* NaN: 14, x stays NaN below */
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f),
                                   _mm512_fmadd_ps(a, _mm512_set1_ps(0.353553390593273762f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(0.17087277f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
    const __m512 sq = _mm512_mul_ps(a, a);
    const __m512 minus_half = _mm512_set1_ps(-0.5f);
    const __m512 hi = _mm512_mul_ps(sq, minus_half);                          /* exact: a power of 2 */
    const __m512 lo = _mm512_mul_ps(_mm512_fmsub_ps(a, a, sq), minus_half); /* a^2 - sq, exact */
    const __m512 half_erfc = _mm512_mul_ps(_mm512_mul_ps(t, mg_exp_sum512(hi, _mm512_add_ps(lo, p))),
                                           _mm512_set1_ps(0.5f));
    const __mmask16 nonneg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    const __m512 phi = _mm512_mask_sub_ps(half_erfc, nonneg, _mm512_set1_ps(1.0f), half_erfc);
    return _mm512_mul_ps(x, phi); /* -inf: -inf x 0, NaN, as the reference */
}

/* x / (1 + e^(-alpha x)): SiLU (alpha 1) and QuickGELU (alpha 1.702). Where
 * e^(-alpha x) overflows f32 (-alpha x > 88.72) the quotient is x / inf,
 * a signed zero, as the libm reference gives. */
MG_VMATH_AVX512 __m512 mg_sigmoid_mul512(__m512 x, __m512 alpha) {
    const __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), alpha), x);
    const __mmask16 overflow = _mm512_cmp_ps_mask(t, _mm512_set1_ps(88.72283935546875f), _CMP_GT_OQ);
    const __m512 e = _mm512_mask_mov_ps(mg_exp512(t), overflow, _mm512_set1_ps(__builtin_inff()));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* ---- the same with 8-float vectors (AVX2 + FMA) */
#define MG_VMATH_AVX2 static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* e^x as mg_exp512: the same reduction and polynomial; 2^n (n in [-126,
 * 128]) as the product of two powers of two built in the exponent field,
 * each of n / 2 and the rest, so both stay normal. */
MG_VMATH_AVX2 __m256 mg_exp256(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.7f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(ni, 1), bias = _mm256_set1_epi32(127);
    const __m256 two_a = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
    const __m256 two_b = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), bias), 23));
    return _mm256_and_ps(live, _mm256_mul_ps(_mm256_mul_ps(y, two_a), two_b));
}

/* x / (1 + e^(-alpha x)) as mg_sigmoid_mul512. */
MG_VMATH_AVX2 __m256 mg_sigmoid_mul256(__m256 x, __m256 alpha) {
    const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), alpha), x);
    const __m256 overflow = _mm256_cmp_ps(t, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ);
    const __m256 e = _mm256_blendv_ps(mg_exp256(t), _mm256_set1_ps(__builtin_inff()), overflow);
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
#endif

#endif
