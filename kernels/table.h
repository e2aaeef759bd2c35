/* table.h - the store's containers: a u64 -> u64 hash map and an interned string table. */
#ifndef SDM_KERNELS_TABLE_H
#define SDM_KERNELS_TABLE_H

#include <stddef.h>
#include <stdint.h>

/* Open-addressing map from u64 keys to u64 values; no deletion (the store only grows). */
typedef struct sdm_u64map {
    uint64_t *keys;
    uint64_t *vals;
    uint8_t *used;
    size_t cap; /* a power of two, or 0 */
    size_t len;
} sdm_u64map;

void sdm_u64map_free(sdm_u64map *m);
/* Returns 1 and sets *val when key is present, else 0. */
int sdm_u64map_get(const sdm_u64map *m, uint64_t key, uint64_t *val);
/* Makes room for `extra` more keys; returns 0 on success, -1 when out of memory. Inserts
 * after a successful reserve cannot fail. */
int sdm_u64map_reserve(sdm_u64map *m, size_t extra);
/* Inserts or overwrites; requires a prior reserve. */
void sdm_u64map_put(sdm_u64map *m, uint64_t key, uint64_t val);

/* Interned strings numbered 0, 1, 2, ... in order of insertion. */
typedef struct sdm_strtab {
    char **names;
    size_t len;
    size_t names_cap;
    uint32_t *slots; /* index + 1, 0 = empty */
    size_t slots_cap;
} sdm_strtab;

void sdm_strtab_free(sdm_strtab *t);
/* Index of name, or -1 when absent. */
long sdm_strtab_find(const sdm_strtab *t, const char *name);
/* Index of name, inserting a copy when absent; -1 when out of memory. */
long sdm_strtab_intern(sdm_strtab *t, const char *name);
/* Drops entries [len, t->len) inserted last (used to roll back a failed append). */
void sdm_strtab_truncate(sdm_strtab *t, size_t len);

#endif /* SDM_KERNELS_TABLE_H */
