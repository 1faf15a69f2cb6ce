/* mg_linear and mg_matmul.
 *
 * Linear picks its path by the number of activation rows M, the weight
 * type and the CPU:
 *  - M <= MG_GEMV_MAX_ROWS (decode; MG_QGEMV_MAX_ROWS for q8_0/q4_0
 *    weights): our own row-parallel dot kernels read
 *    each weight row once for all M activation rows. That is the
 *    bandwidth-bound case where BLAS libraries fall far below the memory
 *    roofline. q8_0/q4_0 weights meet activations quantized to q8_0 on the
 *    fly, as llama.cpp does; bf16 weights, where the CPU has AVX-512 BF16,
 *    activations rounded to bf16 (as the bf16 GEMM path and PyTorch's bf16
 *    nn.Linear do), four rows a step through vdpbf16ps.
 *  - f32 (and bf16 with oneDNN) weights, larger M: one GEMM call.
 *  - q8_0/q4_0 weights, larger M, with AVX-512 VNNI (MG_QGEMV_MAX_ROWS_VNNI):
 *    the int8 GEMM of cpu_qgemm.c, activations quantized to q8_0 as for
 *    the decode kernels (same semantics), ~1.6x the bf16 panel route.
 *  - other weights, larger M: weight row panels are dequantized and fed
 *    to the GEMM: q8_0/q4_0 to bf16 for a native bf16 GEMM (activations
 *    rounded to bf16, as for bf16 weights), so quantized prefill and vision
 *    towers run at the bf16 GEMM rate; f16, or without a native bf16
 *    GEMM, exact f32 rows into the f32 GEMM. */
#include "cpu_internal.h"

#include <string.h>

#define MG_GEMV_MAX_ROWS 8
/* Weight bytes per task of the GEMV. */
#define MG_GEMV_CHUNK_BYTES ((int64_t)256 << 10)
/* q8_0/q4_0 weights stay on the integer kernels longer: they run at
 * ~130-185 GFLOP/s for any M (each L2-sized run of weight rows meets every
 * activation row), about what dequantizing a panel plus oneDNN's bf16 GEMM
 * over it reach at ~16 rows (2 threads, Zen 4, 4096 x 4096: GEMV 4.0 / 3.0
 * ms q8_0 / q4_0 at M = 16, 6.2 / 4.4 ms at M = 24; panels + GEMM 4.9 ms
 * at M = 32, 7.1 at M = 64). */
#define MG_QGEMV_MAX_ROWS 16
/* With AVX-512 VNNI the many-row q8_0/q4_0 linear is the int8 GEMM
 * (cpu_qgemm.c). The GEMV's cost grows by a whole pass of dot products per
 * row, the GEMM's by a fraction of one: a forward of M tokens through the
 * full BiRD decoder (2 threads, Zen 4, read probes 46-51 GB/s) took, for M
 * = 1 .. 5, q4_0 GEMV 84 / 152 / 212 / 273 ms, GEMM (from 2) 176 / 191 /
 * 211 / 230 ms; q8_0 GEMV 155 / 238 / 321 / 406, GEMM 231 / 244 / 263 /
 * 283. So the GEMV takes one and two rows (two of q8_0 are a tie), the
 * GEMM three and more. */
#define MG_QGEMV_MAX_ROWS_VNNI 2
/* Bytes of one dequantized weight panel: f32 panels fit a large L2/L3
 * share; bf16 panels are larger, since oneDNN's bf16 matmul runs narrow
 * weights (N well below K) far below its peak: 512 x 4096 x 4096 took 48
 * ms as eight panels of 512 rows, 41 ms as one (32 MiB covers the square
 * matrices and ViT MLPs of the models whole). */
#define MG_PANEL_BYTES ((int64_t)4 << 20)
#define MG_PANEL_BYTES_BF16 ((int64_t)32 << 20)

static bool mg_ranges_overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes) {
    const uint8_t *pa = a, *pb = b;
    return pa < pb + b_bytes && pb < pa + a_bytes;
}

/* ----------------------------------------------------------- kernels path */

typedef struct {
    const mg_cpu_kernels *kernels;
    mg_dtype wtype;
    const uint8_t *w;
    int64_t w_row_stride;
    const float *x;           /* [M, K] f32 */
    const mg_block_q8_0 *xq;  /* [M, K/32] when the weight is quantized */
    const mg_cpu_qgemv *qgemv; /* its many-row kernel, */
    const uint8_t *prep;      /* and x in that kernel's layout, prep_stride bytes a row */
    size_t prep_stride;
    const uint16_t *xb;       /* [M, K] bf16: bf16 weights through gemv_bf16 */
    int64_t M, K, N;
    const float *bias;
    float *y;
} mg_gemv_job;

