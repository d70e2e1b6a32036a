# shellcheck shell=bash
# Shared set-up for bin/run and bin/test (sourced, not executed).
#
# Leaves the shell in the repository root with var/ present, .venv/bin first on PATH and the
# packages of requirements.txt installed. pip runs only when requirements.txt (or the venv's
# Python) changed since the last successful install: the hash is stamped in var/.

HOSTPANEL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$HOSTPANEL_ROOT" || return 1
mkdir -p var

_hp_stamp=var/requirements.sha256

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $(command -v python3 || echo 'python3 (not found)')"
    if ! python3 -m venv .venv; then
        echo "error: 'python3 -m venv' failed; on Debian install python3-venv first" >&2
        echo "       (apt-get install -y python3-venv)" >&2
        return 1
    fi
    rm -f "$_hp_stamp"
fi

_hp_want="$( { sha256sum requirements.txt; .venv/bin/python --version; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$_hp_stamp" 2>/dev/null || true)" != "$_hp_want" ]; then
    echo "==> installing requirements.txt into .venv"
    .venv/bin/python -m pip install --disable-pip-version-check -r requirements.txt
    printf '%s\n' "$_hp_want" >"$_hp_stamp"
fi
unset _hp_stamp _hp_want

PATH="$HOSTPANEL_ROOT/.venv/bin:$PATH"
VIRTUAL_ENV="$HOSTPANEL_ROOT/.venv"
export PATH VIRTUAL_ENV
