/* errmsg.h - the service's "char *err, size_t err_len" convention: one formatter for all. */
#ifndef SDM_SERVICE_ERRMSG_H
#define SDM_SERVICE_ERRMSG_H

#include <stddef.h>

/* Formats a message into err (err_len bytes, always NUL-terminated); does nothing when err
 * is NULL or err_len is 0. */
void sdm_errf(char *err, size_t err_len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif /* SDM_SERVICE_ERRMSG_H */
