/* Int8 GEMM for q8_0 / q4_0 weights with AVX-512 VNNI (the many-row
 * linear: prefill and vision towers).
 *
 * y[m, n] = sum over 32-blocks b of d_x[m, b] * d_w[n, b] * (exact int32
 * sum_i qx[m, b, i] * qw[n, b, i]), accumulated in f32, plus the bias. The
 * activations are quantized to q8_0 by the kernel table's quantizer (bit
 * for bit mg_quantize_row), the same semantics as the decode GEMV.
 *
 * vpdpbusd multiplies unsigned by signed bytes. The activation is always
 * the signed operand (so it can be broadcast straight from memory), the
 * weight the unsigned one: q4_0 nibbles are 0..15 already (value q - 8),
 * q8_0 quants become unsigned by adding 128 (xor 0x80). Either way the
 * offset times the activation's block sum (-8 or -128 times it) is the
 * int32 accumulator's start value, so each lane holds the exact integer dot
 * before its one conversion to float per block.
 *
 * Layout: the quantized activations are packed once (shared, read-only) in
 * tiles of MR rows; per tile and block, k-step j (4 quants) of row m is
 * one dword, then the rows' corrections and scales. Each task packs a
 * chunk of weight columns (tiles of NR = 16 NV columns) for a range of
 * blocks into its own L2-sized buffer: per tile and block, one 64-byte
 * vector of 16 columns x 4 k per k-step and vector, then the 16-column f32
 * scale vectors. The micro-kernel keeps MR x NV int32 and MR x NV f32
 * accumulators in registers (24 of the 32 zmm), loads NV weight vectors per
 * k-step and broadcasts each row's dword: 8 steps of MR x NV vpdpbusd per
 * block, then per accumulator one cvt, one multiply of the scales and one
 * FMA.
 *
 * Rate (Zen 4, benchmarks/bench_kernels.py --only qgemm, M = 256..1024 x
 * 4096 -> 4096 / 11008): ~320-345 GOP/s on 1 thread, ~640-690 on 2, where
 * the bf16 panels it replaces reach ~165-210 / ~320-420 GFLOP/s and
 * oneDNN's bf16 matmul peaks at ~210-225 / ~425-450. vpdpbusd issues at
 * vdpbf16ps's rate with twice the MACs. On Zen 4 it shares two pipes with
 * the FP multiplies and FMAs, while the cvt (and FP adds) go to the other
 * two: per block the 96 vpdpbusd of a tile wait behind its 12 scale
 * multiplies and 12 FMAs, a ceiling of 96 / 120 = 80 % of the vpdpbusd
 * rate. Measured on one core with the tile in L1 (the loop above, scales
 * varied in a scratch build): 367 GOP/s as is, 414 without the multiply,
 * 461 with the cvt but only an FP add, 458 with no FP work at all. The
 * per-block scales of both operands leave no product to hoist: each
 * dx * dw is used by one accumulator of one block. Ways past the cap all
 * change the numerics, so none is taken: one activation scale per row or
 * per 256 (as llama.cpp's q8_K; the multiply leaves the block loop, but
 * outlier channels then coarsen every other element), power-of-two
 * activation scales (the multiply becomes an exponent add, losing up to a
 * bit), or block sums rounded to bf16 for vdpbf16ps (two blocks per
 * instruction, ~0.2 % error per block sum). */
#include "cpu_internal.h"

#include <string.h>

#define MG_QGEMM_MR 6
#define MG_QGEMM_NV 2
#define MG_QGEMM_NR (16 * MG_QGEMM_NV)
/* Column tiles per packed chunk and blocks per K piece: the chunk (tiles x
 * blocks x 1152 bytes) stays in the 1 MiB L2 of a Zen 4 core while every
 * activation tile passes over it; an activation tile's piece (blocks x
 * 240 bytes) stays in L1 across the chunk's tiles. */
