#!/bin/sh
# Prints the path of a nats-server binary for `synod-bench nats`: Debian's
# nats-server, unpacked without root by unpack-deb.sh (or one on PATH).
exec sh "$(dirname "$0")/unpack-deb.sh" nats-server nats-server usr/sbin/nats-server
