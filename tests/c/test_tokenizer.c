/* Tokenizer C API on hand-built vocabularies (no shared data needed): the
 * tiktoken merge rule worked out by hand, the Qwen-VL <img> rule, special
 * token permissions, batches on a pool, streaming decode of split UTF-8, and
 * every NULL / bad argument answered with a status, never a crash. The
 * id-for-id checks against tiktoken, sentencepiece, transformers and
 * tokenizers on real vocabularies are in tests/test_tokenizer.py. */
#include <stdint.h>
#include <stdlib.h>

#include "mg_test.h"

static char ranks[16384];
static size_t ranks_size;

static void b64(const uint8_t *s, size_t n) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
        ranks[ranks_size++] = t[w >> 18 & 63];
        ranks[ranks_size++] = t[w >> 12 & 63];
        ranks[ranks_size++] = i + 1 < n ? t[w >> 6 & 63] : '=';
        ranks[ranks_size++] = i + 2 < n ? t[w & 63] : '=';
    }
}

/* ranks 0..255: byte b; then 256 "ab", 257 "bc", 258 "abc", 259 "cd",
 * 260 "  " (two spaces), 261 "\xC3\xA9" (é) */
static void make_ranks(void) {
    static const char *const merges[] = {"ab", "bc", "abc", "cd", "  ", "\xC3\xA9"};
    int rank = 0;
    for (int v = 0; v < 256; v++) {
        uint8_t c = (uint8_t)v;
        b64(&c, 1);
        ranks_size += (size_t)snprintf(ranks + ranks_size, sizeof ranks - ranks_size, " %d\n", rank++);
    }
    for (int i = 0; i < 6; i++) {
        b64((const uint8_t *)merges[i], strlen(merges[i]));
        ranks_size += (size_t)snprintf(ranks + ranks_size, sizeof ranks - ranks_size, " %d\n", rank++);
    }
}

