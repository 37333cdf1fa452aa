#!/bin/sh
# Install what edgevault needs to build, test and run its demo on Debian 12.
set -e
if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: run as root (it installs Debian packages)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	build-essential autoconf automake libtool pkg-config \
	libssl-dev libsodium-dev libsqlite3-dev libp11-kit-dev libinih-dev libjson-c-dev check \
	libtss2-dev swtpm swtpm-tools tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus \
	p11-kit softhsm2 opensc openssl libengine-pkcs11-openssl sqlite3 \
	gnutls-bin python3 python3-pykcs11 valgrind \
	openssh-server openssh-client nginx-light curl prometheus-node-exporter >/dev/null
