/* CUDA backend: the op table of backend.h on an NVIDIA GPU.
 *
 * Data placement. Models hand the backend the same mg_tensor views they hand
 * the CPU backend. Weights (linear/norm/patch weights and biases) are host
 * memory — usually an mmap'd checkpoint that never moves — and are uploaded
 * once, then found again by host address in a cache. Activations may live on
 * the host (copied in and out per op through grow-only device scratch
 * buffers) or on the device (tensor.device == MG_DEVICE_CUDA, used in place).
 *
 * GEMM: cuBLAS when libcublas can be loaded at run time (dlopen; no link-time
 * dependency, so one build runs with or without it), else a tiled kernel.
 */
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend/backend.h"
}

namespace {

/* ------------------------------------------------------------ cuBLAS (dlopen) */

typedef void *cublas_handle;
typedef int (*cublas_create_fn)(cublas_handle *);
typedef int (*cublas_destroy_fn)(cublas_handle);
typedef int (*cublas_set_stream_fn)(cublas_handle, cudaStream_t);
typedef int (*cublas_sgemm_fn)(cublas_handle, int, int, int, int, int, const float *, const float *,
                               int, const float *, int, const float *, float *, int);
typedef int (*cublas_sgemm_strided_fn)(cublas_handle, int, int, int, int, int, const float *,
                                       const float *, int, long long, const float *, int, long long,
                                       const float *, float *, int, long long, int);
enum { CUBLAS_OP_N_ = 0, CUBLAS_OP_T_ = 1 };

struct cublas_api {
    void *library;
    cublas_handle handle;
    cublas_destroy_fn destroy;
    cublas_sgemm_fn sgemm;
    cublas_sgemm_strided_fn sgemm_strided;
};

/* ------------------------------------------------------------------ state */

struct weight_entry {
    const void *host;
    size_t bytes;
    void *device = NULL;
};

struct cuda_state {
    cudaStream_t stream;
    cublas_api blas;
    weight_entry *weights;
    size_t n_weights, cap_weights;
    void *scratch[8];
    size_t scratch_bytes[8];
};

mg_status cuda_check(cudaError_t err, const char *what) {
    if (err == cudaSuccess) return MG_OK;
    return mg_error(MG_ERR_INTERNAL, "cuda: %s: %s", what, cudaGetErrorString(err));
}

#define CUDA_TRY(call, what) MG_TRY(cuda_check((call), (what)))

cuda_state *state_of(mg_context *ctx) { return (cuda_state *)ctx->backend_state; }

void load_cublas(cuda_state *s) {
    const char *names[] = {"libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"};
    for (const char *name : names) {
        s->blas.library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (s->blas.library) break;
    }
    if (!s->blas.library) return;
    cublas_create_fn create = (cublas_create_fn)dlsym(s->blas.library, "cublasCreate_v2");
    cublas_set_stream_fn set_stream = (cublas_set_stream_fn)dlsym(s->blas.library, "cublasSetStream_v2");
    s->blas.destroy = (cublas_destroy_fn)dlsym(s->blas.library, "cublasDestroy_v2");
    s->blas.sgemm = (cublas_sgemm_fn)dlsym(s->blas.library, "cublasSgemm_v2");
    s->blas.sgemm_strided = (cublas_sgemm_strided_fn)dlsym(s->blas.library, "cublasSgemmStridedBatched");
    if (!create || !set_stream || !s->blas.destroy || !s->blas.sgemm || !s->blas.sgemm_strided ||
        create(&s->blas.handle) != 0) {
        dlclose(s->blas.library);
        memset(&s->blas, 0, sizeof s->blas);
        return;
    }
    set_stream(s->blas.handle, s->stream);
}

mg_status create_state(mg_context *ctx, void **out) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0)
        return mg_error(MG_ERR_UNSUPPORTED, "device 'cuda': no usable GPU (%s)",
                        err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
    cuda_state *s = (cuda_state *)calloc(1, sizeof *s);
    if (!s) return mg_error(MG_ERR_NO_MEMORY, "cuda: out of memory");
    if (cudaStreamCreate(&s->stream) != cudaSuccess) {
        free(s);
        return mg_error(MG_ERR_INTERNAL, "cuda: cannot create a stream");
    }
    load_cublas(s);
    *out = s;
    return MG_OK;
}

void destroy_state(void *raw) {
    cuda_state *s = (cuda_state *)raw;
    if (!s) return;
    for (size_t i = 0; i < s->n_weights; i++) cudaFree(s->weights[i].device);
    for (int i = 0; i < 8; i++) cudaFree(s->scratch[i]);
    if (s->blas.handle) s->blas.destroy(s->blas.handle);
    if (s->blas.library) dlclose(s->blas.library);
    cudaStreamDestroy(s->stream);
    free(s->weights);
    free(s);
}

/* A contiguous host copy of a strided host tensor (caller frees) or NULL when
 * already contiguous. */
mg_status contiguous_host(const mg_tensor *t, mg_tensor *out, void **owned) {
    *owned = NULL;
    *out = *t;
    if (t->device == MG_DEVICE_CUDA || mg_tensor_is_contiguous(t)) return MG_OK;
    if (t->device != MG_DEVICE_CPU) return mg_error(MG_ERR_INVALID_ARGUMENT, "cuda: unknown device");
    MG_TRY(mg_tensor_alloc(out, t->dtype, t->n_dims, t->shape));
    mg_status status = mg_tensor_convert(t, out);
    if (status != MG_OK) {
        mg_tensor_free_data(out);
        return status;
    }
    *owned = out->data;
    return MG_OK;
}

