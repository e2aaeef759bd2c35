/* store.c - the in-memory feature store: validated appends, lookups and snapshots.
 *
 * An append is all or nothing: it validates everything, then reserves every array it will
 * grow, then projects into the reserved tail, and only then bumps the counters. A failure
 * at any step leaves the store as it was.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define SDM_MAX_NAME 1024

static void *grow(void *p, uint64_t *cap, uint64_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    uint64_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(p, c * elem);
    if (!q)
        return NULL;
    *cap = c;
    return q;
}

/* Grows an array field in place; returns -1 (array untouched) on failure. */
#define GROW(ptr, cap, need)                                                                   \
    __extension__({                                                                            \
        uint64_t c_ = (cap);                                                                   \
        void *q_ = (need) <= c_ ? (void *)(ptr) : grow((ptr), &c_, (need), sizeof(*(ptr)));    \
        int r_ = (need) <= (cap) || q_ ? 0 : -1;                                               \
        if (q_) {                                                                              \
            (ptr) = q_;                                                                        \
            (cap) = c_;                                                                        \
        }                                                                                      \
        r_;                                                                                    \
    })

static int rows_reserve(sdm_backend *be, sdm_rows *r, uint64_t need, uint32_t k)
{
    if (need <= r->cap)
        return 0;
    uint64_t cap = r->cap ? r->cap : 256;
    while (cap < need)
        cap *= 2;
    size_t bytes = (size_t)cap * k * sizeof(float);
    float *p = be->iface->host_alloc ? be->iface->host_alloc(be, bytes) : malloc(bytes);
    if (!p)
        return -1;
    if (r->n)
        memcpy(p, r->data, (size_t)r->n * k * sizeof(float));
    if (r->data) {
        if (be->iface->host_free)
            be->iface->host_free(be, r->data);
        else
            free(r->data);
    }
    r->data = p;
    r->cap = cap;
    return 0;
}

static void rows_free(sdm_backend *be, sdm_rows *r)
{
    if (r->data) {
        if (be->iface->host_free)
            be->iface->host_free(be, r->data);
        else
            free(r->data);
    }
    memset(r, 0, sizeof(*r));
}

sdm_store_t *sdm_store_new(sdm_engine_t *eng, const sdm_projection *proj)
{
    char msg[256];
    if (!eng)
        return NULL;
    if (sdm_projection_check(proj, msg, sizeof(msg)) != SDM_OK) {
        sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "%s", msg);
        return NULL;
    }
    sdm_store_t *s = calloc(1, sizeof(*s));
    if (!s) {
        sdm_engine_fail(eng, SDM_ERR_NOMEM, "store: out of memory");
        return NULL;
    }
    s->eng = eng;
    s->proj = *proj;
    if (s->proj.kind == SDM_PROJ_SJLT && s->proj.s == 0)
        s->proj.s = 1;
    s->k = proj->dim;
    return s;
}

void sdm_store_destroy(sdm_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_store_t *s = *self_p;
    sdm_backend *be = sdm_engine_backend_ptr(s->eng);
    for (size_t c = 0; c < s->ckpt_names.len; c++) {
        sdm_ckpt *ck = &s->ckpts[c];
        rows_free(be, &ck->feat);
        rows_free(be, &ck->curv);
        free(ck->norm);
        free(ck->weight);
        free(ck->row_example);
        free(ck->ex_row);
        free(ck->batch_list);
        free(ck->gram_feat.K);
        free(ck->gram_curv.K);
        if (ck->cache && be->iface->cache_free)
            be->iface->cache_free(be, ck->cache);
    }
    free(s->ckpts);
    sdm_strtab_free(&s->ckpt_names);
    sdm_strtab_free(&s->shard_names);
    sdm_strtab_free(&s->contrib_names);
    free(s->shard_owner);
    free(s->shard_first);
    free(s->contrib_first);
    free(s->examples);
    sdm_u64map_free(&s->example_index);
    for (uint64_t b = 0; b < s->n_batches; b++) {
        free(s->batches[b].sum);
        free(s->batches[b].unit_sum);
    }
    free(s->batches);
    free(s);
    *self_p = NULL;
}

