/* Eval module C tests: hand-checked cases for each metric and bad input
 * (NULL arrays, empty corpora, bad thresholds, broken RLE) that must give a
 * status, never a crash. Runs under ASan/UBSan too (make asan). */
#include <math.h>

#include "mg_test.h"

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol; }

static void test_bird_clean_and_boxes(void) {
    char *out = NULL;
    /* cut at ".<|im_end|>" keeping '.', then strip */
    CHECK_OK(mg_eval_bird_clean("  the liver.<|im_end|>\n<|endoftext|>junk", &out));
    CHECK(out && strcmp(out, "the liver.") == 0);
    mg_eval_free(out);
    /* first "\n...\n" span wins */
    CHECK_OK(mg_eval_bird_clean("intro\n<box>(1,2),(3,4)</box>\ntail", &out));
    CHECK(out && strcmp(out, "<box>(1,2),(3,4)</box>") == 0);
    mg_eval_free(out);
    CHECK_STATUS(mg_eval_bird_clean(NULL, &out), MG_ERR_INVALID_ARGUMENT);

    mg_eval_box *boxes = NULL;
    int64_t n = 0, invalid = 0;
    bool fallback = false;
    CHECK_OK(mg_eval_extract_boxes("<box>(10, 20),(30,40)</box> and <box>(x,1),(2,3)</box>", true, &boxes, &n, &invalid,
                                   &fallback));
    CHECK(n == 2 && invalid == 1 && !fallback);
    CHECK(boxes && boxes[0].x1 == 10 && boxes[0].y1 == 20 && boxes[0].x2 == 30 && boxes[0].y2 == 40 && isnan(boxes[1].x1));
    mg_eval_free(boxes);
    /* bare fallback only without <box>: digits only, no spaces */
    CHECK_OK(mg_eval_extract_boxes("at (1,2),(3,4) or (5, 6),(7,8)", true, &boxes, &n, &invalid, &fallback));
    CHECK(n == 1 && fallback && boxes[0].x2 == 3);
    mg_eval_free(boxes);
    /* IoU: (0,0,10,10) vs (5,0,15,10): inter 50, union 150 -> 1/3 */
    mg_eval_box a = {0, 0, 10, 10}, b = {5, 0, 15, 10}, z = {1, 1, 1, 1};
    CHECK(close_to(mg_eval_box_iou(&a, &b), 1.0 / 3.0, 1e-15));
    CHECK(isnan(mg_eval_box_iou(&z, &z))); /* zero union: NaN, never a hit */
}

static void test_vg_roc(void) {
    const char *ann[] = {"<box>(0,0),(10,10)</box><box>(20,20),(30,30)</box>", "no box"};
    const char *resp[] = {"<box>(0,0),(10,9)</box><|im_end|>", "<box>(0,0),(1,1)</box>"};
    double th[] = {0.5, 0.95};
    mg_eval_vg_record r[2];
    CHECK_OK(mg_eval_vg(ann, resp, 2, true, th, 2, r));
    /* first GT box: IoU 90/100 = 0.9 > 0.5 but not > 0.95; second: no match */
    CHECK(r[0].n_gt == 2 && r[0].n_pred == 1 && r[0].hits[0] == 1 && r[0].hits[1] == 0);
    CHECK(close_to(r[0].best_iou_sum, 0.9, 1e-15));
    CHECK(r[1].n_gt == 0); /* skipped, as the reference */
    double bad_th[] = {1.5};
    CHECK_STATUS(mg_eval_vg(ann, resp, 2, true, bad_th, 1, r), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_eval_vg(NULL, resp, 2, true, th, 1, r), MG_ERR_INVALID_ARGUMENT);

    const char *gt[] = {"Left kidney", "liver", "a  b"};
    const char *pred[] = {"the kidneys on the left", "Liver.", "ab"};
    uint8_t correct[3], exact[3];
    CHECK_OK(mg_eval_roc(gt, pred, 3, true, correct, exact));
    /* substring rule; "a  b" splits into "a", "", "b" (empty always matches) */
    CHECK(correct[0] == 1 && correct[1] == 1 && correct[2] == 1);
    CHECK(exact[0] == 0 && exact[1] == 1 && exact[2] == 0);
}

