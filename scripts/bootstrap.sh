#!/usr/bin/env bash
# Create .venv from uv.lock with a local Python 3.12; nothing downloads a Python build.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/find_python.sh

PY=$(find_python) || {
  cat >&2 <<'MSG'
adloop needs Python 3.12 (pymc-marketing 1.x requires it) and none was found.
Install one and run this again, for example:
  - Debian/Ubuntu:  apt-get install python3.12 python3.12-venv
  - pyenv:          pyenv install 3.12
  - or point ADLOOP_PYTHON at a python3.12 executable.
MSG
  exit 1
}
echo "bootstrap: using Python $("$PY" -c 'import sys; print(sys.version.split()[0])') at $PY"

UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  if [ ! -x .tools/uv/bin/uv ]; then
    echo "bootstrap: installing uv into .tools/uv"
    "$PY" -m venv .tools/uv
    .tools/uv/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
  fi
  UV=.tools/uv/bin/uv
fi

echo "bootstrap: uv sync --frozen (uv.lock)"
UV_PYTHON_DOWNLOADS=never "$UV" sync --frozen --python "$PY"
