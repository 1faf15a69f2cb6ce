/* Fused scaled-dot-product attention with an online softmax over key
 * blocks (FlashAttention, Dao et al. 2022, Alg. 1): each task owns a block
 * of query rows of one head and keeps only a running max m, a running sum l
 * and an unnormalised output row per query, so a Tq x Tk score matrix is
 * never built. Grouped-query heads read key/value head h / (Hq / Hkv). */
#include "cpu_internal.h"

#include <math.h>
#include <string.h>

#define MG_ATTN_QUERY_BLOCK 16
#define MG_ATTN_KEY_BLOCK 128

typedef struct {
    const mg_cpu_kernels *kernels;
    const uint8_t *q, *k, *v;
    int64_t q_strides[2], k_strides[2], v_strides[2]; /* bytes: token, head */
    int64_t Tq, Tk, Hq, group, D, Dv;
    float scale;
    bool causal;
    const uint8_t *mask;
    int64_t mask_strides[3]; /* bytes over [Hq, Tq, Tk], 0 = broadcast */
    float *out;
    float *scratch; /* per thread: scores[Bq*Bk], max[Bq], sum[Bq] */
    int64_t scratch_per_thread;
    int64_t n_query_blocks;
} mg_attention_job;

static void mg_attention_task(void *raw, int64_t task, int thread_index) {
    const mg_attention_job *job = raw;
    const int64_t h = task / job->n_query_blocks;
    const int64_t q0 = (task % job->n_query_blocks) * MG_ATTN_QUERY_BLOCK;
    const int64_t q1 = q0 + MG_ATTN_QUERY_BLOCK < job->Tq ? q0 + MG_ATTN_QUERY_BLOCK : job->Tq;
    const int64_t hk = h / job->group;
    const int64_t offset = job->Tk - job->Tq; /* query i sees keys j <= i + offset */
    float *scores = job->scratch + (int64_t)thread_index * job->scratch_per_thread;
    float *row_max = scores + MG_ATTN_QUERY_BLOCK * MG_ATTN_KEY_BLOCK;
    float *row_sum = row_max + MG_ATTN_QUERY_BLOCK;

    for (int64_t i = q0; i < q1; i++) {
        row_max[i - q0] = -INFINITY;
        row_sum[i - q0] = 0.0f;
        memset(job->out + (i * job->Hq + h) * job->Dv, 0, (size_t)job->Dv * sizeof(float));
    }
    int64_t key_end = job->Tk;
    if (job->causal) {
        key_end = q1 - 1 + offset + 1;
        if (key_end > job->Tk) key_end = job->Tk;
    }
    for (int64_t k0 = 0; k0 < key_end; k0 += MG_ATTN_KEY_BLOCK) {
        const int64_t k1 = k0 + MG_ATTN_KEY_BLOCK < key_end ? k0 + MG_ATTN_KEY_BLOCK : key_end;
        for (int64_t i = q0; i < q1; i++) {
            float *s = scores + (i - q0) * MG_ATTN_KEY_BLOCK;
            const float *qi = (const float *)(job->q + i * job->q_strides[0] + h * job->q_strides[1]);
            const uint8_t *mrow = job->mask ? job->mask + h * job->mask_strides[0] + i * job->mask_strides[1] : NULL;
            int64_t visible_end = k1;
            if (job->causal && i + offset + 1 < visible_end) visible_end = i + offset + 1;
            float block_max = -INFINITY;
            for (int64_t j = k0; j < k1; j++) {
                float value = -INFINITY;
                if (j < visible_end) {
                    const float *kj = (const float *)(job->k + j * job->k_strides[0] + hk * job->k_strides[1]);
                    value = job->kernels->dot_f32(qi, kj, job->D) * job->scale;
                    if (mrow) {
                        float add;
                        memcpy(&add, mrow + j * job->mask_strides[2], 4);
                        value += add;
                    }
                }
                s[j - k0] = value;
                if (value > block_max) block_max = value;
            }
            /* Online softmax update: rescale what was accumulated under the
             * old max, then add this block's exp-weighted values. */
            float *o = job->out + (i * job->Hq + h) * job->Dv;
            const float old_max = row_max[i - q0];
            const float new_max = block_max > old_max ? block_max : old_max;
            if (new_max == -INFINITY) continue; /* nothing visible yet */
            const float correction = old_max == -INFINITY ? 0.0f : expf(old_max - new_max);
            float sum = row_sum[i - q0] * correction;
            float carry = correction;
            for (int64_t j = k0; j < k1; j++) {
                if (s[j - k0] == -INFINITY) continue;
                const float p = expf(s[j - k0] - new_max);
                sum += p;
                const float *vj = (const float *)(job->v + j * job->v_strides[0] + hk * job->v_strides[1]);
                job->kernels->axpby(o, carry, p, vj, job->Dv);
                carry = 1.0f;
            }
            if (carry != 1.0f) job->kernels->axpby(o, carry, 0.0f, o, job->Dv);
            row_max[i - q0] = new_max;
            row_sum[i - q0] = sum;
        }
    }
    /* Rows with no visible key keep zeros (PyTorch would give NaN). */
    for (int64_t i = q0; i < q1; i++) {
        if (row_sum[i - q0] <= 0.0f) continue;
        float *o = job->out + (i * job->Hq + h) * job->Dv;
        const float inv = 1.0f / row_sum[i - q0];
        for (int64_t d = 0; d < job->Dv; d++) o[d] *= inv;
    }
}

