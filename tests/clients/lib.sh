# Shared set-up for the client tests: a temporary directory with a root of
# trust (a SoftHSMv2 token, or a swtpm: EV_ROOT), an edgevault configuration
# and store. Sourced by each test.
# Everything a test starts is stopped by PID and the directory removed on
# exit, pass or fail, also when make or the test driver interrupts it.

set -u

: "${EV_MODULE:?EV_MODULE must name the built module (run through make check)}"
: "${EV_SOFTHSM:=/usr/lib/softhsm/libsofthsm2.so}"
# The source tree (the tests are run from it): conf/ holds the examples.
EV_SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)

# A module built with --enable-sanitizers needs the ASan runtime loaded first
# in the (uninstrumented) client programs. Their own leaks are not ours.
asan=$(ldd "$EV_MODULE" 2>/dev/null | awk '/libasan/ {print $3}')
if [ -n "$asan" ]; then
	export LD_PRELOAD="$asan"
	export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
fi

# No client may wait for a terminal (a PIN prompt, p11tool's "insert token
# and press enter"): it reads end of file and fails instead.
exec </dev/null

# Debian's interpreter (PyKCS11 is a Debian package), not one on a user's PATH.
EV_PYTHON=/usr/bin/python3
[ -x "$EV_PYTHON" ] || EV_PYTHON=python3

EV_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ev-client-XXXXXX") || exit 99
# Processes to stop at exit: PIDs, and PID files of daemons read only then
# (a daemon may write its PID file after the test stopped waiting for it).
EV_PIDS=""
EV_PIDFILES=""
ev_cleanup() {
	pids=$EV_PIDS
	for f in $EV_PIDFILES; do
		[ -s "$f" ] && pids="$pids $(cat "$f")"
	done
	for pid in $pids; do
		kill "$pid" 2>/dev/null
	done
	# Reap our own children; a daemon is polled until it has gone (5 s),
	# so that nothing writes into the directory after it is removed.
	for pid in $pids; do
		wait "$pid" 2>/dev/null
		n=0
		while kill -0 "$pid" 2>/dev/null && [ $n -lt 50 ]; do
			sleep 0.1
			n=$((n + 1))
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "process $pid did not stop on SIGTERM: killed"
			kill -9 "$pid" 2>/dev/null
		fi
	done
	[ -n "${EV_KEEP:-}" ] || rm -rf "$EV_TMP"
}
trap ev_cleanup EXIT
# dash runs the EXIT trap on `exit`, not when a signal kills the shell (a
# timeout, ^C, a reader of the output that went away).
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

SO_PIN=so-secret
USER_PIN=user-secret
ROOT_PIN=root-pin-1234

EV_PASSED=0
EV_FAILED=0

# run COMMAND...: a set-up step. On failure the test stops with the
# command's own output, not with a later check failing for no visible reason.
run() {
	if ! "$@" >"$EV_TMP/setup.out" 2>&1; then
		echo "ERROR: set-up step failed: $*"
		sed 's/^/    /' "$EV_TMP/setup.out"
		exit 99
	fi
}

# The root of trust, chosen by EV_ROOT as in the integration tests
# (tests/integration/harness.h): pkcs11 (the default), a SoftHSMv2 token
# "root"; tpm2, a swtpm of the test's own (state in $EV_TMP/root-tpm)
# reached directly, stopped by PID at exit like everything else;
# tpm2-abrmd, that swtpm behind a tpm2-abrmd of the test's own
# (ev_abrmd_start).
EV_ROOT=${EV_ROOT:-pkcs11}

# ev_root_is BACKEND: whether the root is BACKEND. Checks about one root only
# (the SoftHSMv2 token, its PIN) run under that root: `if ev_root_is pkcs11`.
ev_root_is() {
	[ "$EV_ROOT" = "$1" ]
}

# ev_swtpm_start DIR: swtpm on a free loopback port pair (the TPM, its
# control channel), state in DIR; EV_SWTPM_PORT is the TPM's port. Returns
# once the TPM answers; another pair is tried when one was taken meanwhile.
ev_swtpm_start() {
	mkdir -p "$1"
	for try in 1 2 3 4 5 6 7 8; do
		port=$("$EV_PYTHON" -c 'import socket
while True:
    a = socket.socket()
    a.bind(("127.0.0.1", 0))
    p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1))
        break
    except OSError:
        pass
