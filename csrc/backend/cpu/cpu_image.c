/* Image-shaped ops: patch embedding (a conv whose kernel equals its stride,
 * done as a GEMM over unfolded patches) and torch.nn.functional.interpolate
 * in bicubic and bilinear modes. The interpolation follows ATen's
 * UpSampleKernel.cpp step by step in f32: source index, guarded floor and
 * lambda, per-axis weights, then rows combined in the same order. */
#include "cpu_internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ patch embed */

typedef struct {
    const uint8_t *image;
    int64_t strides[3]; /* bytes: channel, row, column */
    int64_t channels, patch, grid_w;
    float *patches; /* [n_patches, C*P*P] */
} mg_unfold_job;

static void mg_unfold_patches(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_unfold_job *job = raw;
    const int64_t P = job->patch, row = job->channels * P * P;
    for (int64_t p = begin; p < end; p++) {
        const int64_t gy = p / job->grid_w, gx = p % job->grid_w;
        float *dst = job->patches + p * row;
        /* conv weight layout [O, C, P, P]: element (c, ky, kx) */
        for (int64_t c = 0; c < job->channels; c++)
            for (int64_t ky = 0; ky < P; ky++) {
                const uint8_t *src = job->image + c * job->strides[0] + (gy * P + ky) * job->strides[1] +
                                     gx * P * job->strides[2];
                for (int64_t kx = 0; kx < P; kx++) memcpy(dst++, src + kx * job->strides[2], 4);
            }
    }
}

mg_status mg_cpu_patch_embed(mg_context *ctx, const mg_tensor *image, const mg_tensor *weight,
                             const mg_tensor *bias, mg_tensor *out) {
    static const char op[] = "mg_patch_embed";
    char a[MG_DESCRIBE_SIZE], b[MG_DESCRIBE_SIZE];
    MG_TRY(mg_cpu_check_input(op, "image", image, 3));
    MG_TRY(mg_cpu_check_input(op, "weight", weight, 4));
    if (image->n_dims != 3)
        return mg_error(MG_ERR_SHAPE, "%s: image %s must be [channels, height, width]", op, mg_cpu_describe(image, a));
    if (image->dtype != MG_F32)
        return mg_error(MG_ERR_DTYPE, "%s: image %s must be f32", op, mg_cpu_describe(image, a));
    const int64_t C = image->shape[0], H = image->shape[1], W = image->shape[2];
    /* [out, channels, patch, patch], or the same flattened to [out,
     * channels*patch*patch] — the only form a block-quantized weight can take
     * when a kernel row (patch elements) is not whole blocks. */
    int64_t P = 0;
    if (weight->n_dims == 4 && weight->shape[2] == weight->shape[3]) {
        P = weight->shape[2];
    } else if (weight->n_dims == 2 && C > 0 && weight->shape[1] % C == 0) {
        int64_t area = weight->shape[1] / C;
        P = (int64_t)llround(sqrt((double)area));
        if (P * P != area) P = 0;
    }
    if (P == 0)
        return mg_error(MG_ERR_SHAPE,
                        "%s: weight %s must be [out, channels, patch, patch] or [out, channels*patch*patch] "
                        "for an image of %lld channels",
                        op, mg_cpu_describe(weight, a), (long long)C);
    const int64_t O = weight->shape[0];
    const int64_t weight_channels = weight->n_dims == 4 ? weight->shape[1] : C;
    if (weight_channels != C)
        return mg_error(MG_ERR_SHAPE, "%s: image %s has %lld channels but weight %s expects %lld", op,
                        mg_cpu_describe(image, a), (long long)C, mg_cpu_describe(weight, b),
                        (long long)weight_channels);
    if (H < P || W < P)
        return mg_error(MG_ERR_SHAPE, "%s: image %s is smaller than one %lldx%lld patch", op,
                        mg_cpu_describe(image, a), (long long)P, (long long)P);
    /* Like Conv2d(stride = kernel), a remainder narrower than a patch is dropped. */
    const int64_t grid_h = H / P, grid_w = W / P, n_patches = grid_h * grid_w, K = C * P * P;
    if (bias) MG_TRY(mg_cpu_check_vector(op, "bias", bias, O));
    int64_t out_shape[2] = {n_patches, O};
    MG_TRY(mg_cpu_check_output(op, out, 2, out_shape));

    /* The weight as a [O, C*P*P] matrix: a view when contiguous, else an f32 copy. */
    mg_tensor w2;
    mg_cpu_f32 wcopy = {NULL, NULL};
    int64_t w2_shape[2] = {O, K};
    if (mg_tensor_is_contiguous(weight)) {
        MG_TRY(mg_tensor_reshape(weight, 2, w2_shape, &w2));
    } else {
        MG_TRY(mg_cpu_f32_input(op, "weight", weight, true, &wcopy));
        MG_TRY(mg_tensor_init(&w2, (void *)wcopy.data, MG_F32, 2, w2_shape));
    }
    mg_cpu_f32 bv = {NULL, NULL};
    mg_status status = bias ? mg_cpu_f32_input(op, "bias", bias, true, &bv) : MG_OK;
    float *patches = NULL;
    if (status == MG_OK) {
        patches = mg_aligned_alloc((size_t)(n_patches * K) * sizeof(float));
        if (!patches) status = mg_error(MG_ERR_NO_MEMORY, "%s: no memory to unfold %lld patches", op, (long long)n_patches);
    }
    if (status == MG_OK) {
        mg_unfold_job job = {image->data, {image->strides[0], image->strides[1], image->strides[2]},
                             C, P, grid_w, patches};
        mg_cpu_parallel_for(ctx, n_patches, 4, mg_unfold_patches, &job);
        status = mg_cpu_linear_rows(ctx, patches, n_patches, K, &w2, bv.data, out->data);
        if (status != MG_OK) mg_error_prefix(status, "%s", op);
    }
    mg_aligned_free(patches);
    mg_cpu_f32_release(&bv);
    mg_cpu_f32_release(&wcopy);
    return status;
}

