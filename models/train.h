/* train.h - full-batch training to convergence, keeping checkpoints and their learning rates.
 *
 * Training minimises the model's objective L(θ) (model.h) on one dataset, starting from the
 * model's current parameters (sdm_model_init gives the standard start) and leaving the model
 * at the last iterate. Two methods:
 *
 *   SDM_TRAIN_LBFGS  limited-memory BFGS (two-loop recursion, `lbfgs_memory` pairs) with a
 *                    backtracking Armijo line search from a unit step. Fast: the way to
 *                    reach the optimum (retraining for evaluations, TRAK and influence
 *                    functions at the optimum).
 *   SDM_TRAIN_GD     plain gradient descent θ_{t+1} = θ_t - lr ∇L(θ_t) with a constant lr.
 *                    Slow to converge, but its checkpoints carry a real learning rate, which
 *                    is what TracIn-CP (SPEC §1, a checkpoint's lr weight) sums over.
 *
 * Stopping rule (both): stop at the first step t with ||∇L(θ_t)||₂ <= tol (converged), or at
 * t = max_steps, or, for L-BFGS, when the line search cannot decrease L (rounding floor).
 * Step t's checkpoint holds θ_t, the parameters after t updates (step 0: the start).
 *
 * A checkpoint's lr: for GD, the lr of the update taken from it (the constant lr); L-BFGS has
 * no single learning rate (its steps are scaled by a curvature estimate), so its checkpoints
 * carry opts.lr as a caller-chosen weight (1.0 when opts.lr is 0).
 *
 * Deterministic: the same model, data and options give bit-identical checkpoints, whatever
 * the thread count (model.h).
 */
#ifndef SDM_MODELS_TRAIN_H
#define SDM_MODELS_TRAIN_H

#include "model.h"

typedef enum sdm_train_method {
    SDM_TRAIN_LBFGS = 0,
    SDM_TRAIN_GD = 1,
} sdm_train_method;

typedef struct sdm_train_opts {
    sdm_train_method method;
    double lr;                  /* GD: the step size, required (> 0); L-BFGS: see above */
    double tol;                 /* gradient-norm tolerance; 0: 1e-6 */
    uint64_t max_steps;         /* 0: 10,000 */
    const uint64_t *save_steps; /* steps whose checkpoints to keep (any order; steps past */
    size_t n_save;              /*   the end of training are not kept) */
    uint64_t save_every;        /* also keep every save_every-th step from 0 (0: none) */
    uint32_t lbfgs_memory;      /* L-BFGS pairs kept; 0: 10 */
} sdm_train_opts;

typedef struct sdm_checkpoint {
    uint64_t step;
    double lr;        /* the checkpoint's lr weight (see above) */
    double loss;      /* L(θ_step) */
    double grad_norm; /* ||∇L(θ_step)||₂ */
    double *params;   /* P values, owned by the result */
} sdm_checkpoint;

typedef struct sdm_train_result {
    uint64_t steps;       /* updates taken; the final iterate is θ_steps */
    int converged;        /* 1 when ||∇L(θ_steps)||₂ <= tol */
    const char *stop;     /* "converged", "max_steps", "line_search" or "diverged" (static) */
    double loss;          /* L at the final iterate */
    double grad_norm;     /* ||∇L||₂ at the final iterate */
    uint64_t evaluations; /* loss-and-gradient evaluations on the whole dataset */
    double seconds;       /* wall time */
    size_t n_checkpoints; /* the requested steps that were reached, plus the final step */
    sdm_checkpoint *checkpoints; /* ascending step; the last is the final iterate */
} sdm_train_result;

/* Trains model on ds (n >= 1). On success *out is the caller's (sdm_train_result_free); not
 * converging is not an error (see result->converged and result->stop). Bad options are
 * SDM_ERR_BAD_INPUT naming the field, with the model unchanged. A GD run whose loss stops
 * being finite ends with stop "diverged" and the model at the last finite iterate. */
SDM_NODISCARD sdm_status sdm_model_train(sdm_model_t *model, const sdm_dataset *ds,
                                         const sdm_train_opts *opts, sdm_train_result **out);

/* The checkpoint of a step, or NULL when that step was not kept. Borrowed from the result. */
const sdm_checkpoint *sdm_train_result_at(const sdm_train_result *result, uint64_t step);

void sdm_train_result_free(sdm_train_result **self_p);

#endif