print(p)')
		swtpm socket --tpm2 --tpmstate dir="$1" \
			--server type=tcp,port="$port",bindaddr=127.0.0.1 \
			--ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
			--flags not-need-init,startup-clear >>"$1/swtpm.log" 2>&1 &
		pid=$!
		n=0
		while [ $n -lt 100 ] && kill -0 "$pid" 2>/dev/null; do
			if tpm2_getcap -T "swtpm:host=127.0.0.1,port=$port" properties-fixed \
				>/dev/null 2>&1; then
				EV_PIDS="$EV_PIDS $pid"
				EV_SWTPM_PORT=$port
				return 0
			fi
			sleep 0.1
			n=$((n + 1))
		done
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	echo "ERROR: cannot start swtpm (see $1/swtpm.log)"
	exit 99
}

# ev_abrmd_start: tpm2-abrmd in front of the test's swtpm (EV_ROOT=tpm2-abrmd),
# on a private D-Bus session bus (dbus-daemon; config, socket and logs in
# $EV_TMP/abrmd), both stopped by PID at exit; the configuration's tcti
# becomes tabrmd:..., and DBUS_SESSION_BUS_ADDRESS is exported.
ev_abrmd_start() {
	d="$EV_TMP/abrmd"
	mkdir -p "$d"
	cat >"$d/dbus.conf" <<EOC
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=$d</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOC
	dbus-daemon --config-file="$d/dbus.conf" --nofork --nopidfile --print-address=3 \
		3>"$d/address" >"$d/dbus.log" 2>&1 &
	EV_PIDS="$EV_PIDS $!"
	n=0
	while [ ! -s "$d/address" ] && [ $n -lt 100 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	[ -s "$d/address" ] || { echo "ERROR: dbus-daemon gave no address (see $d/dbus.log)"; exit 99; }
	DBUS_SESSION_BUS_ADDRESS=$(head -n 1 "$d/address")
	export DBUS_SESSION_BUS_ADDRESS
	name="org.edgevault.test.Tabrmd.p$$"
	allow=""
	[ "$(id -u)" -eq 0 ] && allow=--allow-root
	tpm2-abrmd --session --dbus-name="$name" \
		--tcti="swtpm:host=127.0.0.1,port=$EV_SWTPM_PORT" $allow >"$d/abrmd.log" 2>&1 &
	EV_PIDS="$EV_PIDS $!"
	tcti="tabrmd:bus_name=$name,bus_type=session"
	n=0
	until tpm2_getcap -T "$tcti" properties-fixed >/dev/null 2>&1; do
		n=$((n + 1))
		[ $n -lt 100 ] || { echo "ERROR: tpm2-abrmd does not answer (see $d/abrmd.log)"; exit 99; }
		sleep 0.1
	done
	sed -i "s|^tcti = .*|tcti = $tcti|" "$EDGEVAULT_CONF"
}

case $EV_ROOT in
pkcs11)
	mkdir -p "$EV_TMP/tokens"
	cat >"$EV_TMP/softhsm2.conf" <<EOC
directories.tokendir = $EV_TMP/tokens
objectstore.backend = file
log.level = ERROR
EOC
	export SOFTHSM2_CONF="$EV_TMP/softhsm2.conf"
	run softhsm2-util --init-token --free --label root --pin "$ROOT_PIN" --so-pin root-so-1234
	printf '%s\n' "$ROOT_PIN" >"$EV_TMP/root.pin"
	EV_ROOT_CONF="backend = pkcs11
module = $EV_SOFTHSM
token_label = root
pin_file = $EV_TMP/root.pin
key_label = edgevault-root"
	;;
tpm2 | tpm2-abrmd)
	ev_swtpm_start "$EV_TMP/root-tpm"
	EV_ROOT_CONF="backend = tpm2
