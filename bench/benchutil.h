/* benchutil.h - the small helpers both benchmarks share: a monotonic clock, order statistics
 * of timings and reproducible random test data. Header-only, as each benchmark is one file. */
#ifndef SDM_BENCH_BENCHUTIL_H
#define SDM_BENCH_BENCHUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Seconds on a clock that never steps back. */
static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (n > 0); sorts v. */
static inline double bench_median(double *v, int n)
{
    qsort(v, n, sizeof(double), bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The q-quantile of v[0..n) (n > 0) as the smallest value with at least q of them at or
 * below it; sorts v. */
static inline double bench_quantile(double *v, int n, double q)
{
    qsort(v, n, sizeof(double), bench_cmp_double);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

/* The next float in [-1, 1) of the xorshift64 stream in *state (seeded non-zero), so a
 * run's data is the same every time. */
static inline float bench_rnd(uint64_t *state)
{
    uint64_t s = *state;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    *state = s;
    return (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* n floats from bench_rnd(state), malloc'd. Exits with a message naming prog when out of
 * memory. */
static inline float *bench_random_floats(uint64_t *state, uint64_t n, const char *prog)
{
    float *x = malloc(n * sizeof(float));
    if (!x) {
        fprintf(stderr, "%s: out of memory for %llu floats\n", prog, (unsigned long long)n);
        exit(1);
    }
    for (uint64_t i = 0; i < n; i++)
        x[i] = bench_rnd(state);
    return x;
}

#endif /* SDM_BENCH_BENCHUTIL_H */
