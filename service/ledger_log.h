/* ledger_log.h - the ledger's durable, verified append-only log (SPEC §5, §6 "Ledger").
 *
 * One SQLite file, <dir>/ledger.db (WAL, synchronous=FULL), holds every entry (the envelope
 * in canonical form), what `history` and `rewards` index from its body, and the last
 * checkpoint the ledger signed. The RFC 9162 tree over the entries lives in memory (every
 * complete subtree hash stored, so any root or proof costs O(log n) hashes); at open it is
 * rebuilt by hashing every stored envelope again, and the open fails when the re-derived
 * tree does not contain the last signed checkpoint: the ledger never signs anything that
 * contradicts what it has handed out.
 *
 * Threads: one writer thread calls sdm_ledger_log_append; any number of other threads may
 * call the readers (each reader call uses its own short-lived SQLite statement on a
 * connection given by sdm_ledger_reader_open, one per thread). Sizes and proofs only ever
 * cover committed entries.
 */
#ifndef SDM_SERVICE_LEDGER_LOG_H
#define SDM_SERVICE_LEDGER_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "body.h"
#include "merkle.h"
#include "sign.h"

typedef struct sdm_ledger_log sdm_ledger_log_t;

/* Opens or creates the log in dir and signs checkpoints with kp under origin. origin may be
 * NULL: the stored one, or for a new log "sediment-ledger-<first 16 hex digits of the key>".
 * A stored log keeps its origin: a different one is refused (its checkpoints would stop
 * chaining). NULL with err set on failure. */
sdm_ledger_log_t *sdm_ledger_log_open(const char *dir, const char *origin, const sdm_keypair *kp,
                                      char *err, size_t err_len);
void sdm_ledger_log_close(sdm_ledger_log_t **self_p);

const char *sdm_ledger_log_origin(const sdm_ledger_log_t *self);
/* Committed entries. */
uint64_t sdm_ledger_log_size(sdm_ledger_log_t *self);
/* The latest signed checkpoint (a C2SP signed note) as a malloc'd string; NULL when out of
 * memory. */
char *sdm_ledger_log_checkpoint(sdm_ledger_log_t *self);

/* One append of a group. */
typedef struct sdm_ledger_item {
    const uint8_t *entry;  /* canonical envelope bytes */
    size_t entry_len;
    const sdm_body *body;  /* read and checked by the caller */
    /* out */
    uint64_t index;
    int duplicate;         /* the same envelope was already in the log (or earlier in this group) */
    uint8_t leaf[SDM_HASH_LEN];
} sdm_ledger_item;

/* Appends a group in one transaction (one fsync for all), then signs a checkpoint of the new
 * size, stored in the same transaction. On success every item has its index, and *size and
 * *checkpoint (malloc'd) describe the log after the group. On failure nothing is appended
 * (the tree is rolled back too) and err says why. Writer thread only. */
int sdm_ledger_log_append(sdm_ledger_log_t *self, sdm_ledger_item *items, size_t n,
                          uint64_t *size, char **checkpoint, char *err, size_t err_len);

/* ---- readers ------------------------------------------------------------------------- */

typedef struct sdm_ledger_reader sdm_ledger_reader_t;

/* A read connection for one thread. NULL with err set on failure. */
sdm_ledger_reader_t *sdm_ledger_reader_open(sdm_ledger_log_t *log, char *err, size_t err_len);
void sdm_ledger_reader_close(sdm_ledger_reader_t **self_p);

/* Results of the readers: 0 found, 1 not found (index or size beyond the log), -1 error
 * (err set). */

/* The envelope at index; *entry is malloc'd. */
int sdm_ledger_entry(sdm_ledger_reader_t *r, uint64_t index, uint8_t **entry, size_t *len,
                     char *err, size_t err_len);

/* Leaf hash and RFC 9162 inclusion path of index in the tree of the first size entries. */
int sdm_ledger_inclusion(sdm_ledger_log_t *log, uint64_t index, uint64_t size,
                         uint8_t leaf[SDM_HASH_LEN], uint8_t path[][SDM_HASH_LEN],
                         size_t *n_path);
/* RFC 9162 consistency path between sizes from <= to. */
int sdm_ledger_consistency(sdm_ledger_log_t *log, uint64_t from, uint64_t to,
                           uint8_t path[][SDM_HASH_LEN], size_t *n_path);

/* One `history` row: an entry touching a contributor. */
typedef struct sdm_ledger_touch {
    uint64_t index;
    uint64_t issued_at;
    sdm_body_type type;
    const char *model;
    const char *shard;
    double score, share; /* proofs: summed over the proof's queries; receipts: NaN (none) */
} sdm_ledger_touch;

/* Calls fn for each entry touching contributor with since <= issued_at < until, ordered by
 * (issued_at, index), at most limit rows. fn returns 0 to go on. */
int sdm_ledger_history(sdm_ledger_reader_t *r, const char *contributor, uint64_t since,
                       uint64_t until, uint64_t limit,
                       int (*fn)(void *ctx, const sdm_ledger_touch *t), void *ctx, char *err,
                       size_t err_len);

/* Calls fn with every (contributor, score, share) credit of the attribution proofs with
 * since <= issued_at < until (and model, when not NULL), in log order. */
int sdm_ledger_credits(sdm_ledger_reader_t *r, const char *model, uint64_t since,
                       uint64_t until,
                       int (*fn)(void *ctx, const char *contributor, double score, double share),
                       void *ctx, char *err, size_t err_len);

#endif /* SDM_SERVICE_LEDGER_LOG_H */
