/* replay_main.c - runs every file of a corpus folder through the fuzz target once, so that
 * CTest replays the committed corpus under ASan without libFuzzer. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads a whole file into an exactly sized buffer (so ASan sees any read past its end). */
static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && st.st_size >= 0) {
        *size = (size_t)st.st_size;
        buf = malloc(*size ? *size : 1);
        if (buf && fread(buf, 1, *size, f) != *size) {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    DIR *dir = opendir(argv[1]);
    if (!dir) {
        perror(argv[1]);
        return 1;
    }
    size_t runs = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        size_t plen = strlen(argv[1]) + strlen(e->d_name) + 2;
        char *path = malloc(plen);
        if (!path)
            return 1;
        snprintf(path, plen, "%s/%s", argv[1], e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        size_t size = 0;
        uint8_t *buf = read_file(path, &size);
        if (!buf) {
            fprintf(stderr, "%s: cannot read\n", path);
            failed++;
        } else {
            LLVMFuzzerTestOneInput(buf, size);
            free(buf);
            runs++;
        }
        free(path);
    }
    closedir(dir);
    printf("replayed %zu inputs from %s\n", runs, argv[1]);
    if (runs == 0) {
        fprintf(stderr, "%s: no inputs\n", argv[1]);
        return 1;
    }
    return failed ? 1 : 0;
}