/* Device pointer of a weight, uploading it on first use. */
mg_status device_weight(cuda_state *s, const mg_tensor *t, const void **out) {
    if (!t) {
        *out = NULL;
        return MG_OK;
    }
    if (t->device == MG_DEVICE_CUDA) {
        *out = t->data;
        return MG_OK;
    }
    if (!mg_tensor_is_contiguous(t))
        return mg_error(MG_ERR_SHAPE, "cuda: weights must be contiguous host tensors");
    size_t bytes = mg_tensor_nbytes(t);
    for (size_t i = 0; i < s->n_weights; i++) {
        if (s->weights[i].host == t->data && s->weights[i].bytes == bytes) {
            *out = s->weights[i].device;
            return MG_OK;
        }
    }
    if (s->n_weights == s->cap_weights) {
        size_t cap = s->cap_weights ? 2 * s->cap_weights : 256;
        weight_entry *grown = (weight_entry *)realloc(s->weights, cap * sizeof *grown);
        if (!grown) return mg_error(MG_ERR_NO_MEMORY, "cuda: out of memory");
        s->weights = grown;
        s->cap_weights = cap;
    }
    void *device = NULL;
    CUDA_TRY(cudaMalloc(&device, bytes), "upload weight");
    cudaError_t err = cudaMemcpyAsync(device, t->data, bytes, cudaMemcpyHostToDevice, s->stream);
    if (err != cudaSuccess) {
        cudaFree(device);
        return cuda_check(err, "upload weight");
    }
    s->weights[s->n_weights++] = weight_entry{t->data, bytes, device};
    *out = device;
    return MG_OK;
}

mg_status scratch(cuda_state *s, int slot, size_t bytes, void **out) {
    if (s->scratch_bytes[slot] < bytes) {
        cudaFree(s->scratch[slot]);
        s->scratch[slot] = NULL;
        s->scratch_bytes[slot] = 0;
        CUDA_TRY(cudaMalloc(&s->scratch[slot], bytes), "scratch allocation");
        s->scratch_bytes[slot] = bytes;
    }
    *out = s->scratch[slot];
    return MG_OK;
}

/* An activation input on the device (slot = scratch slot for host inputs). */
mg_status device_input(cuda_state *s, const mg_tensor *t, int slot, const void **out) {
    if (!t) {
        *out = NULL;
        return MG_OK;
    }
    if (t->device == MG_DEVICE_CUDA) {
        if (!mg_tensor_is_contiguous(t))
            return mg_error(MG_ERR_UNSUPPORTED, "cuda: strided device tensors are not supported");
        *out = t->data;
        return MG_OK;
    }
    mg_tensor host;
    void *owned;
    MG_TRY(contiguous_host(t, &host, &owned));
    size_t bytes = mg_tensor_nbytes(&host);
    void *device = NULL;
    mg_status status = scratch(s, slot, bytes, &device);
    if (status == MG_OK)
        status = cuda_check(cudaMemcpyAsync(device, host.data, bytes, cudaMemcpyHostToDevice, s->stream),
                            "copy input");
    /* the copy must finish before the temporary host buffer goes away */
    if (status == MG_OK && owned) status = cuda_check(cudaStreamSynchronize(s->stream), "copy input");
    mg_aligned_free(owned);
    *out = device;
    return status;
}

mg_status device_output(cuda_state *s, mg_tensor *t, int slot, void **out) {
    if (t->device == MG_DEVICE_CUDA) {
        *out = t->data;
        return MG_OK;
    }
    if (!mg_tensor_is_contiguous(t)) return mg_error(MG_ERR_SHAPE, "cuda: outputs must be contiguous");
    return scratch(s, slot, mg_tensor_nbytes(t), out);
}

mg_status finish_output(cuda_state *s, mg_tensor *t, void *device) {
    CUDA_TRY(cudaGetLastError(), "kernel launch");
    if (t->device != MG_DEVICE_CUDA)
        CUDA_TRY(cudaMemcpyAsync(t->data, device, mg_tensor_nbytes(t), cudaMemcpyDeviceToHost, s->stream),
                 "copy output");
    CUDA_TRY(cudaStreamSynchronize(s->stream), "synchronize");
    return MG_OK;
}

mg_status need_f32(const mg_tensor *t, const char *op, const char *what) {
    if (t && t->dtype != MG_F32)
        return mg_error(MG_ERR_DTYPE, "%s: %s must be f32, got %s", op, what, mg_dtype_name(t->dtype));
    return MG_OK;
}

int64_t last_dim(const mg_tensor *t) { return t->n_dims ? t->shape[t->n_dims - 1] : 1; }

bool same_shape(const mg_tensor *a, const mg_tensor *b) {
    if (mg_tensor_numel(a) != mg_tensor_numel(b) || last_dim(a) != last_dim(b)) return false;
    return true;
}

unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

/* ---------------------------------------------------------------- kernels */

__device__ float half_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ float bf16_to_float(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

/* Weight element (row n, column k) of a row-major [N, K] weight of any dtype. */
__device__ float weight_at(const void *w, int dtype, int64_t K, int64_t n, int64_t k) {
    switch (dtype) {
    case MG_F32: return ((const float *)w)[n * K + k];
    case MG_F16: return half_to_float(((const uint16_t *)w)[n * K + k]);
    case MG_BF16: return bf16_to_float(((const uint16_t *)w)[n * K + k]);
    case MG_Q8_0: {
        const mg_block_q8_0 *b = (const mg_block_q8_0 *)w + (n * K + k) / 32;
        return half_to_float(b->d) * (float)b->qs[k % 32];
    }
    case MG_Q4_0: {
        const mg_block_q4_0 *b = (const mg_block_q4_0 *)w + (n * K + k) / 32;
        int i = (int)(k % 32);
        int q = i < 16 ? (b->qs[i] & 0x0f) : (b->qs[i - 16] >> 4);
        return half_to_float(b->d) * (float)(q - 8);
    }
    }
    return 0.0f;
}

/* Tiled y = x Wᵀ + b for any weight dtype (dequantised while staging tiles). */
constexpr int TILE = 32;
__global__ void linear_kernel(const float *x, const void *w, int dtype, const float *bias, float *y,
                              int64_t M, int64_t N, int64_t K) {
    __shared__ float xs[TILE][TILE + 1];
    __shared__ float ws[TILE][TILE + 1];
    int64_t row = blockIdx.y * TILE + threadIdx.y;
    int64_t col = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += TILE) {
        int64_t kx = k0 + threadIdx.x;
        xs[threadIdx.y][threadIdx.x] = (row < M && kx < K) ? x[row * K + kx] : 0.0f;
        int64_t wn = blockIdx.x * TILE + threadIdx.y;
        ws[threadIdx.y][threadIdx.x] = (wn < N && kx < K) ? weight_at(w, dtype, K, wn, kx) : 0.0f;
        __syncthreads();
        for (int k = 0; k < TILE; k++) acc += xs[threadIdx.y][k] * ws[threadIdx.x][k];
        __syncthreads();
    }
    if (row < M && col < N) y[row * N + col] = acc + (bias ? bias[col] : 0.0f);
}

