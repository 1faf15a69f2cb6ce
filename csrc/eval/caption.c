/* Corpus captioning metrics exactly as pycocoevalcap 1.2 computes them on
 * PTB-tokenised text: BLEU-1..4 (bleu/bleu_scorer.py, option 'closest'),
 * ROUGE-L (rouge/rouge.py, beta 1.2) and CIDEr-D (cider/cider_scorer.py,
 * sigma 6, document frequencies from the evaluated references). Words are
 * interned to ids; n-grams are id tuples sorted per sentence so that
 * clipping, cosine terms and LCS are merges over integer arrays. */
#include "eval/eval_internal.h"

#include <math.h>

#define MG_MAX_N 4

typedef struct mg_ngram {
    int32_t w[MG_MAX_N]; /* unused tail = -1 */
} mg_ngram;

static int mg_ngram_order(const mg_ngram *g) {
    int n = 0;
    while (n < MG_MAX_N && g->w[n] >= 0) n++;
    return n;
}

static int mg_ngram_cmp(const void *a, const void *b) {
    const mg_ngram *x = a, *y = b;
    for (int i = 0; i < MG_MAX_N; i++)
        if (x->w[i] != y->w[i]) return x->w[i] < y->w[i] ? -1 : 1;
    return 0;
}

static bool mg_ngram_eq(const mg_ngram *x, const mg_ngram *y) {
    return memcmp(x->w, y->w, sizeof x->w) == 0;
}

/* One sentence: whitespace tokens, its distinct n-grams (sorted) with counts. */
typedef struct mg_sentence {
    int32_t *words;
    int32_t n_words;       /* s.split() tokens (BLEU, CIDEr) */
    int32_t *space_words;  /* s.split(" ") tokens (ROUGE-L) */
    int32_t n_space_words;
    mg_ngram *grams;
    int32_t *counts;
    double *vec;           /* CIDEr tf-idf weights */
    int32_t n_grams;
    double norm[MG_MAX_N];
    int32_t n_bigrams;     /* CIDEr "length" */
} mg_sentence;

static void mg_sentence_free(mg_sentence *s) {
    free(s->words), free(s->space_words), free(s->grams), free(s->counts), free(s->vec);
    memset(s, 0, sizeof *s);
}

static mg_status mg_sentence_build(mg_intern *vocab, const char *text, mg_sentence *s) {
    memset(s, 0, sizeof *s);
    mg_ivec words = {0}, space_words = {0};
    mg_status st;
    if ((st = mg_eval_split_intern(vocab, text, &words)) ||
        (st = mg_eval_split_space_intern(vocab, text, &space_words))) {
        mg_ivec_free(&words), mg_ivec_free(&space_words);
        return st;
    }
    s->words = words.data;
    s->n_words = (int32_t)words.length;
    s->space_words = space_words.data;
    s->n_space_words = (int32_t)space_words.length;
    int64_t total = 0;
    for (int k = 1; k <= MG_MAX_N; k++) total += s->n_words >= k ? s->n_words - k + 1 : 0;
    if (total == 0) return MG_OK;
    mg_ngram *all = malloc((size_t)total * sizeof *all);
    if (!all) return mg_error(MG_ERR_NO_MEMORY, "out of memory for n-grams");
    int64_t m = 0;
    for (int k = 1; k <= MG_MAX_N; k++)
        for (int32_t i = 0; i + k <= s->n_words; i++) {
            for (int j = 0; j < MG_MAX_N; j++) all[m].w[j] = j < k ? s->words[i + j] : -1;
            m++;
        }
    qsort(all, (size_t)m, sizeof *all, mg_ngram_cmp);
    s->counts = malloc((size_t)m * sizeof *s->counts);
    s->vec = malloc((size_t)m * sizeof *s->vec);
    if (!s->counts || !s->vec) {
        free(all);
        return mg_error(MG_ERR_NO_MEMORY, "out of memory for n-gram counts");
    }
    int32_t u = 0;
    for (int64_t i = 0; i < m; i++) {
        if (u > 0 && mg_ngram_eq(&all[u - 1], &all[i])) {
            s->counts[u - 1]++;
        } else {
            all[u] = all[i];
            s->counts[u] = 1;
            u++;
        }
    }
    s->grams = all;
    s->n_grams = u;
    s->n_bigrams = s->n_words >= 2 ? s->n_words - 1 : 0;
    return MG_OK;
}

/* Count of g in a sorted sentence, 0 when absent (binary search). */
static int32_t mg_sentence_count(const mg_sentence *s, const mg_ngram *g, int32_t *index) {
    int32_t lo = 0, hi = s->n_grams - 1;
    while (lo <= hi) {
        int32_t mid = (lo + hi) / 2;
        int c = mg_ngram_cmp(&s->grams[mid], g);
        if (c == 0) {
            if (index) *index = mid;
            return s->counts[mid];
        }
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    if (index) *index = -1;
    return 0;
}

/* ---- n-gram -> document frequency (open addressing) ------------------- */
typedef struct mg_df_table {
    mg_ngram *keys;
    double *df;
    int64_t *last_image; /* to count each image once */
    size_t n_slots, count;
} mg_df_table;

static uint64_t mg_ngram_hash(const mg_ngram *g) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < MG_MAX_N; i++) {
        h ^= (uint32_t)g->w[i];
        h *= 1099511628211ull;
        h ^= h >> 29;
    }
    return h;
}

