/* Qwen-VL's resampler (visual.py `Resampler` as `attn_pool`) followed by
 * ln_post and proj: 256 learned queries cross-attend to the ViT tokens.
 *     kv  = ln_kv(kv_proj(x))
 *     out = MHA(q = ln_q(query) + pos_embed,
 *               k = kv + resize(pos_embed -> token grid),   (bicubic, get_abs_pos)
 *               v = kv)
 *     y   = ln_post(out) @ proj        (proj stored [in, out])
 * MHA is torch.nn.MultiheadAttention: in_proj_weight rows [Wq; Wk; Wv]. */
#include "models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mg_resampler {
    int64_t n_queries, dim, kv_dim, out_dim, n_heads, query_grid;
    float norm_eps;
    mg_tensor query, pos_embed;          /* [n_queries, D] f32            */
    mg_tensor kv_proj_weight;            /* [D, kv_dim]                    */
    mg_tensor q_weight, k_weight, v_weight; /* row slices of in_proj_weight */
    mg_tensor q_bias, k_bias, v_bias;    /* slices of in_proj_bias (f32)   */
    mg_tensor out_proj_weight, out_proj_bias;
    mg_tensor ln_q_weight, ln_q_bias, ln_kv_weight, ln_kv_bias;
    mg_tensor ln_post_weight, ln_post_bias;
    mg_tensor proj_weight;               /* proj transposed: [out, D]      */
    mg_owned owned;
    mg_arena scratch;
    /* The pos_embed resized to the last key grid (a weight, so the same on
     * every image of that size): ~60 ms of a 448 px BiRD encode each time. */
    float *key_pos;
    int64_t key_pos_grid;
};