/* Batched c[b] = a[b] · op(b[b]) with batch-1 broadcasting. */
__global__ void matmul_kernel(const float *a, const float *b, float *c, int64_t M, int64_t N, int64_t K,
                              int64_t batch_a, int64_t batch_b, bool transpose_b) {
    int64_t batch = blockIdx.z;
    const float *A = a + (batch_a == 1 ? 0 : batch) * M * K;
    const float *B = b + (batch_b == 1 ? 0 : batch) * K * N;
    float *C = c + batch * M * N;
    __shared__ float as[TILE][TILE + 1];
    __shared__ float bs[TILE][TILE + 1];
    int64_t row = blockIdx.y * TILE + threadIdx.y;
    int64_t col = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += TILE) {
        int64_t ka = k0 + threadIdx.x;
        as[threadIdx.y][threadIdx.x] = (row < M && ka < K) ? A[row * K + ka] : 0.0f;
        int64_t kb = k0 + threadIdx.y;
        float bv = 0.0f;
        if (kb < K && col < N) bv = transpose_b ? B[col * K + kb] : B[kb * N + col];
        bs[threadIdx.y][threadIdx.x] = bv;
        __syncthreads();
        for (int k = 0; k < TILE; k++) acc += as[threadIdx.y][k] * bs[k][threadIdx.x];
        __syncthreads();
    }
    if (row < M && col < N) C[row * N + col] = acc;
}

struct broadcast_shape {
    int64_t out_shape[MG_MAX_DIMS];
    int64_t b_strides[MG_MAX_DIMS]; /* element strides, 0 where broadcast */
};

__global__ void binary_kernel(const float *a, const float *b, float *out, int64_t n, broadcast_shape bs,
                              int op) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    int64_t rest = i, offset = 0;
    for (int d = MG_MAX_DIMS - 1; d >= 0; d--) {
        int64_t index = rest % bs.out_shape[d];
        rest /= bs.out_shape[d];
        offset += index * bs.b_strides[d];
    }
    out[i] = op == 0 ? a[i] + b[offset] : a[i] * b[offset];
}

__global__ void scale_kernel(const float *x, float factor, float *out, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i] * factor;
}

__device__ float block_sum(float v) {
    __shared__ float partial[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
    __syncthreads();
    int n_warps = (blockDim.x + 31) >> 5;
    v = threadIdx.x < n_warps ? partial[threadIdx.x] : 0.0f;
    if (threadIdx.x < 32)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __shared__ float total;
    if (threadIdx.x == 0) total = v;
    __syncthreads();
    float result = total;
    __syncthreads();
    return result;
}

__device__ float block_max(float v) {
    __shared__ float partial[32];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
    __syncthreads();
    int n_warps = (blockDim.x + 31) >> 5;
    v = threadIdx.x < n_warps ? partial[threadIdx.x] : -INFINITY;
    if (threadIdx.x < 32)
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __shared__ float total;
    if (threadIdx.x == 0) total = v;
    __syncthreads();
    float result = total;
    __syncthreads();
    return result;
}

/* One block per row. rms = true: RMSNorm, else LayerNorm. */
__global__ void norm_kernel(const float *x, const float *weight, const float *bias, float *out,
                            int64_t D, float eps, bool rms) {
    const float *row = x + blockIdx.x * D;
    float *dst = out + blockIdx.x * D;
    float mean = 0.0f;
    if (!rms) {
        float s = 0.0f;
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += row[i];
        mean = block_sum(s) / (float)D;
    }
    float s2 = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float c = row[i] - mean;
        s2 += c * c;
    }
    float inv = rsqrtf(block_sum(s2) / (float)D + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float v = (row[i] - mean) * inv;
        if (weight) v *= weight[i];
        if (bias) v += bias[i];
        dst[i] = v;
    }
}

__global__ void activate_kernel(const float *x, float *out, int64_t n, int kind) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    switch (kind) {
    case MG_ACT_GELU_ERF: v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
    case MG_ACT_GELU_TANH:
        v = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        break;
    case MG_ACT_QUICK_GELU: v = v / (1.0f + expf(-1.702f * v)); break;
    case MG_ACT_SILU: v = v / (1.0f + expf(-v)); break;
    case MG_ACT_RELU: v = v > 0.0f ? v : 0.0f; break;
    }
    out[i] = v;
}

