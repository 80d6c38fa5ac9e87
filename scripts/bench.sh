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
  "./agent BenchmarkApply1000Shares BenchmarkApply1Share"
  "./reconcile BenchmarkNoopReconcile1000Shares BenchmarkPlan1000Shares"
  "./reconcile BenchmarkNoopReconcileRealBtrfs1000 BenchmarkSubvolumes1000"
  "./reconcile BenchmarkReplicateFull256MiB BenchmarkSendReceivePipe256MiB"
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

# The demo: seconds from start to a converged fleet (fleetctl demo says it),
# against making and removing its two 1 GiB loop-mounted btrfs pools by hand
# (truncate, losetup, mkfs.btrfs, mount, umount, losetup -d): the part of
# the demo that is not fleetctl. Needs root; skipped otherwise.
if [ "$(id -u)" = 0 ] && command -v mkfs.btrfs >/dev/null 2>&1; then
  go build -o /tmp/fleetctl-bench ./cmd/fleetctl
  raw_pools() {
    local d; d=$(mktemp -d)
    local start; start=$(date +%s.%N)
    for p in a b; do
      truncate -s 1G "$d/$p.img"
      dev=$(losetup --find --show "$d/$p.img")
      mkfs.btrfs -q "$dev" >/dev/null 2>&1
      mkdir "$d/$p" && mount "$dev" "$d/$p"
      umount "$d/$p" && losetup -d "$dev"
    done
    awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {print e - s}'
    rm -rf "$d"
  }
  demo=() base=()
  for _ in $(seq "$count"); do
    demo+=("$(/tmp/fleetctl-bench demo --for 1ms 2>&1 >/dev/null | sed -n 's/^The demo fleet converged \([0-9.]*\)s after start.$/\1/p')")
    base+=("$(raw_pools)")
  done
  d=$(printf '%s\n' "${demo[@]}" | median)
  a=$(printf '%s\n' "${base[@]}" | median)
  printf '%-34s %-26s %13ss %13ss %9.1f\n' "demo start→converged" "2 loop pools by hand" "$d" "$a" "$(awk -v b="$d" -v a="$a" 'BEGIN {print b / a}')"
  printf 'demo %s\nraw-pools %s\n' "${demo[*]}" "${base[*]}" >> "$out"
fi
