#!/usr/bin/env bash
# Makes the peers' own virtual environment, benchmarks/peers/.venv (git ignores it), from the
# pinned requirements.txt: LanceDB, sqlite-vec and Chroma, which bench.py times beside vcli.
# They are not vcli's dependencies and never go in pyproject.toml.
#     benchmarks/peers/setup.sh [PYTHON]      (about a minute)
# sqlite-vec is an SQLite extension: the Python must be built with loadable extensions (a
# Python compiled by pyenv usually is not; Debian's /usr/bin/python3 is). Without PYTHON the
# first of python3 and /usr/bin/python3 that can load one is used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
can_load='import sqlite3, sys; sys.exit(not hasattr(sqlite3.Connection, "enable_load_extension"))'
python="${1:-}"
if [ -z "$python" ]; then
    for candidate in python3 /usr/bin/python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c "$can_load" 2>/dev/null; then
            python="$candidate"
            break
        fi
    done
fi
if [ -z "$python" ] || ! "$python" -c "$can_load"; then
    echo "no Python whose sqlite3 can load extensions (sqlite-vec needs one): pass one as PYTHON" >&2
    exit 1
fi
rm -rf "$here/.venv"
"$python" -m venv "$here/.venv"
"$here/.venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
echo "peers installed in $here/.venv ($("$here/.venv/bin/python" --version), SQLite $("$here/.venv/bin/python" -c 'import sqlite3; print(sqlite3.sqlite_version)'))"