#define MG_QGEMM_CHUNK_TILES 4
#define MG_QGEMM_K_BLOCKS 128
/* Software prefetch of the weight rows being packed, 256 bytes ahead: the
 * packing reads 16 rows at once, more streams than the hardware
 * prefetchers follow; ~20% faster packing (2 threads, DRAM-resident 4096 x
 * 44032 weights: 9.7 instead of 12.3 ms), 512 or 1024 bytes were slower. */
#define MG_QGEMM_PREFETCH_BYTES 256

/* One activation tile's block: 240 bytes. */
typedef struct mg_qgemm_xblock {
    int32_t q[8][MG_QGEMM_MR]; /* k-step j, row m: its 4 quants */
    int32_t corr[MG_QGEMM_MR]; /* -8 (q4_0) or -128 (q8_0) times the block sum */
    float d[MG_QGEMM_MR];      /* the block's scale */
} mg_qgemm_xblock;

/* One weight tile's block: 1152 bytes, 64-byte aligned. */
typedef struct mg_qgemm_wblock {
    uint8_t q[8][MG_QGEMM_NV][64]; /* k-step j, vector v: column 16 v + c in bytes 4c..4c+3 */
    float d[MG_QGEMM_NV][16];
} mg_qgemm_wblock;

#if defined(__x86_64__)

#include <immintrin.h>

#define MG_QGEMM_VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

#define MG_QGEMM_INLINE static inline __attribute__((always_inline))

bool mg_cpu_qgemm_available(mg_context *ctx) { return mg_cpu_context_isa(ctx) >= MG_ISA_AVX512_VNNI; }

/* One R x NR tile of y (R <= MR: the first R rows of an activation tile)
 * over n_blocks blocks: y = acc (first K piece) or y += acc, plus bias
 * (last piece; bias NULL otherwise), R x cols valid. */
MG_QGEMM_VNNI MG_QGEMM_INLINE void mg_qgemm_tile_rows(const int R, const mg_qgemm_xblock *x,
                                                      const mg_qgemm_wblock *w, int64_t n_blocks, float *y,
                                                      int64_t ldy, int cols, bool first, const float *bias) {
    __m512 f[MG_QGEMM_MR][MG_QGEMM_NV];
    for (int m = 0; m < R; m++)
        for (int v = 0; v < MG_QGEMM_NV; v++) f[m][v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        const mg_qgemm_xblock *xb = x + b;
        const mg_qgemm_wblock *wb = w + b;
        __m512i a[MG_QGEMM_MR][MG_QGEMM_NV];
        for (int m = 0; m < R; m++) {
            const __m512i c = _mm512_set1_epi32(xb->corr[m]);
            for (int v = 0; v < MG_QGEMM_NV; v++) a[m][v] = c;
        }
        for (int j = 0; j < 8; j++) {
            __m512i wv[MG_QGEMM_NV];
            for (int v = 0; v < MG_QGEMM_NV; v++) wv[v] = _mm512_load_si512(wb->q[j][v]);
            for (int m = 0; m < R; m++) {
                const __m512i xv = _mm512_set1_epi32(xb->q[j][m]);
                for (int v = 0; v < MG_QGEMM_NV; v++) a[m][v] = _mm512_dpbusd_epi32(a[m][v], wv[v], xv);
            }
        }
        __m512 dw[MG_QGEMM_NV];
        for (int v = 0; v < MG_QGEMM_NV; v++) dw[v] = _mm512_load_ps(wb->d[v]);
        for (int m = 0; m < R; m++) {
            const __m512 dx = _mm512_set1_ps(xb->d[m]);
            for (int v = 0; v < MG_QGEMM_NV; v++)
                f[m][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[m][v]), _mm512_mul_ps(dx, dw[v]), f[m][v]);
        }
    }
    /* Constant indices only, so the accumulators stay in registers. */
    for (int v = 0; v < MG_QGEMM_NV; v++) {
        const int left = cols - 16 * v;
        const __mmask16 mask = left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
        const __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + 16 * v) : _mm512_setzero_ps();
        for (int m = 0; m < R; m++) {
            float *out = y + m * ldy + 16 * v;
            __m512 r = _mm512_add_ps(f[m][v], bv);
            if (!first) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), r);
            _mm512_mask_storeu_ps(out, mask, r);
        }
    }
}

