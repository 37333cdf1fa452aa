#!/bin/sh
# Signing speed under each root of trust: the same ev_bench run through
# edgevault with a SoftHSMv2 token as the root, through edgevault with a
# TPM (swtpm) as the root, and through SoftHSMv2 itself, one after
# another on this machine. The root is touched only to unseal the zone
# key, so the first two should be equal.
#
# usage: tests/bench/roots.sh [-t THREADS] [-s SECONDS] [-o OPS] [BUILDDIR]
#   BUILDDIR (default: the current directory) holds the built module and
#   tests/bench/ev_bench. Everything runs in a temporary directory,
#   removed at the end; swtpm is stopped by its PID, pass or fail.
set -u

THREADS=1
SECONDS_=3
OPS=ecdsa-p256,ecdsa-p384,ed25519,rsa2048-pss,hmac-sha256,aes256-gcm-4k
while getopts t:s:o: c; do
	case $c in
	t) THREADS=$OPTARG ;;
	s) SECONDS_=$OPTARG ;;
	o) OPS=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
. "$(dirname "$0")/lib.sh"
bench_paths roots "${1:-}"
command -v swtpm >/dev/null || { echo "roots: swtpm not installed" >&2; exit 2; }

bench_tmp roots

# SoftHSMv2: the root token for one edgevault, and a token benchmarked directly.
bench_softhsm_root
step softhsm2-util --init-token --free --label bench --pin user-secret --so-pin so-secret

# swtpm on two free loopback ports (server, control).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$TMP/tpm"
swtpm socket --tpm2 --tpmstate dir="$TMP/tpm" --flags not-need-init,startup-clear \
	--server type=tcp,bindaddr=127.0.0.1,port="$port" \
	--ctrl type=tcp,bindaddr=127.0.0.1,port=$((port + 1)) >"$TMP/swtpm.log" 2>&1 &
BENCH_PIDS="$BENCH_PIDS $!"
sleep 0.5

bench_zone "$TMP/softhsm-root" "$BENCH_SOFTHSM_ROOT"
bench_zone "$TMP/tpm-root" "backend = tpm2
tcti = swtpm:host=127.0.0.1,port=$port"

run() { # title, module, [config]
	echo "== $1 ($THREADS thread(s), ${SECONDS_} s per operation)"
	EDGEVAULT_CONF=${3:-} "$BENCH" -t "$THREADS" -s "$SECONDS_" -o "$OPS" -l bench \
		-p user-secret -j "$2" >"$TMP/$1.json" || { cat "$TMP/$1.json"; exit 1; }
}
run edgevault-softhsm-root "$MODULE" "$TMP/softhsm-root/edgevault.conf"
run edgevault-tpm-root "$MODULE" "$TMP/tpm-root/edgevault.conf"
run softhsm "$EV_SOFTHSM"

python3 - "$TMP" <<'EOF'
import json, sys
d = sys.argv[1]
runs = ["edgevault-softhsm-root", "edgevault-tpm-root", "softhsm"]
res = {r: {x["op"]: x for x in json.load(open(f"{d}/{r}.json"))["results"]} for r in runs}
print(f"{'operation':16} {'ev/softhsm root':>16} {'ev/tpm root':>12} {'softhsm':>10} {'tpm/softhsm root':>17}")
for op, a in res[runs[0]].items():
    b, c = res[runs[1]].get(op), res[runs[2]].get(op)
    print(f"{op:16} {a['ops_per_s']:16.0f} {b['ops_per_s'] if b else 0:12.0f} "
          f"{c['ops_per_s'] if c else 0:10.0f} {(b['ops_per_s'] / a['ops_per_s']) if b else 0:17.2f}")
EOF
