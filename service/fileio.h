/* fileio.h - whole reads and writes and directory fsyncs, the file calls the service shares.
 *
 * read() and write() may move fewer bytes than asked and fail with EINTR; these loop until
 * the job is done. Each returns 0, or -1 with errno set as the failing call left it.
 */
#ifndef SDM_SERVICE_FILEIO_H
#define SDM_SERVICE_FILEIO_H

#include <stddef.h>

/* Writes all len bytes of buf to fd. On -1 some of them may have been written. */
int sdm_write_all(int fd, const void *buf, size_t len);

/* Reads into buf until it holds len bytes or the file ends: 0 with *got the bytes read
 * (less than len only at the end of the file), or -1 with *got what came before the error. */
int sdm_read_all(int fd, void *buf, size_t len, size_t *got);

/* fsyncs the directory path, so that entries made or renamed in it survive a power cut. */
int sdm_fsync_dir(const char *path);

/* fsyncs the directory that holds path ("." for a name without a '/'). */
int sdm_fsync_parent(const char *path);

/* Makes dir (mode 0700) unless it exists as a directory; *made says whether it was made.
 * 0, or -1 with err set. */
int sdm_make_dir(const char *path, int *made, char *err, size_t err_len);

/* Strips spaces, tabs and line ends from both ends of s in place (a line or a small file read
 * as text: a key, a verifier key); returns the first kept character. */
char *sdm_trim(char *s);

#endif /* SDM_SERVICE_FILEIO_H */
