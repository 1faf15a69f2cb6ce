/* SAM mask decoder (segment_anything/modeling/mask_decoder.py and
 * transformer.py; SAM-Med2D's copy only drops repeat_interleave, a no-op at
 * batch 1): two-way transformer between output/prompt tokens and the image
 * embedding, transposed-conv upscaling to 4G x 4G, one hypernetwork MLP per
 * mask token, IoU head. */
#include "models/sam.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MG_SAM_DECODER_EPS 1e-5f /* nn.LayerNorm default in transformer.py */
#define MG_SAM_LN2D_EPS 1e-6f    /* LayerNorm2d in output_upscaling */

static mg_status mg_sam_get_linear_pair(const mg_weights *weights, const char *prefix, const char *name,
                                        int64_t out_dim, int64_t in_dim, mg_sam_linear *linear) {
    char key[256];
    snprintf(key, sizeof key, "%s.weight", name);
    MG_TRY(mg_sam_get(weights, prefix, key, 2, (int64_t[]){out_dim, in_dim}, &linear->weight));
    snprintf(key, sizeof key, "%s.bias", name);
    return mg_sam_get(weights, prefix, key, 1, (int64_t[]){linear->weight.shape[0]}, &linear->bias);
}

static mg_status mg_sam_get_norm_pair(const mg_weights *weights, const char *prefix, const char *name,
                                      int64_t dim, mg_sam_norm *norm) {
    char key[256];
    snprintf(key, sizeof key, "%s.weight", name);
    MG_TRY(mg_sam_get(weights, prefix, key, 1, (int64_t[]){dim}, &norm->weight));
    snprintf(key, sizeof key, "%s.bias", name);
    return mg_sam_get(weights, prefix, key, 1, (int64_t[]){dim}, &norm->bias);
}

static mg_status mg_sam_load_attention(const mg_weights *weights, const char *prefix, const char *base,
                                       int64_t dim, int heads, mg_sam_attention *attn) {
    char name[256];
    snprintf(name, sizeof name, "%s.q_proj", base);
    MG_TRY(mg_sam_get_linear_pair(weights, prefix, name, -1, dim, &attn->q_proj));
    const int64_t internal = attn->q_proj.weight.shape[0];
    if (internal % heads != 0)
        return mg_error(MG_ERR_SHAPE, "tensor %s%s.q_proj.weight: internal width %lld is not a multiple of %d heads",
                        prefix, base, (long long)internal, heads);
    attn->internal_dim = (int)internal;
    snprintf(name, sizeof name, "%s.k_proj", base);
    MG_TRY(mg_sam_get_linear_pair(weights, prefix, name, internal, dim, &attn->k_proj));
    snprintf(name, sizeof name, "%s.v_proj", base);
    MG_TRY(mg_sam_get_linear_pair(weights, prefix, name, internal, dim, &attn->v_proj));
    snprintf(name, sizeof name, "%s.out_proj", base);
    return mg_sam_get_linear_pair(weights, prefix, name, dim, internal, &attn->out_proj);
}

