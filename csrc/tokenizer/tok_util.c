/* Small containers and UTF-8 helpers for the tokenizers: a string table with
 * a hash index, a pair table for BPE merges, growable buffers, and the UTF-8
 * rules the reference decoders apply. */
#include "tokenizer/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- hashing */

uint64_t mg_tok_hash_bytes(const uint8_t *bytes, size_t n) {
    /* 8 bytes at a time, then the tail: tokens are short, so this matters
     * more than hash quality beyond "no obvious clustering". */
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0x100000001b3ULL);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, bytes + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    for (size_t k = 0; i < n; i++, k++) tail |= (uint64_t)bytes[i] << (8 * k);
    h = (h ^ tail) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 32;
    return h;
}

/* ---------------------------------------------------------- string table */

mg_status mg_tok_strings_append(mg_tok_strings *s, const uint8_t *bytes, size_t n) {
    if (s->n + 2 > s->capacity) {
        int32_t capacity = s->capacity ? s->capacity * 2 : 1024;
        uint64_t *offsets = realloc(s->offsets, (size_t)(capacity + 1) * sizeof *offsets);
        if (!offsets) return mg_error(MG_ERR_NO_MEMORY, "tokenizer: out of memory for %d tokens", capacity);
        s->offsets = offsets;
        s->capacity = capacity;
    }
    if (s->blob_size + n + 1 > s->blob_capacity) {
        size_t capacity = s->blob_capacity ? s->blob_capacity : 4096;
        while (capacity < s->blob_size + n + 1) capacity *= 2;
        uint8_t *blob = realloc(s->blob, capacity);
        if (!blob) return mg_error(MG_ERR_NO_MEMORY, "tokenizer: out of memory (%zu bytes)", capacity);
        s->blob = blob;
        s->blob_capacity = capacity;
    }
    if (s->n == 0) s->offsets[0] = 0;
    if (n) memcpy(s->blob + s->blob_size, bytes, n);
    s->blob_size += n;
    s->n++;
    s->offsets[s->n] = s->blob_size;
    return MG_OK;
}

#define SLOT_EMPTY UINT64_MAX

static void strings_insert_slot(mg_tok_strings *s, int32_t id, uint64_t h) {
    uint64_t i = h & s->slot_mask;
    while (s->slots[i] != SLOT_EMPTY) i = (i + 1) & s->slot_mask;
    s->slots[i] = (h >> 32) << 32 | (uint32_t)id;
}

mg_status mg_tok_strings_index(mg_tok_strings *s, int32_t *dup_a, int32_t *dup_b) {
    uint64_t size = 16;
    while (size < (uint64_t)s->n * 2 + 16) size *= 2;
    free(s->slots);
    s->slots = malloc(size * sizeof *s->slots);
    if (!s->slots)
        return mg_error(MG_ERR_NO_MEMORY, "tokenizer: out of memory for a %llu-slot index",
                        (unsigned long long)size);
    memset(s->slots, 0xff, size * sizeof *s->slots);
    s->slot_mask = size - 1;
    for (int32_t id = 0; id < s->n; id++) {
        size_t n;
        const uint8_t *bytes = mg_tok_strings_get(s, id, &n);
        if (n == 0) continue; /* holes have no text to look up */
        int32_t existing = mg_tok_strings_find(s, bytes, n);
        if (existing >= 0) {
            if (dup_a) *dup_a = existing;
            if (dup_b) *dup_b = id;
            return MG_ERR_FORMAT; /* the caller words the message */
        }
        strings_insert_slot(s, id, mg_tok_hash_bytes(bytes, n));
    }
    s->n_indexed = s->n;
    return MG_OK;
}

mg_status mg_tok_strings_index_last(mg_tok_strings *s) {
    if (!s->slots || (uint64_t)s->n * 2 + 16 > s->slot_mask + 1) return mg_tok_strings_index(s, NULL, NULL);
    int32_t id = s->n - 1;
    size_t n;
    const uint8_t *bytes = mg_tok_strings_get(s, id, &n);
    if (n) strings_insert_slot(s, id, mg_tok_hash_bytes(bytes, n));
    s->n_indexed = s->n;
    return MG_OK;
}

int32_t mg_tok_strings_find(const mg_tok_strings *s, const uint8_t *bytes, size_t n) {
    if (!s->slots) return -1;
    uint64_t h = mg_tok_hash_bytes(bytes, n);
    uint64_t tag = h >> 32;
    uint64_t i = h & s->slot_mask;
    for (;;) {
        uint64_t slot = s->slots[i];
        if (slot == SLOT_EMPTY) return -1;
        if (slot >> 32 == tag) {
            int32_t id = (int32_t)(uint32_t)slot;
            size_t m;
            const uint8_t *other = mg_tok_strings_get(s, id, &m);
            if (m == n && memcmp(other, bytes, n) == 0) return id;
        }
        i = (i + 1) & s->slot_mask;
    }
}

