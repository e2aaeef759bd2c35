/* eval_cli.c - the command line of the eval (`sediment-eval` and `sediment eval`): attribution
 * quality against retraining, as a table, JSON or a PNG. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

static void usage(FILE *f)
{
    fputs("usage: sediment-eval [options]\n"
          "\n"
          "Measures how well sediment's attribution methods (dot, cosine, trak; SPEC §3)\n"
          "predict retraining on the bundled digits: a model is trained on 10 contributors'\n"
          "shards (one with corrupted labels, one copying another), every test example is\n"
          "scored against every training example, and the scores are compared with the\n"
          "margins of models retrained on random halves of the shards and of the examples\n"
          "(linear datamodeling score, LDS), and with the corrupted labels (AUC).\n"
          "\n"
          "  --model logreg|mlp|both  the model(s) to evaluate (default both)\n"
          "  --quick                  a reduced run of a few seconds (500 train / 200 test\n"
          "                           digits, 20 halves, k = 64, 200 gd steps)\n"
          "  --subsets R              random halves per ground truth (default 100, >= 3)\n"
          "  --l2 X                   the model's L2 weight (default 1e-3 logreg, 1e-2 mlp)\n"
          "  --hidden H               mlp hidden units (default 32)\n"
          "  --tol X                  training gradient-norm tolerance (default 1e-6 logreg,\n"
          "                           1e-5 mlp)\n"
          "  --proj-dim K             rademacher projection dim (default 256)\n"
          "  --curv-draws D           sampled labels per example for curvature rows (default 4)\n"
          "  --contributors C         shards, one per contributor (default 10)\n"
          "  --corrupt-frac F         fraction of the corrupted contributor's labels shifted\n"
          "                           (default 1)\n"
          "  --n-train N, --n-test N  sizes (default: 397 test, every other digit trains)\n"
          "  --seed S                 split, corruption, halves, sampled labels (default 1)\n"
          "  --ckpts K                TracIn-CP rows over K checkpoints of a gradient-descent\n"
          "                           path (default 4; 0: none)\n"
          "  --gd-steps N             that path's length in steps (default 2000)\n"
          "  --gd-lr X                its constant lr (default: logreg's smoothness bound)\n"
          "  --sweep                  also trak (none, sampled curvature) at λ = x times the\n"
          "                           matched damping (rows of K · l2), x in 0.01 .. 100\n"
          "  --backend auto|cpu|cuda  the engine's backend (default cpu)\n"
          "  --json                   print JSON instead of the table\n"
          "  --png FILE               write a plot (with both models the mlp's goes to\n"
          "                           FILE with -mlp before its extension)\n"
          "  --quiet                  no progress on stderr\n"
          "  --help                   this text\n",
          f);
}

static void progress(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "sediment-eval: %s\n", line);
}

static int parse_u64(const char *flag, const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-') {
        fprintf(stderr, "sediment-eval: %s: expected a non-negative integer, got '%s'\n", flag, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_u32(const char *flag, const char *v, uint32_t *out)
{
    uint64_t x;
    if (parse_u64(flag, v, &x) != 0)
        return -1;
    if (x > UINT32_MAX) {
        fprintf(stderr, "sediment-eval: %s: %s is too large\n", flag, v);
        return -1;
    }
    *out = (uint32_t)x;
    return 0;
}

static int parse_double(const char *flag, const char *v, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end) {
        fprintf(stderr, "sediment-eval: %s: expected a number, got '%s'\n", flag, v);
        return -1;
    }
    *out = x;
    return 0;
}

/* FILE.png -> FILE-mlp.png (or FILE-mlp when there is no extension). */
static char *png_name(const char *path, const char *model)
{
    size_t len = strlen(path);
    char *out = malloc(len + strlen(model) + 2);
    if (!out)
        return NULL;
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        dot = path + len;
    sprintf(out, "%.*s-%s%s", (int)(dot - path), path, model, dot);
    return out;
}

