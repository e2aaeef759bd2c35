/* outbox.h - the worker's durable outbox: receipts and proofs on their way to the ledger.
 *
 * A FIFO in <data dir>/outbox.db (SQLite, WAL, synchronous=FULL). It is its own file, so its
 * commits never wait on the batch store's transactions in sediment.db. With `--ledger`, the
 * worker puts every receipt and proof envelope here before it replies to the client, so an
 * acknowledged envelope reaches the ledger even after a kill -9; a forwarder thread takes
 * the oldest pending rows, sends them, and settles each one as done (the ledger has it) or
 * rejected (refused for good), the answers of one round together in one transaction.
 *
 * A delivered row is deleted, in the same transaction that adds one to a `delivered`
 * counter: the ledger is the permanent record of what was delivered, and keeping a copy of
 * every proof here would grow the file forever. A rejected row is kept with the ledger's code
 * and message, and is never sent again; the operator can read it with the sqlite3 shell.
 *
 * Thread-safe through one mutex of its own (not SQLite's serialized mode): `settle` is many
 * statements in one transaction, and SQLite's own mutex does not keep another thread's
 * statement out of the middle of a transaction on a shared connection. Meant for the
 * worker's ingest and compute threads putting and one forwarder thread peeking and settling.
 * One process at a time: the worker holds <data dir>/sediment.lock while it has this open.
 */
#ifndef SDM_SERVICE_OUTBOX_H
#define SDM_SERVICE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SDM_OUTBOX_WUR __attribute__((warn_unused_result))
#else
#define SDM_OUTBOX_WUR
#endif

typedef struct sdm_outbox sdm_outbox_t;

typedef struct sdm_outbox_counts {
    uint64_t pending;   /* put and neither done nor rejected */
    uint64_t delivered; /* marked done, over the file's whole life */
    uint64_t rejected;  /* refused for good; kept in the file */
} sdm_outbox_counts;

/* One pending row, as peek hands it over. Pointers are valid during the callback only. */
typedef struct sdm_outbox_row {
    uint64_t seq;         /* 1, 2, 3, ... in order of put; never reused */
    const char *kind;     /* "receipt" or "proof" */
    const uint8_t *entry; /* the envelope's msgpack bytes, as put */
    size_t len;
} sdm_outbox_row;

/* Returns 0 to go on, anything else to stop after this row. The callback runs under the
 * outbox's mutex: it must not call the outbox. */
typedef int (*sdm_outbox_row_cb)(void *ctx, const sdm_outbox_row *row);

/* Opens (creating when absent) dir/outbox.db. dir must exist. A file that is not an outbox
 * (another application_id or schema version) is refused. NULL with err set on failure. */
sdm_outbox_t *sdm_outbox_open(const char *dir, char *err, size_t err_len);
void sdm_outbox_close(sdm_outbox_t **self_p);

/* Appends one envelope (kind "receipt" or "proof"; entry a msgpack array of 4, as signed)
 * and returns only when the row is on disk (the commit is fsynced). *seq (may be NULL)
 * gets its sequence number. 0, or -1 with err naming the argument or the disk failure;
 * nothing is recorded then. entry is borrowed. */
SDM_OUTBOX_WUR int sdm_outbox_put(sdm_outbox_t *self, const char *kind, const uint8_t *entry,
                                  size_t len, uint64_t *seq, char *err, size_t err_len);

/* Receipts are tracked per model, so that a batch the worker stored but whose receipt it
 * could not queue (a failed write, or a crash between the two) is found and its receipt queued
 * later (docs/worker.md, "The outbox").
 *
 * sdm_outbox_put_receipt queues the receipt of batch `batch` of model as sdm_outbox_put does,
 * and in the same transaction raises the model's mark to batch + 1 (never lowers it): the
 * batches 0 .. mark-1 have their receipts queued. */
SDM_OUTBOX_WUR int sdm_outbox_put_receipt(sdm_outbox_t *self, const char *model, uint64_t batch,
                                          const uint8_t *entry, size_t len, uint64_t *seq,
                                          char *err, size_t err_len);

/* The same for the receipts of batches first_batch .. first_batch+n-1 (n >= 1), all in one
 * transaction (one fsync), the mark raised to first_batch + n; *seq gets the first row's. */
SDM_OUTBOX_WUR int sdm_outbox_put_receipts(sdm_outbox_t *self, const char *model,
                                           uint64_t first_batch, const uint8_t *const *entries,
                                           const size_t *lens, size_t n, uint64_t *seq,
                                           char *err, size_t err_len);