static void test_ptb(void) {
    char *out = NULL;
    CHECK_OK(mg_eval_ptb_tokenize("Don't worry, it's a 3.5cm mass (arrow).", &out));
    CHECK(out && strcmp(out, "do n't worry it 's a 3.5 cm mass -lrb- arrow -rrb-") == 0);
    mg_eval_free(out);
    CHECK_OK(mg_eval_ptb_tokenize("", &out));
    CHECK(out && out[0] == '\0');
    mg_eval_free(out);
    CHECK_OK(mg_eval_ptb_tokenize("\xff\xfe bad utf-8 \xe2\x80", &out)); /* invalid bytes: deleted */
    CHECK(out && strcmp(out, "bad utf-8") == 0);
    mg_eval_free(out);
    /* one tokenize call: "w." before a capitalised "The" on the next line
     * is a sentence end (the jar splits the period), before "the" it is not */
    const char *lines[] = {"on w.", "The x", "on w.", "the x"};
    char *outs[4];
    CHECK_OK(mg_eval_ptb_tokenize_lines(lines, 4, outs));
    CHECK(strcmp(outs[0], "on w") == 0 && strcmp(outs[1], "the x") == 0 && strcmp(outs[2], "on w.") == 0);
    for (int i = 0; i < 4; i++) mg_eval_free(outs[i]);
    const char *with_null[] = {"a", NULL};
    CHECK_STATUS(mg_eval_ptb_tokenize_lines(with_null, 2, outs), MG_ERR_INVALID_ARGUMENT);
    CHECK_OK(mg_eval_ptb_tokenize_lines(NULL, 0, NULL));
}

