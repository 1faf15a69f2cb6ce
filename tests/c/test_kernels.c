/* CPU kernel table: every vector level this CPU runs against the scalar
 * reference, on lengths around the vector widths (tails) in buffers of
 * exactly the needed size, so AddressSanitizer sees any overrun:
 *  - q8_0 / q4_0 weight rows to f32 and to bf16: bit for bit;
 *  - f16 to f32 (the f16 weight panels): bit for bit mg_f16_to_f32;
 *  - f32 to bf16: bit for bit mg_f32_to_bf16 (ties, NaN, infinities, subnormals);
 *  - bf16 x bf16 GEMV rows: within the f32 summation bound of the exact dot;
 *  - the exact GELU: within 4 ulp of the libm reference (both are within
 *    a few ulp of x Phi(x); tests/test_ops.py checks them against SciPy),
 *    in place too, with the reference's zeros, infinities and NaN;
 *  - LayerNorm / RMSNorm rows: bit for bit the scalar entry (in place too),
 *    which is checked against long double statistics. */
#include "mg_test.h"

#include <math.h>
#include <stdint.h>

#include "backend/cpu/cpu_internal.h"

static uint32_t mg_rand_state = 12345;
static uint32_t mg_rand(void) {
    mg_rand_state = mg_rand_state * 1664525u + 1013904223u;
    return mg_rand_state >> 8;
}
static float mg_rand_float(void) { return ((float)(mg_rand() % 2000001) - 1000000.0f) / 100000.0f; }

static uint32_t mg_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

/* A row of n_blocks blocks with scales over the f16 range (subnormal to
 * large, and one infinite scale: inf * 0 is NaN). */
static uint16_t mg_rand_scale(int64_t b) {
    if (b == 3) return 0x7c00;                      /* +inf */
    if (b % 5 == 1) return (uint16_t)(mg_rand() % 0x400); /* subnormal or zero */
    return (uint16_t)((mg_rand() % 0x7800) | (mg_rand() & 1 ? 0x8000 : 0));
}

static void check_dequant(const mg_cpu_kernels *ref, const mg_cpu_kernels *k, const char *name) {
    for (int64_t n_blocks = 1; n_blocks <= 9; n_blocks++) {
        mg_block_q8_0 *q8 = malloc((size_t)n_blocks * sizeof *q8);
        mg_block_q4_0 *q4 = malloc((size_t)n_blocks * sizeof *q4);
        const size_t n = (size_t)n_blocks * 32;
        float *f_ref = malloc(n * 4), *f_got = malloc(n * 4);
        uint16_t *h_ref = malloc(n * 2), *h_got = malloc(n * 2);
        for (int64_t b = 0; b < n_blocks; b++) {
            q8[b].d = mg_rand_scale(b);
            q4[b].d = mg_rand_scale(b + 1);
            for (int i = 0; i < 32; i++) q8[b].qs[i] = (int8_t)(mg_rand() % 255 - 127);
            for (int i = 0; i < 16; i++) q4[b].qs[i] = (uint8_t)mg_rand();
        }
        int same = 1;
        ref->dequant_q8_0_f32(q8, f_ref, n_blocks);
        k->dequant_q8_0_f32(q8, f_got, n_blocks);
        for (size_t i = 0; i < n; i++) same &= mg_bits(f_ref[i]) == mg_bits(f_got[i]);
        ref->dequant_q4_0_f32(q4, f_ref, n_blocks);
        k->dequant_q4_0_f32(q4, f_got, n_blocks);
        for (size_t i = 0; i < n; i++) same &= mg_bits(f_ref[i]) == mg_bits(f_got[i]);
        ref->dequant_q8_0_bf16(q8, h_ref, n_blocks);
        k->dequant_q8_0_bf16(q8, h_got, n_blocks);
        same &= memcmp(h_ref, h_got, n * 2) == 0;
        ref->dequant_q4_0_bf16(q4, h_ref, n_blocks);
        k->dequant_q4_0_bf16(q4, h_got, n_blocks);
        same &= memcmp(h_ref, h_got, n * 2) == 0;
        /* and the scalar f32 one is mg_dequantize_row's */
        float *row = malloc(n * 4);
        CHECK_OK(mg_dequantize_row(MG_Q4_0, q4, row, (int64_t)n));
        same &= memcmp(row, f_ref, n * 4) == 0;
        if (!same) fprintf(stderr, "%s: dequantized rows of %lld blocks differ\n", name, (long long)n_blocks);
        CHECK(same);
        free(row);
        free(q8);
        free(q4);
        free(f_ref);
        free(f_got);
        free(h_ref);
        free(h_got);
    }
}

