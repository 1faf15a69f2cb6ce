/* Element-wise and row-wise ops: add, mul, scale, activations, LayerNorm,
 * RMSNorm, softmax and rotary embedding. Each matches the PyTorch /
 * Hugging Face formula named beside it, in f32 with the same operation
 * order where that decides the rounding. */
#include "cpu_internal.h"

#include <math.h>
#include <string.h>

/* Shape and byte strides padded to 4-D (leading size-1 axes). */
typedef struct {
    int64_t shape[MG_MAX_DIMS];
    int64_t strides[MG_MAX_DIMS];
} mg_dims4;

static void mg_dims4_of(const mg_tensor *t, const int64_t *strides, mg_dims4 *d) {
    int pad = MG_MAX_DIMS - t->n_dims;
    for (int i = 0; i < MG_MAX_DIMS; i++) {
        d->shape[i] = i < pad ? 1 : t->shape[i - pad];
        d->strides[i] = i < pad ? 0 : strides[i - pad];
    }
}

/* Byte offset of the row-th innermost row of a 4-D layout. */
static int64_t mg_dims4_row_offset(const mg_dims4 *d, int64_t row) {
    int64_t i2 = row % d->shape[2];
    row /= d->shape[2];
    int64_t i1 = row % d->shape[1];
    int64_t i0 = row / d->shape[1];
    return i0 * d->strides[0] + i1 * d->strides[1] + i2 * d->strides[2];
}

/* Rows of at least this many elements per parallel chunk: below it thread
 * hand-off costs more than the arithmetic. */
static int64_t mg_row_grain(int64_t row_length) {
    int64_t grain = 16384 / (row_length > 0 ? row_length : 1);
    return grain < 1 ? 1 : grain;
}

/* ---------------------------------------------------------------- binary */

typedef enum { MG_BINARY_ADD, MG_BINARY_MUL } mg_binary_kind;

typedef struct {
    mg_binary_kind kind;
    mg_dims4 a, b;
    const uint8_t *a_data, *b_data;
    float *out;
} mg_binary_job;

static void mg_binary_rows(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_binary_job *job = raw;
    const int64_t n = job->a.shape[3];
    const int64_t sa = job->a.strides[3], sb = job->b.strides[3];
    for (int64_t r = begin; r < end; r++) {
        const uint8_t *pa = job->a_data + mg_dims4_row_offset(&job->a, r);
        const uint8_t *pb = job->b_data + mg_dims4_row_offset(&job->b, r);
        float *o = job->out + r * n;
        if (sa == 4 && sb == 4) {
            const float *fa = (const float *)pa, *fb = (const float *)pb;
            if (job->kind == MG_BINARY_ADD)
                for (int64_t i = 0; i < n; i++) o[i] = fa[i] + fb[i];
            else
                for (int64_t i = 0; i < n; i++) o[i] = fa[i] * fb[i];
        } else if (sa == 4 && sb == 0) {
            const float *fa = (const float *)pa, fb = *(const float *)pb;
            if (job->kind == MG_BINARY_ADD)
                for (int64_t i = 0; i < n; i++) o[i] = fa[i] + fb;
            else
                for (int64_t i = 0; i < n; i++) o[i] = fa[i] * fb;
        } else {
            for (int64_t i = 0; i < n; i++) {
                float x, y;
                memcpy(&x, pa + i * sa, 4);
                memcpy(&y, pb + i * sb, 4);
                o[i] = job->kind == MG_BINARY_ADD ? x + y : x * y;
            }
        }
    }
}

static mg_status mg_binary(mg_context *ctx, const char *op, mg_binary_kind kind, const mg_tensor *a,
                           const mg_tensor *b, mg_tensor *out) {
    char d[MG_DESCRIBE_SIZE];
    MG_TRY(mg_cpu_check_input(op, "a", a, MG_MAX_DIMS));
    MG_TRY(mg_cpu_check_input(op, "b", b, MG_MAX_DIMS));
    if (a->dtype != MG_F32) return mg_error(MG_ERR_DTYPE, "%s: a %s must be f32", op, mg_cpu_describe(a, d));
    if (b->dtype != MG_F32) return mg_error(MG_ERR_DTYPE, "%s: b %s must be f32", op, mg_cpu_describe(b, d));
    int64_t b_strides[MG_MAX_DIMS];
    MG_TRY(mg_cpu_broadcast_strides(op, "b", b, a, b_strides));
    MG_TRY(mg_cpu_check_output(op, out, a->n_dims, a->shape));
    mg_binary_job job = {.kind = kind, .a_data = a->data, .b_data = b->data, .out = out->data};
    mg_dims4_of(a, a->strides, &job.a);
    /* b's strides are already aligned to a's axes. */
    mg_tensor b_aligned = *a;
    mg_dims4_of(&b_aligned, b_strides, &job.b);
    int64_t n_rows = job.a.shape[0] * job.a.shape[1] * job.a.shape[2];
    mg_cpu_parallel_for(ctx, n_rows, mg_row_grain(job.a.shape[3]), mg_binary_rows, &job);
    return MG_OK;
}

