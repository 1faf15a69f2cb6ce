/* A fixed pool of pthreads running one parallel loop at a time. Tasks are
 * handed out with an atomic counter so uneven tasks balance themselves.
 *
 * Several threads may share one pool (Python releases the GIL around C work
 * on a shared context): their loops take turns through run_lock. A loop
 * started from inside a task of the same pool runs inline on the calling
 * thread instead of waiting for itself. */
#include "core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct mg_threadpool {
    int n_threads; /* including the caller */
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_mutex_t run_lock; /* one mg_threadpool_run at a time */
    pthread_cond_t work_ready;
    pthread_cond_t work_done;
    uint64_t generation; /* bumped for each mg_threadpool_run */
    int active_workers;  /* workers still inside the current generation */
    bool shutting_down;
    /* the current loop */
    mg_task_fn fn;
    void *ctx;
    int64_t n_tasks;
    atomic_llong next_task;
};

/* The pool whose tasks this thread is running, if any. */
static _Thread_local const mg_threadpool *mg_current_pool;

int mg_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void mg_threadpool_drain(mg_threadpool *pool, int thread_index) {
    for (;;) {
        int64_t task = atomic_fetch_add(&pool->next_task, 1);
        if (task >= pool->n_tasks) break;
        pool->fn(pool->ctx, task, thread_index);
    }
}

typedef struct {
    mg_threadpool *pool;
    int index;
} mg_worker_arg;

static void *mg_worker_main(void *raw) {
    mg_worker_arg arg = *(mg_worker_arg *)raw;
    free(raw);
    mg_threadpool *pool = arg.pool;
    mg_current_pool = pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->shutting_down && pool->generation == seen)
            pthread_cond_wait(&pool->work_ready, &pool->lock);
        if (pool->shutting_down) break;
        seen = pool->generation;
        pthread_mutex_unlock(&pool->lock);
        mg_threadpool_drain(pool, arg.index);
        pthread_mutex_lock(&pool->lock);
        if (--pool->active_workers == 0) pthread_cond_signal(&pool->work_done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

mg_status mg_threadpool_create(int n_threads, mg_threadpool **out) {
    *out = NULL;
    if (n_threads <= 0) n_threads = mg_cpu_count();
    if (n_threads > 1024) return mg_error(MG_ERR_INVALID_ARGUMENT, "%d threads is more than 1024", n_threads);
    mg_threadpool *pool = calloc(1, sizeof *pool);
    if (!pool) return mg_error(MG_ERR_NO_MEMORY, "thread pool: out of memory");
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_mutex_init(&pool->run_lock, NULL);
    pthread_cond_init(&pool->work_ready, NULL);
    pthread_cond_init(&pool->work_done, NULL);
    pool->workers = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!pool->workers) {
        mg_threadpool_destroy(pool);
        return mg_error(MG_ERR_NO_MEMORY, "thread pool: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        mg_worker_arg *arg = malloc(sizeof *arg);
        if (!arg) {
            pool->n_threads = i;
            mg_threadpool_destroy(pool);
            return mg_error(MG_ERR_NO_MEMORY, "thread pool: out of memory");
        }
        arg->pool = pool;
        arg->index = i;
        if (pthread_create(&pool->workers[i], NULL, mg_worker_main, arg) != 0) {
            free(arg);
            pool->n_threads = i;
            mg_threadpool_destroy(pool);
            return mg_error(MG_ERR_INTERNAL, "thread pool: pthread_create failed for thread %d", i);
        }
    }
    *out = pool;
    return MG_OK;
}

void mg_threadpool_destroy(mg_threadpool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    pool->shutting_down = true;
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->workers[i], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->run_lock);
    pthread_cond_destroy(&pool->work_ready);
    pthread_cond_destroy(&pool->work_done);
    free(pool->workers);
    free(pool);
}

int mg_threadpool_size(const mg_threadpool *pool) { return pool ? pool->n_threads : 1; }

void mg_threadpool_run(mg_threadpool *pool, int64_t n_tasks, mg_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (!pool || pool->n_threads == 1 || n_tasks == 1 || mg_current_pool == pool) {
        for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&pool->run_lock);
    pthread_mutex_lock(&pool->lock);
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n_tasks = n_tasks;
    atomic_store(&pool->next_task, 0);
    pool->active_workers = pool->n_threads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);

    const mg_threadpool *outer = mg_current_pool;
    mg_current_pool = pool;
    mg_threadpool_drain(pool, 0);
    mg_current_pool = outer;

    pthread_mutex_lock(&pool->lock);
    while (pool->active_workers > 0) pthread_cond_wait(&pool->work_done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    pthread_mutex_unlock(&pool->run_lock);
}