static mg_status mg_resampler_load_all(mg_resampler *r, const mg_weights *weights, const char *prefix,
                                       const mg_model_weights_options *policy) {
    char name[MG_NAME_MAX];
    /* Shapes follow the stored learned queries; visual.py builds the
     * attention with embed_dim // 128 heads. */
    mg_tensor stored;
    MG_TRY(mg_name(name, sizeof name, "%sattn_pool.query", prefix));
    mg_status status = mg_weights_get(weights, name, &stored);
    if (status != MG_OK) return mg_error(status, "checkpoint has no tensor %s", name);
    if (stored.n_dims != 2) return mg_error(MG_ERR_SHAPE, "tensor %s: expected [n_queries, dim], got %d-D", name, stored.n_dims);
    r->n_queries = stored.shape[0];
    r->dim = stored.shape[1];
    r->query_grid = (int64_t)llround(sqrt((double)r->n_queries));
    if (r->query_grid * r->query_grid != r->n_queries || r->dim % 128)
        return mg_error(MG_ERR_SHAPE, "tensor %s: [%lld, %lld] needs a square number of queries and a dim divisible by 128",
                        name, (long long)r->n_queries, (long long)r->dim);
    r->n_heads = r->dim / 128;
    int64_t D = r->dim, qd[2] = {r->n_queries, D}, vec[1] = {D};
    MG_TRY(mg_model_get_f32(weights, &r->owned, name, 2, qd, &r->query));
    MG_TRY(mg_name(name, sizeof name, "%sattn_pool.pos_embed", prefix));
    MG_TRY(mg_model_get_f32(weights, &r->owned, name, 2, qd, &r->pos_embed));
    mg_tensor unused_bias;
    MG_TRY(mg_name(name, sizeof name, "%sattn_pool.kv_proj", prefix));
    MG_TRY(mg_model_get_linear(weights, &r->owned, name, D, r->kv_dim, false, policy, &r->kv_proj_weight, &unused_bias));

    int64_t in_shape[2] = {3 * D, D}, in_bias_shape[1] = {3 * D};
    mg_tensor in_proj, in_proj_bias;
    MG_TRY(mg_name(name, sizeof name, "%sattn_pool.attn.in_proj_weight", prefix));
    MG_TRY(mg_model_get(weights, name, 2, in_shape, &stored));
    MG_TRY(mg_model_matrix(&r->owned, name, &stored, policy, &in_proj));
    MG_TRY(mg_tensor_slice(&in_proj, 0, 0, D, &r->q_weight));
    MG_TRY(mg_tensor_slice(&in_proj, 0, D, 2 * D, &r->k_weight));
    MG_TRY(mg_tensor_slice(&in_proj, 0, 2 * D, 3 * D, &r->v_weight));
    MG_TRY(mg_name(name, sizeof name, "%sattn_pool.attn.in_proj_bias", prefix));
    MG_TRY(mg_model_get_f32(weights, &r->owned, name, 1, in_bias_shape, &in_proj_bias));
    r->q_bias = mg_view2_f32(in_proj_bias.data, 1, D);
    r->k_bias = mg_view2_f32((float *)in_proj_bias.data + D, 1, D);
    r->v_bias = mg_view2_f32((float *)in_proj_bias.data + 2 * D, 1, D);
    int64_t one[1] = {D};
    MG_TRY(mg_tensor_reshape(&r->q_bias, 1, one, &r->q_bias));
    MG_TRY(mg_tensor_reshape(&r->k_bias, 1, one, &r->k_bias));
    MG_TRY(mg_tensor_reshape(&r->v_bias, 1, one, &r->v_bias));
    MG_TRY(mg_name(name, sizeof name, "%sattn_pool.attn.out_proj", prefix));
    MG_TRY(mg_model_get_linear(weights, &r->owned, name, D, D, true, policy, &r->out_proj_weight, &r->out_proj_bias));

    const char *norms[3] = {"attn_pool.ln_q", "attn_pool.ln_kv", "ln_post"};
    mg_tensor *targets[3][2] = {{&r->ln_q_weight, &r->ln_q_bias}, {&r->ln_kv_weight, &r->ln_kv_bias},
                                {&r->ln_post_weight, &r->ln_post_bias}};
    for (int i = 0; i < 3; i++) {
        MG_TRY(mg_name(name, sizeof name, "%s%s.weight", prefix, norms[i]));
        MG_TRY(mg_model_get_f32(weights, &r->owned, name, 1, vec, targets[i][0]));
        MG_TRY(mg_name(name, sizeof name, "%s%s.bias", prefix, norms[i]));
        MG_TRY(mg_model_get_f32(weights, &r->owned, name, 1, vec, targets[i][1]));
    }

    /* proj is right-multiplied (stored [in, out]); transposing it once here
     * turns it into a torch-layout matrix mg_linear (and quantisation) takes. */
    MG_TRY(mg_name(name, sizeof name, "%sproj", prefix));
    status = mg_weights_get(weights, name, &stored);
    if (status != MG_OK) return mg_error(status, "checkpoint has no tensor %s", name);
    if (stored.n_dims != 2 || stored.shape[0] != D)
        return mg_error(MG_ERR_SHAPE, "tensor %s: expected [%lld, out], got %d-D [%lld, ...]", name, (long long)D,
                        stored.n_dims, (long long)stored.shape[0]);
    r->out_dim = stored.shape[1];
    mg_tensor proj, transposed;
    MG_TRY(mg_model_get_f32(weights, &r->owned, name, 2, stored.shape, &proj));
    int64_t t_shape[2] = {r->out_dim, D};
    MG_TRY(mg_owned_tensor(&r->owned, &transposed, MG_F32, 2, t_shape));
    const float *src = proj.data;
    float *dst = transposed.data;
    for (int64_t i = 0; i < D; i++)
        for (int64_t o = 0; o < r->out_dim; o++) dst[o * D + i] = src[i * r->out_dim + o];
    mg_model_weights_options keep_f32 = {false, MG_F32, false};
    return mg_model_matrix(&r->owned, name, &transposed, policy ? policy : &keep_f32, &r->proj_weight);
}

