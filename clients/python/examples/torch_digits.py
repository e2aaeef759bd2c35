#!/usr/bin/python3
"""torch_digits.py - trains a small PyTorch MLP on the bundled digits and attributes it through a sediment worker.

The whole client side of sediment in one script: the training set is dealt among a few
contributors (one of whom sends shuffled labels), a tiny MLP is trained with plain SGD, and at
a few checkpoints along the way every training example's loss gradient is sent to the worker
with the Python client. Then the test set's loss gradients are attributed (TracIn, SPEC §3
`dot`: S = sum over checkpoints of lr * <g_test, g_train>), and the contributor table is
printed. Every receipt and the proof are verified here, in Python, against the worker's key
from `info`; the script exits 1 if any check fails.

Needs python3-torch (Debian 12 ships 1.13) plus what sediment_client needs (python3-zmq,
python3-msgpack, python3-numpy, python3-nacl). Run a worker first (`scripts/worker.sh`), then:

    /usr/bin/python3 clients/python/examples/torch_digits.py

With `--send features` the gradients are projected here, with sediment_torch's SPEC §2
projection on the device torch computed them on, and k-dim features go to the worker instead
of d-dim gradients (the receipts then digest the features; the scores are the same).

Progress goes to stderr, the table (or, with --json, a JSON summary) to stdout.
"""

import argparse
import csv
import gzip
import hashlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
# Run from a checkout without installing anything: the client is one file in service/python.
sys.path.insert(0, os.path.join(ROOT, "service", "python"))

import numpy as np  # noqa: E402
import sediment_client as sc  # noqa: E402

DIGITS = os.path.join(ROOT, "models", "data", "digits.csv.gz")
DIGITS_SHA256 = "46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a"
NOISY = "noisy"     # the contributor whose labels are shuffled


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load_digits(path):
    """(x float32 n x 64 scaled to [0,1], y int64 n) from the gzip CSV; refuses a changed file."""
    with open(path, "rb") as f:
        raw = f.read()
    if hashlib.sha256(raw).hexdigest() != DIGITS_SHA256:
        raise ValueError("%s: SHA-256 differs from models/data/README.md" % path)
    rows = list(csv.reader(gzip.decompress(raw).decode("ascii").splitlines()))
    data = np.array(rows, dtype=np.int64)
    return (data[:, :64] / 16.0).astype(np.float32), data[:, 64]


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Train a small PyTorch model on the digits, contribute per-example "
                    "gradients to a sediment worker at several checkpoints, attribute the "
                    "test set and verify the signed proof.")
    p.add_argument("--endpoint", default=sc.DEFAULT_ENDPOINT,
                   help="worker endpoint (default %(default)s)")
    p.add_argument("--checkpoints", type=int, default=3,
                   help="checkpoints to contribute at, spread over training (default 3)")
    p.add_argument("--contributors", type=int, default=5,
                   help="contributors the training set is dealt among, one of them with "
                        "shuffled labels (default 5)")
    p.add_argument("--train", type=int, default=1400, help="training examples (default 1400)")
    p.add_argument("--test", type=int, default=300, help="test examples (default 300)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--hidden", type=int, default=32, help="hidden units of the MLP (default 32)")
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default 0.1)")
    p.add_argument("--dim", type=int, default=256,
                   help="rademacher projection dimension k (default 256)")
    p.add_argument("--seed", type=int, default=7, help="seed of the split, the deal, the "
                   "model and the projection (default 7)")
    p.add_argument("--model", default=None,
                   help="model name at the worker (default torch-digits-<random>, so that "
                        "runs against the same worker do not collide)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for each reply (default 120)")
    p.add_argument("--send", choices=("grads", "features"), default="grads",
                   help="what goes to the worker: per-example gradients, or features projected "
                        "here with sediment_torch (default grads)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")
    a = p.parse_args(argv)
    if a.checkpoints < 1:
        p.error("--checkpoints: must be at least 1")
    if a.checkpoints > a.epochs:
        p.error("--checkpoints: at most --epochs (%d)" % a.epochs)
    if a.contributors < 2:
        p.error("--contributors: must be at least 2")
    if a.train < 10 * a.contributors or a.test < 1 or a.train + a.test > 1797:
        p.error("--train, --test: need train >= 10 per contributor, test >= 1, "
                "train + test <= 1797")
    if a.hidden < 1 or a.dim < 1 or a.lr <= 0:
        p.error("--hidden, --dim, --lr: must be positive")
    return a


