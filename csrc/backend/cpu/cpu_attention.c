/* Fused scaled-dot-product attention with an online softmax over key
 * blocks (FlashAttention, Dao et al. 2022, Alg. 1): each task owns a block
 * of query rows of one head and keeps only a running max m, a running sum l
 * and an unnormalised output row per query, so a Tq x Tk score matrix is
 * never built. Grouped-query heads read key/value head h / (Hq / Hkv). */
#include "cpu_internal.h"
#include "cpu_vmath.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define MG_ATTN_QUERY_BLOCK 16
#define MG_ATTN_KEY_BLOCK 128

typedef struct {
    const mg_cpu_kernels *kernels;
    const uint8_t *q, *k, *v;
    int64_t q_strides[2], k_strides[2], v_strides[2]; /* bytes: token, head */
    int64_t Tq, Tk, Hq, group, D, Dv;
    float scale;
    bool causal;
    bool kv_f16; /* k and v hold f16 (the decode path only) */
    const uint8_t *mask;
    int64_t mask_strides[3]; /* bytes over [Hq, Tq, Tk], 0 = broadcast */
    float *out;
    float *scratch; /* per thread: scores[Bq*Bk], max[Bq], sum[Bq] (blocked: see below) */
    int64_t scratch_per_thread;
    int64_t n_query_blocks;
} mg_attention_job;

static void mg_attention_task(void *raw, int64_t task, int thread_index) {
    const mg_attention_job *job = raw;
    const int64_t h = task / job->n_query_blocks;
    const int64_t q0 = (task % job->n_query_blocks) * MG_ATTN_QUERY_BLOCK;
    const int64_t q1 = q0 + MG_ATTN_QUERY_BLOCK < job->Tq ? q0 + MG_ATTN_QUERY_BLOCK : job->Tq;
    const int64_t hk = h / job->group;
    const int64_t offset = job->Tk - job->Tq; /* query i sees keys j <= i + offset */
    float *scores = job->scratch + (int64_t)thread_index * job->scratch_per_thread;
    float *row_max = scores + MG_ATTN_QUERY_BLOCK * MG_ATTN_KEY_BLOCK;
    float *row_sum = row_max + MG_ATTN_QUERY_BLOCK;

    for (int64_t i = q0; i < q1; i++) {
        row_max[i - q0] = -INFINITY;
        row_sum[i - q0] = 0.0f;
        memset(job->out + (i * job->Hq + h) * job->Dv, 0, (size_t)job->Dv * sizeof(float));
    }
    int64_t key_end = job->Tk;
    if (job->causal) {
        key_end = q1 - 1 + offset + 1;
        if (key_end > job->Tk) key_end = job->Tk;
    }
    for (int64_t k0 = 0; k0 < key_end; k0 += MG_ATTN_KEY_BLOCK) {
        const int64_t k1 = k0 + MG_ATTN_KEY_BLOCK < key_end ? k0 + MG_ATTN_KEY_BLOCK : key_end;
        for (int64_t i = q0; i < q1; i++) {
            float *s = scores + (i - q0) * MG_ATTN_KEY_BLOCK;
            const float *qi = (const float *)(job->q + i * job->q_strides[0] + h * job->q_strides[1]);
            const uint8_t *mrow = job->mask ? job->mask + h * job->mask_strides[0] + i * job->mask_strides[1] : NULL;
            int64_t visible_end = k1;
            if (job->causal && i + offset + 1 < visible_end) visible_end = i + offset + 1;
            float block_max = -INFINITY;
            for (int64_t j = k0; j < k1; j++) {
                float value = -INFINITY;
                if (j < visible_end) {
                    const float *kj = (const float *)(job->k + j * job->k_strides[0] + hk * job->k_strides[1]);
                    value = job->kernels->dot_f32(qi, kj, job->D) * job->scale;
                    if (mrow) {
                        float add;
                        memcpy(&add, mrow + j * job->mask_strides[2], 4);
                        value += add;
                    }
                }
                s[j - k0] = value;
                if (value > block_max) block_max = value;
            }
            /* Online softmax update: rescale what was accumulated under the
             * old max, then add this block's exp-weighted values. */
            float *o = job->out + (i * job->Hq + h) * job->Dv;
            const float old_max = row_max[i - q0];
            const float new_max = block_max > old_max ? block_max : old_max;
            if (new_max == -INFINITY) continue; /* nothing visible yet */
            const float correction = old_max == -INFINITY ? 0.0f : expf(old_max - new_max);
            float sum = row_sum[i - q0] * correction;
            float carry = correction;
            for (int64_t j = k0; j < k1; j++) {
                if (s[j - k0] == -INFINITY) continue;
                const float p = expf(s[j - k0] - new_max);
                sum += p;
                const float *vj = (const float *)(job->v + j * job->v_strides[0] + hk * job->v_strides[1]);
                job->kernels->axpby(o, carry, p, vj, job->Dv);
                carry = 1.0f;
            }
            if (carry != 1.0f) job->kernels->axpby(o, carry, 0.0f, o, job->Dv);
            row_max[i - q0] = new_max;
            row_sum[i - q0] = sum;
        }
    }
    /* Rows with no visible key keep zeros (PyTorch would give NaN). */
    for (int64_t i = q0; i < q1; i++) {
        if (row_sum[i - q0] <= 0.0f) continue;
        float *o = job->out + (i * job->Hq + h) * job->Dv;
        const float inv = 1.0f / row_sum[i - q0];
        for (int64_t d = 0; d < job->Dv; d++) o[d] *= inv;
    }
}

#if defined(__x86_64__)
/* ------------------------------------------------ blocked AVX-512 path
 *
 * The same online softmax, but over tiles: a task owns MG_FA_BQ query rows
 * of one head; per block of MG_FA_BK keys it packs K^T once (D x BK), forms
 * the score tile S = Q K^T with a 4-row x 64-key register block (broadcast
 * q, FMA against K^T rows), takes exp over the tile with a vector exp and
 * updates the output with O = O * c + P V, again 4 rows x 64 columns of
 * FMAs per V row. Mask and causal limits are applied to the tile. */

/* Query rows per task: each task packs K^T of every key block once, so
 * more rows amortise the packing (32 -> 128 rows: 1.25-1.4x at 1024 x 16
 * heads x 104 / 64 and 577 x 16 x 64, 2 threads, Zen 4). */
#define MG_FA_BQ 128
#define MG_FA_BK 64
#define MG_AVX512_FA __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define MG_FA_INLINE static inline __attribute__((always_inline))

