/* Peak GEMM FLOP/s of this machine's oneDNN: C[M, N] = A[M, K] B, f32 or
 * bf16 inputs (f32 output), or int8 (u8 A, s8 B, s32 output: the
 * vpdpbusd GEMM without any per-block scaling, the ceiling our q8_0/q4_0
 * GEMM is held to), best of `repeats` runs after a warm-up, on
 * OMP_NUM_THREADS threads. B is timed twice: as a row-major [N, K] weight
 * read transposed (the layout mg_linear hands oneDNN) and in oneDNN's own
 * blocked layout, reordered once beforehand (the kernel's best case).
 * Prints one JSON object ("unsupported": true where this CPU's oneDNN has no
 * matmul of the dtype, as bf16 below AVX-512). Built by benchmarks/machine.py:
 *   gcc -O2 gemm_peak.c -ldnnl -o gemm_peak; gemm_peak M N K f32|bf16|int8 repeats */
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call)                                                                   \
    do {                                                                              \
        dnnl_status_t s_ = (call);                                                    \
        if (s_ != dnnl_success) {                                                     \
            fprintf(stderr, "gemm_peak: %s failed (dnnl_status %d)\n", #call, (int)s_); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best seconds of one matmul with B given by b_md (format_any: reordered). */
static double time_matmul(dnnl_engine_t engine, dnnl_stream_t stream, dnnl_data_type_t type, long M,
                          long N, long K, int blocked, int repeats) {
    dnnl_dims_t a_dims = {M, K}, b_dims = {K, N}, c_dims = {M, N};
    dnnl_dims_t a_strides = {K, 1}, b_strides = {1, K}, c_strides = {N, 1};
    const int int8 = type == dnnl_s8;
    const dnnl_data_type_t a_type = int8 ? dnnl_u8 : type, c_type = int8 ? dnnl_s32 : dnnl_f32;
    dnnl_memory_desc_t a_md, b_plain, b_md, c_md;
    CHECK(dnnl_memory_desc_init_by_strides(&a_md, 2, a_dims, a_type, a_strides));
    CHECK(dnnl_memory_desc_init_by_strides(&b_plain, 2, b_dims, type, b_strides));
    CHECK(dnnl_memory_desc_init_by_strides(&c_md, 2, c_dims, c_type, c_strides));
    if (blocked) CHECK(dnnl_memory_desc_init_by_tag(&b_md, 2, b_dims, type, dnnl_format_tag_any));
    else b_md = b_plain;
    dnnl_matmul_desc_t desc;
    CHECK(dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md));
    dnnl_primitive_desc_t pd;
    const dnnl_status_t created = dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL);
    if (created == dnnl_unimplemented) return -1.0; /* no kernel for this dtype on this CPU */
    CHECK(created);
    const dnnl_memory_desc_t *b_used = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_t matmul;
    CHECK(dnnl_primitive_create(&matmul, pd));
    dnnl_memory_t a, b_src, b, c;
    CHECK(dnnl_memory_create(&a, &a_md, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&b_src, &b_plain, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&b, b_used, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&c, &c_md, engine, DNNL_MEMORY_ALLOCATE));
    /* Small integers: exact in bf16, no denormals or infinities. */
    void *pa, *pb;
    CHECK(dnnl_memory_get_data_handle(a, &pa));
    CHECK(dnnl_memory_get_data_handle(b_src, &pb));
    size_t elem = int8 ? 1 : type == dnnl_bf16 ? 2 : 4;
    for (long i = 0; i < M * K; i++) {
        float v = (float)(i % 7 - 3);
        if (elem == 1) ((unsigned char *)pa)[i] = (unsigned char)(i % 7);
        else if (elem == 4) memcpy((char *)pa + i * 4, &v, 4);
        else { unsigned u; memcpy(&u, &v, 4); unsigned short h = (unsigned short)(u >> 16); memcpy((char *)pa + i * 2, &h, 2); }
    }
    for (long i = 0; i < N * K; i++) {
        float v = (float)(i % 5 - 2);
        if (elem == 1) ((signed char *)pb)[i] = (signed char)(i % 5 - 2);
        else if (elem == 4) memcpy((char *)pb + i * 4, &v, 4);
        else { unsigned u; memcpy(&u, &v, 4); unsigned short h = (unsigned short)(u >> 16); memcpy((char *)pb + i * 2, &h, 2); }
    }
    /* B into the primitive's layout (a plain copy when it is the plain one). */
    dnnl_primitive_desc_t rpd;
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, &b_plain, engine, b_used, engine, NULL));
    dnnl_primitive_t reorder;
    CHECK(dnnl_primitive_create(&reorder, rpd));
    dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, b_src}, {DNNL_ARG_TO, b}};
    CHECK(dnnl_primitive_execute(reorder, stream, 2, rargs));
    CHECK(dnnl_stream_wait(stream));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
    double best = 1e30;
    for (int r = 0; r <= repeats; r++) {
        double t0 = now();
        CHECK(dnnl_primitive_execute(matmul, stream, 3, args));
        CHECK(dnnl_stream_wait(stream));
        double t = now() - t0;
        if (r > 0 && t < best) best = t; /* run 0 warms up */
    }
    dnnl_primitive_destroy(reorder);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_destroy(matmul);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(a);
    dnnl_memory_destroy(b_src);
    dnnl_memory_destroy(b);
    dnnl_memory_destroy(c);
    return best;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: gemm_peak M N K f32|bf16|int8 repeats\n");
        return 2;
    }
    long M = atol(argv[1]), N = atol(argv[2]), K = atol(argv[3]);
    dnnl_data_type_t type = strcmp(argv[4], "bf16") == 0 ? dnnl_bf16 : strcmp(argv[4], "int8") == 0 ? dnnl_s8 : dnnl_f32;
    int repeats = atoi(argv[5]);
    if (M <= 0 || N <= 0 || K <= 0 || repeats < 1) return 2;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    double plain = time_matmul(engine, stream, type, M, N, K, 0, repeats);
    if (plain < 0) { /* e.g. bf16 below AVX-512: oneDNN 2.x has no such matmul */
        printf("{\"M\": %ld, \"N\": %ld, \"K\": %ld, \"dtype\": \"%s\", \"unsupported\": true}\n", M, N, K,
               argv[4]);
        dnnl_stream_destroy(stream);
        dnnl_engine_destroy(engine);
        return 0;
    }
    double blocked = time_matmul(engine, stream, type, M, N, K, 1, repeats);
    double flops = 2.0 * M * N * K;
    printf("{\"M\": %ld, \"N\": %ld, \"K\": %ld, \"dtype\": \"%s\", \"plain_gflops\": %.1f, "
           "\"blocked_gflops\": %.1f}\n",
           M, N, K, argv[4], flops / plain / 1e9, flops / blocked / 1e9);
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
    return 0;
}
