/* mirror.h - a verified copy of a sediment-ledger's log on local disk (`sediment mirror`):
 * the directory's files, their crash-safe updates, and the check that they hold the log the
 * stored checkpoint signs.
 *
 * A mirror directory holds:
 *   entries     every envelope of the log in index order, each as a 4-byte big-endian length
 *               and then its exact bytes; only ever appended to (and cut back after a failure)
 *   checkpoint  the last signed checkpoint note a run verified the entries against; replaced
 *               atomically (temp file, fsync, rename, fsync of the directory): it is the
 *               commit point, and entries past its size are an interrupted run's
 *   vkey        the note verifier key the checkpoint is signed with, fixed by the first run
 *
 * There is no other state: every run rereads and rehashes every entry into a compact
 * range (the O(log n) perfect subtrees of RFC 9162), so a damaged or altered `entries` is
 * found before anything is added to it. A lock (flock) on the directory keeps two runs apart.
 */
#ifndef SDM_SERVICE_MIRROR_H
#define SDM_SERVICE_MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include "merkle.h"
#include "sediment/client.h"

/* Entries longer than this are refused as damage: the ledger caps a message at 64 MiB by
 * default, and no envelope it took comes near. */
#define SDM_MIRROR_ENTRY_MAX ((uint32_t)1 << 30)

typedef enum sdm_mirror_status {
    SDM_MIRROR_OK = 0,
    SDM_MIRROR_IO,      /* a file or the directory could not be made, read or written */
    SDM_MIRROR_DAMAGED, /* the files are not a mirror that verifies (err says how) */
    SDM_MIRROR_BUSY,    /* another process holds the directory's lock */
    SDM_MIRROR_STOPPED, /* a scan's callback asked to stop */
    SDM_MIRROR_LEDGER,  /* sdm_mirror_send: the ledger failed or put an entry elsewhere */
    SDM_MIRROR_NOMEM,
} sdm_mirror_status;

/* The compact range of a log: the roots of its perfect subtrees, largest first, from which
 * the RFC 9162 root of the whole follows. */
typedef struct sdm_mirror_range {
    uint64_t size;
    unsigned n;
    uint8_t hash[64][SDM_HASH_LEN];
} sdm_mirror_range;

void sdm_mirror_range_init(sdm_mirror_range *r);
/* Adds a leaf hash (SHA-256(0x00 || entry)) at index r->size. */
void sdm_mirror_range_append(sdm_mirror_range *r, const uint8_t leaf[SDM_HASH_LEN]);
/* MTH of the r->size leaves (SHA-256() when there are none). */
void sdm_mirror_range_root(const sdm_mirror_range *r, uint8_t out[SDM_HASH_LEN]);

typedef struct sdm_mirror sdm_mirror_t;

/* Opens the mirror in dir. With write, dir is made (0700) when absent, `entries` is made
 * when there is no checkpoint yet, and the lock is exclusive; without, dir must hold a
 * mirror and the lock is shared. Reads `vkey` and `checkpoint` and verifies the checkpoint
 * with the key (DAMAGED when either is unreadable as such or the signature does not hold;
 * a checkpoint without a key is DAMAGED too). `entries` is not read yet: sdm_mirror_scan.
 * *out is the caller's (sdm_mirror_destroy), NULL on failure. */
sdm_mirror_status sdm_mirror_open(const char *dir, int write, sdm_mirror_t **out, char *err,
                                  size_t err_len) __attribute__((warn_unused_result));
/* Closes the files and releases the lock; entries appended and not committed stay in
 * `entries` past the checkpoint's size, where the next run cuts them off. */
void sdm_mirror_destroy(sdm_mirror_t **self_p);

/* The stored checkpoint (verified), its note and its verifier key; NULL when no run has
 * completed. Borrowed from the mirror. */
