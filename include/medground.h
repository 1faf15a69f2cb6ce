/*
 * medground.h — the only public header of the medground C library.
 *
 * Conventions (read once, hold everywhere):
 *  - Every fallible function returns mg_status. MG_OK is 0. On failure the
 *    calling thread's message (mg_last_error()) says what and where.
 *  - Ownership is stated per function: "caller frees with X" or "borrowed".
 *  - Shapes are row-major, outermost first (as NumPy / PyTorch), at most 4-D.
 *    Strides are in BYTES so one field covers plain and block-quantized types.
 *  - Nothing here prints; nothing calls exit() or abort() on bad input.
 *
 * The file is divided into sections, one per module. Each module owns its
 * section; keep additions inside your module's markers.
 */
#ifndef MEDGROUND_H
#define MEDGROUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MG_VERSION_MAJOR 0
#define MG_VERSION_MINOR 1
#define MG_VERSION_PATCH 0
#define MG_VERSION_STRING "0.1.0"

/* ======================================================================== */
/* == core: status and errors                                             == */
/* ======================================================================== */

typedef enum mg_status {
    MG_OK = 0,
    MG_ERR_INVALID_ARGUMENT = 1, /* a caller-supplied value is out of range   */
    MG_ERR_FORMAT = 2,           /* a file or byte stream is malformed         */
    MG_ERR_SHAPE = 3,            /* tensor shapes do not agree                 */
    MG_ERR_DTYPE = 4,            /* unsupported or mismatched element type     */
    MG_ERR_IO = 5,               /* open/read/write/mmap failed                */
    MG_ERR_NO_MEMORY = 6,        /* allocation failed or size limit exceeded   */
    MG_ERR_NOT_FOUND = 7,        /* a named tensor / key / file does not exist */
    MG_ERR_UNSUPPORTED = 8,      /* valid input that this build cannot handle  */
    MG_ERR_INTERNAL = 9,         /* a bug in medground: please report          */
    MG_ERR_UNSAFE = 10,          /* refused to execute untrusted content       */
} mg_status;

/* Message of the last failure on the calling thread. Borrowed; valid until
 * the next failing call on this thread. Never NULL ("" when none). */
const char *mg_last_error(void);

/* Short constant name of a status ("MG_ERR_FORMAT"). Borrowed, static. */
const char *mg_status_name(mg_status status);

/* Clears the calling thread's message. */
void mg_clear_error(void);

/* Optional log sink for diagnostics (the library never prints). level:
 * 0 debug, 1 info, 2 warning. Setting is process-wide and should happen once
 * at start-up, before other threads call into the library. */
typedef void (*mg_log_fn)(int level, const char *message, void *user_data);
void mg_set_log_callback(mg_log_fn fn, void *user_data);

/* ======================================================================== */
/* == core: tensors                                                       == */
/* ======================================================================== */

#define MG_MAX_DIMS 4

/* Element types. The values of the GGML types equal GGUF's on-disk type ids
 * (ggml_type), so a GGUF tensor info maps to mg_dtype without a table. */
typedef enum mg_dtype {
    MG_F32 = 0,
    MG_F16 = 1,
    MG_Q4_0 = 2,  /* blocks of 32: f16 scale d, 16 bytes of nibbles (GGUF)   */
    MG_Q8_0 = 8,  /* blocks of 32: f16 scale d, 32 int8 quants (GGUF)        */
    MG_I8 = 24,
    MG_I16 = 25,
    MG_I32 = 26,
    MG_I64 = 27,
    MG_F64 = 28,
    MG_BF16 = 30,
    /* non-GGUF element types used by image/mask/checkpoint I/O */
    MG_U8 = 100,
    MG_U16 = 101,
    MG_BOOL = 102,
} mg_dtype;

#define MG_QK4_0 32
#define MG_QK8_0 32

/* Byte layouts exactly as GGUF / ggml store them. */
typedef struct mg_block_q8_0 {
    uint16_t d;           /* IEEE half scale */
    int8_t qs[MG_QK8_0];  /* value = d * qs[i] */
} mg_block_q8_0;

typedef struct mg_block_q4_0 {
    uint16_t d;               /* IEEE half scale */
    uint8_t qs[MG_QK4_0 / 2]; /* element i (<16): low nibble of qs[i];
                                 element i+16: high nibble; value = d*(q-8) */
} mg_block_q4_0;

typedef enum mg_device {
    MG_DEVICE_CPU = 0,
    MG_DEVICE_CUDA = 1,
} mg_device;

/* A view of memory. A tensor never owns its data: the owner is whoever made
 * the buffer (an arena, an mmap'd file, a NumPy array, or mg_tensor_alloc's
 * caller via mg_tensor_free_data). */
typedef struct mg_tensor {
    void *data;
    mg_dtype dtype;
    mg_device device;
    int n_dims;                    /* 0..MG_MAX_DIMS; 0 = scalar            */
    int64_t shape[MG_MAX_DIMS];    /* unused trailing entries are 1         */
    int64_t strides[MG_MAX_DIMS];  /* bytes; for quantized types the last
                                      dim must be contiguous whole blocks   */
} mg_tensor;

/* Name ("f32", "q8_0", ...). Borrowed, static. "?" for an unknown value. */
const char *mg_dtype_name(mg_dtype dtype);
/* Parse a dtype name; MG_ERR_DTYPE when unknown. */
mg_status mg_dtype_from_name(const char *name, mg_dtype *out);
/* Elements per block (32 for q8_0/q4_0, 1 otherwise) and bytes per block. */
int64_t mg_dtype_block_size(mg_dtype dtype);
int64_t mg_dtype_block_bytes(mg_dtype dtype);
bool mg_dtype_is_quantized(mg_dtype dtype);

/* Bytes needed to hold n_elements of dtype contiguously; MG_ERR_SHAPE when
 * n_elements is not a whole number of blocks, MG_ERR_NO_MEMORY on overflow. */
mg_status mg_dtype_row_bytes(mg_dtype dtype, int64_t n_elements, size_t *out);

/* Describe a contiguous tensor over `data` (not copied, not owned).
 * Validates the shape (0 < dim, no overflow, block-aligned last dim). */
mg_status mg_tensor_init(mg_tensor *t, void *data, mg_dtype dtype, int n_dims,
                         const int64_t *shape);
int64_t mg_tensor_numel(const mg_tensor *t);
/* Bytes spanned by a contiguous tensor of this shape/dtype. */
size_t mg_tensor_nbytes(const mg_tensor *t);
bool mg_tensor_is_contiguous(const mg_tensor *t);
/* Views (no copy). `out` may alias `t`. */
mg_status mg_tensor_reshape(const mg_tensor *t, int n_dims, const int64_t *shape,
                            mg_tensor *out); /* needs contiguous input */
mg_status mg_tensor_permute(const mg_tensor *t, const int *axes, mg_tensor *out);
mg_status mg_tensor_slice(const mg_tensor *t, int axis, int64_t start, int64_t stop,
                          mg_tensor *out);
/* Writes "f32[2, 3]" into buf. Returns buf. */
const char *mg_tensor_describe(const mg_tensor *t, char *buf, size_t buf_size);

/* Heap-allocated contiguous tensor, 64-byte aligned. Caller frees the data
 * with mg_tensor_free_data(t). */
mg_status mg_tensor_alloc(mg_tensor *t, mg_dtype dtype, int n_dims, const int64_t *shape);
void mg_tensor_free_data(mg_tensor *t);

/* Copy/convert between any float/quantized dtypes and shapes of equal numel;
 * src may be strided (non-quantized). Quantizing follows GGUF's reference
 * quantizers bit for bit. */
mg_status mg_tensor_convert(const mg_tensor *src, mg_tensor *dst);

/* Scalar conversions (round-to-nearest-even, as PyTorch/NumPy). */
float mg_f16_to_f32(uint16_t h);
uint16_t mg_f32_to_f16(float f);
float mg_bf16_to_f32(uint16_t h);
uint16_t mg_f32_to_bf16(float f);

/* Row kernels, n a multiple of 32 for quantized: src -> f32 and back. */
mg_status mg_dequantize_row(mg_dtype dtype, const void *src, float *dst, int64_t n);
mg_status mg_quantize_row(mg_dtype dtype, const float *src, void *dst, int64_t n);

/* ======================================================================== */
/* == core: arena (scratch memory for forward passes)                     == */
/* ======================================================================== */

/* One contiguous buffer; allocations bump a pointer; reset frees them all.
 * A forward pass allocates all its activations here: no per-op malloc. */
typedef struct mg_arena {
    uint8_t *base;
    size_t capacity;
    size_t used;
    size_t high_water; /* max `used` seen: report for memory budgets */
} mg_arena;

/* capacity bytes, 64-byte aligned. Caller frees with mg_arena_destroy. */
mg_status mg_arena_init(mg_arena *arena, size_t capacity);
void mg_arena_destroy(mg_arena *arena);
/* NULL + MG_ERR_NO_MEMORY message when full (the message says how much was
 * asked for and how much is left). Memory is not zeroed. */
void *mg_arena_alloc(mg_arena *arena, size_t bytes, size_t alignment);
/* A contiguous tensor from the arena. */
mg_status mg_arena_tensor(mg_arena *arena, mg_tensor *t, mg_dtype dtype, int n_dims,
                          const int64_t *shape);
size_t mg_arena_mark(const mg_arena *arena);
void mg_arena_reset_to(mg_arena *arena, size_t mark);

/* ======================================================================== */
/* == core: thread pool                                                   == */
/* ======================================================================== */

typedef struct mg_threadpool mg_threadpool;

/* n_threads <= 0 means the number of online cores. Caller frees with
 * mg_threadpool_destroy. */
mg_status mg_threadpool_create(int n_threads, mg_threadpool **out);
void mg_threadpool_destroy(mg_threadpool *pool);
int mg_threadpool_size(const mg_threadpool *pool);

/* Runs fn(ctx, task, thread_index) for task in [0, n_tasks), spread over
 * the pool (the calling thread takes part), and returns when all are done.
 * Not re-entrant: fn must not call mg_threadpool_run on the same pool. */
typedef void (*mg_task_fn)(void *ctx, int64_t task, int thread_index);
void mg_threadpool_run(mg_threadpool *pool, int64_t n_tasks, mg_task_fn fn, void *ctx);

/* Number of online CPU cores. */
int mg_cpu_count(void);

/* ======================================================================== */
/* == core: execution context and backend selection                       == */
/* ======================================================================== */

typedef struct mg_context mg_context;

typedef enum mg_blas {
    MG_BLAS_DEFAULT = 0, /* MG_BLAS environment variable, else oneDNN */
    MG_BLAS_ONEDNN = 1,
    MG_BLAS_OPENBLAS = 2,
} mg_blas;

/* Where f32 ops may take their products in bf16 (sums stay f32), as
 * torch.set_float32_matmul_precision and oneDNN's fpmath_mode allow. Today
 * this governs mg_attention of >= 8 query rows on CPUs with AVX-512 BF16
 * (twice the multiply-adds per instruction) and the erf GELU of
 * mg_activate on AVX-512 CPUs (evaluated in f32 arithmetic, within 8 ulp,
 * instead of double, within 1; twice as fast); elsewhere it changes nothing. */
typedef enum mg_fpmath {
    MG_FPMATH_DEFAULT = 0, /* MG_FPMATH environment variable (auto | strict | bf16), else auto */
    MG_FPMATH_AUTO = 1,    /* the model decides: a ViT vision tower (BiRD's ViT-bigG, MedPLIB's
                              CLIP) whose weights are bf16, q8_0 or q4_0 takes bf16 products in
                              attention and the f32 GELU; f32 / f16 towers, SAM and the
                              language models do not */
    MG_FPMATH_STRICT = 2,  /* f32 products, the double-precision GELU everywhere */
    MG_FPMATH_BF16 = 3,    /* bf16 products in every attention that has a bf16 kernel, the f32 GELU */
} mg_fpmath;

typedef struct mg_context_options {
    mg_device device;  /* MG_DEVICE_CPU (default) or MG_DEVICE_CUDA         */
    int n_threads;     /* <= 0: number of cores                             */
    mg_blas blas;      /* CPU GEMM provider                                 */
    mg_fpmath fpmath;  /* precision of f32 products (above)                 */
} mg_context_options;

