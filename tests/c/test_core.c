/* Core: tensors and views, arena, thread pool, weights table, error messages. */
#include <stdatomic.h>

#include "mg_test.h"

#include <pthread.h>

static void test_tensor_views(void) {
    float data[24];
    for (int i = 0; i < 24; i++) data[i] = (float)i;
    mg_tensor t, v;
    CHECK_OK(mg_tensor_init(&t, data, MG_F32, 3, (int64_t[]){2, 3, 4}));
    CHECK(mg_tensor_numel(&t) == 24);
    CHECK(mg_tensor_is_contiguous(&t));
    CHECK_OK(mg_tensor_permute(&t, (int[]){2, 1, 0}, &v));
    CHECK(!mg_tensor_is_contiguous(&v));
    CHECK(v.shape[0] == 4 && v.strides[0] == 4 && v.strides[2] == 48);
    CHECK_OK(mg_tensor_slice(&t, 1, 1, 3, &v));
    CHECK(((float *)v.data)[0] == 4.0f && v.shape[1] == 2);
    CHECK_STATUS(mg_tensor_reshape(&t, 2, (int64_t[]){5, 5}, &v), MG_ERR_SHAPE);
    CHECK_STATUS(mg_tensor_init(&t, data, MG_F32, 5, (int64_t[]){1, 1, 1, 1, 1}), MG_ERR_SHAPE);
    CHECK_MESSAGE("5 dimensions");
    CHECK_STATUS(mg_tensor_init(&t, data, MG_Q8_0, 1, (int64_t[]){33}), MG_ERR_SHAPE);
    CHECK_MESSAGE("block size");
    CHECK_STATUS(mg_tensor_init(&t, data, MG_F32, 2, (int64_t[]){0, 3}), MG_ERR_SHAPE);
    CHECK_STATUS(mg_tensor_init(&t, data, MG_F32, 3, (int64_t[]){1 << 30, 1 << 30, 1 << 30}),
                 MG_ERR_NO_MEMORY);
    /* convert a strided view to a contiguous f16 copy and back */
    CHECK_OK(mg_tensor_init(&t, data, MG_F32, 2, (int64_t[]){4, 6}));
    CHECK_OK(mg_tensor_permute(&t, (int[]){1, 0}, &v));
    mg_tensor half, back;
    CHECK_OK(mg_tensor_alloc(&half, MG_F16, 2, (int64_t[]){6, 4}));
    CHECK_OK(mg_tensor_alloc(&back, MG_F32, 2, (int64_t[]){6, 4}));
    CHECK_OK(mg_tensor_convert(&v, &half));
    CHECK_OK(mg_tensor_convert(&half, &back));
    CHECK(((float *)back.data)[1] == 6.0f && ((float *)back.data)[4] == 1.0f);
    mg_tensor_free_data(&half);
    mg_tensor_free_data(&back);
}

static void test_arena(void) {
    mg_arena arena;
    CHECK_OK(mg_arena_init(&arena, 1024));
    size_t mark = mg_arena_mark(&arena);
    void *a = mg_arena_alloc(&arena, 100, 64);
    void *b = mg_arena_alloc(&arena, 100, 64);
    CHECK(a && b && ((uintptr_t)b % 64) == 0 && (uint8_t *)b >= (uint8_t *)a + 100);
    CHECK(mg_arena_alloc(&arena, 4096, 64) == NULL);
    CHECK_MESSAGE("asked for 4096 bytes");
    mg_arena_reset_to(&arena, mark);
    CHECK(arena.used == 0 && arena.high_water >= 200);
    mg_arena_destroy(&arena);
}

static atomic_long task_sum;
static void add_task(void *ctx, int64_t task, int thread) { atomic_fetch_add(&task_sum, (long)task); }

static void test_threadpool(void) {
    mg_threadpool *pool;
    CHECK_OK(mg_threadpool_create(3, &pool));
    for (int round = 0; round < 50; round++) {
        atomic_store(&task_sum, 0);
        mg_threadpool_run(pool, 1000, add_task, NULL);
        CHECK(atomic_load(&task_sum) == 999L * 1000 / 2);
    }
    mg_threadpool_destroy(pool);
}

