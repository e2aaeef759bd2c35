/* eval.h - attribution quality measured against retraining: LDS and corrupted-contributor AUC.
 *
 * The evaluation behind `sediment eval` (SPEC §3's methods judged by what they predict):
 *
 *   1. The digits (digits.h) are split (seeded) into a training and a test part; the training
 *      part is dealt into `contributors` shards in file order (one shard per contributor).
 *      Contributor `corrupt` has a fraction of its labels shifted to a wrong class; the last
 *      contributor's shard is a copy of contributor 0's examples (new ids, same data).
 *   2. A model (logreg or mlp) is trained to convergence on everything (L-BFGS). Its
 *      per-example loss gradients are the training rows, −∇(true-class margin) of each test
 *      example the queries (model.h explains the sign), and sampled-label gradients the
 *      curvature rows (SPEC §3).
 *   3. The rows go into engine stores (projection `none`, k = P, and `rademacher` at
 *      proj_dim), and sdm_attribute scores every test example against every training
 *      example with dot, cosine and trak (trak with the curvature rows, and without them, i.e.
 *      the empirical Fisher of the training rows; each at SPEC's default damping and at the
 *      "matched" damping λ_c = (rows of K)·l2, which makes K + λ_c I an estimate of (rows of
 *      K) times the regularised Hessian). The ceiling is the influence function qᵀH⁻¹g with
 *      the exact Hessian (logreg) or the exact Gauss-Newton matrix (mlp).
 *   4. Ground truth: for each of `subsets` seeded random halves of the shards, and separately
 *      of the examples, the model is retrained from the same start to convergence on that
 *      half, and each test example's true-class margin measured.
 *      LDS = mean over test examples of Spearman(Σ_{i kept} S[q][i], measured margin of q)
 *      across the subsets.
 *   5. AUC: each training example's mean score over the test queries ranks the corrupted
 *      examples (labels changed) as harmful, i.e. lowest, against every other example.
 *
 * Retrains run in parallel with OpenMP (each model call is single-threaded, model.h). All
 * randomness is Philox (models/rng.h), so a run is reproducible from its options.
 */
#ifndef SDM_MODELS_EVAL_H
#define SDM_MODELS_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "dataset.h"
#include "sediment/engine.h"

typedef struct sdm_eval_opts {
    const char *model;     /* "logreg" or "mlp" */
    double l2;             /* the model's L2 weight λ (> 0 for logreg) */
    uint32_t hidden;       /* mlp hidden units */
    uint64_t n_test;       /* held-out digits; the rest (or n_train of them) train */
    uint64_t n_train;      /* training examples before the copy replaces the last shard;
                              0: every digit not in the test part */
    uint32_t contributors; /* shards, one per contributor (>= 4) */
    uint32_t corrupt;      /* the contributor whose labels are corrupted (not 0 or the last) */
    double corrupt_frac;   /* fraction of its examples whose label is shifted, in (0, 1] */
    uint32_t subsets;      /* R: random halves per ground truth (>= 3) */
    uint32_t proj_dim;     /* k of the rademacher stores (<= P) */
    uint32_t curv_draws;   /* sampled labels per training example for the curvature rows */
    double tol;            /* training gradient-norm tolerance, the model's and retrains' */
    uint64_t max_steps;    /* training step cap (L-BFGS) */
    uint64_t seed;         /* split, corruption, subsets, sampled labels, mlp start */
    int sweep;             /* also score trak (none, sampled) at λ = matched · 0.01 .. 100 */
    /* TracIn-CP rows: plain gradient descent from the same start with a constant lr for
     * gd_steps steps, checkpoints at steps T, 2T, .. ckpts·T (T = gd_steps / ckpts), each
     * weighted lr·T (the steps it stands for); 0 ckpts: no such rows */
    uint32_t ckpts;
    uint64_t gd_steps;
    double gd_lr;          /* 0: 1 / (½ max_i (|x_i|² + 1) + l2), logreg's smoothness bound */
    int keep_scores;       /* keep every row's scores and the ground truth in the result */
    /* progress lines (no newline), e.g. for stderr; NULL: silent */
    void (*progress)(void *ctx, const char *line);
    void *progress_ctx;
} sdm_eval_opts;