mg_status mg_sam_load_decoder(mg_sam *sam, const mg_weights *weights, const char *prefix) {
    const int64_t dim = sam->out_chans;
    char name[256];
    MG_TRY(mg_sam_get(weights, prefix, "mask_decoder.iou_token.weight", 2, (int64_t[]){1, dim}, &sam->iou_token));
    MG_TRY(mg_sam_get(weights, prefix, "mask_decoder.mask_tokens.weight", 2, (int64_t[]){-1, dim},
                      &sam->mask_tokens));
    const int64_t n_masks = sam->mask_tokens.shape[0];
    if (n_masks != 4)
        return mg_error(MG_ERR_SHAPE, "tensor %smask_decoder.mask_tokens.weight: expected 4 tokens (1 + 3 multimask), got %lld",
                        prefix, (long long)n_masks);
    sam->n_mask_tokens = (int)n_masks;
    int depth = 0;
    for (;; depth++) {
        snprintf(name, sizeof name, "%smask_decoder.transformer.layers.%d.norm1.weight", prefix, depth);
        if (!mg_weights_has(weights, name)) break;
        if (depth == MG_SAM_DECODER_MAX_LAYERS)
            return mg_error(MG_ERR_UNSUPPORTED, "SAM mask decoder: more than %d layers", MG_SAM_DECODER_MAX_LAYERS);
    }
    if (depth == 0)
        return mg_error(MG_ERR_NOT_FOUND, "SAM checkpoint: tensor %smask_decoder.transformer.layers.0.norm1.weight is missing",
                        prefix);
    sam->decoder_depth = depth;
    for (int l = 0; l < depth; l++) {
        mg_sam_twoway_layer *layer = &sam->layers[l];
        char base[128];
        snprintf(base, sizeof base, "mask_decoder.transformer.layers.%d", l);
#define MG_NAME(suffix) (snprintf(name, sizeof name, "%s.%s", base, suffix), name)
        MG_TRY(mg_sam_load_attention(weights, prefix, MG_NAME("self_attn"), dim, sam->decoder_heads, &layer->self_attn));
        MG_TRY(mg_sam_load_attention(weights, prefix, MG_NAME("cross_attn_token_to_image"), dim, sam->decoder_heads,
                                     &layer->cross_token_to_image));
        MG_TRY(mg_sam_load_attention(weights, prefix, MG_NAME("cross_attn_image_to_token"), dim, sam->decoder_heads,
                                     &layer->cross_image_to_token));
        MG_TRY(mg_sam_get_norm_pair(weights, prefix, MG_NAME("norm1"), dim, &layer->norm1));
        MG_TRY(mg_sam_get_norm_pair(weights, prefix, MG_NAME("norm2"), dim, &layer->norm2));
        MG_TRY(mg_sam_get_norm_pair(weights, prefix, MG_NAME("norm3"), dim, &layer->norm3));
        MG_TRY(mg_sam_get_norm_pair(weights, prefix, MG_NAME("norm4"), dim, &layer->norm4));
        MG_TRY(mg_sam_get_linear_pair(weights, prefix, MG_NAME("mlp.lin1"), -1, dim, &layer->lin1));
        if (l == 0) sam->decoder_mlp_dim = (int)layer->lin1.weight.shape[0];
        MG_TRY(mg_sam_get_linear_pair(weights, prefix, MG_NAME("mlp.lin2"), dim, layer->lin1.weight.shape[0],
                                      &layer->lin2));
#undef MG_NAME
    }
    MG_TRY(mg_sam_load_attention(weights, prefix, "mask_decoder.transformer.final_attn_token_to_image", dim,
                                 sam->decoder_heads, &sam->final_attn));
    MG_TRY(mg_sam_get_norm_pair(weights, prefix, "mask_decoder.transformer.norm_final_attn", dim, &sam->norm_final));

    /* output_upscaling: ConvT(C -> C/4, 2, s2), LayerNorm2d, GELU, ConvT(C/4 -> C/8, 2, s2), GELU */
    MG_TRY(mg_sam_get(weights, prefix, "mask_decoder.output_upscaling.0.weight", 4, (int64_t[]){dim, -1, 2, 2},
                      &sam->upscale_deconv1.weight));
    const int64_t quarter = sam->upscale_deconv1.weight.shape[1];
    MG_TRY(mg_sam_get(weights, prefix, "mask_decoder.output_upscaling.0.bias", 1, (int64_t[]){quarter},
                      &sam->upscale_deconv1.bias));
    MG_TRY(mg_sam_get_norm_pair(weights, prefix, "mask_decoder.output_upscaling.1", quarter, &sam->upscale_norm));
    MG_TRY(mg_sam_get(weights, prefix, "mask_decoder.output_upscaling.3.weight", 4, (int64_t[]){quarter, -1, 2, 2},
                      &sam->upscale_deconv2.weight));
    const int64_t eighth = sam->upscale_deconv2.weight.shape[1];
    MG_TRY(mg_sam_get(weights, prefix, "mask_decoder.output_upscaling.3.bias", 1, (int64_t[]){eighth},
                      &sam->upscale_deconv2.bias));
    for (int m = 0; m < n_masks; m++) {
        for (int j = 0; j < 3; j++) {
            snprintf(name, sizeof name, "mask_decoder.output_hypernetworks_mlps.%d.layers.%d", m, j);
            MG_TRY(mg_sam_get_linear_pair(weights, prefix, name, j == 2 ? eighth : dim, dim, &sam->hyper[m][j]));
        }
    }
    int iou_depth = 0;
    for (; iou_depth < 3; iou_depth++) {
        snprintf(name, sizeof name, "%smask_decoder.iou_prediction_head.layers.%d.weight", prefix, iou_depth);
        if (!mg_weights_has(weights, name)) break;
    }
    if (iou_depth < 2)
        return mg_error(MG_ERR_NOT_FOUND, "SAM checkpoint: tensor %smask_decoder.iou_prediction_head.layers.%d.weight is missing",
                        prefix, iou_depth);
    sam->iou_head_depth = iou_depth;
    int64_t in_dim = dim;
    for (int j = 0; j < iou_depth; j++) {
        snprintf(name, sizeof name, "mask_decoder.iou_prediction_head.layers.%d", j);
        MG_TRY(mg_sam_get_linear_pair(weights, prefix, name, j == iou_depth - 1 ? n_masks : -1, in_dim,
                                      &sam->iou_head[j]));
        in_dim = sam->iou_head[j].weight.shape[0];
    }
    return MG_OK;
}

