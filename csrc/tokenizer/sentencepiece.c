/* SentencePiece BPE (LLaMA's tokenizer.model): a minimal protobuf reader for
 * the ModelProto fields the encoder needs, and the encoder itself, following
 * sentencepiece's bpe_model.cc: one symbol per character, repeatedly merge
 * the adjacent pair whose concatenation is a piece with the highest score
 * (leftmost on ties), then map pieces to ids with byte fallback (<0xNN>) for
 * characters outside the vocabulary.
 *
 * ModelProto (sentencepiece_model.proto): 1 pieces {1 piece, 2 score,
 * 3 type}, 2 trainer_spec {3 model_type, 24 treat_whitespace_as_suffix,
 * 35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 44 unk_surface},
 * 3 normalizer_spec {1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
 * 4 remove_extra_whitespaces, 5 escape_whitespaces}. */
#include "tokenizer/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t SPACE_SYMBOL[3] = {0xE2, 0x96, 0x81}; /* U+2581 ▁ */

/* ------------------------------------------------------------- protobuf */

typedef struct pb_reader {
    const uint8_t *p, *end;
    const char *name;
} pb_reader;

static mg_status pb_varint(pb_reader *r, uint64_t *value) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return mg_error(MG_ERR_FORMAT, "%s: truncated protobuf varint", r->name);
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *value = v;
            return MG_OK;
        }
    }
    return mg_error(MG_ERR_FORMAT, "%s: protobuf varint longer than 10 bytes", r->name);
}

/* Reads one field key and, for length-delimited fields, the payload span.
 * Fixed/varint payloads are returned in *value. */
typedef struct pb_field {
    uint32_t number;
    uint32_t wire;
    uint64_t value;
    const uint8_t *bytes;
    size_t length;
} pb_field;

static mg_status pb_next(pb_reader *r, pb_field *f) {
    uint64_t key = 0;
    MG_TRY(pb_varint(r, &key));
    f->number = (uint32_t)(key >> 3);
    f->wire = (uint32_t)(key & 7);
    f->bytes = NULL;
    f->length = 0;
    switch (f->wire) {
    case 0: return pb_varint(r, &f->value);
    case 1:
        if (r->end - r->p < 8) return mg_error(MG_ERR_FORMAT, "%s: truncated protobuf fixed64", r->name);
        memcpy(&f->value, r->p, 8);
        r->p += 8;
        return MG_OK;
    case 5: {
        if (r->end - r->p < 4) return mg_error(MG_ERR_FORMAT, "%s: truncated protobuf fixed32", r->name);
        uint32_t v;
        memcpy(&v, r->p, 4);
        f->value = v;
        r->p += 4;
        return MG_OK;
    }
    case 2: {
        uint64_t length = 0;
        MG_TRY(pb_varint(r, &length));
        if (length > (uint64_t)(r->end - r->p))
            return mg_error(MG_ERR_FORMAT, "%s: protobuf field %u claims %llu bytes, %zu remain", r->name,
                            f->number, (unsigned long long)length, (size_t)(r->end - r->p));
        f->bytes = r->p;
        f->length = (size_t)length;
        r->p += length;
        return MG_OK;
    }
    default:
        return mg_error(MG_ERR_FORMAT, "%s: unsupported protobuf wire type %u (field %u)", r->name, f->wire,
                        f->number);
    }
}

typedef struct sp_model_fields {
    int model_type; /* 1 unigram, 2 bpe, 3 word, 4 char; default unigram */
    bool byte_fallback, treat_whitespace_as_suffix;
    int64_t unk_id, bos_id, eos_id;
    const uint8_t *unk_surface;
    size_t unk_surface_length;
    bool add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
    size_t charsmap_length;
    char normalizer_name[64];
} sp_model_fields;