static void check_to_bf16(const mg_cpu_kernels *k, const char *name) {
    for (int64_t n = 1; n <= 40; n++) {
        float *x = malloc((size_t)n * 4);
        uint16_t *got = malloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) {
            uint32_t bits = mg_rand() << 8 | (mg_rand() & 0xff);
            switch (i % 8) {
            case 0: bits = (bits & 0xffff0000u) | 0x8000u; break; /* a tie */
            case 1: bits &= 0x807fffffu; break;                   /* subnormal */
            case 2: bits |= 0x7f800000u; break;                   /* NaN or infinity */
            default: break;
            }
            memcpy(&x[i], &bits, 4);
        }
        k->to_bf16(x, got, n);
        int same = 1;
        for (int64_t i = 0; i < n; i++) same &= got[i] == mg_f32_to_bf16(x[i]);
        if (!same) fprintf(stderr, "%s: to_bf16 of %lld values differs\n", name, (long long)n);
        CHECK(same);
        free(x);
        free(got);
    }
}

static void check_f16(const mg_cpu_kernels *k, const char *name) {
    for (int64_t n = 1; n <= 40; n++) {
        uint16_t *h = malloc((size_t)n * 2);
        float *got = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++) {
            h[i] = (uint16_t)mg_rand();
            if ((h[i] & 0x7c00) == 0x7c00) h[i] &= 0xfc00; /* infinities, not NaN payloads */
            if (i % 7 == 0) h[i] &= 0x83ff;                /* subnormals */
        }
        k->f16_to_f32(h, got, n);
        int same = 1;
        for (int64_t i = 0; i < n; i++) same &= mg_bits(got[i]) == mg_bits(mg_f16_to_f32(h[i]));
        if (!same) fprintf(stderr, "%s: f16_to_f32 of %lld values differs\n", name, (long long)n);
        CHECK(same);
        free(h);
        free(got);
    }
}

/* bf16 x bf16 rows: within the worst-case bound of any f32 summation order
 * of the exact products, (n + 8) 2^-24 sum |x w|, of the exact (double) dot,
 * for lengths around the 32- and 64-element steps and 1..9 rows (the
 * four-row step and its tail), rows padded or not, the weight buffer
 * exactly as long as the last row's end. */
static void check_gemv_bf16(const mg_cpu_kernels *k, const char *name) {
    static const int64_t lengths[] = {1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 95, 96, 97, 130, 1000};
    int bad = 0;
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        const int64_t n = lengths[li];
        for (int64_t n_rows = 1; n_rows <= 9; n_rows++) {
            const int64_t row_stride = n * 2 + (n_rows % 2 ? 6 : 0);
            const size_t w_bytes = (size_t)(row_stride * (n_rows - 1) + n * 2);
            uint16_t *x = malloc((size_t)n * 2);
            uint8_t *w = malloc(w_bytes);
            float *y = malloc((size_t)n_rows * 4);
            for (int64_t i = 0; i < n; i++) x[i] = mg_f32_to_bf16(i % 11 == 5 ? 0.0f : mg_rand_float());
            for (size_t i = 0; i + 1 < w_bytes; i += 2) {
                const uint16_t v = mg_f32_to_bf16(mg_rand_float() * 0.01f);
                memcpy(w + i, &v, 2);
            }
            k->gemv_bf16(x, n, w, row_stride, n_rows, y);
            for (int64_t r = 0; r < n_rows; r++) {
                double exact = 0.0, magnitude = 0.0;
                for (int64_t i = 0; i < n; i++) {
                    uint16_t wi;
                    memcpy(&wi, w + r * row_stride + 2 * i, 2);
                    const double p = (double)mg_bf16_to_f32(x[i]) * (double)mg_bf16_to_f32(wi);
                    exact += p;
                    magnitude += fabs(p);
                }
                const double bound = (double)(n + 8) * ldexp(1.0, -24) * magnitude + 1e-30;
                if (!(fabs((double)y[r] - exact) <= bound)) bad++;
            }
            free(x);
            free(w);
            free(y);
        }
    }
    if (bad) fprintf(stderr, "%s: %d bf16 GEMV rows outside the summation bound\n", name, bad);
    CHECK(bad == 0);
}

static double mg_ulps(float got, float want) {
    if (got == want) return 0.0;
    if (!isfinite(got) || !isfinite(want)) return INFINITY;
    double spacing = nextafterf(fabsf(want), INFINITY) - fabsf(want);
    return fabs((double)got - (double)want) / spacing;
}

