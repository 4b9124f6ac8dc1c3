#!/bin/sh
# unpack-deb.sh COMMAND PACKAGE PATH: prints the path of COMMAND for a
# peer benchmark. A COMMAND already on PATH is used as it is; otherwise
# Debian's PACKAGE is unpacked into ~/.cache/synod/peers/COMMAND the first
# time (apt-get download and dpkg -x: no root, no service started, nothing
# installed system-wide) and PATH is the binary's place inside it.
set -eu

cmd=$1 package=$2 path=$3
if command -v "$cmd" >/dev/null 2>&1; then
    command -v "$cmd"
    exit 0
fi
dir="${SYNOD_PEERS_DIR:-$HOME/.cache/synod/peers}/$cmd"
if [ ! -x "$dir/$path" ]; then
    mkdir -p "$dir"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download "$package" >/dev/null)
    dpkg -x "$tmp/${package}"_*.deb "$dir"
    rm -rf "$tmp"
fi
echo "$dir/$path"
