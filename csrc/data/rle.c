/* COCO run-length encoding, byte-compatible with pycocotools (maskApi.c):
 * runs over the mask in column-major (Fortran) order, the first run counts
 * zeros, counts are uint32; the string form is pycocotools' LEB128-like
 * code of 5-bit groups offset by 48 with deltas from index 3 on. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

void mg_rle_free(mg_rle *rle) {
    if (!rle) return;
    free(rle->counts);
    rle->counts = NULL;
    rle->n_counts = 0;
}

static mg_status rle_check_size(int64_t height, int64_t width) {
    if (height < 0 || width < 0 || (width && height > INT64_MAX / width) ||
        height * width > (int64_t)UINT32_MAX)
        return mg_error(MG_ERR_INVALID_ARGUMENT,
                        "rle: size %lld x %lld is out of range (uint32 counts)",
                        (long long)height, (long long)width);
    return MG_OK;
}

static mg_status rle_check_sum(const mg_rle *rle) {
    uint64_t sum = 0;
    for (int64_t i = 0; i < rle->n_counts; i++) sum += rle->counts[i];
    if (sum != (uint64_t)(rle->height * rle->width))
        return mg_error(MG_ERR_FORMAT, "rle: counts sum to %llu, expected %lld x %lld = %lld",
                        (unsigned long long)sum, (long long)rle->height, (long long)rle->width,
                        (long long)(rle->height * rle->width));
    return MG_OK;
}

mg_status mg_rle_encode(const mg_tensor *mask, mg_rle *out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_rle_encode: NULL output");
    memset(out, 0, sizeof *out);
    int32_t *labels;
    int64_t h, w;
    MG_TRY(mg_data_mask_labels(mask, true, &labels, &h, &w));
    mg_status status = rle_check_size(h, w);
    if (status != MG_OK) {
        free(labels);
        return status;
    }
    /* At most h*w + 1 runs; grow geometrically instead of reserving that. */
    int64_t capacity = 64, n = 0;
    uint32_t *counts = malloc((size_t)capacity * sizeof *counts);
    if (!counts) {
        free(labels);
        return mg_error(MG_ERR_NO_MEMORY, "rle: cannot allocate counts");
    }
    int32_t current = 0;
    uint32_t run = 0;
    for (int64_t x = 0; x < w; x++) {
        for (int64_t y = 0; y < h; y++) {
            int32_t v = labels[y * w + x];
            if (v != current) {
                if (n == capacity) {
                    capacity *= 2;
                    uint32_t *grown = realloc(counts, (size_t)capacity * sizeof *counts);
                    if (!grown) {
                        free(counts);
                        free(labels);
                        return mg_error(MG_ERR_NO_MEMORY, "rle: cannot grow counts to %lld",
                                        (long long)capacity);
                    }
                    counts = grown;
                }
                counts[n++] = run;
                run = 0;
                current = v;
            }
            run++;
        }
    }
    free(labels);
    if (n == capacity) {
        uint32_t *grown = realloc(counts, (size_t)(capacity + 1) * sizeof *counts);
        if (!grown) {
            free(counts);
            return mg_error(MG_ERR_NO_MEMORY, "rle: cannot grow counts");
        }
        counts = grown;
    }
    counts[n++] = run;
    out->height = h;
    out->width = w;
    out->n_counts = n;
    out->counts = counts;
    return MG_OK;
}

mg_status mg_rle_from_counts(const uint32_t *counts, int64_t n_counts, int64_t height,
                             int64_t width, mg_rle *out) {
    if (!out || (!counts && n_counts))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_rle_from_counts: NULL argument");
    memset(out, 0, sizeof *out);
    MG_TRY(rle_check_size(height, width));
    if (n_counts < 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "rle: negative count length");
    mg_rle rle = {.height = height, .width = width, .n_counts = n_counts};
    rle.counts = malloc((size_t)(n_counts ? n_counts : 1) * sizeof *rle.counts);
    if (!rle.counts) return mg_error(MG_ERR_NO_MEMORY, "rle: cannot copy %lld counts",
                                     (long long)n_counts);
    if (n_counts) memcpy(rle.counts, counts, (size_t)n_counts * sizeof *counts);
    mg_status status = rle_check_sum(&rle);
    if (status != MG_OK) {
        mg_rle_free(&rle);
        return status;
    }
    *out = rle;
    return MG_OK;
}

mg_status mg_rle_decode(const mg_rle *rle, mg_tensor *mask) {
    if (!rle || !mask || !mask->data)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_rle_decode: NULL argument");
    if ((mask->dtype != MG_U8 && mask->dtype != MG_BOOL) || mask->n_dims != 2 ||
        mask->shape[0] != rle->height || mask->shape[1] != rle->width) {
        char buf[64];
        return mg_error(MG_ERR_SHAPE, "rle: output must be u8[%lld, %lld], got %s",
                        (long long)rle->height, (long long)rle->width,
                        mg_tensor_describe(mask, buf, sizeof buf));
    }
    MG_TRY(rle_check_sum(rle));
    int64_t h = rle->height;
    int64_t x = 0, y = 0; /* walks the mask in column-major order */
    uint8_t *base = mask->data;
    for (int64_t i = 0; i < rle->n_counts; i++) {
        uint8_t value = (uint8_t)(i & 1);
        for (uint32_t k = 0; k < rle->counts[i]; k++) {
            base[y * mask->strides[0] + x * mask->strides[1]] = value;
            if (++y == h) {
                y = 0;
                x++;
            }
        }
    }
    return MG_OK;
}