static void mg_gemv_rows(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_gemv_job *job = raw;
    const int64_t K = job->K, N = job->N, n_blocks = job->K / MG_QK8_0;
    if (job->xb || job->qgemv) {
        /* The many-row kernels (bf16 x bf16, quantized): runs of rows small
         * enough to stay in L2 while every activation row passes over them. */
        const int64_t run = job->M == 1 ? end - begin : 32;
        for (int64_t n0 = begin; n0 < end; n0 += run) {
            const int64_t rows = end - n0 < run ? end - n0 : run;
            const uint8_t *w = job->w + n0 * job->w_row_stride;
            for (int64_t m = 0; m < job->M; m++) {
                float *y = job->y + m * N + n0;
                if (job->xb)
                    job->kernels->gemv_bf16(job->xb + m * K, K, w, job->w_row_stride, rows, y);
                else
                    job->qgemv->rows(job->prep ? job->prep + m * job->prep_stride : NULL, job->xq + m * n_blocks,
                                     n_blocks, w, job->w_row_stride, rows, y);
                if (job->bias)
                    for (int64_t r = 0; r < rows; r++) y[r] += job->bias[n0 + r];
            }
        }
        return;
    }
    for (int64_t n = begin; n < end; n++) {
        const void *w = job->w + n * job->w_row_stride;
        const float b = job->bias ? job->bias[n] : 0.0f;
        for (int64_t m = 0; m < job->M; m++) {
            float dot;
            switch (job->wtype) {
            case MG_F32: dot = job->kernels->dot_f32(job->x + m * K, w, K); break;
            case MG_F16: dot = job->kernels->dot_f16(job->x + m * K, w, K); break;
            case MG_BF16: dot = job->kernels->dot_bf16(job->x + m * K, w, K); break;
            case MG_Q8_0: dot = job->kernels->dot_q8_0(job->xq + m * n_blocks, w, n_blocks); break;
            default: dot = job->kernels->dot_q4_0(job->xq + m * n_blocks, w, n_blocks); break;
            }
            job->y[m * N + n] = dot + b;
        }
    }
}

static mg_status mg_linear_kernels(mg_context *ctx, const float *x, int64_t M, int64_t K,
                                   const mg_tensor *weight, const float *bias, float *y) {
    mg_gemv_job job = {
        .kernels = mg_cpu_kernels_for(mg_cpu_context_isa(ctx)),
        .wtype = weight->dtype,
        .w = weight->data,
        .w_row_stride = weight->strides[0],
        .x = x,
        .M = M,
        .K = K,
        .N = weight->shape[0],
        .bias = bias,
        .y = y,
    };
    mg_block_q8_0 *xq = NULL;
    uint16_t *xb = NULL;
    if (weight->dtype == MG_BF16 && mg_cpu_context_isa(ctx) >= MG_ISA_AVX512_BF16 && weight->strides[0] % 2 == 0) {
        xb = mg_aligned_alloc((size_t)(M * K) * 2);
        if (!xb) return mg_error(MG_ERR_NO_MEMORY, "mg_linear: no memory to round %lld activation rows to bf16", (long long)M);
        job.kernels->to_bf16(x, xb, M * K);
        job.xb = xb;
    } else if (mg_dtype_is_quantized(weight->dtype)) {
        const int64_t n_blocks = K / MG_QK8_0;
        const mg_cpu_qgemv *qgemv = weight->dtype == MG_Q8_0 ? &job.kernels->gemv_q8_0 : &job.kernels->gemv_q4_0;
        /* One allocation: the q8_0 rows, then the kernel's prepared copy. */
        const size_t xq_bytes = ((size_t)(M * n_blocks) * sizeof *xq + 63) / 64 * 64;
        const size_t prep_stride = (qgemv->prep_bytes(n_blocks) + 63) / 64 * 64;
        xq = mg_aligned_alloc(xq_bytes + (size_t)M * prep_stride);
        if (!xq) return mg_error(MG_ERR_NO_MEMORY, "mg_linear: no memory to quantize %lld activation rows", (long long)M);
        for (int64_t m = 0; m < M; m++) job.kernels->quantize_q8_0(x + m * K, xq + m * n_blocks, K);
        job.xq = xq;
        job.qgemv = qgemv;
        if (prep_stride) {
            job.prep = (const uint8_t *)xq + xq_bytes;
            job.prep_stride = prep_stride;
            for (int64_t m = 0; m < M; m++)
                qgemv->prepare(xq + m * n_blocks, n_blocks, (uint8_t *)xq + xq_bytes + m * prep_stride);
        }
    }
    /* Chunks of about MG_GEMV_CHUNK_BYTES of weight rows, handed out one at
     * a time, in multiples of 32 rows: whole cache lines of output per task
     * keep threads from sharing lines of y, and the quantized runs stay
     * whole. */
    int64_t chunk = MG_GEMV_CHUNK_BYTES / (job.w_row_stride > 0 ? job.w_row_stride : 1);
    chunk = chunk < 32 ? 32 : chunk - chunk % 32;
    mg_cpu_parallel_chunks(ctx, job.N, chunk, mg_gemv_rows, &job);
    mg_aligned_free(xq);
    mg_aligned_free(xb);
    return MG_OK;
}

