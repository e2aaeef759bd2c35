/* testdata.h - shared helpers for the CUnit suites: data, engines, stores and comparisons. */
#ifndef SDM_TESTS_TESTDATA_H
#define SDM_TESTS_TESTDATA_H

#include <CUnit/CUnit.h>
#include <stdint.h>

#include "sediment/engine.h"

/* The folder holding the tests' data (the first argument of every test program that is not
 * an option). */
extern const char *test_data_dir;

/* The backend the engine-level suites run on: cpu unless the program was started with
 * `--backend cuda` (CMake registers a `<test>_cuda` entry so when the build has CUDA). */
extern sdm_backend_kind test_backend;

/* Deterministic pseudo-random numbers (splitmix64). */
typedef struct test_rng {
    uint64_t state;
} test_rng;
uint64_t test_rng_u64(test_rng *r);
double test_rng_uniform(test_rng *r); /* [0, 1) */
double test_rng_normal(test_rng *r);

/* n floats of N(0, 1) times scale. Caller frees. */
float *test_random_floats(test_rng *r, uint64_t n, double scale);
/* Converts floats to f16 or bf16 (caller frees). */
uint16_t *test_to_half(const float *x, uint64_t n, sdm_dtype dtype);

sdm_engine_t *test_cpu_engine(size_t workspace_bytes);
/* An engine on test_backend; NULL (with a message on stderr) when it cannot be made. */
sdm_engine_t *test_engine(size_t workspace_bytes);

/* An engine on test_backend shared by a suite: CUnit init/cleanup functions that make and
 * free it. */
extern sdm_engine_t *test_eng;
int test_engine_setup(void);
int test_engine_teardown(void);

/* |a - b| <= tol * max(|b|, floor). */
int test_close(double a, double b, double tol, double floor);

/* Compares two attribution results: shard/contributor scores and shares within tol of the
 * per-query scale, hits equal by id (or, where ids differ, by score within tol: a near tie).
 * Reports the first difference through CUnit with `what` as context. */
void test_assert_results_close(const sdm_attr_result *got, const sdm_attr_result *want,
                               double tol, const char *what);

/* Scratch directories: test_scratch_make makes "$TMPDIR/<prefix>-XXXXXX" (TMPDIR defaults to
 * /tmp; 0 or -1), test_scratch_remove deletes it and everything in it (always 0, so it can be
 * a suite's cleanup), test_scratch_dir gives root/name removed first if a previous run left it,
 * made (0700) when make is set (a static buffer, valid until the next call). */
int test_scratch_make(const char *prefix);
int test_scratch_remove(void);
const char *test_scratch_dir(const char *name, int make);
/* Removes a file or a whole tree; symlinks are removed, not followed. */
void test_rm_tree(const char *path);

/* Reads the arguments (`--backend cpu|cuda`, then the data folder), runs the registered suites
 * with the basic runner and returns the failure count (capped). With `--backend cuda` and no
 * usable device it says so, registers nothing and returns 0: a run without a GPU has nothing
 * of the cuda backend's to check. */
int test_main(int argc, char **argv, int (*register_suites)(void));

#endif
