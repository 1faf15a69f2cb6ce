/* SAM-Med2D image encoder: ViT-B/16 at 256 px with windowed attention and
 * decomposed relative position bias (ViTDet / SAM), SAM-Med2D's per-block
 * adapters, and the conv neck. Also the model object's life cycle, the
 * SammedPredictor preprocessing and the conv helpers the decoder shares.
 *
 * Reference behaviour: OpenGVLab/SAM-Med2D segment_anything/modeling/
 * image_encoder.py and build_sam.py (build_sam_vit_b, image_size 256,
 * encoder_adapter True). Activations are channels-last [H*W, C] throughout;
 * LayerNorm2d is then a plain LayerNorm over the last dimension. */
#include "models/sam.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Block LayerNorms use partial(LayerNorm, eps=1e-6) (build_sam.py);
 * Adapter_Layer builds nn.LayerNorm with its default eps 1e-5; LayerNorm2d
 * (neck) uses 1e-6. */
#define MG_SAM_BLOCK_EPS 1e-6f
#define MG_SAM_ADAPTER_EPS 1e-5f
#define MG_SAM_NECK_EPS 1e-6f

/* Sam.pixel_mean / pixel_std (non-persistent buffers, not in checkpoints). */
static const double mg_sam_pixel_mean[3] = {123.675, 116.28, 103.53};
static const double mg_sam_pixel_std[3] = {58.395, 57.12, 57.375};

/* ------------------------------------------------------------ helpers */

mg_status mg_sam_scratch(mg_arena *arena, size_t floats) {
    size_t bytes;
    if (!mg_mul_size(floats, sizeof(float), &bytes) || !mg_add_size(bytes, 1u << 20, &bytes))
        return mg_error(MG_ERR_NO_MEMORY, "SAM scratch: size overflow");
    return mg_arena_init(arena, bytes);
}

mg_status mg_sam_tensor(mg_arena *arena, mg_tensor *t, int n_dims, const int64_t *shape) {
    return mg_arena_tensor(arena, t, MG_F32, n_dims, shape);
}

mg_status mg_sam_norm_map(mg_context *ctx, mg_arena *arena, const mg_tensor *x, const mg_sam_norm *norm,
                          float eps, mg_tensor *out) {
    MG_TRY(mg_sam_tensor(arena, out, x->n_dims, x->shape));
    const int64_t chans = x->shape[x->n_dims - 1];
    mg_tensor rows_in, rows_out;
    MG_TRY(mg_tensor_reshape(x, 2, (int64_t[]){mg_tensor_numel(x) / chans, chans}, &rows_in));
    MG_TRY(mg_tensor_reshape(out, 2, (int64_t[]){mg_tensor_numel(x) / chans, chans}, &rows_out));
    return mg_layer_norm(ctx, &rows_in, &norm->weight, &norm->bias, eps, &rows_out);
}

static mg_status mg_sam_check_shape(const char *prefix, const char *name, const mg_tensor *t,
                                    int n_dims, const int64_t *shape) {
    bool ok = t->n_dims == n_dims;
    for (int i = 0; ok && i < n_dims; i++)
        if (shape[i] >= 0 && t->shape[i] != shape[i]) ok = false;
    if (ok) return MG_OK;
    char want[128] = "[", got[96];
    for (int i = 0; i < n_dims; i++) {
        char part[24];
        if (shape[i] >= 0)
            snprintf(part, sizeof part, "%s%lld", i ? ", " : "", (long long)shape[i]);
        else
            snprintf(part, sizeof part, "%s?", i ? ", " : "");
        strncat(want, part, sizeof want - strlen(want) - 1);
    }
    strncat(want, "]", sizeof want - strlen(want) - 1);
    return mg_error(MG_ERR_SHAPE, "tensor %s%s: expected %s, got %s", prefix, name, want,
                    mg_tensor_describe(t, got, sizeof got));
}

mg_status mg_sam_get_optional(const mg_weights *weights, const char *prefix, const char *name,
                              int n_dims, const int64_t *shape, mg_tensor *out) {
    char key[512];
    int n = snprintf(key, sizeof key, "%s%s", prefix, name);
    if (n < 0 || (size_t)n >= sizeof key)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "tensor name %s%s is too long", prefix, name);
    memset(out, 0, sizeof *out);
    if (!mg_weights_has(weights, key)) return MG_OK;
    MG_TRY(mg_weights_get(weights, key, out));
    return mg_sam_check_shape(prefix, name, out, n_dims, shape);
}

mg_status mg_sam_get(const mg_weights *weights, const char *prefix, const char *name, int n_dims,
                     const int64_t *shape, mg_tensor *out) {
    MG_TRY(mg_sam_get_optional(weights, prefix, name, n_dims, shape, out));
    if (!out->data)
        return mg_error(MG_ERR_NOT_FOUND, "SAM checkpoint: tensor %s%s is missing", prefix, name);
    return MG_OK;
}

