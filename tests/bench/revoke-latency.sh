#!/bin/sh
# Revocation latency benchmark: a temporary directory with a SoftHSMv2 root
# token, an edgevault configuration watching a revocation directory, a zone
# with one EC key per trial; then ev_revoke_bench (see its header) and the
# directory removed, pass or fail.
#
# usage: tests/bench/revoke-latency.sh [-n TRIALS] [BUILDDIR]
#   BUILDDIR (default: the current directory) holds the built module
#   (.libs/edgevault-pkcs11.so) and tests/bench/ev_revoke_bench.
#   EV_SOFTHSM names SoftHSMv2's module if not in the usual place.

set -u

TRIALS=200
if [ "${1:-}" = "-n" ]; then
	TRIALS=${2:?-n needs a number}
	shift 2
fi
BUILD=$(cd "${1:-.}" && pwd) || exit 2
EV_MODULE=${EV_MODULE:-$BUILD/.libs/edgevault-pkcs11.so}
BENCH=$BUILD/tests/bench/ev_revoke_bench
: "${EV_SOFTHSM:=/usr/lib/softhsm/libsofthsm2.so}"
for f in "$EV_MODULE" "$BENCH" "$EV_SOFTHSM"; do
	[ -e "$f" ] || { echo "revoke-latency: $f not found (build first)" >&2; exit 2; }
done

# A module built with --enable-sanitizers needs the ASan runtime in pkcs11-tool.
asan=$(ldd "$EV_MODULE" 2>/dev/null | awk '/libasan/ {print $3}')
p11() {
	if [ -n "$asan" ]; then
		LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0 pkcs11-tool --module "$EV_MODULE" "$@"
	else
		pkcs11-tool --module "$EV_MODULE" "$@"
	fi
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ev-bench-XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

SO_PIN=so-secret
USER_PIN=user-secret
ROOT_PIN=root-pin-1234

step() {
	if ! "$@" >"$TMP/step.out" 2>&1; then
		echo "revoke-latency: set-up step failed: $*" >&2
		sed 's/^/    /' "$TMP/step.out" >&2
		exit 1
	fi
}

mkdir -p "$TMP/tokens" "$TMP/revocations"
cat >"$TMP/softhsm2.conf" <<EOC
directories.tokendir = $TMP/tokens
objectstore.backend = file
log.level = ERROR
EOC
export SOFTHSM2_CONF="$TMP/softhsm2.conf"
step softhsm2-util --init-token --free --label root --pin "$ROOT_PIN" --so-pin root-so-1234
printf '%s\n' "$ROOT_PIN" >"$TMP/root.pin"

pk=$("$BENCH" keygen "$TMP/authority.key") || exit 1
cat >"$TMP/edgevault.conf" <<EOC
[store]
dir = $TMP/store
[device]
id = bench-device
[root]
backend = pkcs11
module = $EV_SOFTHSM
token_label = root
pin_file = $TMP/root.pin
key_label = edgevault-root
[pin]
max_fails = 5
argon2_ops = 1
argon2_mem_kib = 64
[revocation]
public_key = $pk
watch_dir = $TMP/revocations
EOC
export EDGEVAULT_CONF="$TMP/edgevault.conf"

step p11 --init-token --label bench --so-pin "$SO_PIN"
step p11 --token-label bench --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN"
echo "revoke-latency: generating $TRIALS keys"
i=0
while [ "$i" -lt "$TRIALS" ]; do
	step p11 --token-label bench --login --pin "$USER_PIN" --keypairgen \
		--key-type EC:prime256v1 --label "bench-$i" --id "$(printf '%06x' "$i")"
	i=$((i + 1))
done

"$BENCH" -n "$TRIALS" -p bench- -d bench-device -P "$USER_PIN" \
	"$EV_MODULE" "$TMP/authority.key" "$TMP/revocations" bench
