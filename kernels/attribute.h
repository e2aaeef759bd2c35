/* attribute.h - pieces of SPEC §3 shared by the fast path and the plain-loop reference. */
#ifndef SDM_KERNELS_ATTRIBUTE_H
#define SDM_KERNELS_ATTRIBUTE_H

#include "store.h"

/* Validates a request and takes the snapshot it names; ckpt_of[i] gets the checkpoint
 * index of req->queries[i]. On failure nothing needs freeing. */
sdm_status sdm_attr_validate(sdm_engine_t *eng, sdm_store_t *s, const sdm_attr_request *req,
                             sdm_snapshot *snap, uint32_t *ckpt_of);

/* A zeroed result sized for the snapshot, names filled in; NULL when out of memory. */
sdm_attr_result *sdm_attr_result_alloc(const sdm_store_t *s, const sdm_snapshot *snap,
                                       uint64_t m, uint32_t topk, size_t n_lambdas);

/* From shard_score (sums): applies `mean` (dividing by shard_size), then fills contributor
 * scores and both kinds of shares. */
void sdm_attr_result_finish(sdm_attr_result *r, sdm_aggregate agg, const uint64_t *shard_size);

/* Examples of the snapshot present in at least one of the used checkpoints (the columns
 * of S); adds each one to shard_size[its shard] when shard_size is non-NULL. */
uint64_t sdm_attr_present(const sdm_store_t *s, const sdm_snapshot *snap,
                          const uint32_t *ckpt_of, size_t n_used, uint64_t *shard_size);

/* A query's m x k features: converted when given as features, else projected. */
sdm_status sdm_attr_query_features(sdm_engine_t *eng, sdm_store_t *s, const sdm_query *q,
                                   float *out);

/* K (cached, extended lazily) and lambda of checkpoint c for trak at the snapshot. *K may
 * point into the cache; when *scratch is non-NULL it is the caller's to free. */
sdm_status sdm_attr_trak_lambda(sdm_store_t *s, const sdm_snapshot *snap, uint32_t c,
                                double requested, double **K, double *lambda,
                                double **scratch);

#endif /* SDM_KERNELS_ATTRIBUTE_H */
