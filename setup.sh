#!/usr/bin/env bash
# Installs what kubeling needs on Debian/Ubuntu: system packages (as root) and
# a Python virtualenv in .venv with kubeling installed in it.
#   ./setup.sh          runtime dependencies
#   ./setup.sh --test   plus what the test suite needs
set -euo pipefail
cd "$(dirname "$0")"

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# runc, nftables, iproute2: the node; busybox-static and docker-registry: the
# test images and their registry; dnsutils (dig) and curl: the system tests;
# wrk and dnsperf: the load generators of bench/.
packages=(python3 python3-venv ca-certificates runc nftables iproute2 busybox-static docker-registry dnsutils curl
          wrk dnsperf)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: missing packages (${missing[*]}); run setup.sh as root to install them" >&2
    exit 1
  fi
  echo "Installing ${missing[*]} ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv ..."
  "$python" -m venv .venv
fi
extras=""
[ $want_test = 1 ] && extras="[test]"
echo "Installing kubeling into .venv ..."
.venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
echo "Ready: .venv/bin/kubeling"
