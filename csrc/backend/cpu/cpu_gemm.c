/* GEMM providers (oneDNN matmul, OpenBLAS sgemm) and the per-context CPU
 * state that caches oneDNN primitives per shape: building a matmul
 * primitive costs far more than running a small one, and a forward pass
 * repeats the same few shapes every layer. */
#include "cpu_internal.h"

#include <cblas.h>
#include <dlfcn.h>
#include <limits.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MG_GEMM_CACHE_SIZE 64

typedef struct mg_gemm_key {
    mg_dtype dtype;
    int64_t M, N, K, lda, ldb, ldc;
    bool trans_b;
} mg_gemm_key;

typedef struct mg_gemm_entry {
    mg_gemm_key key;
    dnnl_primitive_t primitive;
    dnnl_memory_t a, b, c;
    bool used;
} mg_gemm_entry;

struct mg_cpu_state {
    mg_cpu_isa isa;
    pthread_mutex_t lock; /* guards the cache and the stream */
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    mg_gemm_entry cache[MG_GEMM_CACHE_SIZE];
    int next_victim;
    int bf16_gemm; /* -1 not probed yet, 0 no native bf16 matmul, 1 yes */
    /* libgomp's omp_set_num_threads, found at run time: oneDNN runs on
     * OpenMP here and reads the calling thread's OpenMP thread count. */
    void (*set_omp_threads)(int);
    /* Kept scratch buffers (mg_cpu_scratch_take / give), guarded by lock. */
    void *scratch[MG_CPU_SCRATCH_SLOTS];
    size_t scratch_bytes[MG_CPU_SCRATCH_SLOTS];
};

void *mg_cpu_scratch_take(mg_context *ctx, int slot, size_t bytes, size_t *capacity) {
    mg_cpu_state *state = ctx->backend_state;
    *capacity = bytes;
    if (state && slot >= 0 && slot < MG_CPU_SCRATCH_SLOTS) {
        pthread_mutex_lock(&state->lock);
        void *kept = state->scratch[slot];
        if (kept && state->scratch_bytes[slot] >= bytes) {
            *capacity = state->scratch_bytes[slot];
            state->scratch[slot] = NULL;
            pthread_mutex_unlock(&state->lock);
            return kept;
        }
        pthread_mutex_unlock(&state->lock);
    }
    return mg_aligned_alloc(bytes);
}

void mg_cpu_scratch_give(mg_context *ctx, int slot, void *buffer, size_t capacity) {
    mg_cpu_state *state = ctx->backend_state;
    if (!buffer) return;
    if (state && slot >= 0 && slot < MG_CPU_SCRATCH_SLOTS) {
        pthread_mutex_lock(&state->lock);
        /* keep the larger of the kept one and this one */
        if (!state->scratch[slot] || state->scratch_bytes[slot] < capacity) {
            void *old = state->scratch[slot];
            state->scratch[slot] = buffer;
            state->scratch_bytes[slot] = capacity;
            buffer = old;
        }
        pthread_mutex_unlock(&state->lock);
    }
    mg_aligned_free(buffer);
}

mg_cpu_isa mg_cpu_context_isa(mg_context *ctx) {
    const mg_cpu_state *state = ctx->backend_state;
    return state ? state->isa : MG_ISA_SCALAR;
}

/* MG_CPU_ISA caps the kernels' level (it never raises it past the CPU's;
 * "native" or unset: the CPU's own); an unknown value is an error at
 * context creation, not silently ignored. */
