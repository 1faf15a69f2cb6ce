/* Byte-level BPE: the regex pre-split and the merge loop shared by tiktoken
 * vocabularies (Qwen's qwen.tiktoken) and Hugging Face byte-level BPE
 * (tokenizer.json merges), plus the qwen.tiktoken reader.
 *
 * Merge rule (tiktoken `_byte_pair_merge`, HF `Word::merge_all`): start from
 * one symbol per byte; repeatedly merge the adjacent pair with the lowest
 * priority, the leftmost one on ties, until no adjacent pair is mergeable.
 * Both are expressed as a table (left id, right id) -> (priority, merged id):
 * for tiktoken the priority of a pair is the rank of the concatenated bytes
 * (built once from every split of every token), for HF it is the merge's line
 * number. */
#include "tokenizer/tokenizer_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Qwen's PAT_STR, verbatim from Qwen-VL's tokenization_qwen.py. */
const char mg_qwen_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* The references (tiktoken, HF tokenizers) match with Rust's regex crate,
 * whose Unicode tables are newer than Debian's PCRE2 10.42 (Unicode 14), and
 * whose \s is Unicode White_Space where PCRE2's UCP \s also takes U+180E.
 * translate_pattern closes both gaps so that \p{L}, \p{N}, \s and \S mean
 * exactly what they mean to the references:
 *  - \s / \S become the White_Space list below;
 *  - \p{L} / \p{N} gain the code points that are letters / numbers to Rust
 *    but unassigned to PCRE2 (Unicode 15-16 additions). The lists were
 *    measured, not copied: a tiktoken Encoding with pattern "\p{L}" (and
 *    "\p{N}", "\s") over all 1,112,064 code points versus this tokenizer with
 *    the same pattern; tests/test_tokenizer.py::test_regex_classes_match_rust
 *    repeats that comparison, so a PCRE2 or tiktoken upgrade that moves
 *    either side fails loudly. Only L and N needed additions; nothing PCRE2
 *    calls L or N is outside them for Rust.
 * Other escapes (\p{Lu}, \d, \w ...) pass through unchanged. */
static const char white_space[] =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";
static const char extra_letters[] =
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}\\x{10D4A}-\\x{10D65}"
    "\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}"
    "\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}"
    "\\x{11F12}-\\x{11F33}\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}"
    "\\x{16D40}-\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}"
    "\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}";
static const char extra_numbers[] =
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}\\x{16130}-\\x{16139}"
    "\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}";

static mg_status append_str(mg_tok_bytes *out, const char *s) { return mg_tok_bytes_append(out, s, strlen(s)); }

static mg_status translate_pattern(const char *pattern, mg_tok_bytes *out) {
    bool in_class = false;
    for (const char *p = pattern; *p; p++) {
        if (*p == '\\' && p[1]) {
            const char *extra = NULL;
            size_t skip = 1;
            if (strncmp(p + 1, "p{L}", 4) == 0) {
                extra = extra_letters;
                skip = 4;
            } else if (strncmp(p + 1, "p{N}", 4) == 0) {
                extra = extra_numbers;
                skip = 4;
            }
            if (extra) {
                if (!in_class) MG_TRY(append_str(out, "["));
                MG_TRY(mg_tok_bytes_append(out, p, skip + 1));
                MG_TRY(append_str(out, extra));
                if (!in_class) MG_TRY(append_str(out, "]"));
            } else if (p[1] == 's') {
                if (!in_class) MG_TRY(append_str(out, "["));
                MG_TRY(append_str(out, white_space));
                if (!in_class) MG_TRY(append_str(out, "]"));
            } else if (p[1] == 'S' && !in_class) {
                MG_TRY(append_str(out, "[^"));
                MG_TRY(append_str(out, white_space));
                MG_TRY(append_str(out, "]"));
            } else if (p[1] == 'S') {
                /* \S inside a class cannot be widened by a rewrite; no known
                 * tokenizer pattern uses it. */
                return mg_error(MG_ERR_UNSUPPORTED, "pre-tokenizer regex: \\S inside a character class");
            } else {
                MG_TRY(mg_tok_bytes_append(out, p, 2));
            }
            p += skip;
            continue;
        }
        if (!in_class && *p == '[') {
            in_class = true;
            MG_TRY(mg_tok_bytes_append(out, p, 1));
            /* a ']' or '^]' right after '[' is a literal */
            if (p[1] == '^') MG_TRY(mg_tok_bytes_append(out, ++p, 1));
            if (p[1] == ']') MG_TRY(mg_tok_bytes_append(out, ++p, 1));
            continue;
        }
        if (in_class && *p == ']') in_class = false;
        MG_TRY(mg_tok_bytes_append(out, p, 1));
    }
    return MG_OK;
}

