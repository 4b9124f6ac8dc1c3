#!/bin/sh
# Prints the path of a nats-server binary for `synod-bench nats`, unpacking
# Debian's nats-server package into ~/.cache/synod/peers/nats the first
# time (apt-get download and dpkg -x: no root, no service started, nothing
# installed system-wide). A nats-server already on PATH is used as it is.
set -eu

if command -v nats-server >/dev/null 2>&1; then
    command -v nats-server
    exit 0
fi
dir="${SYNOD_PEERS_DIR:-$HOME/.cache/synod/peers}/nats"
if [ ! -x "$dir/usr/sbin/nats-server" ]; then
    mkdir -p "$dir"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download nats-server >/dev/null)
    dpkg -x "$tmp"/nats-server_*.deb "$dir"
    rm -rf "$tmp"
fi
echo "$dir/usr/sbin/nats-server"
