# Shared by the benchmark scripts (tests/bench/*.sh), sourced after they
# parsed their options. Not run by make check.

# bench_paths NAME BUILDDIR: BUILD, MODULE, BENCH, TOOL of the build in
# BUILDDIR (default: the current directory), EV_SOFTHSM; exits 2 when one
# is missing, saying so as NAME.
bench_paths() {
	BENCH_NAME=$1
	BUILD=$(cd "${2:-.}" && pwd) || exit 2
	MODULE=$BUILD/.libs/edgevault-pkcs11.so
	BENCH=$BUILD/tests/bench/ev_bench
	TOOL=$BUILD/tools/edgevault
	: "${EV_SOFTHSM:=/usr/lib/softhsm/libsofthsm2.so}"
	for f in "$MODULE" "$BENCH" "$TOOL" "$EV_SOFTHSM"; do
		[ -e "$f" ] || { echo "$BENCH_NAME: $f not found (build first)" >&2; exit 2; }
	done
}

# bench_tmp NAME: a temporary directory TMP, removed at exit, pass or
# fail, also when a signal ends the script; the processes whose PIDs are in
# BENCH_PIDS are stopped first.
bench_tmp() {
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/ev-$1-XXXXXX") || exit 1
	BENCH_PIDS=
	trap bench_cleanup EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

bench_cleanup() {
	for pid in $BENCH_PIDS; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	rm -rf "$TMP"
}

# bench_measure OUT COMMAND...: COMMAND's exit status, its output in OUT
# and its errors in OUT.err. It runs in the background, its PID in
# BENCH_PIDS meanwhile, so that a signal to the script stops it too.
bench_measure() {
	out=$1
	shift
	(exec "$@" >"$out" 2>"$out.err") &
	pid=$!
	BENCH_PIDS="$BENCH_PIDS $pid"
	wait "$pid"
	rc=$?
	BENCH_PIDS=${BENCH_PIDS% "$pid"}
	return $rc
}

# step COMMAND...: a set-up step; on failure the script stops with its output.
step() {
	if ! "$@" >"$TMP/step.out" 2>&1; then
		echo "$BENCH_NAME: set-up step failed: $*" >&2
		sed 's/^/    /' "$TMP/step.out" >&2
		exit 1
	fi
}

# bench_softhsm_root: SoftHSMv2 tokens in $TMP/tokens (SOFTHSM2_CONF
# exported), one labelled "root" for edgevault's root, its PIN in
# $TMP/root.pin; BENCH_SOFTHSM_ROOT, the [root] section naming it.
bench_softhsm_root() {
	BENCH_SOFTHSM_ROOT="backend = pkcs11
module = $EV_SOFTHSM
token_label = root
pin_file = $TMP/root.pin"
	mkdir -p "$TMP/tokens"
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$TMP" >"$TMP/softhsm2.conf"
	export SOFTHSM2_CONF="$TMP/softhsm2.conf"
	step softhsm2-util --init-token --free --label root --pin root-pin-1234 --so-pin root-so-1234
	printf 'root-pin-1234\n' >"$TMP/root.pin"
	chmod 600 "$TMP/root.pin"
}

# bench_zone DIR ROOT: an edgevault store in DIR/store whose [root] section
# is ROOT, its configuration in DIR/edgevault.conf, and a zone labelled
# "bench" with the SO PIN so-secret and the user PIN user-secret.
bench_zone() {
	mkdir -p "$1"
	printf '[store]\ndir = %s/store\n[device]\nid = bench\n[root]\n%s\n' \
		"$1" "$2" >"$1/edgevault.conf"
	EDGEVAULT_CONF="$1/edgevault.conf" step "$TOOL" init
	EDGEVAULT_CONF="$1/edgevault.conf" step pkcs11-tool --module "$MODULE" \
		--init-token --label bench --so-pin so-secret
	EDGEVAULT_CONF="$1/edgevault.conf" step pkcs11-tool --module "$MODULE" \
		--token-label bench --login --login-type so --so-pin so-secret \
		--init-pin --pin user-secret
}
