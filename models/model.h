/* model.h - the built-in classifiers' common interface: parameters, loss, per-example gradients.
 *
 * A model maps an input x (d features) to C logits z = f(x; θ) with a flat parameter vector
 * θ of P doubles. Two kinds exist: multinomial logistic regression (logreg.h) and a
 * one-hidden-layer tanh MLP (mlp.h); everything below works for both, so the demo and the
 * evaluation never branch on the kind. All arithmetic is double; sdm_rows_to_f32 makes the
 * f32 rows the engine and the worker take.
 *
 * Definitions (n examples (x_i, y_i), p_i = softmax(z_i)):
 *   per-example loss   ℓ_i(θ) = -log p_i[y_i]                          (cross-entropy)
 *   training objective L(θ)   = (1/n) Σ_i ℓ_i(θ) + (λ/2) ||θ||²        (λ = the model's l2,
 *                               over every parameter, biases included: see logreg.h)
 *   true-class margin  m_i(θ) = z_i[y_i] - log Σ_{c≠y_i} exp z_i[c]   (= log(p/(1-p)) with
 *                               p = p_i[y_i]: the margin datamodels and TRAK evaluate)
 * Per-example rows are the unregularised ∇θ ℓ_i, so mean_i ∇θ ℓ_i + λθ = ∇L(θ).
 *
 * Gradient rows are row-major n x P: row i is the flattened gradient for example i in the
 * parameter order of the kind (logreg.h, mlp.h), exactly what a worker's `contribute` takes
 * as `grads` (after sdm_rows_to_f32).
 *
 * Sign convention for queries (SPEC §3: positive means the training example helps). A
 * gradient step on example i moves θ by -η ∇ℓ_i, which changes a query's margin by about
 * -η ∇ℓ_i · ∇m_q. So with training rows ∇ℓ_i, the query row whose positive scores mean
 * "raises the query's margin" is -∇m_q: negate sdm_model_margin_grads' rows before sending
 * them as queries (or send the query's own loss gradient, which points the same way up to
 * the factor (1 - p_q)).
 *
 * Threads and determinism: a model is used by one thread at a time (different models may be
 * used by different threads at once). Each call runs its BLAS on the calling thread (see
 * model_impl.h for why), so results depend only on the parameters, the data and the seeds,
 * and are bit-identical whatever OMP_NUM_THREADS is.
 *
 * Errors: fallible calls return a status and keep a message naming the field, read with
 * sdm_model_last_error. A failed call leaves the parameters and the outputs' meaning
 * unchanged (outputs may be partly written).
 */
#ifndef SDM_MODELS_MODEL_H
#define SDM_MODELS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "sediment/engine.h"

typedef struct sdm_model sdm_model_t;

void sdm_model_destroy(sdm_model_t **self_p);
/* A copy with the same kind, shape, l2 and parameters. NULL when out of memory. The caller
 * owns it. */
sdm_model_t *sdm_model_clone(const sdm_model_t *self);

const char *sdm_model_kind(const sdm_model_t *self);   /* "logreg" or "mlp" */
uint32_t sdm_model_input_dim(const sdm_model_t *self); /* d */
uint32_t sdm_model_classes(const sdm_model_t *self);   /* C */
uint64_t sdm_model_nparams(const sdm_model_t *self);   /* P */
double sdm_model_l2(const sdm_model_t *self);          /* λ */
/* The message of the last failed call on this model; "" when there is none. Borrowed. */
const char *sdm_model_last_error(const sdm_model_t *self);

/* The P parameters. Borrowed; valid until the model changes or is destroyed. */
const double *sdm_model_params(const sdm_model_t *self);
/* Copies P parameters in (all finite, else SDM_ERR_BAD_INPUT naming the index). */
SDM_NODISCARD sdm_status sdm_model_set_params(sdm_model_t *self, const double *params);
/* Sets the initial parameters for `seed`: zeros for logreg (the objective is convex, so the
 * seed does not matter); Glorot-uniform weights and zero biases for the MLP. */
void sdm_model_init(sdm_model_t *self, uint64_t seed);

/* L(θ) on ds (n >= 1) into *loss and, when grad is non-NULL, ∇L(θ) into grad (P). */
SDM_NODISCARD sdm_status sdm_model_loss(sdm_model_t *self, const sdm_dataset *ds, double *loss,
                                        double *grad);

/* Per-example loss gradients: out (n x P) row i = ∇θ ℓ_i; losses (n, optional) = ℓ_i. */
SDM_NODISCARD sdm_status sdm_model_example_grads(sdm_model_t *self, const sdm_dataset *ds,
                                                 double *out, double *losses);

/* True-class margins m_i (n), and their gradients: out (n x P) row i = ∇θ m_i. */
SDM_NODISCARD sdm_status sdm_model_margins(sdm_model_t *self, const sdm_dataset *ds,
                                           double *margins);
SDM_NODISCARD sdm_status sdm_model_margin_grads(sdm_model_t *self, const sdm_dataset *ds,
                                                double *out, double *margins);

/* Curvature rows (SPEC §3): for each draw t < draws and example i, a label ŷ drawn from the
 * model's own softmax p_i, and the row ∇θ ℓ(x_i, ŷ). Row t·n + i of out ((draws·n) x P);
 * labels (draws·n, optional) gets ŷ. The draw is u = uniform(seed, counter = ds->ids[i],
 * stream = t, tag "CURV") (models/rng.h), ŷ = the first class whose cumulative probability
 * exceeds u: it depends on the example's id, not its position, so a subset of a dataset
 * draws the same labels for the examples it keeps. ds's labels are not used. */
SDM_NODISCARD sdm_status sdm_model_sampled_grads(sdm_model_t *self, const sdm_dataset *ds,
                                                 uint32_t draws, uint64_t seed, double *out,
                                                 int32_t *labels);

/* Predicted classes (n, the arg max logit, the lower class on a tie) and, when probs is
 * non-NULL, the softmax probabilities (n x C). Either output may be NULL. */
SDM_NODISCARD sdm_status sdm_model_predict(sdm_model_t *self, const sdm_dataset *ds,
                                           int32_t *labels, double *probs);
/* Fraction of ds predicted correctly (0 for an empty dataset). */
SDM_NODISCARD sdm_status sdm_model_accuracy(sdm_model_t *self, const sdm_dataset *ds,
                                            double *accuracy);

/* out[i] = (float)in[i] for count values: gradient rows as the f32 matrices of SPEC §6. */
void sdm_rows_to_f32(const double *in, uint64_t count, float *out);

#endif
