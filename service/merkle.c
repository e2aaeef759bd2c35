/* merkle.c - RFC 9162 Merkle tree hashes, inclusion and consistency proofs (SPEC §5).
 *
 * Level 0 holds every leaf hash; level L >= 1 holds the hash of every complete subtree of
 * 2^L leaves that starts at a multiple of 2^L, so level L has size >> L entries. Every
 * range the RFC's recursion visits splits into a complete aligned left part (one stored
 * hash) and a right part that is again such a range, so any prefix root or proof costs
 * O(log n) hashes.
 */
#include "merkle.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define MAX_LEVELS 64
#define MAX_PATH 64

typedef struct level {
    uint8_t (*h)[SDM_HASH_LEN];
    uint64_t n;
    uint64_t cap;
} level;

struct sdm_merkle {
    uint64_t size;
    level levels[MAX_LEVELS];
};

void sdm_merkle_leaf_hash(const uint8_t *data, size_t len, uint8_t out[SDM_HASH_LEN])
{
    static const uint8_t prefix = 0x00;
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, &prefix, 1);
    if (len > 0)
        crypto_hash_sha256_update(&st, data, len);
    crypto_hash_sha256_final(&st, out);
}

void sdm_merkle_node_hash(const uint8_t left[SDM_HASH_LEN], const uint8_t right[SDM_HASH_LEN],
                          uint8_t out[SDM_HASH_LEN])
{
    static const uint8_t prefix = 0x01;
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, &prefix, 1);
    crypto_hash_sha256_update(&st, left, SDM_HASH_LEN);
    crypto_hash_sha256_update(&st, right, SDM_HASH_LEN);
    crypto_hash_sha256_final(&st, out);
}

sdm_merkle_t *sdm_merkle_new(void)
{
    return calloc(1, sizeof(sdm_merkle_t));
}

void sdm_merkle_destroy(sdm_merkle_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    for (int l = 0; l < MAX_LEVELS; l++)
        free((*self_p)->levels[l].h);
    free(*self_p);
    *self_p = NULL;
}

uint64_t sdm_merkle_size(const sdm_merkle_t *self)
{
    return self->size;
}

/* Room for one more hash at a level; -1 (level unchanged) when out of memory. */
static int level_reserve(level *lv)
{
    if (lv->n < lv->cap)
        return 0;
    uint64_t cap = lv->cap ? lv->cap * 2 : 16;
    if (cap > SIZE_MAX / SDM_HASH_LEN)
        return -1;
    void *h = realloc(lv->h, (size_t)cap * SDM_HASH_LEN);
    if (!h)
        return -1;
    lv->h = h;
    lv->cap = cap;
    return 0;
}

int sdm_merkle_append(sdm_merkle_t *self, const uint8_t leaf_hash[SDM_HASH_LEN])
{
    if (self->size == UINT64_MAX)
        return -1;
    uint64_t size = self->size + 1;
    /* leaf n-1 completes one subtree per trailing zero bit of the new size */
    int top = __builtin_ctzll(size);
    /* reserve every level first so that a failed allocation leaves the tree as it was */
    for (int l = 0; l <= top; l++)
        if (level_reserve(&self->levels[l]) != 0)
            return -1;
    level *lv = &self->levels[0];
    memcpy(lv->h[lv->n++], leaf_hash, SDM_HASH_LEN);
    for (int l = 1; l <= top; l++) {
        level *below = &self->levels[l - 1];
        level *up = &self->levels[l];
        sdm_merkle_node_hash(below->h[below->n - 2], below->h[below->n - 1], up->h[up->n]);
        up->n++;
    }
    self->size = size;
    return 0;
}

int sdm_merkle_truncate(sdm_merkle_t *self, uint64_t size)
{
    if (size > self->size)
        return -1;
    /* level L keeps the complete subtrees of the first size leaves: size >> L of them */
    for (int l = 0; l < MAX_LEVELS; l++)
        self->levels[l].n = l < 64 ? size >> l : 0;
    self->size = size;
    return 0;
}

int sdm_merkle_leaf(const sdm_merkle_t *self, uint64_t index, uint8_t out[SDM_HASH_LEN])
{
    if (index >= self->size)
        return -1;
    memcpy(out, self->levels[0].h[index], SDM_HASH_LEN);
    return 0;
}

/* The largest power of two strictly below n (n >= 2). */
static uint64_t split_point(uint64_t n)
{
    uint64_t k = 1;
    while (k < n - k)
        k <<= 1;
    return k;
}

/* MTH(D[lo:hi]) for 0 <= lo < hi <= size. A complete aligned subtree is read from its
 * level; anything else is split as the RFC does and recursed into. */
static void range_hash(const sdm_merkle_t *self, uint64_t lo, uint64_t hi,
                       uint8_t out[SDM_HASH_LEN])
{
    uint64_t n = hi - lo;
    if ((n & (n - 1)) == 0 && lo % n == 0) {
        int l = __builtin_ctzll(n);
        memcpy(out, self->levels[l].h[lo >> l], SDM_HASH_LEN);
        return;
    }
    uint64_t k = split_point(n);
    uint8_t left[SDM_HASH_LEN], right[SDM_HASH_LEN];
    range_hash(self, lo, lo + k, left);
    range_hash(self, lo + k, hi, right);
    sdm_merkle_node_hash(left, right, out);
}

int sdm_merkle_root(const sdm_merkle_t *self, uint64_t size, uint8_t out[SDM_HASH_LEN])
{
    if (size > self->size)
        return -1;
    if (size == 0) {
        crypto_hash_sha256(out, (const unsigned char *)"", 0);
        return 0;
    }
    range_hash(self, 0, size, out);
    return 0;
}

