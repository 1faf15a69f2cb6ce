/* One vision transformer for both families: Qwen-VL's ViT-bigG/14 (BiRD) and
 * CLIP ViT-L/14 (MedPLIB's LLaVA). Pre-norm blocks
 *     x = x + out_proj(attention(LN1(x)));  x = x + fc2(act(fc1(LN2(x))))
 * after a bias-free conv patch embedding, an absolute position table
 * (resized bicubically when its grid differs from the image's, as Qwen-VL's
 * get_abs_pos does every call) and ln_pre. Differences are config fields:
 * tensor naming, q/k/v packing, activation, class token, blocks run. */
#include "models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- weights */

typedef struct mg_vit_layer {
    mg_tensor ln_1_weight, ln_1_bias;
    mg_tensor qkv_weight, qkv_bias;              /* packed layouts            */
    mg_tensor q_weight, q_bias, k_weight, k_bias; /* MG_QKV_SEPARATE          */
    mg_tensor v_weight, v_bias;
    mg_tensor out_weight, out_bias;
    mg_tensor ln_2_weight, ln_2_bias;
    mg_tensor fc1_weight, fc1_bias; /* Qwen mlp.c_fc,  CLIP mlp.fc1 */
    mg_tensor fc2_weight, fc2_bias; /* Qwen mlp.c_proj, CLIP mlp.fc2 */
} mg_vit_layer;

struct mg_vit {
    mg_vit_config config;
    int64_t grid;          /* patches per side                                 */
    int64_t position_grid; /* side of the stored position table                */
    int64_t n_positions;   /* rows of the token sequence (patches + class)     */
    mg_tensor patch_weight;     /* [W, 3, P, P] f32                            */
    mg_tensor class_embedding;  /* [W] f32, CLIP only                          */
    mg_tensor position;         /* [(1+) g*g, W] f32                           */
    mg_tensor ln_pre_weight, ln_pre_bias;
    mg_vit_layer *layers;
    mg_owned owned;
    mg_arena scratch;
};

/* Tensor names per naming scheme: the checkpoint's own strings. */
typedef struct mg_vit_names {
    const char *patch, *position, *class_embedding, *ln_pre;
    const char *block; /* "%s...%d" prefix of block N */
    const char *ln_1, *qkv, *q, *k, *v, *out, *ln_2, *fc1, *fc2;
} mg_vit_names;

static const mg_vit_names mg_vit_names_qwen = {
    "conv1.weight", "positional_embedding", NULL, "ln_pre",
    "%stransformer.resblocks.%d.",
    "ln_1", "attn.in_proj", NULL, NULL, NULL, "attn.out_proj", "ln_2", "mlp.c_fc", "mlp.c_proj",
};

static const mg_vit_names mg_vit_names_hf_clip = {
    "embeddings.patch_embedding.weight", "embeddings.position_embedding.weight",
    "embeddings.class_embedding", "pre_layrnorm",
    "%sencoder.layers.%d.",
    "layer_norm1", NULL, "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
    "self_attn.out_proj", "layer_norm2", "mlp.fc1", "mlp.fc2",
};

static const mg_vit_names *mg_vit_names_for(mg_vit_naming naming) {
    return naming == MG_VIT_NAMING_HF_CLIP ? &mg_vit_names_hf_clip : &mg_vit_names_qwen;
}

mg_status mg_vit_config_qwen(const mg_weights *weights, mg_vit_config *out) {
    memset(out, 0, sizeof *out);
    int64_t image_size, patch_size, width, layers, heads;
    double mlp_ratio;
    const char *key = "config.visual.image_size";
    mg_status status = mg_weights_get_int(weights, key, &image_size);
    if (status == MG_OK) status = mg_weights_get_int(weights, key = "config.visual.patch_size", &patch_size);
    if (status == MG_OK) status = mg_weights_get_int(weights, key = "config.visual.width", &width);
    if (status == MG_OK) status = mg_weights_get_int(weights, key = "config.visual.layers", &layers);
    if (status == MG_OK) status = mg_weights_get_int(weights, key = "config.visual.heads", &heads);
    if (status == MG_OK) status = mg_weights_get_float(weights, key = "config.visual.mlp_ratio", &mlp_ratio);
    if (status != MG_OK) return mg_error(status, "Qwen-VL vision config: metadata %s is missing or not a number", key);
    out->naming = MG_VIT_NAMING_QWEN;
    out->qkv_layout = MG_QKV_HEAD_INTERLEAVED;
    out->image_size = (int)image_size;
    out->patch_size = (int)patch_size;
    out->width = (int)width;
    out->n_layers = (int)layers;
    out->n_heads = (int)heads;
    /* visual.py: mlp_width = int(width * mlp_ratio) (1664 * 4.9231 -> 8192). */
    out->mlp_dim = (int)((double)width * mlp_ratio);
    out->norm_eps = 1e-6f;
    out->activation = MG_ACT_GELU_ERF;
    out->class_token = false;
    out->n_layers_run = 0;
    out->drop_class_token = false;
    return MG_OK;
}