mg_status mg_cpu_add(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out) {
    return mg_binary(ctx, "mg_add", MG_BINARY_ADD, a, b, out);
}

mg_status mg_cpu_mul(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out) {
    return mg_binary(ctx, "mg_mul", MG_BINARY_MUL, a, b, out);
}

/* ----------------------------------------------------------------- unary */

typedef struct {
    int kind; /* mg_activation, or -1 for scale */
    const mg_cpu_kernels *kernels;
    void (*gelu)(const float *x, float *y, int64_t n); /* the table's gelu_erf or gelu_erf_f32 */
    float factor;
    mg_dims4 x;
    const uint8_t *x_data;
    float *out;
} mg_unary_job;

/* Both GELUs in forms without the cancellation of 1 + erf / 1 + tanh for
 * negative x, so the tail is accurate to a few ulp of the exact value
 * (PyTorch's f32 kernels lose all digits below about -5). This one is the
 * scalar reference of the vector kernels (mg_cpu_kernels.gelu_erf). */
float mg_cpu_gelu_erf_ref(float x) {
    /* erfc's argument in double for x < 0: its rounding would otherwise
     * be amplified by |d log erfc / dz| ~ 2z in the tail. */
    if (x >= 0.0f) return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
    return (float)(0.5 * (double)x * erfc(-(double)x * M_SQRT1_2));
}

static float mg_apply_activation(int kind, float x) {
    switch (kind) {
    case MG_ACT_GELU_ERF: return mg_cpu_gelu_erf_ref(x);
    case MG_ACT_GELU_TANH: {
        /* 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3) */
        const double beta = M_SQRT2 * M_2_SQRTPI * 0.5, kappa = 0.044715;
        double u = beta * ((double)x + kappa * (double)x * x * x);
        return (float)((double)x / (1.0 + exp(-2.0 * u)));
    }
    case MG_ACT_QUICK_GELU: return x / (1.0f + expf(-1.702f * x));
    case MG_ACT_SILU: return x / (1.0f + expf(-x));
    case MG_ACT_RELU: return x > 0.0f ? x : 0.0f;
    default: return x;
    }
}

static void mg_unary_rows(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_unary_job *job = raw;
    const int64_t n = job->x.shape[3], sx = job->x.strides[3];
    for (int64_t r = begin; r < end; r++) {
        const uint8_t *px = job->x_data + mg_dims4_row_offset(&job->x, r);
        float *o = job->out + r * n;
        if (job->kind < 0 && sx == 4) {
            const float *fx = (const float *)px;
            for (int64_t i = 0; i < n; i++) o[i] = fx[i] * job->factor;
            continue;
        }
        if (job->kind == MG_ACT_GELU_ERF || job->kind == MG_ACT_SILU || job->kind == MG_ACT_QUICK_GELU) {
            const float *in = (const float *)px;
            if (sx != 4) { /* strided: gathered into o, so every layout rounds the same */
                for (int64_t i = 0; i < n; i++) memcpy(&o[i], px + i * sx, 4);
                in = o;
            }
            if (job->kind == MG_ACT_GELU_ERF) job->gelu(in, o, n);
            else job->kernels->sigmoid_mul(in, o, n, job->kind == MG_ACT_SILU ? 1.0f : 1.702f);
            continue;
        }
        for (int64_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, px + i * sx, 4);
            o[i] = job->kind < 0 ? v * job->factor : mg_apply_activation(job->kind, v);
        }
    }
}