mg_status mg_bpe_compile_regex(mg_tokenizer *tok, const char *pattern) {
    mg_tok_bytes translated = {0};
    mg_status status = translate_pattern(pattern, &translated);
    if (status != MG_OK) {
        free(translated.data);
        return mg_error_prefix(status, "%s", tok->name);
    }
    int error_code;
    PCRE2_SIZE error_offset;
    tok->regex = pcre2_compile((PCRE2_SPTR)translated.data, translated.size,
                               PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error_code,
                               &error_offset, NULL);
    free(translated.data);
    if (!tok->regex) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(error_code, message, sizeof message);
        return mg_error(MG_ERR_FORMAT, "%s: pre-tokenizer regex does not compile at offset %zu: %s",
                        tok->name, (size_t)error_offset, (const char *)message);
    }
    tok->regex_jit = pcre2_jit_compile(tok->regex, PCRE2_JIT_COMPLETE) == 0;
    tok->qwen_fast = strcmp(pattern, mg_qwen_pattern) == 0;
    return MG_OK;
}

/* ------------------------------------------------------------ merge loop */

/* A merge candidate: the pair starting at symbol `left` had priority
 * `rank` when pushed. 8 bytes, so a long piece costs ~36 bytes per byte at
 * worst (ids, links and up to three heap entries per symbol). */
typedef struct bpe_heap_entry {
    int32_t rank;
    int32_t left;
} bpe_heap_entry;

static bool heap_less(const bpe_heap_entry *a, const bpe_heap_entry *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bpe_heap_entry *heap, size_t *n, bpe_heap_entry e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&e, &heap[parent])) break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = e;
}

static bpe_heap_entry heap_pop(bpe_heap_entry *heap, size_t *n) {
    bpe_heap_entry top = heap[0];
    bpe_heap_entry last = heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= *n) break;
        if (child + 1 < *n && heap_less(&heap[child + 1], &heap[child])) child++;
        if (!heap_less(&heap[child], &last)) break;
        heap[i] = heap[child];
        i = child;
    }
    if (*n) heap[i] = last;
    return top;
}

/* Long pieces: O(n log n) with a heap and a linked list. Gives the same
 * result as the quadratic scan because the heap orders by (priority, start
 * position), i.e. exactly "lowest rank, leftmost on ties". An entry is acted
 * on only if the pair now starting at `left` still has the entry's priority:
 * a priority names one merged token (tiktoken: its rank; HF: one merge
 * line), so such an entry merges exactly what a fresh one would; any other
 * entry is stale and skipped. */
