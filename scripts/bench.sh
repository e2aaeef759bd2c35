#!/bin/sh
# bench.sh - builds sediment and runs its engine benchmark: projection and attribution on
# the default backend (cuda when a device is usable, else cpu) next to same-run baselines,
# and the numpy implementation of the same maths. Extra arguments go to sediment-bench
# (`build/bin/sediment-bench --help` lists them).
set -eu
. "$(dirname "$0")/help.sh"
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$(command -v nvcc || true)" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target sediment-bench
exec "$BUILD/bin/sediment-bench" --numpy bench/numpy_attribute.py "$@"
