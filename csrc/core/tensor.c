/* Tensor descriptors, views, element-type conversion and GGUF block quantizers. */
#include "core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    mg_dtype dtype;
    const char *name;
    int64_t block_size;
    int64_t block_bytes;
} mg_dtype_info;

static const mg_dtype_info mg_dtype_table[] = {
    {MG_F32, "f32", 1, 4},
    {MG_F16, "f16", 1, 2},
    {MG_BF16, "bf16", 1, 2},
    {MG_Q8_0, "q8_0", MG_QK8_0, sizeof(mg_block_q8_0)},
    {MG_Q4_0, "q4_0", MG_QK4_0, sizeof(mg_block_q4_0)},
    {MG_I8, "i8", 1, 1},
    {MG_I16, "i16", 1, 2},
    {MG_I32, "i32", 1, 4},
    {MG_I64, "i64", 1, 8},
    {MG_F64, "f64", 1, 8},
    {MG_U8, "u8", 1, 1},
    {MG_U16, "u16", 1, 2},
    {MG_BOOL, "bool", 1, 1},
};

_Static_assert(sizeof(mg_block_q8_0) == 34, "GGUF Q8_0 block is 34 bytes");
_Static_assert(sizeof(mg_block_q4_0) == 18, "GGUF Q4_0 block is 18 bytes");

static const mg_dtype_info *mg_dtype_lookup(mg_dtype dtype) {
    for (size_t i = 0; i < sizeof mg_dtype_table / sizeof mg_dtype_table[0]; i++)
        if (mg_dtype_table[i].dtype == dtype) return &mg_dtype_table[i];
    return NULL;
}

const char *mg_dtype_name(mg_dtype dtype) {
    const mg_dtype_info *info = mg_dtype_lookup(dtype);
    return info ? info->name : "?";
}

mg_status mg_dtype_from_name(const char *name, mg_dtype *out) {
    if (!name) return mg_error(MG_ERR_INVALID_ARGUMENT, "dtype name is NULL");
    for (size_t i = 0; i < sizeof mg_dtype_table / sizeof mg_dtype_table[0]; i++) {
        if (strcmp(mg_dtype_table[i].name, name) == 0) {
            *out = mg_dtype_table[i].dtype;
            return MG_OK;
        }
    }
    return mg_error(MG_ERR_DTYPE,
                    "unknown dtype '%s' (expected one of f32, f16, bf16, q8_0, q4_0, i8, i16, "
                    "i32, i64, f64, u8, u16, bool)",
                    name);
}

int64_t mg_dtype_block_size(mg_dtype dtype) {
    const mg_dtype_info *info = mg_dtype_lookup(dtype);
    return info ? info->block_size : 0;
}

int64_t mg_dtype_block_bytes(mg_dtype dtype) {
    const mg_dtype_info *info = mg_dtype_lookup(dtype);
    return info ? info->block_bytes : 0;
}

bool mg_dtype_is_quantized(mg_dtype dtype) { return dtype == MG_Q8_0 || dtype == MG_Q4_0; }

mg_status mg_dtype_row_bytes(mg_dtype dtype, int64_t n_elements, size_t *out) {
    const mg_dtype_info *info = mg_dtype_lookup(dtype);
    if (!info) return mg_error(MG_ERR_DTYPE, "unknown dtype value %d", (int)dtype);
    if (n_elements < 0) return mg_error(MG_ERR_SHAPE, "negative element count %lld", (long long)n_elements);
    if (n_elements % info->block_size != 0)
        return mg_error(MG_ERR_SHAPE, "%lld elements is not a whole number of %s blocks of %lld",
                        (long long)n_elements, info->name, (long long)info->block_size);
    size_t bytes;
    if (!mg_mul_size((size_t)(n_elements / info->block_size), (size_t)info->block_bytes, &bytes))
        return mg_error(MG_ERR_NO_MEMORY, "%lld %s elements overflow size_t", (long long)n_elements,
                        info->name);
    *out = bytes;
    return MG_OK;
}

