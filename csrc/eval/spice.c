/* SPICE 1.0's tuple F-score (Anderson et al. 2016), scoring part only.
 *
 * The scene graphs come from the official jar (run with -detailed, see
 * medground.eval.metrics); this file reproduces what the jar does with them
 * (SpiceStats.score / Evaluation / TupleSet.match_similar in spice-1.0.jar):
 *
 *  - every tuple of a candidate set is compared with the reference tuples
 *    of its image in the reference set's sorted order; the first similar
 *    one makes the candidate a true positive (the reference's truth_value
 *    becomes true); a reference may be matched by several candidates;
 *  - tuples are similar when they have the same length and every position
 *    is similar; concepts (a set of words, printed '/'-joined, and the
 *    union of their WordNet synsets) are similar when they share a word or
 *    a synset; exact matching (-noSynsets) needs equal concepts;
 *  - tp counts candidates, fp = |candidates| - tp, fn = |references| - tp,
 *    precision = tp / |candidates|, recall = tp / |references| (fn + tp),
 *    f = 2PR / (P + R) when both are positive, else 0; "All" never gives
 *    NaN (no references: 0, 0, 0), the -subset categories do (no
 *    references of the category: NaN);
 *  - a word's synsets are Meteor's getSynSets + getStemSynSets of it
 *    trimmed, lower-cased, spaces as '_' (SceneGraph.getSynSets); they are
 *    read through the METEOR module's synonym tables (meteor.c), which are
 *    byte-identical to the ones inside the jar's lib/Meteor-1.5.jar.
 *
 * spice-1.0.jar's Evaluation has no weighted (IDF) scores; its JSON also
 * carries "numImages" (1 per image), which is not a score. */
#include "eval/eval_internal.h"

#include <math.h>

enum { SP_ALL, SP_OBJECT, SP_ATTRIBUTE, SP_RELATION, SP_CARDINALITY, SP_COLOR, SP_SIZE };

/* TupleFilter's word lists (spice-1.0.jar), matched against the attribute
 * as printed. */
static const char *const SP_SMALL_NUMBERS[] = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"};
static const char *const SP_COLORS[] = {"black", "brown", "blue", "red", "yellow", "pink", "gray", "grey", "green",
                                        "dark", "light", "white", "cream", "orange", "purple", "maroon", "beige", "violet"};
static const char *const SP_SIZES[] = {
    "baby", "illimitable", "scrawny", "beefy", "immeasurable", "short", "big", "immense", "sizable", "bony",
    "infinitesimal", "skeletal", "boundless", "lanky", "skimpy", "brawny", "large", "skinny", "broad", "lean",
    "slender", "bulky", "life-size", "slim", "chunky", "limitless", "small", "colossal", "little", "squat",
    "compact", "mammoth", "stocky", "corpulent", "massive", "stout", "cosmic", "meager", "strapping", "cubby",
    "measly", "sturdy", "curvy", "microscopic", "tall", "elfin", "mini", "teensy", "emaciated", "miniature",
    "teeny", "endless", "minuscule", "teeny-tiny", "enormous", "minute", "teeny-weeny", "epic", "narrow", "thick",
    "expansive", "obese", "thickset", "extensive", "outsized", "thin", "fat", "oversize", "tiny", "fleshy",
    "overweight", "titanic", "full-size", "paltry", "towering", "gargantuan", "petite", "trifling", "gaunt",
    "pint-size", "trim", "giant", "plump", "tubby", "gigantic", "pocket-size", "undersized", "grand", "portly",
    "underweight", "great", "pudgy", "unlimited", "heavy", "puny", "vast", "hefty", "rotund", "wee", "huge",
    "scanty", "whopping", "hulking", "scraggy", "wide"};

static bool sp_in_list(const char *s, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return true;
    return false;
}

