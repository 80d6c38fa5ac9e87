# Shared setup of the root benchmark scripts (bench-replication.sh,
# bench-compression.sh, bench-memory.sh): sourced, not run. Each script
# calls bench_setup NAME, then makes its pools with bench_pool and its
# agents (their PIDs in pids) and leaves the cleanup to the EXIT trap:
# agents killed, pools unmounted, loop devices detached, the work dir
# removed unless KEEP is set.

# bench_setup NAME: needs root, installs btrfs-progs when missing, makes
# the work dir $work (/tmp/fleetctl-bench-NAME.XXXXXX), builds $bin there
# and sets the EXIT trap.
bench_setup() {
  [ "$(id -u)" = 0 ] || { echo "needs root (loop devices, mounts)" >&2; exit 2; }
  . scripts/ensure-btrfs-progs.sh
  ensure_btrfs_progs
  work=$(mktemp -d "/tmp/fleetctl-bench-$1.XXXXXX")
  bin=$work/fleetctl
  go build -o "$bin" ./cmd/fleetctl
  pids=() devs=() mnts=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  for d in "${devs[@]}"; do losetup -d "$d" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}

# bench_tool CMD [PACKAGE]: installs Debian's PACKAGE (default CMD) when
# CMD is missing.
bench_tool() {
  command -v "$1" >/dev/null && return
  echo "installing ${2:-$1}…" >&2
  apt-get install -y -q "${2:-$1}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${2:-$1}" >/dev/null; }
}

# bench_pool NAME SIZE: a loop-mounted btrfs of SIZE (truncate's units) at
# $work/NAME.
bench_pool() {
  truncate -s "$2" "$work/$1.img"
  local dev; dev=$(losetup --find --show "$work/$1.img"); devs+=("$dev")
  mkfs.btrfs -q "$dev" >/dev/null 2>&1
  mkdir -p "$work/$1"; mount "$dev" "$work/$1"; mnts+=("$work/$1")
}

# port: a free TCP port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
# secs A B: B − A, two decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
# cold: drops the page cache, so a measurement reads from disk.
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# bench_agents [AGENT-FLAGS-N1 [AGENT-FLAGS-N2]]: agent n1 bootstraps a
# fleet on 127.0.0.1:$P1 (data dir $work/d1), n2 joins it on $P2
# ($work/d2); returns once n1 lists n2 healthy (at most 30 s). Logs in
# $work/n1.log and n2.log.
bench_agents() {
  # shellcheck disable=SC2086 # the extra flags are words
  "$bin" agent --name n1 --data-dir "$work/d1" --listen "127.0.0.1:$P1" ${1:-} --bootstrap 2>"$work/n1.log" & pids+=($!)
  "$bin" status --data-dir "$work/d1" --wait 30s >/dev/null
  # shellcheck disable=SC2086
  "$bin" agent --name n2 --data-dir "$work/d2" --listen "127.0.0.1:$P2" ${2:-} --join "127.0.0.1:$P1" --token-file "$work/d1/join-token" 2>"$work/n2.log" & pids+=($!)
  for _ in $(seq 150); do "$bin" status --data-dir "$work/d1" 2>/dev/null | grep -q '^n2 .*healthy' && return; sleep 0.2; done
  echo "n2 did not join within 30 s (logs in $work)" >&2
  return 1
}

# bench_fleet_header: the start of a spec of the two agents n1 and n2 with
# their pool tank ($work/p1, $work/p2), up to "shares:"; the script adds
# its shares.
bench_fleet_header() {
  cat <<YAML
version: 1
appliances:
  - {name: n1, address: "127.0.0.1:$P1", pools: [{name: tank, path: $work/p1}]}
  - {name: n2, address: "127.0.0.1:$P2", pools: [{name: tank, path: $work/p2}]}
shares:
YAML
}