/* S[r][0..BK) = q_r . K^T for R rows (R = 4 or 1). */
MG_AVX512_FA MG_FA_INLINE void mg_fa_scores(const int R, const float *const *qrows, const float *kt, int64_t D,
                                            float *s) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d++) {
        const float *kd = kt + d * MG_FA_BK;
        const __m512 k0 = _mm512_load_ps(kd), k1 = _mm512_load_ps(kd + 16);
        const __m512 k2 = _mm512_load_ps(kd + 32), k3 = _mm512_load_ps(kd + 48);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512 qv = _mm512_set1_ps(qrows[r][d]);
            acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(qv, k2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(qv, k3, acc[r][3]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) _mm512_store_ps(s + r * MG_FA_BK + 16 * c, acc[r][c]);
}

/* The P V tiles' accumulators: acc[r][k] = o_r[c0 + 16 k ..] * corr_r
 * before the keys, stored back (masked to the row's columns) after them. */
#define MG_FA_ACC_LOAD(R, NV, acc, orows, corr, c0, cmask)                                         \
    _Pragma("GCC unroll 4") for (int r_ = 0; r_ < (R); r_++) {                                      \
        const __m512 c_ = _mm512_set1_ps((corr)[r_]);                                              \
        _Pragma("GCC unroll 4") for (int k_ = 0; k_ < (NV); k_++)                                  \
            (acc)[r_][k_] = _mm512_mul_ps(_mm512_maskz_loadu_ps((cmask)[k_], (orows)[r_] + (c0) + 16 * k_), c_); \
    }
#define MG_FA_ACC_STORE(R, NV, acc, orows, c0, cmask)                                              \
    _Pragma("GCC unroll 4") for (int r_ = 0; r_ < (R); r_++)                                        \
        _Pragma("GCC unroll 4") for (int k_ = 0; k_ < (NV); k_++)                                  \
            _mm512_mask_storeu_ps((orows)[r_] + (c0) + 16 * k_, (cmask)[k_], (acc)[r_][k_])

/* o_r[c0 .. c0 + 16 NV) = o_r * corr_r + sum_j p_r[j] v_j for R rows and
 * NV (1..4) vectors of 16 columns; the last chunk of a row is masked
 * (cmask per vector). R and NV are constants at every call, so each
 * combination compiles to its own loop and a chunk of 40 columns (head
 * dim 104 = 64 + 40) costs three vectors, not four. */
MG_AVX512_FA MG_FA_INLINE void mg_fa_pv(const int R, const int NV, float *const *orows, const float *corr,
                                        const float *p, const uint8_t *v, int64_t v_stride, int64_t nk,
                                        int64_t c0, const __mmask16 cmask[4]) {
    __m512 acc[4][4];
    MG_FA_ACC_LOAD(R, NV, acc, orows, corr, c0, cmask);
    for (int64_t j = 0; j < nk; j++) {
        const float *vj = (const float *)(v + j * v_stride) + c0;
        __m512 vv[4];
#pragma GCC unroll 4
        for (int k = 0; k < NV; k++) vv[k] = _mm512_maskz_loadu_ps(cmask[k], vj + 16 * k);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512 pv = _mm512_set1_ps(p[r * MG_FA_BK + j]);
#pragma GCC unroll 4
            for (int k = 0; k < NV; k++) acc[r][k] = _mm512_fmadd_ps(pv, vv[k], acc[r][k]);
        }
    }
    MG_FA_ACC_STORE(R, NV, acc, orows, c0, cmask);
}

/* A P V tile function (mg_fa_pv, mg_fa16_pv) with NV a literal at each call. */
#define MG_FA_PV_CALL(fn, R, nv, ...)                                   \
    do {                                                                \
        switch (nv) {                                                   \
        case 1: fn(R, 1, __VA_ARGS__); break;                           \
        case 2: fn(R, 2, __VA_ARGS__); break;                           \
        case 3: fn(R, 3, __VA_ARGS__); break;                           \
        default: fn(R, 4, __VA_ARGS__); break;                          \
        }                                                               \
    } while (0)
#define MG_FA_PV_NV(R, nv, ...) MG_FA_PV_CALL(mg_fa_pv, R, nv, __VA_ARGS__)

