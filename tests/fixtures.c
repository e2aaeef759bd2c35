/* fixtures.c - hand-made attribution results and proofs shared by the service suites. */
#include "fixtures.h"

#include <string.h>

static const char *shards[3] = {"s-a", "s-b", "s-c"};
static const char *owner_names[3] = {"alice", "bob", "alice"};
static uint32_t owner[3] = {0, 1, 0};
static const char *contributors[2] = {"alice", "bob"};
static double shard_score[6] = {1.5, -0.25, 0.5, 0.0, 2.0, -1.0};
static double shard_share[6] = {0.75, 0.0, 0.25, 0.0, 1.0, 0.0};
static double contrib_score[4] = {2.0, -0.25, -1.0, 2.0};
static double contrib_share[4] = {1.0, 0.0, 0.0, 1.0};
static sdm_hit top[4] = {{7, 0, 0.9}, {3, 2, 0.4}, {11, 1, 1.25}, {7, 0, 0.5}};
static sdm_hit bottom[4] = {{5, 1, -0.3}, {8, 2, -0.1}, {2, 2, -2.5}, {4, 0, -0.75}};
static double lambdas[2] = {0.125, 3.5};
static const char *const ckpts[2] = {"ckpt-1", "ckpt-2"};
static const double lrs[2] = {0.5, 0.25};
/* query ids as a request gave them: "q-a" and 256, msgpack-encoded */
static const uint8_t qid0[4] = {0xa3, 'q', '-', 'a'};
static const uint8_t qid1[3] = {0xcd, 0x01, 0x00};
static const uint8_t *const qids[2] = {qid0, qid1};
static const size_t qid_lens[2] = {4, 3};

sdm_attr_result fixture_result(void)
{
    sdm_attr_result r;
    memset(&r, 0, sizeof(r));
    r.m = 2;
    r.store_size = 5;
    r.n_examples = 12;
    r.n_shards = 3;
    r.n_contributors = 2;
    r.shard_names = shards;
    r.shard_contributor = owner_names;
    r.shard_owner = owner;
    r.contributor_names = contributors;
    r.shard_score = shard_score;
    r.shard_share = shard_share;
    r.contributor_score = contrib_score;
    r.contributor_share = contrib_share;
    r.topk = 2;
    r.top = top;
    r.bottom = bottom;
    r.n_lambdas = 2;
    r.lambdas = lambdas;
    return r;
}

sdm_proof fixture_proof(const uint8_t worker[32], const sdm_projection *proj,
                        const sdm_attr_result *res, sdm_method method)
{
    sdm_proof p;
    memset(&p, 0, sizeof(p));
    memcpy(p.worker, worker, 32);
    p.issued_at = 1700000000999ull;
    p.model = "model-a";
    p.projection = proj;
    p.method = method;
    p.aggregate = SDM_AGG_MEAN;
    p.n_checkpoints = 2;
    p.checkpoints = ckpts;
    p.lrs = lrs;
    p.lambdas = NULL; /* taken from the result */
    p.store_size = 5;
    memset(p.store_root, 0x5e, SDM_HASH_LEN);
    memset(p.query_digest, 0x9d, SDM_HASH_LEN);
    p.request_id = "req-17";
    p.result = res;
    p.query_ids = qids;
    p.query_id_lens = qid_lens;
    return p;
}