/* Caller frees with mg_context_destroy. options may be NULL (defaults). */
mg_status mg_context_create(const mg_context_options *options, mg_context **out);
void mg_context_destroy(mg_context *ctx);
mg_threadpool *mg_context_threadpool(mg_context *ctx);
int mg_context_n_threads(const mg_context *ctx);
mg_blas mg_context_blas(const mg_context *ctx);
const char *mg_context_backend_name(const mg_context *ctx);
/* The mode in force (never MG_FPMATH_DEFAULT: that resolves at creation). */
mg_fpmath mg_context_fpmath(const mg_context *ctx);
/* MG_FPMATH_DEFAULT re-reads the environment; an unknown value is
 * MG_ERR_INVALID_ARGUMENT. */
mg_status mg_context_set_fpmath(mg_context *ctx, mg_fpmath mode);

/* ======================================================================== */
/* == backend ops (CPU now, CUDA behind the same interface)               == */
/* ======================================================================== */
/* All activations are f32 unless stated; weights may be f32/f16/bf16/q8_0/
 * q4_0 where noted. Outputs are caller-provided tensors of the right shape
 * (contiguous); shape mismatches return MG_ERR_SHAPE naming both shapes.
 * Inputs may be strided views unless stated. */

/* y[..., N] = x[..., K] · W[N, K]^T + bias[N]  (torch.nn.Linear). bias may be
 * NULL. W: f32, f16, bf16, q8_0, q4_0 (contiguous rows). */
mg_status mg_linear(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                    const mg_tensor *bias, mg_tensor *y);

/* Batched c[b] = a[b] · op(b[b]); op = transpose when transpose_b. 2-D or 3-D
 * (batch first, batch 1 broadcasts). f32 or bf16 inputs, f32 output. */
mg_status mg_matmul(mg_context *ctx, const mg_tensor *a, const mg_tensor *b,
                    bool transpose_b, mg_tensor *c);

/* Element-wise with NumPy broadcasting of b onto a's shape. */
mg_status mg_add(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out);
mg_status mg_mul(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out);
mg_status mg_scale(mg_context *ctx, const mg_tensor *x, float factor, mg_tensor *out);

/* Normalisation over the last dimension. weight/bias may be NULL. */
mg_status mg_layer_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                        const mg_tensor *bias, float eps, mg_tensor *out);
mg_status mg_rms_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                      float eps, mg_tensor *out);

typedef enum mg_activation {
    MG_ACT_GELU_ERF = 0,   /* 0.5 x (1 + erf(x/sqrt 2))              */
    MG_ACT_GELU_TANH = 1,  /* PyTorch approximate='tanh'             */
    MG_ACT_QUICK_GELU = 2, /* x sigmoid(1.702 x) (CLIP)              */
    MG_ACT_SILU = 3,       /* x sigmoid(x)                           */
    MG_ACT_RELU = 4,
} mg_activation;
mg_status mg_activate(mg_context *ctx, const mg_tensor *x, mg_activation kind, mg_tensor *out);

/* Softmax over the last dim. mask (optional) is added before the max; shape
 * broadcastable to x (use -INFINITY to block). causal: for x[..., Tq, Tk],
 * query i may see keys j <= i + (Tk - Tq). */
mg_status mg_softmax(mg_context *ctx, const mg_tensor *x, const mg_tensor *mask,
                     bool causal, mg_tensor *out);

/* Rotary embedding, rotate-half (GPT-NeoX / HF LLaMA / Qwen) form, on x[T, H, D]
 * in place or into out. positions[T] (int32); the first rotary_dim entries
 * of D rotate; inv_freq[rotary_dim/2] is given by the caller (this carries
 * base, NTK scaling and the like). */
mg_status mg_rope(mg_context *ctx, const mg_tensor *x, const int32_t *positions,
                  const float *inv_freq, int rotary_dim, mg_tensor *out);

/* Fused scaled-dot-product attention. q[Tq, Hq, D], k[Tk, Hkv, D],
 * v[Tk, Hkv, Dv], out[Tq, Hq, Dv]; Hq a multiple of Hkv (grouped queries).
 * q is f32; k and v both f32 or both f16 (a half-precision KV cache, read
 * in place by the one-query path). mask optional, additive, broadcastable
 * to [Hq, Tq, Tk]. causal as in mg_softmax. scale usually 1/sqrt(D). Never
 * materialises more than one block of scores per thread. Where the
 * context's fpmath mode allows (mg_fpmath) and Tq >= 8, the products are
 * taken in bf16 on CPUs with AVX-512 BF16. */
mg_status mg_attention(mg_context *ctx, const mg_tensor *q, const mg_tensor *k,
                       const mg_tensor *v, const mg_tensor *mask, bool causal,
                       float scale, mg_tensor *out);

/* Conv2d with kernel == stride (patch embedding). image[C, H, W],
 * weight[O, C, P, P], bias[O] or NULL, out[(H/P)*(W/P), O] (tokens, row-major
 * over the patch grid). */
mg_status mg_patch_embed(mg_context *ctx, const mg_tensor *image, const mg_tensor *weight,
                         const mg_tensor *bias, mg_tensor *out);

/* x[C, H, W] -> out[C, H2, W2], torch F.interpolate(mode='bicubic',
 * align_corners=False) semantics (A = -0.75, clamped borders). */
mg_status mg_interpolate_bicubic(mg_context *ctx, const mg_tensor *x, mg_tensor *out);
/* Same for mode='bilinear' (align_corners selectable, no antialias). */
mg_status mg_interpolate_bilinear(mg_context *ctx, const mg_tensor *x, bool align_corners,
                                  mg_tensor *out);

/* Diagnostics for benchmarks and bug reports: the instruction set of the CPU
 * kernels ("avx512_bf16" (VNNI and BF16), "avx512_vnni", "avx512", "avx2" or
 * "scalar"; capped at context creation by the MG_CPU_ISA environment
 * variable, which takes the same names) and whether the GEMM
 * provider multiplies bf16 natively (otherwise bf16 operands are widened to
 * f32 first). *isa is static. MG_ERR_UNSUPPORTED for a non-CPU context. */
mg_status mg_cpu_kernel_info(mg_context *ctx, const char **isa, bool *native_bf16_gemm);

/* ====================== end of backend ops =============================== */

/* ======================================================================== */
/* == image input                                                         == */
/* ======================================================================== */
/* (owned by the image module) */

/* A decoded image, interleaved HxWxC, C in {1, 2, 3, 4} (gray, gray+alpha,
 * RGB, RGBA), 8- or 16-bit samples (dtype MG_U8 / MG_U16) or f32. Owns its
 * pixels: free with mg_image_free. */
typedef struct mg_image {
    void *pixels;
    int width, height, channels;
    mg_dtype dtype; /* MG_U8, MG_U16 or MG_F32 */
} mg_image;

/* Size and channel count of an image file without decoding its pixels
 * (PNG/JPEG/BMP/PGM/PPM headers). Sizes above 65535 per side or 2^30 pixels
 * are refused with MG_ERR_FORMAT naming the file. */
mg_status mg_image_info(const char *path, int *width, int *height, int *channels);
/* Decode a file (PNG/JPEG/BMP/PGM/PPM, 8/16-bit, gray/RGB/RGBA). */
mg_status mg_image_load(const char *path, mg_image *out);
mg_status mg_image_load_memory(const uint8_t *bytes, size_t n_bytes, mg_image *out);
void mg_image_free(mg_image *image);
/* mg_image_info for a file held in memory (same formats and limits). */
mg_status mg_image_info_memory(const uint8_t *bytes, size_t n_bytes, int *width, int *height,
                               int *channels);
/* A borrowed view of the image's pixels as a tensor [H, W, C]. */
mg_status mg_image_as_tensor(const mg_image *image, mg_tensor *out);

/* --- preprocessing kernels ------------------------------------------------
 * Images are tensors [H, W] or [H, W, C] (C in 1..4), interleaved, any byte
 * strides; outputs are caller-provided (strided views allowed). */

/* Filters with PIL's numbering (Image.Resampling.BILINEAR = 2, BICUBIC = 3). */
typedef enum mg_resample {
    MG_RESAMPLE_BILINEAR = 2, /* triangle, support 1 */
    MG_RESAMPLE_BICUBIC = 3,  /* Keys cubic a = -0.5, support 2 */
} mg_resample;

/* PIL Image.resize(size, filter) bit for bit: antialiased on downscale (the
 * support grows by in/out), separable horizontal-then-vertical passes.
 * u8: PIL's 22-bit fixed-point coefficients with rounding and clipping after
 * each pass (mode L/RGB; channels are independent, as PIL's RGBX — RGBA is
 * NOT premultiplied as PIL.resize does for mode RGBA). f32: double
 * accumulation, float storage per pass (PIL mode F). src and dst have the
 * same dtype and channel count; dst's shape gives the output size. ctx may
 * be NULL (single thread); otherwise rows are spread over its pool. */
mg_status mg_image_resize(mg_context *ctx, const mg_tensor *src, mg_resample filter,
                          mg_tensor *dst);

/* To RGB u8 [H, W, 3] as PIL's convert('RGB'): gray replicated, alpha
 * dropped. 16-bit input (u16) follows PIL: one-channel 16-bit (mode I;16)
 * saturates, min(v, 255); 16-bit with color or alpha (PNG RGB/RGBA/LA 16)
 * keeps the high byte, v >> 8. */
mg_status mg_image_to_rgb8(const mg_tensor *src, mg_tensor *dst);

/* y = round(clamp((x * slope + intercept - lower) / (upper - lower), 0, 1) * 255)
 * into u8 of the same shape; half rounds up. src: u8/u16/i16/i32/f32/f64.
 * A DICOM linear VOI window (PS3.3 C.11.2.1.2.1) of center c, width w is
 * lower = c - 0.5 - (w - 1) / 2, upper = c - 0.5 + (w - 1) / 2. */
mg_status mg_image_window(const mg_tensor *src, double slope, double intercept, double lower,
                          double upper, mg_tensor *dst);

/* A borrowed view of the centered height x width region (top = (H - height)
 * / 2, left = (W - width) / 2, floored, as HF image_transforms.center_crop). */
mg_status mg_image_center_crop(const mg_tensor *src, int64_t height, int64_t width,
                               mg_tensor *view);

/* Copies src into the larger dst (same dtype and channels) and fills the
 * rest with value[c] (per channel; converted to dst's dtype). centered:
 * top = (H' - H) / 2, left = (W' - W) / 2 floored; else top-left. */
mg_status mg_image_pad(const mg_tensor *src, const double *value, bool centered, mg_tensor *dst);

/* dst[c, y, x] = (src[y, x, c] / divisor - mean[c]) / std[c] in f32 (the
 * order torchvision ToTensor+Normalize and HF CLIPImageProcessor use).
 * src u8 or f32 [H, W, C]; dst f32 [C, H, W] (a strided view is fine). */
mg_status mg_image_normalize(const mg_tensor *src, float divisor, const float *mean,
                             const float *std, mg_tensor *dst);

#define MG_IMAGE_CLIP_MEAN {0.48145466f, 0.4578275f, 0.40821073f}
#define MG_IMAGE_CLIP_STD {0.26862954f, 0.26130258f, 0.27577711f}
#define MG_IMAGE_IMAGENET_MEAN_255 {123.675f, 116.28f, 103.53f}
#define MG_IMAGE_IMAGENET_STD_255 {58.395f, 57.12f, 57.375f}

/* Where the original image lies in a preprocessed tensor: original pixel
 * (x, y) maps to (x * scale_x + pad_left, y * scale_y + pad_top), with
 * scale = resized / original per axis. */
typedef struct mg_image_geometry {
    int original_width, original_height;
    int resized_width, resized_height;
    double scale_x, scale_y;
    int pad_left, pad_top;
    int output_width, output_height;
} mg_image_geometry;

/* Each pipeline takes any image mg_image_to_rgb8 accepts and writes f32
 * out[3, size, size]. geometry may be NULL.
 * Qwen-VL / BiRD: PIL BICUBIC squash to size x size (448), /255, CLIP
 * mean/std. */
mg_status mg_image_preprocess_qwen(mg_context *ctx, const mg_tensor *image, int size,
                                   mg_tensor *out, mg_image_geometry *geometry);
/* MedPLIB CLIP-336: resize the longest side to size with PIL BILINEAR (new
 * side int(side * size / longest + 0.5)), center-pad to size x size with
 * (122, 116, 104), /255, CLIP mean/std. */
mg_status mg_image_preprocess_clip_pad(mg_context *ctx, const mg_tensor *image, int size,
                                       mg_tensor *out, mg_image_geometry *geometry);
/* MedPLIB SAM-Med2D branch: longest side to size (256) with PIL BILINEAR,
 * (x - ImageNet mean*255) / (std*255) on 0..255, then center-pad with 0. */
mg_status mg_image_preprocess_sam(mg_context *ctx, const mg_tensor *image, int size,
                                  mg_tensor *out, mg_image_geometry *geometry);

