/* BiRD answer parsing and the VG / ROC metrics, as
 * ShawnHuang497/BiRD tests/models/BiRD/{regularization.py,
 * eval_VG_score_modality.py, eval_RO_score_modality.py} compute them. */
#include "eval/eval_internal.h"

#include <ctype.h>
#include <math.h>

void mg_eval_free(void *p) { free(p); }

/* Python str.strip() whitespace restricted to one-byte code points. */
static int mg_py_space(unsigned char c) { return mg_eval_is_space(c) || (c >= 0x1c && c <= 0x1f); }

mg_status mg_eval_bird_clean(const char *response, char **out) {
    if (!response || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "bird_clean: NULL argument");
    *out = NULL;
    mg_strbuf a = {0}, b = {0};
    mg_status st = MG_OK;
    /* (1) text before the first ".<|im_end|>", plus "." */
    const char *cut = strstr(response, ".<|im_end|>");
    if (cut) {
        if ((st = mg_strbuf_append(&a, response, (size_t)(cut - response))) ||
            (st = mg_strbuf_append_char(&a, '.')))
            goto done;
    } else if ((st = mg_strbuf_append(&a, response, strlen(response)))) {
        goto done;
    }
    /* (2) delete every "<|im_end|>\n" */
    static const char im_end_nl[] = "<|im_end|>\n";
    for (const char *p = a.data;;) {
        const char *hit = strstr(p, im_end_nl);
        size_t n = hit ? (size_t)(hit - p) : strlen(p);
        if ((st = mg_strbuf_append(&b, p, n))) goto done;
        if (!hit) break;
        p = hit + sizeof im_end_nl - 1;
    }
    /* (3) re.search(r'\n(.*?)\n', DOTALL): text between the first two '\n' */
    const char *first = strchr(b.data, '\n');
    const char *span = b.data;
    size_t span_length = b.length;
    if (first) {
        const char *second = strchr(first + 1, '\n');
        if (second) {
            span = first + 1;
            span_length = (size_t)(second - span);
        }
    }
    /* (4) delete "<|endoftext|>", (5) strip */
    mg_strbuf_free(&a);
    static const char eot[] = "<|endoftext|>";
    const char *end = span + span_length;
    for (const char *p = span; p < end;) {
        const char *hit = memmem(p, (size_t)(end - p), eot, sizeof eot - 1);
        size_t n = hit ? (size_t)(hit - p) : (size_t)(end - p);
        if ((st = mg_strbuf_append(&a, p, n))) goto done;
        if (!hit) break;
        p = hit + sizeof eot - 1;
    }
    {
        const char *s = a.data ? a.data : "";
        size_t n = a.length;
        size_t lo = 0;
        while (lo < n && mg_py_space((unsigned char)s[lo])) lo++;
        while (n > lo && mg_py_space((unsigned char)s[n - 1])) n--;
        *out = mg_eval_strndup(s + lo, n - lo);
        if (!*out) st = mg_error(MG_ERR_NO_MEMORY, "bird_clean: out of memory");
    }
done:
    mg_strbuf_free(&a);
    mg_strbuf_free(&b);
    return st;
}

/* Python float(): optional surrounding whitespace, sign, digits with single
 * underscores between digits, '.', exponent, or nan/inf/infinity. */
static bool mg_parse_py_float(const char *s, size_t n, double *out) {
    while (n && mg_py_space((unsigned char)*s)) s++, n--;
    while (n && mg_py_space((unsigned char)s[n - 1])) n--;
    if (n == 0 || n > 256) return false;
    char buf[260];
    size_t k = 0, i = 0;
    if (s[i] == '+' || s[i] == '-') buf[k++] = s[i++];
    const char *word = s + i;
    size_t word_n = n - i;
    if ((word_n == 3 && strncasecmp(word, "nan", 3) == 0) ||
        (word_n == 3 && strncasecmp(word, "inf", 3) == 0) ||
        (word_n == 8 && strncasecmp(word, "infinity", 8) == 0)) {
        memcpy(buf + k, word, word_n);
        buf[k + word_n] = '\0';
        *out = strtod(buf, NULL);
        return true;
    }
    bool digits_before = false, digits_after = false;
    for (; i < n && (isdigit((unsigned char)s[i]) || s[i] == '_'); i++) {
        if (s[i] == '_') {
            if (i == 0 || !isdigit((unsigned char)s[i - 1]) || i + 1 >= n || !isdigit((unsigned char)s[i + 1]))
                return false;
            continue;
        }
        buf[k++] = s[i];
        digits_before = true;
    }
    if (i < n && s[i] == '.') {
        buf[k++] = s[i++];
        for (; i < n && (isdigit((unsigned char)s[i]) || s[i] == '_'); i++) {
            if (s[i] == '_') {
                if (!isdigit((unsigned char)s[i - 1]) || i + 1 >= n || !isdigit((unsigned char)s[i + 1]))
                    return false;
                continue;
            }
            buf[k++] = s[i];
            digits_after = true;
        }
    }
    if (!digits_before && !digits_after) return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        buf[k++] = s[i++];
        if (i < n && (s[i] == '+' || s[i] == '-')) buf[k++] = s[i++];
        bool exp_digits = false;
        for (; i < n && (isdigit((unsigned char)s[i]) || s[i] == '_'); i++) {
            if (s[i] == '_') {
                if (!isdigit((unsigned char)s[i - 1]) || i + 1 >= n || !isdigit((unsigned char)s[i + 1]))
                    return false;
                continue;
            }
            buf[k++] = s[i];
            exp_digits = true;
        }
        if (!exp_digits) return false;
    }
    if (i != n) return false;
    buf[k] = '\0';
    *out = strtod(buf, NULL);
    return true;
}

