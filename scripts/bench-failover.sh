#!/usr/bin/env bash
# Failover benchmark: seconds from SIGKILL of the active appliance's agent
# (which is also the Raft leader: n1 bootstraps the fleet) to a writable
# replica, with the default witness policy (failover_after 30s), the
# tightest one validation accepts (8s, fence 3s) and one with 2s over the
# minimum margin (10s, fence 3s), each against its own failover_after (the
# ratio says how much the commit and the promotion add to the deadline: a
# new leader credits the old one from the voters' reports, so the election
# adds nothing; below 1 when the last confirmed renewal was before the kill).
# Two storage agents and a witness on 127.0.0.1, loop-mounted btrfs pools.
# Needs root.
#
#   scripts/bench-failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root (loop devices, mounts)" >&2; exit 2; }
. scripts/ensure-btrfs-progs.sh
ensure_btrfs_progs
bin=$(mktemp -d /tmp/fleetctl-bench-fo.XXXXXX)/fleetctl
go build -o "$bin" ./cmd/fleetctl

run() { # failover_after fence_after
  local work; work=$(mktemp -d /tmp/fleetctl-bench-fo.XXXXXX)
  local pids=() devs=()
  for p in p1 p2; do
    truncate -s 512M "$work/$p.img"
    local dev; dev=$(losetup --find --show "$work/$p.img"); devs+=("$dev")
    mkfs.btrfs -q "$dev" >/dev/null 2>&1; mkdir "$work/$p"; mount "$dev" "$work/$p"
  done
  port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  local P1 P2 P3; P1=$(port); P2=$(port); P3=$(port)
  btrfs subvolume create "$work/p1/data" >/dev/null
  head -c 10000000 /dev/urandom > "$work/p1/data/blob"
  cat > "$work/fleet.yaml" <<YAML
version: 1
witness: {failover_after: $1, fence_after: $2}
appliances:
  - {name: n1, address: "127.0.0.1:$P1", pools: [{name: tank, path: $work/p1}]}
  - {name: n2, address: "127.0.0.1:$P2", pools: [{name: tank, path: $work/p2}]}
  - {name: w, address: "127.0.0.1:$P3", role: witness}
shares:
  - name: data
    appliance: n1
    pool: tank
    replication: {to: n2/tank, schedule: every 24h, retention: 7d}
    failover: auto
YAML
  "$bin" agent --name n1 --data-dir "$work/d1" --listen "127.0.0.1:$P1" --bootstrap 2>"$work/n1.log" & pids+=($!)
  "$bin" status --data-dir "$work/d1" --wait 30s >/dev/null
  "$bin" agent --name n2 --data-dir "$work/d2" --listen "127.0.0.1:$P2" --join "127.0.0.1:$P1" --token-file "$work/d1/join-token" 2>"$work/n2.log" & pids+=($!)
  "$bin" agent --name w --data-dir "$work/d3" --listen "127.0.0.1:$P3" --join "127.0.0.1:$P1" --token-file "$work/d1/join-token" 2>"$work/w.log" & pids+=($!)
  for _ in $(seq 150); do "$bin" status --data-dir "$work/d1" 2>/dev/null | grep -q '^w .*healthy' && break; sleep 0.2; done
  "$bin" apply --data-dir "$work/d1" -f "$work/fleet.yaml" --wait >/dev/null 2>&1
  until "$bin" replication trail data --data-dir "$work/d1" 2>/dev/null | grep -q 'send .* full .* ok$'; do sleep 0.2; done
  local t0 t1
  t0=$(date +%s.%N)
  kill -KILL "${pids[0]}"
  until touch "$work/p2/data/.probe" 2>/dev/null; do sleep 0.05; done
  t1=$(date +%s.%N)
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for p in p1 p2; do umount "$work/$p"; done
  for d in "${devs[@]}"; do losetup -d "$d"; done
  rm -rf "$work"
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}'
}

printf '%-34s %16s %14s %7s\n' policy "SIGKILL→writable" failover_after ratio
d=$(run 30s 15s); printf '%-34s %15ss %14s %7.2f\n' "default (30s / fence 15s)" "$d" 30s "$(awk -v d="$d" 'BEGIN {print d / 30}')"
t=$(run 8s 3s);   printf '%-34s %15ss %14s %7.2f\n' "tight (8s / fence 3s)" "$t" 8s "$(awk -v d="$t" 'BEGIN {print d / 8}')"
m=$(run 10s 3s);  printf '%-34s %15ss %14s %7.2f\n' "10s / fence 3s (2s over the margin)" "$m" 10s "$(awk -v d="$m" 'BEGIN {print d / 10}')"