/* --------------------------------------------------------------- GEMM path */

typedef struct {
    const mg_cpu_kernels *kernels;
    mg_dtype wtype;
    const uint8_t *w;
    int64_t w_row_stride, K;
    void *panel;  /* rows x K: bf16 when bf16, else f32 */
    bool bf16;
    mg_status status;
} mg_panel_job;

static void mg_panel_rows(void *raw, int64_t begin, int64_t end, int thread_index) {
    mg_panel_job *job = raw;
    const mg_cpu_kernels *k = job->kernels;
    const int64_t K = job->K, n_blocks = K / MG_QK8_0;
    for (int64_t r = begin; r < end; r++) {
        const uint8_t *src = job->w + r * job->w_row_stride;
        float *f32 = (float *)job->panel + r * K;
        uint16_t *bf16 = (uint16_t *)job->panel + r * K;
        if (job->wtype == MG_Q8_0) {
            if (job->bf16) k->dequant_q8_0_bf16(src, bf16, n_blocks);
            else k->dequant_q8_0_f32(src, f32, n_blocks);
        } else if (job->wtype == MG_Q4_0) {
            if (job->bf16) k->dequant_q4_0_bf16(src, bf16, n_blocks);
            else k->dequant_q4_0_f32(src, f32, n_blocks);
        } else if (job->wtype == MG_F16) {
            k->f16_to_f32((const uint16_t *)src, f32, K);
        } else if (mg_dequantize_row(job->wtype, src, f32, K) != MG_OK) {
            job->status = MG_ERR_INTERNAL; /* f16/bf16 rows cannot fail */
        }
    }
}

typedef struct {
    const mg_cpu_kernels *kernels;
    const float *x;
    uint16_t *xb;
    int64_t K;
} mg_to_bf16_job;

static void mg_to_bf16_rows(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_to_bf16_job *job = raw;
    job->kernels->to_bf16(job->x + begin * job->K, job->xb + begin * job->K, (end - begin) * job->K);
}

/* x[M, K] rounded to bf16 (as PyTorch's bf16 nn.Linear rounds its input),
 * in the context's activation scratch (give it back with *capacity). */
static mg_status mg_activations_bf16(mg_context *ctx, const float *x, int64_t M, int64_t K, uint16_t **out,
                                     size_t *capacity) {
    *out = mg_cpu_scratch_take(ctx, MG_CPU_SCRATCH_ACTIVATIONS, (size_t)(M * K) * 2, capacity);
    if (!*out) return mg_error(MG_ERR_NO_MEMORY, "mg_linear: no memory for %lld bf16 activation rows", (long long)M);
    mg_to_bf16_job job = {mg_cpu_kernels_for(mg_cpu_context_isa(ctx)), x, *out, K};
    mg_cpu_parallel_for(ctx, M, (16384 + K - 1) / K, mg_to_bf16_rows, &job);
    return MG_OK;
}

static void mg_add_bias(float *y, const float *bias, int64_t M, int64_t N) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) y[m * N + n] += bias[n];
}

