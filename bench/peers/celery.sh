#!/bin/sh
# Prints the python of a venv (~/.cache/synod/bench-venv) holding Celery
# with its Redis transport, for bench/peers/celery_bench.py; creates the
# venv and installs the pinned packages from PyPI the first time, and
# does nothing more once they are there. celery[redis] alone would let
# kombu (the transport), billiard (the prefork pool) and redis-py float, so
# they are pinned too, at what celery 5.7.0 resolved to when this was written.
set -eu

packages="celery[redis]==5.7.0 kombu==5.7.0 billiard==4.3.2 redis==8.2.0"
venv="${SYNOD_BENCH_VENV:-$HOME/.cache/synod/bench-venv}"

installed() {
    frozen=$("$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null) || return 1
    for p in $packages; do
        # celery[redis]==5.7.0 is frozen as celery==5.7.0
        printf '%s\n' "$frozen" | grep -qixF "$(echo "$p" | sed 's/\[.*\]//')" || return 1
    done
}

if ! installed; then
    echo "installing $packages into $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    # shellcheck disable=SC2086 # $packages is a list of requirements
    "$venv/bin/pip" install -q --disable-pip-version-check $packages >&2
fi
echo "$venv/bin/python"