static mg_status mg_cpu_isa_from_env(mg_cpu_isa detected, mg_cpu_isa *out) {
    const char *env = getenv("MG_CPU_ISA");
    *out = detected;
    if (!env || !*env || strcmp(env, "native") == 0) return MG_OK;
    static const char *const names[] = {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16"};
    for (int level = 0; level < (int)(sizeof names / sizeof names[0]); level++) {
        if (strcmp(env, names[level]) == 0) {
            if ((mg_cpu_isa)level < detected) *out = (mg_cpu_isa)level;
            return MG_OK;
        }
    }
    return mg_error(MG_ERR_INVALID_ARGUMENT,
                    "MG_CPU_ISA=%s: expected native, scalar, avx2, avx512, avx512_vnni or avx512_bf16", env);
}

mg_status mg_cpu_state_create(mg_context *ctx, void **out) {
    *out = NULL;
    mg_cpu_state *state = calloc(1, sizeof *state);
    if (!state) return mg_error(MG_ERR_NO_MEMORY, "cpu backend: out of memory");
    mg_status status = mg_cpu_isa_from_env(mg_cpu_detect_isa(), &state->isa);
    if (status != MG_OK) {
        free(state);
        return status;
    }
    state->bf16_gemm = -1;
    pthread_mutex_init(&state->lock, NULL);
    void *gomp = dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (gomp) {
        void *symbol = dlsym(gomp, "omp_set_num_threads");
        memcpy(&state->set_omp_threads, &symbol, sizeof symbol);
        dlclose(gomp); /* NOLOAD handle: the library stays loaded by oneDNN */
    }
    *out = state;
    return MG_OK;
}

static void mg_gemm_entry_clear(mg_gemm_entry *entry) {
    if (entry->primitive) dnnl_primitive_destroy(entry->primitive);
    if (entry->a) dnnl_memory_destroy(entry->a);
    if (entry->b) dnnl_memory_destroy(entry->b);
    if (entry->c) dnnl_memory_destroy(entry->c);
    memset(entry, 0, sizeof *entry);
}

void mg_cpu_state_destroy(void *raw) {
    mg_cpu_state *state = raw;
    if (!state) return;
    for (int i = 0; i < MG_GEMM_CACHE_SIZE; i++) mg_gemm_entry_clear(&state->cache[i]);
    for (int i = 0; i < MG_CPU_SCRATCH_SLOTS; i++) mg_aligned_free(state->scratch[i]);
    if (state->stream) dnnl_stream_destroy(state->stream);
    if (state->engine) dnnl_engine_destroy(state->engine);
    pthread_mutex_destroy(&state->lock);
    free(state);
}

static mg_status mg_dnnl_check(dnnl_status_t status, const char *what) {
    if (status == dnnl_success) return MG_OK;
    return mg_error(status == dnnl_out_of_memory ? MG_ERR_NO_MEMORY : MG_ERR_INTERNAL,
                    "oneDNN %s failed (dnnl_status %d)", what, (int)status);
}

/* Builds the primitive and its three memory objects (data handles set per call). */
static mg_status mg_gemm_entry_build(mg_cpu_state *state, const mg_gemm_key *key,
                                     mg_gemm_entry *entry) {
    dnnl_data_type_t in_type = key->dtype == MG_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t a_dims = {key->M, key->K}, b_dims = {key->K, key->N}, c_dims = {key->M, key->N};
    dnnl_dims_t a_strides = {key->lda, 1}, c_strides = {key->ldc, 1};
    /* B is read as [K, N]; the transposed case is the same memory with swapped strides. */
    dnnl_dims_t b_strides = {key->ldb, 1};
    if (key->trans_b) {
        b_strides[0] = 1;
        b_strides[1] = key->ldb;
    }
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    mg_status status = mg_dnnl_check(dnnl_memory_desc_init_by_strides(&a_md, 2, a_dims, in_type, a_strides), "memory desc");
    if (status == MG_OK) status = mg_dnnl_check(dnnl_memory_desc_init_by_strides(&b_md, 2, b_dims, in_type, b_strides), "memory desc");
    if (status == MG_OK) status = mg_dnnl_check(dnnl_memory_desc_init_by_strides(&c_md, 2, c_dims, dnnl_f32, c_strides), "memory desc");
    if (status == MG_OK) status = mg_dnnl_check(dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md), "matmul desc");
    if (status == MG_OK) {
        dnnl_status_t s = dnnl_primitive_desc_create(&pd, &desc, NULL, state->engine, NULL);
        if (s == dnnl_unimplemented)
            return mg_error(MG_ERR_UNSUPPORTED, "oneDNN has no %s matmul for this CPU",
                            mg_dtype_name(key->dtype));
        status = mg_dnnl_check(s, "matmul primitive desc");
    }
    if (status == MG_OK) status = mg_dnnl_check(dnnl_primitive_create(&entry->primitive, pd), "matmul primitive");
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (status == MG_OK) status = mg_dnnl_check(dnnl_memory_create(&entry->a, &a_md, state->engine, DNNL_MEMORY_NONE), "memory");
    if (status == MG_OK) status = mg_dnnl_check(dnnl_memory_create(&entry->b, &b_md, state->engine, DNNL_MEMORY_NONE), "memory");
    if (status == MG_OK) status = mg_dnnl_check(dnnl_memory_create(&entry->c, &c_md, state->engine, DNNL_MEMORY_NONE), "memory");
    if (status != MG_OK) {
        mg_gemm_entry_clear(entry);
        return status;
    }
    entry->key = *key;
    entry->used = true;
    return MG_OK;
}

