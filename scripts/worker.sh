#!/bin/sh
# worker.sh - builds sediment and runs the worker (the README's main job). Extra arguments go
# to sediment-worker (`scripts/worker.sh --help`); by default it serves tcp://127.0.0.1:7710
# with its data in ./sediment-data.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$(command -v nvcc || true)" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target sediment-worker sediment >&2
exec "$BUILD/bin/sediment-worker" "$@"