static mg_status parse_trainer_spec(const char *name, const uint8_t *bytes, size_t n, sp_model_fields *m) {
    pb_reader r = {bytes, bytes + n, name};
    while (r.p < r.end) {
        pb_field f;
        MG_TRY(pb_next(&r, &f));
        switch (f.number) {
        case 3: m->model_type = (int)f.value; break;
        case 24: m->treat_whitespace_as_suffix = f.value != 0; break;
        case 35: m->byte_fallback = f.value != 0; break;
        case 40: m->unk_id = (int32_t)f.value; break;
        case 41: m->bos_id = (int32_t)f.value; break;
        case 42: m->eos_id = (int32_t)f.value; break;
        case 44:
            if (f.wire == 2) {
                m->unk_surface = f.bytes;
                m->unk_surface_length = f.length;
            }
            break;
        default: break;
        }
    }
    return MG_OK;
}

static mg_status parse_normalizer_spec(const char *name, const uint8_t *bytes, size_t n, sp_model_fields *m) {
    pb_reader r = {bytes, bytes + n, name};
    while (r.p < r.end) {
        pb_field f;
        MG_TRY(pb_next(&r, &f));
        switch (f.number) {
        case 1:
            if (f.wire == 2) {
                size_t k = f.length < sizeof m->normalizer_name - 1 ? f.length : sizeof m->normalizer_name - 1;
                memcpy(m->normalizer_name, f.bytes, k);
                m->normalizer_name[k] = 0;
            }
            break;
        case 2: m->charsmap_length = f.length; break;
        case 3: m->add_dummy_prefix = f.value != 0; break;
        case 4: m->remove_extra_whitespaces = f.value != 0; break;
        case 5: m->escape_whitespaces = f.value != 0; break;
        default: break;
        }
    }
    return MG_OK;
}

