#!/usr/bin/env bash
# The main job on a local demo fleet: three agents on 127.0.0.1, two with
# loop-mounted btrfs pools, running fleet.yaml.example. Needs root (loop
# devices, mounts); installs btrfs-progs when missing.
#
#   scripts/demo.sh --for 1m     # converge, show status and diff, run 1m, tear down
#   scripts/demo.sh --keep       # leave it running; prints how to use and remove it
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-btrfs-progs.sh
ensure_btrfs_progs || true   # fleetctl demo explains what is missing
exec go run ./cmd/fleetctl demo "$@"
