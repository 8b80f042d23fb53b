#!/usr/bin/env bash
# gen_bench_models.sh - random-weight TinyLlama-1.1B-shaped GGUFs for CPU speed work
# (hidden 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632, vocab 32000 from
# ../shared/data/llama-2-tiny-random.gguf), written by `lctl quantize --random`
# with the project's own GGUF writer and quantizers, in F16, Q8_0, Q4_0 and a
# Q4_K_M mix (llama.cpp's type rules). Random weights run at the speed of
# trained ones. Output: models/bench/tinyllama-1.1b-random-<type>.gguf (gitignored).
#
# usage: scripts/gen_bench_models.sh [LCTL] [TYPES...]
#   LCTL   lctl binary (default build/simd-rel/lctl, then build/*/lctl)
#   TYPES  default: f16 q8_0 q4_0 q4_k_m
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
lctl="${1:-}"
[ $# -gt 0 ] && shift
if [ -z "$lctl" ]; then
  for c in "$root"/build/simd-rel/lctl "$root"/build/*/lctl; do
    [ -x "$c" ] && { lctl="$c"; break; }
  done
fi
[ -x "$lctl" ] || { echo "gen_bench_models: no lctl binary (build one, or pass its path)" >&2; exit 1; }
vocab="${TM_SHARED_DATA:-$root/../shared/data}/llama-2-tiny-random.gguf"
[ -f "$vocab" ] || { echo "gen_bench_models: $vocab not found" >&2; exit 1; }
types=("$@")
[ ${#types[@]} -eq 0 ] && types=(f16 q8_0 q4_0 q4_k_m)
mkdir -p "$root/models/bench"
for t in "${types[@]}"; do
  out="$root/models/bench/tinyllama-1.1b-random-$t.gguf"
  if [ -f "$out" ]; then echo "exists: $out"; continue; fi
  echo "writing $out"
  "$lctl" quantize --random "$vocab" "$out.tmp" "$t" --shape 2048,22,32,4,5632 --seed 1 2>/dev/null
  mv "$out.tmp" "$out"
done
ls -l "$root"/models/bench/
