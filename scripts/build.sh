#!/bin/sh
# Configure and build in the source tree (idempotent).
set -e
cd "$(dirname "$0")/.."
[ -x configure ] || ./autogen.sh >/dev/null 2>&1
[ -f Makefile ] || ./configure --quiet "$@"
make -j"$(nproc)" >/dev/null
