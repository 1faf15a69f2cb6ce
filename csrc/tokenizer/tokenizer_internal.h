/* Internal layout of mg_tokenizer, shared by the tokenizer sources. */
#ifndef MG_TOKENIZER_INTERNAL_H
#define MG_TOKENIZER_INTERNAL_H

#include "core/core.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* ---------------------------------------------------------------- hashing */

uint64_t mg_tok_hash_bytes(const uint8_t *bytes, size_t n);

static inline uint64_t mg_tok_hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* A string table: every token's bytes in one blob, plus a hash index from
 * bytes to id. Ids are dense 0..n-1; an id may have no bytes (a hole). */
typedef struct mg_tok_strings {
    uint8_t *blob;
    size_t blob_size, blob_capacity;
    uint64_t *offsets; /* n + 1 entries when complete; offsets[id]..[id+1]   */
    int32_t n;         /* ids described                                      */
    int32_t capacity;
    uint64_t *slots;   /* open addressing: (hash high 32 bits) << 32 | id,
                          UINT64_MAX when empty (one cache line per probe) */
    uint64_t slot_mask;
    int32_t n_indexed;
} mg_tok_strings;

mg_status mg_tok_strings_append(mg_tok_strings *s, const uint8_t *bytes, size_t n);
/* Builds the hash index over ids [0, n). Duplicate strings are
 * MG_ERR_FORMAT naming both ids (first_dup_* set when non-NULL). */
mg_status mg_tok_strings_index(mg_tok_strings *s, int32_t *dup_a, int32_t *dup_b);
/* Adds id n-1 to the index (after mg_tok_strings_append). */
mg_status mg_tok_strings_index_last(mg_tok_strings *s);
int32_t mg_tok_strings_find(const mg_tok_strings *s, const uint8_t *bytes, size_t n);
static inline const uint8_t *mg_tok_strings_get(const mg_tok_strings *s, int32_t id, size_t *n) {
    *n = (size_t)(s->offsets[id + 1] - s->offsets[id]);
    return s->blob + s->offsets[id];
}
void mg_tok_strings_free(mg_tok_strings *s);

/* Pair table (left id, right id) -> (merge priority, merged id); one
 * 16-byte slot per probe (key and values together: one cache miss). */
typedef struct mg_tok_pair_slot {
    uint64_t key; /* (left << 32 | right) + 1; 0 = empty */
    int32_t rank;
    int32_t merged;
} mg_tok_pair_slot;

typedef struct mg_tok_pairs {
    mg_tok_pair_slot *slots;
    uint64_t mask;
    uint64_t count;
} mg_tok_pairs;

mg_status mg_tok_pairs_init(mg_tok_pairs *p, uint64_t expected);
/* Keeps the first rank inserted for a pair (lowest when inserted in order). */
mg_status mg_tok_pairs_put(mg_tok_pairs *p, int32_t left, int32_t right, int32_t rank,
                           int32_t merged);
static inline bool mg_tok_pairs_get(const mg_tok_pairs *p, int32_t left, int32_t right,
                                    int32_t *rank, int32_t *merged) {
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    uint64_t i = mg_tok_hash_u64(key) & p->mask;
    for (;;) {
        const mg_tok_pair_slot *slot = &p->slots[i];
        if (slot->key == key) {
            *rank = slot->rank;
            *merged = slot->merged;
            return true;
        }
        if (slot->key == 0) return false;
        i = (i + 1) & p->mask;
    }
}
void mg_tok_pairs_free(mg_tok_pairs *p);

/* ------------------------------------------------------------------ UTF-8 */

/* Offset of the first invalid byte, or n when valid (strict UTF-8: no
 * surrogates, no overlongs, <= U+10FFFF). */
size_t mg_utf8_first_invalid(const uint8_t *s, size_t n);
/* Length of the valid character at s (1..4), or 0 when s[0..n) does not
 * start with one; *incomplete is set when the bytes are a proper prefix of
 * a valid character that ran out of input. *maximal_subpart receives the
 * length of the invalid prefix to replace by one U+FFFD (Unicode's
 * "maximal subpart" practice, which Python and Rust follow). */
size_t mg_utf8_char(const uint8_t *s, size_t n, bool *incomplete, size_t *maximal_subpart);
/* Python's str.isspace() for the code point starting at s; *len gets its
 * UTF-8 length (s must be valid UTF-8). */
bool mg_utf8_is_python_space(const uint8_t *s, size_t n, size_t *len);

/* A growable byte/int buffer. */
typedef struct mg_tok_bytes {
    uint8_t *data;
    size_t size, capacity;
} mg_tok_bytes;
mg_status mg_tok_bytes_append(mg_tok_bytes *b, const void *bytes, size_t n);

typedef struct mg_tok_ids {
    int32_t *data;
    size_t size, capacity;
} mg_tok_ids;
mg_status mg_tok_ids_reserve(mg_tok_ids *v, size_t extra);
static inline mg_status mg_tok_ids_push(mg_tok_ids *v, int32_t id) {
    if (v->size == v->capacity) MG_TRY(mg_tok_ids_reserve(v, 1));
    v->data[v->size++] = id;
    return MG_OK;
}

