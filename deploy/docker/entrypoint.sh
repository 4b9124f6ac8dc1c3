#!/bin/sh
# The image's entrypoint: runs `synod serve` with the arguments given, after
# deriving the node id from a StatefulSet-style host name when asked to.
#
#   entrypoint.sh [ARGS...]        exec $SYNOD_BIN serve ARGS...
#   entrypoint.sh serve [ARGS...]  the same
#   entrypoint.sh CMD [ARGS...]    exec $SYNOD_BIN CMD ARGS... (CMD not starting
#                                  with "-": `model install ...`, `health`, ...)
#
# Environment (read here, then unset, so the node never sees them: synod
# rejects SYNOD_* variables that are not config keys):
#   SYNOD_BIN                   the synod binary; default `synod` on PATH
#   SYNOD_NODE_ID_FROM_ORDINAL  "true": when SYNOD_NODE_ID is unset or empty,
#                               export SYNOD_NODE_ID = ordinal + 1, the ordinal
#                               being the digits after the last "-" of the pod
#                               name (synod-0 -> 1, synod-2 -> 3; id 0 is
#                               reserved). "false" or unset: nothing derived.
#                               Anything else is an error.
#   SYNOD_POD_NAME              the pod name to read the ordinal from; default
#                               $HOSTNAME, else `uname -n`
# Every other variable (SYNOD_NODE_ID, SYNOD_NODE_ADVERTISE_HTTP, ...) passes
# through to synod, and flags beat them (--node-id wins over a derived id).
# A name without an ordinal, or an ordinal with a leading zero or more than
# 9 digits, exits 64 with a message on stderr, before synod starts.
#
# POSIX sh; no program but uname (and only without a pod name).
set -eu

die() {
    echo "entrypoint: $*" >&2
    exit 64
}

bin="${SYNOD_BIN:-synod}"
from_ordinal="${SYNOD_NODE_ID_FROM_ORDINAL:-false}"
# HOSTNAME as the environment variable Docker and Kubernetes set (the pod
# name), not the one bash sets for itself.
# shellcheck disable=SC3028
pod="${SYNOD_POD_NAME:-${HOSTNAME:-}}"
unset SYNOD_BIN SYNOD_NODE_ID_FROM_ORDINAL SYNOD_POD_NAME

case "${1:-}" in
    serve) shift ;;
    "" | -*) ;;
    *) exec "$bin" "$@" ;;
esac

case "$from_ordinal" in
    true)
        if [ -z "${SYNOD_NODE_ID:-}" ]; then
            [ -n "$pod" ] || pod="$(uname -n)"
            ordinal="${pod##*-}"
            [ "$ordinal" != "$pod" ] || die "pod name '$pod' has no -<ordinal> suffix (SYNOD_NODE_ID_FROM_ORDINAL=true)"
            case "$ordinal" in
                "" | *[!0-9]*) die "pod name '$pod' does not end in -<ordinal> (SYNOD_NODE_ID_FROM_ORDINAL=true)" ;;
                0?*) die "pod name '$pod': ordinal with a leading zero" ;;
                ??????????*) die "pod name '$pod': ordinal too large" ;;
            esac
            SYNOD_NODE_ID=$((ordinal + 1))
            export SYNOD_NODE_ID
        fi
        ;;
    false) ;;
    *) die "SYNOD_NODE_ID_FROM_ORDINAL must be true or false, not '$from_ordinal'" ;;
esac

exec "$bin" serve "$@"