/* The model's mark into *next: 1; 0 when the model is not tracked (no row); -1 with err. */
SDM_OUTBOX_WUR int sdm_outbox_receipts_next(sdm_outbox_t *self, const char *model,
                                            uint64_t *next, char *err, size_t err_len);

/* Starts tracking model with the mark next, unless it is tracked already. 0, or -1 with err. */
SDM_OUTBOX_WUR int sdm_outbox_track(sdm_outbox_t *self, const char *model, uint64_t next,
                                    char *err, size_t err_len);

/* A rejected row, as sdm_outbox_rejected hands it over (valid during the callback only). */
typedef struct sdm_outbox_rejected_row {
    uint64_t seq;
    const char *kind;    /* "receipt" or "proof" */
    const char *code;    /* the ledger's code, or too_large from the worker */
    const char *message;
    uint64_t rejected_at; /* unix ns */
    size_t len;          /* the envelope's bytes */
} sdm_outbox_rejected_row;

/* Calls cb (0 to go on) for every rejected row, in order of seq. Returns how many cb saw, or
 * -1 with err set. The callback must not call the outbox. */
SDM_OUTBOX_WUR int sdm_outbox_rejected(sdm_outbox_t *self,
                                       int (*cb)(void *ctx, const sdm_outbox_rejected_row *row),
                                       void *ctx, char *err, size_t err_len);

/* Makes the rejected rows with this code (every rejected row for NULL) pending again, in one
 * transaction: the worker sends them, oldest first, at its next start. For an operator who
 * fixed the cause (a worker key added to the ledger's --workers file, a --max-msg raised);
 * only while no worker runs on the data dir. Returns how many, or -1 with err set. */
SDM_OUTBOX_WUR int64_t sdm_outbox_requeue(sdm_outbox_t *self, const char *code, char *err,
                                          size_t err_len);

/* Calls cb for the oldest pending rows with seq > after_seq, in order of seq, at most max
 * of them (max >= 1). Returns how many rows cb saw, or -1 with err set. */
SDM_OUTBOX_WUR int sdm_outbox_peek(sdm_outbox_t *self, uint64_t after_seq, size_t max,
                                   sdm_outbox_row_cb cb, void *ctx, char *err, size_t err_len);

/* One row's outcome, for sdm_outbox_settle. */
typedef struct sdm_outbox_settlement {
    uint64_t seq;
    uint64_t index;      /* delivered: the ledger's index of the entry (kept as the highest seen) */
    const char *code;    /* NULL: delivered; else refused for good with this code, e.g.
                          * "unauthorized" (borrowed; non-empty) */
    const char *message; /* with code: the reason (borrowed; may be NULL) */
    int settled;         /* out: 1 the row was pending and is settled now; 0 it was not
                          * (already delivered or rejected, earlier in the same call, or never
                          * put: a repeated answer counts once) */
} sdm_outbox_settlement;

/* Settles n rows in one transaction, so one fsync for all of them. A delivered row leaves
 * the queue and `delivered` grows by one; a rejected row stays in the file with its code, its
 * message and the time, and is never peeked again. Call it only with the ledger's answers (or
 * a refusal decided for good): once it returns, a row is never sent again. Returns how many
 * rows were settled (their `settled` is 1), or -1 with err set on a bad argument (err names
 * it, e.g. "items[2].code: empty") or a disk failure: then nothing changed, every `settled`
 * is 0, and the rows stay pending. items is borrowed; n may be 0. */
SDM_OUTBOX_WUR int sdm_outbox_settle(sdm_outbox_t *self, sdm_outbox_settlement *items, size_t n,
                                     char *err, size_t err_len);

/* sdm_outbox_settle for one delivered row: 1 when it was pending, 0 when it was not, -1
 * with err set (nothing changed). */
SDM_OUTBOX_WUR int sdm_outbox_done(sdm_outbox_t *self, uint64_t seq, uint64_t index, char *err,
                                   size_t err_len);

/* sdm_outbox_settle for one row refused for good (code non-empty; message may be NULL).
 * Returns 1, 0 or -1 as sdm_outbox_done. */
SDM_OUTBOX_WUR int sdm_outbox_reject(sdm_outbox_t *self, uint64_t seq, const char *code,
                                     const char *message, char *err, size_t err_len);

/* The current counts. Lock-free (the worker's I/O thread reads them for `stats` while
 * another thread may be in the middle of a commit). */
void sdm_outbox_get_counts(const sdm_outbox_t *self, sdm_outbox_counts *out);

#endif /* SDM_SERVICE_OUTBOX_H */
