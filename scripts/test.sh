#!/usr/bin/env bash
# The project's test command, as README.md gives it and .ci/run calls it.
# It installs what the tests need on a fresh machine (btrfs-progs,
# iproute2, systemd for systemd-analyze, chromium for the dashboard), then runs gofmt,
# go vet, staticcheck, every test with the race detector, and a short fuzz
# run of the spec parser.
#
#   FUZZTIME=2000000x scripts/test.sh   # fuzz longer
#
# The fuzz budget is a count of inputs, not a duration: with a duration,
# Go 1.26's fuzzing coordinator can report "context deadline exceeded" as
# a failure when the time runs out on a loaded machine, with no failing
# input (golang/go#75804, fixed in Go 1.27). A count has no deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# Real-btrfs tests need btrfs-progs, the metrics tests Prometheus's
# promtool: installed when missing (as root on Debian); otherwise they skip
# and say why, and fail under CI=true.
. scripts/ensure-btrfs-progs.sh
ensure_btrfs_progs || echo "real-btrfs tests will skip" >&2
ensure_iproute2 || echo "the network-namespace failover test will skip" >&2
ensure_systemd_analyze || echo "the example systemd unit will not be verified" >&2
ensure_chromium || echo "the dashboard's browser test will skip (and fail under CI=true)" >&2
ensure_promtool || echo "the Prometheus example and metrics tests will skip (and fail under CI=true)" >&2

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "not gofmt-ed:" >&2
  echo "$unformatted" >&2
  exit 1
fi

step "go vet"
go vet ./...

step "staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

step "go test -race"
go test -race -count=1 ./...

step "fuzz FuzzParse for ${FUZZTIME:-200000x}"
go test -run='^$' -fuzz='^FuzzParse$' -fuzztime="${FUZZTIME:-200000x}" -fuzzminimizetime=1000x ./schema

step "all passed"
