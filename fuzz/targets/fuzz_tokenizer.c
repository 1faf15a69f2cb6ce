/* libFuzzer target: the tokenizers (csrc/tokenizer/) on arbitrary bytes.
 *
 * The real vocabularies live outside the repo, so tiny synthetic ones are
 * built in memory at start-up: a tiktoken ranks file (256 bytes + merges),
 * loaded both plain and as Qwen-VL (217 specials, the <img> rule); two
 * SentencePiece BPE models written as protobuf here (byte fallback, one with
 * a piece that joins across U+2581 and a USER_DEFINED piece), one loaded as
 * MedPLIB (267 added tokens with whitespace stripping); a byte-level BPE
 * tokenizer.json with an lstrip special.
 *
 * The first input byte picks the job:
 *   0..6  encode the rest with one tokenizer and options from the second
 *         byte, decode the ids, stream-decode them and check the stream
 *         equals the decode (byte-level: decode(encode(x)) == x too);
 *   7     decode the rest read as little-endian int32 ids;
 *   8/9/10 load the rest as a ranks file / SentencePiece model /
 *         tokenizer.json, then encode and decode a fixed text with it.
 * A broken invariant aborts (a crash for libFuzzer).
 *
 * MG_FUZZ_WRITE_SEEDS=<dir> writes the seed corpus (the vocabularies as
 * loader inputs, plus texts) and exits; fuzz/corpus/tokenizer/ was made so. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medground.h"

/* ------------------------------------------------------------ buffers */

typedef struct {
    uint8_t *data;
    size_t size, capacity;
} buf;

static void put(buf *b, const void *p, size_t n) {
    if (b->size + n + 1 > b->capacity) {
        size_t c = b->capacity ? b->capacity * 2 : 1024;
        while (c < b->size + n + 1) c *= 2;
        b->data = realloc(b->data, c);
        if (!b->data) abort();
        b->capacity = c;
    }
    memcpy(b->data + b->size, p, n);
    b->size += n;
    b->data[b->size] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* ------------------------------------------------- tiktoken ranks file */

static void base64(buf *b, const uint8_t *s, size_t n) {
    static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
        char out[4] = {table[w >> 18 & 63], table[w >> 12 & 63], i + 1 < n ? table[w >> 6 & 63] : '=',
                       i + 2 < n ? table[w & 63] : '='};
        put(b, out, 4);
    }
}

static const char *const MERGES[] = {"th", "he", "the", " t", " the", "in", "ng", "ing", "er", "an",
                                     " a", " an", "  ", "    ", "\n\n", "\xC3\xA9", "\xE8\x82\x9D",
                                     "\xF0\x9F", "\xF0\x9F\x98", "\xF0\x9F\x98\x80", "12", "<i", "mg"};

static void make_ranks(buf *b) {
    int rank = 0;
    for (int v = 0; v < 256; v++) {
        uint8_t c = (uint8_t)v;
        base64(b, &c, 1);
        char line[32];
        snprintf(line, sizeof line, " %d\n", rank++);
        puts_(b, line);
    }
    for (size_t i = 0; i < sizeof MERGES / sizeof *MERGES; i++) {
        base64(b, (const uint8_t *)MERGES[i], strlen(MERGES[i]));
        char line[32];
        snprintf(line, sizeof line, " %d\n", rank++);
        puts_(b, line);
    }
}

/* --------------------------------------------- SentencePiece protobuf */

static void varint(buf *b, uint64_t v) {
    do {
        uint8_t c = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v) c |= 0x80;
        put(b, &c, 1);
    } while (v);
}

static void field_bytes(buf *b, int number, const void *p, size_t n) {
    varint(b, (uint64_t)number << 3 | 2);
    varint(b, n);
    put(b, p, n);
}

static void field_varint(buf *b, int number, uint64_t v) {
    varint(b, (uint64_t)number << 3);
    varint(b, v);
}

static void piece(buf *model, const char *text, float score, int type) {
    buf p = {0};
    field_bytes(&p, 1, text, strlen(text));
    varint(&p, 2 << 3 | 5);
    put(&p, &score, 4);
    field_varint(&p, 3, (uint64_t)type);
    field_bytes(model, 1, p.data, p.size);
    free(p.data);
}

