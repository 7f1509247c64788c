# Sourced by the setup scripts: find a local Python 3.12 (nothing downloads a Python build).
# ADLOOP_PYTHON wins; then PATH, pyenv installs and the usual system paths.
is_312() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }

find_python() {
  local candidates=("${ADLOOP_PYTHON:-}" python3.12)
  candidates+=("$HOME"/.pyenv/versions/3.12*/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12)
  candidates+=(/usr/bin/python3.12 /usr/local/bin/python3.12 /opt/homebrew/bin/python3.12 python3)
  for c in "${candidates[@]}"; do
    [ -n "$c" ] || continue
    if is_312 "$c"; then command -v "$c" 2>/dev/null || echo "$c"; return 0; fi
  done
  return 1
}