const sdm_ledger_checkpoint *sdm_mirror_checkpoint(const sdm_mirror_t *self);
const char *sdm_mirror_note(const sdm_mirror_t *self);
const char *sdm_mirror_vkey(const sdm_mirror_t *self);

/* Reads the entries the checkpoint covers in order, calls fn (may be NULL) with each (the
 * bytes borrowed for the call; non-zero stops the scan: SDM_MIRROR_STOPPED) and hashes
 * them. DAMAGED when `entries` holds fewer, has a malformed length, or the entries do not
 * hash to the checkpoint's root (fn has then seen those read). *tail: the bytes after them,
 * which only an interrupted run leaves; with write they are cut off (and the cut made
 * durable) on success. Needed once before sdm_mirror_append or sdm_mirror_next. */
sdm_mirror_status sdm_mirror_scan(sdm_mirror_t *self, sdm_client_entry_fn fn, void *ctx,
                                  uint64_t *tail, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Reads the checkpoint's entries (again, after a scan) from the first, one a call: *env
 * (borrowed until the next call), *len, and *index its index; SDM_MIRROR_STOPPED after the
 * last one, DAMAGED as for a scan. */
sdm_mirror_status sdm_mirror_rewind(sdm_mirror_t *self, char *err, size_t err_len)
    __attribute__((warn_unused_result));
sdm_mirror_status sdm_mirror_next(sdm_mirror_t *self, uint64_t *index, const uint8_t **env,
                                  size_t *len, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* The number of entries and the root over them: the checkpoint's after a scan, then
 * including those appended since. */
uint64_t sdm_mirror_size(const sdm_mirror_t *self);
void sdm_mirror_root(const sdm_mirror_t *self, uint8_t out[SDM_HASH_LEN]);

/* Appends an entry after the others (buffered: sdm_mirror_sync writes it out). Needs write
 * and a scan. */
sdm_mirror_status sdm_mirror_append(sdm_mirror_t *self, const uint8_t *env, size_t len, char *err,
                                    size_t err_len) __attribute__((warn_unused_result));
/* Writes out the appended entries and fsyncs `entries`. */
sdm_mirror_status sdm_mirror_sync(sdm_mirror_t *self, char *err, size_t err_len)
    __attribute__((warn_unused_result));
/* Makes what was appended part of the mirror: syncs, then stores vkey (first commit only;
 * later ones must pass the stored key) and the note as `checkpoint`, each atomically. The
 * note must verify under vkey and sign exactly sdm_mirror_size entries and sdm_mirror_root,
 * else DAMAGED and nothing is stored. */
sdm_mirror_status sdm_mirror_commit(sdm_mirror_t *self, const char *vkey, const char *note,
                                    char *err, size_t err_len) __attribute__((warn_unused_result));
/* Drops what was appended since the last commit (or the scan): `entries` is cut back to
 * its committed length and fsynced. */
sdm_mirror_status sdm_mirror_rollback(sdm_mirror_t *self, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Called after each append of sdm_mirror_send: done of total appends answered. */
typedef void (*sdm_mirror_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Restores a ledger from the mirror: appends entries from..size-1 (after a scan, from at
 * most the checkpoint's size) in order to the ledger c talks to, with up to window in
 * flight (sdm_client_ledger_appends), each of which must land at its own index as a new
 * entry. progress may be NULL. SDM_MIRROR_OK; SDM_MIRROR_LEDGER when the ledger failed
 * (*client_status says how, sdm_client_last_error(c) the message) or put an entry
 * elsewhere (*client_status SDM_CLIENT_OK; err says where); or a failure reading the
 * mirror. Appends sent after a failed one may still have been applied. */
sdm_mirror_status sdm_mirror_send(sdm_mirror_t *self, sdm_client_t *c, uint64_t from,
                                  unsigned window, sdm_mirror_progress_fn progress, void *ctx,
                                  sdm_client_status *client_status, char *err, size_t err_len)
    __attribute__((warn_unused_result));

#endif /* SDM_SERVICE_MIRROR_H */
