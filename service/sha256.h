/* sha256.h - SHA-256 of bulk data (gradient matrices, ids, weights, queries) for the digests.
 *
 * OpenSSL's libcrypto uses the CPU's SHA extensions: on the development machine it hashes a
 * 16 MiB gradient matrix at 1.5 GB/s, where libsodium's portable code managed 0.19 GB/s and
 * cost more than the projection itself. Merkle nodes (65 bytes) stay on libsodium, which needs
 * no allocation. When libcrypto cannot allocate its context, the same digest comes from
 * libsodium, so callers never see a failure.
 */
#ifndef SDM_SERVICE_SHA256_H
#define SDM_SERVICE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <sodium.h>

typedef struct sdm_sha256_ctx {
    EVP_MD_CTX *evp;                   /* NULL: the fallback is in use */
    crypto_hash_sha256_state fallback;
} sdm_sha256_ctx;

void sdm_sha256_init(sdm_sha256_ctx *h);
void sdm_sha256_update(sdm_sha256_ctx *h, const void *data, size_t len);
/* Writes the digest and releases the context. */
void sdm_sha256_final(sdm_sha256_ctx *h, uint8_t out[32]);
/* One call: SHA-256 of len bytes. */
void sdm_sha256(const void *data, size_t len, uint8_t out[32]);

#endif /* SDM_SERVICE_SHA256_H */
