/* npy.c - a small, strict reader and writer of NumPy .npy files (format 1.0 and 2.0).
 *
 * The header is a Python dict literal; we parse exactly the subset NumPy writes
 * ({'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }) and refuse the rest, so a
 * file that means something other than what we would read it as never gets through.
 */
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64 /* data starts at a multiple of this, as NumPy writes it */
/* NumPy itself refuses headers over 10 000 bytes unless asked; ours are ~128. */
#define NPY_MAX_HEADER (1u << 20)

static const char *const s_descr[SDM_NPY_DTYPES] = {"<f4", "<f2", "<u2", "<u8", "<f8"};
static const size_t s_itemsize[SDM_NPY_DTYPES] = {4, 2, 2, 8, 8};

const char *sdm_npy_descr(sdm_npy_dtype dtype)
{
    return (unsigned)dtype < SDM_NPY_DTYPES ? s_descr[dtype] : NULL;
}

size_t sdm_npy_itemsize(sdm_npy_dtype dtype)
{
    return (unsigned)dtype < SDM_NPY_DTYPES ? s_itemsize[dtype] : 0;
}

static int fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void sdm_npy_free(sdm_npy *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof(*a));
}

/* ---- header ------------------------------------------------------------------------- */

typedef struct hdr_parser {
    const char *p;
    const char *end;
} hdr_parser;

static void skip_space(hdr_parser *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n'))
        h->p++;
}

static int accept_char(hdr_parser *h, char c)
{
    skip_space(h);
    if (h->p < h->end && *h->p == c) {
        h->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes (NumPy never writes any in these fields). */
static int parse_quoted(hdr_parser *h, char *out, size_t out_len)
{
    skip_space(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
        return -1;
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        if (*h->p == '\\' || n + 1 >= out_len)
            return -1;
        out[n++] = *h->p++;
    }
    if (h->p >= h->end)
        return -1;
    h->p++;
    out[n] = 0;
    return 0;
}

static int accept_word(hdr_parser *h, const char *word)
{
    skip_space(h);
    size_t n = strlen(word);
    if ((size_t)(h->end - h->p) >= n && memcmp(h->p, word, n) == 0) {
        h->p += n;
        return 1;
    }
    return 0;
}

typedef struct npy_header {
    char descr[32];
    int fortran_order;
    int ndim;
    uint64_t shape[8];
} npy_header;

/* shape: '(' ')' | '(' int ',' ')' | '(' int (',' int)+ [','] ')' */
static int parse_shape(hdr_parser *h, npy_header *hd, const char *name, char *err, size_t err_len)
{
    if (!accept_char(h, '('))
        return fail(err, err_len, "%s: header 'shape' is not a tuple", name);
    hd->ndim = 0;
    int trailing_comma = 0;
    for (;;) {
        skip_space(h);
        if (accept_char(h, ')'))
            break;
        if (h->p >= h->end || *h->p < '0' || *h->p > '9')
            return fail(err, err_len,
                        "%s: header 'shape' holds something other than "
                        "non-negative integers",
                        name);
        uint64_t v = 0;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
            if (v > (UINT64_MAX - 9) / 10)
                return fail(err, err_len, "%s: header 'shape' dimension too large", name);
            v = v * 10 + (uint64_t)(*h->p++ - '0');
        }
        if (hd->ndim == 8)
            return fail(err, err_len, "%s: header 'shape' has more than 8 dimensions", name);
        hd->shape[hd->ndim++] = v;
        trailing_comma = accept_char(h, ',');
        if (!trailing_comma) {
            if (!accept_char(h, ')'))
                return fail(err, err_len, "%s: header 'shape' is not a tuple", name);
            break;
        }
    }
    if (hd->ndim == 1 && !trailing_comma)
        return fail(err, err_len, "%s: header 'shape' (n) is not a tuple; NumPy writes (n,)", name);
    return 0;
}

static int parse_dict(const char *text, size_t len, const char *name, npy_header *hd, char *err,
                      size_t err_len)
{
    hdr_parser h = {text, text + len};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!accept_char(&h, '{'))
        return fail(err, err_len, "%s: header is not a dict literal", name);
    for (;;) {
        if (accept_char(&h, '}'))
            break;
        char key[32];
        if (parse_quoted(&h, key, sizeof(key)) != 0 || !accept_char(&h, ':'))
            return fail(err, err_len, "%s: header dict is malformed", name);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (parse_quoted(&h, hd->descr, sizeof(hd->descr)) != 0)
                return fail(err, err_len,
                            "%s: header 'descr' is not a simple dtype string "
                            "(structured dtypes are not supported)",
                            name);
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (accept_word(&h, "True"))
                hd->fortran_order = 1;
            else if (accept_word(&h, "False"))
                hd->fortran_order = 0;
            else
                return fail(err, err_len, "%s: header 'fortran_order' is not True or False", name);
            have_order = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (parse_shape(&h, hd, name, err, err_len) != 0)
                return -1;
            have_shape = 1;
        } else {
            return fail(err, err_len, "%s: header has an unexpected or repeated key '%s'", name,
                        key);
        }
        if (!accept_char(&h, ',')) {
            if (!accept_char(&h, '}'))
                return fail(err, err_len, "%s: header dict is malformed after '%s'", name, key);
            break;
        }
    }
    skip_space(&h);
    if (h.p != h.end)
        return fail(err, err_len, "%s: header has bytes after the dict", name);
    if (!have_descr || !have_order || !have_shape)
        return fail(err, err_len, "%s: header lacks '%s'", name,
                    !have_descr   ? "descr"
                    : !have_order ? "fortran_order"
                                  : "shape");
    return 0;
}

