/* durable.h - the worker's durable store: SQLite metadata and one .npy file set per batch.
 *
 * Layout under the data dir:
 *   sediment.db                        models and batches (SQLite, WAL, synchronous=FULL)
 *   models/<model dir>/<batch>.features.npy   float32 (n, k), row-major: np.load() it
 *   models/<model dir>/<batch>.ids.npy        uint64 (n,)   (training batches)
 *   models/<model dir>/<batch>.weights.npy    float64 (n,)  (when the batch had weights)
 * where <batch> is the batch number as 12 decimal digits and <model dir> is recorded in the
 * models table (the model's index and a filesystem-safe form of its name).
 *
 * A batch is durable once sdm_durable_append returns 0: its files are written to temporary
 * names, fsynced, renamed and the directory fsynced; then one SQLite transaction records the
 * batch. A crash before the commit leaves files that no row names; opening the store deletes
 * them. A crash after it leaves a complete batch. Nothing half-written is ever trusted.
 *
 * u64 values (seed, input_dim, n, batch, issued_at) are kept in SQLite INTEGER columns as the
 * int64 with the same bits (a seed >= 2^63 shows as negative in the sqlite3 shell). One
 * process at a time: open takes an exclusive flock on <dir>/sediment.lock. Not thread-safe:
 * one thread uses a handle. docs/worker.md ("Durable store") has the details.
 */
#ifndef SDM_SERVICE_DURABLE_H
#define SDM_SERVICE_DURABLE_H

#include <stddef.h>
#include <stdint.h>

#include "sediment/engine.h"
#include "sign.h"

typedef struct sdm_durable sdm_durable_t;

/* Opens (creating when needed) the store in dir: makes dir (0700) and the schema, removes
 * orphan files, and checks that every recorded batch's files exist with the recorded sizes.
 * NULL on failure with err set (a store that fails its checks is not opened; the message
 * names the file, e.g. "models/0-m/000000000003.features.npy: 1024 bytes, expected 4224"). */
sdm_durable_t *sdm_durable_open(const char *dir, char *err, size_t err_len);
void sdm_durable_close(sdm_durable_t **self_p);

/* Records a model definition (idempotent for an identical one; -1 with err for any
 * failure; the caller checks conflicts first). */
int sdm_durable_put_model(sdm_durable_t *self, const char *model, const sdm_projection *proj,
                          char *err, size_t err_len);

/* One accepted batch as it is made durable and as it is read back. */
typedef struct sdm_durable_batch {
    const char *model;
    uint64_t batch;              /* must be the model's next batch number */
    sdm_leaf_fields leaf_fields; /* checkpoint, lr, contributor, shard, n, digests, curvature */
    uint8_t leaf[SDM_HASH_LEN];
    uint64_t issued_at;          /* the receipt's */
    uint32_t k;
    const float *features;       /* n x k */
    const uint64_t *ids;         /* n, NULL for curvature batches */
    const double *weights;       /* n, or NULL */
} sdm_durable_batch;

/* Makes one batch durable (see above). 0, or -1 with err; on failure nothing is recorded.
 * b->batch must equal sdm_durable_batches(model) and k the model's dim; a curvature batch
 * has ids and weights NULL and "" (or NULL) contributor and shard; leaf_fields.model may be
 * NULL or the batch's model. Everything is borrowed for the call. */
int sdm_durable_append(sdm_durable_t *self, const sdm_durable_batch *b, char *err,
                       size_t err_len);

/* Batches recorded for model: its next batch number (0 for an unknown model). */
uint64_t sdm_durable_batches(const sdm_durable_t *self, const char *model);

/* Calls cb once with batch `batch` of model as recorded, without its files (features, ids
 * and weights NULL; pointers valid during the call only): to sign its receipt again. Returns
 * cb's result, or -1 with err when there is no such batch or its row cannot be read. cb must
 * not call other functions on this store. */
typedef int (*sdm_durable_batch_cb)(void *ctx, const sdm_durable_batch *b);
int sdm_durable_batch_meta(sdm_durable_t *self, const char *model, uint64_t batch,
                           sdm_durable_batch_cb cb, void *ctx, char *err, size_t err_len);

/* Calls model_cb for every model in order of registration, then batch_cb for each of its
 * batches in order, with the batch's files loaded (pointers valid during the call only).
 * So the calls go model 0, its batches, model 1, its batches, ... Either callback may be
 * NULL (with batch_cb NULL no file is read). Each file's .npy header is checked strictly
 * against its row. Callbacks must not call other functions on this store.
 * Stops and returns the first non-zero callback result; -1 with err on a read failure. */
typedef int (*sdm_durable_model_cb)(void *ctx, const char *model, const sdm_projection *proj);
int sdm_durable_load(sdm_durable_t *self, sdm_durable_model_cb model_cb,
                     sdm_durable_batch_cb batch_cb, void *ctx, char *err, size_t err_len);

#endif /* SDM_SERVICE_DURABLE_H */
