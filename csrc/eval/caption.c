/* Corpus captioning metrics exactly as pycocoevalcap 1.2 computes them on
 * PTB-tokenised text: BLEU-1..4 (bleu/bleu_scorer.py, option 'closest'),
 * ROUGE-L (rouge/rouge.py, beta 1.2) and CIDEr-D (cider/cider_scorer.py,
 * sigma 6, document frequencies from the evaluated references).
 *
 * Words are interned to ids and every distinct n-gram (n = 1..4) of the
 * corpus to a gram id once; a sentence is its sorted (gram id, count) list,
 * so clipping and the CIDEr cosine terms are binary searches over ints and
 * document frequencies / IDF weights are arrays indexed by gram id. */
#include "eval/eval_internal.h"

#include <math.h>

#define MG_MAX_N 4

typedef struct mg_ngram {
    int32_t w[MG_MAX_N]; /* unused tail = -1 */
} mg_ngram;

/* ---- corpus n-gram table ------------------------------------------------ */

typedef struct mg_gram_table {
    int32_t *slots;   /* -1 empty, else gram id */
    size_t n_slots;   /* power of two */
    mg_ngram *keys;   /* by gram id */
    uint8_t *order;   /* n of the gram */
    int32_t *df;      /* images whose references contain the gram */
    int64_t *last_image;
    double *log_df;
    int32_t count, capacity;
} mg_gram_table;

static uint64_t mg_ngram_hash(const mg_ngram *g) {
    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < MG_MAX_N; i++) {
        h ^= (uint32_t)g->w[i];
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    return h;
}

static bool mg_ngram_eq(const mg_ngram *x, const mg_ngram *y) { return memcmp(x->w, y->w, sizeof x->w) == 0; }

static mg_status mg_gram_table_init(mg_gram_table *t, size_t expected) {
    memset(t, 0, sizeof *t);
    size_t n = 1024;
    while (n < expected * 2) n *= 2;
    t->slots = malloc(n * sizeof *t->slots);
    if (!t->slots) return mg_error(MG_ERR_NO_MEMORY, "caption: out of memory for the n-gram table");
    memset(t->slots, 0xff, n * sizeof *t->slots);
    t->n_slots = n;
    return MG_OK;
}

static void mg_gram_table_free(mg_gram_table *t) {
    free(t->slots), free(t->keys), free(t->order), free(t->df), free(t->last_image), free(t->log_df);
    memset(t, 0, sizeof *t);
}

