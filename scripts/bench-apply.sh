#!/usr/bin/env bash
# Apply benchmark on the real path: `fleetctl apply` (the CLI process, its
# own validation, the redirect from a follower, the leader's validation,
# the Raft commit on real bolt stores and the diff it prints) against three
# real agent processes on 127.0.0.1, a 1,000-share spec changed in every
# share at each apply. Reports the p50 and p90 over N applies, against
# the same for a 1-share spec and for `fleetctl validate` of the
# 1,000-share file (the CLI's own parse, the floor of any apply).
#
# Applies are one at a time, 0.5 s apart (a person or a script applying
# a spec, not a flood), so each is timed with the fleet settled.
# go test's BenchmarkApply1000Shares runs the three agents in one process
# and back to back instead: there the followers' decoding of the previous
# apply competes with the next one.
#
#   scripts/bench-apply.sh            # N=20
#   N=50 scripts/bench-apply.sh
#   KEEP=1 scripts/bench-apply.sh     # keep the agents' logs
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-20}
work=$(mktemp -d /tmp/fleetctl-bench-apply.XXXXXX)
bin=$work/fleetctl
go build -o "$bin" ./cmd/fleetctl
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P1=$(port) P2=$(port) P3=$(port)

# The spec names appliances that run no agent (nas1, nas2, w on ports
# nothing listens on): the agents n1-n3 store it and have nothing of theirs
# to reconcile, so the figures are the apply's own, not reconcilers busy
# with 1,000 shares on the same two cores (on a real fleet each appliance
# has its own).
spec() { # shares quota
  printf 'version: 1\nappliances:\n'
  printf '  - name: nas1\n    address: 127.0.0.1:7401\n    pools: [{name: tank, path: /mnt/tank}]\n'
  printf '  - name: nas2\n    address: 127.0.0.1:7402\n    pools: [{name: tank, path: /mnt/tank}]\n'
  printf '  - name: w\n    address: 127.0.0.1:7403\n    role: witness\n'
  printf 'shares:\n'
  for ((i = 0; i < $1; i++)); do
    printf '  - name: share-%04d\n    appliance: nas%d\n    pool: tank\n    quota: %s\n' "$i" $((i % 2 + 1)) "$2"
    printf '    snapshots: {schedule: every 1h, retention: 24h 7d}\n'
    printf '    replication: {to: nas%d/tank, schedule: every 10m, retention: 24h}\n' $(((i + 1) % 2 + 1))
  done
}
spec 1000 100GiB >"$work/a1000.yaml"
spec 1000 200GiB >"$work/b1000.yaml"
spec 1 100GiB >"$work/a1.yaml"
spec 1 200GiB >"$work/b1.yaml"

"$bin" agent --name n1 --data-dir "$work/d1" --listen "127.0.0.1:$P1" --bootstrap 2>"$work/n1.log" & pids+=($!)
"$bin" status --data-dir "$work/d1" --wait 30s >/dev/null
"$bin" agent --name n2 --data-dir "$work/d2" --listen "127.0.0.1:$P2" --join "127.0.0.1:$P1" --token-file "$work/d1/join-token" 2>"$work/n2.log" & pids+=($!)
"$bin" agent --name n3 --data-dir "$work/d3" --listen "127.0.0.1:$P3" --join "127.0.0.1:$P1" --token-file "$work/d1/join-token" 2>"$work/n3.log" & pids+=($!)
for _ in $(seq 150); do "$bin" status --data-dir "$work/d1" 2>/dev/null | grep -q '^n3 .*voter.*healthy' && break; sleep 0.2; done
# Apply through a follower: n2, unless it is the leader.
leader=
for _ in $(seq 150); do
  leader=$("$bin" status --data-dir "$work/d1" 2>/dev/null | sed -n 's/^Fleet spec .*, leader \(n[0-9]\) .*/\1/p')
  [ -n "$leader" ] && break
  sleep 0.2
done
follower=d2
[ "$leader" = n2 ] && follower=d1

# seconds CMD...: the wall time of one run of CMD, which must succeed.
seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f\n", b - a}'
}
# times SHARES: N applies through the follower, alternating two specs
# that differ in every share.
times() {
  local i
  for ((i = 0; i < n; i++)); do
    local f=$work/a$1.yaml
    ((i % 2)) && f=$work/b$1.yaml
    seconds "$bin" apply --data-dir "$work/$follower" -f "$f"
    sleep 0.5
  done
}
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.5); if (i<1) i=1; print a[i]}'; }

times 1000 >"$work/t1000"
times 1 >"$work/t1"
for ((i = 0; i < n; i++)); do seconds "$bin" validate -f "$work/a1000.yaml"; done >"$work/tv"

a50=$(pct 50 <"$work/t1000") a90=$(pct 90 <"$work/t1000")
o50=$(pct 50 <"$work/t1") o90=$(pct 90 <"$work/t1")
v50=$(pct 50 <"$work/tv") v90=$(pct 90 <"$work/tv")
printf '%-52s %8s %8s\n' "($n runs each, seconds)" p50 p90
printf '%-52s %8s %8s\n' "fleetctl apply, 1,000 shares, through a follower" "$a50" "$a90"
printf '%-52s %8s %8s\n' "fleetctl apply, 1 share, through a follower" "$o50" "$o90"
printf '%-52s %8s %8s\n' "fleetctl validate, 1,000 shares" "$v50" "$v90"
printf '%-52s %8.1f\n' "  ratio apply 1,000 / apply 1" "$(awk -v a="$a50" -v b="$o50" 'BEGIN {print a / b}')"
printf '%-52s %8.1f\n' "  ratio apply 1,000 / validate 1,000" "$(awk -v a="$a50" -v b="$v50" 'BEGIN {print a / b}')"