#define SP "\xE2\x96\x81" /* U+2581 */

static void make_sentencepiece(buf *b, bool cross_space) {
    piece(b, "<unk>", 0, 2);
    piece(b, "<s>", 0, 3);
    piece(b, "</s>", 0, 3);
    for (int v = 0; v < 256; v++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", v);
        piece(b, name, 0, 6);
    }
    static const char *const normal[] = {SP "t", "he", SP "the", SP "a", "an", SP "an", "in", "ing", SP SP,
                                         SP SP SP SP, "er", "\xE8\x82\x9D", SP, "t", "h", "e", "a", "n", "i",
                                         "g", "r", "1", "2", "."};
    float score = -1;
    for (size_t i = 0; i < sizeof normal / sizeof *normal; i++) piece(b, normal[i], score--, 1);
    if (cross_space) {
        piece(b, "e" SP "t", score--, 1); /* joins across a word start */
        piece(b, "<u>", 0, 4);           /* USER_DEFINED: never split */
    }
    buf trainer = {0};
    field_varint(&trainer, 3, 2);  /* model_type BPE */
    field_varint(&trainer, 35, 1); /* byte_fallback */
    field_varint(&trainer, 40, 0);
    field_varint(&trainer, 41, 1);
    field_varint(&trainer, 42, 2);
    field_bytes(b, 2, trainer.data, trainer.size);
    buf normalizer = {0};
    field_bytes(&normalizer, 1, "identity", 8);
    field_varint(&normalizer, 3, 1);
    field_varint(&normalizer, 4, cross_space ? 1 : 0);
    field_varint(&normalizer, 5, 1);
    field_bytes(b, 3, normalizer.data, normalizer.size);
    free(trainer.data);
    free(normalizer.data);
}

/* ------------------------------------------------------ tokenizer.json */

static uint32_t byte_char(int v) {
    /* GPT-2 bytes_to_unicode */
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        int extra = 0;
        for (int c = 0; c < 256; c++) {
            bool printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
            table[c] = printable ? (uint32_t)c : (uint32_t)(256 + extra++);
        }
        ready = 1;
    }
    return table[v];
}

static void json_byte_string(buf *b, const char *s) {
    puts_(b, "\"");
    for (const uint8_t *p = (const uint8_t *)s; *p; p++) {
        uint32_t c = byte_char(*p);
        char tmp[8];
        if (c == '"' || c == '\\') snprintf(tmp, sizeof tmp, "\\%c", (char)c);
        else if (c < 0x80) snprintf(tmp, sizeof tmp, "%c", (char)c);
        else snprintf(tmp, sizeof tmp, "%c%c", (char)(0xC0 | c >> 6), (char)(0x80 | (c & 0x3F)));
        puts_(b, tmp);
    }
    puts_(b, "\"");
}

