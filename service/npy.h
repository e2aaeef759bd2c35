/* npy.h - a small, strict reader and writer of NumPy .npy files for the client and its tests.
 *
 * Only what the command line needs: format versions 1.0 and 2.0, little-endian dtypes <f4,
 * <f2, <u2 (bfloat16 travels as <u2, since NumPy has no bf16; the caller says so), <u8 and
 * <f8, C order, one or two dimensions. Anything else is refused with a message that names
 * the file and what is wrong with it; nothing is guessed. A file is read whole: the data
 * size implied by the header must be exactly what follows it.
 */
#ifndef SDM_SERVICE_NPY_H
#define SDM_SERVICE_NPY_H

#include <stddef.h>
#include <stdint.h>

typedef enum sdm_npy_dtype {
    SDM_NPY_F4 = 0, /* '<f4' float32 */
    SDM_NPY_F2,     /* '<f2' IEEE half */
    SDM_NPY_U2,     /* '<u2' uint16: how bfloat16 is stored */
    SDM_NPY_U8,     /* '<u8' uint64: example ids */
    SDM_NPY_F8,     /* '<f8' float64: weights */
} sdm_npy_dtype;

#define SDM_NPY_DTYPES 5
/* A set of dtypes for sdm_npy_read's `accept`. */
#define SDM_NPY_MASK(dt) (1u << (dt))
#define SDM_NPY_ANY ((1u << SDM_NPY_DTYPES) - 1)

/* "<f4", "<f2", ...; NULL for an unknown dtype. */
const char *sdm_npy_descr(sdm_npy_dtype dtype);
/* Bytes per element (4, 2, 2, 8, 8); 0 for an unknown dtype. */
size_t sdm_npy_itemsize(sdm_npy_dtype dtype);

/* An array as read: data is malloc'd and owned (free it with sdm_npy_free). */
typedef struct sdm_npy {
    sdm_npy_dtype dtype;
    int ndim;          /* 1 or 2 */
    uint64_t shape[2]; /* shape[1] is 1 for a 1-D array */
    void *data;        /* row-major, little-endian; NULL when the array is empty */
    size_t n_bytes;
} sdm_npy;

/* Reads path. `accept` is the set of dtypes the caller takes (SDM_NPY_MASK(...) | ...);
 * a file holding another dtype is refused ("ids.npy: dtype '<i8', expected '<u8'").
 * Returns 0, or -1 with err set and *out zeroed. */
int sdm_npy_read(const char *path, unsigned accept, sdm_npy *out, char *err, size_t err_len);
/* The same from memory (buf is borrowed; the array's data is copied). `name` is used in
 * messages in place of a path. */
int sdm_npy_parse(const uint8_t *buf, size_t len, const char *name, unsigned accept, sdm_npy *out,
                  char *err, size_t err_len);
void sdm_npy_free(sdm_npy *a);

/* Writes a 1-D (ndim 1, shape[0] elements) or 2-D array to path (created or truncated,
 * mode 0644) as format 1.0 (our header always fits its 16-bit length). data is borrowed.
 * Returns 0, or -1 with err set. */
int sdm_npy_write(const char *path, sdm_npy_dtype dtype, int ndim, const uint64_t *shape,
                  const void *data, char *err, size_t err_len);

/* The longest header sdm_npy_header makes (two 20-digit dimensions). */
#define SDM_NPY_HEADER_MAX 128
/* The format 1.0 header sdm_npy_write puts before the data: magic, version, length, the
 * dict, and the spaces and '\n' that make the data start at a multiple of 64 bytes (as
 * NumPy does). Writes it to out (cap bytes) and returns its length; 0 for an unknown dtype,
 * an ndim other than 1 or 2, or a cap below what the header needs. */
size_t sdm_npy_header(sdm_npy_dtype dtype, int ndim, const uint64_t *shape, uint8_t *out,
                      size_t cap);

#endif /* SDM_SERVICE_NPY_H */
