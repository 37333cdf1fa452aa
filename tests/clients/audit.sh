#!/bin/sh
# The audit trail end to end (doc/audit.md): events made with pkcs11-tool
# and the edgevault tool against the module, `edgevault audit checkpoint`,
# `audit verify` with the module's key and with --key; copies of the file
# with a label edited, a line deleted, two lines swapped, cut at a line
# end (with its .head) and inside a line, a checkpoint edited: verify
# exits 1 and names the first bad line; `audit show` filters (zone,
# label, id, kinds, times) as text and --json; `audit summary` numbers;
# usage errors exit 2.
. "$(dirname "$0")/lib.sh"

: "${EV_TOOL:?EV_TOOL must name the built tool}"
export EDGEVAULT_MODULE="$EV_MODULE"
cd "$EV_TMP" || exit 99
P11="pkcs11-tool --module $EV_MODULE"
LOG=$EV_TMP/store/audit.log
printf 'the data to sign\n' >data

# ---- Usage errors: no module, configuration or file needed ----

exits "audit alone is a usage error" 2 "$EV_TOOL" audit
exits "an unknown audit command is a usage error" 2 "$EV_TOOL" audit frobnicate
exits "verify with a key that is not base64 is a usage error" 2 \
	"$EV_TOOL" audit verify --key not-a-key
exits "verify with a key of 16 bytes is a usage error" 2 \
	"$EV_TOOL" audit verify --key AAAAAAAAAAAAAAAAAAAAAA==
exits "verify with a stray argument is a usage error" 2 "$EV_TOOL" audit verify extra
exits "verify takes no --zone" 2 "$EV_TOOL" audit verify --zone 1
exits "show with a zone that is not a number is a usage error" 2 \
	"$EV_TOOL" audit show --zone one
exits "show with an unknown event kind is a usage error" 2 "$EV_TOOL" audit show --event key.lost
exits "show with an empty event list is a usage error" 2 "$EV_TOOL" audit show --event ,
exits "show with a time that is not one is a usage error" 2 "$EV_TOOL" audit show --since yesterday
exits "show with bad hex in --id is a usage error" 2 "$EV_TOOL" audit show --id 0g
exits "show with a date that does not exist is a usage error" 2 \
	"$EV_TOOL" audit show --since 2026-02-30
exits "summary with a time that does not exist is a usage error" 2 \
	"$EV_TOOL" audit summary --until 2026-11-24T24:00:00Z
exits "show with --until before --since is a usage error" 2 \
	"$EV_TOOL" audit show --since 2026-11-24 --until 2026-11-23
exits "show refuses an abbreviated option" 2 "$EV_TOOL" audit show --ev login
exits "summary takes no --label" 2 "$EV_TOOL" audit summary --label web
exits "checkpoint takes no argument" 2 "$EV_TOOL" audit checkpoint now
fails "show names an unknown kind" 'unknown event kind "key.lost"' \
	"$EV_TOOL" audit show --event key.lost
out_has "--help lists the audit commands" "audit verify \[--key BASE64\]" "$EV_TOOL" --help

# ---- Events ----

run $P11 --init-token --label demo --so-pin "$SO_PIN"
run $P11 --token-label demo --login --login-type so --so-pin "$SO_PIN" --init-pin \
	--pin "$USER_PIN"
run $P11 --token-label demo --login --pin "$USER_PIN" --keypairgen \
	--key-type EC:prime256v1 --label ec1 --id 01
run $P11 --token-label demo --login --pin "$USER_PIN" --keygen --key-type AES:32 \
	--label aes1 --id 03
$P11 --token-label demo --login --pin wrong-pin --list-objects >/dev/null 2>&1
run $P11 --token-label demo --login --pin "$USER_PIN" --sign --id 01 \
	--mechanism ECDSA-SHA256 --input-file data --output-file ec.sig
run $P11 --token-label demo --login --pin "$USER_PIN" --delete-object --type secrkey \
	--label aes1