/* The lanes of a 16-float vector that hold data when `left` elements remain. */
MG_AVX512_FA MG_FA_INLINE __mmask16 mg_fa_lanes(int64_t left) {
    return left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

/* K^T of the key block at k0 (nk keys of kv head hk) as D rows of MG_FA_BK, zero past nk. */
MG_FA_INLINE void mg_fa_pack_kt(const mg_attention_job *job, int64_t hk, int64_t k0, int64_t nk, float *kt) {
    const int64_t D = job->D;
    for (int64_t j = 0; j < MG_FA_BK; j++) {
        if (j < nk) {
            const float *kj = (const float *)(job->k + (k0 + j) * job->k_strides[0] + hk * job->k_strides[1]);
            for (int64_t d = 0; d < D; d++) kt[d * MG_FA_BK + j] = kj[d];
        } else {
            for (int64_t d = 0; d < D; d++) kt[d * MG_FA_BK + j] = 0.0f;
        }
    }
}

/* A scaled score row's mask and limits: plus the mask over the keys the
 * query may see (causal: j <= query + Tk - Tq), -inf past them and past nk. */
MG_FA_INLINE void mg_fa_mask_row(const mg_attention_job *job, int64_t h, int64_t query, int64_t k0, int64_t nk,
                                 float *si) {
    int64_t visible = nk;
    const int64_t limit = query + (job->Tk - job->Tq) + 1 - k0;
    if (job->causal && limit < visible) visible = limit;
    if (visible < 0) visible = 0;
    if (job->mask) {
        const uint8_t *mrow = job->mask + h * job->mask_strides[0] + query * job->mask_strides[1];
        for (int64_t j = 0; j < visible; j++) {
            float add;
            memcpy(&add, mrow + (k0 + j) * job->mask_strides[2], 4);
            si[j] += add;
        }
    }
    for (int64_t j = visible; j < MG_FA_BK; j++) si[j] = -INFINITY;
}

/* A tiled task's rows q0 .. q0 + nq of head h: output rows zeroed, running
 * max / sum reset; returns the keys the task's last row may see. */
MG_FA_INLINE int64_t mg_fa_rows_begin(const mg_attention_job *job, int64_t h, int64_t q0, int64_t nq,
                                      float **orows, float *row_max, float *row_sum) {
    for (int64_t i = 0; i < nq; i++) {
        orows[i] = job->out + ((q0 + i) * job->Hq + h) * job->Dv;
        memset(orows[i], 0, (size_t)job->Dv * sizeof(float));
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
    }
    int64_t key_end = job->Tk;
    if (job->causal) { /* query i sees keys j <= i + (Tk - Tq) */
        key_end = q0 + nq + job->Tk - job->Tq;
        if (key_end > job->Tk) key_end = job->Tk;
    }
    return key_end;
}

/* Divides each output row by its sum; rows with no visible key keep zeros
 * (PyTorch would give NaN). */
MG_FA_INLINE void mg_fa_rows_finish(int64_t nq, int64_t Dv, float *const *orows, const float *row_sum) {
    for (int64_t i = 0; i < nq; i++) {
        if (row_sum[i] <= 0.0f) continue;
        const float inv = 1.0f / row_sum[i];
        for (int64_t d = 0; d < Dv; d++) orows[i][d] *= inv;
    }
}

/* One query row's block of MG_FA_BK scores (row i of the task, keys k0 ..
 * k0 + nk): times scale, plus the mask, -inf past the causal limit and the
 * block; then the online softmax update: the running max and sum of the
 * row, corr = e^(old max - new max) for its output, and P = e^(S - max) in
 * place of the scores (all zero while the row has seen no key). Shared by
 * the f32 and the bf16-product tiles. */
MG_AVX512_FA MG_FA_INLINE void mg_fa_softmax_row(const mg_attention_job *job, int64_t h, int64_t query, int64_t k0,
                                                 int64_t nk, float scale, float *si, float *row_max, float *row_sum,
                                                 float *corr) {
    if (scale != 1.0f) {
        const __m512 vscale = _mm512_set1_ps(scale);
        for (int c = 0; c < MG_FA_BK; c += 16) _mm512_store_ps(si + c, _mm512_mul_ps(_mm512_load_ps(si + c), vscale));
    }
    mg_fa_mask_row(job, h, query, k0, nk, si);
    __m512 vmax = _mm512_load_ps(si);
    for (int c = 16; c < MG_FA_BK; c += 16) vmax = _mm512_max_ps(vmax, _mm512_load_ps(si + c));
    const float block_max = _mm512_reduce_max_ps(vmax);
    const float old_max = *row_max;
    const float new_max = block_max > old_max ? block_max : old_max;
    if (new_max == -INFINITY) { /* nothing visible yet: P = 0, O stays 0 */
        *corr = 1.0f;
        memset(si, 0, MG_FA_BK * sizeof(float));
        return;
    }
    *corr = old_max == -INFINITY ? 0.0f : expf(old_max - new_max);
    const __m512 vm = _mm512_set1_ps(new_max);
    __m512 vsum = _mm512_setzero_ps();
    for (int c = 0; c < MG_FA_BK; c += 16) {
        const __m512 pc = mg_exp512(_mm512_sub_ps(_mm512_load_ps(si + c), vm));
        _mm512_store_ps(si + c, pc);
        vsum = _mm512_add_ps(vsum, pc);
    }
    *row_sum = *row_sum * *corr + _mm512_reduce_add_ps(vsum);
    *row_max = new_max;
}

/* Lane masks of the (up to) four 16-column vectors at c0 of Dv columns, and how many are live. */
MG_AVX512_FA MG_FA_INLINE int mg_fa_column_masks(int64_t Dv, int64_t c0, __mmask16 cmask[4]) {
    for (int k = 0; k < 4; k++) cmask[k] = mg_fa_lanes(Dv - c0 - 16 * k);
    return Dv - c0 >= 64 ? 4 : (int)((Dv - c0 + 15) / 16);
}

/* Scratch floats per thread of the blocked path. */
static int64_t mg_fa_scratch_floats(int64_t D) {
    return D * MG_FA_BK + MG_FA_BQ * MG_FA_BK + 3 * MG_FA_BQ + 16;
}

MG_AVX512_FA static void mg_attention_task_blocked(void *raw, int64_t task, int thread_index) {
    const mg_attention_job *job = raw;
    const int64_t h = task / job->n_query_blocks;
    const int64_t q0 = (task % job->n_query_blocks) * MG_FA_BQ;
    const int64_t q1 = q0 + MG_FA_BQ < job->Tq ? q0 + MG_FA_BQ : job->Tq;
    const int64_t nq = q1 - q0, hk = h / job->group, D = job->D, Dv = job->Dv;
    float *kt = job->scratch + (int64_t)thread_index * job->scratch_per_thread; /* 64-byte aligned */
    float *s = kt + D * MG_FA_BK;
    float *row_max = s + MG_FA_BQ * MG_FA_BK, *row_sum = row_max + MG_FA_BQ, *corr = row_sum + MG_FA_BQ;
    const float *qrows[MG_FA_BQ];
    float *orows[MG_FA_BQ];
    for (int64_t i = 0; i < nq; i++)
        qrows[i] = (const float *)(job->q + (q0 + i) * job->q_strides[0] + h * job->q_strides[1]);
    const int64_t key_end = mg_fa_rows_begin(job, h, q0, nq, orows, row_max, row_sum);
    for (int64_t k0 = 0; k0 < key_end; k0 += MG_FA_BK) {
        const int64_t nk = key_end - k0 < MG_FA_BK ? key_end - k0 : MG_FA_BK;
        mg_fa_pack_kt(job, hk, k0, nk, kt);
        int64_t i = 0;
        for (; i + 4 <= nq; i += 4) mg_fa_scores(4, qrows + i, kt, D, s + i * MG_FA_BK);
        for (; i < nq; i++) mg_fa_scores(1, qrows + i, kt, D, s + i * MG_FA_BK);
        /* Scale, mask, limits; online softmax statistics; P in place of S. */
        for (i = 0; i < nq; i++)
            mg_fa_softmax_row(job, h, q0 + i, k0, nk, job->scale, s + i * MG_FA_BK, row_max + i, row_sum + i, corr + i);
        const uint8_t *vbase = job->v + k0 * job->v_strides[0] + hk * job->v_strides[1];
        for (int64_t c0 = 0; c0 < Dv; c0 += 64) {
            __mmask16 cmask[4];
            const int nv = mg_fa_column_masks(Dv, c0, cmask);
            for (i = 0; i + 4 <= nq; i += 4)
                MG_FA_PV_NV(4, nv, orows + i, corr + i, s + i * MG_FA_BK, vbase, job->v_strides[0], nk, c0, cmask);
            for (; i < nq; i++)
                MG_FA_PV_NV(1, nv, orows + i, corr + i, s + i * MG_FA_BK, vbase, job->v_strides[0], nk, c0, cmask);
        }
    }
    mg_fa_rows_finish(nq, Dv, orows, row_sum);
}

/* ---------------------------------------------------- blocked AVX2 path
 *
 * The tiles above with 8-float vectors and sixteen registers: scores as a
 * 6-row x 16-key register block per quarter of the key block (q broadcast,
 * FMA against two K^T vectors), the softmax with mg_exp256, P V as 6 rows
 * x 16 columns of FMAs per V row; the last columns of a row (Dv not a
 * multiple of 16) through masked loads and stores. The packed K^T, the
 * score tile and the statistics lie as in the AVX-512 path. */
#define MG_AVX2_FA __attribute__((target("avx2,fma,f16c")))
#define MG_FA2_ROWS 6

/* S[r][0..BK) = q_r . K^T for R rows (R = MG_FA2_ROWS or 1). */
MG_AVX2_FA MG_FA_INLINE void mg_fa2_scores(const int R, const float *const *qrows, const float *kt, int64_t D,
                                           float *s) {
    for (int c = 0; c < MG_FA_BK; c += 16) {
        __m256 acc[MG_FA2_ROWS][2];
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        for (int64_t d = 0; d < D; d++) {
            const float *kd = kt + d * MG_FA_BK + c;
            const __m256 k0 = _mm256_load_ps(kd), k1 = _mm256_load_ps(kd + 8);
#pragma GCC unroll 6
            for (int r = 0; r < R; r++) {
                const __m256 qv = _mm256_broadcast_ss(qrows[r] + d);
                acc[r][0] = _mm256_fmadd_ps(qv, k0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(qv, k1, acc[r][1]);
            }
        }
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            _mm256_store_ps(s + r * MG_FA_BK + c, acc[r][0]);
            _mm256_store_ps(s + r * MG_FA_BK + c + 8, acc[r][1]);
        }
    }
}

/* o_r[c0 .. c0 + 8 NV) = o_r * corr_r + sum_j p_r[j] v_j for R rows and NV
 * (1, 2) vectors of 8 columns; MASKED (a literal, like R and NV) takes the
 * row's last columns through cmask. */
MG_AVX2_FA MG_FA_INLINE void mg_fa2_pv(const int R, const int NV, const int MASKED, float *const *orows,
                                       const float *corr, const float *p, const uint8_t *v, int64_t v_stride,
                                       int64_t nk, int64_t c0, const __m256i cmask[2]) {
    __m256 acc[MG_FA2_ROWS][2];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        const __m256 c = _mm256_set1_ps(corr[r]);
        for (int k = 0; k < NV; k++) {
            const float *o = orows[r] + c0 + 8 * k;
            acc[r][k] = _mm256_mul_ps(MASKED ? _mm256_maskload_ps(o, cmask[k]) : _mm256_loadu_ps(o), c);
        }
    }
    for (int64_t j = 0; j < nk; j++) {
        const float *vj = (const float *)(v + j * v_stride) + c0;
        __m256 vv[2];
        for (int k = 0; k < NV; k++) vv[k] = MASKED ? _mm256_maskload_ps(vj + 8 * k, cmask[k]) : _mm256_loadu_ps(vj + 8 * k);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            const __m256 pv = _mm256_broadcast_ss(p + r * MG_FA_BK + j);
            for (int k = 0; k < NV; k++) acc[r][k] = _mm256_fmadd_ps(pv, vv[k], acc[r][k]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
        for (int k = 0; k < NV; k++) {
            float *o = orows[r] + c0 + 8 * k;
            if (MASKED) _mm256_maskstore_ps(o, cmask[k], acc[r][k]);
            else _mm256_storeu_ps(o, acc[r][k]);
        }
}

/* The 16 columns at c0 for rows i .. i + R: full vectors, or masked ones for the row's last columns. */
#define MG_FA2_PV_COLUMNS(R, left, ...)                                         \
    do {                                                                        \
        if ((left) >= 16) mg_fa2_pv(R, 2, 0, __VA_ARGS__);                     \
        else if ((left) == 8) mg_fa2_pv(R, 1, 0, __VA_ARGS__);                 \
        else if ((left) > 8) mg_fa2_pv(R, 2, 1, __VA_ARGS__);                  \
        else mg_fa2_pv(R, 1, 1, __VA_ARGS__);                                  \
    } while (0)

MG_AVX2_FA static float mg_fa2_hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

MG_AVX2_FA static float mg_fa2_hsum(__m256 v) {
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* mg_fa_softmax_row with 8-float vectors. */
MG_AVX2_FA MG_FA_INLINE void mg_fa2_softmax_row(const mg_attention_job *job, int64_t h, int64_t query, int64_t k0,
                                                int64_t nk, float *si, float *row_max, float *row_sum, float *corr) {
    if (job->scale != 1.0f) {
        const __m256 vscale = _mm256_set1_ps(job->scale);
        for (int c = 0; c < MG_FA_BK; c += 8) _mm256_store_ps(si + c, _mm256_mul_ps(_mm256_load_ps(si + c), vscale));
    }
    mg_fa_mask_row(job, h, query, k0, nk, si);
    __m256 vmax = _mm256_load_ps(si);
    for (int c = 8; c < MG_FA_BK; c += 8) vmax = _mm256_max_ps(vmax, _mm256_load_ps(si + c));
    const float block_max = mg_fa2_hmax(vmax);
    const float old_max = *row_max;
    const float new_max = block_max > old_max ? block_max : old_max;
    if (new_max == -INFINITY) { /* nothing visible yet: P = 0, O stays 0 */
        *corr = 1.0f;
        memset(si, 0, MG_FA_BK * sizeof(float));
        return;
    }
    *corr = old_max == -INFINITY ? 0.0f : expf(old_max - new_max);
    const __m256 vm = _mm256_set1_ps(new_max);
    __m256 vsum = _mm256_setzero_ps();
    for (int c = 0; c < MG_FA_BK; c += 8) {
        const __m256 pc = mg_exp256(_mm256_sub_ps(_mm256_load_ps(si + c), vm));
        _mm256_store_ps(si + c, pc);
        vsum = _mm256_add_ps(vsum, pc);
    }
    *row_sum = *row_sum * *corr + mg_fa2_hsum(vsum);
    *row_max = new_max;
}

MG_AVX2_FA static void mg_attention_task_blocked_avx2(void *raw, int64_t task, int thread_index) {
    const mg_attention_job *job = raw;
    const int64_t h = task / job->n_query_blocks;
    const int64_t q0 = (task % job->n_query_blocks) * MG_FA_BQ;
    const int64_t q1 = q0 + MG_FA_BQ < job->Tq ? q0 + MG_FA_BQ : job->Tq;
    const int64_t nq = q1 - q0, hk = h / job->group, D = job->D, Dv = job->Dv;
    float *kt = job->scratch + (int64_t)thread_index * job->scratch_per_thread; /* 64-byte aligned */
    float *s = kt + D * MG_FA_BK;
    float *row_max = s + MG_FA_BQ * MG_FA_BK, *row_sum = row_max + MG_FA_BQ, *corr = row_sum + MG_FA_BQ;
    const float *qrows[MG_FA_BQ];
    float *orows[MG_FA_BQ];
    for (int64_t i = 0; i < nq; i++)
        qrows[i] = (const float *)(job->q + (q0 + i) * job->q_strides[0] + h * job->q_strides[1]);
    const int64_t key_end = mg_fa_rows_begin(job, h, q0, nq, orows, row_max, row_sum);
    for (int64_t k0 = 0; k0 < key_end; k0 += MG_FA_BK) {
        const int64_t nk = key_end - k0 < MG_FA_BK ? key_end - k0 : MG_FA_BK;
        mg_fa_pack_kt(job, hk, k0, nk, kt);
        int64_t i = 0;
        for (; i + MG_FA2_ROWS <= nq; i += MG_FA2_ROWS) mg_fa2_scores(MG_FA2_ROWS, qrows + i, kt, D, s + i * MG_FA_BK);
        for (; i < nq; i++) mg_fa2_scores(1, qrows + i, kt, D, s + i * MG_FA_BK);
        for (i = 0; i < nq; i++)
            mg_fa2_softmax_row(job, h, q0 + i, k0, nk, s + i * MG_FA_BK, row_max + i, row_sum + i, corr + i);
        const uint8_t *vbase = job->v + k0 * job->v_strides[0] + hk * job->v_strides[1];
        for (int64_t c0 = 0; c0 < Dv; c0 += 16) {
            const int64_t left = Dv - c0;
            __m256i cmask[2];
            for (int k = 0; k < 2; k++) { /* lanes l with 8 k + l < left */
                const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                cmask[k] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left - 8 * k)), lane);
            }
            for (i = 0; i + MG_FA2_ROWS <= nq; i += MG_FA2_ROWS)
                MG_FA2_PV_COLUMNS(MG_FA2_ROWS, left, orows + i, corr + i, s + i * MG_FA_BK, vbase, job->v_strides[0], nk,
                                  c0, cmask);
            for (; i < nq; i++)
                MG_FA2_PV_COLUMNS(1, left, orows + i, corr + i, s + i * MG_FA_BK, vbase, job->v_strides[0], nk, c0,
                                  cmask);
        }
    }
    mg_fa_rows_finish(nq, Dv, orows, row_sum);
}