tcti = swtpm:host=127.0.0.1,port=$EV_SWTPM_PORT"
	# The built edgevault-tpm-helper (make check sets EV_TPM_HELPER), not an installed one.
	if [ -n "${EV_TPM_HELPER:-}" ]; then
		EV_ROOT_CONF="$EV_ROOT_CONF
helper = $EV_TPM_HELPER"
	fi
	;;
*)
	echo "ERROR: EV_ROOT=$EV_ROOT is not a root (pkcs11, tpm2, tpm2-abrmd)"
	exit 99
	;;
esac
cat >"$EV_TMP/edgevault.conf" <<EOC
[store]
dir = $EV_TMP/store
[device]
id = test-device
[root]
$EV_ROOT_CONF
[pin]
max_fails = 5
argon2_ops = 1
argon2_mem_kib = 64
EOC
export EDGEVAULT_CONF="$EV_TMP/edgevault.conf"
# tpm2-abrmd: the same swtpm behind tpm2-abrmd, the config's tcti its.
if [ "$EV_ROOT" = tpm2-abrmd ]; then
	ev_abrmd_start
fi

# ok NAME COMMAND...: a check that must succeed; its output is shown if not.
# pubkey_der TOKEN (id HEX | label LABEL) OUT: the token's public key as DER
# SubjectPublicKeyInfo in OUT (tests/clients/pubkey.py says why not pkcs11-tool).
pubkey_der() {
	"$EV_PYTHON" "$EV_SRCDIR/tests/clients/pubkey.py" "$EV_MODULE" "$@"
}

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

# fails NAME PATTERN COMMAND...: a check that must fail, and fail for the
# reason named: its output (stdout and stderr) must match the extended
# regular expression PATTERN. A command that fails for another reason (it
# cannot start, cannot reach its server) does not pass.
fails() {
	name=$1
	pattern=$2
	shift 2
	if "$@" >"$EV_TMP/out" 2>&1; then
		echo "FAIL: $name (succeeded but must fail)"
		sed 's/^/    /' "$EV_TMP/out"
		EV_FAILED=$((EV_FAILED + 1))
	elif ! grep -qE -- "$pattern" "$EV_TMP/out"; then
		echo "FAIL: $name (failed, but not with /$pattern/)"
		sed 's/^/    /' "$EV_TMP/out"
		EV_FAILED=$((EV_FAILED + 1))
	else
		echo "PASS: $name"
		EV_PASSED=$((EV_PASSED + 1))
	fi
}

# out_has NAME PATTERN COMMAND...: the command succeeds and its output
# (stdout and stderr) matches the extended regular expression PATTERN; if
# not, the output is shown.
out_has() {
	name=$1
	pattern=$2
	shift 2
	"$@" >"$EV_TMP/out" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "FAIL: $name (exit status $rc)"
		sed 's/^/    /' "$EV_TMP/out"
		EV_FAILED=$((EV_FAILED + 1))
	elif ! grep -qE -- "$pattern" "$EV_TMP/out"; then
		echo "FAIL: $name (output does not match /$pattern/)"
		sed 's/^/    /' "$EV_TMP/out"
		EV_FAILED=$((EV_FAILED + 1))
	else
		echo "PASS: $name"
		EV_PASSED=$((EV_PASSED + 1))
	fi
}

# exits NAME CODE COMMAND...: the command exits with CODE (its output, in
# cmd.out of the current directory, is shown if not).
exits() {
	name=$1
	code=$2
	shift 2
	ok "$name" sh -c '"$@" >cmd.out 2>&1; rc=$?; [ $rc -eq "$0" ] || { cat cmd.out; echo "exit $rc"; exit 1; }' \
		"$code" "$@"
}

# ev_port: a TCP port on 127.0.0.1 that nothing uses now, chosen by the
# kernel (bind to port 0), so that tests run in parallel, or other programs
# on the machine, do not collide. A server that still loses the race fails to
# bind; the caller then tries again with another port.
ev_port() {
	"$EV_PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

finish() {
	echo "$EV_PASSED passed, $EV_FAILED failed"
	[ "$EV_FAILED" -eq 0 ]
}
