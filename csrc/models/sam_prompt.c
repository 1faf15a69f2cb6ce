/* SAM prompt encoder (segment_anything/modeling/prompt_encoder.py, unchanged
 * in SAM-Med2D): random-Fourier positional encoding of points and box
 * corners plus learned type embeddings (sparse tokens), and either the
 * downscaled mask prompt or the broadcast no-mask embedding (dense map). */
#include "models/sam.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* LayerNorm2d default eps (common.py). */
#define MG_SAM_LN2D_EPS 1e-6f

mg_status mg_sam_load_prompt_encoder(mg_sam *sam, const mg_weights *weights, const char *prefix) {
    const int64_t chans = sam->out_chans;
    if (chans % 2 != 0)
        return mg_error(MG_ERR_SHAPE, "SAM prompt encoder: width %lld must be even", (long long)chans);
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", 2,
                      (int64_t[]){2, chans / 2}, &sam->pe_gaussian));
    for (int i = 0; i < 4; i++) {
        char name[96];
        snprintf(name, sizeof name, "prompt_encoder.point_embeddings.%d.weight", i);
        MG_TRY(mg_sam_get(weights, prefix, name, 2, (int64_t[]){1, chans}, &sam->point_embed[i]));
    }
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.not_a_point_embed.weight", 2, (int64_t[]){1, chans},
                      &sam->not_a_point));
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.no_mask_embed.weight", 2, (int64_t[]){1, chans},
                      &sam->no_mask));
    /* mask_downscaling = Conv(1->m/4, 2, s2), LN2d, GELU, Conv(m/4->m, 2, s2),
     * LN2d, GELU, Conv(m->C, 1). Optional: MedPLIB's SEG path never uses it. */
    MG_TRY(mg_sam_get_optional(weights, prefix, "prompt_encoder.mask_downscaling.0.weight", 4,
                               (int64_t[]){-1, 1, 2, 2}, &sam->mask_conv1.weight));
    sam->has_mask_downscaling = sam->mask_conv1.weight.data != NULL;
    if (!sam->has_mask_downscaling) return MG_OK;
    const int64_t quarter = sam->mask_conv1.weight.shape[0];
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.mask_downscaling.0.bias", 1, (int64_t[]){quarter},
                      &sam->mask_conv1.bias));
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.mask_downscaling.1.weight", 1, (int64_t[]){quarter},
                      &sam->mask_norm1.weight));
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.mask_downscaling.1.bias", 1, (int64_t[]){quarter},
                      &sam->mask_norm1.bias));
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.mask_downscaling.3.weight", 4,
                      (int64_t[]){-1, quarter, 2, 2}, &sam->mask_conv2.weight));
    const int64_t mask_chans = sam->mask_conv2.weight.shape[0];
    sam->mask_in_chans = (int)mask_chans;
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.mask_downscaling.3.bias", 1, (int64_t[]){mask_chans},
                      &sam->mask_conv2.bias));
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.mask_downscaling.4.weight", 1, (int64_t[]){mask_chans},
                      &sam->mask_norm2.weight));
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.mask_downscaling.4.bias", 1, (int64_t[]){mask_chans},
                      &sam->mask_norm2.bias));
    MG_TRY(mg_sam_get(weights, prefix, "prompt_encoder.mask_downscaling.6.weight", 4,
                      (int64_t[]){chans, mask_chans, 1, 1}, &sam->mask_conv3.weight));
    return mg_sam_get(weights, prefix, "prompt_encoder.mask_downscaling.6.bias", 1, (int64_t[]){chans},
                      &sam->mask_conv3.bias);
}

/* PositionEmbeddingRandom._pe_encoding for a point already normalised to
 * [0, 1]^2 (u along x, v along y): z = 2*pi*([2u-1, 2v-1] @ G),
 * pe = [sin z, cos z]. float32 as upstream (2*pi is rounded to float). */
static void mg_sam_pe(const mg_sam *sam, float u, float v, float *pe) {
    const int64_t half = sam->out_chans / 2;
    const float *g = sam->pe_gaussian.data;
    const float x = 2.0f * u - 1.0f, y = 2.0f * v - 1.0f;
    const float two_pi = (float)(2.0 * M_PI);
    for (int64_t i = 0; i < half; i++) {
        const float z = two_pi * (x * g[i] + y * g[half + i]);
        pe[i] = sinf(z);
        pe[half + i] = cosf(z);
    }
}

int64_t mg_sam_sparse_count(int64_t n_points, bool has_box) {
    if (n_points < 0) return -1;
    return (n_points > 0 ? n_points + (has_box ? 0 : 1) : 0) + (has_box ? 2 : 0);
}

