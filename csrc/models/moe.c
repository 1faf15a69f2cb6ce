/* MedPLIB's mixture-of-experts FFN (MoE-LLaVA on DeepSpeed 0.13.1 `MoE`,
 * `moe_mode dense`: every decoder layer), run through the decoder's FFN hook.
 *
 * Per forward call over T tokens x[T, hidden] (already post-attention
 * RMS-normed):
 *   router logits = x · wgᵀ in f32 (DeepSpeed's TopKGate casts wg and the
 *   input to fp32), p = softmax(logits), e* = argmax p (lowest index on a tie,
 *   as torch.argmax), y = p[e*] · Expert_{e*}(x) — the top-1 combine weight is
 *   the softmax probability itself, not renormalised; no residual expert.
 *   Expert = LLaMA MLP down(silu(gate(x)) * up(x)).
 * Capacity (top1gating): capacity = max(ceil(T / E * cf), min_capacity) tokens
 * per expert, cf = eval_capacity_factor at inference. A token routed to a
 * full expert is dropped: its FFN output is 0 (only the residual remains).
 * With MedPLIB's eval cf = 2 and E = 2, capacity = T: nothing is ever
 * dropped. When an expert overflows, DeepSpeed keeps a random subset (random
 * token selection); this code keeps the earliest tokens (deterministic).
 * cf <= 0 disables the limit.
 * Experts are merged FFNs (the release: `<prefix>N.mlp.deepspeed_moe.experts.
 * deepspeed_experts.E.{gate,up,down}_proj.weight`); unmerged LoRA stage
 * checkpoints are merged into such a table by mg_medplib_load first. */
#include "models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct mg_moe_expert {
    mg_tensor gate, up, down;
} mg_moe_expert;

typedef struct mg_moe_layer {
    mg_tensor wg; /* [E, hidden] f32 */
    mg_moe_expert *experts;
} mg_moe_layer;

struct mg_moe {
    mg_moe_config config;
    mg_moe_layer *layers;
    int64_t *routed;  /* [n_layers * E] tokens routed (before capacity) */
    int64_t *dropped; /* [n_layers] tokens dropped for capacity          */
    int32_t *last_expert; /* [n_layers * last_cap]: last call's choices  */
    float *last_prob;
    int *last_count;      /* [n_layers] tokens of the last call           */
    int last_cap;
    mg_owned owned;
    mg_arena scratch;
};

/* ---------------------------------------------------------------- loading */

/* One expert projection `base` ([out, in]). */
static mg_status mg_moe_load_matrix(mg_moe *moe, const mg_weights *weights, const char *base, int64_t out_f,
                                    int64_t in_f, mg_tensor *out) {
    char name[MG_NAME_MAX];
    int64_t shape[2] = {out_f, in_f};
    mg_tensor stored;
    MG_TRY(mg_name(name, sizeof name, "%s.weight", base));
    MG_TRY(mg_model_get(weights, name, 2, shape, &stored));
    return mg_model_matrix(&moe->owned, name, &stored, &moe->config.weights, out);
}

static mg_status mg_moe_load_all(mg_moe *moe, const mg_weights *weights, const char *prefix) {
    const mg_moe_config *c = &moe->config;
    char base[MG_NAME_MAX];
    for (int l = 0; l < c->n_layers; l++) {
        mg_moe_layer *layer = &moe->layers[l];
        layer->experts = calloc((size_t)c->n_experts, sizeof *layer->experts);
        if (!layer->experts) return mg_error(MG_ERR_NO_MEMORY, "moe: out of memory");
        int64_t wg_shape[2] = {c->n_experts, c->hidden_size};
        MG_TRY(mg_name(base, sizeof base, "%s%d.mlp.deepspeed_moe.gate.wg.weight", prefix, l));
        MG_TRY(mg_model_get_f32(weights, &moe->owned, base, 2, wg_shape, &layer->wg));
        for (int e = 0; e < c->n_experts; e++) {
            mg_moe_expert *x = &layer->experts[e];
            const char *fmt = "%s%d.mlp.deepspeed_moe.experts.deepspeed_experts.%d.%s";
            MG_TRY(mg_name(base, sizeof base, fmt, prefix, l, e, "gate_proj"));
            MG_TRY(mg_moe_load_matrix(moe, weights, base, c->ffn_dim, c->hidden_size, &x->gate));
            MG_TRY(mg_name(base, sizeof base, fmt, prefix, l, e, "up_proj"));
            MG_TRY(mg_moe_load_matrix(moe, weights, base, c->ffn_dim, c->hidden_size, &x->up));
            MG_TRY(mg_name(base, sizeof base, fmt, prefix, l, e, "down_proj"));
            MG_TRY(mg_moe_load_matrix(moe, weights, base, c->hidden_size, c->ffn_dim, &x->down));
        }
    }
    return MG_OK;
}