/* get_float_bboxs: delete '(' and ')', split on ',', float() each piece.
 * Returns the number of pieces parsed (-1 when a piece is not a float). */
static int mg_parse_box_text(const char *s, size_t n, double values[4]) {
    char buf[512];
    size_t k = 0;
    for (size_t i = 0; i < n && k < sizeof buf - 1; i++)
        if (s[i] != '(' && s[i] != ')') buf[k++] = s[i];
    if (k == sizeof buf - 1) return -1;
    buf[k] = '\0';
    int count = 0;
    const char *p = buf;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        double v;
        if (!mg_parse_py_float(p, len, &v)) return -1;
        if (count < 4) values[count] = v;
        count++;
        if (!comma) break;
        p = comma + 1;
    }
    return count;
}

typedef struct mg_box_list {
    mg_eval_box *items;
    int64_t n, capacity;
} mg_box_list;

static mg_status mg_box_push(mg_box_list *l, mg_eval_box b) {
    if (l->n == l->capacity) {
        int64_t capacity = l->capacity ? l->capacity * 2 : 4;
        mg_eval_box *items = realloc(l->items, (size_t)capacity * sizeof *items);
        if (!items) return mg_error(MG_ERR_NO_MEMORY, "out of memory for boxes");
        l->items = items;
        l->capacity = capacity;
    }
    l->items[l->n++] = b;
    return MG_OK;
}

/* Pieces of the box text that failed float(): the reference crashes on a GT
 * box like that and scores a predicted one 0. Wrong arity (not 4 numbers)
 * scores 0 in both roles (numpy raises inside the script's try). */
typedef enum { MG_BOX_OK = 0, MG_BOX_ARITY = 1, MG_BOX_UNPARSABLE = 2 } mg_box_kind;

static mg_eval_box mg_box_from_text(const char *s, size_t n, mg_box_kind *kind) {
    double v[4];
    int count = mg_parse_box_text(s, n, v);
    mg_eval_box box = {NAN, NAN, NAN, NAN};
    if (count < 0) {
        *kind = MG_BOX_UNPARSABLE;
    } else if (count != 4) {
        *kind = MG_BOX_ARITY;
    } else {
        box.x1 = v[0], box.y1 = v[1], box.x2 = v[2], box.y2 = v[3];
        *kind = MG_BOX_OK;
    }
    return box;
}

/* re.findall(r"<box>(.*?)</box>"): '.' excludes '\n' only. */
static mg_status mg_find_tagged(const char *text, mg_box_list *boxes, int64_t *n_invalid,
                                int64_t *n_unparsable) {
    const char *p = text;
    for (;;) {
        const char *open = strstr(p, "<box>");
        if (!open) break;
        const char *content = open + 5;
        const char *close = strstr(content, "</box>");
        const char *newline = strchr(content, '\n');
        if (!close) break;
        if (newline && newline < close) {
            /* no match starting here; the regex retries at the next '<box>' */
            p = open + 1;
            continue;
        }
        mg_box_kind kind;
        mg_eval_box box = mg_box_from_text(content, (size_t)(close - content), &kind);
        if (kind != MG_BOX_OK) (*n_invalid)++;
        if (kind == MG_BOX_UNPARSABLE && n_unparsable) (*n_unparsable)++;
        MG_TRY(mg_box_push(boxes, box));
        p = close + 6;
    }
    return MG_OK;
}

