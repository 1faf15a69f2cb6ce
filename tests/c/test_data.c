/* Dataset tools in C: mask objects, the 0..1000 grid, COCO RLE, the checker.
 * Expected values are worked out by hand in the comments (pycocotools and
 * skimage comparisons on random masks live in tests/test_data_masks.py).
 * Run under ASan/UBSan by `make asan` too, so every path here is also a
 * memory-safety check. */
#include <stdint.h>
#include <unistd.h>

#include "mg_test.h"

static void test_objects(void) {
    /* 4 x 6 mask:
     *   . 1 1 . . .
     *   . . 1 . 2 .
     *   3 . . . 2 2
     *   . . . 1 . .      label 1: two 4-components {(1,0),(2,0),(2,1)} and {(3,3)} */
    uint8_t m[24] = {0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0, 2, 2, 0, 0, 0, 1, 0, 0};
    mg_tensor t;
    CHECK_OK(mg_tensor_init(&t, m, MG_U8, 2, (int64_t[]){4, 6}));
    mg_mask_object *o = NULL;
    int64_t n = 0;
    mg_mask_options labels = {.binary = false, .connectivity = 0};
    CHECK_OK(mg_mask_objects(&t, &labels, &o, &n));
    CHECK(n == 3);
    if (n == 3) {
        /* label 1: 4 pixels, x 1..3, y 0..3, centroid ((1+2+2+3)/4, (0+0+1+3)/4) */
        CHECK(o[0].label == 1 && o[0].area == 4 && o[0].x_min == 1 && o[0].x_max == 3);
        CHECK(o[0].y_min == 0 && o[0].y_max == 3 && o[0].centroid_x == 2.0 && o[0].centroid_y == 1.0);
        CHECK(o[1].label == 2 && o[1].area == 3 && o[1].x_min == 4 && o[1].y_max == 2);
        CHECK(o[2].label == 3 && o[2].area == 1 && o[2].x_min == 0 && o[2].y_min == 2);
    }
    free(o);
    /* binary, one object: 8 pixels, x 0..5, y 0..3;
     * centroid x = (1+2 + 2+4 + 0+4+5 + 3)/8 = 21/8, y = (0*2 + 1*2 + 2*3 + 3*1)/8 = 11/8 */
    mg_mask_options one = {.binary = true, .connectivity = 0};
    CHECK_OK(mg_mask_objects(&t, &one, &o, &n));
    CHECK(n == 1 && o[0].label == 1 && o[0].area == 8 && o[0].x_min == 0 && o[0].x_max == 5);
    CHECK(n == 1 && o[0].y_min == 0 && o[0].y_max == 3);
    CHECK(n == 1 && o[0].centroid_x == 21.0 / 8 && o[0].centroid_y == 11.0 / 8);
    free(o);
    mg_mask_options comp4 = {.binary = false, .connectivity = 4};
    CHECK_OK(mg_mask_objects(&t, &comp4, &o, &n));
    CHECK(n == 4 && o[0].label == 1 && o[0].area == 3 && o[1].label == 1 && o[1].area == 1);
    free(o);
    /* binary + 8-connectivity: (2,1)-(3,3)? no: rows 1 and 3 are not adjacent.
     * {1,2,2(row1),..}: (2,1) touches (4,1)? no (gap). (4,1),(4,2),(5,2) with
     * (3,3) diagonal to (4,2): joined. (0,2) alone. -> 3 objects */
    mg_mask_options comp8 = {.binary = true, .connectivity = 8};
    CHECK_OK(mg_mask_objects(&t, &comp8, &o, &n));
    CHECK(n == 3);
    if (n == 3) {
        CHECK(o[0].area == 3 && o[0].x_min == 1 && o[0].y_min == 0);
        CHECK(o[1].area == 4 && o[1].x_min == 3 && o[1].x_max == 5 && o[1].y_max == 3);
        CHECK(o[2].area == 1 && o[2].x_min == 0);
    }
    free(o);
    mg_mask_options min3 = {.binary = true, .connectivity = 8, .min_area = 4};
    CHECK_OK(mg_mask_objects(&t, &min3, &o, &n));
    CHECK(n == 1 && o[0].area == 4);
    free(o);
    /* i32 labels through a transposed (strided) view gives the transposed boxes */
    int32_t big[24];
    for (int i = 0; i < 24; i++) big[i] = m[i];
    mg_tensor ti, tt;
    CHECK_OK(mg_tensor_init(&ti, big, MG_I32, 2, (int64_t[]){4, 6}));
    CHECK_OK(mg_tensor_permute(&ti, (int[]){1, 0}, &tt));
    CHECK_OK(mg_mask_objects(&tt, &labels, &o, &n));
    CHECK(n == 3 && o[0].y_min == 1 && o[0].y_max == 3 && o[0].x_min == 0 && o[0].x_max == 3);
    free(o);
    big[5] = -2;
    CHECK_STATUS(mg_mask_objects(&ti, &labels, &o, &n), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("negative label -2 at pixel (x=5, y=0)");
    mg_mask_options bad = {.connectivity = 6};
    CHECK_STATUS(mg_mask_objects(&t, &bad, &o, &n), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("connectivity");
    uint8_t zero[4] = {0};
    CHECK_OK(mg_tensor_init(&t, zero, MG_U8, 2, (int64_t[]){2, 2}));
    CHECK_OK(mg_mask_objects(&t, NULL, &o, &n));
    CHECK(n == 0 && o == NULL);
    float f[4] = {0};
    CHECK_OK(mg_tensor_init(&t, f, MG_F32, 2, (int64_t[]){2, 2}));
    CHECK_STATUS(mg_mask_objects(&t, &labels, &o, &n), MG_ERR_DTYPE);
}

static void test_grid(void) {
    int32_t g[4];
    /* 512 px: 1000*289/512 = 564.45 -> 564, 1000*317/512 = 619.14 -> 620 */
    CHECK_OK(mg_box_to_grid((int32_t[]){289, 203, 316, 230}, 512, 512, g));
    CHECK(g[0] == 564 && g[1] == 396 && g[2] == 620 && g[3] == 452);
    CHECK_OK(mg_box_to_grid((int32_t[]){0, 0, 99, 49}, 100, 50, g));
    CHECK(g[0] == 0 && g[1] == 0 && g[2] == 1000 && g[3] == 1000);
    CHECK_STATUS(mg_box_to_grid((int32_t[]){0, 0, 100, 10}, 100, 50, g), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_box_to_grid((int32_t[]){0, 0, 1, 1}, 0, 50, g), MG_ERR_INVALID_ARGUMENT);
}

static void test_rle(void) {
    /* 3 x 2 mask, column-major order: col0 = (0,1,1), col1 = (1,0,0)
     * -> runs: 1 zero, 3 ones, 2 zeros; string: "1" "3" "2" -> '1'+48.. = "132"
     * (no deltas before index 3) */
    uint8_t m[6] = {0, 1, 1, 0, 1, 0};
    mg_tensor t;
    CHECK_OK(mg_tensor_init(&t, m, MG_U8, 2, (int64_t[]){3, 2}));
    mg_rle rle;
    CHECK_OK(mg_rle_encode(&t, &rle));
    CHECK(rle.n_counts == 3 && rle.counts[0] == 1 && rle.counts[1] == 3 && rle.counts[2] == 2);
    CHECK(mg_rle_area(&rle) == 3);
    double bbox[4];
    CHECK_OK(mg_rle_to_bbox(&rle, bbox));
    /* the run of ones wraps from column 0 into column 1: rows 0..2 */
    CHECK(bbox[0] == 0 && bbox[1] == 0 && bbox[2] == 2 && bbox[3] == 3);
    char *s = NULL;
    CHECK_OK(mg_rle_to_string(&rle, &s));
    CHECK(s && strcmp(s, "132") == 0);
    mg_rle back;
    CHECK_OK(mg_rle_from_string(s, 3, 2, &back));
    CHECK(back.n_counts == 3 && back.counts[1] == 3);
    uint8_t out[6] = {9, 9, 9, 9, 9, 9};
    mg_tensor to;
    CHECK_OK(mg_tensor_init(&to, out, MG_U8, 2, (int64_t[]){3, 2}));
    CHECK_OK(mg_rle_decode(&back, &to));
    CHECK(memcmp(out, m, 6) == 0);
    free(s);
    mg_rle_free(&back);
    mg_rle_free(&rle);
    /* large counts: 100 zeros, 40 ones, 20 zeros in a 1 x 160 mask:
     * 100 = 0b11_00100: groups 00100 (+more) and 00011 -> 4|32 = 36 -> 'T', 3 -> '3';
     * 40 = 0b1_01000: 01000 has bit 4 clear... 8|32 = 40 -> 'X', 1 -> '1';
     * index 2: 20 = 0b10100 -> bit 4 set so one more group: 20|32 = 52 -> 'd', 0 -> '0' */
    uint32_t counts[3] = {100, 40, 20};
    CHECK_OK(mg_rle_from_counts(counts, 3, 1, 160, &rle));
    CHECK_OK(mg_rle_to_string(&rle, &s));
    CHECK(s && strcmp(s, "T3X1d0") == 0);
    free(s);
    mg_rle_free(&rle);
    CHECK_STATUS(mg_rle_from_counts(counts, 3, 1, 150, &rle), MG_ERR_FORMAT);
    CHECK_MESSAGE("sum to 160");
    CHECK_STATUS(mg_rle_from_string("13", 3, 2, &rle), MG_ERR_FORMAT);
    CHECK_STATUS(mg_rle_from_string("1h", 3, 2, &rle), MG_ERR_FORMAT);
    CHECK_MESSAGE("truncated");
    CHECK_STATUS(mg_rle_from_string("1 2", 3, 2, &rle), MG_ERR_FORMAT);
    CHECK_STATUS(mg_rle_from_string("oooooooo0", 3, 2, &rle), MG_ERR_FORMAT);
}

/* The checker on in-memory records: each line one defect class. */
static const char *records =
    "{\"id\": \"ok\", \"conversations\": [[\"<img>a.png</img> q\", \"<ref>liver</ref><box>(1,2),(30,40)</box>\"]]}\n"
    "{\"id\": \"json\", \"conversations\": [[\"x\" \"y\"]]}\n"
    "{\"id\": \"role\", \"conversations\": [{\"from\": \"doctor\", \"value\": \"<image>\\nq\"}]}\n"
    "{\"id\": \"order\", \"conversations\": [{\"from\": \"gpt\", \"value\": \"a\"}, {\"from\": \"human\", \"value\": \"<image>q\"}]}\n"
    "{\"id\": \"tags\", \"conversations\": [[\"<img>a.png</img>\", \"<ref>liver<box>(1,2),(3,4)</box>\"]]}\n"
    "{\"id\": \"range\", \"conversations\": [[\"<img>a.png</img>\", \"<ref>liver</ref><box>(1,2),(3,1004)</box>\"]]}\n"
    "{\"id\": \"inverted\", \"conversations\": [[\"<img>a.png</img>\", \"<ref>liver</ref><box>(50,2),(3,4)</box>\"]]}\n"
    "{\"id\": \"zero\", \"conversations\": [[\"<img>a.png</img>\", \"<ref>liver</ref><box>(3,2),(3,4)</box>\"]]}\n"
    "{\"id\": \"syntax\", \"conversations\": [[\"<img>a.png</img>\", \"<ref>liver</ref><box>(3,2),(3,4</box>\"]]}\n"
    "{\"id\": \"ok\", \"conversations\": [[\"<img>a.png</img> q\", \"<ref>liver</ref><box>(1,2),(30,40)</box>\"]]}\n"
    "{\"id\": \"variant\", \"conversations\": [[\"<img>b.png</img> q\", \"<ref>livre</ref><box>(1,2),(30,40)</box>\"]]}\n";

static const char *expected_codes[] = {"json_syntax", "unknown_role", "turn_order", "tag_unbalanced",
                                       "box_out_of_range", "box_inverted", "box_zero_area",
                                       "box_syntax", "duplicate_record", "label_variant"};

static void test_checker_buffer(void) {
    mg_data_checker *ck;
    CHECK_OK(mg_data_checker_create(NULL, &ck));
    CHECK_OK(mg_data_checker_add_buffer(ck, "mem.jsonl", records, strlen(records), NULL));
    CHECK_OK(mg_data_checker_finish(ck));
    CHECK(mg_data_checker_n_records(ck) == 11);
    int64_t n = mg_data_checker_n_findings(ck);
    CHECK(n == 10);
    for (int64_t i = 0; i < n && i < 10; i++) {
        mg_data_finding f;
        CHECK_OK(mg_data_checker_finding(ck, i, &f));
        /* record i + 1 carries defect i; findings are stored in input order */
        CHECK(f.index == i + 1 && f.line == i + 2);
        CHECK(strcmp(f.code, expected_codes[i]) == 0);
        if (strcmp(f.code, expected_codes[i]) != 0) fprintf(stderr, "  finding %lld: %s %s\n", (long long)i, f.code, f.message);
    }
    CHECK(mg_data_checker_count(ck, MG_DATA_ERROR) == 8);
    CHECK(mg_data_checker_count(ck, MG_DATA_WARNING) == 2);
    mg_data_finding f;
    CHECK_STATUS(mg_data_checker_finding(ck, 99, &f), MG_ERR_INVALID_ARGUMENT);
    char *json = NULL;
    CHECK_OK(mg_data_checker_report_json(ck, &json));
    CHECK(json && strstr(json, "\"n_records\":11") && strstr(json, "\"label_variant\""));
    free(json);
    CHECK_STATUS(mg_data_checker_add_buffer(ck, "late", "{}", 2, NULL), MG_ERR_INVALID_ARGUMENT);
    mg_data_checker_destroy(ck);

    /* JSON lists: unclosed list, missing comma, trailing text */
    const char *lists[] = {"[{\"id\": 1}", "[{\"id\": 1} {\"id\": 2}]", "[] x", "[", "[,]", "{\"a\": [1, 2"};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        CHECK_OK(mg_data_checker_create(NULL, &ck));
        CHECK_OK(mg_data_checker_add_buffer(ck, "list.json", lists[i], strlen(lists[i]), NULL));
        CHECK_OK(mg_data_checker_finish(ck));
        CHECK(mg_data_checker_count(ck, MG_DATA_ERROR) >= 1);
        mg_data_checker_destroy(ck);
    }
    CHECK_OK(mg_data_checker_create(NULL, &ck));
    CHECK_STATUS(mg_data_checker_add_file(ck, "/nonexistent/records.jsonl", NULL), MG_ERR_IO);
    CHECK_MESSAGE("/nonexistent/records.jsonl");
    mg_data_checker_destroy(ck);
}

static void test_checker_leakage(void) {
    const char *train = "{\"image\": \"ct_00--D--case1--z_0001.png\", \"conversations\": [[\"<img>x</img>\", \"a\"]]}\n"
                        "{\"image\": \"ct_00--D--case2--z_0001.png\", \"conversations\": [[\"<img>x</img>\", \"a\"]]}\n";
    const char *test = "{\"id\": \"t\", \"image\": \"ct_00--D--case2--z_0050.png\", \"conversations\": [[\"<img>x</img>\", \"a\"]]}\n";
    mg_data_checker *ck;
    CHECK_OK(mg_data_checker_create(NULL, &ck));
    CHECK_OK(mg_data_checker_add_buffer(ck, "train", train, strlen(train), "train"));
    CHECK_OK(mg_data_checker_add_buffer(ck, "test", test, strlen(test), "test"));
    CHECK_OK(mg_data_checker_finish(ck));
    CHECK(mg_data_checker_n_findings(ck) == 1);
    mg_data_finding f;
    CHECK_OK(mg_data_checker_finding(ck, 0, &f));
    CHECK(strcmp(f.code, "case_leakage") == 0 && strcmp(f.file, "test") == 0 && f.index == 0);
    CHECK(strcmp(f.record_id, "t") == 0 && strstr(f.message, "D--case2"));
    mg_data_checker_destroy(ck);
    char out[64];
    CHECK_OK(mg_data_case_id("images/ct_00--CTSpine1K_Full--1.3.6.1.4--x_0352.png", out, sizeof out));
    CHECK(strcmp(out, "CTSpine1K_Full--1.3.6.1.4") == 0);
    CHECK_OK(mg_data_case_id("amos_0004_75.png", out, sizeof out));
    CHECK(strcmp(out, "amos_0004") == 0);
    CHECK_OK(mg_data_modality("x_ray--Chest--c--2d_none.png", out, sizeof out));
    CHECK(strcmp(out, "x") == 0);
}

/* With the real SA-Med2D demo (when ../shared/data is present): images are
 * header-read, the box of a <ref> is compared with <stem>_<label>_000.png. */
static void test_checker_real_masks(void) {
    const char *root = "../shared/data/images/sam-med2d-demo";
    if (access(root, R_OK) != 0) {
        printf("  (skipped: %s not present)\n", root);
        return;
    }
    /* liver of amos_0004_75: pixel box (from the mask) -> grid via mg_box_to_grid */
    mg_mask_object *o = NULL;
    int64_t n = 0;
    int w = 0, h = 0;
    CHECK_OK(mg_mask_objects_file("../shared/data/images/sam-med2d-demo/masks/amos_0004_75_liver_000.png",
                                  NULL, &o, &n, &w, &h));
    CHECK(n == 1 && w == 512 && h == 512);
    if (n != 1) return;
    int32_t g[4];
    CHECK_OK(mg_box_to_grid((int32_t[]){o[0].x_min, o[0].y_min, o[0].x_max, o[0].y_max}, w, h, g));
    free(o);
    char text[1024];
    snprintf(text, sizeof text,
             "{\"id\": \"good\", \"image\": \"images/amos_0004_75.png\", \"width\": 512, \"height\": 512, "
             "\"conversations\": [[\"<img>x</img>\", \"<ref>liver</ref><box>(%d,%d),(%d,%d)</box>\"]]}\n"
             "{\"id\": \"bad\", \"image\": \"images/amos_0004_75.png\", \"conversations\": [[\"<img>x</img>\", "
             "\"<ref>liver</ref><box>(0,0),(50,50)</box>\"]]}\n"
             "{\"id\": \"gone\", \"image\": \"images/none.png\", \"conversations\": [[\"<img>x</img>\", \"a\"]]}\n",
             g[0], g[1], g[2], g[3]);
    mg_data_check_options options;
    mg_data_check_options_default(&options);
    options.images_dir = root;
    options.masks_dir = "../shared/data/images/sam-med2d-demo/masks";
    mg_data_checker *ck;
    CHECK_OK(mg_data_checker_create(&options, &ck));
    CHECK_OK(mg_data_checker_add_buffer(ck, "real", text, strlen(text), NULL));
    CHECK_OK(mg_data_checker_finish(ck));
    CHECK(mg_data_checker_n_findings(ck) == 2);
    mg_data_finding f;
    CHECK_OK(mg_data_checker_finding(ck, 0, &f));
    CHECK(strcmp(f.record_id, "bad") == 0 && strcmp(f.code, "box_mask_mismatch") == 0);
    CHECK_OK(mg_data_checker_finding(ck, 1, &f));
    CHECK(strcmp(f.record_id, "gone") == 0 && strcmp(f.code, "image_missing") == 0);
    mg_data_checker_destroy(ck);
}

int main(void) {
    test_objects();
    test_grid();
    test_rle();
    test_checker_buffer();
    test_checker_leakage();
    test_checker_real_masks();
    return mg_test_finish("test_data");
}