mg_status mg_moe_load(const mg_weights *weights, const char *prefix, const mg_moe_config *config, mg_moe **out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_moe_load: out is NULL");
    *out = NULL;
    if (!weights || !prefix || !config) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_moe_load: NULL argument");
    if (config->n_layers <= 0 || config->hidden_size <= 0 || config->ffn_dim <= 0 || config->n_experts <= 0 ||
        config->n_experts > 64)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "moe config: n_layers %d, hidden_size %d, ffn_dim %d, n_experts %d out of range",
                        config->n_layers, config->hidden_size, config->ffn_dim, config->n_experts);
    if (config->top_k != 1)
        return mg_error(MG_ERR_UNSUPPORTED, "moe config: top_k %d: only top-1 routing (MedPLIB) is implemented", config->top_k);
    if (config->min_capacity < 0 || !isfinite(config->capacity_factor))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "moe config: capacity_factor %g / min_capacity %d out of range",
                        (double)config->capacity_factor, config->min_capacity);
    mg_moe *moe = calloc(1, sizeof *moe);
    if (!moe) return mg_error(MG_ERR_NO_MEMORY, "moe: out of memory");
    moe->config = *config;
    moe->layers = calloc((size_t)config->n_layers, sizeof *moe->layers);
    moe->routed = calloc((size_t)config->n_layers * (size_t)config->n_experts, sizeof *moe->routed);
    moe->dropped = calloc((size_t)config->n_layers, sizeof *moe->dropped);
    moe->last_count = calloc((size_t)config->n_layers, sizeof *moe->last_count);
    mg_status status = moe->layers && moe->routed && moe->dropped && moe->last_count
                           ? mg_moe_load_all(moe, weights, prefix)
                           : mg_error(MG_ERR_NO_MEMORY, "moe: out of memory");
    if (status != MG_OK) {
        mg_moe_free(moe);
        return status;
    }
    *out = moe;
    return MG_OK;
}

void mg_moe_free(mg_moe *moe) {
    if (!moe) return;
    if (moe->layers)
        for (int l = 0; l < moe->config.n_layers; l++) free(moe->layers[l].experts);
    free(moe->layers);
    free(moe->routed);
    free(moe->dropped);
    free(moe->last_expert);
    free(moe->last_prob);
    free(moe->last_count);
    mg_owned_free(&moe->owned);
    mg_arena_destroy(&moe->scratch);
    free(moe);
}

const mg_moe_config *mg_moe_get_config(const mg_moe *moe) { return &moe->config; }

/* ---------------------------------------------------------------- forward */

static mg_status mg_moe_check_x(const mg_moe *moe, int layer, const mg_tensor *x, const char *what) {
    if (layer < 0 || layer >= moe->config.n_layers)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "moe: layer %d outside [0, %d)", layer, moe->config.n_layers);
    if (x->dtype != MG_F32 || x->n_dims != 2 || x->shape[1] != moe->config.hidden_size || !mg_tensor_is_contiguous(x)) {
        char got[64];
        return mg_error(MG_ERR_SHAPE, "moe: %s must be contiguous f32 [T, %d], got %s", what, moe->config.hidden_size,
                        mg_tensor_describe(x, got, sizeof got));
    }
    return MG_OK;
}

mg_status mg_moe_route(mg_context *ctx, mg_moe *moe, int layer, const mg_tensor *x, int32_t *experts, float *probs) {
    if (!ctx || !moe || !x || !experts) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_moe_route: NULL argument");
    MG_TRY(mg_moe_check_x(moe, layer, x, "x"));
    int64_t T = x->shape[0], E = moe->config.n_experts;
    mg_tensor logits;
    int64_t shape[2] = {T, E};
    MG_TRY(mg_tensor_alloc(&logits, MG_F32, 2, shape));
    mg_status status = mg_linear(ctx, x, &moe->layers[layer].wg, NULL, &logits);
    if (status == MG_OK) status = mg_softmax(ctx, &logits, NULL, false, &logits);
    if (status == MG_OK) {
        const float *p = logits.data;
        for (int64_t t = 0; t < T; t++) {
            int best = 0;
            for (int e = 1; e < E; e++)
                if (p[t * E + e] > p[t * E + best]) best = e;
            experts[t] = best;
            if (probs) memcpy(probs + t * E, p + t * E, (size_t)E * sizeof *probs);
        }
    }
    mg_tensor_free_data(&logits);
    return status;
}