static sdm_status check_name(sdm_store_t *s, const char *field, const char *name)
{
    if (!name || !name[0])
        return sdm_engine_fail(s->eng, SDM_ERR_BAD_INPUT, "%s: must be a non-empty string",
                               field);
    if (strlen(name) > SDM_MAX_NAME)
        return sdm_engine_fail(s->eng, SDM_ERR_BAD_INPUT, "%s: longer than %d bytes", field,
                               SDM_MAX_NAME);
    return SDM_OK;
}

/* What a validated batch resolves to; filled by validate() without changing the store. */
typedef struct plan {
    long ckpt;     /* -1: new checkpoint */
    long shard;    /* -1: new shard (or none, for curvature) */
    long contrib;  /* -1: new contributor */
    uint64_t *ex;  /* per row: existing example index, or UINT64_MAX for a new one */
    uint64_t n_new;
} plan;

static sdm_status validate(sdm_store_t *s, const sdm_batch *b, plan *p)
{
    sdm_engine_t *eng = s->eng;
    memset(p, 0, sizeof(*p));
    p->ckpt = p->shard = p->contrib = -1;
    if (!b)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "batch: missing");
    sdm_status st = check_name(s, "checkpoint", b->checkpoint);
    if (st != SDM_OK)
        return st;
    if (!isfinite(b->lr) || b->lr <= 0)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "lr: must be a finite number above 0");
    p->ckpt = sdm_strtab_find(&s->ckpt_names, b->checkpoint);
    if (p->ckpt >= 0 && s->ckpts[p->ckpt].lr != b->lr)
        return sdm_engine_fail(eng, SDM_ERR_CONFLICT,
                               "lr: checkpoint '%s' has lr %.17g, fixed by its first batch",
                               b->checkpoint, s->ckpts[p->ckpt].lr);
    int features = b->is_features || s->proj.kind == SDM_PROJ_NONE;
    st = sdm_check_matrix(eng, features ? "features" : "grads", &b->rows,
                          features ? s->k : s->proj.input_dim);
    if (st != SDM_OK)
        return st;
    uint64_t n = b->rows.rows;
    if (b->curvature) {
        if (b->ids && n > 0)
            return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT,
                                   "example_ids: curvature rows carry no example ids");
        if (b->weights)
            return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT,
                                   "weights: curvature rows carry no weights");
        if (n == 0)
            return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT,
                                   "grads: a curvature batch needs at least one row");
        return SDM_OK;
    }
    if ((st = check_name(s, "contributor", b->contributor)) != SDM_OK ||
        (st = check_name(s, "shard", b->shard)) != SDM_OK)
        return st;
    p->shard = sdm_strtab_find(&s->shard_names, b->shard);
    p->contrib = sdm_strtab_find(&s->contrib_names, b->contributor);
    if (p->shard >= 0 && (long)s->shard_owner[p->shard] != p->contrib)
        return sdm_engine_fail(eng, SDM_ERR_CONFLICT,
                               "shard: '%s' belongs to contributor '%s'", b->shard,
                               s->contrib_names.names[s->shard_owner[p->shard]]);
    if (n > 0 && !b->ids)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "example_ids: missing");
    if (b->weights)
        for (uint64_t i = 0; i < n; i++)
            if (!isfinite(b->weights[i]))
                return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT,
                                       "weights[%llu]: must be finite", (unsigned long long)i);
    if (n == 0)
        return SDM_OK;
    p->ex = malloc(n * sizeof(*p->ex));
    sdm_u64map seen = {0};
    if (!p->ex || sdm_u64map_reserve(&seen, n) != 0) {
        sdm_u64map_free(&seen);
        return sdm_engine_fail(eng, SDM_ERR_NOMEM, "example_ids: out of memory");
    }
    st = SDM_OK;
    for (uint64_t i = 0; i < n && st == SDM_OK; i++) {
        uint64_t id = b->ids[i], prev, e;
        if (sdm_u64map_get(&seen, id, &prev)) {
            st = sdm_engine_fail(eng, SDM_ERR_CONFLICT,
                                 "example_ids[%llu]: id %llu repeats example_ids[%llu]",
                                 (unsigned long long)i, (unsigned long long)id,
                                 (unsigned long long)prev);
            break;
        }
        sdm_u64map_put(&seen, id, i);
        if (!sdm_u64map_get(&s->example_index, id, &e)) {
            p->ex[i] = UINT64_MAX;
            p->n_new++;
            continue;
        }
        p->ex[i] = e;
        const sdm_example *ex = &s->examples[e];
        if ((long)ex->shard != p->shard)
            st = sdm_engine_fail(eng, SDM_ERR_CONFLICT,
                                 "example_ids[%llu]: id %llu belongs to shard '%s'",
                                 (unsigned long long)i, (unsigned long long)id,
                                 s->shard_names.names[ex->shard]);
        else if (p->ckpt >= 0 && e < s->ckpts[p->ckpt].n_ex_map &&
                 s->ckpts[p->ckpt].ex_row[e] >= 0)
            st = sdm_engine_fail(eng, SDM_ERR_CONFLICT,
                                 "example_ids[%llu]: id %llu is already stored at checkpoint '%s'",
                                 (unsigned long long)i, (unsigned long long)id, b->checkpoint);
    }
    sdm_u64map_free(&seen);
    if (st != SDM_OK) {
        free(p->ex);
        p->ex = NULL;
    }
    return st;
}

