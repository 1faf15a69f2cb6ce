/* Hugging Face tokenizer.json holding a byte-level BPE (GPT-2 style, also
 * what tiktoken vocabularies become when converted to HF). Vocabulary strings
 * are GPT-2's printable stand-ins for bytes (`bytes_to_unicode`); they are
 * turned back into raw bytes here so the encoder works on bytes like the
 * tiktoken path. Merge priority = position in `merges`. */
#include "tokenizer/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's pre-tokenizer regex (HF ByteLevel with use_regex=true). */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* GPT-2 bytes_to_unicode: printable bytes stand for themselves, the other
 * 68 bytes get code points 256.. in byte order. Returns the byte for a code
 * point or -1. */
static int unicode_to_byte(uint32_t c) {
    static int table[324];
    static int ready; /* filled on first use; idempotent, so racing is harmless */
    if (!ready) {
        for (int i = 0; i < 324; i++) table[i] = -1;
        int extra = 0;
        for (int b = 0; b < 256; b++) {
            bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            if (printable) table[b] = b;
            else table[256 + extra++] = b;
        }
        ready = 1;
    }
    return c < 324 ? table[c] : -1;
}

/* Byte-level string -> raw bytes. Strings with characters outside the map
 * (added tokens stored verbatim) are kept as their UTF-8. */
static mg_status byte_level_decode(const char *s, mg_tok_bytes *out) {
    out->size = 0;
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s);
    mg_tok_bytes raw = {0};
    bool all_mapped = true;
    for (size_t i = 0; i < n;) {
        bool incomplete;
        size_t subpart;
        size_t len = mg_utf8_char(p + i, n - i, &incomplete, &subpart);
        if (!len) {
            all_mapped = false;
            break;
        }
        uint32_t c = p[i];
        if (len == 2) c = ((uint32_t)(p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
        else if (len > 2) c = 0x10000; /* outside the map */
        int b = unicode_to_byte(c);
        if (b < 0) {
            all_mapped = false;
            break;
        }
        uint8_t byte = (uint8_t)b;
        mg_status status = mg_tok_bytes_append(&raw, &byte, 1);
        if (status != MG_OK) {
            free(raw.data);
            return status;
        }
        i += len;
    }
    mg_status status = all_mapped ? mg_tok_bytes_append(out, raw.data, raw.size) : mg_tok_bytes_append(out, s, n);
    free(raw.data);
    return status;
}

/* Every character of s is one of the 256 byte-level stand-ins. */
static bool in_byte_alphabet(const char *s) {
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        bool incomplete;
        size_t subpart;
        size_t len = mg_utf8_char(p + i, n - i, &incomplete, &subpart);
        if (len == 0 || len > 2) return false;
        uint32_t c = len == 1 ? p[i] : ((uint32_t)(p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
        if (unicode_to_byte(c) < 0) return false;
        i += len;
    }
    return true;
}

static const char *json_string(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static bool json_bool(const cJSON *object, const char *key, bool fallback) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (cJSON_IsBool(item)) return cJSON_IsTrue(item);
    return fallback;
}

/* Accepts ByteLevel, or Split(regex, Isolated) followed by ByteLevel
 * without regex (in a Sequence). Sets *pattern (borrowed from json). */
static mg_status read_pre_tokenizer(mg_tokenizer *tok, const cJSON *pre, const char **pattern) {
    const char *type = json_string(pre, "type");
    if (!pre || cJSON_IsNull(pre)) {
        *pattern = NULL;
        return MG_OK;
    }
    if (type && strcmp(type, "ByteLevel") == 0) {
        tok->hf_add_prefix_space = json_bool(pre, "add_prefix_space", true);
        if (json_bool(pre, "use_regex", true)) *pattern = gpt2_pattern;
        return MG_OK;
    }
    if (type && strcmp(type, "Split") == 0) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(pre, "pattern");
        const char *regex = json_string(p, "Regex");
        const char *behavior = json_string(pre, "behavior");
        if (!regex || !behavior || strcmp(behavior, "Isolated") != 0 || json_bool(pre, "invert", false))
            return mg_error(MG_ERR_UNSUPPORTED,
                            "%s: pre_tokenizer Split must have a Regex pattern, behavior Isolated, invert false",
                            tok->name);
        *pattern = regex;
        tok->keep_unmatched = true;
        return MG_OK;
    }
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
        const cJSON *item;
        *pattern = NULL;
        cJSON_ArrayForEach(item, list) {
            const char *item_type = json_string(item, "type");
            const char *sub = NULL;
            if (item_type && strcmp(item_type, "ByteLevel") == 0 && json_bool(item, "use_regex", true) && *pattern)
                return mg_error(MG_ERR_UNSUPPORTED, "%s: two regex pre-tokenizers in a Sequence", tok->name);
            MG_TRY(read_pre_tokenizer(tok, item, &sub));
            if (sub) {
                if (*pattern) return mg_error(MG_ERR_UNSUPPORTED, "%s: two regex pre-tokenizers in a Sequence", tok->name);
                *pattern = sub;
            }
        }
        return MG_OK;
    }
    return mg_error(MG_ERR_UNSUPPORTED, "%s: pre_tokenizer type '%s' is not supported (byte-level BPE only)",
                    tok->name, type ? type : "?");
}

