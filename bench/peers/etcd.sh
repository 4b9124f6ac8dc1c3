#!/bin/sh
# Prints the path of an etcd binary for `synod-bench etcd`: Debian's
# etcd-server, unpacked without root by unpack-deb.sh (or an etcd on PATH).
exec sh "$(dirname "$0")/unpack-deb.sh" etcd etcd-server usr/bin/etcd
