/* One decoder-only language model for Qwen-7B (BiRD) and LLaMA-7B (MedPLIB).
 * Per block (pre-norm, RMSNorm):
 *     h = x + o_proj(attention(rope(q), rope(k), v))    on RMSNorm1(x)
 *     x = h + down(up(y) * silu(gate(y)))               y = RMSNorm2(h)
 * Qwen packs q|k|v in one c_attn with a bias and names the MLP w1 (up),
 * w2 (gate, the SiLU branch) and c_proj (down); LLaMA has separate bias-free
 * q/k/v and gate/up/down. Qwen adds dynamic NTK rotary scaling and logn
 * query scaling past its training length (modeling_qwen.py). K (after rope)
 * and V are cached per layer as [positions, kv_heads, head_dim], f32 or f16. */
#include "models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- weights */

typedef struct mg_decoder_layer {
    mg_tensor attn_norm;                       /* ln_1 / input_layernorm        */
    mg_tensor qkv_weight, qkv_bias;            /* Qwen c_attn                   */
    mg_tensor q_weight, k_weight, v_weight;    /* LLaMA q/k/v_proj              */
    mg_tensor o_weight;                        /* c_proj / o_proj               */
    mg_tensor ffn_norm;                        /* ln_2 / post_attention_layernorm */
    mg_tensor up_weight, gate_weight, down_weight; /* Qwen w1, w2, mlp.c_proj   */
} mg_decoder_layer;

struct mg_decoder {
    mg_decoder_config config;
    mg_tensor embed;       /* [vocab, hidden], any dtype (rows dequantised)    */
    mg_tensor final_norm;  /* ln_f / model.norm                               */
    mg_tensor lm_head;     /* [vocab, hidden]                                  */
    mg_decoder_layer *layers;
    mg_decoder_ffn_fn ffn_hook;
    void *ffn_user_data;
    mg_owned owned;
    mg_arena scratch;
};

struct mg_kv_cache {
    int n_layers, capacity, length;
    int64_t row; /* kv_heads * head_dim values per position */
    mg_dtype dtype; /* MG_F32 or MG_F16 */
    uint8_t *k, *v;
    float ntk_alpha; /* chosen by the first forward on an empty cache */
};

typedef struct mg_decoder_names {
    const char *embed, *final_norm, *lm_head, *block;
    const char *attn_norm, *qkv, *q, *k, *v, *o, *ffn_norm, *up, *gate, *down;
} mg_decoder_names;

static const mg_decoder_names mg_decoder_names_qwen = {
    "transformer.wte.weight", "transformer.ln_f.weight", "lm_head", "transformer.h.%d.",
    "ln_1.weight", "attn.c_attn", NULL, NULL, NULL, "attn.c_proj", "ln_2.weight",
    "mlp.w1", "mlp.w2", "mlp.c_proj",
};

static const mg_decoder_names mg_decoder_names_llama = {
    "model.embed_tokens.weight", "model.norm.weight", "lm_head", "model.layers.%d.",
    "input_layernorm.weight", NULL, "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
    "self_attn.o_proj", "post_attention_layernorm.weight", "mlp.up_proj", "mlp.gate_proj", "mlp.down_proj",
};

static const mg_decoder_names *mg_decoder_names_for(mg_decoder_naming naming) {
    return naming == MG_DECODER_NAMING_LLAMA ? &mg_decoder_names_llama : &mg_decoder_names_qwen;
}

/* config.json numbers may be stored as ints or floats, booleans as ints or
 * "true"/"false" strings, depending on the file reader. */
static mg_status mg_meta_number(const mg_weights *weights, const char *key, double *out) {
    int64_t i;
    if (mg_weights_get_float(weights, key, out) == MG_OK) return MG_OK;
    if (mg_weights_get_int(weights, key, &i) == MG_OK) {
        *out = (double)i;
        return MG_OK;
    }
    return mg_error(MG_ERR_NOT_FOUND, "model config: metadata %s is missing or not a number", key);
}

