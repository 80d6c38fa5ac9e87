#!/usr/bin/env bash
# Scale benchmark (issue #16): one fleet on 127.0.0.1 grown to each N of
# SIZES (default 1 10 20 30 40 50) storage agents, 5 of them voters (the
# join logic's cap, agent.DefaultMaxVoters). At each N, once every member
# is healthy and at the leader's generation and the fleet has idled for
# SETTLE seconds, it measures over WINDOW seconds the leader's CPU (% of
# one core, utime+stime from /proc/PID/stat) and RSS, a follower's RSS,
# and then the p50 of APPLIES applies of a one-line change (a share's
# quota: stored, and stored then reconciled with --wait) and of as many
# `fleetctl status` calls, each once the fleet is quiet again. Baselines in the same run: the 1-agent fleet's
# apply and status, and the idle CPU per appliance is the slope from the
# smallest N >= 10 to the largest.
#
# Every appliance has one pool, a subvolume of a single loop-mounted btrfs
# mounted on a directory of its own (a pool must be a btrfs mount point),
# and one share with a quota. Needs root. Everything it made (agents,
# mounts, loop device, files) is removed on exit, failure included.
#
#   scripts/bench-scale.sh
#   SIZES="1 10 50" WINDOW=30 scripts/bench-scale.sh
#   PROFILE=1 scripts/bench-scale.sh   # also a CPU profile of the leader's idle window at each N
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root (loop device, mounts)" >&2; exit 2; }
. scripts/ensure-btrfs-progs.sh
ensure_btrfs_progs

SIZES=${SIZES:-"1 10 20 30 40 50"}
WINDOW=${WINDOW:-20}
SETTLE=${SETTLE:-5}
APPLIES=${APPLIES:-5}
PROFILE=${PROFILE:-}

work=$(mktemp -d /tmp/fleetctl-bench-scale.XXXXXX)
dev=
pids=()
mounts=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  [ -n "$dev" ] && losetup -d "$dev" 2>/dev/null || true
  if [ -n "$PROFILE" ]; then echo "profiles kept in $work/prof" >&2; find "$work" -mindepth 1 -maxdepth 1 ! -name prof -exec rm -rf {} +
  else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin=$work/fleetctl
tags=(); [ -n "$PROFILE" ] && tags=(-tags cpuprofile) && mkdir "$work/prof"
go build "${tags[@]}" -o "$bin" ./cmd/fleetctl

max=0; for n in $SIZES; do [ "$n" -gt "$max" ] && max=$n; done
read -r -a ports <<<"$(python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$max")"

# One btrfs for every pool: a subvolume per appliance, each mounted on its
# own directory.
truncate -s 2G "$work/pools.img"
dev=$(losetup --find --show "$work/pools.img")
mkfs.btrfs -q "$dev" >/dev/null 2>&1
mkdir "$work/top"; mount "$dev" "$work/top"; mounts+=("$work/top")
for i in $(seq "$max"); do
  btrfs subvolume create "$work/top/p$i" >/dev/null
  mkdir "$work/p$i"; mount -o "subvol=p$i" "$dev" "$work/p$i"; mounts=("$work/p$i" "${mounts[@]}")
done

fc() { "$bin" "$@" --data-dir "$work/d1"; }

spec() { # n quota_mib
  {
    echo "version: 1"
    echo "appliances:"
    for i in $(seq "$1"); do
      echo "  - {name: n$i, address: \"127.0.0.1:${ports[i-1]}\", pools: [{name: tank, path: $work/p$i}]}"
    done
    echo "shares:"
    for i in $(seq "$1"); do
      local q=100; [ "$i" = 1 ] && q=$2
      echo "  - {name: s$i, appliance: n$i, pool: tank, quota: ${q}MiB}"
    done
  } >"$work/fleet.yaml"
}

