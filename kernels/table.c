/* table.c - the store's containers: a u64 -> u64 hash map and an interned string table. */
#include "table.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t x)
{
    /* splitmix64 finaliser: example ids are often sequential, so spread them */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return mix64(h);
}

void sdm_u64map_free(sdm_u64map *m)
{
    free(m->keys);
    free(m->vals);
    free(m->used);
    memset(m, 0, sizeof(*m));
}

int sdm_u64map_get(const sdm_u64map *m, uint64_t key, uint64_t *val)
{
    if (m->cap == 0)
        return 0;
    size_t mask = m->cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (!m->used[i])
            return 0;
        if (m->keys[i] == key) {
            *val = m->vals[i];
            return 1;
        }
    }
}

static void put_raw(uint64_t *keys, uint64_t *vals, uint8_t *used, size_t cap, uint64_t key,
                    uint64_t val, size_t *len)
{
    size_t mask = cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (!used[i]) {
            used[i] = 1;
            keys[i] = key;
            vals[i] = val;
            (*len)++;
            return;
        }
        if (keys[i] == key) {
            vals[i] = val;
            return;
        }
    }
}

int sdm_u64map_reserve(sdm_u64map *m, size_t extra)
{
    size_t want = m->len + extra;
    if (want * 10 < m->cap * 7) /* load factor below 0.7 */
        return 0;
    size_t cap = m->cap ? m->cap : 64;
    while (want * 10 >= cap * 7)
        cap *= 2;
    uint64_t *keys = malloc(cap * sizeof(*keys));
    uint64_t *vals = malloc(cap * sizeof(*vals));
    uint8_t *used = calloc(cap, 1);
    if (!keys || !vals || !used) {
        free(keys);
        free(vals);
        free(used);
        return -1;
    }
    size_t len = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->used[i])
            put_raw(keys, vals, used, cap, m->keys[i], m->vals[i], &len);
    free(m->keys);
    free(m->vals);
    free(m->used);
    m->keys = keys;
    m->vals = vals;
    m->used = used;
    m->cap = cap;
    m->len = len;
    return 0;
}

void sdm_u64map_put(sdm_u64map *m, uint64_t key, uint64_t val)
{
    put_raw(m->keys, m->vals, m->used, m->cap, key, val, &m->len);
}

void sdm_strtab_free(sdm_strtab *t)
{
    for (size_t i = 0; i < t->len; i++)
        free(t->names[i]);
    free(t->names);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

long sdm_strtab_find(const sdm_strtab *t, const char *name)
{
    if (t->slots_cap == 0)
        return -1;
    size_t mask = t->slots_cap - 1;
    for (size_t i = hash_str(name) & mask;; i = (i + 1) & mask) {
        uint32_t s = t->slots[i];
        if (s == 0)
            return -1;
        if (strcmp(t->names[s - 1], name) == 0)
            return (long)(s - 1);
    }
}

static void slot_insert(uint32_t *slots, size_t cap, const char *name, uint32_t idx)
{
    size_t mask = cap - 1;
    size_t i = hash_str(name) & mask;
    while (slots[i] != 0)
        i = (i + 1) & mask;
    slots[i] = idx + 1;
}

static int rebuild_slots(sdm_strtab *t, size_t cap)
{
    uint32_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < t->len; i++)
        slot_insert(slots, cap, t->names[i], (uint32_t)i);
    free(t->slots);
    t->slots = slots;
    t->slots_cap = cap;
    return 0;
}

long sdm_strtab_intern(sdm_strtab *t, const char *name)
{
    long found = sdm_strtab_find(t, name);
    if (found >= 0)
        return found;
    if (t->len >= UINT32_MAX - 1)
        return -1;
    if (t->len + 1 > t->names_cap) {
        size_t cap = t->names_cap ? t->names_cap * 2 : 16;
        char **names = realloc(t->names, cap * sizeof(*names));
        if (!names)
            return -1;
        t->names = names;
        t->names_cap = cap;
    }
    if ((t->len + 1) * 2 > t->slots_cap) {
        size_t cap = t->slots_cap ? t->slots_cap * 2 : 32;
        if (rebuild_slots(t, cap) != 0)
            return -1;
    }
    char *copy = strdup(name);
    if (!copy)
        return -1;
    t->names[t->len] = copy;
    slot_insert(t->slots, t->slots_cap, copy, (uint32_t)t->len);
    return (long)t->len++;
}

void sdm_strtab_truncate(sdm_strtab *t, size_t len)
{
    if (len >= t->len)
        return;
    for (size_t i = len; i < t->len; i++)
        free(t->names[i]);
    t->len = len;
    /* the slot index still points at the dropped names: rebuild it (same capacity) */
    memset(t->slots, 0, t->slots_cap * sizeof(*t->slots));
    for (size_t i = 0; i < t->len; i++)
        slot_insert(t->slots, t->slots_cap, t->names[i], (uint32_t)i);
}