/* ---------------------------------------------------------------- shapes */

mg_status mg_tensor_init(mg_tensor *t, void *data, mg_dtype dtype, int n_dims,
                         const int64_t *shape) {
    const mg_dtype_info *info = mg_dtype_lookup(dtype);
    if (!info) return mg_error(MG_ERR_DTYPE, "unknown dtype value %d", (int)dtype);
    if (n_dims < 0 || n_dims > MG_MAX_DIMS)
        return mg_error(MG_ERR_SHAPE, "%d dimensions: medground tensors have 0 to %d", n_dims,
                        MG_MAX_DIMS);
    memset(t, 0, sizeof *t);
    t->data = data;
    t->dtype = dtype;
    t->device = MG_DEVICE_CPU;
    t->n_dims = n_dims;
    for (int i = 0; i < MG_MAX_DIMS; i++) t->shape[i] = 1;
    size_t numel = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] <= 0)
            return mg_error(MG_ERR_SHAPE, "dimension %d has size %lld; sizes must be positive", i,
                            (long long)shape[i]);
        t->shape[i] = shape[i];
        if (!mg_mul_size(numel, (size_t)shape[i], &numel) || numel > ((size_t)1 << 50))
            return mg_error(MG_ERR_NO_MEMORY, "tensor of %d dims overflows the element count",
                            n_dims);
    }
    int64_t last = n_dims > 0 ? t->shape[n_dims - 1] : 1;
    if (last % info->block_size != 0)
        return mg_error(MG_ERR_SHAPE, "last dimension %lld is not a multiple of the %s block size %lld",
                        (long long)last, info->name, (long long)info->block_size);
    /* byte strides, innermost first */
    int64_t stride = info->block_bytes;
    for (int i = MG_MAX_DIMS - 1; i >= 0; i--) {
        if (i == n_dims - 1) {
            t->strides[i] = stride;
            stride = stride * (t->shape[i] / info->block_size);
        } else if (i < n_dims) {
            t->strides[i] = stride;
            stride *= t->shape[i];
        } else {
            t->strides[i] = stride;
        }
    }
    if (n_dims == 0) t->strides[0] = info->block_bytes;
    return MG_OK;
}

int64_t mg_tensor_numel(const mg_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

size_t mg_tensor_nbytes(const mg_tensor *t) {
    size_t bytes = 0;
    if (mg_dtype_row_bytes(t->dtype, mg_tensor_numel(t), &bytes) != MG_OK) return 0;
    return bytes;
}

bool mg_tensor_is_contiguous(const mg_tensor *t) {
    int64_t block = mg_dtype_block_size(t->dtype);
    int64_t expected = mg_dtype_block_bytes(t->dtype);
    for (int i = t->n_dims - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != expected) return false;
        expected *= (i == t->n_dims - 1) ? t->shape[i] / block : t->shape[i];
    }
    return true;
}

const char *mg_tensor_describe(const mg_tensor *t, char *buf, size_t buf_size) {
    size_t used = (size_t)snprintf(buf, buf_size, "%s[", mg_dtype_name(t->dtype));
    for (int i = 0; i < t->n_dims && used < buf_size; i++)
        used += (size_t)snprintf(buf + used, buf_size - used, i ? ", %lld" : "%lld",
                                 (long long)t->shape[i]);
    if (used < buf_size) snprintf(buf + used, buf_size - used, "]");
    return buf;
}

mg_status mg_tensor_reshape(const mg_tensor *t, int n_dims, const int64_t *shape, mg_tensor *out) {
    char described[96];
    if (!mg_tensor_is_contiguous(t))
        return mg_error(MG_ERR_SHAPE, "reshape of non-contiguous %s: copy it first",
                        mg_tensor_describe(t, described, sizeof described));
    mg_tensor result;
    MG_TRY(mg_tensor_init(&result, t->data, t->dtype, n_dims, shape));
    if (mg_tensor_numel(&result) != mg_tensor_numel(t))
        return mg_error(MG_ERR_SHAPE, "cannot reshape %s to %lld elements",
                        mg_tensor_describe(t, described, sizeof described),
                        (long long)mg_tensor_numel(&result));
    result.device = t->device;
    *out = result;
    return MG_OK;
}