static int parse_byte_piece(const uint8_t *s, size_t n) {
    /* "<0xNN>" with upper-case hex, as sentencepiece writes them */
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        int d = (s[i] >= '0' && s[i] <= '9') ? s[i] - '0' : (s[i] >= 'A' && s[i] <= 'F') ? s[i] - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

mg_status mg_tokenizer_load_sentencepiece_memory(const uint8_t *bytes, size_t n_bytes, const char *name,
                                                 mg_tokenizer **out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load_sentencepiece_memory: out is NULL");
    *out = NULL;
    if (!bytes && n_bytes) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load_sentencepiece_memory: bytes is NULL");
    const char *label = name ? name : "sentencepiece model";
    mg_tokenizer *tok;
    MG_TRY(mg_tokenizer_new(MG_TOKENIZER_SENTENCEPIECE, label, &tok));
    /* proto2 defaults of the fields we read */
    sp_model_fields m = {.model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2,
                         .add_dummy_prefix = true, .remove_extra_whitespaces = true,
                         .escape_whitespaces = true};
    size_t types_capacity = 0;
    mg_status status = MG_OK;
    pb_reader r = {bytes, bytes + n_bytes, label};
    while (r.p < r.end && status == MG_OK) {
        pb_field f;
        status = pb_next(&r, &f);
        if (status != MG_OK) break;
        if (f.number == 1 && f.wire == 2) {
            /* one SentencePiece message */
            pb_reader pr = {f.bytes, f.bytes + f.length, label};
            const uint8_t *piece = NULL;
            size_t piece_length = 0;
            float score = 0.0f;
            int type = MG_SP_NORMAL;
            while (pr.p < pr.end && status == MG_OK) {
                pb_field g;
                status = pb_next(&pr, &g);
                if (status != MG_OK) break;
                if (g.number == 1 && g.wire == 2) {
                    piece = g.bytes;
                    piece_length = g.length;
                } else if (g.number == 2 && g.wire == 5) {
                    uint32_t v = (uint32_t)g.value;
                    memcpy(&score, &v, 4);
                } else if (g.number == 3 && g.wire == 0) {
                    type = (int)g.value;
                }
            }
            if (status != MG_OK) break;
            int32_t id = tok->vocab.n;
            if (!piece || piece_length == 0) {
                status = mg_error(MG_ERR_FORMAT, "%s: piece %d has no text", label, id);
                break;
            }
            if (type < MG_SP_NORMAL || type > MG_SP_BYTE) {
                status = mg_error(MG_ERR_FORMAT, "%s: piece %d has unknown type %d", label, id, type);
                break;
            }
            if (mg_utf8_first_invalid(piece, piece_length) != piece_length) {
                status = mg_error(MG_ERR_FORMAT, "%s: piece %d is not valid UTF-8", label, id);
                break;
            }
            if ((size_t)id >= types_capacity) {
                size_t capacity = types_capacity ? types_capacity * 2 : 4096;
                float *scores = realloc(tok->scores, capacity * sizeof *scores);
                if (scores) tok->scores = scores;
                uint8_t *types = realloc(tok->piece_type, capacity);
                if (types) tok->piece_type = types;
                if (!scores || !types) {
                    status = mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", label);
                    break;
                }
                types_capacity = capacity;
            }
            tok->scores[id] = score;
            tok->piece_type[id] = (uint8_t)type;
            status = mg_tok_strings_append(&tok->vocab, piece, piece_length);
        } else if (f.number == 2 && f.wire == 2) {
            status = parse_trainer_spec(label, f.bytes, f.length, &m);
        } else if (f.number == 3 && f.wire == 2) {
            status = parse_normalizer_spec(label, f.bytes, f.length, &m);
        }
    }
    int32_t n = tok->vocab.n;
    if (status == MG_OK && n == 0) status = mg_error(MG_ERR_FORMAT, "%s: no pieces (not a SentencePiece model?)", label);
    if (status == MG_OK && m.model_type != 2)
        status = mg_error(MG_ERR_UNSUPPORTED, "%s: model type %d is not BPE (2); only BPE models are supported",
                          label, m.model_type);
    if (status == MG_OK && m.charsmap_length > 0)
        status = mg_error(MG_ERR_UNSUPPORTED,
                          "%s: normalizer '%s' has a character map; only identity normalisation is supported",
                          label, m.normalizer_name);
    if (status == MG_OK && m.treat_whitespace_as_suffix)
        status = mg_error(MG_ERR_UNSUPPORTED, "%s: treat_whitespace_as_suffix is not supported", label);
    if (status == MG_OK && (m.unk_id < 0 || m.unk_id >= n || tok->piece_type[m.unk_id] != MG_SP_UNKNOWN))
        status = mg_error(MG_ERR_FORMAT, "%s: unk_id %lld is not an UNKNOWN piece", label, (long long)m.unk_id);
    if (status == MG_OK) {
        int32_t a, b;
        if (mg_tok_strings_index(&tok->vocab, &a, &b) != MG_OK)
            status = mg_error(MG_ERR_FORMAT, "%s: pieces %d and %d are the same string", label, a, b);
    }
    if (status != MG_OK) {
        mg_tokenizer_destroy(tok);
        return status;
    }
    tok->n_base = n;
    tok->unk_id = (int32_t)m.unk_id;
    tok->bos_id = m.bos_id >= 0 && m.bos_id < n ? (int32_t)m.bos_id : -1;
    tok->eos_id = m.eos_id >= 0 && m.eos_id < n ? (int32_t)m.eos_id : -1;
    tok->add_dummy_prefix = m.add_dummy_prefix;
    tok->remove_extra_whitespaces = m.remove_extra_whitespaces;
    tok->escape_whitespaces = m.escape_whitespaces;
    tok->byte_fallback = m.byte_fallback;
    if (m.unk_surface) {
        size_t k = m.unk_surface_length < sizeof tok->unk_surface - 1 ? m.unk_surface_length : sizeof tok->unk_surface - 1;
        memcpy(tok->unk_surface, m.unk_surface, k);
        tok->unk_surface[k] = 0;
    } else {
        memcpy(tok->unk_surface, " \xE2\x81\x87 ", 6); /* sentencepiece's default " ⁇ " */
    }

    /* The merge candidates are the NORMAL, USER_DEFINED and UNUSED pieces
     * (sentencepiece's `pieces_`); the others are reserved. */
    tok->byte_piece_value = calloc((size_t)n, sizeof *tok->byte_piece_value);
    tok->sp_piece_ids = malloc((size_t)n * sizeof *tok->sp_piece_ids);
    if (!tok->byte_piece_value || !tok->sp_piece_ids) {
        mg_tokenizer_destroy(tok);
        return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", label);
    }
    for (int i = 0; i < 256; i++) tok->byte_piece[i] = -1;
    tok->split_at_spaces = true;
    for (int32_t id = 0; id < n && status == MG_OK; id++) {
        size_t len;
        const uint8_t *s = mg_tok_strings_get(&tok->vocab, id, &len);
        int type = tok->piece_type[id];
        if (type == MG_SP_BYTE) {
            int v = parse_byte_piece(s, len);
            if (v < 0) {
                status = mg_error(MG_ERR_FORMAT, "%s: BYTE piece %d is not <0xNN>", label, id);
                break;
            }
            tok->byte_piece[v] = id;
            tok->byte_piece_value[id] = (uint16_t)(v + 1); /* <0xFF> is 256: not a uint8_t */
        }
        if (type == MG_SP_UNUSED) {
            /* sentencepiece re-splits merged UNUSED pieces; not needed for
             * any model we ship and not implemented */
            status = mg_error(MG_ERR_UNSUPPORTED, "%s: UNUSED pieces (id %d) are not supported", label, id);
            break;
        }
        if (type == MG_SP_NORMAL || type == MG_SP_USER_DEFINED) {
            if (type == MG_SP_USER_DEFINED) {
                if (!tok->user_defined_ids) {
                    tok->user_defined_ids = malloc((size_t)n * sizeof *tok->user_defined_ids);
                    if (!tok->user_defined_ids) {
                        status = mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", label);
                        break;
                    }
                }
                tok->user_defined_ids[tok->n_user_defined++] = id;
                tok->has_user_defined = true;
            }
            /* a piece with U+2581 after another character would let a merge
             * cross a word start; then whole-text merging is required */
            for (size_t k = 1; k + 3 <= len; k++) {
                /* the character before may be 1..4 bytes: only a U+2581
                 * right before (bytes k-3..k) keeps the split valid */
                if (memcmp(s + k, SPACE_SYMBOL, 3) == 0 && (k < 3 || memcmp(s + k - 3, SPACE_SYMBOL, 3) != 0)) {
                    tok->split_at_spaces = false;
                    break;
                }
            }
            tok->sp_piece_ids[tok->sp_pieces.n] = id;
            status = mg_tok_strings_append(&tok->sp_pieces, s, len);
        }
    }
    if (status == MG_OK) status = mg_tok_strings_index(&tok->sp_pieces, NULL, NULL);
    if (status == MG_OK) status = mg_tokenizer_finish(tok);
    if (status == MG_OK && tok->byte_fallback) {
        for (int v = 0; v < 256; v++)
            if (tok->byte_piece[v] < 0) {
                status = mg_error(MG_ERR_FORMAT, "%s: byte_fallback is set but piece <0x%02X> is missing", label, v);
                break;
            }
    }
    if (status != MG_OK) {
        mg_tokenizer_destroy(tok);
        return status;
    }
    *out = tok;
    return MG_OK;
}

/* ---------------------------------------------------------------- encode */

typedef struct sp_symbol {
    int32_t start, length; /* bytes in the normalized text; length 0 = merged away */
    int32_t prev, next;
    bool frozen;           /* user-defined piece: never merged */
} sp_symbol;

typedef struct sp_pair {
    float score;
    int32_t left, right, size;
} sp_pair;

/* sentencepiece's agenda order: highest score first, then lowest left. */
static bool sp_pair_before(const sp_pair *a, const sp_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct sp_work {
    sp_symbol *symbols;
    size_t symbols_capacity;
    sp_pair *heap;
    size_t heap_size, heap_capacity;
} sp_work;

static mg_status sp_heap_push(sp_work *w, sp_pair e) {
    if (w->heap_size == w->heap_capacity) {
        size_t capacity = w->heap_capacity ? w->heap_capacity * 2 : 64;
        sp_pair *heap = realloc(w->heap, capacity * sizeof *heap);
        if (!heap) return mg_error(MG_ERR_NO_MEMORY, "sentencepiece: out of memory (%zu merge candidates)", capacity);
        w->heap = heap;
        w->heap_capacity = capacity;
    }
    size_t i = w->heap_size++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!sp_pair_before(&e, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = e;
    return MG_OK;
}

static sp_pair sp_heap_pop(sp_work *w) {
    sp_pair top = w->heap[0];
    sp_pair last = w->heap[--w->heap_size];
    size_t i = 0, n = w->heap_size;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && sp_pair_before(&w->heap[child + 1], &w->heap[child])) child++;
        if (!sp_pair_before(&w->heap[child], &last)) break;
        w->heap[i] = w->heap[child];
        i = child;
    }
    if (n) w->heap[i] = last;
    return top;
}

static mg_status sp_maybe_add_pair(const mg_tokenizer *tok, const uint8_t *text, sp_work *w, int32_t left,
                                   int32_t right) {
    if (left < 0 || right < 0) return MG_OK;
    sp_symbol *a = &w->symbols[left], *b = &w->symbols[right];
    if (a->frozen || b->frozen) return MG_OK;
    int32_t size = a->length + b->length;
    int32_t index = mg_tok_strings_find(&tok->sp_pieces, text + a->start, (size_t)size);
    if (index < 0) return MG_OK;
    return sp_heap_push(w, (sp_pair){tok->scores[tok->sp_piece_ids[index]], left, right, size});
}

static size_t utf8_length(uint8_t c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Longest USER_DEFINED piece at s (sentencepiece's prefix matcher), or 0. */
static size_t user_defined_match(const mg_tokenizer *tok, const uint8_t *s, size_t n) {
    size_t best = 0;
    for (int32_t i = 0; i < tok->n_user_defined; i++) {
        int32_t id = tok->user_defined_ids[i];
        size_t len;
        const uint8_t *p = mg_tok_strings_get(&tok->vocab, id, &len);
        if (len > best && len <= n && memcmp(p, s, len) == 0) best = len;
    }
    return best;
}

/* BPE over one independent segment of normalized text. */
static mg_status sp_bpe_segment(const mg_tokenizer *tok, const uint8_t *text, size_t n, sp_work *w,
                                mg_tok_ids *out) {
    if (n > INT32_MAX) return mg_error(MG_ERR_NO_MEMORY, "sentencepiece: a %zu-byte word is too long", n);
    if (n > w->symbols_capacity) {
        size_t capacity = w->symbols_capacity ? w->symbols_capacity : 64;
        while (capacity < n) capacity *= 2;
        sp_symbol *symbols = realloc(w->symbols, capacity * sizeof *symbols);
        if (!symbols) return mg_error(MG_ERR_NO_MEMORY, "sentencepiece: out of memory for %zu characters", n);
        w->symbols = symbols;
        w->symbols_capacity = capacity;
    }
    int32_t count = 0;
    for (size_t pos = 0; pos < n;) {
        size_t len = 0;
        bool frozen = false;
        if (tok->has_user_defined) {
            len = user_defined_match(tok, text + pos, n - pos);
            frozen = len > 0;
        }
        if (!len) len = utf8_length(text[pos]);
        if (len > n - pos) len = n - pos;
        w->symbols[count] = (sp_symbol){(int32_t)pos, (int32_t)len, count - 1, -1, frozen};
        if (count > 0) w->symbols[count - 1].next = count;
        count++;
        pos += len;
    }
    w->heap_size = 0;
    for (int32_t i = 1; i < count; i++) MG_TRY(sp_maybe_add_pair(tok, text, w, i - 1, i));
    while (w->heap_size) {
        sp_pair top = sp_heap_pop(w);
        sp_symbol *a = &w->symbols[top.left], *b = &w->symbols[top.right];
        /* the same staleness test as sentencepiece */
        if (a->length == 0 || b->length == 0 || a->length + b->length != top.size) continue;
        a->length += b->length;
        b->length = 0;
        a->next = b->next;
        if (b->next >= 0) w->symbols[b->next].prev = top.left;
        MG_TRY(sp_maybe_add_pair(tok, text, w, a->prev, top.left));
        MG_TRY(sp_maybe_add_pair(tok, text, w, top.left, a->next));
    }
    bool previous_unknown = false;
    for (int32_t i = 0; count > 0 && i >= 0; i = w->symbols[i].next) {
        const sp_symbol *s = &w->symbols[i];
        int32_t index = mg_tok_strings_find(&tok->sp_pieces, text + s->start, (size_t)s->length);
        if (index >= 0) {
            MG_TRY(mg_tok_ids_push(out, tok->sp_piece_ids[index]));
            previous_unknown = false;
        } else if (tok->byte_fallback) {
            for (int32_t k = 0; k < s->length; k++) MG_TRY(mg_tok_ids_push(out, tok->byte_piece[text[s->start + k]]));
            previous_unknown = false;
        } else {
            /* consecutive unknown pieces collapse into one <unk> */
            if (!previous_unknown) MG_TRY(mg_tok_ids_push(out, tok->unk_id));
            previous_unknown = true;
        }
    }
    return MG_OK;
}

mg_status mg_sp_encode_chunk(const mg_tokenizer *tok, const uint8_t *text, size_t n, mg_tok_ids *out) {
    /* Normalizer (identity rules): optional whitespace cleanup, the dummy
     * prefix, then ' ' -> U+2581. */
    size_t begin = 0, end = n;
    if (tok->remove_extra_whitespaces) {
        while (begin < end && text[begin] == ' ') begin++;
        while (end > begin && text[end - 1] == ' ') end--;
    }
    if (begin == end) return MG_OK;
    mg_tok_bytes normalized = {0};
    mg_status status = MG_OK;
    if (tok->add_dummy_prefix)
        status = tok->escape_whitespaces ? mg_tok_bytes_append(&normalized, SPACE_SYMBOL, 3)
                                         : mg_tok_bytes_append(&normalized, " ", 1);
    for (size_t i = begin; i < end && status == MG_OK;) {
        size_t j = i;
        while (j < end && text[j] != ' ') j++;
        status = mg_tok_bytes_append(&normalized, text + i, j - i);
        if (status != MG_OK || j == end) break;
        /* a run of spaces: collapsed to one when removing extra whitespace */
        size_t k = j;
        while (k < end && text[k] == ' ') k++;
        size_t count = tok->remove_extra_whitespaces ? 1 : k - j;
        for (size_t c = 0; c < count && status == MG_OK; c++)
            status = tok->escape_whitespaces ? mg_tok_bytes_append(&normalized, SPACE_SYMBOL, 3)
                                             : mg_tok_bytes_append(&normalized, " ", 1);
        i = k;
    }
    /* sentencepiece drops trailing whitespace from the *normalized* text
     * (normalizer.cc "Ignores tailing space"): U+2581 already in the input
     * goes too, and a text of spaces leaves nothing (not even the prefix). */
    if (status == MG_OK && tok->remove_extra_whitespaces) {
        size_t w = tok->escape_whitespaces ? 3 : 1;
        const uint8_t *space = tok->escape_whitespaces ? SPACE_SYMBOL : (const uint8_t *)" ";
        while (normalized.size >= w && memcmp(normalized.data + normalized.size - w, space, w) == 0)
            normalized.size -= w;
    }
    sp_work work = {0};
    if (status == MG_OK && normalized.size > 0) {
        const uint8_t *s = normalized.data;
        size_t m = normalized.size;
        if (!tok->split_at_spaces) {
            status = sp_bpe_segment(tok, s, m, &work, out);
        } else {
            /* No piece joins a character to a following U+2581, so merges
             * never cross a word start: encode word by word (identical
             * result, bounded memory). */
            size_t start = 0;
            for (size_t i = 3; i + 3 <= m && status == MG_OK; i++) {
                if (memcmp(s + i, SPACE_SYMBOL, 3) == 0 && !(i >= 3 && memcmp(s + i - 3, SPACE_SYMBOL, 3) == 0)) {
                    status = sp_bpe_segment(tok, s + start, i - start, &work, out);
                    start = i;
                    i += 2;
                }
            }
            if (status == MG_OK && start < m) status = sp_bpe_segment(tok, s + start, m - start, &work, out);
        }
    }
    free(work.symbols);
    free(work.heap);
    free(normalized.data);
    return status;
}
