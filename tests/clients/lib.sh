# Shared set-up for the client tests: a temporary directory with a SoftHSMv2
# root token, an edgevault configuration and store. Sourced by each test.
# Everything a test starts is stopped and removed on exit, pass or fail.

set -u

: "${EV_MODULE:?EV_MODULE must name the built module (run through make check)}"
: "${EV_SOFTHSM:=/usr/lib/softhsm/libsofthsm2.so}"

# A module built with --enable-sanitizers needs the ASan runtime loaded first
# in the (uninstrumented) client programs. Their own leaks are not ours.
asan=$(ldd "$EV_MODULE" 2>/dev/null | awk '/libasan/ {print $3}')
if [ -n "$asan" ]; then
	export LD_PRELOAD="$asan"
	export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
fi

EV_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ev-client-XXXXXX")
EV_PIDS=""
ev_cleanup() {
	for pid in $EV_PIDS; do
		kill "$pid" 2>/dev/null
	done
	[ -n "${EV_KEEP:-}" ] || rm -rf "$EV_TMP"
}
trap ev_cleanup EXIT

SO_PIN=so-secret
USER_PIN=user-secret
ROOT_PIN=root-pin-1234

mkdir -p "$EV_TMP/tokens"
cat >"$EV_TMP/softhsm2.conf" <<EOC
directories.tokendir = $EV_TMP/tokens
objectstore.backend = file
log.level = ERROR
EOC
export SOFTHSM2_CONF="$EV_TMP/softhsm2.conf"
softhsm2-util --init-token --free --label root --pin "$ROOT_PIN" --so-pin root-so-1234 >/dev/null
printf '%s\n' "$ROOT_PIN" >"$EV_TMP/root.pin"
cat >"$EV_TMP/edgevault.conf" <<EOC
[store]
dir = $EV_TMP/store
[device]
id = test-device
[root]
backend = pkcs11
module = $EV_SOFTHSM
token_label = root
pin_file = $EV_TMP/root.pin
key_label = edgevault-root
[pin]
max_fails = 5
argon2_ops = 1
argon2_mem_kib = 64
EOC
export EDGEVAULT_CONF="$EV_TMP/edgevault.conf"

EV_PASSED=0
EV_FAILED=0

# ok NAME COMMAND...: run a check, report it, keep its output on failure.
ok() {
	name=$1
	shift
	if "$@" >"$EV_TMP/out" 2>&1; then
		echo "PASS: $name"
		EV_PASSED=$((EV_PASSED + 1))
	else
		echo "FAIL: $name"
		sed 's/^/    /' "$EV_TMP/out"
		EV_FAILED=$((EV_FAILED + 1))
	fi
}

# fails NAME COMMAND...: a check that must fail.
fails() {
	name=$1
	shift
	if "$@" >"$EV_TMP/out" 2>&1; then
		echo "FAIL: $name (succeeded but must fail)"
		sed 's/^/    /' "$EV_TMP/out"
		EV_FAILED=$((EV_FAILED + 1))
	else
		echo "PASS: $name"
		EV_PASSED=$((EV_PASSED + 1))
	fi
}

finish() {
	echo "$EV_PASSED passed, $EV_FAILED failed"
	[ "$EV_FAILED" -eq 0 ]
}
