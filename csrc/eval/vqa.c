/* MedPLIB / LLaVA-Med VQA metrics (ShawnHuang497/MedPLIB model/eval/
 * {cal_metric.py, evaluate_metrics.py, glossary.py}) and NLTK's
 * sentence_bleu without smoothing. */
#include "eval/eval_internal.h"

#include <math.h>
#include <float.h>

/* glossary.punct, in its order (the order matters: each character is
 * deleted or replaced by a space in turn). */
static const char VQA_PUNCT[] = ";/[]\"{}()=+\\_-><@`,?!";

/* glossary.manual_map (number words) and the lower-case keys of
 * glossary.contractions (keys with capitals never match after the text
 * is lower-cased). */
static const char *const VQA_NUMBERS[][2] = {
    {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"}, {"three", "3"}, {"four", "4"},
    {"five", "5"}, {"six", "6"}, {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"},
};

static const char *const VQA_CONTRACTIONS[][2] = {
    {"aint", "ain't"}, {"arent", "aren't"}, {"cant", "can't"}, {"couldve", "could've"}, {"couldnt", "couldn't"},
    {"couldn'tve", "couldn't've"}, {"couldnt've", "couldn't've"}, {"didnt", "didn't"}, {"doesnt", "doesn't"},
    {"dont", "don't"}, {"hadnt", "hadn't"}, {"hadnt've", "hadn't've"}, {"hadn'tve", "hadn't've"},
    {"hasnt", "hasn't"}, {"havent", "haven't"}, {"hed", "he'd"}, {"hed've", "he'd've"}, {"he'dve", "he'd've"},
    {"hes", "he's"}, {"howd", "how'd"}, {"howll", "how'll"}, {"hows", "how's"}, {"isnt", "isn't"},
    {"itd", "it'd"}, {"itd've", "it'd've"}, {"it'dve", "it'd've"}, {"itll", "it'll"}, {"let's", "let's"},
    {"maam", "ma'am"}, {"mightnt", "mightn't"}, {"mightnt've", "mightn't've"}, {"mightn'tve", "mightn't've"},
    {"mightve", "might've"}, {"mustnt", "mustn't"}, {"mustve", "must've"}, {"neednt", "needn't"},
    {"notve", "not've"}, {"oclock", "o'clock"}, {"oughtnt", "oughtn't"}, {"ow's'at", "'ow's'at"},
    {"'ows'at", "'ow's'at"}, {"'ow'sat", "'ow's'at"}, {"shant", "shan't"}, {"shed've", "she'd've"},
    {"she'dve", "she'd've"}, {"she's", "she's"}, {"shouldve", "should've"}, {"shouldnt", "shouldn't"},
    {"shouldnt've", "shouldn't've"}, {"shouldn'tve", "shouldn't've"}, {"somebody'd", "somebodyd"},
    {"somebodyd've", "somebody'd've"}, {"somebody'dve", "somebody'd've"}, {"somebodyll", "somebody'll"},
    {"somebodys", "somebody's"}, {"someoned", "someone'd"}, {"someoned've", "someone'd've"},
    {"someone'dve", "someone'd've"}, {"someonell", "someone'll"}, {"someones", "someone's"},
    {"somethingd", "something'd"}, {"somethingd've", "something'd've"}, {"something'dve", "something'd've"},
    {"somethingll", "something'll"}, {"thats", "that's"}, {"thered", "there'd"}, {"thered've", "there'd've"},
    {"there'dve", "there'd've"}, {"therere", "there're"}, {"theres", "there's"}, {"theyd", "they'd"},
    {"theyd've", "they'd've"}, {"they'dve", "they'd've"}, {"theyll", "they'll"}, {"theyre", "they're"},
    {"theyve", "they've"}, {"twas", "'twas"}, {"wasnt", "wasn't"}, {"wed've", "we'd've"}, {"we'dve", "we'd've"},
    {"weve", "we've"}, {"werent", "weren't"}, {"whatll", "what'll"}, {"whatre", "what're"}, {"whats", "what's"},
    {"whatve", "what've"}, {"whens", "when's"}, {"whered", "where'd"}, {"wheres", "where's"},
    {"whereve", "where've"}, {"whod", "who'd"}, {"whod've", "who'd've"}, {"who'dve", "who'd've"},
    {"wholl", "who'll"}, {"whos", "who's"}, {"whove", "who've"}, {"whyll", "why'll"}, {"whyre", "why're"},
    {"whys", "why's"}, {"wont", "won't"}, {"wouldve", "would've"}, {"wouldnt", "wouldn't"},
    {"wouldnt've", "wouldn't've"}, {"wouldn'tve", "wouldn't've"}, {"yall", "y'all"}, {"yall'll", "y'all'll"},
    {"y'allll", "y'all'll"}, {"yall'd've", "y'all'd've"}, {"y'alld've", "y'all'd've"}, {"y'all'dve", "y'all'd've"},
    {"youd", "you'd"}, {"youd've", "you'd've"}, {"you'dve", "you'd've"}, {"youll", "you'll"},
    {"youre", "you're"}, {"youve", "you've"},
};

static bool mg_is_digit(char c) { return c >= '0' && c <= '9'; }

/* normalize_word(token) for an already lower-cased token. */
static mg_status mg_vqa_normalize_once(const char *token, char **out) {
    size_t n = strlen(token);
    /* re.search(r"(\d)(\,)(\d)", token) on the original string */
    bool digit_comma_digit = false;
    for (size_t i = 1; i + 1 < n; i++)
        if (token[i] == ',' && mg_is_digit(token[i - 1]) && mg_is_digit(token[i + 1])) digit_comma_digit = true;
    char *work = mg_eval_strndup(token, n);
    if (!work) return mg_error(MG_ERR_NO_MEMORY, "vqa: out of memory");
    for (const char *p = VQA_PUNCT; *p; p++) {
        char c = *p;
        bool touches_space = false;
        for (size_t i = 0; i < n; i++)
            if (token[i] == c && ((i + 1 < n && token[i + 1] == ' ') || (i > 0 && token[i - 1] == ' '))) touches_space = true;
        size_t k = 0;
        for (size_t i = 0; work[i]; i++) {
            if (work[i] != c) work[k++] = work[i];
            else if (!(touches_space || digit_comma_digit)) work[k++] = ' ';
        }
        work[k] = '\0';
    }
    /* period_strip.sub("", s, re.UNICODE): at most 32 '.' not followed by a
     * digit are deleted (re.UNICODE lands in the count argument). */
    {
        size_t k = 0;
        int deleted = 0;
        for (size_t i = 0; work[i]; i++) {
            if (work[i] == '.' && deleted < 32 && !mg_is_digit(work[i + 1])) {
                deleted++;
                continue;
            }
            work[k++] = work[i];
        }
        work[k] = '\0';
    }
    mg_strbuf b = {0};
    mg_status st = MG_OK;
    bool first = true;
    for (char *p = work; *p && !st;) {
        size_t space;
        while (*p && (space = mg_eval_py_space_len((const unsigned char *)p))) p += space; /* str.split() */
        if (!*p) break;
        char *start = p;
        while (*p && !mg_eval_py_space_len((const unsigned char *)p)) {
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
            p++;
        }
        size_t len = (size_t)(p - start);
        const char *word = start;
        for (size_t i = 0; i < sizeof VQA_NUMBERS / sizeof VQA_NUMBERS[0]; i++)
            if (strlen(VQA_NUMBERS[i][0]) == len && memcmp(VQA_NUMBERS[i][0], start, len) == 0) {
                word = VQA_NUMBERS[i][1];
                len = strlen(word);
                break;
            }
        if ((len == 1 && word[0] == 'a') || (len == 2 && memcmp(word, "an", 2) == 0) || (len == 3 && memcmp(word, "the", 3) == 0))
            continue;
        for (size_t i = 0; i < sizeof VQA_CONTRACTIONS / sizeof VQA_CONTRACTIONS[0]; i++)
            if (strlen(VQA_CONTRACTIONS[i][0]) == len && memcmp(VQA_CONTRACTIONS[i][0], word, len) == 0) {
                word = VQA_CONTRACTIONS[i][1];
                len = strlen(word);
                break;
            }
        if (!first) st = mg_strbuf_append_char(&b, ' ');
        /* token.replace(",", "") after the join */
        for (size_t i = 0; i < len && !st; i++)
            if (word[i] != ',') st = mg_strbuf_append_char(&b, word[i]);
        first = false;
    }
    free(work);
    if (st) {
        mg_strbuf_free(&b);
        return st;
    }
    *out = mg_strbuf_take(&b);
    return MG_OK;
}

/* str(x).lower() */
static char *mg_ascii_lower_copy(const char *s) {
    char *c = mg_eval_strndup(s, strlen(s));
    if (c) mg_eval_lower_inplace(c);
    return c;
}

mg_status mg_eval_vqa_normalize(const char *text, char **out) {
    if (!text || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "vqa_normalize: NULL argument");
    char *lower = mg_ascii_lower_copy(text);
    if (!lower) return mg_error(MG_ERR_NO_MEMORY, "vqa: out of memory");
    mg_status st = mg_vqa_normalize_once(lower, out);
    free(lower);
    return st;
}

/* NLTK corpus_bleu with one hypothesis, no smoothing (method0). */
static double mg_nltk_bleu(mg_intern *vocab, const mg_ivec *refs, int n_refs, const mg_ivec *hyp,
                           const double *weights, int n_weights) {
    int64_t numerators[8] = {0}, denominators[8] = {0};
    int max_n = n_weights;
    for (int n = 1; n <= max_n; n++) {
        int64_t total = 0, clipped = 0;
        int64_t count_h = hyp->length >= (size_t)n ? (int64_t)hyp->length - n + 1 : 0;
        for (int64_t i = 0; i < count_h; i++) {
            /* count each distinct n-gram once, at its first occurrence */
            bool seen = false;
            for (int64_t j = 0; j < i && !seen; j++) seen = memcmp(&hyp->data[j], &hyp->data[i], (size_t)n * 4) == 0;
            total++;
            if (seen) continue;
            int64_t count = 0;
            for (int64_t j = i; j < count_h; j++) count += memcmp(&hyp->data[j], &hyp->data[i], (size_t)n * 4) == 0;
            int64_t max_ref = 0;
            for (int r = 0; r < n_refs; r++) {
                int64_t count_r = refs[r].length >= (size_t)n ? (int64_t)refs[r].length - n + 1 : 0, c = 0;
                for (int64_t j = 0; j < count_r; j++) c += memcmp(&refs[r].data[j], &hyp->data[i], (size_t)n * 4) == 0;
                if (c > max_ref) max_ref = c;
            }
            clipped += count < max_ref ? count : max_ref;
        }
        numerators[n - 1] = clipped;
        denominators[n - 1] = total > 1 ? total : 1;
    }
    (void)vocab;
    int64_t hyp_len = (int64_t)hyp->length, closest = -1;
    for (int r = 0; r < n_refs; r++) {
        int64_t l = (int64_t)refs[r].length;
        if (closest < 0 || llabs(l - hyp_len) < llabs(closest - hyp_len) ||
            (llabs(l - hyp_len) == llabs(closest - hyp_len) && l < closest))
            closest = l;
    }
    double bp = hyp_len > closest ? 1.0 : hyp_len == 0 ? 0.0 : exp(1.0 - (double)closest / (double)hyp_len);
    if (numerators[0] == 0) return 0.0;
    double terms[8];
    int n_terms = 0;
    for (int n = 0; n < max_n; n++) {
        double p = numerators[n] != 0 ? (double)numerators[n] / (double)denominators[n] : DBL_MIN;
        terms[n_terms++] = weights[n] * log(p);
    }
    return bp * exp(mg_eval_fsum(terms, n_terms));
}

mg_status mg_eval_sentence_bleu(const char *const *references, int n_references, const char *hypothesis,
                                const double *weights, int n_weights, double *out) {
    if (!references || n_references < 1 || !hypothesis || !weights || !out)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "sentence_bleu: needs at least one reference, a hypothesis and weights");
    if (n_weights < 1 || n_weights > 8) return mg_error(MG_ERR_INVALID_ARGUMENT, "sentence_bleu: %d weights (1..8 allowed)", n_weights);
    mg_intern vocab;
    MG_TRY(mg_intern_init(&vocab, 64));
    mg_ivec *refs = calloc((size_t)n_references, sizeof *refs);
    mg_ivec hyp = {0};
    mg_status st = refs ? MG_OK : mg_error(MG_ERR_NO_MEMORY, "sentence_bleu: out of memory");
    for (int r = 0; r < n_references && !st; r++) {
        if (!references[r]) st = mg_error(MG_ERR_INVALID_ARGUMENT, "sentence_bleu: reference %d is NULL", r);
        else st = mg_eval_split_intern(&vocab, references[r], &refs[r]);
    }
    if (!st) st = mg_eval_split_intern(&vocab, hypothesis, &hyp);
    if (!st) *out = mg_nltk_bleu(&vocab, refs, n_references, &hyp, weights, n_weights);
    if (refs)
        for (int r = 0; r < n_references; r++) mg_ivec_free(&refs[r]);
    free(refs);
    mg_ivec_free(&hyp);
    mg_intern_free(&vocab);
    return st;
}

typedef struct mg_bag {
    int32_t *ids, *counts;
    int32_t n, total;
} mg_bag;

static mg_status mg_bag_make(mg_intern *vocab, const char *s, mg_bag *bag) {
    memset(bag, 0, sizeof *bag);
    mg_ivec ids = {0};
    MG_TRY(mg_eval_split_intern(vocab, s, &ids));
    bag->ids = malloc((ids.length + 1) * sizeof *bag->ids);
    bag->counts = malloc((ids.length + 1) * sizeof *bag->counts);
    if (!bag->ids || !bag->counts) {
        mg_ivec_free(&ids);
        return mg_error(MG_ERR_NO_MEMORY, "vqa: out of memory");
    }
    for (size_t i = 0; i < ids.length; i++) {
        int32_t k = 0;
        while (k < bag->n && bag->ids[k] != ids.data[i]) k++;
        if (k == bag->n) bag->ids[bag->n] = ids.data[i], bag->counts[bag->n++] = 0;
        bag->counts[k]++;
    }
    bag->total = (int32_t)ids.length;
    mg_ivec_free(&ids);
    return MG_OK;
}

static int32_t mg_bag_count(const mg_bag *b, int32_t id) {
    for (int32_t i = 0; i < b->n; i++)
        if (b->ids[i] == id) return b->counts[i];
    return 0;
}

static void mg_bag_free(mg_bag *b) { free(b->ids), free(b->counts); }

static mg_status mg_vqa_one(const char *prediction, const char *ground_truth, mg_eval_vqa_record *r) {
    memset(r, 0, sizeof *r);
    char *pred_lower = mg_ascii_lower_copy(prediction), *gt_lower = mg_ascii_lower_copy(ground_truth);
    char *pred = NULL, *gt = NULL, *pred2 = NULL, *gt2 = NULL;
    mg_intern vocab = {0};
    mg_bag cb = {0}, rb = {0};
    mg_status st = (pred_lower && gt_lower) ? MG_OK : mg_error(MG_ERR_NO_MEMORY, "vqa: out of memory");
    if (!st) st = mg_vqa_normalize_once(pred_lower, &pred);
    if (!st) st = mg_vqa_normalize_once(gt_lower, &gt);
    if (st) goto done;
    r->closed_hit = strcmp(pred, gt) == 0;
    /* calculate_f1score / calculate_exactmatch normalise once more */
    if ((st = mg_vqa_normalize_once(pred, &pred2)) || (st = mg_vqa_normalize_once(gt, &gt2))) goto done;
    if ((st = mg_intern_init(&vocab, 64))) goto done;
    if ((st = mg_bag_make(&vocab, pred2, &cb)) || (st = mg_bag_make(&vocab, gt2, &rb))) goto done;
    {
        int64_t tp = 0, fp = 0, fn = 0, found = 0;
        for (int32_t i = 0; i < cb.n; i++) {
            if (mg_bag_count(&rb, cb.ids[i])) tp += cb.counts[i];
            else fp += cb.counts[i];
        }
        for (int32_t i = 0; i < rb.n; i++) {
            if (!mg_bag_count(&cb, rb.ids[i])) fn += rb.counts[i];
            else found++;
        }
        if (cb.n > 0 && rb.n > 0 && tp > 0) {
            double precision = (double)tp / (double)(tp + fp), recall = (double)tp / (double)(tp + fn);
            r->precision = precision;
            r->recall = recall;
            r->f1 = 2 * precision * recall / (precision + recall);
        }
        r->exact = cb.total ? (double)found / (double)cb.total : 0.0;
    }
    {
        static const double weights[4][4] = {{0.25, 0.25, 0.25, 0.25}, {1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};
        const char *ref_list[1] = {gt};
        for (int k = 0; k < 4 && !st; k++) st = mg_eval_sentence_bleu(ref_list, 1, pred, weights[k], 4, &r->bleu[k]);
    }
done:
    mg_bag_free(&cb), mg_bag_free(&rb);
    if (vocab.slots) mg_intern_free(&vocab);
    free(pred_lower), free(gt_lower), free(pred), free(gt), free(pred2), free(gt2);
    return st;
}

mg_status mg_eval_vqa(const char *const *predictions, const char *const *ground_truths, int64_t n,
                      mg_eval_vqa_record *out) {
    if (n < 0 || (n > 0 && (!predictions || !ground_truths || !out)))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "vqa: NULL arrays");
    for (int64_t i = 0; i < n; i++) {
        if (!predictions[i] || !ground_truths[i])
            return mg_error(MG_ERR_INVALID_ARGUMENT, "vqa: record %lld has a NULL string", (long long)i);
        mg_status st = mg_vqa_one(predictions[i], ground_truths[i], &out[i]);
        if (st) return mg_error_prefix(st, "vqa record %lld", (long long)i);
    }
    return MG_OK;
}