static size_t mg_digits(const char *p) {
    size_t n = 0;
    while (isdigit((unsigned char)p[n])) n++;
    return n;
}

/* re.findall(r'\(\d+,\d+\),\(\d+,\d+\)') */
static mg_status mg_find_bare(const char *text, mg_box_list *boxes) {
    for (const char *p = text; *p;) {
        const char *q = p;
        size_t d;
        bool ok = *q == '(';
        for (int pair = 0; ok && pair < 2; pair++) {
            if (pair == 1) ok = q[0] == ',' && q[1] == '(', q += 2;
            else q++;
            if (!ok) break;
            ok = (d = mg_digits(q)) > 0, q += d;
            ok = ok && *q == ',', q++;
            ok = ok && (d = mg_digits(q)) > 0, q += ok ? d : 0;
            ok = ok && *q == ')', q++;
        }
        if (ok) {
            mg_box_kind kind;
            MG_TRY(mg_box_push(boxes, mg_box_from_text(p, (size_t)(q - p), &kind)));
            p = q;
        } else {
            p++;
        }
    }
    return MG_OK;
}

static mg_status mg_extract(const char *text, bool bare_fallback, mg_box_list *list,
                            int64_t *n_invalid, int64_t *n_unparsable, bool *used_fallback) {
    *n_invalid = 0;
    *used_fallback = false;
    MG_TRY(mg_find_tagged(text, list, n_invalid, n_unparsable));
    if (list->n == 0 && bare_fallback) {
        MG_TRY(mg_find_bare(text, list));
        *used_fallback = list->n > 0;
    }
    return MG_OK;
}

mg_status mg_eval_extract_boxes(const char *text, bool bare_fallback, mg_eval_box **boxes,
                                int64_t *n_boxes, int64_t *n_invalid, bool *used_fallback) {
    if (!text || !boxes || !n_boxes) return mg_error(MG_ERR_INVALID_ARGUMENT, "extract_boxes: NULL argument");
    mg_box_list list = {0};
    int64_t invalid = 0;
    bool fallback = false;
    mg_status st = mg_extract(text, bare_fallback, &list, &invalid, NULL, &fallback);
    if (st) {
        free(list.items);
        return st;
    }
    *boxes = list.items;
    *n_boxes = list.n;
    if (n_invalid) *n_invalid = invalid;
    if (used_fallback) *used_fallback = fallback;
    return MG_OK;
}

/* box_iou(predicted, target) of the script, element for element: numpy's
 * maximum/minimum propagate NaN, clip keeps it. */
double mg_eval_box_iou(const mg_eval_box *pred, const mg_eval_box *gt) {
    double area_pred = (pred->x2 - pred->x1) * (pred->y2 - pred->y1);
    double area_gt = (gt->x2 - gt->x1) * (gt->y2 - gt->y1);
    double lt_x = (isnan(pred->x1) || isnan(gt->x1)) ? NAN : fmax(pred->x1, gt->x1);
    double lt_y = (isnan(pred->y1) || isnan(gt->y1)) ? NAN : fmax(pred->y1, gt->y1);
    double rb_x = (isnan(pred->x2) || isnan(gt->x2)) ? NAN : fmin(pred->x2, gt->x2);
    double rb_y = (isnan(pred->y2) || isnan(gt->y2)) ? NAN : fmin(pred->y2, gt->y2);
    double w = rb_x - lt_x, h = rb_y - lt_y;
    if (w < 0) w = 0;
    if (h < 0) h = 0;
    double inter = w * h;
    double uni = area_pred + area_gt - inter;
    if (uni == 0.0) return NAN; /* numpy: 0/0 -> nan, x/0 -> inf; neither is > t below 1 */
    return inter / uni;
}