mg_status mg_tensor_permute(const mg_tensor *t, const int *axes, mg_tensor *out) {
    if (mg_dtype_is_quantized(t->dtype))
        return mg_error(MG_ERR_DTYPE, "permute of a block-quantized tensor is not a view");
    bool seen[MG_MAX_DIMS] = {false};
    mg_tensor result = *t;
    for (int i = 0; i < t->n_dims; i++) {
        int a = axes[i];
        if (a < 0 || a >= t->n_dims || seen[a])
            return mg_error(MG_ERR_INVALID_ARGUMENT, "permute axes are not a permutation of 0..%d",
                            t->n_dims - 1);
        seen[a] = true;
        result.shape[i] = t->shape[a];
        result.strides[i] = t->strides[a];
    }
    *out = result;
    return MG_OK;
}

mg_status mg_tensor_slice(const mg_tensor *t, int axis, int64_t start, int64_t stop, mg_tensor *out) {
    if (axis < 0 || axis >= t->n_dims)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "slice axis %d of a %d-D tensor", axis, t->n_dims);
    if (start < 0 || stop > t->shape[axis] || start >= stop)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "slice [%lld, %lld) of axis %d with size %lld",
                        (long long)start, (long long)stop, axis, (long long)t->shape[axis]);
    int64_t block = mg_dtype_block_size(t->dtype);
    if (axis == t->n_dims - 1 && (start % block || stop % block))
        return mg_error(MG_ERR_SHAPE, "slice of a %s row must cut at block boundaries (%lld)",
                        mg_dtype_name(t->dtype), (long long)block);
    mg_tensor result = *t;
    result.data = (uint8_t *)t->data + (start / (axis == t->n_dims - 1 ? block : 1)) * t->strides[axis];
    result.shape[axis] = stop - start;
    *out = result;
    return MG_OK;
}

mg_status mg_tensor_alloc(mg_tensor *t, mg_dtype dtype, int n_dims, const int64_t *shape) {
    MG_TRY(mg_tensor_init(t, NULL, dtype, n_dims, shape));
    size_t bytes = mg_tensor_nbytes(t);
    t->data = mg_aligned_alloc(bytes);
    if (!t->data) return mg_error(MG_ERR_NO_MEMORY, "cannot allocate %zu bytes for a tensor", bytes);
    return MG_OK;
}

void mg_tensor_free_data(mg_tensor *t) {
    if (!t) return;
    mg_aligned_free(t->data);
    t->data = NULL;
}

/* ------------------------------------------------------- scalar formats */

float mg_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else { /* subnormal: value = mantissa * 2^-24 */
            float value = (float)mantissa * 5.9604644775390625e-8f;
            memcpy(&bits, &value, 4);
            bits |= sign;
        }
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t mg_f32_to_f16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    uint32_t abs_bits = bits & 0x7fffffffu;
    if (abs_bits > 0x7f800000u) return sign | 0x7e00; /* NaN */
    if (abs_bits >= 0x47800000u) {                      /* >= 65536: overflow unless rounds */
        if (abs_bits == 0x7f800000u) return sign | 0x7c00;
    }
    float a;
    memcpy(&a, &abs_bits, 4);
    if (a >= 65520.0f) return sign | 0x7c00; /* rounds to infinity */
    if (a < 6.103515625e-05f) {              /* subnormal half: quantum 2^-24 */
        float scaled = a * 16777216.0f;       /* exact */
        uint32_t q = (uint32_t)scaled;
        float rest = scaled - (float)q;
        if (rest > 0.5f || (rest == 0.5f && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t exponent = (abs_bits >> 23) - 112;
    uint32_t mantissa = abs_bits & 0x7fffff;
    uint32_t half = (exponent << 10) | (mantissa >> 13);
    uint32_t round_bits = mantissa & 0x1fff;
    if (round_bits > 0x1000 || (round_bits == 0x1000 && (half & 1))) half++;
    return sign | (uint16_t)half;
}

float mg_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t mg_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40); /* quiet NaN */
    uint32_t rounding = 0x7fff + ((bits >> 16) & 1);
    return (uint16_t)((bits + rounding) >> 16);
}

