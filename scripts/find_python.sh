#!/usr/bin/env bash
# Print the path of a working Python 3.10 interpreter, or fail with one sentence.
# Order: $PYTHON, python3.10 on PATH, pyenv's installed versions, uv (which may install one).
# "Working" means it runs and reports 3.10: a pyenv shim that answers "command not found"
# does not count.
set -u

is_py310() {
    [ -n "${1:-}" ] || return 1
    "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1
}

if [ -n "${PYTHON:-}" ]; then
    if is_py310 "$PYTHON"; then echo "$PYTHON"; exit 0; fi
    echo "error: \$PYTHON=$PYTHON is not a working Python 3.10 interpreter." >&2
    exit 1
fi

if command -v python3.10 >/dev/null 2>&1 && is_py310 "$(command -v python3.10)"; then
    command -v python3.10; exit 0
fi

for root in "${PYENV_ROOT:-}" "$HOME/.pyenv" /root/.pyenv /usr/local/pyenv; do
    [ -n "$root" ] && [ -d "$root/versions" ] || continue
    for cand in $(ls -d "$root"/versions/3.10* 2>/dev/null | sort -V -r); do
        if is_py310 "$cand/bin/python3"; then echo "$cand/bin/python3"; exit 0; fi
    done
done

if command -v uv >/dev/null 2>&1; then
    p=$(uv python find 3.10 2>/dev/null) && is_py310 "$p" && { echo "$p"; exit 0; }
    uv python install 3.10 >&2 && p=$(uv python find 3.10 2>/dev/null) && is_py310 "$p" && { echo "$p"; exit 0; }
fi

echo "error: no Python 3.10 found (tried \$PYTHON, python3.10 on PATH, pyenv versions and uv); install one (e.g. 'uv python install 3.10') or set PYTHON=/path/to/python3.10." >&2
exit 1
