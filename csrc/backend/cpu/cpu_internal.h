/* Shared pieces of the CPU backend: argument checks, scratch copies of
 * strided inputs, a range-splitting parallel loop, the GEMM providers and
 * the SIMD kernel table. Internal to csrc/backend/cpu. */
#ifndef MG_CPU_INTERNAL_H
#define MG_CPU_INTERNAL_H

#include "../backend.h"

/* Kernel instruction-set level, picked once per context from the CPU (and
 * capped by MG_CPU_ISA=scalar|avx2|avx512|avx512_vnni so tests can reach
 * every path). */
typedef enum mg_cpu_isa {
    MG_ISA_SCALAR = 0,
    MG_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    MG_ISA_AVX512 = 2, /* AVX-512 F/BW/VL/DQ */
    MG_ISA_AVX512_VNNI = 3,
    MG_ISA_AVX512_BF16 = 4, /* VNNI + AVX-512 BF16 (vdpbf16ps) */
} mg_cpu_isa;

typedef struct mg_cpu_state mg_cpu_state;

mg_status mg_cpu_state_create(mg_context *ctx, void **state);
void mg_cpu_state_destroy(void *state);
mg_cpu_isa mg_cpu_context_isa(mg_context *ctx);

/* ----------------------------------------------------------- checks */

#define MG_DESCRIBE_SIZE 96
/* "f32[2, 3]" or "NULL". */
const char *mg_cpu_describe(const mg_tensor *t, char buf[MG_DESCRIBE_SIZE]);

/* t is non-NULL, on the host, has data and 1..max_dims dims. */
mg_status mg_cpu_check_input(const char *op, const char *what, const mg_tensor *t, int max_dims);
/* out is an f32, contiguous host tensor of exactly this shape. */
mg_status mg_cpu_check_output(const char *op, const mg_tensor *out, int n_dims,
                              const int64_t *shape);
/* A weight/bias vector of length n in f32/f16/bf16. */
mg_status mg_cpu_check_vector(const char *op, const char *what, const mg_tensor *t, int64_t n);

/* Contiguous f32 data of t: the tensor's own memory when it already is
 * contiguous f32, otherwise a converted scratch copy (f16/bf16 accepted only
 * when allow_half). Release with mg_cpu_f32_release. */
typedef struct mg_cpu_f32 {
    const float *data;
    float *owned;
} mg_cpu_f32;
mg_status mg_cpu_f32_input(const char *op, const char *what, const mg_tensor *t, bool allow_half,
                           mg_cpu_f32 *out);
void mg_cpu_f32_release(mg_cpu_f32 *v);

/* Byte strides of `t` broadcast (NumPy rules) onto a shape of n_dims:
 * broadcast axes get stride 0. MG_ERR_SHAPE naming both when impossible. */
mg_status mg_cpu_broadcast_strides(const char *op, const char *what, const mg_tensor *t,
                                   const mg_tensor *target, int64_t strides[MG_MAX_DIMS]);

/* ------------------------------------------------------- parallel loop */

/* fn(arg, begin, end, thread_index) over [0, n) in chunks of at least
 * grain items; runs inline when one chunk covers everything. */
typedef void (*mg_cpu_range_fn)(void *arg, int64_t begin, int64_t end, int thread_index);
void mg_cpu_parallel_for(mg_context *ctx, int64_t n, int64_t grain, mg_cpu_range_fn fn, void *arg);
/* The same over chunks of exactly `chunk` items (the last one shorter),
 * handed out one at a time: for memory-bound loops, where fine chunks keep
 * both threads busy to the end instead of one waiting on the other's last
 * multi-MB chunk. */
void mg_cpu_parallel_chunks(mg_context *ctx, int64_t n, int64_t chunk, mg_cpu_range_fn fn, void *arg);

/* ------------------------------------------------------------ scratch */

/* Multi-MiB scratch buffers kept by the context between calls (the linear's
 * dequantized weight panels and bf16 activations): fresh ones that large
 * are mmap'd and page-faulted in on every call, ~10 ms per 32 MiB. take
 * hands out the kept buffer of a slot when it holds at least bytes (else a
 * new one, NULL when out of memory) and its size in *capacity; give returns
 * it (the context keeps the larger of two, frees the other). */
