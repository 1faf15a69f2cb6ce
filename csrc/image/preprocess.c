/* Pixel conversions and the two models' preprocessing pipelines.
 *
 * Each step names the reference it reproduces (PIL convert, torchvision
 * ToTensor/Normalize, HF CLIPImageProcessor, MedPLIB's LazySupervisedDataset;
 * see docs architecture.md §1.6, §2.9). */
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Geometry of an image tensor [H, W] or [H, W, C]. */
typedef struct {
    uint8_t *data;
    int64_t rows, cols, channels;
    int64_t row_stride, col_stride, channel_stride;
} mg_pixels;

static mg_status mg_pixels_of(const mg_tensor *t, const char *role, mg_pixels *out) {
    char buf[64];
    if (!t || !t->data) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: NULL tensor", role);
    if (t->device != MG_DEVICE_CPU)
        return mg_error(MG_ERR_UNSUPPORTED, "%s: image kernels run on the CPU only", role);
    if (t->n_dims != 2 && t->n_dims != 3)
        return mg_error(MG_ERR_SHAPE, "%s %s: expected [H, W] or [H, W, C]", role,
                        mg_tensor_describe(t, buf, sizeof buf));
    int64_t channels = t->n_dims == 3 ? t->shape[2] : 1;
    if (channels < 1 || channels > 4)
        return mg_error(MG_ERR_SHAPE, "%s %s: expected 1 to 4 channels", role,
                        mg_tensor_describe(t, buf, sizeof buf));
    if (t->shape[0] < 1 || t->shape[1] < 1)
        return mg_error(MG_ERR_SHAPE, "%s %s: empty image", role, mg_tensor_describe(t, buf, sizeof buf));
    out->data = t->data;
    out->rows = t->shape[0];
    out->cols = t->shape[1];
    out->channels = channels;
    out->row_stride = t->strides[0];
    out->col_stride = t->strides[1];
    out->channel_stride = t->n_dims == 3 ? t->strides[2] : 0;
    return MG_OK;
}

static inline const uint8_t *mg_pixel_at(const mg_pixels *p, int64_t y, int64_t x, int64_t c) {
    return p->data + y * p->row_stride + x * p->col_stride + c * p->channel_stride;
}

mg_status mg_image_to_rgb8(const mg_tensor *src, mg_tensor *dst) {
    char a[64], b[64];
    mg_pixels in = {0}, out = {0};
    MG_TRY(mg_pixels_of(src, "to_rgb8 source", &in));
    MG_TRY(mg_pixels_of(dst, "to_rgb8 destination", &out));
    if (src->dtype != MG_U8 && src->dtype != MG_U16)
        return mg_error(MG_ERR_DTYPE, "to_rgb8: source %s: expected u8 or u16 (window other types first)",
                        mg_tensor_describe(src, a, sizeof a));
    if (dst->dtype != MG_U8 || out.channels != 3 || dst->n_dims != 3 || out.rows != in.rows ||
        out.cols != in.cols)
        return mg_error(MG_ERR_SHAPE, "to_rgb8: destination %s: expected u8[%lld, %lld, 3]",
                        mg_tensor_describe(dst, b, sizeof b), (long long)in.rows, (long long)in.cols);
    /* Gray (+alpha) replicates channel 0; RGB(A) copies 0..2: alpha dropped. */
    int64_t map[3] = {0, 0, 0};
    if (in.channels >= 3) map[1] = 1, map[2] = 2;
    /* PIL opens 16-bit one-channel PNG/PGM as mode I;16, whose conversion to
     * L saturates; 16-bit colour or alpha PNGs are unpacked by PIL to 8-bit
     * RGB/RGBA keeping the most significant byte. */
    bool saturate16 = in.channels == 1;
    for (int64_t y = 0; y < in.rows; y++) {
        for (int64_t x = 0; x < in.cols; x++) {
            for (int c = 0; c < 3; c++) {
                const uint8_t *p = mg_pixel_at(&in, y, x, map[c]);
                uint8_t v;
                if (src->dtype == MG_U8) {
                    v = *p;
                } else {
                    uint16_t w;
                    memcpy(&w, p, sizeof w);
                    v = saturate16 ? (uint8_t)(w > 255 ? 255 : w) : (uint8_t)(w >> 8);
                }
                *(uint8_t *)mg_pixel_at(&out, y, x, c) = v;
            }
        }
    }
    return MG_OK;
}