mg_status mg_sam_conv2d(mg_context *ctx, mg_arena *arena, const mg_tensor *x, const mg_tensor *weight,
                        const mg_tensor *bias, int stride, int padding, mg_tensor *out) {
    const int64_t height = x->shape[0], width = x->shape[1], channels = x->shape[2];
    const int64_t out_channels = weight->shape[0], k = weight->shape[2];
    if (weight->shape[1] != channels || weight->shape[3] != k)
        return mg_error(MG_ERR_SHAPE, "conv2d: weight [%lld, %lld, %lld, %lld] does not fit %lld input channels",
                        (long long)weight->shape[0], (long long)weight->shape[1],
                        (long long)weight->shape[2], (long long)weight->shape[3], (long long)channels);
    const int64_t out_h = (height + 2 * padding - k) / stride + 1;
    const int64_t out_w = (width + 2 * padding - k) / stride + 1;
    if (out_h <= 0 || out_w <= 0)
        return mg_error(MG_ERR_SHAPE, "conv2d: %lldx%lld input is smaller than the %lldx%lld kernel",
                        (long long)height, (long long)width, (long long)k, (long long)k);
    const int64_t patch = channels * k * k;
    mg_tensor w2;
    MG_TRY(mg_tensor_reshape(weight, 2, (int64_t[]){out_channels, patch}, &w2));
    MG_TRY(mg_sam_tensor(arena, out, 3, (int64_t[]){out_h, out_w, out_channels}));
    mg_tensor rows_out;
    MG_TRY(mg_tensor_reshape(out, 2, (int64_t[]){out_h * out_w, out_channels}, &rows_out));
    if (k == 1 && stride == 1 && padding == 0 && mg_tensor_is_contiguous(x)) {
        mg_tensor rows_in;
        MG_TRY(mg_tensor_reshape(x, 2, (int64_t[]){height * width, channels}, &rows_in));
        return mg_linear(ctx, &rows_in, &w2, bias, &rows_out);
    }
    /* im2col: column index c*k*k + ky*k + kx matches the [O, C, kh, kw] weight
     * flattened row-major, so the GEMM is one mg_linear. */
    mg_tensor cols;
    MG_TRY(mg_sam_tensor(arena, &cols, 2, (int64_t[]){out_h * out_w, patch}));
    const float *src = x->data;
    float *col = cols.data;
    const int64_t sy = x->strides[0] / 4, sx = x->strides[1] / 4, sc = x->strides[2] / 4;
    for (int64_t oy = 0; oy < out_h; oy++) {
        for (int64_t ox = 0; ox < out_w; ox++) {
            float *row = col + (oy * out_w + ox) * patch;
            for (int64_t ky = 0; ky < k; ky++) {
                const int64_t iy = oy * stride - padding + ky;
                for (int64_t kx = 0; kx < k; kx++) {
                    const int64_t ix = ox * stride - padding + kx;
                    const bool inside = iy >= 0 && iy < height && ix >= 0 && ix < width;
                    const float *pixel = src + iy * sy + ix * sx;
                    for (int64_t c = 0; c < channels; c++)
                        row[c * k * k + ky * k + kx] = inside ? pixel[c * sc] : 0.0f;
                }
            }
        }
    }
    return mg_linear(ctx, &cols, &w2, bias, &rows_out);
}

mg_status mg_sam_conv_transpose2d(mg_context *ctx, mg_arena *arena, const mg_tensor *x,
                                  const mg_tensor *weight, const mg_tensor *bias, int stride,
                                  int padding, mg_tensor *out) {
    const int64_t height = x->shape[0], width = x->shape[1], in_channels = x->shape[2];
    const int64_t out_channels = weight->shape[1], k = weight->shape[2];
    if (weight->shape[0] != in_channels || weight->shape[3] != k)
        return mg_error(MG_ERR_SHAPE, "conv_transpose2d: weight [%lld, %lld, %lld, %lld] does not fit %lld input channels",
                        (long long)weight->shape[0], (long long)weight->shape[1],
                        (long long)weight->shape[2], (long long)weight->shape[3], (long long)in_channels);
    const int64_t out_h = (height - 1) * stride - 2 * padding + k;
    const int64_t out_w = (width - 1) * stride - 2 * padding + k;
    if (out_h <= 0 || out_w <= 0) return mg_error(MG_ERR_SHAPE, "conv_transpose2d: empty output");
    const int64_t kk = k * k, n_cols = out_channels * kk;
    mg_tensor rows_in, w2, cols;
    MG_TRY(mg_tensor_reshape(x, 2, (int64_t[]){height * width, in_channels}, &rows_in));
    MG_TRY(mg_tensor_reshape(weight, 2, (int64_t[]){in_channels, n_cols}, &w2));
    MG_TRY(mg_sam_tensor(arena, &cols, 2, (int64_t[]){height * width, n_cols}));
    MG_TRY(mg_matmul(ctx, &rows_in, &w2, false, &cols));
    MG_TRY(mg_sam_tensor(arena, out, 3, (int64_t[]){out_h, out_w, out_channels}));
    float *dst = out->data;
    const float *b = bias && bias->data ? bias->data : NULL;
    for (int64_t p = 0; p < out_h * out_w; p++)
        for (int64_t c = 0; c < out_channels; c++) dst[p * out_channels + c] = b ? b[c] : 0.0f;
    /* col2im: input pixel (iy, ix) spreads its k x k block of products onto
     * output (iy*stride - padding + ky, ix*stride - padding + kx). */
    const float *col = cols.data;
    for (int64_t iy = 0; iy < height; iy++) {
        for (int64_t ix = 0; ix < width; ix++) {
            const float *row = col + (iy * width + ix) * n_cols;
            for (int64_t ky = 0; ky < k; ky++) {
                const int64_t oy = iy * stride - padding + ky;
                if (oy < 0 || oy >= out_h) continue;
                for (int64_t kx = 0; kx < k; kx++) {
                    const int64_t ox = ix * stride - padding + kx;
                    if (ox < 0 || ox >= out_w) continue;
                    float *pixel = dst + (oy * out_w + ox) * out_channels;
                    const float *taps = row + ky * k + kx;
                    for (int64_t c = 0; c < out_channels; c++) pixel[c] += taps[c * kk];
                }
            }
        }
    }
    return MG_OK;
}

/* ------------------------------------------------------------ loading */

static mg_status mg_sam_get_norm(const mg_weights *weights, const char *prefix, const char *name,
                                 int64_t dim, mg_sam_norm *norm) {
    char key[256];
    snprintf(key, sizeof key, "%s.weight", name);
    MG_TRY(mg_sam_get(weights, prefix, key, 1, (int64_t[]){dim}, &norm->weight));
    snprintf(key, sizeof key, "%s.bias", name);
    return mg_sam_get(weights, prefix, key, 1, (int64_t[]){dim}, &norm->bias);
}

static mg_status mg_sam_get_linear(const mg_weights *weights, const char *prefix, const char *name,
                                   int64_t out_dim, int64_t in_dim, bool need_bias,
                                   mg_sam_linear *linear) {
    char key[256];
    snprintf(key, sizeof key, "%s.weight", name);
    MG_TRY(mg_sam_get(weights, prefix, key, 2, (int64_t[]){out_dim, in_dim}, &linear->weight));
    snprintf(key, sizeof key, "%s.bias", name);
    int64_t bias_shape[1] = {linear->weight.shape[0]};
    if (need_bias) return mg_sam_get(weights, prefix, key, 1, bias_shape, &linear->bias);
    return mg_sam_get_optional(weights, prefix, key, 1, bias_shape, &linear->bias);
}

