/* The int8 (AVX-512 VNNI) GEMM of q8_0 / q4_0 weights (cpu_qgemm.c)
 * against a scalar reference written here from the q8_0 / q4_0 block
 * definitions: activations quantized by mg_quantize_row (the reference
 * quantizer), then per 32-block d_x * d_w * (int32 dot of the quants),
 * summed in double. Each output must be within 2e-5 of the sum of its
 * terms' magnitudes (f32 accumulation of up to a few hundred blocks) of
 * it, with the reference's infinities and NaNs (infinite scales). Shapes
 * with tails in M (a last tile of 1 to 5 of the 6 rows), N (the 32-column
 * tiles and 16-column vectors), K (one to 257 blocks: across the 128-block
 * K pieces), padded weight rows (row stride above the row size),
 * saturated quants (+-127 activations, q8_0 -128 / +127, q4_0 nibbles 0
 * and 15), subnormal and infinite f16 scales; every buffer exactly sized so AddressSanitizer sees
 * overruns. Skipped (passing) on CPUs without AVX-512 VNNI. */
#include "mg_test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cpu/cpu_internal.h"

static uint32_t mg_rand_state = 2024;
static uint32_t mg_rand(void) {
    mg_rand_state = mg_rand_state * 1664525u + 1013904223u;
    return mg_rand_state >> 8;
}
static float mg_rand_unit(void) { return ((float)(mg_rand() % 2000001) - 1000000.0f) / 1000000.0f; }

enum { MG_X_RANDOM, MG_X_SATURATED };
enum { MG_W_RANDOM, MG_W_EXTREME };

/* A weight of n_rows rows of n_blocks blocks, row_stride bytes apart (the
 * padding bytes are garbage). Scales: mostly normal, some subnormal or
 * zero; block inf_block of row inf_row gets +inf (-1: none). */
static uint8_t *mg_make_weight(mg_dtype dtype, int64_t n_rows, int64_t n_blocks, int64_t row_stride, int kind,
                               int64_t inf_row, int64_t inf_block) {
    uint8_t *w = malloc((size_t)(n_rows * row_stride));
    for (int64_t i = 0; i < n_rows * row_stride; i++) w[i] = (uint8_t)mg_rand();
    for (int64_t r = 0; r < n_rows; r++) {
        for (int64_t b = 0; b < n_blocks; b++) {
            uint16_t d = (uint16_t)(0x2000 + mg_rand() % 0x2000); /* ~2^-7 .. 2^0 */
            if (b % 7 == 3) d = (uint16_t)(mg_rand() % 0x400);   /* subnormal or zero */
            if (mg_rand() & 1) d |= 0x8000;
            if (r == inf_row && b == inf_block) d = 0x7c00;
            if (dtype == MG_Q8_0) {
                mg_block_q8_0 *blk = (mg_block_q8_0 *)(w + r * row_stride) + b;
                blk->d = d;
                for (int i = 0; i < 32; i++) {
                    int q = (int)(mg_rand() % 255) - 127;
                    if (kind == MG_W_EXTREME) q = (mg_rand() & 1) ? 127 : (mg_rand() & 1) ? -127 : -128;
                    blk->qs[i] = (int8_t)q;
                }
            } else {
                mg_block_q4_0 *blk = (mg_block_q4_0 *)(w + r * row_stride) + b;
                blk->d = d;
                for (int i = 0; i < 16; i++) {
                    uint8_t q = (uint8_t)mg_rand();
                    if (kind == MG_W_EXTREME) q = (mg_rand() & 1) ? 0xf0 : (mg_rand() & 1) ? 0x0f : (mg_rand() & 1) ? 0xff : 0x00;
                    blk->qs[i] = q;
                }
            }
        }
    }
    return w;
}

static int mg_weight_quant(mg_dtype dtype, const uint8_t *row, int64_t b, int i) {
    if (dtype == MG_Q8_0) return ((const mg_block_q8_0 *)row)[b].qs[i];
    const mg_block_q4_0 *blk = (const mg_block_q4_0 *)row + b;
    return (i < 16 ? blk->qs[i] & 0x0f : blk->qs[i - 16] >> 4) - 8;
}
static uint16_t mg_weight_scale(mg_dtype dtype, const uint8_t *row, int64_t b) {
    return dtype == MG_Q8_0 ? ((const mg_block_q8_0 *)row)[b].d : ((const mg_block_q4_0 *)row)[b].d;
}

static int mg_classify_same(double ref, float got) {
    if (isnan(ref)) return isnan(got);
    if (isinf(ref)) return isinf(got) && (ref > 0) == (got > 0);
    return isfinite(got);
}

