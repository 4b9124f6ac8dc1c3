#!/bin/sh
# Runs the Python client's tests against a real node.
#
#   clients/python/run-tests.sh [pytest arguments...]
#
# Makes (once) a virtualenv in ~/.cache/synod/python-client-venv, installs
# the client with its test extra into it (again on every run, so changes
# are picked up) and runs pytest. The tests start a node from SYNOD_BIN
# (default ~/.cache/synod-target/debug/synod) with the models in
# SYNOD_TEST_MODELS_DIR (default ~/.cache/synod/models).
# Needs python3 with its venv module (Debian: python3-venv).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
venv="${PYTHON_CLIENT_VENV:-$HOME/.cache/synod/python-client-venv}"
python="${PYTHON:-python3}"

if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "run-tests.sh: creating the virtualenv $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi

# A build/ left by an older checkout could bring back deleted modules.
rm -rf "$here/build"
"$venv/bin/python" -m pip install -q "${here}[test]"
# The same version number: make sure this checkout's code is what runs.
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$here"

cd "$here"
exec "$venv/bin/python" -m pytest "$@"
