#!/usr/bin/env bash
# start.sh - sets up a fresh Debian 12 machine, builds TensorMesh, fetches the default
# model and starts the main job. Extra arguments are passed to the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)"
scripts/fetch_models.sh default
MODEL=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
# The main job: a one-shot generation with the default model (the server replaces it
# once tensor-mesh-api lands). Without arguments a demo prompt is used.
if [ $# -eq 0 ]; then
    set -- -p "Write a C function that reverses a string." -n 128
fi
if build/release/lctl run --help >/dev/null 2>&1; then
    exec build/release/lctl run "$MODEL" "$@"
fi
echo "start: 'lctl run' is not built yet in this revision; showing the model instead" >&2
exec build/release/lctl inspect "$MODEL"
