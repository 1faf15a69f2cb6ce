/* Argument checks, scratch copies and the parallel loop shared by the CPU ops. */
#include "cpu_internal.h"

#include <stdio.h>
#include <string.h>

const char *mg_cpu_describe(const mg_tensor *t, char buf[MG_DESCRIBE_SIZE]) {
    if (!t) {
        snprintf(buf, MG_DESCRIBE_SIZE, "NULL");
        return buf;
    }
    return mg_tensor_describe(t, buf, MG_DESCRIBE_SIZE);
}

mg_status mg_cpu_check_input(const char *op, const char *what, const mg_tensor *t, int max_dims) {
    if (!t) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: %s is NULL", op, what);
    char d[MG_DESCRIBE_SIZE];
    if (t->device != MG_DEVICE_CPU)
        return mg_error(MG_ERR_UNSUPPORTED, "%s: %s %s is not a host tensor", op, what,
                        mg_cpu_describe(t, d));
    if (!t->data) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: %s has no data", op, what);
    if (t->n_dims < 1 || t->n_dims > max_dims)
        return mg_error(MG_ERR_SHAPE, "%s: %s %s has %d dimensions; expected 1 to %d", op, what,
                        mg_cpu_describe(t, d), t->n_dims, max_dims);
    for (int i = 0; i < t->n_dims; i++)
        if (t->shape[i] <= 0)
            return mg_error(MG_ERR_SHAPE, "%s: %s %s has an empty dimension", op, what,
                            mg_cpu_describe(t, d));
    return MG_OK;
}

mg_status mg_cpu_check_output(const char *op, const mg_tensor *out, int n_dims,
                              const int64_t *shape) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: output tensor is NULL", op);
    char d[MG_DESCRIBE_SIZE], e[MG_DESCRIBE_SIZE];
    if (out->device != MG_DEVICE_CPU || !out->data)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: output %s is not a host tensor with data", op,
                        mg_cpu_describe(out, d));
    mg_tensor expected;
    memset(&expected, 0, sizeof expected);
    expected.dtype = MG_F32;
    expected.n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) expected.shape[i] = shape[i];
    bool same = out->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++) same = out->shape[i] == shape[i];
    if (!same)
        return mg_error(MG_ERR_SHAPE, "%s: output %s should be %s", op, mg_cpu_describe(out, d),
                        mg_cpu_describe(&expected, e));
    if (out->dtype != MG_F32)
        return mg_error(MG_ERR_DTYPE, "%s: output %s must be f32", op, mg_cpu_describe(out, d));
    if (!mg_tensor_is_contiguous(out))
        return mg_error(MG_ERR_SHAPE, "%s: output %s must be contiguous", op, mg_cpu_describe(out, d));
    return MG_OK;
}

mg_status mg_cpu_check_vector(const char *op, const char *what, const mg_tensor *t, int64_t n) {
    MG_TRY(mg_cpu_check_input(op, what, t, 1));
    char d[MG_DESCRIBE_SIZE];
    if (t->shape[0] != n)
        return mg_error(MG_ERR_SHAPE, "%s: %s %s should have %lld entries", op, what,
                        mg_cpu_describe(t, d), (long long)n);
    if (t->dtype != MG_F32 && t->dtype != MG_F16 && t->dtype != MG_BF16)
        return mg_error(MG_ERR_DTYPE, "%s: %s %s must be f32, f16 or bf16", op, what,
                        mg_cpu_describe(t, d));
    return MG_OK;
}

