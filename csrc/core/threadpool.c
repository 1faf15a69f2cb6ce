/* A fixed pool of pthreads running one parallel loop at a time. Tasks are
 * handed out with an atomic counter so uneven tasks balance themselves.
 *
 * Waking a sleeping worker through a condition variable costs tens of
 * microseconds to a millisecond on a loaded machine, more than a whole
 * decode-step loop. So workers first spin (with pause) for a short while
 * on the atomic generation counter after each loop, and the caller spins
 * on the count of busy workers before sleeping on work_done; only an idle
 * pool falls back to the condition variables.
 *
 * Several threads may share one pool (Python releases the GIL around C work
 * on a shared context): their loops take turns through run_lock. A loop
 * started from inside a task of the same pool runs inline on the calling
 * thread instead of waiting for itself. */
#include "core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MG_CPU_RELAX() _mm_pause()
#else
#define MG_CPU_RELAX() ((void)0)
#endif

/* How long a worker keeps spinning for the next loop, and the caller for
 * the workers to finish, before sleeping. */
#define MG_SPIN_NS 200000

struct mg_threadpool {
    int n_threads; /* including the caller */
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_mutex_t run_lock; /* one mg_threadpool_run at a time */
    pthread_cond_t work_ready;
    pthread_cond_t work_done;
    atomic_uint_fast64_t generation; /* bumped (under lock) for each mg_threadpool_run */
    atomic_int active_workers;       /* workers still inside the current generation */
    atomic_bool shutting_down;
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

static int64_t mg_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spins until pred(pool, arg) or MG_SPIN_NS pass; whether pred held. */
static bool mg_spin_until(bool (*pred)(mg_threadpool *, uint64_t), mg_threadpool *pool, uint64_t arg) {
    int64_t deadline = 0;
    for (int i = 0;; i++) {
        if (pred(pool, arg)) return true;
        MG_CPU_RELAX();
        if ((i & 63) == 63) {
            int64_t now = mg_now_ns();
            if (!deadline) deadline = now + MG_SPIN_NS;
            else if (now >= deadline) return false;
        }
    }
}

static bool mg_new_work(mg_threadpool *pool, uint64_t seen) {
    return atomic_load_explicit(&pool->generation, memory_order_acquire) != seen ||
           atomic_load_explicit(&pool->shutting_down, memory_order_acquire);
}

static bool mg_workers_done(mg_threadpool *pool, uint64_t unused) {
    (void)unused;
    return atomic_load_explicit(&pool->active_workers, memory_order_acquire) == 0;
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
    for (;;) {
        if (!mg_spin_until(mg_new_work, pool, seen)) {
            pthread_mutex_lock(&pool->lock);
            while (!mg_new_work(pool, seen)) pthread_cond_wait(&pool->work_ready, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
        }
        if (atomic_load(&pool->shutting_down)) break;
        seen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        mg_threadpool_drain(pool, arg.index);
        if (atomic_fetch_sub_explicit(&pool->active_workers, 1, memory_order_acq_rel) == 1) {
            /* The last one out wakes a caller that stopped spinning. */
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->work_done);
            pthread_mutex_unlock(&pool->lock);
        }
    }
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
    atomic_store(&pool->shutting_down, true);
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
    atomic_store(&pool->active_workers, pool->n_threads - 1);
    /* Release: a worker that sees the new generation sees the loop too. */
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);

    const mg_threadpool *outer = mg_current_pool;
    mg_current_pool = pool;
    mg_threadpool_drain(pool, 0);
    mg_current_pool = outer;

    if (!mg_spin_until(mg_workers_done, pool, 0)) {
        pthread_mutex_lock(&pool->lock);
        while (!mg_workers_done(pool, 0)) pthread_cond_wait(&pool->work_done, &pool->lock);
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->run_lock);
}