mg_status mg_sam_load_encoder(mg_sam *sam, const mg_weights *weights, const char *prefix) {
    char name[256];
    MG_TRY(mg_sam_get(weights, prefix, "image_encoder.patch_embed.proj.weight", 4,
                      (int64_t[]){-1, 3, -1, -1}, &sam->patch_weight));
    const int64_t dim = sam->patch_weight.shape[0];
    const int64_t patch = sam->patch_weight.shape[2];
    if (sam->patch_weight.shape[3] != patch)
        return mg_error(MG_ERR_SHAPE, "tensor %simage_encoder.patch_embed.proj.weight: patch is not square", prefix);
    MG_TRY(mg_sam_get(weights, prefix, "image_encoder.patch_embed.proj.bias", 1, (int64_t[]){dim},
                      &sam->patch_bias));
    MG_TRY(mg_sam_get(weights, prefix, "image_encoder.pos_embed", 4, (int64_t[]){1, -1, -1, dim},
                      &sam->pos_embed));
    const int64_t grid = sam->pos_embed.shape[1];
    if (sam->pos_embed.shape[2] != grid)
        return mg_error(MG_ERR_SHAPE, "tensor %simage_encoder.pos_embed: grid is not square", prefix);
    sam->embed_dim = (int)dim;
    sam->patch_size = (int)patch;
    sam->grid = (int)grid;
    sam->image_size = (int)(grid * patch);

    int depth = 0;
    for (;; depth++) {
        snprintf(name, sizeof name, "%simage_encoder.blocks.%d.norm1.weight", prefix, depth);
        if (!mg_weights_has(weights, name)) break;
        if (depth == MG_SAM_MAX_BLOCKS)
            return mg_error(MG_ERR_UNSUPPORTED, "SAM image encoder: more than %d blocks", MG_SAM_MAX_BLOCKS);
    }
    if (depth == 0)
        return mg_error(MG_ERR_NOT_FOUND, "SAM checkpoint: tensor %simage_encoder.blocks.0.norm1.weight is missing", prefix);
    sam->depth = depth;

    for (int i = 0; i < depth; i++) {
        mg_sam_block *block = &sam->blocks[i];
        char base[96];
        snprintf(base, sizeof base, "image_encoder.blocks.%d", i);
#define MG_NAME(suffix) (snprintf(name, sizeof name, "%s.%s", base, suffix), name)
        MG_TRY(mg_sam_get_norm(weights, prefix, MG_NAME("norm1"), dim, &block->norm1));
        MG_TRY(mg_sam_get_norm(weights, prefix, MG_NAME("norm2"), dim, &block->norm2));
        MG_TRY(mg_sam_get_linear(weights, prefix, MG_NAME("attn.qkv"), 3 * dim, dim, false, &block->qkv));
        MG_TRY(mg_sam_get_linear(weights, prefix, MG_NAME("attn.proj"), dim, dim, true, &block->proj));
        MG_TRY(mg_sam_get_linear(weights, prefix, MG_NAME("mlp.lin1"), -1, dim, true, &block->lin1));
        const int64_t mlp = block->lin1.weight.shape[0];
        MG_TRY(mg_sam_get_linear(weights, prefix, MG_NAME("mlp.lin2"), dim, mlp, true, &block->lin2));
        MG_TRY(mg_sam_get(weights, prefix, MG_NAME("attn.rel_pos_h"), 2, (int64_t[]){-1, -1}, &block->rel_pos_h));
        const int64_t span = block->rel_pos_h.shape[0], head_dim = block->rel_pos_h.shape[1];
        MG_TRY(mg_sam_get(weights, prefix, MG_NAME("attn.rel_pos_w"), 2, (int64_t[]){span, head_dim},
                          &block->rel_pos_w));
        /* rel_pos has 2*size-1 rows for a size x size attention field: the whole
         * grid for global blocks, the window otherwise (image_encoder.py). */
        if (span % 2 == 0 || head_dim <= 0 || dim % head_dim != 0)
            return mg_error(MG_ERR_SHAPE, "tensor %s%s.attn.rel_pos_h: [%lld, %lld] is not [2*size-1, head_dim] for width %lld",
                            prefix, base, (long long)span, (long long)head_dim, (long long)dim);
        const int size = (int)((span + 1) / 2);
        if (size > grid)
            return mg_error(MG_ERR_SHAPE, "tensor %s%s.attn.rel_pos_h: %lld rows exceed the %lldx%lld grid (interpolated rel-pos is not supported)",
                            prefix, base, (long long)span, (long long)grid, (long long)grid);
        block->window_size = size == grid ? 0 : size;
        if (i == 0) {
            sam->head_dim = (int)head_dim;
            sam->n_heads = (int)(dim / head_dim);
            sam->mlp_dim = (int)mlp;
        } else if (head_dim != sam->head_dim || mlp != sam->mlp_dim) {
            return mg_error(MG_ERR_SHAPE, "SAM image encoder: block %d has head_dim %lld / mlp %lld, block 0 has %d / %d",
                            i, (long long)head_dim, (long long)mlp, sam->head_dim, sam->mlp_dim);
        }
        /* Adapter_Layer(dim): hidden = int(dim * 0.25). */
        MG_TRY(mg_sam_get_optional(weights, prefix, MG_NAME("Adapter.channel.0.weight"), 2,
                                   (int64_t[]){-1, dim}, &block->adapter.channel_down));
        block->has_adapter = block->adapter.channel_down.data != NULL;
        if (block->has_adapter) {
            mg_sam_adapter *adapter = &block->adapter;
            const int64_t hidden = adapter->channel_down.shape[0];
            MG_TRY(mg_sam_get_norm(weights, prefix, MG_NAME("Adapter.norm"), dim, &adapter->norm));
            MG_TRY(mg_sam_get(weights, prefix, MG_NAME("Adapter.channel.2.weight"), 2,
                              (int64_t[]){dim, hidden}, &adapter->channel_up));
            MG_TRY(mg_sam_get(weights, prefix, MG_NAME("Adapter.spatial.0.weight"), 4,
                              (int64_t[]){dim, dim, 3, 3}, &adapter->spatial_conv));
            MG_TRY(mg_sam_get(weights, prefix, MG_NAME("Adapter.spatial.2.weight"), 4,
                              (int64_t[]){dim, dim, 4, 4}, &adapter->spatial_deconv));
            /* conv 3x3/s2/p1 then deconv 4x4/s2/p1 only restores an even grid. */
            if (grid % 2 != 0)
                return mg_error(MG_ERR_UNSUPPORTED, "SAM adapters need an even grid, got %lld", (long long)grid);
        }
#undef MG_NAME
    }

    MG_TRY(mg_sam_get(weights, prefix, "image_encoder.neck.0.weight", 4, (int64_t[]){-1, dim, 1, 1},
                      &sam->neck_conv1));
    const int64_t out_chans = sam->neck_conv1.shape[0];
    sam->out_chans = (int)out_chans;
    MG_TRY(mg_sam_get_norm(weights, prefix, "image_encoder.neck.1", out_chans, &sam->neck_norm1));
    MG_TRY(mg_sam_get(weights, prefix, "image_encoder.neck.2.weight", 4,
                      (int64_t[]){out_chans, out_chans, 3, 3}, &sam->neck_conv2));
    return mg_sam_get_norm(weights, prefix, "image_encoder.neck.3", out_chans, &sam->neck_norm2);
}