#define MG_CPU_SCRATCH_SLOTS 2
enum { MG_CPU_SCRATCH_PANEL = 0, MG_CPU_SCRATCH_ACTIVATIONS = 1 };
void *mg_cpu_scratch_take(mg_context *ctx, int slot, size_t bytes, size_t *capacity);
void mg_cpu_scratch_give(mg_context *ctx, int slot, void *buffer, size_t capacity);

/* --------------------------------------------------------------- GEMM */

/* C[M, N] = A[M, K] · op(B) with row-major leading dimensions in elements.
 * op(B) = B^T for B[N, K] when trans_b, else B[K, N]. A and B are both f32
 * or both bf16 (f32 accumulation); C is f32 and overwritten. Provider from
 * the context's blas choice; oneDNN primitives are cached per shape. */
mg_status mg_cpu_gemm(mg_context *ctx, mg_dtype dtype, int64_t M, int64_t N, int64_t K,
                      const void *A, int64_t lda, const void *B, int64_t ldb, bool trans_b,
                      float *C, int64_t ldc);

/* Whether the context's GEMM provider runs bf16 x bf16 natively (oneDNN
 * with AVX-512 BF16 kernels); otherwise bf16 operands are widened to f32. */
bool mg_cpu_gemm_has_bf16(mg_context *ctx);

/* ------------------------------------------------------------ kernels */

/* Dot products of one f32 activation row with one weight row, per weight
 * type; the quantized ones take the activation pre-quantized to q8_0. */
typedef float (*mg_dot_f32_fn)(const float *x, const void *w, int64_t n);
typedef float (*mg_dot_q8_fn)(const mg_block_q8_0 *x, const void *w, int64_t n_blocks);
/* y[i] = y[i] * scale + a * x[i] (the attention accumulator update). */
typedef void (*mg_axpby_fn)(float *y, float scale, float a, const float *x, int64_t n);
/* The one-query (decode) attention, every head at once. Scores, over one
 * cached key: out[h * out_stride] = scale * <q_h, k_(h / group)> for h <
 * n_heads, q_h at q + h * q_stride bytes (f32), k_g at k + g * k_stride
 * bytes (f32 or f16 by the entry), d elements each. Values, over n_keys
 * keys (key j's rows at v + j * v_key_stride bytes, head g's at + g *
 * v_stride): acc[h * acc_stride + i] += p[h * p_stride + j] * v_j,(h /
 * group)[i] for i < d, key by key in order, each product rounded to f32
 * and then added. Each level's f16 entries give the bits of its f32 ones
 * on the widened values. */
typedef void (*mg_scores_fn)(const uint8_t *q, int64_t q_stride, const uint8_t *k, int64_t k_stride, int64_t n_heads,
                             int64_t group, int64_t d, float scale, float *out, int64_t out_stride);
typedef void (*mg_attend_fn)(float *acc, int64_t acc_stride, const float *p, int64_t p_stride, const uint8_t *v,
                             int64_t v_key_stride, int64_t v_stride, int64_t n_keys, int64_t n_heads,
                             int64_t group, int64_t d);

/* Quantized GEMV over a run of weight rows: y[r] = dot(x, row r) for
 * r < n_rows (rows row_stride bytes apart), x given both as q8_0 blocks
 * (xq) and in the kernel's own prepared layout (prep, prep_bytes(n_blocks)
 * bytes made by prepare(xq); kernels without one have prep_bytes 0 and
 * get prep NULL). */
typedef struct mg_cpu_qgemv {
    size_t (*prep_bytes)(int64_t n_blocks);
    void (*prepare)(const mg_block_q8_0 *xq, int64_t n_blocks, void *prep);
    void (*rows)(const void *prep, const mg_block_q8_0 *xq, int64_t n_blocks, const uint8_t *w,
                 int64_t row_stride, int64_t n_rows, float *y);
} mg_cpu_qgemv;

