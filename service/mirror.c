/* mirror.c - a verified copy of a sediment-ledger's log on local disk: files, crash-safe
 * updates, and the rehash that checks them (see mirror.h for the layout). */
#include "mirror.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "errmsg.h"
#include "fileio.h"
#include "sign.h"

#define READ_CHUNK ((size_t)1 << 20)
#define WRITE_CHUNK ((size_t)1 << 20)
#define NOTE_MAX ((size_t)1 << 16)

struct sdm_mirror {
    char *dir;
    char *entries_path;
    int dir_fd; /* holds the lock, and fsyncs the directory */
    int fd;     /* entries */
    int write;
    char *vkey; /* NULL until the first commit */
    char *note;
    sdm_ledger_checkpoint cp;
    int has_cp;
    int scanned;
    /* reading: rbuf[rstart, rend) holds the file's bytes from offset rpos on */
    uint8_t *rbuf;
    size_t rcap, rstart, rend;
    uint64_t rpos;
    uint64_t rindex;
    uint64_t rsize; /* the file's size at the rewind: no length may reach past it */
    /* the committed state (the checkpoint's entries) and what was appended since */
    uint64_t committed_end; /* bytes of `entries` the checkpoint covers */
    sdm_mirror_range committed, range;
    uint8_t *wbuf; /* appended bytes not yet written, which go at offset wpos */
    size_t wlen, wcap;
    uint64_t wpos;
    /* every entry is hashed at every start, so leaf hashes use OpenSSL's SHA-256 with the
     * CPU's SHA extensions (0.55 us a 540-byte entry where libsodium takes 2.7 us); NULL
     * when it cannot be had, and libsodium does it */
    EVP_MD *md;
    EVP_MD_CTX *md_ctx;
};

/* SHA-256(0x00 || env), as sdm_merkle_leaf_hash. */
static void leaf_hash(sdm_mirror_t *m, const uint8_t *env, size_t len, uint8_t out[SDM_HASH_LEN])
{
    static const uint8_t prefix = 0x00;
    if (m->md_ctx && EVP_DigestInit_ex(m->md_ctx, m->md, NULL) == 1 &&
        EVP_DigestUpdate(m->md_ctx, &prefix, 1) == 1 &&
        EVP_DigestUpdate(m->md_ctx, env, len) == 1 && EVP_DigestFinal_ex(m->md_ctx, out, NULL) == 1)
        return;
    sdm_merkle_leaf_hash(env, len, out);
}

/* ---- the compact range ------------------------------------------------------------------ */

void sdm_mirror_range_init(sdm_mirror_range *r)
{
    memset(r, 0, sizeof(*r));
}

void sdm_mirror_range_append(sdm_mirror_range *r, const uint8_t leaf[SDM_HASH_LEN])
{
    /* hash[] holds one perfect subtree per set bit of size, largest first: adding a leaf
     * merges the subtrees of the trailing set bits, as binary addition carries */
    uint8_t h[SDM_HASH_LEN];
    memcpy(h, leaf, SDM_HASH_LEN);
    for (uint64_t s = r->size; s & 1; s >>= 1)
        sdm_merkle_node_hash(r->hash[--r->n], h, h);
    memcpy(r->hash[r->n++], h, SDM_HASH_LEN);
    r->size++;
}

void sdm_mirror_range_root(const sdm_mirror_range *r, uint8_t out[SDM_HASH_LEN])
{
    if (r->n == 0) {
        crypto_hash_sha256(out, NULL, 0);
        return;
    }
    /* MTH splits at the largest power of two below n, which is the largest subtree here, so
     * the root folds the subtrees from the smallest up */
    uint8_t h[SDM_HASH_LEN];
    memcpy(h, r->hash[r->n - 1], SDM_HASH_LEN);
    for (unsigned i = r->n - 1; i-- > 0;)
        sdm_merkle_node_hash(r->hash[i], h, h);
    memcpy(out, h, SDM_HASH_LEN);
}