/* f32 <-> f16 rows with F16C where the CPU has it: bit for bit the scalar
 * conversions (vcvtps2ph rounds to nearest even, subnormals and overflow
 * included, NaN lanes rewritten as mg_f32_to_f16 writes them), but that
 * vcvtph2ps quiets a signalling f16 NaN, which mg_f16_to_f32 keeps. */
#if defined(__x86_64__)
#include <immintrin.h>

static bool mg_cpu_has_f16c(void) {
    static int cached = -1; /* a benign race: every thread stores the same value */
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    }
    return cached != 0;
}

__attribute__((target("avx2,f16c"))) static void mg_f32_to_f16_f16c(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(src + i);
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
        int nan = _mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        while (nan) { /* NaN as mg_f32_to_f16 writes it (sign | 0x7e00), payload dropped */
            const int lane = __builtin_ctz((unsigned)nan);
            dst[i + lane] = mg_f32_to_f16(src[i + lane]);
            nan &= nan - 1;
        }
    }
    for (; i < n; i++) dst[i] = mg_f32_to_f16(src[i]);
}

__attribute__((target("avx2,f16c"))) static void mg_f16_to_f32_f16c(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = mg_f16_to_f32(src[i]);
}
#endif

/* ----------------------------------------------------- GGUF quantizers */

/* Bit-for-bit ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d). */
static void mg_quantize_block_q8_0(const float *x, mg_block_q8_0 *block) {
    float amax = 0.0f;
    for (int i = 0; i < MG_QK8_0; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block->d = mg_f32_to_f16(d);
    for (int i = 0; i < MG_QK8_0; i++) block->qs[i] = (int8_t)roundf(x[i] * id);
}

/* Bit-for-bit ggml's quantize_row_q4_0_ref: d = (signed value of largest
 * magnitude) / -8, q = min(15, trunc(x / d + 8.5)). */
static void mg_quantize_block_q4_0(const float *x, mg_block_q4_0 *block) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < MG_QK4_0; i++) {
        if (amax < fabsf(x[i])) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block->d = mg_f32_to_f16(d);
    for (int i = 0; i < MG_QK4_0 / 2; i++) {
        const float x0 = x[i] * id;
        const float x1 = x[i + MG_QK4_0 / 2] * id;
        int q0 = (int8_t)(x0 + 8.5f);
        int q1 = (int8_t)(x1 + 8.5f);
        if (q0 > 15) q0 = 15;
        if (q1 > 15) q1 = 15;
        block->qs[i] = (uint8_t)(q0 | (q1 << 4));
    }
}

mg_status mg_quantize_row(mg_dtype dtype, const float *src, void *dst, int64_t n) {
    switch (dtype) {
    case MG_F32: memcpy(dst, src, (size_t)n * 4); return MG_OK;
    case MG_F16:
#if defined(__x86_64__)
        if (mg_cpu_has_f16c()) {
            mg_f32_to_f16_f16c(src, dst, n);
            return MG_OK;
        }
#endif
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = mg_f32_to_f16(src[i]);
        return MG_OK;
    case MG_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = mg_f32_to_bf16(src[i]);
        return MG_OK;
    case MG_Q8_0:
        if (n % MG_QK8_0) return mg_error(MG_ERR_SHAPE, "q8_0 row of %lld elements is not a multiple of 32", (long long)n);
        for (int64_t b = 0; b < n / MG_QK8_0; b++)
            mg_quantize_block_q8_0(src + b * MG_QK8_0, (mg_block_q8_0 *)dst + b);
        return MG_OK;
    case MG_Q4_0:
        if (n % MG_QK4_0) return mg_error(MG_ERR_SHAPE, "q4_0 row of %lld elements is not a multiple of 32", (long long)n);
        for (int64_t b = 0; b < n / MG_QK4_0; b++)
            mg_quantize_block_q4_0(src + b * MG_QK4_0, (mg_block_q4_0 *)dst + b);
        return MG_OK;
    default:
        return mg_error(MG_ERR_DTYPE, "cannot quantize a row to %s", mg_dtype_name(dtype));
    }
}

