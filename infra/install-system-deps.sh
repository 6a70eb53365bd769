#!/usr/bin/env bash
# System packages the DFT engines, the local SLURM cluster and the browser tests of the web
# explorer need (Debian/Ubuntu; Playwright drives /usr/bin/chromium and downloads no browser),
# and npm, which `make install` runs to install the explorer's partial plotly.js bundles.
# Idempotent: installs only what is missing. Used by `make test-deps` and .ci/run.
set -euo pipefail

PACKAGES=(quantum-espresso quantum-espresso-data slurm-wlm munge chromium)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
# npm may come with another nodejs package (NodeSource's has it built in): apt's only if none
if ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
    echo "system deps: all present (${PACKAGES[*]} npm)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "system deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "system deps: done"