sdm_status sdm_store_check(sdm_store_t *self, const sdm_batch *batch)
{
    if (!self)
        return SDM_ERR_BAD_INPUT;
    plan p;
    sdm_status st = validate(self, batch, &p);
    free(p.ex);
    return st;
}

/* Capacity for everything the append will touch; nothing logical changes here. */
static int reserve_all(sdm_store_t *s, const sdm_batch *b, const plan *p)
{
    sdm_backend *be = sdm_engine_backend_ptr(s->eng);
    uint64_t n = b->rows.rows;
    if (p->ckpt < 0) {
        uint64_t cap = s->ckpts_cap;
        if (GROW(s->ckpts, cap, s->ckpt_names.len + 1) != 0)
            return -1;
        memset(s->ckpts + s->ckpts_cap, 0, (cap - s->ckpts_cap) * sizeof(*s->ckpts));
        s->ckpts_cap = cap;
    }
    size_t c = p->ckpt >= 0 ? (size_t)p->ckpt : s->ckpt_names.len;
    sdm_ckpt *ck = &s->ckpts[c];
    if (GROW(s->batches, s->batches_cap, s->n_batches + 1) != 0)
        return -1;
    if (b->curvature)
        return rows_reserve(be, &ck->curv, ck->curv.n + n, s->k);
    if (rows_reserve(be, &ck->feat, ck->feat.n + n, s->k) != 0)
        return -1;
    uint64_t mc = ck->meta_cap;
    uint64_t need = ck->feat.n + n;
    if (GROW(ck->norm, mc, need) != 0)
        return -1;
    mc = ck->meta_cap;
    if (GROW(ck->weight, mc, need) != 0)
        return -1;
    mc = ck->meta_cap;
    if (GROW(ck->row_example, mc, need) != 0)
        return -1;
    ck->meta_cap = mc;
    if (GROW(ck->batch_list, ck->batch_list_cap, ck->n_batch_list + 1) != 0)
        return -1;
    uint64_t n_ex = s->n_examples + p->n_new;
    if (GROW(ck->ex_row, ck->ex_map_cap, n_ex) != 0)
        return -1;
    if (GROW(s->examples, s->examples_cap, n_ex) != 0)
        return -1;
    if (sdm_u64map_reserve(&s->example_index, p->n_new) != 0)
        return -1;
    if (p->shard < 0) {
        uint64_t cap = s->shard_cap;
        if (GROW(s->shard_owner, cap, s->shard_names.len + 1) != 0)
            return -1;
        cap = s->shard_cap;
        if (GROW(s->shard_first, cap, s->shard_names.len + 1) != 0)
            return -1;
        s->shard_cap = cap;
    }
    if (p->contrib < 0) {
        uint64_t cap = s->contrib_cap;
        if (GROW(s->contrib_first, cap, s->contrib_names.len + 1) != 0)
            return -1;
        s->contrib_cap = cap;
    }
    return 0;
}

