/* test_ratelog.c - the servers' repeated-failure log lines (service/ratelog.c): the first of a
 * run logged, its repeats held back and counted, reported with the next line logged, and the
 * same line logged again once the quiet period is over; from several threads at once. */
#include <CUnit/Basic.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "ratelog.h"
#include "testdata.h"

static int take(sdm_ratelog *r, const char *line, char *held_line, uint64_t *held)
{
    return sdm_ratelog_take(r, line, held_line, 384, held);
}

static void test_runs(void)
{
    sdm_ratelog r;
    sdm_ratelog_init(&r);
    char prev[384];
    uint64_t held = 99;
    CU_ASSERT_EQUAL(take(&r, "disk full", prev, &held), 1);
    CU_ASSERT_EQUAL(held, 0);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(take(&r, "disk full", prev, &held), 0);
    /* another line: logged, with the five held back before it */
    CU_ASSERT_EQUAL(take(&r, "out of memory", prev, &held), 1);
    CU_ASSERT_EQUAL(held, 5);
    CU_ASSERT_STRING_EQUAL(prev, "disk full");
    /* and back: a new run, nothing held of "out of memory" */
    CU_ASSERT_EQUAL(take(&r, "disk full", prev, &held), 1);
    CU_ASSERT_EQUAL(held, 0);
    sdm_ratelog_destroy(&r);
}

static void test_quiet_period_ends(void)
{
    sdm_ratelog r;
    sdm_ratelog_init(&r);
    CU_ASSERT_EQUAL(r.quiet_ns, SDM_RATELOG_QUIET_NS);
    r.quiet_ns = 20 * 1000000ull; /* 20 ms */
    char prev[384];
    uint64_t held;
    CU_ASSERT_EQUAL(take(&r, "disk full", prev, &held), 1);
    CU_ASSERT_EQUAL(take(&r, "disk full", prev, &held), 0);
    CU_ASSERT_EQUAL(take(&r, "disk full", prev, &held), 0);
    struct timespec ts = {0, 30 * 1000000L};
    nanosleep(&ts, NULL);
    /* the same line once more, with the two repeats it held back */
    CU_ASSERT_EQUAL(take(&r, "disk full", prev, &held), 1);
    CU_ASSERT_EQUAL(held, 2);
    CU_ASSERT_STRING_EQUAL(prev, "disk full");
    sdm_ratelog_destroy(&r);
}

static void test_long_lines_compare_on_what_is_kept(void)
{
    sdm_ratelog r;
    sdm_ratelog_init(&r);
    char a[600], prev[384];
    uint64_t held;
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    CU_ASSERT_EQUAL(take(&r, a, prev, &held), 1);
    CU_ASSERT_EQUAL(take(&r, a, prev, &held), 0);
    CU_ASSERT_EQUAL(sdm_ratelog_take(&r, "y", NULL, 0, &held), 1);
    CU_ASSERT_EQUAL(held, 1);
    sdm_ratelog_destroy(&r);
}

/* What sdm_ratelog_log writes: the line, nothing for its repeats, then the count of those
 * before the next line. */
static void test_log_lines(void)
{
    sdm_ratelog r;
    sdm_ratelog_init(&r);
    FILE *f = tmpfile();
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    sdm_ratelog_log(&r, f, "prog", "internal error answered", "append: disk full");
    sdm_ratelog_log(&r, f, "prog", "internal error answered", "append: disk full");
    sdm_ratelog_log(&r, f, "prog", "internal error answered", "append: disk full");
    sdm_ratelog_log(&r, f, "prog", "internal error answered", "entry: out of memory");
    char text[512] = "";
    rewind(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    CU_ASSERT_STRING_EQUAL(text, "prog: internal error answered: append: disk full\n"
                                 "prog: internal error answered 2 more times: append: disk full\n"
                                 "prog: internal error answered: entry: out of memory\n");
    fclose(f);
    sdm_ratelog_destroy(&r);
}

typedef struct shared {
    sdm_ratelog r;
    int logged;
    uint64_t held;
    pthread_mutex_t mu;
} shared;

static void *hammer(void *arg)
{
    shared *s = arg;
    char prev[384];
    for (int i = 0; i < 1000; i++) {
        uint64_t held;
        if (take(&s->r, "disk full", prev, &held)) {
            pthread_mutex_lock(&s->mu);
            s->logged++;
            s->held += held;
            pthread_mutex_unlock(&s->mu);
        }
    }
    return NULL;
}

static void test_threads(void)
{
    shared s;
    memset(&s, 0, sizeof(s));
    sdm_ratelog_init(&s.r);
    pthread_mutex_init(&s.mu, NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, hammer, &s), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    /* 4000 calls: one logged, 3999 held back, all counted once the next line comes */
    CU_ASSERT_EQUAL(s.logged, 1);
    char prev[384];
    uint64_t held;
    CU_ASSERT_EQUAL(take(&s.r, "done", prev, &held), 1);
    CU_ASSERT_EQUAL(held, 3999);
    pthread_mutex_destroy(&s.mu);
    sdm_ratelog_destroy(&s.r);
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("ratelog", NULL, NULL);
    if (!s)
        return -1;
    CU_add_test(s, "runs of a line", test_runs);
    CU_add_test(s, "the quiet period ends", test_quiet_period_ends);
    CU_add_test(s, "long lines", test_long_lines_compare_on_what_is_kept);
    CU_add_test(s, "several threads", test_threads);
    CU_add_test(s, "the log lines", test_log_lines);
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