/* ---- files ------------------------------------------------------------------------------ */

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Reads dir/name whole (at most NOTE_MAX bytes) as a string into *out (malloc'd). 0; 1 when
 * it does not exist; -1 with err set. */
static int read_small(const sdm_mirror_t *m, const char *name, char **out, size_t *len, char *err,
                      size_t err_len)
{
    *out = NULL;
    int fd = openat(m->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        sdm_errf(err, err_len, "%s/%s: %s", m->dir, name, strerror(errno));
        return -1;
    }
    char *b = malloc(NOTE_MAX + 1);
    size_t got = 0;
    int rc = b ? sdm_read_all(fd, b, NOTE_MAX + 1, &got) : -1;
    int saved = errno;
    close(fd);
    if (!b || rc != 0) {
        sdm_errf(err, err_len, "%s/%s: %s", m->dir, name, b ? strerror(saved) : "out of memory");
        free(b);
        return -1;
    }
    if (got > NOTE_MAX) {
        sdm_errf(err, err_len, "%s/%s: more than %zu bytes", m->dir, name, NOTE_MAX);
        free(b);
        return -1;
    }
    b[got] = 0;
    *out = b;
    *len = got;
    return 0;
}

/* Replaces dir/name with text: a temp file, fsync, rename, fsync of the directory, so that
 * after a crash the file is the old text or the new, never a mix. 0; -1 with err set and the
 * old file in place; -2 with err set when only the directory's fsync failed, so the new file
 * is in place but may not survive a power cut. */
static int write_atomic(const sdm_mirror_t *m, const char *name, const char *text, char *err,
                        size_t err_len)
{
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    int fd = openat(m->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        sdm_errf(err, err_len, "%s/%s: %s", m->dir, tmp, strerror(errno));
        return -1;
    }
    if (sdm_write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0) {
        sdm_errf(err, err_len, "%s/%s: write failed: %s", m->dir, tmp, strerror(errno));
        close(fd);
        unlinkat(m->dir_fd, tmp, 0);
        return -1;
    }
    if (close(fd) != 0 || renameat(m->dir_fd, tmp, m->dir_fd, name) != 0) {
        sdm_errf(err, err_len, "%s/%s: %s", m->dir, name, strerror(errno));
        unlinkat(m->dir_fd, tmp, 0);
        return -1;
    }
    if (fsync(m->dir_fd) != 0) {
        sdm_errf(err, err_len, "%s: fsync of the directory failed: %s", m->dir, strerror(errno));
        return -2;
    }
    return 0;
}

/* Reads and verifies `vkey` and `checkpoint`. */
static sdm_mirror_status load_state(sdm_mirror_t *m, char *err, size_t err_len)
{
    char *note = NULL, *key = NULL;
    size_t note_len = 0, key_len = 0;
    int r = read_small(m, "checkpoint", &note, &note_len, err, err_len);
    if (r < 0)
        return SDM_MIRROR_IO;
    if (r == 1)
        return SDM_MIRROR_OK; /* no run completed; a `vkey` alone is a first run's, cut short */
    m->note = note;
    if ((r = read_small(m, "vkey", &key, &key_len, err, err_len)) < 0)
        return SDM_MIRROR_IO;
    if (r == 1) {
        sdm_errf(err, err_len, "%s/checkpoint is there but %s/vkey, its key, is missing", m->dir,
                 m->dir);
        return SDM_MIRROR_DAMAGED;
    }
    int has_nul = memchr(key, 0, key_len) != NULL;
    char *k = sdm_trim(key);
    if (has_nul || strchr(k, '\n') || !*k) {
        free(key);
        sdm_errf(err, err_len, "%s/vkey: expected one line, the verifier key", m->dir);
        return SDM_MIRROR_DAMAGED;
    }
    m->vkey = strdup(k);
    free(key);
    if (!m->vkey) {
        sdm_errf(err, err_len, "out of memory");
        return SDM_MIRROR_NOMEM;
    }
    char e[512];
    sdm_client_status st =
        sdm_client_checkpoint_verify(m->note, note_len, m->vkey, &m->cp, e, sizeof(e));
    if (st == SDM_CLIENT_NOMEM) {
        sdm_errf(err, err_len, "out of memory");
        return SDM_MIRROR_NOMEM;
    }
    if (st == SDM_CLIENT_BAD_ARGUMENT) {
        sdm_errf(err, err_len, "%s/vkey: %s", m->dir, e);
        return SDM_MIRROR_DAMAGED;
    }
    if (st != SDM_CLIENT_OK) {
        sdm_errf(err, err_len, "%s/checkpoint does not verify under %s/vkey: %s", m->dir, m->dir,
                 e);
        return SDM_MIRROR_DAMAGED;
    }
    m->has_cp = 1;
    return SDM_MIRROR_OK;
}

sdm_mirror_status sdm_mirror_open(const char *dir, int write, sdm_mirror_t **out, char *err,
                                  size_t err_len)
{
    *out = NULL;
    sdm_mirror_t *m = calloc(1, sizeof(*m));
    if (!m || !(m->dir = strdup(dir)) || !(m->entries_path = join(dir, "entries"))) {
        sdm_mirror_destroy(&m);
        sdm_errf(err, err_len, "out of memory");
        return SDM_MIRROR_NOMEM;
    }
    m->dir_fd = m->fd = -1;
    m->write = write;
    if ((m->md = EVP_MD_fetch(NULL, "SHA256", NULL)) && !(m->md_ctx = EVP_MD_CTX_new())) {
        EVP_MD_free(m->md);
        m->md = NULL;
    }
    int made = 0;
    sdm_mirror_status st = SDM_MIRROR_IO;
    if (write && sdm_make_dir(dir, &made, err, err_len) != 0)
        goto fail;
    if ((m->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        sdm_errf(err, err_len, "%s: %s", dir,
                 errno == ENOTDIR ? "not a directory" : strerror(errno));
        goto fail;
    }
    /* the lock is taken before anything is read, so a run never sees another's half-made
     * state */
    if (flock(m->dir_fd, (write ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            sdm_errf(err, err_len, "%s: another `sediment mirror` is using it", dir);
            st = SDM_MIRROR_BUSY;
        } else {
            sdm_errf(err, err_len, "%s: cannot lock: %s", dir, strerror(errno));
        }
        goto fail;
    }
    if ((st = load_state(m, err, err_len)) != SDM_MIRROR_OK)
        goto fail;
    st = SDM_MIRROR_IO;
    if (!write && !m->has_cp) {
        sdm_errf(err, err_len,
                 "%s holds no mirror: no checkpoint, so no `sediment mirror` run has completed "
                 "there",
                 dir);
        goto fail;
    }
    int flags = (write ? O_RDWR : O_RDONLY) | O_CLOEXEC | (write && !m->has_cp ? O_CREAT : 0);
    if ((m->fd = openat(m->dir_fd, "entries", flags, 0600)) < 0) {
        int missing = errno == ENOENT;
        sdm_errf(err, err_len, "%s: %s%s", m->entries_path, strerror(errno),
                 missing ? " (the checkpoint says the mirror holds entries)" : "");
        st = missing ? SDM_MIRROR_DAMAGED : SDM_MIRROR_IO;
        goto fail;
    }
    if (made && sdm_fsync_parent(dir) != 0) {
        sdm_errf(err, err_len, "%s: fsync of its parent failed: %s", dir, strerror(errno));
        goto fail;
    }
    *out = m;
    return SDM_MIRROR_OK;
fail:
    sdm_mirror_destroy(&m);
    return st;
}

void sdm_mirror_destroy(sdm_mirror_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_mirror_t *m = *self_p;
    if (m->fd >= 0)
        close(m->fd);
    if (m->dir_fd >= 0)
        close(m->dir_fd); /* releases the lock */
    free(m->dir);
    free(m->entries_path);
    free(m->vkey);
    free(m->note);
    free(m->rbuf);
    free(m->wbuf);
    EVP_MD_CTX_free(m->md_ctx);
    EVP_MD_free(m->md);
    free(m);
    *self_p = NULL;
}

const sdm_ledger_checkpoint *sdm_mirror_checkpoint(const sdm_mirror_t *self)
{
    return self->has_cp ? &self->cp : NULL;
}

const char *sdm_mirror_note(const sdm_mirror_t *self)
{
    return self->has_cp ? self->note : NULL;
}

const char *sdm_mirror_vkey(const sdm_mirror_t *self)
{
    return self->has_cp ? self->vkey : NULL;
}

/* ---- reading ---------------------------------------------------------------------------- */

/* Makes rbuf hold at least need bytes from rstart. 0; 1 when the file ends first; -1 with
 * err set. */
static int fill(sdm_mirror_t *m, size_t need, char *err, size_t err_len)
{
    if (m->rend - m->rstart >= need)
        return 0;
    if (m->rstart)
        memmove(m->rbuf, m->rbuf + m->rstart, m->rend - m->rstart);
    m->rend -= m->rstart;
    m->rpos += m->rstart;
    m->rstart = 0;
    if (need > m->rcap || !m->rbuf) {
        size_t cap = need > READ_CHUNK ? need : READ_CHUNK;
        uint8_t *b = realloc(m->rbuf, cap);
        if (!b) {
            sdm_errf(err, err_len, "out of memory for an entry of %zu bytes", need);
            return -1;
        }
        m->rbuf = b;
        m->rcap = cap;
    }
    while (m->rend < need) {
        ssize_t r = pread(m->fd, m->rbuf + m->rend, m->rcap - m->rend, (off_t)(m->rpos + m->rend));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            sdm_errf(err, err_len, "%s: read failed: %s", m->entries_path, strerror(errno));
            return -1;
        }
        if (r == 0)
            return 1;
        m->rend += (size_t)r;
    }
    return 0;
}

sdm_mirror_status sdm_mirror_rewind(sdm_mirror_t *self, char *err, size_t err_len)
{
    struct stat sb;
    if (fstat(self->fd, &sb) != 0) {
        sdm_errf(err, err_len, "%s: %s", self->entries_path, strerror(errno));
        return SDM_MIRROR_IO;
    }
    self->rsize = (uint64_t)sb.st_size;
    self->rstart = self->rend = 0;
    self->rpos = 0;
    self->rindex = 0;
    return SDM_MIRROR_OK;
}

sdm_mirror_status sdm_mirror_next(sdm_mirror_t *self, uint64_t *index, const uint8_t **env,
                                  size_t *len, char *err, size_t err_len)
{
    uint64_t want = self->has_cp ? self->cp.size : 0;
    if (self->rindex >= want)
        return SDM_MIRROR_STOPPED;
    int r = fill(self, 4, err, err_len);
    if (r == 0) {
        const uint8_t *p = self->rbuf + self->rstart;
        uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (n == 0 || n > SDM_MIRROR_ENTRY_MAX) {
            sdm_errf(err, err_len,
                     "%s: entry %" PRIu64 " at byte %" PRIu64 " has length %" PRIu32
                     ", which no envelope has: the file was altered or damaged",
                     self->entries_path, self->rindex, self->rpos + self->rstart, n);
            return SDM_MIRROR_DAMAGED;
        }
        /* a length past the end is a cut-short file, found before any memory is spent on it */
        if (self->rpos + self->rstart + 4 + n > self->rsize)
            r = 1;
        else if ((r = fill(self, 4 + (size_t)n, err, err_len)) == 0) {
            *env = self->rbuf + self->rstart + 4;
            *len = n;
            *index = self->rindex++;
            self->rstart += 4 + (size_t)n;
            return SDM_MIRROR_OK;
        }
    }
    if (r < 0)
        return errno == ENOMEM ? SDM_MIRROR_NOMEM : SDM_MIRROR_IO;
    sdm_errf(err, err_len,
             "%s holds only %" PRIu64 " whole entries, but the checkpoint covers %" PRIu64
             ": the file was cut short or damaged",
             self->entries_path, self->rindex, want);
    return SDM_MIRROR_DAMAGED;
}

sdm_mirror_status sdm_mirror_scan(sdm_mirror_t *self, sdm_client_entry_fn fn, void *ctx,
                                  uint64_t *tail, char *err, size_t err_len)
{
    *tail = 0;
    sdm_mirror_status st = sdm_mirror_rewind(self, err, err_len);
    if (st != SDM_MIRROR_OK)
        return st;
    sdm_mirror_range_init(&self->range);
    uint64_t index;
    const uint8_t *env;
    size_t len;
    while ((st = sdm_mirror_next(self, &index, &env, &len, err, err_len)) == SDM_MIRROR_OK) {
        uint8_t leaf[SDM_HASH_LEN];
        leaf_hash(self, env, len, leaf);
        sdm_mirror_range_append(&self->range, leaf);
        if (fn && fn(ctx, index, env, len) != 0) {
            sdm_errf(err, err_len, "stopped at entry %" PRIu64, index);
            return SDM_MIRROR_STOPPED;
        }
    }
    if (st != SDM_MIRROR_STOPPED)
        return st;
    uint64_t end = self->rpos + self->rstart;
    struct stat sb;
    if (fstat(self->fd, &sb) != 0) {
        sdm_errf(err, err_len, "%s: %s", self->entries_path, strerror(errno));
        return SDM_MIRROR_IO;
    }
    uint8_t root[SDM_HASH_LEN];
    sdm_mirror_range_root(&self->range, root);
    if (self->has_cp && memcmp(root, self->cp.root, SDM_HASH_LEN) != 0) {
        char got[17], want[17];
        sdm_hex(root, 8, got);
        sdm_hex(self->cp.root, 8, want);
        sdm_errf(err, err_len,
                 "the %" PRIu64 " entries in %s hash to the root %s..., not the checkpoint's "
                 "%s...: the file was altered or damaged",
                 self->range.size, self->entries_path, got, want);
        return SDM_MIRROR_DAMAGED;
    }
    *tail = (uint64_t)sb.st_size > end ? (uint64_t)sb.st_size - end : 0;
    if (self->write && *tail) {
        /* an append the checkpoint never covered: a run that stopped before its commit */
        if (ftruncate(self->fd, (off_t)end) != 0 || fsync(self->fd) != 0) {
            sdm_errf(err, err_len, "%s: cutting off %" PRIu64 " bytes of an interrupted run: %s",
                     self->entries_path, *tail, strerror(errno));
            return SDM_MIRROR_IO;
        }
    }
    self->committed = self->range;
    self->committed_end = self->wpos = end;
    self->wlen = 0;
    self->scanned = 1;
    return SDM_MIRROR_OK;
}

uint64_t sdm_mirror_size(const sdm_mirror_t *self)
{
    return self->range.size;
}

void sdm_mirror_root(const sdm_mirror_t *self, uint8_t out[SDM_HASH_LEN])
{
    sdm_mirror_range_root(&self->range, out);
}

/* ---- writing ---------------------------------------------------------------------------- */

static sdm_mirror_status flush(sdm_mirror_t *m, char *err, size_t err_len)
{
    if (m->wlen == 0)
        return SDM_MIRROR_OK;
    if (lseek(m->fd, (off_t)m->wpos, SEEK_SET) < 0 || sdm_write_all(m->fd, m->wbuf, m->wlen) != 0) {
        sdm_errf(err, err_len, "%s: write failed: %s", m->entries_path, strerror(errno));
        return SDM_MIRROR_IO;
    }
    m->wpos += m->wlen;
    m->wlen = 0;
    return SDM_MIRROR_OK;
}

sdm_mirror_status sdm_mirror_append(sdm_mirror_t *self, const uint8_t *env, size_t len, char *err,
                                    size_t err_len)
{
    if (!self->write || !self->scanned) {
        sdm_errf(err, err_len, "%s: not open for appending (or not scanned)", self->dir);
        return SDM_MIRROR_IO;
    }
    if (len == 0 || len > SDM_MIRROR_ENTRY_MAX) {
        sdm_errf(err, err_len, "entry %" PRIu64 ": %zu bytes, which no envelope has",
                 self->range.size, len);
        return SDM_MIRROR_DAMAGED;
    }
    size_t need = 4 + len;
    if (self->wlen + need > self->wcap) {
        sdm_mirror_status st = flush(self, err, err_len);
        if (st != SDM_MIRROR_OK)
            return st;
        if (need > self->wcap) {
            size_t cap = need > WRITE_CHUNK ? need : WRITE_CHUNK;
            uint8_t *b = realloc(self->wbuf, cap);
            if (!b) {
                sdm_errf(err, err_len, "out of memory");
                return SDM_MIRROR_NOMEM;
            }
            self->wbuf = b;
            self->wcap = cap;
        }
    }
    uint8_t *p = self->wbuf + self->wlen;
    p[0] = (uint8_t)(len >> 24);
    p[1] = (uint8_t)(len >> 16);
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    memcpy(p + 4, env, len);
    self->wlen += need;
    uint8_t leaf[SDM_HASH_LEN];
    leaf_hash(self, env, len, leaf);
    sdm_mirror_range_append(&self->range, leaf);
    return SDM_MIRROR_OK;
}

sdm_mirror_status sdm_mirror_sync(sdm_mirror_t *self, char *err, size_t err_len)
{
    sdm_mirror_status st = flush(self, err, err_len);
    if (st != SDM_MIRROR_OK)
        return st;
    if (fsync(self->fd) != 0) {
        sdm_errf(err, err_len, "%s: fsync failed: %s", self->entries_path, strerror(errno));
        return SDM_MIRROR_IO;
    }
    return SDM_MIRROR_OK;
}

sdm_mirror_status sdm_mirror_commit(sdm_mirror_t *self, const char *vkey, const char *note,
                                    char *err, size_t err_len)
{
    if (!self->write || !self->scanned) {
        sdm_errf(err, err_len, "%s: not open for writing (or not scanned)", self->dir);
        return SDM_MIRROR_IO;
    }
    if (self->vkey && strcmp(self->vkey, vkey) != 0) {
        sdm_errf(err, err_len, "%s mirrors the log signed by %s, not %s", self->dir, self->vkey,
                 vkey);
        return SDM_MIRROR_DAMAGED;
    }
    /* the checkpoint file must only ever name entries that are in `entries` */
    sdm_ledger_checkpoint cp;
    char e[512];
    uint8_t root[SDM_HASH_LEN];
    sdm_mirror_root(self, root);
    sdm_client_status cs =
        sdm_client_checkpoint_verify(note, strlen(note), vkey, &cp, e, sizeof(e));
    if (cs != SDM_CLIENT_OK || cp.size != self->range.size ||
        memcmp(cp.root, root, SDM_HASH_LEN) != 0) {
        sdm_errf(err, err_len, "the checkpoint to store %s",
                 cs != SDM_CLIENT_OK ? "does not verify"
                                     : "does not sign the entries the mirror holds");
        return SDM_MIRROR_DAMAGED;
    }
    char *note_copy = strdup(note), *key_copy = self->vkey ? NULL : strdup(vkey);
    if (!note_copy || (!self->vkey && !key_copy)) {
        free(note_copy);
        free(key_copy);
        sdm_errf(err, err_len, "out of memory");
        return SDM_MIRROR_NOMEM;
    }
    sdm_mirror_status st = sdm_mirror_sync(self, err, err_len);
    if (st == SDM_MIRROR_OK && key_copy) {
        size_t n = strlen(vkey) + 2;
        char *line = malloc(n);
        if (!line) {
            sdm_errf(err, err_len, "out of memory");
            st = SDM_MIRROR_NOMEM;
        } else {
            snprintf(line, n, "%s\n", vkey);
            if (write_atomic(self, "vkey", line, err, err_len) != 0)
                st = SDM_MIRROR_IO;
            free(line);
        }
    }
    int w = st == SDM_MIRROR_OK ? write_atomic(self, "checkpoint", note, err, err_len) : -1;
    if (w == -1) {
        free(note_copy);
        free(key_copy);
        return st == SDM_MIRROR_OK ? SDM_MIRROR_IO : st;
    }
    /* from the rename on, the checkpoint names the new entries: they are committed, even
     * when the directory's fsync failed (reported below), and a rollback must keep them */
    free(self->note);
    self->note = note_copy;
    if (key_copy)
        self->vkey = key_copy;
    self->cp = cp;
    self->has_cp = 1;
    self->committed = self->range;
    self->committed_end = self->wpos;
    return w == 0 ? SDM_MIRROR_OK : SDM_MIRROR_IO;
}

sdm_mirror_status sdm_mirror_rollback(sdm_mirror_t *self, char *err, size_t err_len)
{
    if (!self->write || !self->scanned)
        return SDM_MIRROR_OK;
    self->wlen = 0;
    self->range = self->committed;
    self->wpos = self->committed_end;
    if (ftruncate(self->fd, (off_t)self->committed_end) != 0 || fsync(self->fd) != 0) {
        sdm_errf(err, err_len, "%s: cutting it back to %" PRIu64 " bytes failed: %s",
                 self->entries_path, self->committed_end, strerror(errno));
        return SDM_MIRROR_IO;
    }
    return SDM_MIRROR_OK;
}

/* ---- restoring -------------------------------------------------------------------------- */

typedef struct send_ctx {
    sdm_mirror_t *m;
    uint64_t from, n;
    sdm_mirror_progress_fn progress;
    void *progress_ctx;
    sdm_mirror_status st; /* reading the mirror */
    int misplaced;        /* an append landed elsewhere */
    char *err;
    size_t err_len;
} send_ctx;

static int send_next(void *ctx, uint64_t k, const uint8_t **env, size_t *env_len)
{
    send_ctx *s = ctx;
    uint64_t index;
    s->st = sdm_mirror_next(s->m, &index, env, env_len, s->err, s->err_len);
    return s->st != SDM_MIRROR_OK;
}

static int send_replied(void *ctx, uint64_t k, const sdm_reply_t *reply)
{
    send_ctx *s = ctx;
    uint64_t index = UINT64_MAX;
    int dup = 0;
    (void)sdm_reply_u64(reply, "index", &index);
    (void)sdm_reply_bool(reply, "duplicate", &dup);
    if (index != s->from + k || dup) {
        sdm_errf(s->err, s->err_len,
                 "entry %" PRIu64 " of the mirror went in at index %" PRIu64 "%s: the ledger's "
                 "log no longer follows the mirror (did something else append to it?)",
                 s->from + k, index, dup ? " as a duplicate" : "");
        s->misplaced = 1;
        return 1;
    }
    if (s->progress)
        s->progress(s->progress_ctx, k + 1, s->n);
    return 0;
}

sdm_mirror_status sdm_mirror_send(sdm_mirror_t *self, sdm_client_t *c, uint64_t from,
                                  unsigned window, sdm_mirror_progress_fn progress, void *ctx,
                                  sdm_client_status *client_status, char *err, size_t err_len)
{
    *client_status = SDM_CLIENT_OK;
    uint64_t size = self->has_cp ? self->cp.size : 0;
    if (!self->scanned || from > size) {
        sdm_errf(err, err_len, "from: %" PRIu64 " is beyond the mirror's %" PRIu64 " entries", from,
                 size);
        return SDM_MIRROR_DAMAGED;
    }
    /* read past what the ledger holds, then hand the rest out one append at a time */
    sdm_mirror_status st = sdm_mirror_rewind(self, err, err_len);
    for (uint64_t i = 0; st == SDM_MIRROR_OK && i < from; i++) {
        uint64_t index;
        const uint8_t *env;
        size_t len;
        st = sdm_mirror_next(self, &index, &env, &len, err, err_len);
    }
    if (st != SDM_MIRROR_OK)
        return st;
    send_ctx s = {self, from, size - from, progress, ctx, SDM_MIRROR_OK, 0, err, err_len};
    sdm_client_status cs =
        sdm_client_ledger_appends(c, size - from, window, send_next, send_replied, &s);
    if (s.st != SDM_MIRROR_OK)
        return s.st;
    if (s.misplaced)
        return SDM_MIRROR_LEDGER;
    if (cs != SDM_CLIENT_OK) {
        *client_status = cs;
        sdm_errf(err, err_len, "%s", sdm_client_last_error(c));
        return SDM_MIRROR_LEDGER;
    }
    return SDM_MIRROR_OK;
}
