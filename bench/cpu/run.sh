#!/usr/bin/env bash
# bench/cpu/run.sh - TensorMesh CPU speed side by side with llama.cpp's llama-bench on
# the same GGUFs, same thread count, one after the other in one run (ARCHITECTURE
# "Performance"). Models: TinyLlama-1.1B shapes in F16, Q8_0, Q4_0, Q4_K_M from
# scripts/gen_bench_models.sh. Prints prompt (pp) and decode (tg) tokens/s and the
# ratio ours / llama.cpp. Results go to docs/perf.md.
#
# usage: bench/cpu/run.sh [LLAMA_BENCH] [-t THREADS] [-p NP] [-n NG] [-r REPS] [-k ROUNDS]
#                         [-a ACT] [-T "TYPES"] [-l LCTL]
#   LLAMA_BENCH  path of a llama.cpp llama-bench binary; without it only ours is
#                measured and the peer columns say "not measured".
#   -k ROUNDS    alternate ours / peer ROUNDS times per type (default 1); the table
#                shows medians and, with ROUNDS > 1, the range of the per-round ratios
#   -a ACT       our activation type (lctl bench --act-type q8|q16|f32; default q8)
#   -T TYPES     which of "f16 q8_0 q4_0 q4_k_m" (default all four)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
peer="" threads=2 np=128 ng=64 reps=3 lctl="" rounds=1 act="" types="f16 q8_0 q4_0 q4_k_m"
while [ $# -gt 0 ]; do
  case "$1" in
    -t) threads="$2"; shift 2 ;;
    -p) np="$2"; shift 2 ;;
    -n) ng="$2"; shift 2 ;;
    -r) reps="$2"; shift 2 ;;
    -l) lctl="$2"; shift 2 ;;
    -k) rounds="$2"; shift 2 ;;
    -a) act="$2"; shift 2 ;;
    -T) types="$2"; shift 2 ;;
    -h|--help) sed -n 2,18p "$0"; exit 0 ;;
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
echo "rounds $rounds (ours then peer each round; medians over rounds), activations ${act:-q8 (default)}"
echo
printf "%-8s | %10s %10s %-15s | %10s %10s %-15s\n" type "pp ours" "pp peer" ratio "tg ours" "tg peer" ratio
printf -- "---------+---------------------------------------+---------------------------------------\n"
# median of the numbers on stdin (one per line); "-" when there are none
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for t in $types; do
  m="$root/models/bench/tinyllama-1.1b-random-$t.gguf"
  if [ ! -f "$m" ]; then printf "%-8s | missing %s (scripts/gen_bench_models.sh)\n" "$t" "$m"; continue; fi
  # rounds: ours then the peer, back to back, so both see the same machine state; the
  # table shows medians over rounds and the ratio's median (and range with -k > 1)
  pps="" tgs="" ppps="" tgps="" rpps="" rtgs=""
  for ((k = 0; k < rounds; k++)); do
    line=$("$lctl" bench "$m" -t "$threads" -p "$np" -n "$ng" -r "$reps" ${act:+--act-type "$act"} | tail -n 1)
    pp=$(sed -n 's/.*prompt_tps=\([0-9.]*\).*/\1/p' <<<"$line")
    tg=$(sed -n 's/.*gen_tps=\([0-9.]*\).*/\1/p' <<<"$line")
    pps+="$pp"$'\n' tgs+="$tg"$'\n'
    if [ -n "$peer" ]; then
      csv=$("$peer" -m "$m" -t "$threads" -p "$np" -n "$ng" -r "$reps" -o csv 2>/dev/null)
      # columns by header name: n_prompt, n_gen, avg_ts
      read -r ppp tgp < <(awk -F, -v np="$np" -v ng="$ng" '
        NR==1 { for (i=1;i<=NF;i++) { h=$i; gsub(/"/,"",h); c[h]=i }; next }
        { gsub(/"/,""); if ($c["n_prompt"]==np && $c["n_gen"]==0) pp=$c["avg_ts"];
          if ($c["n_gen"]==ng && $c["n_prompt"]==0) tg=$c["avg_ts"] }
        END { printf "%s %s\n", (pp==""?"-":pp), (tg==""?"-":tg) }' <<<"$csv")
      ppps+="$ppp"$'\n' tgps+="$tgp"$'\n'
      rpps+=$(awk -v a="$pp" -v b="$ppp" 'BEGIN{ if (b+0>0) printf "%.4f", a/b }')$'\n'
      rtgs+=$(awk -v a="$tg" -v b="$tgp" 'BEGIN{ if (b+0>0) printf "%.4f", a/b }')$'\n'
    fi
  done
  range() { sort -g | awk -v k="$rounds" 'NF { v[++n] = $1 } END { if (n && k > 1) printf " [%.2f-%.2f]", v[1], v[n] }'; }
  pp=$({ grep . <<<"$pps" || true; } | median) tg=$({ grep . <<<"$tgs" || true; } | median)
  ppp=$({ grep -v '^-*$' <<<"$ppps" || true; } | median) tgp=$({ grep -v '^-*$' <<<"$tgps" || true; } | median)
  rpp=$({ grep . <<<"$rpps" || true; } | median) rtg=$({ grep . <<<"$rtgs" || true; } | median)
  rpp=$([ "$rpp" = "-" ] && echo - || printf "%.2f" "$rpp")$({ grep . <<<"$rpps" || true; } | range)
  rtg=$([ "$rtg" = "-" ] && echo - || printf "%.2f" "$rtg")$({ grep . <<<"$rtgs" || true; } | range)
  printf "%-8s | %10.2f %10s %-15s | %10.2f %10s %-15s\n" "$t" "$pp" "$ppp" "$rpp" "$tg" "$tgp" "$rtg"
done
if [ -z "$peer" ]; then
  echo
  echo "peer not measured: pass a llama-bench binary as the first argument."
fi
