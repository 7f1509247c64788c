#!/usr/bin/env bash
# Build .venv-lwmmm, the separate environment lightweight-mmm runs in (old jax, numpy<2), from
# models/mmm/lightweight/requirements.txt with the same local Python 3.12 as scripts/bootstrap.sh.
# Idempotent: a stamp keyed on the requirements' hash skips a build that is already current.
set -euo pipefail
cd "$(dirname "$0")/.."

ENV_DIR=${ADLOOP_LIGHTWEIGHT_MMM_VENV:-.venv-lwmmm}
REQS=models/mmm/lightweight/requirements.txt
STAMP="$ENV_DIR/.requirements.sha256"

say() { echo "lightweight-mmm env: $*"; }

. scripts/lib/find_python.sh

want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$ENV_DIR/bin/python" ]; then
  say "up to date ($ENV_DIR, requirements ${want:0:12})"
  exit 0
fi

PY=$(find_python) || {
  echo "lightweight-mmm env: needs a local Python 3.12 (see scripts/bootstrap.sh); set ADLOOP_PYTHON" >&2
  exit 1
}

UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  if [ ! -x .tools/uv/bin/uv ]; then
    say "installing uv into .tools/uv"
    "$PY" -m venv .tools/uv
    .tools/uv/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
  fi
  UV=.tools/uv/bin/uv
fi

started=$SECONDS
say "using Python $("$PY" -c 'import sys; print(sys.version.split()[0])') at $PY"
if [ ! -x "$ENV_DIR/bin/python" ] || ! is_312 "$ENV_DIR/bin/python"; then
  say "creating $ENV_DIR"
  UV_PYTHON_DOWNLOADS=never "$UV" venv --quiet --python "$PY" "$ENV_DIR"
fi
rm -f "$STAMP"
say "installing $(grep -c '==' "$REQS") pinned packages from $REQS"
UV_PYTHON_DOWNLOADS=never "$UV" pip sync --python "$ENV_DIR/bin/python" "$REQS"
say "checking imports"
"$ENV_DIR/bin/python" - <<'PY'
import importlib.util, sys, types
# lightweight_mmm.utils imports tensorflow.io.gfile, which this env leaves out (see README);
# the runner installs the same stand-in.
if importlib.util.find_spec("tensorflow") is None:
    tf = types.ModuleType("tensorflow"); tf.io = types.ModuleType("tensorflow.io")
    tf.io.gfile = types.SimpleNamespace(GFile=open)
    sys.modules.update({"tensorflow": tf, "tensorflow.io": tf.io})
from importlib.metadata import version
import dagster_pipes  # noqa: F401
from lightweight_mmm import lightweight_mmm  # noqa: F401
names = ("lightweight_mmm", "jax", "jaxlib", "numpyro", "numpy", "dagster-pipes")
print("  " + ", ".join(f"{n} {version(n)}" for n in names))
PY
echo "$want" > "$STAMP"
say "ready in $((SECONDS - started))s: $ENV_DIR ($(du -sh "$ENV_DIR" | cut -f1))"
