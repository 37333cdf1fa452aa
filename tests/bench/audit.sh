#!/bin/sh
# Signing throughput with the audit trail on and off (issue 7: within 5%).
# The same ev_bench runs against one edgevault store (SoftHSMv2 root) with
# [audit] enabled = true and enabled = false, alternating, ROUNDS times
# each, at 1 and 2 threads; the median ops/s of each and the on/off ratio
# are printed. With auditing on, the hot path only counts uses per key
# (src/uses.h); the counts are flushed by the watcher every
# counters_flush seconds (1 here, the worst case) and lines are written
# only for lifecycle events (the benchmark's key generation, unwrapping).
# With auditing off, nothing is counted either. The worst ratio is printed
# last.
#
# usage: tests/bench/audit.sh [-r ROUNDS] [-s SECONDS] [-o OPS] [BUILDDIR]
#   ROUNDS runs of SECONDS each (default 3 and 3) per setting; OPS, the
#   comma-separated ev_bench operations (default
#   ecdsa-p256,ed25519,hmac-sha256,aes256-gcm-4k).
#   BUILDDIR (default: the current directory) holds the built module and
#   tests/bench/ev_bench. Everything runs in a temporary directory,
#   removed at the end. Not run by make check.
set -u

ROUNDS=3
SECONDS_=3
OPS=ecdsa-p256,ed25519,hmac-sha256,aes256-gcm-4k
while getopts r:s:o: c; do
	case $c in
	r) ROUNDS=$OPTARG ;;
	s) SECONDS_=$OPTARG ;;
	o) OPS=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
. "$(dirname "$0")/lib.sh"
bench_paths "audit bench" "${1:-}"

bench_tmp audit-bench
bench_softhsm_root
bench_zone "$TMP" "$BENCH_SOFTHSM_ROOT"
for a in on off; do
	[ $a = on ] && enabled=true || enabled=false
	{
		cat "$TMP/edgevault.conf"
		printf '[audit]\nenabled = %s\ncounters_flush = 1\n' "$enabled"
	} >"$TMP/$a.conf"
done

for threads in 1 2; do
	r=1
	while [ "$r" -le "$ROUNDS" ]; do
		for a in on off; do
			echo "== audit $a, $threads thread(s), round $r" >&2
			out=$TMP/$a-$threads-$r.json
			bench_measure "$out" env EDGEVAULT_CONF="$TMP/$a.conf" "$BENCH" \
				-t "$threads" -s "$SECONDS_" -o "$OPS" -l bench -p user-secret -j \
				"$MODULE" || { cat "$out" "$out.err"; exit 1; }
		done
		r=$((r + 1))
	done
done

python3 - "$TMP" "$ROUNDS" <<'EOF'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def ops(a, t):
    out = {}
    for r in range(1, rounds + 1):
        for x in json.load(open(f"{d}/{a}-{t}-{r}.json"))["results"]:
            out.setdefault(x["op"], []).append(x["ops_per_s"])
    return {k: statistics.median(v) for k, v in out.items()}
print(f"{'operation':16} {'threads':>7} {'audit on':>10} {'audit off':>10} {'on/off':>7}")
worst = float("inf")
for t in (1, 2):
    on, off = ops("on", t), ops("off", t)
    for op in on:
        ratio = on[op] / off[op]
        worst = min(worst, ratio)
        print(f"{op:16} {t:7d} {on[op]:10.0f} {off[op]:10.0f} {ratio:7.3f}")
print(f"worst on/off ratio: {worst:.3f} ({'within' if worst >= 0.95 else 'NOT within'} 5%)")
EOF