/* ------------------------------------------- blocked path, bf16 products
 *
 * The same tiles with the products taken in bf16 (sums in f32), for
 * contexts whose fpmath mode allows it (mg_context_fpmath_bf16): scale*q,
 * k, p and v are rounded to bf16 (round to nearest even) and each
 * vdpbf16ps takes two of them per lane, twice the multiply-adds of an f32
 * FMA at the same issue rate. The product of two bf16 values is exact in
 * f32, so the only differences from the f32 path are the roundings of the
 * four operands; the softmax statistics (max, sum, the rescaling) stay f32.
 * K and V are packed once per call for every head (all query tasks of a
 * head share them) into the operand order of vdpbf16ps: for a block of 64
 * keys, K^T as [D/2][64] words of two consecutive d, V as [32][Dv'] words of
 * two consecutive keys (Dv' = Dv rounded up to 16, zero-padded). */

/* Head dimensions up to this take the bf16 path (a stack row of words). */
#define MG_FA16_MAX_D 1024
#define MG_AVX512_BF16_FA \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))

typedef struct {
    const mg_attention_job *job;
    uint32_t *kpack, *vpack; /* [Hkv][key blocks][...] words of two bf16 */
    int64_t n_key_blocks, d_pairs, dv_padded, k_block_words, v_block_words;
    int64_t head_groups; /* packing tasks per key block */
} mg_fa16_job;

