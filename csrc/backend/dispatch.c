/* mg_context and the public op entry points, which dispatch to the backend. */
#include "backend.h"

#include <stdlib.h>
#include <string.h>

/* MG_FPMATH_DEFAULT -> the MG_FPMATH environment variable, else AUTO. */
static mg_status mg_resolve_fpmath(mg_fpmath mode, mg_fpmath *out) {
    if (mode == MG_FPMATH_DEFAULT) {
        const char *env = getenv("MG_FPMATH");
        if (!env || !*env || strcmp(env, "auto") == 0) mode = MG_FPMATH_AUTO;
        else if (strcmp(env, "strict") == 0) mode = MG_FPMATH_STRICT;
        else if (strcmp(env, "bf16") == 0) mode = MG_FPMATH_BF16;
        else return mg_error(MG_ERR_INVALID_ARGUMENT, "MG_FPMATH=%s: expected 'auto', 'strict' or 'bf16'", env);
    }
    if (mode != MG_FPMATH_AUTO && mode != MG_FPMATH_STRICT && mode != MG_FPMATH_BF16)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "unknown fpmath mode %d (expected MG_FPMATH_DEFAULT, _AUTO, "
                        "_STRICT or _BF16)", (int)mode);
    *out = mode;
    return MG_OK;
}

mg_status mg_context_create(const mg_context_options *options, mg_context **out) {
    *out = NULL;
    mg_context_options defaults = {MG_DEVICE_CPU, 0, MG_BLAS_DEFAULT, MG_FPMATH_DEFAULT};
    if (!options) options = &defaults;
    mg_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return mg_error(MG_ERR_NO_MEMORY, "context: out of memory");
    ctx->device = options->device;
    ctx->blas = options->blas;
    if (ctx->blas == MG_BLAS_DEFAULT) {
        const char *env = getenv("MG_BLAS");
        if (!env || !*env || strcmp(env, "onednn") == 0) {
            ctx->blas = MG_BLAS_ONEDNN;
        } else if (strcmp(env, "openblas") == 0) {
            ctx->blas = MG_BLAS_OPENBLAS;
        } else {
            free(ctx);
            return mg_error(MG_ERR_INVALID_ARGUMENT, "MG_BLAS=%s: expected 'onednn' or 'openblas'", env);
        }
    }
    if (ctx->blas != MG_BLAS_ONEDNN && ctx->blas != MG_BLAS_OPENBLAS) {
        free(ctx);
        return mg_error(MG_ERR_INVALID_ARGUMENT, "unknown BLAS choice %d", (int)options->blas);
    }
    mg_status fp = mg_resolve_fpmath(options->fpmath, &ctx->fpmath);
    if (fp != MG_OK) {
        free(ctx);
        return fp;
    }
    if (options->device == MG_DEVICE_CPU) {
        ctx->backend = &mg_cpu_backend;
    } else if (options->device == MG_DEVICE_CUDA) {
        ctx->backend = mg_cuda_backend();
        if (!ctx->backend) {
            free(ctx);
            return MG_ERR_UNSUPPORTED; /* message set by mg_cuda_backend */
        }
    } else {
        free(ctx);
        return mg_error(MG_ERR_INVALID_ARGUMENT, "unknown device %d", (int)options->device);
    }
    mg_status status = mg_threadpool_create(options->n_threads, &ctx->pool);
    if (status != MG_OK) {
        free(ctx);
        return status;
    }
    ctx->n_threads = mg_threadpool_size(ctx->pool);
    if (ctx->backend->create_state) {
        status = ctx->backend->create_state(ctx, &ctx->backend_state);
        if (status != MG_OK) {
            mg_threadpool_destroy(ctx->pool);
            free(ctx);
            return status;
        }
    }
    *out = ctx;
    return MG_OK;
}

void mg_context_destroy(mg_context *ctx) {
    if (!ctx) return;
    if (ctx->backend && ctx->backend->destroy_state) ctx->backend->destroy_state(ctx->backend_state);
    mg_threadpool_destroy(ctx->pool);
    free(ctx);
}

