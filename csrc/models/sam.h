/* Internal: SAM-Med2D (ViT-B image encoder with adapters, prompt encoder,
 * two-way-transformer mask decoder). One struct holds the hyper-parameters
 * (all read from tensor shapes, like ggml's "hyper-parameters from the file")
 * and borrowed views of every tensor, named after the checkpoint keys of
 * OpenGVLab/SAM-Med2D segment_anything/modeling (image_encoder.py, prompt_encoder.py,
 * mask_decoder.py, transformer.py). */
#ifndef MG_MODELS_SAM_H
#define MG_MODELS_SAM_H

#include "core/core.h"

#define MG_SAM_MAX_BLOCKS 64
#define MG_SAM_MAX_MASK_TOKENS 8
#define MG_SAM_DECODER_MAX_LAYERS 8

/* nn.Linear: weight [out, in], bias [out] (bias.data NULL when absent). */
typedef struct mg_sam_linear {
    mg_tensor weight, bias;
} mg_sam_linear;

/* nn.LayerNorm / LayerNorm2d: weight [C], bias [C]. */
typedef struct mg_sam_norm {
    mg_tensor weight, bias;
} mg_sam_norm;

typedef struct mg_sam_adapter {
    mg_sam_norm norm;            /* Adapter.norm: nn.LayerNorm default eps 1e-5  */
    mg_tensor channel_down;      /* Adapter.channel.0.weight [D/4, D], no bias   */
    mg_tensor channel_up;        /* Adapter.channel.2.weight [D, D/4], no bias   */
    mg_tensor spatial_conv;      /* Adapter.spatial.0.weight [D, D, 3, 3]        */
    mg_tensor spatial_deconv;    /* Adapter.spatial.2.weight [D, D, 4, 4] (in, out, kh, kw) */
} mg_sam_adapter;

typedef struct mg_sam_block {
    mg_sam_norm norm1, norm2;
    mg_sam_linear qkv, proj, lin1, lin2;
    mg_tensor rel_pos_h, rel_pos_w; /* [2*size-1, head_dim] */
    int window_size;                /* 0 = global attention over the whole grid */
    bool has_adapter;
    mg_sam_adapter adapter;
} mg_sam_block;

typedef struct mg_sam_attention {
    mg_sam_linear q_proj, k_proj, v_proj, out_proj;
    int internal_dim;
} mg_sam_attention;

typedef struct mg_sam_twoway_layer {
    mg_sam_attention self_attn, cross_token_to_image, cross_image_to_token;
    mg_sam_norm norm1, norm2, norm3, norm4;
    mg_sam_linear lin1, lin2;
} mg_sam_twoway_layer;

struct mg_sam {
    /* encoder hyper-parameters */
    int image_size, patch_size, grid, embed_dim, depth, n_heads, head_dim, mlp_dim;
    int out_chans; /* = prompt / decoder dim */
    /* encoder tensors */
    mg_tensor patch_weight, patch_bias, pos_embed;
    mg_sam_block blocks[MG_SAM_MAX_BLOCKS];
    mg_tensor neck_conv1;  /* neck.0.weight [C, D, 1, 1] */
    mg_sam_norm neck_norm1;
    mg_tensor neck_conv2;  /* neck.2.weight [C, C, 3, 3] */
    mg_sam_norm neck_norm2;

    /* prompt encoder */
    mg_tensor pe_gaussian;         /* [2, C/2] */
    mg_tensor point_embed[4];      /* [1, C] each: neg, pos, box corner 1, box corner 2 */
    mg_tensor not_a_point, no_mask;/* [1, C] */
    mg_sam_linear mask_conv1, mask_conv2, mask_conv3; /* mask_downscaling.0/.3/.6 */
    mg_sam_norm mask_norm1, mask_norm2;               /* mask_downscaling.1/.4 */
    int mask_in_chans;
    bool has_mask_downscaling;

    /* mask decoder */
    int decoder_heads, decoder_depth, decoder_mlp_dim, n_mask_tokens;
    mg_tensor iou_token, mask_tokens;
    mg_sam_twoway_layer layers[MG_SAM_DECODER_MAX_LAYERS];
    mg_sam_attention final_attn;
    mg_sam_norm norm_final;
    mg_sam_linear upscale_deconv1, upscale_deconv2; /* output_upscaling.0/.3 */
    mg_sam_norm upscale_norm;                       /* output_upscaling.1 */
    mg_sam_linear hyper[MG_SAM_MAX_MASK_TOKENS][3];
    mg_sam_linear iou_head[3];
    int iou_head_depth;
};

/* ---- shared helpers (sam_encoder.c) ---- */

/* Scratch arena sized for one SAM forward step; caller destroys. */
mg_status mg_sam_scratch(mg_arena *arena, size_t floats);

/* Conv2d on a channels-last map x[H, W, C] with weight [O, C, kh, kw]
 * (square kernel), optional bias, into out[Ho, Wo, O] (allocated from the
 * arena). im2col + mg_linear, so any mg_linear weight dtype works. */
mg_status mg_sam_conv2d(mg_context *ctx, mg_arena *arena, const mg_tensor *x, const mg_tensor *weight,
                        const mg_tensor *bias, int stride, int padding, mg_tensor *out);

/* ConvTranspose2d on x[H, W, Cin] with weight [Cin, Cout, k, k], optional
 * bias [Cout], into out[Ho, Wo, Cout], Ho = (H-1)*stride - 2*padding + k.
 * One GEMM (x · W as [Cin, Cout*k*k]) followed by a col2im scatter-add. */
mg_status mg_sam_conv_transpose2d(mg_context *ctx, mg_arena *arena, const mg_tensor *x,
                                  const mg_tensor *weight, const mg_tensor *bias, int stride,
                                  int padding, mg_tensor *out);

/* LayerNorm2d on a channels-last map x[H, W, C] into a new arena tensor. */
mg_status mg_sam_norm_map(mg_context *ctx, mg_arena *arena, const mg_tensor *x, const mg_sam_norm *norm,
                          float eps, mg_tensor *out);

/* Allocates a contiguous f32 tensor from the arena. */
mg_status mg_sam_tensor(mg_arena *arena, mg_tensor *t, int n_dims, const int64_t *shape);

/* The tensor `prefix + name`, checked against the expected shape (entries
 * < 0 are free and returned through `shape` when not NULL). */
mg_status mg_sam_get(const mg_weights *weights, const char *prefix, const char *name, int n_dims,
                     const int64_t *shape, mg_tensor *out);
/* Same, but absent tensors leave out->data NULL and return MG_OK. */
mg_status mg_sam_get_optional(const mg_weights *weights, const char *prefix, const char *name,
                              int n_dims, const int64_t *shape, mg_tensor *out);

/* ---- per-file loaders ---- */
mg_status mg_sam_load_encoder(mg_sam *sam, const mg_weights *weights, const char *prefix);
mg_status mg_sam_load_prompt_encoder(mg_sam *sam, const mg_weights *weights, const char *prefix);
mg_status mg_sam_load_decoder(mg_sam *sam, const mg_weights *weights, const char *prefix);

#endif