/* ====================== end of image input =============================== */

/* ======================================================================== */
/* == checkpoint I/O: safetensors, GGUF                                   == */
/* ======================================================================== */
/* (owned by the io module) */

/* A table of named tensors with metadata: the one way models receive weights.
 * Either opened from a file (safetensors file or sharded folder, GGUF; all
 * mmap'd, zero-copy) or filled in memory (tests, converters). Tensor names are
 * the checkpoint's own, verbatim. */
typedef struct mg_weights mg_weights;

/* Empty in-memory table. Caller frees with mg_weights_destroy. */
mg_status mg_weights_create(mg_weights **out);
/* Adds a tensor. The name is copied; the data is borrowed (must outlive the
 * table) unless copy is true. Duplicate names: MG_ERR_INVALID_ARGUMENT. */
mg_status mg_weights_add(mg_weights *weights, const char *name, const mg_tensor *tensor, bool copy);
/* Opens a checkpoint: a .safetensors file, a folder with
 * model.safetensors.index.json or *.safetensors, or a .gguf file. */
mg_status mg_weights_open(const char *path, mg_weights **out);
void mg_weights_destroy(mg_weights *weights);

/* Looks a tensor up by exact name: MG_ERR_NOT_FOUND naming it when absent. */
mg_status mg_weights_get(const mg_weights *weights, const char *name, mg_tensor *out);
bool mg_weights_has(const mg_weights *weights, const char *name);
int64_t mg_weights_count(const mg_weights *weights);
/* Name of the index-th tensor (insertion/file order). Borrowed. */
const char *mg_weights_name(const mg_weights *weights, int64_t index);

/* Metadata (GGUF key/values, or config.json keys flattened with '.').
 * MG_ERR_NOT_FOUND when absent, MG_ERR_DTYPE when of another type. Strings are
 * borrowed. Setters copy. */
mg_status mg_weights_get_int(const mg_weights *weights, const char *key, int64_t *out);
mg_status mg_weights_get_float(const mg_weights *weights, const char *key, double *out);
mg_status mg_weights_get_string(const mg_weights *weights, const char *key, const char **out);
mg_status mg_weights_set_int(mg_weights *weights, const char *key, int64_t value);
mg_status mg_weights_set_float(mg_weights *weights, const char *key, double value);
mg_status mg_weights_set_string(mg_weights *weights, const char *key, const char *value);

/* --- typed metadata, arrays (GGUF key/values, tokenizer vocabularies) ---
 * Value types are GGUF's on-disk ids. get_int accepts every integer type
 * and bool (u64 above INT64_MAX wraps); get_float accepts floats and ints.
 * Keys: GGUF keys verbatim ("general.architecture", "bird.hidden_size");
 * config.json next to a HF checkpoint is flattened under "config."
 * ("config.hidden_size", "config.visual.width"); safetensors __metadata__
 * under "safetensors." . A GGUF whose general.architecture is A also exposes
 * every "A.<key>" as "config.<key>", so models read hyper-parameters as
 * "config.<HF name>" whatever the file format.
 * Tokenizers embedded by `medground convert`: "medground.tokenizer.qwen_tiktoken"
 * (string, the qwen.tiktoken file verbatim) and
 * "medground.tokenizer.sentencepiece_model" (array of u8, tokenizer.model
 * verbatim); other tokenizer data may use "medground.tokenizer.<name>" keys
 * with string arrays (mg_weights_get_array_string). */
typedef enum mg_value_type {
    MG_VALUE_U8 = 0,
    MG_VALUE_I8 = 1,
    MG_VALUE_U16 = 2,
    MG_VALUE_I16 = 3,
    MG_VALUE_U32 = 4,
    MG_VALUE_I32 = 5,
    MG_VALUE_F32 = 6,
    MG_VALUE_BOOL = 7,
    MG_VALUE_STRING = 8,
    MG_VALUE_ARRAY = 9,
    MG_VALUE_U64 = 10,
    MG_VALUE_I64 = 11,
    MG_VALUE_F64 = 12,
} mg_value_type;

/* "u32", "string", ... Borrowed, static. Byte size of a numeric type (0 for
 * string/array). */
const char *mg_value_type_name(mg_value_type type);
size_t mg_value_type_size(mg_value_type type);

int64_t mg_weights_meta_count(const mg_weights *weights);
/* Key of the index-th entry (insertion order), NULL when out of range. Borrowed. */
const char *mg_weights_meta_key(const mg_weights *weights, int64_t index);
/* Type of a key; element_type (may be NULL) is the array's element type. */
mg_status mg_weights_meta_type(const mg_weights *weights, const char *key, mg_value_type *type,
                               mg_value_type *element_type);
/* A string with its byte length (strings may hold NUL bytes). Borrowed. */
mg_status mg_weights_get_string_bytes(const mg_weights *weights, const char *key, const char **out,
                                      size_t *length);
/* An array: numeric elements packed little-endian as element_type (borrowed,
 * valid while the table lives); *data is NULL for string arrays: read those
 * with mg_weights_get_array_string. */
mg_status mg_weights_get_array(const mg_weights *weights, const char *key, mg_value_type *element_type,
                               int64_t *length, const void **data);
/* index-th string of a string array, NUL-terminated, with its byte length
 * (length may be NULL). Borrowed. */
mg_status mg_weights_get_array_string(const mg_weights *weights, const char *key, int64_t index,
                                      const char **out, size_t *length);
/* Setters copy. */
mg_status mg_weights_set_int_typed(mg_weights *weights, const char *key, mg_value_type type, int64_t value);
mg_status mg_weights_set_float_typed(mg_weights *weights, const char *key, mg_value_type type, double value);
mg_status mg_weights_set_string_bytes(mg_weights *weights, const char *key, const char *value, size_t length);
mg_status mg_weights_set_array(mg_weights *weights, const char *key, mg_value_type element_type,
                               int64_t length, const void *data);
/* lengths may be NULL (strlen of each). */
mg_status mg_weights_set_string_array(mg_weights *weights, const char *key, int64_t length,
                                      const char *const *strings, const size_t *lengths);

/* --- GGUF v3 writer (streaming) ---
 * 1. mg_gguf_writer_open; 2. add metadata and every tensor's info (name,
 * stored dtype, shape outermost-first); 3. mg_gguf_writer_write_tensor once
 * per tensor, in the order the infos were added (the header is written on
 * the first call); 4. mg_gguf_writer_finish. Peak memory is the header plus
 * one converted tensor. Tensor data is aligned to "general.alignment"
 * (default 32; set it with mg_gguf_writer_add_int(.., MG_VALUE_U32, ..)
 * before any tensor info). Dimensions are stored innermost-first as GGUF
 * requires. */
typedef struct mg_gguf_writer mg_gguf_writer;

/* Creates/truncates path. Caller frees with mg_gguf_writer_destroy (which,
 * before a successful finish, also deletes the partial file). */
mg_status mg_gguf_writer_open(const char *path, mg_gguf_writer **out);
mg_status mg_gguf_writer_add_int(mg_gguf_writer *writer, const char *key, mg_value_type type, int64_t value);
mg_status mg_gguf_writer_add_float(mg_gguf_writer *writer, const char *key, mg_value_type type, double value);
mg_status mg_gguf_writer_add_string(mg_gguf_writer *writer, const char *key, const char *value, size_t length);
/* Numeric array, elements packed as element_type. */
mg_status mg_gguf_writer_add_array(mg_gguf_writer *writer, const char *key, mg_value_type element_type,
                                   int64_t length, const void *data);
/* lengths may be NULL (strlen of each). */
mg_status mg_gguf_writer_add_string_array(mg_gguf_writer *writer, const char *key, int64_t length,
                                          const char *const *strings, const size_t *lengths);
/* Copies every metadata entry of a table (keeps types). */
mg_status mg_gguf_writer_add_metadata_from(mg_gguf_writer *writer, const mg_weights *weights);
/* dtype: f32, f16, bf16, q8_0, q4_0, i8, i16, i32, i64, f64 (the GGUF types). */
mg_status mg_gguf_writer_add_tensor_info(mg_gguf_writer *writer, const char *name, mg_dtype dtype,
                                         int n_dims, const int64_t *shape);
/* Writes the next tensor's data. `tensor` must have the declared element
 * count; it may be strided and of another float type (converted, quantizing
 * as GGUF's reference quantizers) — integer tensors must match exactly. */
mg_status mg_gguf_writer_write_tensor(mg_gguf_writer *writer, const char *name, const mg_tensor *tensor);
/* Checks every tensor was written, flushes and closes. */
mg_status mg_gguf_writer_finish(mg_gguf_writer *writer);
void mg_gguf_writer_destroy(mg_gguf_writer *writer);

/* ====================== end of checkpoint I/O ============================ */

/* ======================================================================== */
/* == tokenizers                                                          == */
/* ======================================================================== */
/* (owned by the tokenizer module) */

/* Text -> token ids -> text, id-for-id identical to the references the two
 * model families were trained with:
 *  - Qwen-VL (BiRD): byte-level BPE over `qwen.tiktoken` ranks, Qwen's regex
 *    pre-split, Qwen-VL's special tokens (ids 151643 + index) and the
 *    `<img>path</img>` -> 256-position rule. Reference: tiktoken.
 *  - LLaMA (MedPLIB): SentencePiece BPE from `tokenizer.model` with byte
 *    fallback, plus MedPLIB's added tokens handled as transformers 4.31's slow
 *    LlamaTokenizer (legacy=True) does. Reference: sentencepiece + transformers.
 *  - A Hugging Face `tokenizer.json` holding a byte-level BPE (merges).
 * Text is UTF-8. Invalid UTF-8 input is refused with MG_ERR_INVALID_ARGUMENT
 * naming the byte offset (ids are only defined for text). Decoding never
 * fails on bytes: invalid/incomplete UTF-8 becomes U+FFFD, as the reference
 * decoders do (Python's errors="replace" rule for byte-level BPE, one U+FFFD
 * per byte for SentencePiece). A tokenizer is immutable after loading and
 * the encode/decode functions may be called from many threads at once. */
typedef struct mg_tokenizer mg_tokenizer;

typedef enum mg_tokenizer_kind {
    MG_TOKENIZER_TIKTOKEN = 0,      /* ranks file, tiktoken merge rule        */
    MG_TOKENIZER_HF_BYTE_BPE = 1,   /* tokenizer.json, byte-level BPE merges  */
    MG_TOKENIZER_SENTENCEPIECE = 2, /* tokenizer.model, BPE by piece score    */
} mg_tokenizer_kind;

/* Qwen-VL's tokenizer: `qwen.tiktoken` (lines "base64(token) rank"), Qwen's
 * pre-tokenisation regex and the 217 Qwen-VL special tokens. A malformed line
 * is MG_ERR_FORMAT naming the line number; duplicate ranks or tokens too.
 * Qwen's reference NFC-normalises text first; this C API does not (pass NFC
 * text, see mg_tokenizer_wants_nfc). Caller frees with mg_tokenizer_destroy. */
mg_status mg_tokenizer_load_qwen(const char *path, mg_tokenizer **out);
/* mg_tokenizer_load_qwen from the ranks file's bytes in memory (e.g. GGUF
 * metadata medground.tokenizer.qwen_tiktoken); `name` is used in messages. */
mg_status mg_tokenizer_load_qwen_memory(const char *data, size_t n_bytes, const char *name, mg_tokenizer **out);
/* Any tiktoken ranks file with a given pre-tokenisation regex (NULL: Qwen's)
 * and no special tokens (add them with mg_tokenizer_add_tokens). The bytes
 * are copied. `name` is used in messages. */
mg_status mg_tokenizer_load_tiktoken_memory(const char *data, size_t n_bytes, const char *pattern,
                                            const char *name, mg_tokenizer **out);

/* A SentencePiece `tokenizer.model` (BPE models only; unigram is
 * MG_ERR_UNSUPPORTED). Recognises its control pieces ("<s>", "</s>",
 * "<unk>") in text as transformers does when specials are allowed. */
mg_status mg_tokenizer_load_sentencepiece(const char *path, mg_tokenizer **out);
mg_status mg_tokenizer_load_sentencepiece_memory(const uint8_t *bytes, size_t n_bytes,
                                                 const char *name, mg_tokenizer **out);
/* LLaMA tokenizer.model + MedPLIB's 267 added tokens: <SEG> 32000, <ref>,
 * </ref>, <region>, </region>, <sr>, </sr>, <mask>, </mask>, <gen_1>..
 * <gen_256>, <im_start>, <im_end> 32266 (vocab 32267). */
