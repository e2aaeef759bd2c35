#!/bin/sh
# test.sh - configures, builds and runs every test with CTest (the README's test command).
# The cuda suites check something only when a device is present (without one they say so);
# without nvcc the build is cpu-only.
set -eu
. "$(dirname "$0")/help.sh"
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$(command -v nvcc || true)" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j "$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure
