#!/usr/bin/env bash
# Agent memory (issue #16: an agent's RSS with 1,000 shares, 10 of them
# replicated, at most 40 MB), in one run on this machine (root, btrfs):
# two real agents on 127.0.0.1 with a loop-mounted pool each. The baseline
# is the same two agents with a spec of one share, replicated, once it has
# converged and replicated; then the spec of SHARES shares (REPLICATED of
# them replicated from n1 to n2, every share with a quota) is applied to
# the same agents, and once every appliance has converged and every
# replicated share has a completed full send, each agent's VmRSS (now) and
# VmHWM (peak) are read from /proc; and again SOAK seconds later, after the
# periodic reconcile runs (every 30 s) of that time, each observing every
# share: what the agents keep growing shows there. n1 holds the shares, n2
# the replicas. The ratio is the last reading against the baseline. Last,
# where that memory is, from each agent's Go runtime (its Prometheus
# go_memstats_*, scraped on --metrics-listen after the reading): the heap
# in use, and all the runtime holds from the OS; the rest of the RSS is
# the binary's pages and the mmapped bolt stores.
#
#   scripts/bench-memory.sh                        # SHARES=1000 REPLICATED=10 SOAK=90
#   KEEP=1 scripts/bench-memory.sh                 # keep the work dir (logs)
set -euo pipefail
cd "$(dirname "$0")/.."
shares=${SHARES:-1000}
replicated=${REPLICATED:-10}
soak=${SOAK:-90}
. scripts/bench-lib.sh
bench_setup mem
bench_pool p1 2G; bench_pool p2 2G
P1=$(port); P2=$(port); M1=$(port); M2=$(port)

spec() { # shares replicated > file
  bench_fleet_header
  for i in $(seq 0 $(( $1 - 1 ))); do
    if [ "$i" -lt "$2" ]; then
      printf '  - {name: share-%04d, appliance: n1, pool: tank, quota: 1GiB, replication: {to: n2/tank, schedule: every 24h, retention: 7d, keep_min: 2}}\n' "$i"
    else
      printf '  - {name: share-%04d, appliance: n1, pool: tank, quota: 1GiB}\n' "$i"
    fi
  done
}

bench_agents "--metrics-listen 127.0.0.1:$M1" "--metrics-listen 127.0.0.1:$M2"

# settle N R: apply the spec, wait until both appliances converged and the
# first R shares have each a full send recorded ok.
settle() {
  spec "$1" "$2" > "$work/fleet-$1.yaml"
  "$bin" apply --data-dir "$work/d1" -f "$work/fleet-$1.yaml" >/dev/null
  "$bin" status --data-dir "$work/d1" --wait 600s >/dev/null || { "$bin" status --data-dir "$work/d1" >&2; exit 1; }
  for i in $(seq 0 $(( $2 - 1 ))); do
    local s; s=$(printf 'share-%04d' "$i")
    for try in $(seq 600); do
      "$bin" replication trail "$s" --data-dir "$work/d1" 2>/dev/null | grep -q 'send .* full .* ok$' && break
      [ "$try" -lt 600 ] || { echo "$s did not replicate" >&2; "$bin" replication trail "$s" --data-dir "$work/d1" >&2; exit 1; }
      sleep 0.5
    done
  done
  # Both reconcile again after the replicas exist (a received snapshot
  # changes n2's report): status converged once more.
  "$bin" status --data-dir "$work/d1" --wait 600s >/dev/null
}
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

settle 1 1
declare -A base_rss base_hwm
for n in 1 2; do
  pid=${pids[$((n - 1))]}
  base_rss[$n]=$(kb "$pid" VmRSS); base_hwm[$n]=$(kb "$pid" VmHWM)
done
settle "$shares" "$replicated"
[ "$(find "$work/p1" -mindepth 1 -maxdepth 1 -name 'share-*' | wc -l)" = "$shares" ] || { echo "n1 does not hold $shares shares" >&2; exit 1; }

declare -A rss hwm
for n in 1 2; do
  pid=${pids[$((n - 1))]}
  rss[$n]=$(kb "$pid" VmRSS); hwm[$n]=$(kb "$pid" VmHWM)
done
sleep "$soak"
for n in 1 2; do kill -0 "${pids[$((n - 1))]}"; done

row() { printf '%-20s %10s %12s %12s %7s\n' "$@"; }
row "agent (MB)" "1 share" "$shares shares" "+${soak}s" ratio
for n in 1 2; do
  pid=${pids[$((n - 1))]}
  r=$(kb "$pid" VmRSS); h=$(kb "$pid" VmHWM)
  row "n$n VmRSS (now)" "$(mb "${base_rss[$n]}")" "$(mb "${rss[$n]}")" "$(mb "$r")" "$(awk -v a="$r" -v b="${base_rss[$n]}" 'BEGIN {printf "%.2f", a / b}')"
  row "n$n VmHWM (peak)" "$(mb "${base_hwm[$n]}")" "$(mb "${hwm[$n]}")" "$(mb "$h")" "$(awk -v a="$h" -v b="${base_hwm[$n]}" 'BEGIN {printf "%.2f", a / b}')"
done
echo "($replicated of the $shares shares replicated n1 → n2; n1 holds the shares, n2 the replicas)"
metric() { awk -v k="$2" '$1 == k {printf "%.1f", $2 / 1048576}' <<<"$1"; }
for n in 1 2; do
  m=$(curl -fsS "http://127.0.0.1:$([ "$n" = 1 ] && echo "$M1" || echo "$M2")/metrics")
  printf 'n%s Go runtime (MB): heap in use %s, heap from the OS %s, stacks %s, all from the OS %s\n' "$n" \
    "$(metric "$m" go_memstats_heap_inuse_bytes)" "$(metric "$m" go_memstats_heap_sys_bytes)" \
    "$(metric "$m" go_memstats_stack_inuse_bytes)" "$(metric "$m" go_memstats_sys_bytes)"
done