static bool mg_read_scalar(mg_dtype dtype, const uint8_t *p, double *out) {
    switch (dtype) {
    case MG_U8: *out = *p; return true;
    case MG_I8: *out = *(const int8_t *)p; return true;
    case MG_U16: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case MG_I16: { int16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case MG_I32: { int32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case MG_F32: { float v; memcpy(&v, p, 4); *out = v; return true; }
    case MG_F64: { double v; memcpy(&v, p, 8); *out = v; return true; }
    default: return false;
    }
}

mg_status mg_image_window(const mg_tensor *src, double slope, double intercept, double lower,
                          double upper, mg_tensor *dst) {
    char a[64], b[64];
    mg_pixels in = {0}, out = {0};
    MG_TRY(mg_pixels_of(src, "window source", &in));
    MG_TRY(mg_pixels_of(dst, "window destination", &out));
    double probe;
    if (!mg_read_scalar(src->dtype, in.data, &probe))
        return mg_error(MG_ERR_DTYPE, "window: source %s: expected u8/i8/u16/i16/i32/f32/f64",
                        mg_tensor_describe(src, a, sizeof a));
    if (dst->dtype != MG_U8 || out.rows != in.rows || out.cols != in.cols || out.channels != in.channels)
        return mg_error(MG_ERR_SHAPE, "window: destination %s must be u8 shaped like the source %s",
                        mg_tensor_describe(dst, b, sizeof b), mg_tensor_describe(src, a, sizeof a));
    if (!isfinite(slope) || !isfinite(intercept) || !isfinite(lower) || !isfinite(upper) ||
        !(upper > lower))
        return mg_error(MG_ERR_INVALID_ARGUMENT,
                        "window: need finite slope/intercept and lower < upper (got slope %g, "
                        "intercept %g, lower %g, upper %g)",
                        slope, intercept, lower, upper);
    double span = upper - lower;
    for (int64_t y = 0; y < in.rows; y++) {
        for (int64_t x = 0; x < in.cols; x++) {
            for (int64_t c = 0; c < in.channels; c++) {
                double v = 0.0;
                mg_read_scalar(src->dtype, mg_pixel_at(&in, y, x, c), &v);
                double t = ((v * slope + intercept) - lower) / span;
                /* NaN maps to 0: a defined value rather than UB in the cast. */
                uint8_t q = !(t > 0.0) ? 0 : t >= 1.0 ? 255 : (uint8_t)floor(t * 255.0 + 0.5);
                *(uint8_t *)mg_pixel_at(&out, y, x, c) = q;
            }
        }
    }
    return MG_OK;
}

mg_status mg_image_center_crop(const mg_tensor *src, int64_t height, int64_t width, mg_tensor *view) {
    char a[64];
    mg_pixels in = {0};
    MG_TRY(mg_pixels_of(src, "center_crop source", &in));
    if (height < 1 || width < 1 || height > in.rows || width > in.cols)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "center_crop: %lldx%lld (HxW) does not fit in %s",
                        (long long)height, (long long)width, mg_tensor_describe(src, a, sizeof a));
    int64_t top = (in.rows - height) / 2, left = (in.cols - width) / 2;
    mg_tensor rows;
    MG_TRY(mg_tensor_slice(src, 0, top, top + height, &rows));
    return mg_tensor_slice(&rows, 1, left, left + width, view);
}

mg_status mg_image_pad(const mg_tensor *src, const double *value, bool centered, mg_tensor *dst) {
    char a[64], b[64];
    mg_pixels in = {0}, out = {0};
    MG_TRY(mg_pixels_of(src, "pad source", &in));
    MG_TRY(mg_pixels_of(dst, "pad destination", &out));
    if (!value) return mg_error(MG_ERR_INVALID_ARGUMENT, "pad: NULL fill value");
    if (src->dtype != dst->dtype || (src->dtype != MG_U8 && src->dtype != MG_F32) ||
        in.channels != out.channels || out.rows < in.rows || out.cols < in.cols)
        return mg_error(MG_ERR_SHAPE,
                        "pad: %s into %s: need the same dtype (u8 or f32) and channels, and a "
                        "destination at least as large",
                        mg_tensor_describe(src, a, sizeof a), mg_tensor_describe(dst, b, sizeof b));
    int64_t top = centered ? (out.rows - in.rows) / 2 : 0;
    int64_t left = centered ? (out.cols - in.cols) / 2 : 0;
    uint8_t fill8[4];
    float fillf[4];
    for (int64_t c = 0; c < in.channels; c++) {
        double v = value[c];
        if (src->dtype == MG_U8 && !(v >= 0.0 && v <= 255.0 && v == floor(v)))
            return mg_error(MG_ERR_INVALID_ARGUMENT, "pad: fill value %g for channel %lld is not a u8", v,
                            (long long)c);
        fill8[c] = (uint8_t)(src->dtype == MG_U8 ? v : 0);
        fillf[c] = (float)v;
    }
    for (int64_t y = 0; y < out.rows; y++) {
        bool row_inside = y >= top && y < top + in.rows;
        for (int64_t x = 0; x < out.cols; x++) {
            bool inside = row_inside && x >= left && x < left + in.cols;
            for (int64_t c = 0; c < out.channels; c++) {
                uint8_t *o = (uint8_t *)mg_pixel_at(&out, y, x, c);
                if (src->dtype == MG_U8)
                    *o = inside ? *mg_pixel_at(&in, y - top, x - left, c) : fill8[c];
                else if (inside)
                    memcpy(o, mg_pixel_at(&in, y - top, x - left, c), 4);
                else
                    memcpy(o, &fillf[c], 4);
            }
        }
    }
    return MG_OK;
}

mg_status mg_image_normalize(const mg_tensor *src, float divisor, const float *mean, const float *std,
                             mg_tensor *dst) {
    char a[64], b[64];
    mg_pixels in = {0};
    MG_TRY(mg_pixels_of(src, "normalize source", &in));
    if (!mean || !std) return mg_error(MG_ERR_INVALID_ARGUMENT, "normalize: NULL mean or std");
    if (src->dtype != MG_U8 && src->dtype != MG_F32)
        return mg_error(MG_ERR_DTYPE, "normalize: source %s: expected u8 or f32",
                        mg_tensor_describe(src, a, sizeof a));
    if (!dst || !dst->data || dst->dtype != MG_F32 || dst->n_dims != 3 || dst->shape[0] != in.channels ||
        dst->shape[1] != in.rows || dst->shape[2] != in.cols)
        return mg_error(MG_ERR_SHAPE, "normalize: destination %s: expected f32[%lld, %lld, %lld] for %s",
                        dst ? mg_tensor_describe(dst, b, sizeof b) : "NULL", (long long)in.channels,
                        (long long)in.rows, (long long)in.cols, mg_tensor_describe(src, a, sizeof a));
    if (!(divisor != 0.0f) || !isfinite(divisor))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "normalize: divisor %g", (double)divisor);
    for (int64_t c = 0; c < in.channels; c++)
        if (!(std[c] != 0.0f) || !isfinite(std[c]) || !isfinite(mean[c]))
            return mg_error(MG_ERR_INVALID_ARGUMENT, "normalize: channel %lld has mean %g, std %g",
                            (long long)c, (double)mean[c], (double)std[c]);
    for (int64_t c = 0; c < in.channels; c++) {
        float m = mean[c], s = std[c];
        for (int64_t y = 0; y < in.rows; y++) {
            uint8_t *out_row = (uint8_t *)dst->data + c * dst->strides[0] + y * dst->strides[1];
            for (int64_t x = 0; x < in.cols; x++) {
                const uint8_t *p = mg_pixel_at(&in, y, x, c);
                float v;
                if (src->dtype == MG_U8) v = (float)*p;
                else memcpy(&v, p, 4);
                /* Two float32 roundings, as torch's div then sub_/div_. */
                float r = (v / divisor - m) / s;
                memcpy(out_row + x * dst->strides[2], &r, 4);
            }
        }
    }
    return MG_OK;
}

