/* digits.h - the bundled UCI handwritten digits (8x8, 1,797 images): a checked loader.
 *
 * The file is models/data/digits.csv.gz (see models/data/README.md for its source, licence
 * and format). The loader refuses any file whose SHA-256 is not the bundled one's, so every
 * run of the demo and the evaluation sees the same examples.
 */
#ifndef SDM_MODELS_DIGITS_H
#define SDM_MODELS_DIGITS_H

#include "dataset.h"

#define SDM_DIGITS_N 1797
#define SDM_DIGITS_D 64
#define SDM_DIGITS_CLASSES 10
/* SHA-256 of models/data/digits.csv.gz */
#define SDM_DIGITS_SHA256 "46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a"

/* Where the bundled file is: $SDM_DIGITS when set, else the source tree's
 * models/data/digits.csv.gz (fixed at build time). Borrowed; never NULL. */
const char *sdm_digits_default_path(void);

/* Loads the digits from path (NULL: sdm_digits_default_path()) into *out: n = 1,797,
 * d = 64 features x/16 in [0, 1], classes = 10, ids = the line numbers 0 .. 1,796.
 * Errors, each with a message in err (if err_len > 0) and *out left NULL:
 * SDM_ERR_NOT_FOUND when the file cannot be read, SDM_ERR_BAD_INPUT when its SHA-256
 * differs (the message gives both digests) or its contents do not parse, SDM_ERR_NOMEM. */
SDM_NODISCARD sdm_status sdm_digits_load(const char *path, sdm_dataset **out, char *err,
                                         size_t err_len);

#endif
