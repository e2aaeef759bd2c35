/* model_impl.h - inside a model: the per-kind interface that model.c's shared code calls.
 *
 * model.c owns everything about labels (losses, margins, sampled labels, softmax); a kind only
 * knows its network: the logits of a batch (forward) and the vector-Jacobian products that
 * turn a logit-space vector r_i (C values per example) into parameter space, per example
 * (backward_rows) or summed (backward_sum). Every loss, margin and curvature gradient is one
 * backward with a different r: p - e_y, e_y - q, p - e_ŷ.
 */
#ifndef SDM_MODELS_MODEL_IMPL_H
#define SDM_MODELS_MODEL_IMPL_H

#include <omp.h>
#include <stdarg.h>

#include "model.h"

typedef struct sdm_model_i {
    const char *kind;
    /* z (n x C) = f(x; θ) for x (n x d). Keeps what backward needs (the MLP's hidden
     * activations) in the model until the next forward. */
    sdm_status (*forward)(sdm_model_t *m, const double *x, uint64_t n, double *z);
    /* out (n x P) row i = J_iᵀ r_i, J_i = ∂z_i/∂θ at the last forward, which was on the same
     * x and n. */
    sdm_status (*backward_rows)(sdm_model_t *m, const double *x, uint64_t n, const double *r,
                                double *out);
    /* grad (P) = Σ_i J_iᵀ r_i, after a forward on the same x and n. */
    sdm_status (*backward_sum)(sdm_model_t *m, const double *x, uint64_t n, const double *r,
                               double *grad);
    /* Initial parameters for seed. */
    void (*init)(sdm_model_t *m, uint64_t seed);
} sdm_model_i;

struct sdm_model {
    const sdm_model_i *vt;
    uint32_t d, classes;
    uint32_t hidden; /* mlp: hidden units; 0 for logreg */
    uint64_t nparams;
    double l2;
    double *params;
    /* mlp: tanh activations (act_rows x hidden) of the last forward */
    double *act;
    uint64_t act_rows, act_cap;
    char err[256];
};

/* The models' products are small (n x d x C is about 1e6 for the digits), and on a 2-core
 * machine OpenBLAS's threads cost more than they give (an MLP evaluation took 1.7 ms on one
 * thread and 9-16 ms on two while other work ran). So every model call runs its BLAS on the
 * calling thread, which also makes results independent of the thread count; callers get
 * parallelism across models (retrains) instead. OpenBLAS's OpenMP build reads the calling
 * thread's omp_get_max_threads() at each call, so this is local to the thread. */
static inline int sdm_blas_single_begin(void)
{
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    return saved;
}

static inline void sdm_blas_single_end(int saved)
{
    omp_set_num_threads(saved);
}

/* Makes a model of the given kind and shape with zero parameters; NULL when out of memory. */
sdm_model_t *sdm_model_alloc(const sdm_model_i *vt, uint32_t d, uint32_t classes, uint32_t hidden,
                             uint64_t nparams, double l2);
/* Records a message on the model and returns st. */
sdm_status sdm_model_fail(sdm_model_t *m, sdm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes a message to err (if err_len > 0) and returns st: for constructors. */
sdm_status sdm_models_errf(char *err, size_t err_len, sdm_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
