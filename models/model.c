/* model.c - what every model kind shares: softmax losses, margins, sampled labels, accuracy. */
#include "model_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

sdm_status sdm_models_errf(char *err, size_t err_len, sdm_status st, const char *fmt, ...)
{
    if (err && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

sdm_status sdm_model_fail(sdm_model_t *m, sdm_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof(m->err), fmt, ap);
    va_end(ap);
    return st;
}

sdm_model_t *sdm_model_alloc(const sdm_model_i *vt, uint32_t d, uint32_t classes, uint32_t hidden,
                             uint64_t nparams, double l2)
{
    sdm_model_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->vt = vt;
    m->d = d;
    m->classes = classes;
    m->hidden = hidden;
    m->nparams = nparams;
    m->l2 = l2;
    m->params = calloc(nparams, sizeof(double));
    if (!m->params) {
        free(m);
        return NULL;
    }
    return m;
}

void sdm_model_destroy(sdm_model_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_model_t *m = *self_p;
    free(m->params);
    free(m->act);
    free(m);
    *self_p = NULL;
}

sdm_model_t *sdm_model_clone(const sdm_model_t *self)
{
    if (!self)
        return NULL;
    sdm_model_t *m =
        sdm_model_alloc(self->vt, self->d, self->classes, self->hidden, self->nparams, self->l2);
    if (m)
        memcpy(m->params, self->params, self->nparams * sizeof(double));
    return m;
}

const char *sdm_model_kind(const sdm_model_t *self)
{
    return self->vt->kind;
}

uint32_t sdm_model_input_dim(const sdm_model_t *self)
{
    return self->d;
}

uint32_t sdm_model_classes(const sdm_model_t *self)
{
    return self->classes;
}

uint64_t sdm_model_nparams(const sdm_model_t *self)
{
    return self->nparams;
}

double sdm_model_l2(const sdm_model_t *self)
{
    return self->l2;
}

const char *sdm_model_last_error(const sdm_model_t *self)
{
    return self ? self->err : "";
}

const double *sdm_model_params(const sdm_model_t *self)
{
    return self->params;
}

sdm_status sdm_model_set_params(sdm_model_t *self, const double *params)
{
    self->err[0] = '\0';
    if (!params)
        return sdm_model_fail(self, SDM_ERR_BAD_INPUT, "params: NULL");
    for (uint64_t k = 0; k < self->nparams; k++)
        if (!isfinite(params[k]))
            return sdm_model_fail(self, SDM_ERR_BAD_INPUT, "params[%llu]: not finite",
                                  (unsigned long long)k);
    memcpy(self->params, params, self->nparams * sizeof(double));
    return SDM_OK;
}

void sdm_model_init(sdm_model_t *self, uint64_t seed)
{
    self->vt->init(self, seed);
}

void sdm_rows_to_f32(const double *in, uint64_t count, float *out)
{
    for (uint64_t k = 0; k < count; k++)
        out[k] = (float)in[k];
}

/* ---- shared checks and the softmax ---------------------------------------------------- */

static sdm_status check_dataset(sdm_model_t *m, const sdm_dataset *ds, int need_rows)
{
    m->err[0] = '\0';
    if (!ds)
        return sdm_model_fail(m, SDM_ERR_BAD_INPUT, "dataset: NULL");
    if (ds->d != m->d)
        return sdm_model_fail(m, SDM_ERR_BAD_INPUT, "dataset.d: %u features, the model takes %u",
                              ds->d, m->d);
    if (ds->classes != m->classes)
        return sdm_model_fail(m, SDM_ERR_BAD_INPUT, "dataset.classes: %u classes, the model has %u",
                              ds->classes, m->classes);
    if (need_rows && ds->n == 0)
        return sdm_model_fail(m, SDM_ERR_BAD_INPUT, "dataset.n: no examples");
    return SDM_OK;
}

/* The kind's three products, each with BLAS on the calling thread (model_impl.h). */
static sdm_status run_forward(sdm_model_t *m, const double *x, uint64_t n, double *z)
{
    int saved = sdm_blas_single_begin();
    sdm_status st = m->vt->forward(m, x, n, z);
    sdm_blas_single_end(saved);
    return st;
}

static sdm_status run_backward_rows(sdm_model_t *m, const double *x, uint64_t n, const double *r,
                                    double *out)
{
    int saved = sdm_blas_single_begin();
    sdm_status st = m->vt->backward_rows(m, x, n, r, out);
    sdm_blas_single_end(saved);
    return st;
}

static sdm_status run_backward_sum(sdm_model_t *m, const double *x, uint64_t n, const double *r,
                                   double *grad)
{
    int saved = sdm_blas_single_begin();
    sdm_status st = m->vt->backward_sum(m, x, n, r, grad);
    sdm_blas_single_end(saved);
    return st;
}

/* Logits of the whole dataset into a new n x C buffer (caller frees). */
static sdm_status logits(sdm_model_t *m, const sdm_dataset *ds, double **z_out)
{
    *z_out = NULL;
    double *z = malloc((ds->n * m->classes + 1) * sizeof(double));
    if (!z)
        return sdm_model_fail(m, SDM_ERR_NOMEM, "logits: out of memory for %llu examples",
                              (unsigned long long)ds->n);
    sdm_status st = run_forward(m, ds->x, ds->n, z);
    if (st != SDM_OK) {
        free(z);
        return st;
    }
    *z_out = z;
    return SDM_OK;
}

/* p = softmax(z) over C values; returns log Σ exp z (stable: shifted by the max). */
static double softmax(const double *z, uint32_t C, double *p)
{
    double mx = z[0];
    for (uint32_t c = 1; c < C; c++)
        mx = z[c] > mx ? z[c] : mx;
    double s = 0;
    for (uint32_t c = 0; c < C; c++) {
        p[c] = exp(z[c] - mx);
        s += p[c];
    }
    for (uint32_t c = 0; c < C; c++)
        p[c] /= s;
    return mx + log(s);
}

/* ---- losses and gradients ------------------------------------------------------------- */

sdm_status sdm_model_loss(sdm_model_t *self, const sdm_dataset *ds, double *loss, double *grad)
{
    sdm_status st = check_dataset(self, ds, 1);
    if (st != SDM_OK)
        return st;
    if (!loss)
        return sdm_model_fail(self, SDM_ERR_BAD_INPUT, "loss: NULL");
    uint32_t C = self->classes;
    uint64_t n = ds->n, P = self->nparams;
    double *z;
    if ((st = logits(self, ds, &z)) != SDM_OK)
        return st;
    /* r_i = (p_i - e_y) / n: the logit gradient of the mean loss, computed in place of z */
    double total = 0;
    for (uint64_t i = 0; i < n; i++) {
        double *zi = z + i * C;
        int32_t y = ds->y[i];
        double zy = zi[y];
        double lse = softmax(zi, C, zi);
        total += lse - zy;
        zi[y] -= 1.0;
        for (uint32_t c = 0; c < C; c++)
            zi[c] /= (double)n;
    }
    double reg = 0;
    for (uint64_t k = 0; k < P; k++)
        reg += self->params[k] * self->params[k];
    *loss = total / (double)n + 0.5 * self->l2 * reg;
    if (grad) {
        st = run_backward_sum(self, ds->x, n, z, grad);
        if (st == SDM_OK)
            for (uint64_t k = 0; k < P; k++)
                grad[k] += self->l2 * self->params[k];
    }
    free(z);
    return st;
}

sdm_status sdm_model_example_grads(sdm_model_t *self, const sdm_dataset *ds, double *out,
                                   double *losses)
{
    sdm_status st = check_dataset(self, ds, 0);
    if (st != SDM_OK)
        return st;
    if (!out)
        return sdm_model_fail(self, SDM_ERR_BAD_INPUT, "out: NULL");
    uint32_t C = self->classes;
    double *z;
    if ((st = logits(self, ds, &z)) != SDM_OK)
        return st;
    for (uint64_t i = 0; i < ds->n; i++) {
        double *zi = z + i * C;
        int32_t y = ds->y[i];
        double zy = zi[y];
        double lse = softmax(zi, C, zi);
        if (losses)
            losses[i] = lse - zy;
        zi[y] -= 1.0;
    }
    st = run_backward_rows(self, ds->x, ds->n, z, out);
    free(z);
    return st;
}

/* m = z_y - log Σ_{c≠y} exp z_c; when r is non-NULL, r = ∂m/∂z = e_y - q with q the softmax
 * over the other classes (q_y = 0). */
static double margin(const double *z, uint32_t C, int32_t y, double *r)
{
    double mx = -INFINITY;
    for (uint32_t c = 0; c < C; c++)
        if ((int32_t)c != y && z[c] > mx)
            mx = z[c];
    double s = 0;
    for (uint32_t c = 0; c < C; c++)
        if ((int32_t)c != y)
            s += exp(z[c] - mx);
    if (r) {
        for (uint32_t c = 0; c < C; c++)
            r[c] = (int32_t)c == y ? 1.0 : -exp(z[c] - mx) / s;
    }
    return z[y] - (mx + log(s));
}

sdm_status sdm_model_margins(sdm_model_t *self, const sdm_dataset *ds, double *margins)
{
    sdm_status st = check_dataset(self, ds, 0);
    if (st != SDM_OK)
        return st;
    if (!margins)
        return sdm_model_fail(self, SDM_ERR_BAD_INPUT, "margins: NULL");
    double *z;
    if ((st = logits(self, ds, &z)) != SDM_OK)
        return st;
    for (uint64_t i = 0; i < ds->n; i++)
        margins[i] = margin(z + i * self->classes, self->classes, ds->y[i], NULL);
    free(z);
    return SDM_OK;
}

sdm_status sdm_model_margin_grads(sdm_model_t *self, const sdm_dataset *ds, double *out,
                                  double *margins)
{
    sdm_status st = check_dataset(self, ds, 0);
    if (st != SDM_OK)
        return st;
    if (!out)
        return sdm_model_fail(self, SDM_ERR_BAD_INPUT, "out: NULL");
    uint32_t C = self->classes;
    double *z, *r = malloc((ds->n * C + 1) * sizeof(double));
    if (!r)
        return sdm_model_fail(self, SDM_ERR_NOMEM, "margin_grads: out of memory");
    if ((st = logits(self, ds, &z)) != SDM_OK) {
        free(r);
        return st;
    }
    for (uint64_t i = 0; i < ds->n; i++) {
        double mi = margin(z + i * C, C, ds->y[i], r + i * C);
        if (margins)
            margins[i] = mi;
    }
    st = run_backward_rows(self, ds->x, ds->n, r, out);
    free(r);
    free(z);
    return st;
}

sdm_status sdm_model_sampled_grads(sdm_model_t *self, const sdm_dataset *ds, uint32_t draws,
                                   uint64_t seed, double *out, int32_t *labels)
{
    sdm_status st = check_dataset(self, ds, 0);
    if (st != SDM_OK)
        return st;
    if (draws == 0)
        return sdm_model_fail(self, SDM_ERR_BAD_INPUT, "draws: must be at least 1");
    if (!out)
        return sdm_model_fail(self, SDM_ERR_BAD_INPUT, "out: NULL");
    uint32_t C = self->classes;
    uint64_t n = ds->n, P = self->nparams;
    double *z, *r = malloc((n * C + 1) * sizeof(double));
    if (!r)
        return sdm_model_fail(self, SDM_ERR_NOMEM, "sampled_grads: out of memory");
    if ((st = logits(self, ds, &z)) != SDM_OK) {
        free(r);
        return st;
    }
    for (uint64_t i = 0; i < n; i++)
        softmax(z + i * C, C, z + i * C); /* z now holds p */
    for (uint32_t t = 0; t < draws && st == SDM_OK; t++) {
        for (uint64_t i = 0; i < n; i++) {
            const double *p = z + i * C;
            double u = sdm_rng_uniform(seed, ds->ids[i], t, SDM_RNG_CURVATURE);
            /* the first class whose cumulative probability passes u; rounding can leave
             * the total just under u, and then the last class with p > 0 is taken */
            uint32_t pick = C;
            double cum = 0;
            for (uint32_t c = 0; c < C && pick == C; c++) {
                cum += p[c];
                if (u < cum)
                    pick = c;
            }
            if (pick == C) {
                pick = C - 1;
                while (pick > 0 && p[pick] == 0)
                    pick--;
            }
            for (uint32_t c = 0; c < C; c++)
                r[i * C + c] = p[c] - (c == pick ? 1.0 : 0.0);
            if (labels)
                labels[t * n + i] = (int32_t)pick;
        }
        st = run_backward_rows(self, ds->x, n, r, out + (uint64_t)t * n * P);
    }
    free(r);
    free(z);
    return st;
}

sdm_status sdm_model_predict(sdm_model_t *self, const sdm_dataset *ds, int32_t *labels,
                             double *probs)
{
    sdm_status st = check_dataset(self, ds, 0);
    if (st != SDM_OK)
        return st;
    uint32_t C = self->classes;
    double *z;
    if ((st = logits(self, ds, &z)) != SDM_OK)
        return st;
    for (uint64_t i = 0; i < ds->n; i++) {
        const double *zi = z + i * C;
        uint32_t best = 0;
        for (uint32_t c = 1; c < C; c++)
            if (zi[c] > zi[best])
                best = c;
        if (labels)
            labels[i] = (int32_t)best;
        if (probs)
            softmax(zi, C, probs + i * C);
    }
    free(z);
    return SDM_OK;
}

sdm_status sdm_model_accuracy(sdm_model_t *self, const sdm_dataset *ds, double *accuracy)
{
    sdm_status st = check_dataset(self, ds, 0);
    if (st != SDM_OK)
        return st;
    if (!accuracy)
        return sdm_model_fail(self, SDM_ERR_BAD_INPUT, "accuracy: NULL");
    int32_t *pred = malloc((ds->n + 1) * sizeof(int32_t));
    if (!pred)
        return sdm_model_fail(self, SDM_ERR_NOMEM, "accuracy: out of memory");
    st = sdm_model_predict(self, ds, pred, NULL);
    if (st == SDM_OK) {
        uint64_t right = 0;
        for (uint64_t i = 0; i < ds->n; i++)
            right += pred[i] == ds->y[i];
        *accuracy = ds->n ? (double)right / (double)ds->n : 0.0;
    }
    free(pred);
    return st;
}