static mg_status mg_meta_bool(const mg_weights *weights, const char *key, bool *out) {
    int64_t i;
    const char *s;
    if (mg_weights_get_int(weights, key, &i) == MG_OK) {
        *out = i != 0;
        return MG_OK;
    }
    if (mg_weights_get_string(weights, key, &s) == MG_OK && (!strcmp(s, "true") || !strcmp(s, "false"))) {
        *out = !strcmp(s, "true");
        return MG_OK;
    }
    return mg_error(MG_ERR_NOT_FOUND, "model config: metadata %s is missing or not a boolean", key);
}

mg_status mg_decoder_config_qwen(const mg_weights *weights, mg_decoder_config *out) {
    memset(out, 0, sizeof *out);
    double hidden, layers, heads, kv_channels, intermediate, vocab, eps, base, pct, seq_length;
    MG_TRY(mg_meta_number(weights, "config.hidden_size", &hidden));
    MG_TRY(mg_meta_number(weights, "config.num_hidden_layers", &layers));
    MG_TRY(mg_meta_number(weights, "config.num_attention_heads", &heads));
    MG_TRY(mg_meta_number(weights, "config.kv_channels", &kv_channels));
    MG_TRY(mg_meta_number(weights, "config.intermediate_size", &intermediate));
    MG_TRY(mg_meta_number(weights, "config.vocab_size", &vocab));
    MG_TRY(mg_meta_number(weights, "config.layer_norm_epsilon", &eps));
    MG_TRY(mg_meta_number(weights, "config.rotary_emb_base", &base));
    MG_TRY(mg_meta_number(weights, "config.rotary_pct", &pct));
    MG_TRY(mg_meta_number(weights, "config.seq_length", &seq_length));
    MG_TRY(mg_meta_bool(weights, "config.use_dynamic_ntk", &out->use_dynamic_ntk));
    MG_TRY(mg_meta_bool(weights, "config.use_logn_attn", &out->use_logn_attn));
    out->naming = MG_DECODER_NAMING_QWEN;
    out->hidden_size = (int)hidden;
    out->n_layers = (int)layers;
    out->n_heads = (int)heads;
    out->n_kv_heads = (int)heads;
    out->head_dim = (int)kv_channels;
    /* modeling_qwen.py: each SwiGLU branch is intermediate_size // 2 wide. */
    out->ffn_dim = (int)intermediate / 2;
    out->vocab_size = (int)vocab;
    out->norm_eps = (float)eps;
    out->rope_base = (float)base;
    out->rotary_dim = (int)(kv_channels * pct);
    out->seq_length = (int)seq_length;
    return MG_OK;
}

static mg_status mg_decoder_check_config(const mg_decoder_config *c) {
    if (c->naming != MG_DECODER_NAMING_QWEN && c->naming != MG_DECODER_NAMING_LLAMA)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder config: unknown naming %d", (int)c->naming);
    if (c->n_layers <= 0 || c->hidden_size <= 0 || c->n_heads <= 0 || c->head_dim <= 0 || c->ffn_dim <= 0 ||
        c->vocab_size <= 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT,
                        "decoder config: n_layers %d, hidden_size %d, n_heads %d, head_dim %d, ffn_dim %d, vocab_size %d must be positive",
                        c->n_layers, c->hidden_size, c->n_heads, c->head_dim, c->ffn_dim, c->vocab_size);
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder config: n_heads %d is not a multiple of n_kv_heads %d",
                        c->n_heads, c->n_kv_heads);
    if (c->rotary_dim <= 2 || c->rotary_dim > c->head_dim || c->rotary_dim % 2)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder config: rotary_dim %d must be even, > 2 and <= head_dim %d",
                        c->rotary_dim, c->head_dim);
    if (!(c->rope_base > 0) || !(c->norm_eps >= 0))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder config: rope_base %g / norm_eps %g out of range",
                        (double)c->rope_base, (double)c->norm_eps);
    if ((c->use_dynamic_ntk || c->use_logn_attn) && c->seq_length <= 1)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder config: seq_length %d must be > 1 for NTK/logn", c->seq_length);
    return MG_OK;
}