/* ------------------------------------------------------------ pipelines */

/* An RGB u8 view of any accepted input: the input itself when it already is
 * u8 [H, W, 3], else a converted copy in *owned (free with mg_aligned_free). */
static mg_status mg_rgb8_input(const mg_tensor *image, mg_tensor *rgb, void **owned) {
    *owned = NULL;
    mg_pixels in = {0};
    MG_TRY(mg_pixels_of(image, "preprocess input", &in));
    if (image->dtype == MG_U8 && image->n_dims == 3 && in.channels == 3) {
        *rgb = *image;
        return MG_OK;
    }
    size_t bytes;
    if (!mg_mul_size((size_t)in.rows, (size_t)in.cols, &bytes) || !mg_mul_size(bytes, 3, &bytes))
        return mg_error(MG_ERR_NO_MEMORY, "preprocess: %lldx%lld image is too large",
                        (long long)in.rows, (long long)in.cols);
    *owned = mg_aligned_alloc(bytes);
    if (!*owned) return mg_error(MG_ERR_NO_MEMORY, "preprocess: cannot allocate %zu bytes", bytes);
    int64_t shape[3] = {in.rows, in.cols, 3};
    mg_status status = mg_tensor_init(rgb, *owned, MG_U8, 3, shape);
    if (status == MG_OK) status = mg_image_to_rgb8(image, rgb);
    if (status != MG_OK) {
        mg_aligned_free(*owned);
        *owned = NULL;
    }
    return status;
}