/* Attention (transformer.py): project q, k, v to the internal width, split
 * heads, softmax(q k^T / sqrt(head_dim)) v, recombine, out_proj. */
static mg_status mg_sam_attend(mg_context *ctx, mg_arena *arena, const mg_sam_attention *attn, int heads,
                               const mg_tensor *q_in, const mg_tensor *k_in, const mg_tensor *v_in,
                               mg_tensor *out) {
    const size_t mark = mg_arena_mark(arena);
    const int64_t nq = q_in->shape[0], nk = k_in->shape[0], internal = attn->internal_dim;
    const int64_t hd = internal / heads;
    mg_tensor q, k, v, o;
    MG_TRY(mg_sam_tensor(arena, &q, 2, (int64_t[]){nq, internal}));
    MG_TRY(mg_sam_tensor(arena, &k, 2, (int64_t[]){nk, internal}));
    MG_TRY(mg_sam_tensor(arena, &v, 2, (int64_t[]){nk, internal}));
    MG_TRY(mg_sam_tensor(arena, &o, 3, (int64_t[]){nq, heads, hd}));
    MG_TRY(mg_linear(ctx, q_in, &attn->q_proj.weight, &attn->q_proj.bias, &q));
    MG_TRY(mg_linear(ctx, k_in, &attn->k_proj.weight, &attn->k_proj.bias, &k));
    MG_TRY(mg_linear(ctx, v_in, &attn->v_proj.weight, &attn->v_proj.bias, &v));
    mg_tensor q3, k3, v3, o2;
    MG_TRY(mg_tensor_reshape(&q, 3, (int64_t[]){nq, heads, hd}, &q3));
    MG_TRY(mg_tensor_reshape(&k, 3, (int64_t[]){nk, heads, hd}, &k3));
    MG_TRY(mg_tensor_reshape(&v, 3, (int64_t[]){nk, heads, hd}, &v3));
    MG_TRY(mg_attention(ctx, &q3, &k3, &v3, NULL, false, 1.0f / sqrtf((float)hd), &o));
    MG_TRY(mg_tensor_reshape(&o, 2, (int64_t[]){nq, internal}, &o2));
    MG_TRY(mg_linear(ctx, &o2, &attn->out_proj.weight, &attn->out_proj.bias, out));
    mg_arena_reset_to(arena, mark);
    return MG_OK;
}

/* dst = layer_norm(a + b) written to dst (a may alias dst). */
static mg_status mg_sam_add_norm(mg_context *ctx, mg_arena *arena, mg_tensor *a, const mg_tensor *b,
                                 const mg_sam_norm *norm) {
    const size_t mark = mg_arena_mark(arena);
    mg_tensor sum;
    MG_TRY(mg_sam_tensor(arena, &sum, 2, a->shape));
    MG_TRY(mg_add(ctx, a, b, &sum));
    MG_TRY(mg_layer_norm(ctx, &sum, &norm->weight, &norm->bias, MG_SAM_DECODER_EPS, a));
    mg_arena_reset_to(arena, mark);
    return MG_OK;
}

