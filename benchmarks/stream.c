/* STREAM-like memory bandwidth (triad and read-only sum), the roofline's
 * denominator. Built and run by benchmarks/machine.py. Prints JSON. */
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
    double best_triad = 1e30, best_sum = 1e30, sink = 0.0;
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
    }
    printf("{\"threads\": %d, \"triad_gb_s\": %.2f, \"read_gb_s\": %.2f, \"checksum\": %.1f}\n",
           omp_get_max_threads(), 3.0 * (double)n * sizeof(double) / best_triad / 1e9,
           (double)n * sizeof(double) / best_sum / 1e9, sink);
    free(a);
    free(b);
    free(c);
    return 0;
}