mg_status mg_sam_dense_pe(const mg_sam *sam, mg_tensor *pe) {
    if (!sam || !pe) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_sam_dense_pe: NULL argument");
    const int grid = sam->grid, chans = sam->out_chans;
    char got[96];
    if (pe->dtype != MG_F32 || pe->n_dims != 3 || pe->shape[0] != chans || pe->shape[1] != grid ||
        pe->shape[2] != grid || !mg_tensor_is_contiguous(pe))
        return mg_error(MG_ERR_SHAPE, "SAM dense PE: output must be contiguous f32[%d, %d, %d], got %s", chans,
                        grid, grid, mg_tensor_describe(pe, got, sizeof got));
    float cell[1024];
    if (chans > 1024) return mg_error(MG_ERR_UNSUPPORTED, "SAM dense PE: width %d > 1024", chans);
    float *out = pe->data;
    /* PositionEmbeddingRandom.forward: cell centres (r + 0.5) / h, (c + 0.5) / w. */
    for (int r = 0; r < grid; r++) {
        for (int c = 0; c < grid; c++) {
            mg_sam_pe(sam, ((float)c + 0.5f) / (float)grid, ((float)r + 0.5f) / (float)grid, cell);
            for (int k = 0; k < chans; k++) out[((int64_t)k * grid + r) * grid + c] = cell[k];
        }
    }
    return MG_OK;
}