static mg_status mg_moe_expert_rows(mg_context *ctx, const mg_moe_expert *ex, const mg_tensor *x, mg_tensor *gate,
                                    mg_tensor *up, mg_tensor *out) {
    MG_TRY(mg_linear(ctx, x, &ex->gate, NULL, gate));
    MG_TRY(mg_activate(ctx, gate, MG_ACT_SILU, gate));
    MG_TRY(mg_linear(ctx, x, &ex->up, NULL, up));
    MG_TRY(mg_mul(ctx, gate, up, gate));
    return mg_linear(ctx, gate, &ex->down, NULL, out);
}

mg_status mg_moe_expert_forward(mg_context *ctx, mg_moe *moe, int layer, int expert, const mg_tensor *x,
                                mg_tensor *out) {
    if (!ctx || !moe || !x || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_moe_expert_forward: NULL argument");
    MG_TRY(mg_moe_check_x(moe, layer, x, "x"));
    MG_TRY(mg_moe_check_x(moe, layer, out, "out"));
    if (expert < 0 || expert >= moe->config.n_experts)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "moe: expert %d outside [0, %d)", expert, moe->config.n_experts);
    if (out->shape[0] != x->shape[0]) return mg_error(MG_ERR_SHAPE, "moe: out must have as many rows as x");
    int64_t T = x->shape[0], F = moe->config.ffn_dim;
    MG_TRY(mg_scratch_reserve(&moe->scratch, (size_t)(2 * T * F) * 4 + 4096));
    mg_tensor gate, up;
    int64_t tf[2] = {T, F};
    MG_TRY(mg_arena_tensor(&moe->scratch, &gate, MG_F32, 2, tf));
    MG_TRY(mg_arena_tensor(&moe->scratch, &up, MG_F32, 2, tf));
    return mg_moe_expert_rows(ctx, &moe->layers[layer].experts[expert], x, &gate, &up, out);
}

int64_t mg_moe_capacity(const mg_moe *moe, int64_t n_tokens) {
    const mg_moe_config *c = &moe->config;
    if (!(c->capacity_factor > 0)) return n_tokens;
    int64_t cap = (int64_t)ceil((double)n_tokens / (double)c->n_experts * (double)c->capacity_factor);
    if (cap < c->min_capacity) cap = c->min_capacity;
    return cap;
}