static int encode_eq(const mg_tokenizer *tok, const char *text, const mg_encode_options *o, const int32_t *want,
                     size_t n_want) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (mg_tokenizer_encode(tok, text, strlen(text), o, &ids, &n) != MG_OK) return 0;
    int ok = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    if (!ok) {
        fprintf(stderr, "encode(%s):", text);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static void test_merge_rule(void) {
    mg_tokenizer *tok = NULL;
    CHECK_OK(mg_tokenizer_load_tiktoken_memory(ranks, ranks_size, "\\S+|\\s+", "mini", &tok));
    if (!tok) return;
    CHECK(mg_tokenizer_vocab_size(tok) == 262);
    CHECK(mg_tokenizer_bos_id(tok) == -1 && mg_tokenizer_eos_id(tok) == -1);
    /* "abcd": pairs ab(256) bc(257) cd(259): lowest is ab -> [ab][c][d];
     * then (ab,c) = "abc" 258 vs (c,d) 259 -> [abc][d] */
    CHECK(encode_eq(tok, "abcd", NULL, (const int32_t[]){258, 'd'}, 2));
    /* "bcd": bc(257) < cd(259) -> [bc][d] */
    CHECK(encode_eq(tok, "bcd", NULL, (const int32_t[]){257, 'd'}, 2));
    /* a whole piece that is a token is one id (tiktoken's shortcut) */
    CHECK(encode_eq(tok, "abc", NULL, (const int32_t[]){258}, 1));
    /* "\xC3\xA9" is one token; three spaces are one \s+ piece: [  ][ ] */
    CHECK(encode_eq(tok, "\xC3\xA9   ab", NULL, (const int32_t[]){261, 260, ' ', 256}, 4));
    CHECK(encode_eq(tok, "", NULL, NULL, 0));

    /* specials: recognised only when allowed */
    const char *const specials[] = {"<|end|>", "<|pad|>"};
    CHECK_OK(mg_tokenizer_add_tokens(tok, specials, 2, true, false));
    CHECK(mg_tokenizer_vocab_size(tok) == 264);
    CHECK(encode_eq(tok, "ab<|end|>", NULL, (const int32_t[]){256, 262}, 2));
    mg_encode_options none = {.special = MG_SPECIAL_NONE};
    /* "ab<|end|>" is one \S+ piece of plain bytes: [ab] < | e n d | > */
    CHECK(encode_eq(tok, "ab<|end|>", &none, (const int32_t[]){256, '<', '|', 'e', 'n', 'd', '|', '>'}, 8));
    const char *const only_pad[] = {"<|pad|>"};
    mg_encode_options list = {.special = MG_SPECIAL_LIST, .allowed = only_pad, .n_allowed = 1};
    CHECK(encode_eq(tok, "<|pad|> <|end|>", &list,
                    (const int32_t[]){263, ' ', '<', '|', 'e', 'n', 'd', '|', '>'}, 9));
    const char *const unknown[] = {"<|nope|>"};
    mg_encode_options bad_list = {.special = MG_SPECIAL_LIST, .allowed = unknown, .n_allowed = 1};
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_STATUS(mg_tokenizer_encode(tok, "x", 1, &bad_list, &ids, &n), MG_ERR_NOT_FOUND);
    CHECK_MESSAGE("<|nope|>");
    mg_encode_options bad_mode = {.special = (mg_special_mode)7};
    CHECK_STATUS(mg_tokenizer_encode(tok, "x", 1, &bad_mode, &ids, &n), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_tokenizer_add_tokens(tok, (const char *const[]){"ab"}, 1, true, false), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_tokenizer_add_tokens(tok, (const char *const[]){""}, 1, true, false), MG_ERR_INVALID_ARGUMENT);

    /* invalid UTF-8 is refused with its offset */
    CHECK_STATUS(mg_tokenizer_encode(tok, "ab\xff", 3, NULL, &ids, &n), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("byte 2");
    CHECK(ids == NULL && n == 0);

    /* decode: bytes joined, invalid UTF-8 as U+FFFD (Python's rule), specials skippable */
    char *text = NULL;
    size_t n_text = 0;
    CHECK_OK(mg_tokenizer_decode(tok, (const int32_t[]){258, 262, 0xE8, 'x'}, 4, false, &text, &n_text));
    CHECK(text && strcmp(text, "abc<|end|>\xEF\xBF\xBDx") == 0 && n_text == strlen(text));
    free(text);
    CHECK_OK(mg_tokenizer_decode(tok, (const int32_t[]){258, 262}, 2, true, &text, &n_text));
    CHECK(text && strcmp(text, "abc") == 0);
    free(text);
    CHECK_STATUS(mg_tokenizer_decode(tok, (const int32_t[]){1, 264}, 2, false, &text, &n_text),
                 MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("position 1");
    CHECK_OK(mg_tokenizer_decode(tok, NULL, 0, false, &text, &n_text));
    CHECK(text && text[0] == 0 && n_text == 0);
    free(text);

    /* token lookups */
    int32_t id = -1;
    CHECK_OK(mg_tokenizer_token_to_id(tok, "abc", 3, &id));
    CHECK(id == 258);
    CHECK_STATUS(mg_tokenizer_token_to_id(tok, "zz", 2, &id), MG_ERR_NOT_FOUND);
    const char *bytes;
    size_t n_bytes;
    bool special = true;
    CHECK_OK(mg_tokenizer_id_to_token(tok, 262, &bytes, &n_bytes, &special));
    CHECK(n_bytes == 7 && memcmp(bytes, "<|end|>", 7) == 0 && special);
    CHECK_OK(mg_tokenizer_id_to_token(tok, 256, &bytes, &n_bytes, &special));
    CHECK(!special);
    CHECK_STATUS(mg_tokenizer_id_to_token(tok, -1, &bytes, &n_bytes, NULL), MG_ERR_INVALID_ARGUMENT);

    /* streaming: é arrives as two byte tokens; nothing until it is whole */
    mg_token_stream *stream = NULL;
    CHECK_OK(mg_token_stream_create(tok, false, &stream));
    const char *piece;
    size_t n_piece;
    CHECK_OK(mg_token_stream_push(stream, 0xC3, &piece, &n_piece));
    CHECK(n_piece == 0);
    CHECK_OK(mg_token_stream_push(stream, 0xA9, &piece, &n_piece));
    CHECK(n_piece == 2 && memcmp(piece, "\xC3\xA9", 2) == 0);
    CHECK_OK(mg_token_stream_push(stream, 0xE8, &piece, &n_piece));
    CHECK(n_piece == 0);
    CHECK_OK(mg_token_stream_flush(stream, &piece, &n_piece));
    CHECK(n_piece == 3 && memcmp(piece, "\xEF\xBF\xBD", 3) == 0);
    CHECK_STATUS(mg_token_stream_push(stream, 9999, &piece, &n_piece), MG_ERR_INVALID_ARGUMENT);
    mg_token_stream_destroy(stream);

    /* batch on a pool equals one by one; a bad text names its index */
    mg_threadpool *pool = NULL;
    CHECK_OK(mg_threadpool_create(2, &pool));
    const char *texts[4] = {"abcd", "bcd bcd", "", "\xC3\xA9<|end|>"};
    size_t sizes[4] = {4, 7, 0, 9};
    int32_t *batch[4];
    size_t batch_n[4];
    CHECK_OK(mg_tokenizer_encode_batch(tok, texts, sizes, 4, NULL, pool, batch, batch_n));
    CHECK(batch_n[0] == 2 && batch[0][0] == 258 && batch_n[2] == 0 && batch_n[3] == 2 && batch[3][1] == 262);
    for (int i = 0; i < 4; i++) free(batch[i]);
    const char *bad_texts[2] = {"ok", "\xC3"};
    size_t bad_sizes[2] = {2, 1};
    CHECK_STATUS(mg_tokenizer_encode_batch(tok, bad_texts, bad_sizes, 2, NULL, pool, batch, batch_n),
                 MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("text 1 of the batch");
    CHECK(batch[0] == NULL && batch[1] == NULL);
    mg_threadpool_destroy(pool);
    mg_tokenizer_destroy(tok);
}

static void test_qwen_rules(void) {
    mg_tokenizer *tok = NULL;
    CHECK_OK(mg_tokenizer_load_qwen_memory(ranks, ranks_size, "mini-qwen", &tok));
    if (!tok) return;
    /* 262 ranks + 3 + 205 extras + 9 image/box tags */
    CHECK(mg_tokenizer_vocab_size(tok) == 262 + 217);
    CHECK(mg_tokenizer_eos_id(tok) == 262);
    CHECK(mg_tokenizer_wants_nfc(tok));
    int32_t img = -1, img_end = -1, pad = -1;
    CHECK_OK(mg_tokenizer_token_to_id(tok, "<img>", 5, &img));
    CHECK_OK(mg_tokenizer_token_to_id(tok, "</img>", 6, &img_end));
    CHECK_OK(mg_tokenizer_token_to_id(tok, "<imgpad>", 8, &pad));
    CHECK(img == 262 + 214 && img_end == img + 1 && pad == img + 2);
    mg_encode_options o = {.expand_images = true};
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mg_tokenizer_encode(tok, "x<img>ab</img>", 14, &o, &ids, &n));
    /* x, <img>, 'a', 'b', 254 x <imgpad>, </img> */
    CHECK(n == 1 + 258 && ids[1] == img && ids[2] == 'a' && ids[3] == 'b' && ids[4] == pad && ids[257] == pad &&
          ids[258] == img_end);
    char *text = NULL;
    size_t n_text;
    CHECK_OK(mg_tokenizer_decode(tok, ids, n, false, &text, &n_text));
    CHECK(text && strcmp(text, "x<img>ab</img>") == 0);
    free(text);
    free(ids);
    char long_path[300] = "<img>";
    memset(long_path + 5, 'p', 257);
    strcpy(long_path + 262, "</img>");
    CHECK_STATUS(mg_tokenizer_encode(tok, long_path, strlen(long_path), &o, &ids, &n), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("at most 256");
    CHECK_STATUS(mg_tokenizer_encode(tok, "<img>a", 6, &o, &ids, &n), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("not closed");
    mg_tokenizer_destroy(tok);
}

static void test_bad_files_and_arguments(void) {
    mg_tokenizer *tok = (mg_tokenizer *)1;
    CHECK_STATUS(mg_tokenizer_load("/nonexistent/dir/tok", &tok), MG_ERR_NOT_FOUND);
    CHECK(tok == NULL);
    CHECK_STATUS(mg_tokenizer_load(NULL, &tok), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_tokenizer_load_tiktoken_memory("IQ== 0\nnot-base64 1\n", 20, NULL, "bad", &tok), MG_ERR_FORMAT);
    CHECK_MESSAGE("bad: line 2");
    CHECK_STATUS(mg_tokenizer_load_tiktoken_memory("IQ== 0\nIg== 0\n", 14, NULL, "dup", &tok), MG_ERR_FORMAT);
    CHECK_MESSAGE("rank 0 already given on line 1");
    CHECK_STATUS(mg_tokenizer_load_tiktoken_memory("", 0, NULL, "empty", &tok), MG_ERR_FORMAT);
    CHECK_STATUS(mg_tokenizer_load_sentencepiece_memory((const uint8_t *)"\x0a\x05\x0a\x03", 4, "sp", &tok),
                 MG_ERR_FORMAT);
    CHECK_STATUS(mg_tokenizer_load_hf_json_memory("{\"model\":", 9, "json", &tok), MG_ERR_FORMAT);
    CHECK_STATUS(mg_tokenizer_load_hf_json_memory("{\"model\":{\"type\":\"Unigram\"}}", 28, "json", &tok),
                 MG_ERR_UNSUPPORTED);
    CHECK_STATUS(mg_tokenizer_load_hf_json_memory(NULL, 0, "json", &tok), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_tokenizer_encode(NULL, "x", 1, NULL, NULL, NULL), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_tokenizer_decode(NULL, NULL, 0, false, NULL, NULL), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_token_stream_create(NULL, false, NULL), MG_ERR_INVALID_ARGUMENT);
    CHECK(mg_tokenizer_vocab_size(NULL) == 0);
    mg_tokenizer_destroy(NULL);
    mg_token_stream_destroy(NULL);
}

int main(void) {
    make_ranks();
    test_merge_rule();
    test_qwen_rules();
    test_bad_files_and_arguments();
    return mg_test_finish("test_tokenizer");
}
