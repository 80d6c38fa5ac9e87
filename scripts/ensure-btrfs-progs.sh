# Sourced by scripts/test.sh and scripts/demo.sh: installs btrfs-progs with
# apt-get when it is missing and this is root on Debian; otherwise says what
# is missing and returns non-zero. iproute2 and promtool likewise.
ensure_btrfs_progs() {
  if command -v mkfs.btrfs >/dev/null 2>&1 && command -v btrfs >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing btrfs-progs" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq btrfs-progs >/dev/null
    return 0
  fi
  echo "btrfs-progs is missing and cannot be installed here (not root, or no apt-get)" >&2
  return 1
}

# ensure_iproute2 installs iproute2 (ip, for the network namespaces of the
# failover tests) the same way.
ensure_iproute2() {
  command -v ip >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing iproute2" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
    return 0
  fi
  echo "iproute2 is missing and cannot be installed here" >&2
  return 1
}

# ensure_systemd_analyze installs systemd (for systemd-analyze, which
# verifies the example unit in examples/systemd) the same way.
ensure_systemd_analyze() {
  command -v systemd-analyze >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing systemd (for systemd-analyze)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
    return 0
  fi
  echo "systemd-analyze is missing and cannot be installed here" >&2
  return 1
}

# ensure_chromium installs Debian's chromium (the headless browser the
# dashboard's end-to-end script drives) the same way.
ensure_chromium() {
  for b in chromium chromium-browser google-chrome google-chrome-stable; do
    command -v "$b" >/dev/null 2>&1 && return 0
  done
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    return 0
  fi
  echo "chromium is missing and cannot be installed here" >&2
  return 1
}

# ensure_promtool installs Debian's prometheus package (promtool, and the
# prometheus server the metrics testscript scrapes real agents with) the
# same way, only when either is missing. --no-install-recommends keeps
# prometheus-node-exporter out. Where systemd runs, Debian starts the
# package's prometheus service (port 9090): the tests need the binaries
# only, so the service this installed is stopped and disabled again.
ensure_promtool() {
  if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing prometheus (for promtool)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if [ -d /run/systemd/system ]; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    return 0
  fi
  echo "promtool (Debian package prometheus) is missing and cannot be installed here" >&2
  return 1
}
