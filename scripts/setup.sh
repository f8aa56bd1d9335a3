#!/usr/bin/env bash
# The one place that installs what posguard needs on a fresh Debian machine:
# Debian packages (pcscd, vpcd, the CCID drivers and tools) and the Python packages into .venv:
# posguard (editable, with its test tools) and the simulators' own distribution (firmware_sim/, editable).
# Idempotent and quick when nothing changed (a stamp keyed on this script and both pyproject.toml files).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

APT_PACKAGES=(pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools libccid opensc swig gcc python3-dev)

stamp=.venv/.posguard-setup
want=$(cat scripts/setup.sh pyproject.toml firmware_sim/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/posguard ]; then
    exit 0
fi

need_apt=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup: installing Debian packages: ${need_apt[*]}" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # --no-install-recommends keeps pcscd from pulling a systemd socket unit we do not use.
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PY" -m venv .venv
fi
echo "setup: installing Python packages into .venv (pyscard builds from source)" >&2
log=.venv/setup-pip.log
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e '.[test]' -e ./firmware_sim; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install failed (log above, also in $log)" >&2
    exit 1
fi
echo "$want" > "$stamp"
