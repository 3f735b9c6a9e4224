#!/usr/bin/env bash
# Make the project's virtualenv (.venv in the checkout) with kl2tp installed in it.
# Idempotent and quick when nothing changed. As root on Debian, installs what is missing
# from apt first. Usage: scripts/bootstrap.sh [--test]   (--test adds the test extras)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

py=${PYTHON:-python3}
if ! command -v "$py" >/dev/null 2>&1 || ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
        py=python3
    else
        echo "bootstrap: need python3 >= 3.11 with venv (apt-get install python3-venv)" >&2
        exit 1
    fi
fi

stamp=".venv/.kl2tp-stamp$extras"
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"
echo "$want" > "$stamp"