/* TwoWayAttentionBlock.forward (transformer.py), queries[Nq, C], keys[Nk, C]. */
static mg_status mg_sam_twoway_layer_forward(mg_context *ctx, mg_arena *arena, const mg_sam *sam,
                                             const mg_sam_twoway_layer *layer, bool skip_first_pe,
                                             mg_tensor *queries, mg_tensor *keys, const mg_tensor *query_pe,
                                             const mg_tensor *key_pe) {
    const size_t mark = mg_arena_mark(arena);
    const int heads = sam->decoder_heads;
    const int64_t nq = queries->shape[0], nk = keys->shape[0], dim = sam->out_chans;
    mg_tensor q, k, attn_q, attn_k, hidden, mlp_out;
    MG_TRY(mg_sam_tensor(arena, &q, 2, (int64_t[]){nq, dim}));
    MG_TRY(mg_sam_tensor(arena, &k, 2, (int64_t[]){nk, dim}));
    MG_TRY(mg_sam_tensor(arena, &attn_q, 2, (int64_t[]){nq, dim}));
    MG_TRY(mg_sam_tensor(arena, &attn_k, 2, (int64_t[]){nk, dim}));
    MG_TRY(mg_sam_tensor(arena, &hidden, 2, (int64_t[]){nq, layer->lin1.weight.shape[0]}));
    MG_TRY(mg_sam_tensor(arena, &mlp_out, 2, (int64_t[]){nq, dim}));

    /* self-attention of the tokens; layer 0 replaces the queries (no PE, no residual) */
    if (skip_first_pe) {
        MG_TRY(mg_sam_attend(ctx, arena, &layer->self_attn, heads, queries, queries, queries, &attn_q));
        MG_TRY(mg_layer_norm(ctx, &attn_q, &layer->norm1.weight, &layer->norm1.bias, MG_SAM_DECODER_EPS, queries));
    } else {
        MG_TRY(mg_add(ctx, queries, query_pe, &q));
        MG_TRY(mg_sam_attend(ctx, arena, &layer->self_attn, heads, &q, &q, queries, &attn_q));
        MG_TRY(mg_sam_add_norm(ctx, arena, queries, &attn_q, &layer->norm1));
    }
    /* tokens -> image */
    MG_TRY(mg_add(ctx, queries, query_pe, &q));
    MG_TRY(mg_add(ctx, keys, key_pe, &k));
    MG_TRY(mg_sam_attend(ctx, arena, &layer->cross_token_to_image, heads, &q, &k, keys, &attn_q));
    MG_TRY(mg_sam_add_norm(ctx, arena, queries, &attn_q, &layer->norm2));
    /* MLP (ReLU) */
    MG_TRY(mg_linear(ctx, queries, &layer->lin1.weight, &layer->lin1.bias, &hidden));
    MG_TRY(mg_activate(ctx, &hidden, MG_ACT_RELU, &hidden));
    MG_TRY(mg_linear(ctx, &hidden, &layer->lin2.weight, &layer->lin2.bias, &mlp_out));
    MG_TRY(mg_sam_add_norm(ctx, arena, queries, &mlp_out, &layer->norm3));
    /* image -> tokens: the image is the query side */
    MG_TRY(mg_add(ctx, queries, query_pe, &q));
    MG_TRY(mg_sam_attend(ctx, arena, &layer->cross_image_to_token, heads, &k, &q, queries, &attn_k));
    MG_TRY(mg_sam_add_norm(ctx, arena, keys, &attn_k, &layer->norm4));
    mg_arena_reset_to(arena, mark);
    return MG_OK;
}

