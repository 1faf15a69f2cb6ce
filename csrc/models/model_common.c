/* Weight lookup, conversion and scratch helpers shared by the model files. */
#include "models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mg_owned_free(mg_owned *owned) {
    if (!owned) return;
    for (int64_t i = 0; i < owned->n_blocks; i++) mg_aligned_free(owned->blocks[i]);
    free(owned->blocks);
    memset(owned, 0, sizeof *owned);
}

mg_status mg_owned_tensor(mg_owned *owned, mg_tensor *t, mg_dtype dtype, int n_dims,
                          const int64_t *shape) {
    MG_TRY(mg_tensor_init(t, NULL, dtype, n_dims, shape));
    if (owned->n_blocks == owned->cap_blocks) {
        int64_t next = owned->cap_blocks ? owned->cap_blocks * 2 : 64;
        void **grown = realloc(owned->blocks, (size_t)next * sizeof *grown);
        if (!grown) return mg_error(MG_ERR_NO_MEMORY, "model: out of memory");
        owned->blocks = grown;
        owned->cap_blocks = next;
    }
    t->data = mg_aligned_alloc(mg_tensor_nbytes(t));
    if (!t->data) return mg_error(MG_ERR_NO_MEMORY, "model: cannot allocate %zu bytes", mg_tensor_nbytes(t));
    owned->blocks[owned->n_blocks++] = t->data;
    return MG_OK;
}

mg_status mg_name(char *buf, size_t size, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(buf, size, fmt, args);
    va_end(args);
    if (n < 0 || (size_t)n >= size)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "tensor name longer than %zu bytes (prefix too long?)", size - 1);
    return MG_OK;
}

static void mg_describe_shape(char *buf, size_t size, int n_dims, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < n_dims && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

/* ---------------------------------------------------------- load tracking */

typedef struct mg_tracker {
    bool active;
    char **names;
    int64_t n, cap;
} mg_tracker;

static _Thread_local mg_tracker mg_track;

static void mg_tracker_clear(void) {
    for (int64_t i = 0; i < mg_track.n; i++) free(mg_track.names[i]);
    free(mg_track.names);
    memset(&mg_track, 0, sizeof mg_track);
}

void mg_model_track_begin(void) {
    mg_tracker_clear();
    mg_track.active = true;
}

void mg_model_note(const char *name) {
    if (!mg_track.active) return;
    if (mg_track.n == mg_track.cap) {
        int64_t next = mg_track.cap ? mg_track.cap * 2 : 256;
        char **grown = realloc(mg_track.names, (size_t)next * sizeof *grown);
        if (!grown) return; /* tracking is a check; running out only weakens it */
        mg_track.names = grown;
        mg_track.cap = next;
    }
    size_t n = strlen(name) + 1;
    char *copy = malloc(n);
    if (!copy) return;
    memcpy(copy, name, n);
    mg_track.names[mg_track.n++] = copy;
}

static int mg_compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

mg_status mg_model_track_end(const mg_weights *weights, bool check) {
    mg_status status = MG_OK;
    if (check && mg_track.active) {
        qsort(mg_track.names, (size_t)mg_track.n, sizeof *mg_track.names, mg_compare_names);
        int64_t count = mg_weights_count(weights);
        for (int64_t i = 0; i < count; i++) {
            const char *name = mg_weights_name(weights, i);
            if (!bsearch(&name, mg_track.names, (size_t)mg_track.n, sizeof *mg_track.names, mg_compare_names)) {
                status = mg_error(MG_ERR_FORMAT, "tensor %s is not used by this model (%lld tensors in the checkpoint)",
                                  name, (long long)count);
                break;
            }
        }
    }
    mg_tracker_clear();
    return status;
}

mg_status mg_model_get(const mg_weights *weights, const char *name, int n_dims,
                       const int64_t *shape, mg_tensor *out) {
    mg_model_note(name);
    mg_status status = mg_weights_get(weights, name, out);
    if (status != MG_OK) return mg_error(status, "checkpoint has no tensor %s", name);
    bool same = out->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++) same = out->shape[i] == shape[i];
    if (!same) {
        char want[96], got[96];
        mg_describe_shape(want, sizeof want, n_dims, shape);
        mg_describe_shape(got, sizeof got, out->n_dims, out->shape);
        return mg_error(MG_ERR_SHAPE, "tensor %s: expected %s, got %s", name, want, got);
    }
    return MG_OK;
}