static mg_status mg_decoder_load_layer(mg_decoder *d, const mg_weights *weights, int index) {
    const mg_decoder_config *c = &d->config;
    const mg_decoder_names *names = mg_decoder_names_for(c->naming);
    const mg_model_weights_options *policy = &c->weights;
    mg_decoder_layer *layer = &d->layers[index];
    int64_t hidden = c->hidden_size, q_dim = (int64_t)c->n_heads * c->head_dim,
            kv_dim = (int64_t)c->n_kv_heads * c->head_dim, vec[1] = {hidden};
    char block[MG_NAME_MAX], name[MG_NAME_MAX];
    mg_tensor no_bias;
    MG_TRY(mg_name(block, sizeof block, names->block, index));
#define MG_PART(part) MG_TRY(mg_name(name, sizeof name, "%s%s", block, part))
    MG_PART(names->attn_norm);
    MG_TRY(mg_model_get_f32(weights, &d->owned, name, 1, vec, &layer->attn_norm));
    if (names->qkv) {
        MG_PART(names->qkv);
        MG_TRY(mg_model_get_linear(weights, &d->owned, name, q_dim + 2 * kv_dim, hidden, true, policy,
                                   &layer->qkv_weight, &layer->qkv_bias));
    } else {
        MG_PART(names->q);
        MG_TRY(mg_model_get_linear(weights, &d->owned, name, q_dim, hidden, false, policy, &layer->q_weight, &no_bias));
        MG_PART(names->k);
        MG_TRY(mg_model_get_linear(weights, &d->owned, name, kv_dim, hidden, false, policy, &layer->k_weight, &no_bias));
        MG_PART(names->v);
        MG_TRY(mg_model_get_linear(weights, &d->owned, name, kv_dim, hidden, false, policy, &layer->v_weight, &no_bias));
    }
    MG_PART(names->o);
    MG_TRY(mg_model_get_linear(weights, &d->owned, name, hidden, q_dim, false, policy, &layer->o_weight, &no_bias));
    MG_PART(names->ffn_norm);
    MG_TRY(mg_model_get_f32(weights, &d->owned, name, 1, vec, &layer->ffn_norm));
    if (!c->external_ffn) {
        MG_PART(names->up);
        MG_TRY(mg_model_get_linear(weights, &d->owned, name, c->ffn_dim, hidden, false, policy, &layer->up_weight, &no_bias));
        MG_PART(names->gate);
        MG_TRY(mg_model_get_linear(weights, &d->owned, name, c->ffn_dim, hidden, false, policy, &layer->gate_weight, &no_bias));
        MG_PART(names->down);
        MG_TRY(mg_model_get_linear(weights, &d->owned, name, hidden, c->ffn_dim, false, policy, &layer->down_weight, &no_bias));
    }
#undef MG_PART
    return MG_OK;
}

static mg_status mg_decoder_load_all(mg_decoder *d, const mg_weights *weights) {
    const mg_decoder_config *c = &d->config;
    const mg_decoder_names *names = mg_decoder_names_for(c->naming);
    int64_t table[2] = {c->vocab_size, c->hidden_size}, vec[1] = {c->hidden_size};
    /* The token table stays in the file's dtype: only looked-up rows are
     * dequantised, so a 151936-row table costs nothing at load. */
    MG_TRY(mg_model_get(weights, names->embed, 2, table, &d->embed));
    if (!mg_tensor_is_contiguous(&d->embed) ||
        (d->embed.dtype != MG_F32 && d->embed.dtype != MG_F16 && d->embed.dtype != MG_BF16 &&
         !mg_dtype_is_quantized(d->embed.dtype)))
        return mg_error(MG_ERR_DTYPE, "tensor %s: unsupported dtype %s", names->embed, mg_dtype_name(d->embed.dtype));
    MG_TRY(mg_model_get_f32(weights, &d->owned, names->final_norm, 1, vec, &d->final_norm));
    mg_tensor no_bias;
    MG_TRY(mg_model_get_linear(weights, &d->owned, names->lm_head, c->vocab_size, c->hidden_size, false, &c->weights,
                               &d->lm_head, &no_bias));
    for (int l = 0; l < c->n_layers; l++) MG_TRY(mg_decoder_load_layer(d, weights, l));
    return MG_OK;
}