/* Two callers sharing one pool (as Python threads share the default
 * context), each checking its own loop's result, and a loop started from
 * inside a task (runs inline rather than deadlocking). */
typedef struct {
    mg_threadpool *pool;
    atomic_long sum;
    int bad_rounds;
} mg_caller;

static void caller_task(void *raw, int64_t task, int thread_index) {
    mg_caller *c = raw;
    atomic_fetch_add(&c->sum, (long)task + 1);
}

static void *caller_main(void *raw) {
    mg_caller *c = raw;
    for (int round = 0; round < 300; round++) {
        atomic_store(&c->sum, 0);
        mg_threadpool_run(c->pool, 257, caller_task, c);
        if (atomic_load(&c->sum) != 257L * 258 / 2) c->bad_rounds++;
    }
    return NULL;
}

static mg_threadpool *nested_pool;
static atomic_long nested_sum;

static void nested_inner(void *raw, int64_t task, int thread_index) { atomic_fetch_add(&nested_sum, 1); }

static void nested_outer(void *raw, int64_t task, int thread_index) {
    mg_threadpool_run(nested_pool, 10, nested_inner, NULL);
}

static void test_threadpool_shared(void) {
    mg_threadpool *pool;
    CHECK_OK(mg_threadpool_create(2, &pool));
    mg_caller callers[3];
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) {
        callers[i].pool = pool;
        atomic_store(&callers[i].sum, 0);
        callers[i].bad_rounds = 0;
        CHECK(pthread_create(&threads[i], NULL, caller_main, &callers[i]) == 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
        CHECK(callers[i].bad_rounds == 0);
    }
    nested_pool = pool;
    atomic_store(&nested_sum, 0);
    mg_threadpool_run(pool, 8, nested_outer, NULL);
    CHECK(atomic_load(&nested_sum) == 80);
    mg_threadpool_destroy(pool);
}

static void test_weights(void) {
    mg_weights *w;
    CHECK_OK(mg_weights_create(&w));
    float data[6] = {1, 2, 3, 4, 5, 6};
    mg_tensor t, got;
    CHECK_OK(mg_tensor_init(&t, data, MG_F32, 2, (int64_t[]){2, 3}));
    char name[64];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "transformer.h.%d.attn.c_attn.weight", i);
        CHECK_OK(mg_weights_add(w, name, &t, i % 2 == 0));
    }
    CHECK(mg_weights_count(w) == 300);
    CHECK_OK(mg_weights_get(w, "transformer.h.299.attn.c_attn.weight", &got));
    CHECK(got.shape[1] == 3 && ((float *)got.data)[5] == 6.0f);
    CHECK_STATUS(mg_weights_get(w, "transformer.h.300.attn.c_attn.weight", &got), MG_ERR_NOT_FOUND);
    CHECK_MESSAGE("transformer.h.300.attn.c_attn.weight");
    CHECK_STATUS(mg_weights_add(w, "transformer.h.1.attn.c_attn.weight", &t, false), MG_ERR_INVALID_ARGUMENT);
    CHECK_OK(mg_weights_set_int(w, "bird.block_count", 32));
    CHECK_OK(mg_weights_set_string(w, "general.architecture", "bird"));
    int64_t n;
    const char *s;
    CHECK_OK(mg_weights_get_int(w, "bird.block_count", &n));
    CHECK(n == 32);
    CHECK_OK(mg_weights_get_string(w, "general.architecture", &s));
    CHECK(strcmp(s, "bird") == 0);
    CHECK_STATUS(mg_weights_get_string(w, "bird.block_count", &s), MG_ERR_DTYPE);
    mg_weights_destroy(w);
}

int main(void) {
    test_tensor_views();
    test_arena();
    test_threadpool();
    test_threadpool_shared();
    test_weights();
    return mg_test_finish("test_core");
}