static void check_gelu(const mg_cpu_kernels *k, const char *name) {
    double worst = 0.0;
    for (int64_t n = 1; n <= 70; n += 3) {
        float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++) x[i] = mg_rand_float() * (i % 3 ? 1.0f : 0.001f);
        k->gelu_erf(x, y, n);
        for (int64_t i = 0; i < n; i++) {
            double u = mg_ulps(y[i], mg_cpu_gelu_erf_ref(x[i]));
            if (u > worst) worst = u;
        }
        k->gelu_erf(x, x, n); /* in place */
        CHECK(memcmp(x, y, (size_t)n * 4) == 0);
        free(x);
        free(y);
    }
    if (worst > 4.0) fprintf(stderr, "%s: GELU %.1f ulp from the reference\n", name, worst);
    CHECK(worst <= 4.0);
    /* the deep tail, to where x Phi(x) underflows */
    float tail[64], out[64];
    for (int i = 0; i < 64; i++) tail[i] = -5.0f - 0.15f * (float)i;
    k->gelu_erf(tail, out, 64);
    worst = 0.0;
    for (int i = 0; i < 64; i++) {
        double u = mg_ulps(out[i], mg_cpu_gelu_erf_ref(tail[i]));
        if (u > worst) worst = u;
    }
    CHECK(worst <= 4.0);
    float special[6] = {0.0f, -0.0f, INFINITY, -30.0f, 30.0f, NAN}, got[6];
    k->gelu_erf(special, got, 6);
    CHECK(got[0] == 0.0f && !signbit(got[0]));
    CHECK(got[1] == 0.0f && signbit(got[1]));
    CHECK(got[2] == INFINITY);
    CHECK(got[3] == 0.0f && signbit(got[3]));
    CHECK(got[4] == 30.0f);
    CHECK(isnan(got[5]));
}

/* The f32-arithmetic GELU (gelu_erf_f32, where a level has its own): within
 * 8 ulp of the long-double exact value where |gelu| >= 1e-37, within 1e-37
 * below, over every 8192nd float of [-16, 16] (both signs, 16 down to 5e-38);
 * NaN / infinities / zeros as the double-precision kernel. */
static void check_gelu_f32(const mg_cpu_kernels *k, const char *name) {
    if (k->gelu_erf_f32 == k->gelu_erf) return;
    enum { N = 1 << 18 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    int64_t n = 0;
    for (uint32_t bits = 0x41800000u; n + 2 <= N && bits >= 8192; bits -= 8192) { /* 16 down to 5e-38 */
        float v;
        memcpy(&v, &bits, 4);
        x[n++] = v;
        x[n++] = -v;
    }
    k->gelu_erf_f32(x, y, n);
    double worst = 0.0, worst_x = 0.0, worst_abs = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const long double v = x[i], exact = 0.5L * v * erfcl(-v / sqrtl(2.0L));
        const double err = (double)fabsl((long double)y[i] - exact);
        if (fabsl(exact) < 1e-37L) {
            if (err > worst_abs) worst_abs = err;
            continue;
        }
        const float e = (float)exact;
        const double u = err / ((double)nextafterf(fabsf(e), INFINITY) - (double)fabsf(e));
        if (u > worst) worst = u, worst_x = x[i];
    }
    if (worst > 8.0 || worst_abs > 1e-37)
        fprintf(stderr, "%s: f32 GELU %.2f ulp at x = %g, %g off in the tail\n", name, worst, worst_x, worst_abs);
    CHECK(worst <= 8.0);
    CHECK(worst_abs <= 1e-37);
    CHECK(worst > 0.0); /* not the double-precision kernel under another name */
    float special[7] = {0.0f, -0.0f, INFINITY, -INFINITY, -30.0f, 30.0f, NAN}, got[7], want[7];
    k->gelu_erf_f32(special, got, 7);
    k->gelu_erf(special, want, 7);
    for (int i = 0; i < 7; i++)
        CHECK((isnan(got[i]) && isnan(want[i])) || (got[i] == want[i] && signbit(got[i]) == signbit(want[i])));
    k->gelu_erf_f32(x, x, 37); /* in place, a tail */
    CHECK(memcmp(x, y, 37 * sizeof(float)) == 0);
    free(x);
    free(y);
}

/* The decode attention entries (scores over one key, values over 1 and 3
 * keys a call): the f16 forms give the f32 forms' bits on the widened
 * values; scores within a summation bound of the double dot, values exactly
 * acc + p v key by key as an f32 product then sum; head counts around the
 * 16-head steps, grouped heads, head sizes with tails, byte strides wider
 * than the heads and the key rows. */
