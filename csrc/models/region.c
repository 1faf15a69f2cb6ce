/* MedPLIB's region prompt ("vision sampler", medplib_arch.py
 * extract_region_feature), architecture.md §2.4.
 *
 * Mask preparation (datasets/LazySupervisedDataset.py): a binary mask at the
 * image's resolution (values >= 1 -> 1) is resized like the image (longest
 * side to the CLIP input size S with PIL BILINEAR, new side
 * int(side * S / longest + 0.5)), center-padded with 0 to S x S, sampled at
 * pixel (P*r, P*c) (cv2 INTER_NEAREST by 1/P) onto the g x g patch grid,
 * and optionally reduced to its largest 8-connected component (cv2
 * connectedComponentsWithStats; the eval dataset does this, the demo worker
 * does not).
 *
 * Sampling: the on-cells (r, c) in row-major order, at most max_points of
 * them, give normalised points (r/g, c/g), flipped to (x, y) and sampled with
 * grid_sample(bilinear, align_corners=True, zeros padding) at 2p - 1: pixel
 * position (r (g-1)/g, c (g-1)/g) on the g x g map; the feature is the mean.
 * The reference draws a random subset (randperm) when there are more than
 * max_points cells; here the subset is evenly spaced (deterministic). */
#include "models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mg_status mg_region_grid_mask(mg_context *ctx, const mg_tensor *mask, int image_size, int patch_size,
                              bool largest_component, uint8_t *grid_mask, int *n_on) {
    if (!mask || !grid_mask || !n_on) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_region_grid_mask: NULL argument");
    *n_on = 0;
    if (image_size <= 0 || patch_size <= 0 || image_size % patch_size)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "region mask: image_size %d is not a positive multiple of patch_size %d",
                        image_size, patch_size);
    if (mask->dtype != MG_U8 || mask->n_dims != 2) {
        char got[64];
        return mg_error(MG_ERR_SHAPE, "region mask: must be u8 [H, W], got %s", mg_tensor_describe(mask, got, sizeof got));
    }
    int64_t H = mask->shape[0], W = mask->shape[1], S = image_size, g = image_size / patch_size;
    int64_t longest = H > W ? H : W;
    double scale = (double)S / (double)longest;
    int64_t h2 = (int64_t)((double)H * scale + 0.5), w2 = (int64_t)((double)W * scale + 0.5);
    if (h2 < 1) h2 = 1;
    if (w2 < 1) w2 = 1;
    if (h2 > S) h2 = S;
    if (w2 > S) w2 = S;

    mg_tensor binary, resized;
    int64_t hw[2] = {H, W}, hw2[2] = {h2, w2};
    MG_TRY(mg_tensor_alloc(&binary, MG_U8, 2, hw));
    mg_status status = mg_tensor_alloc(&resized, MG_U8, 2, hw2);
    if (status != MG_OK) {
        mg_tensor_free_data(&binary);
        return status;
    }
    int64_t any = 0;
    for (int64_t y = 0; y < H; y++) {
        const uint8_t *src = (const uint8_t *)mask->data + y * mask->strides[0];
        uint8_t *dst = (uint8_t *)binary.data + y * W;
        for (int64_t x = 0; x < W; x++) {
            dst[x] = src[x * mask->strides[1]] >= 1;
            any += dst[x];
        }
    }
    status = any ? mg_image_resize(ctx, &binary, MG_RESAMPLE_BILINEAR, &resized)
                 : mg_error(MG_ERR_INVALID_ARGUMENT, "region mask: the %lldx%lld mask is empty (no pixel >= 1)",
                            (long long)W, (long long)H);
    if (status == MG_OK) {
        int64_t top = (S - h2) / 2, left = (S - w2) / 2;
        const uint8_t *r = resized.data;
        for (int64_t gr = 0; gr < g; gr++) {
            for (int64_t gc = 0; gc < g; gc++) {
                int64_t y = gr * patch_size - top, x = gc * patch_size - left;
                uint8_t v = (y >= 0 && y < h2 && x >= 0 && x < w2) ? r[y * w2 + x] : 0;
                grid_mask[gr * g + gc] = v ? 1 : 0;
            }
        }
    }
    mg_tensor_free_data(&binary);
    mg_tensor_free_data(&resized);
    if (status != MG_OK) return status;
    if (largest_component) MG_TRY(mg_region_largest_component(grid_mask, (int)g, (int)g));
    for (int64_t i = 0; i < g * g; i++) *n_on += grid_mask[i];
    if (*n_on == 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT,
                        "region mask: no %dx%d patch-grid cell is inside the region (it is smaller than a %d-px patch after resizing to %d)",
                        (int)g, (int)g, patch_size, image_size);
    return MG_OK;
}