#define SP_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Bit mask of the categories a tuple belongs to. */
static unsigned sp_categories(int32_t size, const char *attribute) {
    unsigned m = 1u << SP_ALL;
    if (size == 1) m |= 1u << SP_OBJECT;
    if (size == 3) m |= 1u << SP_RELATION;
    if (size == 2) {
        m |= 1u << SP_ATTRIBUTE;
        if (sp_in_list(attribute, SP_SMALL_NUMBERS, SP_COUNT(SP_SMALL_NUMBERS))) m |= 1u << SP_CARDINALITY;
        if (sp_in_list(attribute, SP_COLORS, SP_COUNT(SP_COLORS))) m |= 1u << SP_COLOR;
        if (sp_in_list(attribute, SP_SIZES, SP_COUNT(SP_SIZES))) m |= 1u << SP_SIZE;
    }
    return m;
}

/* ---- UTF-8 ------------------------------------------------------------ */

/* Decodes one code point at p (n bytes left); 0 on invalid UTF-8. */
static size_t sp_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned char c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) len = 2, v = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, v = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* Java String.compareTo (UTF-16 code units) of two valid UTF-8 ranges. */
static int sp_java_compare(const char *a, size_t na, const char *b, size_t nb) {
    const unsigned char *pa = (const unsigned char *)a, *pb = (const unsigned char *)b;
    size_t ia = 0, ib = 0;
    while (ia < na && ib < nb) {
        uint32_t ca = 0, cb = 0;
        size_t la = sp_utf8_decode(pa + ia, na - ia, &ca), lb = sp_utf8_decode(pb + ib, nb - ib, &cb);
        if (!la || !lb) return memcmp(pa + ia, pb + ib, 1); /* validated before; defensive */
        if (ca != cb) {
            /* first UTF-16 unit: a supplementary character is a high surrogate */
            uint32_t ua = ca < 0x10000 ? ca : 0xD800 + ((ca - 0x10000) >> 10);
            uint32_t ub = cb < 0x10000 ? cb : 0xD800 + ((cb - 0x10000) >> 10);
            if (ua != ub) return ua < ub ? -1 : 1;
            return ca < cb ? -1 : 1; /* both supplementary: code point order */
        }
        ia += la, ib += lb;
    }
    if (ia < na) return 1;
    if (ib < nb) return -1;
    return 0;
}

/* ---- concepts --------------------------------------------------------- */

typedef struct sp_concept {
    const char *raw;
    bool single;             /* raw is one word (it has an empty '/' part) */
    int32_t word_off, n_words; /* sorted distinct word ids in ctx.concept_words */
    int32_t syn_off, n_syns;   /* sorted distinct synsets in ctx.concept_syns */
} sp_concept;

typedef struct sp_ctx {
    const mg_meteor *synonyms;
    bool use_synsets;
    mg_intern words;
    mg_ivec word_syn_off; /* by word id: synsets [off[id], off[id+1]) of word_syns */
    mg_ivec word_syns;
    mg_ivec concept_words, concept_syns;
    mg_ivec scratch, scratch2;
} sp_ctx;

typedef struct sp_side {
    const char *what; /* "candidate" / "reference" */
    int64_t n_tuples, n_elements;
    int64_t *elem_start; /* by tuple */
    sp_concept *concepts; /* by element */
    unsigned *cats;       /* by tuple */
} sp_side;

static int sp_i32_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Sorts v[from..] and drops repeats. */
static void sp_sort_unique(mg_ivec *v, size_t from) {
    size_t n = v->length - from;
    if (n < 2) return;
    qsort(v->data + from, n, sizeof(int32_t), sp_i32_cmp);
    size_t k = from + 1;
    for (size_t i = from + 1; i < v->length; i++)
        if (v->data[i] != v->data[k - 1]) v->data[k++] = v->data[i];
    v->length = k;
}

/* Java trim() + toLowerCase() + replace(" ", "_") of one word. */
static char *sp_synset_key(const char *w, size_t n) {
    while (n && (unsigned char)w[0] <= ' ') w++, n--;
    while (n && (unsigned char)w[n - 1] <= ' ') n--;
    char *k = mg_eval_strndup(w, n);
    if (!k) return NULL;
    mg_eval_lower_inplace(k);
    for (char *p = k; *p; p++)
        if (*p == ' ') *p = '_';
    return k;
}

