/* Internal helpers shared by the model building blocks (vit.c, resampler.c,
 * decoder.c, bird.c, generate.c): weight lookup with shape checks, linear
 * weights in any supported format (including GPTQ int4 dequantised at load),
 * owned conversions, and scratch arenas. Not part of the public API. */
#ifndef MG_MODELS_H
#define MG_MODELS_H

#include "core/core.h"

/* Whether linears over weights of this type round their activations anyway
 * (bf16 GEMMs; the int8 GEMM's q8_0 activations): there an f16 KV cache,
 * bf16 attention products or the f32 GELU add an error of the same order
 * or far below. f32 and f16
 * weights are widened exactly into f32 GEMMs. */
static inline bool mg_weights_round_activations(mg_dtype weights) {
    return weights == MG_BF16 || weights == MG_Q8_0 || weights == MG_Q4_0;
}

/* Memory a model made at load time (converted or transposed weights). One
 * list per model object; mg_owned_free releases everything in it. */
typedef struct mg_owned {
    void **blocks;
    int64_t n_blocks, cap_blocks;
} mg_owned;

void mg_owned_free(mg_owned *owned);
/* A new contiguous tensor whose data the list owns. */
mg_status mg_owned_tensor(mg_owned *owned, mg_tensor *t, mg_dtype dtype, int n_dims,
                          const int64_t *shape);

/* The tensor `name` with exactly the given shape (n_dims entries), else
 * MG_ERR_NOT_FOUND / MG_ERR_SHAPE naming the tensor and both shapes. The
 * result is a borrowed view of the weights table. */
mg_status mg_model_get(const mg_weights *weights, const char *name, int n_dims,
                       const int64_t *shape, mg_tensor *out);
/* Same, converted to f32 when stored otherwise (copy owned by `owned`). */
mg_status mg_model_get_f32(const mg_weights *weights, mg_owned *owned, const char *name,
                           int n_dims, const int64_t *shape, mg_tensor *out);

/* A torch-layout linear weight [out_features, in_features] called
 * `<base>.weight` (and `<base>.bias` [out_features] when want_bias), in a dtype
 * mg_linear accepts (converted by policy). When `<base>.weight` is absent and
 * `<base>.qweight` exists, the GPTQ tensors (qweight/qzeros/scales/g_idx and
 * the optional bias) are dequantised (see mg_gptq_dequantize) and stored f16
 * unless the policy converts. want_bias false: a bias tensor that is all
 * zeros (GPTQ's placeholder) is skipped, any other is MG_ERR_FORMAT;
 * *bias_out->data is NULL when there is no bias to add. */
mg_status mg_model_get_linear(const mg_weights *weights, mg_owned *owned, const char *base,
                              int64_t out_features, int64_t in_features, bool want_bias,
                              const mg_model_weights_options *policy, mg_tensor *weight_out,
                              mg_tensor *bias_out);

/* `stored` (a view of tensor `name`) re-encoded per policy into a dtype
 * mg_linear accepts; a borrowed view when no conversion is needed. */
mg_status mg_model_matrix(mg_owned *owned, const char *name, const mg_tensor *stored,
                          const mg_model_weights_options *policy, mg_tensor *out);

/* GPTQ (AutoGPTQ "v1" packing, sym, desc_act any): qweight int32 [in/8, out],
 * eight 4-bit values per int32 along the input dim (value j of word r = input
 * row 8r+j, bits 4j..4j+3); qzeros int32 [groups, out/8] packed along the output
 * dim, stored zero = real zero - 1; scales f16 [groups, out]; g_idx int32 [in]
 * (group of each input row). W[o, i] = scales[g][o] * (q[i][o] - (z[g][o] + 1)),
 * g = g_idx[i]. Writes f32 W [out, in]. */
mg_status mg_gptq_dequantize(const mg_weights *weights, const char *base, int64_t out_features,
                             int64_t in_features, float *w_out);

/* Make sure the arena holds at least `bytes` (re-created empty when smaller). */
mg_status mg_scratch_reserve(mg_arena *arena, size_t bytes);

/* Row r of a 2-D tensor (any float/quantized dtype) as f32 into dst. */
mg_status mg_model_row_f32(const mg_tensor *t, int64_t row, float *dst);

/* Strided view [d0, d1, d2] over f32 data with element strides s0, s1, s2. */
mg_tensor mg_view3_f32(float *data, int64_t d0, int64_t d1, int64_t d2, int64_t s0, int64_t s1,
                       int64_t s2);
mg_tensor mg_view2_f32(float *data, int64_t d0, int64_t d1);

/* Position tables. A learned table of g*g rows laid out row-major over a g x g
 * grid is resized to an h x w grid with torch's bicubic (align_corners=False,
 * A = -0.75) as Qwen-VL's get_abs_pos does; rows are channels. table[g*g, C]
 * -> out[h*w, C] f32. Scratch comes from `arena`. */
mg_status mg_resize_position_table(mg_context *ctx, mg_arena *arena, const mg_tensor *table,
                                   int64_t grid, int64_t h, int64_t w, mg_tensor *out);

/* Load tracking: between mg_model_track_begin and mg_model_track_end, every
 * tensor name the helpers above look up is recorded for the calling thread;
 * track_end then fails with MG_ERR_FORMAT naming the first tensor of
 * `weights` that was never looked up (when check is true). */
void mg_model_track_begin(void);
void mg_model_note(const char *name);
mg_status mg_model_track_end(const mg_weights *weights, bool check);

/* The dynamic-NTK alpha a prefill of `prefill_length` tokens on an empty
 * cache picks (1 when the model has no dynamic NTK). */
float mg_decoder_ntk_alpha(const mg_decoder *d, int prefill_length);

/* snprintf into a fixed name buffer, failing loudly on truncation. */
mg_status mg_name(char *buf, size_t size, const char *fmt, ...) MG_PRINTF(3, 4);

#define MG_NAME_MAX 256

#endif