static mg_status bpe_merge_long(const mg_tokenizer *tok, const uint8_t *piece, size_t n,
                                mg_tok_ids *out) {
    if (n > INT32_MAX / 2) return mg_error(MG_ERR_NO_MEMORY, "%s: a pre-tokenized piece of %zu bytes is too long", tok->name, n);
    int32_t *ids = malloc(n * sizeof *ids);
    int32_t *next = malloc(n * sizeof *next);
    int32_t *prev = malloc(n * sizeof *prev);
    size_t heap_size = 0, heap_capacity = n + 16;
    bpe_heap_entry *heap = malloc(heap_capacity * sizeof *heap);
    if (!ids || !next || !prev || !heap) {
        free(ids); free(next); free(prev); free(heap);
        return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory merging a %zu-byte piece", tok->name, n);
    }
    for (size_t i = 0; i < n; i++) {
        ids[i] = tok->byte_to_id[piece[i]];
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    mg_status status = MG_OK;
    int32_t rank, merged;
    for (size_t i = 0; i + 1 < n; i++) {
        if (mg_tok_pairs_get(&tok->pairs, ids[i], ids[i + 1], &rank, &merged))
            heap_push(heap, &heap_size, (bpe_heap_entry){rank, (int32_t)i});
    }
    while (heap_size) {
        bpe_heap_entry e = heap_pop(heap, &heap_size);
        int32_t left = e.left, right = next[left];
        /* merged away (ids -1), no right neighbour, or the pair changed */
        if (ids[left] < 0 || right < 0 || !mg_tok_pairs_get(&tok->pairs, ids[left], ids[right], &rank, &merged) ||
            rank != e.rank)
            continue;
        ids[left] = merged;
        ids[right] = -1;
        next[left] = next[right];
        if (next[right] >= 0) prev[next[right]] = left;
        if (heap_size + 2 > heap_capacity) {
            heap_capacity *= 2;
            bpe_heap_entry *bigger = realloc(heap, heap_capacity * sizeof *heap);
            if (!bigger) {
                status = mg_error(MG_ERR_NO_MEMORY, "%s: out of memory merging a %zu-byte piece", tok->name, n);
                break;
            }
            heap = bigger;
        }
        int32_t p = prev[left];
        if (p >= 0 && mg_tok_pairs_get(&tok->pairs, ids[p], ids[left], &rank, &merged))
            heap_push(heap, &heap_size, (bpe_heap_entry){rank, p});
        int32_t q = next[left];
        if (q >= 0 && mg_tok_pairs_get(&tok->pairs, ids[left], ids[q], &rank, &merged))
            heap_push(heap, &heap_size, (bpe_heap_entry){rank, left});
    }
    if (status == MG_OK) {
        for (int32_t i = 0; i >= 0; i = next[i]) {
            status = mg_tok_ids_push(out, ids[i]);
            if (status != MG_OK) break;
        }
    }
    free(ids); free(next); free(prev); free(heap);
    return status;
}

#define BPE_SHORT 96

/* Short pieces: keep the pair priority of every adjacent pair in an array
 * and rescan it, as tiktoken does; fewer cache misses than a heap. */
static mg_status bpe_merge_short(const mg_tokenizer *tok, const uint8_t *piece, size_t n,
                                 mg_tok_ids *out) {
    int32_t ids[BPE_SHORT], rank[BPE_SHORT], merged[BPE_SHORT];
    size_t m = n;
    for (size_t i = 0; i < n; i++) ids[i] = tok->byte_to_id[piece[i]];
    for (size_t i = 0; i + 1 < m; i++)
        if (!mg_tok_pairs_get(&tok->pairs, ids[i], ids[i + 1], &rank[i], &merged[i])) rank[i] = INT32_MAX;
    while (m > 1) {
        size_t best = 0;
        int32_t best_rank = INT32_MAX;
        for (size_t i = 0; i + 1 < m; i++) {
            if (rank[i] < best_rank) {
                best_rank = rank[i];
                best = i;
            }
        }
        if (best_rank == INT32_MAX) break;
        ids[best] = merged[best];
        size_t tail = m - best - 2;
        memmove(ids + best + 1, ids + best + 2, tail * sizeof *ids);
        memmove(rank + best + 1, rank + best + 2, tail * sizeof *rank);
        memmove(merged + best + 1, merged + best + 2, tail * sizeof *merged);
        m--;
        if (best + 1 < m) {
            if (!mg_tok_pairs_get(&tok->pairs, ids[best], ids[best + 1], &rank[best], &merged[best]))
                rank[best] = INT32_MAX;
        }
        if (best > 0) {
            if (!mg_tok_pairs_get(&tok->pairs, ids[best - 1], ids[best], &rank[best - 1], &merged[best - 1]))
                rank[best - 1] = INT32_MAX;
        }
    }
    MG_TRY(mg_tok_ids_reserve(out, m));
    memcpy(out->data + out->size, ids, m * sizeof *ids);
    out->size += m;
    return MG_OK;
}

static mg_status bpe_piece(const mg_tokenizer *tok, const uint8_t *piece, size_t n, mg_tok_ids *out) {
    if (n == 1) return mg_tok_ids_push(out, tok->byte_to_id[piece[0]]);
    if (tok->whole_word_first) {
        int32_t id = mg_tok_strings_find(&tok->vocab, piece, n);
        if (id >= 0 && id < tok->n_base) return mg_tok_ids_push(out, id);
    }
    if (n <= BPE_SHORT) return bpe_merge_short(tok, piece, n, out);
    return bpe_merge_long(tok, piece, n, out);
}

/* Natural text repeats its words: a per-call, direct-mapped cache of short
 * pieces and their ids (exact bytes compared, so it cannot change results)
 * saves the vocabulary and merge-table probes, which miss the CPU caches on
 * a 151k-token vocabulary. Used for chunks of at least MG_PIECE_CACHE_MIN bytes. */
#define PIECE_CACHE_MAX 16384 /* entries; fewer for shorter chunks */
#ifndef MG_PIECE_CACHE_MIN /* a fuzzing build may lower it to reach the cache */
#define MG_PIECE_CACHE_MIN 512
#endif
#define PIECE_MAX 24
#define PIECE_IDS 6

typedef struct piece_cache_entry { /* 64 bytes: one cache line */
    uint64_t hash; /* 0: empty */
    int32_t ids[PIECE_IDS];
    uint8_t length, n_ids;
    uint8_t bytes[PIECE_MAX];
    uint8_t pad[6];
} piece_cache_entry;

typedef struct piece_cache {
    piece_cache_entry *entries;
    uint64_t mask;
} piece_cache;

static mg_status cached_piece(const mg_tokenizer *tok, const piece_cache *cache, const uint8_t *piece, size_t n,
                              mg_tok_ids *out) {
    if (!cache->entries || n > PIECE_MAX || n < 2) return bpe_piece(tok, piece, n, out);
    uint64_t h = mg_tok_hash_bytes(piece, n) | 1; /* never 0 */
    piece_cache_entry *e = &cache->entries[(h >> 7) & cache->mask];
    if (e->hash == h && e->length == n && memcmp(e->bytes, piece, n) == 0) {
        MG_TRY(mg_tok_ids_reserve(out, e->n_ids));
        memcpy(out->data + out->size, e->ids, e->n_ids * sizeof *e->ids);
        out->size += e->n_ids;
        return MG_OK;
    }
    size_t before = out->size;
    MG_TRY(bpe_piece(tok, piece, n, out));
    size_t produced = out->size - before;
    if (produced <= PIECE_IDS) {
        e->hash = h;
        e->length = (uint8_t)n;
        e->n_ids = (uint8_t)produced;
        memcpy(e->bytes, piece, n);
        memcpy(e->ids, out->data + before, produced * sizeof *e->ids);
    }
    return MG_OK;
}

static inline bool ascii_letter(uint8_t c) { return (uint8_t)((c | 0x20) - 'a') < 26; }

/* Length of the piece Qwen's pattern matches at `pos` when it is one of the
 * common ASCII shapes, else 0 (ask PCRE2). With only ASCII around:
 *  - a letter: alternative 2 (`[^\r\n\p{L}\p{N}]?\p{L}+`) takes the run of
 *    letters (alternative 1 needs a quote first);
 *  - a digit: alternative 3 (`\p{N}`), one digit;
 *  - any other ASCII byte but ' \r \n, then a letter: alternative 2 with
 *    its optional prefix, e.g. " word", "(word", "\tword".
 * A run that reaches a non-ASCII byte might continue with a non-ASCII
 * letter: 0. Proven against tiktoken by the corpus, every-code-point and
 * random-string tests in tests/test_tokenizer.py. */
static size_t qwen_fast_piece(const uint8_t *t, size_t n, size_t pos) {
    uint8_t c = t[pos];
    size_t i = pos;
    if ((uint8_t)(c - '0') < 10) return 1;
    if (!ascii_letter(c)) {
        if (c >= 0x80 || c == '\'' || c == '\r' || c == '\n' || pos + 1 >= n || !ascii_letter(t[pos + 1])) return 0;
        i++;
    }
    while (i < n && ascii_letter(t[i])) i++;
    if (i < n && t[i] >= 0x80) return 0;
    return i - pos;
}

mg_status mg_bpe_encode_chunk(const mg_tokenizer *tok, const uint8_t *text, size_t n,
                              pcre2_match_data *match, mg_tok_ids *out) {
    if (!tok->regex) return bpe_piece(tok, text, n, out);
    pcre2_match_context *context = NULL;
    pcre2_jit_stack *stack = NULL;
    mg_status status = MG_OK;
    size_t pos = 0;
    /* no cache is no error: just slower */
    piece_cache cache = {NULL, 0};
    if (n >= MG_PIECE_CACHE_MIN) {
        uint64_t entries = 256; /* about one entry per 64 bytes of text */
        while (entries < PIECE_CACHE_MAX && entries * 64 < n) entries *= 2;
        cache.entries = calloc(entries, sizeof *cache.entries);
        cache.mask = entries - 1;
    }
    while (pos < n) {
        if (tok->qwen_fast) {
            size_t length = qwen_fast_piece(text, n, pos);
            if (length) {
                status = cached_piece(tok, &cache, text + pos, length, out);
                if (status != MG_OK) break;
                pos += length;
                continue;
            }
        }
        int rc = tok->regex_jit
                     ? pcre2_jit_match(tok->regex, text, n, pos, 0, match, context)
                     : pcre2_match(tok->regex, text, n, pos, PCRE2_NO_UTF_CHECK, match, context);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !stack) {
            /* Deep backtracking on a pathological input: retry this match
             * with a larger stack than the 32 KiB default. */
            context = pcre2_match_context_create(NULL);
            stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
            if (!context || !stack) {
                status = mg_error(MG_ERR_NO_MEMORY, "%s: out of memory for the regex stack", tok->name);
                break;
            }
            pcre2_jit_stack_assign(context, NULL, stack);
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH) {
            /* tiktoken drops text no alternative matches; HF's Split
             * "Isolated" keeps it as a piece */
            if (tok->keep_unmatched) status = cached_piece(tok, &cache, text + pos, n - pos, out);
            break;
        }
        if (rc < 0) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(rc, message, sizeof message);
            status = mg_error(MG_ERR_UNSUPPORTED, "%s: pre-tokenizer regex failed at byte %zu: %s",
                              tok->name, pos, (const char *)message);
            break;
        }
        PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(match);
        size_t start = ovector[0], end = ovector[1];
        if (end == start) {
            /* an empty match yields no piece; step over one character */
            pos = end + 1;
            while (pos < n && (text[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (start > pos && tok->keep_unmatched) {
            status = cached_piece(tok, &cache, text + pos, start - pos, out);
            if (status != MG_OK) break;
        }
        status = cached_piece(tok, &cache, text + start, end - start, out);
        if (status != MG_OK) break;
        pos = end;
    }
    if (context) pcre2_match_context_free(context);
    if (stack) pcre2_jit_stack_free(stack);
    free(cache.entries);
    return status;
}

mg_status mg_bpe_build_tiktoken_pairs(mg_tokenizer *tok) {
    uint64_t total = 0;
    for (int32_t id = 0; id < tok->n_base; id++) {
        size_t len;
        mg_tok_strings_get(&tok->vocab, id, &len);
        if (len > 1) total += len - 1;
    }
    MG_TRY(mg_tok_pairs_init(&tok->pairs, total / 2 + 16));
    for (int32_t id = 0; id < tok->n_base; id++) {
        size_t len;
        const uint8_t *bytes = mg_tok_strings_get(&tok->vocab, id, &len);
        for (size_t k = 1; k < len; k++) {
            int32_t left = mg_tok_strings_find(&tok->vocab, bytes, k);
            if (left < 0 || left >= tok->n_base) continue;
            int32_t right = mg_tok_strings_find(&tok->vocab, bytes + k, len - k);
            if (right < 0 || right >= tok->n_base) continue;
            MG_TRY(mg_tok_pairs_put(&tok->pairs, left, right, id, id));
        }
    }
    return MG_OK;
}

/* ------------------------------------------------------ qwen.tiktoken file */

static int base64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Standard base64 with '=' padding; returns decoded length or -1. */
static long base64_decode(const uint8_t *in, size_t n, uint8_t *out) {
    if (n == 0 || n % 4 != 0) return -1;
    size_t pad = 0;
    if (in[n - 1] == '=') pad++;
    if (in[n - 2] == '=') pad++;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            if (i + k >= n - pad) {
                v[k] = 0;
                continue;
            }
            v[k] = base64_value(in[i + k]);
            if (v[k] < 0) return -1;
        }
        uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (i + 4 < n || pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (i + 4 < n || pad < 1) out[o++] = (uint8_t)w;
    }
    return (long)o;
}

typedef struct rank_line {
    uint64_t offset; /* into the decoded-bytes blob */
    uint32_t length;
    int64_t line;
} rank_line;

mg_status mg_tokenizer_load_tiktoken_memory(const char *data, size_t n_bytes, const char *pattern,
                                            const char *name, mg_tokenizer **out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load_tiktoken_memory: out is NULL");
    *out = NULL;
    if (!data && n_bytes) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load_tiktoken_memory: data is NULL");
    const char *label = name ? name : "tiktoken ranks";
    mg_tokenizer *tok;
    MG_TRY(mg_tokenizer_new(MG_TOKENIZER_TIKTOKEN, label, &tok));

    /* pass 1: parse lines into (rank -> bytes); ranks must be 0..N-1 */
    rank_line *by_rank = NULL;
    size_t n_lines = 0, capacity = 0;
    mg_tok_bytes blob = {0};
    mg_status status = MG_OK;
    const uint8_t *p = (const uint8_t *)data, *end = p + n_bytes;
    int64_t line_number = 0;
    uint8_t decoded[1024];
    int64_t max_rank = -1;
    /* ranks must be 0..N-1 for N tokens, so none can reach the number of
     * lines: a huge rank on a short file is refused before it sizes any
     * allocation (a 20-byte file once made this loader touch 2.4 GB) */
    size_t max_lines = 0;
    for (const uint8_t *q = p; q < end;) {
        const uint8_t *nl = memchr(q, '\n', (size_t)(end - q));
        max_lines++;
        if (!nl) break;
        q = nl + 1;
    }
    while (p < end && status == MG_OK) {
        line_number++;
        const uint8_t *line_end = memchr(p, '\n', (size_t)(end - p));
        if (!line_end) line_end = end;
        const uint8_t *q = line_end;
        if (q > p && q[-1] == '\r') q--;
        if (q == p) { /* empty lines are skipped, as tiktoken's loader does */
            p = line_end + 1;
            continue;
        }
        const uint8_t *space = memchr(p, ' ', (size_t)(q - p));
        if (!space || space == p || space + 1 == q) {
            status = mg_error(MG_ERR_FORMAT, "%s: line %lld: expected \"<base64 token> <rank>\"", label,
                              (long long)line_number);
            break;
        }
        if ((size_t)(space - p) > sizeof decoded / 3 * 4) {
            status = mg_error(MG_ERR_FORMAT, "%s: line %lld: token longer than %zu bytes", label,
                              (long long)line_number, sizeof decoded / 4 * 3);
            break;
        }
        long length = base64_decode(p, (size_t)(space - p), decoded);
        if (length < 0) {
            status = mg_error(MG_ERR_FORMAT, "%s: line %lld: token is not valid base64", label, (long long)line_number);
            break;
        }
        int64_t rank = 0;
        for (const uint8_t *r = space + 1; r < q; r++) {
            if (*r < '0' || *r > '9' || rank > 100000000) {
                status = mg_error(MG_ERR_FORMAT, "%s: line %lld: rank is not a non-negative integer below 1e8",
                                  label, (long long)line_number);
                break;
            }
            rank = rank * 10 + (*r - '0');
        }
        if (status != MG_OK) break;
        if ((size_t)rank >= max_lines) {
            status = mg_error(MG_ERR_FORMAT, "%s: line %lld: rank %lld is impossible in a file of %zu lines "
                              "(ranks are 0..N-1 for N tokens)", label, (long long)line_number, (long long)rank,
                              max_lines);
            break;
        }
        if ((size_t)rank >= capacity) {
            size_t new_capacity = capacity ? capacity : 1024;
            while (new_capacity <= (size_t)rank) new_capacity *= 2;
            if (new_capacity > max_lines) new_capacity = max_lines;
            rank_line *bigger = realloc(by_rank, new_capacity * sizeof *bigger);
            if (!bigger) {
                status = mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", label);
                break;
            }
            for (size_t k = capacity; k < new_capacity; k++) bigger[k].line = 0;
            by_rank = bigger;
            capacity = new_capacity;
        }
        if (by_rank[rank].line) {
            status = mg_error(MG_ERR_FORMAT, "%s: line %lld: rank %lld already given on line %lld", label,
                              (long long)line_number, (long long)rank, (long long)by_rank[rank].line);
            break;
        }
        by_rank[rank] = (rank_line){blob.size, (uint32_t)length, line_number};
        status = mg_tok_bytes_append(&blob, decoded, (size_t)length);
        if (rank > max_rank) max_rank = rank;
        n_lines++;
        p = line_end + 1;
    }
    if (status == MG_OK && n_lines == 0) status = mg_error(MG_ERR_FORMAT, "%s: no tokens", label);
    if (status == MG_OK && (size_t)(max_rank + 1) != n_lines) {
        int64_t missing = 0;
        while (missing <= max_rank && by_rank[missing].line) missing++;
        status = mg_error(MG_ERR_FORMAT, "%s: ranks are not 0..%lld: rank %lld is missing", label,
                          (long long)max_rank, (long long)missing);
    }
    for (size_t rank = 0; status == MG_OK && rank < n_lines; rank++)
        status = mg_tok_strings_append(&tok->vocab, blob.data + by_rank[rank].offset, by_rank[rank].length);
    if (status == MG_OK) {
        tok->n_base = (int32_t)n_lines;
        int32_t a, b;
        if (mg_tok_strings_index(&tok->vocab, &a, &b) != MG_OK)
            status = mg_error(MG_ERR_FORMAT, "%s: line %lld repeats the token of line %lld", label,
                              (long long)by_rank[b].line, (long long)by_rank[a].line);
    }
    for (int byte = 0; status == MG_OK && byte < 256; byte++) {
        uint8_t c = (uint8_t)byte;
        int32_t id = mg_tok_strings_find(&tok->vocab, &c, 1);
        if (id < 0) status = mg_error(MG_ERR_FORMAT, "%s: byte 0x%02X has no token, so some text cannot be encoded", label, byte);
        tok->byte_to_id[byte] = id;
    }
    free(by_rank);
    free(blob.data);
    if (status == MG_OK) status = mg_bpe_build_tiktoken_pairs(tok);
    if (status == MG_OK) status = mg_bpe_compile_regex(tok, pattern ? pattern : mg_qwen_pattern);
    if (status == MG_OK) status = mg_tokenizer_finish(tok);
    if (status != MG_OK) {
        mg_tokenizer_destroy(tok);
        return status;
    }
    tok->whole_word_first = true;
    *out = tok;
    return MG_OK;
}
