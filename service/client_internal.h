/* client_internal.h - client.c's per-op reply checks without a connection, for the reply
 * fuzz target (tests/fuzz/fuzz_reply.c); not part of the public API in include/sediment/. */
#ifndef SDM_SERVICE_CLIENT_INTERNAL_H
#define SDM_SERVICE_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sediment/client.h"

/* Checks a parsed reply as the call for op checks the reply to its request `id`: the echoed
 * id, `ok` or the server's error, and the fields the op promises (client.h). op is a worker
 * op ("info", "register", "contribute", "attribute", "stats") or a ledger op ("ledger_info",
 * "append", "checkpoint", "entry", "inclusion", "consistency", "history", "rewards").
 * Returns what the call would: SDM_CLIENT_OK, the server's error status or
 * SDM_CLIENT_BAD_REPLY, with err set to the message the call would leave ("" on success);
 * SDM_CLIENT_BAD_ARGUMENT for an unknown op or a NULL reply. */
sdm_client_status sdm_client_check_reply(const char *op, const sdm_reply_t *reply, uint64_t id,
                                         char *err, size_t err_len);

#endif /* SDM_SERVICE_CLIENT_INTERNAL_H */