int64_t mg_rle_area(const mg_rle *rle) {
    int64_t area = 0;
    if (!rle) return 0;
    for (int64_t i = 1; i < rle->n_counts; i += 2) area += rle->counts[i];
    return area;
}

mg_status mg_rle_to_bbox(const mg_rle *rle, double bbox[4]) {
    if (!rle || !bbox) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_rle_to_bbox: NULL argument");
    bbox[0] = bbox[1] = bbox[2] = bbox[3] = 0;
    int64_t h = rle->height;
    int64_t x_min = INT64_MAX, y_min = INT64_MAX, x_max = -1, y_max = -1;
    int64_t position = 0;
    for (int64_t i = 0; i < rle->n_counts; i++) {
        int64_t run = rle->counts[i];
        if ((i & 1) && run > 0) {
            int64_t first = position, last = position + run - 1;
            int64_t x0 = first / h, x1 = last / h;
            if (x0 < x_min) x_min = x0;
            if (x1 > x_max) x_max = x1;
            if (x1 > x0) {
                /* the run wraps through the bottom of one column into the
                 * next, so it touches both the first and the last row */
                y_min = 0;
                y_max = h - 1;
            } else {
                if (first % h < y_min) y_min = first % h;
                if (last % h > y_max) y_max = last % h;
            }
        }
        position += run;
    }
    if (x_max < 0) return MG_OK;
    bbox[0] = (double)x_min;
    bbox[1] = (double)y_min;
    bbox[2] = (double)(x_max - x_min + 1);
    bbox[3] = (double)(y_max - y_min + 1);
    return MG_OK;
}

mg_status mg_rle_to_string(const mg_rle *rle, char **out) {
    if (!rle || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_rle_to_string: NULL argument");
    *out = NULL;
    /* each count needs at most 7 groups of 5 bits (a 33-bit signed delta) */
    size_t capacity = (size_t)rle->n_counts * 7 + 1;
    char *s = malloc(capacity);
    if (!s) return mg_error(MG_ERR_NO_MEMORY, "rle: cannot allocate the string");
    size_t p = 0;
    for (int64_t i = 0; i < rle->n_counts; i++) {
        int64_t x = rle->counts[i];
        if (i > 2) x -= (int64_t)rle->counts[i - 2];
        bool more = true;
        while (more) {
            int c = (int)(x & 0x1f);
            x >>= 5; /* arithmetic shift keeps the sign, as in maskApi.c */
            more = (c & 0x10) ? x != -1 : x != 0;
            if (more) c |= 0x20;
            s[p++] = (char)(c + 48);
        }
    }
    s[p] = '\0';
    *out = s;
    return MG_OK;
}

mg_status mg_rle_from_string(const char *text, int64_t height, int64_t width, mg_rle *out) {
    if (!text || !out)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_rle_from_string: NULL argument");
    memset(out, 0, sizeof *out);
    MG_TRY(rle_check_size(height, width));
    size_t length = strlen(text);
    uint32_t *counts = malloc((length ? length : 1) * sizeof *counts);
    if (!counts) return mg_error(MG_ERR_NO_MEMORY, "rle: cannot allocate counts");
    int64_t n = 0;
    size_t p = 0;
    while (p < length) {
        int64_t x = 0;
        int k = 0;
        bool more = true;
        while (more) {
            if (p >= length) {
                free(counts);
                return mg_error(MG_ERR_FORMAT, "rle string: truncated group at byte %zu", p);
            }
            int c = (unsigned char)text[p] - 48;
            if (c < 0 || c > 63 || k > 6) {
                free(counts);
                return mg_error(MG_ERR_FORMAT, "rle string: invalid character 0x%02x at byte %zu",
                                (unsigned char)text[p], p);
            }
            x |= (int64_t)(c & 0x1f) << (5 * k);
            more = (c & 0x20) != 0;
            p++;
            k++;
            if (!more && (c & 0x10)) x |= (int64_t)(-1) * ((int64_t)1 << (5 * k));
        }
        if (n > 2) x += counts[n - 2];
        if (x < 0 || x > (int64_t)UINT32_MAX) {
            free(counts);
            return mg_error(MG_ERR_FORMAT, "rle string: count %lld at index %lld is out of range",
                            (long long)x, (long long)n);
        }
        counts[n++] = (uint32_t)x;
    }
    mg_rle rle = {.height = height, .width = width, .n_counts = n, .counts = counts};
    mg_status status = rle_check_sum(&rle);
    if (status != MG_OK) {
        free(counts);
        return status;
    }
    *out = rle;
    return MG_OK;
}
