#!/usr/bin/env bash
# Replication benchmark, in one run on this machine (root, btrfs), each
# figure a ratio against a baseline measured in the same run:
#  - full: a 1 GiB share replicated between two loop-mounted pools by
#    fleetctl (two agents on 127.0.0.1, mutual TLS), from the start of the
#    run to its end as the trail records them, against a plain
#    `btrfs send | btrfs receive` pipe (snapshot included) and against
#    btrbk 0.32 (Debian's package, installed when missing); the latency
#    from apply to the start of the run is reported apart;
#  - incremental after a 1 MiB change: `fleetctl replicate --now --follow`
#    from start to return, against `btrbk run` doing the same.
# Every full send starts from a cold page cache.
#
#   scripts/bench-replication.sh            # SIZE_MIB=1024 by default
#   KEEP=1 scripts/bench-replication.sh     # keep the work dir (logs)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${SIZE_MIB:-1024}
. scripts/bench-lib.sh
bench_setup repl
bench_tool btrbk   # the second baseline
bench_pool p1 "$(( size_mib * 4 + 256 ))M"; bench_pool p2 "$(( size_mib * 4 + 256 ))M"
P1=$(port); P2=$(port)
# Both measurements start from a cold page cache (cold), so neither reads
# what the other (or the writing of the data) left in memory.

# The share, with 1 GiB of random data, before the fleet exists.
btrfs subvolume create "$work/p1/data" >/dev/null
head -c "$(( size_mib << 20 ))" /dev/urandom > "$work/p1/data/blob"
sync

# Baseline: a read-only snapshot, then btrfs send | btrfs receive.
cold
t0=$(now)
btrfs subvolume snapshot -r "$work/p1/data" "$work/p1/base-snap" >/dev/null
mkdir -p "$work/p2/plain"
btrfs send -q "$work/p1/base-snap" | btrfs receive -e "$work/p2/plain" >/dev/null 2>&1
t1=$(now)
plain=$(secs "$t0" "$t1")
btrfs subvolume delete "$work/p2/plain/base-snap" >/dev/null
btrfs subvolume delete "$work/p1/base-snap" >/dev/null

# Baseline 2: btrbk, full then incremental, on a copy of the share (a
# writable snapshot: the same extents, sent in full all the same).
btrfs subvolume snapshot "$work/p1/data" "$work/p1/bdata" >/dev/null
mkdir -p "$work/p1/btrbk-snap" "$work/p2/btrbk"
cat > "$work/btrbk.conf" <<CONF
timestamp_format long-iso
snapshot_preserve_min all
target_preserve_min all
lockfile $work/btrbk.lock
volume $work/p1
  snapshot_dir btrbk-snap
  subvolume bdata
    target send-receive $work/p2/btrbk
CONF
cold
t0=$(now)
btrbk -q -c "$work/btrbk.conf" run
t1=$(now)
btrbk_full=$(secs "$t0" "$t1")
dd if=/dev/urandom of="$work/p1/bdata/blob" bs=1M count=1 seek=7 conv=notrunc status=none
sync
sleep 1 # btrbk names snapshots to the second (long-iso); a second run in the same second would collide
t0=$(now)
btrbk -q -c "$work/btrbk.conf" run
t1=$(now)
btrbk_inc=$(secs "$t0" "$t1")
[ "$(ls "$work/p2/btrbk" | wc -l)" = 2 ] || { echo "btrbk did not make two snapshots" >&2; ls "$work/p2/btrbk" >&2; exit 1; }
for s in "$work"/p2/btrbk/* "$work"/p1/btrbk-snap/* "$work/p1/bdata"; do btrfs subvolume delete "$s" >/dev/null; done
btrfs subvolume sync "$work/p1" >/dev/null; btrfs subvolume sync "$work/p2" >/dev/null

{ bench_fleet_header; cat <<YAML
  - name: data
    appliance: n1
    pool: tank
    replication: {to: n2/tank, schedule: every 24h, retention: 7d, keep_min: 2}
YAML
} > "$work/fleet.yaml"
bench_agents

# fleetctl: applying the spec makes the first (full) replication due at
# once; time from apply to the receive recorded in the trail.
cold
t0=$(now)
"$bin" apply --data-dir "$work/d1" -f "$work/fleet.yaml" >/dev/null
until "$bin" replication trail data --data-dir "$work/d1" 2>/dev/null | grep -q 'send .* full .* ok$'; do
  if "$bin" replication trail data --data-dir "$work/d1" 2>/dev/null | grep -q 'send .* full .* failed$'; then
    "$bin" replication trail data --data-dir "$work/d1" >&2; exit 1
  fi
  sleep 0.2
done
t1=$(now)
full=$(secs "$t0" "$t1")
# The run itself, start to end, as the sender recorded it; and the
# latency from the apply to the run's start.
"$bin" replication trail data --data-dir "$work/d1" -o json > "$work/trail.json"
read -r run_secs start_lat < <(python3 - "$work/trail.json" "$t0" <<'PY'
import json, sys
from datetime import datetime
def ts(s):
    s = s.rstrip("Z")
    if "." in s:
        head, frac = s.split(".")
        s = head + "." + frac[:6]
    return datetime.fromisoformat(s).timestamp()
trail = json.load(open(sys.argv[1]))
e = next(e for e in trail if e["side"] == "send" and e["kind"] == "full" and e["result"] == "ok")
print("%.2f %.2f" % (ts(e["end"]) - ts(e["start"]), ts(e["start"]) - float(sys.argv[2])))
PY
)

# Incremental after a 1 MiB change.
dd if=/dev/urandom of="$work/p1/data/blob" bs=1M count=1 seek=7 conv=notrunc status=none
sync
t0=$(now)
"$bin" replicate data --now --follow --data-dir "$work/d1" >"$work/inc.out" 2>/dev/null
t1=$(now)
inc=$(secs "$t0" "$t1")
grep -q 'send .* incremental .* ok$' "$work/inc.out" || { cat "$work/inc.out" >&2; exit 1; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
row() { printf '%-52s %8s\n' "$1" "$2"; }
row "${size_mib} MiB full, btrfs send | btrfs receive" "${plain}s"
row "${size_mib} MiB full, btrbk run" "${btrbk_full}s"
row "${size_mib} MiB full, fleetctl run (trail start→end)" "${run_secs}s"
row "  ratio fleetctl run / plain pipe" "$(ratio "$run_secs" "$plain")"
row "  ratio fleetctl run / btrbk" "$(ratio "$run_secs" "$btrbk_full")"
row "  apply → run start" "${start_lat}s"
row "${size_mib} MiB full, fleetctl apply → trail ok (polled)" "${full}s"
row "incremental after a 1 MiB change, btrbk run" "${btrbk_inc}s"
row "incremental after a 1 MiB change, fleetctl" "${inc}s"
row "  ratio fleetctl / btrbk" "$(ratio "$inc" "$btrbk_inc")"
