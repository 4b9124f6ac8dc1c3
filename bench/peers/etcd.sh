#!/bin/sh
# Prints the path of an etcd binary for `synod-bench etcd`, unpacking
# Debian's etcd-server package into ~/.cache/synod/peers/etcd the first
# time (apt-get download and dpkg -x: no root, no service started, nothing
# installed system-wide). An etcd already on PATH is used as it is.
set -eu

if command -v etcd >/dev/null 2>&1; then
    command -v etcd
    exit 0
fi
dir="${SYNOD_PEERS_DIR:-$HOME/.cache/synod/peers}/etcd"
if [ ! -x "$dir/usr/bin/etcd" ]; then
    mkdir -p "$dir"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download etcd-server >/dev/null)
    dpkg -x "$tmp"/etcd-server_*.deb "$dir"
    rm -rf "$tmp"
fi
echo "$dir/usr/bin/etcd"
