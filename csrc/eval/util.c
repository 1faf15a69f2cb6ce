/* Small containers shared by the eval module (strings, interning, splits). */
#include "eval/eval_internal.h"

#include <math.h>

mg_status mg_strbuf_reserve(mg_strbuf *b, size_t extra) {
    size_t need;
    if (!mg_add_size(b->length, extra + 1, &need)) return mg_error(MG_ERR_NO_MEMORY, "string too long");
    if (need <= b->capacity) return MG_OK;
    size_t capacity = b->capacity ? b->capacity : 64;
    while (capacity < need) capacity *= 2;
    char *data = realloc(b->data, capacity);
    if (!data) return mg_error(MG_ERR_NO_MEMORY, "out of memory growing a %zu-byte string", capacity);
    b->data = data;
    b->capacity = capacity;
    return MG_OK;
}

mg_status mg_strbuf_append(mg_strbuf *b, const char *s, size_t n) {
    MG_TRY(mg_strbuf_reserve(b, n));
    if (n) memcpy(b->data + b->length, s, n);
    b->length += n;
    b->data[b->length] = '\0';
    return MG_OK;
}

mg_status mg_strbuf_append_char(mg_strbuf *b, char c) { return mg_strbuf_append(b, &c, 1); }

char *mg_strbuf_take(mg_strbuf *b) {
    char *data = b->data;
    if (!data) data = calloc(1, 1);
    b->data = NULL;
    b->length = b->capacity = 0;
    return data;
}

void mg_strbuf_free(mg_strbuf *b) {
    free(b->data);
    b->data = NULL;
    b->length = b->capacity = 0;
}

char *mg_eval_strndup(const char *s, size_t n) {
    char *out = malloc(n + 1);
    if (!out) return NULL;
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

static uint64_t mg_fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

mg_status mg_intern_init(mg_intern *t, size_t expected) {
    memset(t, 0, sizeof *t);
    size_t n = 64;
    while (n < expected * 2) n *= 2;
    t->slots = malloc(n * sizeof *t->slots);
    if (!t->slots) return mg_error(MG_ERR_NO_MEMORY, "out of memory for a word table");
    memset(t->slots, 0xff, n * sizeof *t->slots);
    t->n_slots = n;
    return MG_OK;
}

void mg_intern_free(mg_intern *t) {
    for (int32_t i = 0; i < t->count; i++) free(t->keys[i]);
    free(t->keys);
    free(t->key_lengths);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

int32_t mg_intern_find(const mg_intern *t, const char *s, size_t n) {
    size_t mask = t->n_slots - 1;
    for (size_t i = mg_fnv1a(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        if (t->key_lengths[id] == n && memcmp(t->keys[id], s, n) == 0) return id;
    }
}

static mg_status mg_intern_grow(mg_intern *t) {
    size_t n = t->n_slots * 2;
    int32_t *slots = malloc(n * sizeof *slots);
    if (!slots) return mg_error(MG_ERR_NO_MEMORY, "out of memory growing a word table");
    memset(slots, 0xff, n * sizeof *slots);
    for (int32_t id = 0; id < t->count; id++) {
        size_t i = mg_fnv1a(t->keys[id], t->key_lengths[id]) & (n - 1);
        while (slots[i] >= 0) i = (i + 1) & (n - 1);
        slots[i] = id;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n;
    return MG_OK;
}

mg_status mg_intern_add(mg_intern *t, const char *s, size_t n, int32_t *id) {
    int32_t found = mg_intern_find(t, s, n);
    if (found >= 0) {
        *id = found;
        return MG_OK;
    }
    if ((size_t)(t->count + 1) * 2 > t->n_slots) MG_TRY(mg_intern_grow(t));
    if ((size_t)t->count == t->key_capacity) {
        size_t capacity = t->key_capacity ? t->key_capacity * 2 : 64;
        char **keys = realloc(t->keys, capacity * sizeof *keys);
        if (!keys) return mg_error(MG_ERR_NO_MEMORY, "out of memory for words");
        t->keys = keys;
        size_t *lengths = realloc(t->key_lengths, capacity * sizeof *lengths);
        if (!lengths) return mg_error(MG_ERR_NO_MEMORY, "out of memory for words");
        t->key_lengths = lengths;
        t->key_capacity = capacity;
    }
    char *key = mg_eval_strndup(s, n);
    if (!key) return mg_error(MG_ERR_NO_MEMORY, "out of memory for a word");
    int32_t new_id = t->count++;
    t->keys[new_id] = key;
    t->key_lengths[new_id] = n;
    size_t mask = t->n_slots - 1;
    size_t i = mg_fnv1a(s, n) & mask;
    while (t->slots[i] >= 0) i = (i + 1) & mask;
    t->slots[i] = new_id;
    *id = new_id;
    return MG_OK;
}

mg_status mg_ivec_push(mg_ivec *v, int32_t x) {
    if (v->length == v->capacity) {
        size_t capacity = v->capacity ? v->capacity * 2 : 32;
        int32_t *data = realloc(v->data, capacity * sizeof *data);
        if (!data) return mg_error(MG_ERR_NO_MEMORY, "out of memory for a token list");
        v->data = data;
        v->capacity = capacity;
    }
    v->data[v->length++] = x;
    return MG_OK;
}

void mg_ivec_free(mg_ivec *v) {
    free(v->data);
    memset(v, 0, sizeof *v);
}

/* Length of the Python str.split() whitespace character at p (0 if none):
 * ASCII \t\n\v\f\r, space, \x1c-\x1f, and U+0085, U+00A0, U+1680,
 * U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 in UTF-8. */
size_t mg_eval_py_space_len(const unsigned char *p) {
    if (mg_eval_is_space(p[0]) || (p[0] >= 0x1c && p[0] <= 0x1f)) return 1;
    if (p[0] == 0xC2 && (p[1] == 0x85 || p[1] == 0xA0)) return 2;
    if (p[0] == 0xE1 && p[1] == 0x9A && p[2] == 0x80) return 3;
    if (p[0] == 0xE2 && p[1] == 0x80 && ((p[2] >= 0x80 && p[2] <= 0x8A) || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF))
        return 3;
    if (p[0] == 0xE2 && p[1] == 0x81 && p[2] == 0x9F) return 3;
    if (p[0] == 0xE3 && p[1] == 0x80 && p[2] == 0x80) return 3;
    return 0;
}

mg_status mg_eval_split_intern(mg_intern *t, const char *s, mg_ivec *out) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t w;
        while (*p && (w = mg_eval_py_space_len(p))) p += w;
        if (!*p) break;
        const unsigned char *start = p;
        while (*p && !mg_eval_py_space_len(p)) p++;
        int32_t id;
        MG_TRY(mg_intern_add(t, (const char *)start, (size_t)(p - start), &id));
        MG_TRY(mg_ivec_push(out, id));
    }
    return MG_OK;
}

mg_status mg_eval_split_space_intern(mg_intern *t, const char *s, mg_ivec *out) {
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == ' ' || *p == '\0') {
            int32_t id;
            MG_TRY(mg_intern_add(t, start, (size_t)(p - start), &id));
            MG_TRY(mg_ivec_push(out, id));
            if (*p == '\0') break;
            start = p + 1;
        }
    }
    return MG_OK;
}