mg_status mg_decoder_load(const mg_weights *weights, const mg_decoder_config *config, mg_decoder **out) {
    *out = NULL;
    if (!weights || !config) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_decoder_load: NULL argument");
    MG_TRY(mg_decoder_check_config(config));
    mg_decoder *d = calloc(1, sizeof *d);
    if (!d) return mg_error(MG_ERR_NO_MEMORY, "decoder: out of memory");
    d->config = *config;
    d->layers = calloc((size_t)config->n_layers, sizeof *d->layers);
    mg_status status = d->layers ? mg_decoder_load_all(d, weights) : mg_error(MG_ERR_NO_MEMORY, "decoder: out of memory");
    if (status != MG_OK) {
        mg_decoder_free(d);
        return status;
    }
    *out = d;
    return MG_OK;
}

void mg_decoder_free(mg_decoder *d) {
    if (!d) return;
    mg_owned_free(&d->owned);
    mg_arena_destroy(&d->scratch);
    free(d->layers);
    free(d);
}

const mg_decoder_config *mg_decoder_get_config(const mg_decoder *d) { return &d->config; }

void mg_decoder_set_ffn_hook(mg_decoder *d, mg_decoder_ffn_fn fn, void *user_data) {
    d->ffn_hook = fn;
    d->ffn_user_data = user_data;
}

/* ---------------------------------------------------------------- KV cache */

mg_status mg_kv_cache_create_typed(const mg_decoder *d, int capacity, mg_dtype dtype, mg_kv_cache **out) {
    *out = NULL;
    if (!d || capacity <= 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "kv cache: capacity %d must be positive", capacity);
    if (dtype != MG_F32 && dtype != MG_F16)
        return mg_error(MG_ERR_DTYPE, "kv cache: element type %s (expected f32 or f16)", mg_dtype_name(dtype));
    mg_kv_cache *cache = calloc(1, sizeof *cache);
    if (!cache) return mg_error(MG_ERR_NO_MEMORY, "kv cache: out of memory");
    cache->n_layers = d->config.n_layers;
    cache->capacity = capacity;
    cache->row = (int64_t)d->config.n_kv_heads * d->config.head_dim;
    cache->dtype = dtype;
    cache->ntk_alpha = 1.0f;
    size_t bytes;
    if (!mg_mul_size((size_t)cache->n_layers * (size_t)capacity, (size_t)cache->row * (dtype == MG_F16 ? 2 : 4),
                     &bytes)) {
        free(cache);
        return mg_error(MG_ERR_NO_MEMORY, "kv cache: %d positions overflow the address space", capacity);
    }
    cache->k = mg_aligned_alloc(bytes);
    cache->v = mg_aligned_alloc(bytes);
    if (!cache->k || !cache->v) {
        mg_kv_cache_free(cache);
        return mg_error(MG_ERR_NO_MEMORY, "kv cache: cannot allocate 2 x %zu bytes for %d positions", bytes, capacity);
    }
    *out = cache;
    return MG_OK;
}

mg_status mg_kv_cache_create(const mg_decoder *d, int capacity, mg_kv_cache **out) {
    *out = NULL;
    if (!d) return mg_error(MG_ERR_INVALID_ARGUMENT, "kv cache: decoder is NULL");
    const char *env = getenv("MG_KV_CACHE"); /* every cache a model makes for itself comes here */
    if (env && *env && strcmp(env, "auto") != 0) {
        if (strcmp(env, "f32") == 0) return mg_kv_cache_create_typed(d, capacity, MG_F32, out);
        if (strcmp(env, "f16") == 0) return mg_kv_cache_create_typed(d, capacity, MG_F16, out);
        return mg_error(MG_ERR_INVALID_ARGUMENT, "MG_KV_CACHE=%s: expected auto, f32 or f16", env);
    }
    /* f16 where the linears round their activations anyway; the o
     * projection is in every layer of both namings. */
    const bool rounded = d->config.n_layers > 0 && mg_weights_round_activations(d->layers[0].o_weight.dtype);
    return mg_kv_cache_create_typed(d, capacity, rounded ? MG_F16 : MG_F32, out);
}

mg_dtype mg_kv_cache_dtype(const mg_kv_cache *cache) { return cache->dtype; }