mg_status mg_model_get_f32(const mg_weights *weights, mg_owned *owned, const char *name,
                           int n_dims, const int64_t *shape, mg_tensor *out) {
    mg_tensor stored;
    MG_TRY(mg_model_get(weights, name, n_dims, shape, &stored));
    if (stored.dtype == MG_F32 && mg_tensor_is_contiguous(&stored)) {
        *out = stored;
        return MG_OK;
    }
    MG_TRY(mg_owned_tensor(owned, out, MG_F32, n_dims, shape));
    mg_status status = mg_tensor_convert(&stored, out);
    if (status != MG_OK) return mg_error_prefix(status, "tensor %s", name);
    return MG_OK;
}

static bool mg_linear_dtype_ok(mg_dtype dtype) {
    return dtype == MG_F32 || dtype == MG_F16 || dtype == MG_BF16 || dtype == MG_Q8_0 ||
           dtype == MG_Q4_0;
}

mg_status mg_gptq_dequantize(const mg_weights *weights, const char *base, int64_t out_features,
                             int64_t in_features, float *w_out) {
    char name[MG_NAME_MAX];
    if (in_features % 8 || out_features % 8)
        return mg_error(MG_ERR_SHAPE, "%s: GPTQ needs in/out features divisible by 8, got [%lld, %lld]",
                        base, (long long)out_features, (long long)in_features);
    mg_tensor qweight, qzeros, scales, g_idx;
    int64_t shape[2] = {in_features / 8, out_features};
    MG_TRY(mg_name(name, sizeof name, "%s.qweight", base));
    MG_TRY(mg_model_get(weights, name, 2, shape, &qweight));
    if (qweight.dtype != MG_I32)
        return mg_error(MG_ERR_DTYPE, "tensor %s: expected i32, got %s", name, mg_dtype_name(qweight.dtype));
    MG_TRY(mg_name(name, sizeof name, "%s.g_idx", base));
    int64_t gshape[1] = {in_features};
    MG_TRY(mg_model_get(weights, name, 1, gshape, &g_idx));
    if (g_idx.dtype != MG_I32)
        return mg_error(MG_ERR_DTYPE, "tensor %s: expected i32, got %s", name, mg_dtype_name(g_idx.dtype));
    MG_TRY(mg_name(name, sizeof name, "%s.scales", base));
    mg_model_note(name);
    mg_status status = mg_weights_get(weights, name, &scales);
    if (status != MG_OK) return mg_error(status, "checkpoint has no tensor %s", name);
    int64_t n_groups = scales.shape[0];
    if (scales.n_dims != 2 || scales.shape[1] != out_features || n_groups <= 0)
        return mg_error(MG_ERR_SHAPE, "tensor %s: expected [groups, %lld], got %lld-D", name,
                        (long long)out_features, (long long)scales.n_dims);
    if (scales.dtype != MG_F16 && scales.dtype != MG_F32 && scales.dtype != MG_BF16)
        return mg_error(MG_ERR_DTYPE, "tensor %s: expected f16, got %s", name, mg_dtype_name(scales.dtype));
    MG_TRY(mg_name(name, sizeof name, "%s.qzeros", base));
    int64_t zshape[2] = {n_groups, out_features / 8};
    MG_TRY(mg_model_get(weights, name, 2, zshape, &qzeros));
    if (qzeros.dtype != MG_I32)
        return mg_error(MG_ERR_DTYPE, "tensor %s: expected i32, got %s", name, mg_dtype_name(qzeros.dtype));
    if (!mg_tensor_is_contiguous(&qweight) || !mg_tensor_is_contiguous(&qzeros) ||
        !mg_tensor_is_contiguous(&scales) || !mg_tensor_is_contiguous(&g_idx))
        return mg_error(MG_ERR_UNSUPPORTED, "%s: GPTQ tensors must be contiguous", base);

    const uint32_t *qw = qweight.data, *qz = qzeros.data;
    const int32_t *groups = g_idx.data;
    float *scale_row = malloc((size_t)out_features * sizeof *scale_row);
    float *zero_row = malloc((size_t)out_features * sizeof *zero_row);
    if (!scale_row || !zero_row) {
        free(scale_row);
        free(zero_row);
        return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", base);
    }
    status = MG_OK;
    int64_t current_group = -1;
    for (int64_t i = 0; i < in_features && status == MG_OK; i++) {
        int64_t g = groups[i];
        if (g < 0 || g >= n_groups) {
            status = mg_error(MG_ERR_FORMAT, "tensor %s.g_idx[%lld] = %lld is outside [0, %lld)", base,
                              (long long)i, (long long)g, (long long)n_groups);
            break;
        }
        if (g != current_group) {
            status = mg_dequantize_row(scales.dtype, (const uint8_t *)scales.data + (size_t)g * scales.strides[0],
                                       scale_row, out_features);
            for (int64_t o = 0; o < out_features; o++) {
                uint32_t word = qz[g * (out_features / 8) + o / 8];
                zero_row[o] = (float)(((word >> (4 * (o % 8))) & 0xF) + 1);
            }
            current_group = g;
        }
        const uint32_t *row = qw + (i / 8) * out_features;
        int shift = (int)(4 * (i % 8));
        for (int64_t o = 0; o < out_features; o++) {
            float q = (float)((row[o] >> shift) & 0xF);
            w_out[o * in_features + i] = scale_row[o] * (q - zero_row[o]);
        }
    }
    free(scale_row);
    free(zero_row);
    return status;
}