mg_status mg_region_largest_component(uint8_t *mask, int height, int width) {
    if (!mask || height <= 0 || width <= 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_region_largest_component: bad arguments");
    int64_t n = (int64_t)height * width;
    int32_t *label = calloc((size_t)n, sizeof *label);
    int32_t *stack = malloc((size_t)n * sizeof *stack);
    if (!label || !stack) {
        free(label);
        free(stack);
        return mg_error(MG_ERR_NO_MEMORY, "region: out of memory");
    }
    /* Labels in raster order of each component's first pixel (as cv2's);
     * the largest area wins, the lowest label on a tie. */
    int32_t next = 0, best = 0;
    int64_t best_area = 0;
    for (int64_t start = 0; start < n; start++) {
        if (!mask[start] || label[start]) continue;
        int32_t id = ++next;
        int64_t area = 0, top = 0;
        stack[top++] = (int32_t)start;
        label[start] = id;
        while (top) {
            int32_t p = stack[--top];
            area++;
            int y = p / width, x = p % width;
            for (int dy = -1; dy <= 1; dy++) {
                for (int dx = -1; dx <= 1; dx++) {
                    int yy = y + dy, xx = x + dx;
                    if (yy < 0 || yy >= height || xx < 0 || xx >= width) continue;
                    int32_t q = yy * width + xx;
                    if (mask[q] && !label[q]) {
                        label[q] = id;
                        stack[top++] = q;
                    }
                }
            }
        }
        if (area > best_area) {
            best_area = area;
            best = id;
        }
    }
    for (int64_t i = 0; i < n; i++) mask[i] = (uint8_t)(mask[i] && label[i] == best);
    free(label);
    free(stack);
    return MG_OK;
}

/* grid_sample(bilinear, align_corners=True, zeros padding) of one point at
 * pixel position (py, px) of a g x g map with C channels, accumulated. */
static void mg_region_bilinear_add(const float *map, int64_t g, int64_t C, double py, double px, double *acc) {
    double y0f = floor(py), x0f = floor(px);
    int64_t y0 = (int64_t)y0f, x0 = (int64_t)x0f;
    double wy1 = py - y0f, wx1 = px - x0f, wy0 = 1.0 - wy1, wx0 = 1.0 - wx1;
    const int64_t ys[2] = {y0, y0 + 1}, xs[2] = {x0, x0 + 1};
    const double wys[2] = {wy0, wy1}, wxs[2] = {wx0, wx1};
    for (int a = 0; a < 2; a++) {
        if (ys[a] < 0 || ys[a] >= g) continue; /* zeros padding */
        for (int b = 0; b < 2; b++) {
            if (xs[b] < 0 || xs[b] >= g) continue;
            double w = wys[a] * wxs[b];
            if (w == 0.0) continue;
            const float *row = map + (ys[a] * g + xs[b]) * C;
            for (int64_t c = 0; c < C; c++) acc[c] += w * (double)row[c];
        }
    }
}

mg_status mg_region_sample(const mg_tensor *features, int64_t grid, const uint8_t *grid_mask, int max_points,
                           float *out, int *n_points) {
    if (!features || !grid_mask || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_region_sample: NULL argument");
    if (n_points) *n_points = 0;
    if (grid <= 0 || features->dtype != MG_F32 || features->n_dims != 2 || features->shape[0] != grid * grid ||
        !mg_tensor_is_contiguous(features)) {
        char got[64];
        return mg_error(MG_ERR_SHAPE, "region sampler: features must be contiguous f32 [%lld, C] (a %lldx%lld grid), got %s",
                        (long long)(grid * grid), (long long)grid, (long long)grid,
                        mg_tensor_describe(features, got, sizeof got));
    }
    if (max_points <= 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "region sampler: max_points %d must be positive", max_points);
    int64_t C = features->shape[1], n_on = 0;
    for (int64_t i = 0; i < grid * grid; i++) n_on += grid_mask[i] != 0;
    if (n_on == 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "region sampler: the region is empty (no grid cell set)");
    int64_t take = n_on < max_points ? n_on : max_points;
    double *acc = calloc((size_t)C, sizeof *acc);
    if (!acc) return mg_error(MG_ERR_NO_MEMORY, "region sampler: out of memory");
    double shrink = (double)(grid - 1) / (double)grid;
    int64_t seen = 0, next_pick = 0, picked = 0;
    for (int64_t i = 0; i < grid * grid && picked < take; i++) {
        if (!grid_mask[i]) continue;
        /* the k-th pick is on-cell floor(k * n_on / take) */
        int64_t want = (next_pick * n_on) / take;
        if (seen++ != want) continue;
        next_pick++;
        picked++;
        double r = (double)(i / grid), c = (double)(i % grid);
        mg_region_bilinear_add(features->data, grid, C, r * shrink, c * shrink, acc);
    }
    for (int64_t c = 0; c < C; c++) out[c] = (float)(acc[c] / (double)picked);
    free(acc);
    if (n_points) *n_points = (int)picked;
    return MG_OK;
}
