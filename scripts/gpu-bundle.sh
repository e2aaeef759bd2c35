#!/bin/sh
# gpu-bundle.sh - builds the CUDA backend's test and benchmark programs here and packs them,
# with the shared libraries they need beyond glibc, libstdc++ and the CUDA toolkit's own, into
# one folder that runs on a GPU machine lacking the Debian packages (OpenBLAS, LAPACKE, CUnit):
#
#   scripts/gpu-bundle.sh [OUT]          # OUT defaults to gpu-bundle/ (ignored by git)
#   # on the GPU machine, from a checkout holding OUT:
#   OUT/run.sh [tests|bench|all]         # scripts/gpu-check.sh with OUT's programs
#
# CUDA architectures default to 90 (H100, H200); set CUDA_ARCH to change them. The target needs
# an NVIDIA driver and CUDA runtime libraries (libcudart, libcublas, libcusolver) of the same
# major version as this machine's nvcc.
set -eu
. "$(dirname "$0")/help.sh"
cd "$(dirname "$0")/.."
OUT=${1:-gpu-bundle}
BUILD=${BUILD:-build-gpu-bundle}
ARCH=${CUDA_ARCH:-90}
[ -x "$(command -v nvcc || true)" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || PATH="$PATH:/usr/local/cuda/bin"
command -v nvcc >/dev/null || { echo "gpu-bundle: nvcc not found" >&2; exit 1; }
PROGS="test_cuda_backend test_projection test_store test_attribute test_known_answers sediment-bench"

echo "== configure $BUILD (CUDA architectures $ARCH)" >&2
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >/dev/null
echo "== build $PROGS" >&2
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$(nproc)" --target $PROGS >/dev/null

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
for p in $PROGS; do
    cp "$BUILD/bin/$p" "$OUT/bin/"
done
# the cuda backend's module, which the programs load from ../lib
cp "$BUILD/lib/libsediment_cuda.so" "$OUT/lib/"
# every resolved library but the C library's, libstdc++'s and the CUDA toolkit's
{
for p in $PROGS; do
    ldd "$BUILD/bin/$p" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done
ldd "$BUILD/lib/libsediment_cuda.so" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
} | sort -u | while read -r name path; do
    case "$name" in
    libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libstdc++.so* | \
        libgcc_s.so* | libcuda.so* | libcudart.so* | libcublas* | libcusolver* | libcusparse* | \
        libnvJitLink* | libcufft* | libcurand*) ;;
    *) cp -L "$path" "$OUT/lib/$name" ;;
    esac
done
cat >"$OUT/run.sh" <<'EOF'
#!/bin/sh
# run.sh - runs scripts/gpu-check.sh with this bundle's programs and libraries.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cuda=$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")
export LD_LIBRARY_PATH="$here/lib:$cuda/lib64:$cuda/lib:${LD_LIBRARY_PATH:-}"
cd "$here/.."
BIN="$here/bin" exec sh scripts/gpu-check.sh "$@"
EOF
chmod +x "$OUT/run.sh"
du -sh "$OUT" >&2
echo "== $OUT: $(ls "$OUT/bin" | wc -l) programs, $(ls "$OUT/lib" | wc -l) libraries" >&2