void mg_kv_cache_free(mg_kv_cache *cache) {
    if (!cache) return;
    mg_aligned_free(cache->k);
    mg_aligned_free(cache->v);
    free(cache);
}

int mg_kv_cache_length(const mg_kv_cache *cache) { return cache->length; }
int mg_kv_cache_capacity(const mg_kv_cache *cache) { return cache->capacity; }

mg_status mg_kv_cache_truncate(mg_kv_cache *cache, int length) {
    if (length < 0 || length > cache->length)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "kv cache: cannot truncate %d positions to %d", cache->length, length);
    cache->length = length;
    if (length == 0) cache->ntk_alpha = 1.0f;
    return MG_OK;
}

/* ---------------------------------------------------------------- forward */

/* modeling_qwen.py get_ntk_alpha: alpha = max(2^ceil(log2(L / seq_length) + 1) - 1, 1). */
static float mg_ntk_alpha(int length, int seq_length) {
    double context = log2((double)length / (double)seq_length) + 1.0;
    double alpha = pow(2.0, ceil(context)) - 1.0;
    return (float)(alpha < 1.0 ? 1.0 : alpha);
}

float mg_decoder_ntk_alpha(const mg_decoder *d, int prefill_length) {
    if (!d->config.use_dynamic_ntk || prefill_length <= 0) return 1.0f;
    return mg_ntk_alpha(prefill_length, d->config.seq_length);
}

static mg_status mg_check_out(const char *what, const mg_tensor *t, int n_dims, const int64_t *shape) {
    bool ok = t->dtype == MG_F32 && t->n_dims == n_dims && mg_tensor_is_contiguous(t);
    for (int i = 0; ok && i < n_dims; i++) ok = t->shape[i] == shape[i];
    if (ok) return MG_OK;
    char got[64];
    return mg_error(MG_ERR_SHAPE, "decoder: %s must be contiguous f32 [%lld, %lld%s], got %s", what, (long long)shape[0],
                    (long long)shape[1], n_dims == 3 ? ", ..." : "", mg_tensor_describe(t, got, sizeof got));
}

typedef struct mg_decoder_buffers {
    mg_tensor x, h, h2, qkv, q, attn, up, gate, factors;
    float *inv_freq;
    int32_t *positions;
} mg_decoder_buffers;

/* An f16 cache entry with an all-ones exponent: a value past +-65504 (or a
 * NaN) that the f16 rounding would pass on silently. */
static mg_status mg_kv_check_f16(const mg_tensor *t, const char *what, int layer) {
    const uint16_t *h = t->data;
    const int64_t n = mg_tensor_numel(t);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= (h[i] & 0x7c00) == 0x7c00;
    if (!bad) return MG_OK;
    return mg_error(MG_ERR_UNSUPPORTED, "decoder layer %d: a %s value is beyond f16's range (+-65504) or NaN; "
                    "use an f32 KV cache (MG_KV_CACHE=f32 in the environment, or mg_kv_cache_create_typed with "
                    "MG_F32 / dtype='f32')", layer, what);
}

