/* sha256.c - SHA-256 of bulk data through OpenSSL's libcrypto, libsodium as the fallback. */
#include "sha256.h"

void sdm_sha256_init(sdm_sha256_ctx *h)
{
    h->evp = EVP_MD_CTX_new();
    if (h->evp && EVP_DigestInit_ex(h->evp, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->evp);
        h->evp = NULL;
    }
    if (!h->evp)
        crypto_hash_sha256_init(&h->fallback);
}

void sdm_sha256_update(sdm_sha256_ctx *h, const void *data, size_t len)
{
    if (len == 0)
        return;
    if (h->evp)
        EVP_DigestUpdate(h->evp, data, len);
    else
        crypto_hash_sha256_update(&h->fallback, data, len);
}

void sdm_sha256_final(sdm_sha256_ctx *h, uint8_t out[32])
{
    if (h->evp) {
        unsigned int n = 32;
        EVP_DigestFinal_ex(h->evp, out, &n);
        EVP_MD_CTX_free(h->evp);
        h->evp = NULL;
    } else {
        crypto_hash_sha256_final(&h->fallback, out);
    }
}

void sdm_sha256(const void *data, size_t len, uint8_t out[32])
{
    sdm_sha256_ctx h;
    sdm_sha256_init(&h);
    sdm_sha256_update(&h, data, len);
    sdm_sha256_final(&h, out);
}
