/* The public tokenizer API: loading and format detection, special/added
 * tokens, encoding (split on added tokens, then the model per chunk),
 * batches on the thread pool, decoding and streaming decoding. */
#include "tokenizer/tokenizer_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define QWEN_N_EXTRAS 205
#define QWEN_IMAGE_SPAN 256 /* IMG_TOKEN_SPAN in Qwen-VL's tokenization_qwen.py */

/* ------------------------------------------------------------- lifetime */

mg_status mg_tokenizer_new(mg_tokenizer_kind kind, const char *name, mg_tokenizer **out) {
    mg_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return mg_error(MG_ERR_NO_MEMORY, "tokenizer: out of memory");
    tok->kind = kind;
    snprintf(tok->name, sizeof tok->name, "%s", name ? name : "tokenizer");
    tok->bos_id = tok->eos_id = tok->unk_id = -1;
    tok->img_start_id = tok->img_end_id = tok->img_pad_id = -1;
    tok->first_special_id = -1;
    *out = tok;
    return MG_OK;
}

void mg_tokenizer_destroy(mg_tokenizer *tok) {
    if (!tok) return;
    mg_tok_strings_free(&tok->vocab);
    mg_tok_strings_free(&tok->sp_pieces);
    mg_tok_pairs_free(&tok->pairs);
    if (tok->regex) pcre2_code_free(tok->regex);
    free(tok->added);
    free(tok->added_by_length);
    free(tok->id_flags);
    free(tok->added_of_id);
    free(tok->added_lengths);
    free(tok->scores);
    free(tok->piece_type);
    free(tok->sp_piece_ids);
    free(tok->byte_piece_value);
    free(tok->user_defined_ids);
    free(tok);
}

