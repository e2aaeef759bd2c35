/* json.h - a small JSON reader for the tests' known-answer files. */
#ifndef SDM_TESTS_JSON_H
#define SDM_TESTS_JSON_H

#include <stddef.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json {
    json_type type;
    double number;     /* JSON_NUMBER, JSON_BOOL (0/1) */
    char *string;      /* JSON_STRING */
    size_t len;        /* items of an array or object */
    struct json *items; /* JSON_ARRAY, JSON_OBJECT */
    char **keys;       /* JSON_OBJECT */
} json;

/* Parses a whole file; NULL on error (message on stderr). */
json *json_load(const char *path);
void json_free(json *j);
/* Member of an object, or NULL. */
const json *json_get(const json *obj, const char *key);
/* Item of an array, or NULL. */
const json *json_at(const json *arr, size_t i);

#endif