static mg_status mg_vit_check_config(const mg_vit_config *c) {
    if (c->image_size <= 0 || c->patch_size <= 0 || c->image_size % c->patch_size)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "vit config: image_size %d is not a positive multiple of patch_size %d",
                        c->image_size, c->patch_size);
    if (c->width <= 0 || c->n_heads <= 0 || c->width % c->n_heads)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "vit config: width %d is not a positive multiple of n_heads %d",
                        c->width, c->n_heads);
    if (c->n_layers <= 0 || c->mlp_dim <= 0 || c->n_layers_run < 0 || c->n_layers_run > c->n_layers)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "vit config: n_layers %d, n_layers_run %d, mlp_dim %d out of range",
                        c->n_layers, c->n_layers_run, c->mlp_dim);
    if (c->naming == MG_VIT_NAMING_QWEN && c->qkv_layout == MG_QKV_SEPARATE)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "vit config: Qwen naming has one in_proj, not separate q/k/v");
    if (c->naming == MG_VIT_NAMING_HF_CLIP && c->qkv_layout != MG_QKV_SEPARATE)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "vit config: HF CLIP naming has separate q/k/v projections");
    if (c->naming != MG_VIT_NAMING_QWEN && c->naming != MG_VIT_NAMING_HF_CLIP)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "vit config: unknown naming %d", (int)c->naming);
    return MG_OK;
}

static mg_status mg_vit_load_norm(const mg_weights *weights, mg_owned *owned, const char *base,
                                  int64_t width, mg_tensor *weight, mg_tensor *bias) {
    char name[MG_NAME_MAX];
    int64_t shape[1] = {width};
    MG_TRY(mg_name(name, sizeof name, "%s.weight", base));
    MG_TRY(mg_model_get_f32(weights, owned, name, 1, shape, weight));
    MG_TRY(mg_name(name, sizeof name, "%s.bias", base));
    return mg_model_get_f32(weights, owned, name, 1, shape, bias);
}

static mg_status mg_vit_load_layer(mg_vit *vit, const mg_weights *weights, const char *prefix, int index) {
    const mg_vit_config *c = &vit->config;
    const mg_vit_names *names = mg_vit_names_for(c->naming);
    const mg_model_weights_options *policy = &c->weights;
    mg_vit_layer *layer = &vit->layers[index];
    char block[MG_NAME_MAX], base[MG_NAME_MAX];
    MG_TRY(mg_name(block, sizeof block, names->block, prefix, index));
#define MG_BASE(part) MG_TRY(mg_name(base, sizeof base, "%s%s", block, part))
    MG_BASE(names->ln_1);
    MG_TRY(mg_vit_load_norm(weights, &vit->owned, base, c->width, &layer->ln_1_weight, &layer->ln_1_bias));
    if (c->qkv_layout == MG_QKV_SEPARATE) {
        MG_BASE(names->q);
        MG_TRY(mg_model_get_linear(weights, &vit->owned, base, c->width, c->width, true, policy, &layer->q_weight, &layer->q_bias));
        MG_BASE(names->k);
        MG_TRY(mg_model_get_linear(weights, &vit->owned, base, c->width, c->width, true, policy, &layer->k_weight, &layer->k_bias));
        MG_BASE(names->v);
        MG_TRY(mg_model_get_linear(weights, &vit->owned, base, c->width, c->width, true, policy, &layer->v_weight, &layer->v_bias));
    } else {
        MG_BASE(names->qkv);
        MG_TRY(mg_model_get_linear(weights, &vit->owned, base, 3 * (int64_t)c->width, c->width, true, policy,
                                   &layer->qkv_weight, &layer->qkv_bias));
    }
    MG_BASE(names->out);
    MG_TRY(mg_model_get_linear(weights, &vit->owned, base, c->width, c->width, true, policy, &layer->out_weight, &layer->out_bias));
    MG_BASE(names->ln_2);
    MG_TRY(mg_vit_load_norm(weights, &vit->owned, base, c->width, &layer->ln_2_weight, &layer->ln_2_bias));
    MG_BASE(names->fc1);
    MG_TRY(mg_model_get_linear(weights, &vit->owned, base, c->mlp_dim, c->width, true, policy, &layer->fc1_weight, &layer->fc1_bias));
    MG_BASE(names->fc2);
    MG_TRY(mg_model_get_linear(weights, &vit->owned, base, c->width, c->mlp_dim, true, policy, &layer->fc2_weight, &layer->fc2_bias));
#undef MG_BASE
    return MG_OK;
}

