/* dataset.c - labelled examples in memory: construction, subsets and seeded splits. */
#include "dataset.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static sdm_status fail(sdm_status st, char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* An empty dataset of the given shape with its arrays allocated (n may be 0). */
static sdm_dataset *alloc_dataset(uint64_t n, uint32_t d, uint32_t classes)
{
    sdm_dataset *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return NULL;
    ds->n = n;
    ds->d = d;
    ds->classes = classes;
    /* +1 so that an empty dataset still has non-NULL arrays */
    ds->x = malloc((n * d + 1) * sizeof(double));
    ds->y = malloc((n + 1) * sizeof(int32_t));
    ds->ids = malloc((n + 1) * sizeof(uint64_t));
    if (!ds->x || !ds->y || !ds->ids)
        sdm_dataset_destroy(&ds);
    return ds;
}

void sdm_dataset_destroy(sdm_dataset **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_dataset *ds = *self_p;
    free(ds->x);
    free(ds->y);
    free(ds->ids);
    free(ds);
    *self_p = NULL;
}

sdm_status sdm_dataset_new(uint64_t n, uint32_t d, uint32_t classes, const double *x,
                           const int32_t *y, const uint64_t *ids, sdm_dataset **out, char *err,
                           size_t err_len)
{
    if (!out)
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "out: NULL");
    *out = NULL;
    if (d == 0)
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "d: must be positive");
    if (classes < 2)
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "classes: must be at least 2");
    if (n > ((uint64_t)1 << 40) / d)
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "n: %llu rows of %u features is too many",
                    (unsigned long long)n, d);
    if (n > 0 && (!x || !y))
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "%s: NULL", x ? "y" : "x");
    for (uint64_t i = 0; i < n; i++) {
        if (y[i] < 0 || (uint32_t)y[i] >= classes)
            return fail(SDM_ERR_BAD_INPUT, err, err_len, "y[%llu]: label %d outside [0, %u)",
                        (unsigned long long)i, y[i], classes);
        for (uint32_t j = 0; j < d; j++)
            if (!isfinite(x[i * d + j]))
                return fail(SDM_ERR_BAD_INPUT, err, err_len, "x[%llu][%u]: not finite",
                            (unsigned long long)i, j);
    }
    sdm_dataset *ds = alloc_dataset(n, d, classes);
    if (!ds)
        return fail(SDM_ERR_NOMEM, err, err_len, "dataset: out of memory for %llu examples",
                    (unsigned long long)n);
    if (n > 0) {
        memcpy(ds->x, x, n * d * sizeof(double));
        memcpy(ds->y, y, n * sizeof(int32_t));
    }
    for (uint64_t i = 0; i < n; i++)
        ds->ids[i] = ids ? ids[i] : i;
    *out = ds;
    return SDM_OK;
}

sdm_status sdm_dataset_subset(const sdm_dataset *ds, const uint64_t *idx, uint64_t m,
                              sdm_dataset **out, char *err, size_t err_len)
{
    if (!out)
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "out: NULL");
    *out = NULL;
    if (!ds)
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "dataset: NULL");
    if (m > 0 && !idx)
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "idx: NULL");
    for (uint64_t k = 0; k < m; k++)
        if (idx[k] >= ds->n)
            return fail(SDM_ERR_BAD_INPUT, err, err_len, "idx[%llu]: %llu past the %llu examples",
                        (unsigned long long)k, (unsigned long long)idx[k],
                        (unsigned long long)ds->n);
    sdm_dataset *sub = alloc_dataset(m, ds->d, ds->classes);
    if (!sub)
        return fail(SDM_ERR_NOMEM, err, err_len, "dataset: out of memory for %llu examples",
                    (unsigned long long)m);
    for (uint64_t k = 0; k < m; k++) {
        memcpy(sub->x + k * ds->d, ds->x + idx[k] * ds->d, ds->d * sizeof(double));
        sub->y[k] = ds->y[idx[k]];
        sub->ids[k] = ds->ids[idx[k]];
    }
    *out = sub;
    return SDM_OK;
}

sdm_status sdm_dataset_split(const sdm_dataset *ds, uint64_t n_test, uint64_t seed,
                             sdm_dataset **train, sdm_dataset **test, char *err, size_t err_len)
{
    if (train)
        *train = NULL;
    if (test)
        *test = NULL;
    if (!ds)
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "dataset: NULL");
    if (n_test > ds->n)
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "n_test: %llu is more than the %llu examples",
                    (unsigned long long)n_test, (unsigned long long)ds->n);
    uint64_t n = ds->n;
    uint64_t *perm = malloc((n + 1) * sizeof(uint64_t));
    unsigned char *in_test = calloc(n + 1, 1);
    uint64_t *idx = malloc((n + 1) * sizeof(uint64_t));
    sdm_status st = SDM_ERR_NOMEM;
    if (!perm || !in_test || !idx) {
        fail(st, err, err_len, "split: out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint64_t j = n; j-- > 1;) {
        /* modulo bias is below n / 2^64: immaterial, and simple to reproduce elsewhere */
        uint64_t k = sdm_rng_u64(seed, j, 0, SDM_RNG_SPLIT) % (j + 1);
        uint64_t t = perm[j];
        perm[j] = perm[k];
        perm[k] = t;
    }
    for (uint64_t i = n - n_test; i < n; i++)
        in_test[perm[i]] = 1;
    /* each part in the original order: positions ascending */
    for (int part = 0; part < 2; part++) {
        sdm_dataset **dst = part ? test : train;
        if (!dst)
            continue;
        uint64_t m = 0;
        for (uint64_t i = 0; i < n; i++)
            if (in_test[i] == part)
                idx[m++] = i;
        st = sdm_dataset_subset(ds, idx, m, dst, err, err_len);
        if (st != SDM_OK)
            goto done;
    }
    st = SDM_OK;
done:
    if (st != SDM_OK) {
        if (train)
            sdm_dataset_destroy(train);
        if (test)
            sdm_dataset_destroy(test);
    }
    free(perm);
    free(in_test);
    free(idx);
    return st;
}
