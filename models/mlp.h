/* mlp.h - a one-hidden-layer tanh MLP: the non-convex built-in model.
 *
 * h = tanh(W1 x + b1), z = W2 h + b2, with W1 (H x d), b1 (H), W2 (C x H), b2 (C).
 * Parameters, flattened: θ = [W1 row-major, b1, W2 row-major, b2], P = H·d + H + C·H + C;
 * gradient rows use the same order.
 *
 * Why tanh and not ReLU: tanh is smooth, so the loss, margin and their gradients have
 * derivatives everywhere; finite-difference checks are exact to rounding, and curvature
 * (Gauss-Newton, Hessian-vector) estimates are not thrown off by kinks where an example sits
 * on a ReLU's hinge. On 8x8 digits the two reach the same accuracy.
 *
 * The L2 term (λ/2)||θ||² covers every parameter, as for logreg.
 */
#ifndef SDM_MODELS_MLP_H
#define SDM_MODELS_MLP_H

#include "model.h"

/* An MLP for d inputs, `hidden` tanh units (>= 1) and `classes` classes (>= 2) with L2 weight
 * l2 >= 0 (finite), initialised by sdm_model_init(m, seed): weights uniform in ±sqrt(6 /
 * (fan_in + fan_out)) (Glorot), biases zero; weight k is uniform(seed, k, 0, "INIT") mapped to
 * that interval (models/rng.h). On failure returns NULL and, when given, the status and a
 * message naming the field. The caller owns the model (sdm_model_destroy). */
SDM_NODISCARD sdm_model_t *sdm_mlp_new(uint32_t d, uint32_t hidden, uint32_t classes, double l2,
                                       uint64_t seed, sdm_status *status, char *err,
                                       size_t err_len);

#endif