/* Sixteen f32 to bf16 (vcvtneps2bf16: nearest even, denormals to zero). */
MG_AVX512_BF16_FA MG_FA_INLINE __m256i mg_fa16_round(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

/* One kv head's rows of key j into its block: K^T column j (the row's D/2
 * words down the column), and V's key j (words of keys 2i, 2i + 1 per
 * column; the odd key's half of each word). */
MG_AVX512_BF16_FA MG_FA_INLINE void mg_fa16_pack_key(const mg_fa16_job *fj, const float *kj, const float *vj,
                                                   int64_t j, uint32_t *kt, uint32_t *vt) {
    const mg_attention_job *job = fj->job;
    const int64_t D = job->D, Dv = job->Dv, P = fj->d_pairs, Dvp = fj->dv_padded;
    uint32_t words[MG_FA16_MAX_D / 2];
    for (int64_t d = 0; d < 2 * P; d += 16) {
        const __mmask16 m = mg_fa_lanes(D - d);
        const __m256i r = mg_fa16_round(_mm512_maskz_loadu_ps(m, kj + d));
        _mm256_storeu_si256((__m256i *)((uint16_t *)words + d), r);
    }
    for (int64_t p = 0; p < P; p++) kt[p * MG_FA_BK + j] = words[p];
    uint32_t *row = vt + (j / 2) * Dvp;
    for (int64_t c = 0; c < Dvp; c += 16) {
        const __m512 x = _mm512_maskz_loadu_ps(mg_fa_lanes(Dv - c), vj + c);
        const __m512i h = _mm512_cvtepu16_epi32(mg_fa16_round(x));
        /* the even key writes whole words (its partner's half zero), the odd one its high halves */
        if (j & 1) _mm512_mask_storeu_epi16(row + c, (__mmask32)0xaaaaaaaau, _mm512_slli_epi32(h, 16));
        else _mm512_storeu_si512(row + c, h);
    }
}

/* One task per (key block, group of kv heads): that block's K^T and V for
 * the group's heads, keys outer and heads inner, so the reads walk each
 * key's row of the [T, H, D] tensors in order (head-outer order read 64
 * rows H * D floats apart and stalled on every one: ~10 % of a ViT-bigG
 * attention). Keys past the end pack as zeros. */
MG_AVX512_BF16_FA static void mg_fa16_pack(void *raw, int64_t task, int thread_index) {
    (void)thread_index;
    const mg_fa16_job *fj = raw;
    const mg_attention_job *job = fj->job;
    const int64_t Hkv = job->Hq / job->group, kb = task / fj->head_groups, g = task % fj->head_groups;
    const int64_t h0 = g * Hkv / fj->head_groups, h1 = (g + 1) * Hkv / fj->head_groups, k0 = kb * MG_FA_BK;
    const int64_t nk = job->Tk - k0 < MG_FA_BK ? job->Tk - k0 : MG_FA_BK;
    for (int64_t hk = h0; hk < h1; hk++) {
        const int64_t block = hk * fj->n_key_blocks + kb;
        if (nk < MG_FA_BK) { /* zeros past the last key */
            memset(fj->kpack + block * fj->k_block_words, 0, (size_t)fj->k_block_words * sizeof(uint32_t));
            memset(fj->vpack + block * fj->v_block_words, 0, (size_t)fj->v_block_words * sizeof(uint32_t));
        }
    }
    for (int64_t j = 0; j < nk; j++)
        for (int64_t hk = h0; hk < h1; hk++) {
            const int64_t block = hk * fj->n_key_blocks + kb;
            const uint8_t *kj = job->k + (k0 + j) * job->k_strides[0] + hk * job->k_strides[1];
            const uint8_t *vj = job->v + (k0 + j) * job->v_strides[0] + hk * job->v_strides[1];
            mg_fa16_pack_key(fj, (const float *)kj, (const float *)vj, j,
                             fj->kpack + block * fj->k_block_words, fj->vpack + block * fj->v_block_words);
        }
}

/* S[r][0..64) = q_r . K^T for R rows: q as words of two bf16 (P pairs). */
MG_AVX512_BF16_FA MG_FA_INLINE void mg_fa16_scores(const int R, const uint32_t *q, int64_t P, const uint32_t *kt,
                                                   float *s) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t p = 0; p < P; p++) {
        const uint32_t *kp = kt + p * MG_FA_BK;
        const __m512bh k0 = (__m512bh)_mm512_load_si512(kp), k1 = (__m512bh)_mm512_load_si512(kp + 16);
        const __m512bh k2 = (__m512bh)_mm512_load_si512(kp + 32), k3 = (__m512bh)_mm512_load_si512(kp + 48);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512bh qv = (__m512bh)_mm512_set1_epi32((int)q[r * P + p]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], qv, k0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], qv, k1);
            acc[r][2] = _mm512_dpbf16_ps(acc[r][2], qv, k2);
            acc[r][3] = _mm512_dpbf16_ps(acc[r][3], qv, k3);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) _mm512_store_ps(s + r * MG_FA_BK + 16 * c, acc[r][c]);
}

/* o_r[c0 .. c0 + 16 NV) = o_r * corr_r + sum_j p_r[j] v_j over key pairs
 * (np of them); p as 32 words of two bf16 per row. */
MG_AVX512_BF16_FA MG_FA_INLINE void mg_fa16_pv(const int R, const int NV, float *const *orows, const float *corr,
                                               const uint32_t *p, const uint32_t *vt, int64_t Dvp, int64_t np,
                                               int64_t c0, const __mmask16 cmask[4]) {
    __m512 acc[4][4];
    MG_FA_ACC_LOAD(R, NV, acc, orows, corr, c0, cmask);
    for (int64_t i = 0; i < np; i++) {
        const uint32_t *vi = vt + i * Dvp + c0;
        __m512bh vv[4];
#pragma GCC unroll 4
        for (int k = 0; k < NV; k++) vv[k] = (__m512bh)_mm512_loadu_si512(vi + 16 * k);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512bh pv = (__m512bh)_mm512_set1_epi32((int)p[r * (MG_FA_BK / 2) + i]);
#pragma GCC unroll 4
            for (int k = 0; k < NV; k++) acc[r][k] = _mm512_dpbf16_ps(acc[r][k], pv, vv[k]);
        }
    }
    MG_FA_ACC_STORE(R, NV, acc, orows, c0, cmask);
}

#define MG_FA16_PV_NV(R, nv, ...) MG_FA_PV_CALL(mg_fa16_pv, R, nv, __VA_ARGS__)

/* Scratch floats per thread of the bf16 blocked path: scores, q words,
 * p words, max / sum / correction. */
