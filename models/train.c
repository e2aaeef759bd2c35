/* train.c - full-batch L-BFGS and gradient descent with checkpoints (see train.h). */
#include "train.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model_impl.h"

#define ARMIJO_C1 1e-4
#define MAX_BACKTRACKS 60

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void sdm_train_result_free(sdm_train_result **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_train_result *r = *self_p;
    for (size_t k = 0; k < r->n_checkpoints; k++)
        free(r->checkpoints[k].params);
    free(r->checkpoints);
    free(r);
    *self_p = NULL;
}

const sdm_checkpoint *sdm_train_result_at(const sdm_train_result *result, uint64_t step)
{
    if (!result)
        return NULL;
    for (size_t k = 0; k < result->n_checkpoints; k++)
        if (result->checkpoints[k].step == step)
            return &result->checkpoints[k];
    return NULL;
}

typedef struct trainer {
    sdm_model_t *m;
    const sdm_dataset *ds;
    const sdm_train_opts *o;
    sdm_train_result *res;
    size_t cap;
    double ckpt_lr;
} trainer;

static int wanted(const trainer *t, uint64_t step)
{
    if (t->o->save_every && step % t->o->save_every == 0)
        return 1;
    for (size_t k = 0; k < t->o->n_save; k++)
        if (t->o->save_steps[k] == step)
            return 1;
    return 0;
}

/* Keeps the model's current parameters as the checkpoint of `step` (once per step). */
static sdm_status save(trainer *t, uint64_t step, double loss, double grad_norm)
{
    sdm_train_result *r = t->res;
    if (r->n_checkpoints && r->checkpoints[r->n_checkpoints - 1].step == step)
        return SDM_OK;
    if (r->n_checkpoints == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 8;
        sdm_checkpoint *c = realloc(r->checkpoints, cap * sizeof(*c));
        if (!c)
            return sdm_model_fail(t->m, SDM_ERR_NOMEM, "train: out of memory for checkpoints");
        r->checkpoints = c;
        t->cap = cap;
    }
    uint64_t P = t->m->nparams;
    double *p = malloc(P * sizeof(double));
    if (!p)
        return sdm_model_fail(t->m, SDM_ERR_NOMEM, "train: out of memory for checkpoints");
    memcpy(p, t->m->params, P * sizeof(double));
    sdm_checkpoint c = {step, t->ckpt_lr, loss, grad_norm, p};
    r->checkpoints[r->n_checkpoints++] = c;
    return SDM_OK;
}

static sdm_status eval(trainer *t, double *f, double *g)
{
    t->res->evaluations++;
    return sdm_model_loss(t->m, t->ds, f, g);
}

static sdm_status train_gd(trainer *t, double tol, uint64_t max_steps)
{
    sdm_model_t *m = t->m;
    uint64_t P = m->nparams;
    double *g = malloc(P * sizeof(double)), *prev = malloc(P * sizeof(double));
    sdm_status st = SDM_OK;
    if (!g || !prev) {
        st = sdm_model_fail(m, SDM_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    double f = 0, f_prev = 0, gn_prev = 0;
    for (uint64_t step = 0;; step++) {
        if ((st = eval(t, &f, g)) != SDM_OK)
            goto done;
        double gn = cblas_dnrm2((int)P, g, 1);
        if (!isfinite(f) || !isfinite(gn)) {
            /* back to the last finite iterate, which step - 1 was */
            memcpy(m->params, prev, P * sizeof(double));
            t->res->stop = "diverged";
            t->res->steps = step - 1;
            t->res->loss = f_prev;
            t->res->grad_norm = gn_prev;
            st = save(t, step - 1, f_prev, gn_prev);
            goto done;
        }
        const char *stop = gn <= tol ? "converged" : step == max_steps ? "max_steps" : NULL;
        if (stop || wanted(t, step))
            if ((st = save(t, step, f, gn)) != SDM_OK)
                goto done;
        if (stop) {
            t->res->stop = stop;
            t->res->converged = gn <= tol;
            t->res->steps = step;
            t->res->loss = f;
            t->res->grad_norm = gn;
            goto done;
        }
        memcpy(prev, m->params, P * sizeof(double));
        f_prev = f;
        gn_prev = gn;
        cblas_daxpy((int)P, -t->o->lr, g, 1, m->params, 1);
    }
done:
    free(g);
    free(prev);
    return st;
}

/* d = -H g by the two-loop recursion over the stored pairs, oldest first at (head - count). */
static void lbfgs_direction(uint64_t P, uint32_t mem, uint32_t count, uint32_t head,
                            const double *S, const double *Y, const double *rho, double *alpha,
                            const double *g, double *d)
{
    memcpy(d, g, P * sizeof(double));
    for (uint32_t k = 0; k < count; k++) {
        uint32_t i = (head + mem - 1 - k) % mem; /* newest first */
        alpha[i] = rho[i] * cblas_ddot((int)P, S + (uint64_t)i * P, 1, d, 1);
        cblas_daxpy((int)P, -alpha[i], Y + (uint64_t)i * P, 1, d, 1);
    }
    double gamma;
    if (count > 0) {
        uint32_t i = (head + mem - 1) % mem;
        const double *y = Y + (uint64_t)i * P;
        gamma = cblas_ddot((int)P, S + (uint64_t)i * P, 1, y, 1) / cblas_ddot((int)P, y, 1, y, 1);
    } else {
        /* no curvature yet: a first step of unit length */
        gamma = 1.0 / cblas_dnrm2((int)P, g, 1);
    }
    cblas_dscal((int)P, gamma, d, 1);
    for (uint32_t k = 0; k < count; k++) {
        uint32_t i = (head + mem - count + k) % mem; /* oldest first */
        double beta = rho[i] * cblas_ddot((int)P, Y + (uint64_t)i * P, 1, d, 1);
        cblas_daxpy((int)P, alpha[i] - beta, S + (uint64_t)i * P, 1, d, 1);
    }
    cblas_dscal((int)P, -1.0, d, 1);
}

static sdm_status train_lbfgs(trainer *t, double tol, uint64_t max_steps, uint32_t mem)
{
    sdm_model_t *m = t->m;
    uint64_t P = m->nparams;
    double *S = malloc(mem * P * sizeof(double)), *Y = malloc(mem * P * sizeof(double));
    double *rho = malloc(mem * sizeof(double)), *alpha = malloc(mem * sizeof(double));
    double *g = malloc(P * sizeof(double)), *g_new = malloc(P * sizeof(double));
    double *d = malloc(P * sizeof(double)), *x0 = malloc(P * sizeof(double));
    sdm_status st = SDM_OK;
    if (!S || !Y || !rho || !alpha || !g || !g_new || !d || !x0) {
        st = sdm_model_fail(m, SDM_ERR_NOMEM, "train: out of memory for L-BFGS (P = %llu)",
                            (unsigned long long)P);
        goto done;
    }
    uint32_t count = 0, head = 0;
    double f = 0;
    if ((st = eval(t, &f, g)) != SDM_OK)
        goto done;
    for (uint64_t step = 0;; step++) {
        double gn = cblas_dnrm2((int)P, g, 1);
        const char *stop = gn <= tol ? "converged" : step == max_steps ? "max_steps" : NULL;
        if (stop || wanted(t, step))
            if ((st = save(t, step, f, gn)) != SDM_OK)
                goto done;
        if (!stop) {
            lbfgs_direction(P, mem, count, head, S, Y, rho, alpha, g, d);
            double dg = cblas_ddot((int)P, d, 1, g, 1);
            if (!(dg < 0)) {
                /* not a descent direction (curvature pairs gone stale): restart from -g */
                count = 0;
                lbfgs_direction(P, mem, 0, head, S, Y, rho, alpha, g, d);
                dg = cblas_ddot((int)P, d, 1, g, 1);
            }
            memcpy(x0, m->params, P * sizeof(double));
            double a = 1.0, f_new = f;
            int accepted = 0;
            for (int k = 0; k < MAX_BACKTRACKS; k++) {
                memcpy(m->params, x0, P * sizeof(double));
                cblas_daxpy((int)P, a, d, 1, m->params, 1);
                if ((st = eval(t, &f_new, g_new)) != SDM_OK)
                    goto done;
                if (f_new <= f + ARMIJO_C1 * a * dg) { /* Armijo: enough decrease */
                    accepted = 1;
                    break;
                }
                a *= 0.5;
            }
            if (accepted) {
                /* s = a d, y = g_new - g (built in g, which g_new replaces below); the pair
                 * is kept only when its curvature sᵀy is positive, so H stays positive
                 * definite (the MLP's objective is not convex) */
                for (uint64_t k = 0; k < P; k++)
                    g[k] = g_new[k] - g[k];
                double sy = a * cblas_ddot((int)P, d, 1, g, 1);
                double s_norm = a * cblas_dnrm2((int)P, d, 1);
                if (sy > 1e-12 * s_norm * cblas_dnrm2((int)P, g, 1)) {
                    double *s = S + (uint64_t)head * P, *y = Y + (uint64_t)head * P;
                    for (uint64_t k = 0; k < P; k++)
                        s[k] = a * d[k];
                    memcpy(y, g, P * sizeof(double));
                    rho[head] = 1.0 / sy;
                    head = (head + 1) % mem;
                    count = count < mem ? count + 1 : mem;
                }
                f = f_new;
                memcpy(g, g_new, P * sizeof(double));
                continue;
            }
            /* no decrease along d even at a tiny step: L is at its rounding floor here */
            memcpy(m->params, x0, P * sizeof(double));
            stop = "line_search";
            if ((st = save(t, step, f, gn)) != SDM_OK)
                goto done;
        }
        t->res->stop = stop;
        t->res->converged = gn <= tol;
        t->res->steps = step;
        t->res->loss = f;
        t->res->grad_norm = gn;
        goto done;
    }
done:
    free(S);
    free(Y);
    free(rho);
    free(alpha);
    free(g);
    free(g_new);
    free(d);
    free(x0);
    return st;
}

sdm_status sdm_model_train(sdm_model_t *model, const sdm_dataset *ds, const sdm_train_opts *opts,
                           sdm_train_result **out)
{
    if (!out)
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT, "out: NULL");
    *out = NULL;
    model->err[0] = '\0';
    if (!opts)
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT, "opts: NULL");
    if (opts->method != SDM_TRAIN_LBFGS && opts->method != SDM_TRAIN_GD)
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT, "opts.method: unknown (%d)",
                              (int)opts->method);
    if (opts->method == SDM_TRAIN_GD && !(opts->lr > 0 && isfinite(opts->lr)))
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT,
                              "opts.lr: gradient descent needs a finite lr > 0");
    if (!(opts->lr >= 0 && isfinite(opts->lr)))
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT, "opts.lr: must be finite and >= 0");
    if (!(opts->tol >= 0 && isfinite(opts->tol)))
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT, "opts.tol: must be finite and >= 0");
    if (opts->n_save > 0 && !opts->save_steps)
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT, "opts.save_steps: NULL");
    if (opts->lbfgs_memory > 1000)
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT, "opts.lbfgs_memory: at most 1000");
    /* the dataset's checks are sdm_model_loss's: run them before anything changes */
    double f0;
    sdm_status st = sdm_model_loss(model, ds, &f0, NULL);
    if (st != SDM_OK)
        return st;
    if (!isfinite(f0))
        return sdm_model_fail(model, SDM_ERR_BAD_INPUT,
                              "params: the loss at the start is not finite");

    sdm_train_result *res = calloc(1, sizeof(*res));
    if (!res)
        return sdm_model_fail(model, SDM_ERR_NOMEM, "train: out of memory");
    trainer t = {model, ds, opts, res, 0, opts->lr > 0 ? opts->lr : 1.0};
    double tol = opts->tol > 0 ? opts->tol : 1e-6;
    uint64_t max_steps = opts->max_steps ? opts->max_steps : 10000;
    double t0 = now_seconds();
    int saved = sdm_blas_single_begin(); /* the L-BFGS vector updates too (model_impl.h) */
    if (opts->method == SDM_TRAIN_GD)
        st = train_gd(&t, tol, max_steps);
    else
        st = train_lbfgs(&t, tol, max_steps, opts->lbfgs_memory ? opts->lbfgs_memory : 10);
    sdm_blas_single_end(saved);
    res->seconds = now_seconds() - t0;
    if (st != SDM_OK) {
        sdm_train_result_free(&res);
        return st;
    }
    *out = res;
    return SDM_OK;
}
