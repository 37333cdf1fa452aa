#!/bin/sh
# `edgevault status` and `edgevault metrics` (doc/audit.md, "Use counters,
# status and metrics"): the zones, their keys and use counts after real
# use through PyKCS11, the audit trail, exit codes and usage errors; the
# metrics read by a real node_exporter's textfile collector.
. "$(dirname "$0")/lib.sh"

: "${EV_TOOL:?EV_TOOL must name the built tool}"
export EDGEVAULT_MODULE="$EV_MODULE"
cd "$EV_TMP" || exit 99

NODE_EXPORTER=/usr/bin/prometheus-node-exporter

# ---- Usage errors ----
exits "status with an unknown option is a usage error" 2 "$EV_TOOL" status --frob
exits "status with an argument is a usage error" 2 "$EV_TOOL" status zone
exits "metrics --out without a value is a usage error" 2 "$EV_TOOL" metrics --out
exits "metrics with an argument is a usage error" 2 "$EV_TOOL" metrics now
exits "metrics with an unknown option is a usage error" 2 "$EV_TOOL" metrics --json
fails "status without a store says so" "store: .*" "$EV_TOOL" status
exits "status without a store exits 1" 1 "$EV_TOOL" status
out_has "status without a store still shows the device and the audit trail" \
	"^store: +.*: cannot be read$" sh -c "'$EV_TOOL' status; true"
ok "status --json without a store says store.ok false and shows what is known" sh -c \
	"'$EV_TOOL' status --json | '$EV_PYTHON' -c '