/* Loops below read these element by element, and the ops take f32 norms and
 * biases; checkpoints may hold bf16/f16 (MedPLIB's release is bf16). */
static bool mg_sam_is_f32(const mg_tensor *t) {
    return !t->data || (t->dtype == MG_F32 && mg_tensor_is_contiguous(t));
}

typedef struct {
    mg_tensor *slots[4096];
    int count;
} mg_sam_tensor_list;

static void mg_sam_collect(mg_sam_tensor_list *list, mg_tensor *t) {
    if (t->data && list->count < (int)(sizeof list->slots / sizeof list->slots[0]))
        list->slots[list->count++] = t;
}

/* Every tensor the C loops or small-op arguments read directly. GEMM weights
 * (mg_linear) stay in their stored dtype. */
static void mg_sam_small_tensors(mg_sam *sam, mg_sam_tensor_list *list) {
    mg_sam_collect(list, &sam->patch_weight);
    mg_sam_collect(list, &sam->patch_bias);
    mg_sam_collect(list, &sam->pos_embed);
    for (int i = 0; i < sam->depth; i++) {
        mg_sam_block *b = &sam->blocks[i];
        mg_tensor *ts[] = {&b->norm1.weight, &b->norm1.bias, &b->norm2.weight, &b->norm2.bias,
                           &b->qkv.bias, &b->proj.bias, &b->lin1.bias, &b->lin2.bias,
                           &b->rel_pos_h, &b->rel_pos_w, &b->adapter.norm.weight,
                           &b->adapter.norm.bias, &b->adapter.spatial_deconv};
        for (size_t j = 0; j < sizeof ts / sizeof ts[0]; j++) mg_sam_collect(list, ts[j]);
    }
    mg_tensor *ts[] = {&sam->neck_norm1.weight, &sam->neck_norm1.bias, &sam->neck_norm2.weight,
                       &sam->neck_norm2.bias, &sam->pe_gaussian, &sam->point_embed[0],
                       &sam->point_embed[1], &sam->point_embed[2], &sam->point_embed[3],
                       &sam->not_a_point, &sam->no_mask, &sam->mask_conv1.bias,
                       &sam->mask_conv2.bias, &sam->mask_conv3.bias, &sam->mask_norm1.weight,
                       &sam->mask_norm1.bias, &sam->mask_norm2.weight, &sam->mask_norm2.bias,
                       &sam->iou_token, &sam->mask_tokens, &sam->norm_final.weight,
                       &sam->norm_final.bias, &sam->upscale_deconv1.weight,
                       &sam->upscale_deconv1.bias, &sam->upscale_deconv2.weight,
                       &sam->upscale_deconv2.bias, &sam->upscale_norm.weight,
                       &sam->upscale_norm.bias};
    for (size_t j = 0; j < sizeof ts / sizeof ts[0]; j++) mg_sam_collect(list, ts[j]);
    mg_sam_linear *attns[3 * MG_SAM_DECODER_MAX_LAYERS * 4 + 4];
    int n_attn = 0;
    for (int l = 0; l < sam->decoder_depth; l++) {
        mg_sam_twoway_layer *layer = &sam->layers[l];
        mg_sam_attention *as[] = {&layer->self_attn, &layer->cross_token_to_image,
                                  &layer->cross_image_to_token};
        for (int a = 0; a < 3; a++) {
            attns[n_attn++] = &as[a]->q_proj;
            attns[n_attn++] = &as[a]->k_proj;
            attns[n_attn++] = &as[a]->v_proj;
            attns[n_attn++] = &as[a]->out_proj;
        }
        mg_tensor *lts[] = {&layer->norm1.weight, &layer->norm1.bias, &layer->norm2.weight,
                            &layer->norm2.bias, &layer->norm3.weight, &layer->norm3.bias,
                            &layer->norm4.weight, &layer->norm4.bias, &layer->lin1.bias,
                            &layer->lin2.bias};
        for (size_t j = 0; j < sizeof lts / sizeof lts[0]; j++) mg_sam_collect(list, lts[j]);
    }
    attns[n_attn++] = &sam->final_attn.q_proj;
    attns[n_attn++] = &sam->final_attn.k_proj;
    attns[n_attn++] = &sam->final_attn.v_proj;
    attns[n_attn++] = &sam->final_attn.out_proj;
    for (int a = 0; a < n_attn; a++) mg_sam_collect(list, &attns[a]->bias);
    for (int m = 0; m < sam->n_mask_tokens; m++)
        for (int j = 0; j < 3; j++) mg_sam_collect(list, &sam->hyper[m][j].bias);
    for (int j = 0; j < sam->iou_head_depth; j++) mg_sam_collect(list, &sam->iou_head[j].bias);
}