static mg_status mg_decoder_attention(mg_context *ctx, mg_decoder *d, mg_kv_cache *cache, int l,
                                      mg_decoder_buffers *b, int64_t T, int64_t P) {
    const mg_decoder_config *c = &d->config;
    const mg_decoder_layer *layer = &d->layers[l];
    int64_t H = c->n_heads, KVH = c->n_kv_heads, D = c->head_dim, q_dim = H * D, kv_dim = KVH * D;
    float *qkv = b->qkv.data;
    mg_tensor q, k, v;
    if (layer->qkv_weight.data) {
        /* c_attn output splits contiguously: q | k | v. */
        mg_tensor packed = mg_view2_f32(qkv, T, q_dim + 2 * kv_dim);
        MG_TRY(mg_linear(ctx, &b->h, &layer->qkv_weight, layer->qkv_bias.data ? &layer->qkv_bias : NULL, &packed));
        int64_t stride = q_dim + 2 * kv_dim;
        q = mg_view3_f32(qkv, T, H, D, stride, D, 1);
        k = mg_view3_f32(qkv + q_dim, T, KVH, D, stride, D, 1);
        v = mg_view3_f32(qkv + q_dim + kv_dim, T, KVH, D, stride, D, 1);
    } else {
        mg_tensor q2 = mg_view2_f32(qkv, T, q_dim), k2 = mg_view2_f32(qkv + T * q_dim, T, kv_dim),
                  v2 = mg_view2_f32(qkv + T * (q_dim + kv_dim), T, kv_dim);
        MG_TRY(mg_linear(ctx, &b->h, &layer->q_weight, NULL, &q2));
        MG_TRY(mg_linear(ctx, &b->h, &layer->k_weight, NULL, &k2));
        MG_TRY(mg_linear(ctx, &b->h, &layer->v_weight, NULL, &v2));
        q = mg_view3_f32(qkv, T, H, D, q_dim, D, 1);
        k = mg_view3_f32(qkv + T * q_dim, T, KVH, D, kv_dim, D, 1);
        v = mg_view3_f32(qkv + T * (q_dim + kv_dim), T, KVH, D, kv_dim, D, 1);
    }
    const size_t elem = cache->dtype == MG_F16 ? 2 : 4;
    uint8_t *k_layer = cache->k + (size_t)l * cache->capacity * cache->row * elem;
    uint8_t *v_layer = cache->v + (size_t)l * cache->capacity * cache->row * elem;
    mg_tensor q_rot = mg_view3_f32(b->q.data, T, H, D, q_dim, D, 1);
    const int64_t new_shape[3] = {T, KVH, D}, all_shape[3] = {P + T, KVH, D};
    mg_tensor k_new, v_new, k_all, v_all;
    MG_TRY(mg_tensor_init(&k_new, k_layer + (size_t)P * kv_dim * elem, cache->dtype, 3, new_shape));
    MG_TRY(mg_tensor_init(&v_new, v_layer + (size_t)P * kv_dim * elem, cache->dtype, 3, new_shape));
    MG_TRY(mg_tensor_init(&k_all, k_layer, cache->dtype, 3, all_shape));
    MG_TRY(mg_tensor_init(&v_all, v_layer, cache->dtype, 3, all_shape));
    MG_TRY(mg_rope(ctx, &q, b->positions, b->inv_freq, c->rotary_dim, &q_rot));
    if (cache->dtype == MG_F32) {
        MG_TRY(mg_rope(ctx, &k, b->positions, b->inv_freq, c->rotary_dim, &k_new));
    } else { /* rope into the attention output buffer (free until the attention), then round into the cache */
        mg_tensor k_rot = mg_view3_f32(b->attn.data, T, KVH, D, kv_dim, D, 1);
        MG_TRY(mg_rope(ctx, &k, b->positions, b->inv_freq, c->rotary_dim, &k_rot));
        MG_TRY(mg_tensor_convert(&k_rot, &k_new));
        MG_TRY(mg_kv_check_f16(&k_new, "key", l));
    }
    MG_TRY(mg_tensor_convert(&v, &v_new));
    if (cache->dtype == MG_F16) MG_TRY(mg_kv_check_f16(&v_new, "value", l));
    if (b->factors.data) MG_TRY(mg_mul(ctx, &q_rot, &b->factors, &q_rot));

    mg_tensor out3 = mg_view3_f32(b->attn.data, T, H, D, q_dim, D, 1);
    MG_TRY(mg_attention(ctx, &q_rot, &k_all, &v_all, NULL, true, 1.0f / sqrtf((float)D), &out3));
    return mg_linear(ctx, &b->attn, &layer->o_weight, NULL, &b->h2);
}

static mg_status mg_decoder_ffn(mg_context *ctx, mg_decoder *d, int l, mg_decoder_buffers *b) {
    if (d->ffn_hook) return d->ffn_hook(d->ffn_user_data, ctx, l, &b->h, &b->h2);
    const mg_decoder_layer *layer = &d->layers[l];
    MG_TRY(mg_linear(ctx, &b->h, &layer->up_weight, NULL, &b->up));
    MG_TRY(mg_linear(ctx, &b->h, &layer->gate_weight, NULL, &b->gate));
    MG_TRY(mg_activate(ctx, &b->gate, MG_ACT_SILU, &b->gate));
    MG_TRY(mg_mul(ctx, &b->up, &b->gate, &b->up));
    return mg_linear(ctx, &b->up, &layer->down_weight, NULL, &b->h2);
}

