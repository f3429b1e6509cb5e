#!/usr/bin/env bash
# Create ./.venv with CPython 3.10 and install olafhe with its test extras (which include the `serve` extra:
# fastapi, uvicorn, httpx) and the `ray` extra.
#
# Why 3.10: the only `openfhe` wheel on PyPI that imports on these machines (1.6.1.0.22.4) is built for
# CPython 3.10 (its 3.11 build fails to import; its 3.12 build needs a newer libstdc++).
# Usage: scripts/setup.sh            (idempotent: an existing, complete .venv is reused)
#        OLAFHE_PYTHON=/path/to/python3.10 scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${OLAFHE_VENV:-.venv}

find_python() {
  local candidates=()
  [ -n "${OLAFHE_PYTHON:-}" ] && candidates+=("$OLAFHE_PYTHON")
  [ -n "${PYENV_ROOT:-}" ] && candidates+=("$PYENV_ROOT"/versions/3.10.*/bin/python3.10)
  candidates+=("$HOME"/.pyenv/versions/3.10.*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10)
  if command -v python3.10 >/dev/null 2>&1; then candidates+=("$(command -v python3.10)"); fi
  for py in "${candidates[@]}"; do
    [ -x "$py" ] || continue
    # pyenv shims exist even when 3.10 is not the selected version: check that it really runs 3.10.
    if "$py" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1; then
      echo "$py"; return 0
    fi
  done
  return 1
}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import olafhe, openfhe, tenseal, torch, fastapi, uvicorn, httpx, ray' >/dev/null 2>&1 \
   && [ "${OLAFHE_REINSTALL:-0}" != 1 ]; then
  "$VENV/bin/pip" install --quiet --no-deps -e '.[test]'
  echo "setup: reusing $VENV ($("$VENV/bin/python" --version))"
  exit 0
fi

if ! PY=$(find_python); then
  cat >&2 <<'MSG'
setup: CPython 3.10 not found.
  olafhe needs Python 3.10 because the openfhe wheel on PyPI (1.6.1.0.22.4) is built only for it.
  Install it, e.g. `pyenv install 3.10.13` or `apt-get install python3.10 python3.10-venv`,
  or point OLAFHE_PYTHON at a python3.10 executable.
MSG
  exit 1
fi
echo "setup: using $PY ($("$PY" --version))"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'
"$VENV/bin/python" -c 'import olafhe, openfhe, tenseal, torch, fastapi, ray; print("setup: ok, torch", torch.__version__)'