static mg_status mg_unary(mg_context *ctx, const char *op, int kind, float factor,
                          const mg_tensor *x, mg_tensor *out) {
    char d[MG_DESCRIBE_SIZE];
    MG_TRY(mg_cpu_check_input(op, "x", x, MG_MAX_DIMS));
    if (x->dtype != MG_F32) return mg_error(MG_ERR_DTYPE, "%s: x %s must be f32", op, mg_cpu_describe(x, d));
    MG_TRY(mg_cpu_check_output(op, out, x->n_dims, x->shape));
    mg_unary_job job = {.kind = kind, .kernels = mg_cpu_kernels_for(mg_cpu_context_isa(ctx)),
                        .factor = factor, .x_data = x->data, .out = out->data};
    /* fpmath "bf16" (or a rounding tower under "auto"): the f32-arithmetic GELU */
    job.gelu = mg_context_fpmath_bf16(ctx) ? job.kernels->gelu_erf_f32 : job.kernels->gelu_erf;
    mg_dims4_of(x, x->strides, &job.x);
    int64_t n_rows = job.x.shape[0] * job.x.shape[1] * job.x.shape[2];
    mg_cpu_parallel_for(ctx, n_rows, mg_row_grain(job.x.shape[3] * (kind < 0 ? 1 : 8)), mg_unary_rows, &job);
    return MG_OK;
}

mg_status mg_cpu_scale(mg_context *ctx, const mg_tensor *x, float factor, mg_tensor *out) {
    return mg_unary(ctx, "mg_scale", -1, factor, x, out);
}

mg_status mg_cpu_activate(mg_context *ctx, const mg_tensor *x, mg_activation kind, mg_tensor *out) {
    if (kind < MG_ACT_GELU_ERF || kind > MG_ACT_RELU)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_activate: unknown activation %d", (int)kind);
    return mg_unary(ctx, "mg_activate", (int)kind, 1.0f, x, out);
}

/* ----------------------------------------------------------------- norms */

typedef struct {
    const mg_cpu_kernels *kernels;
    const float *x, *weight, *bias;
    float *out;
    int64_t n;
    float eps;
    bool rms;
} mg_norm_job;

static void mg_norm_rows(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_norm_job *job = raw;
    for (int64_t r = begin; r < end; r++)
        job->kernels->norm_row(job->x + r * job->n, job->n, job->weight, job->bias, job->eps, job->rms,
                               job->out + r * job->n);
}

static mg_status mg_norm(mg_context *ctx, const char *op, const mg_tensor *x, const mg_tensor *weight,
                         const mg_tensor *bias, float eps, bool rms, mg_tensor *out) {
    char d[MG_DESCRIBE_SIZE];
    MG_TRY(mg_cpu_check_input(op, "x", x, MG_MAX_DIMS));
    if (x->dtype != MG_F32) return mg_error(MG_ERR_DTYPE, "%s: x %s must be f32", op, mg_cpu_describe(x, d));
    if (!(eps >= 0.0f) || isinf(eps))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: eps %g must be finite and >= 0", op, (double)eps);
    const int64_t n = x->shape[x->n_dims - 1];
    if (weight) MG_TRY(mg_cpu_check_vector(op, "weight", weight, n));
    if (bias) MG_TRY(mg_cpu_check_vector(op, "bias", bias, n));
    MG_TRY(mg_cpu_check_output(op, out, x->n_dims, x->shape));
    mg_cpu_f32 xv, wv = {NULL, NULL}, bv = {NULL, NULL};
    MG_TRY(mg_cpu_f32_input(op, "x", x, false, &xv));
    mg_status status = weight ? mg_cpu_f32_input(op, "weight", weight, true, &wv) : MG_OK;
    if (status == MG_OK && bias) status = mg_cpu_f32_input(op, "bias", bias, true, &bv);
    if (status == MG_OK) {
        mg_norm_job job = {mg_cpu_kernels_for(mg_cpu_context_isa(ctx)), xv.data, wv.data, bv.data, out->data,
                           n, eps, rms};
        mg_cpu_parallel_for(ctx, mg_tensor_numel(x) / n, mg_row_grain(n * 2), mg_norm_rows, &job);
    }
    mg_cpu_f32_release(&xv);
    mg_cpu_f32_release(&wv);
    mg_cpu_f32_release(&bv);
    return status;
}

mg_status mg_cpu_layer_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                            const mg_tensor *bias, float eps, mg_tensor *out) {
    return mg_norm(ctx, "mg_layer_norm", x, weight, bias, eps, false, out);
}