/* A [T, H, D] view whose last axis is contiguous, or a contiguous copy. */
static mg_status mg_attention_view(const char *what, const mg_tensor *t, mg_cpu_f32 *copy,
                                   const uint8_t **base, int64_t strides[2]) {
    copy->data = NULL;
    copy->owned = NULL;
    if (t->strides[2] == 4 || t->shape[2] == 1) {
        *base = t->data;
        strides[0] = t->strides[0];
        strides[1] = t->strides[1];
        return MG_OK;
    }
    MG_TRY(mg_cpu_f32_input("mg_attention", what, t, false, copy));
    *base = (const uint8_t *)copy->data;
    strides[0] = t->shape[1] * t->shape[2] * 4;
    strides[1] = t->shape[2] * 4;
    return MG_OK;
}

mg_status mg_cpu_attention(mg_context *ctx, const mg_tensor *q, const mg_tensor *k,
                           const mg_tensor *v, const mg_tensor *mask, bool causal, float scale,
                           mg_tensor *out) {
    static const char op[] = "mg_attention";
    char a[MG_DESCRIBE_SIZE], b[MG_DESCRIBE_SIZE], c[MG_DESCRIBE_SIZE];
    const char *names[3] = {"q", "k", "v"};
    const mg_tensor *inputs[3] = {q, k, v};
    for (int i = 0; i < 3; i++) {
        MG_TRY(mg_cpu_check_input(op, names[i], inputs[i], 3));
        if (inputs[i]->n_dims != 3)
            return mg_error(MG_ERR_SHAPE, "%s: %s %s must be [tokens, heads, head_dim]", op, names[i],
                            mg_cpu_describe(inputs[i], a));
        if (inputs[i]->dtype != MG_F32)
            return mg_error(MG_ERR_DTYPE, "%s: %s %s must be f32", op, names[i], mg_cpu_describe(inputs[i], a));
    }
    const int64_t Tq = q->shape[0], Hq = q->shape[1], D = q->shape[2];
    const int64_t Tk = k->shape[0], Hkv = k->shape[1], Dv = v->shape[2];
    if (k->shape[2] != D)
        return mg_error(MG_ERR_SHAPE, "%s: q %s and k %s: head dimensions differ", op,
                        mg_cpu_describe(q, a), mg_cpu_describe(k, b));
    if (v->shape[0] != Tk || v->shape[1] != Hkv)
        return mg_error(MG_ERR_SHAPE, "%s: k %s and v %s: tokens or heads differ", op,
                        mg_cpu_describe(k, a), mg_cpu_describe(v, b));
    if (Hq % Hkv != 0)
        return mg_error(MG_ERR_SHAPE, "%s: q %s has %lld heads, not a multiple of the %lld heads of k %s", op,
                        mg_cpu_describe(q, a), (long long)Hq, (long long)Hkv, mg_cpu_describe(k, b));
    if (!isfinite(scale))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: scale %g is not finite", op, (double)scale);
    int64_t out_shape[3] = {Tq, Hq, Dv};
    MG_TRY(mg_cpu_check_output(op, out, 3, out_shape));

    mg_attention_job job;
    memset(&job, 0, sizeof job);
    if (mask) {
        MG_TRY(mg_cpu_check_input(op, "mask", mask, MG_MAX_DIMS));
        if (mask->dtype != MG_F32)
            return mg_error(MG_ERR_DTYPE, "%s: mask %s must be f32 (additive; -inf blocks)", op,
                            mg_cpu_describe(mask, a));
        /* Leading size-1 axes (a [1, H, Tq, Tk] batch mask) are dropped. */
        mg_tensor m = *mask;
        while (m.n_dims > 3 && m.shape[0] == 1) {
            for (int i = 0; i + 1 < m.n_dims; i++) {
                m.shape[i] = m.shape[i + 1];
                m.strides[i] = m.strides[i + 1];
            }
            m.n_dims--;
        }
        mg_tensor target;
        int64_t target_shape[3] = {Hq, Tq, Tk};
        MG_TRY(mg_tensor_init(&target, NULL, MG_F32, 3, target_shape));
        if (m.n_dims > 3)
            return mg_error(MG_ERR_SHAPE, "%s: mask %s does not broadcast to %s", op,
                            mg_cpu_describe(mask, a), mg_cpu_describe(&target, c));
        int64_t strides[MG_MAX_DIMS];
        MG_TRY(mg_cpu_broadcast_strides(op, "mask", &m, &target, strides));
        for (int i = 0; i < 3; i++) job.mask_strides[i] = strides[i];
        job.mask = mask->data;
    }

    mg_cpu_f32 copies[3];
    const uint8_t *bases[3];
    int64_t strides[3][2];
    mg_status status = MG_OK;
    int made = 0;
    for (; made < 3 && status == MG_OK; made++)
        status = mg_attention_view(names[made], inputs[made], &copies[made], &bases[made], strides[made]);
    const int n_threads = mg_context_n_threads(ctx);
    job.scratch_per_thread = MG_ATTN_QUERY_BLOCK * MG_ATTN_KEY_BLOCK + 2 * MG_ATTN_QUERY_BLOCK;
    if (status == MG_OK) {
        job.scratch = mg_aligned_alloc((size_t)(job.scratch_per_thread * n_threads) * sizeof(float));
        if (!job.scratch) status = mg_error(MG_ERR_NO_MEMORY, "%s: no memory for per-thread scores", op);
    }
    if (status == MG_OK) {
        job.kernels = mg_cpu_kernels_for(mg_cpu_context_isa(ctx));
        job.q = bases[0];
        job.k = bases[1];
        job.v = bases[2];
        for (int i = 0; i < 2; i++) {
            job.q_strides[i] = strides[0][i];
            job.k_strides[i] = strides[1][i];
            job.v_strides[i] = strides[2][i];
        }
        job.Tq = Tq;
        job.Tk = Tk;
        job.Hq = Hq;
        job.group = Hq / Hkv;
        job.D = D;
        job.Dv = Dv;
        job.scale = scale;
        job.causal = causal;
        job.out = out->data;
        job.n_query_blocks = (Tq + MG_ATTN_QUERY_BLOCK - 1) / MG_ATTN_QUERY_BLOCK;
        mg_threadpool_run(mg_context_threadpool(ctx), Hq * job.n_query_blocks, mg_attention_task, &job);
    }
    mg_aligned_free(job.scratch);
    for (int i = 0; i < made; i++) mg_cpu_f32_release(&copies[i]);
    return status;
}
