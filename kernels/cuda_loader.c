/* cuda_loader.c - the engine's side of the cuda backend in a build with CUDA.
 *
 * The kernels and the cuBLAS and cuSOLVER calls live in a module of their own,
 * libsediment_cuda.so, linked against the CUDA libraries; the engine is not. The first call
 * that wants a device (sdm_cuda_backend_init, sdm_cuda_device_count) loads the module, once
 * per process, so that programs and runs that never want one (the ledger, `--backend cpu`)
 * start without the CUDA libraries, and a build with CUDA runs on a machine without them, on
 * the cpu backend (`auto`) or with a clear error (`cuda`).
 *
 * Where the module is looked for, in order:
 *   1. the file named by $SDM_CUDA_MODULE, when set (and only there);
 *   2. beside the program: <dir of /proc/self/exe>/libsediment_cuda.so;
 *   3. <that dir>/../lib/libsediment_cuda.so (the build tree: programs in bin/, the module
 *      in lib/; the same for an installed prefix);
 *   4. by name, through the dynamic loader's search (LD_LIBRARY_PATH, ld.so.cache).
 * A module found but not loadable (a CUDA library missing, another build's module) ends the
 * search with that reason; the message names the file.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

#define MODULE "libsediment_cuda.so"

static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static sdm_status (*s_init)(sdm_backend *, int);
static int (*s_count)(void);
static char s_error[1200];

/* Opens path and takes its entry points: 1; 0 with s_error set. */
static int take(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(s_error, sizeof(s_error), "cannot load the cuda module %s: %s", path,
                 why ? why : "unknown error");
        return 0;
    }
    const uint32_t *abi = dlsym(h, "sdm_cudamod_abi");
    void *init = dlsym(h, "sdm_cudamod_backend_init"), *count = dlsym(h, "sdm_cudamod_device_count");
    if (!abi || !init || !count || *abi != SDM_CUDAMOD_ABI) {
        snprintf(s_error, sizeof(s_error), "the cuda module %s is not of this build (%s); "
                 "rebuild it with the program", path, !abi || !init || !count
                 ? "an entry point is missing" : "another interface version");
        dlclose(h);
        return 0;
    }
    /* never closed: the backends it makes point into it until the process ends */
    memcpy(&s_init, &init, sizeof(init));
    memcpy(&s_count, &count, sizeof(count));
    s_error[0] = '\0';
    return 1;
}

static void load(void)
{
    const char *env = getenv("SDM_CUDA_MODULE");
    if (env && *env) {
        if (access(env, F_OK) != 0)
            snprintf(s_error, sizeof(s_error), "the cuda module SDM_CUDA_MODULE=%s does not exist",
                     env);
        else
            take(env);
        return;
    }
    char dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
    if (n > 0) {
        dir[n] = '\0';
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        const char *const where[] = {"%s/" MODULE, "%s/../lib/" MODULE};
        for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
            char path[PATH_MAX + 64];
            snprintf(path, sizeof(path), where[i], dir);
            if (access(path, F_OK) == 0)
                return (void)take(path);
        }
    }
    if (!take(MODULE))
        snprintf(s_error, sizeof(s_error), "the cuda module " MODULE " was not found (not "
                 "beside the program, not in its ../lib, not on the library path; "
                 "SDM_CUDA_MODULE names it)");
}

sdm_status sdm_cuda_backend_init(sdm_backend *be, int device)
{
    pthread_once(&s_once, load);
    if (!s_init) {
        memset(be, 0, sizeof(*be));
        return sdm_backend_fail(be, SDM_ERR_UNSUPPORTED, "%s", s_error);
    }
    return s_init(be, device);
}

int sdm_cuda_device_count(void)
{
    pthread_once(&s_once, load);
    return s_count ? s_count() : 0;
}