static mg_status mg_sam_mlp(mg_context *ctx, mg_arena *arena, const mg_sam_linear *layers, int depth,
                            const mg_tensor *x, mg_tensor *out) {
    const size_t mark = mg_arena_mark(arena);
    mg_tensor current = *x;
    for (int j = 0; j < depth; j++) {
        mg_tensor next;
        if (j == depth - 1) {
            next = *out;
        } else {
            MG_TRY(mg_sam_tensor(arena, &next, 2, (int64_t[]){x->shape[0], layers[j].weight.shape[0]}));
        }
        MG_TRY(mg_linear(ctx, &current, &layers[j].weight, &layers[j].bias, &next));
        if (j < depth - 1) MG_TRY(mg_activate(ctx, &next, MG_ACT_RELU, &next));
        current = next;
    }
    mg_arena_reset_to(arena, mark);
    return MG_OK;
}

static mg_status mg_sam_check_map(const mg_sam *sam, const char *what, const mg_tensor *t) {
    char got[96];
    if (!t || t->n_dims != 3 || t->shape[0] != sam->out_chans || t->shape[1] != sam->grid ||
        t->shape[2] != sam->grid)
        return mg_error(MG_ERR_SHAPE, "SAM mask decoder: %s must be [%d, %d, %d], got %s", what, sam->out_chans,
                        sam->grid, sam->grid, t ? mg_tensor_describe(t, got, sizeof got) : "NULL");
    return MG_OK;
}

/* [C, G, G] (any strides) -> contiguous channels-last [G*G, C] from the arena. */
static mg_status mg_sam_to_rows(mg_arena *arena, const mg_tensor *map, mg_tensor *rows) {
    const int64_t chans = map->shape[0], tokens = map->shape[1] * map->shape[2];
    if (map->dtype != MG_F32)
        return mg_error(MG_ERR_DTYPE, "SAM mask decoder: maps must be f32, got %s", mg_dtype_name(map->dtype));
    MG_TRY(mg_sam_tensor(arena, rows, 2, (int64_t[]){tokens, chans}));
    const char *src = map->data;
    float *dst = rows->data;
    for (int64_t c = 0; c < chans; c++)
        for (int64_t y = 0; y < map->shape[1]; y++)
            for (int64_t x = 0; x < map->shape[2]; x++)
                dst[(y * map->shape[2] + x) * chans + c] =
                    *(const float *)(src + c * map->strides[0] + y * map->strides[1] + x * map->strides[2]);
    return MG_OK;
}

