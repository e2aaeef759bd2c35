/* png.h - a minimal PNG writer and an RGB canvas with lines, boxes and a 5x7 font, for plots.
 *
 * Enough to draw the evaluation's charts without a plotting library: 8-bit RGB, one IDAT
 * chunk compressed with zlib, no interlacing, filter type 0 on every row (PNG spec, ISO/IEC
 * 15948). Text is upper-case ASCII from a built-in 5x7 bitmap font (lower case is drawn as
 * upper case; characters without a glyph are drawn as a small box).
 */
#ifndef SDM_MODELS_PNG_H
#define SDM_MODELS_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "sediment/engine.h"

typedef struct sdm_canvas {
    uint32_t w, h;
    uint8_t *rgb; /* h rows of w pixels, 3 bytes each */
} sdm_canvas;

/* A white canvas; NULL when out of memory or a side is 0 or above 16384. Caller frees with
 * sdm_canvas_destroy (NULL-safe, clears the pointer). */
sdm_canvas *sdm_canvas_new(uint32_t w, uint32_t h);
void sdm_canvas_destroy(sdm_canvas **self_p);

/* Drawing clips to the canvas; coordinates may be negative. Colours are 0xRRGGBB. */
void sdm_canvas_fill(sdm_canvas *c, int x, int y, int w, int h, uint32_t color);
void sdm_canvas_line(sdm_canvas *c, int x0, int y0, int x1, int y1, uint32_t color);
/* Text with its top-left corner at (x, y), each font pixel scale x scale. Returns the width
 * drawn in pixels. */
int sdm_canvas_text(sdm_canvas *c, int x, int y, int scale, const char *text, uint32_t color);
/* The width text would take at scale. */
int sdm_canvas_text_width(const char *text, int scale);

/* Encodes w x h RGB pixels as a PNG in memory: *out (caller frees) of *out_len bytes. */
SDM_NODISCARD sdm_status sdm_png_encode(const uint8_t *rgb, uint32_t w, uint32_t h, uint8_t **out,
                                        size_t *out_len);
/* Writes the canvas to path as a PNG. Errors name the path in err. */
SDM_NODISCARD sdm_status sdm_canvas_write_png(const sdm_canvas *c, const char *path, char *err,
                                              size_t err_len);

#endif