/* One block per row of x[..., Tq, Tk]; mask broadcast by element strides. */
__global__ void softmax_kernel(const float *x, const float *mask, broadcast_shape ms, float *out,
                               int64_t Tq, int64_t Tk, bool causal) {
    int64_t r = blockIdx.x;
    const float *row = x + r * Tk;
    float *dst = out + r * Tk;
    int64_t query = r % Tq;
    int64_t limit = causal ? query + (Tk - Tq) : Tk - 1;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < Tk; j += blockDim.x) {
        float v = j <= limit ? row[j] : -INFINITY;
        if (mask && j <= limit) {
            int64_t rest = r * Tk + j, offset = 0;
            for (int d = MG_MAX_DIMS - 1; d >= 0; d--) {
                offset += (rest % ms.out_shape[d]) * ms.b_strides[d];
                rest /= ms.out_shape[d];
            }
            v += mask[offset];
        }
        dst[j] = v;
        m = fmaxf(m, v);
    }
    m = block_max(m);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < Tk; j += blockDim.x) {
        float e = m == -INFINITY ? 0.0f : expf(dst[j] - m);
        dst[j] = e;
        s += e;
    }
    s = block_sum(s);
    for (int64_t j = threadIdx.x; j < Tk; j += blockDim.x) dst[j] = s > 0.0f ? dst[j] / s : 0.0f;
}

/* x[T, H, D]: rotate-half on the first rotary_dim entries of each head. */
__global__ void rope_kernel(const float *x, float *out, const int32_t *positions, const float *inv_freq,
                            int64_t T, int64_t H, int64_t D, int rotary_dim) {
    int64_t row = blockIdx.x; /* t * H + h */
    int64_t t = row / H;
    const float *src = x + row * D;
    float *dst = out + row * D;
    int half = rotary_dim / 2;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        if (i >= rotary_dim) {
            dst[i] = src[i];
            continue;
        }
        int f = (int)(i % half);
        float angle = (float)positions[t] * inv_freq[f];
        float c = cosf(angle), s = sinf(angle);
        float rotated = i < half ? -src[i + half] : src[i - half];
        dst[i] = src[i] * c + rotated * s;
    }
}

/* One warp per (query, head); online softmax over keys; D, Dv <= 256. */
__global__ void attention_kernel(const float *q, const float *k, const float *v, const float *mask,
                                 broadcast_shape ms, float *out, int64_t Tq, int64_t Tk, int64_t Hq,
                                 int64_t Hkv, int64_t D, int64_t Dv, bool causal, float scale) {
    int64_t item = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (item >= Tq * Hq) return;
    int64_t i = item / Hq, h = item % Hq;
    int64_t hk = h / (Hq / Hkv);
    const float *qi = q + (i * Hq + h) * D;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}; /* Dv / 32 <= 8 */
    float m = -INFINITY, l = 0.0f;
    int64_t limit = causal ? i + (Tk - Tq) : Tk - 1;
    for (int64_t j = 0; j <= limit && j < Tk; j++) {
        const float *kj = k + (j * Hkv + hk) * D;
        float dot = 0.0f;
        for (int64_t d = lane; d < D; d += 32) dot += qi[d] * kj[d];
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        float score = dot * scale;
        if (mask) {
            int64_t rest = (h * Tq + i) * Tk + j, offset = 0;
            for (int d = MG_MAX_DIMS - 1; d >= 0; d--) {
                offset += (rest % ms.out_shape[d]) * ms.b_strides[d];
                rest /= ms.out_shape[d];
            }
            score += mask[offset];
        }
        if (score == -INFINITY) continue;
        float m_new = fmaxf(m, score);
        float correction = expf(m - m_new);
        float p = expf(score - m_new);
        l = l * correction + p;
        const float *vj = v + (j * Hkv + hk) * Dv;
        for (int c = 0; c < 8; c++) {
            int64_t d = lane + 32 * c;
            if (d < Dv) acc[c] = acc[c] * correction + p * vj[d];
        }
        m = m_new;
    }
    float *dst = out + (i * Hq + h) * Dv;
    for (int c = 0; c < 8; c++) {
        int64_t d = lane + 32 * c;
        if (d < Dv) dst[d] = l > 0.0f ? acc[c] / l : 0.0f;
    }
}

/* image[C, H, W] -> columns[(H/P)*(W/P), C*P*P] (the conv weight's layout). */
__global__ void im2col_kernel(const float *image, float *columns, int64_t C, int64_t H, int64_t W, int64_t P) {
    int64_t GW = W / P, GH = H / P;
    int64_t K = C * P * P;
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= GH * GW * K) return;
    int64_t patch = i / K, k = i % K;
    int64_t c = k / (P * P), py = (k / P) % P, px = k % P;
    int64_t gy = patch / GW, gx = patch % GW;
    columns[i] = image[(c * H + gy * P + py) * W + gx * P + px];
}

__device__ float cubic_weight(float t, int which) {
    const float A = -0.75f; /* PyTorch's bicubic */
    float x;
    switch (which) {
    case 0: x = t + 1.0f; return ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
    case 1: x = t; return ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    case 2: x = 1.0f - t; return ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    default: x = 2.0f - t; return ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
    }
}

__global__ void interpolate_kernel(const float *x, float *out, int64_t C, int64_t H, int64_t W,
                                   int64_t H2, int64_t W2, bool bicubic, bool align_corners) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= C * H2 * W2) return;
    int64_t c = i / (H2 * W2), oy = (i / W2) % H2, ox = i % W2;
    const float *plane = x + c * H * W;
    float sy, sx;
    if (align_corners) {
        sy = H2 > 1 ? (float)oy * (float)(H - 1) / (float)(H2 - 1) : 0.0f;
        sx = W2 > 1 ? (float)ox * (float)(W - 1) / (float)(W2 - 1) : 0.0f;
    } else {
        sy = ((float)oy + 0.5f) * ((float)H / (float)H2) - 0.5f;
        sx = ((float)ox + 0.5f) * ((float)W / (float)W2) - 0.5f;
    }
    float value = 0.0f;
    if (bicubic) {
        float fy = floorf(sy), fx = floorf(sx);
        float ty = sy - fy, tx = sx - fx;
        for (int a = 0; a < 4; a++) {
            int64_t yy = min(max((int64_t)fy - 1 + a, (int64_t)0), H - 1);
            float row = 0.0f;
            for (int b = 0; b < 4; b++) {
                int64_t xx = min(max((int64_t)fx - 1 + b, (int64_t)0), W - 1);
                row += plane[yy * W + xx] * cubic_weight(tx, b);
            }
            value += row * cubic_weight(ty, a);
        }
    } else {
        if (!align_corners) {
            sy = fmaxf(sy, 0.0f);
            sx = fmaxf(sx, 0.0f);
        }
        int64_t y0 = min((int64_t)sy, H - 1), x0 = min((int64_t)sx, W - 1);
        int64_t y1 = min(y0 + 1, H - 1), x1 = min(x0 + 1, W - 1);
        float ly = sy - (float)y0, lx = sx - (float)x0;
        value = (1 - ly) * ((1 - lx) * plane[y0 * W + x0] + lx * plane[y0 * W + x1]) +
                ly * ((1 - lx) * plane[y1 * W + x0] + lx * plane[y1 * W + x1]);
    }
    out[i] = value;
}

