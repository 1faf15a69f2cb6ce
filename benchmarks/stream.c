/* STREAM-like memory bandwidth (triad and read-only sum), the roofline's
 * denominator. Built and run by benchmarks/machine.py. Prints JSON.
 * read_gb_s is the faster of two read-only sums: a plain one, and one that
 * also prefetches 2 KiB ahead into L2 (as the q4_0 GEMV does; on this VM's
 * Zen 4 cores it reads ~10 % more than the plain loop), so no kernel's
 * software prefetch can beat the roofline by outrunning a plain loop. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? (size_t)atoll(argv[1]) : (size_t)1 << 26; /* doubles per array */
    int repeats = argc > 2 ? atoi(argv[2]) : 6;
    double *a = aligned_alloc(64, n * sizeof(double));
    double *b = aligned_alloc(64, n * sizeof(double));
    double *c = aligned_alloc(64, n * sizeof(double));
    if (!a || !b || !c) return 1;
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        a[i] = 1.0;
        b[i] = 2.0;
        c[i] = 0.5;
    }
    double best_triad = 1e30, best_sum = 1e30, best_prefetch = 1e30, sink = 0.0;
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
#pragma omp parallel for
        for (size_t i = 0; i < n; i++) a[i] = b[i] + 3.0 * c[i];
        double t1 = now();
        double s = 0.0;
#pragma omp parallel for simd reduction(+ : s)
        for (size_t i = 0; i < n; i++) s += a[i];
        double t2 = now();
        sink += s;
        if (t1 - t0 < best_triad) best_triad = t1 - t0;
        if (t2 - t1 < best_sum) best_sum = t2 - t1;
        /* the read again over b (not just written), with software prefetch */
        double p = 0.0;
        const double t3 = now();
#pragma omp parallel reduction(+ : p)
        {
            const size_t threads = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
            const size_t begin = n / threads * id, end = id + 1 == threads ? n : n / threads * (id + 1);
            double part = 0.0;
            size_t i = begin;
            for (; i + 32 <= end; i += 32) {
                if (i + 256 + 32 <= end) /* 2 KiB ahead, never past the range */
                    for (int line = 0; line < 4; line++) __builtin_prefetch(b + i + 256 + 8 * line, 0, 1);
#pragma omp simd reduction(+ : part)
                for (size_t k = 0; k < 32; k++) part += b[i + k];
            }
            for (; i < end; i++) part += b[i];
            p += part;
        }
        const double t4 = now();
        sink += p;
        if (t4 - t3 < best_prefetch) best_prefetch = t4 - t3;
    }
    const double bytes = (double)n * sizeof(double);
    const double plain = bytes / best_sum / 1e9, prefetch = bytes / best_prefetch / 1e9;
    printf("{\"threads\": %d, \"triad_gb_s\": %.2f, \"read_gb_s\": %.2f, \"read_plain_gb_s\": %.2f, "
           "\"read_prefetch_gb_s\": %.2f, \"checksum\": %.1f}\n",
           omp_get_max_threads(), 3.0 * bytes / best_triad / 1e9, plain > prefetch ? plain : prefetch, plain,
           prefetch, sink);
    free(a);
    free(b);
    free(c);
    return 0;
}