static mg_status mg_linear_gemm(mg_context *ctx, const float *x, int64_t M, int64_t K,
                                const mg_tensor *weight, const float *bias, float *y) {
    const int64_t N = weight->shape[0];
    const int64_t row_stride = weight->strides[0];
    /* q8_0/q4_0 with AVX-512 VNNI: the int8 GEMM (cpu_qgemm.c), the decode
     * kernels' semantics (activations quantized to q8_0 per block). */
    if (mg_dtype_is_quantized(weight->dtype) && mg_cpu_qgemm_available(ctx))
        return mg_cpu_qgemm(ctx, x, M, K, weight, bias, y);
    if (weight->dtype == MG_F32 && row_stride % 4 == 0) {
        MG_TRY(mg_cpu_gemm(ctx, MG_F32, M, N, K, x, K, weight->data, row_stride / 4, true, y, N));
    } else if (weight->dtype == MG_BF16 && row_stride % 2 == 0 && mg_cpu_gemm_has_bf16(ctx)) {
        /* AVX-512 BF16 GEMM: activations are rounded to bf16, as PyTorch's
         * bf16 nn.Linear does; accumulation stays f32. */
        uint16_t *xb;
        size_t xb_capacity;
        MG_TRY(mg_activations_bf16(ctx, x, M, K, &xb, &xb_capacity));
        mg_status status = mg_cpu_gemm(ctx, MG_BF16, M, N, K, xb, K, weight->data, row_stride / 2, true, y, N);
        mg_cpu_scratch_give(ctx, MG_CPU_SCRATCH_ACTIVATIONS, xb, xb_capacity);
        MG_TRY(status);
    } else {
        /* Panels of weight rows dequantized by the vector kernels. q8_0 /
         * q4_0 weights with a native bf16 GEMM: to bf16 (the dequantized
         * value rounded to nearest even) against bf16 activations, at the
         * bf16 GEMM's rate, twice the f32 one; otherwise exact f32 rows
         * into the f32 GEMM. */
        const bool bf16 = mg_dtype_is_quantized(weight->dtype) && mg_cpu_gemm_has_bf16(ctx);
        const int64_t elem = bf16 ? 2 : 4;
        int64_t panel_rows = (bf16 ? MG_PANEL_BYTES_BF16 : MG_PANEL_BYTES) / (K * elem);
        panel_rows = panel_rows < 64 ? 64 : panel_rows - panel_rows % 16;
        if (panel_rows > N) panel_rows = N;
        uint16_t *xb = NULL;
        size_t xb_capacity = 0, panel_capacity;
        if (bf16) MG_TRY(mg_activations_bf16(ctx, x, M, K, &xb, &xb_capacity));
        void *panel = mg_cpu_scratch_take(ctx, MG_CPU_SCRATCH_PANEL, (size_t)(panel_rows * K * elem), &panel_capacity);
        if (!panel) {
            mg_cpu_scratch_give(ctx, MG_CPU_SCRATCH_ACTIVATIONS, xb, xb_capacity);
            return mg_error(MG_ERR_NO_MEMORY, "mg_linear: no memory for a weight panel of %lld rows", (long long)panel_rows);
        }
        mg_status status = MG_OK;
        for (int64_t n0 = 0; n0 < N && status == MG_OK; n0 += panel_rows) {
            int64_t rows = N - n0 < panel_rows ? N - n0 : panel_rows;
            mg_panel_job job = {mg_cpu_kernels_for(mg_cpu_context_isa(ctx)), weight->dtype,
                                (const uint8_t *)weight->data + n0 * row_stride, row_stride, K, panel, bf16, MG_OK};
            mg_cpu_parallel_for(ctx, rows, 8, mg_panel_rows, &job);
            status = job.status;
            if (status != MG_OK) {
                mg_error(status, "mg_linear: dequantizing %s weight rows failed", mg_dtype_name(weight->dtype));
                break;
            }
            if (bf16) status = mg_cpu_gemm(ctx, MG_BF16, M, rows, K, xb, K, panel, K, true, y + n0, N);
            else status = mg_cpu_gemm(ctx, MG_F32, M, rows, K, x, K, panel, K, true, y + n0, N);
        }
        mg_cpu_scratch_give(ctx, MG_CPU_SCRATCH_PANEL, panel, panel_capacity);
        mg_cpu_scratch_give(ctx, MG_CPU_SCRATCH_ACTIVATIONS, xb, xb_capacity);
        MG_TRY(status);
    }
    if (bias) mg_add_bias(y, bias, M, N);
    return MG_OK;
}

