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

typedef struct mg_context_options {
    mg_device device;  /* MG_DEVICE_CPU (default) or MG_DEVICE_CUDA         */
    int n_threads;     /* <= 0: number of cores                             */
    mg_blas blas;      /* CPU GEMM provider                                 */
} mg_context_options;

/* Caller frees with mg_context_destroy. options may be NULL (defaults). */
mg_status mg_context_create(const mg_context_options *options, mg_context **out);
void mg_context_destroy(mg_context *ctx);
mg_threadpool *mg_context_threadpool(mg_context *ctx);
int mg_context_n_threads(const mg_context *ctx);
mg_blas mg_context_blas(const mg_context *ctx);
const char *mg_context_backend_name(const mg_context *ctx);

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
 * mask optional, additive, broadcastable to [Hq, Tq, Tk]. causal as in
 * mg_softmax. scale usually 1/sqrt(D). Never materialises more than one
 * block of scores per thread. */
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

/* ====================== end of checkpoint I/O ============================ */

/* ======================================================================== */
/* == tokenizers                                                          == */
/* ======================================================================== */
/* (owned by the tokenizer module) */

/* ====================== end of tokenizers ================================ */

/* ======================================================================== */
/* == evaluation metrics                                                  == */
/* ======================================================================== */
/* (owned by the eval module) */

/* ====================== end of evaluation metrics ======================== */

/* ======================================================================== */
/* == dataset tools                                                       == */
/* ======================================================================== */
/* (owned by the data module) */

/* ====================== end of dataset tools ============================= */

/* ======================================================================== */
/* == models                                                              == */
/* ======================================================================== */
/* (owned by the models module) */

/* ====================== end of models ==================================== */

#ifdef __cplusplus
}
#endif

#endif /* MEDGROUND_H */