static mg_status mg_gram_table_grow(mg_gram_table *t) {
    size_t n = t->n_slots * 2;
    int32_t *slots = malloc(n * sizeof *slots);
    if (!slots) return mg_error(MG_ERR_NO_MEMORY, "caption: out of memory growing the n-gram table");
    memset(slots, 0xff, n * sizeof *slots);
    for (int32_t id = 0; id < t->count; id++) {
        size_t i = mg_ngram_hash(&t->keys[id]) & (n - 1);
        while (slots[i] >= 0) i = (i + 1) & (n - 1);
        slots[i] = id;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n;
    return MG_OK;
}

static mg_status mg_gram_id(mg_gram_table *t, const mg_ngram *g, int order, int32_t *id) {
    size_t mask = t->n_slots - 1;
    size_t i = mg_ngram_hash(g) & mask;
    for (; t->slots[i] >= 0; i = (i + 1) & mask)
        if (mg_ngram_eq(&t->keys[t->slots[i]], g)) {
            *id = t->slots[i];
            return MG_OK;
        }
    if ((size_t)(t->count + 1) * 2 > t->n_slots) {
        MG_TRY(mg_gram_table_grow(t));
        return mg_gram_id(t, g, order, id);
    }
    if (t->count == t->capacity) {
        int32_t capacity = t->capacity ? t->capacity * 2 : 4096;
        mg_ngram *keys = realloc(t->keys, (size_t)capacity * sizeof *keys);
        if (keys) t->keys = keys;
        uint8_t *orders = realloc(t->order, (size_t)capacity);
        if (orders) t->order = orders;
        if (!keys || !orders) return mg_error(MG_ERR_NO_MEMORY, "caption: out of memory for n-grams");
        t->capacity = capacity;
    }
    int32_t new_id = t->count++;
    t->keys[new_id] = *g;
    t->order[new_id] = (uint8_t)order;
    t->slots[i] = new_id;
    *id = new_id;
    return MG_OK;
}

/* ---- sentences ---------------------------------------------------------- */

typedef struct mg_sentence {
    int32_t n_words;       /* s.split() tokens (BLEU, CIDEr) */
    int32_t *space_words;  /* s.split(" ") tokens (ROUGE-L) */
    int32_t n_space_words;
    int32_t *grams;        /* distinct gram ids, ascending */
    int32_t *counts;
    double *vec;           /* CIDEr tf-idf weights */
    int32_t n_grams;
    double norm[MG_MAX_N];
    int32_t n_bigrams;     /* CIDEr "length" */
} mg_sentence;

static void mg_sentence_free(mg_sentence *s) {
    free(s->space_words), free(s->grams), free(s->counts), free(s->vec);
    memset(s, 0, sizeof *s);
}

static void mg_sort_ids(int32_t *a, int64_t n) {
    /* insertion sort: sentences have tens of n-grams */
    for (int64_t i = 1; i < n; i++) {
        int32_t x = a[i];
        int64_t j = i - 1;
        while (j >= 0 && a[j] > x) a[j + 1] = a[j], j--;
        a[j + 1] = x;
    }
}

static int mg_int_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static mg_status mg_sentence_build(mg_intern *vocab, mg_gram_table *grams, const char *text, mg_ivec *words,
                                   mg_ivec *scratch, mg_sentence *s) {
    memset(s, 0, sizeof *s);
    mg_ivec space_words = {0};
    words->length = 0;
    scratch->length = 0;
    mg_status st;
    if ((st = mg_eval_split_intern(vocab, text, words)) || (st = mg_eval_split_space_intern(vocab, text, &space_words))) {
        mg_ivec_free(&space_words);
        return st;
    }
    s->space_words = space_words.data;
    s->n_space_words = (int32_t)space_words.length;
    s->n_words = (int32_t)words->length;
    s->n_bigrams = s->n_words >= 2 ? s->n_words - 1 : 0;
    for (int k = 1; k <= MG_MAX_N; k++)
        for (int32_t i = 0; i + k <= s->n_words; i++) {
            mg_ngram g;
            for (int j = 0; j < MG_MAX_N; j++) g.w[j] = j < k ? words->data[i + j] : -1;
            int32_t id = -1;
            MG_TRY(mg_gram_id(grams, &g, k, &id));
            MG_TRY(mg_ivec_push(scratch, id));
        }
    int64_t m = (int64_t)scratch->length;
    if (m == 0) return MG_OK;
    if (m <= 64) mg_sort_ids(scratch->data, m);
    else qsort(scratch->data, (size_t)m, sizeof *scratch->data, mg_int_cmp);
    s->grams = malloc((size_t)m * sizeof *s->grams);
    s->counts = malloc((size_t)m * sizeof *s->counts);
    s->vec = malloc((size_t)m * sizeof *s->vec);
    if (!s->grams || !s->counts || !s->vec) return mg_error(MG_ERR_NO_MEMORY, "caption: out of memory for n-gram counts");
    int32_t u = 0;
    for (int64_t i = 0; i < m; i++) {
        if (u > 0 && s->grams[u - 1] == scratch->data[i]) {
            s->counts[u - 1]++;
        } else {
            s->grams[u] = scratch->data[i];
            s->counts[u] = 1;
            u++;
        }
    }
    s->n_grams = u;
    return MG_OK;
}

/* Position of gram id g in a sentence, -1 when absent (binary search). */
static int32_t mg_sentence_find(const mg_sentence *s, int32_t g) {
    int32_t lo = 0, hi = s->n_grams - 1;
    while (lo <= hi) {
        int32_t mid = (lo + hi) / 2;
        int32_t v = s->grams[mid];
        if (v == g) return mid;
        if (v < g) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* ---- the metrics ------------------------------------------------------ */

static int32_t mg_lcs(const int32_t *a, int32_t na, const int32_t *b, int32_t nb, int32_t *row) {
    /* my_lcs: classic DP, O(na*nb) time, one row of memory. */
    for (int32_t j = 0; j <= nb; j++) row[j] = 0;
    for (int32_t i = 1; i <= na; i++) {
        int32_t diagonal = 0;
        for (int32_t j = 1; j <= nb; j++) {
            int32_t up = row[j];
            row[j] = a[i - 1] == b[j - 1] ? diagonal + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diagonal = up;
        }
    }
    return row[nb];
}

static void mg_cider_vectors(mg_sentence *s, const mg_gram_table *t, double log_n_images) {
    for (int n = 0; n < MG_MAX_N; n++) s->norm[n] = 0.0;
    for (int32_t i = 0; i < s->n_grams; i++) {
        int32_t g = s->grams[i];
        double v = (double)s->counts[i] * (log_n_images - t->log_df[g]);
        s->vec[i] = v;
        s->norm[t->order[g] - 1] += pow(v, 2);
    }
    for (int n = 0; n < MG_MAX_N; n++) s->norm[n] = sqrt(s->norm[n]);
}

mg_status mg_eval_caption(const char *const *hyps, const char *const *refs,
                          const int64_t *ref_offsets, int64_t n_images, double *corpus,
                          double *per_image) {
    if (n_images <= 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "caption: no images to score (an empty corpus has no BLEU)");
    if (!hyps || !refs || !ref_offsets || !corpus)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "caption: NULL argument");
    if (ref_offsets[0] != 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "caption: ref_offsets[0] must be 0");
    for (int64_t i = 0; i < n_images; i++) {
        if (ref_offsets[i + 1] <= ref_offsets[i])
            return mg_error(MG_ERR_INVALID_ARGUMENT, "caption: image %lld has no reference", (long long)i);
        if (!hyps[i]) return mg_error(MG_ERR_INVALID_ARGUMENT, "caption: image %lld has no hypothesis", (long long)i);
        for (int64_t r = ref_offsets[i]; r < ref_offsets[i + 1]; r++)
            if (!refs[r]) return mg_error(MG_ERR_INVALID_ARGUMENT, "caption: image %lld has a NULL reference", (long long)i);
    }
    int64_t n_refs = ref_offsets[n_images];
    mg_status st = MG_OK;
    mg_intern vocab;
    MG_TRY(mg_intern_init(&vocab, 4096));
    mg_gram_table grams = {0};
    mg_sentence *hyp = calloc((size_t)n_images, sizeof *hyp);
    mg_sentence *ref = calloc((size_t)n_refs, sizeof *ref);
    mg_ivec words = {0}, scratch = {0};
    int32_t *row = NULL;
    double *cider = NULL, *rouge = NULL;
    if (!hyp || !ref) {
        st = mg_error(MG_ERR_NO_MEMORY, "caption: out of memory for %lld sentences", (long long)(n_images + n_refs));
        goto done;
    }
    if ((st = mg_gram_table_init(&grams, (size_t)(n_images + n_refs) * 16))) goto done;
    int32_t max_len = 1;
    for (int64_t i = 0; i < n_images; i++) {
        if ((st = mg_sentence_build(&vocab, &grams, hyps[i], &words, &scratch, &hyp[i]))) goto done;
        if (hyp[i].n_space_words > max_len) max_len = hyp[i].n_space_words;
    }
    for (int64_t r = 0; r < n_refs; r++) {
        if ((st = mg_sentence_build(&vocab, &grams, refs[r], &words, &scratch, &ref[r]))) goto done;
        if (ref[r].n_space_words > max_len) max_len = ref[r].n_space_words;
    }

    /* BLEU (compute_score(option='closest')) */
    double total_correct[MG_MAX_N] = {0}, total_guess[MG_MAX_N] = {0};
    double total_test = 0, total_ref = 0;
    for (int64_t i = 0; i < n_images; i++) {
        const mg_sentence *h = &hyp[i];
        int64_t testlen = h->n_words;
        int64_t best_len = -1, best_diff = -1;
        for (int64_t r = ref_offsets[i]; r < ref_offsets[i + 1]; r++) {
            int64_t l = ref[r].n_words;
            int64_t diff = llabs(l - testlen);
            if (best_diff < 0 || diff < best_diff || (diff == best_diff && l < best_len)) best_diff = diff, best_len = l;
        }
        int64_t correct[MG_MAX_N] = {0}, guess[MG_MAX_N];
        for (int k = 0; k < MG_MAX_N; k++) guess[k] = testlen - k > 0 ? testlen - k : 0;
        for (int32_t g = 0; g < h->n_grams; g++) {
            int32_t max_count = 0;
            for (int64_t r = ref_offsets[i]; r < ref_offsets[i + 1]; r++) {
                int32_t at = mg_sentence_find(&ref[r], h->grams[g]);
                int32_t c = at >= 0 ? ref[r].counts[at] : 0;
                if (c > max_count) max_count = c;
            }
            correct[grams.order[h->grams[g]] - 1] += h->counts[g] < max_count ? h->counts[g] : max_count;
        }
        total_test += (double)testlen;
        total_ref += (double)best_len;
        for (int k = 0; k < MG_MAX_N; k++) {
            total_correct[k] += (double)correct[k];
            total_guess[k] += (double)guess[k];
        }
        if (per_image) {
            double bleu = 1.0;
            double *row_out = per_image + i * MG_EVAL_CAPTION_FIELDS;
            for (int k = 0; k < MG_MAX_N; k++) {
                bleu *= ((double)correct[k] + 1e-15) / ((double)guess[k] + 1e-9);
                row_out[k] = pow(bleu, 1.0 / (k + 1));
            }
            double ratio = ((double)testlen + 1e-15) / ((double)best_len + 1e-9);
            if (ratio < 1)
                for (int k = 0; k < MG_MAX_N; k++) row_out[k] *= exp(1 - 1 / ratio);
        }
    }
    {
        double bleu = 1.0;
        for (int k = 0; k < MG_MAX_N; k++) {
            bleu *= (total_correct[k] + 1e-15) / (total_guess[k] + 1e-9);
            corpus[k] = pow(bleu, 1.0 / (k + 1));
        }
        double ratio = (total_test + 1e-15) / (total_ref + 1e-9);
        if (ratio < 1)
            for (int k = 0; k < MG_MAX_N; k++) corpus[k] *= exp(1 - 1 / ratio);
    }

    /* ROUGE-L: independent max of P and R over the references */
    row = malloc(((size_t)max_len + 1) * sizeof *row);
    rouge = malloc((size_t)n_images * sizeof *rouge);
    cider = malloc((size_t)n_images * sizeof *cider);
    if (!row || !rouge || !cider) {
        st = mg_error(MG_ERR_NO_MEMORY, "caption: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n_images; i++) {
        const mg_sentence *h = &hyp[i];
        double prec_max = -1, rec_max = -1;
        for (int64_t r = ref_offsets[i]; r < ref_offsets[i + 1]; r++) {
            const mg_sentence *s = &ref[r];
            /* my_lcs(token_r, token_c): the longer list is the outer loop */
            int32_t lcs = s->n_space_words >= h->n_space_words
                              ? mg_lcs(s->space_words, s->n_space_words, h->space_words, h->n_space_words, row)
                              : mg_lcs(h->space_words, h->n_space_words, s->space_words, s->n_space_words, row);
            double p = lcs / (double)h->n_space_words, rr = lcs / (double)s->n_space_words;
            if (p > prec_max) prec_max = p;
            if (rr > rec_max) rec_max = rr;
        }
        const double beta = 1.2;
        rouge[i] = (prec_max != 0 && rec_max != 0)
                       ? ((1 + pow(beta, 2)) * prec_max * rec_max) / (rec_max + pow(beta, 2) * prec_max)
                       : 0.0;
    }

    /* CIDEr-D: document frequency of each gram over the images' reference sets */
    grams.df = calloc((size_t)grams.count + 1, sizeof *grams.df);
    grams.last_image = malloc(((size_t)grams.count + 1) * sizeof *grams.last_image);
    grams.log_df = malloc(((size_t)grams.count + 1) * sizeof *grams.log_df);
    if (!grams.df || !grams.last_image || !grams.log_df) {
        st = mg_error(MG_ERR_NO_MEMORY, "caption: out of memory for CIDEr document frequencies");
        goto done;
    }
    for (int32_t g = 0; g < grams.count; g++) grams.last_image[g] = -1;
    for (int64_t i = 0; i < n_images; i++)
        for (int64_t r = ref_offsets[i]; r < ref_offsets[i + 1]; r++)
            for (int32_t k = 0; k < ref[r].n_grams; k++) {
                int32_t g = ref[r].grams[k];
                if (grams.last_image[g] != i) {
                    grams.last_image[g] = i;
                    grams.df[g]++;
                }
            }
    for (int32_t g = 0; g < grams.count; g++) grams.log_df[g] = log(fmax(1.0, (double)grams.df[g]));
    {
        double log_n = log((double)n_images);
        const double sigma = 6.0;
        for (int64_t i = 0; i < n_images; i++) mg_cider_vectors(&hyp[i], &grams, log_n);
        for (int64_t r = 0; r < n_refs; r++) mg_cider_vectors(&ref[r], &grams, log_n);
        for (int64_t i = 0; i < n_images; i++) {
            const mg_sentence *h = &hyp[i];
            double score[MG_MAX_N] = {0};
            for (int64_t r = ref_offsets[i]; r < ref_offsets[i + 1]; r++) {
                const mg_sentence *s = &ref[r];
                double val[MG_MAX_N] = {0};
                for (int32_t g = 0; g < h->n_grams; g++) {
                    int32_t index = mg_sentence_find(s, h->grams[g]);
                    double vr = index >= 0 ? s->vec[index] : 0.0;
                    double vh = h->vec[g];
                    val[grams.order[h->grams[g]] - 1] += (vh < vr ? vh : vr) * vr;
                }
                double delta = (double)(h->n_bigrams - s->n_bigrams);
                for (int n = 0; n < MG_MAX_N; n++) {
                    if (h->norm[n] != 0 && s->norm[n] != 0) val[n] /= (h->norm[n] * s->norm[n]);
                    val[n] *= pow(M_E, -(delta * delta) / (2 * sigma * sigma));
                    score[n] += val[n];
                }
            }
            double mean = (score[0] + score[1] + score[2] + score[3]) / MG_MAX_N;
            mean /= (double)(ref_offsets[i + 1] - ref_offsets[i]);
            cider[i] = mean * 10.0;
        }
    }
    {
        double rouge_sum = 0, cider_sum = 0;
        for (int64_t i = 0; i < n_images; i++) {
            rouge_sum += rouge[i];
            cider_sum += cider[i];
            if (per_image) {
                per_image[i * MG_EVAL_CAPTION_FIELDS + 4] = rouge[i];
                per_image[i * MG_EVAL_CAPTION_FIELDS + 5] = cider[i];
            }
        }
        corpus[4] = rouge_sum / (double)n_images;
        corpus[5] = cider_sum / (double)n_images;
    }
done:
    if (hyp)
        for (int64_t i = 0; i < n_images; i++) mg_sentence_free(&hyp[i]);
    if (ref)
        for (int64_t r = 0; r < n_refs; r++) mg_sentence_free(&ref[r]);
    free(hyp), free(ref), free(row), free(rouge), free(cider);
    mg_ivec_free(&words), mg_ivec_free(&scratch);
    mg_gram_table_free(&grams);
    mg_intern_free(&vocab);
    return st;
}
