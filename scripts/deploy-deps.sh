#!/bin/sh
# Install what the deploy tests (tests/deploy/test_deploy.py) need on a Debian 12 machine:
#   .venv-deploy          ansible + ansible-lint, pinned (tests/deploy/requirements.txt)
#   vagrant debootstrap   from apt, --no-install-recommends (as root)
#   the Debian root       debootstrapped once and cached (scripts/deploy-rootfs.sh, as root)
# Idempotent and quick when everything is there. Without root only the venv is made.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

want=$(sha256sum tests/deploy/requirements.txt | cut -d' ' -f1)
stamp=.venv-deploy/.kl2tp-stamp
if ! [ -x .venv-deploy/bin/ansible-playbook ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "deploy-deps: making .venv-deploy" >&2
    [ -x .venv-deploy/bin/python ] || "${PYTHON:-python3}" -m venv .venv-deploy
    .venv-deploy/bin/python -m pip install -q --disable-pip-version-check -r tests/deploy/requirements.txt
    echo "$want" >"$stamp"
fi

[ "$(id -u)" = 0 ] || exit 0

missing=""
for p in vagrant debootstrap; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "deploy-deps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >&2
fi
scripts/deploy-rootfs.sh >/dev/null