void mg_tok_strings_free(mg_tok_strings *s) {
    free(s->blob);
    free(s->offsets);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ pair table */

mg_status mg_tok_pairs_init(mg_tok_pairs *p, uint64_t expected) {
    uint64_t size = 16;
    while (size < expected * 2 + 16) size *= 2;
    p->slots = calloc(size, sizeof *p->slots);
    if (!p->slots) {
        mg_tok_pairs_free(p);
        return mg_error(MG_ERR_NO_MEMORY, "tokenizer: out of memory for %llu merges",
                        (unsigned long long)expected);
    }
    p->mask = size - 1;
    p->count = 0;
    return MG_OK;
}

mg_status mg_tok_pairs_put(mg_tok_pairs *p, int32_t left, int32_t right, int32_t rank,
                           int32_t merged) {
    if ((p->count + 1) * 2 > p->mask + 1) {
        /* grow: rehash into a table twice the size */
        mg_tok_pairs bigger = {0};
        MG_TRY(mg_tok_pairs_init(&bigger, (p->mask + 1)));
        for (uint64_t i = 0; i <= p->mask; i++) {
            if (!p->slots[i].key) continue;
            uint64_t j = mg_tok_hash_u64(p->slots[i].key) & bigger.mask;
            while (bigger.slots[j].key) j = (j + 1) & bigger.mask;
            bigger.slots[j] = p->slots[i];
            bigger.count++;
        }
        mg_tok_pairs_free(p);
        *p = bigger;
    }
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    uint64_t i = mg_tok_hash_u64(key) & p->mask;
    while (p->slots[i].key) {
        if (p->slots[i].key == key) return MG_OK; /* first (highest priority) wins */
        i = (i + 1) & p->mask;
    }
    p->slots[i] = (mg_tok_pair_slot){key, rank, merged};
    p->count++;
    return MG_OK;
}

void mg_tok_pairs_free(mg_tok_pairs *p) {
    free(p->slots);
    memset(p, 0, sizeof *p);
}

/* --------------------------------------------------------------- buffers */

mg_status mg_tok_bytes_append(mg_tok_bytes *b, const void *bytes, size_t n) {
    if (b->size + n + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 256;
        while (capacity < b->size + n + 1) {
            if (capacity > SIZE_MAX / 2) return mg_error(MG_ERR_NO_MEMORY, "tokenizer: text too large");
            capacity *= 2;
        }
        uint8_t *data = realloc(b->data, capacity);
        if (!data) return mg_error(MG_ERR_NO_MEMORY, "tokenizer: out of memory (%zu bytes of text)", capacity);
        b->data = data;
        b->capacity = capacity;
    }
    if (n) memcpy(b->data + b->size, bytes, n);
    b->size += n;
    b->data[b->size] = 0; /* always NUL-terminated for callers that want a C string */
    return MG_OK;
}

mg_status mg_tok_ids_reserve(mg_tok_ids *v, size_t extra) {
    if (v->size + extra <= v->capacity) return MG_OK;
    size_t capacity = v->capacity ? v->capacity : 64;
    while (capacity < v->size + extra) {
        if (capacity > SIZE_MAX / 8) return mg_error(MG_ERR_NO_MEMORY, "tokenizer: too many ids");
        capacity *= 2;
    }
    int32_t *data = realloc(v->data, capacity * sizeof *data);
    if (!data) return mg_error(MG_ERR_NO_MEMORY, "tokenizer: out of memory for %zu ids", capacity);
    v->data = data;
    v->capacity = capacity;
    return MG_OK;
}

/* ----------------------------------------------------------------- UTF-8 */

size_t mg_utf8_char(const uint8_t *s, size_t n, bool *incomplete, size_t *maximal_subpart) {
    *incomplete = false;
    *maximal_subpart = 1;
    if (n == 0) return 0;
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;      /* no overlongs */
        else if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F; /* <= U+10FFFF */
    } else {
        return 0; /* 80..C1, F5..FF never start a character */
    }
    size_t i = 1;
    for (; i < need; i++) {
        if (i >= n) {
            *incomplete = true;
            *maximal_subpart = i;
            return 0;
        }
        uint8_t b = s[i];
        uint8_t low = i == 1 ? lo : 0x80, high = i == 1 ? hi : 0xBF;
        if (b < low || b > high) {
            *maximal_subpart = i;
            return 0;
        }
    }
    return need;
}

size_t mg_utf8_first_invalid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        bool incomplete;
        size_t subpart;
        size_t len = mg_utf8_char(s + i, n - i, &incomplete, &subpart);
        if (len == 0) return i;
        i += len;
    }
    return n;
}

static uint32_t utf8_decode(const uint8_t *s, size_t len) {
    switch (len) {
    case 1: return s[0];
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
}

bool mg_utf8_is_python_space(const uint8_t *s, size_t n, size_t *len) {
    bool incomplete;
    size_t subpart;
    size_t l = mg_utf8_char(s, n, &incomplete, &subpart);
    if (l == 0) {
        *len = 1;
        return false;
    }
    *len = l;
    uint32_t c = utf8_decode(s, l);
    /* CPython's _PyUnicode_IsWhitespace: bidirectional class WS, B or S, or
     * category Zs. */
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

mg_status mg_utf8_append_lossy(mg_tok_bytes *out, const uint8_t *s, size_t n, bool per_byte) {
    static const uint8_t replacement[3] = {0xEF, 0xBF, 0xBD};
    if (n == 0) return MG_OK; /* s may be NULL then */
    size_t start = 0, i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        bool incomplete;
        size_t subpart;
        size_t len = mg_utf8_char(s + i, n - i, &incomplete, &subpart);
        if (len) {
            i += len;
            continue;
        }
        MG_TRY(mg_tok_bytes_append(out, s + start, i - start));
        MG_TRY(mg_tok_bytes_append(out, replacement, 3));
        i += per_byte ? 1 : subpart;
        start = i;
    }
    return mg_tok_bytes_append(out, s + start, n - start);
}