/* ------------------------------------------------------------ interpolate */

/* Per output index along one axis: taps input indices and their weights. */
typedef struct {
    int64_t *index; /* [out, taps] */
    float *weight;  /* [out, taps] */
    int taps;
} mg_axis_taps;

/* ATen area_pixel_compute_scale with no scale_factor given. */
static float mg_area_scale(int64_t in, int64_t out, bool align_corners) {
    if (align_corners) return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    return (float)in / (float)out;
}

/* ATen area_pixel_compute_source_index. */
static float mg_source_index(float scale, int64_t dst, bool align_corners, bool cubic) {
    if (align_corners) return scale * (float)dst;
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    return (!cubic && src < 0.0f) ? 0.0f : src;
}

/* ATen guard_index_and_lambda. */
static void mg_guard_index(float real, int64_t in, int64_t *index, float *lambda) {
    int64_t i = (int64_t)floorf(real);
    if (i > in - 1) i = in - 1;
    float l = real - (float)i;
    *index = i;
    *lambda = l < 0.0f ? 0.0f : (l > 1.0f ? 1.0f : l);
}

static int64_t mg_clamp_index(int64_t i, int64_t in) { return i < 0 ? 0 : (i > in - 1 ? in - 1 : i); }

static void mg_cubic_taps(int64_t in, int64_t out, mg_axis_taps *taps) {
    const float A = -0.75f; /* PyTorch's cubic convolution constant */
    const float scale = mg_area_scale(in, out, false);
    for (int64_t o = 0; o < out; o++) {
        int64_t index;
        float t;
        mg_guard_index(mg_source_index(scale, o, false, true), in, &index, &t);
        /* get_cubic_upsample_coefficients: cubic_convolution2 on the outer
         * taps, cubic_convolution1 on the inner ones. */
        float x1 = t, x2 = 1.0f - t;
        float *w = taps->weight + o * 4;
        w[0] = ((A * (x1 + 1.0f) - 5.0f * A) * (x1 + 1.0f) + 8.0f * A) * (x1 + 1.0f) - 4.0f * A;
        w[1] = ((A + 2.0f) * x1 - (A + 3.0f)) * x1 * x1 + 1.0f;
        w[2] = ((A + 2.0f) * x2 - (A + 3.0f)) * x2 * x2 + 1.0f;
        w[3] = ((A * (x2 + 1.0f) - 5.0f * A) * (x2 + 1.0f) + 8.0f * A) * (x2 + 1.0f) - 4.0f * A;
        for (int j = 0; j < 4; j++) taps->index[o * 4 + j] = mg_clamp_index(index - 1 + j, in);
    }
}

static void mg_linear_taps(int64_t in, int64_t out, bool align_corners, mg_axis_taps *taps) {
    const float scale = mg_area_scale(in, out, align_corners);
    for (int64_t o = 0; o < out; o++) {
        int64_t i0;
        float l1;
        if (in == out) {
            i0 = o;
            l1 = 0.0f;
        } else {
            mg_guard_index(mg_source_index(scale, o, align_corners, false), in, &i0, &l1);
        }
        taps->index[o * 2] = i0;
        taps->index[o * 2 + 1] = i0 + (i0 < in - 1 ? 1 : 0);
        taps->weight[o * 2] = 1.0f - l1;
        taps->weight[o * 2 + 1] = l1;
    }
}