static void make_hf_json(buf *b) {
    static const char *const merges[][2] = {{" ", "t"}, {"t", "h"}, {"th", "e"}, {" ", "the"}, {"i", "n"},
                                            {"in", "g"}, {"\xC3", "\xA9"}, {" ", "a"}, {"1", "2"}};
    int n_merges = (int)(sizeof merges / sizeof *merges);
    puts_(b, "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":");
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%d", 256 + n_merges);
    puts_(b, tmp);
    puts_(b, ",\"content\":\"<|end|>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":false,"
             "\"normalized\":false,\"special\":true}],\"normalizer\":null,"
             "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,"
             "\"use_regex\":true},\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int v = 0; v < 256; v++) {
        char s[2] = {(char)v, 0};
        if (v == 0) {
            puts_(b, "\"\\u0100\"");
        } else {
            json_byte_string(b, s);
        }
        snprintf(tmp, sizeof tmp, ":%d,", v);
        puts_(b, tmp);
    }
    for (int i = 0; i < n_merges; i++) {
        char joined[16];
        snprintf(joined, sizeof joined, "%s%s", merges[i][0], merges[i][1]);
        json_byte_string(b, joined);
        snprintf(tmp, sizeof tmp, ":%d%s", 256 + i, i + 1 < n_merges ? "," : "");
        puts_(b, tmp);
    }
    puts_(b, "},\"merges\":[");
    for (int i = 0; i < n_merges; i++) {
        puts_(b, "[");
        json_byte_string(b, merges[i][0]);
        puts_(b, ",");
        json_byte_string(b, merges[i][1]);
        puts_(b, i + 1 < n_merges ? "]," : "]");
    }
    puts_(b, "]}}");
}

/* ------------------------------------------------------------- set-up */

enum { T_TIKTOKEN, T_QWEN, T_SP, T_SP_CROSS, T_MEDPLIB, T_HF, N_TOK };
static mg_tokenizer *toks[N_TOK];
static buf ranks_file, sp_file, sp_cross_file, json_file;

static void write_file(const char *dir, const char *name, const void *prefix, size_t n_prefix, const void *data,
                       size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(prefix, 1, n_prefix, f);
    fwrite(data, 1, n, f);
    fclose(f);
}

static void write_seeds(const char *dir) {
    static const struct {
        const char *name;
        const char *bytes;
    } texts[] = {
        {"qwen_text", "\x01\x00<ref>the liver</ref><box>(12,34),(56,78)</box> \xE8\x82\x9D\xF0\x9F\x98\x80 it's"},
        {"qwen_img", "\x01\x04Picture 1:<img>/a/b.png</img>\nthe thing<|im_end|>"},
        {"qwen_list", "\x01\x02<box>x</box><|endoftext|>  \n\n\t end"},
        {"sp_text", "\x02\x08the answer is 12.  \xE8\x82\x9D\xF0\x9F\x98\x80\n  an ing"},
        {"sp_cross", "\x03\x08the <u>the   eat<s>x"},
        {"medplib", "\x04\x08USER: <im_start><image><im_end>\nWhat is <region>mask</region>? <SEG>  <gen_25>"},
        {"hf", "\x05\x00the thing<|end|> \xC3\xA9 12 <|end|>"},
        {"tiktoken", "\x00\x01the thing  \n\n  in"},
        {"ids", "\x07\x01\x00\x00\x00\xff\xff\x00\x00\x00\x01\x00\x00"},
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        size_t n = 2 + strlen(texts[i].bytes + 2);
        write_file(dir, texts[i].name, "", 0, texts[i].bytes, n);
    }
    write_file(dir, "load_ranks", "\x08", 1, ranks_file.data, ranks_file.size);
    write_file(dir, "load_sp", "\x09", 1, sp_file.data, sp_file.size);
    write_file(dir, "load_sp_cross", "\x09", 1, sp_cross_file.data, sp_cross_file.size);
    write_file(dir, "load_json", "\x0a", 1, json_file.data, json_file.size);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    make_ranks(&ranks_file);
    make_sentencepiece(&sp_file, false);
    make_sentencepiece(&sp_cross_file, true);
    make_hf_json(&json_file);
    static const char *const specials[] = {"<|end|>", "<|im_start|>"};
    if (mg_tokenizer_load_tiktoken_memory((const char *)ranks_file.data, ranks_file.size, NULL, "ranks",
                                          &toks[T_TIKTOKEN]) != MG_OK ||
        mg_tokenizer_add_tokens(toks[T_TIKTOKEN], specials, 2, true, false) != MG_OK ||
        mg_tokenizer_load_qwen_memory((const char *)ranks_file.data, ranks_file.size, "qwen", &toks[T_QWEN]) != MG_OK ||
        mg_tokenizer_load_sentencepiece_memory(sp_file.data, sp_file.size, "sp", &toks[T_SP]) != MG_OK ||
        mg_tokenizer_load_sentencepiece_memory(sp_cross_file.data, sp_cross_file.size, "sp2", &toks[T_SP_CROSS]) != MG_OK ||
        mg_tokenizer_load_medplib_memory(sp_file.data, sp_file.size, "medplib", &toks[T_MEDPLIB]) != MG_OK ||
        mg_tokenizer_load_hf_json_memory((const char *)json_file.data, json_file.size, "json", &toks[T_HF]) != MG_OK) {
        fprintf(stderr, "fuzz_tokenizer: building the synthetic vocabularies failed: %s\n", mg_last_error());
        abort();
    }
    const char *seeds = getenv("MG_FUZZ_WRITE_SEEDS");
    if (seeds) {
        write_seeds(seeds);
        exit(0);
    }
    return 0;
}

/* -------------------------------------------------------------- checks */

static void check_stream(const mg_tokenizer *tok, const int32_t *ids, size_t n, bool skip, const char *decoded,
                         size_t n_decoded) {
    mg_token_stream *stream;
    mg_status status = mg_token_stream_create(tok, skip, &stream);
    if (status != MG_OK) return; /* SentencePiece without skip: refused by design */
    buf all = {0};
    for (size_t i = 0; i < n; i++) {
        const char *text;
        size_t len;
        if (mg_token_stream_push(stream, ids[i], &text, &len) != MG_OK) abort();
        put(&all, text, len);
    }
    const char *text;
    size_t len;
    if (mg_token_stream_flush(stream, &text, &len) != MG_OK) abort();
    put(&all, text, len);
    mg_token_stream_destroy(stream);
    if (all.size != n_decoded || (n_decoded && memcmp(all.data, decoded, n_decoded) != 0)) {
        fprintf(stderr, "stream decode differs from decode\n");
        abort();
    }
    free(all.data);
}

/* strict: a built-in vocabulary, where only bad UTF-8 / bad <img> spans may
 * fail; a fuzzed vocabulary may also hit regex limits (UNSUPPORTED). */
static void run_encode(const mg_tokenizer *tok, const uint8_t *data, size_t n, uint8_t flags, bool byte_level,
                       bool has_img_rule, bool strict) {
    static const char *const allowed[] = {"<|end|>", "<box>", "</box>", "<img>", "</img>", "<SEG>"};
    mg_encode_options o = {0};
    o.special = (mg_special_mode)(flags & 3) == 3 ? MG_SPECIAL_NONE : (mg_special_mode)(flags & 3);
    if (o.special == MG_SPECIAL_LIST) {
        /* only names the tokenizer has; an unknown one is NOT_FOUND, tried below */
        o.allowed = allowed;
        o.n_allowed = 0;
        int32_t id;
        for (int i = 0; i < 6; i++)
            if (mg_tokenizer_token_to_id(tok, allowed[i], strlen(allowed[i]), &id) == MG_OK) {
                static const char *picked[6];
                picked[o.n_allowed++] = allowed[i];
                o.allowed = picked;
            }
    }
    o.expand_images = flags & 4;
    o.add_bos = (flags & 8) && mg_tokenizer_bos_id(tok) >= 0;
    o.add_eos = (flags & 16) && mg_tokenizer_eos_id(tok) >= 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    mg_status status = mg_tokenizer_encode(tok, (const char *)data, n, &o, &ids, &n_ids);
    if (status != MG_OK) {
        if (status != MG_ERR_INVALID_ARGUMENT && (strict || status != MG_ERR_UNSUPPORTED)) abort();
        return;
    }
    int32_t vocab = mg_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= vocab) abort();
    bool skip = flags & 32;
    char *text = NULL;
    size_t n_text = 0;
    status = mg_tokenizer_decode(tok, ids, n_ids, skip, &text, &n_text);
    /* Qwen-VL decode reads <img>..</img> back as path bytes and refuses ids
     * above 255 or an unclosed span there, as Qwen's _decode does */
    bool has_img = false;
    int32_t img_id;
    if (has_img_rule && mg_tokenizer_token_to_id(tok, "<img>", 5, &img_id) == MG_OK)
        for (size_t i = 0; i < n_ids; i++) has_img |= ids[i] == img_id;
    if (status != MG_OK) {
        if (!has_img || status != MG_ERR_INVALID_ARGUMENT) abort();
        free(ids);
        return;
    }
    /* byte-level, specials off, no EOS: decoding gives the input back */
    if (byte_level && o.special == MG_SPECIAL_NONE && !skip && !o.add_eos &&
        (n_text != n || (n && memcmp(text, data, n) != 0))) {
        fprintf(stderr, "byte-level round trip failed\n");
        abort();
    }
    if (!has_img) check_stream(tok, ids, n_ids, skip, text, n_text);
    free(text);
    free(ids);
    /* batch of two: same ids as one by one */
    const char *texts[2] = {(const char *)data, (const char *)data};
    size_t sizes[2] = {n, n / 2};
    int32_t *batch_ids[2];
    size_t batch_n[2];
    status = mg_tokenizer_encode_batch(tok, texts, sizes, 2, &o, NULL, batch_ids, batch_n);
    if (status == MG_OK) {
        free(batch_ids[0]);
        free(batch_ids[1]);
    }
    /* an unknown allowed name is a clean NOT_FOUND */
    static const char *const unknown[] = {"<definitely-not-a-token>"};
    mg_encode_options bad = {.special = MG_SPECIAL_LIST, .allowed = unknown, .n_allowed = 1};
    if (mg_tokenizer_encode(tok, "x", 1, &bad, &ids, &n_ids) != MG_ERR_NOT_FOUND) abort();
}

