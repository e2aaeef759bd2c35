/* json.c - a small recursive-descent JSON reader for the tests' known-answer files. */
#include "json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *p;
    const char *end;
    int depth;
} parser;

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && isspace((unsigned char)*ps->p))
        ps->p++;
}

static int parse_value(parser *ps, json *out);

static char *parse_string(parser *ps)
{
    if (ps->p >= ps->end || *ps->p != '"')
        return NULL;
    ps->p++;
    size_t cap = 16, len = 0;
    char *s = malloc(cap);
    while (s && ps->p < ps->end && *ps->p != '"') {
        char c = *ps->p++;
        if (c == '\\' && ps->p < ps->end) {
            char e = *ps->p++;
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b'
              : e == 'f' ? '\f' : e;
            if (e == 'u') { /* test data is ASCII: keep the low byte */
                unsigned v = 0;
                sscanf(ps->p, "%4x", &v);
                ps->p += 4;
                c = (char)v;
            }
        }
        if (len + 2 > cap) {
            cap *= 2;
            char *t = realloc(s, cap);
            if (!t) {
                free(s);
                return NULL;
            }
            s = t;
        }
        s[len++] = c;
    }
    if (!s || ps->p >= ps->end) {
        free(s);
        return NULL;
    }
    ps->p++;
    s[len] = 0;
    return s;
}

static int push(json *out, json *item, char *key)
{
    json *items = realloc(out->items, (out->len + 1) * sizeof(json));
    if (!items)
        return -1;
    out->items = items;
    if (out->type == JSON_OBJECT) {
        char **keys = realloc(out->keys, (out->len + 1) * sizeof(char *));
        if (!keys)
            return -1;
        out->keys = keys;
        out->keys[out->len] = key;
    }
    out->items[out->len++] = *item;
    return 0;
}

static int parse_container(parser *ps, json *out, char close)
{
    ps->p++;
    if (++ps->depth > 64)
        return -1;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        char *key = NULL;
        skip_ws(ps);
        if (out->type == JSON_OBJECT) {
            key = parse_string(ps);
            skip_ws(ps);
            if (!key || ps->p >= ps->end || *ps->p != ':') {
                free(key);
                return -1;
            }
            ps->p++;
        }
        json item;
        if (parse_value(ps, &item) != 0 || push(out, &item, key) != 0) {
            free(key);
            return -1;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            ps->depth--;
            return 0;
        }
        return -1;
    }
}

static int parse_value(parser *ps, json *out)
{
    memset(out, 0, sizeof(*out));
    skip_ws(ps);
    if (ps->p >= ps->end)
        return -1;
    char c = *ps->p;
    if (c == '{') {
        out->type = JSON_OBJECT;
        return parse_container(ps, out, '}');
    }
    if (c == '[') {
        out->type = JSON_ARRAY;
        return parse_container(ps, out, ']');
    }
    if (c == '"') {
        out->type = JSON_STRING;
        out->string = parse_string(ps);
        return out->string ? 0 : -1;
    }
    if (strncmp(ps->p, "null", 4) == 0) {
        ps->p += 4;
        return 0;
    }
    if (strncmp(ps->p, "true", 4) == 0 || strncmp(ps->p, "false", 5) == 0) {
        out->type = JSON_BOOL;
        out->number = c == 't';
        ps->p += c == 't' ? 4 : 5;
        return 0;
    }
    char *endp;
    out->type = JSON_NUMBER;
    out->number = strtod(ps->p, &endp);
    if (endp == ps->p)
        return -1;
    ps->p = endp;
    return 0;
}

static void free_inner(json *j)
{
    for (size_t i = 0; i < j->len; i++) {
        free_inner(&j->items[i]);
        if (j->keys)
            free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->string);
}

void json_free(json *j)
{
    if (!j)
        return;
    free_inner(j);
    free(j);
}

json *json_load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "json: cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    json *j = calloc(1, sizeof(json));
    if (!buf || !j || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        free(j);
        return NULL;
    }
    fclose(f);
    parser ps = {buf, buf + n, 0};
    if (parse_value(&ps, j) != 0) {
        fprintf(stderr, "json: parse error in %s at byte %ld\n", path, (long)(ps.p - buf));
        json_free(j);
        j = NULL;
    }
    free(buf);
    return j;
}

const json *json_get(const json *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->len; i++)
        if (strcmp(obj->keys[i], key) == 0)
            return &obj->items[i];
    return NULL;
}

const json *json_at(const json *arr, size_t i)
{
    if (!arr || (arr->type != JSON_ARRAY && arr->type != JSON_OBJECT) || i >= arr->len)
        return NULL;
    return &arr->items[i];
}