static mg_status mg_decoder_embed(const mg_decoder *d, const mg_decoder_input *in, float *x) {
    int64_t hidden = d->config.hidden_size;
    for (int t = 0; t < in->n_tokens; t++) {
        int32_t token = in->tokens[t];
        if (token < 0 || token >= d->config.vocab_size)
            return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder: token %d at position %d is outside the vocabulary [0, %d)",
                            token, t, d->config.vocab_size);
        MG_TRY(mg_model_row_f32(&d->embed, token, x + (int64_t)t * hidden));
    }
    if (in->n_override == 0) return MG_OK;
    const mg_tensor *e = in->embeddings;
    if (!e || !in->override_rows || e->dtype != MG_F32 || e->n_dims != 2 || e->shape[0] != in->n_override ||
        e->shape[1] != hidden || !mg_tensor_is_contiguous(e))
        return mg_error(MG_ERR_SHAPE, "decoder: %d override rows need contiguous f32 embeddings [%d, %lld]",
                        in->n_override, in->n_override, (long long)hidden);
    for (int i = 0; i < in->n_override; i++) {
        int32_t row = in->override_rows[i];
        if (row < 0 || row >= in->n_tokens)
            return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder: override row %d is outside the %d new tokens", row,
                            in->n_tokens);
        memcpy(x + (int64_t)row * hidden, (const float *)e->data + (int64_t)i * hidden, (size_t)hidden * 4);
    }
    return MG_OK;
}