static mg_status load_json(mg_tokenizer *tok, const cJSON *root) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *model_type = json_string(model, "type");
    if (!model || (model_type && strcmp(model_type, "BPE") != 0))
        return mg_error(MG_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (only BPE)", tok->name,
                        model_type ? model_type : "missing");
    const char *prefix = json_string(model, "continuing_subword_prefix");
    const char *suffix = json_string(model, "end_of_word_suffix");
    if ((prefix && *prefix) || (suffix && *suffix))
        return mg_error(MG_ERR_UNSUPPORTED, "%s: continuing_subword_prefix/end_of_word_suffix are not supported",
                        tok->name);
    const cJSON *normalizer = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (normalizer && !cJSON_IsNull(normalizer)) {
        const char *type = json_string(normalizer, "type");
        if (type && strcmp(type, "NFC") == 0) tok->wants_nfc = true;
        else
            return mg_error(MG_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported (null or NFC)", tok->name,
                            type ? type : "?");
    }
    const char *pattern = NULL;
    MG_TRY(read_pre_tokenizer(tok, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &pattern));
    tok->whole_word_first = json_bool(model, "ignore_merges", false);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return mg_error(MG_ERR_UNSUPPORTED, "%s: BPE dropout %g makes encoding random; not supported", tok->name,
                        dropout->valuedouble);

    /* vocab: token -> id, ids dense 0..V-1 */
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return mg_error(MG_ERR_FORMAT, "%s: model.vocab is not an object", tok->name);
    int32_t n = (int32_t)cJSON_GetArraySize(vocab);
    if (n <= 0) return mg_error(MG_ERR_FORMAT, "%s: model.vocab is empty", tok->name);
    const char **by_id = calloc((size_t)n, sizeof *by_id);
    if (!by_id) return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", tok->name);
    mg_status status = MG_OK;
    const cJSON *item;
    cJSON_ArrayForEach(item, vocab) {
        double v = cJSON_IsNumber(item) ? item->valuedouble : -1;
        if (v < 0 || v >= n || v != (double)(int32_t)v) {
            status = mg_error(MG_ERR_FORMAT, "%s: vocab id of '%s' is not an integer in [0, %d)", tok->name,
                              item->string, n);
            break;
        }
        if (by_id[(int32_t)v]) {
            status = mg_error(MG_ERR_FORMAT, "%s: vocab id %d is given twice ('%s', '%s')", tok->name, (int32_t)v,
                              by_id[(int32_t)v], item->string);
            break;
        }
        by_id[(int32_t)v] = item->string;
    }
    mg_tok_bytes bytes = {0};
    for (int32_t id = 0; id < n && status == MG_OK; id++) {
        status = byte_level_decode(by_id[id], &bytes);
        if (status == MG_OK) status = mg_tok_strings_append(&tok->vocab, bytes.data, bytes.size);
    }
    free(by_id);
    tok->n_base = n;
    if (status == MG_OK) {
        int32_t a, b;
        if (mg_tok_strings_index(&tok->vocab, &a, &b) != MG_OK)
            status = mg_error(MG_ERR_FORMAT, "%s: vocab ids %d and %d decode to the same bytes", tok->name, a, b);
    }
    for (int byte = 0; byte < 256 && status == MG_OK; byte++) {
        uint8_t c = (uint8_t)byte;
        tok->byte_to_id[byte] = mg_tok_strings_find(&tok->vocab, &c, 1);
        if (tok->byte_to_id[byte] < 0)
            status = mg_error(MG_ERR_FORMAT,
                              "%s: byte 0x%02X has no vocab entry (train with the full ByteLevel alphabet)",
                              tok->name, byte);
    }

    /* merges: "a b" strings or [a, b] pairs */
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    int n_merges = cJSON_IsArray(merges) ? cJSON_GetArraySize(merges) : 0;
    if (status == MG_OK) status = mg_tok_pairs_init(&tok->pairs, (uint64_t)n_merges + 16);
    mg_tok_bytes left = {0}, right = {0}, joined = {0};
    int index = 0;
    cJSON_ArrayForEach(item, merges) {
        if (status != MG_OK) break;
        const char *a = NULL, *b = NULL;
        char *copy = NULL;
        if (cJSON_IsString(item)) {
            const char *space = strchr(item->valuestring, ' ');
            if (space && strchr(space + 1, ' ') == NULL) {
                copy = strdup(item->valuestring);
                if (!copy) {
                    status = mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", tok->name);
                    break;
                }
                copy[space - item->valuestring] = 0;
                a = copy;
                b = copy + (space - item->valuestring) + 1;
            }
        } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2) {
            const cJSON *x = cJSON_GetArrayItem(item, 0), *y = cJSON_GetArrayItem(item, 1);
            if (cJSON_IsString(x) && cJSON_IsString(y)) {
                a = x->valuestring;
                b = y->valuestring;
            }
        }
        if (!a || !b) {
            free(copy);
            status = mg_error(MG_ERR_FORMAT, "%s: merges[%d] is not \"left right\" or [left, right]", tok->name, index);
            break;
        }
        status = byte_level_decode(a, &left);
        if (status == MG_OK) status = byte_level_decode(b, &right);
        joined.size = 0;
        if (status == MG_OK) status = mg_tok_bytes_append(&joined, left.data, left.size);
        if (status == MG_OK) status = mg_tok_bytes_append(&joined, right.data, right.size);
        if (status == MG_OK) {
            int32_t ia = mg_tok_strings_find(&tok->vocab, left.data, left.size);
            int32_t ib = mg_tok_strings_find(&tok->vocab, right.data, right.size);
            int32_t im = mg_tok_strings_find(&tok->vocab, joined.data, joined.size);
            if (ia < 0 || ib < 0 || im < 0)
                status = mg_error(MG_ERR_FORMAT, "%s: merges[%d] ('%s' '%s') uses a token missing from the vocab",
                                  tok->name, index, a, b);
            else
                status = mg_tok_pairs_put(&tok->pairs, ia, ib, index, im);
        }
        free(copy);
        index++;
    }
    free(left.data);
    free(right.data);
    free(joined.data);

    /* added tokens, numbered as tokenizers does when it loads a file (the
     * "id" fields are only checked by it, with a warning): a content already
     * known (an earlier added token, or a model vocab string spelled exactly
     * so) keeps that id; any other gets the next id after everything so far.
     * Empty contents are ignored, as there. */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    cJSON_ArrayForEach(item, added) {
        if (status != MG_OK) break;
        const char *content = json_string(item, "content");
        if (!content) {
            status = mg_error(MG_ERR_FORMAT, "%s: an added token has no content", tok->name);
            break;
        }
        size_t length = strlen(content);
        if (length == 0) continue;
        if (mg_utf8_first_invalid((const uint8_t *)content, length) != length) {
            status = mg_error(MG_ERR_FORMAT, "%s: added token content is not valid UTF-8", tok->name);
            break;
        }
        /* tokenizers' model lookup: the vocab string equal to the content,
         * i.e. an all-alphabet content whose bytes are a vocab token */
        int32_t model_id = -1;
        if (in_byte_alphabet(content)) {
            status = byte_level_decode(content, &bytes);
            if (status != MG_OK) break;
            model_id = mg_tok_strings_find(&tok->vocab, bytes.data, bytes.size);
            if (model_id >= tok->n_base) model_id = -1;
        }
        int32_t same_bytes = mg_tok_strings_find(&tok->vocab, (const uint8_t *)content, length);
        int32_t id;
        if (model_id >= 0) {
            if (same_bytes != model_id) {
                /* text "<content>" would be matched by bytes that spell
                 * another token: not representable here */
                status = mg_error(MG_ERR_UNSUPPORTED,
                                  "%s: added token '%s' is the byte-level spelling of vocab id %d, not its text",
                                  tok->name, content, model_id);
                break;
            }
            id = model_id;
        } else if (same_bytes >= tok->n_base) {
            continue; /* an earlier added token with this content keeps its id and flags */
        } else if (same_bytes >= 0) {
            status = mg_error(MG_ERR_UNSUPPORTED,
                              "%s: added token '%s' has the bytes of vocab id %d but is a separate token there",
                              tok->name, content, same_bytes);
            break;
        } else {
            id = tok->vocab.n;
            status = mg_tok_strings_append(&tok->vocab, (const uint8_t *)content, length);
            if (status == MG_OK) status = mg_tok_strings_index_last(&tok->vocab);
            if (status != MG_OK) break;
        }
        bool seen = false;
        for (int32_t k = 0; k < tok->n_added && !seen; k++) seen = tok->added[k].id == id;
        if (seen) continue;
        bool special = json_bool(item, "special", false);
        status = mg_tokenizer_register_added(tok, id, special, json_bool(item, "lstrip", false),
                                             json_bool(item, "rstrip", false));
        if (status == MG_OK && special && tok->first_special_id < 0) tok->first_special_id = id;
    }
    free(bytes.data);
    if (status == MG_OK && pattern) status = mg_bpe_compile_regex(tok, pattern);
    if (status == MG_OK) status = mg_tokenizer_finish(tok);
    return status;
}

mg_status mg_tokenizer_load_hf_json_memory(const char *json, size_t n_bytes, const char *name,
                                           mg_tokenizer **out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load_hf_json_memory: out is NULL");
    *out = NULL;
    if (!json) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_tokenizer_load_hf_json_memory: json is NULL");
    const char *label = name ? name : "tokenizer.json";
    cJSON *root = cJSON_ParseWithLength(json, n_bytes);
    if (!root) {
        const char *where = cJSON_GetErrorPtr();
        return mg_error(MG_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", label,
                        where && where >= json && where <= json + n_bytes ? (size_t)(where - json) : (size_t)0);
    }
    mg_tokenizer *tok;
    mg_status status = mg_tokenizer_new(MG_TOKENIZER_HF_BYTE_BPE, label, &tok);
    if (status == MG_OK) {
        status = load_json(tok, root);
        if (status != MG_OK) mg_tokenizer_destroy(tok);
        else *out = tok;
    }
    cJSON_Delete(root);
    return status;
}