/* The tile per row count: a last activation tile of fewer than MR rows
 * computes only those (an 8-token prompt is 6 + 2 rows, not 12). */
#define MG_QGEMM_TILE(R)                                                                                       \
    MG_QGEMM_VNNI static void mg_qgemm_tile##R(const mg_qgemm_xblock *x, const mg_qgemm_wblock *w,             \
                                               int64_t n_blocks, float *y, int64_t ldy, int cols, bool first, \
                                               const float *bias) {                                           \
        mg_qgemm_tile_rows(R, x, w, n_blocks, y, ldy, cols, first, bias);                                      \
    }
MG_QGEMM_TILE(1)
MG_QGEMM_TILE(2)
MG_QGEMM_TILE(3)
MG_QGEMM_TILE(4)
MG_QGEMM_TILE(5)
MG_QGEMM_TILE(6)
_Static_assert(MG_QGEMM_MR == 6, "one tile function per row count up to MR");
typedef void (*mg_qgemm_tile_fn)(const mg_qgemm_xblock *, const mg_qgemm_wblock *, int64_t, float *, int64_t, int,
                                 bool, const float *);
static const mg_qgemm_tile_fn mg_qgemm_tiles[MG_QGEMM_MR + 1] = {
    NULL, mg_qgemm_tile1, mg_qgemm_tile2, mg_qgemm_tile3, mg_qgemm_tile4, mg_qgemm_tile5, mg_qgemm_tile6,
};

typedef struct {
    const mg_cpu_kernels *kernels;
    mg_dtype wtype;
    const uint8_t *w;
    int64_t row_stride;
    const float *x;
    int64_t M, K, N, n_blocks, m_tiles;
    int32_t corr_scale;       /* -8 (q4_0) or -128 (q8_0) */
    mg_qgemm_xblock *xpack;   /* [m_tiles][n_blocks] */
    mg_block_q8_0 *xq;        /* per thread: MR rows of q8_0 blocks */
    mg_qgemm_wblock *wpack;   /* per thread: CHUNK_TILES x K_BLOCKS blocks */
    int64_t k_blocks;         /* blocks per K piece */
    int64_t n_tasks;          /* runs of column tiles */
    const float *bias;
    float *y;
} mg_qgemm_job;

/* The 6 x 8 -> 8 x 6 dword transpose of one block (rows r0..r5 as three
 * row-pair vectors A = r0 r1, B = r2 r3, C = r4 r5; output dword o = 6 j +
 * m is row m's k-step j): per output vector, vpermt2d indices into A:B and
 * the lanes (mask) taken from C instead. */
_Static_assert(MG_QGEMM_MR == 6, "the transpose tables below are for 6-row tiles");
static const int32_t mg_qgemm_xt_ab[3][16] = {
    {0, 8, 16, 24, 0, 0, 1, 9, 17, 25, 0, 0, 2, 10, 18, 26},
    {0, 0, 3, 11, 19, 27, 0, 0, 4, 12, 20, 28, 0, 0, 5, 13},
    {21, 29, 0, 0, 6, 14, 22, 30, 0, 0, 7, 15, 23, 31, 0, 0},
};
static const int32_t mg_qgemm_xt_c[3][16] = {
    {0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 1, 9, 0, 0, 0, 0},
    {2, 10, 0, 0, 0, 0, 3, 11, 0, 0, 0, 0, 4, 12, 0, 0},
    {0, 0, 5, 13, 0, 0, 0, 0, 6, 14, 0, 0, 0, 0, 7, 15},
};
static const __mmask16 mg_qgemm_xt_mask[3] = {0x0c30, 0x30c3, 0xc30c};

