/* mg_spice_score (csrc/eval/spice.c): hand-checked cases with a tiny
 * hand-written synonym table (Meteor's english.synsets layout: a word line,
 * then a line of its synset ids), and bad input. The agreement with
 * spice-1.0.jar's own scoring classes is tested in tests/test_eval_spice.py. */
#include <math.h>

#include "mg_test.h"

static const char SYNSETS[] = "car\n100 101\nautomobile\n100\nsofa\n200\ncouch\n200\ndark\n300\nblack\n300 301\n";

static mg_meteor *tiny_synonyms(void) {
    mg_meteor_resources r = {.function_words = "", .nonbreaking_prefixes = "", .synsets = SYNSETS, .exceptions = ""};
    mg_meteor *m = NULL;
    CHECK_OK(mg_meteor_create(&r, &m));
    return m;
}

#define ROW(per, image, cat) ((per) + ((size_t)(image) * MG_SPICE_CATEGORIES + (cat)) * MG_SPICE_FIELDS)

static int row_is(const double *r, double tp, double fp, double fn, double pr, double re, double f) {
    return r[0] == tp && r[1] == fp && r[2] == fn && r[3] == pr && r[4] == re && r[5] == f;
}

static void test_hand_cases(void) {
    mg_meteor *syn = tiny_synonyms();
    /* image 0: (car) (car, black) (car, on, sofa) (man)
     *      vs  (automobile) (automobile, dark) (automobile, on, couch) (woman)
     * car~automobile (synset 100), black~dark (300), sofa~couch (200):
     * tp 3 of 4 candidates, 4 references -> P = R = F = 3/4.
     * image 1: no candidates, (person/man) -> tp 0, fn 1, P = R = F = 0. */
    const char *te[] = {"car", "car", "black", "car", "on", "sofa", "man"};
    const int32_t ts[] = {1, 2, 3, 1};
    const int64_t to[] = {0, 4, 4};
    const char *re[] = {"automobile", "automobile", "dark", "automobile", "on", "couch", "woman", "person/man"};
    const int32_t rs[] = {1, 2, 3, 1, 1};
    const int64_t ro[] = {0, 4, 5};
    mg_spice_tuples t = {te, ts, to}, r = {re, rs, ro};
    double per[2 * MG_SPICE_CATEGORIES * MG_SPICE_FIELDS], corpus[MG_SPICE_CATEGORIES * MG_SPICE_FIELDS];
    uint8_t tt[4], rt[5];
    CHECK_OK(mg_spice_score(syn, &t, &r, 2, true, per, corpus, tt, rt));
    CHECK(row_is(ROW(per, 0, 0), 3, 1, 1, 0.75, 0.75, 0.75));         /* All */
    CHECK(row_is(ROW(per, 0, 1), 1, 1, 1, 0.5, 0.5, 0.5));            /* Object: car hits, man misses */
    CHECK(row_is(ROW(per, 0, 2), 1, 0, 0, 1.0, 1.0, 1.0));            /* Attribute */
    CHECK(row_is(ROW(per, 0, 3), 1, 0, 0, 1.0, 1.0, 1.0));            /* Relation */
    CHECK(isnan(ROW(per, 0, 4)[5]) && ROW(per, 0, 4)[0] == 0);        /* Cardinality: no reference -> NaN */
    CHECK(row_is(ROW(per, 0, 5), 1, 0, 0, 1.0, 1.0, 1.0));            /* Color: black and dark are colours */
    CHECK(isnan(ROW(per, 0, 6)[3]));                                  /* Size */
    CHECK(row_is(ROW(per, 1, 0), 0, 0, 1, 0.0, 0.0, 0.0));
    CHECK(tt[0] && tt[1] && tt[2] && !tt[3]);
    CHECK(rt[0] && rt[1] && rt[2] && !rt[3] && !rt[4]);
    /* corpus: summed counts, mean P/R/F over both images: (0.75 + 0) / 2 */
    CHECK(row_is(corpus, 3, 1, 2, 0.375, 0.375, 0.375));
    CHECK(row_is(corpus + 5 * MG_SPICE_FIELDS, 1, 0, 0, 1.0, 1.0, 1.0)); /* Color: image 1 is NaN, left out */
    CHECK(isnan(corpus[4 * MG_SPICE_FIELDS + 5]));                   /* Cardinality: no image */

    /* exact concepts (-noSynsets): nothing is equal -> tp 0, F 0 */
    CHECK_OK(mg_spice_score(NULL, &t, &r, 2, false, per, NULL, NULL, NULL));
    CHECK(row_is(ROW(per, 0, 0), 0, 4, 4, 0.0, 0.0, 0.0));

    /* merged concepts share a word: "man/person" ~ "person/man" ~ "man";
     * an empty '/' part makes the whole string one word: "a//b" only matches "a//b".
     * candidates (man/person) (a//b) vs references (man) (a) (a//b):
     * tp 2 of 2, 3 references -> P 1, R 2/3, F = 2 * (2/3) / (1 + 2/3) = 0.8 */
    const char *te2[] = {"man/person", "a//b"}, *re2[] = {"man", "a", "a//b"};
    const int32_t ts2[] = {1, 1}, rs2[] = {1, 1, 1};
    const int64_t to2[] = {0, 2}, ro2[] = {0, 3};
    mg_spice_tuples t2 = {te2, ts2, to2}, r2 = {re2, rs2, ro2};
    CHECK_OK(mg_spice_score(syn, &t2, &r2, 1, true, per, NULL, tt, rt));
    CHECK(row_is(ROW(per, 0, 0), 2, 0, 1, 1.0, 2.0 / 3.0, 2.0 * (1.0 * (2.0 / 3.0)) / (1.0 + 2.0 / 3.0)));
    CHECK(rt[0] && !rt[1] && rt[2]);

    /* several candidates on one reference: the jar's counts (fn = 1 - 2 = -1, R = 2) */
    const char *te3[] = {"car", "automobile"}, *re3[] = {"automobile"};
    const int32_t ts3[] = {1, 1}, rs3[] = {1};
    const int64_t to3[] = {0, 2}, ro3[] = {0, 1};
    mg_spice_tuples t3 = {te3, ts3, to3}, r3 = {re3, rs3, ro3};
    CHECK_OK(mg_spice_score(syn, &t3, &r3, 1, true, per, NULL, NULL, NULL));
    CHECK(row_is(ROW(per, 0, 0), 2, 0, -1, 1.0, 2.0, 2.0 * (1.0 * 2.0) / (1.0 + 2.0)));

    /* no images at all */
    const int64_t zero[] = {0};
    mg_spice_tuples none = {NULL, NULL, zero};
    CHECK_OK(mg_spice_score(syn, &none, &none, 0, true, NULL, corpus, NULL, NULL));
    CHECK(corpus[0] == 0 && isnan(corpus[5]));
    mg_meteor_destroy(syn);
}