mg_status mg_cpu_linear_rows(mg_context *ctx, const float *x, int64_t M, int64_t K,
                             const mg_tensor *weight, const float *bias, float *y) {
    const int64_t gemv_rows = !mg_dtype_is_quantized(weight->dtype) ? MG_GEMV_MAX_ROWS
                              : mg_cpu_qgemm_available(ctx)       ? MG_QGEMV_MAX_ROWS_VNNI
                                                                  : MG_QGEMV_MAX_ROWS;
    if (M <= gemv_rows) return mg_linear_kernels(ctx, x, M, K, weight, bias, y);
    return mg_linear_gemm(ctx, x, M, K, weight, bias, y);
}

mg_status mg_cpu_linear(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                        const mg_tensor *bias, mg_tensor *y) {
    static const char op[] = "mg_linear";
    char a[MG_DESCRIBE_SIZE], b[MG_DESCRIBE_SIZE];
    MG_TRY(mg_cpu_check_input(op, "x", x, MG_MAX_DIMS));
    MG_TRY(mg_cpu_check_input(op, "weight", weight, 2));
    if (weight->n_dims != 2)
        return mg_error(MG_ERR_SHAPE, "%s: weight %s must be 2-D [out_features, in_features]", op,
                        mg_cpu_describe(weight, a));
    if (x->dtype != MG_F32)
        return mg_error(MG_ERR_DTYPE, "%s: x %s must be f32", op, mg_cpu_describe(x, a));
    mg_dtype wt = weight->dtype;
    if (wt != MG_F32 && wt != MG_F16 && wt != MG_BF16 && wt != MG_Q8_0 && wt != MG_Q4_0)
        return mg_error(MG_ERR_DTYPE, "%s: weight %s must be f32, f16, bf16, q8_0 or q4_0", op,
                        mg_cpu_describe(weight, a));
    const int64_t K = x->shape[x->n_dims - 1], N = weight->shape[0];
    if (weight->shape[1] != K)
        return mg_error(MG_ERR_SHAPE, "%s: x %s and weight %s: inner dimensions differ", op,
                        mg_cpu_describe(x, a), mg_cpu_describe(weight, b));
    if (K % mg_dtype_block_size(wt) != 0)
        return mg_error(MG_ERR_SHAPE, "%s: weight %s: in_features %lld is not a multiple of the %s block of %lld",
                        op, mg_cpu_describe(weight, a), (long long)K, mg_dtype_name(wt),
                        (long long)mg_dtype_block_size(wt));
    size_t row_bytes = 0;
    MG_TRY(mg_dtype_row_bytes(wt, K, &row_bytes));
    if (weight->strides[1] != mg_dtype_block_bytes(wt) ||
        (N > 1 && weight->strides[0] < (int64_t)row_bytes))
        return mg_error(MG_ERR_SHAPE, "%s: weight %s must have contiguous rows", op,
                        mg_cpu_describe(weight, a));
    if (bias) MG_TRY(mg_cpu_check_vector(op, "bias", bias, N));
    int64_t y_shape[MG_MAX_DIMS];
    for (int i = 0; i < x->n_dims; i++) y_shape[i] = x->shape[i];
    y_shape[x->n_dims - 1] = N;
    MG_TRY(mg_cpu_check_output(op, y, x->n_dims, y_shape));
    const int64_t M = mg_tensor_numel(x) / K;
    if (mg_ranges_overlap(y->data, (size_t)(M * N) * 4, x->data, (size_t)(M * K) * 4))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: output %s overlaps x %s", op,
                        mg_cpu_describe(y, a), mg_cpu_describe(x, b));

    mg_cpu_f32 xv, bv = {NULL, NULL};
    MG_TRY(mg_cpu_f32_input(op, "x", x, false, &xv));
    mg_status status = bias ? mg_cpu_f32_input(op, "bias", bias, true, &bv) : MG_OK;
    if (status == MG_OK) status = mg_cpu_linear_rows(ctx, xv.data, M, K, weight, bv.data, y->data);
    mg_cpu_f32_release(&xv);
    mg_cpu_f32_release(&bv);
    return status;
}

/* ------------------------------------------------------------------ matmul */

/* One matmul operand as (base, batch stride, leading dimension) of a
 * row-contiguous layout, made by copying when the view has none. */
typedef struct {
    const uint8_t *base;
    int64_t batch, rows, cols;
    int64_t batch_stride; /* bytes; 0 broadcasts */
    int64_t ld;           /* elements */
    void *owned;
} mg_matmul_operand;

