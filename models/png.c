/* png.c - a minimal PNG writer and an RGB canvas with lines, boxes and a 5x7 font, for plots. */
#include "png.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MAX_SIDE 16384

sdm_canvas *sdm_canvas_new(uint32_t w, uint32_t h)
{
    if (w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE)
        return NULL;
    sdm_canvas *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->rgb = malloc((size_t)w * h * 3);
    if (!c->rgb) {
        free(c);
        return NULL;
    }
    memset(c->rgb, 0xff, (size_t)w * h * 3);
    c->w = w;
    c->h = h;
    return c;
}

void sdm_canvas_destroy(sdm_canvas **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->rgb);
    free(*self_p);
    *self_p = NULL;
}

static void put(sdm_canvas *c, int x, int y, uint32_t color)
{
    if (x < 0 || y < 0 || (uint32_t)x >= c->w || (uint32_t)y >= c->h)
        return;
    uint8_t *p = c->rgb + ((size_t)y * c->w + (size_t)x) * 3;
    p[0] = (uint8_t)(color >> 16);
    p[1] = (uint8_t)(color >> 8);
    p[2] = (uint8_t)color;
}

void sdm_canvas_fill(sdm_canvas *c, int x, int y, int w, int h, uint32_t color)
{
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++)
            put(c, i, j, color);
}

/* Bresenham: every step moves one pixel along the major axis. */
void sdm_canvas_line(sdm_canvas *c, int x0, int y0, int x1, int y1, uint32_t color)
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    for (;;) {
        put(c, x0, y0, color);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

/* 5x7 glyphs: seven rows, bit 4 the leftmost pixel. Drawn for this file. */
typedef struct glyph {
    char ch;
    uint8_t rows[7];
} glyph;

static const glyph font[] = {
    {' ', {0, 0, 0, 0, 0, 0, 0}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},
    {',', {0, 0, 0, 0, 0x0C, 0x04, 0x08}},
    {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
    {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0}},
    {'=', {0, 0, 0x1F, 0, 0x1F, 0, 0}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'[', {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E}},
    {']', {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}},
    {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},
    {'/', {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}},
    {'*', {0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0}},
    {'_', {0, 0, 0, 0, 0, 0, 0x1F}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'\'', {0x04, 0x04, 0x08, 0, 0, 0, 0}},
    {'"', {0x0A, 0x0A, 0, 0, 0, 0, 0}},
    {'#', {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}},
    {'!', {0x04, 0x04, 0x04, 0x04, 0x04, 0, 0x04}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04}},
    {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
};

static const uint8_t unknown_glyph[7] = {0, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0};

static const uint8_t *glyph_rows(char ch)
{
    char up = (char)toupper((unsigned char)ch);
    for (size_t g = 0; g < sizeof(font) / sizeof(font[0]); g++)
        if (font[g].ch == up)
            return font[g].rows;
    return unknown_glyph;
}

/* One cell per byte: a UTF-8 sequence's continuation bytes take no room, so a multi-byte
 * character is one (unknown) cell. */
static int cells(const char *text)
{
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        n += (*p & 0xC0) != 0x80;
    return n;
}

int sdm_canvas_text_width(const char *text, int scale)
{
    int n = cells(text);
    return n ? (6 * n - 1) * scale : 0;
}

int sdm_canvas_text(sdm_canvas *c, int x, int y, int scale, const char *text, uint32_t color)
{
    int cx = x;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p & 0xC0) == 0x80)
            continue;
        const uint8_t *rows = *p < 0x80 ? glyph_rows((char)*p) : unknown_glyph;
        for (int r = 0; r < 7; r++)
            for (int b = 0; b < 5; b++)
                if (rows[r] & (0x10 >> b))
                    sdm_canvas_fill(c, cx + b * scale, y + r * scale, scale, scale, color);
        cx += 6 * scale;
    }
    return sdm_canvas_text_width(text, scale);
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends a chunk (length, type, data, CRC of type and data) at *pos. */
static void chunk(uint8_t *buf, size_t *pos, const char type[4], const uint8_t *data, uint32_t len)
{
    uint8_t *p = buf + *pos;
    be32(p, len);
    memcpy(p + 4, type, 4);
    if (len)
        memcpy(p + 8, data, len);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, p + 4, 4 + len);
    be32(p + 8 + len, (uint32_t)crc);
    *pos += 12 + (size_t)len;
}

sdm_status sdm_png_encode(const uint8_t *rgb, uint32_t w, uint32_t h, uint8_t **out,
                          size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE || !rgb)
        return SDM_ERR_BAD_INPUT;
    /* every scanline starts with its filter type byte, 0 (none) */
    size_t stride = 1 + (size_t)w * 3, raw_len = stride * h;
    uint8_t *raw = malloc(raw_len);
    uLongf z_len = compressBound((uLong)raw_len);
    uint8_t *z = malloc(z_len);
    uint8_t *buf = malloc(8 + 25 + 12 + z_len + 12);
    if (!raw || !z || !buf) {
        free(raw);
        free(z);
        free(buf);
        return SDM_ERR_NOMEM;
    }
    for (uint32_t y = 0; y < h; y++) {
        raw[y * stride] = 0;
        memcpy(raw + y * stride + 1, rgb + (size_t)y * w * 3, (size_t)w * 3);
    }
    int zst = compress2(z, &z_len, raw, (uLong)raw_len, 9);
    free(raw);
    if (zst != Z_OK) {
        free(z);
        free(buf);
        return zst == Z_MEM_ERROR ? SDM_ERR_NOMEM : SDM_ERR_INTERNAL;
    }
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    size_t pos = 0;
    memcpy(buf, signature, 8);
    pos = 8;
    uint8_t ihdr[13];
    be32(ihdr, w);
    be32(ihdr + 4, h);
    ihdr[8] = 8;  /* bits per sample */
    ihdr[9] = 2;  /* colour type: RGB */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering (every row uses type 0) */
    ihdr[12] = 0; /* no interlace */
    chunk(buf, &pos, "IHDR", ihdr, 13);
    chunk(buf, &pos, "IDAT", z, (uint32_t)z_len);
    chunk(buf, &pos, "IEND", NULL, 0);
    free(z);
    *out = buf;
    *out_len = pos;
    return SDM_OK;
}

sdm_status sdm_canvas_write_png(const sdm_canvas *c, const char *path, char *err, size_t err_len)
{
    uint8_t *png;
    size_t len;
    sdm_status st = sdm_png_encode(c->rgb, c->w, c->h, &png, &len);
    if (st != SDM_OK) {
        if (err_len)
            snprintf(err, err_len, "png: encoding a %ux%u image failed (%s)", c->w, c->h,
                     sdm_status_str(st));
        return st;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        if (err_len)
            snprintf(err, err_len, "png: cannot write '%s': %s", path, strerror(errno));
        free(png);
        return SDM_ERR_NOT_FOUND;
    }
    size_t wrote = fwrite(png, 1, len, f);
    int closed = fclose(f);
    free(png);
    if (wrote != len || closed != 0) {
        if (err_len)
            snprintf(err, err_len, "png: writing '%s' failed: %s", path, strerror(errno));
        return SDM_ERR_INTERNAL;
    }
    return SDM_OK;
}
