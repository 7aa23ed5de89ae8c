#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine (run as root): the Debian packages the tests and
# the demo use, then the project's .venv with the package installed editable with its dev extras.
# Package services are not started: tests run the daemons they need in their own namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(frr mosquitto mosquitto-clients tcpdump iproute2 iputils-ping procps psmisc python3-venv make smcroute)
missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  # Installing daemons must not start them on the host.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Installed services are kept from running on the host (tests start private instances).
for svc in frr mosquitto smcroute; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
# FRR's vtysh insists on a config file; an empty one is enough.
[ -f /etc/frr/vtysh.conf ] || { mkdir -p /etc/frr && : > /etc/frr/vtysh.conf; }

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
echo "setup: ok ($(.venv/bin/python --version), exabgp $(.venv/bin/python -c 'import exabgp.version as v; print(v.version)'))"