mg_status mg_dequantize_row(mg_dtype dtype, const void *src, float *dst, int64_t n) {
    switch (dtype) {
    case MG_F32: memcpy(dst, src, (size_t)n * 4); return MG_OK;
    case MG_F16:
#if defined(__x86_64__)
        if (mg_cpu_has_f16c()) {
            mg_f16_to_f32_f16c(src, dst, n);
            return MG_OK;
        }
#endif
        for (int64_t i = 0; i < n; i++) dst[i] = mg_f16_to_f32(((const uint16_t *)src)[i]);
        return MG_OK;
    case MG_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = mg_bf16_to_f32(((const uint16_t *)src)[i]);
        return MG_OK;
    case MG_Q8_0: {
        if (n % MG_QK8_0) return mg_error(MG_ERR_SHAPE, "q8_0 row of %lld elements is not a multiple of 32", (long long)n);
        const mg_block_q8_0 *blocks = src;
        for (int64_t b = 0; b < n / MG_QK8_0; b++) {
            float d = mg_f16_to_f32(blocks[b].d);
            for (int i = 0; i < MG_QK8_0; i++) dst[b * MG_QK8_0 + i] = d * (float)blocks[b].qs[i];
        }
        return MG_OK;
    }
    case MG_Q4_0: {
        if (n % MG_QK4_0) return mg_error(MG_ERR_SHAPE, "q4_0 row of %lld elements is not a multiple of 32", (long long)n);
        const mg_block_q4_0 *blocks = src;
        for (int64_t b = 0; b < n / MG_QK4_0; b++) {
            float d = mg_f16_to_f32(blocks[b].d);
            for (int i = 0; i < MG_QK4_0 / 2; i++) {
                dst[b * MG_QK4_0 + i] = d * (float)((blocks[b].qs[i] & 0x0f) - 8);
                dst[b * MG_QK4_0 + i + 16] = d * (float)((blocks[b].qs[i] >> 4) - 8);
            }
        }
        return MG_OK;
    }
    case MG_F64:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)((const double *)src)[i];
        return MG_OK;
    case MG_I8:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)((const int8_t *)src)[i];
        return MG_OK;
    case MG_U8: case MG_BOOL:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)((const uint8_t *)src)[i];
        return MG_OK;
    case MG_I16:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)((const int16_t *)src)[i];
        return MG_OK;
    case MG_U16:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)((const uint16_t *)src)[i];
        return MG_OK;
    case MG_I32:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)((const int32_t *)src)[i];
        return MG_OK;
    case MG_I64:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)((const int64_t *)src)[i];
        return MG_OK;
    }
    return mg_error(MG_ERR_DTYPE, "cannot read a row of dtype %d", (int)dtype);
}

/* Element (row) offset of the index-th innermost row of a strided tensor. */
static const uint8_t *mg_row_pointer(const mg_tensor *t, int64_t row) {
    const uint8_t *p = t->data;
    for (int i = t->n_dims - 2; i >= 0; i--) {
        int64_t index = row % t->shape[i];
        row /= t->shape[i];
        p += index * t->strides[i];
    }
    return p;
}