static void accepted_list(unsigned accept, char *out, size_t out_len)
{
    out[0] = 0;
    size_t used = 0;
    for (int i = 0; i < SDM_NPY_DTYPES; i++) {
        if (!(accept & SDM_NPY_MASK(i)))
            continue;
        int w = snprintf(out + used, out_len - used, "%s'%s'", used ? " or " : "", s_descr[i]);
        if (w < 0 || (size_t)w >= out_len - used)
            return;
        used += (size_t)w;
    }
}

/* Checks the fixed prefix. On success *header_len is the dict's length and *prefix_len
 * the bytes before it (10 for version 1.0, 12 for 2.0). `have` bytes are available. */
static int parse_prefix(const uint8_t *buf, size_t have, const char *name, size_t *prefix_len,
                        size_t *header_len, char *err, size_t err_len)
{
    if (have < NPY_MAGIC_LEN || memcmp(buf, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return fail(err, err_len, "%s: not an .npy file (wrong magic)", name);
    if (have < 10)
        return fail(err, err_len, "%s: truncated header", name);
    uint8_t major = buf[6], minor = buf[7];
    if ((major != 1 && major != 2) || minor != 0)
        return fail(err, err_len, "%s: format version %u.%u is not supported (1.0 and 2.0 are)",
                    name, major, minor);
    if (major == 1) {
        *prefix_len = 10;
        *header_len = (size_t)buf[8] | (size_t)buf[9] << 8;
    } else {
        if (have < 12)
            return fail(err, err_len, "%s: truncated header", name);
        *prefix_len = 12;
        *header_len =
            (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    }
    if (*header_len > NPY_MAX_HEADER)
        return fail(err, err_len, "%s: header of %zu bytes is implausibly long", name, *header_len);
    return 0;
}

/* Parses the dict text and checks it against what we take; fills out's dtype, ndim and
 * shape and *data_len. */
static int check_header(const char *text, size_t len, const char *name, unsigned accept,
                        sdm_npy *out, size_t *data_len, char *err, size_t err_len)
{
    if (len == 0 || text[len - 1] != '\n')
        return fail(err, err_len, "%s: header does not end with a newline", name);
    npy_header hd;
    memset(&hd, 0, sizeof(hd));
    if (parse_dict(text, len, name, &hd, err, err_len) != 0)
        return -1;
    int dt = -1;
    for (int i = 0; i < SDM_NPY_DTYPES; i++)
        if (strcmp(hd.descr, s_descr[i]) == 0)
            dt = i;
    char want[96];
    accepted_list(accept, want, sizeof(want));
    if (dt < 0 && hd.descr[0] == '>')
        return fail(err, err_len, "%s: dtype '%s' is big-endian, expected %s", name, hd.descr,
                    want);
    if (dt < 0 || !(accept & SDM_NPY_MASK(dt)))
        return fail(err, err_len, "%s: dtype '%s', expected %s", name, hd.descr, want);
    if (hd.fortran_order)
        return fail(err, err_len,
                    "%s: fortran_order is True; save a C-order array "
                    "(np.ascontiguousarray)",
                    name);
    if (hd.ndim < 1 || hd.ndim > 2)
        return fail(err, err_len, "%s: %d-dimensional array, expected 1 or 2 dimensions", name,
                    hd.ndim);
    out->dtype = (sdm_npy_dtype)dt;
    out->ndim = hd.ndim;
    out->shape[0] = hd.shape[0];
    out->shape[1] = hd.ndim == 2 ? hd.shape[1] : 1;
    uint64_t elems = out->shape[0];
    if (out->shape[1] && elems > UINT64_MAX / out->shape[1])
        return fail(err, err_len, "%s: shape is too large", name);
    elems *= out->shape[1];
    if (elems > SIZE_MAX / s_itemsize[dt])
        return fail(err, err_len, "%s: shape is too large", name);
    *data_len = (size_t)elems * s_itemsize[dt];
    return 0;
}

/* The bytes after the header must be exactly the data the shape implies. */
static int check_data_len(const char *name, size_t have, size_t data_len, char *err, size_t err_len)
{
    if (have < data_len)
        return fail(err, err_len, "%s: truncated data: the shape needs %zu bytes, the file has %zu",
                    name, data_len, have);
    if (have > data_len)
        return fail(err, err_len, "%s: %zu unexpected bytes after the data", name, have - data_len);
    return 0;
}

int sdm_npy_parse(const uint8_t *buf, size_t len, const char *name, unsigned accept, sdm_npy *out,
                  char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    size_t prefix = 0, hlen = 0, data_len = 0;
    if (parse_prefix(buf, len, name, &prefix, &hlen, err, err_len) != 0)
        return -1;
    if (hlen > len - prefix)
        return fail(err, err_len, "%s: truncated header", name);
    if (check_header((const char *)buf + prefix, hlen, name, accept, out, &data_len, err,
                     err_len) != 0)
        goto bad;
    if (check_data_len(name, len - prefix - hlen, data_len, err, err_len) != 0)
        goto bad;
    if (data_len) {
        out->data = malloc(data_len);
        if (!out->data) {
            fail(err, err_len, "%s: out of memory for %zu bytes", name, data_len);
            goto bad;
        }
        memcpy(out->data, buf + prefix + hlen, data_len);
    }
    out->n_bytes = data_len;
    return 0;
bad:
    sdm_npy_free(out);
    return -1;
}

/* Reads exactly n bytes; 0, or -1 with err (short_why: the reason when the file ends early). */
static int read_exact(int fd, void *buf, size_t n, const char *path, const char *short_why,
                      char *err, size_t err_len)
{
    size_t got;
    if (sdm_read_all(fd, buf, n, &got) != 0)
        return fail(err, err_len, "%s: read failed: %s", path, strerror(errno));
    if (got != n)
        return fail(err, err_len, "%s: read failed: %s", path, short_why);
    return 0;
}

int sdm_npy_read(const char *path, unsigned accept, sdm_npy *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, err_len, "%s: %s", path, strerror(errno));
    char *header = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(err, err_len, "%s: not a regular file", path);
        goto bad;
    }
    size_t size = (size_t)st.st_size;
    uint8_t prefix_buf[12];
    size_t got = size < sizeof(prefix_buf) ? size : sizeof(prefix_buf);
    if (read_exact(fd, prefix_buf, got, path, "short read", err, err_len) != 0)
        goto bad;
    size_t prefix = 0, hlen = 0, data_len = 0;
    if (parse_prefix(prefix_buf, got, path, &prefix, &hlen, err, err_len) != 0)
        goto bad;
    if (hlen > size - prefix) {
        fail(err, err_len, "%s: truncated header", path);
        goto bad;
    }
    header = malloc(hlen + 1);
    if (!header) {
        fail(err, err_len, "%s: out of memory", path);
        goto bad;
    }
    /* the prefix buffer may already hold the header's first bytes */
    size_t early = got - prefix;
    memcpy(header, prefix_buf + prefix, early);
    if (read_exact(fd, header + early, hlen - early, path, "short read", err, err_len) != 0)
        goto bad;
    if (check_header(header, hlen, path, accept, out, &data_len, err, err_len) != 0)
        goto bad;
    if (check_data_len(path, size - prefix - hlen, data_len, err, err_len) != 0)
        goto bad;
    if (data_len) {
        out->data = malloc(data_len);
        if (!out->data) {
            fail(err, err_len, "%s: out of memory for %zu bytes", path, data_len);
            goto bad;
        }
        if (read_exact(fd, out->data, data_len, path, "file shrank while reading", err, err_len) !=
            0)
            goto bad;
    }
    out->n_bytes = data_len;
    free(header);
    close(fd);
    return 0;
bad:
    free(header);
    close(fd);
    sdm_npy_free(out);
    return -1;
}

size_t sdm_npy_header(sdm_npy_dtype dtype, int ndim, const uint64_t *shape, uint8_t *out,
                      size_t cap)
{
    if ((unsigned)dtype >= SDM_NPY_DTYPES || (ndim != 1 && ndim != 2))
        return 0;
    char dict[160];
    int n;
    if (ndim == 1)
        n = snprintf(dict, sizeof(dict),
                     "{'descr': '%s', 'fortran_order': False, 'shape': (%llu,), }", s_descr[dtype],
                     (unsigned long long)shape[0]);
    else
        n = snprintf(dict, sizeof(dict),
                     "{'descr': '%s', 'fortran_order': False, 'shape': (%llu, %llu), }",
                     s_descr[dtype], (unsigned long long)shape[0], (unsigned long long)shape[1]);
    if (n < 0)
        return 0;
    /* format 1.0: a 16-bit header length is plenty for this dict */
    size_t prefix = 10;
    size_t total = prefix + (size_t)n + 1; /* + the closing '\n' */
    total = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    if (total > cap)
        return 0;
    size_t hlen = total - prefix;
    memcpy(out, NPY_MAGIC, NPY_MAGIC_LEN);
    out[6] = 1;
    out[7] = 0;
    out[8] = (uint8_t)(hlen & 0xff);
    out[9] = (uint8_t)(hlen >> 8);
    memcpy(out + prefix, dict, (size_t)n);
    memset(out + prefix + n, ' ', hlen - (size_t)n - 1);
    out[total - 1] = '\n';
    return total;
}

int sdm_npy_write(const char *path, sdm_npy_dtype dtype, int ndim, const uint64_t *shape,
                  const void *data, char *err, size_t err_len)
{
    if ((unsigned)dtype >= SDM_NPY_DTYPES)
        return fail(err, err_len, "%s: unknown dtype %d", path, (int)dtype);
    if (ndim != 1 && ndim != 2)
        return fail(err, err_len, "%s: %d dimensions; 1 or 2 are supported", path, ndim);
    uint64_t elems = shape[0];
    if (ndim == 2) {
        if (shape[1] && elems > UINT64_MAX / shape[1])
            return fail(err, err_len, "%s: shape is too large", path);
        elems *= shape[1];
    }
    if (elems > SIZE_MAX / s_itemsize[dtype])
        return fail(err, err_len, "%s: shape is too large", path);
    size_t data_len = (size_t)elems * s_itemsize[dtype];
    if (data_len && !data)
        return fail(err, err_len, "%s: no data", path);

    uint8_t head[SDM_NPY_HEADER_MAX];
    size_t total = sdm_npy_header(dtype, ndim, shape, head, sizeof(head));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(err, err_len, "%s: %s", path, strerror(errno));
    if (sdm_write_all(fd, head, total) != 0 || sdm_write_all(fd, data, data_len) != 0) {
        fail(err, err_len, "%s: write failed: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (close(fd) != 0)
        return fail(err, err_len, "%s: write failed: %s", path, strerror(errno));
    return 0;
}
