#!/usr/bin/env bash
# Installs the Python packages scot's tests drive the servers with (the `openai` client library) into a
# virtual environment outside the repo: ${SCOT_PY_VENV:-~/.cache/scot/py-venv}. Idempotent; prints the
# venv's python on its last line.
set -euo pipefail

venv="${SCOT_PY_VENV:-$HOME/.cache/scot/py-venv}"
python="${PYTHON:-python3}"

if ! "$venv/bin/python" -c 'import openai' >/dev/null 2>&1; then
    # Debian's python3 lacks venv/ensurepip until python3-venv is installed.
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
        echo "creating $venv failed: install python3-venv (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'openai>=1.40,<3'
fi
"$venv/bin/python" -c 'import openai; print("openai", openai.__version__)' >&2
echo "$venv/bin/python"
