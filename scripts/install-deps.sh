#!/usr/bin/env bash
# Install everything flowkeeper needs on Debian 12, as root: OVS and network tools from
# apt, Python packages into ./.venv. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(openvswitch-switch openvswitch-common iproute2 iputils-ping tcpdump ethtool procps python3-venv openssl etcd-server etcd-client)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
stamp=.venv/.deps-stamp
want="$(cat pyproject.toml scripts/install-deps.sh | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "install-deps: python packages into .venv"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,bench]'
  # os-ken is only used by the OpenFlow micro-benchmark, for its message encoder. Its
  # declared dependencies pull in eventlet, which flowkeeper does not use: skip them.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps 'os-ken>=3'
  echo "$want" > "$stamp"
fi