/* Shewchuk's exactly rounded summation, the algorithm behind math.fsum
 * (NLTK sums its weighted log precisions with math.fsum). */
double mg_eval_fsum(const double *values, int n) {
    double partials[64];
    int n_partials = 0;
    for (int k = 0; k < n; k++) {
        double x = values[k];
        int i = 0;
        for (int j = 0; j < n_partials; j++) {
            double y = partials[j];
            if (fabs(x) < fabs(y)) {
                double t = x;
                x = y;
                y = t;
            }
            double hi = x + y;
            double lo = y - (hi - x);
            if (lo != 0.0) partials[i++] = lo;
            x = hi;
        }
        n_partials = i;
        if (n_partials < 64) partials[n_partials++] = x;
    }
    if (n_partials == 0) return 0.0;
    double hi = partials[--n_partials];
    double lo = 0.0;
    while (n_partials > 0) {
        double x = hi;
        double y = partials[--n_partials];
        hi = x + y;
        double yr = hi - x;
        lo = y - yr;
        if (lo != 0.0) break;
    }
    /* Round-half-even correction, as CPython's math_fsum does. */
    if (n_partials > 0 && ((lo < 0.0 && partials[n_partials - 1] < 0.0) ||
                           (lo > 0.0 && partials[n_partials - 1] > 0.0))) {
        double y = lo * 2.0;
        double x = hi + y;
        double yr = x - hi;
        if (y == yr) hi = x;
    }
    return hi;
}

/* Python str.lower() for the alphabets where it keeps the UTF-8 length:
 * ASCII, Latin-1, Latin Extended-A, Greek (not Sigma: Python picks the final
 * form by context) and Cyrillic capitals. Other code points are unchanged. */
static uint32_t mg_eval_lower_cp(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17F) {
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
        return (c % 2 == 0) ? c + 1 : c;
    }
    if (c == 0x178) return 0xFF;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2 && c != 0x3A3) return c + 32;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

void mg_eval_lower_inplace(char *s) {
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        if (*p < 0x80) {
            if (*p >= 'A' && *p <= 'Z') *p = (unsigned char)(*p + 32);
            p++;
            continue;
        }
        /* two-byte sequences only (every mapped capital is below U+0800 and
         * its lower case has the same encoded length) */
        if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            uint32_t c = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
            uint32_t l = mg_eval_lower_cp(c);
            if (l != c && l < 0x800 && l >= 0x80) {
                p[0] = (unsigned char)(0xC0 | (l >> 6));
                p[1] = (unsigned char)(0x80 | (l & 0x3F));
            }
            p += 2;
            continue;
        }
        p++;
    }
}
