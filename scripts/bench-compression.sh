#!/usr/bin/env bash
# Compression benchmark (issue #16): a share of compressible data (text
# like logs, SIZE_MIB=512 by default) replicated in full over a link held
# to RATE (50 MiB/s by default), in one run on this machine (root, btrfs):
#  - baseline: a read-only snapshot, then
#    `btrfs send | pv -L RATE | btrfs receive`: the pipe over a link of
#    that rate (pv counts the bytes it passes, as a link would);
#  - fleetctl with `compression: zstd` and `bandwidth_limit: RATE`: two
#    agents on 127.0.0.1 over mutual TLS, the run timed from its start to
#    its end as the sender's trail records them; the limit holds the bytes
#    on the wire (compressed), as the link would;
#  - fleetctl with the same limit and no compression, to show the limit
#    is the link's rate in both (it should take as long as the pipe).
# Every send starts from a cold page cache. The data is text made of a
# vocabulary of words, hex IDs and numbers, 16 MiB of it written 32 times
# (zstd's window is far smaller than 16 MiB, so the repeats gain nothing);
# the stream's size after `zstd -1` is printed for reference.
#
#   scripts/bench-compression.sh              # SIZE_MIB=512 RATE_MIB=50
#   KEEP=1 scripts/bench-compression.sh       # keep the work dir (logs)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${SIZE_MIB:-512}
rate_mib=${RATE_MIB:-50}
. scripts/bench-lib.sh
bench_setup zstd
bench_tool pv
bench_tool zstd
bench_pool p1 "$(( size_mib * 4 + 256 ))M"; bench_pool p2 "$(( size_mib * 4 + 256 ))M"
P1=$(port); P2=$(port)

# The share, with the compressible data, before the fleet exists.
btrfs subvolume create "$work/p1/logs" >/dev/null
python3 - "$work/p1/logs/app.log" "$size_mib" <<'PY'
import random, sys
random.seed(16)
words = ("request response user session cache miss hit backend frontend query "
         "timeout retry connect disconnect upload download share snapshot pool "
         "replica leader follower lease renew commit apply spec error warning "
         "info debug trace started finished failed ok slow fast disk network").split()
levels = ["INFO"] * 8 + ["WARN", "ERROR", "DEBUG"]
lines, n = [], 0
while n < 16 << 20:
    l = "2026-11-%02dT%02d:%02d:%02d.%03dZ level=%s host=app%02d req=%016x msg=\"%s\" bytes=%d took=%.1fms\n" % (
        random.randint(1, 30), random.randint(0, 23), random.randint(0, 59), random.randint(0, 59),
        random.randint(0, 999), random.choice(levels), random.randint(1, 40), random.getrandbits(64),
        " ".join(random.choices(words, k=random.randint(3, 9))), random.randint(0, 1 << 20),
        random.random() * 500)
    lines.append(l); n += len(l)
block = "".join(lines).encode()[: 16 << 20]
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2]) // 16):
        f.write(block)
PY
sync

# For reference: the stream's size compressed by zstd -1.
btrfs subvolume snapshot -r "$work/p1/logs" "$work/p1/ref-snap" >/dev/null
zbytes=$(btrfs send -q "$work/p1/ref-snap" | zstd -1 -T1 -c | wc -c)
sbytes=$(btrfs send -q "$work/p1/ref-snap" | wc -c)
btrfs subvolume delete "$work/p1/ref-snap" >/dev/null

# Baseline: a read-only snapshot, then the pipe through a link of RATE.
cold
t0=$(now)
btrfs subvolume snapshot -r "$work/p1/logs" "$work/p1/base-snap" >/dev/null
mkdir -p "$work/p2/plain"
btrfs send -q "$work/p1/base-snap" | pv -q -L "${rate_mib}M" | btrfs receive -e "$work/p2/plain" >/dev/null 2>&1
t1=$(now)
plain=$(secs "$t0" "$t1")
btrfs subvolume delete "$work/p2/plain/base-snap" >/dev/null
btrfs subvolume delete "$work/p1/base-snap" >/dev/null
btrfs subvolume sync "$work/p1" >/dev/null; btrfs subvolume sync "$work/p2" >/dev/null

spec() { # compression
  { bench_fleet_header; cat <<YAML
  - name: logs
    appliance: n1
    pool: tank
    replication: {to: n2/tank, schedule: every 24h, retention: 7d, keep_min: 2, compression: $1, bandwidth_limit: ${rate_mib}MiB/s}
YAML
  } > "$work/fleet.yaml"
}
bench_agents

# run_secs: the newest full ok send's start→end in the trail.
run_secs() {
  "$bin" replication trail logs --data-dir "$work/d1" -o json > "$work/trail.json"
  python3 - "$work/trail.json" <<'PY'
import json, sys
from datetime import datetime
def ts(s):
    s = s.rstrip("Z")
    if "." in s:
        head, frac = s.split(".")
        s = head + "." + frac[:6]
    return datetime.fromisoformat(s).timestamp()
trail = json.load(open(sys.argv[1]))
e = [e for e in trail if e["side"] == "send" and e["kind"] == "full" and e["result"] == "ok"][-1]
print("%.2f" % (ts(e["end"]) - ts(e["start"])))
PY
}
# A full send of the share with the given compression: the snapshots of
# earlier runs go on both sides, so the target holds nothing in common.
full_send() { # compression
  for s in "$work"/p2/.fleetctl/received/logs/* "$work"/p1/.fleetctl/replication/logs/*; do
    [ -e "$s" ] && btrfs subvolume delete "$s" >/dev/null
  done
  btrfs subvolume sync "$work/p1" >/dev/null; btrfs subvolume sync "$work/p2" >/dev/null
  spec "$1"
  "$bin" apply --data-dir "$work/d1" -f "$work/fleet.yaml" --wait >/dev/null 2>"$work/apply.err" || { cat "$work/apply.err" >&2; exit 1; }
  cold
  "$bin" replicate logs --now --follow --data-dir "$work/d1" > "$work/run.out" 2>&1 || { cat "$work/run.out" >&2; exit 1; }
  grep -q 'send .* full .* ok$' "$work/run.out" || { cat "$work/run.out" >&2; exit 1; }
  run_secs
}
# The first apply starts a send at once; let it finish before the runs.
spec none
"$bin" apply --data-dir "$work/d1" -f "$work/fleet.yaml" >/dev/null
until "$bin" replication trail logs --data-dir "$work/d1" 2>/dev/null | grep -q 'send .* full .* \(ok\|failed\)$'; do sleep 0.5; done
zstd_secs=$(full_send zstd)
none_secs=$(full_send none)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
mib() { awk -v a="$1" 'BEGIN {printf "%.0f MiB", a / 1048576}'; }
row() { printf '%-58s %10s\n' "$1" "$2"; }
row "stream of ${size_mib} MiB of text (btrfs send)" "$(mib "$sbytes")"
row "  after zstd -1 (for reference)" "$(mib "$zbytes")"
row "full, btrfs send | pv -L ${rate_mib}M | btrfs receive" "${plain}s"
row "full, fleetctl zstd, bandwidth_limit ${rate_mib}MiB/s (run)" "${zstd_secs}s"
row "  ratio fleetctl zstd / pipe" "$(ratio "$zstd_secs" "$plain")"
row "full, fleetctl no compression, ${rate_mib}MiB/s (run)" "${none_secs}s"
row "  ratio fleetctl none / pipe" "$(ratio "$none_secs" "$plain")"
