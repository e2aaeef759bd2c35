/* digits.c - loads the bundled UCI digits: SHA-256 check, gunzip with zlib, strict parse. */
#include "digits.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#ifndef SDM_DIGITS_DEFAULT_PATH
#define SDM_DIGITS_DEFAULT_PATH "models/data/digits.csv.gz"
#endif

/* The bundled file is 57,512 bytes and inflates to 0.3 MB; anything far larger is not it. */
#define MAX_FILE_BYTES (16u << 20)
#define MAX_CSV_BYTES (64u << 20)

static sdm_status fail(sdm_status st, char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

const char *sdm_digits_default_path(void)
{
    const char *env = getenv("SDM_DIGITS");
    return env && *env ? env : SDM_DIGITS_DEFAULT_PATH;
}

/* Reads the whole file into *buf (caller frees). */
static sdm_status read_file(const char *path, unsigned char **buf, size_t *len, char *err,
                            size_t err_len)
{
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(SDM_ERR_NOT_FOUND, err, err_len, "digits: cannot open %s: %s", path,
                    strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    sdm_status st = SDM_OK;
    while (b) {
        if (n == cap) {
            if (cap >= MAX_FILE_BYTES) {
                st = fail(SDM_ERR_BAD_INPUT, err, err_len,
                          "digits: %s is larger than %u bytes: not the bundled file", path,
                          MAX_FILE_BYTES);
                break;
            }
            unsigned char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                st = fail(SDM_ERR_NOT_FOUND, err, err_len, "digits: reading %s failed", path);
            break;
        }
    }
    fclose(f);
    if (!b)
        return fail(SDM_ERR_NOMEM, err, err_len, "digits: out of memory reading %s", path);
    if (st != SDM_OK) {
        free(b);
        return st;
    }
    *buf = b;
    *len = n;
    return SDM_OK;
}

static sdm_status sha256_hex(const unsigned char *data, size_t len, char hex[65], char *err,
                             size_t err_len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
        return fail(SDM_ERR_INTERNAL, err, err_len, "digits: SHA-256 failed (libcrypto)");
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return SDM_OK;
}

/* gunzip (one gzip member) with zlib; *out is NUL-terminated, caller frees. */
static sdm_status gunzip(const unsigned char *in, size_t in_len, char **out, size_t *out_len,
                         char *err, size_t err_len)
{
    *out = NULL;
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) /* 16: expect a gzip header */
        return fail(SDM_ERR_NOMEM, err, err_len, "digits: zlib inflateInit2 failed");
    size_t cap = 1 << 19, n = 0;
    char *b = malloc(cap + 1);
    sdm_status st = SDM_OK;
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)in_len;
    for (;;) {
        if (!b) {
            st = fail(SDM_ERR_NOMEM, err, err_len, "digits: out of memory inflating");
            break;
        }
        zs.next_out = (unsigned char *)b + n;
        zs.avail_out = (uInt)(cap - n);
        int rc = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (rc == Z_STREAM_END)
            break;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            st = fail(SDM_ERR_BAD_INPUT, err, err_len, "digits: not valid gzip data (zlib: %s)",
                      zs.msg ? zs.msg : "error");
            break;
        }
        if (zs.avail_out == 0) {
            if (cap >= MAX_CSV_BYTES) {
                st = fail(SDM_ERR_BAD_INPUT, err, err_len,
                          "digits: inflates past %u bytes: not the bundled file", MAX_CSV_BYTES);
                break;
            }
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb)
                free(b);
            b = nb;
            cap *= 2;
        } else if (zs.avail_in == 0) {
            st = fail(SDM_ERR_BAD_INPUT, err, err_len, "digits: gzip data ends early");
            break;
        }
    }
    inflateEnd(&zs);
    if (st != SDM_OK) {
        free(b);
        return st;
    }
    b[n] = '\0';
    *out = b;
    *out_len = n;
    return SDM_OK;
}

/* Reads a decimal integer in [0, max] at *p, advancing *p. */
static int parse_small_int(const char **p, int max, int *val)
{
    const char *s = *p;
    int v = 0, digits = 0;
    while (*s >= '0' && *s <= '9' && digits < 4) {
        v = v * 10 + (*s - '0');
        s++;
        digits++;
    }
    if (digits == 0 || v > max)
        return 0;
    *p = s;
    *val = v;
    return 1;
}

static sdm_status parse_csv(const char *csv, size_t len, sdm_dataset **out, char *err,
                            size_t err_len)
{
    enum { N = SDM_DIGITS_N, D = SDM_DIGITS_D };
    double *x = malloc((size_t)N * D * sizeof(double));
    int32_t *y = malloc(N * sizeof(int32_t));
    sdm_status st = SDM_OK;
    if (!x || !y) {
        st = fail(SDM_ERR_NOMEM, err, err_len, "digits: out of memory");
        goto done;
    }
    const char *p = csv, *end = csv + len;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j <= D; j++) {
            int v;
            if (!parse_small_int(&p, j < D ? 16 : 9, &v)) {
                st = fail(SDM_ERR_BAD_INPUT, err, err_len,
                          "digits: line %d, field %d: want an integer in 0..%d", i + 1, j + 1,
                          j < D ? 16 : 9);
                goto done;
            }
            if (j < D)
                x[(size_t)i * D + j] = v / 16.0;
            else
                y[i] = v;
            char want = j < D ? ',' : '\n';
            if (p < end && *p == '\r' && want == '\n')
                p++;
            if (p >= end || *p != want) {
                st = fail(SDM_ERR_BAD_INPUT, err, err_len,
                          "digits: line %d, field %d: want '%s' after it", i + 1, j + 1,
                          want == ',' ? "," : "\\n");
                goto done;
            }
            p++;
        }
    }
    if (p != end) {
        st = fail(SDM_ERR_BAD_INPUT, err, err_len, "digits: more than %d lines", N);
        goto done;
    }
    st = sdm_dataset_new(N, D, SDM_DIGITS_CLASSES, x, y, NULL, out, err, err_len);
done:
    free(x);
    free(y);
    return st;
}

sdm_status sdm_digits_load(const char *path, sdm_dataset **out, char *err, size_t err_len)
{
    if (!out)
        return fail(SDM_ERR_BAD_INPUT, err, err_len, "out: NULL");
    *out = NULL;
    if (!path)
        path = sdm_digits_default_path();
    unsigned char *gz = NULL;
    char *csv = NULL;
    size_t gz_len = 0, csv_len = 0;
    sdm_status st = read_file(path, &gz, &gz_len, err, err_len);
    if (st != SDM_OK)
        return st;
    char hex[65];
    st = sha256_hex(gz, gz_len, hex, err, err_len);
    if (st == SDM_OK && strcmp(hex, SDM_DIGITS_SHA256) != 0)
        st = fail(SDM_ERR_BAD_INPUT, err, err_len,
                  "digits: SHA-256 of %s is %s, want %s (not the bundled file)", path, hex,
                  SDM_DIGITS_SHA256);
    if (st == SDM_OK)
        st = gunzip(gz, gz_len, &csv, &csv_len, err, err_len);
    if (st == SDM_OK)
        st = parse_csv(csv, csv_len, out, err, err_len);
    free(gz);
    free(csv);
    return st;
}