mg_status mg_resampler_load(const mg_weights *weights, const char *prefix, int kv_dim, float norm_eps,
                            const mg_model_weights_options *options, mg_resampler **out) {
    *out = NULL;
    if (!weights || !prefix || kv_dim <= 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_resampler_load: NULL argument or kv_dim %d", kv_dim);
    mg_resampler *r = calloc(1, sizeof *r);
    if (!r) return mg_error(MG_ERR_NO_MEMORY, "resampler: out of memory");
    r->kv_dim = kv_dim;
    r->norm_eps = norm_eps;
    mg_status status = mg_resampler_load_all(r, weights, prefix, options);
    if (status != MG_OK) {
        mg_resampler_free(r);
        return status;
    }
    *out = r;
    return MG_OK;
}

void mg_resampler_free(mg_resampler *r) {
    if (!r) return;
    mg_owned_free(&r->owned);
    mg_arena_destroy(&r->scratch);
    free(r->key_pos);
    free(r);
}

int64_t mg_resampler_n_queries(const mg_resampler *r) { return r->n_queries; }
int64_t mg_resampler_dim(const mg_resampler *r) { return r->out_dim; }

mg_status mg_resampler_forward(mg_context *ctx, mg_resampler *r, const mg_tensor *features, mg_tensor *out) {
    if (!ctx || !r || !features || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_resampler_forward: NULL argument");
    int64_t T = features->shape[0], D = r->dim, NQ = r->n_queries, H = r->n_heads, HD = D / H;
    int64_t grid = (int64_t)llround(sqrt((double)T));
    if (features->dtype != MG_F32 || features->n_dims != 2 || features->shape[1] != r->kv_dim || grid * grid != T) {
        char got[64];
        return mg_error(MG_ERR_SHAPE, "resampler: features must be f32 [g*g, %lld] for a square grid, got %s",
                        (long long)r->kv_dim, mg_tensor_describe(features, got, sizeof got));
    }
    if (out->dtype != MG_F32 || out->n_dims != 2 || out->shape[0] != NQ || out->shape[1] != r->out_dim) {
        char got[64];
        return mg_error(MG_ERR_SHAPE, "resampler: output must be f32 [%lld, %lld], got %s", (long long)NQ,
                        (long long)r->out_dim, mg_tensor_describe(out, got, sizeof got));
    }
    size_t floats = (size_t)(T * D * 4 + NQ * D * 4 + D * (NQ + T) * 2);
    MG_TRY(mg_scratch_reserve(&r->scratch, floats * 4 + 16 * 4096));
    mg_arena *arena = &r->scratch;
    mg_tensor kv, keys_in, key_pos, k, v, queries_in, q, attn, pooled;
    int64_t td[2] = {T, D}, qd[2] = {NQ, D};
    MG_TRY(mg_arena_tensor(arena, &kv, MG_F32, 2, td));
    MG_TRY(mg_arena_tensor(arena, &keys_in, MG_F32, 2, td));
    MG_TRY(mg_arena_tensor(arena, &k, MG_F32, 2, td));
    MG_TRY(mg_arena_tensor(arena, &v, MG_F32, 2, td));
    MG_TRY(mg_arena_tensor(arena, &queries_in, MG_F32, 2, qd));
    MG_TRY(mg_arena_tensor(arena, &q, MG_F32, 2, qd));
    MG_TRY(mg_arena_tensor(arena, &attn, MG_F32, 2, qd));
    MG_TRY(mg_arena_tensor(arena, &pooled, MG_F32, 2, qd));

    /* 1. keys/values: kv_proj, ln_kv; keys also get the resized sin-cos */
    MG_TRY(mg_linear(ctx, features, &r->kv_proj_weight, NULL, &keys_in));
    MG_TRY(mg_layer_norm(ctx, &keys_in, &r->ln_kv_weight, &r->ln_kv_bias, r->norm_eps, &kv));
    if (r->key_pos_grid != grid) {
        float *table = malloc((size_t)(T * D) * sizeof(float));
        if (!table)
            return mg_error(MG_ERR_NO_MEMORY, "resampler: no memory for the [%lld, %lld] key positions",
                            (long long)T, (long long)D);
        mg_tensor resized = mg_view2_f32(table, T, D);
        mg_status status =
            mg_resize_position_table(ctx, arena, &r->pos_embed, r->query_grid, grid, grid, &resized);
        if (status != MG_OK) {
            free(table);
            return status;
        }
        free(r->key_pos);
        r->key_pos = table;
        r->key_pos_grid = grid;
    }
    key_pos = mg_view2_f32(r->key_pos, T, D);
    MG_TRY(mg_add(ctx, &kv, &key_pos, &keys_in));

    /* 2. queries: ln_q(query) + pos_embed (the table itself, not resized) */
    MG_TRY(mg_layer_norm(ctx, &r->query, &r->ln_q_weight, &r->ln_q_bias, r->norm_eps, &queries_in));
    MG_TRY(mg_add(ctx, &queries_in, &r->pos_embed, &queries_in));

    /* 3. multi-head cross attention (nn.MultiheadAttention) */
    MG_TRY(mg_linear(ctx, &queries_in, &r->q_weight, &r->q_bias, &q));
    MG_TRY(mg_linear(ctx, &keys_in, &r->k_weight, &r->k_bias, &k));
    MG_TRY(mg_linear(ctx, &kv, &r->v_weight, &r->v_bias, &v));
    mg_tensor q3 = mg_view3_f32(q.data, NQ, H, HD, D, HD, 1), k3 = mg_view3_f32(k.data, T, H, HD, D, HD, 1),
              v3 = mg_view3_f32(v.data, T, H, HD, D, HD, 1), a3 = mg_view3_f32(attn.data, NQ, H, HD, D, HD, 1);
    MG_TRY(mg_attention(ctx, &q3, &k3, &v3, NULL, false, 1.0f / sqrtf((float)HD), &a3));
    MG_TRY(mg_linear(ctx, &attn, &r->out_proj_weight, &r->out_proj_bias, &pooled));

    /* 4. ln_post, then x @ proj */
    MG_TRY(mg_layer_norm(ctx, &pooled, &r->ln_post_weight, &r->ln_post_bias, r->norm_eps, &attn));
    return mg_linear(ctx, &attn, &r->proj_weight, NULL, out);
}