/* Activation tiles [begin, end): each row quantized to q8_0 (the kernel
 * table's quantizer), then per block the rows' quants transposed into
 * k-step order, their sums (as the corrections) and scales. */
MG_QGEMM_VNNI static void mg_qgemm_pack_x(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_qgemm_job *job = raw;
    const int64_t n_blocks = job->n_blocks;
    mg_block_q8_0 *xq = job->xq + (int64_t)thread_index * MG_QGEMM_MR * n_blocks;
    __m512i ab[3], c[3];
    for (int k = 0; k < 3; k++) {
        ab[k] = _mm512_loadu_si512(mg_qgemm_xt_ab[k]);
        c[k] = _mm512_loadu_si512(mg_qgemm_xt_c[k]);
    }
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int64_t t = begin; t < end; t++) {
        const int64_t m0 = t * MG_QGEMM_MR;
        const int rows = job->M - m0 < MG_QGEMM_MR ? (int)(job->M - m0) : MG_QGEMM_MR;
        for (int m = 0; m < rows; m++)
            job->kernels->quantize_q8_0(job->x + (m0 + m) * job->K, xq + m * n_blocks, job->K);
        mg_qgemm_xblock *out = job->xpack + t * n_blocks;
        for (int64_t b = 0; b < n_blocks; b++) {
            __m256i r[MG_QGEMM_MR];
            for (int m = 0; m < MG_QGEMM_MR; m++) {
                if (m >= rows) {
                    r[m] = _mm256_setzero_si256();
                    out[b].corr[m] = 0;
                    out[b].d[m] = 0.0f;
                    continue;
                }
                const mg_block_q8_0 *blk = xq + m * n_blocks + b;
                r[m] = _mm256_loadu_si256((const __m256i *)blk->qs);
                /* sum of the signed quants: |q + 128| summed by vpsadbw, less 32 x 128 */
                const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(r[m], bias), _mm256_setzero_si256());
                const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
                const int32_t sum = (int32_t)(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1)) - 32 * 128;
                out[b].corr[m] = job->corr_scale * sum;
                out[b].d[m] = mg_f16_to_f32(blk->d);
            }
            const __m512i A = _mm512_inserti64x4(_mm512_castsi256_si512(r[0]), r[1], 1);
            const __m512i B = _mm512_inserti64x4(_mm512_castsi256_si512(r[2]), r[3], 1);
            const __m512i C = _mm512_inserti64x4(_mm512_castsi256_si512(r[4]), r[5], 1);
            int32_t *q = &out[b].q[0][0];
            for (int k = 0; k < 3; k++) {
                const __m512i v = _mm512_permutex2var_epi32(A, ab[k], B);
                _mm512_storeu_si512(q + 16 * k, _mm512_mask_permutexvar_epi32(v, mg_qgemm_xt_mask[k], c[k], C));
            }
        }
    }
}

/* Columns past N read this zero block at every block index (stride 0). */
static const uint8_t mg_qgemm_zero_block[64] __attribute__((aligned(64)));

/* Dword j (j < 4) of 16 bytes at offset bytes into each of 16 weight rows'
 * block (row c's at blk[c]), as t[j] with row c in dword c: z[g] holds
 * rows g, g + 4, g + 8, g + 12 in its 128-bit lanes, so the 4 x 4 dword
 * transposes within lanes leave every row in place. */
