#!/usr/bin/env bash
# bench/cpu/run.sh - TensorMesh CPU speed side by side with llama.cpp's llama-bench on
# the same GGUFs, same thread count, one after the other in one run (ARCHITECTURE
# "Performance"). Models: TinyLlama-1.1B shapes in F16, Q8_0, Q4_0, Q4_K_M from
# scripts/gen_bench_models.sh. Prints prompt (pp) and decode (tg) tokens/s and the
# ratio ours / llama.cpp. Results go to docs/perf.md.
#
# usage: bench/cpu/run.sh [LLAMA_BENCH] [-t THREADS] [-p NP] [-n NG] [-r REPS] [-l LCTL]
#   LLAMA_BENCH  path of a llama.cpp llama-bench binary; without it only ours is
#                measured and the peer columns say "not measured".
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
peer="" threads=2 np=128 ng=64 reps=3 lctl=""
while [ $# -gt 0 ]; do
  case "$1" in
    -t) threads="$2"; shift 2 ;;
    -p) np="$2"; shift 2 ;;
    -n) ng="$2"; shift 2 ;;
    -r) reps="$2"; shift 2 ;;
    -l) lctl="$2"; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) peer="$1"; shift ;;
  esac
done
if [ -z "$lctl" ]; then
  for c in "$root"/build/release/lctl "$root"/build/*/lctl; do [ -x "$c" ] && { lctl="$c"; break; }; done
fi
[ -x "$lctl" ] || { echo "run.sh: no lctl binary (build Release, or pass -l)" >&2; exit 1; }
if [ -n "$peer" ] && [ ! -x "$peer" ]; then echo "run.sh: $peer is not executable" >&2; exit 1; fi

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs online"
echo "ours: $lctl ($("$lctl" --version))"
echo "peer: ${peer:-not measured (no llama-bench binary given)}"
echo "threads $threads, prompt $np tokens, generate $ng tokens, $reps repetitions (median ours; llama-bench mean)"
echo
printf "%-8s | %10s %10s %7s | %10s %10s %7s\n" type "pp ours" "pp peer" ratio "tg ours" "tg peer" ratio
printf -- "---------+-------------------------------+------------------------------\n"
for t in f16 q8_0 q4_0 q4_k_m; do
  m="$root/models/bench/tinyllama-1.1b-random-$t.gguf"
  if [ ! -f "$m" ]; then printf "%-8s | missing %s (scripts/gen_bench_models.sh)\n" "$t" "$m"; continue; fi
  line=$("$lctl" bench "$m" -t "$threads" -p "$np" -n "$ng" -r "$reps" | tail -n 1)
  pp=$(sed -n 's/.*prompt_tps=\([0-9.]*\).*/\1/p' <<<"$line")
  tg=$(sed -n 's/.*gen_tps=\([0-9.]*\).*/\1/p' <<<"$line")
  ppp="-" tgp="-" rpp="-" rtg="-"
  if [ -n "$peer" ]; then
    csv=$("$peer" -m "$m" -t "$threads" -p "$np" -n "$ng" -r "$reps" -o csv 2>/dev/null)
    # columns by header name: n_prompt, n_gen, avg_ts
    read -r ppp tgp < <(awk -F, -v np="$np" -v ng="$ng" '
      NR==1 { for (i=1;i<=NF;i++) { h=$i; gsub(/"/,"",h); c[h]=i }; next }
      { gsub(/"/,""); if ($c["n_prompt"]==np && $c["n_gen"]==0) pp=$c["avg_ts"];
        if ($c["n_gen"]==ng && $c["n_prompt"]==0) tg=$c["avg_ts"] }
      END { printf "%s %s\n", (pp==""?"-":pp), (tg==""?"-":tg) }' <<<"$csv")
    rpp=$(awk -v a="$pp" -v b="$ppp" 'BEGIN{ if (b+0>0) printf "%.2f", a/b; else print "-" }')
    rtg=$(awk -v a="$tg" -v b="$tgp" 'BEGIN{ if (b+0>0) printf "%.2f", a/b; else print "-" }')
  fi
  printf "%-8s | %10.2f %10s %7s | %10.2f %10s %7s\n" "$t" "$pp" "$ppp" "$rpp" "$tg" "$tgp" "$rtg"
done
if [ -z "$peer" ]; then
  echo
  echo "peer not measured: pass a llama-bench binary as the first argument."
fi