static mg_status sp_word_id(sp_ctx *c, const char *w, size_t n, int32_t *id) {
    int32_t before = c->words.count;
    MG_TRY(mg_intern_add(&c->words, w, n, id));
    if (*id < before) return MG_OK;
    /* a new word: its synsets */
    size_t from = c->word_syns.length;
    if (c->use_synsets) {
        char *key = sp_synset_key(w, n);
        if (!key) return mg_error(MG_ERR_NO_MEMORY, "spice: out of memory");
        mg_status st = mg_meteor_word_synsets(c->synonyms, key, &c->scratch);
        free(key);
        MG_TRY(st);
        for (size_t i = 0; i < c->scratch.length; i++) MG_TRY(mg_ivec_push(&c->word_syns, c->scratch.data[i]));
        sp_sort_unique(&c->word_syns, from);
    }
    return mg_ivec_push(&c->word_syn_off, (int32_t)c->word_syns.length);
}

static mg_status sp_add_word(sp_ctx *c, const char *w, size_t n) {
    int32_t id;
    MG_TRY(sp_word_id(c, w, n, &id));
    MG_TRY(mg_ivec_push(&c->concept_words, id));
    for (int32_t j = c->word_syn_off.data[id]; j < c->word_syn_off.data[id + 1]; j++)
        MG_TRY(mg_ivec_push(&c->scratch2, c->word_syns.data[j]));
    return MG_OK;
}

static mg_status sp_concept_make(sp_ctx *c, const char *raw, sp_concept *k) {
    size_t n = strlen(raw);
    k->raw = raw;
    k->single = n == 0 || raw[0] == '/' || raw[n - 1] == '/' || strstr(raw, "//") != NULL;
    k->word_off = (int32_t)c->concept_words.length;
    c->scratch2.length = 0;
    if (k->single) {
        MG_TRY(sp_add_word(c, raw, n));
    } else {
        for (const char *p = raw;;) {
            const char *slash = strchr(p, '/');
            size_t m = slash ? (size_t)(slash - p) : strlen(p);
            MG_TRY(sp_add_word(c, p, m));
            if (!slash) break;
            p = slash + 1;
        }
    }
    sp_sort_unique(&c->concept_words, (size_t)k->word_off);
    k->n_words = (int32_t)c->concept_words.length - k->word_off;
    k->syn_off = (int32_t)c->concept_syns.length;
    for (size_t i = 0; i < c->scratch2.length; i++) MG_TRY(mg_ivec_push(&c->concept_syns, c->scratch2.data[i]));
    sp_sort_unique(&c->concept_syns, (size_t)k->syn_off);
    k->n_syns = (int32_t)c->concept_syns.length - k->syn_off;
    return MG_OK;
}

static bool sp_sorted_intersect(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    int32_t i = 0, j = 0;
    while (i < na && j < nb) {
        if (a[i] == b[j]) return true;
        if (a[i] < b[j]) i++;
        else j++;
    }
    return false;
}