static mg_status read_file(const char *path, uint8_t **data, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return mg_error(MG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mg_error(MG_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buffer = malloc(size + 1);
    if (!buffer) {
        fclose(f);
        return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = size ? fread(buffer, 1, size, f) : 0;
    fclose(f);
    if (got != size) {
        free(buffer);
        return mg_error(MG_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, size);
    }
    buffer[size] = 0;
    *data = buffer;
    *n = size;
    return MG_OK;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* --------------------------------------------------------- added tokens */

mg_status mg_tokenizer_register_added(mg_tokenizer *tok, int32_t id, bool special, bool lstrip, bool rstrip) {
    size_t len;
    const uint8_t *text = mg_tok_strings_get(&tok->vocab, id, &len);
    if (len == 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: added token %d is empty", tok->name, id);
    if (tok->n_added == tok->added_capacity) {
        int32_t capacity = tok->added_capacity ? tok->added_capacity * 2 : 64;
        mg_tok_added *added = realloc(tok->added, (size_t)capacity * sizeof *added);
        if (added) tok->added = added;
        int32_t *order = realloc(tok->added_by_length, (size_t)capacity * sizeof *order);
        if (order) tok->added_by_length = order;
        if (!added || !order) return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory for added tokens", tok->name);
        tok->added_capacity = capacity;
    }
    int32_t index = tok->n_added++;
    tok->added[index] = (mg_tok_added){id, special, lstrip, rstrip};
    /* insertion into the longest-first order: the leftmost match in text
     * is then also the longest, like transformers' trie and tiktoken */
    int32_t k = index;
    while (k > 0) {
        size_t other;
        mg_tok_strings_get(&tok->vocab, tok->added[tok->added_by_length[k - 1]].id, &other);
        if (other >= len) break;
        tok->added_by_length[k] = tok->added_by_length[k - 1];
        k--;
    }
    tok->added_by_length[k] = index;
    tok->first_byte[text[0]] = true;
    if (lstrip || rstrip) tok->any_strip = true;
    return MG_OK;
}

/* The tables find_added uses: which ids are added tokens, the distinct
 * lengths (longest first) and the first two bytes of every added token. */
static mg_status rebuild_added_index(mg_tokenizer *tok) {
    int32_t *of_id = realloc(tok->added_of_id, ((size_t)tok->vocab.n + 1) * sizeof *of_id);
    size_t *lengths = realloc(tok->added_lengths, ((size_t)tok->n_added + 1) * sizeof *lengths);
    if (of_id) tok->added_of_id = of_id;
    if (lengths) tok->added_lengths = lengths;
    if (!of_id || !lengths) return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", tok->name);
    for (int32_t id = 0; id <= tok->vocab.n; id++) of_id[id] = -1;
    memset(tok->single_byte_added, 0, sizeof tok->single_byte_added);
    memset(tok->added_pairs, 0, sizeof tok->added_pairs);
    int32_t n_lengths = 0;
    for (int32_t i = 0; i < tok->n_added; i++) {
        size_t len;
        const uint8_t *s = mg_tok_strings_get(&tok->vocab, tok->added[i].id, &len);
        of_id[tok->added[i].id] = i;
        if (len == 1) tok->single_byte_added[s[0]] = true;
        else tok->added_pairs[(s[0] << 8 | s[1]) >> 3] |= (uint8_t)(1u << (s[1] & 7));
        int32_t k = 0;
        while (k < n_lengths && lengths[k] > len) k++;
        if (k < n_lengths && lengths[k] == len) continue;
        memmove(lengths + k + 1, lengths + k, (size_t)(n_lengths - k) * sizeof *lengths);
        lengths[k] = len;
        n_lengths++;
    }
    tok->n_added_lengths = n_lengths;
    return MG_OK;
}

/* id_flags: (re)computed from `added` and the piece types. */
static mg_status rebuild_id_flags(mg_tokenizer *tok) {
    uint8_t *flags = realloc(tok->id_flags, (size_t)tok->vocab.n + 1);
    if (!flags) return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", tok->name);
    memset(flags, 0, (size_t)tok->vocab.n + 1);
    for (int32_t i = 0; i < tok->n_added; i++) {
        const mg_tok_added *a = &tok->added[i];
        if (a->special) flags[a->id] |= MG_TOK_FLAG_SPECIAL;
        if (a->id >= tok->n_base) flags[a->id] |= MG_TOK_FLAG_ADDED;
    }
    if (tok->kind == MG_TOKENIZER_SENTENCEPIECE) {
        for (int32_t id = 0; id < tok->n_base; id++)
            if (tok->piece_type[id] == MG_SP_CONTROL || tok->piece_type[id] == MG_SP_UNKNOWN)
                flags[id] |= MG_TOK_FLAG_SPECIAL;
    }
    tok->id_flags = flags;
    return rebuild_added_index(tok);
}

mg_status mg_tokenizer_add_tokens(mg_tokenizer *tok, const char *const *tokens, int64_t n_tokens, bool special,
                                  bool strip_whitespace) {
    if (!tok || (!tokens && n_tokens > 0) || n_tokens < 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_add_tokens: tok/tokens is NULL or n_tokens < 0");
    for (int64_t i = 0; i < n_tokens; i++) {
        if (!tokens[i] || !tokens[i][0])
            return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: added token %lld is empty", tok->name, (long long)i);
        size_t len = strlen(tokens[i]);
        if (mg_utf8_first_invalid((const uint8_t *)tokens[i], len) != len)
            return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: added token %lld is not valid UTF-8", tok->name, (long long)i);
        int32_t existing = mg_tok_strings_find(&tok->vocab, (const uint8_t *)tokens[i], len);
        if (existing >= 0)
            return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: token '%s' is already in the vocabulary (id %d)", tok->name,
                            tokens[i], existing);
        int32_t id = tok->vocab.n;
        MG_TRY(mg_tok_strings_append(&tok->vocab, (const uint8_t *)tokens[i], len));
        /* the index must see the new string before the next duplicate check */
        MG_TRY(mg_tok_strings_index_last(&tok->vocab));
        MG_TRY(mg_tokenizer_register_added(tok, id, special, strip_whitespace, strip_whitespace));
        if (special && tok->first_special_id < 0) tok->first_special_id = id;
    }
    return rebuild_id_flags(tok);
}

/* ----------------------------------------------------------- loaders */

mg_status mg_tokenizer_load_qwen(const char *path, mg_tokenizer **out) {
    if (!path || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load_qwen: path/out is NULL");
    *out = NULL;
    uint8_t *data;
    size_t n;
    MG_TRY(read_file(path, &data, &n));
    mg_status status = mg_tokenizer_load_qwen_memory((const char *)data, n, base_name(path), out);
    free(data);
    return status;
}

mg_status mg_tokenizer_load_qwen_memory(const char *data, size_t n, const char *name, mg_tokenizer **out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load_qwen_memory: out is NULL");
    *out = NULL;
    mg_tokenizer *tok;
    MG_TRY(mg_tokenizer_load_tiktoken_memory(data, n, mg_qwen_pattern, name ? name : "qwen.tiktoken", &tok));
    mg_status status;
    /* Qwen-VL's SPECIAL_TOKENS order: ENDOFTEXT, IMSTART, IMEND, the 205
     * extras, then the image/box tags; ids continue the ranks. */
    static const char *const image_tags[] = {"<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>",
                                             "<img>", "</img>", "<imgpad>"};
    const char *names[3 + QWEN_N_EXTRAS + 9];
    char extras[QWEN_N_EXTRAS][20];
    int k = 0;
    names[k++] = "<|endoftext|>";
    names[k++] = "<|im_start|>";
    names[k++] = "<|im_end|>";
    for (int i = 0; i < QWEN_N_EXTRAS; i++) {
        snprintf(extras[i], sizeof extras[i], "<|extra_%d|>", i);
        names[k++] = extras[i];
    }
    for (int i = 0; i < 9; i++) names[k++] = image_tags[i];
    int32_t first = tok->vocab.n;
    status = mg_tokenizer_add_tokens(tok, names, k, true, false);
    if (status != MG_OK) {
        mg_tokenizer_destroy(tok);
        return status;
    }
    tok->eos_id = first; /* <|endoftext|> is Qwen's eod/eos/pad */
    tok->first_special_id = first;
    tok->img_start_id = first + 3 + QWEN_N_EXTRAS + 6;
    tok->img_end_id = tok->img_start_id + 1;
    tok->img_pad_id = tok->img_start_id + 2;
    tok->qwen_images = true;
    tok->wants_nfc = true;
    *out = tok;
    return MG_OK;
}

/* transformers registers the model's control pieces (<s>, </s>, <unk>) as
 * no-split special tokens without whitespace stripping. */
static mg_status register_sentencepiece_controls(mg_tokenizer *tok) {
    for (int32_t id = 0; id < tok->n_base; id++) {
        if (tok->piece_type[id] == MG_SP_CONTROL || tok->piece_type[id] == MG_SP_UNKNOWN)
            MG_TRY(mg_tokenizer_register_added(tok, id, true, false, false));
    }
    return MG_OK;
}

mg_status mg_tokenizer_finish(mg_tokenizer *tok) {
    if (tok->kind == MG_TOKENIZER_SENTENCEPIECE && tok->n_added == 0) MG_TRY(register_sentencepiece_controls(tok));
    return rebuild_id_flags(tok);
}

mg_status mg_tokenizer_load_sentencepiece(const char *path, mg_tokenizer **out) {
    if (!path || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load_sentencepiece: path/out is NULL");
    *out = NULL;
    uint8_t *data;
    size_t n;
    MG_TRY(read_file(path, &data, &n));
    mg_tokenizer *tok;
    mg_status status = mg_tokenizer_load_sentencepiece_memory(data, n, base_name(path), &tok);
    free(data);
    if (status != MG_OK) return status;
    *out = tok;
    return MG_OK;
}

/* Adds MedPLIB's tokens to a freshly loaded LLaMA SentencePiece model;
 * destroys it on failure. */
static mg_status add_medplib_tokens(mg_tokenizer **out);

mg_status mg_tokenizer_load_medplib(const char *path, mg_tokenizer **out) {
    MG_TRY(mg_tokenizer_load_sentencepiece(path, out));
    return add_medplib_tokens(out);
}

mg_status mg_tokenizer_load_medplib_memory(const uint8_t *bytes, size_t n_bytes, const char *name, mg_tokenizer **out) {
    MG_TRY(mg_tokenizer_load_sentencepiece_memory(bytes, n_bytes, name, out));
    return add_medplib_tokens(out);
}

static mg_status add_medplib_tokens(mg_tokenizer **out) {
    /* MedPLIB's train code adds these with tokenizer.add_tokens (plain
     * added tokens: whitespace stripped around them by the slow tokenizer),
     * in this order; ids follow the 32000 base pieces. */
    static const char *const head[] = {"<SEG>", "<ref>", "</ref>", "<region>", "</region>",
                                       "<sr>", "</sr>", "<mask>", "</mask>"};
    const char *names[9 + 256 + 2];
    char gens[256][12];
    int k = 0;
    for (int i = 0; i < 9; i++) names[k++] = head[i];
    for (int i = 0; i < 256; i++) {
        snprintf(gens[i], sizeof gens[i], "<gen_%d>", i + 1);
        names[k++] = gens[i];
    }
    names[k++] = "<im_start>";
    names[k++] = "<im_end>";
    mg_status status = mg_tokenizer_add_tokens(*out, names, k, false, true);
    if (status != MG_OK) {
        mg_tokenizer_destroy(*out);
        *out = NULL;
    }
    return status;
}

mg_status mg_tokenizer_load_hf_json(const char *path, mg_tokenizer **out) {
    if (!path || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load_hf_json: path/out is NULL");
    *out = NULL;
    uint8_t *data;
    size_t n;
    MG_TRY(read_file(path, &data, &n));
    mg_status status = mg_tokenizer_load_hf_json_memory((const char *)data, n, base_name(path), out);
    free(data);
    return status;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

mg_status mg_tokenizer_load(const char *path, mg_tokenizer **out) {
    if (!path || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load: path/out is NULL");
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return mg_error(MG_ERR_NOT_FOUND, "%s: no such file or folder", path);
    if (S_ISDIR(st.st_mode)) {
        static const char *const names[] = {"qwen.tiktoken", "tokenizer.model", "tokenizer.json"};
        char candidate[4096];
        for (int i = 0; i < 3; i++) {
            snprintf(candidate, sizeof candidate, "%s/%s", path, names[i]);
            if (file_exists(candidate)) return mg_tokenizer_load(candidate, out);
        }
        return mg_error(MG_ERR_NOT_FOUND, "%s: holds none of qwen.tiktoken, tokenizer.model, tokenizer.json", path);
    }
    /* by content: JSON starts with '{', GGUF with its magic, a SentencePiece
     * model with protobuf field 1 (0x0A), a ranks file with base64 text */
    FILE *f = fopen(path, "rb");
    if (!f) return mg_error(MG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t head[8] = {0};
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    size_t skip = 0;
    while (skip < got && (head[skip] == ' ' || head[skip] == '\n' || head[skip] == '\r' || head[skip] == '\t')) skip++;
    if (got >= 4 && memcmp(head, "GGUF", 4) == 0)
        return mg_error(MG_ERR_UNSUPPORTED,
                        "%s: a GGUF file; read metadata medground.tokenizer.qwen_tiktoken or "
                        "medground.tokenizer.sentencepiece_model and use the *_memory loaders",
                        path);
    if (skip < got && head[skip] == '{') return mg_tokenizer_load_hf_json(path, out);
    if (got > 0 && head[0] == 0x0A) return mg_tokenizer_load_sentencepiece(path, out);
    if (got > 0) return mg_tokenizer_load_qwen(path, out);
    return mg_error(MG_ERR_FORMAT, "%s: empty file", path);
}

/* ------------------------------------------------------------- queries */

mg_tokenizer_kind mg_tokenizer_get_kind(const mg_tokenizer *tok) { return tok->kind; }
int32_t mg_tokenizer_vocab_size(const mg_tokenizer *tok) { return tok ? tok->vocab.n : 0; }
bool mg_tokenizer_wants_nfc(const mg_tokenizer *tok) { return tok && tok->wants_nfc; }
int32_t mg_tokenizer_bos_id(const mg_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int32_t mg_tokenizer_eos_id(const mg_tokenizer *tok) { return tok ? tok->eos_id : -1; }

mg_status mg_tokenizer_token_to_id(const mg_tokenizer *tok, const char *token, size_t n_bytes, int32_t *id) {
    if (!tok || (!token && n_bytes) || !id)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_token_to_id: NULL argument");
    *id = mg_tok_strings_find(&tok->vocab, (const uint8_t *)token, n_bytes);
    if (*id < 0)
        return mg_error(MG_ERR_NOT_FOUND, "%s: token '%.*s' is not in the vocabulary", tok->name,
                        (int)(n_bytes > 200 ? 200 : n_bytes), token ? token : "");
    return MG_OK;
}

mg_status mg_tokenizer_id_to_token(const mg_tokenizer *tok, int32_t id, const char **bytes, size_t *n_bytes,
                                   bool *is_special) {
    if (!tok || !bytes || !n_bytes) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_id_to_token: NULL argument");
    if (id < 0 || id >= tok->vocab.n)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: id %d is outside [0, %d)", tok->name, id, tok->vocab.n);
    *bytes = (const char *)mg_tok_strings_get(&tok->vocab, id, n_bytes);
    if (*n_bytes == 0) return mg_error(MG_ERR_NOT_FOUND, "%s: id %d has no token (a hole in the vocabulary)", tok->name, id);
    if (is_special) *is_special = tok->id_flags && (tok->id_flags[id] & (MG_TOK_FLAG_SPECIAL | MG_TOK_FLAG_ADDED));
    return MG_OK;
}

/* -------------------------------------------------------------- encode */

/* Earliest (then longest) allowed added token at or after `from`: at each
 * byte that can start one, look the text up by each added-token length
 * (longest first) in the vocabulary's hash index. */
static int32_t find_added(const mg_tokenizer *tok, const bool *allowed, const uint8_t *text, size_t n, size_t from,
                          size_t *at) {
    if (tok->n_added == 0) return -1;
    for (size_t i = from; i < n; i++) {
        uint8_t c = text[i];
        if (!tok->first_byte[c]) continue;
        bool pair = i + 1 < n && (tok->added_pairs[(c << 8 | text[i + 1]) >> 3] & (1u << (text[i + 1] & 7)));
        if (!pair && !tok->single_byte_added[c]) continue;
        for (int32_t k = 0; k < tok->n_added_lengths; k++) {
            size_t len = tok->added_lengths[k];
            if (len > n - i || (len > 1 && !pair)) continue;
            int32_t id = mg_tok_strings_find(&tok->vocab, text + i, len);
            if (id < 0) continue;
            int32_t index = tok->added_of_id[id];
            if (index >= 0 && allowed[index]) {
                *at = i;
                return index;
            }
        }
    }
    return -1;
}

static void strip_left(const uint8_t *text, size_t *begin, size_t end) {
    while (*begin < end) {
        size_t len;
        if (!mg_utf8_is_python_space(text + *begin, end - *begin, &len)) break;
        *begin += len;
    }
}

static void strip_right(const uint8_t *text, size_t begin, size_t *end) {
    while (*end > begin) {
        size_t start = *end - 1;
        while (start > begin && (text[start] & 0xC0) == 0x80) start--;
        size_t len;
        if (!mg_utf8_is_python_space(text + start, *end - start, &len)) break;
        *end = start;
    }
}

static mg_status encode_chunk(const mg_tokenizer *tok, const uint8_t *text, size_t n, pcre2_match_data *match,
                              mg_tok_ids *out) {
    if (n == 0) return MG_OK;
    switch (tok->kind) {
    case MG_TOKENIZER_SENTENCEPIECE: return mg_sp_encode_chunk(tok, text, n, out);
    case MG_TOKENIZER_HF_BYTE_BPE:
        if (tok->hf_add_prefix_space && text[0] != ' ') {
            mg_tok_bytes spaced = {0};
            mg_status status = mg_tok_bytes_append(&spaced, " ", 1);
            if (status == MG_OK) status = mg_tok_bytes_append(&spaced, text, n);
            if (status == MG_OK) status = mg_bpe_encode_chunk(tok, spaced.data, spaced.size, match, out);
            free(spaced.data);
            return status;
        }
        return mg_bpe_encode_chunk(tok, text, n, match, out);
    default: return mg_bpe_encode_chunk(tok, text, n, match, out);
    }
}

/* Qwen-VL's `<img>path</img>` rule (tokenization_qwen.py `_encode_imgurl`):
 * the path's UTF-8 bytes become ids equal to the byte values, right-padded
 * with <imgpad> to 256. */
static mg_status encode_image_span(const mg_tokenizer *tok, const uint8_t *path, size_t n, size_t at,
                                   mg_tok_ids *out) {
    if (n > QWEN_IMAGE_SPAN)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: the <img> path at byte %zu is %zu bytes; at most %d fit",
                        tok->name, at, n, QWEN_IMAGE_SPAN);
    MG_TRY(mg_tok_ids_reserve(out, QWEN_IMAGE_SPAN + 2));
    out->data[out->size++] = tok->img_start_id;
    for (size_t i = 0; i < QWEN_IMAGE_SPAN; i++) out->data[out->size++] = i < n ? (int32_t)path[i] : tok->img_pad_id;
    out->data[out->size++] = tok->img_end_id;
    return MG_OK;
}

static mg_status encode_text(const mg_tokenizer *tok, const uint8_t *text, size_t n, const mg_encode_options *o,
                             const bool *allowed, pcre2_match_data *match, mg_tok_ids *out) {
    if (o->add_bos) {
        if (tok->bos_id < 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: add_bos asked but the vocabulary has no BOS", tok->name);
        MG_TRY(mg_tok_ids_push(out, tok->bos_id));
    }
    size_t chunk = 0;
    bool strip_next = false;
    for (;;) {
        size_t at = n;
        int32_t index = find_added(tok, allowed, text, n, chunk, &at);
        size_t begin = chunk, end = at;
        if (strip_next) strip_left(text, &begin, end);
        if (index >= 0 && tok->added[index].lstrip) strip_right(text, begin, &end);
        MG_TRY(encode_chunk(tok, text + begin, end - begin, match, out));
        if (index < 0) break;
        const mg_tok_added *a = &tok->added[index];
        size_t len;
        mg_tok_strings_get(&tok->vocab, a->id, &len);
        chunk = at + len;
        strip_next = a->rstrip;
        if (o->expand_images && tok->qwen_images && a->id == tok->img_start_id) {
            size_t close_at = n;
            int32_t close = find_added(tok, allowed, text, n, chunk, &close_at);
            if (close < 0 || tok->added[close].id != tok->img_end_id) {
                if (close < 0)
                    return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: <img> at byte %zu is not closed by </img>", tok->name, at);
                size_t other_len;
                const uint8_t *other = mg_tok_strings_get(&tok->vocab, tok->added[close].id, &other_len);
                return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: special token %.*s at byte %zu inside <img>...</img>",
                                tok->name, (int)other_len, (const char *)other, close_at);
            }
            MG_TRY(encode_image_span(tok, text + chunk, close_at - chunk, at, out));
            mg_tok_strings_get(&tok->vocab, tok->img_end_id, &len);
            chunk = close_at + len;
            strip_next = tok->added[close].rstrip;
            continue;
        }
        MG_TRY(mg_tok_ids_push(out, a->id));
    }
    if (o->add_eos) {
        if (tok->eos_id < 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: add_eos asked but the vocabulary has no EOS", tok->name);
        MG_TRY(mg_tok_ids_push(out, tok->eos_id));
    }
    return MG_OK;
}

/* Which added entries may match: non-special always, special per options. */
static mg_status build_allowed(const mg_tokenizer *tok, const mg_encode_options *o, bool **allowed) {
    bool *a = malloc((size_t)tok->n_added + 1);
    if (!a) return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", tok->name);
    for (int32_t i = 0; i < tok->n_added; i++)
        a[i] = !tok->added[i].special || o->special == MG_SPECIAL_ALL;
    if (o->special == MG_SPECIAL_LIST) {
        if (o->n_allowed < 0 || (o->n_allowed > 0 && !o->allowed)) {
            free(a);
            return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: allowed special list is NULL or n_allowed < 0", tok->name);
        }
        for (int64_t k = 0; k < o->n_allowed; k++) {
            const char *name = o->allowed[k];
            int32_t found = -1;
            for (int32_t i = 0; name && i < tok->n_added && found < 0; i++) {
                size_t len;
                const uint8_t *s = mg_tok_strings_get(&tok->vocab, tok->added[i].id, &len);
                if (strlen(name) == len && memcmp(s, name, len) == 0) found = i;
            }
            if (found < 0) {
                free(a);
                return mg_error(MG_ERR_NOT_FOUND, "%s: allowed special token '%s' is not a special token of this tokenizer",
                                tok->name, name ? name : "(null)");
            }
            a[found] = true;
        }
    } else if (o->special != MG_SPECIAL_ALL && o->special != MG_SPECIAL_NONE) {
        free(a);
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: special mode %d is not ALL, NONE or LIST", tok->name, (int)o->special);
    }
    *allowed = a;
    return MG_OK;
}

static mg_status encode_with(const mg_tokenizer *tok, const char *text, size_t n_bytes, const mg_encode_options *o,
                             const bool *allowed, int32_t **ids, size_t *n_ids) {
    size_t bad = mg_utf8_first_invalid((const uint8_t *)text, n_bytes);
    if (bad != n_bytes)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: text is not valid UTF-8 at byte %zu (0x%02X)", tok->name, bad,
                        ((const uint8_t *)text)[bad]);
    pcre2_match_data *match = NULL;
    if (tok->regex) {
        match = pcre2_match_data_create_from_pattern(tok->regex, NULL);
        if (!match) return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", tok->name);
    }
    mg_tok_ids out = {0};
    mg_status status = encode_text(tok, (const uint8_t *)text, n_bytes, o, allowed, match, &out);
    if (match) pcre2_match_data_free(match);
    if (status != MG_OK) {
        free(out.data);
        return status;
    }
    *ids = out.data;
    *n_ids = out.size;
    return MG_OK;
}

mg_status mg_tokenizer_encode(const mg_tokenizer *tok, const char *text, size_t n_bytes,
                              const mg_encode_options *options, int32_t **ids, size_t *n_ids) {
    if (!tok || !ids || !n_ids || (!text && n_bytes))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_encode: tok, text, ids and n_ids must not be NULL");
    *ids = NULL;
    *n_ids = 0;
    static const mg_encode_options defaults = {0};
    const mg_encode_options *o = options ? options : &defaults;
    bool *allowed;
    MG_TRY(build_allowed(tok, o, &allowed));
    mg_status status = encode_with(tok, text ? text : "", n_bytes, o, allowed, ids, n_ids);
    free(allowed);
    return status;
}

typedef struct batch_job {
    const mg_tokenizer *tok;
    const char *const *texts;
    const size_t *n_bytes;
    const mg_encode_options *options;
    const bool *allowed;
    int32_t **ids;
    size_t *n_ids;
    mg_status *status;
    char **messages; /* a worker's error text, copied out of its thread */
} batch_job;

static void batch_task(void *ctx, int64_t task, int thread_index) {
    (void)thread_index;
    batch_job *job = ctx;
    const char *text = job->texts[task] ? job->texts[task] : "";
    size_t n = job->texts[task] ? job->n_bytes[task] : 0;
    job->status[task] = encode_with(job->tok, text, n, job->options, job->allowed, &job->ids[task], &job->n_ids[task]);
    if (job->status[task] != MG_OK) job->messages[task] = strdup(mg_last_error());
}

mg_status mg_tokenizer_encode_batch(const mg_tokenizer *tok, const char *const *texts, const size_t *n_bytes,
                                    int64_t n_texts, const mg_encode_options *options, mg_threadpool *pool,
                                    int32_t **ids, size_t *n_ids) {
    if (!tok || n_texts < 0 || (n_texts > 0 && (!texts || !n_bytes || !ids || !n_ids)))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_encode_batch: NULL argument or n_texts < 0");
    static const mg_encode_options defaults = {0};
    const mg_encode_options *o = options ? options : &defaults;
    for (int64_t i = 0; i < n_texts; i++) {
        ids[i] = NULL;
        n_ids[i] = 0;
    }
    bool *allowed;
    MG_TRY(build_allowed(tok, o, &allowed));
    mg_status *status = calloc((size_t)n_texts + 1, sizeof *status);
    char **messages = calloc((size_t)n_texts + 1, sizeof *messages);
    if (!status || !messages) {
        free(status);
        free(messages);
        free(allowed);
        return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory for a batch of %lld", tok->name, (long long)n_texts);
    }
    batch_job job = {tok, texts, n_bytes, o, allowed, ids, n_ids, status, messages};
    if (pool) mg_threadpool_run(pool, n_texts, batch_task, &job);
    else
        for (int64_t i = 0; i < n_texts; i++) batch_task(&job, i, 0);
    mg_status result = MG_OK;
    for (int64_t i = 0; i < n_texts; i++) {
        if (status[i] != MG_OK && result == MG_OK)
            result = mg_error(status[i], "text %lld of the batch: %s", (long long)i, messages[i] ? messages[i] : "?");
        free(messages[i]);
    }
    if (result != MG_OK) {
        for (int64_t i = 0; i < n_texts; i++) {
            free(ids[i]);
            ids[i] = NULL;
            n_ids[i] = 0;
        }
    }
    free(status);
    free(messages);
    free(allowed);
    return result;
}

/* -------------------------------------------------------------- decode */

static bool is_special_id(const mg_tokenizer *tok, int32_t id) {
    return tok->id_flags && (tok->id_flags[id] & MG_TOK_FLAG_SPECIAL);
}

/* SentencePiece's Decode for one run of pieces (sentencepiece_processor.cc):
 * control pieces vanish, <unk> shows unk_surface, byte pieces are gathered
 * and turned into characters (one U+FFFD per invalid byte), U+2581 becomes
 * a space and the first piece loses its leading U+2581 (the dummy prefix). */
typedef struct sp_decoder {
    bool is_bos_ws, bos_ws_seen, text_nonempty;
    mg_tok_bytes pending; /* bytes from <0xNN> pieces not yet a character */
} sp_decoder;

static void sp_decoder_reset(sp_decoder *d) {
    d->is_bos_ws = true;
    d->bos_ws_seen = false;
    d->text_nonempty = false;
    d->pending.size = 0;
}

static mg_status emit(mg_tok_bytes *out, sp_decoder *d, const void *bytes, size_t n) {
    if (n) d->text_nonempty = true;
    return mg_tok_bytes_append(out, bytes, n);
}

/* Emits the characters completed so far; at_end: the byte run is over. */
static mg_status sp_flush_bytes(sp_decoder *d, mg_tok_bytes *out, bool at_end) {
    static const uint8_t replacement[3] = {0xEF, 0xBF, 0xBD};
    if (d->pending.size == 0) return MG_OK; /* data may be NULL then */
    size_t i = 0;
    while (i < d->pending.size) {
        bool incomplete;
        size_t subpart;
        size_t len = mg_utf8_char(d->pending.data + i, d->pending.size - i, &incomplete, &subpart);
        if (len) {
            MG_TRY(emit(out, d, d->pending.data + i, len));
            i += len;
        } else if (incomplete && !at_end) {
            break;
        } else {
            MG_TRY(emit(out, d, replacement, 3));
            i += 1;
        }
    }
    memmove(d->pending.data, d->pending.data + i, d->pending.size - i);
    d->pending.size -= i;
    return MG_OK;
}

static mg_status sp_decode_piece(const mg_tokenizer *tok, sp_decoder *d, int32_t id, mg_tok_bytes *out) {
    if (tok->byte_piece_value[id]) {
        uint8_t b = (uint8_t)(tok->byte_piece_value[id] - 1);
        MG_TRY(mg_tok_bytes_append(&d->pending, &b, 1));
        return sp_flush_bytes(d, out, false);
    }
    MG_TRY(sp_flush_bytes(d, out, true));
    if (d->bos_ws_seen || d->text_nonempty) d->is_bos_ws = false;
    int type = tok->piece_type[id];
    if (type == MG_SP_CONTROL) {
        d->bos_ws_seen = false;
        return MG_OK;
    }
    if (type == MG_SP_UNKNOWN) {
        d->bos_ws_seen = false;
        return emit(out, d, tok->unk_surface, strlen(tok->unk_surface));
    }
    size_t len;
    const uint8_t *s = mg_tok_strings_get(&tok->vocab, id, &len);
    bool has_bos_ws = false;
    if (d->is_bos_ws && (tok->add_dummy_prefix || tok->remove_extra_whitespaces)) {
        if (len >= 3 && memcmp(s, "\xE2\x96\x81", 3) == 0) {
            s += 3;
            len -= 3;
            has_bos_ws = true;
        }
        if (tok->remove_extra_whitespaces) has_bos_ws = false;
    }
    d->bos_ws_seen = has_bos_ws;
    size_t start = 0;
    for (size_t i = 0; i + 3 <= len; i++) {
        if (memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            MG_TRY(emit(out, d, s + start, i - start));
            MG_TRY(emit(out, d, " ", 1));
            start = i + 3;
            i += 2;
        }
    }
    return emit(out, d, s + start, len - start);
}

static mg_status sp_decode_run(const mg_tokenizer *tok, const int32_t *ids, size_t n, mg_tok_bytes *out) {
    sp_decoder d = {0};
    sp_decoder_reset(&d);
    mg_status status = MG_OK;
    for (size_t i = 0; i < n && status == MG_OK; i++) status = sp_decode_piece(tok, &d, ids[i], out);
    if (status == MG_OK) status = sp_flush_bytes(&d, out, true);
    free(d.pending.data);
    return status;
}

/* transformers 4.31 LlamaTokenizer.convert_tokens_to_string: control pieces
 * are written verbatim, with a space before the text that precedes them
 * unless they follow another control piece or open the run. */
static mg_status hf_tokens_to_string(const mg_tokenizer *tok, const int32_t *ids, size_t n, mg_tok_bytes *out) {
    size_t run = 0;
    bool prev_special = false;
    for (size_t i = 0; i < n; i++) {
        if (!is_special_id(tok, ids[i])) {
            prev_special = false;
            continue;
        }
        if (!prev_special && i != 0) MG_TRY(mg_tok_bytes_append(out, " ", 1));
        MG_TRY(sp_decode_run(tok, ids + run, i - run, out));
        size_t len;
        const uint8_t *s = mg_tok_strings_get(&tok->vocab, ids[i], &len);
        MG_TRY(mg_tok_bytes_append(out, s, len));
        prev_special = true;
        run = i + 1;
    }
    return sp_decode_run(tok, ids + run, n - run, out);
}

/* transformers 4.31 PreTrainedTokenizer._decode: added tokens and runs of
 * model pieces become separate strings joined by single spaces. */
static mg_status decode_sentencepiece(const mg_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                                      mg_tok_bytes *out) {
    int32_t *kept = malloc((n + 1) * sizeof *kept);
    if (!kept) return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory decoding %zu ids", tok->name, n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!(skip_special && is_special_id(tok, ids[i]))) kept[m++] = ids[i];
    mg_status status = MG_OK;
    bool first_item = true;
    size_t run = 0;
    for (size_t i = 0; i <= m && status == MG_OK; i++) {
        bool added = i < m && (tok->id_flags[kept[i]] & MG_TOK_FLAG_ADDED);
        if (i < m && !added) continue;
        if (i > run) {
            if (!first_item) status = mg_tok_bytes_append(out, " ", 1);
            if (status == MG_OK) status = hf_tokens_to_string(tok, kept + run, i - run, out);
            first_item = false;
        }
        if (added && status == MG_OK) {
            if (!first_item) status = mg_tok_bytes_append(out, " ", 1);
            size_t len;
            const uint8_t *s = mg_tok_strings_get(&tok->vocab, kept[i], &len);
            if (status == MG_OK) status = mg_tok_bytes_append(out, s, len);
            first_item = false;
        }
        run = i + 1;
    }
    free(kept);
    return status;
}

static mg_status check_ids(const mg_tokenizer *tok, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab.n)
            return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: id %d at position %zu is outside [0, %d)", tok->name, ids[i], i,
                            tok->vocab.n);
        if (tok->vocab.offsets[ids[i] + 1] == tok->vocab.offsets[ids[i]])
            return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: id %d at position %zu has no token", tok->name, ids[i], i);
    }
    return MG_OK;
}

/* Byte-level vocabularies: concatenate token bytes, then replace invalid
 * UTF-8 as Python's bytes.decode(errors="replace") does. Qwen-VL <img>
 * spans turn back into their path (tokenization_qwen.py `_decode_imgurl`). */
static mg_status decode_bytes(const mg_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                              mg_tok_bytes *out) {
    mg_tok_bytes raw = {0};
    mg_status status = MG_OK;
    for (size_t i = 0; i < n && status == MG_OK; i++) {
        int32_t id = ids[i];
        if (tok->qwen_images && id == tok->img_start_id) {
            size_t j = i + 1;
            while (j < n && ids[j] != tok->img_end_id) j++;
            if (j == n) {
                status = mg_error(MG_ERR_INVALID_ARGUMENT, "%s: <img> at position %zu has no </img>", tok->name, i);
                break;
            }
            size_t len;
            const uint8_t *s;
            if (!skip_special) {
                s = mg_tok_strings_get(&tok->vocab, id, &len);
                status = mg_tok_bytes_append(&raw, s, len);
            }
            for (size_t k = i + 1; k < j && status == MG_OK && ids[k] != tok->img_pad_id; k++) {
                if (ids[k] > 255) {
                    status = mg_error(MG_ERR_INVALID_ARGUMENT,
                                      "%s: id %d at position %zu inside <img>...</img> is not a byte (0..255)", tok->name,
                                      ids[k], k);
                    break;
                }
                uint8_t b = (uint8_t)ids[k];
                status = mg_tok_bytes_append(&raw, &b, 1);
            }
            if (status == MG_OK && !skip_special) {
                s = mg_tok_strings_get(&tok->vocab, ids[j], &len);
                status = mg_tok_bytes_append(&raw, s, len);
            }
            i = j;
            continue;
        }
        if (skip_special && is_special_id(tok, id)) continue;
        size_t len;
        const uint8_t *s = mg_tok_strings_get(&tok->vocab, id, &len);
        status = mg_tok_bytes_append(&raw, s, len);
    }
    if (status == MG_OK) status = mg_utf8_append_lossy(out, raw.data, raw.size, false);
    free(raw.data);
    return status;
}

mg_status mg_tokenizer_decode(const mg_tokenizer *tok, const int32_t *ids, size_t n_ids, bool skip_special, char **text,
                              size_t *n_bytes) {
    if (!tok || !text || (!ids && n_ids))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_decode: tok, ids and text must not be NULL");
    *text = NULL;
    if (n_bytes) *n_bytes = 0;
    MG_TRY(check_ids(tok, ids, n_ids));
    mg_tok_bytes out = {0};
    mg_status status = tok->kind == MG_TOKENIZER_SENTENCEPIECE ? decode_sentencepiece(tok, ids, n_ids, skip_special, &out)
                                                                : decode_bytes(tok, ids, n_ids, skip_special, &out);
    if (status == MG_OK) status = mg_tok_bytes_append(&out, "", 0); /* NUL even when empty */
    if (status != MG_OK) {
        free(out.data);
        return status;
    }
    *text = (char *)out.data;
    if (n_bytes) *n_bytes = out.size;
    return MG_OK;
}

/* -------------------------------------------------------------- stream */

struct mg_token_stream {
    const mg_tokenizer *tok;
    bool skip_special;
    mg_tok_bytes pending; /* byte-level: bytes of an unfinished character */
    mg_tok_bytes output;  /* returned to the caller, reused */
    sp_decoder sp;
    bool item_emitted, in_run; /* SentencePiece join state (see decode_sentencepiece) */
};

mg_status mg_token_stream_create(const mg_tokenizer *tok, bool skip_special, mg_token_stream **out) {
    if (!tok || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_token_stream_create: NULL argument");
    *out = NULL;
    if (tok->kind == MG_TOKENIZER_SENTENCEPIECE && !skip_special)
        return mg_error(MG_ERR_UNSUPPORTED,
                        "%s: a SentencePiece stream must skip special tokens (transformers places them by looking back)",
                        tok->name);
    mg_token_stream *s = calloc(1, sizeof *s);
    if (!s) return mg_error(MG_ERR_NO_MEMORY, "mg_token_stream_create: out of memory");
    s->tok = tok;
    s->skip_special = skip_special;
    sp_decoder_reset(&s->sp);
    MG_TRY(mg_tok_bytes_append(&s->output, "", 0));
    *out = s;
    return MG_OK;
}

void mg_token_stream_destroy(mg_token_stream *stream) {
    if (!stream) return;
    free(stream->pending.data);
    free(stream->output.data);
    free(stream->sp.pending.data);
    free(stream);
}

/* Emits what of `pending` is decided; keeps a proper prefix of a character
 * unless at_end (then it becomes one U+FFFD, as Python's decoder does). */
static mg_status flush_pending(mg_token_stream *s, bool at_end) {
    static const uint8_t replacement[3] = {0xEF, 0xBF, 0xBD};
    size_t i = 0, start = 0;
    mg_tok_bytes *p = &s->pending;
    if (p->size == 0) return MG_OK; /* data may be NULL then */
    while (i < p->size) {
        if (p->data[i] < 0x80) {
            i++;
            continue;
        }
        bool incomplete;
        size_t subpart;
        size_t len = mg_utf8_char(p->data + i, p->size - i, &incomplete, &subpart);
        if (len) {
            i += len;
            continue;
        }
        if (incomplete && !at_end) break;
        MG_TRY(mg_tok_bytes_append(&s->output, p->data + start, i - start));
        MG_TRY(mg_tok_bytes_append(&s->output, replacement, 3));
        i += subpart;
        start = i;
    }
    MG_TRY(mg_tok_bytes_append(&s->output, p->data + start, i - start));
    memmove(p->data, p->data + i, p->size - i);
    p->size -= i;
    return MG_OK;
}

mg_status mg_token_stream_push(mg_token_stream *stream, int32_t id, const char **text, size_t *n_bytes) {
    if (!stream || !text || !n_bytes) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_token_stream_push: NULL argument");
    const mg_tokenizer *tok = stream->tok;
    MG_TRY(check_ids(tok, &id, 1));
    stream->output.size = 0;
    stream->output.data[0] = 0;
    if (tok->kind == MG_TOKENIZER_SENTENCEPIECE) {
        if (!is_special_id(tok, id)) {
            if (tok->id_flags[id] & MG_TOK_FLAG_ADDED) {
                MG_TRY(sp_flush_bytes(&stream->sp, &stream->output, true));
                if (stream->item_emitted) MG_TRY(mg_tok_bytes_append(&stream->output, " ", 1));
                size_t len;
                const uint8_t *s = mg_tok_strings_get(&tok->vocab, id, &len);
                MG_TRY(mg_tok_bytes_append(&stream->output, s, len));
                stream->item_emitted = true;
                stream->in_run = false;
            } else {
                if (!stream->in_run) {
                    if (stream->item_emitted) MG_TRY(mg_tok_bytes_append(&stream->output, " ", 1));
                    sp_decoder_reset(&stream->sp);
                    stream->in_run = true;
                    stream->item_emitted = true;
                }
                MG_TRY(sp_decode_piece(tok, &stream->sp, id, &stream->output));
            }
        }
    } else if (!(stream->skip_special && is_special_id(tok, id))) {
        size_t len;
        const uint8_t *s = mg_tok_strings_get(&tok->vocab, id, &len);
        MG_TRY(mg_tok_bytes_append(&stream->pending, s, len));
        MG_TRY(flush_pending(stream, false));
    }
    *text = (const char *)stream->output.data;
    *n_bytes = stream->output.size;
    return MG_OK;
}

mg_status mg_token_stream_flush(mg_token_stream *stream, const char **text, size_t *n_bytes) {
    if (!stream || !text || !n_bytes) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_token_stream_flush: NULL argument");
    stream->output.size = 0;
    stream->output.data[0] = 0;
    if (stream->tok->kind == MG_TOKENIZER_SENTENCEPIECE) {
        MG_TRY(sp_flush_bytes(&stream->sp, &stream->output, true));
        sp_decoder_reset(&stream->sp);
        stream->item_emitted = stream->in_run = false;
    } else {
        MG_TRY(flush_pending(stream, true));
    }
    *text = (const char *)stream->output.data;
    *n_bytes = stream->output.size;
    return MG_OK;
}