MG_QGEMM_VNNI MG_QGEMM_INLINE void mg_qgemm_transpose16x4(const uint8_t *const blk[16], int64_t offset,
                                                          __m512i t[4]) {
    __m512i z[4];
    for (int g = 0; g < 4; g++) {
        __m128i lane[4];
        for (int l = 0; l < 4; l++) lane[l] = _mm_loadu_si128((const __m128i *)(blk[4 * l + g] + offset));
        z[g] = _mm512_inserti32x4(_mm512_castsi128_si512(lane[0]), lane[1], 1);
        z[g] = _mm512_inserti32x4(z[g], lane[2], 2);
        z[g] = _mm512_inserti32x4(z[g], lane[3], 3);
    }
    const __m512i lo01 = _mm512_unpacklo_epi32(z[0], z[1]), lo23 = _mm512_unpacklo_epi32(z[2], z[3]);
    const __m512i hi01 = _mm512_unpackhi_epi32(z[0], z[1]), hi23 = _mm512_unpackhi_epi32(z[2], z[3]);
    t[0] = _mm512_unpacklo_epi64(lo01, lo23);
    t[1] = _mm512_unpackhi_epi64(lo01, lo23);
    t[2] = _mm512_unpacklo_epi64(hi01, hi23);
    t[3] = _mm512_unpackhi_epi64(hi01, hi23);
}

/* Sixteen weight rows: consecutive rows of the matrix (row c at first +
 * c * row_stride), or, at its edge, any (row c at rows[c], block b at
 * rows[c] + b * stride[c]; stride 0 repeats the zero block). next: the
 * next group's first row at the first block, to prefetch (NULL: none). */
typedef struct {
    const uint8_t *first;
    int64_t row_stride;
    const uint8_t *rows[16];
    int64_t stride[16];
    const uint8_t *next;
} mg_qgemm_rows16;

/* Blocks [b0, b0 + kb) of 16 weight rows into vector v of out[0 .. kb):
 * k-step j (quants 4j..4j+3) of row c to dword c of q[j][v], made
 * unsigned, and the rows' 16 scales. q8_0: k-step j is dword j of the
 * quants (xor 0x80). q4_0: quants 4j..4j+3 (j < 4) are the low nibbles of
 * dword j, quants 16 + 4j.. its high nibbles, so k-steps j and j + 4 come
 * from one transpose, masked or shifted. One loop with everything inlined,
 * instantiated per weight type and row kind (a call per block and its
 * spills were ~a third of the packing). Consecutive rows are found by four
 * pointers and the row stride, not a multiply and two loads per row and
 * block. The f16 scales are gathered as 2-byte stores and converted after
 * the loop: read back at once, the 16 stores into one 32-byte load stalled
 * on store forwarding (22 % of the packing's samples). The next group's
 * rows are prefetched into L2 meanwhile, a few lines per block. Measured
 * on 6 x 4096 -> 44032 (2 threads, the weight in DRAM), packing and tile
 * together: q4_0 7.0-7.3 ms before these three changes, 6.8-7.0 with the
 * first two, 6.2-6.5 with all; q8_0 8.9-9.3, 8.1-8.5, 8.2-8.3. */
