#!/usr/bin/env bash
# test.sh - the whole TensorMesh test suite, as CI runs it (.ci/run calls exactly this).
#
#  1. installs what is missing (scripts/deps.sh) and fetches the real models (PyPI)
#  2. checks formatting (clang-format) of every C source
#  3. builds release with -Werror (CUDA sources compiled when nvcc is present)
#  4. runs the C unit tests on that release build, then builds debug with AddressSanitizer +
#     UBSan and runs them again there (ctest)
#  4b. cross-builds core + CPU backend for arm64 and runs their unit tests under qemu-aarch64,
#     with and without the dotprod extension (scripts/cross_arm64.sh; correctness only)
#  5. runs the Python oracle tests (pytest: tokenizers, gguf, safetensors, jinja2...)
#  6. builds the libFuzzer harnesses (clang, ASan+UBSan) and runs each for a bounded time
#
# Environment: TM_FUZZ_SECONDS (default 20) per harness; TM_SKIP_FUZZ=1 skips step 6.
# TM_SKIP_ARM64=1 skips step 4b.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=$(nproc)
passed=0; failed=0; failed_names=()
stage() { # name command...
    local name=$1; shift
    echo; echo "==== $name ===="
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failed_names+=("$name"); fi
}

scripts/deps.sh
scripts/fetch_models.sh default gemma3 minilm

format_check() {
    local bad=0
    while IFS= read -r f; do
        clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || { echo "clang-format: $f"; bad=1; }
    done < <(git ls-files '*.c' '*.h' 2>/dev/null || find include src tools tests -name '*.[ch]')
    return $bad
}

build_release() {
    cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DTM_WERROR=ON >/dev/null &&
        cmake --build build/release -j"$JOBS"
}

# The same unit tests on the optimized build: compiler-dependent bugs (auto-vectorization,
# SIMD kernels at -O2) only show there.
unit_release() {
    (cd build/release && ctest --output-on-failure -j"$JOBS")
}

unit_asan() {
    cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DTM_WERROR=ON -DTM_CUDA=OFF \
        -DTM_SANITIZE_ADDRESS=ON -DTM_SANITIZE_UNDEFINED=ON >/dev/null &&
        cmake --build build/asan -j"$JOBS" &&
        (cd build/asan && ctest --output-on-failure -j"$JOBS")
}

pytests() {
    TM_BUILD_DIR="$ROOT/build/release" TM_ASAN_BUILD_DIR="$ROOT/build/asan" \
        .venv/bin/python -m pytest -q tests/py tests/e2e
}

fuzz() {
    local secs=${TM_FUZZ_SECONDS:-20}
    CC=clang cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
        -DTM_FUZZ=ON -DTM_BUILD_TESTS=OFF -DTM_CUDA=OFF \
        -DTM_SANITIZE_ADDRESS=ON -DTM_SANITIZE_UNDEFINED=ON >/dev/null &&
        cmake --build build/fuzz -j"$JOBS" || return 1
    local rc=0
    for h in build/fuzz/fuzz_*; do
        [ -x "$h" ] || continue
        local name; name=$(basename "$h"); local kind=${name#fuzz_}
        local seeds="tests/fuzz/corpus/$kind"; local work="build/fuzz/corpus-$kind"
        mkdir -p "$work"; [ -d "$seeds" ] && cp -n "$seeds"/* "$work"/ 2>/dev/null || true
        echo "fuzz: $name for ${secs}s"
        if ! "$h" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 \
            -artifact_prefix=build/fuzz/ "$work" >"build/fuzz/$name.log" 2>&1; then
            echo "fuzz: $name FAILED (log: build/fuzz/$name.log)"; tail -40 "build/fuzz/$name.log"; rc=1
        else
            grep -E '^Done|stat::number_of_executed_units' "build/fuzz/$name.log" | tail -1
        fi
    done
    return $rc
}

stage format format_check
stage build-release build_release
stage unit-release unit_release
stage unit-asan unit_asan
[ "${TM_SKIP_ARM64:-0}" = 1 ] || stage cross-arm64 scripts/cross_arm64.sh
stage python-oracles pytests
[ "${TM_SKIP_FUZZ:-0}" = 1 ] || stage fuzz fuzz

echo
[ $failed -eq 0 ] || echo "failed stages: ${failed_names[*]}"
echo "stages: $passed passed, $failed failed"
[ $failed -eq 0 ]