out_has "audit checkpoint" "checkpointed up to its last line" "$EV_TOOL" audit checkpoint

# ---- verify ----

out_has "verify: the trail is valid, with the module's key" \
	"^audit trail $LOG: valid" "$EV_TOOL" audit verify
out_has "verify says which key it trusted" \
	"^trusted checkpoint key: [A-Za-z0-9+/]{43}= \(the module's, confirmed under the root\)" \
	"$EV_TOOL" audit verify
out_has "verify --json" '"valid":true,"key":"[A-Za-z0-9+/]{43}=","key_source":"module"' \
	"$EV_TOOL" audit verify --json
KEY=$("$EV_TOOL" audit verify --json | sed 's/.*"key":"\([^"]*\)".*/\1/')
ok "the key is the store's audit_key_public" "$EV_PYTHON" -c '
import base64, sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
v = db.execute("select value from meta where key = ?", ("audit_key_public",)).fetchone()[0]
assert base64.b64encode(bytes(v)).decode() == sys.argv[2], (v, sys.argv[2])
' "$EV_TMP/store/edgevault.db" "$KEY"
OTHER=$(openssl rand -base64 32)

mkdir copies
LINES=$(wc -l <"$LOG")
ok "the trail has lines and its last is a checkpoint" sh -c \
	'[ "$1" -ge 12 ] && tail -n 1 "$2" | grep -q "\"event\":\"audit.checkpoint\""' sh "$LINES" "$LOG"
# copy NAME: the file and its head as copies/NAME.log and copies/NAME.log.head.
copy() {
	cp "$LOG" "copies/$1.log" && cp "$LOG.head" "copies/$1.log.head"
}
# verify_bad NAME PATTERN FILE: verify --key exits 1 and says PATTERN.
verify_bad() {
	exits "$1 (exit 1)" 1 "$EV_TOOL" audit verify --key "$KEY" --file "$3"
	fails "$1" "$2" "$EV_TOOL" audit verify --key "$KEY" --file "$3"
}

copy good
ok "an auditor's copy verifies with --key, without configuration or module" sh -c \
	'EDGEVAULT_CONF=/nonexistent EDGEVAULT_MODULE=/nonexistent "$1" audit verify \
	 --key "$2" --file copies/good.log | grep -q "(given with --key)"' sh "$EV_TOOL" "$KEY"
out_has "verify --file with the module's key" "copies/good.log: valid" \
	"$EV_TOOL" audit verify --file copies/good.log
exits "another key: exit 1" 1 "$EV_TOOL" audit verify --key "$OTHER" --file copies/good.log
ok "another key: the first checkpoint is refused, naming both keys" sh -c \
	'"$1" audit verify --key "$2" --file copies/good.log 2>/dev/null |
	 grep -F "checkpoint made with another key ($3, not the trusted $2)" |
	 grep -qE "^line [0-9]+: "' sh "$EV_TOOL" "$OTHER" "$KEY"

copy edited
N=$(grep -n '"label":"ec1"' copies/edited.log | head -n 1 | cut -d: -f1)
sed -i "${N}s/\"label\":\"ec1\"/\"label\":\"ec2\"/" copies/edited.log
verify_bad "a label edited" \
	"line $((N + 1)): prev does not match the hash of line $N \(edited, deleted or reordered lines\)" \
	copies/edited.log

copy deleted
sed -i 5d copies/deleted.log
verify_bad "a line deleted" "line 5: seq is 6, expected 5 \(deleted, inserted or reordered lines\)" \
	copies/deleted.log

copy swapped
sed -i '6{h;d};7G' copies/swapped.log
ok "two lines swapped" sh -c 'sed -n 6p copies/swapped.log | grep -q "^{\"seq\":7,"'
verify_bad "two lines swapped" "line 6: seq is 7, expected 6" copies/swapped.log