mg_status mg_cpu_f32_input(const char *op, const char *what, const mg_tensor *t, bool allow_half,
                           mg_cpu_f32 *out) {
    out->data = NULL;
    out->owned = NULL;
    char d[MG_DESCRIBE_SIZE];
    if (t->dtype != MG_F32 && !(allow_half && (t->dtype == MG_F16 || t->dtype == MG_BF16)))
        return mg_error(MG_ERR_DTYPE, "%s: %s %s must be f32%s", op, what, mg_cpu_describe(t, d),
                        allow_half ? ", f16 or bf16" : "");
    if (t->dtype == MG_F32 && mg_tensor_is_contiguous(t)) {
        out->data = t->data;
        return MG_OK;
    }
    mg_tensor copy;
    MG_TRY(mg_tensor_alloc(&copy, MG_F32, t->n_dims, t->shape));
    mg_status status = mg_tensor_convert(t, &copy);
    if (status != MG_OK) {
        mg_tensor_free_data(&copy);
        return mg_error_prefix(status, "%s: copying %s", op, what);
    }
    out->data = copy.data;
    out->owned = copy.data;
    return MG_OK;
}

void mg_cpu_f32_release(mg_cpu_f32 *v) {
    mg_aligned_free(v->owned);
    v->owned = NULL;
    v->data = NULL;
}

mg_status mg_cpu_broadcast_strides(const char *op, const char *what, const mg_tensor *t,
                                   const mg_tensor *target, int64_t strides[MG_MAX_DIMS]) {
    char a[MG_DESCRIBE_SIZE], b[MG_DESCRIBE_SIZE];
    if (t->n_dims > target->n_dims)
        return mg_error(MG_ERR_SHAPE, "%s: %s %s has more dimensions than %s", op, what,
                        mg_cpu_describe(t, a), mg_cpu_describe(target, b));
    int offset = target->n_dims - t->n_dims;
    for (int i = 0; i < MG_MAX_DIMS; i++) strides[i] = 0;
    for (int i = 0; i < t->n_dims; i++) {
        int64_t size = t->shape[i], want = target->shape[i + offset];
        if (size == want) {
            strides[i + offset] = size == 1 ? 0 : t->strides[i];
        } else if (size == 1) {
            strides[i + offset] = 0;
        } else {
            return mg_error(MG_ERR_SHAPE, "%s: %s %s does not broadcast to %s (axis %d)", op, what,
                            mg_cpu_describe(t, a), mg_cpu_describe(target, b), i);
        }
    }
    return MG_OK;
}

typedef struct {
    mg_cpu_range_fn fn;
    void *arg;
    int64_t n, chunk;
} mg_cpu_range_job;

static void mg_cpu_range_task(void *raw, int64_t task, int thread_index) {
    mg_cpu_range_job *job = raw;
    int64_t begin = task * job->chunk;
    int64_t end = begin + job->chunk < job->n ? begin + job->chunk : job->n;
    job->fn(job->arg, begin, end, thread_index);
}

void mg_cpu_parallel_for(mg_context *ctx, int64_t n, int64_t grain, mg_cpu_range_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int n_threads = mg_context_n_threads(ctx);
    if (n_threads <= 1 || n <= grain) {
        fn(arg, 0, n, 0);
        return;
    }
    /* About four chunks per thread so uneven chunks balance through the
     * pool's atomic task counter. */
    int64_t chunk = (n + 4 * (int64_t)n_threads - 1) / (4 * (int64_t)n_threads);
    if (chunk < grain) chunk = grain;
    mg_cpu_range_job job = {fn, arg, n, chunk};
    mg_threadpool_run(mg_context_threadpool(ctx), (n + chunk - 1) / chunk, mg_cpu_range_task, &job);
}

void mg_cpu_parallel_chunks(mg_context *ctx, int64_t n, int64_t chunk, mg_cpu_range_fn fn, void *arg) {
    if (n <= 0) return;
    if (chunk < 1) chunk = 1;
    if (mg_context_n_threads(ctx) <= 1 || n <= chunk) {
        fn(arg, 0, n, 0);
        return;
    }
    mg_cpu_range_job job = {fn, arg, n, chunk};
    mg_threadpool_run(mg_context_threadpool(ctx), (n + chunk - 1) / chunk, mg_cpu_range_task, &job);
}