typedef struct mg_sam_owner {
    mg_sam model;
    void **buffers;
    int n_buffers;
} mg_sam_owner;

/* Small tensors are used as f32: f16/bf16 are widened and quantized ones
 * dequantized (`medground convert --type q4_0/q8_0` quantizes a 2-D tensor of
 * >= 1024 elements such as mask_decoder.mask_tokens [4, 256]). */
static mg_status mg_sam_make_f32(mg_sam_owner *owner, mg_tensor *t) {
    if (mg_sam_is_f32(t)) return MG_OK;
    mg_tensor converted;
    MG_TRY(mg_tensor_alloc(&converted, MG_F32, t->n_dims, t->shape));
    mg_status status = mg_tensor_convert(t, &converted);
    void **grown = realloc(owner->buffers, (size_t)(owner->n_buffers + 1) * sizeof *grown);
    if (status == MG_OK && !grown) status = mg_error(MG_ERR_NO_MEMORY, "SAM: out of memory");
    if (status != MG_OK) {
        mg_tensor_free_data(&converted);
        if (grown) owner->buffers = grown;
        return status;
    }
    owner->buffers = grown;
    owner->buffers[owner->n_buffers++] = converted.data;
    *t = converted;
    return MG_OK;
}

mg_status mg_sam_create(const mg_weights *weights, const char *prefix, int decoder_heads,
                        mg_sam **out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_sam_create: out is NULL");
    *out = NULL;
    if (!weights) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_sam_create: weights is NULL");
    if (!prefix) prefix = "";
    mg_sam_owner *owner = calloc(1, sizeof *owner);
    if (!owner) return mg_error(MG_ERR_NO_MEMORY, "SAM: out of memory");
    mg_sam *sam = &owner->model;
    sam->decoder_heads = decoder_heads > 0 ? decoder_heads : 8;
    mg_status status = mg_sam_load_encoder(sam, weights, prefix);
    if (status == MG_OK) status = mg_sam_load_prompt_encoder(sam, weights, prefix);
    if (status == MG_OK) status = mg_sam_load_decoder(sam, weights, prefix);
    if (status == MG_OK) {
        mg_sam_tensor_list *list = malloc(sizeof *list);
        if (!list) status = mg_error(MG_ERR_NO_MEMORY, "SAM: out of memory");
        if (list) {
            list->count = 0;
            mg_sam_small_tensors(sam, list);
            for (int i = 0; status == MG_OK && i < list->count; i++)
                status = mg_sam_make_f32(owner, list->slots[i]);
            free(list);
        }
    }
    if (status != MG_OK) {
        mg_sam_destroy(sam);
        return status;
    }
    *out = sam;
    return MG_OK;
}

void mg_sam_destroy(mg_sam *sam) {
    if (!sam) return;
    mg_sam_owner *owner = (mg_sam_owner *)sam; /* model is the first member */
    for (int i = 0; i < owner->n_buffers; i++) mg_aligned_free(owner->buffers[i]);
    free(owner->buffers);
    free(owner);
}

mg_status mg_sam_get_info(const mg_sam *sam, mg_sam_info *info) {
    if (!sam || !info) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_sam_get_info: NULL argument");
    memset(info, 0, sizeof *info);
    info->image_size = sam->image_size;
    info->patch_size = sam->patch_size;
    info->grid = sam->grid;
    info->embed_dim = sam->embed_dim;
    info->depth = sam->depth;
    info->n_heads = sam->n_heads;
    info->adapters = sam->depth > 0 && sam->blocks[0].has_adapter;
    for (int i = 0; i < sam->depth; i++) {
        if (sam->blocks[i].window_size == 0) {
            if (info->n_global_blocks < 16) info->global_blocks[info->n_global_blocks] = i;
            info->n_global_blocks++;
        } else {
            info->window_size = sam->blocks[i].window_size;
        }
    }
    info->prompt_dim = sam->out_chans;
    info->decoder_heads = sam->decoder_heads;
    info->n_mask_tokens = sam->n_mask_tokens;
    info->low_res_size = 4 * sam->grid;
    return MG_OK;
}

/* ------------------------------------------------------------ preprocess */

mg_status mg_sam_preprocess(const mg_sam *sam, const uint8_t *pixels, int height, int width,
                            int channels, mg_tensor *image) {
    if (!sam || !pixels || !image)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_sam_preprocess: NULL argument");
    if (height <= 0 || width <= 0 || height > 65535 || width > 65535)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "SAM preprocess: image size %dx%d is out of range", width, height);
    if (channels != 1 && channels != 3)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "SAM preprocess: expected 1 (gray) or 3 (RGB) channels, got %d", channels);
    const int size = sam->image_size;
    if (image->dtype != MG_F32 || image->n_dims != 3 || image->shape[0] != 3 ||
        image->shape[1] != size || image->shape[2] != size || !mg_tensor_is_contiguous(image)) {
        char got[96];
        return mg_error(MG_ERR_SHAPE, "SAM preprocess: output must be contiguous f32[3, %d, %d], got %s", size,
                        size, mg_tensor_describe(image, got, sizeof got));
    }
    /* cv2.resize INTER_NEAREST (SammedPredictor via albumentations): scale
     * inv_scale = dst/src, ifx = 1/inv_scale, src = min(floor(dst*ifx), src-1),
     * computed exactly like OpenCV's resizeNN so boundaries agree. */
    int *src_x = malloc((size_t)size * sizeof *src_x);
    int *src_y = malloc((size_t)size * sizeof *src_y);
    if (!src_x || !src_y) {
        free(src_x);
        free(src_y);
        return mg_error(MG_ERR_NO_MEMORY, "SAM preprocess: out of memory");
    }
    const double ifx = 1.0 / ((double)size / width), ify = 1.0 / ((double)size / height);
    for (int i = 0; i < size; i++) {
        int sx = (int)floor(i * ifx), sy = (int)floor(i * ify);
        src_x[i] = sx < width - 1 ? sx : width - 1;
        src_y[i] = sy < height - 1 ? sy : height - 1;
    }
    float *dst = image->data;
    for (int c = 0; c < 3; c++) {
        const int source_channel = channels == 1 ? 0 : c;
        for (int y = 0; y < size; y++) {
            const uint8_t *row = pixels + (size_t)src_y[y] * width * channels;
            float *out_row = dst + ((size_t)c * size + y) * size;
            for (int x = 0; x < size; x++)
                out_row[x] = (float)((row[(size_t)src_x[x] * channels + source_channel] - mg_sam_pixel_mean[c]) /
                                     mg_sam_pixel_std[c]);
        }
    }
    free(src_x);
    free(src_y);
    return MG_OK;
}