static bool mg_all_zero(const mg_tensor *t) {
    int64_t n = mg_tensor_numel(t);
    size_t bytes = (size_t)n * (t->dtype == MG_F32 ? 4 : 2);
    const uint8_t *p = t->data;
    for (size_t i = 0; i < bytes; i++)
        if (p[i]) return false;
    return true;
}

mg_status mg_model_matrix(mg_owned *owned, const char *name, const mg_tensor *stored,
                          const mg_model_weights_options *policy, mg_tensor *out) {
    mg_dtype target = stored->dtype;
    if (policy && policy->convert) target = policy->dtype;
    if (!mg_linear_dtype_ok(target)) target = MG_F32; /* e.g. an f64 file: f32 keeps the values */
    /* Block formats need whole 32-element blocks per row. */
    if (mg_dtype_is_quantized(target) && stored->shape[stored->n_dims - 1] % 32) target = MG_F32;
    if (target == stored->dtype && mg_tensor_is_contiguous(stored)) {
        *out = *stored;
        return MG_OK;
    }
    MG_TRY(mg_owned_tensor(owned, out, target, stored->n_dims, stored->shape));
    mg_status status = mg_tensor_convert(stored, out);
    if (status != MG_OK) return mg_error_prefix(status, "tensor %s", name);
    return MG_OK;
}

static mg_status mg_model_get_linear_bias(const mg_weights *weights, mg_owned *owned, const char *base,
                                          int64_t out_features, bool want_bias, bool gptq, mg_tensor *bias_out);