/* PATH(m, D[lo:hi]) of RFC 9162 §2.1.3.1, m relative to lo; hashes from the leaf up. */
static void inclusion_path(const sdm_merkle_t *self, uint64_t m, uint64_t lo, uint64_t hi,
                           uint8_t path[][SDM_HASH_LEN], size_t *n_path)
{
    uint64_t n = hi - lo;
    if (n <= 1)
        return;
    uint64_t k = split_point(n);
    if (m < k) {
        inclusion_path(self, m, lo, lo + k, path, n_path);
        range_hash(self, lo + k, hi, path[(*n_path)++]);
    } else {
        inclusion_path(self, m - k, lo + k, hi, path, n_path);
        range_hash(self, lo, lo + k, path[(*n_path)++]);
    }
}

int sdm_merkle_inclusion(const sdm_merkle_t *self, uint64_t index, uint64_t size,
                         uint8_t path[][SDM_HASH_LEN], size_t *n_path)
{
    *n_path = 0;
    if (index >= size || size > self->size)
        return -1;
    inclusion_path(self, index, 0, size, path, n_path);
    return 0;
}

/* SUBPROOF(m, D[lo:hi], b) of RFC 9162 §2.1.4.1. */
static void consistency_path(const sdm_merkle_t *self, uint64_t m, uint64_t lo, uint64_t hi,
                             int whole, uint8_t path[][SDM_HASH_LEN], size_t *n_path)
{
    uint64_t n = hi - lo;
    if (m == n) {
        if (!whole)
            range_hash(self, lo, hi, path[(*n_path)++]);
        return;
    }
    uint64_t k = split_point(n);
    if (m <= k) {
        consistency_path(self, m, lo, lo + k, whole, path, n_path);
        range_hash(self, lo + k, hi, path[(*n_path)++]);
    } else {
        consistency_path(self, m - k, lo + k, hi, 0, path, n_path);
        range_hash(self, lo, lo + k, path[(*n_path)++]);
    }
}

int sdm_merkle_consistency(const sdm_merkle_t *self, uint64_t from, uint64_t to,
                           uint8_t path[][SDM_HASH_LEN], size_t *n_path)
{
    *n_path = 0;
    if (from > to || to > self->size)
        return -1;
    if (from == 0 || from == to)
        return 0;
    consistency_path(self, from, 0, to, 1, path, n_path);
    return 0;
}

/* RFC 9162 §2.1.3.2. Every path length other than the one the tree shape dictates fails:
 * a short path leaves sn above 0, a long one runs sn down to 0 before the path ends. */
int sdm_merkle_verify_inclusion(const uint8_t leaf_hash[SDM_HASH_LEN], uint64_t index,
                                uint64_t size, const uint8_t path[][SDM_HASH_LEN], size_t n_path,
                                const uint8_t root[SDM_HASH_LEN])
{
    if (index >= size || n_path > MAX_PATH)
        return -1;
    uint64_t fn = index, sn = size - 1;
    uint8_t r[SDM_HASH_LEN];
    memcpy(r, leaf_hash, SDM_HASH_LEN);
    for (size_t i = 0; i < n_path; i++) {
        if (sn == 0)
            return -1;
        if ((fn & 1) || fn == sn) {
            sdm_merkle_node_hash(path[i], r, r);
            if (!(fn & 1))
                while (fn != 0 && !(fn & 1)) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            sdm_merkle_node_hash(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return -1;
    return sodium_memcmp(r, root, SDM_HASH_LEN) == 0 ? 0 : -1;
}

/* RFC 9162 §2.1.4.2, plus the two cases it leaves out: from == to holds with an empty path
 * and equal roots, from == 0 with an empty path and from_root the empty tree's hash. */
int sdm_merkle_verify_consistency(uint64_t from, uint64_t to, const uint8_t from_root[SDM_HASH_LEN],
                                  const uint8_t to_root[SDM_HASH_LEN],
                                  const uint8_t path[][SDM_HASH_LEN], size_t n_path)
{
    if (from > to || n_path > MAX_PATH)
        return -1;
    if (from == 0) {
        uint8_t empty[SDM_HASH_LEN];
        crypto_hash_sha256(empty, (const unsigned char *)"", 0);
        return n_path == 0 && sodium_memcmp(from_root, empty, SDM_HASH_LEN) == 0 ? 0 : -1;
    }
    if (from == to)
        return n_path == 0 && sodium_memcmp(from_root, to_root, SDM_HASH_LEN) == 0 ? 0 : -1;
    if (n_path == 0)
        return -1;

    /* when from is a power of two the old root is itself a node of the new tree, and the
     * proof leaves it out: the verifier puts it back in front */
    const uint8_t *first = path[0];
    size_t next = 1;
    if ((from & (from - 1)) == 0) {
        first = from_root;
        next = 0;
    }
    uint64_t fn = from - 1, sn = to - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[SDM_HASH_LEN], sr[SDM_HASH_LEN];
    memcpy(fr, first, SDM_HASH_LEN);
    memcpy(sr, first, SDM_HASH_LEN);
    for (size_t i = next; i < n_path; i++) {
        if (sn == 0)
            return -1;
        if ((fn & 1) || fn == sn) {
            sdm_merkle_node_hash(path[i], fr, fr);
            sdm_merkle_node_hash(path[i], sr, sr);
            if (!(fn & 1))
                while (fn != 0 && !(fn & 1)) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            sdm_merkle_node_hash(sr, path[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return -1;
    if (sodium_memcmp(fr, from_root, SDM_HASH_LEN) != 0)
        return -1;
    return sodium_memcmp(sr, to_root, SDM_HASH_LEN) == 0 ? 0 : -1;
}