static mg_status mg_matmul_operand_init(const char *what, const mg_tensor *t, mg_dtype dtype,
                                        mg_matmul_operand *op) {
    memset(op, 0, sizeof *op);
    const int nd = t->n_dims;
    op->batch = nd == 3 ? t->shape[0] : 1;
    op->rows = t->shape[nd - 2];
    op->cols = t->shape[nd - 1];
    const int64_t elem = dtype == MG_F32 ? 4 : 2;
    bool usable = t->dtype == dtype && t->strides[nd - 1] == elem && t->strides[nd - 2] % elem == 0 &&
                  (op->rows == 1 || t->strides[nd - 2] >= op->cols * elem);
    if (usable) {
        op->base = t->data;
        op->batch_stride = nd == 3 && op->batch > 1 ? t->strides[0] : 0;
        op->ld = op->rows == 1 ? op->cols : t->strides[nd - 2] / elem;
        return MG_OK;
    }
    mg_tensor copy;
    MG_TRY(mg_tensor_alloc(&copy, dtype, nd, t->shape));
    mg_status status = mg_tensor_convert(t, &copy);
    if (status != MG_OK) {
        mg_tensor_free_data(&copy);
        return mg_error_prefix(status, "mg_matmul: copying %s", what);
    }
    op->owned = copy.data;
    op->base = copy.data;
    op->batch_stride = op->batch > 1 ? op->rows * op->cols * elem : 0;
    op->ld = op->cols;
    return MG_OK;
}

mg_status mg_cpu_matmul(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, bool transpose_b,
                        mg_tensor *c) {
    static const char op[] = "mg_matmul";
    char da[MG_DESCRIBE_SIZE], db[MG_DESCRIBE_SIZE];
    MG_TRY(mg_cpu_check_input(op, "a", a, 3));
    MG_TRY(mg_cpu_check_input(op, "b", b, 3));
    if (a->n_dims < 2 || b->n_dims < 2)
        return mg_error(MG_ERR_SHAPE, "%s: a %s and b %s must be 2-D or 3-D", op,
                        mg_cpu_describe(a, da), mg_cpu_describe(b, db));
    for (int i = 0; i < 2; i++) {
        const mg_tensor *t = i ? b : a;
        if (t->dtype != MG_F32 && t->dtype != MG_BF16)
            return mg_error(MG_ERR_DTYPE, "%s: %s %s must be f32 or bf16", op, i ? "b" : "a",
                            mg_cpu_describe(t, da));
    }
    const int64_t M = a->shape[a->n_dims - 2], K = a->shape[a->n_dims - 1];
    const int64_t Kb = b->shape[b->n_dims - (transpose_b ? 1 : 2)];
    const int64_t N = b->shape[b->n_dims - (transpose_b ? 2 : 1)];
    if (K != Kb)
        return mg_error(MG_ERR_SHAPE, "%s: a %s and b %s%s: inner dimensions differ", op,
                        mg_cpu_describe(a, da), mg_cpu_describe(b, db),
                        transpose_b ? " (transposed)" : "");
    const int64_t batch_a = a->n_dims == 3 ? a->shape[0] : 1;
    const int64_t batch_b = b->n_dims == 3 ? b->shape[0] : 1;
    if (batch_a != batch_b && batch_a != 1 && batch_b != 1)
        return mg_error(MG_ERR_SHAPE, "%s: batch sizes of a %s and b %s differ", op,
                        mg_cpu_describe(a, da), mg_cpu_describe(b, db));
    const int64_t batch = batch_a > batch_b ? batch_a : batch_b;
    const bool batched = a->n_dims == 3 || b->n_dims == 3;
    int64_t c_shape[3] = {batch, M, N};
    MG_TRY(mg_cpu_check_output(op, c, batched ? 3 : 2, batched ? c_shape : c_shape + 1));

    /* bf16 GEMM only when both sides are bf16; a mixed pair computes in f32. */
    mg_dtype dtype = a->dtype == MG_BF16 && b->dtype == MG_BF16 ? MG_BF16 : MG_F32;
    mg_matmul_operand oa, ob;
    MG_TRY(mg_matmul_operand_init("a", a, dtype, &oa));
    mg_status status = mg_matmul_operand_init("b", b, dtype, &ob);
    float *cdata = c->data;
    for (int64_t i = 0; status == MG_OK && i < batch; i++)
        status = mg_cpu_gemm(ctx, dtype, M, N, K, oa.base + i * oa.batch_stride, oa.ld,
                             ob.base + i * ob.batch_stride, ob.ld, transpose_b, cdata + i * M * N, N);
    mg_aligned_free(oa.owned);
    mg_aligned_free(ob.owned);
    return status;
}