static void check_decode_attention(const mg_cpu_kernels *k, const char *name) {
    static const int64_t heads[] = {1, 5, 16, 17, 33}, groups[] = {1, 4}, dims[] = {1, 40, 128, 130};
    int bad = 0;
    for (size_t a = 0; a < sizeof heads / sizeof *heads; a++)
        for (size_t b = 0; b < sizeof groups / sizeof *groups; b++)
            for (size_t c = 0; c < sizeof dims / sizeof *dims; c++) {
                const int64_t H = heads[a], g = H % groups[b] == 0 ? groups[b] : 1, D = dims[c], Hk = H / g;
                const int64_t qs = D + 3, ks = D + 5; /* elements between heads */
                float *q = malloc((size_t)(H * qs) * 4), *kf = malloc((size_t)(Hk * ks) * 4);
                uint16_t *kh = malloc((size_t)(Hk * ks) * 2);
                float *out32 = malloc((size_t)H * 2 * 4), *out16 = malloc((size_t)H * 2 * 4);
                float *acc32 = malloc((size_t)(H * (D + 2)) * 4), *acc16 = malloc((size_t)(H * (D + 2)) * 4);
                float *p = malloc((size_t)H * 3 * 4);
                for (int64_t i = 0; i < H * qs; i++) q[i] = mg_rand_float();
                for (int64_t i = 0; i < Hk * ks; i++) {
                    kh[i] = mg_f32_to_f16(mg_rand_float() * 0.01f);
                    kf[i] = mg_f16_to_f32(kh[i]);
                }
                for (int64_t i = 0; i < H * 3; i++) p[i] = mg_rand_float();
                k->scores_f32((const uint8_t *)q, qs * 4, (const uint8_t *)kf, ks * 4, H, g, D, 0.125f, out32, 2);
                k->scores_f16((const uint8_t *)q, qs * 4, (const uint8_t *)kh, ks * 2, H, g, D, 0.125f, out16, 2);
                for (int64_t h = 0; h < H; h++) {
                    double exact = 0.0, magnitude = 0.0;
                    for (int64_t i = 0; i < D; i++) {
                        const double t = (double)q[h * qs + i] * (double)kf[(h / g) * ks + i];
                        exact += t;
                        magnitude += fabs(t);
                    }
                    exact *= 0.125;
                    const double bound = (double)(D + 8) * ldexp(1.0, -24) * magnitude * 0.125 + 1e-30;
                    if (mg_bits(out32[h * 2]) != mg_bits(out16[h * 2]) || !(fabs(out32[h * 2] - exact) <= bound)) bad++;
                }
                /* values: 1 and 3 keys a call, key rows Hk * ks + 7 elements apart */
                const int64_t vk = Hk * ks + 7;
                float *vf = malloc((size_t)(3 * vk) * 4);
                uint16_t *vh = malloc((size_t)(3 * vk) * 2);
                for (int64_t i = 0; i < 3 * vk; i++) {
                    vh[i] = mg_f32_to_f16(mg_rand_float() * 0.01f);
                    vf[i] = mg_f16_to_f32(vh[i]);
                }
                float *want = malloc((size_t)(H * (D + 2)) * 4);
                for (int64_t n_keys = 1; n_keys <= 3; n_keys += 2) {
                    for (int64_t i = 0; i < H * (D + 2); i++) acc32[i] = acc16[i] = mg_rand_float();
                    memcpy(want, acc32, (size_t)(H * (D + 2)) * 4);
                    for (int64_t h = 0; h < H; h++)
                        for (int64_t j = 0; j < n_keys; j++)
                            for (int64_t i = 0; i < D; i++) {
                                /* no FMA contraction */
                                volatile float prod = p[h * 3 + j] * vf[j * vk + (h / g) * ks + i];
                                want[h * (D + 2) + i] = want[h * (D + 2) + i] + prod;
                            }
                    k->attend_f32(acc32, D + 2, p, 3, (const uint8_t *)vf, vk * 4, ks * 4, n_keys, H, g, D);
                    k->attend_f16(acc16, D + 2, p, 3, (const uint8_t *)vh, vk * 2, ks * 2, n_keys, H, g, D);
                    if (memcmp(acc32, want, (size_t)(H * (D + 2)) * 4) != 0 ||
                        memcmp(acc16, want, (size_t)(H * (D + 2)) * 4) != 0)
                        bad++;
                }
                free(q), free(kf), free(kh), free(out32), free(out16), free(acc32), free(acc16), free(p), free(want);
                free(vf), free(vh);
            }
    if (bad) fprintf(stderr, "%s: %d decode attention cases wrong\n", name, bad);
    CHECK(bad == 0);
    float s[37], e[37];
    for (int i = 0; i < 37; i++) s[i] = e[i] = (float)(i % 9) - 7.5f;
    const float l = k->exp_sum(s, 37, 0.5f);
    double sum = 0.0;
    int far = 0;
    for (int i = 0; i < 37; i++) {
        const double want = exp((double)e[i] - 0.5);
        sum += want;
        if (fabs(s[i] - want) > 4e-7 * want) far++;
    }
    CHECK(far == 0);
    CHECK(fabs(l - sum) <= 1e-6 * sum);
}

/* Norm rows: LayerNorm and RMSNorm with and without weight / bias, lengths
 * around the vector widths, rows centred on 0 and on 1000 (where a one-pass
 * variance would cancel): every level bit for bit the scalar entry, in
 * place too; the scalar entry within a few f32 roundings of long double
 * statistics. */
static void check_norm_row(const mg_cpu_kernels *ref, const mg_cpu_kernels *k, const char *name) {
    static const int64_t lengths[] = {1, 2, 7, 8, 15, 16, 17, 31, 32, 33, 100, 1664, 4096};
    int bad = 0, far = 0;
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
        const int64_t n = lengths[li];
        float *x = malloc((size_t)n * 4), *w = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
        float *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
        for (int variant = 0; variant < 16; variant++) {
            const bool rms = variant & 1, with_w = variant & 2, with_b = (variant & 4) && !rms;
            const float centre = variant & 8 ? 1000.0f : 0.0f;
            for (int64_t i = 0; i < n; i++) {
                x[i] = centre + mg_rand_float();
                w[i] = mg_rand_float();
                b[i] = mg_rand_float();
            }
            const float *wp = with_w ? w : NULL, *bp = with_b ? b : NULL;
            ref->norm_row(x, n, wp, bp, 1e-6f, rms, want);
            k->norm_row(x, n, wp, bp, 1e-6f, rms, got);
            if (memcmp(want, got, (size_t)n * 4) != 0) bad++;
            memcpy(got, x, (size_t)n * 4);
            k->norm_row(got, n, wp, bp, 1e-6f, rms, got);
            if (memcmp(want, got, (size_t)n * 4) != 0) bad++;
            long double mean = 0.0L, var = 0.0L;
            for (int64_t i = 0; i < n; i++) mean += rms ? 0.0L : (long double)x[i];
            mean /= n;
            for (int64_t i = 0; i < n; i++) var += ((long double)x[i] - mean) * ((long double)x[i] - mean);
            const long double rstd = 1.0L / sqrtl(var / n + 1e-6L);
            for (int64_t i = 0; i < n; i++) {
                const long double e =
                    ((long double)x[i] - mean) * rstd * (wp ? wp[i] : 1.0f) + (bp ? bp[i] : 0.0f);
                /* f32 roundings of x - mean (|x| up to 1010), the product and the sum */
                const long double bound = 1e-6L * (1.0L + fabsl(((long double)x[i] + 1010.0L) * rstd)) *
                                          (wp ? 1.0L + fabsl((long double)wp[i]) : 1.0L) + 1e-6L * fabsl(e);
                if (fabsl((long double)want[i] - e) > bound) far++;
            }
        }
        free(x), free(w), free(b), free(want), free(got);
    }
    if (bad || far)
        fprintf(stderr, "%s: %d norm rows differ from the scalar entry, %d values far off\n", name, bad, far);
    CHECK(bad == 0);
    CHECK(far == 0);
}

int main(void) {
    static const char *names[] = {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16"};
    const mg_cpu_kernels *ref = mg_cpu_kernels_for(MG_ISA_SCALAR);
    const mg_cpu_isa top = mg_cpu_detect_isa();
    for (int level = MG_ISA_SCALAR; level <= (int)top; level++) {
        const mg_cpu_kernels *k = mg_cpu_kernels_for((mg_cpu_isa)level);
        check_dequant(ref, k, names[level]);
        check_to_bf16(k, names[level]);
        check_f16(k, names[level]);
        check_gelu(k, names[level]);
        check_gelu_f32(k, names[level]);
        check_decode_attention(k, names[level]);
        check_gemv_bf16(k, names[level]);
        check_norm_row(ref, k, names[level]);
    }
    return mg_test_finish("test_kernels");
}