MG_QGEMM_VNNI MG_QGEMM_INLINE void mg_qgemm_pack16_as(const mg_qgemm_rows16 *r, int64_t b0, int64_t kb,
                                                      int64_t block_bytes, mg_dtype wtype, bool consecutive,
                                                      mg_qgemm_wblock *out, int v) {
    const __m512i bias = _mm512_set1_epi8((char)0x80), nibble = _mm512_set1_epi8(0x0f);
    uint16_t d16[MG_QGEMM_K_BLOCKS][16];
    const int64_t rs = r->row_stride;
    const uint8_t *p[4];
    for (int l = 0; l < 4; l++) p[l] = consecutive ? r->first + 4 * l * rs + b0 * block_bytes : NULL;
    /* The next group's 16 rows, line by line into L2, spread over this group's blocks. */
    const uint8_t *ahead = consecutive ? r->next : NULL;
    const int64_t ahead_lines = (kb * block_bytes + 63) / 64 + 1, ahead_per_block = (16 * ahead_lines + kb - 1) / kb;
    int64_t ahead_row = 0, ahead_line = 0;
    for (int64_t i = 0; i < kb; i++) {
        const int64_t b = b0 + i;
        const uint8_t *blk[16];
        for (int l = 0; l < 4; l++)
            for (int g = 0; g < 4; g++)
                blk[4 * l + g] = consecutive ? p[l] + g * rs : r->rows[4 * l + g] + b * r->stride[4 * l + g];
        for (int c = 0; c < 16; c++) {
            _mm_prefetch((const char *)blk[c] + MG_QGEMM_PREFETCH_BYTES, _MM_HINT_T0);
            memcpy(&d16[i][c], blk[c], 2);
        }
        mg_qgemm_wblock *o = out + i;
        __m512i t[4];
        if (wtype == MG_Q8_0) {
            mg_qgemm_transpose16x4(blk, 2, t);
            for (int j = 0; j < 4; j++) _mm512_store_si512(o->q[j][v], _mm512_xor_si512(t[j], bias));
            mg_qgemm_transpose16x4(blk, 18, t);
            for (int j = 0; j < 4; j++) _mm512_store_si512(o->q[4 + j][v], _mm512_xor_si512(t[j], bias));
        } else {
            mg_qgemm_transpose16x4(blk, 2, t);
            for (int j = 0; j < 4; j++) {
                _mm512_store_si512(o->q[j][v], _mm512_and_si512(t[j], nibble));
                _mm512_store_si512(o->q[j + 4][v], _mm512_and_si512(_mm512_srli_epi16(t[j], 4), nibble));
            }
        }
        for (int l = 0; l < 4; l++) p[l] += consecutive ? block_bytes : 0;
        for (int64_t n = 0; ahead && n < ahead_per_block; n++) {
            _mm_prefetch((const char *)ahead + ahead_row * rs + ahead_line * 64, _MM_HINT_T1);
            if (++ahead_line == ahead_lines) {
                ahead_line = 0;
                if (++ahead_row == 16) ahead = NULL;
            }
        }
    }
    for (int64_t i = 0; i < kb; i++)
        _mm512_store_ps(out[i].d[v], _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)d16[i])));
}

MG_QGEMM_VNNI static void mg_qgemm_pack16(const mg_qgemm_rows16 *r, int64_t b0, int64_t kb, mg_dtype wtype,
                                          mg_qgemm_wblock *out, int v) {
    if (wtype == MG_Q8_0) {
        if (r->first) mg_qgemm_pack16_as(r, b0, kb, sizeof(mg_block_q8_0), MG_Q8_0, true, out, v);
        else mg_qgemm_pack16_as(r, b0, kb, sizeof(mg_block_q8_0), MG_Q8_0, false, out, v);
    } else {
        if (r->first) mg_qgemm_pack16_as(r, b0, kb, sizeof(mg_block_q4_0), MG_Q4_0, true, out, v);
        else mg_qgemm_pack16_as(r, b0, kb, sizeof(mg_block_q4_0), MG_Q4_0, false, out, v);
    }
}

/* Column tiles [t0, t1) of the weight, blocks [b0, b0 + kb), into out
 * ([t1 - t0][kb]); columns past N get zero quants and scales. */
static void mg_qgemm_pack_w(const mg_qgemm_job *job, int64_t t0, int64_t t1, int64_t b0, int64_t kb,
                            mg_qgemm_wblock *out) {
    const int64_t block_bytes =
        job->wtype == MG_Q8_0 ? (int64_t)sizeof(mg_block_q8_0) : (int64_t)sizeof(mg_block_q4_0);
    for (int64_t t = t0; t < t1; t++) {
        for (int v = 0; v < MG_QGEMM_NV; v++) {
            const int64_t n0 = t * MG_QGEMM_NR + 16 * v;
            mg_qgemm_rows16 r = {.first = NULL, .row_stride = job->row_stride};
            if (n0 + 16 <= job->N) {
                r.first = job->w + n0 * job->row_stride;
                const bool more = v + 1 < MG_QGEMM_NV || t + 1 < t1; /* the next group, in this call */
                if (more && n0 + 32 <= job->N) r.next = r.first + 16 * job->row_stride + b0 * block_bytes;
            } else {
                for (int c = 0; c < 16; c++) {
                    r.rows[c] = n0 + c < job->N ? job->w + (n0 + c) * job->row_stride : mg_qgemm_zero_block;
                    r.stride[c] = n0 + c < job->N ? block_bytes : 0;
                }
            }
            mg_qgemm_pack16(&r, b0, kb, job->wtype, out + (t - t0) * kb, v);
        }
    }
}