# ---- the model: parameters as plain tensors, so per-example gradients are one vmap away -------

def init_params(torch, hidden, gen):
    def uniform(shape, fan_in):
        bound = 1.0 / fan_in ** 0.5
        return (torch.rand(shape, generator=gen) * 2 - 1) * bound
    return [uniform((hidden, 64), 64), uniform((hidden,), 64),
            uniform((10, hidden), hidden), uniform((10,), hidden)]


def forward(torch, params, x):
    w1, b1, w2, b2 = params
    return torch.relu(x @ w1.T + b1) @ w2.T + b2


def per_example_grads(torch, params, x, y):
    """n x d float32 matrix: row i is the gradient of example i's cross-entropy loss with
    respect to all parameters, flattened in the order of `params`."""
    F = torch.nn.functional

    def loss_one(p, xi, yi):
        return F.cross_entropy(forward(torch, p, xi[None]), yi[None])

    vmap = grad = None
    try:
        from torch.func import grad, vmap          # torch >= 2.0
    except ImportError:
        try:
            from functorch import grad, vmap       # torch 1.13 ships functorch
        except ImportError:
            pass
    if vmap is not None:
        gs = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
        flat = torch.cat([g.reshape(len(x), -1) for g in gs], dim=1)
    else:
        # No functorch: one small backward pass per example is still quick at this size.
        rows = []
        leaves = [p.detach().requires_grad_(True) for p in params]
        for i in range(len(x)):
            gs = torch.autograd.grad(loss_one(leaves, x[i], y[i]), leaves)
            rows.append(torch.cat([g.reshape(-1) for g in gs]))
        flat = torch.stack(rows)
    return flat.detach().cpu().numpy().astype(np.float32)