mg_status mg_tokenizer_load_medplib(const char *path, mg_tokenizer **out);
/* mg_tokenizer_load_medplib from tokenizer.model bytes in memory. */
mg_status mg_tokenizer_load_medplib_memory(const uint8_t *bytes, size_t n_bytes, const char *name,
                                           mg_tokenizer **out);

/* A Hugging Face tokenizer.json whose model is a byte-level BPE (ByteLevel
 * or Split+ByteLevel pre-tokenizer). Other models: MG_ERR_UNSUPPORTED. */
mg_status mg_tokenizer_load_hf_json(const char *path, mg_tokenizer **out);
mg_status mg_tokenizer_load_hf_json_memory(const char *json, size_t n_bytes, const char *name,
                                           mg_tokenizer **out);

/* Detects the format: a folder holding qwen.tiktoken, tokenizer.model or
 * tokenizer.json (that order), or one of those files (by content). A GGUF
 * file is MG_ERR_UNSUPPORTED here: its tokenizer travels as metadata
 * `medground.tokenizer.qwen_tiktoken` (string, the ranks file) or
 * `medground.tokenizer.sentencepiece_model` (u8 array, the .model bytes);
 * read that and call the *_memory loader. */
mg_status mg_tokenizer_load(const char *path, mg_tokenizer **out);

void mg_tokenizer_destroy(mg_tokenizer *tok);

/* Appends tokens matched verbatim in text, ids vocab_size, vocab_size+1, ...
 * special: recognised only when the caller allows (mg_encode_options);
 * strip_whitespace: whitespace next to the token in text is dropped and the
 * text between tokens is encoded piece by piece (transformers' slow
 * tokenizer rule for tokens added with add_tokens). A string already in the
 * vocabulary is MG_ERR_INVALID_ARGUMENT. Not thread-safe with encoding. */
mg_status mg_tokenizer_add_tokens(mg_tokenizer *tok, const char *const *tokens, int64_t n_tokens,
                                  bool special, bool strip_whitespace);

mg_tokenizer_kind mg_tokenizer_get_kind(const mg_tokenizer *tok);
/* Number of ids (base vocabulary + special/added tokens). Qwen-VL: 151860. */
int32_t mg_tokenizer_vocab_size(const mg_tokenizer *tok);
/* The reference normalises text to NFC before encoding (Qwen, some
 * tokenizer.json files); the caller should do so. */
bool mg_tokenizer_wants_nfc(const mg_tokenizer *tok);
/* BOS / EOS ids, -1 when the vocabulary has none. */
int32_t mg_tokenizer_bos_id(const mg_tokenizer *tok);
int32_t mg_tokenizer_eos_id(const mg_tokenizer *tok);

/* Exact token string -> id (base tokens as raw bytes for byte-level BPE,
 * pieces with U+2581 for SentencePiece, special/added tokens as text).
 * MG_ERR_NOT_FOUND naming the token when absent. */
mg_status mg_tokenizer_token_to_id(const mg_tokenizer *tok, const char *token, size_t n_bytes,
                                   int32_t *id);
/* id -> its bytes (borrowed, valid while tok lives; not NUL-terminated).
 * *is_special tells special/added/control tokens apart (may be NULL). */
mg_status mg_tokenizer_id_to_token(const mg_tokenizer *tok, int32_t id, const char **bytes,
                                   size_t *n_bytes, bool *is_special);

typedef enum mg_special_mode {
    MG_SPECIAL_ALL = 0,  /* every special token string in text is one id     */
    MG_SPECIAL_NONE = 1, /* special strings are ordinary text                 */
    MG_SPECIAL_LIST = 2, /* only those in `allowed` (unknown name: NOT_FOUND) */
} mg_special_mode;

/* All-zero is the default: specials allowed, no BOS/EOS, no <img> rule. */
typedef struct mg_encode_options {
    mg_special_mode special;
    const char *const *allowed; /* MG_SPECIAL_LIST: NUL-terminated strings */
    int64_t n_allowed;
    bool add_bos;        /* prepend BOS (SentencePiece <s>)                   */
    bool add_eos;        /* append EOS                                        */
    bool expand_images;  /* Qwen-VL: <img>path</img> -> <img> + 256 + </img>:
                            path byte b becomes id b, padded with <imgpad>;
                            a path over 256 bytes or an unclosed <img> is
                            MG_ERR_INVALID_ARGUMENT (as the reference)       */
} mg_encode_options;

/* Encodes n_bytes of UTF-8 text (need not be NUL-terminated). options may be
 * NULL. On success *ids is malloc'd (caller frees with free(); may be NULL
 * when *n_ids is 0). */
mg_status mg_tokenizer_encode(const mg_tokenizer *tok, const char *text, size_t n_bytes,
                              const mg_encode_options *options, int32_t **ids, size_t *n_ids);

/* Encodes n_texts strings on `pool` (NULL: the calling thread only).
 * ids[i] / n_ids[i] as in mg_tokenizer_encode (caller frees each ids[i]).
 * On failure nothing is returned and the message names the text index. */
mg_status mg_tokenizer_encode_batch(const mg_tokenizer *tok, const char *const *texts,
                                    const size_t *n_bytes, int64_t n_texts,
                                    const mg_encode_options *options, mg_threadpool *pool,
                                    int32_t **ids, size_t *n_ids);

/* ids -> UTF-8 text, NUL-terminated, malloc'd (caller frees with free()).
 * skip_special drops special/control tokens (Qwen: every id >= 151643, as
 * Qwen's decode; SentencePiece: <s> </s> <unk>, added tokens are kept).
 * SentencePiece with added tokens joins pieces as transformers 4.31 does
 * (pieces separated by one space). An id out of range is
 * MG_ERR_INVALID_ARGUMENT naming its position. Qwen-VL <img> spans decode
 * back to "<img>path</img>". */
mg_status mg_tokenizer_decode(const mg_tokenizer *tok, const int32_t *ids, size_t n_ids,
                              bool skip_special, char **text, size_t *n_bytes);

/* Streaming decoder for generation: push ids one by one, get the text that
 * is complete so far. Bytes of a character split across tokens are held
 * until the character is complete, so the concatenated outputs equal
 * mg_tokenizer_decode of all ids (no <img> span rewriting in streams). */
typedef struct mg_token_stream mg_token_stream;
mg_status mg_token_stream_create(const mg_tokenizer *tok, bool skip_special,
                                 mg_token_stream **out); /* free: mg_token_stream_destroy */
void mg_token_stream_destroy(mg_token_stream *stream);
/* *text is borrowed, valid until the next call on this stream. */
mg_status mg_token_stream_push(mg_token_stream *stream, int32_t id, const char **text,
                               size_t *n_bytes);
/* Emits held incomplete bytes (as U+FFFD) and resets the stream. */
mg_status mg_token_stream_flush(mg_token_stream *stream, const char **text, size_t *n_bytes);

/* ====================== end of tokenizers ================================ */

/* ======================================================================== */
/* == evaluation metrics                                                  == */
/* ======================================================================== */
/* (owned by the eval module)
 *
 * The papers' metrics, reproducing their reference scripts exactly (see
 * docs: BiRD tests/models/BiRD/eval_*_score_modality.py, MedPLIB
 * model/eval/cal_metric.py, pycocoevalcap 1.2, Meteor 1.5). Strings are
 * UTF-8. Strings returned through `char **out` are heap copies the caller
 * frees with mg_eval_free. Functions scoring n items take parallel arrays. */

void mg_eval_free(void *p);

/* ---- BiRD answers --------------------------------------------------- */

/* BiRD regularization.extract_information: cut at ".<|im_end|>" (keeping
 * the '.'), drop "<|im_end|>\n", keep the first "\n...\n" span, drop
 * "<|endoftext|>", strip Python whitespace. */
mg_status mg_eval_bird_clean(const char *response, char **out);

typedef struct mg_eval_box {
    double x1, y1, x2, y2; /* Qwen-VL 0-1000 grid as written; NaN when the
                              text inside <box> is not 4 numbers */
} mg_eval_box;

/* Boxes of `<box>(x1,y1),(x2,y2)</box>` (non-greedy, one line each); when
 * there is none and bare_fallback, `(d,d),(d,d)` digits-only pairs.
 * *boxes: caller frees with mg_eval_free (NULL when none). n_invalid counts
 * the <box> contents that did not parse (their entry is NaN). */
mg_status mg_eval_extract_boxes(const char *text, bool bare_fallback, mg_eval_box **boxes,
                                int64_t *n_boxes, int64_t *n_invalid, bool *used_fallback);

/* IoU with plain (x2-x1)(y2-y1) areas, intersection clipped at 0; NaN when
 * the union is 0 or a coordinate is NaN (never counts as a hit). */
double mg_eval_box_iou(const mg_eval_box *a, const mg_eval_box *b);

#define MG_EVAL_VG_MAX_THRESHOLDS 8
typedef struct mg_eval_vg_record {
    int32_t n_gt;          /* GT boxes (0: record skipped, as the reference) */
    int32_t n_gt_invalid;  /* GT boxes that did not parse (the reference crashes) */
    int32_t n_pred;        /* predicted boxes after the fallback rule */
    int32_t n_pred_invalid;
    bool used_fallback;    /* boxes came from the bare (d,d),(d,d) rule */
    double best_iou_sum;   /* sum over GT boxes of the best IoU (NaN -> 0) */
    int32_t hits[MG_EVAL_VG_MAX_THRESHOLDS]; /* GT boxes with some IoU > t */
} mg_eval_vg_record;

/* Visual grounding per record: responses cleaned with mg_eval_bird_clean
 * when clean_response. thresholds: strict IoU > t (BiRD: 0.5). */
mg_status mg_eval_vg(const char *const *annotations, const char *const *responses, int64_t n,
                     bool clean_response, const double *thresholds, int n_thresholds,
                     mg_eval_vg_record *out);

/* Referring object classification per record: correct[i] = every ' '-split
 * token of the lower-cased annotation is a substring of the lower-cased
 * (cleaned) response (BiRD's recall); exact[i] = both, lower-cased with
 * runs of whitespace collapsed, stripped and one trailing '.' removed, are
 * equal. Either output may be NULL. */
mg_status mg_eval_roc(const char *const *annotations, const char *const *responses, int64_t n,
                      bool clean_response, uint8_t *correct, uint8_t *exact);

/* ---- captioning (pycocoevalcap) ------------------------------------- */

/* pycocoevalcap's tokenisation: Stanford PTBTokenizer (CoreNLP 3.4.1,
 * -preserveLines -lowerCase) behaviour for caption text, then its
 * punctuation-token removal; tokens joined by single spaces. */
mg_status mg_eval_ptb_tokenize(const char *text, char **out);
/* The captions of one pycocoevalcap tokenize() call: the jar reads them
 * joined by '\n', so a caption's trailing contexts (e.g. a sentence-final
 * "w." before "The") see the start of the next one; out[i] for texts[i]
 * (each freed with mg_eval_free; all NULL on error). */
mg_status mg_eval_ptb_tokenize_lines(const char *const *texts, int64_t n, char **out);

/* Corpus and per-image BLEU-1..4 (closest ref length, pycocoevalcap's
 * epsilons), ROUGE-L (beta 1.2) and CIDEr-D (sigma 6, IDF over these
 * references) of tokenised strings. hyps[n_images]; references of image i
 * are refs[ref_offsets[i] .. ref_offsets[i+1]) (at least one each).
 * per_image (may be NULL): n_images rows of MG_EVAL_CAPTION_FIELDS doubles
 * in the order BLEU-1..4, ROUGE-L, CIDEr-D. corpus: same 6 fields. */
#define MG_EVAL_CAPTION_FIELDS 6
mg_status mg_eval_caption(const char *const *hyps, const char *const *refs,
                          const int64_t *ref_offsets, int64_t n_images, double *corpus,
                          double *per_image);

/* METEOR 1.5 (-l en -norm, task rank) as pycocoevalcap's bundled jar. */
typedef struct mg_meteor mg_meteor;
typedef struct mg_meteor_resources {
    /* Contents of Meteor's resource files (NUL-terminated; NULL = absent):
     * function words (required), non-breaking prefixes (required),
     * synonym synsets + exceptions (both or neither: the synonym module),
     * paraphrase table (uncompressed paraphrase-en text: the paraphrase
     * module). */
    const char *function_words;
    const char *nonbreaking_prefixes;
    const char *synsets;
    const char *exceptions;
    const char *paraphrases;
    size_t paraphrases_length;
    bool stem;  /* Snowball English stem module (libstemmer) */
    /* Optional: texts that will be scored. When given, only paraphrase
     * entries whose words all occur in them are kept (same results, far
     * less memory). */
    const char *const *vocabulary_texts;
    int64_t n_vocabulary_texts;
} mg_meteor_resources;