/* ------------------------------------------------------------ encoder */

/* Decomposed relative position bias (MViTv2; SAM add_decomposed_rel_pos):
 * bias[h, i, j] = q_i·Rh[qy - ky + size-1] + q_i·Rw[qx - kx + size-1], with
 * the UNSCALED query, for a size x size field. q is a [T, H, hd] view. */
static void mg_sam_rel_pos_bias(const mg_tensor *q, const mg_sam_block *block, int size,
                                int n_heads, int head_dim, float *bias, float *rel_h, float *rel_w) {
    const int64_t tokens = (int64_t)size * size;
    const float *rh = block->rel_pos_h.data, *rw = block->rel_pos_w.data;
    const int64_t q_row = q->strides[0] / 4, q_head = q->strides[1] / 4;
    const float *qd = q->data;
    for (int h = 0; h < n_heads; h++) {
        for (int64_t i = 0; i < tokens; i++) {
            const float *qi = qd + i * q_row + h * q_head;
            const int qy = (int)(i / size), qx = (int)(i % size);
            for (int k = 0; k < size; k++) {
                const float *eh = rh + (int64_t)(qy - k + size - 1) * head_dim;
                const float *ew = rw + (int64_t)(qx - k + size - 1) * head_dim;
                float sh = 0.0f, sw = 0.0f;
                for (int c = 0; c < head_dim; c++) {
                    sh += qi[c] * eh[c];
                    sw += qi[c] * ew[c];
                }
                rel_h[k] = sh;
                rel_w[k] = sw;
            }
            float *row = bias + ((int64_t)h * tokens + i) * tokens;
            for (int ky = 0; ky < size; ky++)
                for (int kx = 0; kx < size; kx++) row[ky * size + kx] = rel_h[ky] + rel_w[kx];
        }
    }
}

/* Attention of one block, windowed or global, written to attn_out[G*G, D].
 * Window partition pads the normalised map with zeros to a multiple of the
 * window; the padded tokens are NOT masked and take part as keys and values,
 * exactly as window_partition + Attention do upstream. */
static mg_status mg_sam_block_attention(mg_context *ctx, mg_arena *arena, const mg_sam *sam,
                                        const mg_sam_block *block, const mg_tensor *xn,
                                        mg_tensor *attn_out) {
    const int grid = sam->grid, dim = sam->embed_dim, heads = sam->n_heads, hd = sam->head_dim;
    const int size = block->window_size ? block->window_size : grid;
    const int n_win = (grid + size - 1) / size;
    const int64_t tokens = (int64_t)size * size;
    const size_t mark = mg_arena_mark(arena);
    mg_tensor xw, qkv, bias, out, projected;
    MG_TRY(mg_sam_tensor(arena, &xw, 2, (int64_t[]){tokens, dim}));
    MG_TRY(mg_sam_tensor(arena, &qkv, 2, (int64_t[]){tokens, 3 * (int64_t)dim}));
    MG_TRY(mg_sam_tensor(arena, &bias, 3, (int64_t[]){heads, tokens, tokens}));
    MG_TRY(mg_sam_tensor(arena, &out, 3, (int64_t[]){tokens, heads, hd}));
    MG_TRY(mg_sam_tensor(arena, &projected, 2, (int64_t[]){tokens, dim}));
    float *rel = mg_arena_alloc(arena, 2 * (size_t)size * sizeof(float), 64);
    if (!rel) return MG_ERR_NO_MEMORY;
    /* qkv columns are laid out [3, heads, hd]: q, k, v are strided views. */
    mg_tensor q = qkv, k, v;
    q.n_dims = 3;
    q.shape[0] = tokens;
    q.shape[1] = heads;
    q.shape[2] = hd;
    q.shape[3] = 1;
    q.strides[0] = 3 * (int64_t)dim * 4;
    q.strides[1] = (int64_t)hd * 4;
    q.strides[2] = 4;
    q.strides[3] = 4;
    k = q;
    v = q;
    k.data = (float *)qkv.data + dim;
    v.data = (float *)qkv.data + 2 * dim;
    mg_tensor out_rows;
    MG_TRY(mg_tensor_reshape(&out, 2, (int64_t[]){tokens, dim}, &out_rows));
    const float scale = 1.0f / sqrtf((float)hd);
    const float *src = xn->data;
    float *dst = attn_out->data;
    for (int wy = 0; wy < n_win; wy++) {
        for (int wx = 0; wx < n_win; wx++) {
            float *rows = xw.data;
            for (int i = 0; i < size; i++) {
                for (int j = 0; j < size; j++) {
                    const int gy = wy * size + i, gx = wx * size + j;
                    float *row = rows + ((int64_t)i * size + j) * dim;
                    if (gy < grid && gx < grid)
                        memcpy(row, src + ((int64_t)gy * grid + gx) * dim, (size_t)dim * sizeof(float));
                    else
                        memset(row, 0, (size_t)dim * sizeof(float));
                }
            }
            MG_TRY(mg_linear(ctx, &xw, &block->qkv.weight, block->qkv.bias.data ? &block->qkv.bias : NULL, &qkv));
            mg_sam_rel_pos_bias(&q, block, size, heads, hd, bias.data, rel, rel + size);
            MG_TRY(mg_attention(ctx, &q, &k, &v, &bias, false, scale, &out));
            MG_TRY(mg_linear(ctx, &out_rows, &block->proj.weight, &block->proj.bias, &projected));
            const float *prow = projected.data;
            for (int i = 0; i < size; i++) {
                for (int j = 0; j < size; j++) {
                    const int gy = wy * size + i, gx = wx * size + j;
                    if (gy < grid && gx < grid)
                        memcpy(dst + ((int64_t)gy * grid + gx) * dim, prow + ((int64_t)i * size + j) * dim,
                               (size_t)dim * sizeof(float));
                }
            }
        }
    }
    mg_arena_reset_to(arena, mark);
    return MG_OK;
}

