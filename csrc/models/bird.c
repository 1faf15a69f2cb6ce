/* BiRD = Qwen-VL-Chat architecture: ViT-bigG -> resampler (256 image
 * embeddings) -> Qwen-7B, where the 256 positions between each <img> and
 * </img> take the image embeddings instead of their token embeddings
 * (modeling_qwen.py overwrites those rows; the ids there never matter).
 * A session keeps the KV cache and the ids it holds, so the next turn of a
 * conversation only runs the tokens after the shared prefix. */
#include "models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mg_bird {
    mg_vit *vit;
    mg_resampler *resampler;
    mg_decoder *decoder;
    int32_t image_start_id; /* <img>; </img> = +1, <imgpad> = +2 (Qwen specials) */
    int image_size;
};

struct mg_bird_session {
    mg_bird *bird;
    mg_kv_cache *cache;
    int32_t *history; /* the ids whose K/V the cache holds */
    int n_history;
    /* Fingerprints of the images spliced into the cached prefix (in span
     * order): the ids of image rows are all <imgpad>, so equal ids do not
     * mean equal images; a changed image invalidates the cache from its
     * first row on. */
    uint64_t *image_hashes;
    int n_images;
    int prefill_length; /* tokens of the forward that started the cache (its NTK alpha) */
};