/* --------------------------------------------------------------- the ops */

mg_status broadcast_strides(const mg_tensor *a, const mg_tensor *b, broadcast_shape *bs, const char *op) {
    char da[96], db[96];
    if (b->n_dims > a->n_dims)
        return mg_error(MG_ERR_SHAPE, "%s: %s does not broadcast to %s", op, mg_tensor_describe(b, db, sizeof db),
                        mg_tensor_describe(a, da, sizeof da));
    int64_t stride = 1;
    for (int d = MG_MAX_DIMS - 1; d >= 0; d--) {
        int ad = d - (MG_MAX_DIMS - a->n_dims);
        int bd = d - (MG_MAX_DIMS - b->n_dims);
        int64_t as = ad >= 0 ? a->shape[ad] : 1;
        int64_t bsz = bd >= 0 ? b->shape[bd] : 1;
        if (bsz != as && bsz != 1)
            return mg_error(MG_ERR_SHAPE, "%s: %s does not broadcast to %s", op,
                            mg_tensor_describe(b, db, sizeof db), mg_tensor_describe(a, da, sizeof da));
        bs->out_shape[d] = as;
        bs->b_strides[d] = bsz == 1 ? 0 : stride;
        stride *= bsz;
    }
    return MG_OK;
}

mg_status op_linear(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight, const mg_tensor *bias,
                    mg_tensor *y) {
    cuda_state *s = state_of(ctx);
    char dx[96], dw[96];
    MG_TRY(need_f32(x, "mg_linear", "x"));
    MG_TRY(need_f32(bias, "mg_linear", "bias"));
    if (weight->n_dims != 2 || last_dim(x) != weight->shape[1])
        return mg_error(MG_ERR_SHAPE, "mg_linear: x %s and weight %s: inner dimensions differ",
                        mg_tensor_describe(x, dx, sizeof dx), mg_tensor_describe(weight, dw, sizeof dw));
    int64_t K = weight->shape[1], N = weight->shape[0], M = mg_tensor_numel(x) / K;
    if (last_dim(y) != N || mg_tensor_numel(y) != M * N)
        return mg_error(MG_ERR_SHAPE, "mg_linear: output %s, expected [%lld, %lld]",
                        mg_tensor_describe(y, dx, sizeof dx), (long long)M, (long long)N);
    const void *dxp = NULL, *dwp = NULL, *dbp = NULL;
    void *dyp = NULL;
    MG_TRY(device_input(s, x, 0, &dxp));
    MG_TRY(device_weight(s, weight, &dwp));
    MG_TRY(device_weight(s, bias, &dbp));
    MG_TRY(device_output(s, y, 1, &dyp));
    if (s->blas.handle && weight->dtype == MG_F32) {
        /* column-major view: yᵀ[N, M] = W[N, K] · xᵀ[K, M] */
        const float one = 1.0f, zero = 0.0f;
        if (s->blas.sgemm(s->blas.handle, CUBLAS_OP_T_, CUBLAS_OP_N_, (int)N, (int)M, (int)K, &one,
                          (const float *)dwp, (int)K, (const float *)dxp, (int)K, &zero, (float *)dyp,
                          (int)N) != 0)
            return mg_error(MG_ERR_INTERNAL, "cuda: cublasSgemm failed for mg_linear [%lld x %lld x %lld]",
                            (long long)M, (long long)N, (long long)K);
        if (dbp) {
            broadcast_shape bs;
            mg_tensor yt = *y, bt = *bias;
            MG_TRY(broadcast_strides(&yt, &bt, &bs, "mg_linear"));
            binary_kernel<<<blocks_for(M * N, 256), 256, 0, s->stream>>>((const float *)dyp, (const float *)dbp,
                                                                         (float *)dyp, M * N, bs, 0);
        }
    } else {
        dim3 grid(blocks_for(N, TILE), blocks_for(M, TILE));
        linear_kernel<<<grid, dim3(TILE, TILE), 0, s->stream>>>((const float *)dxp, dwp, (int)weight->dtype,
                                                                (const float *)dbp, (float *)dyp, M, N, K);
    }
    return finish_output(s, y, dyp);
}