/* SAM-Med2D Adapter_Layer on n[G*G, D] (the norm2 output), added into x:
 * gate = sigmoid(W2 relu(W1 avgpool(n))); s = relu(deconv(relu(conv(gate*n))));
 * x += LayerNorm_1e-5(n + s). */
static mg_status mg_sam_adapter_forward(mg_context *ctx, mg_arena *arena, const mg_sam *sam,
                                        const mg_sam_adapter *adapter, const mg_tensor *n,
                                        mg_tensor *x) {
    const int grid = sam->grid, dim = sam->embed_dim;
    const int64_t tokens = (int64_t)grid * grid, hidden = adapter->channel_down.shape[0];
    const size_t mark = mg_arena_mark(arena);
    mg_tensor pooled, squeezed, gate, gated, summed, normed;
    MG_TRY(mg_sam_tensor(arena, &pooled, 2, (int64_t[]){1, dim}));
    MG_TRY(mg_sam_tensor(arena, &squeezed, 2, (int64_t[]){1, hidden}));
    MG_TRY(mg_sam_tensor(arena, &gate, 2, (int64_t[]){1, dim}));
    const float *nd = n->data;
    float *pd = pooled.data;
    for (int c = 0; c < dim; c++) pd[c] = 0.0f;
    for (int64_t t = 0; t < tokens; t++)
        for (int c = 0; c < dim; c++) pd[c] += nd[t * dim + c];
    for (int c = 0; c < dim; c++) pd[c] /= (float)tokens;
    MG_TRY(mg_linear(ctx, &pooled, &adapter->channel_down, NULL, &squeezed));
    MG_TRY(mg_activate(ctx, &squeezed, MG_ACT_RELU, &squeezed));
    MG_TRY(mg_linear(ctx, &squeezed, &adapter->channel_up, NULL, &gate));
    float *gd = gate.data;
    for (int c = 0; c < dim; c++) gd[c] = 1.0f / (1.0f + expf(-gd[c]));
    MG_TRY(mg_sam_tensor(arena, &gated, 3, (int64_t[]){grid, grid, dim}));
    mg_tensor gate_row, gated_rows;
    MG_TRY(mg_tensor_reshape(&gate, 1, (int64_t[]){dim}, &gate_row));
    MG_TRY(mg_tensor_reshape(&gated, 2, (int64_t[]){tokens, dim}, &gated_rows));
    MG_TRY(mg_mul(ctx, n, &gate_row, &gated_rows));
    mg_tensor down, up;
    MG_TRY(mg_sam_conv2d(ctx, arena, &gated, &adapter->spatial_conv, NULL, 2, 1, &down));
    MG_TRY(mg_activate(ctx, &down, MG_ACT_RELU, &down));
    MG_TRY(mg_sam_conv_transpose2d(ctx, arena, &down, &adapter->spatial_deconv, NULL, 2, 1, &up));
    if (up.shape[0] != grid || up.shape[1] != grid)
        return mg_error(MG_ERR_INTERNAL, "SAM adapter: spatial branch gave %lldx%lld for a %dx%d grid",
                        (long long)up.shape[0], (long long)up.shape[1], grid, grid);
    MG_TRY(mg_activate(ctx, &up, MG_ACT_RELU, &up));
    mg_tensor up_rows;
    MG_TRY(mg_tensor_reshape(&up, 2, (int64_t[]){tokens, dim}, &up_rows));
    MG_TRY(mg_sam_tensor(arena, &summed, 2, (int64_t[]){tokens, dim}));
    MG_TRY(mg_sam_tensor(arena, &normed, 2, (int64_t[]){tokens, dim}));
    MG_TRY(mg_add(ctx, n, &up_rows, &summed));
    MG_TRY(mg_layer_norm(ctx, &summed, &adapter->norm.weight, &adapter->norm.bias, MG_SAM_ADAPTER_EPS,
                         &normed));
    MG_TRY(mg_add(ctx, x, &normed, x));
    mg_arena_reset_to(arena, mark);
    return MG_OK;
}

/* One ViT block: x += attn(norm1 x); n = norm2 x; x += mlp(n) + adapter(n). */
static mg_status mg_sam_block_forward(mg_context *ctx, mg_arena *arena, const mg_sam *sam,
                                      const mg_sam_block *block, mg_tensor *x, mg_tensor *xn,
                                      mg_tensor *attn, mg_tensor *mlp_out) {
    const int64_t tokens = (int64_t)sam->grid * sam->grid;
    const size_t mark = mg_arena_mark(arena);
    MG_TRY(mg_layer_norm(ctx, x, &block->norm1.weight, &block->norm1.bias, MG_SAM_BLOCK_EPS, xn));
    MG_TRY(mg_sam_block_attention(ctx, arena, sam, block, xn, attn));
    MG_TRY(mg_add(ctx, x, attn, x));
    MG_TRY(mg_layer_norm(ctx, x, &block->norm2.weight, &block->norm2.bias, MG_SAM_BLOCK_EPS, xn));
    mg_tensor hidden;
    MG_TRY(mg_sam_tensor(arena, &hidden, 2, (int64_t[]){tokens, sam->mlp_dim}));
    MG_TRY(mg_linear(ctx, xn, &block->lin1.weight, &block->lin1.bias, &hidden));
    MG_TRY(mg_activate(ctx, &hidden, MG_ACT_GELU_ERF, &hidden));
    MG_TRY(mg_linear(ctx, &hidden, &block->lin2.weight, &block->lin2.bias, mlp_out));
    mg_arena_reset_to(arena, mark);
    MG_TRY(mg_add(ctx, x, mlp_out, x));
    if (block->has_adapter) MG_TRY(mg_sam_adapter_forward(ctx, arena, sam, &block->adapter, xn, x));
    return MG_OK;
}