/* Call with the lock held. */
static mg_status mg_onednn_start(mg_cpu_state *state) {
    if (state->engine) return MG_OK;
    MG_TRY(mg_dnnl_check(dnnl_engine_create(&state->engine, dnnl_cpu, 0), "engine"));
    return mg_dnnl_check(dnnl_stream_create(&state->stream, state->engine, dnnl_stream_default_flags),
                         "stream");
}

bool mg_cpu_gemm_has_bf16(mg_context *ctx) {
    mg_cpu_state *state = ctx->backend_state;
    if (!state || ctx->blas != MG_BLAS_ONEDNN) return false;
    pthread_mutex_lock(&state->lock);
    if (state->bf16_gemm < 0 && mg_onednn_start(state) == MG_OK) {
        /* oneDNN 2.6 enables its AVX-512 (and so bf16) kernels only on CPUs
         * it recognises; elsewhere a bf16 matmul is unimplemented. */
        mg_gemm_key key;
        memset(&key, 0, sizeof key);
        key.dtype = MG_BF16;
        key.M = key.N = key.K = key.lda = key.ldb = key.ldc = 32;
        mg_gemm_entry probe;
        memset(&probe, 0, sizeof probe);
        state->bf16_gemm = mg_gemm_entry_build(state, &key, &probe) == MG_OK;
        mg_gemm_entry_clear(&probe);
        mg_clear_error();
    }
    bool has = state->bf16_gemm == 1;
    pthread_mutex_unlock(&state->lock);
    return has;
}

static mg_status mg_gemm_onednn(mg_context *ctx, const mg_gemm_key *key, const void *A,
                                const void *B, float *C) {
    mg_cpu_state *state = ctx->backend_state;
    if (!state) return mg_error(MG_ERR_INTERNAL, "cpu backend: no state");
    pthread_mutex_lock(&state->lock);
    mg_status status = mg_onednn_start(state);
    mg_gemm_entry *entry = NULL;
    for (int i = 0; status == MG_OK && i < MG_GEMM_CACHE_SIZE; i++) {
        if (state->cache[i].used && memcmp(&state->cache[i].key, key, sizeof *key) == 0) {
            entry = &state->cache[i];
            break;
        }
    }
    if (status == MG_OK && !entry) {
        entry = &state->cache[state->next_victim];
        state->next_victim = (state->next_victim + 1) % MG_GEMM_CACHE_SIZE;
        mg_gemm_entry_clear(entry);
        status = mg_gemm_entry_build(state, key, entry);
    }
    if (status == MG_OK) {
        if (state->set_omp_threads) state->set_omp_threads(ctx->n_threads);
        dnnl_memory_set_data_handle(entry->a, (void *)A);
        dnnl_memory_set_data_handle(entry->b, (void *)B);
        dnnl_memory_set_data_handle(entry->c, C);
        dnnl_exec_arg_t args[3] = {
            {DNNL_ARG_SRC, entry->a}, {DNNL_ARG_WEIGHTS, entry->b}, {DNNL_ARG_DST, entry->c}};
        status = mg_dnnl_check(dnnl_primitive_execute(entry->primitive, state->stream, 3, args), "matmul");
        if (status == MG_OK) status = mg_dnnl_check(dnnl_stream_wait(state->stream), "stream wait");
    }
    pthread_mutex_unlock(&state->lock);
    return status;
}

typedef struct {
    const uint16_t *src;
    float *dst;
    int64_t cols, ld;
} mg_bf16_widen_job;

static void mg_bf16_widen_rows(void *raw, int64_t begin, int64_t end, int thread_index) {
    const mg_bf16_widen_job *job = raw;
    for (int64_t r = begin; r < end; r++) {
        const uint16_t *s = job->src + r * job->ld;
        float *d = job->dst + r * job->cols;
        for (int64_t i = 0; i < job->cols; i++) {
            uint32_t bits = (uint32_t)s[i] << 16;
            memcpy(&d[i], &bits, 4);
        }
    }
}

/* OpenBLAS has no bf16 path we can rely on for this CPU, so bf16 operands
 * are widened (exactly) to f32 first. */