typedef struct mg_cpu_kernels {
    mg_dot_f32_fn dot_f32;   /* w f32  */
    mg_dot_f32_fn dot_f16;   /* w f16  */
    mg_dot_f32_fn dot_bf16;  /* w bf16 */
    mg_dot_q8_fn dot_q8_0;   /* w q8_0 */
    mg_dot_q8_fn dot_q4_0;   /* w q4_0 */
    mg_axpby_fn axpby;
    mg_cpu_qgemv gemv_q8_0;  /* many rows of w q8_0 */
    mg_cpu_qgemv gemv_q4_0;  /* many rows of w q4_0 */
    /* Many rows of w bf16 against x already rounded to bf16 (as PyTorch's
     * bf16 nn.Linear rounds its input): y[r] = sum_i x[i] * w_r[i] over n
     * elements of n_rows rows row_stride bytes apart, products exact, f32
     * sums (their order, and whether subnormal inputs count, unspecified).
     * The decode linear of bf16 weights where the level has vdpbf16ps
     * (MG_ISA_AVX512_BF16); the other levels' entries are the scalar
     * reference, and their decode keeps x in f32 (dot_bf16). */
    void (*gemv_bf16)(const uint16_t *x, int64_t n, const uint8_t *w, int64_t row_stride, int64_t n_rows,
                      float *y);
    /* x[n] (n a multiple of 32) to q8_0 blocks, bit for bit mg_quantize_row. */
    void (*quantize_q8_0)(const float *x, mg_block_q8_0 *out, int64_t n);
    /* n_blocks q8_0 / q4_0 blocks at w (one weight row) to f32, bit for bit
     * mg_dequantize_row, or to bf16: that (exact) f32 value rounded to
     * nearest even, bit for bit mg_f32_to_bf16. The weight panels of the
     * many-row (prefill) linear. */
    void (*dequant_q8_0_f32)(const void *w, float *out, int64_t n_blocks);
    void (*dequant_q4_0_f32)(const void *w, float *out, int64_t n_blocks);
    void (*dequant_q8_0_bf16)(const void *w, uint16_t *out, int64_t n_blocks);
    void (*dequant_q4_0_bf16)(const void *w, uint16_t *out, int64_t n_blocks);
    /* n f16 values to f32 (exact; bit for bit mg_f16_to_f32 but for NaN payloads). */
    void (*f16_to_f32)(const uint16_t *h, float *out, int64_t n);
    /* x[n] to bf16, bit for bit mg_f32_to_bf16. */
    void (*to_bf16)(const float *x, uint16_t *out, int64_t n);
    /* y[i] = x[i] * Phi(x[i]), the exact (erf) GELU, y may equal x. The
     * scalar entry is the libm reference mg_cpu_gelu_erf_ref; the vector
     * ones evaluate in double and stay within 1 ulp of the exact value. */
    void (*gelu_erf)(const float *x, float *y, int64_t n);
    /* The same GELU evaluated in f32 arithmetic (AVX-512: mg_gelu_f32_512,
     * within 8 ulp, ~2x faster), for contexts whose fpmath mode rounds the
     * activations anyway (mg_context_fpmath_bf16); the other levels point
     * at gelu_erf. */
    void (*gelu_erf_f32)(const float *x, float *y, int64_t n);
    /* y[i] = x[i] / (1 + e^(-alpha x[i])), y may equal x: SiLU (alpha 1) and
     * QuickGELU (1.702). The scalar entry is libm's expf; the AVX-512 one a
     * ~1 ulp vector exp and a division (a few ulp from the scalar). */
    void (*sigmoid_mul)(const float *x, float *y, int64_t n, float alpha);
    /* axpby with x in f16 (an f16 KV cache's values), bit for bit axpby on
     * the widened x. */
    void (*axpby_f16)(float *y, float scale, float a, const uint16_t *x, int64_t n);
    /* Decode attention (mg_scores_fn / mg_attend_fn): the AVX-512 scores
     * reduce 16 heads' dot products in one transposing tree, its values keep
     * a head's accumulator in registers across the keys of a call; the other
     * levels loop over dot_* / axpby*. */
    mg_scores_fn scores_f32, scores_f16;
    mg_attend_fn attend_f32, attend_f16;
    /* s[i] = e^(s[i] - shift) for i < n, returning their sum (a softmax
     * row's numerators; shift its max): libm expf and a running sum in the
     * scalar entry, mg_exp512 and lane sums in the AVX-512 ones. */
    float (*exp_sum)(float *s, int64_t n, float shift);
    /* One row of LayerNorm (rms false) or RMSNorm (rms true) into o (may
     * equal x); w, b NULL for none (RMSNorm has no b). Statistics in double:
     * LayerNorm's sum, then the sum of squared deviations about the mean
     * (biased variance); RMSNorm's sum of squares, its mean rounded to f32
     * as HF's RMSNorm does. Then in f32, each operation rounded as written:
     * ((x - mean) * rstd) * w + b, or w * (x * rsqrt(mean(x^2) + eps)). The
     * scalar entry sums in order; the vector ones in lanes (the same
     * statistics to ~1e-16 relative before their f32 roundings). */
    void (*norm_row)(const float *x, int64_t n, const float *w, const float *b, float eps, bool rms,
                     float *o);
} mg_cpu_kernels;

