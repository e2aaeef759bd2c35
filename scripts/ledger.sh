#!/bin/sh
# ledger.sh - builds sediment and runs the ledger. Extra arguments go to sediment-ledger
# (`scripts/ledger.sh --help`); by default it serves tcp://127.0.0.1:7720 with its data in
# ./sediment-ledger.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$(command -v nvcc || true)" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target sediment-ledger sediment >&2
exec "$BUILD/bin/sediment-ledger" "$@"