static mg_status mg_vit_load_all(mg_vit *vit, const mg_weights *weights, const char *prefix) {
    const mg_vit_config *c = &vit->config;
    const mg_vit_names *names = mg_vit_names_for(c->naming);
    char name[MG_NAME_MAX];
    int64_t patch_shape[4] = {c->width, 3, c->patch_size, c->patch_size};
    MG_TRY(mg_name(name, sizeof name, "%s%s", prefix, names->patch));
    MG_TRY(mg_model_get_f32(weights, &vit->owned, name, 4, patch_shape, &vit->patch_weight));

    /* The stored table decides its own grid (Qwen: 256 rows = 16x16 from the
     * 224-px stage); it must be a square number of rows (+1 class row). */
    MG_TRY(mg_name(name, sizeof name, "%s%s", prefix, names->position));
    mg_tensor stored;
    mg_status status = mg_weights_get(weights, name, &stored);
    if (status != MG_OK) return mg_error(status, "checkpoint has no tensor %s", name);
    int64_t rows = stored.n_dims == 2 ? stored.shape[0] - (c->class_token ? 1 : 0) : -1;
    int64_t side = rows > 0 ? (int64_t)llround(sqrt((double)rows)) : 0;
    if (stored.n_dims != 2 || stored.shape[1] != c->width || side * side != rows)
        return mg_error(MG_ERR_SHAPE, "tensor %s: expected [%s g*g, %d] for a square grid g, got %lld-D [%lld, %lld]",
                        name, c->class_token ? "1 +" : "", c->width, (long long)stored.n_dims,
                        (long long)stored.shape[0], (long long)stored.shape[1]);
    vit->position_grid = side;
    MG_TRY(mg_model_get_f32(weights, &vit->owned, name, 2, stored.shape, &vit->position));

    if (c->class_token) {
        int64_t shape[1] = {c->width};
        MG_TRY(mg_name(name, sizeof name, "%s%s", prefix, names->class_embedding));
        MG_TRY(mg_model_get_f32(weights, &vit->owned, name, 1, shape, &vit->class_embedding));
    }
    MG_TRY(mg_name(name, sizeof name, "%s%s", prefix, names->ln_pre));
    MG_TRY(mg_vit_load_norm(weights, &vit->owned, name, c->width, &vit->ln_pre_weight, &vit->ln_pre_bias));
    for (int l = 0; l < c->n_layers; l++) MG_TRY(mg_vit_load_layer(vit, weights, prefix, l));
    return MG_OK;
}

mg_status mg_vit_load(const mg_weights *weights, const char *prefix, const mg_vit_config *config,
                      mg_vit **out) {
    *out = NULL;
    if (!weights || !config || !prefix) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_vit_load: NULL argument");
    MG_TRY(mg_vit_check_config(config));
    mg_vit *vit = calloc(1, sizeof *vit);
    if (!vit) return mg_error(MG_ERR_NO_MEMORY, "vit: out of memory");
    vit->config = *config;
    if (vit->config.n_layers_run == 0) vit->config.n_layers_run = config->n_layers;
    vit->grid = config->image_size / config->patch_size;
    vit->n_positions = vit->grid * vit->grid + (config->class_token ? 1 : 0);
    vit->layers = calloc((size_t)config->n_layers, sizeof *vit->layers);
    mg_status status = vit->layers ? mg_vit_load_all(vit, weights, prefix)
                                   : mg_error(MG_ERR_NO_MEMORY, "vit: out of memory");
    if (status != MG_OK) {
        mg_vit_free(vit);
        return status;
    }
    *out = vit;
    return MG_OK;
}

void mg_vit_free(mg_vit *vit) {
    if (!vit) return;
    mg_owned_free(&vit->owned);
    mg_arena_destroy(&vit->scratch);
    free(vit->layers);
    free(vit);
}

int64_t mg_vit_n_tokens(const mg_vit *vit) {
    return vit->n_positions - (vit->config.class_token && vit->config.drop_class_token ? 1 : 0);
}

