#!/bin/sh
# edgevault against SoftHSMv2 and OpenSSL on this machine, one after another:
# ev_bench through edgevault (SoftHSMv2 root), ev_bench through SoftHSMv2
# itself, then `openssl speed` for the operations it has (wall-clock time,
# one process). With -t THREADS above 1, both modules run again with
# THREADS threads. One table: ops/s of each, edgevault/openssl,
# edgevault/SoftHSMv2 and, with -t, THREADS/1-thread ratios, then the
# figures below the targets of doc/performance.md.
#
# usage: tests/bench/compare.sh [-t THREADS] [-s SECONDS] [-o OPS] [-n N] [BUILDDIR]
#   SECONDS per operation and run (default 3; openssl speed runs whole
#   seconds, at least 1); OPS, ev_bench's comma-separated operations
#   (default all); N, the objects find searches among (default 1000).
#   BUILDDIR (default: the current directory) holds the built module and
#   tests/bench/ev_bench. Everything runs in a temporary directory, removed
#   at the end; what is running then is stopped by its PID. Exit status 0
#   when every run succeeded (targets missed do not count), 1 if not, 2 on
#   a usage error or a missing program. Not run by make check.
set -u

THREADS=1
SECONDS_=3
OPS=
OBJECTS=1000
while getopts t:s:o:n: c; do
	case $c in
	t) THREADS=$OPTARG ;;
	s) SECONDS_=$OPTARG ;;
	o) OPS=$OPTARG ;;
	n) OBJECTS=$OPTARG ;;
	*) echo "usage: compare.sh [-t THREADS] [-s SECONDS] [-o OPS] [-n N] [BUILDDIR]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
. "$(dirname "$0")/lib.sh"
bench_paths compare "${1:-}"
for p in openssl python3 softhsm2-util pkcs11-tool; do
	command -v $p >/dev/null || { echo "compare: $p not installed" >&2; exit 2; }
done

bench_tmp compare

bench_softhsm_root
step softhsm2-util --init-token --free --label bench --pin user-secret --so-pin so-secret
bench_zone "$TMP/edgevault" "$BENCH_SOFTHSM_ROOT"

FAILED=0
# bench NAME MODULE THREADS [CONFIG]: ev_bench's JSON in $TMP/NAME.json.
bench() {
	echo "== $1: $3 thread(s), $SECONDS_ s per operation" >&2
	bench_measure "$TMP/$1.json" env EDGEVAULT_CONF="${4:-}" "$BENCH" -t "$3" \
		-s "$SECONDS_" ${OPS:+-o "$OPS"} -n "$OBJECTS" -l bench -p user-secret -j "$2"
	rc=$?
	[ $rc -eq 0 ] && return
	echo "compare: $1: ev_bench failed (exit status $rc):" >&2
	sed 's/^/    /' "$TMP/$1.json.err" >&2
	[ $rc -ne 2 ] || exit 2 # a usage error, or a module or token it cannot use
	FAILED=1
}
bench edgevault-1 "$MODULE" 1 "$TMP/edgevault/edgevault.conf"
bench softhsm-1 "$EV_SOFTHSM" 1
if [ "$THREADS" -gt 1 ]; then
	bench edgevault-n "$MODULE" "$THREADS" "$TMP/edgevault/edgevault.conf"
	bench softhsm-n "$EV_SOFTHSM" "$THREADS"
fi

# openssl speed, machine-readable (-mr), wall-clock time (-elapsed): the
# asymmetric algorithms in one run, each size of the symmetric ones in its own.
osec=$(python3 -c 'import math, sys; print(max(1, math.ceil(float(sys.argv[1]))))' "$SECONDS_")
speed() { # NAME ARGS...
	n=$1
	shift
	echo "== openssl speed $*" >&2
	bench_measure "$TMP/openssl-$n.txt" openssl speed -mr -elapsed -seconds "$osec" "$@" ||
		{ echo "compare: openssl speed $* failed" >&2; FAILED=1; }
}
speed pki ecdsap256 ecdsap384 ed25519 rsa2048
speed hmac -hmac sha256 -bytes 32
speed gcm4k -evp aes-256-gcm -bytes 4096
speed gcm1m -evp aes-256-gcm -bytes 1048576

