/* fixtures.h - hand-made attribution results and proofs shared by the service suites. */
#ifndef SDM_TESTS_FIXTURES_H
#define SDM_TESTS_FIXTURES_H

#include <stdint.h>

#include "sediment/engine.h"
#include "sign.h"

/* An attribution result: 2 queries, 3 shards of 2 contributors, 2 hits a side, the lambdas of
 * two checkpoints. Its arrays are static: do not free it. */
sdm_attr_result fixture_result(void);

/* A proof of `res` signed (once encoded and sealed) by worker: model "model-a", two
 * checkpoints "ckpt-1"/"ckpt-2" with lr 0.5 and 0.25, aggregate mean, store size 5, store
 * root 0x5e.., query digest 0x9d.., request "req-17", query ids "q-a" and 256 as msgpack. */
sdm_proof fixture_proof(const uint8_t worker[32], const sdm_projection *proj,
                        const sdm_attr_result *res, sdm_method method);

#endif