static mg_status mg_df_init(mg_df_table *t, size_t expected) {
    memset(t, 0, sizeof *t);
    size_t n = 1024;
    while (n < expected * 2) n *= 2;
    t->keys = malloc(n * sizeof *t->keys);
    t->df = calloc(n, sizeof *t->df);
    t->last_image = malloc(n * sizeof *t->last_image);
    if (!t->keys || !t->df || !t->last_image) return mg_error(MG_ERR_NO_MEMORY, "out of memory for CIDEr document frequencies");
    for (size_t i = 0; i < n; i++) t->keys[i].w[0] = INT32_MIN;
    t->n_slots = n;
    return MG_OK;
}

static void mg_df_free(mg_df_table *t) {
    free(t->keys), free(t->df), free(t->last_image);
    memset(t, 0, sizeof *t);
}

static size_t mg_df_slot(const mg_df_table *t, const mg_ngram *g) {
    size_t mask = t->n_slots - 1;
    size_t i = mg_ngram_hash(g) & mask;
    while (t->keys[i].w[0] != INT32_MIN && !mg_ngram_eq(&t->keys[i], g)) i = (i + 1) & mask;
    return i;
}

static double mg_df_get(const mg_df_table *t, const mg_ngram *g) {
    size_t i = mg_df_slot(t, g);
    return t->keys[i].w[0] == INT32_MIN ? 0.0 : t->df[i];
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

static void mg_cider_vectors(mg_sentence *s, const mg_df_table *df, double log_n_images) {
    for (int n = 0; n < MG_MAX_N; n++) s->norm[n] = 0.0;
    for (int32_t i = 0; i < s->n_grams; i++) {
        double d = log(fmax(1.0, mg_df_get(df, &s->grams[i])));
        double v = (double)s->counts[i] * (log_n_images - d);
        s->vec[i] = v;
        s->norm[mg_ngram_order(&s->grams[i]) - 1] += pow(v, 2);
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
    mg_sentence *hyp = calloc((size_t)n_images, sizeof *hyp);
    mg_sentence *ref = calloc((size_t)n_refs, sizeof *ref);
    mg_df_table df = {0};
    int32_t *row = NULL;
    double *cider = NULL, *rouge = NULL;
    if (!hyp || !ref) {
        st = mg_error(MG_ERR_NO_MEMORY, "caption: out of memory for %lld sentences", (long long)(n_images + n_refs));
        goto done;
    }
    size_t total_grams = 0;
    int32_t max_len = 1;
    for (int64_t i = 0; i < n_images; i++) {
        if ((st = mg_sentence_build(&vocab, hyps[i], &hyp[i]))) goto done;
        if (hyp[i].n_space_words > max_len) max_len = hyp[i].n_space_words;
    }
    for (int64_t r = 0; r < n_refs; r++) {
        if ((st = mg_sentence_build(&vocab, refs[r], &ref[r]))) goto done;
        total_grams += (size_t)ref[r].n_grams;
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
                int32_t c = mg_sentence_count(&ref[r], &h->grams[g], NULL);
                if (c > max_count) max_count = c;
            }
            correct[mg_ngram_order(&h->grams[g]) - 1] += h->counts[g] < max_count ? h->counts[g] : max_count;
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

    /* CIDEr-D */
    if ((st = mg_df_init(&df, total_grams))) goto done;
    for (int64_t i = 0; i < n_images; i++)
        for (int64_t r = ref_offsets[i]; r < ref_offsets[i + 1]; r++)
            for (int32_t g = 0; g < ref[r].n_grams; g++) {
                size_t slot = mg_df_slot(&df, &ref[r].grams[g]);
                if (df.keys[slot].w[0] == INT32_MIN) {
                    df.keys[slot] = ref[r].grams[g];
                    df.df[slot] = 0.0;
                    df.last_image[slot] = -1;
                    df.count++;
                }
                if (df.last_image[slot] != i) {
                    df.last_image[slot] = i;
                    df.df[slot] += 1.0;
                }
            }
    {
        double log_n = log((double)n_images);
        const double sigma = 6.0;
        for (int64_t i = 0; i < n_images; i++) mg_cider_vectors(&hyp[i], &df, log_n);
        for (int64_t r = 0; r < n_refs; r++) mg_cider_vectors(&ref[r], &df, log_n);
        for (int64_t i = 0; i < n_images; i++) {
            const mg_sentence *h = &hyp[i];
            double score[MG_MAX_N] = {0};
            for (int64_t r = ref_offsets[i]; r < ref_offsets[i + 1]; r++) {
                const mg_sentence *s = &ref[r];
                double val[MG_MAX_N] = {0};
                for (int32_t g = 0; g < h->n_grams; g++) {
                    int32_t index;
                    mg_sentence_count(s, &h->grams[g], &index);
                    double vr = index >= 0 ? s->vec[index] : 0.0;
                    double vh = h->vec[g];
                    val[mg_ngram_order(&h->grams[g]) - 1] += (vh < vr ? vh : vr) * vr;
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
    mg_df_free(&df);
    mg_intern_free(&vocab);
    return st;
}
