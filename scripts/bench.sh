#!/usr/bin/env bash
# Benchmarks, reported as ratios against a baseline measured in the same run
# (the machines are shared and noisy: absolute figures drift, ratios less so).
#
#   scripts/bench.sh                  # all pairs, 3 runs each
#   BENCHTIME=5s COUNT=5 scripts/bench.sh
#
# Each line: the benchmark, its baseline, the median ns/op of both, and
# their ratio. Raw `go test -bench` output is kept in bench.out.
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime=${BENCHTIME:-2s}
count=${COUNT:-3}
out=${BENCH_OUT:-bench.out}

# pairs: package  benchmark  baseline
pairs=(
  "./schema BenchmarkParse1000Shares BenchmarkYAMLNode1000Shares"
  "./raftstore BenchmarkApply1000Shares BenchmarkApply1Share"
)

: > "$out"
for p in "${pairs[@]}"; do
  read -r pkg bench base <<<"$p"
  go test -run '^$' -bench "^($bench|$base)\$" -benchmem -benchtime "$benchtime" -count "$count" "$pkg" \
    | grep -E '^Benchmark' | tee -a "$out" >/dev/null
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-34s %-26s %14s %14s %9s\n' benchmark baseline ns/op base-ns/op ratio
for p in "${pairs[@]}"; do
  read -r pkg bench base <<<"$p"
  b=$(awk -v n="$bench" '$1 ~ "^"n"-" {print $3}' "$out" | median)
  a=$(awk -v n="$base" '$1 ~ "^"n"-" {print $3}' "$out" | median)
  printf '%-34s %-26s %14s %14s %9.1f\n' "$bench" "$base" "$b" "$a" "$(awk -v b="$b" -v a="$a" 'BEGIN {print b / a}')"
done
