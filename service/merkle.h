/* merkle.h - RFC 9162 Merkle tree hashes, inclusion and consistency proofs (SPEC §5).
 *
 * The tree keeps every leaf hash and, per level, the hash of every complete subtree, so the
 * root of any prefix and any proof costs O(log n) hashes. Memory: about 64 bytes a leaf.
 */
#ifndef SDM_SERVICE_MERKLE_H
#define SDM_SERVICE_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define SDM_HASH_LEN 32

typedef struct sdm_merkle sdm_merkle_t;

/* SHA-256(0x00 || data). */
void sdm_merkle_leaf_hash(const uint8_t *data, size_t len, uint8_t out[SDM_HASH_LEN]);
/* SHA-256(0x01 || left || right). */
void sdm_merkle_node_hash(const uint8_t left[SDM_HASH_LEN], const uint8_t right[SDM_HASH_LEN],
                          uint8_t out[SDM_HASH_LEN]);

/* An empty tree; NULL when out of memory. */
sdm_merkle_t *sdm_merkle_new(void);
void sdm_merkle_destroy(sdm_merkle_t **self_p);

uint64_t sdm_merkle_size(const sdm_merkle_t *self);
/* Appends a leaf hash (not leaf data). Returns 0, or -1 when out of memory (tree unchanged). */
int sdm_merkle_append(sdm_merkle_t *self, const uint8_t leaf_hash[SDM_HASH_LEN]);
/* Drops the leaves from `size` on (used to undo appends whose commit failed). Returns 0,
 * or -1 when size > size(). */
int sdm_merkle_truncate(sdm_merkle_t *self, uint64_t size);
/* The leaf hash at index. Returns 0, or -1 when index >= size. */
int sdm_merkle_leaf(const sdm_merkle_t *self, uint64_t index, uint8_t out[SDM_HASH_LEN]);
/* MTH of the first `size` leaves (SHA-256() for size 0). Returns 0, or -1 when size > size(). */
int sdm_merkle_root(const sdm_merkle_t *self, uint64_t size, uint8_t out[SDM_HASH_LEN]);

/* Inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162 §2.1.3).
 * Writes at most 64 hashes to path; *n_path their count. Returns 0, or -1 when
 * index >= size or size > size(). */
int sdm_merkle_inclusion(const sdm_merkle_t *self, uint64_t index, uint64_t size,
                         uint8_t path[][SDM_HASH_LEN], size_t *n_path);
/* Consistency proof between the trees of the first `from` and `to` leaves (RFC 9162
 * §2.1.4; empty when from == 0 or from == to). Returns 0, or -1 when from > to or
 * to > size(). */
int sdm_merkle_consistency(const sdm_merkle_t *self, uint64_t from, uint64_t to,
                           uint8_t path[][SDM_HASH_LEN], size_t *n_path);

/* Verifiers (RFC 9162 §2.1.3.2 and §2.1.4.2), for clients: 0 when the proof holds. */
int sdm_merkle_verify_inclusion(const uint8_t leaf_hash[SDM_HASH_LEN], uint64_t index,
                                uint64_t size, const uint8_t path[][SDM_HASH_LEN], size_t n_path,
                                const uint8_t root[SDM_HASH_LEN]);
int sdm_merkle_verify_consistency(uint64_t from, uint64_t to, const uint8_t from_root[SDM_HASH_LEN],
                                  const uint8_t to_root[SDM_HASH_LEN],
                                  const uint8_t path[][SDM_HASH_LEN], size_t n_path);

#endif /* SDM_SERVICE_MERKLE_H */
