/* fileio.c - whole reads and writes and directory fsyncs, the file calls the service shares. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"

/* Linux moves at most ~2 GiB a call; ask for less and loop */
#define IO_CHUNK ((size_t)1 << 30)

int sdm_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len > IO_CHUNK ? IO_CHUNK : len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) { /* no progress and no error: do not spin */
            errno = EIO;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int sdm_read_all(int fd, void *buf, size_t len, size_t *got)
{
    uint8_t *p = buf;
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        ssize_t r = read(fd, p + *got, want > IO_CHUNK ? IO_CHUNK : want);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            return 0;
        *got += (size_t)r;
    }
    return 0;
}

int sdm_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int sdm_fsync_parent(const char *path)
{
    char parent[PATH_MAX];
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') /* "a/b/" names b */
        len--;
    while (len > 0 && path[len - 1] != '/')
        len--;
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 0)
        return sdm_fsync_dir(".");
    if (len >= sizeof(parent)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(parent, path, len);
    parent[len] = '\0';
    return sdm_fsync_dir(parent);
}

/* Makes dir (0700) unless it exists as a directory; *made says whether it was made. */
int sdm_make_dir(const char *path, int *made, char *err, size_t err_len)
{
    *made = 0;
    if (mkdir(path, 0700) == 0) {
        *made = 1;
        return 0;
    }
    if (errno != EEXIST) {
        sdm_errf(err, err_len, "%s: cannot create directory: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        sdm_errf(err, err_len, "%s: exists and is not a directory", path);
        return -1;
    }
    return 0;
}

char *sdm_trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}