def main(argv=None):
    a = parse_args(argv)
    try:
        import torch
    except ImportError:
        log("torch_digits: PyTorch is not installed (Debian: apt-get install python3-torch)")
        return 2
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    t0 = time.time()

    # ---- data: a seeded split, the train set dealt round-robin among the contributors --------
    x, y = load_digits(DIGITS)
    order = rng.permutation(len(y))
    tr, te = order[:a.train], order[a.train:a.train + a.test]
    names = ["c%d" % i for i in range(a.contributors - 1)] + [NOISY]
    owner = np.arange(a.train) % a.contributors          # index into names
    y_train = y[tr].copy()
    noisy = owner == names.index(NOISY)
    # The noisy contributor's labels are a permutation of its own: right class counts,
    # wrong pairing. The model trains on them like on anyone else's data.
    y_train[noisy] = rng.permutation(y_train[noisy])
    ids = [int(i) for i in tr]         # example ids: the row numbers in digits.csv.gz
    xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y_train)
    xq, yq = torch.from_numpy(x[te]), torch.from_numpy(y[te])
    log("digits: %d train (%d with shuffled labels, contributor %r), %d test"
        % (len(tr), int(noisy.sum()), NOISY, len(te)))

    # ---- train, keeping parameter snapshots at the checkpoints ---------------------------------
    params = [p.requires_grad_(True) for p in init_params(torch, a.hidden, gen)]
    d = sum(p.numel() for p in params)
    opt = torch.optim.SGD(params, lr=a.lr)
    at = {round(a.epochs * (i + 1) / a.checkpoints) for i in range(a.checkpoints)}
    snapshots = []                      # (checkpoint id, lr, params)
    batch = 32
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(len(yt), generator=gen)
        for s in range(0, len(perm), batch):
            j = perm[s:s + batch]
            loss = torch.nn.functional.cross_entropy(forward(torch, params, xt[j]), yt[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch in at:
            with torch.no_grad():
                acc = (forward(torch, params, xq).argmax(1) == yq).float().mean().item()
            snapshots.append(("epoch-%d" % epoch, a.lr, [p.detach().clone() for p in params]))
            log("epoch %d: checkpoint %r, test accuracy %.3f" % (epoch, snapshots[-1][0], acc))
    log("trained an MLP 64-%d-10 (%d parameters) in %.1fs" % (a.hidden, d, time.time() - t0))

    model = a.model or "torch-digits-%s" % os.urandom(4).hex()
    failures = []
    with sc.Client(a.endpoint, timeout=a.timeout) as client:
        try:
            info = client.info()
        except sc.SedimentError as e:
            log("torch_digits: %s: %s" % (a.endpoint, e))
            return 3
        worker_key = bytes(info["worker_key"])
        log("worker %s at %s (backend %s), key %s"
            % (info.get("version"), a.endpoint, info.get("backend"), worker_key.hex()))
        client.register(model, input_dim=d, kind="rademacher", dim=a.dim, seed=a.seed)
        log("registered %r: input_dim %d, rademacher k=%d" % (model, d, a.dim))
        send = lambda m: m  # noqa: E731
        if a.send == "features":
            import sediment_torch
            proj = sediment_torch.Projector("rademacher", d, a.dim, a.seed)
            send = lambda m: proj(torch.from_numpy(m)).cpu().numpy()  # noqa: E731
            log("projecting here: %d-dim gradients go out as %d-dim features" % (d, a.dim))

        # ---- contribute: per checkpoint, each contributor's per-example gradients --------------
        queries = {}
        for ck, lr, snap in snapshots:
            g = per_example_grads(torch, snap, xt, yt)
            for c, name in enumerate(names):
                rows = np.flatnonzero(owner == c)
                gi, idi = send(g[rows]), [ids[r] for r in rows]
                rows_field = {"features" if a.send == "features" else "grads": gi}
                reply = client.contribute(model, ck, lr=lr, contributor=name,
                                          shard=name + "/digits", example_ids=idi, **rows_field)
                try:
                    sc.verify_receipt(reply["receipt"], idi, gi, allowed_keys=[worker_key],
                                      model=model, checkpoint=ck, contributor=name)
                except sc.VerificationError as e:
                    failures.append("receipt %s/%s: %s" % (ck, name, e))
            # Queries are gradients of the test examples' loss (true labels) at the same
            # parameters. Training on z takes a step along -lr*g_z, which changes the test
            # loss by about -lr*<g_test, g_z>; so a positive dot product means z lowers the
            # test loss, which is SPEC §3's sign: positive = helps.
            queries[ck] = send(per_example_grads(torch, snap, xq, yq))
            log("%s: contributed %d examples in %d batches, store size %d"
                % (ck, len(ids), len(names), reply["store_size"]))

        # ---- attribute the test set and verify the proof --------------------------------------
        t1 = time.time()
        given = {"query_features" if a.send == "features" else "queries": queries}
        reply = client.attribute(model, method="dot", aggregate="sum", topk=3,
                                 query_ids=[int(i) for i in te], **given)
        log("attributed %d test examples over %d checkpoints in %.1fs"
            % (len(te), len(queries), time.time() - t1))

    proof_ok = False
    try:
        body = sc.verify_proof(reply["proof"], queries, allowed_keys=[worker_key])
        if body["model"] != model or [c["id"] for c in body["checkpoints"]] != list(queries):
            raise sc.VerificationError("proof model/checkpoints: not what was asked")
        proof_ok = True
        log("proof verified: Ed25519 signature by the worker's key %s, query digest %s"
            % (worker_key.hex()[:16], body["query_digest"].hex()[:16]))
    except sc.VerificationError as e:
        failures.append("proof: %s" % e)

    # ---- the contributor table: scores summed over test queries, mean share -------------------
    score = {n: 0.0 for n in names}
    share = {n: 0.0 for n in names}
    for q in reply["result"]:
        for name, s, w in q["contributors"]:
            score[name] += s
            share[name] += w / len(reply["result"])
    count = {n: int((owner == i).sum()) for i, n in enumerate(names)}
    ranked = sorted(names, key=lambda n: score[n], reverse=True)
    for f in failures:
        log("VERIFICATION FAILED: " + f)

    if a.json:
        print(json.dumps({
            "model": model, "parameters": d, "checkpoints": [s[0] for s in snapshots],
            "train": len(tr), "test": len(te), "noisy": NOISY, "sent": a.send,
            "proof_verified": proof_ok,
            "receipts_verified": not any(f.startswith("receipt") for f in failures),
            "worker_key": worker_key.hex(), "seconds": round(time.time() - t0, 2),
            "contributors": [{"contributor": n, "examples": count[n], "score": score[n],
                              "mean_share": share[n]} for n in ranked]}, indent=1))
    else:
        print("%-12s %8s %14s %10s" % ("contributor", "examples", "score", "mean share"))
        for n in ranked:
            print("%-12s %8d %14.6g %10.3f%s" % (n, count[n], score[n], share[n],
                                                 "  (shuffled labels)" if n == NOISY else ""))
        print("proof %s" % ("verified" if proof_ok else "NOT verified"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