static bool sp_sorted_equal(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

/* SemanticConcept.similarTo (use_synsets) or equals. */
static bool sp_concept_match(const sp_ctx *c, const sp_concept *x, const sp_concept *y) {
    const int32_t *xw = c->concept_words.data + x->word_off, *yw = c->concept_words.data + y->word_off;
    const int32_t *xs = c->concept_syns.data + x->syn_off, *ys = c->concept_syns.data + y->syn_off;
    if (!c->use_synsets)
        return sp_sorted_equal(xw, x->n_words, yw, y->n_words) && sp_sorted_equal(xs, x->n_syns, ys, y->n_syns);
    return sp_sorted_intersect(xs, x->n_syns, ys, y->n_syns) || sp_sorted_intersect(xw, x->n_words, yw, y->n_words);
}

/* SemanticConcept.compareTo: the printed words, lexicographically by Java
 * String order (the synsets follow from the words). */
static int sp_concept_compare(const sp_concept *x, const sp_concept *y) {
    const char *a = x->raw, *b = y->raw;
    for (;;) {
        const char *ea = x->single ? NULL : strchr(a, '/'), *eb = y->single ? NULL : strchr(b, '/');
        size_t na = ea ? (size_t)(ea - a) : strlen(a), nb = eb ? (size_t)(eb - b) : strlen(b);
        int r = sp_java_compare(a, na, b, nb);
        if (r) return r;
        if (!ea || !eb) return ea ? 1 : (eb ? -1 : 0); /* the shorter word list first */
        a = ea + 1, b = eb + 1;
    }
}

/* ---- sides ------------------------------------------------------------ */

static void sp_side_free(sp_side *s) {
    free(s->elem_start), free(s->concepts), free(s->cats);
    memset(s, 0, sizeof *s);
}

static mg_status sp_side_make(sp_ctx *c, const mg_spice_tuples *t, int64_t n_images, const char *what, sp_side *s) {
    memset(s, 0, sizeof *s);
    s->what = what;
    if (!t || !t->offsets || (!t->sizes && n_images > 0))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "spice: %s tuples: NULL sizes or offsets", what);
    if (t->offsets[0] != 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "spice: %s tuples: offsets[0] is %lld, expected 0", what,
                        (long long)t->offsets[0]);
    for (int64_t i = 0; i < n_images; i++)
        if (t->offsets[i + 1] < t->offsets[i])
            return mg_error(MG_ERR_INVALID_ARGUMENT, "spice: %s tuples: offsets decrease at image %lld", what,
                            (long long)i);
    s->n_tuples = t->offsets[n_images];
    s->elem_start = malloc(((size_t)s->n_tuples + 1) * sizeof *s->elem_start);
    s->cats = malloc(((size_t)s->n_tuples + 1) * sizeof *s->cats);
    if (!s->elem_start || !s->cats) return mg_error(MG_ERR_NO_MEMORY, "spice: out of memory");
    int64_t image = 0, total = 0;
    for (int64_t k = 0; k < s->n_tuples; k++) {
        while (t->offsets[image + 1] <= k) image++;
        if (t->sizes[k] < 1 || t->sizes[k] > 3)
            return mg_error(MG_ERR_INVALID_ARGUMENT, "spice: %s tuple %lld of image %lld has %d elements (1 to 3 allowed)",
                            what, (long long)(k - t->offsets[image]), (long long)image, (int)t->sizes[k]);
        s->elem_start[k] = total;
        total += t->sizes[k];
    }
    s->elem_start[s->n_tuples] = total;
    s->n_elements = total;
    if (total > 0 && !t->elements) return mg_error(MG_ERR_INVALID_ARGUMENT, "spice: %s tuples: NULL elements", what);
    s->concepts = calloc((size_t)total + 1, sizeof *s->concepts);
    if (!s->concepts) return mg_error(MG_ERR_NO_MEMORY, "spice: out of memory");
    image = 0;
    for (int64_t k = 0; k < s->n_tuples; k++) {
        while (t->offsets[image + 1] <= k) image++;
        for (int64_t e = s->elem_start[k]; e < s->elem_start[k + 1]; e++) {
            const char *raw = t->elements[e];
            long long tuple = (long long)(k - t->offsets[image]);
            if (!raw)
                return mg_error(MG_ERR_INVALID_ARGUMENT, "spice: %s tuple %lld of image %lld: element %lld is NULL",
                                what, tuple, (long long)image, (long long)(e - s->elem_start[k]));
            size_t n = strlen(raw);
            for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t l = sp_utf8_decode((const unsigned char *)raw + i, n - i, &cp);
                if (!l)
                    return mg_error(MG_ERR_FORMAT, "spice: %s tuple %lld of image %lld: element '%.40s' is not valid UTF-8",
                                    what, tuple, (long long)image, raw);
                i += l;
            }
            MG_TRY(sp_concept_make(c, raw, &s->concepts[e]));
        }
        s->cats[k] = sp_categories(t->sizes[k], t->sizes[k] == 2 ? t->elements[s->elem_start[k] + 1] : "");
    }
    return MG_OK;
}