static void mg_qgemm_columns(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_qgemm_job *job = raw;
    const int64_t n_blocks = job->n_blocks, N = job->N;
    mg_qgemm_wblock *wpack = job->wpack + (int64_t)thread_index * MG_QGEMM_CHUNK_TILES * job->k_blocks;
    for (int64_t t0 = begin; t0 < end; t0 += MG_QGEMM_CHUNK_TILES) {
        const int64_t t1 = end - t0 < MG_QGEMM_CHUNK_TILES ? end : t0 + MG_QGEMM_CHUNK_TILES;
        for (int64_t b0 = 0; b0 < n_blocks; b0 += job->k_blocks) {
            const int64_t kb = n_blocks - b0 < job->k_blocks ? n_blocks - b0 : job->k_blocks;
            const bool first = b0 == 0, last = b0 + kb == n_blocks;
            mg_qgemm_pack_w(job, t0, t1, b0, kb, wpack);
            for (int64_t mt = 0; mt < job->m_tiles; mt++) {
                const int64_t m0 = mt * MG_QGEMM_MR;
                const int rows = job->M - m0 < MG_QGEMM_MR ? (int)(job->M - m0) : MG_QGEMM_MR;
                for (int64_t t = t0; t < t1; t++) {
                    const int64_t n0 = t * MG_QGEMM_NR;
                    const int cols = N - n0 < MG_QGEMM_NR ? (int)(N - n0) : MG_QGEMM_NR;
                    mg_qgemm_tiles[rows](job->xpack + mt * n_blocks + b0, wpack + (t - t0) * kb, kb, job->y + m0 * N + n0,
                                         N, cols, first, last && job->bias ? job->bias + n0 : NULL);
                }
            }
        }
    }
}

/* One task: a run of at most CHUNK_TILES column tiles, handed out one at
 * a time (fine tasks balance the threads to the end; each column is packed
 * once whatever the split). The runs are as even as the tile count allows
 * and their number a multiple of the threads: 52 tiles (ViT-bigG's 1664
 * outputs) on 2 threads are 14 runs of 3-4, not 13 of 4 that leave one
 * thread a run behind (out_proj / fc2 5-8 % faster). */
static void mg_qgemm_chunk(void *raw, int64_t task, int thread_index) {
    const mg_qgemm_job *job = raw;
    const int64_t n_tiles = (job->N + MG_QGEMM_NR - 1) / MG_QGEMM_NR;
    mg_qgemm_columns(raw, task * n_tiles / job->n_tasks, (task + 1) * n_tiles / job->n_tasks, thread_index);
}