mg_status mg_moe_ffn(void *user_data, mg_context *ctx, int layer, const mg_tensor *x, mg_tensor *out) {
    mg_moe *moe = user_data;
    if (!ctx || !moe || !x || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_moe_ffn: NULL argument");
    MG_TRY(mg_moe_check_x(moe, layer, x, "x"));
    MG_TRY(mg_moe_check_x(moe, layer, out, "out"));
    const mg_moe_config *c = &moe->config;
    int64_t T = x->shape[0], E = c->n_experts, H = c->hidden_size, F = c->ffn_dim;
    if (out->shape[0] != T) return mg_error(MG_ERR_SHAPE, "moe: out must have as many rows as x");

    if (T > moe->last_cap) {
        int32_t *ex = realloc(moe->last_expert, (size_t)(T * c->n_layers) * sizeof *ex);
        if (ex) moe->last_expert = ex;
        float *pr = ex ? realloc(moe->last_prob, (size_t)(T * c->n_layers) * sizeof *pr) : NULL;
        if (pr) moe->last_prob = pr;
        if (!ex || !pr) return mg_error(MG_ERR_NO_MEMORY, "moe: out of memory");
        moe->last_cap = (int)T;
        memset(moe->last_count, 0, (size_t)c->n_layers * sizeof *moe->last_count);
    }
    size_t floats = (size_t)(T * E + T * H * 2 + T * F * 2);
    MG_TRY(mg_scratch_reserve(&moe->scratch, floats * 4 + (size_t)T * 8 + 8 * 4096));
    mg_arena *arena = &moe->scratch;
    mg_tensor probs, xin, yout, gate, up;
    int64_t te[2] = {T, E}, th[2] = {T, H}, tf[2] = {T, F};
    MG_TRY(mg_arena_tensor(arena, &probs, MG_F32, 2, te));
    MG_TRY(mg_arena_tensor(arena, &xin, MG_F32, 2, th));
    MG_TRY(mg_arena_tensor(arena, &yout, MG_F32, 2, th));
    MG_TRY(mg_arena_tensor(arena, &gate, MG_F32, 2, tf));
    MG_TRY(mg_arena_tensor(arena, &up, MG_F32, 2, tf));
    int32_t *rows = mg_arena_alloc(arena, (size_t)T * sizeof *rows, 64);
    if (!rows) return MG_ERR_NO_MEMORY;

    /* 1. router in f32, softmax, top-1 */
    MG_TRY(mg_linear(ctx, x, &moe->layers[layer].wg, NULL, &probs));
    MG_TRY(mg_softmax(ctx, &probs, NULL, false, &probs));
    const float *p = probs.data;
    int32_t *choice = moe->last_expert + (size_t)layer * moe->last_cap;
    float *chosen_p = moe->last_prob + (size_t)layer * moe->last_cap;
    for (int64_t t = 0; t < T; t++) {
        int best = 0;
        for (int e = 1; e < E; e++)
            if (p[t * E + e] > p[t * E + best]) best = e;
        choice[t] = best;
        chosen_p[t] = p[t * E + best];
        moe->routed[(size_t)layer * E + best]++;
    }
    moe->last_count[layer] = (int)T;

    /* 2. each expert on its (capacity-limited) tokens, scaled, scattered */
    memset(out->data, 0, (size_t)(T * H) * 4);
    int64_t capacity = mg_moe_capacity(moe, T);
    const float *xs = x->data;
    float *ys = out->data;
    for (int e = 0; e < E; e++) {
        int64_t n = 0, routed = 0;
        for (int64_t t = 0; t < T; t++) {
            if (choice[t] != e) continue;
            if (routed++ < capacity) rows[n++] = (int32_t)t;
        }
        moe->dropped[layer] += routed - n;
        if (n == 0) continue;
        for (int64_t i = 0; i < n; i++) memcpy((float *)xin.data + i * H, xs + (int64_t)rows[i] * H, (size_t)H * 4);
        mg_tensor xi = mg_view2_f32(xin.data, n, H), yi = mg_view2_f32(yout.data, n, H);
        mg_tensor gi = mg_view2_f32(gate.data, n, F), ui = mg_view2_f32(up.data, n, F);
        mg_status status = mg_moe_expert_rows(ctx, &moe->layers[layer].experts[e], &xi, &gi, &ui, &yi);
        if (status != MG_OK) return mg_error_prefix(status, "moe expert %d", e);
        for (int64_t i = 0; i < n; i++) {
            float w = chosen_p[rows[i]];
            const float *src = (const float *)yout.data + i * H;
            float *dst = ys + (int64_t)rows[i] * H;
            for (int64_t j = 0; j < H; j++) dst[j] = w * src[j];
        }
    }
    return MG_OK;
}

mg_status mg_moe_get_load(const mg_moe *moe, int64_t *routed, int64_t *dropped) {
    if (!moe) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_moe_get_load: moe is NULL");
    const mg_moe_config *c = &moe->config;
    if (routed) memcpy(routed, moe->routed, (size_t)c->n_layers * (size_t)c->n_experts * sizeof *routed);
    if (dropped) memcpy(dropped, moe->dropped, (size_t)c->n_layers * sizeof *dropped);
    return MG_OK;
}

void mg_moe_reset_load(mg_moe *moe) {
    if (!moe) return;
    memset(moe->routed, 0, (size_t)moe->config.n_layers * (size_t)moe->config.n_experts * sizeof *moe->routed);
    memset(moe->dropped, 0, (size_t)moe->config.n_layers * sizeof *moe->dropped);
}

mg_status mg_moe_last_routes(const mg_moe *moe, int layer, int32_t *experts, float *probs, int max_tokens,
                             int *n_tokens) {
    if (!moe || !n_tokens) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_moe_last_routes: NULL argument");
    if (layer < 0 || layer >= moe->config.n_layers)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "moe: layer %d outside [0, %d)", layer, moe->config.n_layers);
    int n = moe->last_count[layer];
    *n_tokens = n;
    if (n > max_tokens)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "moe: the last call routed %d tokens; room for %d given", n, max_tokens);
    if (experts && n) memcpy(experts, moe->last_expert + (size_t)layer * moe->last_cap, (size_t)n * sizeof *experts);
    if (probs && n) memcpy(probs, moe->last_prob + (size_t)layer * moe->last_cap, (size_t)n * sizeof *probs);
    return MG_OK;
}