mg_status mg_tensor_convert(const mg_tensor *src, mg_tensor *dst) {
    char a[96], b[96];
    if (mg_tensor_numel(src) != mg_tensor_numel(dst))
        return mg_error(MG_ERR_SHAPE, "convert %s to %s: element counts differ",
                        mg_tensor_describe(src, a, sizeof a), mg_tensor_describe(dst, b, sizeof b));
    if (!mg_tensor_is_contiguous(dst))
        return mg_error(MG_ERR_SHAPE, "convert: destination %s must be contiguous",
                        mg_tensor_describe(dst, b, sizeof b));
    if (src->device != MG_DEVICE_CPU || dst->device != MG_DEVICE_CPU)
        return mg_error(MG_ERR_UNSUPPORTED, "mg_tensor_convert works on host tensors");
    int64_t row_length = src->n_dims ? src->shape[src->n_dims - 1] : 1;
    int64_t n_rows = mg_tensor_numel(src) / row_length;
    int64_t block = mg_dtype_block_size(dst->dtype);
    if (row_length % block != 0 && !mg_tensor_is_contiguous(src))
        return mg_error(MG_ERR_SHAPE, "convert to %s: rows of %lld are not whole blocks",
                        mg_dtype_name(dst->dtype), (long long)row_length);
    if (mg_tensor_is_contiguous(src) && src->dtype == dst->dtype) {
        memcpy(dst->data, src->data, mg_tensor_nbytes(src));
        return MG_OK;
    }
    int64_t src_elem_bytes = mg_dtype_block_bytes(src->dtype);
    if (src->dtype == dst->dtype && !mg_dtype_is_quantized(src->dtype)) {
        /* A strided copy of any element type (u8 images, i32 ids, ...): no
         * float round trip, so every dtype is copied exactly. */
        uint8_t *out = dst->data;
        int64_t stride = src->n_dims ? src->strides[src->n_dims - 1] : src_elem_bytes;
        for (int64_t r = 0; r < n_rows; r++) {
            const uint8_t *p = mg_row_pointer(src, r);
            if (stride == src_elem_bytes) {
                memcpy(out, p, (size_t)(row_length * src_elem_bytes));
                out += row_length * src_elem_bytes;
            } else {
                for (int64_t i = 0; i < row_length; i++, out += src_elem_bytes)
                    memcpy(out, p + i * stride, (size_t)src_elem_bytes);
            }
        }
        return MG_OK;
    }
    bool inner_contiguous = mg_dtype_is_quantized(src->dtype) ||
                            src->n_dims == 0 || src->strides[src->n_dims - 1] == src_elem_bytes;
    float *row = mg_aligned_alloc((size_t)row_length * sizeof(float));
    void *gather = inner_contiguous ? NULL : mg_aligned_alloc((size_t)row_length * (size_t)src_elem_bytes);
    if (!row || (!inner_contiguous && !gather)) {
        mg_aligned_free(row);
        mg_aligned_free(gather);
        return mg_error(MG_ERR_NO_MEMORY, "convert: no memory for a row of %lld", (long long)row_length);
    }
    size_t dst_row_bytes = 0;
    mg_status status = mg_dtype_row_bytes(dst->dtype, row_length, &dst_row_bytes);
    /* Contiguous destination rows of row_length elements; if the row is not
     * whole blocks the destination must be contiguous overall: quantize the
     * flat stream in block-sized pieces instead. */
    for (int64_t r = 0; status == MG_OK && r < n_rows; r++) {
        const uint8_t *p = mg_row_pointer(src, r);
        if (!inner_contiguous) {
            int64_t stride = src->strides[src->n_dims - 1];
            for (int64_t i = 0; i < row_length; i++)
                memcpy((uint8_t *)gather + i * src_elem_bytes, p + i * stride, (size_t)src_elem_bytes);
            p = gather;
        }
        status = mg_dequantize_row(src->dtype, p, row, row_length);
        if (status == MG_OK)
            status = mg_quantize_row(dst->dtype, row, (uint8_t *)dst->data + (size_t)r * dst_row_bytes,
                                     row_length);
    }
    mg_aligned_free(row);
    mg_aligned_free(gather);
    return status;
}