sdm_status sdm_store_append(sdm_store_t *self, const sdm_batch *b, uint64_t *batch_no,
                            float *features_out)
{
    if (!self)
        return SDM_ERR_BAD_INPUT;
    sdm_store_t *s = self;
    plan p;
    sdm_status st = validate(s, b, &p);
    if (st != SDM_OK)
        return st;
    uint64_t n = b->rows.rows;
    uint32_t k = s->k;
    double *sum = NULL, *unit_sum = NULL;
    if (reserve_all(s, b, &p) != 0 ||
        (!b->curvature && (!(sum = calloc(k, sizeof(double))) ||
                           !(unit_sum = calloc(k, sizeof(double)))))) {
        st = sdm_engine_fail(s->eng, SDM_ERR_NOMEM, "store: out of memory for %llu rows",
                             (unsigned long long)n);
        goto fail;
    }
    /* names first: interning can fail, and is undone by truncation below */
    size_t old_ckpts = s->ckpt_names.len, old_shards = s->shard_names.len,
           old_contribs = s->contrib_names.len;
    long c = sdm_strtab_intern(&s->ckpt_names, b->checkpoint);
    long sh = -1, co = -1;
    if (c >= 0 && !b->curvature) {
        co = sdm_strtab_intern(&s->contrib_names, b->contributor);
        sh = co >= 0 ? sdm_strtab_intern(&s->shard_names, b->shard) : -1;
    }
    if (c < 0 || (!b->curvature && sh < 0)) {
        sdm_strtab_truncate(&s->ckpt_names, old_ckpts);
        sdm_strtab_truncate(&s->shard_names, old_shards);
        sdm_strtab_truncate(&s->contrib_names, old_contribs);
        st = sdm_engine_fail(s->eng, SDM_ERR_NOMEM, "store: out of memory for names");
        goto fail;
    }
    sdm_ckpt *ck = &s->ckpts[c];
    sdm_rows *dst = b->curvature ? &ck->curv : &ck->feat;
    float *out = dst->data + (size_t)dst->n * k;
    if (n > 0) {
        if (b->is_features || s->proj.kind == SDM_PROJ_NONE) {
            for (uint64_t i = 0; i < n * k; i++)
                out[i] = sdm_matrix_get(&b->rows, i);
        } else {
            st = sdm_engine_run_project(s->eng, &s->proj, &b->rows, out);
        }
    }
    if (st == SDM_OK && features_out && n > 0)
        memcpy(features_out, out, (size_t)n * k * sizeof(float));
    if (st != SDM_OK) {
        sdm_strtab_truncate(&s->ckpt_names, old_ckpts);
        sdm_strtab_truncate(&s->shard_names, old_shards);
        sdm_strtab_truncate(&s->contrib_names, old_contribs);
        goto fail;
    }

    /* commit: from here on nothing can fail */
    uint64_t batch = s->n_batches;
    if ((size_t)c == old_ckpts)
        ck->lr = b->lr;
    sdm_batch_rec *rec = &s->batches[batch];
    rec->ckpt = (uint32_t)c;
    rec->shard = b->curvature ? SDM_NO_SHARD : (uint32_t)sh;
    rec->row0 = dst->n;
    rec->n = n;
    rec->sum = sum;
    rec->unit_sum = unit_sum;
    if (!b->curvature) {
        if ((size_t)co == old_contribs)
            s->contrib_first[co] = batch;
        if ((size_t)sh == old_shards) {
            s->shard_owner[sh] = (uint32_t)co;
            s->shard_first[sh] = batch;
        }
        ck->batch_list[ck->n_batch_list++] = batch;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t row = ck->feat.n + i;
            const float *f = out + (size_t)i * k;
            double w = b->weights ? b->weights[i] : 1.0;
            double nn = 0;
            for (uint32_t j = 0; j < k; j++)
                nn += (double)f[j] * f[j];
            double norm = sqrt(nn);
            for (uint32_t j = 0; j < k; j++) {
                sum[j] += w * f[j];
                if (norm > 0)
                    unit_sum[j] += w * f[j] / norm;
            }
            ck->norm[row] = (float)norm;
            ck->weight[row] = (float)w;
            uint64_t e = p.ex[i];
            if (e == UINT64_MAX) {
                e = s->n_examples++;
                s->examples[e] = (sdm_example){b->ids[i], (uint32_t)sh, batch};
                sdm_u64map_put(&s->example_index, b->ids[i], e);
            }
            ck->row_example[row] = e;
            if (e >= ck->n_ex_map) {
                for (uint64_t x = ck->n_ex_map; x <= e; x++)
                    ck->ex_row[x] = -1;
                ck->n_ex_map = e + 1;
            }
            ck->ex_row[e] = (int64_t)row;
        }
    }
    dst->n += n;
    s->n_rows += n;
    s->n_batches++;
    free(p.ex);
    if (batch_no)
        *batch_no = batch;
    return SDM_OK;
