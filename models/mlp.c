/* mlp.c - one-hidden-layer tanh MLP: logits, vector-Jacobian products and Glorot init. */
#include "mlp.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_impl.h"
#include "rng.h"

/* Offsets of W1, b1, W2, b2 in θ. */
typedef struct layout {
    uint64_t w1, b1, w2, b2;
} layout;

static layout layout_of(const sdm_model_t *m)
{
    uint64_t H = m->hidden, d = m->d, C = m->classes;
    layout l = {0, H * d, H * d + H, H * d + H + C * H};
    return l;
}

static sdm_status mlp_forward(sdm_model_t *m, const double *x, uint64_t n, double *z)
{
    uint32_t C = m->classes, d = m->d, H = m->hidden;
    layout l = layout_of(m);
    const double *th = m->params;
    if (n * H > m->act_cap) {
        double *a = realloc(m->act, n * H * sizeof(double));
        if (!a)
            return sdm_model_fail(m, SDM_ERR_NOMEM, "mlp: out of memory for %llu activations",
                                  (unsigned long long)(n * H));
        m->act = a;
        m->act_cap = n * H;
    }
    m->act_rows = n;
    if (n == 0)
        return SDM_OK;
    double *h = m->act;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)H, (int)d, 1.0, x, (int)d,
                th + l.w1, (int)d, 0.0, h, (int)H);
    for (uint64_t i = 0; i < n; i++)
        for (uint32_t k = 0; k < H; k++)
            h[i * H + k] = tanh(h[i * H + k] + th[l.b1 + k]);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)C, (int)H, 1.0, h, (int)H,
                th + l.w2, (int)H, 0.0, z, (int)C);
    for (uint64_t i = 0; i < n; i++)
        for (uint32_t c = 0; c < C; c++)
            z[i * C + c] += th[l.b2 + c];
    return SDM_OK;
}

/* delta (n x H) = (r W2) ⊙ (1 - h²): the logit-space vectors pulled back to the hidden
 * pre-activations. Caller frees. */
static sdm_status hidden_delta(sdm_model_t *m, uint64_t n, const double *r, double **out)
{
    uint32_t C = m->classes, H = m->hidden;
    layout l = layout_of(m);
    if (m->act_rows != n)
        return sdm_model_fail(m, SDM_ERR_INTERNAL, "mlp: backward on %llu rows, forward on %llu",
                              (unsigned long long)n, (unsigned long long)m->act_rows);
    double *delta = malloc((n * H + 1) * sizeof(double));
    if (!delta)
        return sdm_model_fail(m, SDM_ERR_NOMEM, "mlp: out of memory");
    if (n > 0)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)H, (int)C, 1.0, r,
                    (int)C, m->params + l.w2, (int)H, 0.0, delta, (int)H);
    for (uint64_t i = 0; i < n * H; i++)
        delta[i] *= 1.0 - m->act[i] * m->act[i];
    *out = delta;
    return SDM_OK;
}

static sdm_status mlp_backward_rows(sdm_model_t *m, const double *x, uint64_t n, const double *r,
                                    double *out)
{
    uint32_t C = m->classes, d = m->d, H = m->hidden;
    uint64_t P = m->nparams;
    layout l = layout_of(m);
    double *delta;
    sdm_status st = hidden_delta(m, n, r, &delta);
    if (st != SDM_OK)
        return st;
    for (uint64_t i = 0; i < n; i++) {
        const double *xi = x + i * d, *ri = r + i * C, *hi = m->act + i * H, *di = delta + i * H;
        double *row = out + i * P;
        for (uint32_t k = 0; k < H; k++) {
            double *w = row + l.w1 + (uint64_t)k * d;
            for (uint32_t j = 0; j < d; j++)
                w[j] = di[k] * xi[j];
            row[l.b1 + k] = di[k];
        }
        for (uint32_t c = 0; c < C; c++) {
            double *w = row + l.w2 + (uint64_t)c * H;
            for (uint32_t k = 0; k < H; k++)
                w[k] = ri[c] * hi[k];
            row[l.b2 + c] = ri[c];
        }
    }
    free(delta);
    return SDM_OK;
}