mg_status mg_meteor_create(const mg_meteor_resources *resources, mg_meteor **out);
void mg_meteor_destroy(mg_meteor *meteor);
/* Modules in use, e.g. "exact stem synonym paraphrase". Borrowed. */
const char *mg_meteor_modules(const mg_meteor *meteor);
/* Meteor's normaliser + lower-casing of one line (for inspection/tests). */
mg_status mg_meteor_normalize(const mg_meteor *meteor, const char *text, char **out);

#define MG_METEOR_STATS 23
/* Scores n_images hypotheses (pycocoevalcap: hypothesis with "|||" removed
 * and one pass of double-space -> space). per_image may be NULL; stats
 * (may be NULL): n_images rows of Meteor's 23 sufficient statistics.
 * corpus: METEOR of the summed statistics (the jar's last EVAL line). */
mg_status mg_meteor_score(const mg_meteor *meteor, const char *const *hyps,
                          const char *const *refs, const int64_t *ref_offsets, int64_t n_images,
                          double *corpus, double *per_image, double *stats);

/* SPICE 1.0's tuple F-score over scene-graph tuples (the scene graphs come
 * from the official jar's -detailed output; this does the scoring only).
 * A tuple is 1 element (object), 2 (object, attribute) or 3 (subject,
 * relation, object); each element is one concept as the jar prints it:
 * its words joined by '/' (a segment list with an empty part is taken as
 * one word). Tuples of all images: elements[] flat in order, sizes[t] in
 * 1..3, image i owns tuples offsets[i] .. offsets[i+1] (offsets[0] = 0). */
typedef struct mg_spice_tuples {
    const char *const *elements;
    const int32_t *sizes;
    const int64_t *offsets;
} mg_spice_tuples;

/* Categories (the jar's "All" and -subset filters) and fields of a score. */
#define MG_SPICE_CATEGORIES 7 /* All, Object, Attribute, Relation, Cardinality, Color, Size */
#define MG_SPICE_FIELDS 6     /* tp, fp, fn, precision, recall, f */
/* Scores n_images candidate tuple sets against their reference sets as
 * SpiceStats.score does: a candidate tuple is a true positive when it
 * matches some reference tuple of its image (all positions similar: the
 * concepts share a word or, with use_synsets, a WordNet synset from
 * Meteor's tables: getSynSets + getStemSynSets of each word lower-cased,
 * spaces as '_'; without use_synsets the concepts must be equal); fp =
 * candidates - tp, fn = references - tp (tp counts candidates, so fn can
 * be negative when several candidates match one reference, as in the jar);
 * precision = tp / candidates, recall = tp / references, f = 2PR/(P+R),
 * 0 when P or R is 0. "All" with no references gives 0, 0, 0; a category
 * with no references gives NaN precision/recall/f. Duplicates are counted
 * as given (the jar's scene graphs have none). synonyms: a METEOR scorer
 * with its synonym tables (required when use_synsets; may be NULL
 * otherwise). per_image (may be NULL): n_images x MG_SPICE_CATEGORIES x
 * MG_SPICE_FIELDS doubles. corpus (may be NULL): per category the summed
 * tp/fp/fn and the mean precision/recall/f over the images where they are
 * not NaN (NaN when none), the jar's printed macro average.
 * test_truth / ref_truth (may be NULL): the jar's truth_value per tuple:
 * a candidate matched; a reference is the first match, in the jar's sorted
 * order (Java String order of the concept words), of some candidate. */
mg_status mg_spice_score(const mg_meteor *synonyms, const mg_spice_tuples *test,
                         const mg_spice_tuples *refs, int64_t n_images, bool use_synsets,
                         double *per_image, double *corpus, uint8_t *test_truth,
                         uint8_t *ref_truth);

/* ---- VQA (MedPLIB / LLaVA-Med) --------------------------------------- */

/* MedPLIB glossary.normalize_word applied to the lower-cased text. */
mg_status mg_eval_vqa_normalize(const char *text, char **out);

typedef struct mg_eval_vqa_record {
    double f1, precision, recall; /* open: token-count F1 (0 when tp = 0) */
    double exact;                 /* open: distinct GT words found / pred tokens */
    double closed_hit;            /* closed: normalised strings equal */
    double bleu[4];               /* NLTK sentence_bleu: cumulative 4-gram,
                                     then single-order 1, 2, 3 (MedPLIB) */
} mg_eval_vqa_record;

/* Scores prediction/GT pairs as cal_metric.py does (every field filled;
 * the caller picks open or closed by answer type). */
mg_status mg_eval_vqa(const char *const *predictions, const char *const *ground_truths,
                      int64_t n, mg_eval_vqa_record *out);

/* NLTK sentence_bleu(references, hypothesis, weights) without smoothing on
 * whitespace tokens (already lower-cased by the caller if wanted). */
mg_status mg_eval_sentence_bleu(const char *const *references, int n_references,
                                const char *hypothesis, const double *weights, int n_weights,
                                double *out);

/* ---- masks ----------------------------------------------------------- */

typedef struct mg_eval_mask_score {
    int64_t intersection, union_, pred_area, gt_area;
    double iou;   /* |P&G|/|P|G|; empty/empty: 1 (stated convention) */
    double dice;  /* 2|P&G|/(|P|+|G|); empty/empty: 1 */
    double medplib_iou;  /* float32 ratio, as MedPLIB (0 when union 0) */
    double medplib_dice; /* 2 iou/(1+iou) of the float32 IoU */
} mg_eval_mask_score;

/* Binary masks (nonzero = foreground) of the same H x W, u8. */
mg_status mg_eval_mask_compare(const uint8_t *pred, const uint8_t *gt, int64_t height,
                               int64_t width, mg_eval_mask_score *out);

/* Nearest-neighbour resize of a u8 mask (PyTorch mode='nearest':
 * src = floor(dst * in/out)). */
mg_status mg_eval_mask_resize_nearest(const uint8_t *src, int64_t src_h, int64_t src_w,
                                      uint8_t *dst, int64_t dst_h, int64_t dst_w);

/* COCO RLE (pycocotools): counts string <-> column-major u8 mask. */
mg_status mg_eval_rle_decode(const char *counts, int64_t height, int64_t width, uint8_t *mask);
mg_status mg_eval_rle_encode(const uint8_t *mask, int64_t height, int64_t width, char **out);

/* ====================== end of evaluation metrics ======================== */

/* ======================================================================== */
/* == dataset tools                                                       == */
/* ======================================================================== */
/* (owned by the data module) */

/* --- masks -> objects -------------------------------------------------- */

/* One object found in a mask: all pixels of one label value, or one
 * connected component of it. Pixel bounds are inclusive (COCO's toBbox is
 * [x_min, y_min, x_max - x_min + 1, y_max - y_min + 1]). */
typedef struct mg_mask_object {
    int64_t label;                 /* mask value (1 for binary masks)        */
    int64_t area;                  /* number of pixels                       */
    int32_t x_min, y_min;          /* inclusive pixel bounds                 */
    int32_t x_max, y_max;
    double centroid_x, centroid_y; /* mean column, mean row                  */
} mg_mask_object;

typedef struct mg_mask_options {
    bool binary;      /* true: every non-zero value is label 1; false: each
                         distinct non-zero value is its own object            */
    int connectivity; /* 0: one object per label; 4 or 8: one per connected
                         component (pixels of the same label)                 */
    int64_t min_area; /* objects with fewer pixels are dropped (0 keeps all)  */
} mg_mask_options;

/* Objects of a 2-D mask [H, W] (u8, u16, bool, i32 >= 0; strided views are
 * fine). options NULL = binary, no components. Order: by label, then by the
 * first pixel in row-major order. *objects is NULL when none are found.
 * Caller frees *objects with free(). */
mg_status mg_mask_objects(const mg_tensor *mask, const mg_mask_options *options,
                          mg_mask_object **objects, int64_t *n_objects);

/* Same for a mask image file (PNG, ...; decoded by mg_image_load). Gray or
 * gray+alpha masks use the gray value; RGB(A) masks must have R == G == B
 * (colour-coded masks are refused naming the first differing pixel).
 * width/height (may be NULL) receive the mask size. */
mg_status mg_mask_objects_file(const char *path, const mg_mask_options *options,
                               mg_mask_object **objects, int64_t *n_objects,
                               int *width, int *height);

/* Pixel box (inclusive bounds x_min, y_min, x_max, y_max) of an image of
 * width x height -> the Qwen-VL/Med-GRIT 0..1000 grid (x1, y1, x2, y2) as
 * written in <box>(x1,y1),(x2,y2)</box>. The rule (floor for the top-left
 * corner, ceil for the exclusive bottom-right edge) is documented in
 * csrc/data/mask.c. MG_ERR_INVALID_ARGUMENT when the box is not inside the
 * image. */
mg_status mg_box_to_grid(const int32_t pixel_box[4], int width, int height,
                         int32_t grid_box[4]);

/* --- COCO run-length encoding (byte-compatible with pycocotools) -------- */

/* Counts of alternating runs over the mask in column-major order, starting
 * with a run of zeros (possibly empty). Owns counts: free with mg_rle_free. */
typedef struct mg_rle {
    int64_t height, width;
    int64_t n_counts;
    uint32_t *counts;
} mg_rle;

/* mask: 2-D [H, W] u8/bool/u16/i32, any non-zero value is foreground. */
mg_status mg_rle_encode(const mg_tensor *mask, mg_rle *out);
/* Writes 0/1 into a u8 [H, W] tensor (strided allowed) of the RLE's size.
 * MG_ERR_FORMAT when the counts do not sum to H*W. */
mg_status mg_rle_decode(const mg_rle *rle, mg_tensor *mask);
/* Foreground pixels (sum of the odd-indexed runs). */
int64_t mg_rle_area(const mg_rle *rle);
/* COCO box [x, y, w, h] (all 0 for an empty mask), as pycocotools toBbox. */
mg_status mg_rle_to_bbox(const mg_rle *rle, double bbox[4]);
/* The compressed string form of pycocotools (rleToString: delta coding
 * against the count two back from index 3 on, 5-bit groups + 48).
 * Caller frees *out with free(). */
mg_status mg_rle_to_string(const mg_rle *rle, char **out);
/* Inverse of mg_rle_to_string; MG_ERR_FORMAT for malformed strings or
 * counts that do not sum to height*width. */
mg_status mg_rle_from_string(const char *text, int64_t height, int64_t width, mg_rle *out);
/* From explicit counts (copied); validates the sum. */
mg_status mg_rle_from_counts(const uint32_t *counts, int64_t n_counts, int64_t height,
                             int64_t width, mg_rle *out);
void mg_rle_free(mg_rle *rle);

/* --- dataset checks ---------------------------------------------------- */

typedef enum mg_data_severity {
    MG_DATA_INFO = 0,
    MG_DATA_WARNING = 1,
    MG_DATA_ERROR = 2,
} mg_data_severity;

/* One problem found. Strings are borrowed from the checker. */
typedef struct mg_data_finding {
    const char *file;        /* input file (or buffer name)                 */
    int64_t line;            /* 1-based line where the record starts; 0 n/a */
    int64_t index;           /* 0-based record position in its file; -1 n/a */
    const char *record_id;   /* the record's "id" ("" when it has none)     */
    const char *code;        /* stable short name, e.g. "box_out_of_range"  */
    mg_data_severity severity;
    const char *message;     /* what is wrong, naming the value             */
} mg_data_finding;

typedef void (*mg_data_progress_fn)(int64_t bytes_done, int64_t bytes_total, void *user_data);

typedef struct mg_data_check_options {
    const char *images_dir;   /* NULL: skip the image checks                */
    const char *masks_dir;    /* NULL: skip box-vs-mask checks              */
    double min_box_mask_iou;  /* <= 0 means 0.5                             */
    bool check_label_variants;
    bool check_duplicates;
    mg_data_progress_fn progress; /* optional, called every ~1 MiB          */
    void *progress_user_data;
} mg_data_check_options;

/* Defaults: no image/mask dirs, IoU 0.5, every check on. */
void mg_data_check_options_default(mg_data_check_options *options);

typedef struct mg_data_checker mg_data_checker;

/* options copied (the dirs too). Caller frees with mg_data_checker_destroy. */
mg_status mg_data_checker_create(const mg_data_check_options *options, mg_data_checker **out);
void mg_data_checker_destroy(mg_data_checker *checker);
/* Streams the records of a JSON list or JSONL file (Med-GRIT pairs or
 * LLaVA/MeCoVQA dicts). split names the data split ("train", "test", or NULL)
 * for the leakage check. Problems in the data become findings; the status
 * is an error only when the file cannot be read at all. */