fail:
    free(sum);
    free(unit_sum);
    free(p.ex);
    return st;
}

uint64_t sdm_store_batches(const sdm_store_t *self)
{
    return self->n_batches;
}

uint64_t sdm_store_examples(const sdm_store_t *self)
{
    return self->n_examples;
}

uint64_t sdm_store_rows(const sdm_store_t *self)
{
    return self->n_rows;
}

uint32_t sdm_store_dim(const sdm_store_t *self)
{
    return self->k;
}

size_t sdm_store_shards(const sdm_store_t *self)
{
    return self->shard_names.len;
}

size_t sdm_store_contributors(const sdm_store_t *self)
{
    return self->contrib_names.len;
}

size_t sdm_store_checkpoints(const sdm_store_t *self)
{
    return self->ckpt_names.len;
}

const char *sdm_store_shard_name(const sdm_store_t *self, size_t shard)
{
    return shard < self->shard_names.len ? self->shard_names.names[shard] : NULL;
}

const char *sdm_store_shard_contributor(const sdm_store_t *self, size_t shard)
{
    return shard < self->shard_names.len ? self->contrib_names.names[self->shard_owner[shard]]
                                         : NULL;
}

const char *sdm_store_contributor_name(const sdm_store_t *self, size_t contributor)
{
    return contributor < self->contrib_names.len ? self->contrib_names.names[contributor] : NULL;
}

const char *sdm_store_checkpoint_name(const sdm_store_t *self, size_t checkpoint)
{
    return checkpoint < self->ckpt_names.len ? self->ckpt_names.names[checkpoint] : NULL;
}

sdm_status sdm_store_checkpoint_lr(const sdm_store_t *self, const char *checkpoint, double *lr)
{
    long c = checkpoint ? sdm_strtab_find(&self->ckpt_names, checkpoint) : -1;
    if (c < 0)
        return SDM_ERR_NOT_FOUND;
    *lr = self->ckpts[c].lr;
    return SDM_OK;
}

/* The training batch holding row `row` of checkpoint c. */
static uint64_t batch_of_row(const sdm_store_t *s, uint32_t c, uint64_t row)
{
    const sdm_ckpt *ck = &s->ckpts[c];
    uint64_t lo = 0, hi = ck->n_batch_list; /* last entry whose row0 <= row */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (s->batches[ck->batch_list[mid]].row0 <= row)
            lo = mid;
        else
            hi = mid;
    }
    return ck->batch_list[lo];
}