static sdm_status mlp_backward_sum(sdm_model_t *m, const double *x, uint64_t n, const double *r,
                                   double *grad)
{
    uint32_t C = m->classes, d = m->d, H = m->hidden;
    layout l = layout_of(m);
    double *delta;
    sdm_status st = hidden_delta(m, n, r, &delta);
    if (st != SDM_OK)
        return st;
    /* W1: deltaᵀ x; W2: rᵀ h; biases: column sums */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)H, (int)d, (int)n, 1.0, delta, (int)H,
                x, (int)d, 0.0, grad + l.w1, (int)d);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)H, (int)n, 1.0, r, (int)C,
                m->act, (int)H, 0.0, grad + l.w2, (int)H);
    memset(grad + l.b1, 0, H * sizeof(double));
    memset(grad + l.b2, 0, C * sizeof(double));
    for (uint64_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < H; k++)
            grad[l.b1 + k] += delta[i * H + k];
        for (uint32_t c = 0; c < C; c++)
            grad[l.b2 + c] += r[i * C + c];
    }
    free(delta);
    return SDM_OK;
}

static void mlp_init(sdm_model_t *m, uint64_t seed)
{
    uint32_t C = m->classes, d = m->d, H = m->hidden;
    layout l = layout_of(m);
    double a1 = sqrt(6.0 / (double)(d + H)), a2 = sqrt(6.0 / (double)(H + C));
    memset(m->params, 0, m->nparams * sizeof(double));
    for (uint64_t k = l.w1; k < l.b1; k++)
        m->params[k] = a1 * (2.0 * sdm_rng_uniform(seed, k, 0, SDM_RNG_INIT) - 1.0);
    for (uint64_t k = l.w2; k < l.b2; k++)
        m->params[k] = a2 * (2.0 * sdm_rng_uniform(seed, k, 0, SDM_RNG_INIT) - 1.0);
}

static const sdm_model_i mlp_i = {
    /* .kind = */ "mlp",
    /* .forward = */ mlp_forward,
    /* .backward_rows = */ mlp_backward_rows,
    /* .backward_sum = */ mlp_backward_sum,
    /* .init = */ mlp_init,
};

sdm_model_t *sdm_mlp_new(uint32_t d, uint32_t hidden, uint32_t classes, double l2, uint64_t seed,
                         sdm_status *status, char *err, size_t err_len)
{
    sdm_status st = SDM_OK;
    uint64_t P = (uint64_t)hidden * d + hidden + (uint64_t)classes * hidden + classes;
    if (d == 0)
        st = sdm_models_errf(err, err_len, SDM_ERR_BAD_INPUT, "d: must be positive");
    else if (hidden == 0)
        st = sdm_models_errf(err, err_len, SDM_ERR_BAD_INPUT, "hidden: must be positive");
    else if (classes < 2)
        st = sdm_models_errf(err, err_len, SDM_ERR_BAD_INPUT, "classes: must be at least 2");
    else if ((uint64_t)hidden * d > (1u << 28) || (uint64_t)hidden * classes > (1u << 28))
        st = sdm_models_errf(err, err_len, SDM_ERR_BAD_INPUT,
                             "hidden: %u units give too many parameters", hidden);
    else if (!(l2 >= 0) || !isfinite(l2))
        st = sdm_models_errf(err, err_len, SDM_ERR_BAD_INPUT, "l2: must be finite and >= 0");
    sdm_model_t *m = NULL;
    if (st == SDM_OK) {
        m = sdm_model_alloc(&mlp_i, d, classes, hidden, P, l2);
        if (!m)
            st = sdm_models_errf(err, err_len, SDM_ERR_NOMEM, "mlp: out of memory");
        else
            mlp_init(m, seed);
    }
    if (status)
        *status = st;
    return m;
}