static void test_caption(void) {
    /* hyp "a b c d" vs ref "a b c e": BLEU-1 = (3 + 1e-15) / (4 + 1e-9);
     * ROUGE-L: LCS 3 of 4 both ways -> 0.75; one image: IDF 0 -> CIDEr 0 */
    const char *hyps[] = {"a b c d"};
    const char *refs[] = {"a b c e"};
    int64_t offsets[] = {0, 1};
    double corpus[MG_EVAL_CAPTION_FIELDS], per[MG_EVAL_CAPTION_FIELDS];
    CHECK_OK(mg_eval_caption(hyps, refs, offsets, 1, corpus, per));
    /* equal lengths still get pycocoevalcap's BP: ratio (4 + 1e-15) / (4 + 1e-9) < 1 */
    double ratio = (4 + 1e-15) / (4 + 1e-9);
    CHECK(close_to(corpus[0], (3 + 1e-15) / (4 + 1e-9) * exp(1 - 1 / ratio), 1e-15));
    CHECK(close_to(corpus[4], 0.75, 1e-15) && corpus[5] == 0.0);
    CHECK_STATUS(mg_eval_caption(hyps, refs, offsets, 0, corpus, per), MG_ERR_INVALID_ARGUMENT);
    int64_t bad_offsets[] = {0, 0};
    CHECK_STATUS(mg_eval_caption(hyps, refs, bad_offsets, 1, corpus, per), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("no reference");
}

static void test_vqa_bleu(void) {
    const char *p[] = {"The liver and the liver"};
    const char *g[] = {"liver"};
    mg_eval_vqa_record r;
    CHECK_OK(mg_eval_vqa(p, g, 1, &r));
    /* "liver and liver" vs "liver": tp 2 (prediction counts), fp 1, fn 0 */
    CHECK(close_to(r.precision, 2.0 / 3.0, 1e-15) && r.recall == 1.0 && close_to(r.f1, 0.8, 1e-15));
    CHECK(close_to(r.exact, 1.0 / 3.0, 1e-15) && r.closed_hit == 0.0);
    const char *ref[] = {"a b c d"};
    double w[] = {0.25, 0.25, 0.25, 0.25}, v = 0;
    CHECK_OK(mg_eval_sentence_bleu(ref, 1, "a b c d", w, 4, &v));
    CHECK(close_to(v, 1.0, 1e-15));
    char *norm = NULL;
    CHECK_OK(mg_eval_vqa_normalize("Two X-rays, none.", &norm));
    CHECK(norm && strcmp(norm, "2 x rays 0") == 0);
    mg_eval_free(norm);
}

static void test_masks(void) {
    /* P = {0,1}, G = {1,2,4}: I = 1, U = 4 -> IoU 1/4, Dice 2/5 */
    uint8_t pred[6] = {1, 1, 0, 0, 0, 0}, gt[6] = {0, 1, 1, 0, 1, 0}, empty[6] = {0};
    mg_eval_mask_score s;
    CHECK_OK(mg_eval_mask_compare(pred, gt, 2, 3, &s));
    CHECK(s.intersection == 1 && s.union_ == 4 && s.iou == 0.25 && s.dice == 0.4);
    CHECK_OK(mg_eval_mask_compare(empty, empty, 2, 3, &s));
    CHECK(s.iou == 1.0 && s.dice == 1.0 && s.medplib_iou == 0.0); /* stated conventions */
    char *counts = NULL;
    CHECK_OK(mg_eval_rle_encode(gt, 2, 3, &counts));
    uint8_t back[6];
    CHECK_OK(mg_eval_rle_decode(counts, 2, 3, back));
    CHECK(memcmp(back, gt, 6) == 0);
    mg_eval_free(counts);
    CHECK(mg_eval_rle_decode("zzzz", 2, 3, back) != MG_OK);
    CHECK(mg_eval_rle_decode("3", 2, 3, back) != MG_OK); /* counts do not cover 6 pixels */
}

static void test_meteor(void) {
    mg_meteor_resources r = {0};
    mg_meteor *m = NULL;
    CHECK_STATUS(mg_meteor_create(&r, &m), MG_ERR_INVALID_ARGUMENT); /* function words required */
    r.function_words = "zzz\n";
    r.nonbreaking_prefixes = "Mr\n";
    r.stem = true;
    CHECK_OK(mg_meteor_create(&r, &m));
    CHECK(strcmp(mg_meteor_modules(m), "exact stem") == 0);
    /* hyp "a b" vs ref "a b c d", no function words: P = 1, R = 1/2,
     * Fmean = 1 / (0.15 / 1 + 0.85 / 0.5) = 1 / 1.85; one chunk over 2
     * matches -> frag 1/2, Pen = 0.6 * 0.5^0.2; score = Fmean * (1 - Pen) */
    const char *hyps[] = {"a b", "x y"};
    const char *refs[] = {"a b c d", "x y"};
    int64_t offsets[] = {0, 1, 2};
    double corpus = 0, per[2];
    CHECK_OK(mg_meteor_score(m, hyps, refs, offsets, 2, &corpus, per, NULL));
    double want = (1.0 / 1.85) * (1.0 - 0.6 * pow(0.5, 0.2));
    CHECK(close_to(per[0], want, 1e-12));
    CHECK(close_to(per[1], 1.0, 1e-15)); /* identical: one chunk, everything matched */
    CHECK_STATUS(mg_meteor_score(m, hyps, refs, offsets, -1, &corpus, per, NULL), MG_ERR_INVALID_ARGUMENT);
    mg_meteor_destroy(m);
}

int main(void) {
    test_bird_clean_and_boxes();
    test_vg_roc();
    test_ptb();
    test_caption();
    test_vqa_bleu();
    test_masks();
    test_meteor();
    return mg_test_finish("test_eval");
}
