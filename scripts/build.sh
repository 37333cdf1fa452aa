#!/bin/sh
# Configure and build in the source tree (idempotent).
set -e
cd "$(dirname "$0")/.."
[ -x configure ] || ./autogen.sh
[ -f Makefile ] || ./configure --quiet "$@"
make -j"$(nproc)" >/dev/null