mg_status mg_decoder_forward(mg_context *ctx, mg_decoder *d, mg_kv_cache *cache, const mg_decoder_input *input,
                             mg_tensor *logits, mg_tensor *hidden, mg_tensor *layer_hidden) {
    if (!ctx || !d || !cache || !input || !input->tokens)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_decoder_forward: NULL argument");
    const mg_decoder_config *c = &d->config;
    int64_t T = input->n_tokens, P = cache->length, HID = c->hidden_size, F = c->ffn_dim, V = c->vocab_size;
    int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    if (T <= 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder: no tokens to run");
    if (cache->n_layers != c->n_layers || cache->row != kv_dim)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder: the KV cache was made for another model");
    if (P + T > cache->capacity)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder: %lld cached + %lld new positions exceed the KV cache capacity %d",
                        (long long)P, (long long)T, cache->capacity);
    if (c->external_ffn && !d->ffn_hook)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "decoder: external_ffn is set but no FFN hook was given");
    if (logits) {
        int64_t rows = logits->n_dims == 2 && logits->shape[0] == T ? T : 1, shape[2] = {rows, V};
        MG_TRY(mg_check_out("logits", logits, 2, shape));
    }
    if (hidden) {
        int64_t shape[2] = {T, HID};
        MG_TRY(mg_check_out("hidden", hidden, 2, shape));
    }
    if (layer_hidden) {
        int64_t shape[3] = {c->n_layers + 1, T, HID};
        MG_TRY(mg_check_out("layer_hidden", layer_hidden, 3, shape));
    }

    size_t floats = (size_t)(T * (HID * 3 + q_dim * 3 + kv_dim * 2 + F * 2 + 2)) + (size_t)c->rotary_dim;
    MG_TRY(mg_scratch_reserve(&d->scratch, floats * 4 + 16 * 4096));
    mg_arena *arena = &d->scratch;
    mg_decoder_buffers b;
    memset(&b, 0, sizeof b);
    int64_t th[2] = {T, HID}, tqkv[2] = {T, q_dim + 2 * kv_dim}, tq[2] = {T, q_dim}, tf[2] = {T, F};
    MG_TRY(mg_arena_tensor(arena, &b.x, MG_F32, 2, th));
    MG_TRY(mg_arena_tensor(arena, &b.h, MG_F32, 2, th));
    MG_TRY(mg_arena_tensor(arena, &b.h2, MG_F32, 2, th));
    MG_TRY(mg_arena_tensor(arena, &b.qkv, MG_F32, 2, tqkv));
    MG_TRY(mg_arena_tensor(arena, &b.q, MG_F32, 2, tq));
    MG_TRY(mg_arena_tensor(arena, &b.attn, MG_F32, 2, tq));
    if (!c->external_ffn) {
        MG_TRY(mg_arena_tensor(arena, &b.up, MG_F32, 2, tf));
        MG_TRY(mg_arena_tensor(arena, &b.gate, MG_F32, 2, tf));
    }
    b.positions = mg_arena_alloc(arena, (size_t)T * sizeof *b.positions, 64);
    b.inv_freq = mg_arena_alloc(arena, (size_t)c->rotary_dim / 2 * sizeof *b.inv_freq, 64);
    if (!b.positions || !b.inv_freq) return MG_ERR_NO_MEMORY;

    /* 1. positions and rotary frequencies. Dynamic NTK picks alpha from the
     * prompt length on an empty cache and keeps it for the following steps. */
    if (P == 0) cache->ntk_alpha = c->use_dynamic_ntk ? mg_ntk_alpha((int)T, c->seq_length) : 1.0f;
    double base = c->rope_base;
    if (cache->ntk_alpha != 1.0f)
        base *= pow((double)cache->ntk_alpha, (double)c->rotary_dim / (double)(c->rotary_dim - 2));
    for (int i = 0; i < c->rotary_dim / 2; i++)
        b.inv_freq[i] = (float)(1.0 / pow(base, (double)(2 * i) / (double)c->rotary_dim));
    for (int64_t t = 0; t < T; t++) b.positions[t] = (int32_t)(P + t);

    /* logn: queries past the training length are scaled by log_L(p + 1). */
    if (c->use_logn_attn && P + T > c->seq_length) {
        int64_t shape[3] = {T, 1, 1};
        MG_TRY(mg_arena_tensor(arena, &b.factors, MG_F32, 3, shape));
        float *f = b.factors.data;
        for (int64_t t = 0; t < T; t++) {
            double p1 = (double)(P + t + 1);
            f[t] = p1 > c->seq_length ? (float)(log(p1) / log((double)c->seq_length)) : 1.0f;
        }
    }

    /* 2. token embeddings, image/region rows overridden */
    MG_TRY(mg_decoder_embed(d, input, b.x.data));

    /* 3. the blocks */
    for (int l = 0; l < c->n_layers; l++) {
        if (layer_hidden) memcpy((float *)layer_hidden->data + (size_t)l * T * HID, b.x.data, (size_t)(T * HID) * 4);
        mg_status status = mg_rms_norm(ctx, &b.x, &d->layers[l].attn_norm, c->norm_eps, &b.h);
        if (status == MG_OK) status = mg_decoder_attention(ctx, d, cache, l, &b, T, P);
        if (status == MG_OK) status = mg_add(ctx, &b.x, &b.h2, &b.x);
        if (status == MG_OK) status = mg_rms_norm(ctx, &b.x, &d->layers[l].ffn_norm, c->norm_eps, &b.h);
        if (status == MG_OK) status = mg_decoder_ffn(ctx, d, l, &b);
        if (status == MG_OK) status = mg_add(ctx, &b.x, &b.h2, &b.x);
        if (status != MG_OK) return mg_error_prefix(status, "decoder layer %d", l);
    }
    cache->length = (int)(P + T);

    /* 4. final norm, then the LM head on the rows asked for */
    MG_TRY(mg_rms_norm(ctx, &b.x, &d->final_norm, c->norm_eps, &b.h));
    if (hidden) memcpy(hidden->data, b.h.data, (size_t)(T * HID) * 4);
    if (layer_hidden)
        memcpy((float *)layer_hidden->data + (size_t)c->n_layers * T * HID, b.h.data, (size_t)(T * HID) * 4);
    if (logits) {
        mg_tensor rows = b.h;
        if (logits->shape[0] == 1 && T > 1) rows = mg_view2_f32((float *)b.h.data + (T - 1) * HID, 1, HID);
        MG_TRY(mg_linear(ctx, &rows, &d->lm_head, NULL, logits));
    }
    return MG_OK;
}
