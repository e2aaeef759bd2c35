/* dataset.h - labelled examples in memory: a dense feature matrix, labels and example ids.
 *
 * A dataset is a plain struct whose fields callers read directly. Datasets are made by a
 * loader (digits.h), by sdm_dataset_new, or from another dataset by sdm_dataset_subset and
 * sdm_dataset_split, and released with sdm_dataset_destroy (NULL-safe, idempotent, clears
 * the caller's pointer). A dataset's arrays belong to it; nothing is shared between datasets.
 */
#ifndef SDM_MODELS_DATASET_H
#define SDM_MODELS_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "sediment/engine.h"

typedef struct sdm_dataset {
    uint64_t n;       /* examples */
    uint32_t d;       /* features per example */
    uint32_t classes; /* labels are 0 .. classes-1 */
    double *x;        /* n x d, row-major */
    int32_t *y;       /* n labels */
    uint64_t *ids;    /* n example ids; a loader's ids are the rows of its file (0-based) */
} sdm_dataset;

/* A dataset holding copies of x (n x d), y (n) and ids (n; NULL: 0 .. n-1). Labels must be
 * in [0, classes) and features finite. On failure returns the status, writes a message
 * naming the field into err (if err_len > 0) and leaves *out NULL. */
SDM_NODISCARD sdm_status sdm_dataset_new(uint64_t n, uint32_t d, uint32_t classes, const double *x,
                                         const int32_t *y, const uint64_t *ids, sdm_dataset **out,
                                         char *err, size_t err_len);

void sdm_dataset_destroy(sdm_dataset **self_p);

/* The examples at positions idx[0 .. m-1] of ds, in that order (a position may repeat; its
 * id then repeats too). m may be 0. Positions past the end are SDM_ERR_BAD_INPUT. */
SDM_NODISCARD sdm_status sdm_dataset_subset(const sdm_dataset *ds, const uint64_t *idx, uint64_t m,
                                            sdm_dataset **out, char *err, size_t err_len);

/* A seeded split: a Fisher-Yates shuffle of the positions 0 .. n-1 (draw j swaps position j
 * with position philox_u64(seed, j, "SPLT") % (j + 1), j = n-1 down to 1; see
 * models/README.md) puts its last n_test positions in *test and the others in *train; each
 * part keeps the original order of ds. Requires n_test <= n. Either output may be NULL
 * when the caller does not want it. Same (ds, n_test, seed): the same split, everywhere. */
SDM_NODISCARD sdm_status sdm_dataset_split(const sdm_dataset *ds, uint64_t n_test, uint64_t seed,
                                           sdm_dataset **train, sdm_dataset **test, char *err,
                                           size_t err_len);

#endif
