#!/usr/bin/env bash
# start.sh - sets up a fresh Debian 12 machine, builds TensorMesh, fetches the default
# model and starts the OpenAI-compatible server on it. Extra arguments go to the server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)"
scripts/fetch_models.sh default
MODEL=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
# The main job: the OpenAI-compatible server on the default model (127.0.0.1:8080 unless
# --host/--port say otherwise). Extra arguments go to tensor-mesh-api (see --help).
echo "start: serving $MODEL at http://127.0.0.1:8080/v1 (Ctrl-C stops)" >&2
exec build/release/tensor-mesh-api --model "$MODEL" "$@"
