/* libFuzzer target: the dataset tools on arbitrary bytes.
 *  - the record checker (JSON list / JSONL streaming, tag and box parsing,
 *    label-variant, duplicate and leakage passes, the JSON report), the input
 *    split in two "files" (train / test) at a byte chosen by the input;
 *  - the pycocotools RLE string decoder, and encode -> string -> decode
 *    round trips of what it accepts;
 *  - mask -> objects on the bytes as a small u8 label mask, in every mode,
 *    cross-checked: the per-label areas must sum to the foreground count and
 *    the components of a label must sum to that label's area. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "medground.h"

static void fuzz_checker(const uint8_t *data, size_t size) {
    size_t cut = size ? data[0] % (size + 1) : 0;
    mg_data_checker *ck;
    if (mg_data_checker_create(NULL, &ck) != MG_OK) abort();
    if (mg_data_checker_add_buffer(ck, "train", (const char *)data, cut, "train") != MG_OK) abort();
    if (mg_data_checker_add_buffer(ck, "test", (const char *)data + cut, size - cut, "test") != MG_OK)
        abort();
    if (mg_data_checker_finish(ck) != MG_OK) abort();
    for (int64_t i = 0; i < mg_data_checker_n_findings(ck); i++) {
        mg_data_finding f;
        if (mg_data_checker_finding(ck, i, &f) != MG_OK || !f.code || !f.message) abort();
    }
    char *json = NULL;
    if (mg_data_checker_report_json(ck, &json) != MG_OK || !json) abort();
    free(json);
    mg_data_checker_destroy(ck);
}

static void fuzz_rle(const uint8_t *data, size_t size) {
    if (size < 2) return;
    int64_t h = data[0] % 16 + 1, w = data[1] % 16 + 1;
    char *text = malloc(size - 1);
    if (!text) return;
    memcpy(text, data + 2, size - 2);
    text[size - 2] = '\0';
    mg_rle rle;
    if (mg_rle_from_string(text, h, w, &rle) == MG_OK) {
        uint8_t mask[256];
        mg_tensor t;
        if (mg_tensor_init(&t, mask, MG_U8, 2, (int64_t[]){h, w}) != MG_OK) abort();
        if (mg_rle_decode(&rle, &t) != MG_OK) abort();
        mg_rle again;
        if (mg_rle_encode(&t, &again) != MG_OK) abort();
        if (mg_rle_area(&again) != mg_rle_area(&rle)) abort();
        char *s = NULL;
        if (mg_rle_to_string(&again, &s) != MG_OK) abort();
        mg_rle third;
        if (mg_rle_from_string(s, h, w, &third) != MG_OK) abort();
        if (third.n_counts != again.n_counts ||
            memcmp(third.counts, again.counts, (size_t)again.n_counts * sizeof *again.counts))
            abort();
        free(s);
        mg_rle_free(&third);
        mg_rle_free(&again);
        mg_rle_free(&rle);
    }
    free(text);
}

static void fuzz_objects(const uint8_t *data, size_t size) {
    if (size < 2) return;
    int64_t w = data[0] % 150 + 1; /* wide enough to cross 64-pixel words */
    int64_t h = (int64_t)(size - 1) / w;
    if (h == 0) return;
    uint8_t *mask = malloc((size_t)(h * w));
    if (!mask) return;
    for (int64_t i = 0; i < h * w; i++) mask[i] = data[1 + i] % 4; /* few labels: big regions */
    mg_tensor t;
    if (mg_tensor_init(&t, mask, MG_U8, 2, (int64_t[]){h, w}) != MG_OK) abort();
    int64_t foreground = 0, label_area[4] = {0};
    for (int64_t i = 0; i < h * w; i++) {
        foreground += mask[i] != 0;
        label_area[mask[i]]++;
    }
    for (int mode = 0; mode < 3; mode++) {
        int connectivity = (int[]){0, 4, 8}[mode];
        mg_mask_options options = {.binary = false, .connectivity = connectivity};
        mg_mask_object *o = NULL;
        int64_t n = 0;
        if (mg_mask_objects(&t, &options, &o, &n) != MG_OK) abort();
        int64_t sum[4] = {0};
        for (int64_t i = 0; i < n; i++) {
            if (o[i].label < 1 || o[i].label > 3 || o[i].x_min > o[i].x_max || o[i].y_max >= h)
                abort();
            sum[o[i].label] += o[i].area;
        }
        for (int l = 1; l < 4; l++)
            if (sum[l] != label_area[l]) abort();
        free(o);
        options.binary = true;
        if (mg_mask_objects(&t, &options, &o, &n) != MG_OK) abort();
        int64_t total = 0;
        for (int64_t i = 0; i < n; i++) total += o[i].area;
        if (total != foreground) abort();
        free(o);
    }
    free(mask);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_checker(data, size);
    fuzz_rle(data, size);
    fuzz_objects(data, size);
    return 0;
}