static mg_status mg_widen_bf16(mg_context *ctx, const void *src, int64_t rows, int64_t cols,
                               int64_t ld, float **out) {
    size_t bytes;
    if (!mg_mul_size((size_t)rows, (size_t)cols, &bytes) || !mg_mul_size(bytes, 4, &bytes))
        return mg_error(MG_ERR_NO_MEMORY, "gemm: bf16 operand too large");
    *out = mg_aligned_alloc(bytes);
    if (!*out) return mg_error(MG_ERR_NO_MEMORY, "gemm: no memory to widen a bf16 operand of %zu bytes", bytes);
    mg_bf16_widen_job job = {src, *out, cols, ld};
    mg_cpu_parallel_for(ctx, rows, 16, mg_bf16_widen_rows, &job);
    return MG_OK;
}

static mg_status mg_gemm_openblas(mg_context *ctx, const mg_gemm_key *key, const void *A,
                                  const void *B, float *C) {
    const int64_t limit = INT_MAX;
    if (key->M > limit || key->N > limit || key->K > limit || key->lda > limit ||
        key->ldb > limit || key->ldc > limit)
        return mg_error(MG_ERR_UNSUPPORTED, "gemm: %lld x %lld x %lld exceeds OpenBLAS's 32-bit sizes",
                        (long long)key->M, (long long)key->N, (long long)key->K);
    const float *a = A, *b = B;
    float *a_owned = NULL, *b_owned = NULL;
    int64_t lda = key->lda, ldb = key->ldb;
    if (key->dtype == MG_BF16) {
        MG_TRY(mg_widen_bf16(ctx, A, key->M, key->K, key->lda, &a_owned));
        int64_t b_rows = key->trans_b ? key->N : key->K, b_cols = key->trans_b ? key->K : key->N;
        mg_status status = mg_widen_bf16(ctx, B, b_rows, b_cols, key->ldb, &b_owned);
        if (status != MG_OK) {
            mg_aligned_free(a_owned);
            return status;
        }
        a = a_owned;
        b = b_owned;
        lda = key->K;
        ldb = b_cols;
    }
    openblas_set_num_threads(ctx->n_threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, key->trans_b ? CblasTrans : CblasNoTrans, (int)key->M,
                (int)key->N, (int)key->K, 1.0f, a, (int)lda, b, (int)ldb, 0.0f, C, (int)key->ldc);
    mg_aligned_free(a_owned);
    mg_aligned_free(b_owned);
    return MG_OK;
}

mg_status mg_cpu_gemm(mg_context *ctx, mg_dtype dtype, int64_t M, int64_t N, int64_t K,
                      const void *A, int64_t lda, const void *B, int64_t ldb, bool trans_b,
                      float *C, int64_t ldc) {
    if (dtype != MG_F32 && dtype != MG_BF16)
        return mg_error(MG_ERR_DTYPE, "gemm: %s operands are not supported (f32 or bf16)",
                        mg_dtype_name(dtype));
    if (M <= 0 || N <= 0 || K <= 0 || lda < K || ldc < N || ldb < (trans_b ? K : N))
        return mg_error(MG_ERR_INTERNAL, "gemm: bad sizes M=%lld N=%lld K=%lld", (long long)M,
                        (long long)N, (long long)K);
    mg_gemm_key key;
    memset(&key, 0, sizeof key); /* the key is compared with memcmp: zero the padding */
    key.dtype = dtype;
    key.M = M;
    key.N = N;
    key.K = K;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.trans_b = trans_b;
    if (ctx->blas == MG_BLAS_OPENBLAS) return mg_gemm_openblas(ctx, &key, A, B, C);
    if (dtype == MG_BF16 && !mg_cpu_gemm_has_bf16(ctx)) {
        /* No native bf16 matmul: widen both operands (exactly) to f32. */
        float *a32 = NULL, *b32 = NULL;
        int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
        mg_status status = mg_widen_bf16(ctx, A, M, K, lda, &a32);
        if (status == MG_OK) status = mg_widen_bf16(ctx, B, b_rows, b_cols, ldb, &b32);
        if (status == MG_OK) {
            key.dtype = MG_F32;
            key.lda = K;
            key.ldb = b_cols;
            status = mg_gemm_onednn(ctx, &key, a32, b32, C);
        }
        mg_aligned_free(a32);
        mg_aligned_free(b32);
        return status;
    }
    return mg_gemm_onednn(ctx, &key, A, B, C);
}
