/* Pixel-grounding metrics: Dice / IoU of binary masks (MedPLIB validate_seg
 * conventions plus plain set ratios), PyTorch 'nearest' resizing, and COCO
 * RLE strings as pycocotools writes them (maskApi.c rleToString /
 * rleFrString). The data module had no RLE codec when this was written, so
 * the codec lives here. */
#include "eval/eval_internal.h"

#include <math.h>

mg_status mg_eval_mask_compare(const uint8_t *pred, const uint8_t *gt, int64_t height, int64_t width,
                               mg_eval_mask_score *out) {
    if (!pred || !gt || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mask_compare: NULL argument");
    if (height <= 0 || width <= 0) return mg_error(MG_ERR_SHAPE, "mask_compare: empty mask %lldx%lld", (long long)height, (long long)width);
    int64_t n = height * width, inter = 0, p_area = 0, g_area = 0;
    for (int64_t i = 0; i < n; i++) {
        int p = pred[i] != 0, g = gt[i] != 0;
        inter += p & g;
        p_area += p;
        g_area += g;
    }
    int64_t uni = p_area + g_area - inter;
    out->intersection = inter;
    out->union_ = uni;
    out->pred_area = p_area;
    out->gt_area = g_area;
    /* Stated convention: two empty masks agree perfectly (IoU = Dice = 1). */
    out->iou = uni ? (double)inter / (double)uni : 1.0;
    out->dice = (p_area + g_area) ? 2.0 * (double)inter / (double)(p_area + g_area) : 1.0;
    /* MedPLIB: float32 intersection/union, then Dice = 2 IoU / (1 + IoU). Its
     * script crashes on an empty union; 0 is what it intended. */
    float iou32 = uni ? (float)inter / (float)uni : 0.0f;
    out->medplib_iou = (double)iou32;
    out->medplib_dice = 2.0 * out->medplib_iou / (1.0 + out->medplib_iou);
    return MG_OK;
}

mg_status mg_eval_mask_resize_nearest(const uint8_t *src, int64_t src_h, int64_t src_w, uint8_t *dst, int64_t dst_h,
                                      int64_t dst_w) {
    if (!src || !dst) return mg_error(MG_ERR_INVALID_ARGUMENT, "mask_resize: NULL argument");
    if (src_h <= 0 || src_w <= 0 || dst_h <= 0 || dst_w <= 0)
        return mg_error(MG_ERR_SHAPE, "mask_resize: %lldx%lld -> %lldx%lld", (long long)src_h, (long long)src_w,
                        (long long)dst_h, (long long)dst_w);
    /* PyTorch upsample_nearest2d: float scale in/out, floor, clamp. */
    float scale_y = (float)src_h / (float)dst_h, scale_x = (float)src_w / (float)dst_w;
    for (int64_t y = 0; y < dst_h; y++) {
        int64_t sy = src_h == dst_h ? y : (int64_t)floorf((float)y * scale_y);
        if (sy > src_h - 1) sy = src_h - 1;
        for (int64_t x = 0; x < dst_w; x++) {
            int64_t sx = src_w == dst_w ? x : (int64_t)floorf((float)x * scale_x);
            if (sx > src_w - 1) sx = src_w - 1;
            dst[y * dst_w + x] = src[sy * src_w + sx];
        }
    }
    return MG_OK;
}

mg_status mg_eval_rle_decode(const char *counts, int64_t height, int64_t width, uint8_t *mask) {
    if (!counts || !mask) return mg_error(MG_ERR_INVALID_ARGUMENT, "rle_decode: NULL argument");
    if (height <= 0 || width <= 0) return mg_error(MG_ERR_SHAPE, "rle_decode: size %lldx%lld", (long long)height, (long long)width);
    int64_t total = height * width, pos = 0, previous2 = 0, previous1 = 0, m = 0;
    int value = 0;
    for (const char *p = counts; *p;) {
        int64_t x = 0;
        int k = 0, more = 1, c = 0;
        while (more) {
            if (!*p) return mg_error(MG_ERR_FORMAT, "RLE counts: run %lld is truncated", (long long)m);
            c = *p - 48;
            if (c < 0 || c > 63) return mg_error(MG_ERR_FORMAT, "RLE counts: byte '%c' at offset %lld is not RLE", *p, (long long)(p - counts));
            if (k >= 12) return mg_error(MG_ERR_FORMAT, "RLE counts: run %lld is too long", (long long)m);
            x |= (int64_t)(c & 0x1f) << (5 * k);
            more = c & 0x20;
            p++;
            k++;
            if (!more && (c & 0x10)) x |= -((int64_t)1 << (5 * k));
        }
        if (m > 2) x += previous2;
        previous2 = previous1;
        previous1 = x;
        if (x < 0 || x > total - pos)
            return mg_error(MG_ERR_FORMAT, "RLE counts: run %lld of length %lld overruns the %lldx%lld mask", (long long)m,
                            (long long)x, (long long)height, (long long)width);
        memset(mask + pos, value, (size_t)x);
        pos += x;
        value = !value;
        m++;
    }
    if (pos != total)
        return mg_error(MG_ERR_FORMAT, "RLE counts cover %lld of %lld pixels (%lldx%lld)", (long long)pos, (long long)total,
                        (long long)height, (long long)width);
    return MG_OK;
}

mg_status mg_eval_rle_encode(const uint8_t *mask, int64_t height, int64_t width, char **out) {
    if (!mask || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "rle_encode: NULL argument");
    if (height <= 0 || width <= 0) return mg_error(MG_ERR_SHAPE, "rle_encode: size %lldx%lld", (long long)height, (long long)width);
    int64_t total = height * width;
    mg_strbuf b = {0};
    int64_t run = 0, m = 0, previous2 = 0, previous1 = 0;
    int value = 0;
    for (int64_t i = 0; i <= total; i++) {
        if (i < total && (mask[i] != 0) == value) {
            run++;
            continue;
        }
        int64_t x = run;
        int64_t cnt = run;
        if (m > 2) x -= previous2;
        previous2 = previous1;
        previous1 = cnt;
        int more = 1;
        while (more) {
            char c = (char)(x & 0x1f);
            x >>= 5;
            more = (c & 0x10) ? x != -1 : x != 0;
            if (more) c |= 0x20;
            c += 48;
            if (mg_strbuf_append_char(&b, c)) {
                mg_strbuf_free(&b);
                return mg_error(MG_ERR_NO_MEMORY, "rle_encode: out of memory");
            }
        }
        m++;
        if (i == total) break;
        value = !value;
        run = 1;
    }
    *out = mg_strbuf_take(&b);
    return MG_OK;
}
