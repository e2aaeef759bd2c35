/* logreg.h - multinomial logistic regression with L2: the convex built-in model.
 *
 * z = W x + b with W (C x d) and b (C). Parameters, flattened: θ = [W row-major (C·d values),
 * b (C values)], P = C·d + C; gradient rows use the same order.
 *
 * The L2 term (λ/2)||θ||² covers the bias too: softmax does not change when a constant is
 * added to every logit, so without it the Hessian would be singular along b = (1, ..., 1)
 * and the influence-function ceiling (which solves with the Hessian) would be ill-posed.
 * With λ > 0 the objective is strictly convex and has exactly one minimiser.
 */
#ifndef SDM_MODELS_LOGREG_H
#define SDM_MODELS_LOGREG_H

#include "model.h"

/* A logistic regression for d inputs and `classes` classes (>= 2) with L2 weight l2 > 0
 * (finite), parameters zero. On failure returns NULL and, when given, the status and a
 * message naming the field. The caller owns the model (sdm_model_destroy). */
SDM_NODISCARD sdm_model_t *sdm_logreg_new(uint32_t d, uint32_t classes, double l2,
                                          sdm_status *status, char *err, size_t err_len);

/* The exact Hessian ∇²L(θ) (P x P, row-major, symmetric) of the training objective on ds
 * (n >= 1) at the current parameters:
 *   (1/n) Σ_i (diag(p_i) - p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ + λ I,   x̃ = (x, 1),
 * arranged in θ's order. Positive definite. SDM_ERR_UNSUPPORTED for a model that is not a
 * logistic regression. */
SDM_NODISCARD sdm_status sdm_logreg_hessian(sdm_model_t *model, const sdm_dataset *ds, double *out);

#endif