python3 - "$TMP" "$THREADS" "$OBJECTS" <<'EOF' || FAILED=1
import json, os, sys

d, threads, objects = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def results(name):
    try:
        with open(f"{d}/{name}.json") as f:
            return {r["op"]: r for r in json.load(f)["results"]}
    except (OSError, ValueError, KeyError):
        return {}

# openssl speed -mr: "+F2:i:bits:sign/s:verify/s" (RSA), "+F4:..." (ECDSA),
# "+F6:i:bits:name:sign/s:verify/s" (EdDSA), "+F:i:name:bytes/s" per -bytes size.
def speed(name):
    rows = []
    try:
        with open(f"{d}/openssl-{name}.txt") as f:
            rows = [l.strip().split(":") for l in f if l.startswith("+F")]
    except OSError:
        pass
    return rows

ossl = {}
for r in speed("pki"):
    if r[0] == "+F2" and r[2] == "2048":
        ossl["rsa2048-pss"] = ossl["rsa2048-pkcs"] = float(r[3])
    elif r[0] == "+F4" and r[2] in ("256", "384"):
        ossl["ecdsa-p" + r[2]] = float(r[3])
    elif r[0] == "+F6" and r[3] == "Ed25519":
        ossl["ed25519"] = float(r[4])
for name, op, size in (("hmac", "hmac-sha256", 32), ("gcm4k", "aes256-gcm-4k", 4096),
                       ("gcm1m", "aes256-gcm-1m", 1 << 20)):
    for r in speed(name):
        if r[0] == "+F":
            ossl[op] = float(r[3]) / size

ev1, sh1 = results("edgevault-1"), results("softhsm-1")
evn, shn = results("edgevault-n"), results("softhsm-n")
ops = list(ev1) + [op for op in sh1 if op not in ev1]

def num(x):
    return "-" if x is None else f"{x:.0f}"

def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}"

def ops_s(res, op, single_ok=True):
    r = res.get(op)
    if r is None or (not single_ok and r["threads"] == 1):
        return None  # missing, or run in one thread whatever -t said (login)
    return r["ops_per_s"]

head = ["operation", "edgevault", "SoftHSMv2", "openssl", "ev/openssl", "ev/SoftHSMv2"]
if threads > 1:
    head += [f"ev {threads}t", f"ev {threads}t/1t", f"SoftHSMv2 {threads}t/1t"]
rows, below = [], []
signing = ("ecdsa", "ed25519", "rsa", "hmac", "aes")
for op in ops:
    e, s, o = ops_s(ev1, op), ops_s(sh1, op), ossl.get(op)
    row = [op, num(e), num(s), num(o), ratio(e, o), ratio(e, s)]
    if op.startswith(signing) and e is not None and o and e / o < 0.9:
        below.append(f"{op}: edgevault at {e / o:.2f} of openssl speed (target 0.90)")
    if threads > 1:
        en, sn = ops_s(evn, op, False), ops_s(shn, op, False)
        row += [num(en), ratio(en, e), ratio(sn, s)]
        if en is not None and e and en / e < 0.9 * threads:
            below.append(f"{op}: {threads} threads at {en / e:.2f}x one thread "
                         f"(target {0.9 * threads:.1f}x)")
    if op == "find" and e is not None and e < 100000:
        below.append(f"find: {e:.0f}/s among {objects} objects (target 100000/s among 100000)")
    rows.append(row)

width = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
for r in [head] + rows:
    print("  ".join(str(c).ljust(width[0]) if i == 0 else str(c).rjust(width[i])
                    for i, c in enumerate(r)))
print(f"\nlogin runs in one thread (the login state is the application's); openssl speed "
      f"has no key generation, lookup, wrapping or login; its rsa2048 is PKCS#1 v1.5, "
      f"set against both RSA operations. find: among {objects} objects.")
if below:
    print("\nbelow target:")
    for b in below:
        print("  " + b)
EOF
exit $FAILED
