/* logreg.c - multinomial logistic regression: logits, vector-Jacobian products, exact Hessian. */
#include "logreg.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_impl.h"

static sdm_status lr_forward(sdm_model_t *m, const double *x, uint64_t n, double *z)
{
    uint32_t C = m->classes, d = m->d;
    const double *W = m->params, *b = m->params + (uint64_t)C * d;
    if (n == 0)
        return SDM_OK;
    /* z = x Wᵀ, then + b */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)C, (int)d, 1.0, x, (int)d, W,
                (int)d, 0.0, z, (int)C);
    for (uint64_t i = 0; i < n; i++)
        for (uint32_t c = 0; c < C; c++)
            z[i * C + c] += b[c];
    return SDM_OK;
}

static sdm_status lr_backward_rows(sdm_model_t *m, const double *x, uint64_t n, const double *r,
                                   double *out)
{
    uint32_t C = m->classes, d = m->d;
    uint64_t P = m->nparams;
    /* row i: ∂ℓ/∂W[c][j] = r_i[c] x_i[j], ∂ℓ/∂b[c] = r_i[c] */
    for (uint64_t i = 0; i < n; i++) {
        const double *xi = x + i * d, *ri = r + i * C;
        double *row = out + i * P;
        for (uint32_t c = 0; c < C; c++) {
            double rc = ri[c];
            double *wrow = row + (uint64_t)c * d;
            for (uint32_t j = 0; j < d; j++)
                wrow[j] = rc * xi[j];
            row[(uint64_t)C * d + c] = rc;
        }
    }
    return SDM_OK;
}

static sdm_status lr_backward_sum(sdm_model_t *m, const double *x, uint64_t n, const double *r,
                                  double *grad)
{
    uint32_t C = m->classes, d = m->d;
    /* ∂/∂W = rᵀ x (C x d); ∂/∂b = column sums of r */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)d, (int)n, 1.0, r, (int)C, x,
                (int)d, 0.0, grad, (int)d);
    double *gb = grad + (uint64_t)C * d;
    for (uint32_t c = 0; c < C; c++)
        gb[c] = 0;
    for (uint64_t i = 0; i < n; i++)
        for (uint32_t c = 0; c < C; c++)
            gb[c] += r[i * C + c];
    return SDM_OK;
}

static void lr_init(sdm_model_t *m, uint64_t seed)
{
    (void)seed; /* convex: one minimiser whatever the start */
    memset(m->params, 0, m->nparams * sizeof(double));
}

static const sdm_model_i logreg_i = {
    /* .kind = */ "logreg",
    /* .forward = */ lr_forward,
    /* .backward_rows = */ lr_backward_rows,
    /* .backward_sum = */ lr_backward_sum,
    /* .init = */ lr_init,
};

sdm_model_t *sdm_logreg_new(uint32_t d, uint32_t classes, double l2, sdm_status *status, char *err,
                            size_t err_len)
{
    sdm_status st = SDM_OK;
    if (d == 0)
        st = sdm_models_errf(err, err_len, SDM_ERR_BAD_INPUT, "d: must be positive");
    else if (classes < 2)
        st = sdm_models_errf(err, err_len, SDM_ERR_BAD_INPUT, "classes: must be at least 2");
    else if ((uint64_t)classes * ((uint64_t)d + 1) > (1u << 28))
        st = sdm_models_errf(err, err_len, SDM_ERR_BAD_INPUT,
                             "d: %u inputs x %u classes is too many parameters", d, classes);
    else if (!(l2 > 0) || !isfinite(l2))
        st = sdm_models_errf(err, err_len, SDM_ERR_BAD_INPUT, "l2: must be finite and positive");
    sdm_model_t *m = NULL;
    if (st == SDM_OK) {
        m = sdm_model_alloc(&logreg_i, d, classes, 0, (uint64_t)classes * d + classes, l2);
        if (!m)
            st = sdm_models_errf(err, err_len, SDM_ERR_NOMEM, "logreg: out of memory");
    }
    if (status)
        *status = st;
    return m;
}

