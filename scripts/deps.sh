#!/usr/bin/env bash
# deps.sh - installs what TensorMesh needs on Debian 12: the build toolchain and the
# libraries chosen in ARCHITECTURE.md (apt-get, as root), and the test oracles in a
# private venv at .venv (pip). Idempotent: does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(build-essential cmake pkg-config git clang clang-format llvm libclang-rt-14-dev
          libpcre2-dev libutf8proc-dev libjansson-dev libxxhash-dev libsodium-dev
          libwebsockets-dev python3-venv python3-pip unzip ca-certificates
          chromium gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Test oracles (never used by the engine itself): pinned so results are reproducible.
PY_PKGS=(pytest==9.2.0 numpy==2.4.6 gguf==0.19.0 tokenizers==0.23.3 safetensors==0.8.0
         jinja2==3.1.6 openai==3.57.0 websockets==17.4)
PY=python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.tm-deps
want="$(printf '%s\n' "${PY_PKGS[@]}")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "deps: installing Python test oracles into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "${PY_PKGS[@]}"
    printf '%s' "$want" > "$stamp"
fi