static int32_t sp_size(const sp_side *s, int64_t k) { return (int32_t)(s->elem_start[k + 1] - s->elem_start[k]); }

static bool sp_tuple_match(const sp_ctx *c, const sp_side *a, int64_t i, const sp_side *b, int64_t j) {
    int32_t n = sp_size(a, i);
    if (n != sp_size(b, j)) return false;
    for (int32_t k = 0; k < n; k++)
        if (!sp_concept_match(c, &a->concepts[a->elem_start[i] + k], &b->concepts[b->elem_start[j] + k])) return false;
    return true;
}

/* SemanticTuple.compareTo with every truth value false. */
static int sp_tuple_compare(const sp_side *s, int64_t i, int64_t j) {
    int32_t ni = sp_size(s, i), nj = sp_size(s, j);
    for (int32_t k = 0; k < ni && k < nj; k++) {
        int r = sp_concept_compare(&s->concepts[s->elem_start[i] + k], &s->concepts[s->elem_start[j] + k]);
        if (r) return r;
    }
    return (ni > nj) - (ni < nj);
}

/* Stable merge sort of tuple indices (Collections.sort is stable). */
static void sp_sort(const sp_side *s, int64_t *a, int64_t *tmp, int64_t n) {
    if (n < 2) return;
    int64_t h = n / 2;
    sp_sort(s, a, tmp, h);
    sp_sort(s, a + h, tmp, n - h);
    int64_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = sp_tuple_compare(s, a[j], a[i]) < 0 ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, (size_t)n * sizeof *a);
}

/* Evaluation.calcFScore (beta 1). */
static void sp_fscore(int64_t tp, int64_t n_test, int64_t n_ref, bool allow_nan, double *out) {
    double pr = 0.0, re = 0.0, f = 0.0;
    int64_t fp = n_test - tp, fn = n_ref - tp;
    int64_t ref_n = fn + tp, test_n = fp + tp;
    if (ref_n > 0) {
        re = (double)tp / (double)ref_n;
        if (test_n > 0) pr = (double)tp / (double)test_n;
        if (pr > 0 && re > 0) f = (1.0 + 1.0 * 1.0) * (pr * re) / (1.0 * 1.0 * pr + re);
    }
    if (allow_nan && ref_n == 0) pr = re = f = NAN;
    out[0] = (double)tp, out[1] = (double)fp, out[2] = (double)fn;
    out[3] = pr, out[4] = re, out[5] = f;
}

