/* Vector math shared by the CPU kernels (AVX-512). Each function is inlined
 * into its caller, whose target must include AVX-512 F/BW/VL/DQ. */
#ifndef MG_CPU_VMATH_H
#define MG_CPU_VMATH_H

#if defined(__x86_64__)
#include <immintrin.h>

#define MG_VMATH_AVX512 \
    static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

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
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(y, n));
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
#endif

#endif