/* The defaults for a model kind ("logreg" or "mlp"): logreg l2 1e-3, tol 1e-6; mlp 32 tanh
 * units, l2 1e-2, tol 1e-5; 397 test digits, 10 contributors, contributor 3 fully corrupted,
 * 100 subsets, k = 256, four curvature draws, seed 1; TracIn-CP over 4 checkpoints of 2000
 * gradient-descent steps at the automatic lr. Returns SDM_ERR_BAD_INPUT for another
 * kind. */
SDM_NODISCARD sdm_status sdm_eval_opts_init(sdm_eval_opts *opts, const char *model);
/* Shrinks opts to a run of a few seconds: 500 training and 200 test digits, 20 subsets,
 * k = 64, a 200-step TracIn-CP path, a looser mlp tolerance. */
void sdm_eval_opts_quick(sdm_eval_opts *opts);

/* One scoring configuration and what it achieved. */
typedef struct sdm_eval_row {
    char name[64];           /* e.g. "trak curv matched" */
    const char *method;      /* "dot", "cosine", "trak", "influence" (the ceiling) */
    const char *projection;  /* "none" or "rademacher"; "exact" for the influence function */
    uint32_t k;              /* feature dim */
    const char *curvature;   /* trak's K: "sampled" (curvature rows), "empirical" (training
                                rows); the ceiling's "hessian" or "gauss-newton"; else "" */
    const char *lambda_rule; /* trak: "default" (SPEC), "matched" (rows of K · l2), or
                                "matched*<x>" (sweep); else "" */
    double lambda;           /* trak: the λ_c used (the engine's answer; over several
                                checkpoints their mean); else NaN */
    uint32_t checkpoints;    /* checkpoints scored: 1, or the TracIn-CP rows' count */
    double lds_shard;        /* LDS over random halves of the shards */
    double lds_shard_se;     /* its standard error across test examples */
    double lds_example;      /* LDS over random halves of the examples */
    double lds_example_se;
    double auc;       /* corrupted examples ranked lowest by mean score */
    int corrupt_rank; /* the corrupted contributor's rank by mean score, 1 = lowest */
    double seconds;   /* scoring time */
} sdm_eval_row;

typedef struct sdm_eval_result {
    char model[16];
    uint64_t nparams; /* P */
    double l2;
    uint32_t hidden;
    uint64_t n_train, n_test;
    uint32_t contributors, corrupt, copy_of, copier;
    uint64_t n_corrupted; /* examples whose label was changed */
    uint32_t subsets, curv_draws, proj_dim;
    uint64_t seed;
    double tol;
    /* the model trained on everything */
    uint64_t train_steps;
    int train_converged;
    double train_grad_norm;
    double train_accuracy, test_accuracy;
    double train_seconds;
    /* the gradient-descent path of the TracIn-CP rows (gd_ckpts 0: none) */
    uint32_t gd_ckpts;
    uint64_t gd_steps;
    double gd_lr, gd_loss, gd_test_accuracy; /* loss and accuracy at its last step */
    /* the retrains (2 x subsets) */
    uint32_t retrains, retrains_converged;
    double retrain_mean_steps, retrain_seconds;
    /* scoring configurations, in table order */
    size_t n_rows;
    sdm_eval_row *rows;
    /* for the plot: one test example's predicted vs measured margin across the shard
     * subsets, under row plot_row */
    size_t plot_row;
    uint64_t plot_query;             /* position of that test example */
    double *plot_pred, *plot_margin; /* subsets each */
    double seconds;                  /* the whole run */
    char backend[96];                /* the engine's device description */
    /* with opts.keep_scores (else NULL): per row its scores S (n_test x n_train, row-major);
     * the halves (subsets x n_train, 1 = kept) and the retrained margins (subsets x n_test)
     * of both ground truths; each training example's shard and whether its label changed */
    double **scores;
    uint8_t *shard_masks, *example_masks;
    double *shard_margins, *example_margins;
    uint32_t *shard_of;
    uint8_t *corrupted;
} sdm_eval_result;

