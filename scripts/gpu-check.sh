#!/bin/sh
# gpu-check.sh - runs the CUDA backend's tests and benchmarks on a machine with a GPU and
# writes each run's output under OUTDIR (default bench/results/run): the parity suites'
# logs and one sediment-bench JSON per case, named <case>.json.
#
#   BIN=build/bin OUTDIR=/tmp/gpu scripts/gpu-check.sh [tests|bench|all]
#
# BIN holds the test programs and sediment-bench (built with scripts/test.sh or cmake, with
# CUDA architectures that include the device's). The tests are test_cuda_backend (each
# backend slot against the cpu backend) and the engine-level suites run with --backend cuda
# (projection, store, attribution against the plain-loop reference, SPEC's known answers).
# Each step prints one line as it starts, so a long run shows where it is; the exit status is
# 0 only when every step passed.
set -u
. "$(dirname "$0")/help.sh"
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
OUTDIR=${OUTDIR:-bench/results/run}
WHAT=${1:-all}
case "$WHAT" in
tests | bench | all) ;;
*)
    echo "gpu-check: unknown step '$WHAT' (tests, bench or all)" >&2
    exit 2
    ;;
esac
mkdir -p "$OUTDIR"
fail=0

step() { echo "== $*" >&2; }

if [ "$WHAT" != bench ]; then
    for t in test_cuda_backend test_projection test_store test_attribute test_known_answers; do
        step "$t"
        if ! "$BIN/$t" --backend cuda tests/data >"$OUTDIR/$t.log" 2>&1; then
            fail=1
            echo "gpu-check: $t failed" >&2
        fi
        tail -n 12 "$OUTDIR/$t.log" >&2
        # on a GPU machine a suite that found no device checked nothing: that is a failure here
        if grep -q "no usable CUDA device\|no CUDA device: skipping" "$OUTDIR/$t.log"; then
            fail=1
            echo "gpu-check: $t found no usable CUDA device" >&2
        fi
    done
fi

bench() {
    name=$1
    shift
    step "bench $name: $*"
    if ! "$BIN/sediment-bench" --backend cuda --json "$@" >"$OUTDIR/$name.json" 2>"$OUTDIR/$name.err"; then
        fail=1
        echo "gpu-check: bench $name failed" >&2
        cat "$OUTDIR/$name.err" >&2
    fi
}

if [ "$WHAT" != tests ]; then
    N=${N:-2000000}
    for m in dot cosine trak; do
        bench "cuda-attribute-$m" --op attribute --n "$N" --m 64 --k 1024 --method $m --reps 10
    done
    bench cuda-attribute-dot-m4 --op attribute --n "$N" --m 4 --k 1024 --method dot --reps 10
    bench cuda-attribute-dot-m8 --op attribute --n "$N" --m 8 --k 1024 --method dot --reps 10
    bench cuda-attribute-dot-n200k --op attribute --n 200000 --m 64 --k 1024 --method dot --reps 10
    for dt in f32 bf16 f16; do
        bench "cuda-project-rademacher-$dt" --op project --n 65536 --d 8192 --k 1024 --dtype $dt --reps 10
    done
    bench cuda-project-sjlt-f32 --op project --kind sjlt --n 65536 --d 8192 --k 1024 --reps 10
fi
exit $fail