int sdm_eval_main(int argc, char **argv)
{
    const char *which = "both", *png = NULL;
    int quick = 0, json = 0, quiet = 0, sweep = 0;
    sdm_backend_kind backend = SDM_BACKEND_CPU;
    /* overrides: NaN / 0 mean "the model's default" */
    int have_subsets = 0, have_l2 = 0, have_hidden = 0, have_tol = 0, have_k = 0, have_draws = 0,
        have_contrib = 0, have_frac = 0, have_ntrain = 0, have_ntest = 0, have_seed = 0,
        have_ckpts = 0, have_gd_steps = 0, have_gd_lr = 0;
    uint32_t subsets = 0, hidden = 0, k = 0, draws = 0, contrib = 0, ckpts = 0;
    uint64_t n_train = 0, n_test = 0, seed = 0, gd_steps = 0;
    double l2 = 0, tol = 0, frac = 0, gd_lr = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1, bad = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            quick = 1, takes = 0;
        } else if (!strcmp(a, "--json")) {
            json = 1, takes = 0;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1, takes = 0;
        } else if (!strcmp(a, "--sweep")) {
            sweep = 1, takes = 0;
        } else if (!v && (!strcmp(a, "--model") || !strcmp(a, "--png") || !strcmp(a, "--subsets") ||
                          !strcmp(a, "--l2") || !strcmp(a, "--hidden") || !strcmp(a, "--tol") ||
                          !strcmp(a, "--proj-dim") || !strcmp(a, "--curv-draws") ||
                          !strcmp(a, "--contributors") || !strcmp(a, "--corrupt-frac") ||
                          !strcmp(a, "--n-train") || !strcmp(a, "--n-test") ||
                          !strcmp(a, "--seed") || !strcmp(a, "--backend") ||
                          !strcmp(a, "--ckpts") || !strcmp(a, "--gd-steps") ||
                          !strcmp(a, "--gd-lr"))) {
            fprintf(stderr, "sediment-eval: %s needs a value (see --help)\n", a);
            return 2;
        } else if (!strcmp(a, "--model")) {
            which = v;
            if (strcmp(v, "logreg") && strcmp(v, "mlp") && strcmp(v, "both")) {
                fprintf(stderr, "sediment-eval: --model: expected logreg, mlp or both, got '%s'\n",
                        v);
                return 2;
            }
        } else if (!strcmp(a, "--png")) {
            png = v;
        } else if (!strcmp(a, "--backend")) {
            if (sdm_backend_kind_parse(v, &backend) != SDM_OK) {
                fprintf(stderr, "sediment-eval: --backend: expected auto, cpu or cuda, got '%s'\n",
                        v);
                return 2;
            }
        } else if (!strcmp(a, "--subsets")) {
            bad = parse_u32(a, v, &subsets), have_subsets = 1;
        } else if (!strcmp(a, "--l2")) {
            bad = parse_double(a, v, &l2), have_l2 = 1;
        } else if (!strcmp(a, "--hidden")) {
            bad = parse_u32(a, v, &hidden), have_hidden = 1;
        } else if (!strcmp(a, "--tol")) {
            bad = parse_double(a, v, &tol), have_tol = 1;
        } else if (!strcmp(a, "--proj-dim")) {
            bad = parse_u32(a, v, &k), have_k = 1;
        } else if (!strcmp(a, "--curv-draws")) {
            bad = parse_u32(a, v, &draws), have_draws = 1;
        } else if (!strcmp(a, "--contributors")) {
            bad = parse_u32(a, v, &contrib), have_contrib = 1;
        } else if (!strcmp(a, "--corrupt-frac")) {
            bad = parse_double(a, v, &frac), have_frac = 1;
        } else if (!strcmp(a, "--n-train")) {
            bad = parse_u64(a, v, &n_train), have_ntrain = 1;
        } else if (!strcmp(a, "--n-test")) {
            bad = parse_u64(a, v, &n_test), have_ntest = 1;
        } else if (!strcmp(a, "--seed")) {
            bad = parse_u64(a, v, &seed), have_seed = 1;
        } else if (!strcmp(a, "--ckpts")) {
            bad = parse_u32(a, v, &ckpts), have_ckpts = 1;
        } else if (!strcmp(a, "--gd-steps")) {
            bad = parse_u64(a, v, &gd_steps), have_gd_steps = 1;
        } else if (!strcmp(a, "--gd-lr")) {
            bad = parse_double(a, v, &gd_lr), have_gd_lr = 1;
        } else {
            fprintf(stderr, "sediment-eval: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (bad)
            return 2;
        i += takes;
    }

    sdm_status st;
    char err[512] = "";
    sdm_engine_opts eo = {.backend = backend};
    sdm_engine_t *eng = sdm_engine_new(&eo, &st, err, sizeof(err));
    if (!eng) {
        fprintf(stderr, "sediment-eval: engine: %s\n", err);
        return 1;
    }
    if (!quiet && sdm_engine_note(eng)[0])
        fprintf(stderr, "sediment-eval: %s\n", sdm_engine_note(eng));

    const char *models[2];
    size_t n_models = 0;
    if (strcmp(which, "mlp") != 0)
        models[n_models++] = "logreg";
    if (strcmp(which, "logreg") != 0)
        models[n_models++] = "mlp";
    sdm_eval_result *results[2] = {NULL, NULL};
    int rc = 0;
    for (size_t t = 0; t < n_models && rc == 0; t++) {
        sdm_eval_opts o;
        if (sdm_eval_opts_init(&o, models[t]) != SDM_OK) {
            rc = 1;
            break;
        }
        if (quick)
            sdm_eval_opts_quick(&o);
        if (have_subsets)
            o.subsets = subsets;
        if (have_l2)
            o.l2 = l2;
        if (have_hidden)
            o.hidden = hidden;
        if (have_tol)
            o.tol = tol;
        if (have_k)
            o.proj_dim = k;
        if (have_draws)
            o.curv_draws = draws;
        if (have_contrib) {
            o.contributors = contrib;
            if (o.corrupt >= contrib - 1 && contrib >= 3)
                o.corrupt = 1;
        }
        if (have_frac)
            o.corrupt_frac = frac;
        if (have_ntrain)
            o.n_train = n_train;
        if (have_ntest)
            o.n_test = n_test;
        if (have_seed)
            o.seed = seed;
        if (have_ckpts)
            o.ckpts = ckpts;
        if (have_gd_steps)
            o.gd_steps = gd_steps;
        if (have_gd_lr)
            o.gd_lr = gd_lr;
        o.sweep = sweep;
        o.progress = quiet ? NULL : progress;
        st = sdm_eval_run(&o, NULL, eng, &results[t], err, sizeof(err));
        if (st != SDM_OK) {
            fprintf(stderr, "sediment-eval: %s: %s\n", models[t], err);
            rc = st == SDM_ERR_BAD_INPUT ? 2 : 1;
        }
    }
    if (rc == 0) {
        if (json) {
            sdm_eval_print_json_many(results, n_models, stdout);
        } else {
            for (size_t t = 0; t < n_models; t++) {
                if (t)
                    fputs("\n", stdout);
                sdm_eval_print_table(results[t], stdout);
            }
        }
        for (size_t t = 0; png && t < n_models && rc == 0; t++) {
            char *path = t == 0 ? strdup(png) : png_name(png, models[t]);
            if (!path || sdm_eval_write_png(results[t], path, err, sizeof(err)) != SDM_OK) {
                fprintf(stderr, "sediment-eval: %s\n", path ? err : "out of memory");
                rc = 1;
            } else if (!quiet) {
                fprintf(stderr, "sediment-eval: wrote %s\n", path);
            }
            free(path);
        }
    }
    for (size_t t = 0; t < n_models; t++)
        sdm_eval_result_free(&results[t]);
    sdm_engine_destroy(&eng);
    return rc;
}
