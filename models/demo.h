/* demo.h - `sediment demo`: the whole pipeline on loopback, from training to rewards.
 *
 * In one process: a ledger and a worker (each serving on its own thread, on
 * tcp://127.0.0.1:0, the worker forwarding every receipt and proof to the ledger), the digits
 * dealt among contributors (one with every label shifted, the last copying contributor 0's
 * examples under new ids), a logistic regression trained with L-BFGS keeping a few
 * checkpoints, each contributor's per-example gradients contributed at every checkpoint (with
 * curvature rows), the test set attributed with trak, every ledger entry's signature and
 * inclusion verified against the final signed checkpoint, and a contributor table (score,
 * share, reward from a pool, flagged). docs/demo.md describes it.
 */
#ifndef SDM_MODELS_DEMO_H
#define SDM_MODELS_DEMO_H

/* The demo's command line (`sediment demo [options]`, `--help` lists them); argv[0] is the
 * program's name. Progress goes to stderr, the table (or with --json one JSON object) to
 * stdout. Returns the exit status: 0 ok, 1 the run or a verification failed, 2 usage. */
int sdm_demo_main(int argc, char **argv);

#endif