mg_status mg_cpu_qgemm(mg_context *ctx, const float *x, int64_t M, int64_t K, const mg_tensor *weight,
                       const float *bias, float *y) {
    static const char op[] = "mg_linear (int8 GEMM)";
    if (!mg_cpu_qgemm_available(ctx))
        return mg_error(MG_ERR_UNSUPPORTED, "%s: needs AVX-512 VNNI kernels", op);
    if (weight->dtype != MG_Q8_0 && weight->dtype != MG_Q4_0)
        return mg_error(MG_ERR_DTYPE, "%s: weight must be q8_0 or q4_0, not %s", op, mg_dtype_name(weight->dtype));
    if (M <= 0 || K <= 0 || K % MG_QK8_0 != 0)
        return mg_error(MG_ERR_SHAPE, "%s: %lld rows of %lld: in_features must be a positive multiple of 32", op,
                        (long long)M, (long long)K);
    const int n_threads = mg_context_n_threads(ctx) > 0 ? mg_context_n_threads(ctx) : 1;
    mg_qgemm_job job = {
        .kernels = mg_cpu_kernels_for(mg_cpu_context_isa(ctx)),
        .wtype = weight->dtype,
        .w = weight->data,
        .row_stride = weight->strides[0],
        .x = x,
        .M = M,
        .K = K,
        .N = weight->shape[0],
        .n_blocks = K / MG_QK8_0,
        .m_tiles = (M + MG_QGEMM_MR - 1) / MG_QGEMM_MR,
        .corr_scale = weight->dtype == MG_Q8_0 ? -128 : -8,
        .bias = bias,
        .y = y,
    };
    job.k_blocks = job.n_blocks < MG_QGEMM_K_BLOCKS ? job.n_blocks : MG_QGEMM_K_BLOCKS;
    /* Activations: the packed tiles, then each thread's q8_0 rows. */
    const size_t xpack_bytes = ((size_t)(job.m_tiles * job.n_blocks) * sizeof(mg_qgemm_xblock) + 63) / 64 * 64;
    const size_t xq_bytes = (size_t)(n_threads * MG_QGEMM_MR * job.n_blocks) * sizeof(mg_block_q8_0);
    size_t x_capacity, w_capacity;
    void *xbuf = mg_cpu_scratch_take(ctx, MG_CPU_SCRATCH_ACTIVATIONS, xpack_bytes + xq_bytes, &x_capacity);
    if (!xbuf)
        return mg_error(MG_ERR_NO_MEMORY, "%s: no memory for %zu bytes of quantized activations (%lld rows of %lld)",
                        op, xpack_bytes + xq_bytes, (long long)M, (long long)K);
    const size_t wpack_bytes =
        (size_t)(n_threads * MG_QGEMM_CHUNK_TILES * job.k_blocks) * sizeof(mg_qgemm_wblock);
    void *wbuf = mg_cpu_scratch_take(ctx, MG_CPU_SCRATCH_PANEL, wpack_bytes, &w_capacity);
    if (!wbuf) {
        mg_cpu_scratch_give(ctx, MG_CPU_SCRATCH_ACTIVATIONS, xbuf, x_capacity);
        return mg_error(MG_ERR_NO_MEMORY, "%s: no memory for %zu bytes of packed weight columns", op, wpack_bytes);
    }
    job.xpack = xbuf;
    job.xq = (mg_block_q8_0 *)((uint8_t *)xbuf + xpack_bytes);
    job.wpack = wbuf;
    mg_cpu_parallel_for(ctx, job.m_tiles, 4, mg_qgemm_pack_x, &job);
    const int64_t n_tiles = (job.N + MG_QGEMM_NR - 1) / MG_QGEMM_NR;
    job.n_tasks = (n_tiles + MG_QGEMM_CHUNK_TILES - 1) / MG_QGEMM_CHUNK_TILES;
    job.n_tasks = (job.n_tasks + n_threads - 1) / n_threads * n_threads;
    if (job.n_tasks > n_tiles) job.n_tasks = n_tiles;
    mg_threadpool_run(mg_context_threadpool(ctx), job.n_tasks, mg_qgemm_chunk, &job);
    mg_cpu_scratch_give(ctx, MG_CPU_SCRATCH_PANEL, wbuf, w_capacity);
    mg_cpu_scratch_give(ctx, MG_CPU_SCRATCH_ACTIVATIONS, xbuf, x_capacity);
    return MG_OK;
}

#else /* not x86-64 */

bool mg_cpu_qgemm_available(mg_context *ctx) {
    (void)ctx;
    return false;
}

mg_status mg_cpu_qgemm(mg_context *ctx, const float *x, int64_t M, int64_t K, const mg_tensor *weight,
                       const float *bias, float *y) {
    (void)ctx, (void)x, (void)M, (void)K, (void)weight, (void)bias, (void)y;
    return mg_error(MG_ERR_UNSUPPORTED, "mg_linear (int8 GEMM): needs AVX-512 VNNI kernels");
}

#endif