static int64_t mg_fa16_scratch_floats(int64_t D) {
    return MG_FA_BQ * MG_FA_BK + MG_FA_BQ * ((D + 1) / 2) + MG_FA_BQ * (MG_FA_BK / 2) + 3 * MG_FA_BQ + 16;
}

MG_AVX512_BF16_FA static void mg_attention_task_bf16(void *raw, int64_t task, int thread_index) {
    const mg_fa16_job *fj = raw;
    const mg_attention_job *job = fj->job;
    const int64_t h = task / job->n_query_blocks;
    const int64_t q0 = (task % job->n_query_blocks) * MG_FA_BQ;
    const int64_t q1 = q0 + MG_FA_BQ < job->Tq ? q0 + MG_FA_BQ : job->Tq;
    const int64_t nq = q1 - q0, hk = h / job->group, D = job->D, Dv = job->Dv, P = fj->d_pairs;
    float *s = job->scratch + (int64_t)thread_index * job->scratch_per_thread; /* 64-byte aligned */
    uint32_t *qw = (uint32_t *)(s + MG_FA_BQ * MG_FA_BK);
    uint32_t *pw = qw + MG_FA_BQ * P;
    float *row_max = (float *)(pw + MG_FA_BQ * (MG_FA_BK / 2)), *row_sum = row_max + MG_FA_BQ;
    float *corr = row_sum + MG_FA_BQ;
    float *orows[MG_FA_BQ];
    const __m512 vscale = _mm512_set1_ps(job->scale);
    for (int64_t i = 0; i < nq; i++) {
        const float *qi = (const float *)(job->q + (q0 + i) * job->q_strides[0] + h * job->q_strides[1]);
        for (int64_t d = 0; d < 2 * P; d += 16) {
            const int64_t left = D - d;
            const __mmask16 m = mg_fa_lanes(left);
            const __m256i r = mg_fa16_round(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, qi + d), vscale));
            /* 2P - d words may be fewer than 8 at the tail: store only those. */
            const int64_t words = (2 * P - d) / 2 < 8 ? (2 * P - d) / 2 : 8;
            _mm256_mask_storeu_epi32(qw + i * P + d / 2, (__mmask8)((1u << words) - 1), r);
        }
    }
    const int64_t key_end = mg_fa_rows_begin(job, h, q0, nq, orows, row_max, row_sum);
    for (int64_t k0 = 0; k0 < key_end; k0 += MG_FA_BK) {
        const int64_t nk = key_end - k0 < MG_FA_BK ? key_end - k0 : MG_FA_BK;
        const int64_t block = hk * fj->n_key_blocks + k0 / MG_FA_BK;
        const uint32_t *kt = fj->kpack + block * fj->k_block_words;
        const uint32_t *vt = fj->vpack + block * fj->v_block_words;
        int64_t i = 0;
        for (; i + 4 <= nq; i += 4) mg_fa16_scores(4, qw + i * P, P, kt, s + i * MG_FA_BK);
        for (; i < nq; i++) mg_fa16_scores(1, qw + i * P, P, kt, s + i * MG_FA_BK);
        for (i = 0; i < nq; i++) { /* scale is in q already; P to bf16 words for the P V tiles */
            float *si = s + i * MG_FA_BK;
            mg_fa_softmax_row(job, h, q0 + i, k0, nk, 1.0f, si, row_max + i, row_sum + i, corr + i);
            uint32_t *pi = pw + i * (MG_FA_BK / 2);
            for (int c = 0; c < MG_FA_BK; c += 16)
                _mm256_storeu_si256((__m256i *)((uint16_t *)pi + c), mg_fa16_round(_mm512_load_ps(si + c)));
        }
        const int64_t np = (nk + 1) / 2; /* the odd key's partner is a zero V row */
        for (int64_t c0 = 0; c0 < Dv; c0 += 64) {
            __mmask16 cmask[4];
            const int nv = mg_fa_column_masks(Dv, c0, cmask);
            for (i = 0; i + 4 <= nq; i += 4)
                MG_FA16_PV_NV(4, nv, orows + i, corr + i, pw + i * (MG_FA_BK / 2), vt, fj->dv_padded, np, c0, cmask);
            for (; i < nq; i++)
                MG_FA16_PV_NV(1, nv, orows + i, corr + i, pw + i * (MG_FA_BK / 2), vt, fj->dv_padded, np, c0, cmask);
        }
    }
    mg_fa_rows_finish(nq, Dv, orows, row_sum);
}

/* Packs K and V, then runs the query tasks; false when memory is short
 * (the caller falls back to the f32 path). */
static bool mg_attention_bf16(mg_context *ctx, const mg_attention_job *job) {
    const int64_t Hkv = job->Hq / job->group;
    mg_fa16_job fj;
    fj.job = job;
    fj.n_key_blocks = (job->Tk + MG_FA_BK - 1) / MG_FA_BK;
    fj.d_pairs = (job->D + 1) / 2;
    fj.dv_padded = (job->Dv + 15) / 16 * 16;
    fj.k_block_words = fj.d_pairs * MG_FA_BK;
    fj.v_block_words = (MG_FA_BK / 2) * fj.dv_padded;
    const size_t blocks = (size_t)(Hkv * fj.n_key_blocks);
    fj.kpack = mg_aligned_alloc(blocks * (size_t)(fj.k_block_words + fj.v_block_words) * sizeof(uint32_t));
    if (!fj.kpack) return false;
    fj.vpack = fj.kpack + blocks * (size_t)fj.k_block_words;
    mg_threadpool *pool = mg_context_threadpool(ctx);
    /* enough packing tasks for every thread (short sequences: fewer heads per task) */
    const int64_t want = 4 * (int64_t)mg_context_n_threads(ctx);
    fj.head_groups = (want + fj.n_key_blocks - 1) / fj.n_key_blocks;
    if (fj.head_groups > Hkv) fj.head_groups = Hkv;
    mg_threadpool_run(pool, fj.n_key_blocks * fj.head_groups, mg_fa16_pack, &fj);
    mg_threadpool_run(pool, job->Hq * job->n_query_blocks, mg_attention_task_bf16, &fj);
    mg_aligned_free(fj.kpack);
    return true;
}
#endif

/* ------------------------------------------- one query row (decode)
 *
 * Per head the keys of a [T, H, D] cache lie H*D floats apart, so walking
 * one head over all keys touches a new page per key and defeats the
 * hardware prefetchers. With a single query row the work is split over
 * chunks of keys instead (flash-decoding): a task reads its chunk's keys in
 * order (each key's heads contiguously) for every head's score, takes the
 * chunk's max and e^(s - max) per head once, then reads the values in order
 * for the unnormalised output, and leaves (max, sum, output) per head; the
 * chunks are then merged exactly (rescaled by e^(m_c - M)). An f16 K/V (a
 * half-precision KV cache) is read in place. */

/* Keys per chunk: at most 256, fewer for short caches so that every
 * thread gets about four chunks. */
#define MG_DECODE_KEY_CHUNK 256
/* Keys per values call: a head's accumulator stays in registers over them,
 * while the reads still walk a few consecutive key rows. */
#define MG_DECODE_ATTEND_KEYS 8
#define MG_DECODE_MIN_CHUNK 16

typedef struct {
    const mg_attention_job *job;
    int64_t chunk_keys, n_chunks;
    float *partial; /* [n_chunks][Hq][Dv + 2]: output, max, sum */
    float *scores;  /* [n_chunks][Hq][chunk_keys]: scores, then e^(s - max) */
} mg_decode_job;