static void run_decode(const uint8_t *data, size_t n) {
    if (n < 1) return;
    const mg_tokenizer *tok = toks[data[0] % N_TOK];
    size_t n_ids = (n - 1) / 4;
    int32_t *ids = malloc(n_ids * sizeof *ids + 1);
    if (!ids) abort();
    int32_t vocab = mg_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < n_ids; i++) {
        uint32_t v;
        memcpy(&v, data + 1 + 4 * i, 4);
        /* mostly in range, sometimes not */
        ids[i] = (v & 0x80000000u) ? (int32_t)v : (int32_t)(v % (uint32_t)(vocab + 2));
    }
    for (int skip = 0; skip < 2; skip++) {
        char *text = NULL;
        size_t n_text;
        mg_status status = mg_tokenizer_decode(tok, ids, n_ids, skip, &text, &n_text);
        if (status == MG_OK) {
            if (strlen(text) > n_text) abort();
            free(text);
        } else if (status != MG_ERR_INVALID_ARGUMENT) {
            abort();
        }
        mg_token_stream *stream;
        if (mg_token_stream_create(tok, skip, &stream) == MG_OK) {
            for (size_t i = 0; i < n_ids; i++) {
                const char *t;
                size_t len;
                mg_status s = mg_token_stream_push(stream, ids[i], &t, &len);
                if (s != MG_OK && s != MG_ERR_INVALID_ARGUMENT) abort();
            }
            const char *t;
            size_t len;
            if (mg_token_stream_flush(stream, &t, &len) != MG_OK) abort();
            mg_token_stream_destroy(stream);
        }
    }
    free(ids);
}

