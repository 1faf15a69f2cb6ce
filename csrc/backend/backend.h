/* The backend interface. A backend is a table of the ops in medground.h's
 * "backend ops" section; mg_context picks one at creation and every public
 * op dispatches through it. CPU and CUDA implement the same table. */
#ifndef MG_BACKEND_H
#define MG_BACKEND_H

#include "../core/core.h"

typedef struct mg_backend {
    const char *name;
    /* Per-context state (BLAS handles, streams, scratch). May be NULL. */
    mg_status (*create_state)(mg_context *ctx, void **state);
    void (*destroy_state)(void *state);

    mg_status (*linear)(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                        const mg_tensor *bias, mg_tensor *y);
    mg_status (*matmul)(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, bool transpose_b,
                        mg_tensor *c);
    mg_status (*add)(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out);
    mg_status (*mul)(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out);
    mg_status (*scale)(mg_context *ctx, const mg_tensor *x, float factor, mg_tensor *out);
    mg_status (*layer_norm)(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                            const mg_tensor *bias, float eps, mg_tensor *out);
    mg_status (*rms_norm)(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight, float eps,
                          mg_tensor *out);
    mg_status (*activate)(mg_context *ctx, const mg_tensor *x, mg_activation kind, mg_tensor *out);
    mg_status (*softmax)(mg_context *ctx, const mg_tensor *x, const mg_tensor *mask, bool causal,
                         mg_tensor *out);
    mg_status (*rope)(mg_context *ctx, const mg_tensor *x, const int32_t *positions,
                      const float *inv_freq, int rotary_dim, mg_tensor *out);
    mg_status (*attention)(mg_context *ctx, const mg_tensor *q, const mg_tensor *k,
                           const mg_tensor *v, const mg_tensor *mask, bool causal, float scale,
                           mg_tensor *out);
    mg_status (*patch_embed)(mg_context *ctx, const mg_tensor *image, const mg_tensor *weight,
                             const mg_tensor *bias, mg_tensor *out);
    mg_status (*interpolate_bicubic)(mg_context *ctx, const mg_tensor *x, mg_tensor *out);
    mg_status (*interpolate_bilinear)(mg_context *ctx, const mg_tensor *x, bool align_corners,
                                      mg_tensor *out);
} mg_backend;

struct mg_context {
    const mg_backend *backend;
    void *backend_state;
    mg_threadpool *pool;
    int n_threads;
    mg_blas blas;
    mg_device device;
    mg_fpmath fpmath; /* resolved: AUTO, STRICT or BF16 */
    bool hint_bf16;   /* the running model's say under AUTO */
};

extern const mg_backend mg_cpu_backend;
/* NULL (with a message) when this build has no CUDA or no GPU is usable. */
const mg_backend *mg_cuda_backend(void);

#endif
