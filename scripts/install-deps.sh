#!/bin/sh
# install-deps.sh - installs the Debian 12 packages sediment builds, tests and benchmarks with.
# Run as root (or through sudo). CUDA is not a Debian package: when nvcc is on PATH (or in
# /usr/local/cuda/bin) the build adds the cuda backend, otherwise it builds cpu-only.
set -eu
. "$(dirname "$0")/help.sh"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake pkg-config \
    libopenblas-openmp-dev liblapacke-dev \
    libzmq3-dev libmsgpack-dev libsodium-dev libssl-dev libsqlite3-dev zlib1g-dev \
    libcunit1-dev \
    python3 python3-numpy python3-zmq python3-msgpack python3-sklearn python3-nacl \
    python3-torch \
    golang-go golang-golang-x-mod-dev