mg_status op_matmul(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, bool transpose_b, mg_tensor *c) {
    cuda_state *s = state_of(ctx);
    MG_TRY(need_f32(a, "mg_matmul", "a"));
    MG_TRY(need_f32(b, "mg_matmul", "b"));
    if (a->n_dims < 2 || a->n_dims > 3 || b->n_dims < 2 || b->n_dims > 3)
        return mg_error(MG_ERR_SHAPE, "mg_matmul: inputs must be 2-D or 3-D");
    int64_t batch_a = a->n_dims == 3 ? a->shape[0] : 1, batch_b = b->n_dims == 3 ? b->shape[0] : 1;
    int64_t M = a->shape[a->n_dims - 2], K = a->shape[a->n_dims - 1];
    int64_t Kb = transpose_b ? b->shape[b->n_dims - 1] : b->shape[b->n_dims - 2];
    int64_t N = transpose_b ? b->shape[b->n_dims - 2] : b->shape[b->n_dims - 1];
    int64_t batch = batch_a > batch_b ? batch_a : batch_b;
    if (K != Kb || (batch_a != batch_b && batch_a != 1 && batch_b != 1) || mg_tensor_numel(c) != batch * M * N)
        return mg_error(MG_ERR_SHAPE, "mg_matmul: shapes do not agree");
    const void *dap = NULL, *dbp = NULL;
    void *dcp = NULL;
    MG_TRY(device_input(s, a, 0, &dap));
    MG_TRY(device_input(s, b, 2, &dbp));
    MG_TRY(device_output(s, c, 1, &dcp));
    dim3 grid(blocks_for(N, TILE), blocks_for(M, TILE), (unsigned)batch);
    matmul_kernel<<<grid, dim3(TILE, TILE), 0, s->stream>>>((const float *)dap, (const float *)dbp, (float *)dcp,
                                                            M, N, K, batch_a, batch_b, transpose_b);
    return finish_output(s, c, dcp);
}

mg_status op_binary(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out, int op,
                    const char *name) {
    cuda_state *s = state_of(ctx);
    MG_TRY(need_f32(a, name, "a"));
    MG_TRY(need_f32(b, name, "b"));
    broadcast_shape bs;
    MG_TRY(broadcast_strides(a, b, &bs, name));
    if (!same_shape(a, out)) return mg_error(MG_ERR_SHAPE, "%s: output shape differs from a", name);
    const void *dap = NULL, *dbp = NULL;
    void *dop = NULL;
    MG_TRY(device_input(s, a, 0, &dap));
    MG_TRY(device_input(s, b, 2, &dbp));
    MG_TRY(device_output(s, out, 1, &dop));
    int64_t n = mg_tensor_numel(a);
    binary_kernel<<<blocks_for(n, 256), 256, 0, s->stream>>>((const float *)dap, (const float *)dbp, (float *)dop,
                                                             n, bs, op);
    return finish_output(s, out, dop);
}

mg_status op_add(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out) {
    return op_binary(ctx, a, b, out, 0, "mg_add");
}

mg_status op_mul(mg_context *ctx, const mg_tensor *a, const mg_tensor *b, mg_tensor *out) {
    return op_binary(ctx, a, b, out, 1, "mg_mul");
}

mg_status op_scale(mg_context *ctx, const mg_tensor *x, float factor, mg_tensor *out) {
    cuda_state *s = state_of(ctx);
    MG_TRY(need_f32(x, "mg_scale", "x"));
    if (!same_shape(x, out)) return mg_error(MG_ERR_SHAPE, "mg_scale: output shape differs from x");
    const void *dxp = NULL;
    void *dop = NULL;
    MG_TRY(device_input(s, x, 0, &dxp));
    MG_TRY(device_output(s, out, 1, &dop));
    int64_t n = mg_tensor_numel(x);
    scale_kernel<<<blocks_for(n, 256), 256, 0, s->stream>>>((const float *)dxp, factor, (float *)dop, n);
    return finish_output(s, out, dop);
}

mg_status op_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight, const mg_tensor *bias,
                  float eps, mg_tensor *out, bool rms, const char *name) {
    cuda_state *s = state_of(ctx);
    MG_TRY(need_f32(x, name, "x"));
    MG_TRY(need_f32(weight, name, "weight"));
    MG_TRY(need_f32(bias, name, "bias"));
    int64_t D = last_dim(x);
    if ((weight && mg_tensor_numel(weight) != D) || (bias && mg_tensor_numel(bias) != D) || !same_shape(x, out))
        return mg_error(MG_ERR_SHAPE, "%s: weight/bias/output do not match the last dimension %lld", name,
                        (long long)D);
    const void *dxp = NULL, *dwp = NULL, *dbp = NULL;
    void *dop = NULL;
    MG_TRY(device_input(s, x, 0, &dxp));
    MG_TRY(device_weight(s, weight, &dwp));
    MG_TRY(device_weight(s, bias, &dbp));
    MG_TRY(device_output(s, out, 1, &dop));
    norm_kernel<<<(unsigned)(mg_tensor_numel(x) / D), 256, 0, s->stream>>>(
        (const float *)dxp, (const float *)dwp, (const float *)dbp, (float *)dop, D, eps, rms);
    return finish_output(s, out, dop);
}

mg_status op_layer_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight, const mg_tensor *bias,
                        float eps, mg_tensor *out) {
    return op_norm(ctx, x, weight, bias, eps, out, false, "mg_layer_norm");
}

mg_status op_rms_norm(mg_context *ctx, const mg_tensor *x, const mg_tensor *weight, float eps, mg_tensor *out) {
    return op_norm(ctx, x, weight, NULL, eps, out, true, "mg_rms_norm");
}

mg_status op_activate(mg_context *ctx, const mg_tensor *x, mg_activation kind, mg_tensor *out) {
    cuda_state *s = state_of(ctx);
    MG_TRY(need_f32(x, "mg_activate", "x"));
    if (kind < MG_ACT_GELU_ERF || kind > MG_ACT_RELU)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_activate: unknown activation %d", (int)kind);
    if (!same_shape(x, out)) return mg_error(MG_ERR_SHAPE, "mg_activate: output shape differs from x");
    const void *dxp = NULL;
    void *dop = NULL;
    MG_TRY(device_input(s, x, 0, &dxp));
    MG_TRY(device_output(s, out, 1, &dop));
    int64_t n = mg_tensor_numel(x);
    activate_kernel<<<blocks_for(n, 256), 256, 0, s->stream>>>((const float *)dxp, (float *)dop, n, (int)kind);
    return finish_output(s, out, dop);
}

