#!/usr/bin/env bash
# Set up everything from a fresh clone: a Python 3.11 venv in .venv with the pinned stack
# (pyproject.toml extras, locked by constraints.txt). With --test, also the Debian tools the
# tests use (espeak-ng + sox synthesize speech, chromium renders the HTML report).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version}"'

stamp=.venv/.denas-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -d .venv ] || "$PY" -m venv .venv
  echo "bootstrap: installing the pinned stack into .venv (torch 2.8.0 + torchaudio + IPEX: ~2 minutes on a fresh machine)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[all]"
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--test" ]; then
  missing=()
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  command -v sox >/dev/null || missing+=(sox)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]} from Debian" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
