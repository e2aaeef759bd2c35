#!/bin/sh
# run.sh - CTest driver: our checkpoints and proofs, verified by Go's sumdb/note and sumdb/tlog.
#
# Usage: run.sh EMIT_TLOG WORK_DIR
# emit_tlog writes the JSON into WORK_DIR and prints the summary tlogcheck must print; the Go
# program is built offline in GOPATH mode against Debian's golang-golang-x-mod-dev (GOPATH
# defaults to /usr/share/gocode; set SDM_GOPATH to use another tree holding golang.org/x/mod),
# run on the JSON, and its exit status and summary are both checked. SDM_GO names the go
# binary (CMake passes the one it found).
set -eu
if [ $# -ne 2 ]; then
    echo "usage: run.sh EMIT_TLOG WORK_DIR" >&2
    exit 2
fi
emit=$1
work=$2
src=$(cd "$(dirname "$0")" && pwd)/tlogcheck
gopath=${SDM_GOPATH:-/usr/share/gocode}
go=${SDM_GO:-go}

rm -rf "$work/tlog.json" "$work/tlogcheck"
mkdir -p "$work"

want=$("$emit" "$work/tlog.json")

# GO111MODULE=off: no go.mod and no network, so imports resolve from $gopath/src.
(cd "$src" && GO111MODULE=off GOPATH="$gopath" GOCACHE="$work/gocache" GOFLAGS= \
    "$go" build -o "$work/tlogcheck" .)

status=0
got=$("$work/tlogcheck" -v "$work/tlog.json") || status=$?
echo "tlogcheck: $got"
if [ "$status" -ne 0 ]; then
    echo "FAIL: tlogcheck exited with status $status" >&2
    exit 1
fi
if [ "$got" != "$want" ]; then
    echo "FAIL: tlogcheck's summary differs from what emit_tlog wrote" >&2
    echo "  want: $want" >&2
    exit 1
fi
echo "ok: Go's sumdb/note and sumdb/tlog verified every checkpoint and proof and rejected every bad one"