/* One case: M x K activations against an N x K weight; returns failures. */
static int check_case(mg_context *ctx, mg_dtype dtype, int64_t M, int64_t N, int64_t n_blocks, int64_t pad,
                      int x_kind, int w_kind, bool with_inf) {
    const int64_t K = 32 * n_blocks;
    size_t row_bytes = 0;
    mg_dtype_row_bytes(dtype, K, &row_bytes);
    const int64_t row_stride = (int64_t)row_bytes + pad;
    uint8_t *w = mg_make_weight(dtype, N, n_blocks, row_stride, w_kind, with_inf ? N / 2 : -1, n_blocks / 2);
    float *x = malloc((size_t)(M * K) * sizeof *x);
    for (int64_t i = 0; i < M * K; i++) {
        x[i] = mg_rand_unit() * (float)(1 << (mg_rand() % 8));
        if (x_kind == MG_X_SATURATED) x[i] = (mg_rand() & 1) ? 1.0f : -1.0f; /* every quant +-127 */
    }
    if (M > 1 && n_blocks > 1)
        for (int i = 0; i < 32; i++) x[K + 32 + i] = 0.0f; /* an all-zero block: d_x = 0 */
    float *bias = malloc((size_t)N * sizeof *bias);
    for (int64_t n = 0; n < N; n++) bias[n] = mg_rand_unit();
    float *y = malloc((size_t)(M * N) * sizeof *y);
    mg_block_q8_0 *xq = malloc((size_t)(M * n_blocks) * sizeof *xq);
    for (int64_t m = 0; m < M; m++) CHECK_OK(mg_quantize_row(MG_Q8_0, x + m * K, xq + m * n_blocks, K));

    mg_tensor weight;
    int64_t shape[2] = {N, K};
    CHECK_OK(mg_tensor_init(&weight, w, dtype, 2, shape));
    weight.strides[0] = row_stride;
    int bad = 0;
    if (mg_cpu_qgemm(ctx, x, M, K, &weight, bias, y) != MG_OK) {
        fprintf(stderr, "qgemm failed: %s\n", mg_last_error());
        bad = 1;
    }
    for (int64_t m = 0; !bad && m < M; m++) {
        for (int64_t n = 0; n < N; n++) {
            const uint8_t *row = w + n * row_stride;
            double ref = bias[n], mag = fabs(bias[n]);
            for (int64_t b = 0; b < n_blocks; b++) {
                const mg_block_q8_0 *xb = xq + m * n_blocks + b;
                int32_t isum = 0;
                for (int i = 0; i < 32; i++) isum += (int32_t)xb->qs[i] * mg_weight_quant(dtype, row, b, i);
                const double term = (double)mg_f16_to_f32(xb->d) * (double)mg_f16_to_f32(mg_weight_scale(dtype, row, b)) * isum;
                ref += term;
                mag += fabs(term);
            }
            const float got = y[m * N + n];
            const bool ok = isfinite(ref) ? isfinite(got) && fabs(got - ref) <= 2e-5 * mag + 1e-30
                                          : mg_classify_same(ref, got);
            if (!ok) {
                if (bad < 5)
                    fprintf(stderr, "%s M=%lld N=%lld blocks=%lld: y[%lld, %lld] = %.9g, reference %.9g (scale %.3g)\n",
                            mg_dtype_name(dtype), (long long)M, (long long)N, (long long)n_blocks, (long long)m,
                            (long long)n, got, ref, mag);
                bad++;
            }
        }
    }
    free(w);
    free(x);
    free(bias);
    free(y);
    free(xq);
    return bad;
}

/* Same results with 1 and 2 threads and through mg_linear (bit for bit:
 * each output is one thread's, summed in one order). */
static void check_threads_and_route(mg_context *one, mg_context *two) {
    const int64_t M = 23, N = 77, K = 32 * 131;
    mg_block_q8_0 *w = malloc((size_t)(N * K / 32) * sizeof *w);
    float *x = malloc((size_t)(M * K) * sizeof *x), *wf = malloc((size_t)K * sizeof *wf);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) wf[k] = mg_rand_unit();
        CHECK_OK(mg_quantize_row(MG_Q8_0, wf, w + n * K / 32, K));
    }
    for (int64_t i = 0; i < M * K; i++) x[i] = mg_rand_unit();
    float *y1 = malloc((size_t)(M * N) * 4), *y2 = malloc((size_t)(M * N) * 4), *y3 = malloc((size_t)(M * N) * 4);
    mg_tensor weight, xt, yt;
    int64_t wshape[2] = {N, K}, xshape[2] = {M, K}, yshape[2] = {M, N};
    CHECK_OK(mg_tensor_init(&weight, w, MG_Q8_0, 2, wshape));
    CHECK_OK(mg_tensor_init(&xt, x, MG_F32, 2, xshape));
    CHECK_OK(mg_tensor_init(&yt, y3, MG_F32, 2, yshape));
    CHECK_OK(mg_cpu_qgemm(one, x, M, K, &weight, NULL, y1));
    CHECK_OK(mg_cpu_qgemm(two, x, M, K, &weight, NULL, y2));
    CHECK_OK(mg_linear(two, &xt, &weight, NULL, &yt));
    CHECK(memcmp(y1, y2, (size_t)(M * N) * 4) == 0);
    CHECK(memcmp(y1, y3, (size_t)(M * N) * 4) == 0);
    free(w);
    free(x);
    free(wf);
    free(y1);
    free(y2);
    free(y3);
}