sdm_status sdm_logreg_hessian(sdm_model_t *model, const sdm_dataset *ds, double *out)
{
    if (model->vt != &logreg_i)
        return sdm_model_fail(model, SDM_ERR_UNSUPPORTED,
                              "model: the exact Hessian is for logreg, not %s", model->vt->kind);
    model->err[0] = '\0';
    if (!ds)
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT, "dataset: NULL");
    if (ds->d != model->d || ds->classes != model->classes)
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT,
                              "dataset: shape (d %u, classes %u) is not the model's (%u, %u)",
                              ds->d, ds->classes, model->d, model->classes);
    if (ds->n == 0)
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT, "dataset.n: no examples");
    if (!out)
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT, "out: NULL");
    uint32_t C = model->classes, d = model->d, d1 = d + 1;
    uint64_t n = ds->n, E = (uint64_t)C * d1, P = model->nparams;
    /* Work in an extended order e(c, j) = c·(d+1) + j, j = d being the bias, where the
     * Hessian is (1/n) Σ_i (diag(p_i) - p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ; then permute into θ's order. */
    double *z = malloc(n * C * sizeof(double));
    double *xt = malloc(n * d1 * sizeof(double));
    double *g = malloc(n * E * sizeof(double));
    double *y = malloc(n * d1 * sizeof(double));
    double *h = calloc(E * E, sizeof(double));
    sdm_status st = SDM_OK;
    if (!z || !xt || !g || !y || !h) {
        st = sdm_model_fail(model, SDM_ERR_NOMEM, "hessian: out of memory (P = %llu)",
                            (unsigned long long)P);
        goto done;
    }
    int saved = sdm_blas_single_begin();
    lr_forward(model, ds->x, n, z);
    for (uint64_t i = 0; i < n; i++) {
        double *p = z + i * C;
        double mx = p[0], s = 0;
        for (uint32_t c = 1; c < C; c++)
            mx = p[c] > mx ? p[c] : mx;
        for (uint32_t c = 0; c < C; c++)
            s += (p[c] = exp(p[c] - mx));
        for (uint32_t c = 0; c < C; c++)
            p[c] /= s;
        memcpy(xt + i * d1, ds->x + i * d, d * sizeof(double));
        xt[i * d1 + d] = 1.0;
        /* row i of G is p_i ⊗ x̃_i, so GᵀG = Σ_i (p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ */
        for (uint32_t c = 0; c < C; c++)
            for (uint32_t j = 0; j < d1; j++)
                g[i * E + (uint64_t)c * d1 + j] = p[c] * xt[i * d1 + j];
    }
    /* upper triangle of -(1/n) GᵀG */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)E, (int)n, -1.0 / (double)n, g, (int)E,
                0.0, h, (int)E);
    /* diagonal blocks: + (1/n) X̃ᵀ diag(p_c) X̃ */
    for (uint32_t c = 0; c < C; c++) {
        for (uint64_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < d1; j++)
                y[i * d1 + j] = z[i * C + c] * xt[i * d1 + j];
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d1, (int)d1, (int)n,
                    1.0 / (double)n, xt, (int)d1, y, (int)d1, 1.0,
                    h + (uint64_t)c * d1 * E + (uint64_t)c * d1, (int)E);
    }
    /* θ index of extended index e: W[c][j] at c·d + j, b[c] at C·d + c */
    for (uint64_t a = 0; a < E; a++) {
        uint64_t ca = a / d1, ja = a % d1;
        uint64_t ta = ja < d ? ca * d + ja : (uint64_t)C * d + ca;
        for (uint64_t b = a; b < E; b++) {
            uint64_t cb = b / d1, jb = b % d1;
            uint64_t tb = jb < d ? cb * d + jb : (uint64_t)C * d + cb;
            double v = h[a * E + b];
            out[ta * P + tb] = v;
            out[tb * P + ta] = v;
        }
    }
    for (uint64_t k = 0; k < P; k++)
        out[k * P + k] += model->l2;
    sdm_blas_single_end(saved);
done:
    free(z);
    free(xt);
    free(g);
    free(y);
    free(h);
    return st;
}