mg_status op_softmax(mg_context *ctx, const mg_tensor *x, const mg_tensor *mask, bool causal, mg_tensor *out) {
    cuda_state *s = state_of(ctx);
    MG_TRY(need_f32(x, "mg_softmax", "x"));
    MG_TRY(need_f32(mask, "mg_softmax", "mask"));
    if (!same_shape(x, out)) return mg_error(MG_ERR_SHAPE, "mg_softmax: output shape differs from x");
    broadcast_shape ms;
    memset(&ms, 0, sizeof ms);
    if (mask) MG_TRY(broadcast_strides(x, mask, &ms, "mg_softmax"));
    int64_t Tk = last_dim(x), Tq = x->n_dims >= 2 ? x->shape[x->n_dims - 2] : 1;
    const void *dxp = NULL, *dmp = NULL;
    void *dop = NULL;
    MG_TRY(device_input(s, x, 0, &dxp));
    MG_TRY(device_input(s, mask, 2, &dmp));
    MG_TRY(device_output(s, out, 1, &dop));
    softmax_kernel<<<(unsigned)(mg_tensor_numel(x) / Tk), 256, 0, s->stream>>>(
        (const float *)dxp, (const float *)dmp, ms, (float *)dop, Tq, Tk, causal);
    return finish_output(s, out, dop);
}

mg_status op_rope(mg_context *ctx, const mg_tensor *x, const int32_t *positions, const float *inv_freq,
                  int rotary_dim, mg_tensor *out) {
    cuda_state *s = state_of(ctx);
    MG_TRY(need_f32(x, "mg_rope", "x"));
    if (x->n_dims != 3 || !same_shape(x, out))
        return mg_error(MG_ERR_SHAPE, "mg_rope: x must be [T, H, D] and out the same shape");
    int64_t T = x->shape[0], H = x->shape[1], D = x->shape[2];
    if (rotary_dim <= 0 || rotary_dim > D || rotary_dim % 2)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_rope: rotary_dim %d for head size %lld", rotary_dim,
                        (long long)D);
    mg_tensor pos_t, freq_t;
    const int64_t pos_shape[1] = {T}, freq_shape[1] = {rotary_dim / 2};
    MG_TRY(mg_tensor_init(&pos_t, (void *)positions, MG_I32, 1, pos_shape));
    MG_TRY(mg_tensor_init(&freq_t, (void *)inv_freq, MG_F32, 1, freq_shape));
    const void *dxp = NULL, *dpp = NULL, *dfp = NULL;
    void *dop = NULL;
    MG_TRY(device_input(s, x, 0, &dxp));
    MG_TRY(device_input(s, &pos_t, 2, &dpp));
    MG_TRY(device_input(s, &freq_t, 3, &dfp));
    MG_TRY(device_output(s, out, 1, &dop));
    rope_kernel<<<(unsigned)(T * H), 128, 0, s->stream>>>((const float *)dxp, (float *)dop, (const int32_t *)dpp,
                                                          (const float *)dfp, T, H, D, rotary_dim);
    return finish_output(s, out, dop);
}

static mg_status attention_f32(mg_context *ctx, const mg_tensor *q, const mg_tensor *k, const mg_tensor *v,
                               const mg_tensor *mask, bool causal, float scale, mg_tensor *out);

/* An f16 K/V (a half-precision KV cache) is widened on the host first. */
mg_status op_attention(mg_context *ctx, const mg_tensor *q, const mg_tensor *k, const mg_tensor *v,
                       const mg_tensor *mask, bool causal, float scale, mg_tensor *out) {
    if (!k || !v || (k->dtype != MG_F16 && v->dtype != MG_F16))
        return attention_f32(ctx, q, k, v, mask, causal, scale, out);
    mg_tensor k32, v32;
    memset(&k32, 0, sizeof k32);
    memset(&v32, 0, sizeof v32);
    mg_status status = mg_tensor_alloc(&k32, MG_F32, k->n_dims, k->shape);
    if (status == MG_OK) status = mg_tensor_convert(k, &k32);
    if (status == MG_OK) status = mg_tensor_alloc(&v32, MG_F32, v->n_dims, v->shape);
    if (status == MG_OK) status = mg_tensor_convert(v, &v32);
    if (status == MG_OK) status = attention_f32(ctx, q, &k32, &v32, mask, causal, scale, out);
    mg_tensor_free_data(&k32);
    mg_tensor_free_data(&v32);
    return status;
}

static mg_status attention_f32(mg_context *ctx, const mg_tensor *q, const mg_tensor *k, const mg_tensor *v,
                               const mg_tensor *mask, bool causal, float scale, mg_tensor *out) {
    cuda_state *s = state_of(ctx);
    MG_TRY(need_f32(q, "mg_attention", "q"));
    MG_TRY(need_f32(k, "mg_attention", "k"));
    MG_TRY(need_f32(v, "mg_attention", "v"));
    MG_TRY(need_f32(mask, "mg_attention", "mask"));
    if (q->n_dims != 3 || k->n_dims != 3 || v->n_dims != 3 || out->n_dims != 3)
        return mg_error(MG_ERR_SHAPE, "mg_attention: q, k, v and out must be [T, H, D]");
    int64_t Tq = q->shape[0], Hq = q->shape[1], D = q->shape[2];
    int64_t Tk = k->shape[0], Hkv = k->shape[1], Dv = v->shape[2];
    if (k->shape[2] != D || v->shape[0] != Tk || v->shape[1] != Hkv || Hq % Hkv || out->shape[0] != Tq ||
        out->shape[1] != Hq || out->shape[2] != Dv)
        return mg_error(MG_ERR_SHAPE, "mg_attention: q/k/v/out shapes do not agree");
    if (Dv > 256) return mg_error(MG_ERR_UNSUPPORTED, "mg_attention (cuda): value head size %lld > 256", (long long)Dv);
    broadcast_shape ms;
    memset(&ms, 0, sizeof ms);
    if (mask) {
        mg_tensor scores_shape;
        const int64_t dims[3] = {Hq, Tq, Tk};
        MG_TRY(mg_tensor_init(&scores_shape, NULL, MG_F32, 3, dims));
        MG_TRY(broadcast_strides(&scores_shape, mask, &ms, "mg_attention"));
    }
    const void *dq = NULL, *dk = NULL, *dv = NULL, *dm = NULL;
    void *dop = NULL;
    MG_TRY(device_input(s, q, 0, &dq));
    MG_TRY(device_input(s, k, 2, &dk));
    MG_TRY(device_input(s, v, 3, &dv));
    MG_TRY(device_input(s, mask, 4, &dm));
    MG_TRY(device_output(s, out, 1, &dop));
    int64_t items = Tq * Hq;
    attention_kernel<<<blocks_for(items, 4), 128, 0, s->stream>>>((const float *)dq, (const float *)dk,
                                                                  (const float *)dv, (const float *)dm, ms,
                                                                  (float *)dop, Tq, Tk, Hq, Hkv, D, Dv, causal,
                                                                  scale);
    return finish_output(s, out, dop);
}

