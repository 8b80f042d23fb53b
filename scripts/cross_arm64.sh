#!/usr/bin/env bash
# cross_arm64.sh - builds the core + CPU backend for arm64 (gcc-aarch64-linux-gnu,
# -DTM_KERNELS_ONLY=ON: no pkg-config libraries needed) and runs their unit tests under
# qemu-aarch64, once per CPU model:
#   max         reports asimddp: the dotprod (sdot) dots run, and the plain NEON ones are
#               compared against the reference in the same process
#   cortex-a72  no dotprod: run-time detection must fall back to the plain NEON dots
# TM_TEST_EXPECT_ISA makes test_quant_dot fail unless the detected ISA is the expected one.
# qemu checks correctness only; it says nothing about speed on real arm64.
#
# Needs (scripts/deps.sh): gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user. The build is
# CMakePresets.json's "arm64" (build/arm64); by hand: cmake --preset arm64 && cmake --build
# build/arm64 && QEMU_CPU=max ctest --test-dir build/arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/arm64
JOBS=$(nproc)

for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
    command -v "$tool" >/dev/null || { echo "cross_arm64: $tool missing (scripts/deps.sh)"; exit 1; }
done

# The preset builds at -O2, not Release's -O3: Debian 12's aarch64 GCC 12.2 dies with an
# internal compiler error (vect_transform_reduction, tree-vect-loop.cc:7457) vectorizing a
# double fmax reduction loop at -O3, and the tests have two.
cmake --preset arm64 >/dev/null
cmake --build "$BUILD" -j"$JOBS"

rc=0
for cpu in max:neon-dotprod cortex-a72:neon; do
    echo "cross_arm64: qemu -cpu ${cpu%%:*} (expect ${cpu#*:})"
    (cd "$BUILD" && QEMU_CPU=${cpu%%:*} TM_TEST_EXPECT_ISA=${cpu#*:} \
        ctest --output-on-failure -j"$JOBS") || rc=1
done
exit $rc
