/* Token generation over any mg_decoder: greedy, or sampling with
 * temperature -> top-k -> top-p in that order (transformers' warper order),
 * a seeded RNG so runs repeat, stop tokens, a streaming callback, and a KV
 * cache the caller keeps between turns. */
#include "models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64: tiny, seedable with any value, good enough for sampling. */
static uint64_t mg_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double mg_rng_uniform(uint64_t *state) { return (double)(mg_rng_next(state) >> 11) * 0x1.0p-53; }

typedef struct mg_candidate {
    float logit;
    int32_t token;
} mg_candidate;

/* Descending logit, then ascending id, so ties resolve like argmax. */
static int mg_candidate_compare(const void *a, const void *b) {
    const mg_candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->token < y->token ? -1 : x->token > y->token;
}

static mg_status mg_check_options(const mg_generate_options *o) {
    if (o->do_sample) {
        if (!(o->temperature > 0.0f) || !isfinite(o->temperature))
            return mg_error(MG_ERR_INVALID_ARGUMENT, "generate: temperature %g must be > 0 when sampling", (double)o->temperature);
        if (!(o->top_p > 0.0f && o->top_p <= 1.0f))
            return mg_error(MG_ERR_INVALID_ARGUMENT, "generate: top_p %g must be in (0, 1]", (double)o->top_p);
        if (o->top_k < 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "generate: top_k %d must be >= 0", o->top_k);
    }
    if (o->n_stop_tokens < 0 || (o->n_stop_tokens > 0 && !o->stop_tokens))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "generate: %d stop tokens but no array", o->n_stop_tokens);
    return MG_OK;
}

mg_status mg_sample_token(const float *logits, int vocab, const mg_generate_options *options, uint64_t *state,
                          int32_t *out) {
    if (!logits || vocab <= 0 || !options || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "sample: NULL argument");
    MG_TRY(mg_check_options(options));
    if (!options->do_sample) {
        int32_t best = 0;
        for (int i = 1; i < vocab; i++)
            if (logits[i] > logits[best]) best = i;
        if (isnan(logits[best])) return mg_error(MG_ERR_INTERNAL, "sample: the logits are NaN");
        *out = best;
        return MG_OK;
    }
    mg_candidate *c = malloc((size_t)vocab * sizeof *c);
    if (!c) return mg_error(MG_ERR_NO_MEMORY, "sample: out of memory");
    for (int i = 0; i < vocab; i++) {
        c[i].logit = logits[i] / options->temperature;
        c[i].token = i;
    }
    qsort(c, (size_t)vocab, sizeof *c, mg_candidate_compare);
    int n = vocab;
    if (options->top_k > 0 && options->top_k < n) n = options->top_k;
    double total = 0.0;
    double *p = malloc((size_t)n * sizeof *p);
    if (!p) {
        free(c);
        return mg_error(MG_ERR_NO_MEMORY, "sample: out of memory");
    }
    for (int i = 0; i < n; i++) total += p[i] = exp((double)c[i].logit - (double)c[0].logit);
    /* top-p: the smallest head of the sorted list whose mass reaches top_p
     * (at least one token). */
    int keep = n;
    if (options->top_p < 1.0f) {
        double cumulative = 0.0;
        for (int i = 0; i < n; i++) {
            cumulative += p[i] / total;
            if (cumulative >= options->top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    double kept = 0.0;
    for (int i = 0; i < keep; i++) kept += p[i];
    double r = mg_rng_uniform(state) * kept;
    int chosen = keep - 1;
    for (int i = 0; i < keep; i++) {
        r -= p[i];
        if (r < 0) {
            chosen = i;
            break;
        }
    }
    *out = c[chosen].token;
    free(p);
    free(c);
    return MG_OK;
}

static bool mg_is_stop(const mg_generate_options *o, int32_t token) {
    for (int i = 0; i < o->n_stop_tokens; i++)
        if (o->stop_tokens[i] == token) return true;
    return false;
}

mg_status mg_generate(mg_context *ctx, mg_decoder *decoder, mg_kv_cache *cache, const mg_decoder_input *prompt,
                      const mg_generate_options *options, int32_t *out_tokens, int max_out, int *n_out) {
    if (!ctx || !decoder || !cache || !prompt || !options || !n_out || (max_out > 0 && !out_tokens))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_generate: NULL argument");
    *n_out = 0;
    MG_TRY(mg_check_options(options));
    if (options->max_new_tokens < 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "generate: max_new_tokens %d must be >= 0", options->max_new_tokens);
    int vocab = mg_decoder_get_config(decoder)->vocab_size;
    mg_tensor logits;
    int64_t shape[2] = {1, vocab};
    MG_TRY(mg_tensor_alloc(&logits, MG_F32, 2, shape));
    uint64_t rng = options->seed;
    mg_status status = mg_decoder_forward(ctx, decoder, cache, prompt, &logits, NULL, NULL);
    int limit = options->max_new_tokens < max_out ? options->max_new_tokens : max_out;
    for (int i = 0; status == MG_OK && i < limit; i++) {
        int32_t token;
        status = mg_sample_token(logits.data, vocab, options, &rng, &token);
        if (status != MG_OK) break;
        out_tokens[(*n_out)++] = token;
        bool go_on = options->on_token ? options->on_token(options->user_data, token) : true;
        if (!go_on || mg_is_stop(options, token) || i + 1 == limit) break;
        mg_decoder_input step = {&token, 1, NULL, NULL, 0};
        status = mg_decoder_forward(ctx, decoder, cache, &step, &logits, NULL, NULL);
    }
    mg_tensor_free_data(&logits);
    return status;
}