int64_t mg_vit_width(const mg_vit *vit) { return vit->config.width; }

/* ---------------------------------------------------------------- forward */

/* q, k, v as [T, heads, head_dim] views of the projections, per layout. */
static void mg_vit_qkv_views(const mg_vit_config *c, float *qkv, float *q, float *k, float *v, int64_t T,
                             mg_tensor *qv, mg_tensor *kv, mg_tensor *vv) {
    int64_t W = c->width, H = c->n_heads, D = W / H;
    if (c->qkv_layout == MG_QKV_HEAD_INTERLEAVED) {
        /* visual.py reshapes in_proj's output to [T, H, 3*D] and splits the
         * last dim: per head, q then k then v. */
        *qv = mg_view3_f32(qkv, T, H, D, 3 * W, 3 * D, 1);
        *kv = mg_view3_f32(qkv + D, T, H, D, 3 * W, 3 * D, 1);
        *vv = mg_view3_f32(qkv + 2 * D, T, H, D, 3 * W, 3 * D, 1);
    } else if (c->qkv_layout == MG_QKV_STACKED) {
        *qv = mg_view3_f32(qkv, T, H, D, 3 * W, D, 1);
        *kv = mg_view3_f32(qkv + W, T, H, D, 3 * W, D, 1);
        *vv = mg_view3_f32(qkv + 2 * W, T, H, D, 3 * W, D, 1);
    } else {
        *qv = mg_view3_f32(q, T, H, D, W, D, 1);
        *kv = mg_view3_f32(k, T, H, D, W, D, 1);
        *vv = mg_view3_f32(v, T, H, D, W, D, 1);
    }
}

static mg_status mg_vit_block(mg_context *ctx, mg_vit *vit, const mg_vit_layer *layer, mg_tensor *x,
                              mg_tensor *h, mg_tensor *qkv, mg_tensor *attn, mg_tensor *mlp) {
    const mg_vit_config *c = &vit->config;
    int64_t T = x->shape[0], W = c->width;
    float eps = c->norm_eps;

    /* attention sub-block */
    MG_TRY(mg_layer_norm(ctx, x, &layer->ln_1_weight, &layer->ln_1_bias, eps, h));
    float *base = qkv->data;
    mg_tensor q_flat = mg_view2_f32(base, T, W), k_flat = mg_view2_f32(base + T * W, T, W),
              v_flat = mg_view2_f32(base + 2 * T * W, T, W);
    if (c->qkv_layout == MG_QKV_SEPARATE) {
        MG_TRY(mg_linear(ctx, h, &layer->q_weight, layer->q_bias.data ? &layer->q_bias : NULL, &q_flat));
        MG_TRY(mg_linear(ctx, h, &layer->k_weight, layer->k_bias.data ? &layer->k_bias : NULL, &k_flat));
        MG_TRY(mg_linear(ctx, h, &layer->v_weight, layer->v_bias.data ? &layer->v_bias : NULL, &v_flat));
    } else {
        mg_tensor packed = mg_view2_f32(base, T, 3 * W);
        MG_TRY(mg_linear(ctx, h, &layer->qkv_weight, layer->qkv_bias.data ? &layer->qkv_bias : NULL, &packed));
    }
    mg_tensor q, k, v;
    mg_vit_qkv_views(c, base, base, base + T * W, base + 2 * T * W, T, &q, &k, &v);
    int64_t D = W / c->n_heads;
    mg_tensor attn3 = mg_view3_f32(attn->data, T, c->n_heads, D, W, D, 1);
    MG_TRY(mg_attention(ctx, &q, &k, &v, NULL, false, 1.0f / sqrtf((float)D), &attn3));
    MG_TRY(mg_linear(ctx, attn, &layer->out_weight, layer->out_bias.data ? &layer->out_bias : NULL, h));
    MG_TRY(mg_add(ctx, x, h, x));

    /* MLP sub-block */
    MG_TRY(mg_layer_norm(ctx, x, &layer->ln_2_weight, &layer->ln_2_bias, eps, h));
    MG_TRY(mg_linear(ctx, h, &layer->fc1_weight, layer->fc1_bias.data ? &layer->fc1_bias : NULL, mlp));
    MG_TRY(mg_activate(ctx, mlp, c->activation, mlp));
    MG_TRY(mg_linear(ctx, mlp, &layer->fc2_weight, layer->fc2_bias.data ? &layer->fc2_bias : NULL, h));
    MG_TRY(mg_add(ctx, x, h, x));
    return MG_OK;
}