typedef struct {
    const uint8_t *x;
    int64_t strides[3];
    int64_t out_h, out_w;
    mg_axis_taps ty, tx;
    float *out;
} mg_interp_job;

static void mg_interp_rows(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_interp_job *job = raw;
    const int taps = job->tx.taps;
    for (int64_t r = begin; r < end; r++) {
        const int64_t c = r / job->out_h, oy = r % job->out_h;
        const uint8_t *plane = job->x + c * job->strides[0];
        float *o = job->out + r * job->out_w;
        for (int64_t ox = 0; ox < job->out_w; ox++) {
            float result = 0.0f;
            for (int a = 0; a < taps; a++) {
                const uint8_t *line = plane + job->ty.index[oy * taps + a] * job->strides[1];
                float t = 0.0f;
                for (int b = 0; b < taps; b++) {
                    float v;
                    memcpy(&v, line + job->tx.index[ox * taps + b] * job->strides[2], 4);
                    float term = v * job->tx.weight[ox * taps + b];
                    t = b == 0 ? term : t + term;
                }
                float term = t * job->ty.weight[oy * taps + a];
                result = a == 0 ? term : result + term;
            }
            o[ox] = result;
        }
    }
}

static mg_status mg_interpolate(mg_context *ctx, const char *op, const mg_tensor *x, bool cubic,
                                bool align_corners, mg_tensor *out) {
    char a[MG_DESCRIBE_SIZE], b[MG_DESCRIBE_SIZE];
    MG_TRY(mg_cpu_check_input(op, "x", x, 3));
    if (x->n_dims != 3)
        return mg_error(MG_ERR_SHAPE, "%s: x %s must be [channels, height, width]", op, mg_cpu_describe(x, a));
    if (x->dtype != MG_F32) return mg_error(MG_ERR_DTYPE, "%s: x %s must be f32", op, mg_cpu_describe(x, a));
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: output tensor is NULL", op);
    if (out->n_dims != 3 || out->shape[0] != x->shape[0])
        return mg_error(MG_ERR_SHAPE, "%s: output %s must be [%lld, height, width] for x %s", op,
                        mg_cpu_describe(out, a), (long long)x->shape[0],
                        mg_cpu_describe(x, b));
    MG_TRY(mg_cpu_check_output(op, out, 3, out->shape));
    const int64_t H = x->shape[1], W = x->shape[2], OH = out->shape[1], OW = out->shape[2];
    const int taps = cubic ? 4 : 2;
    mg_interp_job job = {.x = x->data, .strides = {x->strides[0], x->strides[1], x->strides[2]},
                         .out_h = OH, .out_w = OW, .out = out->data};
    job.ty.taps = job.tx.taps = taps;
    const size_t n = (size_t)(OH + OW) * (size_t)taps;
    int64_t *index = mg_aligned_alloc(n * sizeof *index);
    float *weight = mg_aligned_alloc(n * sizeof *weight);
    if (!index || !weight) {
        mg_aligned_free(index);
        mg_aligned_free(weight);
        return mg_error(MG_ERR_NO_MEMORY, "%s: no memory for interpolation weights", op);
    }
    job.ty.index = index;
    job.ty.weight = weight;
    job.tx.index = index + OH * taps;
    job.tx.weight = weight + OH * taps;
    if (cubic) {
        mg_cubic_taps(H, OH, &job.ty);
        mg_cubic_taps(W, OW, &job.tx);
    } else {
        mg_linear_taps(H, OH, align_corners, &job.ty);
        mg_linear_taps(W, OW, align_corners, &job.tx);
    }
    const int64_t grain = 4096 / (OW * taps) + 1;
    mg_cpu_parallel_for(ctx, x->shape[0] * OH, grain, mg_interp_rows, &job);
    mg_aligned_free(index);
    mg_aligned_free(weight);
    return MG_OK;
}

mg_status mg_cpu_interpolate_bicubic(mg_context *ctx, const mg_tensor *x, mg_tensor *out) {
    return mg_interpolate(ctx, "mg_interpolate_bicubic", x, true, false, out);
}

mg_status mg_cpu_interpolate_bilinear(mg_context *ctx, const mg_tensor *x, bool align_corners,
                                      mg_tensor *out) {
    return mg_interpolate(ctx, "mg_interpolate_bilinear", x, false, align_corners, out);
}