static void mg_sam_add_row(float *dst, const mg_tensor *row, int64_t n) {
    const float *src = row->data;
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

/* Mask prompt [4G, 4G] -> dense [G*G, C] channels-last. */
static mg_status mg_sam_embed_mask(mg_context *ctx, mg_arena *arena, const mg_sam *sam,
                                   const mg_tensor *mask, mg_tensor *dense_rows) {
    const int side = 4 * sam->grid;
    mg_tensor map, a, b, c;
    MG_TRY(mg_sam_tensor(arena, &map, 3, (int64_t[]){side, side, 1}));
    mg_tensor map_view;
    MG_TRY(mg_tensor_reshape(&map, 2, (int64_t[]){side, side}, &map_view));
    MG_TRY(mg_tensor_convert(mask, &map_view));
    MG_TRY(mg_sam_conv2d(ctx, arena, &map, &sam->mask_conv1.weight, &sam->mask_conv1.bias, 2, 0, &a));
    mg_tensor a_norm, b_norm;
    MG_TRY(mg_sam_norm_map(ctx, arena, &a, &sam->mask_norm1, MG_SAM_LN2D_EPS, &a_norm));
    MG_TRY(mg_activate(ctx, &a_norm, MG_ACT_GELU_ERF, &a_norm));
    MG_TRY(mg_sam_conv2d(ctx, arena, &a_norm, &sam->mask_conv2.weight, &sam->mask_conv2.bias, 2, 0, &b));
    MG_TRY(mg_sam_norm_map(ctx, arena, &b, &sam->mask_norm2, MG_SAM_LN2D_EPS, &b_norm));
    MG_TRY(mg_activate(ctx, &b_norm, MG_ACT_GELU_ERF, &b_norm));
    MG_TRY(mg_sam_conv2d(ctx, arena, &b_norm, &sam->mask_conv3.weight, &sam->mask_conv3.bias, 1, 0, &c));
    mg_tensor c_rows, c_by_channel;
    MG_TRY(mg_tensor_reshape(&c, 2, (int64_t[]){c.shape[0] * c.shape[1], c.shape[2]}, &c_rows));
    MG_TRY(mg_tensor_permute(&c_rows, (const int[]){1, 0}, &c_by_channel));
    return mg_tensor_convert(&c_by_channel, dense_rows);
}

mg_status mg_sam_encode_prompt(mg_context *ctx, const mg_sam *sam, const float *points,
                               const int32_t *labels, int64_t n_points, const float *box,
                               const mg_tensor *mask_input, mg_tensor *sparse, mg_tensor *dense) {
    if (!ctx || !sam || !dense)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_sam_encode_prompt: NULL argument");
    if (n_points < 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "SAM prompt: n_points %lld < 0", (long long)n_points);
    if (n_points > 0 && (!points || !labels))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "SAM prompt: %lld points given without %s", (long long)n_points,
                        points ? "labels" : "coordinates");
    const int grid = sam->grid, chans = sam->out_chans, size = sam->image_size;
    const int64_t n_sparse = mg_sam_sparse_count(n_points, box != NULL);
    char got[96];
    if (n_sparse > 0 && (!sparse || sparse->dtype != MG_F32 || sparse->n_dims != 2 ||
                         sparse->shape[0] != n_sparse || sparse->shape[1] != chans ||
                         !mg_tensor_is_contiguous(sparse)))
        return mg_error(MG_ERR_SHAPE, "SAM prompt: sparse output must be contiguous f32[%lld, %d], got %s",
                        (long long)n_sparse, chans, sparse ? mg_tensor_describe(sparse, got, sizeof got) : "NULL");
    if (dense->dtype != MG_F32 || dense->n_dims != 3 || dense->shape[0] != chans || dense->shape[1] != grid ||
        dense->shape[2] != grid || !mg_tensor_is_contiguous(dense))
        return mg_error(MG_ERR_SHAPE, "SAM prompt: dense output must be contiguous f32[%d, %d, %d], got %s", chans,
                        grid, grid, mg_tensor_describe(dense, got, sizeof got));
    for (int64_t i = 0; i < n_points; i++) {
        if (labels[i] < -1 || labels[i] > 1)
            return mg_error(MG_ERR_INVALID_ARGUMENT, "SAM prompt: point %lld has label %d (expected 1, 0 or -1)",
                            (long long)i, (int)labels[i]);
        if (!isfinite(points[2 * i]) || !isfinite(points[2 * i + 1]))
            return mg_error(MG_ERR_INVALID_ARGUMENT, "SAM prompt: point %lld is not finite", (long long)i);
    }
    if (box) {
        for (int i = 0; i < 4; i++)
            if (!isfinite(box[i])) return mg_error(MG_ERR_INVALID_ARGUMENT, "SAM prompt: box is not finite");
        if (box[2] < box[0] || box[3] < box[1])
            return mg_error(MG_ERR_INVALID_ARGUMENT, "SAM prompt: box (%g, %g, %g, %g) has x2 < x1 or y2 < y1",
                            box[0], box[1], box[2], box[3]);
    }
    if (mask_input) {
        if (!sam->has_mask_downscaling)
            return mg_error(MG_ERR_NOT_FOUND, "SAM prompt: the checkpoint has no prompt_encoder.mask_downscaling.* for a mask prompt");
        if (mask_input->n_dims != 2 || mask_input->shape[0] != 4 * grid || mask_input->shape[1] != 4 * grid)
            return mg_error(MG_ERR_SHAPE, "SAM prompt: mask_input must be [%d, %d], got %s", 4 * grid, 4 * grid,
                            mg_tensor_describe(mask_input, got, sizeof got));
    }

    /* sparse: points (+ a not-a-point pad when there is no box), then box corners;
     * coordinates shifted to pixel centres (+0.5) and divided by the input size. */
    float *rows = n_sparse > 0 ? sparse->data : NULL;
    int64_t row = 0;
    if (n_points > 0) {
        const int64_t total = n_points + (box ? 0 : 1);
        for (int64_t i = 0; i < total; i++, row++) {
            float *out = rows + row * chans;
            const bool pad = i >= n_points;
            const int label = pad ? -1 : labels[i];
            const float x = pad ? 0.0f : points[2 * i], y = pad ? 0.0f : points[2 * i + 1];
            mg_sam_pe(sam, (x + 0.5f) / (float)size, (y + 0.5f) / (float)size, out);
            if (label == -1) {
                memset(out, 0, (size_t)chans * sizeof(float));
                mg_sam_add_row(out, &sam->not_a_point, chans);
            } else {
                mg_sam_add_row(out, &sam->point_embed[label], chans);
            }
        }
    }
    if (box) {
        for (int corner = 0; corner < 2; corner++, row++) {
            float *out = rows + row * chans;
            mg_sam_pe(sam, (box[2 * corner] + 0.5f) / (float)size, (box[2 * corner + 1] + 0.5f) / (float)size, out);
            mg_sam_add_row(out, &sam->point_embed[2 + corner], chans);
        }
    }

    const int64_t tokens = (int64_t)grid * grid;
    mg_tensor dense_rows; /* dense viewed as [C, G*G] */
    MG_TRY(mg_tensor_reshape(dense, 2, (int64_t[]){chans, tokens}, &dense_rows));
    if (!mask_input) {
        float *out = dense->data;
        const float *embed = sam->no_mask.data;
        for (int k = 0; k < chans; k++)
            for (int64_t t = 0; t < tokens; t++) out[k * tokens + t] = embed[k];
        return MG_OK;
    }
    mg_arena arena;
    const size_t side = 4 * (size_t)grid;
    const size_t floats = side * side * (2 + (size_t)sam->mask_in_chans) + tokens * (size_t)chans * 2 +
                          tokens * 4 * (size_t)sam->mask_in_chans * 2;
    MG_TRY(mg_sam_scratch(&arena, floats));
    mg_status status = mg_sam_embed_mask(ctx, &arena, sam, mask_input, &dense_rows);
    mg_arena_destroy(&arena);
    return status;
}