mg_status mg_vit_forward(mg_context *ctx, mg_vit *vit, const mg_tensor *image, mg_tensor *out) {
    if (!ctx || !vit || !image || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_vit_forward: NULL argument");
    const mg_vit_config *c = &vit->config;
    int64_t S = c->image_size, W = c->width, T = vit->n_positions, G = vit->grid, M = c->mlp_dim;
    int64_t n_patches = G * G, first_patch = c->class_token ? 1 : 0;
    if (image->dtype != MG_F32 || image->n_dims != 3 || image->shape[0] != 3 || image->shape[1] != S ||
        image->shape[2] != S) {
        char got[64];
        return mg_error(MG_ERR_SHAPE, "vit: image must be f32 [3, %lld, %lld], got %s", (long long)S, (long long)S,
                        mg_tensor_describe(image, got, sizeof got));
    }
    int64_t out_rows = mg_vit_n_tokens(vit);
    if (out->dtype != MG_F32 || out->n_dims != 2 || out->shape[0] != out_rows || out->shape[1] != W ||
        !mg_tensor_is_contiguous(out)) {
        char got[64];
        return mg_error(MG_ERR_SHAPE, "vit: output must be contiguous f32 [%lld, %lld], got %s", (long long)out_rows,
                        (long long)W, mg_tensor_describe(out, got, sizeof got));
    }

    /* Activations: x, h, qkv (3x), attn, mlp, position + resize scratch. */
    int64_t g = vit->position_grid;
    size_t floats = (size_t)(T * W * 7 + T * M + W * (g * g + n_patches) * 2);
    MG_TRY(mg_scratch_reserve(&vit->scratch, floats * 4 + 16 * 4096));
    mg_arena *arena = &vit->scratch;
    mg_tensor x, h, qkv, attn, mlp, position;
    int64_t tw[2] = {T, W}, t3w[2] = {T, 3 * W}, tm[2] = {T, M}, pw[2] = {n_patches, W};
    MG_TRY(mg_arena_tensor(arena, &x, MG_F32, 2, tw));
    MG_TRY(mg_arena_tensor(arena, &h, MG_F32, 2, tw));
    MG_TRY(mg_arena_tensor(arena, &qkv, MG_F32, 2, t3w));
    MG_TRY(mg_arena_tensor(arena, &attn, MG_F32, 2, tw));
    MG_TRY(mg_arena_tensor(arena, &mlp, MG_F32, 2, tm));
    MG_TRY(mg_arena_tensor(arena, &position, MG_F32, 2, pw));

    /* 1. patch embedding (conv, stride = kernel, no bias), row-major tokens */
    mg_tensor patches = mg_view2_f32((float *)x.data + first_patch * W, n_patches, W);
    MG_TRY(mg_patch_embed(ctx, image, &vit->patch_weight, NULL, &patches));
    if (c->class_token) memcpy(x.data, vit->class_embedding.data, (size_t)W * 4);

    /* 2. absolute positions, resized to the patch grid when needed */
    mg_tensor table = vit->position;
    if (c->class_token) {
        float *row0 = table.data;
        for (int64_t i = 0; i < W; i++) ((float *)x.data)[i] += row0[i];
        table = mg_view2_f32((float *)vit->position.data + W, g * g, W);
    }
    MG_TRY(mg_resize_position_table(ctx, arena, &table, g, G, G, &position));
    MG_TRY(mg_add(ctx, &patches, &position, &patches));

    /* 3. ln_pre, then the blocks */
    MG_TRY(mg_layer_norm(ctx, &x, &vit->ln_pre_weight, &vit->ln_pre_bias, c->norm_eps, &x));
    /* Under MG_FPMATH_AUTO a tower whose linears round their activations
     * takes its attention products in bf16 and its GELU in f32 arithmetic. */
    const bool hint = mg_context_hint_bf16(ctx, mg_weights_round_activations(vit->layers[0].fc1_weight.dtype));
    for (int l = 0; l < c->n_layers_run; l++) {
        mg_status status = mg_vit_block(ctx, vit, &vit->layers[l], &x, &h, &qkv, &attn, &mlp);
        if (status != MG_OK) {
            mg_context_hint_bf16(ctx, hint);
            return mg_error_prefix(status, "vit block %d", l);
        }
    }
    mg_context_hint_bf16(ctx, hint);

    /* 4. output rows (class token dropped on request) */
    int64_t skip = c->class_token && c->drop_class_token ? 1 : 0;
    memcpy(out->data, (float *)x.data + skip * W, (size_t)(out_rows * W) * 4);
    return MG_OK;
}
