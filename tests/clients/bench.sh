#!/bin/sh
# ev_bench (tests/bench/ev_bench.c), briefly: every operation for 0.2 s
# through the module, with one thread and with two; it exits 0, its JSON
# parses and names every operation in order, each counted, checked, run by
# the threads asked (login by one). Usage errors exit 2, a failed
# operation 1. The figures themselves are tests/bench/compare.sh's.
. "$(dirname "$0")/lib.sh"

: "${EV_BENCH:?EV_BENCH must name the built ev_bench}"
cd "$EV_TMP" || exit 99
unset EV_BENCH_PIN
OPS="ecdsa-p256 ecdsa-p384 ed25519 rsa2048-pss rsa2048-pkcs hmac-sha256 aes256-gcm-4k
aes256-gcm-1m find keygen-p256 wrap-unwrap login"

run pkcs11-tool --module "$EV_MODULE" --init-token --label bench --so-pin "$SO_PIN"
run pkcs11-tool --module "$EV_MODULE" --token-label bench --login --login-type so \
	--so-pin "$SO_PIN" --init-pin --pin "$USER_PIN"

# bench THREADS: every operation for 0.2 s, find among 50 objects; the
# JSON in bench-THREADS.json.
bench() {
	"$EV_BENCH" -t "$1" -s 0.2 -n 50 -l bench -p "$USER_PIN" -j "$EV_MODULE" >"bench-$1.json"
}

# names THREADS: bench-THREADS.json parses and holds every operation, in
# order, run and checked by the threads it should have.
names() {
	# shellcheck disable=SC2086 # one argument per operation
	"$EV_PYTHON" - "bench-$1.json" "$1" $OPS <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    doc = json.load(f)
threads, ops = int(sys.argv[2]), sys.argv[3:]
got = [r["op"] for r in doc["results"]]
assert got == ops, f"operations {got}, not {ops}"
assert doc["threads"] == threads and doc["objects"] == 50, doc
for r in doc["results"]:
    t = 1 if r["op"] == "login" else threads
    assert r["threads"] == t, f"{r['op']}: {r['threads']} threads, not {t}"
    assert r["count"] > 0 and r["ops_per_s"] > 0, r
    assert r["checked"] >= t, f"{r['op']}: {r['checked']} results checked"
    assert 0 < r["p50_us"] <= r["p99_us"], r
assert "created" in doc["results"][ops.index("find")]
EOF
}

ok "every operation runs with one thread" bench 1
ok "its JSON names every operation, each run and checked" names 1
ok "every operation runs with two threads" bench 2
ok "its JSON names every operation, login in one thread" names 2
ok "find reuses the keys it made" "$EV_PYTHON" -c 'import json, sys
r = [x for x in json.load(open("bench-2.json"))["results"] if x["op"] == "find"][0]
sys.exit(0 if r["created"] == 0 else "%d keys made again" % r["created"])'

exits "an unknown operation is a usage error" 2 \
	"$EV_BENCH" -s 0.2 -o ecdsa-p256,ecdsa-p521 -l bench -p "$USER_PIN" "$EV_MODULE"
exits "an empty operation name is a usage error" 2 \
	"$EV_BENCH" -s 0.2 -o ,find -l bench -p "$USER_PIN" "$EV_MODULE"
exits "no objects for find is a usage error" 2 \
	"$EV_BENCH" -s 0.2 -n 0 -o find -l bench -p "$USER_PIN" "$EV_MODULE"
exits "an unknown token is an error" 2 \
	"$EV_BENCH" -s 0.2 -o find -l no-such-token -p "$USER_PIN" "$EV_MODULE"
exits "login without a PIN fails that operation" 1 \
	"$EV_BENCH" -s 0.2 -o login -l bench "$EV_MODULE"

finish