import json, sys
s = json.load(sys.stdin)
assert s[\"store\"][\"ok\"] is False and s[\"zones\"] == [], s
assert s[\"device\"] == \"test-device\" and s[\"audit\"][\"exists\"] is False, s
'"
exits "metrics without a store exits 1" 1 "$EV_TOOL" metrics

# ---- A zone, keys, and use ----
run "$EV_TOOL" init
run pkcs11-tool --module "$EV_MODULE" --init-token --label zone-one --so-pin "$SO_PIN"
run pkcs11-tool --module "$EV_MODULE" --token-label zone-one --login --login-type so \
	--so-pin "$SO_PIN" --init-pin --pin "$USER_PIN"

# Keys, then 3 signatures and 2 encryptions in one process, 2 more
# signatures in another; a failed user login; a label a metric must escape.
cat >use.py <<'EOF'
import sys
import PyKCS11
from PyKCS11.LowLevel import CKA_CLASS, CKA_LABEL, CKO_PRIVATE_KEY, CKO_SECRET_KEY

lib = PyKCS11.PyKCS11Lib()
lib.load(sys.argv[1])
what, pin = sys.argv[2], sys.argv[3]
slot = lib.getSlotList(tokenPresent=True)[0]
s = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
s.login(pin)
if what == "keys":
    s.generateKeyPair(
        [(PyKCS11.CKA_TOKEN, True), (PyKCS11.CKA_LABEL, "sig"), (PyKCS11.CKA_ID, b"\x01"),
         (PyKCS11.CKA_VERIFY, True), (PyKCS11.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107"))],
        [(PyKCS11.CKA_TOKEN, True), (PyKCS11.CKA_LABEL, "sig"), (PyKCS11.CKA_ID, b"\x01"),
         (PyKCS11.CKA_SIGN, True), (PyKCS11.CKA_PRIVATE, True)],
        mecha=PyKCS11.Mechanism(PyKCS11.CKM_EC_KEY_PAIR_GEN))
    s.generateKey([(PyKCS11.CKA_TOKEN, True), (PyKCS11.CKA_LABEL, 'we"ird\\key\nx'),
                   (PyKCS11.CKA_ID, b"\x02"), (PyKCS11.CKA_VALUE_LEN, 32),
                   (PyKCS11.CKA_ENCRYPT, True), (PyKCS11.CKA_DECRYPT, True),
                   (PyKCS11.CKA_CLASS, CKO_SECRET_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_AES)])
else:
    priv = s.findObjects([(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_LABEL, "sig")])[0]
    for _ in range(int(sys.argv[4])):
        s.sign(priv, b"data", PyKCS11.Mechanism(PyKCS11.CKM_ECDSA_SHA256))
    aes = s.findObjects([(CKA_CLASS, CKO_SECRET_KEY)])
    for _ in range(int(sys.argv[5])):
        s.encrypt(aes[0], b"0123456789abcdef", PyKCS11.Mechanism(PyKCS11.CKM_AES_CBC_PAD, bytes(16)))
s.logout()
s.closeSession()
# PyKCS11Lib has no C_Finalize of its own: call the low-level one, so the
# counts are flushed here and not left to the unload at interpreter exit.
rv = lib.lib.C_Finalize()
assert rv == PyKCS11.CKR_OK, PyKCS11.CKR[rv]
EOF
run "$EV_PYTHON" use.py "$EV_MODULE" keys "$USER_PIN"
run "$EV_PYTHON" use.py "$EV_MODULE" use "$USER_PIN" 3 2
run "$EV_PYTHON" use.py "$EV_MODULE" use "$USER_PIN" 2 0
pkcs11-tool --module "$EV_MODULE" --token-label zone-one --login --pin wrong-pin --list-objects \
	>/dev/null 2>&1

# The private key's handle, for the metrics' labels.
PRIV=$(sqlite3 store/edgevault.db "SELECT id FROM objects WHERE class = 3 AND label = CAST('sig' AS BLOB)")
AES=$(sqlite3 store/edgevault.db "SELECT id FROM objects WHERE class = 4")

# ---- status ----
exits "status succeeds" 0 "$EV_TOOL" status
out_has "status counts the zones" "^zones: +1$" "$EV_TOOL" status
out_has "status shows the zone, its keys and PIN failures" \
	'^zone 1 "zone-one": active, keys 2 current, 0 retired; PIN failures SO 0, user 1$' \
	"$EV_TOOL" status
out_has "status shows the signing key's uses" \
	"^  key $PRIV private \"sig\" id 01 generation 1, current: sign 5 \(last [0-9T:-]+Z\)$" \
	"$EV_TOOL" status
out_has "status shows the AES key's uses, its label escaped" \
	"^  key $AES secret \"we\\\\\"ird\\\\\\\\key\\\\x0ax\" id 02 generation 1, current: encrypt 2 " \
	"$EV_TOOL" status
out_has "status shows the audit trail" "^audit: +$EV_TMP/store/audit.log: [0-9]+ bytes, [0-9]+ lines$" \
	"$EV_TOOL" status
out_has "status says no revocation list was applied" "^revocation: +no list applied$" "$EV_TOOL" status

ok "status --json has the zone, keys, uses and audit" sh -c \
	"'$EV_TOOL' status --json | '$EV_PYTHON' -c '
import json, sys, time, calendar
s = json.load(sys.stdin)
assert s[\"device\"] and s[\"root\"] == {\"backend\": s[\"root\"][\"backend\"], \"reachable\": True}, s
assert s[\"store\"][\"ok\"] is True, s
(z,) = s[\"zones\"]
assert z[\"id\"] == 1 and z[\"label\"] == \"zone-one\" and z[\"state\"] == \"active\", z
assert z[\"revoked_at\"] is None, z
assert z[\"keys\"] == {\"current\": 2, \"retired\": 0}, z
assert z[\"pin_failures\"] == {\"so\": 0, \"user\": 1}, z
assert z[\"pin_locked\"] == {\"so\": False, \"user\": False}, z
objs = {o[\"handle\"]: o for o in z[\"objects\"]}
p = objs[$PRIV]
assert p[\"class\"] == \"private\" and p[\"label\"] == \"sig\" and p[\"id\"] == \"01\", p
assert p[\"generation\"] == 1 and p[\"state\"] == \"current\", p
assert list(p[\"uses\"]) == [\"sign\"] and p[\"uses\"][\"sign\"][\"count\"] == 5, p
t = calendar.timegm(time.strptime(p[\"uses\"][\"sign\"][\"last_use\"], \"%Y-%m-%dT%H:%M:%SZ\"))
assert abs(t - time.time()) < 600, p
a = objs[$AES]
assert a[\"label\"] == \"we\" + chr(34) + \"ird\" + chr(92) + \"key\" + chr(10) + \"x\", a
assert list(a[\"uses\"]) == [\"encrypt\"] and a[\"uses\"][\"encrypt\"][\"count\"] == 2, a
pub = [o for o in z[\"objects\"] if o[\"class\"] == \"public\"]
assert len(pub) == 1 and pub[0][\"uses\"] == {}, pub
au = s[\"audit\"]
assert au[\"file\"].endswith(\"/store/audit.log\") and au[\"exists\"] is True, au
assert au[\"lines\"] == open(au[\"file\"]).read().count(\"\\n\"), au
import os
assert au[\"size\"] == os.path.getsize(au[\"file\"]), au
assert s[\"revocation\"] == {\"sequence\": None}, s
'"

# ---- The audit file as status reads it: lines, size, the checkpoint <file>.head names ----
mkdir fake
"$EV_PYTHON" - <<'EOF'
import hashlib
def h(l):
    return hashlib.blake2b(l.encode(), digest_size=32).hexdigest()
def line(seq, time, event, prev, extra=""):
    return ('{"seq":%d,"time":"%s","device":"test-device","pid":7,"program":"test",'
            '"event":"%s","outcome":"ok"%s,"prev":"%s"}' % (seq, time, event, extra, prev * 64))
cp = ',"key":"%s","sig":"%s"' % ("A" * 43 + "=", "A" * 86 + "==")
lines = [
    line(1, "2026-01-02T03:00:00.000001Z", "zone.created", "0"),
    line(2, "2026-01-02T03:04:05.123456Z", "audit.checkpoint", "1", cp),
    line(3, "2026-01-02T03:05:00.000000Z", "login", "2"),
    # A later checkpoint the head does not name (written; the head not replaced yet).
    line(4, "2026-01-02T04:00:00.000000Z", "audit.checkpoint", "3", cp),
]
open("fake/audit.log", "w").write("".join(l + "\n" for l in lines))
open("fake/audit.log.head", "w").write('{"seq":2,"hash":"%s"}\n' % h(lines[1]))
# The same head with a hash no line has: the line is not the head's.
open("fake/other.log", "w").write("".join(l + "\n" for l in lines))
open("fake/other.log.head", "w").write('{"seq":2,"hash":"%s"}\n' % ("4" * 64))
# The same, its checkpoint line not well formed (no "key"): its time is not taken.
lines[1] = line(2, "2026-01-02T03:04:05.123456Z", "audit.checkpoint", "1")
open("fake/bad.log", "w").write("".join(l + "\n" for l in lines))
open("fake/bad.log.head", "w").write('{"seq":2,"hash":"%s"}\n' % h(lines[1]))
EOF
cp "$EDGEVAULT_CONF" fake.conf
printf '[audit]\nfile = %s/fake/audit.log\n' "$EV_TMP" >>fake.conf
FAKE_SIZE=$(wc -c <fake/audit.log)
out_has "status shows the audit file's size and lines" \
	"^audit: +$EV_TMP/fake/audit.log: $FAKE_SIZE bytes, 4 lines$" "$EV_TOOL" --config fake.conf status
out_has "status shows the checkpoint the head names, with its line's time" \
	"^checkpoint: +seq 2 at 2026-01-02T03:04:05Z$" "$EV_TOOL" --config fake.conf status
ok "status --json shows the checkpoint" sh -c \
	"'$EV_TOOL' --config fake.conf status --json | '$EV_PYTHON' -c '
import json, sys
a = json.load(sys.stdin)[\"audit\"]
assert a[\"lines\"] == 4 and a[\"size\"] == $FAKE_SIZE and a[\"exists\"] is True, a
assert a[\"last_checkpoint\"] == {\"seq\": 2, \"time\": \"2026-01-02T03:04:05Z\"}, a
'"
out_has "metrics show the checkpoint's seq" '^edgevault_audit_last_checkpoint_seq 2$' \
	"$EV_TOOL" --config fake.conf metrics
out_has "metrics show the checkpoint's time" \
	'^edgevault_audit_last_checkpoint_timestamp_seconds 1767323045$' \
	"$EV_TOOL" --config fake.conf metrics
out_has "metrics show the audit lines" '^edgevault_audit_lines 4$' "$EV_TOOL" --config fake.conf metrics
cp "$EDGEVAULT_CONF" bad.conf
printf '[audit]\nfile = %s/fake/bad.log\n' "$EV_TMP" >>bad.conf
out_has "status takes no time from a checkpoint line that is not well formed" \
	"^checkpoint: +seq 2 at \(time unknown\)$" "$EV_TOOL" --config bad.conf status
cp "$EDGEVAULT_CONF" other.conf
printf '[audit]\nfile = %s/fake/other.log\n' "$EV_TMP" >>other.conf
out_has "status takes no time from a line whose hash is not the head's" \
	"^checkpoint: +seq 2 at \(time unknown\)$" "$EV_TOOL" --config other.conf status
rm fake/audit.log.head
out_has "status without a head shows no checkpoint" "^checkpoint: +none$" \
	"$EV_TOOL" --config fake.conf status
rm fake/audit.log
out_has "status shows an absent audit file" "^audit: +$EV_TMP/fake/audit.log: absent$" \
	"$EV_TOOL" --config fake.conf status

# ---- metrics ----
SIGN_SAMPLE="edgevault_key_operations_total{zone=\"1\",label=\"sig\",id=\"01\",generation=\"1\",class=\"private\",handle=\"$PRIV\",operation=\"sign\"} 5"
out_has "metrics has the signing count" "^$(printf '%s' "$SIGN_SAMPLE" | sed 's/[{}.]/\\&/g')\$" \
	"$EV_TOOL" metrics
ok "metrics escapes a label (backslash, double quote, newline)" sh -c \
	"'$EV_TOOL' metrics | grep -F 'label=\"we\\\"ird\\\\key\\nx\"' | grep -F 'operation=\"encrypt\"} 2'"
out_has "metrics has HELP and TYPE lines" "^# TYPE edgevault_key_operations_total counter$" \
	"$EV_TOOL" metrics
out_has "metrics has the PIN failures" '^edgevault_pin_failures\{zone="1",user="user"\} 1$' \
	"$EV_TOOL" metrics
out_has "metrics has the zone's keys" '^edgevault_zone_keys\{zone="1",state="current"\} 2$' \
	"$EV_TOOL" metrics
out_has "metrics has the zone's revocation" '^edgevault_zone_revoked\{zone="1"\} 0$' \
	"$EV_TOOL" metrics
mkdir textfile
exits "metrics --out succeeds" 0 "$EV_TOOL" metrics --out textfile/edgevault.prom
ok "metrics --out wrote the file and left no temporary file" sh -c \
	"test -s textfile/edgevault.prom && [ \$(ls -A textfile | wc -l) -eq 1 ]"
ok "metrics --out writes what stdout shows" sh -c \
	"'$EV_TOOL' metrics | cmp - textfile/edgevault.prom"
ok "metrics --out makes the file readable as 0644 under the umask" sh -c \
	"[ \$(stat -c %a textfile/edgevault.prom) = \$(printf '%o' \$((0644 & ~\$(umask)))) ]"
# Overlapping runs (a timer's) each write a temporary of their own: a
# fixed name (here taken by a directory) would make them clobber or fail.
mkdir textfile/.edgevault.prom.tmp
ok "metrics --out, eight at once: all succeed, the file whole, no temporary left" sh -c \
	"pids=; for i in 1 2 3 4 5 6 7 8; do
		'$EV_TOOL' metrics --out textfile/edgevault.prom & pids=\"\$pids \$!\"
	 done
	 fail=0; for p in \$pids; do wait \$p || fail=1; done
	 [ \$fail -eq 0 ] && '$EV_TOOL' metrics | cmp - textfile/edgevault.prom &&
	 [ \$(ls -A textfile | wc -l) -eq 2 ]"
rmdir textfile/.edgevault.prom.tmp
fails "metrics --out to a missing directory fails" "cannot create" \
	"$EV_TOOL" metrics --out nowhere/edgevault.prom
ok "metrics has the signing key's last use, a time of this run" "$EV_PYTHON" -c '
import re, sys, time
for line in sys.stdin:
    m = re.match(r"edgevault_key_last_use_timestamp_seconds\{(.*)\} (\S+)$", line)
    if m and "handle=\"%s\"" % sys.argv[1] in m.group(1) and "operation=\"sign\"" in m.group(1):
        assert abs(float(m.group(2)) - time.time()) < 600, line
        sys.exit(0)
sys.exit("no sample")' "$PRIV" <textfile/edgevault.prom

# ---- node_exporter reads them ----
if [ ! -x "$NODE_EXPORTER" ]; then
	echo "ERROR: $NODE_EXPORTER is missing (scripts/deps.sh installs prometheus-node-exporter)"
	exit 99
fi
scrape() {
	curl -sf "http://127.0.0.1:$NE_PORT/metrics" >scrape.out
}
for try in 1 2 3; do
	NE_PORT=$(ev_port)
	"$NODE_EXPORTER" --web.listen-address="127.0.0.1:$NE_PORT" --collector.disable-defaults \
		--collector.textfile --collector.textfile.directory="$EV_TMP/textfile" \
		>node_exporter.log 2>&1 &
	NE_PID=$!
	EV_PIDS="$EV_PIDS $NE_PID"
	n=0
	while [ $n -lt 100 ] && kill -0 "$NE_PID" 2>/dev/null && ! scrape; do
		sleep 0.1
		n=$((n + 1))
	done
	scrape && break
	kill "$NE_PID" 2>/dev/null
	wait "$NE_PID" 2>/dev/null
done
ok "node_exporter serves the metrics" scrape
ok "node_exporter read the file without error" grep -qxE 'node_textfile_scrape_error 0' scrape.out
ok "node_exporter shows the signing count" "$EV_PYTHON" -c '
import re, sys
want = {"zone": "1", "label": "sig", "id": "01", "generation": "1", "class": "private",
        "handle": sys.argv[1], "operation": "sign"}
for line in open("scrape.out"):
    m = re.match(r"edgevault_key_operations_total\{(.*)\} (\S+)$", line)
    if m and dict(re.findall(r"(\w+)=\"((?:[^\"\\\\]|\\\\.)*)\"", m.group(1))) == want:
        assert float(m.group(2)) == 5, line
        sys.exit(0)
sys.exit("no sample in " + open("scrape.out").read())' "$PRIV"
ok "node_exporter shows the escaped label" grep -qF 'label="we\"ird\\key\nx"' scrape.out
ok "node_exporter shows the PIN failures" grep -qxE 'edgevault_pin_failures\{user="user",zone="1"\} 1' scrape.out
ok "node_exporter shows the audit lines" grep -qE '^edgevault_audit_lines [0-9]+$' scrape.out

# ---- A rotated pair: both retired halves are listed as retired ----
# Rotation asks for fresh attestation evidence: a result file admitting zone 1.
"$EV_TOOL" attest keygen --out verifier.key >keygen.out 2>&1 || { cat keygen.out; exit 99; }
VERIFIER_KEY=$(sed -n 's/^verifier_key = //p' keygen.out)
[ -n "$VERIFIER_KEY" ] || { cat keygen.out; exit 99; }
printf '[attestation]\nprovider = result\nverifier_key = %s\nresult_path = %s/evidence.json\n[policy]\ngrace_period = 600\n' \
	"$VERIFIER_KEY" "$EV_TMP" >>"$EDGEVAULT_CONF"
run "$EV_TOOL" attest sign --key verifier.key --device test-device --zone 1 --ttl 300 \
	--out evidence.json
printf '%s\n' "$USER_PIN" >user.pin
chmod 600 user.pin
run "$EV_TOOL" rotate key --zone 1 --label sig --user-pin-file user.pin
out_has "status counts the retired private key" \
	'^zone 1 "zone-one": active, keys 2 current, 1 retired; ' "$EV_TOOL" status
out_has "status shows the retired private key with its uses" \
	"^  key $PRIV private \"sig\" id 01 generation 1, retired: sign 5 " "$EV_TOOL" status
ok "status --json lists both halves of each generation, the old ones retired" sh -c \
	"'$EV_TOOL' status --json | '$EV_PYTHON' -c '
import json, sys
(z,) = json.load(sys.stdin)[\"zones\"]
got = sorted((o[\"class\"], o[\"generation\"], o[\"state\"]) for o in z[\"objects\"]
             if o[\"label\"] == \"sig\")
assert got == [(\"private\", 1, \"retired\"), (\"private\", 2, \"current\"),
               (\"public\", 1, \"retired\"), (\"public\", 2, \"current\")], got
'"

# ---- A destroyed key: its counts still shown, as destroyed ----
run pkcs11-tool --module "$EV_MODULE" --token-label zone-one --login --pin "$USER_PIN" \
	--delete-object --type secrkey --id 02
out_has "status shows the destroyed key with its uses" \
	"^  key $AES secret \"we\\\\\"ird\\\\\\\\key\\\\x0ax\" id 02 generation 1, destroyed: encrypt 2 \(last [0-9T:-]+Z\)$" \
	"$EV_TOOL" status
ok "status --json lists the destroyed key once, with its uses" sh -c \
	"'$EV_TOOL' status --json | '$EV_PYTHON' -c '
import json, sys
(z,) = json.load(sys.stdin)[\"zones\"]
got = [o for o in z[\"objects\"] if o[\"handle\"] == $AES]
assert len(got) == 1 and got[0][\"state\"] == \"destroyed\", got
assert got[0][\"uses\"][\"encrypt\"][\"count\"] == 2, got
'"
out_has "metrics keep the destroyed key's count" \
	"^edgevault_key_operations_total\\{.*handle=\"$AES\",operation=\"encrypt\"\\} 2$" \
	"$EV_TOOL" metrics

# ---- A zone label that is not UTF-8 ----
sqlite3 store/edgevault.db "UPDATE zones SET label = X'ff41$(printf '20%.0s' $(seq 30))' WHERE id = 1"
out_has "status escapes a zone label that is not UTF-8" '^zone 1 "\\xffA": active' "$EV_TOOL" status
ok "status --json shows a zone label that is not UTF-8 as hex" sh -c \
	"'$EV_TOOL' status --json | '$EV_PYTHON' -c '
import json, sys
(z,) = json.load(sys.stdin)[\"zones\"]
assert z[\"label\"] == \"hex:ff41\", z
'"

finish