static size_t mg_sam_encoder_scratch_floats(const mg_sam *sam) {
    const size_t grid = (size_t)sam->grid, dim = (size_t)sam->embed_dim;
    const size_t tokens = grid * grid, heads = (size_t)sam->n_heads;
    size_t window_tokens = tokens;
    for (int i = 0; i < sam->depth; i++) {
        size_t size = (size_t)(sam->blocks[i].window_size ? sam->blocks[i].window_size : sam->grid);
        if (size * size > window_tokens) window_tokens = size * size;
    }
    const size_t quarter = (grid / 2 + 1) * (grid / 2 + 1);
    size_t persistent = 4 * tokens * dim;                        /* x, xn, attn, mlp out */
    size_t attention = window_tokens * (6 * dim + heads * window_tokens) + 4 * window_tokens;
    size_t mlp = tokens * (size_t)sam->mlp_dim;
    size_t adapter = 4 * tokens * dim + quarter * (9 * dim + dim + 16 * dim) + 4 * dim;
    size_t neck = tokens * (size_t)sam->out_chans * 14 + tokens * dim;
    size_t block = attention > mlp + adapter ? attention : mlp + adapter;
    if (neck > block) block = neck;
    return persistent + block + 1024;
}

mg_status mg_sam_encode_image(mg_context *ctx, const mg_sam *sam, const mg_tensor *image,
                              mg_tensor *embedding) {
    if (!ctx || !sam || !image || !embedding)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_sam_encode_image: NULL argument");
    const int size = sam->image_size, grid = sam->grid, dim = sam->embed_dim, chans = sam->out_chans;
    char got[96];
    if (image->n_dims != 3 || image->shape[0] != 3 || image->shape[1] != size || image->shape[2] != size)
        return mg_error(MG_ERR_SHAPE, "SAM image encoder: image must be [3, %d, %d], got %s", size, size,
                        mg_tensor_describe(image, got, sizeof got));
    if (embedding->dtype != MG_F32 || embedding->n_dims != 3 || embedding->shape[0] != chans ||
        embedding->shape[1] != grid || embedding->shape[2] != grid)
        return mg_error(MG_ERR_SHAPE, "SAM image encoder: embedding must be f32[%d, %d, %d], got %s", chans,
                        grid, grid, mg_tensor_describe(embedding, got, sizeof got));
    const int64_t tokens = (int64_t)grid * grid;
    mg_arena arena;
    MG_TRY(mg_sam_scratch(&arena, mg_sam_encoder_scratch_floats(sam)));
    mg_status status = MG_OK;
#define MG_STEP(expr)                        \
    do {                                     \
        status = (expr);                     \
        if (status != MG_OK) goto done;      \
    } while (0)
    mg_tensor x, xn, attn, mlp_out, pos;
    MG_STEP(mg_sam_tensor(&arena, &x, 2, (int64_t[]){tokens, dim}));
    MG_STEP(mg_sam_tensor(&arena, &xn, 2, (int64_t[]){tokens, dim}));
    MG_STEP(mg_sam_tensor(&arena, &attn, 2, (int64_t[]){tokens, dim}));
    MG_STEP(mg_sam_tensor(&arena, &mlp_out, 2, (int64_t[]){tokens, dim}));
    MG_STEP(mg_patch_embed(ctx, image, &sam->patch_weight, &sam->patch_bias, &x));
    MG_STEP(mg_tensor_reshape(&sam->pos_embed, 2, (int64_t[]){tokens, dim}, &pos));
    MG_STEP(mg_add(ctx, &x, &pos, &x));

    for (int i = 0; i < sam->depth; i++) {
        status = mg_sam_block_forward(ctx, &arena, sam, &sam->blocks[i], &x, &xn, &attn, &mlp_out);
        if (status != MG_OK) {
            status = mg_error_prefix(status, "SAM image encoder block %d", i);
            goto done;
        }
    }

    /* neck: conv1x1 -> LayerNorm2d -> conv3x3 (pad 1) -> LayerNorm2d */
    {
        mg_tensor map, n1, n1_rows, n1_map, c2, c2_rows, final_rows;
        MG_STEP(mg_tensor_reshape(&x, 3, (int64_t[]){grid, grid, dim}, &map));
        MG_STEP(mg_sam_conv2d(ctx, &arena, &map, &sam->neck_conv1, NULL, 1, 0, &n1));
        MG_STEP(mg_tensor_reshape(&n1, 2, (int64_t[]){tokens, chans}, &n1_rows));
        MG_STEP(mg_sam_tensor(&arena, &n1_map, 3, (int64_t[]){grid, grid, chans}));
        mg_tensor n1_map_rows;
        MG_STEP(mg_tensor_reshape(&n1_map, 2, (int64_t[]){tokens, chans}, &n1_map_rows));
        MG_STEP(mg_layer_norm(ctx, &n1_rows, &sam->neck_norm1.weight, &sam->neck_norm1.bias, MG_SAM_NECK_EPS,
                              &n1_map_rows));
        MG_STEP(mg_sam_conv2d(ctx, &arena, &n1_map, &sam->neck_conv2, NULL, 1, 1, &c2));
        MG_STEP(mg_tensor_reshape(&c2, 2, (int64_t[]){tokens, chans}, &c2_rows));
        MG_STEP(mg_sam_tensor(&arena, &final_rows, 2, (int64_t[]){tokens, chans}));
        MG_STEP(mg_layer_norm(ctx, &c2_rows, &sam->neck_norm2.weight, &sam->neck_norm2.bias, MG_SAM_NECK_EPS,
                              &final_rows));
        /* channels-last [G*G, C] -> [C, G, G] */
        mg_tensor transposed;
        MG_STEP(mg_tensor_permute(&final_rows, (const int[]){1, 0}, &transposed));
        mg_tensor target;
        MG_STEP(mg_tensor_reshape(embedding, 2, (int64_t[]){chans, tokens}, &target));
        MG_STEP(mg_tensor_convert(&transposed, &target));
    }
done:
#undef MG_STEP
    mg_arena_destroy(&arena);
    return status;
}
