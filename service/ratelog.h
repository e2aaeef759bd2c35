/* ratelog.h - keeping a server's log readable when the same failure repeats: a client that
 * retries against a full disk would otherwise write one line per retry.
 *
 * A line is logged the first time, and the same line again only once SDM_RATELOG_QUIET_NS have
 * passed since it was last logged; the repeats held back in between are counted and reported
 * with the next line logged. Any thread may call it.
 */
#ifndef SDM_SERVICE_RATELOG_H
#define SDM_SERVICE_RATELOG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SDM_RATELOG_QUIET_NS (60ull * 1000000000ull)

typedef struct sdm_ratelog {
    pthread_mutex_t mu;
    char last[384];    /* the last line logged */
    uint64_t at_ns;    /* when (monotonic) */
    uint64_t repeats;  /* the same line since, held back */
    uint64_t quiet_ns; /* SDM_RATELOG_QUIET_NS unless a test sets another */
} sdm_ratelog;

void sdm_ratelog_init(sdm_ratelog *r);
void sdm_ratelog_destroy(sdm_ratelog *r);

/* Whether line should be logged now. When it should and repeats of the line logged before
 * were held back, *held is their number and held_line (cap bytes) that line, to report
 * first; else *held is 0. */
int sdm_ratelog_take(sdm_ratelog *r, const char *line, char *held_line, size_t cap,
                     uint64_t *held);

/* Logs "PROGRAM: WHAT: LINE" on f unless the ratelog holds it back, preceded, when repeats
 * of the line logged before were held back, by "PROGRAM: WHAT N more times: THAT LINE". */
void sdm_ratelog_log(sdm_ratelog *r, FILE *f, const char *program, const char *what,
                     const char *line);

#endif /* SDM_SERVICE_RATELOG_H */
