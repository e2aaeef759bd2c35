#!/bin/sh
# demo.sh - builds sediment and runs `sediment demo` (the README's main job): a worker and a
# ledger on loopback, ten contributors of the bundled digits (one with corrupted labels, one
# copying another), contributions at several checkpoints, an attribution, every receipt and
# proof recorded and verified in the ledger, and the contributor table with rewards. Extra
# arguments go to `sediment demo` (`scripts/demo.sh --help`).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$(command -v nvcc || true)" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target sediment sediment-worker sediment-ledger >&2
exec "$BUILD/bin/sediment" demo "$@"