/* Runs the evaluation on `data` (NULL: the bundled digits) with engine `eng` (NULL: a cpu
 * engine made for the run). On success *out is the caller's (sdm_eval_result_free). Bad
 * options are SDM_ERR_BAD_INPUT with a message naming the field in err. */
SDM_NODISCARD sdm_status sdm_eval_run(const sdm_eval_opts *opts, const sdm_dataset *data,
                                      sdm_engine_t *eng, sdm_eval_result **out, char *err,
                                      size_t err_len);
void sdm_eval_result_free(sdm_eval_result **self_p);

/* The result as a text table (stdout of `sediment eval`), as one JSON object, and as a PNG
 * plot (LDS bars per configuration beside the predicted-vs-measured scatter). */
void sdm_eval_print_table(const sdm_eval_result *r, FILE *f);
void sdm_eval_print_json(const sdm_eval_result *r, FILE *f);
SDM_NODISCARD sdm_status sdm_eval_write_png(const sdm_eval_result *r, const char *path, char *err,
                                            size_t err_len);
/* Several results (e.g. logreg and mlp) as one JSON array / one table after another. */
void sdm_eval_print_json_many(sdm_eval_result *const *r, size_t n, FILE *f);

/* ---- the statistics, exposed for tests ------------------------------------------------ */

/* The evaluation's contributors (step 1 above), shared with `sediment demo`: the first
 * per·C examples of pool (per = n_train / C) dealt into C shards in file order; in contributor
 * `corrupt`'s shard, round(corrupt_frac·per) labels (at least 1; seeded) shifted to a wrong
 * class; the last shard a copy of shard 0 under ids past every id of `all`, so the engine sees
 * new examples with the same data. */
typedef struct sdm_eval_deal {
    sdm_dataset *train;  /* per·C examples, shard c at rows [c·per, (c+1)·per) */
    uint64_t per;        /* examples per shard */
    uint32_t *shard_of;  /* train->n: the shard of each row */
    uint8_t *corrupted;  /* train->n: 1 where the label was changed */
    uint64_t n_corrupted;
} sdm_eval_deal;

SDM_NODISCARD sdm_status sdm_eval_deal_new(const sdm_dataset *all, const sdm_dataset *pool,
                                           uint64_t n_train, uint32_t C, uint32_t corrupt,
                                           double corrupt_frac, uint64_t seed, sdm_eval_deal *out,
                                           char *err, size_t err_len);
void sdm_eval_deal_free(sdm_eval_deal *d);

/* ranks (n) of x: 1 .. n ascending, ties get the average of the ranks they span. */
void sdm_eval_ranks(const double *x, uint64_t n, double *ranks);
/* Spearman's rank correlation of x and y (n): Pearson's correlation of their average ranks.
 * 0 when either is constant or n < 2 (no ordering to agree with). */
double sdm_eval_spearman(const double *x, const double *y, uint64_t n);
/* The probability that a random positive scores below a random negative, ties counting one
 * half (the Mann-Whitney AUC of ranking positives as lowest). NaN when either class is
 * empty. */
double sdm_eval_auc_low(const double *score, const uint8_t *positive, uint64_t n);
/* LDS of scores S (m x n, row-major) against R subsets: masks (R x n, 1 = kept) and measured
 * margins (R x m). pred[r][q] = Σ_i masks[r][i] S[q][i]; LDS = mean over q of
 * Spearman(pred[.][q], margins[.][q]). *se (optional) gets the standard error of that mean.
 * pred_out (optional, R x m) gets the predictions. */
double sdm_eval_lds(const double *S, uint64_t m, uint64_t n, const uint8_t *masks, uint32_t R,
                    const double *margins, double *se, double *pred_out);

/* The eval's command line (`sediment-eval [options]`, `--help` lists them); argv[0] is the
 * program's name. Returns the exit status: 0 ok, 1 a run failed, 2 usage. */
int sdm_eval_main(int argc, char **argv);

#endif
