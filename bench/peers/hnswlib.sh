#!/bin/sh
# hnswlib (PyPI, built from its sdist with this machine's compiler) and
# numpy in ~/.cache/synod/bench-venv, the peer of synod-bench vectors.
# Prints the venv's python. A second run only checks.
#
#   sh bench/peers/hnswlib.sh
set -eu
venv="${BENCH_VENV:-$HOME/.cache/synod/bench-venv}"
packages="hnswlib==0.8.0 numpy==2.2.6"
if ! "$venv/bin/python" -c 'import hnswlib, numpy' >/dev/null 2>&1; then
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" >&2
    fi
    # Where this Python's headers are (Debian's under /usr/include, a
    # pyenv or venv-built Python's under its own prefix).
    include=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    if [ ! -e "$include/Python.h" ]; then
        echo "hnswlib.sh: hnswlib builds against Python's headers ($include/Python.h): apt-get install python3-dev" >&2
        exit 1
    fi
    echo "hnswlib.sh: installing $packages into $venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q $packages >&2
fi
echo "$venv/bin/python"