declare -A pid # by agent name
start() { # i
  local i=$1 join=()
  [ "$i" = 1 ] && join=(--bootstrap) || join=(--join "127.0.0.1:${ports[0]}" --token-file "$work/d1/join-token")
  FLEETCTL_CPUPROFILE=$work/prof/cpu.pprof "$bin" agent --name "n$i" --data-dir "$work/d$i" \
    --listen "127.0.0.1:${ports[i-1]}" "${join[@]}" 2>"$work/n$i.log" &
  pids+=($!); pid[n$i]=$!
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
now() { date +%s.%N; }
p50() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
hz=$(getconf CLK_TCK)

printf '%4s %9s %9s %9s %10s %10s %10s\n' N leader-cpu leader-rss follower apply apply-wait status
printf '%4s %9s %9s %9s %10s %10s %10s\n' "" "% core" MiB "rss MiB" "p50 ms" "p50 ms" "p50 ms"
have=0 gen=0
declare -A cpu apply status
for n in $SIZES; do
  for i in $(seq $((have + 1)) "$n"); do
    start "$i"
    [ "$i" = 1 ] && fc status --wait 30s >/dev/null
  done
  have=$n
  # Every agent a member, healthy and at the leader's generation.
  gen=$((gen + 1)); spec "$n" $((100 + gen))
  fc apply -f "$work/fleet.yaml" --wait --timeout 5m >/dev/null 2>"$work/apply.err" || { cat "$work/apply.err" >&2; exit 1; }
  deadline=$(( $(date +%s) + 300 ))
  until fc status -o json 2>/dev/null | jq -e --argjson n "$n" '(.members | length) == $n' >/dev/null \
      && fc status --wait 1s >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "N=$n: the fleet did not converge in 5 minutes" >&2; fc status >&2 || true; exit 1; }
    sleep 1
  done
  sleep "$SETTLE"
  # The leader is n1 unless an election moved it (the machine overloaded:
  # see the note it prints).
  lname=$(fc status -o json | jq -r .leader)
  leader=${pid[$lname]}; follower=${pids[n-1]}; [ "$follower" = "$leader" ] && { if [ "$n" -gt 1 ]; then follower=${pids[n-2]}; else follower=; fi; }
  [ "$lname" = n1 ] || echo "note: the leader is $lname, not n1: an election happened" >&2
  [ -n "$PROFILE" ] && kill -USR1 "$leader"
  c0=$(cpu_ticks "$leader"); t0=$(now)
  sleep "$WINDOW"
  c1=$(cpu_ticks "$leader"); t1=$(now)
  [ "$(fc status -o json | jq -r .leader)" = "$lname" ] || echo "note: N=$n: leadership moved during the idle window" >&2
  if [ -n "$PROFILE" ]; then kill -USR2 "$leader"; sleep 1; mv "$work/prof/cpu.pprof" "$work/prof/leader-$n.pprof"; mv "$work/prof/cpu.pprof.heap" "$work/prof/leader-$n.heap"; fi
  cpu[$n]=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v hz="$hz" 'BEGIN {printf "%.2f", 100 * (b - a) / hz / (e - s)}')
  lrss=$(rss_mib "$leader"); frss=-; [ -n "$follower" ] && frss=$(rss_mib "$follower")
  a=() w=() s=()
  # Each timed command starts once the fleet has reconciled and reported
  # the previous change and a second has passed: with every agent on one
  # machine, the reconcile runs and reports of the previous apply (N of
  # each, each report a Raft entry every agent applies) would otherwise
  # share its cores with the next.
  quiet() { fc status --wait 60s >/dev/null 2>&1 || true; sleep 1; }
  for _ in $(seq "$APPLIES"); do
    gen=$((gen + 1)); spec "$n" $((100 + gen))
    quiet
    t0=$(now); fc apply -f "$work/fleet.yaml" >/dev/null 2>&1; t1=$(now)
    a+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", 1000 * (b - a)}')")
    gen=$((gen + 1)); spec "$n" $((100 + gen))
    quiet
    t0=$(now); fc apply -f "$work/fleet.yaml" --wait >/dev/null 2>&1; t1=$(now)
    w+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", 1000 * (b - a)}')")
    quiet
    t0=$(now); fc status >/dev/null; t1=$(now)
    s+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", 1000 * (b - a)}')")
  done
  apply[$n]=$(printf '%s\n' "${a[@]}" | p50); aw=$(printf '%s\n' "${w[@]}" | p50); status[$n]=$(printf '%s\n' "${s[@]}" | p50)
  printf '%4s %9s %9s %9s %10s %10s %10s\n' "$n" "${cpu[$n]}" "$lrss" "$frss" "${apply[$n]}" "$aw" "${status[$n]}"
done

# Growth: the idle CPU's slope per appliance between the smallest N >= 10
# and the largest, and latencies against the smallest N (the 1-agent fleet
# by default).
lo=; hi=; first=
for n in $SIZES; do [ -z "$first" ] && first=$n; [ -z "$lo" ] && [ "$n" -ge 10 ] && lo=$n; hi=$n; done
if [ -n "$lo" ] && [ "$hi" != "$lo" ]; then
  awk -v a="${cpu[$lo]}" -v b="${cpu[$hi]}" -v lo="$lo" -v hi="$hi" 'BEGIN {
    s = (b - a) / (hi - lo)
    printf "leader idle CPU per appliance (slope %d→%d): %.3f %% of a core (at %d: %.3f per appliance)\n", lo, hi, s, lo, a / lo }'
fi
awk -v a="${apply[$first]}" -v b="${apply[$hi]}" -v c="${status[$first]}" -v d="${status[$hi]}" -v f="$first" -v h="$hi" 'BEGIN {
  printf "apply p50 at %d / at %d: %.2f; status p50 at %d / at %d: %.2f\n", h, f, b / a, h, f, d / c }'
