/* ratelog.c - the same log line at most once a minute (ratelog.h). */
#include "ratelog.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void sdm_ratelog_init(sdm_ratelog *r)
{
    memset(r, 0, sizeof(*r));
    r->quiet_ns = SDM_RATELOG_QUIET_NS;
    pthread_mutex_init(&r->mu, NULL);
}

void sdm_ratelog_destroy(sdm_ratelog *r)
{
    pthread_mutex_destroy(&r->mu);
}

int sdm_ratelog_take(sdm_ratelog *r, const char *line, char *held_line, size_t cap,
                     uint64_t *held)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    int take = 1;
    *held = 0;
    pthread_mutex_lock(&r->mu);
    if (r->at_ns && strncmp(line, r->last, sizeof(r->last) - 1) == 0 &&
        now - r->at_ns < r->quiet_ns) {
        r->repeats++;
        take = 0;
    } else {
        *held = r->repeats;
        if (cap)
            snprintf(held_line, cap, "%s", r->last);
        snprintf(r->last, sizeof(r->last), "%s", line);
        r->at_ns = now;
        r->repeats = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return take;
}

void sdm_ratelog_log(sdm_ratelog *r, FILE *f, const char *program, const char *what,
                     const char *line)
{
    char held_line[sizeof(r->last)];
    uint64_t held;
    if (!sdm_ratelog_take(r, line, held_line, sizeof(held_line), &held))
        return;
    if (held)
        fprintf(f, "%s: %s %" PRIu64 " more times: %s\n", program, what, held, held_line);
    fprintf(f, "%s: %s: %s\n", program, what, line);
}
