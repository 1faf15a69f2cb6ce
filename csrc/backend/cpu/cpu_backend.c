/* CPU backend op table. The ops live in the files of this directory:
 * cpu_linear.c (linear, matmul), cpu_gemm.c (GEMM providers and the
 * per-context state), cpu_kernels.c (SIMD dot products), cpu_elementwise.c,
 * cpu_attention.c and cpu_image.c. */
#include "cpu_internal.h"

const mg_backend mg_cpu_backend = {
    .name = "cpu",
    .create_state = mg_cpu_state_create,
    .destroy_state = mg_cpu_state_destroy,
    .linear = mg_cpu_linear,
    .matmul = mg_cpu_matmul,
    .add = mg_cpu_add,
    .mul = mg_cpu_mul,
    .scale = mg_cpu_scale,
    .layer_norm = mg_cpu_layer_norm,
    .rms_norm = mg_cpu_rms_norm,
    .activate = mg_cpu_activate,
    .softmax = mg_cpu_softmax,
    .rope = mg_cpu_rope,
    .attention = mg_cpu_attention,
    .patch_embed = mg_cpu_patch_embed,
    .interpolate_bicubic = mg_cpu_interpolate_bicubic,
    .interpolate_bilinear = mg_cpu_interpolate_bilinear,
};

mg_status mg_cpu_kernel_info(mg_context *ctx, const char **isa, bool *native_bf16_gemm) {
    if (!ctx) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_cpu_kernel_info: context is NULL");
    if (ctx->backend != &mg_cpu_backend)
        return mg_error(MG_ERR_UNSUPPORTED, "mg_cpu_kernel_info: the context runs the %s backend",
                        ctx->backend->name);
    static const char *const names[] = {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16"};
    if (isa) *isa = names[mg_cpu_context_isa(ctx)];
    if (native_bf16_gemm) *native_bf16_gemm = mg_cpu_gemm_has_bf16(ctx);
    return MG_OK;
}