static mg_status mg_check_output(const mg_tensor *out, int size, const char *pipeline) {
    char buf[64];
    if (size < 1 || size > 65535)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: size %d out of range 1..65535", pipeline, size);
    if (!out || !out->data || out->dtype != MG_F32 || out->n_dims != 3 || out->shape[0] != 3 ||
        out->shape[1] != size || out->shape[2] != size)
        return mg_error(MG_ERR_SHAPE, "%s: output %s: expected f32[3, %d, %d]", pipeline,
                        out ? mg_tensor_describe(out, buf, sizeof buf) : "NULL", size, size);
    return MG_OK;
}

/* ResizeLongestSide.get_preprocess_shape (segment_anything), also used by
 * MedPLIB's CLIP branch: s = target / max(H, W); side = int(side * s + 0.5). */
static void mg_longest_side_shape(int64_t height, int64_t width, int target, int *new_height,
                                  int *new_width) {
    double scale = target * 1.0 / (double)(height > width ? height : width);
    *new_height = (int)((double)height * scale + 0.5);
    *new_width = (int)((double)width * scale + 0.5);
}

/* Resize rgb to new_h x new_w (u8, PIL filter), pad centered into a
 * size x size canvas (u8 fill, or f32 fill after normalisation) and
 * normalise into out. */
static mg_status mg_resize_pad_normalize(mg_context *ctx, const mg_tensor *rgb, int size, int new_h,
                                         int new_w, mg_resample filter, const double *u8_fill,
                                         float f32_fill, float divisor, const float *mean,
                                         const float *std, mg_tensor *out,
                                         mg_image_geometry *geometry) {
    size_t bytes = (size_t)size * (size_t)size * 3;
    uint8_t *buffer = mg_aligned_alloc(bytes);
    if (!buffer) return mg_error(MG_ERR_NO_MEMORY, "preprocess: cannot allocate %zu bytes", bytes);
    int64_t resized_shape[3] = {new_h, new_w, 3};
    mg_tensor resized;
    mg_status status = mg_tensor_init(&resized, buffer, MG_U8, 3, resized_shape);
    if (status == MG_OK) status = mg_image_resize(ctx, rgb, filter, &resized);
    int top = (size - new_h) / 2, left = (size - new_w) / 2;
    if (status == MG_OK && u8_fill) {
        /* Pad in 8-bit before normalising (MedPLIB CLIP branch). */
        uint8_t *canvas = mg_aligned_alloc(bytes);
        if (!canvas) {
            status = mg_error(MG_ERR_NO_MEMORY, "preprocess: cannot allocate %zu bytes", bytes);
        } else {
            int64_t canvas_shape[3] = {size, size, 3};
            mg_tensor padded;
            status = mg_tensor_init(&padded, canvas, MG_U8, 3, canvas_shape);
            if (status == MG_OK) status = mg_image_pad(&resized, u8_fill, true, &padded);
            if (status == MG_OK) status = mg_image_normalize(&padded, divisor, mean, std, out);
            mg_aligned_free(canvas);
        }
    } else if (status == MG_OK) {
        /* Normalise, then pad with a value in the normalised space (SAM).
         * The caller checked that out is contiguous. */
        if (new_h != size || new_w != size)
            for (int64_t i = 0; i < 3 * (int64_t)size * size; i++) ((float *)out->data)[i] = f32_fill;
        mg_tensor view, rows;
        status = mg_tensor_slice(out, 1, top, top + new_h, &rows);
        if (status == MG_OK) status = mg_tensor_slice(&rows, 2, left, left + new_w, &view);
        if (status == MG_OK) status = mg_image_normalize(&resized, divisor, mean, std, &view);
    }
    mg_aligned_free(buffer);
    if (status == MG_OK && geometry) {
        geometry->original_height = (int)rgb->shape[0];
        geometry->original_width = (int)rgb->shape[1];
        geometry->resized_height = new_h;
        geometry->resized_width = new_w;
        geometry->scale_y = (double)new_h / (double)rgb->shape[0];
        geometry->scale_x = (double)new_w / (double)rgb->shape[1];
        geometry->pad_top = top;
        geometry->pad_left = left;
        geometry->output_height = size;
        geometry->output_width = size;
    }
    return status;
}