mg_status mg_spice_score(const mg_meteor *synonyms, const mg_spice_tuples *test, const mg_spice_tuples *refs,
                         int64_t n_images, bool use_synsets, double *per_image, double *corpus, uint8_t *test_truth,
                         uint8_t *ref_truth) {
    if (n_images < 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "spice: n_images is %lld", (long long)n_images);
    if (use_synsets && !mg_meteor_has_synonyms(synonyms))
        return mg_error(MG_ERR_INVALID_ARGUMENT,
                        "spice: synonym matching needs a METEOR scorer with Meteor's WordNet synonym tables "
                        "(english.synsets + english.exceptions)");
    sp_ctx c = {.synonyms = synonyms, .use_synsets = use_synsets};
    sp_side ts = {0}, rs = {0};
    int64_t *order = NULL, *tmp = NULL;
    double *rows = NULL;
    mg_status st = mg_intern_init(&c.words, 1024);
    if (!st) st = mg_ivec_push(&c.word_syn_off, 0);
    if (!st) st = sp_side_make(&c, test, n_images, "candidate", &ts);
    if (!st) st = sp_side_make(&c, refs, n_images, "reference", &rs);
    if (st) goto done;
    order = malloc(((size_t)rs.n_tuples + 1) * sizeof *order);
    tmp = malloc(((size_t)rs.n_tuples + 1) * sizeof *tmp);
    rows = malloc(((size_t)n_images * MG_SPICE_CATEGORIES * MG_SPICE_FIELDS + 1) * sizeof *rows);
    if (!order || !tmp || !rows) {
        st = mg_error(MG_ERR_NO_MEMORY, "spice: out of memory");
        goto done;
    }
    if (test_truth) memset(test_truth, 0, (size_t)ts.n_tuples);
    if (ref_truth) memset(ref_truth, 0, (size_t)rs.n_tuples);
    for (int64_t i = 0; i < n_images; i++) {
        int64_t t0 = test->offsets[i], t1 = test->offsets[i + 1];
        int64_t r0 = refs->offsets[i], r1 = refs->offsets[i + 1], nr = r1 - r0;
        for (int64_t k = 0; k < nr; k++) order[k] = r0 + k;
        sp_sort(&rs, order, tmp, nr);
        int64_t n_test[MG_SPICE_CATEGORIES] = {0}, n_ref[MG_SPICE_CATEGORIES] = {0}, tp[MG_SPICE_CATEGORIES] = {0};
        for (int64_t r = r0; r < r1; r++)
            for (int q = 0; q < MG_SPICE_CATEGORIES; q++)
                if (rs.cats[r] & (1u << q)) n_ref[q]++;
        for (int64_t t = t0; t < t1; t++) {
            int64_t first = -1;
            for (int64_t k = 0; k < nr && first < 0; k++)
                if (sp_tuple_match(&c, &ts, t, &rs, order[k])) first = order[k];
            if (first >= 0) {
                if (test_truth) test_truth[t] = 1;
                if (ref_truth) ref_truth[first] = 1;
            }
            for (int q = 0; q < MG_SPICE_CATEGORIES; q++) {
                if (!(ts.cats[t] & (1u << q))) continue;
                n_test[q]++;
                if (first < 0) continue;
                if (q <= SP_RELATION) { /* the length filters keep every similar pair */
                    tp[q]++;
                    continue;
                }
                /* word-list filters: the match must be among the category's references */
                for (int64_t k = 0; k < nr; k++)
                    if ((rs.cats[order[k]] & (1u << q)) && sp_tuple_match(&c, &ts, t, &rs, order[k])) {
                        tp[q]++;
                        break;
                    }
            }
        }
        for (int q = 0; q < MG_SPICE_CATEGORIES; q++)
            sp_fscore(tp[q], n_test[q], n_ref[q], q != SP_ALL, rows + ((size_t)i * MG_SPICE_CATEGORIES + q) * MG_SPICE_FIELDS);
    }
    if (per_image) memcpy(per_image, rows, (size_t)n_images * MG_SPICE_CATEGORIES * MG_SPICE_FIELDS * sizeof *rows);
    if (corpus) {
        /* SpiceStats.macroAverage */
        for (int q = 0; q < MG_SPICE_CATEGORIES; q++) {
            double sum[MG_SPICE_FIELDS] = {0};
            int64_t used = 0;
            for (int64_t i = 0; i < n_images; i++) {
                const double *r = rows + ((size_t)i * MG_SPICE_CATEGORIES + q) * MG_SPICE_FIELDS;
                sum[0] += r[0], sum[1] += r[1], sum[2] += r[2];
                if (!isnan(r[3]) && !isnan(r[4]) && !isnan(r[5])) {
                    sum[3] += r[3], sum[4] += r[4], sum[5] += r[5];
                    used++;
                }
            }
            double *out = corpus + (size_t)q * MG_SPICE_FIELDS;
            out[0] = sum[0], out[1] = sum[1], out[2] = sum[2];
            for (int k = 3; k < MG_SPICE_FIELDS; k++) out[k] = used > 0 ? sum[k] / (double)used : NAN;
        }
    }
done:
    free(order), free(tmp), free(rows);
    sp_side_free(&ts), sp_side_free(&rs);
    mg_intern_free(&c.words);
    mg_ivec_free(&c.word_syn_off), mg_ivec_free(&c.word_syns);
    mg_ivec_free(&c.concept_words), mg_ivec_free(&c.concept_syns);
    mg_ivec_free(&c.scratch), mg_ivec_free(&c.scratch2);
    return st;
}