/* Appends bytes to `out`, replacing invalid UTF-8: per_byte selects one
 * U+FFFD per invalid byte (SentencePiece) instead of one per maximal subpart
 * (Python/Rust). */
mg_status mg_utf8_append_lossy(mg_tok_bytes *out, const uint8_t *s, size_t n, bool per_byte);

/* ------------------------------------------------------------ the object */

typedef enum mg_sp_piece_type {
    MG_SP_NORMAL = 1,
    MG_SP_UNKNOWN = 2,
    MG_SP_CONTROL = 3,
    MG_SP_USER_DEFINED = 4,
    MG_SP_UNUSED = 5,
    MG_SP_BYTE = 6,
} mg_sp_piece_type;

#define MG_TOK_FLAG_SPECIAL 1 /* dropped by skip_special                  */
#define MG_TOK_FLAG_ADDED 2   /* decoded verbatim, not through the model    */

/* A token matched verbatim in text (special tokens, added tokens). */
typedef struct mg_tok_added {
    int32_t id;
    bool special; /* needs the caller's permission                        */
    bool lstrip;  /* whitespace before it in the text is dropped          */
    bool rstrip;  /* whitespace after it in the text is dropped           */
} mg_tok_added;

struct mg_tokenizer {
    mg_tokenizer_kind kind;
    char name[256];       /* file name, for messages */
    mg_tok_strings vocab; /* every id's bytes: base tokens, then added ones */
    int32_t n_base;       /* ids below this come from the model file       */

    /* added / special tokens, in id order (ids n_base...) plus base control
     * pieces recognised in text (SentencePiece <s> </s> <unk>) */
    mg_tok_added *added;
    int32_t n_added, added_capacity;
    int32_t *added_by_length; /* indices into `added`, longest text first   */
    uint8_t *id_flags;    /* per id: MG_TOK_FLAG_* (sized vocab.n)          */
    bool first_byte[256]; /* some added token starts with this byte        */
    bool any_strip;
    /* lookup tables for find_added, rebuilt with the id flags */
    int32_t *added_of_id;     /* id -> index in `added`, or -1 (vocab.n)    */
    size_t *added_lengths;    /* distinct byte lengths of added tokens, desc */
    int32_t n_added_lengths;
    bool single_byte_added[256];    /* a one-byte added token is this byte   */
    uint8_t added_pairs[256 * 256 / 8]; /* bit (b0 << 8 | b1): some added token starts b0 b1 */

    bool wants_nfc;
    int32_t bos_id, eos_id, unk_id;

    /* byte-level BPE (tiktoken, HF) */
    pcre2_code *regex;
    bool regex_jit;
    bool qwen_fast;         /* the pattern is Qwen's: ASCII words skip PCRE2 */
    mg_tok_pairs pairs;     /* merge table */
    int32_t byte_to_id[256];
    bool whole_word_first;  /* tiktoken / HF ignore_merges: vocab lookup first */
    bool qwen_images;       /* Qwen-VL <img> rule available                  */
    int32_t img_start_id, img_end_id, img_pad_id, first_special_id;
    bool hf_add_prefix_space; /* ByteLevel add_prefix_space, per text chunk */
    bool keep_unmatched;      /* HF Split "Isolated": gaps between matches are pieces */

    /* SentencePiece */
    float *scores;
    uint8_t *piece_type;   /* mg_sp_piece_type per base id */
    mg_tok_strings sp_pieces; /* NORMAL/USER_DEFINED/UNUSED only: bytes -> index */
    int32_t *sp_piece_ids;    /* index in sp_pieces -> id */
    int32_t byte_piece[256];  /* <0xNN> ids, -1 when absent */
    bool add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces, byte_fallback;
    bool split_at_spaces;     /* no piece joins a non-space char to a following U+2581 */
    bool has_user_defined;
    int32_t *user_defined_ids; /* the USER_DEFINED pieces, for the prefix matcher */
    int32_t n_user_defined;
    uint16_t *byte_piece_value; /* per base id: byte value + 1 (1..256) for BYTE pieces, 0 otherwise */
    char unk_surface[64];
};

mg_status mg_tokenizer_new(mg_tokenizer_kind kind, const char *name, mg_tokenizer **out);
/* Last step of every loader: SentencePiece control pieces become
 * recognisable specials; per-id flags are computed. */
mg_status mg_tokenizer_finish(mg_tokenizer *tok);
/* Registers an added/special token whose text is already vocab[id]. */
mg_status mg_tokenizer_register_added(mg_tokenizer *tok, int32_t id, bool special, bool lstrip,
                                      bool rstrip);

/* Encodes a text chunk that contains no recognised special/added token. */
mg_status mg_bpe_encode_chunk(const mg_tokenizer *tok, const uint8_t *text, size_t n,
                              pcre2_match_data *match, mg_tok_ids *out);
mg_status mg_sp_encode_chunk(const mg_tokenizer *tok, const uint8_t *text, size_t n,
                             mg_tok_ids *out);
/* Builds the BPE pair table for a tiktoken vocabulary (every split of every
 * token whose halves are tokens). */
mg_status mg_bpe_build_tiktoken_pairs(mg_tokenizer *tok);
mg_status mg_bpe_compile_regex(mg_tokenizer *tok, const char *pattern);

extern const char mg_qwen_pattern[];

#endif