static void run_load(int kind, const uint8_t *data, size_t n) {
    mg_tokenizer *tok = NULL;
    mg_status status;
    if (kind == 0) status = mg_tokenizer_load_tiktoken_memory((const char *)data, n, NULL, "fuzz", &tok);
    else if (kind == 1) status = mg_tokenizer_load_medplib_memory(data, n, "fuzz", &tok);
    else status = mg_tokenizer_load_hf_json_memory((const char *)data, n, "fuzz", &tok);
    if (status != MG_OK) {
        if (tok) abort();
        if (strlen(mg_last_error()) == 0) abort(); /* every failure explains itself */
        return;
    }
    static const char text[] = "the thing  in <SEG> \xE8\x82\x9D\xF0\x9F\x98\x80 12\n\n<|end|>";
    run_encode(tok, (const uint8_t *)text, sizeof text - 1, 0, false, false, false);
    run_encode(tok, (const uint8_t *)text, sizeof text - 1, 1 | 32, false, false, false);
    mg_tokenizer_destroy(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t job = data[0] % 11;
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    if (job <= 6) {
        uint8_t flags = n ? rest[0] : 0;
        if (n) {
            rest++;
            n--;
        }
        int which = job == 6 ? T_QWEN : job;
        const mg_tokenizer *tok = toks[which];
        bool byte_level = which == T_TIKTOKEN || which == T_QWEN || which == T_HF;
        run_encode(tok, rest, n, flags, byte_level && which != T_HF, which == T_QWEN, true);
    } else if (job == 7) {
        run_decode(rest, n);
    } else {
        run_load(job - 8, rest, n);
    }
    return 0;
}