static void mg_attention_decode_chunk(void *raw, int64_t chunk, int thread_index) {
    (void)thread_index;
    const mg_decode_job *dj = raw;
    const mg_attention_job *job = dj->job;
    const int64_t Hq = job->Hq, Dv = job->Dv, stride = Dv + 2;
    float *part = dj->partial + chunk * Hq * stride;
    float *scores = dj->scores + chunk * Hq * dj->chunk_keys; /* [Hq][chunk_keys] */
    const int64_t j0 = chunk * dj->chunk_keys;
    const int64_t j1 = j0 + dj->chunk_keys < job->Tk ? j0 + dj->chunk_keys : job->Tk;
    const int64_t n = j1 - j0;
    /* Pass 1, keys in order: every head's score. */
    const mg_scores_fn scores_fn = job->kv_f16 ? job->kernels->scores_f16 : job->kernels->scores_f32;
    for (int64_t j = j0; j < j1; j++)
        scores_fn(job->q, job->q_strides[1], job->k + j * job->k_strides[0], job->k_strides[1], Hq, job->group, job->D,
                  job->scale, scores + (j - j0), dj->chunk_keys);
    /* The chunk's max per head is known now: p = e^(s - max) once, no rescaling within the chunk. */
    for (int64_t h = 0; h < Hq; h++) {
        float *s = scores + h * dj->chunk_keys, m = -INFINITY;
        for (int64_t j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
        const float l = job->kernels->exp_sum(s, n, m);
        memset(part + h * stride, 0, (size_t)Dv * sizeof(float));
        part[h * stride + Dv] = m;
        part[h * stride + Dv + 1] = l;
    }
    /* Pass 2, keys in order: o_h += p_hj v_j. */
    const mg_attend_fn attend_fn = job->kv_f16 ? job->kernels->attend_f16 : job->kernels->attend_f32;
    for (int64_t j = j0; j < j1; j += MG_DECODE_ATTEND_KEYS) {
        const int64_t nj = j1 - j < MG_DECODE_ATTEND_KEYS ? j1 - j : MG_DECODE_ATTEND_KEYS;
        attend_fn(part, stride, scores + (j - j0), dj->chunk_keys, job->v + j * job->v_strides[0],
                  job->v_strides[0], job->v_strides[1], nj, Hq, job->group, Dv);
    }
}

/* The decode path for Tq == 1 without a mask (causal or not, the one query
 * sees every key). */
static mg_status mg_attention_decode(mg_context *ctx, const mg_attention_job *job) {
    const int64_t n_threads = mg_context_n_threads(ctx);
    int64_t chunk_keys = (job->Tk + 4 * n_threads - 1) / (4 * n_threads);
    if (chunk_keys > MG_DECODE_KEY_CHUNK) chunk_keys = MG_DECODE_KEY_CHUNK;
    if (chunk_keys < MG_DECODE_MIN_CHUNK) chunk_keys = MG_DECODE_MIN_CHUNK;
    mg_decode_job dj = {job, chunk_keys, (job->Tk + chunk_keys - 1) / chunk_keys, NULL, NULL};
    const int64_t Hq = job->Hq, Dv = job->Dv, stride = Dv + 2;
    /* The context's scratch, not a fresh allocation: past malloc's mmap
     * threshold (8 chunks x 32 heads already are) every decode step would
     * fault the pages in anew. */
    size_t capacity;
    dj.partial = mg_cpu_scratch_take(ctx, MG_CPU_SCRATCH_ACTIVATIONS,
                                     (size_t)(dj.n_chunks * Hq * (stride + chunk_keys)) * sizeof(float), &capacity);
    if (!dj.partial) return mg_error(MG_ERR_NO_MEMORY, "mg_attention: no memory for %lld key chunks", (long long)dj.n_chunks);
    dj.scores = dj.partial + dj.n_chunks * Hq * stride;
    mg_threadpool_run(mg_context_threadpool(ctx), dj.n_chunks, mg_attention_decode_chunk, &dj);
    for (int64_t h = 0; h < Hq; h++) {
        float *out = job->out + h * Dv;
        float M = -INFINITY;
        for (int64_t c = 0; c < dj.n_chunks; c++) {
            const float m = dj.partial[(c * Hq + h) * stride + Dv];
            if (m > M) M = m;
        }
        memset(out, 0, (size_t)Dv * sizeof(float));
        if (M == -INFINITY) continue; /* no key (Tk == 0 cannot happen; kept for safety) */
        float L = 0.0f;
        for (int64_t c = 0; c < dj.n_chunks; c++) {
            const float *part = dj.partial + (c * Hq + h) * stride;
            if (part[Dv] == -INFINITY) continue;
            const float w = expf(part[Dv] - M);
            L += part[Dv + 1] * w;
            job->kernels->axpby(out, 1.0f, w, part, Dv);
        }
        const float inv = 1.0f / L;
        for (int64_t d = 0; d < Dv; d++) out[d] *= inv;
    }
    mg_cpu_scratch_give(ctx, MG_CPU_SCRATCH_ACTIVATIONS, dj.partial, capacity);
    return MG_OK;
}

/* A [T, H, D] view whose last axis is contiguous, or a contiguous f32 copy;
 * an f16 tensor stays f16 only where keep_f16 (the decode path reads it). */
static mg_status mg_attention_view(const char *what, const mg_tensor *t, bool keep_f16, mg_cpu_f32 *copy,
                                   const uint8_t **base, int64_t strides[2]) {
    copy->data = NULL;
    copy->owned = NULL;
    const int64_t elem = t->dtype == MG_F16 ? 2 : 4;
    if ((t->dtype == MG_F32 || keep_f16) && (t->strides[2] == elem || t->shape[2] == 1)) {
        *base = t->data;
        strides[0] = t->strides[0];
        strides[1] = t->strides[1];
        return MG_OK;
    }
    MG_TRY(mg_cpu_f32_input("mg_attention", what, t, true, copy));
    *base = (const uint8_t *)copy->data;
    strides[0] = t->shape[1] * t->shape[2] * 4;
    strides[1] = t->shape[2] * 4;
    return MG_OK;
}

mg_status mg_cpu_attention(mg_context *ctx, const mg_tensor *q, const mg_tensor *k,
                           const mg_tensor *v, const mg_tensor *mask, bool causal, float scale,
                           mg_tensor *out) {
    static const char op[] = "mg_attention";
    char a[MG_DESCRIBE_SIZE], b[MG_DESCRIBE_SIZE], c[MG_DESCRIBE_SIZE];
    const char *names[3] = {"q", "k", "v"};
    const mg_tensor *inputs[3] = {q, k, v};
    for (int i = 0; i < 3; i++) {
        MG_TRY(mg_cpu_check_input(op, names[i], inputs[i], 3));
        if (inputs[i]->n_dims != 3)
            return mg_error(MG_ERR_SHAPE, "%s: %s %s must be [tokens, heads, head_dim]", op, names[i],
                            mg_cpu_describe(inputs[i], a));
    }
    /* k and v may be f16 (a half-precision KV cache), both or neither. */
    if (q->dtype != MG_F32) return mg_error(MG_ERR_DTYPE, "%s: q %s must be f32", op, mg_cpu_describe(q, a));
    for (int i = 1; i < 3; i++)
        if (inputs[i]->dtype != MG_F32 && inputs[i]->dtype != MG_F16)
            return mg_error(MG_ERR_DTYPE, "%s: %s %s must be f32 or f16", op, names[i], mg_cpu_describe(inputs[i], a));
    if (k->dtype != v->dtype)
        return mg_error(MG_ERR_DTYPE, "%s: k %s and v %s must have one dtype", op, mg_cpu_describe(k, a),
                        mg_cpu_describe(v, b));
    const int64_t Tq = q->shape[0], Hq = q->shape[1], D = q->shape[2];
    const int64_t Tk = k->shape[0], Hkv = k->shape[1], Dv = v->shape[2];
    if (k->shape[2] != D)
        return mg_error(MG_ERR_SHAPE, "%s: q %s and k %s: head dimensions differ", op,
                        mg_cpu_describe(q, a), mg_cpu_describe(k, b));
    if (v->shape[0] != Tk || v->shape[1] != Hkv)
        return mg_error(MG_ERR_SHAPE, "%s: k %s and v %s: tokens or heads differ", op,
                        mg_cpu_describe(k, a), mg_cpu_describe(v, b));
    if (Hq % Hkv != 0)
        return mg_error(MG_ERR_SHAPE, "%s: q %s has %lld heads, not a multiple of the %lld heads of k %s", op,
                        mg_cpu_describe(q, a), (long long)Hq, (long long)Hkv, mg_cpu_describe(k, b));
    if (!isfinite(scale))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: scale %g is not finite", op, (double)scale);
    int64_t out_shape[3] = {Tq, Hq, Dv};
    MG_TRY(mg_cpu_check_output(op, out, 3, out_shape));

    mg_attention_job job;
    memset(&job, 0, sizeof job);
    if (mask) {
        MG_TRY(mg_cpu_check_input(op, "mask", mask, MG_MAX_DIMS));
        if (mask->dtype != MG_F32)
            return mg_error(MG_ERR_DTYPE, "%s: mask %s must be f32 (additive; -inf blocks)", op,
                            mg_cpu_describe(mask, a));
        /* Leading size-1 axes (a [1, H, Tq, Tk] batch mask) are dropped. */
        mg_tensor m = *mask;
        while (m.n_dims > 3 && m.shape[0] == 1) {
            for (int i = 0; i + 1 < m.n_dims; i++) {
                m.shape[i] = m.shape[i + 1];
                m.strides[i] = m.strides[i + 1];
            }
            m.n_dims--;
        }
        mg_tensor target;
        int64_t target_shape[3] = {Hq, Tq, Tk};
        MG_TRY(mg_tensor_init(&target, NULL, MG_F32, 3, target_shape));
        if (m.n_dims > 3)
            return mg_error(MG_ERR_SHAPE, "%s: mask %s does not broadcast to %s", op,
                            mg_cpu_describe(mask, a), mg_cpu_describe(&target, c));
        int64_t strides[MG_MAX_DIMS];
        MG_TRY(mg_cpu_broadcast_strides(op, "mask", &m, &target, strides));
        for (int i = 0; i < 3; i++) job.mask_strides[i] = strides[i];
        job.mask = mask->data;
    }

    mg_cpu_f32 copies[3];
    const uint8_t *bases[3];
    int64_t strides[3][2];
    mg_status status = MG_OK;
    int made = 0;
    /* One query row without a mask: the flash-decoding path, which reads an
     * f16 K/V in place; every other path takes f32 copies of f16 K/V. */
    const bool decode = Tq == 1 && !job.mask && Tk > 0;
    for (; made < 3 && status == MG_OK; made++)
        status = mg_attention_view(names[made], inputs[made], decode, &copies[made], &bases[made], strides[made]);
    job.kv_f16 = status == MG_OK && k->dtype == MG_F16 && !copies[1].owned;
    if (status == MG_OK && k->dtype == MG_F16 && !copies[1].owned != !copies[2].owned) {
        /* one of them was copied to f32 (an inner stride): copy the other too */
        const int kept = copies[1].owned ? 2 : 1;
        status = mg_cpu_f32_input(op, names[kept], inputs[kept], true, &copies[kept]);
        if (status == MG_OK) {
            bases[kept] = (const uint8_t *)copies[kept].data;
            strides[kept][0] = inputs[kept]->shape[1] * inputs[kept]->shape[2] * 4;
            strides[kept][1] = inputs[kept]->shape[2] * 4;
        }
        job.kv_f16 = false;
    }
    const int n_threads = mg_context_n_threads(ctx);
    /* The blocked tiles pay for packing K once several query rows share it. */
    bool blocked = false, bf16 = false;
#if defined(__x86_64__)
    blocked = mg_cpu_context_isa(ctx) >= MG_ISA_AVX2 && Tq >= 8;
    bf16 = blocked && mg_context_fpmath_bf16(ctx) && mg_cpu_context_isa(ctx) >= MG_ISA_AVX512_BF16 &&
           D <= MG_FA16_MAX_D;
#endif
    job.scratch_per_thread = MG_ATTN_QUERY_BLOCK * MG_ATTN_KEY_BLOCK + 2 * MG_ATTN_QUERY_BLOCK;
#if defined(__x86_64__)
    if (blocked) {
        /* Room for either blocked path: the bf16 one falls back to f32 when its K/V packs find no memory. */
        int64_t floats = mg_fa_scratch_floats(D);
        if (bf16 && mg_fa16_scratch_floats(D) > floats) floats = mg_fa16_scratch_floats(D);
        job.scratch_per_thread = (floats + 15) / 16 * 16;
    }
#endif
    if (status == MG_OK) {
        job.scratch = mg_aligned_alloc((size_t)(job.scratch_per_thread * n_threads) * sizeof(float));
        if (!job.scratch) status = mg_error(MG_ERR_NO_MEMORY, "%s: no memory for per-thread scores", op);
    }
    if (status == MG_OK) {
        job.kernels = mg_cpu_kernels_for(mg_cpu_context_isa(ctx));
        job.q = bases[0];
        job.k = bases[1];
        job.v = bases[2];
        for (int i = 0; i < 2; i++) {
            job.q_strides[i] = strides[0][i];
            job.k_strides[i] = strides[1][i];
            job.v_strides[i] = strides[2][i];
        }
        job.Tq = Tq;
        job.Tk = Tk;
        job.Hq = Hq;
        job.group = Hq / Hkv;
        job.D = D;
        job.Dv = Dv;
        job.scale = scale;
        job.causal = causal;
        job.out = out->data;
        mg_task_fn task = mg_attention_task;
        int64_t rows_per_task = MG_ATTN_QUERY_BLOCK;
#if defined(__x86_64__)
        if (blocked) {
            task = mg_cpu_context_isa(ctx) >= MG_ISA_AVX512 ? mg_attention_task_blocked : mg_attention_task_blocked_avx2;
            rows_per_task = MG_FA_BQ;
        }
#endif
        job.n_query_blocks = (Tq + rows_per_task - 1) / rows_per_task;
        if (decode) {
            status = mg_attention_decode(ctx, &job);
        } else {
            bool done = false;
#if defined(__x86_64__)
            if (bf16) done = mg_attention_bf16(ctx, &job);
#endif
            if (!done) mg_threadpool_run(mg_context_threadpool(ctx), Hq * job.n_query_blocks, task, &job);
        }
    }
    mg_aligned_free(job.scratch);
    for (int i = 0; i < made; i++) mg_cpu_f32_release(&copies[i]);
    return status;
}
