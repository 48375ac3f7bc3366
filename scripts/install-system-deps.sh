#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use as real components:
# nginx (reference proxy), hey and wrk (reference load generators), prometheus + promtool,
# prometheus-alertmanager, nodejs/npm (Portkey gateway and the workflow linter), chromium
# (headless: renders report.html in tests). Skips what is already there.
set -euo pipefail

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v hey >/dev/null 2>&1 || need+=(hey)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)

if [ ${#need[@]} -eq 0 ]; then
  echo "system deps: all present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "system deps: need root to install: ${need[*]}" >&2; exit 1
  fi
fi
echo "system deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the packages' own services from starting: tests start their own instances.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created_policy=1
fi
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi
echo "system deps: done"