mg_status mg_model_get_linear(const mg_weights *weights, mg_owned *owned, const char *base,
                              int64_t out_features, int64_t in_features, bool want_bias,
                              const mg_model_weights_options *policy, mg_tensor *weight_out,
                              mg_tensor *bias_out) {
    char name[MG_NAME_MAX];
    int64_t shape[2] = {out_features, in_features};
    MG_TRY(mg_name(name, sizeof name, "%s.weight", base));
    bool gptq = false;
    mg_tensor stored;
    if (mg_weights_has(weights, name)) {
        MG_TRY(mg_model_get(weights, name, 2, shape, &stored));
    } else {
        char qname[MG_NAME_MAX];
        MG_TRY(mg_name(qname, sizeof qname, "%s.qweight", base));
        if (!mg_weights_has(weights, qname))
            return mg_error(MG_ERR_NOT_FOUND, "checkpoint has no tensor %s (nor GPTQ %s)", name, qname);
        gptq = true;
        /* Dequantised into a temporary f32 matrix, then stored as the policy
         * says, f16 by default: GPTQ checkpoints are f16 models (Qwen-VL-Chat-
         * Int4: torch_dtype float16), and f32 would need 31 GB for Qwen-7B. */
        size_t bytes;
        if (!mg_mul_size((size_t)out_features * (size_t)in_features, sizeof(float), &bytes))
            return mg_error(MG_ERR_NO_MEMORY, "%s: GPTQ matrix too large", base);
        float *dense = mg_aligned_alloc(bytes);
        if (!dense) return mg_error(MG_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes to dequantise GPTQ", base, bytes);
        mg_status status = mg_gptq_dequantize(weights, base, out_features, in_features, dense);
        if (status == MG_OK) status = mg_tensor_init(&stored, dense, MG_F32, 2, shape);
        mg_model_weights_options as_f16 = {true, MG_F16, false};
        const mg_model_weights_options *target = policy && policy->convert ? policy : &as_f16;
        if (status == MG_OK) status = mg_model_matrix(owned, name, &stored, target, weight_out);
        mg_aligned_free(dense);
        if (status != MG_OK) return status;
        return mg_model_get_linear_bias(weights, owned, base, out_features, want_bias, true, bias_out);
    }
    MG_TRY(mg_model_matrix(owned, name, &stored, policy, weight_out));
    return mg_model_get_linear_bias(weights, owned, base, out_features, want_bias, gptq, bias_out);
}

static mg_status mg_model_get_linear_bias(const mg_weights *weights, mg_owned *owned, const char *base,
                                          int64_t out_features, bool want_bias, bool gptq, mg_tensor *bias_out) {
    char name[MG_NAME_MAX];
    memset(bias_out, 0, sizeof *bias_out);
    MG_TRY(mg_name(name, sizeof name, "%s.bias", base));
    mg_model_note(name);
    if (!mg_weights_has(weights, name)) {
        if (want_bias && !gptq) return mg_error(MG_ERR_NOT_FOUND, "checkpoint has no tensor %s", name);
        return MG_OK;
    }
    int64_t bshape[1] = {out_features};
    mg_tensor raw;
    MG_TRY(mg_model_get(weights, name, 1, bshape, &raw));
    /* GPTQ layers carry a zero bias placeholder even where the model has none
     * (Qwen's w1/w2/c_proj); skipping it keeps the math identical. */
    if (!want_bias && (raw.dtype == MG_F16 || raw.dtype == MG_BF16 || raw.dtype == MG_F32) &&
        mg_tensor_is_contiguous(&raw) && mg_all_zero(&raw))
        return MG_OK;
    if (!want_bias)
        return mg_error(MG_ERR_FORMAT, "tensor %s: a%s bias where this model has none", name,
                        gptq ? " nonzero GPTQ" : "");
    return mg_model_get_f32(weights, owned, name, 1, bshape, bias_out);
}

mg_status mg_scratch_reserve(mg_arena *arena, size_t bytes) {
    if (arena->base && arena->capacity >= bytes) {
        arena->used = 0;
        return MG_OK;
    }
    mg_arena_destroy(arena);
    return mg_arena_init(arena, bytes);
}

mg_status mg_model_row_f32(const mg_tensor *t, int64_t row, float *dst) {
    if (t->n_dims != 2 || row < 0 || row >= t->shape[0])
        return mg_error(MG_ERR_INVALID_ARGUMENT, "row %lld outside a table of %lld rows", (long long)row,
                        (long long)t->shape[0]);
    return mg_dequantize_row(t->dtype, (const uint8_t *)t->data + (size_t)row * (size_t)t->strides[0], dst,
                             t->shape[1]);
}

mg_tensor mg_view3_f32(float *data, int64_t d0, int64_t d1, int64_t d2, int64_t s0, int64_t s1,
                       int64_t s2) {
    mg_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = MG_F32;
    t.device = MG_DEVICE_CPU;
    t.n_dims = 3;
    t.shape[0] = d0, t.shape[1] = d1, t.shape[2] = d2, t.shape[3] = 1;
    t.strides[0] = s0 * 4, t.strides[1] = s1 * 4, t.strides[2] = s2 * 4, t.strides[3] = 4;
    return t;
}

mg_tensor mg_view2_f32(float *data, int64_t d0, int64_t d1) {
    mg_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = MG_F32;
    t.device = MG_DEVICE_CPU;
    t.n_dims = 2;
    t.shape[0] = d0, t.shape[1] = d1, t.shape[2] = 1, t.shape[3] = 1;
    t.strides[0] = d1 * 4, t.strides[1] = 4, t.strides[2] = 4, t.strides[3] = 4;
    return t;
}

mg_status mg_resize_position_table(mg_context *ctx, mg_arena *arena, const mg_tensor *table,
                                   int64_t grid, int64_t h, int64_t w, mg_tensor *out) {
    int64_t channels = table->shape[1];
    if (table->dtype != MG_F32 || table->n_dims != 2 || table->shape[0] != grid * grid)
        return mg_error(MG_ERR_INTERNAL, "position table must be f32 [%lld, C]", (long long)(grid * grid));
    if (grid == h && grid == w) {
        /* get_abs_pos returns the table unchanged when the sizes agree. */
        memcpy(out->data, table->data, (size_t)(grid * grid * channels) * 4);
        return MG_OK;
    }
    /* The table rows are grid cells; torch resizes it channels-first, so the
     * op sees [C, g, g] and returns [C, h, w], which is transposed back. */
    size_t mark = mg_arena_mark(arena);
    mg_tensor channels_first, resized;
    int64_t in_shape[3] = {channels, grid, grid};
    int64_t out_shape[3] = {channels, h, w};
    MG_TRY(mg_arena_tensor(arena, &channels_first, MG_F32, 3, in_shape));
    MG_TRY(mg_arena_tensor(arena, &resized, MG_F32, 3, out_shape));
    const float *src = table->data;
    float *cf = channels_first.data;
    for (int64_t p = 0; p < grid * grid; p++)
        for (int64_t c = 0; c < channels; c++) cf[c * grid * grid + p] = src[p * channels + c];
    MG_TRY(mg_interpolate_bicubic(ctx, &channels_first, &resized));
    const float *r = resized.data;
    float *dst = out->data;
    for (int64_t p = 0; p < h * w; p++)
        for (int64_t c = 0; c < channels; c++) dst[p * channels + c] = r[c * h * w + p];
    mg_arena_reset_to(arena, mark);
    return MG_OK;
}