/* The SAM pipeline fills its output as one block. */
static mg_status mg_check_contiguous(const mg_tensor *out, const char *pipeline) {
    if (!mg_tensor_is_contiguous(out))
        return mg_error(MG_ERR_SHAPE, "%s: output must be contiguous", pipeline);
    return MG_OK;
}

mg_status mg_image_preprocess_qwen(mg_context *ctx, const mg_tensor *image, int size, mg_tensor *out,
                                   mg_image_geometry *geometry) {
    MG_TRY(mg_check_output(out, size, "preprocess_qwen"));
    mg_tensor rgb;
    void *owned;
    MG_TRY(mg_rgb8_input(image, &rgb, &owned));
    const float mean[3] = MG_IMAGE_CLIP_MEAN, std[3] = MG_IMAGE_CLIP_STD;
    mg_status status = mg_resize_pad_normalize(ctx, &rgb, size, size, size, MG_RESAMPLE_BICUBIC, NULL,
                                               0.0f, 255.0f, mean, std, out, geometry);
    mg_aligned_free(owned);
    return status;
}

mg_status mg_image_preprocess_clip_pad(mg_context *ctx, const mg_tensor *image, int size,
                                       mg_tensor *out, mg_image_geometry *geometry) {
    MG_TRY(mg_check_output(out, size, "preprocess_clip_pad"));
    mg_tensor rgb;
    void *owned;
    MG_TRY(mg_rgb8_input(image, &rgb, &owned));
    int new_h, new_w;
    mg_longest_side_shape(rgb.shape[0], rgb.shape[1], size, &new_h, &new_w);
    mg_status status = MG_OK;
    if (new_h < 1 || new_w < 1)
        status = mg_error(MG_ERR_SHAPE, "preprocess_clip_pad: %lldx%lld image resizes to %dx%d",
                          (long long)rgb.shape[0], (long long)rgb.shape[1], new_h, new_w);
    /* trunc(255 * CLIP mean), the padding colour MedPLIB uses. */
    const double fill[3] = {122, 116, 104};
    const float mean[3] = MG_IMAGE_CLIP_MEAN, std[3] = MG_IMAGE_CLIP_STD;
    if (status == MG_OK)
        status = mg_resize_pad_normalize(ctx, &rgb, size, new_h, new_w, MG_RESAMPLE_BILINEAR, fill, 0.0f,
                                         255.0f, mean, std, out, geometry);
    mg_aligned_free(owned);
    return status;
}

mg_status mg_image_preprocess_sam(mg_context *ctx, const mg_tensor *image, int size, mg_tensor *out,
                                  mg_image_geometry *geometry) {
    MG_TRY(mg_check_output(out, size, "preprocess_sam"));
    MG_TRY(mg_check_contiguous(out, "preprocess_sam"));
    mg_tensor rgb;
    void *owned;
    MG_TRY(mg_rgb8_input(image, &rgb, &owned));
    int new_h, new_w;
    mg_longest_side_shape(rgb.shape[0], rgb.shape[1], size, &new_h, &new_w);
    mg_status status = MG_OK;
    if (new_h < 1 || new_w < 1)
        status = mg_error(MG_ERR_SHAPE, "preprocess_sam: %lldx%lld image resizes to %dx%d",
                          (long long)rgb.shape[0], (long long)rgb.shape[1], new_h, new_w);
    const float mean[3] = MG_IMAGE_IMAGENET_MEAN_255, std[3] = MG_IMAGE_IMAGENET_STD_255;
    if (status == MG_OK)
        status = mg_resize_pad_normalize(ctx, &rgb, size, new_h, new_w, MG_RESAMPLE_BILINEAR, NULL, 0.0f,
                                         1.0f, mean, std, out, geometry);
    mg_aligned_free(owned);
    return status;
}