mg_status op_patch_embed(mg_context *ctx, const mg_tensor *image, const mg_tensor *weight, const mg_tensor *bias,
                         mg_tensor *out) {
    cuda_state *s = state_of(ctx);
    MG_TRY(need_f32(image, "mg_patch_embed", "image"));
    if (image->n_dims != 3 || weight->n_dims != 4 || weight->shape[1] != image->shape[0] ||
        weight->shape[2] != weight->shape[3])
        return mg_error(MG_ERR_SHAPE, "mg_patch_embed: image [C, H, W] and weight [O, C, P, P] do not agree");
    int64_t C = image->shape[0], H = image->shape[1], W = image->shape[2], P = weight->shape[2];
    int64_t O = weight->shape[0];
    if (H % P || W % P) return mg_error(MG_ERR_SHAPE, "mg_patch_embed: image %lldx%lld is not a multiple of the patch %lld",
                                        (long long)H, (long long)W, (long long)P);
    int64_t n_patches = (H / P) * (W / P), K = C * P * P;
    if (mg_tensor_numel(out) != n_patches * O) return mg_error(MG_ERR_SHAPE, "mg_patch_embed: output size differs");
    const void *dimg = NULL;
    void *dcols = NULL;
    MG_TRY(device_input(s, image, 0, &dimg));
    MG_TRY(scratch(s, 5, (size_t)(n_patches * K) * sizeof(float), &dcols));
    im2col_kernel<<<blocks_for(n_patches * K, 256), 256, 0, s->stream>>>((const float *)dimg, (float *)dcols, C, H,
                                                                         W, P);
    CUDA_TRY(cudaGetLastError(), "im2col");
    mg_tensor columns, flat_weight;
    const int64_t column_shape[2] = {n_patches, K}, weight_shape[2] = {O, K};
    MG_TRY(mg_tensor_init(&columns, dcols, MG_F32, 2, column_shape));
    columns.device = MG_DEVICE_CUDA;
    MG_TRY(mg_tensor_reshape(weight, 2, weight_shape, &flat_weight));
    return op_linear(ctx, &columns, &flat_weight, bias, out);
}

mg_status op_interpolate(mg_context *ctx, const mg_tensor *x, mg_tensor *out, bool bicubic, bool align_corners) {
    cuda_state *s = state_of(ctx);
    MG_TRY(need_f32(x, "mg_interpolate", "x"));
    if (x->n_dims != 3 || out->n_dims != 3 || out->shape[0] != x->shape[0])
        return mg_error(MG_ERR_SHAPE, "mg_interpolate: x and out must be [C, H, W] with equal C");
    const void *dxp = NULL;
    void *dop = NULL;
    MG_TRY(device_input(s, x, 0, &dxp));
    MG_TRY(device_output(s, out, 1, &dop));
    int64_t n = mg_tensor_numel(out);
    interpolate_kernel<<<blocks_for(n, 256), 256, 0, s->stream>>>((const float *)dxp, (float *)dop, x->shape[0],
                                                                  x->shape[1], x->shape[2], out->shape[1],
                                                                  out->shape[2], bicubic, align_corners);
    return finish_output(s, out, dop);
}

mg_status op_bicubic(mg_context *ctx, const mg_tensor *x, mg_tensor *out) {
    return op_interpolate(ctx, x, out, true, false);
}

mg_status op_bilinear(mg_context *ctx, const mg_tensor *x, bool align_corners, mg_tensor *out) {
    return op_interpolate(ctx, x, out, false, align_corners);
}

mg_backend make_backend() {
    mg_backend b;
    memset(&b, 0, sizeof b);
    b.name = "cuda";
    b.create_state = create_state;
    b.destroy_state = destroy_state;
    b.linear = op_linear;
    b.matmul = op_matmul;
    b.add = op_add;
    b.mul = op_mul;
    b.scale = op_scale;
    b.layer_norm = op_layer_norm;
    b.rms_norm = op_rms_norm;
    b.activate = op_activate;
    b.softmax = op_softmax;
    b.rope = op_rope;
    b.attention = op_attention;
    b.patch_embed = op_patch_embed;
    b.interpolate_bicubic = op_bicubic;
    b.interpolate_bilinear = op_bilinear;
    return b;
}

const mg_backend cuda_backend_table = make_backend();

} /* namespace */

extern "C" const mg_backend *mg_cuda_backend(void) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        mg_error(MG_ERR_UNSUPPORTED, "device 'cuda': no usable GPU or driver (%s)",
                 err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
        return NULL;
    }
    return &cuda_backend_table;
}