mg_status mg_data_checker_add_file(mg_data_checker *checker, const char *path, const char *split);
/* Same for bytes in memory; name is used in findings. */
mg_status mg_data_checker_add_buffer(mg_data_checker *checker, const char *name,
                                     const char *bytes, size_t n_bytes, const char *split);
/* Cross-record checks (case leakage between splits, label spelling
 * variants, duplicate image files). Call once after the last add. */
mg_status mg_data_checker_finish(mg_data_checker *checker);

int64_t mg_data_checker_n_findings(const mg_data_checker *checker);
mg_status mg_data_checker_finding(const mg_data_checker *checker, int64_t index,
                                  mg_data_finding *out);
int64_t mg_data_checker_n_records(const mg_data_checker *checker);
int64_t mg_data_checker_count(const mg_data_checker *checker, mg_data_severity severity);
/* The whole report (findings, counts per modality x task, turn histogram,
 * box sizes) as a JSON object. Caller frees *json with free(). */
mg_status mg_data_checker_report_json(const mg_data_checker *checker, char **json);

/* Case id of an image name, for leakage checks: "dataset--case" for SA-Med2D
 * names (modality--dataset--case--slice), else the stem without a trailing
 * "_<digits>" slice number. Writes at most size bytes (NUL-terminated). */
mg_status mg_data_case_id(const char *image_name, char *out, size_t size);
/* Modality of an SA-Med2D-style name as BiRD's eval derives it (text before
 * the first '_', "x_ray" -> "x"); "" when the name has no '_'. */
mg_status mg_data_modality(const char *image_name, char *out, size_t size);


/* ====================== end of dataset tools ============================= */

/* ======================================================================== */
/* == models                                                              == */
/* ======================================================================== */
/* (owned by the models module) */

/* -- BiRD -- */
/* Building blocks shared by BiRD (Qwen-VL) and MedPLIB (LLaVA): one vision
 * transformer, one resampler, one decoder-only LM with a KV cache, one
 * generation loop. Weights come from an mg_weights table (names verbatim from
 * the checkpoint); every block validates every tensor's shape at load and
 * names the culprit on failure. All activations are f32 host tensors. */

/* How a block stores its matrix weights after loading. convert = false keeps
 * each tensor's file dtype when mg_linear accepts it (f32/f16/bf16/q8_0/q4_0);
 * convert = true re-encodes every matrix to `dtype` (GPTQ int4 matrices are
 * always dequantised first, then stored f16 unless converted). */
typedef struct mg_model_weights_options {
    bool convert;
    mg_dtype dtype;
    /* mg_bird_load only: every tensor of the table must be used by the model
     * (else MG_ERR_FORMAT naming the first unused one) — catches a checkpoint
     * of another variant whose extra tensors would silently be ignored. */
    bool strict;
} mg_model_weights_options;

/* ---- vision transformer (Qwen-VL ViT-bigG/14; HF CLIP ViT-L/14) ---- */
typedef enum mg_vit_naming {
    /* <prefix>conv1.weight, positional_embedding [g*g, W], ln_pre,
     * transformer.resblocks.N.{ln_1, attn.in_proj, attn.out_proj, ln_2,
     * mlp.c_fc, mlp.c_proj} (Qwen-VL visual.py) */
    MG_VIT_NAMING_QWEN = 0,
    /* <prefix>embeddings.{patch_embedding.weight, position_embedding.weight
     * [1 + g*g, W], class_embedding}, pre_layrnorm, encoder.layers.N.
     * {layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}
     * (transformers CLIPVisionModel) */
    MG_VIT_NAMING_HF_CLIP = 1,
} mg_vit_naming;

typedef enum mg_qkv_layout {
    MG_QKV_HEAD_INTERLEAVED = 0, /* one in_proj; per head [q | k | v] (Qwen ViT)  */
    MG_QKV_STACKED = 1,          /* one in_proj; [all q; all k; all v] rows       */
    MG_QKV_SEPARATE = 2,         /* q_proj, k_proj, v_proj (HF CLIP)              */
} mg_qkv_layout;

typedef struct mg_vit_config {
    mg_vit_naming naming;
    mg_qkv_layout qkv_layout;
    int image_size;      /* square input side in pixels                        */
    int patch_size;
    int width;
    int n_layers;        /* blocks in the checkpoint                           */
    int n_heads;
    int mlp_dim;         /* Qwen: int(width * mlp_ratio)                       */
    float norm_eps;      /* Qwen 1e-6, CLIP 1e-5                               */
    mg_activation activation; /* Qwen GELU (erf), CLIP quick GELU              */
    bool class_token;    /* CLIP: a class embedding row precedes the patches   */
    int n_layers_run;    /* blocks to run, 0 = all (LLaVA select_layer -2: n_layers-1) */
    bool drop_class_token; /* output only the patch rows                       */
    mg_model_weights_options weights;
} mg_vit_config;

typedef struct mg_vit mg_vit;

/* The config of Qwen-VL's ViT from checkpoint metadata config.visual.*
 * (image_size, patch_size, width, layers, heads, mlp_ratio). */
mg_status mg_vit_config_qwen(const mg_weights *weights, mg_vit_config *out);
/* Loads and validates every tensor under `prefix` ("transformer.visual.").
 * Borrows `weights` (must outlive the vit). Caller frees with mg_vit_free. */
mg_status mg_vit_load(const mg_weights *weights, const char *prefix, const mg_vit_config *config,
                      mg_vit **out);
void mg_vit_free(mg_vit *vit);
/* Output rows: patches (+1 with a kept class token). */
int64_t mg_vit_n_tokens(const mg_vit *vit);
int64_t mg_vit_width(const mg_vit *vit);
/* image[3, image_size, image_size] normalised f32 -> out[n_tokens, width]
 * (hidden state after the last block run; no post-norm). */
mg_status mg_vit_forward(mg_context *ctx, mg_vit *vit, const mg_tensor *image, mg_tensor *out);

/* ---- Qwen-VL resampler (attn_pool + ln_post + proj) ---- */
typedef struct mg_resampler mg_resampler;
/* Shapes come from the tensors (query [n_queries, D], kv_proj [D, kv_dim]);
 * n_heads = D / 128 as Qwen-VL builds it. `prefix` e.g. "transformer.visual.". */
mg_status mg_resampler_load(const mg_weights *weights, const char *prefix, int kv_dim,
                            float norm_eps, const mg_model_weights_options *options,
                            mg_resampler **out);
void mg_resampler_free(mg_resampler *resampler);
int64_t mg_resampler_n_queries(const mg_resampler *resampler);
int64_t mg_resampler_dim(const mg_resampler *resampler);
/* features[T, kv_dim] from a square grid of T tokens -> out[n_queries, D]. */
mg_status mg_resampler_forward(mg_context *ctx, mg_resampler *resampler, const mg_tensor *features,
                               mg_tensor *out);

/* ---- decoder-only language model (Qwen-7B, LLaMA-7B) ---- */
typedef enum mg_decoder_naming {
    /* transformer.wte, transformer.h.N.{ln_1, attn.c_attn (+bias), attn.c_proj,
     * ln_2, mlp.w1, mlp.w2, mlp.c_proj}, transformer.ln_f, lm_head; MLP
     * c_proj(w1(x) * silu(w2(x))) */
    MG_DECODER_NAMING_QWEN = 0,
    /* model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
     * post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head;
     * MLP down(silu(gate(x)) * up(x)) */
    MG_DECODER_NAMING_LLAMA = 1,
} mg_decoder_naming;

typedef struct mg_decoder_config {
    mg_decoder_naming naming;
    int n_layers, hidden_size, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size;
    float norm_eps;        /* RMSNorm epsilon                                   */
    float rope_base;
    int rotary_dim;        /* dims of each head that rotate (Qwen: rotary_pct * head_dim) */
    int seq_length;        /* training context; reference for NTK and logn (Qwen 2048) */
    bool use_dynamic_ntk;  /* Qwen: base * alpha^(d/(d-2)), alpha from the prefill length */
    bool use_logn_attn;    /* Qwen: q *= log(p+1)/log(seq_length) past seq_length */
    bool external_ffn;     /* no dense MLP weights; an FFN hook computes every FFN */
    mg_model_weights_options weights;
} mg_decoder_config;

typedef struct mg_decoder mg_decoder;
typedef struct mg_kv_cache mg_kv_cache;

/* FFN hook: out[T, hidden] = FFN_layer(x[T, hidden]) where x is already
 * post-attention-normalised; the decoder adds the residual. */
typedef mg_status (*mg_decoder_ffn_fn)(void *user_data, mg_context *ctx, int layer,
                                       const mg_tensor *x, mg_tensor *out);

/* Qwen config from metadata config.* (hidden_size, num_hidden_layers,
 * num_attention_heads, kv_channels, intermediate_size, vocab_size,
 * layer_norm_epsilon, rotary_emb_base, rotary_pct, seq_length,
 * use_dynamic_ntk, use_logn_attn). */
mg_status mg_decoder_config_qwen(const mg_weights *weights, mg_decoder_config *out);
/* Borrows `weights`. Caller frees with mg_decoder_free. */
mg_status mg_decoder_load(const mg_weights *weights, const mg_decoder_config *config,
                          mg_decoder **out);
void mg_decoder_free(mg_decoder *decoder);
const mg_decoder_config *mg_decoder_get_config(const mg_decoder *decoder);
/* Replaces the dense FFN of every layer (required when external_ffn). */
void mg_decoder_set_ffn_hook(mg_decoder *decoder, mg_decoder_ffn_fn fn, void *user_data);

/* K/V for `capacity` positions. Caller frees with mg_kv_cache_free. The
 * cache holds f16 (llama.cpp's default) when the decoder's linears round
 * their activations anyway (bf16, q8_0, q4_0 weights): half the bytes every
 * decode step reads; f32 for f32 and f16 weights. The MG_KV_CACHE
 * environment variable (auto | f32 | f16) overrides the choice for every
 * cache made this way, the models' own sessions included. */
mg_status mg_kv_cache_create(const mg_decoder *decoder, int capacity, mg_kv_cache **out);
/* The same with the element type chosen: MG_F32 or MG_F16 (values past
 * +-65504 become infinities there). */
mg_status mg_kv_cache_create_typed(const mg_decoder *decoder, int capacity, mg_dtype dtype,
                                   mg_kv_cache **out);
void mg_kv_cache_free(mg_kv_cache *cache);
int mg_kv_cache_length(const mg_kv_cache *cache);
int mg_kv_cache_capacity(const mg_kv_cache *cache);
mg_dtype mg_kv_cache_dtype(const mg_kv_cache *cache);
/* Forget positions >= length (reuse a shared prefix across turns). */
mg_status mg_kv_cache_truncate(mg_kv_cache *cache, int length);

/* New tokens appended after the cache's positions. Rows listed in
 * override_rows take their embedding from embeddings (image / region
 * features) instead of the token table. */
typedef struct mg_decoder_input {
    const int32_t *tokens;
    int n_tokens;
    const mg_tensor *embeddings;    /* [n_override, hidden_size] f32 or NULL */
    const int32_t *override_rows;   /* [n_override] indices into tokens      */
    int n_override;
} mg_decoder_input;

/* Runs the new tokens through the model and appends them to the cache.
 * logits: NULL, [1, vocab] (last token) or [n_tokens, vocab].
 * hidden: NULL or [n_tokens, hidden_size], final-normed hidden states.
 * layer_hidden: NULL or [n_layers + 1, n_tokens, hidden_size]: entry l < n_layers
 * is the input of block l (0 = embeddings), entry n_layers the final-normed
 * output (transformers' output_hidden_states convention). */
mg_status mg_decoder_forward(mg_context *ctx, mg_decoder *decoder, mg_kv_cache *cache,
                             const mg_decoder_input *input, mg_tensor *logits, mg_tensor *hidden,
                             mg_tensor *layer_hidden);

/* ---- generation ---- */
/* Called with each new token; return false to stop. */
typedef bool (*mg_token_fn)(void *user_data, int32_t token);

typedef struct mg_generate_options {
    int max_new_tokens;
    bool do_sample;           /* false: greedy (argmax, lowest id on ties)       */
    float temperature;        /* > 0 when sampling                               */
    int top_k;                /* 0: off                                          */
    float top_p;              /* 1: off; keep the smallest set with mass >= top_p */
    uint64_t seed;
    const int32_t *stop_tokens; /* generation ends after emitting one of these     */
    int n_stop_tokens;
    mg_token_fn on_token;     /* streaming, may be NULL                          */
    void *user_data;
} mg_generate_options;