mg_status mg_cpu_rms_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight, float eps,
                          mg_tensor *out) {
    return mg_norm(ctx, "mg_rms_norm", x, weight, NULL, eps, true, out);
}

/* --------------------------------------------------------------- softmax */

typedef struct {
    const float *x;
    float *out;
    int64_t n, q_len;
    bool causal;
    const uint8_t *mask;
    mg_dims4 mask_dims;
} mg_softmax_job;

static void mg_softmax_rows(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_softmax_job *job = raw;
    const int64_t n = job->n;
    for (int64_t r = begin; r < end; r++) {
        const float *x = job->x + r * n;
        float *o = job->out + r * n;
        int64_t visible = n;
        if (job->causal) {
            int64_t q = r % job->q_len;
            visible = q + (n - job->q_len) + 1;
            if (visible < 0) visible = 0;
            if (visible > n) visible = n;
        }
        const uint8_t *m = job->mask ? job->mask + mg_dims4_row_offset(&job->mask_dims, r) : NULL;
        const int64_t ms = job->mask_dims.strides[3];
        float max = -INFINITY;
        for (int64_t j = 0; j < visible; j++) {
            float v = x[j];
            if (m) {
                float add;
                memcpy(&add, m + j * ms, 4);
                v += add;
            }
            o[j] = v;
            if (v > max) max = v;
        }
        /* A row that sees no key (all masked) has no distribution: zeros,
         * where PyTorch would produce NaN. */
        if (max == -INFINITY) {
            for (int64_t j = 0; j < n; j++) o[j] = 0.0f;
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < visible; j++) {
            o[j] = expf(o[j] - max);
            sum += o[j];
        }
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < visible; j++) o[j] *= inv;
        for (int64_t j = visible; j < n; j++) o[j] = 0.0f;
    }
}

mg_status mg_cpu_softmax(mg_context *ctx, const mg_tensor *x, const mg_tensor *mask, bool causal,
                         mg_tensor *out) {
    static const char op[] = "mg_softmax";
    char d[MG_DESCRIBE_SIZE];
    MG_TRY(mg_cpu_check_input(op, "x", x, MG_MAX_DIMS));
    if (x->dtype != MG_F32) return mg_error(MG_ERR_DTYPE, "%s: x %s must be f32", op, mg_cpu_describe(x, d));
    mg_softmax_job job;
    memset(&job, 0, sizeof job);
    if (mask) {
        MG_TRY(mg_cpu_check_input(op, "mask", mask, MG_MAX_DIMS));
        if (mask->dtype != MG_F32)
            return mg_error(MG_ERR_DTYPE, "%s: mask %s must be f32 (additive; -inf blocks)", op,
                            mg_cpu_describe(mask, d));
        int64_t strides[MG_MAX_DIMS];
        MG_TRY(mg_cpu_broadcast_strides(op, "mask", mask, x, strides));
        mg_tensor aligned = *x;
        mg_dims4_of(&aligned, strides, &job.mask_dims);
        job.mask = mask->data;
    }
    MG_TRY(mg_cpu_check_output(op, out, x->n_dims, x->shape));
    mg_cpu_f32 xv;
    MG_TRY(mg_cpu_f32_input(op, "x", x, false, &xv));
    job.x = xv.data;
    job.out = out->data;
    job.n = x->shape[x->n_dims - 1];
    job.q_len = x->n_dims >= 2 ? x->shape[x->n_dims - 2] : 1;
    job.causal = causal;
    mg_cpu_parallel_for(ctx, mg_tensor_numel(x) / job.n, mg_row_grain(job.n * 4), mg_softmax_rows, &job);
    mg_cpu_f32_release(&xv);
    return MG_OK;
}

/* ------------------------------------------------------------------ rope */

typedef struct {
    const uint8_t *x;
    uint8_t *out;
    int64_t x_strides[3], out_strides[3];
    int64_t heads, dim;
    int half;
    const int32_t *positions;
    const float *inv_freq;
} mg_rope_job;