sdm_status sdm_store_lookup(const sdm_store_t *self, const char *checkpoint, uint64_t id,
                            float *features, sdm_example_info *info)
{
    long c = checkpoint ? sdm_strtab_find(&self->ckpt_names, checkpoint) : -1;
    uint64_t e;
    if (c < 0 || !sdm_u64map_get(&self->example_index, id, &e))
        return SDM_ERR_NOT_FOUND;
    const sdm_ckpt *ck = &self->ckpts[c];
    if (e >= ck->n_ex_map || ck->ex_row[e] < 0)
        return SDM_ERR_NOT_FOUND;
    uint64_t row = (uint64_t)ck->ex_row[e];
    if (features)
        memcpy(features, ck->feat.data + (size_t)row * self->k, self->k * sizeof(float));
    if (info) {
        const sdm_example *ex = &self->examples[e];
        uint64_t b = batch_of_row(self, (uint32_t)c, row);
        info->id = id;
        info->shard = self->shard_names.names[ex->shard];
        info->contributor = self->contrib_names.names[self->shard_owner[ex->shard]];
        info->batch = b;
        info->row = row - self->batches[b].row0;
        info->weight = ck->weight[row];
    }
    return SDM_OK;
}

sdm_status sdm_store_shard_sum(const sdm_store_t *self, const char *checkpoint,
                               const char *shard, double *sum)
{
    long c = checkpoint ? sdm_strtab_find(&self->ckpt_names, checkpoint) : -1;
    long sh = shard ? sdm_strtab_find(&self->shard_names, shard) : -1;
    if (c < 0 || sh < 0)
        return SDM_ERR_NOT_FOUND;
    memset(sum, 0, self->k * sizeof(double));
    for (uint64_t b = 0; b < self->n_batches; b++) {
        const sdm_batch_rec *r = &self->batches[b];
        if (r->ckpt == (uint32_t)c && r->shard == (uint32_t)sh)
            for (uint32_t j = 0; j < self->k; j++)
                sum[j] += r->sum[j];
    }
    return SDM_OK;
}

sdm_status sdm_store_snapshot(sdm_store_t *s, uint64_t size, sdm_snapshot *snap)
{
    memset(snap, 0, sizeof(*snap));
    if (size == SDM_STORE_NOW)
        size = s->n_batches;
    if (size > s->n_batches)
        return sdm_engine_fail(s->eng, SDM_ERR_BAD_INPUT,
                               "store_size: %llu exceeds the store's %llu batches",
                               (unsigned long long)size, (unsigned long long)s->n_batches);
    size_t nc = s->ckpt_names.len;
    snap->size = size;
    snap->feat_rows = calloc(nc ? nc : 1, sizeof(uint64_t));
    snap->curv_rows = calloc(nc ? nc : 1, sizeof(uint64_t));
    if (!snap->feat_rows || !snap->curv_rows) {
        sdm_snapshot_free(snap);
        return sdm_engine_fail(s->eng, SDM_ERR_NOMEM, "snapshot: out of memory");
    }
    if (size == s->n_batches) {
        for (size_t c = 0; c < nc; c++) {
            snap->feat_rows[c] = s->ckpts[c].feat.n;
            snap->curv_rows[c] = s->ckpts[c].curv.n;
        }
        snap->n_examples = s->n_examples;
        snap->n_shards = s->shard_names.len;
        snap->n_contributors = s->contrib_names.len;
        return SDM_OK;
    }
    for (uint64_t b = 0; b < size; b++) {
        const sdm_batch_rec *r = &s->batches[b];
        uint64_t *rows = r->shard == SDM_NO_SHARD ? snap->curv_rows : snap->feat_rows;
        rows[r->ckpt] = r->row0 + r->n;
    }
    /* tables are numbered in order of first batch, so each snapshot is a prefix */
    uint64_t lo = 0, hi = s->n_examples;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (s->examples[mid].batch < size)
            lo = mid + 1;
        else
            hi = mid;
    }
    snap->n_examples = lo;
    while (snap->n_shards < s->shard_names.len && s->shard_first[snap->n_shards] < size)
        snap->n_shards++;
    while (snap->n_contributors < s->contrib_names.len &&
           s->contrib_first[snap->n_contributors] < size)
        snap->n_contributors++;
    return SDM_OK;
}

void sdm_snapshot_free(sdm_snapshot *snap)
{
    free(snap->feat_rows);
    free(snap->curv_rows);
    memset(snap, 0, sizeof(*snap));
}