/* The scalar GELU reference (cpu_elementwise.c): cancellation-free libm. */
float mg_cpu_gelu_erf_ref(float x);

/* The kernel table for an ISA level (never NULL entries). */
const mg_cpu_kernels *mg_cpu_kernels_for(mg_cpu_isa isa);
mg_cpu_isa mg_cpu_detect_isa(void);

/* ------------------------------------------- int8 GEMM (cpu_qgemm.c) */

/* Whether the context's ISA level runs the int8 (AVX-512 VNNI) GEMM. */
bool mg_cpu_qgemm_available(mg_context *ctx);
/* y[M, N] = x[M, K] · weight^T (+ bias) for a q8_0 / q4_0 weight [N, K]
 * (rows strides[0] bytes apart), with x quantized to q8_0 per 32-block by
 * the kernel table's quantizer: per block d_x * d_w * (exact int32 dot),
 * accumulated in f32, the decode GEMV's semantics. K a multiple of 32;
 * bias f32 or NULL; y contiguous [M, N], overwritten. MG_ERR_UNSUPPORTED
 * when not available, MG_ERR_NO_MEMORY naming the scratch size. */
mg_status mg_cpu_qgemm(mg_context *ctx, const float *x, int64_t M, int64_t K, const mg_tensor *weight,
                       const float *bias, float *y);

/* Internal linear used by mg_linear and mg_patch_embed on validated,
 * contiguous f32 x[M, K]; weight rows contiguous, bias f32 or NULL. */
mg_status mg_cpu_linear_rows(mg_context *ctx, const float *x, int64_t M, int64_t K,
                             const mg_tensor *weight, const float *bias, float *y);

/* The ops of the table (one file each group). */
mg_status mg_cpu_linear(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                        const mg_tensor *bias, mg_tensor *y);
mg_status mg_cpu_matmul(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, bool transpose_b,
                        mg_tensor *c);
mg_status mg_cpu_add(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out);
mg_status mg_cpu_mul(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out);
mg_status mg_cpu_scale(mg_context *ctx, const mg_tensor *x, float factor, mg_tensor *out);
mg_status mg_cpu_layer_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                            const mg_tensor *bias, float eps, mg_tensor *out);
mg_status mg_cpu_rms_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight, float eps,
                          mg_tensor *out);
mg_status mg_cpu_activate(mg_context *ctx, const mg_tensor *x, mg_activation kind, mg_tensor *out);
mg_status mg_cpu_softmax(mg_context *ctx, const mg_tensor *x, const mg_tensor *mask, bool causal,
                         mg_tensor *out);
mg_status mg_cpu_rope(mg_context *ctx, const mg_tensor *x, const int32_t *positions,
                      const float *inv_freq, int rotary_dim, mg_tensor *out);
mg_status mg_cpu_attention(mg_context *ctx, const mg_tensor *q, const mg_tensor *k,
                           const mg_tensor *v, const mg_tensor *mask, bool causal, float scale,
                           mg_tensor *out);
mg_status mg_cpu_patch_embed(mg_context *ctx, const mg_tensor *image, const mg_tensor *weight,
                             const mg_tensor *bias, mg_tensor *out);
mg_status mg_cpu_interpolate_bicubic(mg_context *ctx, const mg_tensor *x, mg_tensor *out);
mg_status mg_cpu_interpolate_bilinear(mg_context *ctx, const mg_tensor *x, bool align_corners,
                                      mg_tensor *out);

#endif