/* FNV-1a over the 64-bit words of one image's embedding rows. */
static uint64_t mg_bird_hash_rows(const float *data, int64_t n_floats) {
    uint64_t h = 0xcbf29ce484222325ull;
    const uint32_t *words = (const uint32_t *)data;
    for (int64_t i = 0; i < n_floats; i++) {
        h ^= words[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static mg_status mg_bird_load_all(mg_bird *bird, const mg_weights *weights, const mg_model_weights_options *options) {
    mg_vit_config vit_config;
    MG_TRY(mg_vit_config_qwen(weights, &vit_config));
    if (options) vit_config.weights = *options;
    MG_TRY(mg_vit_load(weights, "transformer.visual.", &vit_config, &bird->vit));
    bird->image_size = vit_config.image_size;
    MG_TRY(mg_resampler_load(weights, "transformer.visual.", vit_config.width, vit_config.norm_eps, options,
                             &bird->resampler));
    mg_decoder_config decoder_config;
    MG_TRY(mg_decoder_config_qwen(weights, &decoder_config));
    if (options) decoder_config.weights = *options;
    MG_TRY(mg_decoder_load(weights, &decoder_config, &bird->decoder));
    int64_t output_dim = 0, start_id = 0;
    if (mg_weights_get_int(weights, "config.visual.output_dim", &output_dim) == MG_OK &&
        output_dim != mg_resampler_dim(bird->resampler))
        return mg_error(MG_ERR_SHAPE, "tensor transformer.visual.proj: gives %lld features but config.visual.output_dim is %lld",
                        (long long)mg_resampler_dim(bird->resampler), (long long)output_dim);
    if (mg_resampler_dim(bird->resampler) != decoder_config.hidden_size)
        return mg_error(MG_ERR_SHAPE, "tensor transformer.visual.proj: gives %lld features but the LM hidden_size is %d",
                        (long long)mg_resampler_dim(bird->resampler), decoder_config.hidden_size);
    if (mg_weights_get_int(weights, "config.visual.image_start_id", &start_id) != MG_OK)
        return mg_error(MG_ERR_NOT_FOUND, "Qwen-VL config: metadata config.visual.image_start_id is missing");
    if (start_id < 0 || start_id + 2 >= decoder_config.vocab_size)
        return mg_error(MG_ERR_FORMAT, "Qwen-VL config: image_start_id %lld leaves no room for </img> and <imgpad> in a vocabulary of %d",
                        (long long)start_id, decoder_config.vocab_size);
    bird->image_start_id = (int32_t)start_id;
    return MG_OK;
}

mg_status mg_bird_load(const mg_weights *weights, const mg_model_weights_options *options, mg_bird **out) {
    *out = NULL;
    if (!weights) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_bird_load: weights is NULL");
    mg_bird *bird = calloc(1, sizeof *bird);
    if (!bird) return mg_error(MG_ERR_NO_MEMORY, "bird: out of memory");
    mg_model_track_begin();
    mg_status status = mg_bird_load_all(bird, weights, options);
    mg_status unused = mg_model_track_end(weights, status == MG_OK && options && options->strict);
    if (status == MG_OK) status = unused;
    if (status != MG_OK) {
        mg_bird_free(bird);
        return status;
    }
    *out = bird;
    return MG_OK;
}

void mg_bird_free(mg_bird *bird) {
    if (!bird) return;
    mg_vit_free(bird->vit);
    mg_resampler_free(bird->resampler);
    mg_decoder_free(bird->decoder);
    free(bird);
}

mg_vit *mg_bird_vit(mg_bird *bird) { return bird->vit; }
mg_resampler *mg_bird_resampler(mg_bird *bird) { return bird->resampler; }
mg_decoder *mg_bird_decoder(mg_bird *bird) { return bird->decoder; }
int mg_bird_image_size(const mg_bird *bird) { return bird->image_size; }
int32_t mg_bird_image_start_id(const mg_bird *bird) { return bird->image_start_id; }
int64_t mg_bird_image_tokens(const mg_bird *bird) { return mg_resampler_n_queries(bird->resampler); }

mg_status mg_bird_encode_image(mg_context *ctx, mg_bird *bird, const mg_tensor *pixels, mg_tensor *embeddings,
                               mg_tensor *vit_out) {
    if (!ctx || !bird || !pixels || !embeddings) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_bird_encode_image: NULL argument");
    mg_tensor features;
    bool own = vit_out == NULL;
    if (own) {
        int64_t shape[2] = {mg_vit_n_tokens(bird->vit), mg_vit_width(bird->vit)};
        MG_TRY(mg_tensor_alloc(&features, MG_F32, 2, shape));
    } else {
        features = *vit_out;
    }
    mg_status status = mg_vit_forward(ctx, bird->vit, pixels, &features);
    if (status == MG_OK) status = mg_resampler_forward(ctx, bird->resampler, &features, embeddings);
    if (own) mg_tensor_free_data(&features);
    return status;
}

mg_status mg_bird_image_rows(const mg_bird *bird, const int32_t *tokens, int n_tokens, int32_t *rows, int max_rows,
                             int *n_rows) {
    int32_t open = bird->image_start_id, close = bird->image_start_id + 1;
    int64_t per_image = mg_bird_image_tokens(bird);
    *n_rows = 0;
    int start = -1;
    for (int i = 0; i < n_tokens; i++) {
        if (tokens[i] == open) {
            if (start >= 0)
                return mg_error(MG_ERR_INVALID_ARGUMENT, "prompt: <img> at position %d opens inside the <img> at position %d",
                                i, start);
            start = i;
        } else if (tokens[i] == close) {
            if (start < 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "prompt: </img> at position %d has no <img>", i);
            if (i - start - 1 != per_image)
                return mg_error(MG_ERR_INVALID_ARGUMENT,
                                "prompt: the <img> span at positions %d..%d encloses %d positions; the model needs exactly %lld",
                                start, i, i - start - 1, (long long)per_image);
            for (int r = start + 1; r < i; r++) {
                if (*n_rows >= max_rows)
                    return mg_error(MG_ERR_INVALID_ARGUMENT, "prompt: more image rows than the %d allowed", max_rows);
                rows[(*n_rows)++] = r;
            }
            start = -1;
        }
    }
    if (start >= 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "prompt: <img> at position %d is never closed", start);
    return MG_OK;
}

mg_status mg_bird_session_create(mg_bird *bird, int capacity, mg_bird_session **out) {
    *out = NULL;
    if (!bird) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_bird_session_create: bird is NULL");
    mg_bird_session *s = calloc(1, sizeof *s);
    if (!s) return mg_error(MG_ERR_NO_MEMORY, "bird session: out of memory");
    s->bird = bird;
    mg_status status = mg_kv_cache_create(bird->decoder, capacity, &s->cache);
    if (status == MG_OK) {
        s->history = malloc((size_t)capacity * sizeof *s->history);
        if (!s->history) status = mg_error(MG_ERR_NO_MEMORY, "bird session: out of memory");
    }
    if (status != MG_OK) {
        mg_bird_session_free(s);
        return status;
    }
    *out = s;
    return MG_OK;
}

void mg_bird_session_free(mg_bird_session *s) {
    if (!s) return;
    mg_kv_cache_free(s->cache);
    free(s->history);
    free(s->image_hashes);
    free(s);
}

mg_kv_cache *mg_bird_session_cache(mg_bird_session *s) { return s->cache; }

mg_status mg_bird_generate(mg_context *ctx, mg_bird *bird, mg_bird_session *session, const int32_t *tokens,
                           int n_tokens, const mg_tensor *image_embeddings, const mg_generate_options *options,
                           int32_t *out_tokens, int max_out, int *n_out) {
    if (!ctx || !bird || !session || !tokens || !options || !n_out)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_bird_generate: NULL argument");
    *n_out = 0;
    if (session->bird != bird) return mg_error(MG_ERR_INVALID_ARGUMENT, "bird: the session belongs to another model");
    if (n_tokens <= 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "bird: the prompt is empty");
    int capacity = mg_kv_cache_capacity(session->cache);
    int new_max = options->max_new_tokens < max_out ? options->max_new_tokens : max_out;
    if (n_tokens + (new_max > 0 ? new_max - 1 : 0) > capacity)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "bird: %d prompt + %d new tokens exceed the session capacity %d", n_tokens,
                        new_max, capacity);

    int32_t *rows = malloc((size_t)n_tokens * sizeof *rows);
    if (!rows) return mg_error(MG_ERR_NO_MEMORY, "bird: out of memory");
    int n_rows = 0;
    mg_status status = mg_bird_image_rows(bird, tokens, n_tokens, rows, n_tokens, &n_rows);

    /* Reuse the cached prefix; at least the last prompt token runs so that
     * its logits start generation. An image whose embeddings differ from the
     * one cached at the same span ends the reusable prefix at its first row. */
    int keep = 0;
    int limit = session->n_history < n_tokens - 1 ? session->n_history : n_tokens - 1;
    while (keep < limit && session->history[keep] == tokens[keep]) keep++;
    int64_t hidden = mg_decoder_get_config(bird->decoder)->hidden_size;
    int per_image = (int)mg_bird_image_tokens(bird);
    int n_images = n_rows / per_image;
    bool have_embeddings = image_embeddings && image_embeddings->n_dims == 2 && image_embeddings->shape[0] == n_rows &&
                           image_embeddings->shape[1] == hidden && image_embeddings->dtype == MG_F32 &&
                           mg_tensor_is_contiguous(image_embeddings);
    uint64_t *hashes = NULL;
    if (status == MG_OK && n_images > 0 && have_embeddings) {
        hashes = malloc((size_t)n_images * sizeof *hashes);
        if (!hashes) status = mg_error(MG_ERR_NO_MEMORY, "bird: out of memory");
        for (int i = 0; hashes && i < n_images; i++)
            hashes[i] = mg_bird_hash_rows((const float *)image_embeddings->data + (int64_t)i * per_image * hidden,
                                          (int64_t)per_image * hidden);
    }
    for (int i = 0; status == MG_OK && i < n_images; i++) {
        int first = rows[i * per_image];
        if (first >= keep) break;
        bool same = i < session->n_images && (!hashes || hashes[i] == session->image_hashes[i]);
        if (!same) {
            keep = first;
            break;
        }
    }
    /* modeling_qwen.py runs every turn from scratch, choosing the dynamic-NTK
     * alpha from the whole prompt; the cached K/V carry the alpha of the
     * prefill that started them, so reuse only when the two agree (always
     * for prompts within seq_length). */
    if (keep > 0 && mg_decoder_ntk_alpha(bird->decoder, n_tokens) !=
                        mg_decoder_ntk_alpha(bird->decoder, session->prefill_length))
        keep = 0;
    int first_new_row = 0;
    while (first_new_row < n_rows && rows[first_new_row] < keep) first_new_row++;
    int n_override = n_rows - first_new_row;
    mg_tensor tail;
    if (status == MG_OK && n_override > 0) {
        if (!have_embeddings) {
            char got[64] = "none";
            if (image_embeddings) mg_tensor_describe(image_embeddings, got, sizeof got);
            status = mg_error(MG_ERR_SHAPE, "bird: the prompt has %d image rows (%d images): image embeddings must be f32 [%d, %lld], got %s",
                              n_rows, n_images, n_rows, (long long)hidden, got);
        } else {
            status = mg_tensor_slice(image_embeddings, 0, first_new_row, n_rows, &tail);
            for (int i = first_new_row; i < n_rows; i++) rows[i] -= keep;
        }
    }
    if (status == MG_OK) status = mg_kv_cache_truncate(session->cache, keep);
    if (status == MG_OK) {
        session->n_history = keep;
        mg_decoder_input prompt = {tokens + keep, n_tokens - keep, n_override > 0 ? &tail : NULL,
                                   rows + first_new_row, n_override};
        status = mg_generate(ctx, bird->decoder, session->cache, &prompt, options, out_tokens, max_out, n_out);
    }
    free(rows);
    if (status == MG_OK && n_images > session->n_images) {
        uint64_t *grown = realloc(session->image_hashes, (size_t)n_images * sizeof *grown);
        if (!grown) status = mg_error(MG_ERR_NO_MEMORY, "bird: out of memory");
        else session->image_hashes = grown;
    }
    if (status != MG_OK) {
        /* The cache may hold part of this turn: forget it all. */
        free(hashes);
        mg_kv_cache_truncate(session->cache, 0);
        session->n_history = 0;
        session->n_images = 0;
        return status;
    }
    /* Images of this prompt: new fingerprints when embeddings were given,
     * else every image lay in the reused prefix and keeps its own. */
    if (hashes) memcpy(session->image_hashes, hashes, (size_t)n_images * sizeof *hashes);
    if (keep == 0) session->prefill_length = n_tokens;
    session->n_images = n_images;
    free(hashes);
    memcpy(session->history + keep, tokens + keep, (size_t)(n_tokens - keep) * sizeof *tokens);
    session->n_history = n_tokens;
    for (int i = 0; i + 1 < *n_out; i++) session->history[session->n_history++] = out_tokens[i];
    if (session->n_history != mg_kv_cache_length(session->cache)) {
        mg_kv_cache_truncate(session->cache, 0);
        session->n_history = 0;
        session->n_images = 0;
        return mg_error(MG_ERR_INTERNAL, "bird: session history and KV cache disagree");
    }
    return MG_OK;
}

/* ------------------------------------------------------------ box parsing */

static bool mg_box_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool mg_box_digit(char c) { return c >= '0' && c <= '9'; }

/* First occurrence of `needle` in text[from, n), or -1. */
static int64_t mg_box_find(const char *text, int64_t n, int64_t from, const char *needle) {
    size_t k = strlen(needle);
    for (int64_t i = from; i + (int64_t)k <= n; i++)
        if (text[i] == needle[0] && memcmp(text + i, needle, k) == 0) return i;
    return -1;
}

static void mg_box_skip_space(const char *s, int64_t n, int64_t *i) {
    while (*i < n && mg_box_space(s[*i])) (*i)++;
}

/* -?digits(.digits)? at s[*i]; the value via strtod on an exact copy. */
static bool mg_box_number(const char *s, int64_t n, int64_t *i, double *out) {
    int64_t start = *i, j = *i;
    if (j < n && s[j] == '-') j++;
    int64_t digits = j;
    while (j < n && mg_box_digit(s[j])) j++;
    if (j == digits) return false;
    if (j + 1 < n && s[j] == '.' && mg_box_digit(s[j + 1])) {
        j++;
        while (j < n && mg_box_digit(s[j])) j++;
    }
    char small[64], *buf = small;
    size_t len = (size_t)(j - start);
    if (len + 1 > sizeof small && !(buf = malloc(len + 1))) return false;
    memcpy(buf, s + start, len);
    buf[len] = 0;
    *out = strtod(buf, NULL);
    if (buf != small) free(buf);
    *i = j;
    return true;
}

/* s[*i..] = spaces '(' N ',' N ')' with spaces around each number. */
static bool mg_box_pair(const char *s, int64_t n, int64_t *i, double *x, double *y) {
    mg_box_skip_space(s, n, i);
    if (*i >= n || s[*i] != '(') return false;
    (*i)++;
    mg_box_skip_space(s, n, i);
    if (!mg_box_number(s, n, i, x)) return false;
    mg_box_skip_space(s, n, i);
    if (*i >= n || s[*i] != ',') return false;
    (*i)++;
    mg_box_skip_space(s, n, i);
    if (!mg_box_number(s, n, i, y)) return false;
    mg_box_skip_space(s, n, i);
    if (*i >= n || s[*i] != ')') return false;
    (*i)++;
    return true;
}

/* The whole body is "(x1,y1),(x2,y2)" (the comma between pairs optional). */
static bool mg_box_body(const char *s, int64_t n, double v[4]) {
    int64_t i = 0;
    if (!mg_box_pair(s, n, &i, &v[0], &v[1])) return false;
    mg_box_skip_space(s, n, &i);
    if (i < n && s[i] == ',') i++;
    if (!mg_box_pair(s, n, &i, &v[2], &v[3])) return false;
    mg_box_skip_space(s, n, &i);
    return i == n;
}

/* BiRD's fallback regex \((\d+),(\d+)\),\((\d+),(\d+)\) at s[i]. */
static bool mg_box_fallback_at(const char *s, int64_t n, int64_t i, double v[4], int64_t *end) {
    int k = 0;
    for (const char *p = "(d,d),(d,d)"; *p; p++) {
        if (*p == 'd') {
            int64_t start = i;
            while (i < n && mg_box_digit(s[i])) i++;
            if (i == start) return false;
            int64_t j = start;
            if (!mg_box_number(s, i, &j, &v[k++])) return false; /* digits only: bounded at i */
        } else {
            if (i >= n || s[i] != *p) return false;
            i++;
        }
    }
    *end = i;
    return true;
}

typedef struct mg_box_out {
    mg_bird_box *boxes;
    int64_t max, count;
    double width, height, grid;
} mg_box_out;

static void mg_box_emit(mg_box_out *o, const mg_bird_box *box) {
    if (o->count < o->max) o->boxes[o->count] = *box;
    o->count++;
}

static void mg_box_report(mg_box_out *o, unsigned issue, int64_t start, int64_t length, int64_t label_start,
                          int64_t label_length) {
    mg_bird_box box;
    memset(&box, 0, sizeof box);
    box.issues = issue;
    box.span_start = start, box.span_length = length;
    box.label_start = label_start, box.label_length = label_length;
    mg_box_emit(o, &box);
}

static void mg_box_fix(mg_box_out *o, const double raw[4], int64_t start, int64_t length, int64_t label_start,
                       int64_t label_length) {
    mg_bird_box box;
    memset(&box, 0, sizeof box);
    box.valid = true;
    box.span_start = start, box.span_length = length;
    box.label_start = label_start, box.label_length = label_length;
    double v[4];
    for (int k = 0; k < 4; k++) {
        v[k] = raw[k] < 0.0 ? 0.0 : raw[k] > o->grid ? o->grid : raw[k];
        if (v[k] != raw[k]) box.issues |= MG_BOX_CLAMPED;
    }
    if (v[0] > v[2] || v[1] > v[3]) {
        box.issues |= MG_BOX_SWAPPED;
        double a = v[0] < v[2] ? v[0] : v[2], b = v[0] < v[2] ? v[2] : v[0];
        double c = v[1] < v[3] ? v[1] : v[3], d = v[1] < v[3] ? v[3] : v[1];
        v[0] = a, v[2] = b, v[1] = c, v[3] = d;
    }
    if (v[0] == v[2] || v[1] == v[3]) box.issues |= MG_BOX_EMPTY;
    box.grid_x1 = v[0], box.grid_y1 = v[1], box.grid_x2 = v[2], box.grid_y2 = v[3];
    if (o->width > 0) {
        double sx = o->width / o->grid, sy = o->height / o->grid;
        box.x1 = v[0] * sx, box.y1 = v[1] * sy, box.x2 = v[2] * sx, box.y2 = v[3] * sy;
    } else {
        box.x1 = v[0], box.y1 = v[1], box.x2 = v[2], box.y2 = v[3];
    }
    mg_box_emit(o, &box);
}

mg_status mg_bird_parse_boxes(const char *text, size_t n_bytes, double width, double height, double grid,
                              mg_bird_box *boxes, int64_t max_boxes, int64_t *n_boxes) {
    if (!text || !n_boxes || (max_boxes > 0 && !boxes) || max_boxes < 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_bird_parse_boxes: NULL argument");
    if (!(grid > 0) || !isfinite(grid))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_bird_parse_boxes: grid %g must be positive", grid);
    bool pixels = width != 0 || height != 0;
    if (pixels && !(width > 0 && height > 0 && isfinite(width) && isfinite(height)))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_bird_parse_boxes: image size %g x %g must be positive", width,
                        height);
    mg_box_out o = {boxes, max_boxes, 0, pixels ? width : 0, pixels ? height : 0, grid};
    int64_t n = (int64_t)n_bytes;
    if (mg_box_find(text, n, 0, "<box>") >= 0) {
        int64_t pos = 0, label_start = -1, label_length = 0;
        while (pos < n) {
            int64_t ref = mg_box_find(text, n, pos, "<ref>"), box = mg_box_find(text, n, pos, "<box>");
            if (ref < 0 && box < 0) break;
            if (ref >= 0 && (box < 0 || ref < box)) {
                int64_t start = ref + 5, close = mg_box_find(text, n, start, "</ref>"),
                        next_box = mg_box_find(text, n, start, "<box>"), end = n;
                if (close >= 0) end = close;
                if (next_box >= 0 && next_box < end) end = next_box, close = -1;
                int64_t a = start, b = end;
                while (a < b && mg_box_space(text[a])) a++;
                while (b > a && mg_box_space(text[b - 1])) b--;
                label_start = b > a ? a : -1;
                label_length = b > a ? b - a : 0;
                pos = close >= 0 && close == end ? end + 6 : end;
            } else {
                int64_t start = box + 5, close = mg_box_find(text, n, start, "</box>");
                if (close < 0) {
                    mg_box_report(&o, MG_BOX_UNTERMINATED, box, n - box, label_start, label_length);
                    break;
                }
                double v[4];
                if (mg_box_body(text + start, close - start, v))
                    mg_box_fix(&o, v, box, close + 6 - box, label_start, label_length);
                else
                    mg_box_report(&o, MG_BOX_MALFORMED, box, close + 6 - box, label_start, label_length);
                pos = close + 6;
            }
        }
    } else {
        bool found = false;
        for (int64_t i = 0; i < n;) {
            double v[4];
            int64_t end;
            if (text[i] == '(' && mg_box_fallback_at(text, n, i, v, &end)) {
                mg_box_fix(&o, v, i, end - i, -1, 0);
                found = true;
                i = end;
            } else {
                i++;
            }
        }
        int64_t ref = mg_box_find(text, n, 0, "<ref>");
        if (!found && ref >= 0) mg_box_report(&o, MG_BOX_NO_BOX, ref, 5, -1, 0);
    }
    *n_boxes = o.count;
    return MG_OK;
}

/* ---------------------------------------------------------------- prompts */

typedef struct mg_ids {
    int32_t *data;
    size_t n, cap;
} mg_ids;

static mg_status mg_ids_push(mg_ids *ids, const int32_t *values, size_t n) {
    if (ids->n + n > ids->cap) {
        size_t cap = ids->cap ? ids->cap : 256;
        while (cap < ids->n + n) cap *= 2;
        int32_t *grown = realloc(ids->data, cap * sizeof *grown);
        if (!grown) return mg_error(MG_ERR_NO_MEMORY, "bird prompt: out of memory");
        ids->data = grown;
        ids->cap = cap;
    }
    memcpy(ids->data + ids->n, values, n * sizeof *values);
    ids->n += n;
    return MG_OK;
}

static mg_status mg_ids_special(mg_ids *ids, int32_t id) { return mg_ids_push(ids, &id, 1); }

/* One tokenizer call over text[0, n) as plain text (special strings stay text). */
static mg_status mg_ids_text(mg_ids *ids, const mg_tokenizer *tok, const char *text, size_t n) {
    if (n == 0) return MG_OK;
    mg_encode_options plain;
    memset(&plain, 0, sizeof plain);
    plain.special = MG_SPECIAL_NONE;
    int32_t *out = NULL;
    size_t n_out = 0;
    MG_TRY(mg_tokenizer_encode(tok, text, n, &plain, &out, &n_out));
    mg_status status = mg_ids_push(ids, out, n_out);
    free(out);
    return status;
}

/* Content as Qwen encodes it (allowed_special = the image/box tags): text
 * runs between <ref> </ref> <box> </box> <quad> </quad>, each its own call. */
static mg_status mg_ids_content(mg_ids *ids, const mg_tokenizer *tok, int32_t base, const char *prefix,
                                const char *text) {
    static const char *const tags[6] = {"<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>"};
    size_t n_prefix = prefix ? strlen(prefix) : 0, n_text = strlen(text);
    char *joined = malloc(n_prefix + n_text + 1);
    if (!joined) return mg_error(MG_ERR_NO_MEMORY, "bird prompt: out of memory");
    if (n_prefix) memcpy(joined, prefix, n_prefix);
    memcpy(joined + n_prefix, text, n_text + 1);
    size_t n = n_prefix + n_text, run = 0;
    mg_status status = MG_OK;
    for (size_t i = 0; i < n && status == MG_OK;) {
        int found = -1;
        for (int t = 0; t < 6 && found < 0; t++)
            if (joined[i] == '<' && strncmp(joined + i, tags[t], strlen(tags[t])) == 0) found = t;
        if (found < 0) {
            i++;
            continue;
        }
        status = mg_ids_text(ids, tok, joined + run, i - run);
        if (status == MG_OK) status = mg_ids_special(ids, base + 208 + found);
        i += strlen(tags[found]);
        run = i;
    }
    if (status == MG_OK) status = mg_ids_text(ids, tok, joined + run, n - run);
    free(joined);
    return status;
}

mg_status mg_bird_build_prompt(const mg_bird *bird, const mg_tokenizer *tok, const char *system,
                               const char *const *messages, int n_messages, bool with_image, int32_t **ids,
                               size_t *n_ids) {
    if (!bird || !tok || !messages || !ids || !n_ids)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_bird_build_prompt: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (n_messages < 1 || n_messages % 2 == 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT,
                        "mg_bird_build_prompt: %d messages; expected user, assistant, ..., user (an odd count)",
                        n_messages);
    for (int i = 0; i < n_messages; i++)
        if (!messages[i]) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_bird_build_prompt: message %d is NULL", i);
    /* Qwen's specials: <|endoftext|> = <img> - 214, then <|im_start|>, <|im_end|>;
     * <ref> = base + 208 ... <imgpad> = base + 216. */
    int32_t base = bird->image_start_id - 214;
    if (base < 0) return mg_error(MG_ERR_FORMAT, "bird prompt: image_start_id %d leaves no room for Qwen's specials",
                                  (int)bird->image_start_id);
    int32_t im_start = base + 1, im_end = base + 2;
    mg_ids out = {NULL, 0, 0};
    mg_status status = mg_ids_special(&out, im_start);
#define MG_TEXT(s) \
    if (status == MG_OK) status = mg_ids_text(&out, tok, s, strlen(s))
#define MG_SPECIAL(id) \
    if (status == MG_OK) status = mg_ids_special(&out, id)
    MG_TEXT("system");
    MG_TEXT("\n");
    MG_TEXT(system ? system : "You are a helpful assistant.");
    MG_SPECIAL(im_end);
    for (int i = 0; i < n_messages && status == MG_OK; i += 2) {
        MG_TEXT("\n");
        MG_SPECIAL(im_start);
        MG_TEXT("user");
        MG_TEXT("\n");
        if (with_image && i == 0) {
            MG_TEXT("Picture 1: ");
            MG_SPECIAL(bird->image_start_id);
            for (int64_t r = 0; r < mg_bird_image_tokens(bird); r++) MG_SPECIAL(base + 216);
            MG_SPECIAL(bird->image_start_id + 1);
            if (status == MG_OK) status = mg_ids_content(&out, tok, base, "\n", messages[i]);
        } else if (status == MG_OK) {
            status = mg_ids_content(&out, tok, base, NULL, messages[i]);
        }
        MG_SPECIAL(im_end);
        MG_TEXT("\n");
        MG_SPECIAL(im_start);
        MG_TEXT("assistant");
        MG_TEXT("\n");
        if (i + 1 < n_messages) {
            if (status == MG_OK) status = mg_ids_content(&out, tok, base, NULL, messages[i + 1]);
            MG_SPECIAL(im_end);
        }
    }
#undef MG_TEXT
#undef MG_SPECIAL
    if (status != MG_OK) {
        free(out.data);
        return status;
    }
    *ids = out.data;
    *n_ids = out.n;
    return MG_OK;
}