static void test_bad_input(void) {
    mg_meteor *syn = tiny_synonyms();
    const int32_t one[] = {1}, four[] = {4};
    const int64_t o1[] = {0, 1}, o0[] = {0, 0}, bad0[] = {1, 1};
    const char *ok[] = {"dog"}, *invalid[] = {"do\xffg"}, *null_el[] = {NULL};
    mg_spice_tuples r = {ok, one, o1}, empty = {ok, one, o0};
    mg_spice_tuples t = {ok, four, o1};
    CHECK_STATUS(mg_spice_score(syn, &t, &r, 1, true, NULL, NULL, NULL, NULL), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("candidate tuple 0 of image 0 has 4 elements");
    t = (mg_spice_tuples){invalid, one, o1};
    CHECK_STATUS(mg_spice_score(syn, &t, &r, 1, true, NULL, NULL, NULL, NULL), MG_ERR_FORMAT);
    CHECK_MESSAGE("not valid UTF-8");
    t = (mg_spice_tuples){null_el, one, o1};
    CHECK_STATUS(mg_spice_score(syn, &empty, &t, 1, true, NULL, NULL, NULL, NULL), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("reference tuple 0 of image 0: element 0 is NULL");
    t = (mg_spice_tuples){ok, one, bad0};
    CHECK_STATUS(mg_spice_score(syn, &t, &r, 1, true, NULL, NULL, NULL, NULL), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("offsets[0]");
    CHECK_STATUS(mg_spice_score(NULL, &r, &r, 1, true, NULL, NULL, NULL, NULL), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("synonym tables");
    CHECK_STATUS(mg_spice_score(syn, NULL, &r, 1, true, NULL, NULL, NULL, NULL), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_spice_score(syn, &r, &r, -1, true, NULL, NULL, NULL, NULL), MG_ERR_INVALID_ARGUMENT);
    mg_meteor_destroy(syn);
}

int main(void) {
    test_hand_cases();
    test_bad_input();
    return mg_test_finish("test_spice");
}
