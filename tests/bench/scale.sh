#!/bin/sh
# Scale figures (issue 8, doc/performance.md "Targets"): start-up and memory
# with many keys stored, rotation of many keys, zone key rotation, and a
# revocation list naming many keys. Prints one JSON line per figure.
#
# usage: tests/bench/scale.sh [-c CACHEDIR] [-n KEYS] [-m FEWKEYS] [-r ROTKEYS]
#                             [-k RUNS] [-o OPS] [BUILDDIR]
#   -n  keys stored for start-up (default 100000); -m the smaller store the
#       memory is compared with (default 1000); -r keys (P-256 pairs) rotated
#       and revoked (default 10000); -k fresh processes per start-up figure
#       (default 5; each line is printed); OPS: comma-separated, of startup,
#       rotate, zonekey, revoke (default all). rotate: every rotatable key
#       of the zone in one EV_RotateKeys call (admin interface 1.4; with an
#       older module, EV_RotateKey per key); `ev_scale_bench rotate ... one`
#       times EV_RotateKey per key on the same store.
#   -c  CACHEDIR keeps the stores made (SoftHSMv2 root token, edgevault
#       store, keys for attestation and revocation lists), one directory per
#       size, so that a rerun with the same sizes skips the set-up. Without
#       it, everything is made in the temporary directory and removed.
#
# Set-up makes keys through the PKCS#11 API, several processes of a few
# threads each (a process keeps a guarded allocation per key it made), with
# tests/bench/.libs/ev_nosync.so preloaded: fsync is a no-op during set-up
# only, followed by one sync(1). Every figure is measured without it, on a
# copy of the cached store, so a run never changes the cache. Argon2id runs at
# its minimum cost here; C_Login is timed apart and subtracted anyway.
#
# Exit status: 0 when every run succeeded (a missed target is not a
# failure), 1 when one failed, 2 on a usage error.

set -u

CACHE= NKEYS=100000 FEW=1000 ROT=10000 RUNS=5 OPS=startup,rotate,zonekey,revoke
while getopts c:n:m:r:k:o: opt; do
	case $opt in
	c) CACHE=$OPTARG ;;
	n) NKEYS=$OPTARG ;;
	m) FEW=$OPTARG ;;
	r) ROT=$OPTARG ;;
	k) RUNS=$OPTARG ;;
	o) OPS=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))

. "$(dirname "$0")/lib.sh"
bench_paths scale "${1:-.}"
SCALE=$BUILD/tests/bench/ev_scale_bench
REVB=$BUILD/tests/bench/ev_revoke_bench
NOSYNC=$BUILD/tests/bench/.libs/ev_nosync.so
for f in "$SCALE" "$REVB" "$NOSYNC"; do
	[ -e "$f" ] || { echo "scale: $f not found (build first)" >&2; exit 2; }
done
bench_tmp scale
[ -n "$CACHE" ] || CACHE=$TMP/cache
mkdir -p "$CACHE" || exit 1
CACHE=$(cd "$CACHE" && pwd)

has_op() {
	case ",$OPS," in *",$1,"*) return 0 ;; esac
	return 1
}

# write_conf DIR DATA: DIR/edgevault.conf and DIR/softhsm2.conf for the
# store, token and keys in DATA.
write_conf() {
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$2" >"$1/softhsm2.conf"
	cat >"$1/edgevault.conf" <<EOC
[store]
dir = $2/store
[device]
id = bench
[root]
backend = pkcs11
module = $EV_SOFTHSM
token_label = root
pin_file = $2/root.pin
[pin]
argon2_ops = 1
argon2_mem_kib = 64
[policy]
grace_period = 86400
[attestation]
provider = result
verifier_key = $(cat "$2/verifier.pub")
result_path = $1/evidence.json
[revocation]
public_key = $(cat "$2/authority.pub")
watch_dir = $1/revocations
EOC
	mkdir -p "$1/revocations"
}

use_conf() {
	export SOFTHSM2_CONF="$1/softhsm2.conf" EDGEVAULT_CONF="$1/edgevault.conf"
}