mg_status mg_sam_decode(mg_context *ctx, const mg_sam *sam, const mg_tensor *embedding,
                        const mg_tensor *sparse, const mg_tensor *dense, bool multimask,
                        mg_tensor *low_res, mg_tensor *iou) {
    if (!ctx || !sam || !low_res || !iou)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_sam_decode: NULL argument");
    MG_TRY(mg_sam_check_map(sam, "embedding", embedding));
    MG_TRY(mg_sam_check_map(sam, "dense prompt", dense));
    const int64_t dim = sam->out_chans, grid = sam->grid, tokens = grid * grid, side = 4 * grid;
    const int64_t n_sparse = sparse ? sparse->shape[0] : 0;
    char got[96];
    if (sparse && (sparse->n_dims != 2 || sparse->shape[1] != dim || sparse->dtype != MG_F32))
        return mg_error(MG_ERR_SHAPE, "SAM mask decoder: sparse prompt must be f32[n, %lld], got %s", (long long)dim,
                        mg_tensor_describe(sparse, got, sizeof got));
    const int64_t n_out = multimask ? sam->n_mask_tokens - 1 : 1;
    if (low_res->dtype != MG_F32 || low_res->n_dims != 3 || low_res->shape[0] != n_out ||
        low_res->shape[1] != side || low_res->shape[2] != side || !mg_tensor_is_contiguous(low_res))
        return mg_error(MG_ERR_SHAPE, "SAM mask decoder: low_res must be contiguous f32[%lld, %lld, %lld], got %s",
                        (long long)n_out, (long long)side, (long long)side,
                        mg_tensor_describe(low_res, got, sizeof got));
    if (iou->dtype != MG_F32 || mg_tensor_numel(iou) != n_out || !mg_tensor_is_contiguous(iou))
        return mg_error(MG_ERR_SHAPE, "SAM mask decoder: iou must be contiguous f32 with %lld elements, got %s",
                        (long long)n_out, mg_tensor_describe(iou, got, sizeof got));

    const int64_t n_tokens = 1 + sam->n_mask_tokens + n_sparse;
    const size_t floats = (size_t)tokens * (size_t)dim * 12 + (size_t)n_tokens * (size_t)(dim * 12 + sam->decoder_mlp_dim) +
                          (size_t)tokens * (size_t)dim * 4 * 2 + (size_t)side * side * (size_t)dim / 8 * 6 +
                          (size_t)tokens * 4 * (size_t)dim / 4 * 3 + (size_t)n_tokens * (size_t)tokens * 16;
    mg_arena arena;
    MG_TRY(mg_sam_scratch(&arena, floats));
    mg_status status = MG_OK;
#define MG_STEP(expr)                   \
    do {                                \
        status = (expr);                \
        if (status != MG_OK) goto done; \
    } while (0)
    /* tokens = [iou_token; mask_tokens; sparse] */
    mg_tensor point_embedding, queries, keys, key_pe, dense_rows, pe_map, pe_rows;
    MG_STEP(mg_sam_tensor(&arena, &point_embedding, 2, (int64_t[]){n_tokens, dim}));
    {
        float *p = point_embedding.data;
        memcpy(p, sam->iou_token.data, (size_t)dim * sizeof(float));
        memcpy(p + dim, sam->mask_tokens.data, (size_t)(sam->n_mask_tokens * dim) * sizeof(float));
        if (n_sparse > 0) {
            mg_tensor tail;
            MG_STEP(mg_tensor_slice(&point_embedding, 0, 1 + sam->n_mask_tokens, n_tokens, &tail));
            MG_STEP(mg_tensor_convert(sparse, &tail));
        }
    }
    MG_STEP(mg_sam_tensor(&arena, &queries, 2, (int64_t[]){n_tokens, dim}));
    memcpy(queries.data, point_embedding.data, (size_t)(n_tokens * dim) * sizeof(float));
    /* src = image_embedding + dense_prompt_embeddings; pos_src = dense PE */
    MG_STEP(mg_sam_to_rows(&arena, embedding, &keys));
    MG_STEP(mg_sam_to_rows(&arena, dense, &dense_rows));
    MG_STEP(mg_add(ctx, &keys, &dense_rows, &keys));
    MG_STEP(mg_sam_tensor(&arena, &pe_map, 3, (int64_t[]){dim, grid, grid}));
    MG_STEP(mg_sam_dense_pe(sam, &pe_map));
    MG_STEP(mg_sam_to_rows(&arena, &pe_map, &pe_rows));
    key_pe = pe_rows;

    for (int l = 0; l < sam->decoder_depth; l++) {
        status = mg_sam_twoway_layer_forward(ctx, &arena, sam, &sam->layers[l], l == 0, &queries, &keys,
                                             &point_embedding, &key_pe);
        if (status != MG_OK) {
            status = mg_error_prefix(status, "SAM mask decoder layer %d", l);
            goto done;
        }
    }
    {
        /* final token -> image attention + norm_final_attn */
        mg_tensor q, k, attn_out;
        MG_STEP(mg_sam_tensor(&arena, &q, 2, (int64_t[]){n_tokens, dim}));
        MG_STEP(mg_sam_tensor(&arena, &k, 2, (int64_t[]){tokens, dim}));
        MG_STEP(mg_sam_tensor(&arena, &attn_out, 2, (int64_t[]){n_tokens, dim}));
        MG_STEP(mg_add(ctx, &queries, &point_embedding, &q));
        MG_STEP(mg_add(ctx, &keys, &key_pe, &k));
        MG_STEP(mg_sam_attend(ctx, &arena, &sam->final_attn, sam->decoder_heads, &q, &k, &keys, &attn_out));
        MG_STEP(mg_sam_add_norm(ctx, &arena, &queries, &attn_out, &sam->norm_final));
    }
    {
        /* upscaling of the updated image tokens: [G, G, C] -> [4G, 4G, C/8] */
        mg_tensor map, up1, up1_norm, up2;
        MG_STEP(mg_tensor_reshape(&keys, 3, (int64_t[]){grid, grid, dim}, &map));
        MG_STEP(mg_sam_conv_transpose2d(ctx, &arena, &map, &sam->upscale_deconv1.weight, &sam->upscale_deconv1.bias,
                                        2, 0, &up1));
        MG_STEP(mg_sam_norm_map(ctx, &arena, &up1, &sam->upscale_norm, MG_SAM_LN2D_EPS, &up1_norm));
        MG_STEP(mg_activate(ctx, &up1_norm, MG_ACT_GELU_ERF, &up1_norm));
        MG_STEP(mg_sam_conv_transpose2d(ctx, &arena, &up1_norm, &sam->upscale_deconv2.weight,
                                        &sam->upscale_deconv2.bias, 2, 0, &up2));
        MG_STEP(mg_activate(ctx, &up2, MG_ACT_GELU_ERF, &up2));
        const int64_t eighth = up2.shape[2];
        if (up2.shape[0] != side || up2.shape[1] != side) {
            status = mg_error(MG_ERR_INTERNAL, "SAM mask decoder: upscaling gave %lldx%lld, expected %lldx%lld",
                              (long long)up2.shape[0], (long long)up2.shape[1], (long long)side, (long long)side);
            goto done;
        }
        /* hyper_in[m] = MLP_m(mask token m); masks = hyper_in · upscaled^T */
        const int first = multimask ? 1 : 0;
        mg_tensor hyper_in, token, upscaled_rows, masks_flat;
        MG_STEP(mg_sam_tensor(&arena, &hyper_in, 2, (int64_t[]){n_out, eighth}));
        for (int m = 0; m < n_out; m++) {
            mg_tensor row;
            MG_STEP(mg_tensor_slice(&queries, 0, 1 + first + m, 2 + first + m, &token));
            MG_STEP(mg_tensor_slice(&hyper_in, 0, m, m + 1, &row));
            MG_STEP(mg_sam_mlp(ctx, &arena, sam->hyper[first + m], 3, &token, &row));
        }
        MG_STEP(mg_tensor_reshape(&up2, 2, (int64_t[]){side * side, eighth}, &upscaled_rows));
        MG_STEP(mg_tensor_reshape(low_res, 2, (int64_t[]){n_out, side * side}, &masks_flat));
        MG_STEP(mg_matmul(ctx, &hyper_in, &upscaled_rows, true, &masks_flat));
        /* IoU head on the iou token; keep the selected entries */
        mg_tensor iou_token, iou_all;
        MG_STEP(mg_tensor_slice(&queries, 0, 0, 1, &iou_token));
        MG_STEP(mg_sam_tensor(&arena, &iou_all, 2, (int64_t[]){1, sam->n_mask_tokens}));
        MG_STEP(mg_sam_mlp(ctx, &arena, sam->iou_head, sam->iou_head_depth, &iou_token, &iou_all));
        float *dst = iou->data;
        const float *src = iou_all.data;
        for (int m = 0; m < n_out; m++) dst[m] = src[first + m];
    }
done:
#undef MG_STEP
    mg_arena_destroy(&arena);
    return status;
}

mg_status mg_sam_upscale_masks(mg_context *ctx, const mg_sam *sam, const mg_tensor *low_res,
                               mg_tensor *out) {
    if (!ctx || !sam || !low_res || !out)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_sam_upscale_masks: NULL argument");
    char got[96];
    if (low_res->n_dims != 3 || out->n_dims != 3 || out->shape[0] != low_res->shape[0])
        return mg_error(MG_ERR_SHAPE, "SAM upscale: low_res %s and out must both be [n, h, w] with the same n",
                        mg_tensor_describe(low_res, got, sizeof got));
    const int size = sam->image_size;
    mg_tensor square;
    MG_TRY(mg_tensor_alloc(&square, MG_F32, 3, (int64_t[]){low_res->shape[0], size, size}));
    mg_status status = mg_interpolate_bilinear(ctx, low_res, false, &square);
    if (status == MG_OK) status = mg_interpolate_bilinear(ctx, &square, false, out);
    mg_tensor_free_data(&square);
    return status;
}
