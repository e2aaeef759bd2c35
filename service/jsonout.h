/* jsonout.h - writing JSON strings, for the tools' machine-readable output (sediment --json,
 * sediment-eval and sediment demo --json, sediment-ledger-bench, the Go interop emitter).
 */
#ifndef SDM_SERVICE_JSONOUT_H
#define SDM_SERVICE_JSONOUT_H

#include <stddef.h>
#include <stdio.h>

/* Writes the len bytes at s as one JSON string, quotes included: '"' and '\' escaped, control
 * characters and DEL as \u00XX, every other byte (UTF-8 included) as it is. */
void sdm_json_write_strn(FILE *f, const char *s, size_t len);

/* The same for a NUL-terminated string. */
void sdm_json_write_str(FILE *f, const char *s);

#endif /* SDM_SERVICE_JSONOUT_H */