# make_keys KIND PREFIX COUNT: in processes of at most 10000 keys, 4 threads
# each; each process's keys/s on stderr. (Its variables are mk_*: sh has no
# local ones, and the callers loop on n.)
make_keys() {
	mk_from=0
	while [ "$mk_from" -lt "$3" ]; do
		mk_n=$(($3 - mk_from))
		[ "$mk_n" -gt 10000 ] && mk_n=10000
		LD_PRELOAD=$NOSYNC step "$SCALE" make "$MODULE" bench user-secret "$1" "$2" \
			"$mk_from" "$mk_n" 4
		sed 's/^/scale: /' "$TMP/step.out" >&2
		mk_from=$((mk_from + mk_n))
	done
}

# store NAME AES EC: DATA=$CACHE/NAME, made when missing: a zone "bench"
# with AES AES-256 keys k-<i>, EC P-256 pairs key-<i>, and the pair "sign".
store() {
	DATA=$CACHE/$1
	[ -e "$DATA/done" ] && return 0
	echo "scale: setting up $DATA ($2 AES keys, $3 P-256 pairs)" >&2
	rm -rf "$DATA"
	mkdir -p "$DATA/tokens" || exit 1
	printf 'root-pin-1234\n' >"$DATA/root.pin"
	chmod 600 "$DATA/root.pin"
	"$REVB" keygen "$DATA/authority.key" >"$DATA/authority.pub" || exit 1
	step "$TOOL" attest keygen --out "$DATA/verifier.key"
	sed -n 's/^verifier_key = //p' "$TMP/step.out" >"$DATA/verifier.pub"
	write_conf "$DATA" "$DATA"
	use_conf "$DATA"
	step softhsm2-util --init-token --free --label root --pin root-pin-1234 --so-pin root-so-1234
	step "$TOOL" init
	step pkcs11-tool --module "$MODULE" --init-token --label bench --so-pin so-secret
	step pkcs11-tool --module "$MODULE" --token-label bench --login --login-type so \
		--so-pin so-secret --init-pin --pin user-secret
	make_keys ec sign- 1
	make_keys aes k- "$2"
	make_keys ec key- "$3"
	sync
	: >"$DATA/done"
}

# run_dir NAME: RUN, a fresh copy of the cached store NAME, its configuration in use.
run_dir() {
	RUN=$TMP/run-$1-$$-$(date +%s%N)
	mkdir -p "$RUN" || exit 1
	cp -a "$CACHE/$1/tokens" "$CACHE/$1/store" "$RUN/" || exit 1
	cp "$CACHE/$1/root.pin" "$CACHE/$1/authority.key" "$CACHE/$1/authority.pub" \
		"$CACHE/$1/verifier.key" "$CACHE/$1/verifier.pub" "$RUN/" || exit 1
	write_conf "$RUN" "$RUN"
	use_conf "$RUN"
	step "$TOOL" attest sign --key "$RUN/verifier.key" --device bench --zone 1 --ttl 3600 \
		--out "$RUN/evidence.json"
}

rc=0
measure() {
	if bench_measure "$TMP/m.out" "$@"; then
		cat "$TMP/m.out"
	else
		echo "scale: failed: $*" >&2
		sed 's/^/    /' "$TMP/m.out" "$TMP/m.out.err" >&2
		rc=1
	fi
}

if has_op startup; then
	for n in "$FEW" "$NKEYS"; do
		store "startup-$n" "$n" 0
		run_dir "startup-$n"
		"$SCALE" startup "$MODULE" bench user-secret sign-0 >/dev/null 2>&1 # warm the cache
		i=0
		while [ "$i" -lt "$RUNS" ]; do
			printf '{"keys_stored":%s} ' "$n"
			measure "$SCALE" startup "$MODULE" bench user-secret sign-0
			i=$((i + 1))
		done
		rm -rf "$RUN"
	done
fi
if has_op rotate || has_op zonekey || has_op revoke; then
	store "lifecycle-$ROT" 0 "$ROT"
fi
if has_op rotate; then
	run_dir "lifecycle-$ROT"
	measure "$SCALE" rotate "$MODULE" bench user-secret
	rm -rf "$RUN"
fi
if has_op zonekey; then
	run_dir "lifecycle-$ROT"
	measure "$SCALE" zonekey "$MODULE" bench so-secret
	rm -rf "$RUN"
fi
if has_op revoke; then
	run_dir "lifecycle-$ROT"
	measure "$REVB" -b -n "$ROT" -p key- -d bench -P user-secret "$MODULE" \
		"$RUN/authority.key" "$RUN/revocations" bench
	rm -rf "$RUN"
fi
exit $rc