copy truncated
head -n 10 "$LOG" >copies/truncated.log
verify_bad "truncated at a line end, with its head" \
	"line 11: missing: the file ends at seq 10, but .*truncated.log.head records checkpoint seq $LINES \(truncated\)" \
	copies/truncated.log
# Cut a line after the first checkpoint, and the head removed to hide it.
C=$(grep -n '"event":"audit.checkpoint"' "$LOG" | head -n 1 | cut -d: -f1)
ok "the first checkpoint is not the last line" sh -c '[ -n "$1" ] && [ "$1" -lt "$2" ]' \
	sh "$C" "$LINES"
head -n "$((C + 1))" "$LOG" >copies/truncated.log
rm copies/truncated.log.head
verify_bad "truncated after a checkpoint, the head removed" \
	"truncated.log.head: missing, but the file has 1 checkpoint \(the last at line $C\): the head was removed" \
	copies/truncated.log
copy nohead
rm copies/nohead.log.head
verify_bad "the head removed" "nohead.log.head: missing, but the file has [0-9]+ checkpoints?" \
	copies/nohead.log
copy rewritten
H=$(grep -o '"hash":"[0-9a-f]*"' "$LOG.head")
printf '{"seq":%s,%s}\n' "$((LINES - 1))" "$H" >copies/rewritten.log.head
verify_bad "the head names a line that is not a checkpoint" \
	"line $((LINES - 1)): .*rewritten.log.head names seq $((LINES - 1)), but the line is [a-z.]+, not audit.checkpoint" \
	copies/rewritten.log

copy cut
head -c -20 "$LOG" >copies/cut.log
verify_bad "cut inside the last line" "line $LINES: cut short, no line end" copies/cut.log

copy checkpoint
sed -i "${LINES}s/\"device\":\"test-device\"/\"device\":\"test-devicf\"/" copies/checkpoint.log
verify_bad "the last checkpoint edited" \
	"line $LINES: the checkpoint's signature does not verify" copies/checkpoint.log
rm copies/checkpoint.log.head
verify_bad "the last checkpoint edited, without a head" \
	"line $LINES: the checkpoint's signature does not verify" copies/checkpoint.log

copy json
sed -i '3s/^{/{"seq":3,/' copies/json.log
verify_bad "a member given twice" "line 3: not valid JSON: a member is given twice" copies/json.log

out_has "verify --json names the first bad line" '"valid":false,.*"bad_line":5,"error":"line 5: seq is 6' \
	sh -c '"$1" audit verify --json --key "$2" --file copies/deleted.log; [ $? -eq 1 ]' \
	sh "$EV_TOOL" "$KEY"
exits "verify of a file that is not there exits 1" 1 \
	"$EV_TOOL" audit verify --key "$KEY" --file copies/none.log

# ---- show ----

out_has "show: one readable line per event" \
	'^20[0-9-]+T[0-9:.]+Z #[0-9]+ key.generated ok zone=1 user=user class=private key_type=ec label="ec1" id=01 generation=1 pid=[0-9]+ program=pkcs11-tool$' \
	"$EV_TOOL" audit show
out_has "show: a refused login and its reason" \
	' login refused zone=1 user=user reason="wrong PIN" ' "$EV_TOOL" audit show --event login
ok "show --label ec1 --event key: generated twice, unwrapped once" sh -c \
	'"$1" audit show --label ec1 --event key >show.out &&
	 [ "$(wc -l <show.out)" -eq 3 ] &&
	 [ "$(grep -c " key.generated ok " show.out)" -eq 2 ] &&
	 [ "$(grep -c " key.unwrapped ok " show.out)" -eq 1 ]' sh "$EV_TOOL"
ok "show --id 03 --json: the lines as they are" sh -c \
	'"$1" audit show --id 03 --json >show.json &&
	 [ "$(wc -l <show.json)" -eq 2 ] &&
	 while read -r l; do grep -qxF "$l" "$2" || exit 1; done <show.json &&
	 grep -q "\"event\":\"key.generated\"" show.json &&
	 grep -q "\"event\":\"key.destroyed\"" show.json' sh "$EV_TOOL" "$LOG"
