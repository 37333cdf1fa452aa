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
# $TMP/root.pin.
bench_softhsm_root() {
	mkdir -p "$TMP/tokens"
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$TMP" >"$TMP/softhsm2.conf"
	export SOFTHSM2_CONF="$TMP/softhsm2.conf"
	step softhsm2-util --init-token --free --label root --pin root-pin-1234 --so-pin root-so-1234
	printf 'root-pin-1234\n' >"$TMP/root.pin"
	chmod 600 "$TMP/root.pin"
}