static void mg_rope_tokens(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_rope_job *job = raw;
    float cos_sin[2 * 256];
    for (int64_t t = begin; t < end; t++) {
        /* freqs = position * inv_freq in f32, then cos/sin (HF's
         * rotary embedding computes the same f32 product). */
        for (int64_t i0 = 0; i0 < job->half; i0 += 256) {
            int64_t count = job->half - i0 < 256 ? job->half - i0 : 256;
            for (int64_t i = 0; i < count; i++) {
                float angle = (float)job->positions[t] * job->inv_freq[i0 + i];
                cos_sin[2 * i] = cosf(angle);
                cos_sin[2 * i + 1] = sinf(angle);
            }
            for (int64_t h = 0; h < job->heads; h++) {
                const uint8_t *px = job->x + t * job->x_strides[0] + h * job->x_strides[1];
                uint8_t *po = job->out + t * job->out_strides[0] + h * job->out_strides[1];
                const int64_t sx = job->x_strides[2], so = job->out_strides[2];
                for (int64_t i = 0; i < count; i++) {
                    int64_t lo = i0 + i, hi = lo + job->half;
                    float x1, x2;
                    memcpy(&x1, px + lo * sx, 4);
                    memcpy(&x2, px + hi * sx, 4);
                    const float c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
                    /* q*cos + rotate_half(q)*sin, rotate_half = cat(-x2, x1) */
                    float y1 = x1 * c + (-x2) * s;
                    float y2 = x2 * c + x1 * s;
                    memcpy(po + lo * so, &y1, 4);
                    memcpy(po + hi * so, &y2, 4);
                }
            }
        }
        if (job->x == job->out && job->x_strides[0] == job->out_strides[0] &&
            job->x_strides[1] == job->out_strides[1] && job->x_strides[2] == job->out_strides[2])
            continue; /* in place: the pass-through dims are already there */
        for (int64_t h = 0; h < job->heads; h++) {
            const uint8_t *px = job->x + t * job->x_strides[0] + h * job->x_strides[1];
            uint8_t *po = job->out + t * job->out_strides[0] + h * job->out_strides[1];
            for (int64_t i = 2 * (int64_t)job->half; i < job->dim; i++)
                memcpy(po + i * job->out_strides[2], px + i * job->x_strides[2], 4);
        }
    }
}

mg_status mg_cpu_rope(mg_context *ctx, const mg_tensor *x, const int32_t *positions,
                      const float *inv_freq, int rotary_dim, mg_tensor *out) {
    static const char op[] = "mg_rope";
    char d[MG_DESCRIBE_SIZE], e[MG_DESCRIBE_SIZE];
    MG_TRY(mg_cpu_check_input(op, "x", x, 3));
    if (x->n_dims != 3)
        return mg_error(MG_ERR_SHAPE, "%s: x %s must be [tokens, heads, head_dim]", op, mg_cpu_describe(x, d));
    if (x->dtype != MG_F32) return mg_error(MG_ERR_DTYPE, "%s: x %s must be f32", op, mg_cpu_describe(x, d));
    if (!positions || !inv_freq)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: %s is NULL", op, positions ? "inv_freq" : "positions");
    if (rotary_dim < 2 || rotary_dim % 2 || rotary_dim > x->shape[2])
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: rotary_dim %d must be even and in [2, %lld] for x %s",
                        op, rotary_dim, (long long)x->shape[2], mg_cpu_describe(x, d));
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: output tensor is NULL", op);
    /* out may be a strided view (rotating q/k in place inside a fused qkv buffer). */
    MG_TRY(mg_cpu_check_input(op, "out", out, 3));
    if (out->n_dims != 3 || out->shape[0] != x->shape[0] || out->shape[1] != x->shape[1] ||
        out->shape[2] != x->shape[2])
        return mg_error(MG_ERR_SHAPE, "%s: output %s should have the shape of x %s", op,
                        mg_cpu_describe(out, d), mg_cpu_describe(x, e));
    if (out->dtype != MG_F32) return mg_error(MG_ERR_DTYPE, "%s: output %s must be f32", op, mg_cpu_describe(out, d));
    mg_rope_job job = {
        .x = x->data, .out = out->data, .heads = x->shape[1], .dim = x->shape[2],
        .half = rotary_dim / 2, .positions = positions, .inv_freq = inv_freq,
    };
    for (int i = 0; i < 3; i++) {
        job.x_strides[i] = x->strides[i];
        job.out_strides[i] = out->strides[i];
    }
    mg_cpu_parallel_for(ctx, x->shape[0], mg_row_grain(x->shape[1] * x->shape[2] * 4), mg_rope_tokens, &job);
    return MG_OK;
}