mg_status mg_eval_vg(const char *const *annotations, const char *const *responses, int64_t n,
                     bool clean_response, const double *thresholds, int n_thresholds,
                     mg_eval_vg_record *out) {
    if (n < 0 || (n > 0 && (!annotations || !responses || !out)))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "vg: NULL arrays");
    if (n_thresholds < 1 || n_thresholds > MG_EVAL_VG_MAX_THRESHOLDS || !thresholds)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "vg: %d thresholds (1..%d allowed)", n_thresholds,
                        MG_EVAL_VG_MAX_THRESHOLDS);
    for (int t = 0; t < n_thresholds; t++)
        if (!(thresholds[t] >= 0.0 && thresholds[t] <= 1.0))
            return mg_error(MG_ERR_INVALID_ARGUMENT, "vg: threshold %g outside [0, 1]", thresholds[t]);
    mg_status st = MG_OK;
    for (int64_t i = 0; i < n; i++) {
        mg_eval_vg_record *r = &out[i];
        memset(r, 0, sizeof *r);
        if (!annotations[i] || !responses[i])
            return mg_error(MG_ERR_INVALID_ARGUMENT, "vg: record %lld has a NULL string", (long long)i);
        char *cleaned = NULL;
        const char *response = responses[i];
        if (clean_response) {
            MG_TRY(mg_eval_bird_clean(responses[i], &cleaned));
            response = cleaned;
        }
        mg_box_list gt = {0}, pred = {0};
        int64_t gt_invalid = 0, gt_unparsable = 0, pred_invalid = 0;
        bool gt_fallback = false, fallback = false;
        if ((st = mg_extract(annotations[i], false, &gt, &gt_invalid, &gt_unparsable, &gt_fallback)) ||
            (st = mg_extract(response, true, &pred, &pred_invalid, NULL, &fallback))) {
            free(gt.items), free(pred.items), free(cleaned);
            return st;
        }
        r->n_gt = (int32_t)gt.n;
        r->n_gt_invalid = (int32_t)gt_unparsable;
        r->n_pred = (int32_t)pred.n;
        r->n_pred_invalid = (int32_t)pred_invalid;
        r->used_fallback = fallback;
        for (int64_t g = 0; g < gt.n; g++) {
            double best = 0.0;
            bool hit[MG_EVAL_VG_MAX_THRESHOLDS] = {false};
            for (int64_t p = 0; p < pred.n; p++) {
                double iou = mg_eval_box_iou(&pred.items[p], &gt.items[g]);
                if (iou > best) best = iou; /* NaN never wins */
                for (int t = 0; t < n_thresholds; t++)
                    if (iou > thresholds[t]) hit[t] = true;
            }
            if (best > 1.0) best = 1.0; /* inf from a zero-area union never occurs for real boxes */
            r->best_iou_sum += best;
            for (int t = 0; t < n_thresholds; t++) r->hits[t] += hit[t];
        }
        free(gt.items), free(pred.items), free(cleaned);
    }
    return MG_OK;
}


/* Lower-case, collapse whitespace runs to one space, strip, drop one final '.'.
 * One allocation (the result is never longer than the input). */
static char *mg_roc_canonical(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t k = 0;
    bool pending_space = false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (mg_py_space(*p)) {
            pending_space = k > 0;
            continue;
        }
        if (pending_space) out[k++] = ' ';
        pending_space = false;
        out[k++] = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    }
    if (k && out[k - 1] == '.') k--;
    out[k] = '\0';
    return out;
}

mg_status mg_eval_roc(const char *const *annotations, const char *const *responses, int64_t n,
                      bool clean_response, uint8_t *correct, uint8_t *exact) {
    if (n < 0 || (n > 0 && (!annotations || !responses)))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "roc: NULL arrays");
    for (int64_t i = 0; i < n; i++) {
        if (!annotations[i] || !responses[i])
            return mg_error(MG_ERR_INVALID_ARGUMENT, "roc: record %lld has a NULL string", (long long)i);
        char *response = NULL;
        if (clean_response) {
            MG_TRY(mg_eval_bird_clean(responses[i], &response));
        } else if (!(response = mg_eval_strndup(responses[i], strlen(responses[i])))) {
            return mg_error(MG_ERR_NO_MEMORY, "roc: out of memory");
        }
        char *annotation = mg_eval_strndup(annotations[i], strlen(annotations[i]));
        if (!annotation) {
            free(response);
            return mg_error(MG_ERR_NO_MEMORY, "roc: out of memory");
        }
        mg_eval_lower_inplace(response); /* str.lower() */
        mg_eval_lower_inplace(annotation);
        if (correct) {
            /* annotation.split(" "): empty tokens are substrings of anything */
            bool ok = true;
            for (char *start = annotation;;) {
                char *space = strchr(start, ' ');
                if (space) *space = '\0';
                if (*start && !strstr(response, start)) ok = false;
                if (space) *space = ' ';
                if (!space || !ok) break;
                start = space + 1;
            }
            correct[i] = ok;
        }
        if (exact) {
            char *a = mg_roc_canonical(annotation), *b = mg_roc_canonical(response);
            if (!a || !b) {
                free(a), free(b), free(annotation), free(response);
                return mg_error(MG_ERR_NO_MEMORY, "roc: out of memory");
            }
            exact[i] = strcmp(a, b) == 0;
            free(a), free(b);
        }
        free(annotation);
        free(response);
    }
    return MG_OK;
}
