/* Resizing that reproduces PIL's Image.resize (Pillow libImaging/Resample.c)
 * bit for bit, because BiRD (Qwen-VL) and MedPLIB were trained and
 * evaluated on PIL-resized pixels.
 *
 * The facts being matched:
 *  - a separable filter evaluated at (x + xmin - center + 0.5) / filterscale,
 *    center = (out + 0.5) * in / out; on downscale the support widens by
 *    filterscale = in / out (antialiasing), never narrower than the filter's;
 *  - the tap window [xmin, xmax) rounds center -/+ support with (int)(v + 0.5)
 *    and is clamped to the image; weights are normalised to sum 1;
 *  - 8-bit images use weights in fixed point with 22 fractional bits
 *    (PRECISION_BITS = 32 - 8 - 2), rounded away from zero, an accumulator
 *    starting at one half, and a clip to 0..255 after each pass;
 *  - the horizontal pass runs first, only over the rows the vertical pass
 *    will read, unless Pillow >= 13 picks vertical first (see below); a
 *    pass whose size does not change is skipped;
 *  - float images accumulate in double and store float after each pass. */
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MG_PRECISION_BITS (32 - 8 - 2)

static double mg_bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* Keys' cubic convolution with a = -0.5 (PIL's choice; torch uses -0.75). */
static double mg_bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Weights of one axis: output i reads input [bounds[2i], bounds[2i] +
 * bounds[2i+1]) with weights[i * ksize ...] (and fixed[] for 8-bit). */
typedef struct {
    int out_size;
    int ksize;
    int *bounds;
    double *weights;
    int32_t *fixed;
} mg_axis_coeffs;

static void mg_axis_coeffs_free(mg_axis_coeffs *c) {
    free(c->bounds);
    free(c->weights);
    free(c->fixed);
    memset(c, 0, sizeof *c);
}

