#!/bin/sh
# Prints the path of a redis-server for bench/peers/celery_bench.py,
# unpacking Debian's redis-server and redis-tools packages into
# ~/.cache/synod/peers/redis the first time (apt-get download and dpkg -x:
# no root, no service started, nothing installed system-wide). Debian's
# /usr/bin/redis-server is a link to redis-check-rdb in redis-tools, which
# needs liblzf and libjemalloc: the libraries redis-tools depends on that
# are not installed here are unpacked next to it, and what is printed is a
# wrapper that puts them on LD_LIBRARY_PATH. A redis-server already on PATH
# is used as it is.
set -eu

if command -v redis-server >/dev/null 2>&1; then
    command -v redis-server
    exit 0
fi
dir="${SYNOD_PEERS_DIR:-$HOME/.cache/synod/peers}/redis"
wrapper="$dir/redis-server"
if [ ! -x "$wrapper" ]; then
    mkdir -p "$dir"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # The libraries redis-tools depends on that dpkg does not know as installed.
    libs=""
    for p in $(apt-cache depends --no-recommends --no-suggests --no-enhances redis-tools |
        awk '$1 == "Depends:" && $2 ~ /^lib/ { print $2 }'); do
        if ! dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q ' installed$'; then
            libs="$libs $p"
        fi
    done
    # shellcheck disable=SC2086 # $libs is a list of package names
    (cd "$tmp" && apt-get download redis-server redis-tools $libs >/dev/null)
    for deb in "$tmp"/*.deb; do
        dpkg -x "$deb" "$dir"
    done
    libpath=$(find "$dir" -name '*.so*' \( -type f -o -type l \) -exec dirname {} \; | sort -u | paste -sd: -)
    missing=$(LD_LIBRARY_PATH="$libpath" ldd "$dir/usr/bin/redis-check-rdb" | awk '/not found/ { print $1 }' | paste -sd' ' -)
    if [ -n "$missing" ]; then
        echo "redis.sh: $dir/usr/bin/redis-check-rdb still misses: $missing" >&2
        exit 1
    fi
    # Written last, so an interrupted unpack is done again next time.
    # exec keeps argv[0] ending in redis-server: the binary is
    # redis-check-rdb and picks its role from the name it was run as.
    cat >"$wrapper.tmp" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$libpath\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$dir/usr/bin/redis-server" "\$@"
EOF
    chmod +x "$wrapper.tmp"
    mv "$wrapper.tmp" "$wrapper"
fi
echo "$wrapper"
