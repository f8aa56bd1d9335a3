#!/usr/bin/env bash
# The one place that installs what posguard needs on a fresh Debian machine, into .venv beside this checkout.
#
#   scripts/setup.sh               development (the default; what the README's test command and CI use):
#                                  Debian packages (pcscd, vpcd, the CCID drivers and tools, systemd's offline
#                                  tools for the packaging tests), posguard editable with its test tools and the
#                                  simulators' own distribution (firmware_sim/, editable).
#   scripts/setup.sh --production  a POS box (README "Deploy on a POS box"): pcscd and the CCID driver, and
#                                  posguard with the pcsc extra only -- no test tools, no simulators, not editable.
#                                  Refuses a .venv made for development (remove it first).
#
# Idempotent and quick when nothing changed (a stamp keyed on this script, the profile and both pyproject.toml).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

profile=${POSGUARD_PROFILE:-development}
case "${1:-}" in
    --production) profile=production ;;
    --development) profile=development ;;
    "") ;;
    *) echo "setup: unknown argument ${1} (use --production or --development)" >&2; exit 2 ;;
esac
case "$profile" in
    development)
        APT_PACKAGES=(pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools libccid opensc swig gcc python3-dev systemd)
        PIP_TARGETS=(-e '.[test]' -e ./firmware_sim) ;;
    production)
        # swig gcc python3-dev libpcsclite-dev: pyscard builds from source
        APT_PACKAGES=(pcscd libccid libpcsclite-dev swig gcc python3-dev python3-venv)
        PIP_TARGETS=('.[pcsc]') ;;
    *) echo "setup: unknown POSGUARD_PROFILE=$profile (development or production)" >&2; exit 2 ;;
esac

stamp=.venv/.posguard-setup
want=$(cat scripts/setup.sh pyproject.toml firmware_sim/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$profile" = production ]; then
    want="production $want"
    made_for=$(cat .venv/.posguard-profile 2>/dev/null || echo development)
    if [ -x .venv/bin/python ] && [ "$made_for" != production ]; then
        echo "setup: .venv was made for $made_for; a production install starts from a fresh one:" \
             "rm -rf $root/.venv and run again" >&2
        exit 2
    fi
fi
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
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q "${PIP_TARGETS[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install failed (log above, also in $log)" >&2
    exit 1
fi
echo "$profile" > .venv/.posguard-profile
echo "$want" > "$stamp"