static mg_status mg_axis_coeffs_compute(int in_size, int out_size, mg_resample filter,
                                        mg_axis_coeffs *c) {
    memset(c, 0, sizeof *c);
    double (*fn)(double) = filter == MG_RESAMPLE_BICUBIC ? mg_bicubic_filter : mg_bilinear_filter;
    double filter_support = filter == MG_RESAMPLE_BICUBIC ? 2.0 : 1.0;
    /* PIL's box is float; (float)in_size is exact for in_size <= 2^24. */
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = filter_support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    size_t n = (size_t)out_size * (size_t)ksize;
    c->out_size = out_size;
    c->ksize = ksize;
    c->bounds = malloc((size_t)out_size * 2 * sizeof(int));
    c->weights = malloc(n * sizeof(double));
    c->fixed = malloc(n * sizeof(int32_t));
    if (!c->bounds || !c->weights || !c->fixed) {
        mg_axis_coeffs_free(c);
        return mg_error(MG_ERR_NO_MEMORY, "resize: cannot allocate %zu filter weights", n);
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = &c->weights[(size_t)xx * ksize];
        int x = 0;
        for (; x < xmax; x++) {
            double w = fn((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        c->bounds[xx * 2 + 0] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < n; i++) {
        double w = c->weights[i];
        c->fixed[i] = w < 0 ? (int32_t)(-0.5 + w * (1 << MG_PRECISION_BITS))
                            : (int32_t)(0.5 + w * (1 << MG_PRECISION_BITS));
    }
    return MG_OK;
}

static inline uint8_t mg_clip8(int32_t v) {
    /* Arithmetic shift = floor division, as PIL's lookup-table clip. */
    int32_t q = v >> MG_PRECISION_BITS;
    return q < 0 ? 0 : q > 255 ? 255 : (uint8_t)q;
}

/* A 2-D plane of pixels with C interleaved channels and byte strides. */
typedef struct {
    uint8_t *data;
    int64_t rows, cols, channels;
    int64_t row_stride, col_stride, channel_stride;
} mg_plane;

typedef struct {
    const mg_plane *src;
    const mg_plane *dst;
    const mg_axis_coeffs *coeffs;
    int src_row_offset; /* horizontal pass: first source row */
    bool is_float;
    int64_t rows_per_task;
} mg_pass;

static void mg_horizontal_rows(void *raw, int64_t task, int thread_index) {
    (void)thread_index;
    const mg_pass *p = raw;
    const mg_plane *s = p->src, *d = p->dst;
    int64_t y0 = task * p->rows_per_task;
    int64_t y1 = y0 + p->rows_per_task < d->rows ? y0 + p->rows_per_task : d->rows;
    int ksize = p->coeffs->ksize;
    for (int64_t yy = y0; yy < y1; yy++) {
        const uint8_t *in_row = s->data + (yy + p->src_row_offset) * s->row_stride;
        uint8_t *out_row = d->data + yy * d->row_stride;
        for (int64_t xx = 0; xx < d->cols; xx++) {
            int xmin = p->coeffs->bounds[xx * 2 + 0];
            int count = p->coeffs->bounds[xx * 2 + 1];
            for (int64_t c = 0; c < d->channels; c++) {
                const uint8_t *in = in_row + xmin * s->col_stride + c * s->channel_stride;
                uint8_t *out = out_row + xx * d->col_stride + c * d->channel_stride;
                if (p->is_float) {
                    const double *k = &p->coeffs->weights[xx * ksize];
                    double ss = 0.0;
                    for (int x = 0; x < count; x++) ss += *(const float *)(in + x * s->col_stride) * k[x];
                    *(float *)out = (float)ss;
                } else {
                    const int32_t *k = &p->coeffs->fixed[xx * ksize];
                    int32_t ss = 1 << (MG_PRECISION_BITS - 1);
                    for (int x = 0; x < count; x++) ss += in[x * s->col_stride] * k[x];
                    *out = mg_clip8(ss);
                }
            }
        }
    }
}

static void mg_vertical_rows(void *raw, int64_t task, int thread_index) {
    (void)thread_index;
    const mg_pass *p = raw;
    const mg_plane *s = p->src, *d = p->dst;
    int64_t y0 = task * p->rows_per_task;
    int64_t y1 = y0 + p->rows_per_task < d->rows ? y0 + p->rows_per_task : d->rows;
    int ksize = p->coeffs->ksize;
    for (int64_t yy = y0; yy < y1; yy++) {
        int ymin = p->coeffs->bounds[yy * 2 + 0];
        int count = p->coeffs->bounds[yy * 2 + 1];
        const uint8_t *in_top = s->data + ymin * s->row_stride;
        uint8_t *out_row = d->data + yy * d->row_stride;
        for (int64_t xx = 0; xx < d->cols; xx++) {
            for (int64_t c = 0; c < d->channels; c++) {
                const uint8_t *in = in_top + xx * s->col_stride + c * s->channel_stride;
                uint8_t *out = out_row + xx * d->col_stride + c * d->channel_stride;
                if (p->is_float) {
                    const double *k = &p->coeffs->weights[yy * ksize];
                    double ss = 0.0;
                    for (int y = 0; y < count; y++) ss += *(const float *)(in + y * s->row_stride) * k[y];
                    *(float *)out = (float)ss;
                } else {
                    const int32_t *k = &p->coeffs->fixed[yy * ksize];
                    int32_t ss = 1 << (MG_PRECISION_BITS - 1);
                    for (int y = 0; y < count; y++) ss += in[y * s->row_stride] * k[y];
                    *out = mg_clip8(ss);
                }
            }
        }
    }
}

static void mg_copy_rows(void *raw, int64_t task, int thread_index) {
    (void)thread_index;
    const mg_pass *p = raw;
    const mg_plane *s = p->src, *d = p->dst;
    size_t elem = p->is_float ? 4 : 1;
    int64_t y0 = task * p->rows_per_task;
    int64_t y1 = y0 + p->rows_per_task < d->rows ? y0 + p->rows_per_task : d->rows;
    for (int64_t y = y0; y < y1; y++)
        for (int64_t x = 0; x < d->cols; x++)
            for (int64_t c = 0; c < d->channels; c++)
                memcpy(d->data + y * d->row_stride + x * d->col_stride + c * d->channel_stride,
                       s->data + y * s->row_stride + x * s->col_stride + c * s->channel_stride, elem);
}

static void mg_run_rows(mg_context *ctx, mg_pass *pass, mg_task_fn fn) {
    int64_t rows = pass->dst->rows;
    mg_threadpool *pool = ctx ? mg_context_threadpool(ctx) : NULL;
    int n_threads = pool ? mg_threadpool_size(pool) : 1;
    if (n_threads <= 1 || rows < 16) {
        pass->rows_per_task = rows;
        fn(pass, 0, 0);
        return;
    }
    /* A few tasks per thread so uneven rows balance; at least 4 rows each. */
    int64_t per = (rows + 4 * n_threads - 1) / (4 * n_threads);
    pass->rows_per_task = per < 4 ? 4 : per;
    mg_threadpool_run(pool, (rows + pass->rows_per_task - 1) / pass->rows_per_task, fn, pass);
}

/* Describes an image tensor ([H, W] or [H, W, C]) as a plane. */
static mg_status mg_image_plane(const mg_tensor *t, const char *role, mg_plane *out) {
    char buf[64];
    if (!t || !t->data) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s image: NULL", role);
    if (t->device != MG_DEVICE_CPU)
        return mg_error(MG_ERR_UNSUPPORTED, "%s image: image kernels run on the CPU only", role);
    if (t->n_dims != 2 && t->n_dims != 3)
        return mg_error(MG_ERR_SHAPE, "%s image %s: expected [H, W] or [H, W, C]", role,
                        mg_tensor_describe(t, buf, sizeof buf));
    int64_t channels = t->n_dims == 3 ? t->shape[2] : 1;
    if (channels < 1 || channels > 4)
        return mg_error(MG_ERR_SHAPE, "%s image %s: expected 1 to 4 channels", role,
                        mg_tensor_describe(t, buf, sizeof buf));
    if (t->shape[0] < 1 || t->shape[1] < 1 || t->shape[0] > INT32_MAX / 2 || t->shape[1] > INT32_MAX / 2)
        return mg_error(MG_ERR_SHAPE, "%s image %s: size out of range", role,
                        mg_tensor_describe(t, buf, sizeof buf));
    out->data = t->data;
    out->rows = t->shape[0];
    out->cols = t->shape[1];
    out->channels = channels;
    out->row_stride = t->strides[0];
    out->col_stride = t->strides[1];
    out->channel_stride = t->n_dims == 3 ? t->strides[2] : 0;
    return MG_OK;
}

mg_status mg_image_resize(mg_context *ctx, const mg_tensor *src, mg_resample filter, mg_tensor *dst) {
    char a[64], b[64];
    mg_plane in = {0}, out = {0};
    MG_TRY(mg_image_plane(src, "resize source", &in));
    MG_TRY(mg_image_plane(dst, "resize destination", &out));
    if (filter != MG_RESAMPLE_BILINEAR && filter != MG_RESAMPLE_BICUBIC)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "resize: filter %d: expected bilinear (2) or bicubic (3)",
                        (int)filter);
    if (src->dtype != dst->dtype || (src->dtype != MG_U8 && src->dtype != MG_F32))
        return mg_error(MG_ERR_DTYPE, "resize: %s -> %s: both must be u8 or both f32",
                        mg_tensor_describe(src, a, sizeof a), mg_tensor_describe(dst, b, sizeof b));
    if (in.channels != out.channels)
        return mg_error(MG_ERR_SHAPE, "resize: %s -> %s: channel counts differ",
                        mg_tensor_describe(src, a, sizeof a), mg_tensor_describe(dst, b, sizeof b));
    bool is_float = src->dtype == MG_F32;
    size_t elem = is_float ? 4 : 1;
    int in_w = (int)in.cols, in_h = (int)in.rows, out_w = (int)out.cols, out_h = (int)out.rows;
    bool need_horizontal = out_w != in_w;
    bool need_vertical = out_h != in_h;
    /* Pillow >= 13 runs the vertical pass first when the height shrinks by
     * more than twice as many pixels as the width (Resample.c,
     * ImagingResampleInner); older Pillow always went horizontal first. The
     * order changes the 8-bit rounding in between, so it is matched. */
    bool horizontal_first = !((in_h - out_h) > 0 && (in_h - out_h) > (in_w - out_w) * 2);

    mg_axis_coeffs vert = {0}, horiz = {0};
    mg_status status = MG_OK;
    if (need_vertical) status = mg_axis_coeffs_compute(in_h, out_h, filter, &vert);
    if (status == MG_OK && need_horizontal) status = mg_axis_coeffs_compute(in_w, out_w, filter, &horiz);
    /* Horizontal first reads only the source rows the vertical pass uses. */
    int first_row = 0, last_row = in_h;
    if (status == MG_OK && need_vertical && horizontal_first) {
        first_row = vert.bounds[0];
        last_row = vert.bounds[out_h * 2 - 2] + vert.bounds[out_h * 2 - 1];
        for (int i = 0; i < out_h; i++) vert.bounds[i * 2] -= first_row;
    }
    uint8_t *temp_data = NULL;
    mg_plane temp = {0};
    if (status == MG_OK && need_horizontal && need_vertical) {
        temp.rows = horizontal_first ? last_row - first_row : out_h;
        temp.cols = horizontal_first ? out_w : in_w;
        temp.channels = in.channels;
        temp.channel_stride = (int64_t)elem;
        temp.col_stride = temp.channel_stride * temp.channels;
        temp.row_stride = temp.col_stride * temp.cols;
        temp_data = mg_aligned_alloc((size_t)(temp.row_stride * temp.rows));
        if (!temp_data)
            status = mg_error(MG_ERR_NO_MEMORY, "resize: cannot allocate a %lldx%lld intermediate",
                              (long long)temp.cols, (long long)temp.rows);
        temp.data = temp_data;
    }
    if (status == MG_OK) {
        mg_pass h_pass = {.coeffs = &horiz, .is_float = is_float};
        mg_pass v_pass = {.coeffs = &vert, .is_float = is_float};
        if (need_horizontal && need_vertical && horizontal_first) {
            h_pass.src = &in, h_pass.dst = &temp, h_pass.src_row_offset = first_row;
            mg_run_rows(ctx, &h_pass, mg_horizontal_rows);
            v_pass.src = &temp, v_pass.dst = &out;
            mg_run_rows(ctx, &v_pass, mg_vertical_rows);
        } else if (need_horizontal && need_vertical) {
            v_pass.src = &in, v_pass.dst = &temp;
            mg_run_rows(ctx, &v_pass, mg_vertical_rows);
            h_pass.src = &temp, h_pass.dst = &out;
            mg_run_rows(ctx, &h_pass, mg_horizontal_rows);
        } else if (need_horizontal) {
            h_pass.src = &in, h_pass.dst = &out;
            mg_run_rows(ctx, &h_pass, mg_horizontal_rows);
        } else if (need_vertical) {
            v_pass.src = &in, v_pass.dst = &out;
            mg_run_rows(ctx, &v_pass, mg_vertical_rows);
        } else if (in.data != out.data) {
            mg_pass copy = {.src = &in, .dst = &out, .is_float = is_float};
            mg_run_rows(ctx, &copy, mg_copy_rows);
        }
    }
    mg_aligned_free(temp_data);
    mg_axis_coeffs_free(&vert);
    mg_axis_coeffs_free(&horiz);
    return status;
}