ok "show --event key.generated,key.destroyed --zone 1" sh -c \
	'[ "$("$1" audit show --event key.generated,key.destroyed --zone 1 | wc -l)" -eq 4 ]' \
	sh "$EV_TOOL"
ok "show --zone 2: nothing" sh -c '[ -z "$("$1" audit show --zone 2)" ]' sh "$EV_TOOL"
# The day of the first line (the file's, not the clock's: no flake at midnight UTC).
TODAY=$(sed -n '1s/.*"time":"\([0-9-]*\)T.*/\1/p' "$LOG")
LASTDAY=$(sed -n '$s/.*"time":"\([0-9-]*\)T.*/\1/p' "$LOG")
TOMORROW=$(date -u -d "$LASTDAY + 1 day" +%Y-%m-%d)
ok "show --since tomorrow: nothing" sh -c '[ -z "$("$1" audit show --since "$2")" ]' \
	sh "$EV_TOOL" "$TOMORROW"
ok "show --since today --until tomorrow: every line" sh -c \
	'[ "$("$1" audit show --since "$2" --until "$3" | wc -l)" -eq "$4" ]' \
	sh "$EV_TOOL" "$TODAY" "$TOMORROW" "$LINES"
FIRST=$(sed -n '2s/.*"time":"\([^"]*\)".*/\1/p' "$LOG")
ok "show --until the second line's time: two lines" sh -c \
	'[ "$("$1" audit show --until "$2" | wc -l)" -eq 2 ]' sh "$EV_TOOL" "$FIRST"
ok "show --until 1969-12-31 (before the epoch): nothing" sh -c \
	'[ -z "$("$1" audit show --until 1969-12-31)" ]' sh "$EV_TOOL"
exits "show with a space in a time is a usage error" 2 \
	"$EV_TOOL" audit show --since "2026-11- 4T10:00: 1Z"
out_has "show leaves out a line not well formed, and says so" \
	"1 line not well formed, left out" "$EV_TOOL" audit show --file copies/json.log
exits "show of a file that is not there exits 1" 1 "$EV_TOOL" audit show --file copies/none.log
copy escape
sed -i '0,/"user":"user"/s//"user":"u\\u001b[2Jx"/' copies/escape.log
out_has "show escapes what the file holds" 'user=u\\x1b\[2Jx ' \
	"$EV_TOOL" audit show --file copies/escape.log
copy spaced
sed -i '0,/"program":"[^"]*"/s//"program":"my prog user=so"/' copies/spaced.log
out_has "show quotes a program name with a space or '='" ' program="my prog user=so"$' \
	"$EV_TOOL" audit show --file copies/spaced.log

# ---- summary ----

"$EV_TOOL" audit summary --json >summary.json 2>&1
ok "summary --json: the numbers of zone 1 and the device" "$EV_PYTHON" -c '
import json, sys
s = json.load(open("summary.json"))
z = s["zones"]
assert len(z) == 1 and z[0]["zone"] == 1, z
z = z[0]
want = {"zones_created": 1, "keys_generated": 3, "keys_destroyed": 1, "keys_imported": 0,
        "keys_rotated": 0, "logins_refused": 1, "pin_locks": 0, "refusals": 1,
        "keys_now": {"private": 1, "public": 1, "secret": 0}}
for k, v in want.items():
    assert z[k] == v, (k, z[k], v)
assert z["logins_ok"] >= 4, z
assert s["device"]["checkpoints"] >= 1 and s["total"]["checkpoints"] == s["device"]["checkpoints"]
assert s["lines"] == int(sys.argv[1]) and s["skipped"] == 0, s
' "$LINES"
out_has "summary: a table per zone" "^keys_generated +3 +0 +3$" "$EV_TOOL" audit summary
out_has "summary: keys now" "^keys now +2 +- +2$" "$EV_TOOL" audit summary
out_has "summary --since tomorrow: no line" "period: - to -, 0 lines" \
	"$EV_TOOL" audit summary --since "$TOMORROW"
