#!/usr/bin/python3
"""ledger_fetch.py - times the Python LedgerClient reading a whole log: entry by entry (one
round trip each, the baseline) against LedgerClient.entries (pipelined), and a full audit.

Starts its own sediment-ledger (from SDM_BIN, default build/bin) on loopback, appends N
synthetic signed receipts, then reads them back three times each way; the median is
reported. Run from the repository root:  /usr/bin/python3 bench/ledger_fetch.py --n 5000
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "python"), os.path.join(ROOT, "service", "python")]
os.environ.setdefault("SDM_BIN", os.path.join(ROOT, "build", "bin"))

import sediment_client as sc  # noqa: E402
from ledgerproc import Ledger  # noqa: E402
from test_ledger import Synthetic  # noqa: E402


def median_seconds(fn, reps=3):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="entries to append and read (5000)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    syn = Synthetic()
    led = Ledger()
    try:
        with sc.LedgerClient(led.endpoint, timeout=60) as lc:
            for i in range(a.n):
                lc.append(syn.next())
                if not a.json and (i + 1) % 1000 == 0:
                    print("appended %d/%d" % (i + 1, a.n), file=sys.stderr)
            info = lc.info()
            cp, _ = lc.verified_checkpoint(sc.verifier_key(info["origin"], info["ledger_key"]))
            rows = {
                "entry_bytes, one by one": median_seconds(
                    lambda: [lc.entry_bytes(i) for i in range(cp.size)]),
                "entries, window 64": median_seconds(lambda: list(lc.entries(0, cp.size))),
                "entries, window 256": median_seconds(
                    lambda: list(lc.entries(0, cp.size, window=256))),
                "audit, window 64": median_seconds(lambda: lc.audit(cp), reps=1),
            }
    finally:
        led.close()
    base = rows["entry_bytes, one by one"]
    if a.json:
        print(json.dumps({"entries": cp.size, "seconds": rows,
                          "speedup_window_64": base / rows["entries, window 64"],
                          "speedup_window_256": base / rows["entries, window 256"]}))
        return
    for name, t in rows.items():
        print("%-26s %8.3f s  %9.0f entries/s  %5.2fx" % (name, t, cp.size / t, base / t))


if __name__ == "__main__":
    main()