/* Feeds `prompt` after what `cache` holds, then generates. out_tokens gets
 * at most max_out tokens (stop token included); *n_out their count. The
 * cache ends holding prompt + every generated token but the last. */
mg_status mg_generate(mg_context *ctx, mg_decoder *decoder, mg_kv_cache *cache,
                      const mg_decoder_input *prompt, const mg_generate_options *options,
                      int32_t *out_tokens, int max_out, int *n_out);
/* One sampling step over logits[vocab] (greedy or sampled per options);
 * `state` is the RNG state (seed it with options->seed). */
mg_status mg_sample_token(const float *logits, int vocab, const mg_generate_options *options,
                          uint64_t *state, int32_t *out);

/* ---- BiRD (Qwen-VL-Chat architecture) ---- */
typedef struct mg_bird mg_bird;
typedef struct mg_bird_session mg_bird_session;

/* Every tensor and hyper-parameter from the table (HF Qwen-VL names, GPTQ
 * int4 accepted; metadata config.*). Borrows `weights`. options may be NULL.
 * Caller frees with mg_bird_free. */
mg_status mg_bird_load(const mg_weights *weights, const mg_model_weights_options *options,
                       mg_bird **out);
void mg_bird_free(mg_bird *bird);
mg_vit *mg_bird_vit(mg_bird *bird);
mg_resampler *mg_bird_resampler(mg_bird *bird);
mg_decoder *mg_bird_decoder(mg_bird *bird);
int mg_bird_image_size(const mg_bird *bird);
/* Token ids of <img> (image_start_id), </img>, <imgpad>. */
int32_t mg_bird_image_start_id(const mg_bird *bird);
/* Rows per image between <img> and </img> (the resampler's query count). */
int64_t mg_bird_image_tokens(const mg_bird *bird);
/* pixels[3, S, S] (preprocessed) -> embeddings[image_tokens, hidden]; vit_out
 * optional [grid*grid, width] receives the ViT features. */
mg_status mg_bird_encode_image(mg_context *ctx, mg_bird *bird, const mg_tensor *pixels,
                               mg_tensor *embeddings, mg_tensor *vit_out);

/* A conversation: KV cache plus the token ids it holds. Caller frees with
 * mg_bird_session_free. capacity = max positions (prompt + answers). */
mg_status mg_bird_session_create(mg_bird *bird, int capacity, mg_bird_session **out);
void mg_bird_session_free(mg_bird_session *session);
mg_kv_cache *mg_bird_session_cache(mg_bird_session *session);
/* The image rows of `tokens`: every <img> ... </img> span must enclose
 * exactly image_tokens positions; span i takes rows [i*image_tokens,
 * (i+1)*image_tokens) of image_embeddings. Reuses the session's cache for the
 * longest common prefix of `tokens` with what it holds (images included
 * there are not re-encoded), then generates. */
mg_status mg_bird_generate(mg_context *ctx, mg_bird *bird, mg_bird_session *session,
                           const int32_t *tokens, int n_tokens, const mg_tensor *image_embeddings,
                           const mg_generate_options *options, int32_t *out_tokens, int max_out,
                           int *n_out);
/* Finds the <img>...</img> spans: rows[n] = positions to override (at most
 * max_rows), *n_rows their count; errors name the malformed span. */
mg_status mg_bird_image_rows(const mg_bird *bird, const int32_t *tokens, int n_tokens,
                             int32_t *rows, int max_rows, int *n_rows);

/* The ids of Qwen-VL-Chat's ChatML context (qwen_generation_utils
 * make_context): "<|im_start|>system\n{system}<|im_end|>", then per turn
 * "\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n" followed,
 * except for the last turn, by "{assistant}<|im_end|>". messages: user,
 * assistant, ..., user (an odd count); system NULL means "You are a helpful
 * assistant.". with_image: the first user turn opens with "Picture 1: <img>"
 * + image_tokens x <imgpad> + "</img>\n" (the rows mg_bird_generate fills with
 * image embeddings). Each text run is one plain-text mg_tokenizer_encode call
 * (special strings stay text) split at <ref> </ref> <box> </box> <quad>
 * </quad>, whose ids, like the others, follow Qwen's layout from the model's
 * image_start_id. Text is encoded as given: NFC-normalise it first when
 * mg_tokenizer_wants_nfc (Qwen does). *ids is malloc'd (caller frees with free()). */
mg_status mg_bird_build_prompt(const mg_bird *bird, const mg_tokenizer *tok, const char *system,
                               const char *const *messages, int n_messages, bool with_image,
                               int32_t **ids, size_t *n_ids);

/* What was wrong with one box of a model answer (flags of mg_bird_box.issues). */
enum {
    MG_BOX_MALFORMED = 1,    /* <box> body is not (x1,y1),(x2,y2): no box   */
    MG_BOX_UNTERMINATED = 2, /* <box> without </box> (answer cut off): no box */
    MG_BOX_CLAMPED = 4,      /* a coordinate outside 0..grid, clamped       */
    MG_BOX_SWAPPED = 8,      /* x1 > x2 or y1 > y2, corners reordered       */
    MG_BOX_EMPTY = 16,       /* zero width or height (kept)                 */
    MG_BOX_NO_BOX = 32,      /* a <ref> in an answer without any box        */
};

/* One entry found in an answer. valid: a usable box (x1..y2 set); entries
 * with MG_BOX_MALFORMED / MG_BOX_UNTERMINATED / MG_BOX_NO_BOX are reports
 * only. Spans are byte offsets into the parsed text. */
typedef struct mg_bird_box {
    bool valid;
    unsigned issues;
    double x1, y1, x2, y2;             /* pixels (grid units when width = height = 0) */
    double grid_x1, grid_y1, grid_x2, grid_y2; /* grid units after the fixes    */
    int64_t label_start, label_length; /* the <ref> phrase (spaces trimmed); -1: none */
    int64_t span_start, span_length;   /* the <box>...</box> (or fallback) text */
} mg_bird_box;

/* Every <ref>phrase</ref><box>(x1,y1),(x2,y2)</box> of a model answer
 * (several boxes may follow one ref; a box before any ref has no label).
 * Coordinates on the 0..grid grid (Qwen: 1000) map to pixels of a width x
 * height image as v / grid * size; width = height = 0 keeps grid units. An
 * answer without any "<box>" is searched with BiRD's fallback pattern
 * "(d,d),(d,d)". Numbers: optional '-', digits, optional '.digits', ASCII
 * spaces around. Writes up to max_boxes entries; *n_boxes is the total found
 * (call again with more room when larger). Never fails on model output;
 * MG_ERR_INVALID_ARGUMENT only for NULL pointers or a bad size/grid. */
mg_status mg_bird_parse_boxes(const char *text, size_t n_bytes, double width, double height,
                              double grid, mg_bird_box *boxes, int64_t max_boxes,
                              int64_t *n_boxes);

/* -- SAM-Med2D / MedPLIB -- */

/* SAM-Med2D (OpenGVLab/SAM-Med2D, ViT-B/16 at 256 px with adapters):
 * image encoder, prompt encoder, two-way-transformer mask decoder. Every
 * hyper-parameter is read from tensor shapes (grid from pos_embed, heads from
 * rel_pos, window size from the windowed blocks' rel_pos, adapters from the
 * presence of blocks.N.Adapter.*). Feature maps are channels-first in this
 * API ([C, H, W], as PyTorch) for clarity at the boundary. */
typedef struct mg_sam mg_sam;

typedef struct mg_sam_info {
    int image_size;      /* input side S (256 for SAM-Med2D)              */
    int patch_size;      /* 16                                            */
    int grid;            /* S / patch = image-embedding side (16)         */
    int embed_dim;       /* encoder width (768)                           */
    int depth;           /* encoder blocks (12)                           */
    int n_heads;         /* encoder heads (12)                            */
    int window_size;     /* windowed blocks' window (14)                  */
    int n_global_blocks; /* blocks attending over the whole grid (4)      */
    int global_blocks[16];
    bool adapters;       /* SAM-Med2D adapters present                    */
    int prompt_dim;      /* neck / prompt / decoder width C (256)         */
    int decoder_heads;   /* two-way transformer heads (8)                 */
    int n_mask_tokens;   /* 4: token 0 single-mask, 1..3 multimask        */
    int low_res_size;    /* side of the low-res logits, 4 * grid (64)     */
} mg_sam_info;

/* Binds a model to `weights` (borrowed: must outlive the model; nothing is
 * copied). prefix is prepended to every key: "" for the standalone
 * sam-med2d_b.pth (state_dict["model"]), "model.visual_model." inside a
 * MedPLIB checkpoint. decoder_heads <= 0 means 8 (not recoverable from
 * shapes). Missing/mis-shaped tensors: MG_ERR_NOT_FOUND / MG_ERR_SHAPE
 * naming the key. Caller frees with mg_sam_destroy. */
mg_status mg_sam_create(const mg_weights *weights, const char *prefix, int decoder_heads,
                        mg_sam **out);
void mg_sam_destroy(mg_sam *sam);
mg_status mg_sam_get_info(const mg_sam *sam, mg_sam_info *info);

/* SammedPredictor preprocessing: pixels uint8 [H, W, channels] (channels 3 =
 * RGB, or 1 = gray, replicated) normalised with SAM's mean/std on 0..255,
 * resized to S x S with cv2 INTER_NEAREST (src = floor(dst * in/out)), no
 * padding, into image[3, S, S] f32 (caller-allocated). */
mg_status mg_sam_preprocess(const mg_sam *sam, const uint8_t *pixels, int height, int width,
                            int channels, mg_tensor *image);

/* Image encoder: image[3, S, S] f32 (normalised) -> embedding[C, G, G]. */
mg_status mg_sam_encode_image(mg_context *ctx, const mg_sam *sam, const mg_tensor *image,
                              mg_tensor *embedding);

/* Number of sparse tokens the prompt encoder makes: points (+1 padding point
 * when there is no box) + 2 box corners. */
int64_t mg_sam_sparse_count(int64_t n_points, bool has_box);

/* Prompt encoder. points[n_points][2] are (x, y) in the S x S input frame,
 * labels 1 = foreground, 0 = background, -1 = not a point; box (x1, y1, x2,
 * y2) in the same frame or NULL; mask_input [4G, 4G] logits or NULL (then
 * the no-mask embedding is broadcast). sparse[mg_sam_sparse_count, C] (may
 * be NULL when that count is 0), dense[C, G, G]. */
mg_status mg_sam_encode_prompt(mg_context *ctx, const mg_sam *sam, const float *points,
                               const int32_t *labels, int64_t n_points, const float *box,
                               const mg_tensor *mask_input, mg_tensor *sparse, mg_tensor *dense);

/* Random-Fourier positional encoding of the G x G grid: pe[C, G, G]. */
mg_status mg_sam_dense_pe(const mg_sam *sam, mg_tensor *pe);

/* Mask decoder. embedding[C, G, G]; sparse[n, C] or NULL (n = 0), e.g.
 * MedPLIB's projected <SEG> state; dense[C, G, G]. multimask: masks of
 * tokens 1..3 (n_out = 3) else token 0 (n_out = 1). low_res[n_out, 4G, 4G]
 * logits, iou[n_out] predicted IoU (raw head output, no sigmoid). */
mg_status mg_sam_decode(mg_context *ctx, const mg_sam *sam, const mg_tensor *embedding,
                        const mg_tensor *sparse, const mg_tensor *dense, bool multimask,
                        mg_tensor *low_res, mg_tensor *iou);

/* SammedPredictor.postprocess_masks: low_res[n, h, w] -> bilinear
 * (align_corners False) to S x S -> bilinear to out[n, H, W]. */
mg_status mg_sam_upscale_masks(mg_context *ctx, const mg_sam *sam, const mg_tensor *low_res,
                               mg_tensor *out);

/* -- end SAM-Med2D / MedPLIB -- */

/* -- MedPLIB -- */
/* MedPLIB (HF Huangxs/MedPLIB-7b-2e; docs/architecture.md §2): CLIP ViT-L/14-
 * 336 (the shared mg_vit, HF CLIP naming, hidden_states[mm_vision_select_layer]
 * with the class row dropped) -> mm_projector (mlp2x_gelu) -> LLaMA (the
 * shared mg_decoder) whose FFN is a mixture of experts (below) -> <SEG>
 * hidden state -> text_hidden_fcs -> SAM-Med2D mask decoder. Keys as the
 * release (LLaVA/LISA names): model.vision_tower.vision_tower.vision_model.*,
 * model.mm_projector.{0,2}.*, model.layers.N.*, model.norm, lm_head,
 * model.region_fea_adapter.*, model.text_hidden_fcs.0.{0,2}.*,
 * model.visual_model.* (SAM-Med2D); hyper-parameters from config.json. */