static void check_errors(mg_context *ctx) {
    float x[32] = {0}, y[2];
    float wf[64] = {0};
    mg_tensor weight;
    int64_t shape[2] = {2, 32};
    CHECK_OK(mg_tensor_init(&weight, wf, MG_F32, 2, shape));
    CHECK_STATUS(mg_cpu_qgemm(ctx, x, 1, 32, &weight, NULL, y), MG_ERR_DTYPE);
    CHECK_MESSAGE("weight must be q8_0 or q4_0, not f32");
    mg_block_q8_0 wq[2];
    memset(wq, 0, sizeof wq);
    CHECK_OK(mg_tensor_init(&weight, wq, MG_Q8_0, 2, shape));
    CHECK_STATUS(mg_cpu_qgemm(ctx, x, 1, 16, &weight, NULL, y), MG_ERR_SHAPE);
    CHECK_MESSAGE("multiple of 32");
}

int main(void) {
    mg_context *one = NULL, *two = NULL;
    mg_context_options o1 = {MG_DEVICE_CPU, 1, MG_BLAS_DEFAULT, MG_FPMATH_DEFAULT},
                       o2 = {MG_DEVICE_CPU, 2, MG_BLAS_DEFAULT, MG_FPMATH_DEFAULT};
    CHECK_OK(mg_context_create(&o1, &one));
    CHECK_OK(mg_context_create(&o2, &two));
    if (!one || !two) return mg_test_finish("test_qgemm");
    if (!mg_cpu_qgemm_available(one)) {
        float x[32] = {0}, y[1];
        mg_block_q8_0 wq[1];
        memset(wq, 0, sizeof wq);
        mg_tensor weight;
        int64_t shape[2] = {1, 32};
        CHECK_OK(mg_tensor_init(&weight, wq, MG_Q8_0, 2, shape));
        CHECK_STATUS(mg_cpu_qgemm(one, x, 1, 32, &weight, NULL, y), MG_ERR_UNSUPPORTED);
        CHECK_MESSAGE("needs AVX-512 VNNI");
        printf("test_qgemm: no AVX-512 VNNI (or MG_CPU_ISA caps it): kernel checks skipped\n");
    } else {
        const int64_t Ms[] = {1, 2, 3, 4, 5, 6, 7, 13, 17}; /* every row count of a last tile */
        const int64_t Ns[] = {1, 15, 16, 17, 31, 33, 100};
        const int64_t Bs[] = {1, 2, 3, 5, 129, 130};
        for (int d = 0; d < 2; d++) {
            const mg_dtype dtype = d ? MG_Q4_0 : MG_Q8_0;
            for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++)
                for (size_t j = 0; j < sizeof Ns / sizeof *Ns; j++)
                    for (size_t k = 0; k < sizeof Bs / sizeof *Bs; k++) {
                        mg_context *ctx = (i + j + k) % 2 ? two : one;
                        const int64_t pad = (i + k) % 3 == 0 ? 6 : 0;
                        CHECK(check_case(ctx, dtype, Ms[i], Ns[j], Bs[k], pad, MG_X_RANDOM, MG_W_RANDOM, false) == 0);
                    }
            /* saturated quants, both operands; infinite scales; a long K */
            CHECK(check_case(two, dtype, 13, 45, 9, 0, MG_X_SATURATED, MG_W_EXTREME, false) == 0);
            CHECK(check_case(one, dtype, 7, 33, 4, 2, MG_X_SATURATED, MG_W_EXTREME, false) == 0);
            CHECK(check_case(two, dtype, 11, 40, 6, 0, MG_X_RANDOM, MG_W_RANDOM, true) == 0);
            CHECK(check_case(two, dtype, 30, 70, 257, 0, MG_X_RANDOM, MG_W_RANDOM, false) == 0);
            /* 52 column tiles on 2 threads: 14 uneven runs of 3-4 tiles */
            CHECK(check_case(two, dtype, 8, 1650, 3, 0, MG_X_RANDOM, MG_W_RANDOM, false) == 0);
        }
        check_threads_and_route(one, two);
        check_errors(one);
    }
    mg_context_destroy(one);
    mg_context_destroy(two);
    return mg_test_finish("test_qgemm");
}