mg_threadpool *mg_context_threadpool(mg_context *ctx) { return ctx->pool; }
int mg_context_n_threads(const mg_context *ctx) { return ctx->n_threads; }
mg_blas mg_context_blas(const mg_context *ctx) { return ctx->blas; }
const char *mg_context_backend_name(const mg_context *ctx) { return ctx->backend->name; }
mg_fpmath mg_context_fpmath(const mg_context *ctx) { return ctx->fpmath; }

mg_status mg_context_set_fpmath(mg_context *ctx, mg_fpmath mode) {
    if (!ctx) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_context_set_fpmath: context is NULL");
    return mg_resolve_fpmath(mode, &ctx->fpmath);
}

bool mg_context_fpmath_bf16(const mg_context *ctx) {
    return ctx->fpmath == MG_FPMATH_BF16 || (ctx->fpmath == MG_FPMATH_AUTO && ctx->hint_bf16);
}

bool mg_context_hint_bf16(mg_context *ctx, bool allow) {
    const bool previous = ctx->hint_bf16;
    ctx->hint_bf16 = allow;
    return previous;
}

#define MG_NEED_CONTEXT(ctx, op)                                                 \
    do {                                                                         \
        if (!(ctx)) return mg_error(MG_ERR_INVALID_ARGUMENT, #op ": context is NULL"); \
        if (!(ctx)->backend->op)                                                  \
            return mg_error(MG_ERR_UNSUPPORTED, #op ": not implemented by the %s backend", \
                            (ctx)->backend->name);                               \
    } while (0)

mg_status mg_linear(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                    const mg_tensor *bias, mg_tensor *y) {
    MG_NEED_CONTEXT(ctx, linear);
    return ctx->backend->linear(ctx, x, weight, bias, y);
}

mg_status mg_matmul(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, bool transpose_b,
                    mg_tensor *c) {
    MG_NEED_CONTEXT(ctx, matmul);
    return ctx->backend->matmul(ctx, a, b, transpose_b, c);
}

mg_status mg_add(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, add);
    return ctx->backend->add(ctx, a, b, out);
}

mg_status mg_mul(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, mul);
    return ctx->backend->mul(ctx, a, b, out);
}

mg_status mg_scale(mg_context *ctx, const mg_tensor *x, float factor, mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, scale);
    return ctx->backend->scale(ctx, x, factor, out);
}

mg_status mg_layer_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight,
                        const mg_tensor *bias, float eps, mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, layer_norm);
    return ctx->backend->layer_norm(ctx, x, weight, bias, eps, out);
}

mg_status mg_rms_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight, float eps,
                      mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, rms_norm);
    return ctx->backend->rms_norm(ctx, x, weight, eps, out);
}

mg_status mg_activate(mg_context *ctx, const mg_tensor *x, mg_activation kind, mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, activate);
    return ctx->backend->activate(ctx, x, kind, out);
}

mg_status mg_softmax(mg_context *ctx, const mg_tensor *x, const mg_tensor *mask, bool causal,
                     mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, softmax);
    return ctx->backend->softmax(ctx, x, mask, causal, out);
}

mg_status mg_rope(mg_context *ctx, const mg_tensor *x, const int32_t *positions,
                  const float *inv_freq, int rotary_dim, mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, rope);
    return ctx->backend->rope(ctx, x, positions, inv_freq, rotary_dim, out);
}

mg_status mg_attention(mg_context *ctx, const mg_tensor *q, const mg_tensor *k, const mg_tensor *v,
                       const mg_tensor *mask, bool causal, float scale, mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, attention);
    return ctx->backend->attention(ctx, q, k, v, mask, causal, scale, out);
}

mg_status mg_patch_embed(mg_context *ctx, const mg_tensor *image, const mg_tensor *weight,
                         const mg_tensor *bias, mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, patch_embed);
    return ctx->backend->patch_embed(ctx, image, weight, bias, out);
}

mg_status mg_interpolate_bicubic(mg_context *ctx, const mg_tensor *x, mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, interpolate_bicubic);
    return ctx->backend->interpolate_bicubic(ctx, x, out);
}

mg_status mg_interpolate_bilinear(mg_context *ctx, const mg_tensor *x, bool align_corners,
                                  mg_tensor *out) {
    MG_NEED_CONTEXT(ctx, interpolate_bilinear);
    return ctx->backend->interpolate_bilinear(ctx, x, align_corners, out);
}