out_has "summary of an auditor's copy without configuration" '"lines":'"$LINES"',' \
	env EDGEVAULT_CONF=/nonexistent "$EV_TOOL" audit summary --file copies/good.log --json
ok "summary counts pin.set and zone.reinitialised" "$EV_PYTHON" -c '
import json, sys
s = json.load(open("summary.json"))
log = [json.loads(l) for l in open(sys.argv[1])]
for name, kind in (("pins_set", "pin.set"), ("zones_reinitialised", "zone.reinitialised")):
    n = sum(1 for l in log if l["event"] == kind)
    assert s["total"][name] == n, (name, s["total"][name], n)
assert s["total"]["pins_set"] >= 1, s["total"]
assert s["keys_now_left_out"] is None, s
' "$LOG"
out_has "summary: a row for zone.reinitialised" "^zones_reinitialised +0 +0 +0$" \
	"$EV_TOOL" audit summary
out_has "summary --file of this device's copy: its keys now" "^keys now +2 +- +2$" \
	"$EV_TOOL" audit summary --file copies/good.log
copy other
sed -i 's/"device":"test-device"/"device":"other-device"/' copies/other.log
out_has "summary --file of another device's trail: keys now left out, and why" \
	"^keys now: left out: the file is device \"other-device\"'s, not this device's \(\"test-device\"\)$" \
	"$EV_TOOL" audit summary --file copies/other.log
out_has "summary --file of another device's trail: no keys now in the table" "^keys now +- +- +-$" \
	"$EV_TOOL" audit summary --file copies/other.log
"$EV_TOOL" audit summary --file copies/other.log --json >other.json 2>&1
ok "summary --json of another device's trail: keys_now null, keys_now_left_out says why" \
	"$EV_PYTHON" -c '
import json
s = json.load(open("other.json"))
assert "other-device" in s["keys_now_left_out"], s
assert [z["keys_now"] for z in s["zones"]] == [None], s["zones"]
assert s["zones"][0]["keys_generated"] == 3, s["zones"]
'
copy signer
sed -i "s|\"key\":\"$KEY\"|\"key\":\"$OTHER\"|" copies/signer.log
out_has "summary --file of a trail signed with another key: keys now left out" \
	"^keys now: left out: the file's checkpoints are signed with another key than this store's$" \
	"$EV_TOOL" audit summary --file copies/signer.log
copy mixed
sed -i '2s/"device":"test-device"/"device":"other-device"/' copies/mixed.log
out_has "summary --file of a trail of several devices: keys now left out" \
	"^keys now: left out: the file's lines name several devices$" \
	"$EV_TOOL" audit summary --file copies/mixed.log

# ---- the trail after all this is still valid ----

out_has "verify after the commands above" "^audit trail $LOG: valid" "$EV_TOOL" audit verify

# ---- a crash while writing: the next writer goes on after the torn line ----

printf '{"seq":%s,"time":"2026-' "$((LINES + 1))" >>"$LOG"
exits "a torn last line: not valid" 1 "$EV_TOOL" audit verify --key "$KEY"
run $P11 --token-label demo --login --pin "$USER_PIN" --list-objects
T=$(grep -n '"event":"audit.torn"' "$LOG" | cut -d: -f1)
ok "the writer wrote audit.torn after the torn line" sh -c \
	'[ -n "$1" ] && [ "$1" -gt 1 ] && sed -n "$(($1 - 1))p" "$2" | grep -q "^{\"seq\":[0-9]*,\"time\":\"2026-\$"' \
	sh "$T" "$LOG"
out_has "a torn line followed by audit.torn and a checkpoint is a warning" \
	"warning: 1 line cut short by a crash; the first: line $((T - 1)): cut short by a crash" \
	"$EV_TOOL" audit verify --key "$KEY"

finish
