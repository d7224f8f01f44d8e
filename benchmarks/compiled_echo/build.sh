#!/bin/sh
# Builds benchmarks/out/compiled_echo/echo_server (benchmarks/compiled.py runs it).
# Installs Debian's libgrpc++-dev, g++ and pkg-config when missing (nothing else needs them:
# `make test` and `make demo` never build this).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT="$(dirname "$HERE")/out/compiled_echo"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
if ! { command -v g++ && command -v pkg-config && pkg-config --exists grpc++; } >/dev/null 2>&1; then
    echo "installing libgrpc++-dev, g++ and pkg-config (Debian packages)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        libgrpc++-dev g++ pkg-config >/dev/null
fi
mkdir -p "$OUT"
if [ ! "$OUT/echo_server" -nt "$HERE/echo_server.cc" ]; then
    # shellcheck disable=SC2046  # pkg-config's flags are meant to split
    g++ -O2 -std=c++17 -o "$OUT/echo_server" "$HERE/echo_server.cc" $(pkg-config --cflags --libs grpc++)
fi
echo "$OUT/echo_server"