/* ---- mixture-of-experts FFN (DeepSpeed MoE at inference, top-1) ---- */
/* Router logits x·wgᵀ in f32, p = softmax, e* = argmax (lowest index on a
 * tie), output p[e*] · Expert_e*(x) (not renormalised). Capacity per expert
 * = max(ceil(T / n_experts * capacity_factor), min_capacity) over the T
 * tokens of one forward call; tokens beyond it get a zero FFN output (only
 * the residual), as DeepSpeed's top1gating drops them — DeepSpeed keeps a
 * random subset of an overfull expert (random token selection), this keeps
 * the earliest tokens. At inference DeepSpeed uses eval_capacity_factor
 * (MedPLIB: 2 with 2 experts, so capacity = T and no token is ever
 * dropped). capacity_factor <= 0: no limit. */
typedef struct mg_moe_config {
    int n_layers, hidden_size, ffn_dim, n_experts;
    int top_k;             /* must be 1                                      */
    float capacity_factor; /* eval_capacity_factor; <= 0: unlimited          */
    int min_capacity;
    mg_model_weights_options weights;
} mg_moe_config;

typedef struct mg_moe mg_moe;

/* Experts <prefix>N.mlp.deepspeed_moe.experts.deepspeed_experts.E.{gate,up,
 * down}_proj.weight (merged; mg_medplib_load merges unmerged LoRA first) and
 * router <prefix>N.mlp.deepspeed_moe.gate.wg.weight [n_experts, hidden];
 * prefix "model.layers.". Borrows `weights`. Caller frees with mg_moe_free. */
mg_status mg_moe_load(const mg_weights *weights, const char *prefix, const mg_moe_config *config,
                      mg_moe **out);
void mg_moe_free(mg_moe *moe);
const mg_moe_config *mg_moe_get_config(const mg_moe *moe);
/* The FFN hook (mg_decoder_ffn_fn; user_data = the mg_moe): out[T, hidden]
 * = MoE(x[T, hidden]); records routing and load counts. */
mg_status mg_moe_ffn(void *moe, mg_context *ctx, int layer, const mg_tensor *x, mg_tensor *out);
/* Router only: experts[T] chosen, probs[T * n_experts] softmax (may be NULL). */
mg_status mg_moe_route(mg_context *ctx, mg_moe *moe, int layer, const mg_tensor *x, int32_t *experts,
                       float *probs);
/* One expert's FFN on every row of x (no router scaling). */
mg_status mg_moe_expert_forward(mg_context *ctx, mg_moe *moe, int layer, int expert, const mg_tensor *x,
                                mg_tensor *out);
/* Tokens per expert for a call over n_tokens (the capacity rule above). */
int64_t mg_moe_capacity(const mg_moe *moe, int64_t n_tokens);
/* Expert load since load / reset (the papers' Figure 5): routed[n_layers *
 * n_experts] tokens routed per layer and expert (before capacity), dropped
 * [n_layers] tokens dropped for capacity. Either may be NULL. */
mg_status mg_moe_get_load(const mg_moe *moe, int64_t *routed, int64_t *dropped);
void mg_moe_reset_load(mg_moe *moe);
/* The last mg_moe_ffn call's choices at `layer`: experts[n] and the chosen
 * probability probs[n] (either may be NULL), *n_tokens = n <= max_tokens. */
mg_status mg_moe_last_routes(const mg_moe *moe, int layer, int32_t *experts, float *probs, int max_tokens,
                             int *n_tokens);

/* ---- region prompts (MedPLIB vision sampler) ---- */
/* A free-shape mask u8 [H, W] (>= 1 inside) at the image's resolution ->
 * grid_mask[g * g] (g = image_size / patch_size, 24) as MedPLIB's dataset
 * prepares it: longest side resized to image_size with PIL BILINEAR,
 * center-padded with 0, sampled at pixel (patch*r, patch*c) (cv2 NEAREST by
 * 1/patch), optionally only its largest 8-connected component (the eval
 * dataset: true; the demo worker: false). *n_on = cells set. An empty mask,
 * or one that covers no grid cell: MG_ERR_INVALID_ARGUMENT. ctx may be NULL. */
mg_status mg_region_grid_mask(mg_context *ctx, const mg_tensor *mask, int image_size, int patch_size,
                              bool largest_component, uint8_t *grid_mask, int *n_on);
/* Keeps only the largest 8-connected component of mask[height * width]
 * (the first in raster order on a tie, as cv2's labels). */
mg_status mg_region_largest_component(uint8_t *mask, int height, int width);
/* features[g * g, C] (row-major grid) -> out[C]: mean of grid_sample
 * (bilinear, align_corners True, zeros padding) at 2 (r/g, c/g) - 1, flipped
 * to (x, y), for the set cells (r, c) in raster order; at most max_points of
 * them (evenly spaced; the reference draws a random subset). Empty region:
 * MG_ERR_INVALID_ARGUMENT. *n_points (may be NULL) = points used. */
mg_status mg_region_sample(const mg_tensor *features, int64_t grid, const uint8_t *grid_mask, int max_points,
                           float *out, int *n_points);

/* ---- the MedPLIB model ---- */
#define MG_MEDPLIB_IMAGE_TOKEN (-200)  /* IMAGE_TOKEN_INDEX: the image rows   */
#define MG_MEDPLIB_REGION_TOKEN (-300) /* REGION_TOKEN_INDEX: one region row  */

typedef struct mg_medplib mg_medplib;

typedef struct mg_medplib_options {
    mg_model_weights_options weights; /* strict: every tensor must be used  */
    bool load_sam;          /* build SAM-Med2D from model.visual_model.*      */
    float capacity_factor;  /* 0: config.moe.eval_capacity_factor, else 2    */
    float lora_scale;       /* 0: config.lora_alpha / config.lora_r if given */
} mg_medplib_options;

typedef struct mg_medplib_info {
    int clip_image_size, clip_patch_size, clip_grid, clip_width;
    int clip_layers_run;  /* CLIP blocks run (select layer -2: n_layers - 1) */
    int image_tokens;     /* rows per image (576)                            */
    int hidden_size, n_layers, vocab_size;
    int n_experts;        /* 0: dense FFN                                    */
    float capacity_factor;
    bool has_region_adapter;
    int seg_dim;          /* text_hidden_fcs output (256); 0 = none          */
    int sam_image_size;   /* 0 = no SAM loaded                               */
    int sam_low_res;      /* low-res logits side (64)                        */
} mg_medplib_info;

/* Config from metadata config.* (hidden_size, num_hidden_layers,
 * num_attention_heads, num_key_value_heads, intermediate_size, vocab_size,
 * rms_norm_eps, rope_theta, mm_vision_select_layer (-2),
 * mm_vision_select_feature (patch), moe.eval_capacity_factor,
 * moe.min_capacity, moe.top_k_experts, lora_alpha/lora_r; CLIP heads from
 * vision_config.num_attention_heads, else width / 64); CLIP geometry from
 * the tensors. MoE when model.layers.0.mlp.deepspeed_moe.gate.wg.weight
 * exists, else dense LLaMA MLPs. Unmerged peft checkpoints (stage II-IV:
 * names under "base_model.model.", <Linear>.base_layer.weight with
 * .lora_A[.default].weight [r, in] / .lora_B[.default].weight [out, r], on
 * any Linear) are merged at load, W0 + (alpha / r) · B · A in f32, with
 * alpha / r = options->lora_scale or config.lora_alpha / config.lora_r
 * (neither: MG_ERR_INVALID_ARGUMENT). options may be NULL (defaults, SAM
 * loaded). Borrows `weights`. Caller frees with mg_medplib_free. */
mg_status mg_medplib_load(const mg_weights *weights, const mg_medplib_options *options,
                          mg_medplib **out);
void mg_medplib_free(mg_medplib *model);
mg_status mg_medplib_get_info(const mg_medplib *model, mg_medplib_info *info);
mg_vit *mg_medplib_vit(mg_medplib *model);
mg_decoder *mg_medplib_decoder(mg_medplib *model);
/* NULL for a dense checkpoint. */
mg_moe *mg_medplib_moe(mg_medplib *model);
/* NULL when no SAM-Med2D was loaded. */
mg_sam *mg_medplib_sam(mg_medplib *model);

/* pixels[3, S, S] (mg_image_preprocess_clip_pad) -> embeddings[image_tokens,
 * hidden] (projected); clip_features (may be NULL) [image_tokens, width]
 * gets the raw CLIP features (the region sampler's input). */
mg_status mg_medplib_encode_image(mg_context *ctx, mg_medplib *model, const mg_tensor *pixels,
                                  mg_tensor *embeddings, mg_tensor *clip_features);
/* One <region> row: region_fea_adapter(mg_region_sample(clip_features,
 * grid_mask)) -> out[hidden]. max_points <= 0 means 512. */
mg_status mg_medplib_region_feature(mg_context *ctx, mg_medplib *model, const mg_tensor *clip_features,
                                    const uint8_t *grid_mask, int max_points, float *out, int *n_points);
/* Positions a prompt occupies once MG_MEDPLIB_IMAGE_TOKEN is expanded. */
mg_status mg_medplib_expanded_length(const mg_medplib *model, const int32_t *tokens, int n_tokens, int *out);
/* Runs prompt ids (with at most one MG_MEDPLIB_IMAGE_TOKEN and any number of
 * MG_MEDPLIB_REGION_TOKEN, row i of region_embeddings[n, hidden] for the
 * i-th) after what `cache` holds (see mg_decoder_forward for logits/hidden:
 * rows count expanded positions). */
mg_status mg_medplib_forward(mg_context *ctx, mg_medplib *model, mg_kv_cache *cache, const int32_t *tokens,
                             int n_tokens, const mg_tensor *image_embeddings,
                             const mg_tensor *region_embeddings, mg_tensor *logits, mg_tensor *hidden);
/* Generation from an empty cache (as mg_generate). When seg_token >= 0 is
 * generated, seg_hidden[hidden] (may be NULL) receives the final-normed
 * hidden state of the position whose logits produced its first occurrence
 * (MedPLIB's <SEG> state) and *seg_index its index in out_tokens; else
 * *seg_index = -1 and seg_hidden is untouched. */
mg_status mg_medplib_generate(mg_context *ctx, mg_medplib *model, const int32_t *tokens, int n_tokens,
                              const mg_tensor *image_embeddings, const mg_tensor *region_embeddings,
                              const mg_generate_options *options, int32_t seg_token, int32_t *out_tokens,
                              int max_out, int *n_out, float *seg_hidden, int *seg_index);
/* text_hidden_fcs: seg_hidden[hidden] -> Linear, ReLU, Linear -> out[seg_dim]. */
mg_status mg_medplib_seg_prompt(mg_context *ctx, mg_medplib *model, const float *seg_hidden, float *out);
/* SAM-Med2D mask decoder with the projected <SEG> vector as the one sparse
 * token and the no-mask dense embedding; mask token 0 (multimask off).
 * sam_embedding[C, G, G] (mg_sam_encode_image on mg_image_preprocess_sam's
 * output); low_res[1, 4G, 4G] logits; *score (may be NULL) the IoU head. */
mg_status mg_medplib_decode_mask(mg_context *ctx, mg_medplib *model, const mg_tensor *sam_embedding,
                                 const float *seg_prompt, mg_tensor *low_res, float *score);
/* Low-res logits [h, w] -> mask u8 [H, W] (1 where sigmoid > threshold;
 * MedPLIB uses 0.1) and probs f32 [H, W] (may be NULL). resized_* = the
 * image's size inside the S x S SAM input (mg_image_geometry).
 * reference_crop false (correct, SAM-Med2D's): bilinear to S x S, crop the
 * centered resized region, bilinear to H x W. true: MedPLIB's
 * postprocess_masks, which crops the 64 x 64 map as if it were S x S
 * (pad = 64 - h', top = pad // 2, Python slice semantics; for a side of
 * 65..191 px it keeps rows [64 + floor((64 - h') / 2), 64) and stretches
 * them), then bilinear to H x W. Bilinear = torch align_corners False. */
mg_status mg_medplib_postprocess(mg_context *ctx, const mg_tensor *low_res, int sam_size, int resized_height,
                                 int resized_width, bool reference_crop, float threshold, mg_tensor *mask,
                                 mg_tensor *probs);
/* -- end MedPLIB -- */

/* ====================== end of models ==================================== */

#ifdef __cplusplus
}
#endif

#endif /* MEDGROUND_H */
